"""What a launched trial's JobReturn records in the study: its values, PRUNED, or FAIL with a reason.

A task may stop on the pruner's word either by raising TrialPruned or by returning normally
after `current_trial().mark_pruned()` (PRUNED_ATTR on the trial): both are recorded PRUNED.

Another worker may have finished the trial first (it found this process's
heartbeat stale and failed it, queuing a retry): then the study keeps that,
and this process's result is dropped with a warning.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from optuna.trial import FrozenTrial, TrialState

from pruning_optuna_sweeper.compat import update_finished_trial_error
from pruning_optuna_sweeper.storage import first_line, root_cause
from pruning_optuna_sweeper.study import FAIL_REASON_ATTR, PRUNED_ATTR

log = logging.getLogger(__name__)


def record_outcome(study: optuna.Study, trial: optuna.Trial, ret: JobReturn) -> tuple[FrozenTrial, bool]:
    """The trial as stored, and whether this outcome is the one recorded."""
    if ret.status == JobStatus.COMPLETED and _marked_pruned(study, trial):
        # A graceful stop (`current_trial().mark_pruned()`): PRUNED with its last reported value,
        # whatever the task returned after the stop.
        return _tell(study, trial, state=TrialState.PRUNED)
    if ret.status == JobStatus.COMPLETED:
        values, reason = _values(ret.return_value, len(study.directions))
        if values is not None:
            return _tell(study, trial, values=values)
    else:
        try:
            # A failed job's return_value raises the task's exception, after writing a line to
            # stderr that the trial's own line below says better: read only for that raise.
            with contextlib.redirect_stderr(io.StringIO()):
                _ = ret.return_value
            reason = "the job failed"
        except optuna.TrialPruned:
            return _tell(study, trial, state=TrialState.PRUNED)
        except Exception as error:
            cause = root_cause(error) if isinstance(error, optuna.exceptions.StorageInternalError) else error
            reason = f"{type(cause).__name__}: {first_line(cause)}"
    reason_set = _set_fail_reason(trial, reason)
    return _tell(study, trial, state=TrialState.FAIL, finished_elsewhere=not reason_set)


def _marked_pruned(study: optuna.Study, trial: optuna.Trial) -> bool:
    """Whether the task marked the trial pruned: read from the storage, where the task's process
    wrote it (`trial.user_attrs` holds what this process has seen)."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return any(t.number == trial.number and PRUNED_ATTR in t.user_attrs for t in running)


def fail_trial(study: optuna.Study, trial: optuna.Trial, reason: str) -> FrozenTrial:
    """Mark `trial` FAIL with `reason` (unless another worker has finished it); the trial as stored."""
    _set_fail_reason(trial, reason)
    return study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def _values(returned: Any, n_objectives: int) -> tuple[list[float] | None, str]:
    """The task's return value as the study's values, or None and why not."""
    try:
        values = [float(returned)] if n_objectives == 1 else [float(v) for v in returned]
    except (TypeError, ValueError):
        expected = "a float" if n_objectives == 1 else f"a sequence of {n_objectives} floats"
        return None, f"the task returned {returned!r}, expected {expected}"
    if len(values) != n_objectives:
        return None, f"the task returned {len(values)} values for {n_objectives} objectives"
    if not all(math.isfinite(v) for v in values):
        return None, f"the task returned {returned!r}, not finite"
    return values, ""


def _set_fail_reason(trial: optuna.Trial, reason: str | None) -> bool:
    """Whether it was set: not if another worker has finished the trial already."""
    try:
        trial.set_user_attr(FAIL_REASON_ATTR, reason)
    except update_finished_trial_error():
        return False
    return True


def grid_covered(study: optuna.Study) -> bool:
    """Whether the study's sampler is a grid that every point of has been run."""
    sampler = study.sampler
    return isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study)


def _tell(
    study: optuna.Study, trial: optuna.Trial, finished_elsewhere: bool = False, **outcome: Any
) -> tuple[FrozenTrial, bool]:
    try:
        frozen = study.tell(trial, skip_if_finished=True, **outcome)
    except RuntimeError:
        # The grid sampler calls study.stop() once its grid is covered, which Optuna allows only
        # inside study.optimize (a plain RuntimeError); the outcome is stored first.
        if not grid_covered(study):
            raise
        frozen = study.get_trials(deepcopy=False)[trial.number]
    recorded = not finished_elsewhere and frozen.state == outcome.get("state", TrialState.COMPLETE)
    if not recorded:
        log.warning(
            "trial %d was marked %s by another worker; its result is dropped", trial.number, frozen.state.name
        )
    return frozen, recorded
