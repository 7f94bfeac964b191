"""What a launched trial's JobReturn records in the study: its value, PRUNED, or FAIL with a reason.

Another worker may have finished the trial first (it found this process's
heartbeat stale and failed it, queuing a retry): then the study keeps that,
and this process's result is dropped with a warning.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from optuna.trial import FrozenTrial, TrialState

from sweeps.study import FAIL_REASON_ATTR

log = logging.getLogger(__name__)


def record_outcome(study: optuna.Study, trial: optuna.Trial, ret: JobReturn) -> tuple[FrozenTrial, bool]:
    """The trial as stored, and whether this outcome is the one recorded."""
    if ret.status == JobStatus.COMPLETED:
        try:
            value = float(ret.return_value)
        except (TypeError, ValueError):
            value = math.nan
        if math.isfinite(value):
            return _record(study, trial, values=value)
        reason = f"the task returned {ret.return_value!r}, not a finite float"
    else:
        error = ret._return_value
        if isinstance(error, optuna.TrialPruned):
            return _record(study, trial, state=TrialState.PRUNED)
        reason = f"{type(error).__name__}: {error}"
    reason_set = _set_fail_reason(trial, reason)
    return _record(study, trial, state=TrialState.FAIL, finished_elsewhere=not reason_set)


def fail_trial(study: optuna.Study, trial: optuna.Trial, reason: str) -> FrozenTrial:
    """Mark `trial` FAIL with `reason` (unless another worker has finished it); the trial as stored."""
    _set_fail_reason(trial, reason)
    return study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def _set_fail_reason(trial: optuna.Trial, reason: str) -> bool:
    """Whether it was set: not if another worker has finished the trial already."""
    try:
        trial.set_user_attr(FAIL_REASON_ATTR, reason)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    return True


def _record(
    study: optuna.Study, trial: optuna.Trial, finished_elsewhere: bool = False, **outcome: Any
) -> tuple[FrozenTrial, bool]:
    try:
        frozen = study.tell(trial, skip_if_finished=True, **outcome)
    except RuntimeError as e:
        # The grid sampler calls study.stop() once its grid is covered,
        # which Optuna allows only inside study.optimize; the outcome is
        # stored before that (and n_trials is capped at the grid's size).
        if "Study.stop" not in str(e):
            raise
        frozen = trial.storage.get_trial(trial._trial_id)
    recorded = not finished_elsewhere and frozen.state == outcome.get("state", TrialState.COMPLETE)
    if not recorded:
        log.warning("trial %d was marked %s by another worker; its result is dropped", trial.number, frozen.state.name)
    return frozen, recorded
