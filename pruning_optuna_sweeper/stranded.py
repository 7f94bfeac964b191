"""RUNNING trials whose sweep process has ended on this machine, found without waiting.

A trial's heartbeat comes from the sweep process that asked for it. Optuna fails a trial once
its heartbeat is `grace_period` seconds old; a sweep killed outright and rerun within that time
would otherwise leave the trial RUNNING until a later sweep. So a sweep records on each trial,
as its first write after asking, which process it is (PROCESS_ATTR: this boot of this machine,
its pid namespace, the pid and the process's start time). A process of this machine and
namespace that no longer runs is certainly dead, and its trials can be failed and queued again
at once. Any other (another machine, another container, a record this process cannot judge) is
left to the heartbeats.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from .compat import update_finished_trial_error
from .study import FAIL_REASON_ATTR, WORKER_ATTR

PROCESS_ATTR = "worker_process"


@cache
def _namespace() -> str | None:
    """This boot of this machine and this pid namespace; None where /proc does not say."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def _started(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), or None when it does not run.

    Read from /proc, exact: psutil's create_time adds the boot time by the wall clock, which
    NTP moves, so two processes could read one process's start differently."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_record(number: int) -> dict[str, Any]:
    """What a sweep records on trial `number` about its own process."""
    return {"trial": number, "namespace": _namespace(), "pid": os.getpid(), "started": _started(os.getpid())}


def process_ended(record: Any, number: int) -> bool:
    """Whether `record` names a process of this machine and pid namespace that no longer runs
    (gone, or its pid reused by a later process); False whenever that cannot be told."""
    if not isinstance(record, dict) or record.get("trial") != number or _namespace() is None:
        return False  # a retry's copy of its failed trial's record, or a process judged elsewhere
    if record.get("namespace") != _namespace() or not record.get("started"):
        return False
    return bool(_started(int(record["pid"])) != record["started"])


def stranded_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's RUNNING trials whose sweep process has ended on this machine."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return [t for t in running if process_ended(t.user_attrs.get(PROCESS_ATTR), t.number)]


def recover_stranded(
    study: optuna.Study,
    storage: BaseStorage,
    retry: Callable[[optuna.Study, FrozenTrial], None] | None,
) -> list[FrozenTrial]:
    """Fail the stranded trials and queue each again with `retry` (Optuna's stale-trial callback,
    as for a stale heartbeat); the trials this call failed (another process may race for one)."""
    study_id = storage.get_study_id_from_name(study.study_name)
    failed = []
    for trial in stranded_trials(study):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        worker = trial.user_attrs.get(WORKER_ATTR, "its sweep process")
        try:
            storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, f"{worker} ended")
            if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                continue
        except update_finished_trial_error():
            continue  # failed meanwhile by another process: its retry is that one's
        frozen = storage.get_trial(trial_id)
        if retry is not None:
            retry(study, frozen)
        failed.append(frozen)
    return failed
