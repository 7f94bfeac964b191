"""The hydra.sweeper settings: checked, and the sampler and pruner built and rehearsed, before any trial."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import optuna
from omegaconf import DictConfig, ListConfig, OmegaConf
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from pruning_optuna_sweeper.compat import instantiate_trusted
from pruning_optuna_sweeper.journal import is_journal_url, journal_path
from pruning_optuna_sweeper.storage import mask_url

from ._outcome import grid_covered

T = TypeVar("T")
DIRECTIONS = ("minimize", "maximize")
# What hydra.sweeper.sampler may build: Optuna's samplers, and the sampler group's factories
# (ours, or the stock plugin's where its group is the one registered).
SAMPLER_WHITELIST = (
    "optuna.samplers.*",
    "hydra_plugins.pruning_optuna_sweeper.samplers.*",
    "hydra_plugins.hydra_optuna_sweeper.*",
)
PRUNER_WHITELIST = "optuna.pruners.*"
REHEARSED_TRIALS = 4
REHEARSED_STEPS = 3


class SweepSettingsError(ValueError):
    """A hydra.sweeper setting out of its range."""


def directions(setting: Any) -> list[Literal["minimize", "maximize"]]:
    """`direction` as a list of minimize/maximize: a string, the stock Direction enum, or a list of them."""
    given = list(setting) if isinstance(setting, (list, tuple, ListConfig)) else [setting]
    names = [d.name if isinstance(d, Enum) else str(d).lower() for d in given]
    bad = [n for n in names if n not in DIRECTIONS]
    if not names or bad:
        shown = OmegaConf.to_container(setting) if isinstance(setting, ListConfig) else setting
        raise SweepSettingsError(
            f"invalid hydra.sweeper settings: direction={shown!r}: "
            "expected minimize or maximize, or a list of them for several objectives."
        )
    return cast(list[Literal["minimize", "maximize"]], names)


# The longest study name Optuna's RDB storages hold (their study_name column; SQLite does not check).
STUDY_NAME_MAX = 512


def check_settings(s: DictConfig) -> None:
    """Raise SweepSettingsError naming every setting out of its range."""
    problems = []
    if s.n_trials < 1:
        problems.append(f"n_trials={s.n_trials}: expected an integer >= 1")
    if s.study_name is not None and len(str(s.study_name)) > STUDY_NAME_MAX:
        problems.append(
            f"study_name={str(s.study_name)[:40]!r}... has {len(str(s.study_name))} characters: expected at "
            f"most {STUDY_NAME_MAX} (what Optuna's studies table holds in PostgreSQL and MySQL)"
        )
    if not (s.n_jobs == "auto" or (isinstance(s.n_jobs, int) and s.n_jobs >= 1)):
        problems.append(f"n_jobs={s.n_jobs!r}: expected an integer >= 1, or auto (the cores available)")
    if not 0.0 <= s.max_failure_rate <= 1.0:
        problems.append(f"max_failure_rate={s.max_failure_rate}: expected a share from 0.0 to 1.0")
    if s.total_trials is not None and s.total_trials < 1:
        problems.append(
            f"total_trials={s.total_trials}: expected an integer >= 1, or null for no study-wide budget"
        )
    if s.heartbeat_interval is not None and s.heartbeat_interval < 1:
        problems.append(f"heartbeat_interval={s.heartbeat_interval}: expected whole seconds >= 1, or null")
    if s.heartbeat_interval is not None and (
        s.grace_period is None or s.grace_period <= s.heartbeat_interval
    ):
        problems.append(
            f"grace_period={s.grace_period}: expected more seconds than "
            f"heartbeat_interval={s.heartbeat_interval}, "
            "or a running trial is declared dead between two heartbeats"
        )
    if s.total_trials is not None and (s.heartbeat_interval is None or s.storage is None):
        problems.append(
            "total_trials needs a database or journal storage with heartbeats: "
            "expected heartbeat_interval set, or a dead "
            "worker's trial would hold its place in the budget forever"
        )
    if s.max_retry < 0:
        problems.append(f"max_retry={s.max_retry}: expected an integer >= 0")
    if s.mode not in ("auto", "batch", "async"):
        problems.append(f"mode={s.mode!r}: expected auto, batch or async")
    if s.job_output not in ("console", "file"):
        problems.append(f"job_output={s.job_output!r}: expected console or file")
    if problems:
        raise SweepSettingsError("invalid hydra.sweeper settings: " + "; ".join(problems) + ".")


def check_trials_reach(storage: str | None, *, chdir: bool) -> None:
    """Refuse a SQLite storage that trials would open as another database than the sweep's."""
    if storage is None:
        return
    if is_journal_url(storage):
        if chdir and not journal_path(storage).is_absolute():
            raise SweepSettingsError(
                f"storage={storage} is a relative journal path and hydra.job.chdir=true runs each trial in "
                "its own folder, where it would open another, empty journal; expected an absolute path "
                "(storage=journal:////abs/path/optuna.log) or hydra.job.chdir=false"
            )
        return
    try:
        parsed = make_url(storage)
    except ArgumentError:
        return  # open_storage names the problem
    if parsed.get_backend_name() != "sqlite":
        return
    database = parsed.database or ""
    if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
        raise SweepSettingsError(
            f"storage={mask_url(storage)} is an in-memory SQLite database, which every trial would open "
            "empty; expected a file (sqlite:///path/optuna.db), or storage=null for an in-memory study"
        )
    if chdir and not Path(database).is_absolute():
        raise SweepSettingsError(
            f"storage={mask_url(storage)} is a relative SQLite path and hydra.job.chdir=true runs each trial "
            "in its own folder, where it would open another, empty database; expected an absolute path "
            "(storage=sqlite:////abs/path/optuna.db) or hydra.job.chdir=false"
        )


def build(setting: str, config: Any, **kwargs: Any) -> Any:
    """Instantiate hydra.sweeper.<setting> (sampler or pruner); a bad one is the user's error."""
    whitelist = SAMPLER_WHITELIST if setting == "sampler" else PRUNER_WHITELIST
    try:
        return instantiate_trusted(config, whitelist, **kwargs)
    except Exception as error:
        text = str(error.__cause__ or error)
        # Hydra refuses a target with its general InstantiationException: the text says which.
        refused = _NOT_WHITELISTED.search(text)
        if refused:
            raise SweepSettingsError(
                f"hydra.sweeper.{setting} cannot be used: "
                f"_target_ {refused.group(1)} is not a class a sweep may "
                f"build (Hydra's execution whitelist); expected one of Optuna's own {setting}s "
                f"(optuna.{setting}s.*), e.g. hydra/sweeper/{setting}={_EXAMPLE[setting]}"
            ) from None
        # Hydra's instantiate errors end with OmegaConf's indented `full_key:` / `object_type=` lines.
        lines = [line.strip() for line in text.splitlines()]
        reason = " ".join(
            line for line in lines if line and not line.startswith(("full_key:", "object_type="))
        )
        raise SweepSettingsError(
            f"hydra.sweeper.{setting} cannot be used: {reason.rstrip('.') or type(error).__name__}; expected "
            f"settings its class accepts (hydra.sweeper.{setting}._target_ names it)"
        ) from None


def rehearse(
    make_sampler: Callable[[], optuna.samplers.BaseSampler],
    pruner: optuna.pruners.BasePruner,
    distributions: dict[str, optuna.distributions.BaseDistribution],
    n_objectives: int,
    sampler_startup_trials: int,
) -> None:
    """Sample, report, prune and tell a few in-memory trials, as a sweep does.

    Some settings pass the constructors and fail only in use: a sampler whose
    package is missing (`cmaes`), Hyperband with `reduction_factor=1`. They
    are reported here, before anything is loaded or recorded.
    """
    optuna_logger = logging.getLogger("optuna")
    level = optuna_logger.level
    optuna_logger.setLevel(logging.WARNING)  # no "Trial finished" lines for trials that are not the sweep's
    try:
        study = optuna.create_study(
            sampler=make_sampler(),
            pruner=pruner if n_objectives == 1 else None,
            directions=["minimize"] * n_objectives,
        )
        for n in range(max(REHEARSED_TRIALS, sampler_startup_trials + 2)):
            trial = _using("sampler", lambda: study.ask(distributions))
            for step in range(1, REHEARSED_STEPS + 1 if n_objectives == 1 else 1):
                trial.report(0.5 + 0.1 * n + 0.01 * step, step=step)
                if _using("pruner", trial.should_prune):
                    break
            try:
                study.tell(trial, [0.5 + 0.1 * n] * n_objectives)
            except RuntimeError as e:
                if grid_covered(study):  # the grid sampler calls study.stop() once its grid is covered
                    return
                raise _rehearsal_error("sampler", e) from e
    finally:
        optuna_logger.setLevel(level)


def _using(setting: str, action: Callable[[], T]) -> T:
    try:
        return action()
    except Exception as e:
        raise _rehearsal_error(setting, e) from e


def _rehearsal_error(setting: str, cause: Exception) -> SweepSettingsError:
    package = (
        "; a sampler's own package, such as cmaes for CmaEsSampler, must be installed"
        if setting == "sampler"
        else ""
    )
    return SweepSettingsError(
        f"hydra.sweeper.{setting} fails in use, rehearsed on a few in-memory trials: "
        f"{type(cause).__name__}: {cause}; "
        f"expected settings its class can run with (hydra.sweeper.{setting}._target_ names it{package})"
    )


_EXAMPLE = {"sampler": "random", "pruner": "hyperband"}
_NOT_WHITELISTED = re.compile(r"Target '([^']+)' is not in the Hydra execution whitelist")
