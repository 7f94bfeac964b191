"""`storage: null` (the stock default) with launchers that run jobs in other processes: the
in-memory study is kept in a journal file in the sweep folder for the sweep's life, so that
the jobs report and are pruned as in the sweep's own process, and nothing is left after it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli import copy_example, run_example

# Each test runs a sweep, the app or a tool in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow

SEEDED_SWEEP = [
    "lr=tag(log, interval(1e-5, 1e-2))",
    "momentum=choice(0.0, 0.5, 0.9)",
    "steps=40",
    "hydra.sweeper.n_trials=6",
    "hydra.sweeper.n_jobs=1",
    "hydra.sweeper.sampler.seed=123",
    "hydra.sweeper.pruner.n_startup_trials=2",
]
TRIAL_LINE = re.compile(r"trial +(\d+) (COMPLETE|PRUNED|FAIL) +value=(\S+) .*\| best: ")  # one per trial


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_example(tmp_path_factory.mktemp("app"))


def trial_lines(app: Path, sweep_dir: Path, *args: str) -> list[tuple[str, str, str]]:
    result = run_example(
        app, "descent.py", "-m", "hydra/sweeper=pruning_optuna", f"hydra.sweep.dir={sweep_dir}", *args
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return TRIAL_LINE.findall(result.stdout + result.stderr)


# pool is the distribution's own launcher: also run by the compatibility matrix (.ci/compat).
@pytest.mark.parametrize("launcher", [pytest.param("pool", marks=pytest.mark.compat), "joblib"])
def test_jobs_in_other_processes_prune_an_in_memory_study_as_the_sweep_s_own_process_does(
    app: Path, tmp_path: Path, launcher: str
) -> None:
    in_process = trial_lines(app, tmp_path / "basic", *SEEDED_SWEEP)
    assert [state for _, state, _ in in_process] == ["COMPLETE"] * 2 + ["PRUNED"] * 4

    elsewhere = trial_lines(
        app, tmp_path / launcher, *SEEDED_SWEEP, f"hydra/launcher={launcher}", "hydra.launcher.n_jobs=1"
    )

    assert elsewhere == in_process  # trial for trial: the same values, the same trials pruned
    assert not list((tmp_path / launcher).glob("*.journal*"))  # the study lived as long as its sweep
