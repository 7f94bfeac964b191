"""The sweep: ask Optuna for trials, launch them through Hydra, tell the outcome.

Only the sweep process asks and tells. Each trial's task finds its trial
through its overrides (`sweep.study_name`, `sweep.trial_number`) and the
storage, reports every epoch there, and raises TrialPruned when the pruner
says so; whatever the launcher, the outcome comes back here as a JobReturn
(recorded by _outcome.py).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import re
import shlex
import signal
import socket
import time
import warnings
from pathlib import Path
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from ds.config import ConfigError
from ds.datasets import DatasetError
from ds.errors import first_line
from sweeps.reporter import build_pruner
from sweeps.storage import StorageError, mask_url, open_storage
from sweeps.study import (
    DATASET_ATTR,
    FAIL_REASON_ATTR,
    FIXED_PARAMS_ATTR,
    RETRY_OF_ATTR,
    SEARCHPATH_ATTR,
    DatasetMismatchError,
    StudyError,
    check_dataset,
    check_single_objective,
    default_study_name,
    describe_trial,
    queued_params,
    requeue,
)

from . import _budget as budget
from ._config_reuse import ReusingConfigLoader
from ._heartbeat import heartbeats
from ._outcome import fail_trial, record_outcome
from ._quoting import hydra_quoted, shell_override
from ._rehearsal import RehearsalError, rehearse
from ._search_space import SearchSpace, SearchSpaceError, check_against_study, parse_search_space
from ._settings import SweepSettingsError, built, check_settings, check_trials_reach
from ._signals import interrupts_held, sigterm_as_interrupt
from ._summary import best_so_far, summarise

log = logging.getLogger(__name__)
# Heartbeats and stale-trial recovery are marked experimental since Optuna 2.9.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# study.ask warns that heartbeats belong to study.optimize; _heartbeat.py beats for asked trials.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")

BUDGET_POLL_S = 1.0
# What hydra.sweeper.sampler may build: Optuna's samplers (the stock plugin's grid sampler is a partial).
SAMPLER_WHITELIST = ("optuna.samplers.*", "hydra_plugins.hydra_optuna_sweeper.*")
WORKER_ATTR = "worker"
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # which sweep process ran a trial


class SweepAborted(RuntimeError):
    """Too many trials failed."""


class LaunchError(RuntimeError):
    """The Hydra launcher failed to run a batch of trials (most often its settings)."""


# Errors in what the user asked for: reported in one paragraph, no traceback.
USER_ERRORS = (
    SweepAborted,
    LaunchError,
    SweepSettingsError,
    SearchSpaceError,
    StorageError,
    StudyError,
    DatasetMismatchError,
    DatasetError,
    ConfigError,
)


class SweepRun:
    def __init__(
        self, settings: dict[str, Any], *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.settings = OmegaConf.create(settings)
        self.config = config
        self.group_options = hydra_context.config_loader.get_group_options
        self.searchpath = [o for o in config.hydra.overrides.hydra if _key(o) == "hydra.searchpath"]
        hydra_context = dataclasses.replace(hydra_context, config_loader=ReusingConfigLoader(hydra_context.config_loader))
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )
        self.job_idx = 0
        check_settings(self.settings)
        check_trials_reach(self.settings.storage, chdir=bool(config.hydra.job.chdir))
        self.n_trials = self.settings.n_trials
        self.runs_folder: str | None = None
        self.sampled_before = False  # whether this process has sampled a trial yet

    def sweep(self, arguments: list[str]) -> None:
        started = time.perf_counter()
        space = parse_search_space(self.settings.params, arguments, self.config, self.group_options)
        sampler = built("sampler", lambda: self._sampler(space))
        pruner = built("pruner", lambda: build_pruner(self.settings.pruner))
        try:
            startup = OmegaConf.select(self.settings.sampler, "n_startup_trials", default=None) or 0
            rehearse(lambda: self._sampler(space), lambda: build_pruner(self.settings.pruner), space, startup)
        except RehearsalError as e:
            given = {k: v for k, v in OmegaConf.to_container(self.settings[e.setting]).items() if k != "_target_"}
            package = "; a sampler's own package, such as cmaes for CmaEsSampler, must be installed" if e.setting == "sampler" else ""
            raise SweepSettingsError(
                f"hydra.sweeper.{e.setting} fails in use, rehearsed on a few in-memory trials with {given}: {e}; "
                f"expected settings its class can run with (hydra.sweeper.{e.setting}._target_ names it{package})"
            ) from None
        self.storage = storage = open_storage(
            self.settings.storage,
            heartbeat_interval=self.settings.heartbeat_interval,
            grace_period=self.settings.grace_period,
            stale_trial_callback=_recover_stale_trial,
        )
        from ds.run import load_data  # torch, imported once data is needed: settings errors come fast

        identity = load_data(self.config).identity
        study_name = self.settings.study_name or default_study_name(identity)
        study = optuna.create_study(
            study_name=study_name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            direction=self.settings.direction,
            load_if_exists=True,
        )
        check_single_objective(study, mask_url(self.settings.storage))
        if study.direction.name.lower() != self.settings.direction:
            raise SweepSettingsError(
                f"direction={self.settings.direction}, but study {study_name!r} in {mask_url(self.settings.storage)} "
                f"was created to {study.direction.name.lower()}; expected the study's direction, or another study "
                "(hydra.sweeper.study_name=...)"
            )
        check_dataset(study, identity, mask_url(self.settings.storage))
        check_against_study(space, study, mask_url(self.settings.storage))
        study.set_user_attr(DATASET_ATTR, dataclasses.asdict(identity))
        log.info(
            "Study %r in %s, data %s, %s, %s",
            study_name,
            mask_url(self.settings.storage),
            identity,
            type(study.sampler).__name__,
            type(study.pruner).__name__,
        )
        log.info("Search space: %s", {k: repr(v) for k, v in space.distributions.items()})

        with sigterm_as_interrupt():
            launched, failed = self._run_trials(study, space)
        # What best_of needs again: the same data (also when DS_DATA_DIR named it).
        reused = [shlex.quote(a) for a in arguments if _key(a) == "paths.data" or _key(a).startswith("data.")]
        if "DS_DATA_DIR" in os.environ and not any(_key(a) == "paths.data" for a in arguments):
            reused.append(shell_override("paths.data", str(self.config.paths.data)))
        summarise(
            study,
            storage=self.settings.storage,
            sweep_dir=Path(self.config.hydra.sweep.dir),
            launched=launched,
            failed=failed,
            seconds=time.perf_counter() - started,
            reused_overrides=reused,
            is_group=lambda key: bool(self.group_options(key)),
        )

    def _sampler(self, space: SearchSpace, **overrides: Any) -> optuna.samplers.BaseSampler:
        sampler = instantiate(
            self.settings.sampler,
            **overrides,
            _execution_whitelist_=SAMPLER_WHITELIST,
        )
        if isinstance(sampler, functools.partial):  # the grid sampler wants its grid
            continuous = [k for k, d in space.distributions.items() if isinstance(d, FloatDistribution) and d.step is None]
            if continuous:
                raise SweepSettingsError(
                    f"the grid sampler needs a finite grid, but the sweep's range for {', '.join(continuous)} is a "
                    "continuous interval; expected choice(...) or range(...) for it, or a value"
                )
            grid = {k: OptunaSweeperImpl._to_grid_sampler_choices(d) for k, d in space.distributions.items()}
            sampler = sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
        return sampler

    def _run_trials(self, study: optuna.Study, space: SearchSpace) -> tuple[int, int]:
        n_trials, total = self.n_trials, self.settings.total_trials
        allowed_failures = math.floor(self.settings.max_failure_rate * n_trials)
        launched = failed = 0
        last_fail_reason = "unknown"
        waiting_logged = False
        while launched < n_trials:
            optuna.storages.fail_stale_trials(study)
            if isinstance(study.sampler, optuna.samplers.GridSampler) and study.sampler.is_exhausted(study):
                log.info("The study has run every point of the grid: nothing left to sample.")
                break
            taken = budget.places_taken(study) if total is not None else 0
            if total is not None and taken >= total:
                if (finished := budget.finished_count(study)) >= total:
                    log.info("The study holds %d COMPLETE or PRUNED trials: total_trials=%d reached.", finished, total)
                    break
                # Others' running trials may fill the budget, or fail and free a place;
                # a queued trial (a retry) holds a place that only asking can use.
                if not budget.waiting_count(study):
                    if not waiting_logged:
                        log.info("Budget total_trials=%d taken by running trials; waiting for them to end.", total)
                        waiting_logged = True
                    time.sleep(BUDGET_POLL_S)
                    continue
            count = min(self.settings.n_jobs, n_trials - launched)
            if total is not None:
                count = min(count, max(1, total - taken))
            trials = self._ask(study, space, count, total)
            if not trials:
                continue
            with self._failing_on_interrupt(study, trials):
                returns = self._launch(study, trials, space)
                for trial, ret in zip(trials, returns):
                    frozen, recorded = record_outcome(study, trial, ret)
                    if recorded and frozen.state == TrialState.FAIL:
                        failed += 1
                        last_fail_reason = frozen.user_attrs.get(FAIL_REASON_ATTR, "unknown")
                    log.info("%s | best: %s", describe_trial(frozen), best_so_far(study))
            launched += len(trials)
            if failed > allowed_failures:
                raise SweepAborted(
                    f"{failed} of {launched} trials failed, more than max_failure_rate="
                    f"{self.settings.max_failure_rate} of n_trials={n_trials} allows ({allowed_failures}); "
                    f"last reason: {last_fail_reason}. Completed trials stay in the study."
                )
        return launched, failed

    def _ask(self, study: optuna.Study, space: SearchSpace, count: int, total: int | None) -> list[optuna.Trial]:
        trials: list[optuna.Trial] = []
        try:
            for _ in range(count):
                trial = study.ask()
                trials.append(trial)
                # From now on, should this process die, the trial goes stale and is retried.
                if self.storage.get_heartbeat_interval():
                    self.storage.record_heartbeat(trial._trial_id)
                trial = trials[-1] = self._sample(study, trial, space)
                if total is not None and not budget.admits(study, trial.number, total):
                    trials.pop()
                    fail_trial(study, trial, f"over budget: total_trials={total} already taken")
                    break
                trial.set_user_attr(WORKER_ATTR, WORKER)
                # What this command fixes and searches, not what a queued retry's first run did.
                if space.fixed_training or FIXED_PARAMS_ATTR in trial.user_attrs:
                    trial.set_user_attr(FIXED_PARAMS_ATTR, space.fixed_training)
                if self.searchpath or SEARCHPATH_ATTR in trial.user_attrs:
                    trial.set_user_attr(SEARCHPATH_ATTR, self.searchpath)
        except BaseException as error:
            # Not launched: left RUNNING, they would hold their places until found stale.
            # A retry taken from the queue goes back to it on an interrupt.
            with interrupts_held():
                for trial in trials:
                    frozen = fail_trial(study, trial, f"not launched: {type(error).__name__}: {first_line(error)}")
                    if isinstance(error, KeyboardInterrupt) and RETRY_OF_ATTR in frozen.user_attrs:
                        requeue(study, frozen, use_attempt=False)
            raise
        return trials

    def _sample(self, study: optuna.Study, trial: optuna.Trial, space: SearchSpace) -> optuna.Trial:
        """Sample the parameters of a trial just asked for.

        A seeded sampler draws the same points in every process that starts
        with it: a rerun would repeat the first run's trials, and workers
        started together each other's. So unless this process's first trial
        is the study's first, the sampler is seeded again from the configured
        seed and that trial's number, which the storage hands out once: a
        fresh study's sweep is the configured seed's, every later process
        draws its own points, and each is reproducible from the log.
        """
        if not self.sampled_before:
            self.sampled_before = True
            seed = OmegaConf.select(self.settings.sampler, "seed", default=None)
            if trial.number and seed is not None:
                stream_seed = int(np.random.SeedSequence([seed, trial.number]).generate_state(1)[0])
                study.sampler = self._sampler(space, seed=stream_seed)
                trial = optuna.Trial(study, trial._trial_id)
                log.info(
                    "The study already had trials: sampler seeded with %d (from seed %d and trial %d).",
                    stream_seed,
                    seed,
                    trial.number,
                )
        for name, distribution in space.distributions.items():
            _suggest(trial, name, distribution)
        queued = {}
        if RETRY_OF_ATTR in trial.user_attrs:  # a retry: read what requeue's enqueue_trial fixed
            queued = queued_params(self.storage, trial._trial_id)
        dropped = sorted(set(queued) - set(space.distributions))
        if dropped:
            log.warning(
                "trial %d was queued with %s, which this sweep has no range for: it runs with this command's values",
                trial.number,
                ", ".join(dropped),
            )
        return trial

    def _launch(self, study: optuna.Study, trials: list[optuna.Trial], space: SearchSpace) -> Sequence[JobReturn]:
        overrides = [self._overrides(study.study_name, self._runs_folder(study), t, space) for t in trials]
        with heartbeats(self.storage, trials):
            try:
                returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            except Exception as error:
                launcher = self.config.hydra.runtime.choices.get("hydra/launcher", "basic")
                raise LaunchError(
                    f"hydra/launcher={launcher} failed to run trials: {type(error).__name__}: {first_line(error)}; "
                    "expected launcher settings its plugin accepts (hydra.launcher.*), and a writable "
                    "hydra.sweep.dir (the log above has the traceback)"
                ) from error
        self.job_idx += len(returns)
        return returns

    @contextmanager
    def _failing_on_interrupt(self, study: optuna.Study, trials: list[optuna.Trial]) -> Iterator[None]:
        """On Ctrl-C, SIGTERM or an error (the launcher's, the storage's), leave none of `trials` RUNNING:
        mark the unfinished ones FAIL; after an interrupt, queue their
        parameters again (an interrupt does not use up one of their attempts)."""
        try:
            yield
        except BaseException as error:
            interrupted = isinstance(error, KeyboardInterrupt)
            reason = "interrupted" if interrupted else f"{type(error).__name__}: {first_line(error)}"
            queued = []
            with interrupts_held() as again:
                unfinished = [t for t in trials if not self.storage.get_trial(t._trial_id).state.is_finished()]
                for trial in unfinished:
                    frozen = fail_trial(study, trial, reason)
                    if interrupted and requeue(study, frozen, use_attempt=False):
                        queued.append(trial.number)
            if again:
                log.warning("%s while the trials were being marked: held until they were.", signal.Signals(again[0]).name)
            marked = ", ".join(f"trial {t.number}" for t in unfinished) or "no trial"
            if interrupted:
                log.warning(
                    "Sweep interrupted: %s marked FAIL, %s queued again; rerun the same command to resume the study.",
                    marked,
                    ", ".join(f"trial {n}" for n in queued) or "none",
                )
            else:
                log.error("Sweep stopped: %s marked FAIL (%s).", marked, reason, exc_info=error)
            raise

    def _runs_folder(self, study: optuna.Study) -> str:
        """The study's TensorBoard folder under paths.log: `<study>/<its first trial's start>`.

        Called once this process's trials run, so some trial has started; a
        trial started later cannot start earlier, so every worker finds the
        same folder. A study of the same name recreated later or in another
        storage gets another, so their event files do not mix in one run;
        the name is made safe as one folder name.
        """
        if self.runs_folder is None:
            first = min(t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", study.study_name).lstrip(".") or "study"
            self.runs_folder = f"{name}/{first:%Y-%m-%d_%H-%M-%S}"
        return self.runs_folder

    @staticmethod
    def _overrides(study_name: str, runs_folder: str, trial: optuna.Trial, space: SearchSpace) -> list[str]:
        values = {**trial.params, **space.fixed}
        return [
            *(f"{name}={value}" for name, value in values.items()),
            *space.fixed_overrides,
            f"sweep.study_name={hydra_quoted(study_name)}",
            f"sweep.trial_number={trial.number}",
            f"run_name={hydra_quoted(f'{runs_folder}/trial-{trial.number:04d}')}",
        ]


def _suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> None:
    """What `study.ask(distributions)` does, through the public suggest API."""
    if isinstance(distribution, FloatDistribution):
        trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
    elif isinstance(distribution, IntDistribution):
        trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
    elif isinstance(distribution, CategoricalDistribution):
        trial.suggest_categorical(name, distribution.choices)
    else:
        raise TypeError(f"{name}: unsupported distribution {distribution!r}")


def _recover_stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna has marked FAIL a trial whose worker stopped beating (a worker
    killed outright writes no fail_reason): say so, and queue it again."""
    queued = requeue(study, trial)
    log.warning(
        "trial %d of %s stopped sending heartbeats: marked FAIL, %s.",
        trial.number,
        trial.user_attrs.get(WORKER_ATTR, "another worker"),
        "queued again" if queued else "not queued again (its parameters had their last attempt)",
    )


def _key(override: str) -> str:
    return override.split("=", 1)[0].strip().lstrip("+~")
