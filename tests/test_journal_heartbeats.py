"""Heartbeats on a journal file: a worker killed outright has its trial failed and queued again by

# Each test runs a sweep, the app or a tool in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow
Optuna's own fail_stale_trials and RetryHeartbeatStaleTrialCallback; where Optuna's heartbeat base
class cannot be imported, a journal still works, without heartbeats."""

from __future__ import annotations

import importlib
import signal
import subprocess
import sys
import types
from pathlib import Path

import optuna
import pytest
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from pruning_optuna_sweeper import journal
from pruning_optuna_sweeper.storage import open_storage
from tests.sweep_helpers import wait_for

# A worker that asks for a trial, beats for it once, and waits to be killed.
WORKER = """
import sys, time, optuna
from pruning_optuna_sweeper.storage import open_storage
storage = open_storage(sys.argv[1], heartbeat_interval=1, grace_period=2)
study = optuna.create_study(study_name="beats", storage=storage)
trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(0, trial.number))
print("asked", flush=True)
time.sleep(600)
"""


@pytest.mark.filterwarnings("ignore", category=ExperimentalWarning)
def test_a_killed_worker_s_trial_on_a_journal_is_failed_and_queued_again(tmp_path: Path) -> None:
    url = f"journal:///{tmp_path / 'optuna.log'}"
    worker = subprocess.Popen([sys.executable, "-c", WORKER, url], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "asked"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    retry = RetryHeartbeatStaleTrialCallback(max_retry=1)
    storage = open_storage(url, heartbeat_interval=1, grace_period=2, stale_trial_callback=retry)
    study = optuna.load_study(study_name="beats", storage=storage)
    [asked] = study.get_trials()
    assert asked.state == TrialState.RUNNING

    def failed_as_stale() -> bool:
        optuna.storages.fail_stale_trials(study)
        return study.get_trials()[0].state == TrialState.FAIL

    wait_for(failed_as_stale, 15, "the dead worker's trial to go stale")
    [_, queued] = study.get_trials()
    assert queued.state == TrialState.WAITING
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(queued) == asked.number
    assert queued.params == asked.params


def test_without_optuna_s_heartbeat_class_a_journal_works_without_heartbeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An Optuna whose private module lacks BaseHeartbeat (as a later version might), seen by the
    import in pruning_optuna_sweeper/journal.py only."""
    try:
        with monkeypatch.context() as patched:
            patched.setitem(sys.modules, "optuna.storages._heartbeat", types.ModuleType("moved"))
            importlib.reload(journal)
        assert journal.BaseHeartbeat is None
        storage = journal.open_journal(tmp_path / "optuna.log", heartbeat_interval=1, grace_period=2)
        assert type(storage) is optuna.storages.journal.JournalStorage
        study = optuna.create_study(storage=storage)
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
        assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 3
    finally:
        importlib.reload(journal)
    assert journal.BaseHeartbeat is not None
