"""The sweep: check the settings and search space, open the study, run the trial loop, summarise.

Each trial's task finds its trial through the job's own config (see
pruning_optuna_sweeper/trial.py); whatever the launcher, the outcome comes back here as a
JobReturn, recorded by _outcome.py.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import optuna
from hydra.core.config_loader import ConfigLoader
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.storages import InMemoryStorage
from sqlalchemy.exc import SQLAlchemyError

from pruning_optuna_sweeper.compat import instantiate_trusted, retry_callback
from pruning_optuna_sweeper.groups import GroupsMismatchError, check_groups, sweep_groups
from pruning_optuna_sweeper.hooks import SweepHooks
from pruning_optuna_sweeper.proxy import is_grpc_url
from pruning_optuna_sweeper.storage import (
    StorageError,
    check_storage,
    first_line,
    mask_url,
    open_storage,
    open_sweep_journal,
    optuna_tables,
    root_cause,
)
from pruning_optuna_sweeper.study import (
    IDENTITY_ATTR,
    WORKER_ATTR,
    IdentityMismatchError,
    StudyError,
    check_identity,
    job_record,
)
from pruning_optuna_sweeper.trial import register_in_process_study

from . import _resume
from ._config_reuse import ReusingConfigLoader
from ._console import Progress, file_only_overrides, keep_sweep_lines_on_console, quieten_launcher
from ._loop import LaunchError, Plan, SweepAborted, TrialLoop, could_not_start
from ._search_space import (
    SearchSpace,
    SearchSpaceError,
    check_against_study,
    check_search_space,
    describe,
    grid_choices,
    parse_search_space,
)
from ._settings import (
    SweepSettingsError,
    build,
    check_settings,
    check_trials_reach,
    directions,
    rehearse,
)
from ._signals import first_interrupt_unwinds
from ._summary import summarise
from .config import trials_at_once

log = logging.getLogger(__name__)
# Heartbeats and stale-trial recovery are marked experimental in Optuna.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# study.ask warns that heartbeats belong to study.optimize; heartbeat.py beats for asked trials.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


class HookError(ValueError):
    """An app's hook refused the sweep (its data is missing, say): its own message."""


def _from_hook(hook: Any, *args: Any) -> Any:
    """What an app's hook returns; the user's mistakes it reports (ValueError, LookupError,
    OSError and their kind, such as a dataset that cannot be found) in one paragraph."""
    try:
        return hook(*args)
    except (ValueError, LookupError, OSError) as error:
        raise HookError(str(error).removeprefix("error: ")) from None
    except Exception as error:
        if type(error).__module__.split(".")[0] in ("builtins", "optuna", "hydra", "omegaconf"):
            raise
        raise HookError(f"{type(error).__name__}: {error}") from None


# Errors in what the user asked for: reported in one paragraph, no traceback.
USER_ERRORS = (
    HookError,
    SweepAborted,
    LaunchError,
    SweepSettingsError,
    SearchSpaceError,
    StorageError,
    StudyError,
    IdentityMismatchError,
    GroupsMismatchError,
)


class SweepRun:
    def __init__(
        self,
        settings: dict[str, Any],
        *,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
    ) -> None:
        # As the job's config holds them: interpolations there (`metric_names: ["${objective}"]`)
        # resolve against the whole config, which the settings Hydra passes in are cut off from.
        settings_config = OmegaConf.create(OmegaConf.to_container(config.hydra.sweeper, resolve=True))
        self.settings = s = cast(DictConfig, settings_config)
        self.config = config
        self.group_options = hydra_context.config_loader.get_group_options
        check_settings(s)
        # Queues a failed trial again (a dead worker's, a lost job's), at most max_retry times, with its
        # values so far: it resumes from its checkpoint (pruning_optuna_sweeper.checkpoint).
        self.retry = retry_callback()(max_retry=s.max_retry, inherit_intermediate_values=True)
        self.directions = directions(s.direction)
        check_trials_reach(s.storage, chdir=bool(config.hydra.job.chdir))
        if s.storage is not None:  # before the launcher starts any worker
            check_storage(s.storage)  # a URL or file that is no study storage is refused now
            optuna_tables()  # Optuna's database layer, imported once here: forked workers inherit it
        hydra_context = dataclasses.replace(
            hydra_context, config_loader=cast(ConfigLoader, ReusingConfigLoader(hydra_context.config_loader))
        )
        self.launcher_name = config.hydra.runtime.choices.get("hydra/launcher", "basic")
        try:
            self.launcher = Plugins.instance().instantiate_launcher(
                config=config, hydra_context=hydra_context, task_function=task_function
            )
        except Exception as error:  # its settings, or workers that could not start
            raise could_not_start(self.launcher_name, error) from None
        self.job_overrides = []
        if s.job_output == "file":
            self.job_overrides = file_only_overrides(config.hydra.get("job_logging"))
        # Its "Launching 1 jobs" and "#3 : <overrides>" lines (with the trial's encoded
        # env_set) say less than the sweep's line per trial, whatever job_output is.
        quieten_launcher(self.launcher)
        # Hydra's basic launcher runs jobs in this process, one after another.
        launcher = type(self.launcher)
        in_process = launcher.__name__ == "BasicLauncher" and launcher.__module__.startswith("hydra.")
        if in_process:
            keep_sweep_lines_on_console()
        self.n_trials, self.n_jobs = s.n_trials, trials_at_once(s.n_jobs, s.n_trials)
        self.batch = s.mode == "batch" or (s.mode == "auto" and in_process)
        self.in_thread = not in_process
        if not self.batch and in_process and self.n_jobs > 1:
            raise SweepSettingsError(
                f"mode=async with n_jobs={self.n_jobs} needs a launcher "
                "that runs trials in other processes, but "
                "hydra/launcher=basic runs them one after another in the sweep's own; expected "
                "hydra/launcher=joblib (or a cluster launcher), mode=batch, or n_jobs=1"
            )
        # The hooks class is what the app's own sweeper config names.
        self.hooks: SweepHooks = instantiate_trusted(s.hooks, [s.hooks._target_]) if s.hooks else SweepHooks()

    def sweep(self, arguments: list[str]) -> None:
        self.journal: Path | None = None
        try:
            self._sweep(arguments)
        finally:
            if self.journal is not None:  # an in-memory study lives as long as its sweep
                for path in (self.journal, self.journal.with_name(self.journal.name + ".lock")):
                    path.unlink(missing_ok=True)

    def _sweep(self, arguments: list[str]) -> None:
        started = time.perf_counter()
        s = self.settings
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep's own lines say more
        space = parse_search_space(s.params, arguments)
        check_search_space(space, self.config, self.group_options, self.hooks)
        sampler = self._sampler(space)
        trials = f"{self.n_trials} trial{'s' if self.n_trials > 1 else ''}"
        if self.in_thread:
            how = "in batches" if self.batch else "each started as soon as one ends"
            log.info(
                "Sweeping %s, %d at once (%s, hydra/launcher=%s)",
                trials,
                self.n_jobs,
                how,
                self.launcher_name,
            )
        else:
            log.info(
                "Sweeping %s in batches of %d, run one after another by hydra/launcher=%s in this process",
                trials,
                self.n_jobs,
                self.launcher_name,
            )
        pruner = build("pruner", s.pruner)
        multi = len(self.directions) > 1
        startup = OmegaConf.select(s.sampler, "n_startup_trials", default=None) or 0
        rehearse(
            functools.partial(self._sampler, space),
            build("pruner", s.pruner),
            space.distributions,
            len(self.directions),
            startup,
        )

        storage = self._storage()
        where = mask_url(s.storage)
        if self.journal is not None:
            where += f" (kept in {self.journal} for the sweep's life, where the trials' processes reach it)"
        identity = _from_hook(self.hooks.study_identity, self.config)
        study = optuna.create_study(
            study_name=s.study_name or _from_hook(self.hooks.study_name, self.config, identity),
            storage=storage,
            sampler=sampler,
            pruner=None if multi else pruner,
            directions=self.directions,
            load_if_exists=True,
        )
        _check_study(study, self.directions, where)
        check_identity(study, identity, where)
        check_against_study(space, study, where)
        check_groups(study, sweep_groups(self.config), where)
        if identity is not None:
            study.set_user_attr(IDENTITY_ATTR, identity)
        if s.metric_names:
            study.set_metric_names(_metric_names(list(s.metric_names), self.directions))
        if s.storage is None and self.journal is None:
            register_in_process_study(study, storage)
        log.info(
            "Study %r in %s: %s, %s",
            study.study_name,
            where,
            type(study.sampler).__name__,
            "no pruning (Optuna cannot prune a multi-objective study)" if multi else type(pruner).__name__,
        )
        if space.distributions:
            log.info(
                "Search space: %s", "; ".join(f"{k} {describe(d)}" for k, d in space.distributions.items())
            )
        if self.job_overrides:
            log.info(
                "Each trial logs to its own folder of %s "
                "(hydra.sweeper.job_output=console shows it here too)",
                self.config.hydra.sweep.dir,
            )
        resume = _resume.plan(study, arguments, self.n_trials)
        plan = Plan(
            n_trials=resume.left,
            n_jobs=self.n_jobs,
            batch=self.batch,
            launch=self._launch_one,
            in_thread=self.in_thread,
            max_failure_rate=s.max_failure_rate,
            total_trials=s.total_trials,
            extend_search_space=self._extender(),
            reseed_sampler=lambda seed: self._sampler(space, seed=seed),
            sampler_seed=OmegaConf.select(s.sampler, "seed", default=None),
            launcher_name=self.launcher_name,
            job_overrides=self.job_overrides,
            retry=self.retry if s.storage is not None else None,
            ready=getattr(self.launcher, "wait_until_ready", None),
            journal=None if self.journal is None else str(self.journal),
        )
        progress = Progress(resume.left, enabled=s.job_output == "file")
        loop = TrialLoop(study, storage, space, plan, progress)
        try:
            with first_interrupt_unwinds(), progress:
                launched, failed = loop.run()
            _resume.finished(study, resume)
        except KeyboardInterrupt:
            if s.storage is not None:  # an in-memory study ends with this process: nothing to rerun
                _resume.interrupted(study, resume, loop.ended)
            raise
        except (optuna.exceptions.StorageInternalError, SQLAlchemyError) as error:
            raise _storage_failure(error, where, study.study_name, loop.unmarked, s.grace_period) from None
        best_command = None
        if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) and not multi:
            best_command = _from_hook(self.hooks.best_command, study, study.best_trial, self.config)
        summarise(
            study,
            storage=s.storage,
            sweep_dir=Path(self.config.hydra.sweep.dir),
            launched=launched,
            failed=failed,
            seconds=time.perf_counter() - started,
            best_command=best_command,
        )

    def _storage(self) -> optuna.storages.BaseStorage:
        s = self.settings
        if s.storage is None and self.in_thread:
            # Jobs in other processes could not reach an in-memory study: it lives in a journal
            # file in the sweep folder until the sweep ends, so that they can report and be pruned.
            folder = Path(self.config.hydra.sweep.dir).absolute()
            folder.mkdir(parents=True, exist_ok=True)
            # A name of its own each sweep: a worker reused by a later sweep opens a new study.
            self.journal = folder / f"in-memory-study-{os.getpid()}-{uuid.uuid4().hex[:8]}.journal"
            return open_sweep_journal(str(self.journal))
        if s.storage is None:
            return InMemoryStorage()

        def retry_stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            self.retry(study, trial)
            job = job_record(trial.user_attrs, trial.number) or {}
            log.warning(
                "trial %d of %s stopped sending heartbeats: "
                "marked FAIL and queued again (at most %d time%s).",
                trial.number,
                _beating_for(trial, job),
                s.max_retry,
                "" if s.max_retry == 1 else "s",
            )

        if is_grpc_url(s.storage) and s.heartbeat_interval:
            log.info(
                "%s carries no heartbeats: should a worker on another machine die, its trial stays RUNNING "
                "until `python -m pruning_optuna_sweeper recover <study>` runs on the server's storage",
                s.storage,
            )
        return open_storage(
            s.storage,
            heartbeat_interval=s.heartbeat_interval,
            grace_period=s.grace_period,
            stale_trial_callback=retry_stale,
        )

    def _launch_one(self, overrides: list[str], job_number: int) -> Any:
        """One trial's job through the configured launcher; its job number is the trial's number."""
        [ret] = self.launcher.launch([overrides], initial_job_idx=job_number)
        return ret

    def _sampler(self, space: SearchSpace, **overrides: Any) -> optuna.samplers.BaseSampler:
        sampler = build("sampler", self.settings.sampler, **overrides)
        if isinstance(sampler, functools.partial):  # the grid sampler wants its grid
            grid = {name: grid_choices(name, d) for name, d in space.distributions.items()}
            sampler = sampler(grid)
            self.n_trials = min(self.settings.n_trials, math.prod(len(v) for v in grid.values()))
        return cast(optuna.samplers.BaseSampler, sampler)

    def _extender(self) -> Any:
        """The stock `custom_search_space`: a function (config, trial) that suggests more parameters."""
        target = self.settings.custom_search_space
        if not target:
            return None
        extend = instantiate_trusted({"_target_": target, "_partial_": True}, [target])
        return lambda trial: extend(self.config, trial)


def _check_study(study: optuna.Study, directions: Sequence[str], where: str) -> None:
    """Refuse a study created to optimise in other directions than the sweep's."""
    recorded = [d.name.lower() for d in study.directions]
    if recorded != list(directions):
        raise SweepSettingsError(
            f"direction={directions if len(directions) > 1 else directions[0]}, "
            f"but study {study.study_name!r} in {where} was created to "
            f"{recorded if len(recorded) > 1 else recorded[0]}; expected the study's "
            "direction, or another study (hydra.sweeper.study_name=...)"
        )


def _metric_names(names: list[str], directions: Sequence[str]) -> list[str]:
    """The sweep's metric_names, one per objective."""
    if len(names) != len(directions):
        raise SweepSettingsError(
            f"metric_names={names} names {len(names)} objectives, but direction "
            f"has {len(directions)}; expected one name per objective"
        )
    return names


def _beating_for(trial: optuna.trial.FrozenTrial, job: dict[str, Any]) -> str:
    """Who beat for a trial: its job where the job did (pruning_optuna_sweeper/job.py),
    else the sweep's worker."""
    if not job.get("beats"):
        return str(trial.user_attrs.get(WORKER_ATTR, "another worker"))
    return f"SLURM job {job['slurm_job_id']}" if job.get("slurm_job_id") else f"{job['host']}:{job['pid']}"


def _storage_failure(
    error: BaseException, where: str, study: str, unmarked: list[int], grace: int | None
) -> StorageError:
    """The storage refused a write mid-sweep: its own reason, and what became of the trials in flight."""
    cause = root_cause(error)
    left = ""
    if unmarked:
        names = ", ".join(f"trial {n}" for n in unmarked)
        stale = f" after grace_period={grace} s without heartbeats" if grace else ""
        left = (
            f" {names} could not be marked FAIL: a later sweep or "
            f"`python -m pruning_optuna_sweeper recover {study}` fails "
            f"{'it' if len(unmarked) == 1 else 'them'}{stale}, once the storage takes writes again."
        )
    return StorageError(
        f"storage {where} refused a write during the sweep: {type(cause).__name__}: {first_line(cause)} "
        f"(a full disk, or a database made read-only or damaged meanwhile); the trials recorded before "
        f"stay in the study.{left}"
    )
