"""Asking for a trial: its place in the budget, the records of who runs it, its parameters.

Each write is one round trip to the storage, so a trial gets few: the two
records of its process, its first heartbeat, its parameters and, where the
sweep fixes values, those. A retry queued by Optuna's callback carries its
failed trial's parameters and user attrs: it keeps the parameters this sweep
has a range for, and its inherited failure reason is cleared.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

import numpy as np
import optuna
from optuna.storages import BaseStorage

from pruning_optuna_sweeper.heartbeat import Heartbeats
from pruning_optuna_sweeper.storage import first_line
from pruning_optuna_sweeper.stranded import PROCESS_ATTR, process_record
from pruning_optuna_sweeper.study import FAIL_REASON_ATTR, FIXED_PARAMS_ATTR, WORKER_ATTR
from pruning_optuna_sweeper.trial import TRIAL_ENV, trial_env_value

from . import _budget as budget
from ._outcome import fail_trial
from ._search_space import SearchSpace, suggest

if TYPE_CHECKING:
    from ._loop import Plan

log = logging.getLogger(__name__)
WORKER = f"{socket.gethostname()}:{os.getpid()}"


class Asker:
    """Asks the study for trials, sampled and recorded; `ids` maps each one's number to its id."""

    def __init__(
        self,
        study: optuna.Study,
        storage: BaseStorage,
        space: SearchSpace,
        plan: Plan,
        heartbeats: Heartbeats,
    ) -> None:
        self.study = study
        self.storage = storage
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.space = space
        self.plan = plan
        self.heartbeats = heartbeats
        self.ids: dict[int, int] = {}
        self.dropped: dict[int, set[str]] = {}  # a retry's queued parameters this sweep has no range for
        self.sampled_before = False
        self.waiting_logged = False
        # A trial asked but not launched that the storage refused to mark FAIL (a full disk).
        self.unclosed: optuna.Trial | None = None

    def ask(self) -> optuna.Trial | None:
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
            trial_id = self.ids[trial.number] = self.storage.get_trial_id_from_study_id_trial_number(
                self.study_id, trial.number
            )
            self.heartbeats.add(trial_id)  # should this process die now, the trial goes stale and is retried
            trial = self._sample(trial, trial_id)
            if total is not None and not budget.admits(self.study, trial.number, total):
                fail_trial(self.study, trial, f"over budget: total_trials={total} already taken")
                self.forget(trial.number)
                return None
        except BaseException as error:
            try:
                fail_trial(self.study, trial, f"not launched: {type(error).__name__}: {first_line(error)}")
            except Exception:  # the storage refuses writes: the loop closes it with those in flight
                self.unclosed = trial
            if trial_id is not None and self.unclosed is not trial:
                self.forget(trial.number)
            raise
        return trial

    def overrides(self, trial: optuna.Trial) -> list[str]:
        """The trial's job's command line: its parameters, the sweep's fixed values, where it is."""
        params = {k: v for k, v in trial.params.items() if k not in self.dropped.get(trial.number, ())}
        env = trial_env_value(self.study.study_name, trial.number, WORKER, self.plan.journal)
        return [
            *(f"{name}={value}" for name, value in {**params, **self.space.fixed}.items()),
            *self.space.fixed_overrides,
            *self.plan.job_overrides,
            f"++hydra.job.env_set.{TRIAL_ENV}={env}",
        ]

    def trial_id(self, number: int) -> int:
        """The storage's id of this sweep's trial `number` (looked up once)."""
        if number not in self.ids:
            self.ids[number] = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        return self.ids[number]

    def forget(self, number: int) -> None:
        """The trial has ended for this process: no more beats for it."""
        self.heartbeats.discard(self.ids.pop(number))
        self.dropped.pop(number, None)

    def _sample(self, trial: optuna.Trial, trial_id: int) -> optuna.Trial:
        """Suggest the search space's parameters (a queued retry keeps its own), then the app's extension."""
        queued = trial.params  # a retry's, set when Optuna's callback queued it
        if not self.sampled_before:
            self.sampled_before = True
            trial = self._reseeded(trial, trial_id)
        for name, distribution in self.space.distributions.items():
            suggest(trial, name, distribution)
        dropped = self.dropped[trial.number] = set(queued) - set(self.space.distributions)
        if dropped:
            log.warning(
                "trial %d was queued with %s, which this sweep has no range for: "
                "it runs with this command's values",
                trial.number,
                ", ".join(sorted(dropped)),
            )
        inherited = self.storage.get_trial_user_attrs(trial_id)  # a retry's, from its failed trial
        if inherited.get(FAIL_REASON_ATTR):
            trial.set_user_attr(FAIL_REASON_ATTR, None)  # its failed trial's: it has not failed
        for name, value in self.space.fixed.items():
            trial.set_user_attr(name, value)  # as the stock sweeper records them
        if self.space.fixed or FIXED_PARAMS_ATTR in inherited:  # a retry records this run's, not its first
            trial.set_user_attr(FIXED_PARAMS_ATTR, self.space.fixed)
        if self.plan.extend_search_space is not None:
            self.plan.extend_search_space(trial)
            overlap = set(trial.params) & set(self.space.fixed)
            if overlap:
                raise ValueError(
                    f"custom_search_space suggests parameters the sweep fixes: {sorted(overlap)}"
                )
        return trial

    def _reseeded(self, trial: optuna.Trial, trial_id: int) -> optuna.Trial:
        """The trial, with the sampler seeded again unless this process's first trial is the study's.

        A seeded sampler draws the same points in every process that starts
        with it: a rerun would repeat the first run's trials, and workers
        started together each other's. So the sampler is seeded again from the
        configured seed and that trial's number, which the storage hands out
        once. A grid or quasi-random sequence is the same in every process:
        its seed says which order, and the study which points are done.
        """
        seed = self.plan.sampler_seed
        fixed_sequence = isinstance(
            self.study.sampler, (optuna.samplers.GridSampler, optuna.samplers.QMCSampler)
        )
        if not trial.number or seed is None or self.plan.reseed_sampler is None or fixed_sequence:
            return trial
        stream_seed = int(np.random.SeedSequence([seed, trial.number]).generate_state(1)[0])
        self.study.sampler = self.plan.reseed_sampler(stream_seed)
        log.info(
            "The study already had trials: sampler seeded with %d (seed %d, trial %d).",
            stream_seed,
            seed,
            trial.number,
        )
        return optuna.Trial(self.study, trial_id)
