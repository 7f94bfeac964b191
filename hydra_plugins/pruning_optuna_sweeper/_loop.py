"""Ask, launch, tell: the sweep's trials, one batch at a time or as many as n_jobs in flight.

Batch mode is the stock sweeper's: ask n_jobs trials, launch them, wait for
all, tell all. Async mode starts a new trial as soon as any running one ends
(COMPLETE, PRUNED or FAIL): each trial is launched on its own, from a thread
of this process, through the configured launcher, which runs it elsewhere
(joblib's workers, a SLURM job). Only this thread asks and tells. Per trial
it reads no more of the study than that trial: the stale-trial check runs
once per heartbeat interval, and the best so far is kept as trials end.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from hydra.core.utils import JobReturn
from optuna.exceptions import StorageInternalError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from pruning_optuna_sweeper.heartbeat import Heartbeats
from pruning_optuna_sweeper.storage import first_line, root_cause
from pruning_optuna_sweeper.study import FAIL_REASON_ATTR, describe_trial, job_record

from . import _budget as budget
from . import _closing as closing
from ._asking import Asker
from ._cleanup import make_room, stop_child_processes
from ._console import Progress
from ._outcome import fail_trial, grid_covered, record_outcome
from ._search_space import SearchSpace
from ._summary import BestSoFar

log = logging.getLogger(__name__)
BUDGET_POLL_S = 1.0


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
    # The journal file that holds an in-memory study for the sweep's life, for jobs in other processes.
    journal: str | None = None


class TrialLoop:
    def __init__(
        self, study: optuna.Study, storage: BaseStorage, space: SearchSpace, plan: Plan, progress: Progress
    ) -> None:
        self.study = study
        self.progress = progress
        self.storage = storage
        self.plan = plan
        self.heartbeats = Heartbeats(storage)
        self.asker = Asker(study, storage, space, plan, self.heartbeats)
        self.results: queue.SimpleQueue[tuple[int, JobReturn | BaseException]] = queue.SimpleQueue()
        self.in_flight: dict[int, optuna.Trial] = {}
        self.launched = self.failed = self.ended = 0
        self.best = BestSoFar(study)
        self.last_fail_reason = "unknown"
        self.unmarked: list[int] = []  # trials this process could not close (the storage refused)
        self.next_stale_check = 0.0

    def run(self) -> tuple[int, int]:
        """Launch the plan's trials; the number launched and failed."""
        try:
            self._wait_for_launcher()
            closing.recover(self.study, self.storage, self.plan.retry)
            while not self._finished():
                self._fill()
                if self.in_flight:
                    self._collect()
                elif not self._finished():
                    time.sleep(BUDGET_POLL_S)  # the budget is held by other workers' running trials
            closing.recover(self.study, self.storage, self.plan.retry)  # another sweep of this host killed
        except BaseException as error:
            self._close_in_flight(error)
            raise
        finally:
            self.heartbeats.stop()
        return self.launched, self.failed

    def _wait_for_launcher(self) -> None:
        if self.plan.ready is None:
            return
        try:
            self.plan.ready()
        except Exception as error:  # no trial asked yet: nothing to close
            raise could_not_start(self.plan.launcher_name, error) from None

    def _finished(self) -> bool:
        if self.in_flight:
            return False
        if self.launched >= self.plan.n_trials:
            return True
        if grid_covered(self.study):
            log.info("The study has run every point of the grid: nothing left to sample.")
            return True
        total = self.plan.total_trials
        if total is not None and budget.finished_count(self.study) >= total:
            log.info("The study holds %d COMPLETE or PRUNED trials: total_trials=%d reached.", total, total)
            return True
        return False

    def _fill(self) -> None:
        """Ask for and start trials while there is room: a whole batch once the last has ended, or one
        for each free place in async mode."""
        if self.plan.batch and self.in_flight:
            return
        room = min(self.plan.n_jobs - len(self.in_flight), self.plan.n_trials - self.launched)
        asked = []
        for _ in range(room):
            self._check_stale()
            try:
                trial = self.asker.ask()
            except BaseException:
                if self.asker.unclosed is not None:  # closed with those in flight
                    self.in_flight[self.asker.unclosed.number] = self.asker.unclosed
                raise
            if trial is None:
                break
            asked.append(trial)
            self.in_flight[trial.number] = trial
            self.launched += 1
        for trial in asked:
            self._start(trial)

    def _check_stale(self) -> bool:
        """Optuna's stale-trial check (failing and queueing again trials whose heartbeats stopped),
        at most once per heartbeat interval: a trial goes stale only after its grace period."""
        if time.monotonic() < self.next_stale_check:
            return False
        self.next_stale_check = time.monotonic() + (self.heartbeats.interval or 0)
        optuna.storages.fail_stale_trials(self.study)
        return True

    def _start(self, trial: optuna.Trial) -> None:
        overrides = self.asker.overrides(trial)

        def launch() -> None:
            try:
                self.results.put((trial.number, self.plan.launch(overrides, trial.number)))
            except BaseException as error:
                self.results.put((trial.number, error))

        if self.plan.in_thread:
            threading.Thread(target=launch, name=f"trial-{trial.number}", daemon=True).start()
        else:
            # The basic launcher runs the job here; an interrupt must unwind this thread, so it is not caught.
            self.results.put((trial.number, self.plan.launch(overrides, trial.number)))

    def _collect(self) -> None:
        """Wait for trials to end and record them: the whole batch, or the next one to end."""
        ended: list[tuple[int, JobReturn | BaseException]] = []
        self._watch()  # also where results keep coming: it checks once per heartbeat interval
        while not ended or (self.plan.batch and len(ended) < len(self.in_flight)):
            try:
                number, outcome = self.results.get(timeout=1.0)  # the timeout lets Ctrl-C through
            except queue.Empty:
                if self._watch():
                    break  # a trial was ended elsewhere: its place is free
                continue
            if number in self.in_flight:
                ended.append((number, outcome))
            else:
                log.warning("trial %d's job came back after it was given up: its result is dropped", number)
        order = {number: i for i, number in enumerate(self.in_flight)}
        self._record(sorted(ended, key=lambda e: order[e[0]] if self.plan.batch else 0))
        allowed = math.floor(self.plan.max_failure_rate * self.plan.n_trials)
        if self.failed > allowed:
            raise SweepAborted(
                f"{self.failed} of {self.launched} trials failed, more than max_failure_rate="
                f"{self.plan.max_failure_rate} of n_trials={self.plan.n_trials} allows ({allowed}); "
                f"last reason: {self.last_fail_reason.rstrip('.')}. Completed trials stay in the study."
            )

    def _watch(self) -> bool:
        """Follow async trials whose jobs run where this process cannot see them end
        (pruning_optuna_sweeper/job.py).

        Once a trial's job beats for it, this process stops; a job cancelled or killed then goes
        stale, and `fail_stale_trials` marks its trial FAIL and queues it again. A trial so ended
        is given up here (its launcher may wait forever for a job that left no result). Checked
        once per heartbeat interval; returns whether a trial was given up.
        """
        if self.plan.batch or not self.plan.in_thread or not self.heartbeats.interval:
            return False
        if not self._check_stale():
            return False
        given_up = False
        for trial in list(self.in_flight.values()):
            frozen = self.storage.get_trial(self.asker.ids[trial.number])
            if (job_record(frozen.user_attrs, trial.number) or {}).get("beats"):
                self.heartbeats.discard(self.asker.ids[trial.number])
            if frozen.state.is_finished():
                self._closed(trial, frozen)
                given_up = True
                if frozen.state == TrialState.FAIL:
                    self._count_failure(f"trial {trial.number}'s job stopped sending heartbeats")
                log.warning(  # describe_trial names its SLURM job, where it had one
                    "%s | its job stopped sending heartbeats: given up%s",
                    describe_trial(frozen),
                    "; its retry is queued" if closing.retry_queued(self.study, trial.number) else "",
                )
        return given_up

    def _record(self, ended: list[tuple[int, JobReturn | BaseException]]) -> None:
        """Record the ended trials' outcomes; then raise the first launcher failure among them."""
        launch_error = None
        for number, outcome in ended:
            trial = self.in_flight[number]  # until recorded: a storage failure here leaves it to be closed
            if isinstance(outcome, BaseException) and self._job_started(trial):
                self._job_lost(trial, outcome)
                continue
            if isinstance(outcome, BaseException):
                launch_error = launch_error or LaunchError(
                    f"hydra/launcher={self.plan.launcher_name} failed to run trial {number}: "
                    f"{type(outcome).__name__}: {gist(outcome)}; expected launcher settings its plugin "
                    "accepts (hydra.launcher.*), a writable hydra.sweep.dir, and jobs that can import the "
                    "app where they run (started in its folder, or PYTHONPATH set)"
                )
                self._closed(trial, fail_trial(self.study, trial, f"LaunchError: {launch_error}"))
                continue
            frozen, recorded = record_outcome(self.study, trial, outcome)
            self._closed(trial, frozen)
            if recorded and frozen.state == TrialState.FAIL:
                self._count_failure(frozen.user_attrs.get(FAIL_REASON_ATTR) or "unknown")
            log.info("%s | best: %s", describe_trial(frozen), self.best)
        if launch_error is not None:
            raise launch_error

    def _job_started(self, trial: optuna.Trial) -> bool:
        """Whether the trial's job reached its task (recorded itself): the launcher's settings worked."""
        user_attrs = self.storage.get_trial_user_attrs(self.asker.ids[trial.number])
        return job_record(user_attrs, trial.number) is not None

    def _job_lost(self, trial: optuna.Trial, error: BaseException) -> None:
        """A job that started and then ended without a result (killed, out of memory or time; the
        launcher says so where the cluster keeps accounting): the trial's failure, not the sweep's.
        It is marked FAIL and queued again, as for a dead worker."""
        reason = f"its job ended without a result: {type(error).__name__}: {gist(error)}"
        # Failed before by its stale heartbeat: queued again then.
        failed_before = self.storage.get_trial(self.asker.ids[trial.number]).state.is_finished()
        frozen = fail_trial(self.study, trial, reason)
        self._closed(trial, frozen)
        if failed_before:
            return
        self._count_failure(reason)
        queued = frozen.state == TrialState.FAIL and self.plan.retry is not None
        if queued and self.plan.retry is not None:
            self.plan.retry(self.study, frozen)
        log.warning("%s | %s%s", describe_trial(frozen), reason, "; queued again" if queued else "")

    def _count_failure(self, reason: str) -> None:
        """A trial of this sweep failed (max_failure_rate counts these); `reason` is the latest."""
        self.failed += 1
        self.last_fail_reason = reason

    def _closed(self, trial: optuna.Trial, frozen: FrozenTrial) -> None:
        del self.in_flight[trial.number]
        self.asker.forget(trial.number)
        self.ended += 1
        self.best.add(frozen)
        self.progress.update(self.ended, str(self.best))

    def _close_in_flight(self, error: BaseException) -> None:
        """Leave no trial of this process RUNNING: mark the unfinished ones FAIL; after an
        interrupt, queue them again and stop the jobs still running."""
        interrupted = isinstance(error, KeyboardInterrupt)
        cause = root_cause(error) if isinstance(error, (StorageInternalError, SQLAlchemyError)) else error
        reason = "interrupted" if interrupted else f"{type(cause).__name__}: {first_line(cause)}"
        if not interrupted:
            make_room(self.storage)
        ended = []  # returned before the stop: recorded as they ended, not as interrupted
        while not self.results.empty():
            ended.append(self.results.get_nowait())
        # Should the storage refuse writes, those trials are closed below, or said by the caller.
        with contextlib.suppress(Exception):
            self._record(
                [(n, out) for n, out in ended if not isinstance(out, BaseException) and n in self.in_flight]
            )
        in_flight = {t: self.asker.trial_id(t.number) for t in self.in_flight.values()}
        closed = closing.close(self.study, self.storage, in_flight, reason, interrupted)
        self.unmarked = closed.unmarked
        if self.plan.in_thread:
            stop_child_processes()  # their jobs' results would be dropped; the exit would wait for them
            closing.cancel_jobs(closed.job_ids)
        closing.say(closed, reason, interrupted)


def gist(error: BaseException) -> str:
    """An error's first line; for a job that failed with a traceback (submitit's FailedJobError:
    "... failed during processing with trace: ... ModuleNotFoundError: ..."), its last line too."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # submitit is the SLURM launcher's, optional: its type is checked where that launcher loaded it.
    submitit = sys.modules.get("submitit.core.utils")
    if len(lines) > 1 and submitit is not None and isinstance(error, submitit.FailedJobError):
        return f"{lines[0].rstrip(':')}: {lines[-1]}"
    return first_line(error)
