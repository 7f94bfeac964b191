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

# Each test runs a sweep, the app or a tool in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow

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


@pytest.fixture(scope="module")
def study_with_a_good_trial(app: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A SQLite study whose trial 0 learns (COMPLETE): the median a trial that cannot learn falls below."""
    folder = tmp_path_factory.mktemp("lit")
    storage = f"sqlite:///{folder / 'lit.db'}"
    good = search(app, storage, "model.optimizer.lr=0.01", f"hydra.sweep.dir={folder / 'good'}")
    assert good.returncode == 0, good.stderr[-3000:]
    return storage, folder


def cannot_learn(app: Path, storage: str, sweep_dir: Path, *args: str) -> optuna.trial.FrozenTrial:
    """One more trial, with a learning rate that cannot learn; the study's trial it adds."""
    bad = search(app, storage, "model.optimizer.lr=1e-9", f"hydra.sweep.dir={sweep_dir}", *args)
    assert bad.returncode == 0, bad.stderr[-3000:]
    assert "Traceback" not in bad.stdout + bad.stderr
    [job_log] = sweep_dir.glob("*/train.log")
    assert "Traceback" not in job_log.read_text()
    trial = optuna.load_study(study_name="lit", storage=storage).trials[-1]
    assert trial.state == TrialState.PRUNED
    assert sorted(trial.intermediate_values) == [0]  # the trainer stopped after the first epoch
    assert trial.value == trial.intermediate_values[0]
    return trial


def test_a_pruned_lightning_trial_stops_its_trainer_and_is_recorded_pruned(
    app: Path, study_with_a_good_trial: tuple[str, Path], tmp_path: Path
) -> None:
    storage, _ = study_with_a_good_trial
    pruned = cannot_learn(app, storage, tmp_path / "bad")

    completed = optuna.load_study(study_name="lit", storage=storage).trials[0]
    assert completed.state == TrialState.COMPLETE
    assert sorted(completed.intermediate_values) == list(range(EPOCHS))  # one report per epoch
    assert completed.value == max(completed.intermediate_values.values())  # val/acc_best, returned
    assert pruned.value < completed.intermediate_values[0]
    log = next((tmp_path / "bad").glob("*/train.log")).read_text()
    assert f"Trial {pruned.number} pruned at epoch 0 (val/acc=" in log and "the trainer stops" in log


@pytest.mark.xfail(
    reason="DDP on two CPU processes is unstable here: some runs pass, in others a rank aborts at "
    "teardown or rank 0's reports never reach the study (issue 25, open)",
    strict=False,
)
def test_under_ddp_rank_0_decides_and_both_ranks_stop(
    app: Path, study_with_a_good_trial: tuple[str, Path], tmp_path: Path
) -> None:
    """Two CPU processes on gloo (ddp_spawn: Lightning's `ddp` starts its other ranks by running the
    command line again, which in a multirun runs the sweep again). A rank that did not stop would
    wait for the other at the next epoch's collectives: the sweep would not end."""
    storage, _ = study_with_a_good_trial
    cannot_learn(app, storage, tmp_path / "ddp", "+trainer.strategy=ddp_spawn", "trainer.devices=2")


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
