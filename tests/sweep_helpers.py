"""Running real sweeps and reading their studies back with Optuna."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from tests.cli import offline_args, run_main

SHORT_EPOCHS = "params.epoch_count=int(interval(1, 3))"


def retry_of(trial: FrozenTrial) -> int | None:
    """The trial a retry runs again, as Optuna's retry callback recorded it (None: no retry)."""
    return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def sqlite_url(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'study.db'}"


def sweep_args(workdir: Path, *extra: str, n_trials: int = 3, parallel: bool = False) -> list[str]:
    """A small sweep on the bundled sample into `workdir`'s own SQLite study: one trial at a
    time in the sweep's own process (reproducible, and no worker to start), or the app's
    default, as many at once as there are cores (`parallel`)."""
    return [
        "-m",
        "hydra/sweeper=optuna",
        *([] if parallel else ["hydra/launcher=basic", "hydra.sweeper.n_jobs=1"]),
        f"hydra.sweeper.n_trials={n_trials}",
        f"storage={sqlite_url(workdir)}",
        *offline_args(workdir),
        *extra,
    ]


def run_sweep(
    workdir: Path, *extra: str, n_trials: int = 3, timeout: float = 300, parallel: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    return run_main(
        sweep_args(workdir, *extra, n_trials=n_trials, parallel=parallel), workdir, timeout=timeout, **env
    )


def load(workdir: Path, name: str = "linearnet-mnist-sample") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=sqlite_url(workdir))


def trial_run_dir(workdir: Path, study: optuna.Study, number: int) -> Path:
    """A trial's TensorBoard run: runs/<study>/trial-NNNN."""
    return workdir / "runs" / study.study_name / f"trial-{number:04d}"


def trial_log(workdir: Path, number: int) -> str:
    """Trial `number`'s own log (the app's sweeps: job_output=file), in the sweep folder that ran it."""
    [log] = workdir.glob(f"multirun/*/*/{number}/main.log")
    return log.read_text()


def states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials()]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll an observable condition until it holds, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def best_of_hint(result: subprocess.CompletedProcess[str]) -> str:
    """The arguments of the sweep's closing "Train with its best parameters: python main.py ..." command."""
    [hint] = re.findall(
        r"Train with its best parameters: +\S*python main.py (.*)", result.stdout + result.stderr
    )
    return hint
