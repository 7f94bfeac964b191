"""The training config's schema (registered with Hydra) and its validation.

The dataclasses make Hydra reject unknown keys and wrong types at start-up;
`validate` checks the values before any data is loaded.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore

from ds.datasets import DEFAULT_MIRRORS


@dataclass
class ParamsConfig:
    """The hyperparameters a sweep tunes (the tutorial's names)."""

    lr: float = 1e-3
    batch_size: int = 64
    epoch_count: int = 3


@dataclass
class PathsConfig:
    data: str = "${oc.env:DS_DATA_DIR,data/raw}"
    cache: str = "data/cache"
    log: str = "runs"


@dataclass
class DataConfig:
    download: bool = True
    mirrors: list[str] = field(default_factory=lambda: list(DEFAULT_MIRRORS))
    timeout_s: float = 10.0
    sample_fallback: bool = True


@dataclass
class ModelConfig:
    hidden: int = 32


@dataclass
class Config:
    params: ParamsConfig = field(default_factory=ParamsConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 0
    threads: int = 1
    progress: bool = True
    run_name: str = "${now:%Y-%m-%d_%H-%M-%S}"
    # Study storage (SQLAlchemy URL) read by best_of; the sweep's default too.
    storage: str | None = None
    # A study name: train with its best trial's parameters.
    best_of: str | None = None


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=Config, replace=True)


class ConfigError(ValueError):
    """A config value is out of its allowed range."""


def _check(problems: list[str], ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        problems.append(f"{key}={value!r}: expected {expected}")


def validate(cfg: Any) -> None:
    """Raise ConfigError naming every bad value, before any work starts."""
    problems: list[str] = []
    p = cfg.params
    _check(problems, math.isfinite(p.lr) and p.lr > 0, "params.lr", p.lr, "a finite learning rate > 0")
    _check(problems, p.batch_size >= 1, "params.batch_size", p.batch_size, "an integer >= 1")
    _check(problems, p.epoch_count >= 1, "params.epoch_count", p.epoch_count, "an integer >= 1")
    _check(problems, cfg.model.hidden >= 1, "model.hidden", cfg.model.hidden, "an integer >= 1")
    _check(problems, cfg.threads >= 1, "threads", cfg.threads, "an integer >= 1")
    _check(problems, cfg.data.timeout_s > 0, "data.timeout_s", cfg.data.timeout_s, "seconds > 0")
    _check(
        problems,
        len(cfg.data.mirrors) > 0 or not cfg.data.download,
        "data.mirrors",
        list(cfg.data.mirrors),
        "at least one mirror URL while data.download is on",
    )
    run = Path(str(cfg.run_name))
    _check(
        problems,
        bool(run.parts) and not run.is_absolute() and ".." not in run.parts,
        "run_name",
        str(cfg.run_name),
        "a folder name inside paths.log (not empty, '.', absolute or with '..')",
    )
    data_dir = Path(cfg.paths.data)
    _check(
        problems,
        not data_dir.exists() or data_dir.is_dir(),
        "paths.data",
        str(cfg.paths.data),
        "a directory (it exists but is not one)",
    )
    cache = Path(cfg.paths.cache)
    # A cache only read (shared, read-only, filled earlier) is fine: one that
    # cannot be written is skipped with a warning when loading.
    _check(problems, not _under_a_file(cache), "paths.cache", str(cache), "a directory (it or a folder above it is a file)")
    log = Path(cfg.paths.log)
    log_problem = _directory_problem(log)
    _check(problems, log_problem is None, "paths.log", str(log), f"a writable directory, or a path where one can be made ({log_problem})")
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems) + ".")


def _under_a_file(path: Path) -> bool:
    """It, or the nearest existing folder above it, is not a directory."""
    existing = next((c for c in (path, *path.absolute().parents) if c.exists()), None)
    return existing is not None and not existing.is_dir()


def _directory_problem(path: Path) -> str | None:
    """Why `path` cannot hold a run's output, or None when it can.

    Made here if missing (the run would make it next): only trying tells a
    folder that refuses new entries (/proc, a read-only mount) from one that
    takes them, whatever the permission bits say to root.
    """
    if _under_a_file(path):
        return "it or a folder above it is a file"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot make it: {e.strerror}"
    if not os.access(path, os.W_OK):
        return "not writable"
    return None
