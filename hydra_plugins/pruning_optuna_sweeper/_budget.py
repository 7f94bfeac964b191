"""The study-wide trial budget (`total_trials`), shared by every worker.

A trial counts once it is COMPLETE or PRUNED; a FAIL frees its place (a
crashed worker's trial is retried under a new number). Trial numbers are
handed out by the storage in order, so "fewer than N lower-numbered trials
that can still count" decides every trial the same way in every worker,
whatever order they ask in: the study never ends with more than N.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
MAY_COUNT = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=COUNTED))


def places_taken(study: optuna.Study) -> int:
    """Trials that count or may still count: finished, running or queued."""
    return len(study.get_trials(deepcopy=False, states=MAY_COUNT))


def waiting_count(study: optuna.Study) -> int:
    """Queued trials (retries): each holds a place until a worker asks for it."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def admits(study: optuna.Study, number: int, total: int) -> bool:
    """Whether trial `number` has a place within the budget of `total`."""
    ahead = [t for t in study.get_trials(deepcopy=False, states=MAY_COUNT) if t.number < number]
    return len(ahead) < total
