"""The trial loop's own bookkeeping: the best so far on each trial's line, kept as trials end,
and a SQLite study that commits without a flush to disk."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from pruning_optuna_sweeper.storage import open_storage
from tests.sweep_helpers import load, run_sweep, sqlite_url

# Each test runs a sweep in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow

LINE = re.compile(r"\] trial +(\d+) (COMPLETE|PRUNED|FAIL) .*\| best: (none yet|trial (\d+) (\d\.\d{4}))")


def test_each_trial_s_line_names_the_best_of_the_study_so_far_also_across_runs(tmp_path: Path) -> None:
    """The first run's best is read once when the second starts; each line after that is the
    best of every trial recorded before it, read back with Optuna."""
    first = run_sweep(tmp_path, "params.epoch_count=1", "hydra/sweeper/pruner=none", n_trials=2)
    second = run_sweep(tmp_path, "params.epoch_count=1", "hydra/sweeper/pruner=none", n_trials=3)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr

    trials = load(tmp_path).get_trials()
    lines = LINE.findall(first.stdout) + LINE.findall(second.stdout)
    assert [int(number) for number, *_ in lines] == [t.number for t in trials] == list(range(5))
    for number, _, _, best_number, best_value in lines:
        done = [t for t in trials[: int(number) + 1] if t.state == TrialState.COMPLETE]
        best = max(done, key=lambda t: t.value)
        assert (int(best_number), best_value) == (best.number, f"{best.value:.4f}")


def test_a_sqlite_study_is_written_ahead_and_commits_without_a_flush(tmp_path: Path) -> None:
    """Every connection the storage opens, also after its own set-up, has synchronous=NORMAL."""
    storage = open_storage(sqlite_url(tmp_path), heartbeat_interval=10, grace_period=30)
    study = optuna.create_study(storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    with storage.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    assert len(optuna.load_study(study_name=study.study_name, storage=sqlite_url(tmp_path)).trials) == 2
