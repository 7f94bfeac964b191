"""examples/lightning, an app in lightning-hydra-template's shape, swept with pruning through the
installed distribution: the shipped PruningCallback reports each validation epoch, a pruned
trial's trainer stops gracefully, and the study records it PRUNED with its last value."""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.cli import ROOT, copy_example, run_example

pytest.importorskip("lightning")
EPOCHS = 3


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_example(tmp_path_factory.mktemp("app"), "lightning")


def search(app: Path, storage: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The template's command, `python train.py -m hparams_search=...`, on a slice of the bundled sample."""
    return run_example(
        app,
        "train.py",
        "-m",
        "hparams_search=mnist_optuna",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=lit",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.pruner.n_startup_trials=1",
        f"data.data_dir={ROOT / 'data' / 'sample'}",
        "data.train_size=1000",
        "data.val_size=500",
        "data.batch_size=100",
        "model.net.hidden=32",
        f"trainer.max_epochs={EPOCHS}",
        *args,
    )


def test_a_pruned_lightning_trial_stops_its_trainer_and_is_recorded_pruned(app: Path, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'lit.db'}"
    good = search(app, storage, "model.optimizer.lr=0.01", f"hydra.sweep.dir={tmp_path / 'good'}")
    assert good.returncode == 0, good.stderr[-3000:]
    # A learning rate that cannot learn: worse than the first trial at the first epoch.
    bad = search(app, storage, "model.optimizer.lr=1e-9", f"hydra.sweep.dir={tmp_path / 'bad'}")
    assert bad.returncode == 0, bad.stderr[-3000:]

    completed, pruned = optuna.load_study(study_name="lit", storage=storage).trials
    assert completed.state == TrialState.COMPLETE
    assert sorted(completed.intermediate_values) == list(range(EPOCHS))  # one report per epoch
    assert completed.value == max(completed.intermediate_values.values())  # val/acc_best, returned
    assert pruned.state == TrialState.PRUNED
    assert sorted(pruned.intermediate_values) == [0]  # the trainer stopped after the first epoch
    assert pruned.value == pruned.intermediate_values[0] < completed.intermediate_values[0]
    output = bad.stdout + bad.stderr
    assert "Trial 1 pruned at epoch 0 (val/acc=" in output and "the trainer stops" in output
    assert "trial   1 PRUNED" in output
    [job_log] = (tmp_path / "bad").glob("*/train.log")
    assert "Traceback" not in output and "Traceback" not in job_log.read_text()


def test_a_monitor_mode_against_the_study_s_direction_fails_the_trial_with_why(
    app: Path, tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'lit.db'}"
    result = search(app, storage, "hydra.sweeper.direction=minimize", "hydra.sweeper.max_failure_rate=1")
    assert result.returncode == 0, result.stderr[-3000:]
    [trial] = optuna.load_study(study_name="lit", storage=storage).trials
    assert trial.state == TrialState.FAIL and not trial.intermediate_values
    assert trial.user_attrs["fail_reason"] == (
        "ValueError: PruningCallback(monitor='val/acc', mode='max') reports a metric that improves as it "
        "grows, but study 'lit' is set to minimize it; expected hydra.sweeper.direction=maximize, or mode=min"
    )
