"""The training config's schema (registered with Hydra) and its validation.

The dataclasses make Hydra reject unknown keys and wrong types at start-up;
`validate` checks the values before any data is loaded. The `model` and
`optimizer` groups (conf/model/, conf/optimizer/) are `_target_` configs for
`hydra.utils.instantiate`; each option is typed by its own schema below, so a
key of another option (`model.dropout` on linearnet) is an unknown key. No
torch here: bad input is reported before it loads.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

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
class LinearNetConfig:
    """conf/model/linearnet.yaml: 784 -> hidden -> ReLU -> 10 (the fast path's model)."""

    _target_: str = "ds.model.LinearNet"
    hidden: int = 32


ACTIVATIONS = ("relu", "tanh", "gelu")


@dataclass
class MLPConfig:
    """conf/model/mlp.yaml: 784 -> hidden[0] -> ... -> hidden[-1] -> 10, each hidden
    layer followed by the activation and, when dropout > 0, Dropout."""

    _target_: str = "ds.model.MLP"
    hidden: list[int] = field(default_factory=lambda: [256, 128])
    activation: str = "relu"
    dropout: float = 0.0


@dataclass
class AdamConfig:
    """conf/optimizer/adam.yaml. The learning rate is params.lr, given when the
    optimizer is built (ds/build.py), so there is no optimizer.lr to disagree with it."""

    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsgrad: bool = False


@dataclass
class AdamWConfig(AdamConfig):
    """conf/optimizer/adamw.yaml: Adam with decoupled weight decay."""

    _target_: str = "torch.optim.AdamW"
    weight_decay: float = 0.01


@dataclass
class SGDConfig:
    """conf/optimizer/sgd.yaml."""

    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0


# The classes a config may build, with the schema of their keys: instantiate
# calls whatever `_target_` names, so anything else is refused.
MODEL_SCHEMAS: dict[str, type] = {"ds.model.LinearNet": LinearNetConfig, "ds.model.MLP": MLPConfig}
OPTIMIZER_SCHEMAS: dict[str, type] = {
    "torch.optim.Adam": AdamConfig,
    "torch.optim.AdamW": AdamWConfig,
    "torch.optim.SGD": SGDConfig,
}
OBJECTIVES = ("test_accuracy", "val_accuracy")
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")


@dataclass
class Config:
    params: ParamsConfig = field(default_factory=ParamsConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # `Any`: each group option brings its own schema (register_configs).
    model: Any = field(default_factory=LinearNetConfig)
    optimizer: Any = field(default_factory=AdamConfig)
    # auto (CUDA when available, else the CPU), cpu, cuda, cuda:N or mps.
    device: str = "auto"
    # What a run returns (a sweep maximises it): the test accuracy, or the
    # accuracy on the held-out tenth of the training set (ds/data.py: validation_split).
    objective: str = "test_accuracy"
    # A model.pt path: evaluate that saved model on the test set instead of training.
    evaluate: str | None = None
    seed: int = 0
    threads: int = 1
    progress: bool = True
    run_name: str = "${now:%Y-%m-%d_%H-%M-%S}"
    # Study storage (SQLAlchemy URL) read by best_of; the sweep's default too.
    storage: str | None = None
    # A study name: train with its best trial's parameters.
    best_of: str | None = None


def register_configs() -> None:
    """Register the schema: the base config and each group option's schema.

    In the composed config, `model` and `optimizer` start MISSING and take the
    chosen option with its schema (conf/model/mlp.yaml lists
    `/schema/model/mlp@_here_` in its defaults): merged into another option's
    schema, it would be refused as not its subclass. `Config` itself keeps the
    defaults, so `OmegaConf.structured(Config)` is the default run's config.
    """
    store = ConfigStore.instance()
    base = OmegaConf.structured(Config)
    base.model = MISSING
    base.optimizer = MISSING
    store.store(name="base_config", node=base, replace=True)
    for group, schemas in (("model", MODEL_SCHEMAS), ("optimizer", OPTIMIZER_SCHEMAS)):
        for target, schema in schemas.items():
            name = target.rsplit(".", 1)[1].lower()
            store.store(group=f"schema/{group}", name=name, node=schema, replace=True)


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
    _check_model(problems, cfg.model)
    _check_optimizer(problems, cfg.optimizer)
    _check(problems, cfg.threads >= 1, "threads", cfg.threads, "an integer >= 1")
    _check(
        problems,
        DEVICE_PATTERN.fullmatch(str(cfg.device)) is not None,
        "device",
        cfg.device,
        "auto, cpu, cuda, cuda:N (N a device number) or mps",
    )
    _check(problems, cfg.objective in OBJECTIVES, "objective", cfg.objective, " or ".join(OBJECTIVES))
    if cfg.evaluate is not None:
        _check(problems, Path(cfg.evaluate).is_file(), "evaluate", cfg.evaluate, "the path of a model.pt file")
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


def _check_target(problems: list[str], node: Any, group: str, schemas: dict[str, type]) -> bool:
    """The node builds a known class with that class's keys; False (reported) otherwise."""
    target = node.get("_target_")
    if target not in schemas:
        _check(problems, False, f"{group}._target_", target, f"one of {', '.join(schemas)}")
        return False
    typed = OmegaConf.get_type(node)
    options = ", ".join(t.rsplit(".", 1)[1].lower() for t in schemas)
    _check(
        problems,
        typed is schemas[target],
        f"{group}._target_",
        target,
        f"the class of the {group} config's own keys; choose another {group} with {group}=<name> ({options})",
    )
    return typed is schemas[target]


def _check_model(problems: list[str], m: Any) -> None:
    if not _check_target(problems, m, "model", MODEL_SCHEMAS):
        return
    if m._target_ == "ds.model.LinearNet":
        _check(problems, m.hidden >= 1, "model.hidden", m.hidden, "an integer >= 1")
        return
    widths = list(m.hidden)
    _check(problems, bool(widths) and min(widths) >= 1, "model.hidden", widths, "a non-empty list of integers >= 1")
    _check(problems, m.activation in ACTIVATIONS, "model.activation", m.activation, " or ".join(ACTIVATIONS))
    _check(problems, 0 <= m.dropout < 1, "model.dropout", m.dropout, "a probability 0 <= dropout < 1")


def _check_optimizer(problems: list[str], o: Any) -> None:
    if not _check_target(problems, o, "optimizer", OPTIMIZER_SCHEMAS):
        return
    partial = o._partial_ is True
    _check(problems, partial, "optimizer._partial_", o._partial_, "true (the parameters and lr come at build time)")
    decay = o.weight_decay
    _check(problems, math.isfinite(decay) and decay >= 0, "optimizer.weight_decay", decay, "a finite number >= 0")
    if o._target_ == "torch.optim.SGD":
        momentum = o.momentum
        _check(problems, math.isfinite(momentum) and momentum >= 0, "optimizer.momentum", momentum, "a finite number >= 0")
        nesterov_ok = not o.nesterov or momentum > 0
        _check(problems, nesterov_ok, "optimizer.nesterov", o.nesterov, "false unless optimizer.momentum > 0")
        return
    betas = list(o.betas)
    _check(
        problems,
        len(betas) == 2 and all(0 <= b < 1 for b in betas),
        "optimizer.betas",
        betas,
        "two numbers, each 0 <= beta < 1",
    )
    _check(problems, math.isfinite(o.eps) and o.eps > 0, "optimizer.eps", o.eps, "a finite number > 0")


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
