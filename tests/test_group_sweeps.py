"""A sweep over a config group (`optimizer=choice(sgd,adamw)`): the choice is a categorical param, the
closing hint names the best trial's, best_of trains with it, and refuses a run without it.

As for any key, a group the command line names wins over the trial's (`best_of=... optimizer=adam` trains
with Adam and says so, as `params=default` does in test_sweep.py); a group left at its default is
refused, since Hydra composed it before best_of could choose it."""

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

STUDY = "linearnet-mnist-sample"
STORE = "optuna.artifacts.FileSystemArtifactStore"


def test_an_optimizer_sweep_records_the_choice_and_best_of_trains_with_it_or_refuses_the_default(
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
    study = load(tmp_path)
    trials, best = study.get_trials(), study.best_trial
    chosen = best.params["optimizer"]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(t.distributions["optimizer"] == CategoricalDistribution(("sgd", "adamw")) for t in trials)
    hint = shlex.split(best_of_hint(swept))
    assert f"optimizer={chosen}" in hint and f"best_of={STUDY}" in hint

    trained = run_main([*hint, "progress=false", "hydra.run.dir=best"], tmp_path)
    refused = run_main([o for o in hint if not o.startswith("optimizer=")] + ["progress=false"], tmp_path)
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
    assert refused.returncode == 1
    assert (
        f"error: best_of={STUDY}: trial {best.number} ran with optimizer={chosen}, "
        "this run has optimizer=adam; "
        f"expected optimizer={chosen} on this command line" in refused.stderr
    )
    assert "Traceback" not in refused.stderr and epoch_lines(refused.stdout) == []
    assert shown.returncode == 0 and f"\n  optimizer={chosen}\n" in shown.stdout
    assert best.user_attrs[ARTIFACT_STORE_ATTR] == {"config": {"_target_": STORE, "base_path": str(store)}}
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "m.pt").read_bytes() == (store / best.user_attrs[MODEL_ARTIFACT_ATTR]).read_bytes()
    assert not (tmp_path / "study-artifacts").exists()  # not the default store
