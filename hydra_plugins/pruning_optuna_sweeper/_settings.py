"""The hydra.sweeper settings: checked, and sampler or pruner built, before any trial."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sweeps.storage import mask_url

T = TypeVar("T")


class SweepSettingsError(ValueError):
    """A hydra.sweeper setting out of its range."""


def check_settings(s: DictConfig) -> None:
    """Raise SweepSettingsError naming every setting out of its range."""
    problems = []
    if s.direction not in ("maximize", "minimize"):
        problems.append(f"direction={s.direction!r}: expected maximize or minimize")
    if s.n_trials < 1:
        problems.append(f"n_trials={s.n_trials}: expected an integer >= 1")
    if s.n_jobs < 1:
        problems.append(f"n_jobs={s.n_jobs}: expected an integer >= 1")
    if not 0.0 <= s.max_failure_rate <= 1.0:
        problems.append(f"max_failure_rate={s.max_failure_rate}: expected a share from 0.0 to 1.0")
    if s.total_trials is not None and s.total_trials < 1:
        problems.append(f"total_trials={s.total_trials}: expected an integer >= 1, or null for no study-wide budget")
    if s.storage is None:
        problems.append("storage=null: expected a SQLAlchemy URL; trials report to the study from their own processes")
    if s.heartbeat_interval is not None and s.heartbeat_interval < 1:
        problems.append(f"heartbeat_interval={s.heartbeat_interval}: expected whole seconds >= 1, or null")
    if s.heartbeat_interval is not None and (s.grace_period is None or s.grace_period <= s.heartbeat_interval):
        problems.append(
            f"grace_period={s.grace_period}: expected more seconds than heartbeat_interval={s.heartbeat_interval}, "
            "or a running trial is declared dead between two heartbeats"
        )
    if s.total_trials is not None and s.heartbeat_interval is None:
        problems.append(
            "total_trials with heartbeat_interval=null: expected heartbeats, or a dead worker's trial "
            "would hold its place in the budget forever"
        )
    if problems:
        raise SweepSettingsError("invalid hydra.sweeper settings: " + "; ".join(problems) + ".")


def check_trials_reach(storage: str, *, chdir: bool) -> None:
    """Refuse a SQLite storage that trials would open as another database than the sweep's."""
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
            "empty and report nothing to; expected a file, e.g. storage=sqlite:///sweeps/optuna.db"
        )
    if chdir and not Path(database).is_absolute():
        raise SweepSettingsError(
            f"storage={mask_url(storage)} is a relative SQLite path and hydra.job.chdir=true runs each trial "
            "in its own folder, where it would open another, empty database; expected an absolute path "
            "(storage=sqlite:////abs/path/optuna.db) or hydra.job.chdir=false"
        )


def built(setting: str, build: Callable[[], T]) -> T:
    """`build()`, with a bad sampler or pruner setting reported as the user's error."""
    try:
        return build()
    except SweepSettingsError:
        raise
    except Exception as error:
        text = str(error.__cause__ or error)
        refused = _NOT_WHITELISTED.search(text)
        if refused:
            raise SweepSettingsError(
                f"hydra.sweeper.{setting} cannot be used: _target_ {refused.group(1)} is not a class a sweep may "
                f"build (Hydra's execution whitelist); expected one of Optuna's own {setting}s "
                f"(optuna.{setting}s.*), e.g. hydra/sweeper/{setting}={_EXAMPLE[setting]}"
            ) from None
        # Hydra's instantiate errors end with OmegaConf's indented `full_key:` / `object_type=` lines.
        lines = [line.strip() for line in text.splitlines()]
        reason = " ".join(line for line in lines if line and not line.startswith(("full_key:", "object_type=")))
        raise SweepSettingsError(
            f"hydra.sweeper.{setting} cannot be used: {reason.rstrip('.') or type(error).__name__}; expected "
            f"settings its class accepts (hydra.sweeper.{setting}._target_ names it; see the README's Sweeps section)"
        ) from None


_EXAMPLE = {"sampler": "random", "pruner": "hyperband"}
_NOT_WHITELISTED = re.compile(r"Target '([^']+)' is not in the Hydra execution whitelist")
