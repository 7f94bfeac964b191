"""Ask, launch, tell: the sweep's trials, one batch at a time or as many as n_jobs in flight.

Batch mode is the stock sweeper's: ask n_jobs trials, launch them, wait for
all, tell all. Async mode starts a new trial as soon as any running one ends
(COMPLETE, PRUNED or FAIL): each trial is launched on its own, from a thread
of this process, through the configured launcher, which runs it elsewhere
(joblib's workers, a SLURM job). Only this thread asks and tells.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import optuna
from hydra.core.utils import JobReturn
from optuna.exceptions import StorageInternalError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from pruning_optuna_sweeper.checkpoint import CHECKPOINT_ATTR
from pruning_optuna_sweeper.job import cancel_slurm_jobs
from pruning_optuna_sweeper.storage import first_line, root_cause
from pruning_optuna_sweeper.stranded import PROCESS_ATTR, process_record, recover_stranded
from pruning_optuna_sweeper.study import (
    FAIL_REASON_ATTR,
    FIXED_PARAMS_ATTR,
    RETRY_OF_ATTR,
    WORKER_ATTR,
    describe_trial,
    job_record,
)
from pruning_optuna_sweeper.trial import TRIAL_ENV, trial_env_value

from . import _budget as budget
from ._cleanup import make_room, stop_child_processes
from ._console import Progress
from ._heartbeat import Heartbeats
from ._outcome import fail_trial, record_outcome
from ._search_space import SearchSpace, suggest

log = logging.getLogger(__name__)
BUDGET_POLL_S = 1.0
# The system attr where Optuna's enqueue_trial keeps a queued trial's parameters.
OPTUNA_QUEUED_PARAMS = "fixed_params"
WORKER = f"{socket.gethostname()}:{os.getpid()}"


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
    describe: Callable[[optuna.Study], str] = field(default=lambda study: "")
    job_overrides: list[str] = field(default_factory=list)  # the same for every trial
    # Blocks until the launcher can start trials at once (the pool launcher's warm workers): the
    # first trials are asked for then, so that their recorded times are their own.
    ready: Callable[[], None] | None = None


class TrialLoop:
    def __init__(
        self, study: optuna.Study, storage: BaseStorage, space: SearchSpace, plan: Plan, progress: Progress
    ) -> None:
        self.study = study
        self.progress = progress
        self.storage = storage
        self.space = space
        self.plan = plan
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.heartbeats = Heartbeats(storage)
        self.results: queue.SimpleQueue[tuple[int, JobReturn | BaseException]] = queue.SimpleQueue()
        self.in_flight: dict[int, optuna.Trial] = {}
        self.launched = self.failed = self.ended = 0
        self.best = ""
        self.last_fail_reason = "unknown"
        self.sampled_before = False
        self.waiting_logged = False
        self.unmarked: list[int] = []  # trials this process could not close (the storage refused)
        self.next_watch = 0.0

    def run(self) -> tuple[int, int]:
        """Launch the plan's trials; the number launched and failed."""
        with self.heartbeats.running():
            try:
                self._wait_for_launcher()
                self._recover_stranded()
                while not self._finished():
                    self._fill()
                    if self.in_flight:
                        self._collect()
                    elif not self._finished():
                        time.sleep(BUDGET_POLL_S)  # the budget is held by other workers' running trials
                self._recover_stranded()  # another sweep of this host killed meanwhile
            except BaseException as error:
                self._close_in_flight(error)
                raise
        return self.launched, self.failed

    def _wait_for_launcher(self) -> None:
        if self.plan.ready is None:
            return
        try:
            self.plan.ready()
        except Exception as error:  # no trial asked yet: nothing to close
            raise could_not_start(self.plan.launcher_name, error) from None

    def _recover_stranded(self) -> None:
        """Fail and queue again the trials of sweep processes of this host that have ended (killed
        outright) without waiting for their heartbeats to go stale."""
        stranded = recover_stranded(self.study, self.storage, self.plan.retry)
        for trial in stranded:
            log.warning(
                "trial %d was RUNNING for a sweep process that has ended: marked FAIL%s.",
                trial.number,
                " and queued again" if self.plan.retry is not None else "",
            )
        self._cancel_jobs(
            [
                str(r["slurm_job_id"])
                for t in stranded
                if (r := job_record(t.user_attrs, t.number)) and r.get("slurm_job_id")
            ]
        )

    def _finished(self) -> bool:
        if self.in_flight:
            return False
        if self.launched >= self.plan.n_trials:
            return True
        if isinstance(self.study.sampler, optuna.samplers.GridSampler) and self.study.sampler.is_exhausted(
            self.study
        ):
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
            optuna.storages.fail_stale_trials(self.study)
            trial = self._ask()
            if trial is None:
                break
            asked.append(trial)
            self.in_flight[trial.number] = trial
            self.launched += 1
        for trial in asked:
            self._start(trial)

    def _ask(self) -> optuna.Trial | None:
        """A new trial with its parameters, or None when the budget has no place for one now."""
        total = self.plan.total_trials
        if (
            total is not None
            and budget.places_taken(self.study) >= total
            and not budget.waiting_count(self.study)
        ):
            if not self.waiting_logged:
                log.info("Budget total_trials=%d taken by running trials; waiting for them to end.", total)
                self.waiting_logged = True
            return None
        trial = self.study.ask()
        trial_id = None
        try:
            # First: which process runs it (a retry carries its failed trial's records till now).
            trial.set_user_attr(PROCESS_ATTR, process_record(trial.number))
            trial.set_user_attr(WORKER_ATTR, WORKER)
            trial_id = self._id_of(trial)
            self.heartbeats.add(trial_id)  # should this process die now, the trial goes stale and is retried
            trial = self._sample(trial)
            if total is not None and not budget.admits(self.study, trial.number, total):
                fail_trial(self.study, trial, f"over budget: total_trials={total} already taken")
                self.heartbeats.discard(trial_id)
                return None
        except BaseException as error:
            fail_trial(self.study, trial, f"not launched: {type(error).__name__}: {first_line(error)}")
            if trial_id is not None:
                self.heartbeats.discard(trial_id)
            raise
        return trial

    def _sample(self, trial: optuna.Trial) -> optuna.Trial:
        """Suggest the search space's parameters (a queued retry keeps its own), then the app's extension.

        A seeded sampler draws the same points in every process that starts
        with it: a rerun would repeat the first run's trials, and workers
        started together each other's. So unless this process's first trial
        is the study's first, the sampler is seeded again from the configured
        seed and that trial's number, which the storage hands out once.
        """
        if not self.sampled_before:
            self.sampled_before = True
            seed = self.plan.sampler_seed
            # A grid or quasi-random sequence is the same in every process: its seed says which
            # order, and the study which points are done.
            fixed_sequence = isinstance(
                self.study.sampler, (optuna.samplers.GridSampler, optuna.samplers.QMCSampler)
            )
            if (
                trial.number
                and seed is not None
                and self.plan.reseed_sampler is not None
                and not fixed_sequence
            ):
                stream_seed = int(np.random.SeedSequence([seed, trial.number]).generate_state(1)[0])
                self.study.sampler = self.plan.reseed_sampler(stream_seed)
                trial = optuna.Trial(self.study, self._id_of(trial))
                log.info(
                    "The study already had trials: sampler seeded with %d (seed %d, trial %d).",
                    stream_seed,
                    seed,
                    trial.number,
                )
        for name, distribution in self.space.distributions.items():
            suggest(trial, name, distribution)
        # A queued retry keeps the values it was queued with where this sweep has a range for them.
        queued = self.storage.get_trial(self._id_of(trial)).system_attrs.get(OPTUNA_QUEUED_PARAMS, {})
        dropped = sorted(set(queued) - set(self.space.distributions))
        if dropped:
            log.warning(
                "trial %d was queued with %s, which this sweep has no range for: "
                "it runs with this command's values",
                trial.number,
                ", ".join(dropped),
            )
        for name, value in self.space.fixed.items():
            trial.set_user_attr(name, value)  # as the stock sweeper records them
        if (
            self.space.fixed or FIXED_PARAMS_ATTR in trial.user_attrs
        ):  # a retry records this run's, not its first
            trial.set_user_attr(FIXED_PARAMS_ATTR, self.space.fixed)
        if self.plan.extend_search_space is not None:
            self.plan.extend_search_space(trial)
            overlap = set(trial.params) & set(self.space.fixed)
            if overlap:
                raise ValueError(
                    f"custom_search_space suggests parameters the sweep fixes: {sorted(overlap)}"
                )
        return trial

    def _start(self, trial: optuna.Trial) -> None:
        overrides = [
            *(f"{name}={value}" for name, value in {**trial.params, **self.space.fixed}.items()),
            *self.space.fixed_overrides,
            *self.plan.job_overrides,
            f"++hydra.job.env_set.{TRIAL_ENV}={trial_env_value(self.study.study_name, trial.number, WORKER)}",
        ]

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
        ended = []
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
        if time.monotonic() < self.next_watch:
            return False
        self.next_watch = time.monotonic() + self.heartbeats.interval
        optuna.storages.fail_stale_trials(self.study)
        given_up = False
        for trial in list(self.in_flight.values()):
            trial_id = self._id_of(trial)
            frozen = self.storage.get_trial(trial_id)
            record = job_record(frozen.user_attrs, trial.number) or {}
            if record.get("beats"):
                self.heartbeats.discard(trial_id)
            if frozen.state.is_finished():
                self._closed(trial)
                given_up = True
                if frozen.state == TrialState.FAIL:
                    self._count_failure(f"trial {trial.number}'s job stopped sending heartbeats")
                log.warning(  # describe_trial names its SLURM job, where it had one
                    "%s | its job stopped sending heartbeats: given up%s",
                    describe_trial(frozen),
                    "; its retry is queued" if self._retried(trial.number) else "",
                )
        return given_up

    def _retried(self, number: int) -> bool:
        retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
            return any(retried(t) == number for t in waiting)

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
                    f"{type(outcome).__name__}: {_gist(outcome)}; expected launcher settings its plugin "
                    "accepts (hydra.launcher.*), a writable hydra.sweep.dir, and jobs that can import the "
                    "app where they run (started in its folder, or PYTHONPATH set)"
                )
                fail_trial(self.study, trial, f"LaunchError: {launch_error}")
                self._closed(trial)
                continue
            frozen, recorded = record_outcome(self.study, trial, outcome)
            self._closed(trial)
            if recorded and frozen.state == TrialState.FAIL:
                self._count_failure(frozen.user_attrs.get(FAIL_REASON_ATTR) or "unknown")
            log.info("%s | best: %s", describe_trial(frozen), self.best)
        if launch_error is not None:
            raise launch_error

    def _job_started(self, trial: optuna.Trial) -> bool:
        """Whether the trial's job reached its task (recorded itself): the launcher's settings worked."""
        return job_record(self.storage.get_trial(self._id_of(trial)).user_attrs, trial.number) is not None

    def _job_lost(self, trial: optuna.Trial, error: BaseException) -> None:
        """A job that started and then ended without a result (killed, out of memory or time; the
        launcher says so where the cluster keeps accounting): the trial's failure, not the sweep's.
        It is marked FAIL and queued again, as for a dead worker."""
        reason = f"its job ended without a result: {type(error).__name__}: {_gist(error)}"
        failed_before = self._state(trial).is_finished()  # by its stale heartbeat: queued again then
        frozen = fail_trial(self.study, trial, reason)
        self._closed(trial)
        if failed_before:
            return
        self._count_failure(reason)
        queued = frozen.state == TrialState.FAIL and self.plan.retry is not None
        if queued:
            self.plan.retry(self.study, frozen)
        log.warning("%s | %s%s", describe_trial(frozen), reason, "; queued again" if queued else "")

    def _count_failure(self, reason: str) -> None:
        """A trial of this sweep failed (max_failure_rate counts these); `reason` is the latest."""
        self.failed += 1
        self.last_fail_reason = reason

    def _closed(self, trial: optuna.Trial) -> None:
        del self.in_flight[trial.number]
        self.heartbeats.discard(self._id_of(trial))
        self.ended += 1
        self.best = self.plan.describe(self.study)  # once a trial: the progress line and its log line
        self.progress.update(self.ended, self.best)

    def _close_in_flight(self, error: BaseException) -> None:
        """Leave no trial of this process RUNNING: mark the unfinished ones FAIL; after an
        interrupt, queue them again and stop the jobs still running."""
        interrupted = isinstance(error, KeyboardInterrupt)
        cause = root_cause(error) if isinstance(error, (StorageInternalError, SQLAlchemyError)) else error
        reason = "interrupted" if interrupted else f"{type(cause).__name__}: {first_line(cause)}"
        queued, unfinished, job_ids, resumable = [], [], [], []
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
        for trial in self.in_flight.values():
            try:
                if self._state(trial).is_finished():
                    continue
                unfinished.append(trial)
                record = job_record(self.storage.get_trial(self._id_of(trial)).user_attrs, trial.number)
                if record and record.get("slurm_job_id"):
                    job_ids.append(str(record["slurm_job_id"]))
                frozen = fail_trial(self.study, trial, reason)
                if interrupted and frozen.state == TrialState.FAIL:
                    # The same parameters once more; an interrupt is not the trial's fault, so it
                    # is queued whatever its retries so far.
                    attrs = {k: v for k, v in frozen.user_attrs.items() if k != FAIL_REASON_ATTR}
                    self.study.enqueue_trial(frozen.params, user_attrs={**attrs, RETRY_OF_ATTR: trial.number})
                    queued.append(trial.number)
                    if attrs.get(CHECKPOINT_ATTR):  # its task saved one (pruning_optuna_sweeper.checkpoint)
                        resumable.append(trial.number)
            except Exception:  # the storage refuses writes (a full disk): said by the caller
                self.unmarked.append(trial.number)
        unfinished = [t for t in unfinished if t.number not in self.unmarked]
        if self.plan.in_thread:
            stop_child_processes()  # their jobs' results would be dropped; the exit would wait for them
            self._cancel_jobs(job_ids)
        marked = ", ".join(f"trial {t.number}" for t in unfinished) or "no trial"
        if not unfinished and not interrupted:
            return
        if interrupted:
            log.warning(
                "Sweep interrupted: %s marked FAIL, %s queued again; "
                "rerun the same command to resume the study.",
                marked,
                ", ".join(f"trial {n}" for n in queued) or "none",
            )
            if resumable:
                log.warning(
                    "The rerun resumes %s from %s last checkpoint%s.",
                    ", ".join(f"trial {n}" for n in resumable),
                    "its" if len(resumable) == 1 else "their",
                    "" if len(resumable) == 1 else "s",
                )
        else:
            log.error("Sweep stopped: %s marked FAIL (%s).", marked, reason)

    def _cancel_jobs(self, job_ids: list[str]) -> None:
        """Cancel the SLURM jobs of trials this process closed: they are not its children, and
        would run on for trials that are over. A job still queued has recorded nothing: when it
        starts it finds its trial ended and does not run it (pruning_optuna_sweeper.current_trial)."""
        if not job_ids:
            return
        problem = cancel_slurm_jobs(job_ids)
        if problem:
            log.error("Could not cancel SLURM job %s (%s): cancel with scancel.", " ".join(job_ids), problem)
        else:
            log.warning("Cancelled SLURM job %s of the closed trials.", " ".join(job_ids))

    def _id_of(self, trial: optuna.Trial) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)

    def _state(self, trial: optuna.Trial) -> TrialState:
        return self.storage.get_trial(self._id_of(trial)).state


def _gist(error: BaseException) -> str:
    """An error's first line, and its last where it holds a job's traceback (submitit's
    FailedJobError: "... failed during processing with trace: ... ModuleNotFoundError: ...")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1 and "Traceback" in str(error):
        return f"{lines[0].rstrip(':')}: {lines[-1]}"
    return first_line(error)
