"""A few trials in memory with the sweep's sampler and pruner, before the real ones.

Some settings pass the constructors and only fail when first used: a sampler
whose package is not installed (`cmaes`), a Hyperband pruner with
`reduction_factor=1` or `max_resource=0`. Rehearsing on an in-memory study
reports them before any data is loaded or trial recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import optuna

from ._search_space import SearchSpace

T = TypeVar("T")
REHEARSED_TRIALS = 4
REHEARSED_EPOCHS = 3


class RehearsalError(RuntimeError):
    """`setting` ("sampler" or "pruner") failed in use with `cause`."""

    def __init__(self, setting: str, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.setting = setting


def rehearse(
    make_sampler: Callable[[], optuna.samplers.BaseSampler],
    make_pruner: Callable[[], optuna.pruners.BasePruner],
    space: SearchSpace,
    sampler_startup_trials: int = 0,
) -> None:
    """Sample, report, ask the pruner and tell, as a sweep does; raise RehearsalError on the first failure.

    A sampler that draws at random for its first `sampler_startup_trials`
    uses its own model (and package) only after them, so they are rehearsed too.
    """
    optuna_logger = logging.getLogger("optuna")
    level = optuna_logger.level
    optuna_logger.setLevel(logging.WARNING)  # no "Trial finished" lines for trials that are not the sweep's
    try:
        study = optuna.create_study(sampler=make_sampler(), pruner=make_pruner(), direction="maximize")
        for n in range(max(REHEARSED_TRIALS, sampler_startup_trials + 2)):
            trial = _using("sampler", lambda: study.ask(space.distributions))
            for epoch in range(1, REHEARSED_EPOCHS + 1):
                trial.report(0.5 + 0.1 * n + 0.01 * epoch, step=epoch)
                if _using("pruner", trial.should_prune):
                    break
            try:
                study.tell(trial, 0.5 + 0.1 * n)
            except RuntimeError as e:
                if "Study.stop" in str(e):  # the grid sampler, once its grid is covered
                    return
                raise RehearsalError("sampler", e) from e
    finally:
        optuna_logger.setLevel(level)


def _using(setting: str, action: Callable[[], T]) -> T:
    try:
        return action()
    except Exception as e:
        raise RehearsalError(setting, e) from e
