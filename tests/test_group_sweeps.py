"""A sweep over a config group (`optimizer=choice(sgd,adamw)`): the study is its own, named after the
options; the choice is a categorical param, the closing hint names the best trial's, and best_of trains
with it, passed on to Hydra where the command line names none (`make best`).

As for any key, a group the command line names wins over the trial's (`best_of=... optimizer=adam` trains
with Adam and says so, as `params=default` does in test_sweep.py). A later sweep of other options into
that study is refused: its trials would be compared with the others'."""

from __future__ import annotations

import math
import shlex
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from pruning_optuna_sweeper.artifacts import MODEL_ARTIFACT_ATTR
from pruning_optuna_sweeper.trial import ARTIFACT_STORE_ATTR
from tests.cli import epoch_lines, run_cli, run_main
from tests.sweep_helpers import best_of_hint, load, run_sweep, sqlite_url

# Each test runs the app or a tool in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow

STUDY = "linearnet-adamw+sgd-mnist-sample"
STORE = "optuna.artifacts.FileSystemArtifactStore"


def test_an_optimizer_sweep_has_its_own_study_and_best_of_trains_with_the_best_trial_s_choice(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"  # a store given as a _target_ config: recorded with each trial
    store.mkdir()
    swept = run_sweep(
        tmp_path,
        "optimizer=choice(sgd, adamw)",  # neither the default (adam): a run must name the best's
        "params.lr=0.01",
        "params.batch_size=64",
        "params.epoch_count=1",
        "hydra/sweeper/pruner=none",
        f"hydra.sweeper.artifact_store={{_target_: {STORE}, base_path: '{store}'}}",
        n_trials=3,
    )
    assert swept.returncode == 0, swept.stderr
    study = load(tmp_path, STUDY)
    trials, best = study.get_trials(), study.best_trial
    chosen = best.params["optimizer"]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(t.distributions["optimizer"] == CategoricalDistribution(("sgd", "adamw")) for t in trials)
    hint = shlex.split(best_of_hint(swept))
    assert f"optimizer={chosen}" in hint and f"best_of={STUDY}" in hint

    trained = run_main([*hint, "progress=false", "hydra.run.dir=best"], tmp_path)
    without = [o for o in hint if not o.startswith("optimizer=")]
    passed_on = run_main([*without, "progress=false", "hydra.run.dir=passed"], tmp_path)
    latest = run_main([*without, "best_of=latest", "progress=false", "hydra.run.dir=latest"], tmp_path)
    mixed = run_sweep(tmp_path, f"hydra.sweeper.study_name={STUDY}", "params.epoch_count=1", n_trials=1)
    shown = run_cli("--storage", sqlite_url(tmp_path), "show", STUDY, cwd=tmp_path)
    copied = run_cli(
        "--storage", sqlite_url(tmp_path), "model", STUDY, "--out", str(tmp_path / "m.pt"), cwd=tmp_path
    )

    assert trained.returncode == 0, trained.stderr
    assert f"best_of={STUDY}: trial {best.number} of " in trained.stdout
    target = {"adamw": "torch.optim.AdamW", "sgd": "torch.optim.SGD"}[chosen]
    assert OmegaConf.load(tmp_path / "best" / ".hydra" / "config.yaml").optimizer._target_ == target
    [(_, _, accuracy, _)] = epoch_lines(trained.stdout)
    assert math.isclose(accuracy, best.value, abs_tol=5e-5)  # the best trial's run, again
    for run, folder in ((passed_on, "passed"), (latest, "latest")):
        assert run.returncode == 0, run.stderr
        assert f"composed with its best trial's optimizer={chosen}" in run.stdout
        assert OmegaConf.load(tmp_path / folder / ".hydra" / "config.yaml").optimizer._target_ == target
        [(_, _, again, _)] = epoch_lines(run.stdout)
        assert math.isclose(again, best.value, abs_tol=5e-5)
    assert mixed.returncode == 1 and "Traceback" not in mixed.stderr
    assert (
        f"error: study '{STUDY}' in {sqlite_url(tmp_path)} holds trials of optimizer=adamw,sgd, "
        "but this sweep's are optimizer=adam;" in mixed.stderr
    )
    assert len(load(tmp_path, STUDY).get_trials()) == 3
    assert shown.returncode == 0 and f"\n  optimizer={chosen}\n" in shown.stdout
    assert best.user_attrs[ARTIFACT_STORE_ATTR] == {"config": {"_target_": STORE, "base_path": str(store)}}
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "m.pt").read_bytes() == (store / best.user_attrs[MODEL_ARTIFACT_ATTR]).read_bytes()
    assert not (tmp_path / "study-artifacts").exists()  # not the default store
