"""RUNNING trials whose sweep process has ended on this machine, found without waiting.

A trial's heartbeat comes from the sweep process that asked for it (its `worker` user attr,
host:pid). Optuna fails a trial once its heartbeat is `grace_period` seconds old; a sweep
killed outright and rerun within that time would otherwise leave the trial RUNNING until a
later sweep. A worker on this host whose process is gone is certainly dead, so its trials
can be failed and queued again at once. Workers on other hosts are left to the heartbeat.
"""

from __future__ import annotations

import os
import socket

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from .study import FAIL_REASON_ATTR, WORKER_ATTR


def worker_ended(worker: str | None) -> bool:
    """Whether `worker` (host:pid) is a process of this host that no longer exists."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def stranded_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's RUNNING trials whose worker has ended on this host."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return [t for t in running if worker_ended(t.user_attrs.get(WORKER_ATTR))]


def recover_stranded(study: optuna.Study, storage: BaseStorage, max_retry: int = 1) -> list[int]:
    """Fail the stranded trials and queue each again, as Optuna's stale-trial callback does;
    the numbers of those failed."""
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    study_id = storage.get_study_id_from_name(study.study_name)
    failed = []
    for trial in stranded_trials(study):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        worker = trial.user_attrs.get(WORKER_ATTR)
        storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, f"its sweep process ({worker}) ended")
        study.tell(trial.number, state=TrialState.FAIL)
        retry(study, storage.get_trial(trial_id))
        failed.append(trial.number)
    return failed
