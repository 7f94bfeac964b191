"""Where a trial's task runs, seen from both sides: the job records itself, the sweep reads it.

A launcher that runs jobs on other machines (SLURM through
hydra-submitit-launcher) hides them from the sweep: it cannot see a job die,
and Ctrl-C does not reach it. So a task that finds its trial
(`pruning_optuna_sweeper.current_trial()`) in a process that is not the sweep's own nor one
of its descendants records where it runs (JOB_ATTR: host, pid, and the
SLURM job id from SLURM_JOB_ID) and sends the trial's heartbeats itself
from then on; the sweep stops beating for that trial. A job that is
cancelled or killed then stops beating, and after `grace_period` the sweep
marks its trial FAIL and Optuna's retry callback queues it again. On an
interrupt the sweep cancels the SLURM jobs its unfinished trials recorded.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from typing import Any

import psutil
from optuna.storages import BaseStorage

from pruning_optuna_sweeper.heartbeat import Heartbeats
from pruning_optuna_sweeper.study import JOB_ATTR

SLURM_JOB_ENV = "SLURM_JOB_ID"
HOST = socket.gethostname()

_taken: set[int] = set()  # trial ids this process has recorded itself on
_beats: Heartbeats | None = None  # until this process ends (a job runs one storage's trials)
_lock = threading.Lock()


def _ancestors() -> set[int]:
    """The pids of this process's parent, grandparent and so on."""
    try:
        return {parent.pid for parent in psutil.Process().parents()}
    except psutil.Error:  # an ancestor ended while being read
        return {os.getppid()}


def sweep_can_see(sweep: str | None) -> bool:
    """Whether the sweep process `sweep` (host:pid) sees this process end: it is that process
    or one of its descendants (a worker it forked), whose end its launcher reports."""
    if not sweep:
        return True  # a sweep that did not say: it beats as before
    host, _, pid = sweep.rpartition(":")
    if host != HOST:
        return False
    return int(pid) == os.getpid() or int(pid) in _ancestors()


def take_over(storage: BaseStorage, trial_id: int, number: int, sweep: str | None) -> None:
    """Record where this trial runs; where its sweep cannot see this process, beat for it from here."""
    global _beats
    with _lock:
        if trial_id in _taken:
            return
        _taken.add(trial_id)
        _beats = _beats or Heartbeats(storage)
    beats = bool(_beats.interval) and not sweep_can_see(sweep)
    # The trial's number too: a retry is created with its failed trial's user attrs.
    record: dict[str, Any] = {"trial": number, "host": HOST, "pid": os.getpid(), "beats": beats}
    if os.environ.get(SLURM_JOB_ENV):
        record["slurm_job_id"] = os.environ[SLURM_JOB_ENV]
    if beats:
        _beats.add(trial_id)  # its first beat before the sweep reads `beats` and stops
    storage.set_trial_user_attr(trial_id, JOB_ATTR, record)


def cancel_slurm_jobs(job_ids: list[str]) -> str | None:
    """`scancel` the SLURM jobs; None when done, else why not (no scancel here, or its error)."""
    if not job_ids:
        return None
    if shutil.which("scancel") is None:
        return "scancel is not on PATH"
    try:
        result = subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{type(error).__name__}: {error}"
    return None if result.returncode == 0 else (result.stderr.strip() or f"exit status {result.returncode}")
