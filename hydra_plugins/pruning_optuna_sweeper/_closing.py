"""Ending a sweep's trials that it cannot finish: trials of ended sweep processes, the trials in
flight when the sweep stops, and the SLURM jobs that run them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from pruning_optuna_sweeper.checkpoint import CHECKPOINT_ATTR
from pruning_optuna_sweeper.compat import retry_callback
from pruning_optuna_sweeper.job import cancel_slurm_jobs
from pruning_optuna_sweeper.stranded import recover_stranded
from pruning_optuna_sweeper.study import job_record

from ._outcome import fail_trial

log = logging.getLogger(__name__)
RetryCallback = Callable[[optuna.Study, FrozenTrial], None]


def recover(study: optuna.Study, storage: BaseStorage, retry: RetryCallback | None) -> None:
    """Fail and queue again the trials of sweep processes of this host that have ended (killed
    outright) without waiting for their heartbeats to go stale; cancel their SLURM jobs."""
    stranded = recover_stranded(study, storage, retry)
    for trial in stranded:
        log.warning(
            "trial %d was RUNNING for a sweep process that has ended: marked FAIL%s.",
            trial.number,
            " and queued again" if retry is not None else "",
        )
    cancel_jobs([slurm_job(t) for t in stranded])


@dataclass
class Closed:
    """What `close` did: trials marked FAIL, those queued again, those the storage refused."""

    marked: list[int] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    unmarked: list[int] = field(default_factory=list)
    resumable: list[int] = field(default_factory=list)  # queued with a checkpoint to resume from
    job_ids: list[str | None] = field(default_factory=list)


def close(
    study: optuna.Study, storage: BaseStorage, trials: dict[optuna.Trial, int], reason: str, interrupted: bool
) -> Closed:
    """Mark the unfinished `trials` (trial: id) FAIL with `reason`; after an interrupt, queue each again."""
    closed = Closed()
    # An interrupt is not the trial's fault: it is queued again whatever its retries so far, with
    # its values so far, to resume from its checkpoint (pruning_optuna_sweeper.checkpoint).
    retry = retry_callback()(max_retry=None, inherit_intermediate_values=True)
    for trial, trial_id in trials.items():
        try:
            before = storage.get_trial(trial_id)
            if before.state.is_finished():
                continue
            frozen = fail_trial(study, trial, reason)
            closed.marked.append(trial.number)
            closed.job_ids.append(slurm_job(before))
            if interrupted and frozen.state == TrialState.FAIL:
                retry(study, frozen)
                closed.queued.append(trial.number)
                if frozen.user_attrs.get(CHECKPOINT_ATTR):
                    closed.resumable.append(trial.number)
        except Exception:  # the storage refuses writes (a full disk): said by the caller
            closed.unmarked.append(trial.number)
    closed.marked = [n for n in closed.marked if n not in closed.unmarked]
    return closed


def slurm_job(trial: FrozenTrial) -> str | None:
    """The id of the SLURM job that runs the trial, where one recorded itself."""
    record = job_record(trial.user_attrs, trial.number) or {}
    return str(record["slurm_job_id"]) if record.get("slurm_job_id") else None


def cancel_jobs(job_ids: list[str | None]) -> None:
    """Cancel the SLURM jobs of trials this process closed: they are not its children, and
    would run on for trials that are over. A job still queued has recorded nothing: when it
    starts it finds its trial ended and does not run it (pruning_optuna_sweeper.current_trial)."""
    ids = [i for i in job_ids if i]
    if not ids:
        return
    problem = cancel_slurm_jobs(ids)
    if problem:
        log.error("Could not cancel SLURM job %s (%s): cancel with scancel.", " ".join(ids), problem)
    else:
        log.warning("Cancelled SLURM job %s of the closed trials.", " ".join(ids))


def say(closed: Closed, reason: str, interrupted: bool) -> None:
    """Log what `close` did: how to resume after an interrupt, or which trials an error ended."""
    marked = ", ".join(f"trial {n}" for n in closed.marked) or "no trial"
    if interrupted:
        log.warning(
            "Sweep interrupted: %s marked FAIL, %s queued again; rerun the same command to resume the study.",
            marked,
            ", ".join(f"trial {n}" for n in closed.queued) or "none",
        )
        if closed.resumable:
            log.warning(
                "The rerun resumes %s from %s last checkpoint%s.",
                ", ".join(f"trial {n}" for n in closed.resumable),
                "its" if len(closed.resumable) == 1 else "their",
                "" if len(closed.resumable) == 1 else "s",
            )
    elif closed.marked:
        log.error("Sweep stopped: %s marked FAIL (%s).", marked, reason)


def retry_queued(study: optuna.Study, number: int) -> bool:
    """Whether a retry of trial `number` is queued or running (Optuna's callback queued it)."""
    retried = retry_callback().retried_trial_number
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    return any(retried(t) == number for t in waiting)
