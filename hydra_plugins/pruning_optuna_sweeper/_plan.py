"""What the trial loop runs (Plan), and the errors that stop a sweep."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from hydra.core.utils import JobReturn
from optuna.trial import FrozenTrial

from pruning_optuna_sweeper.storage import first_line


class SweepAborted(RuntimeError):
    """Too many trials failed."""


class LaunchError(RuntimeError):
    """The Hydra launcher failed to run a trial (most often its settings)."""


def could_not_start(launcher_name: str, error: BaseException) -> LaunchError:
    """A launcher whose setup, or whose workers' start, failed before any trial."""
    return LaunchError(f"hydra/launcher={launcher_name} could not start: {error}")


@dataclass
class Plan:
    """What the loop runs: how many trials, how many at once, and how to launch one."""

    n_trials: int
    n_jobs: int
    batch: bool
    launch: Callable[[list[str], int], JobReturn]  # overrides, job number -> the job's return
    in_thread: bool  # whether launching can run in a thread (the launcher runs jobs elsewhere)
    max_failure_rate: float
    total_trials: int | None
    extend_search_space: Callable[[optuna.Trial], None] | None
    reseed_sampler: Callable[[int], optuna.samplers.BaseSampler] | None  # seed -> a sampler like the sweep's
    sampler_seed: int | None
    launcher_name: str = "basic"
    # Queue a failed trial again, as for a dead worker's (Optuna's retry callback, max_retry times).
    retry: Callable[[optuna.Study, FrozenTrial], None] | None = None
    job_overrides: list[str] = field(default_factory=list)  # the same for every trial
    # Blocks until the launcher can start trials at once (the pool launcher's warm workers): the
    # first trials are asked for then, so that their recorded times are their own.
    ready: Callable[[], None] | None = None


def gist(error: BaseException) -> str:
    """An error's first line; for a job that failed with a traceback (submitit's FailedJobError:
    "... failed during processing with trace: ... ModuleNotFoundError: ..."), its last line too."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # submitit is the SLURM launcher's, optional: its type is checked where that launcher loaded it.
    submitit = sys.modules.get("submitit.core.utils")
    if len(lines) > 1 and submitit is not None and isinstance(error, submitit.FailedJobError):
        return f"{lines[0].rstrip(':')}: {lines[-1]}"
    return first_line(error)
