"""The training config's schema (registered with Hydra) and its validation.

The dataclasses make Hydra reject unknown keys and wrong types at start-up;
`validate` checks the values before any data is loaded, and the keys that
Hydra lets through: a `+key=...` or `++key=...` override adds a key the
schema does not have (the run would ignore it), and `~key` removes one. The
`model` and `optimizer` groups (conf/model/, conf/optimizer/) are `_target_`
configs for `hydra.utils.instantiate`; each option is typed by its own schema
below, so a key of another option (`model.dropout` on linearnet) is an unknown
key. No torch here: bad input is reported before it loads.
"""

from __future__ import annotations

import difflib
import itertools
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
    # With best_of: evaluate the best trial's stored model (its Optuna artifact) instead of training again.
    best_of_model: bool = False
    # A killed single run's folder: continue it there from its checkpoint.pt (ds/cli.py: resume_argv).
    resume: str | None = None


def register_configs() -> None:
    """Register the schema: the base config and each group option's schema.

    In the composed config, `model` and `optimizer` start MISSING and take the
    chosen option with its schema (conf/model/mlp.yaml lists
    `/model_schema_mlp@_here_` in its defaults): merged into another option's
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
            store.store(name=f"{group}_schema_{name}", node=schema, replace=True)  # no group: not an option


class ConfigError(ValueError):
    """A config value is out of its allowed range."""


# torch.manual_seed takes -2**63..2**64-1, and a negative seed wraps to seed + 2**64: one name per seed.
MAX_SEED = 2**64 - 1
# A sweep's range reaching 10**6 epochs is a typo, and one such trial would hold a worker for days.
MAX_EPOCHS = 1000
# More than any machine's cores; torch's OpenMP fails to make some 16,000 threads (a segfault at 100,000).
MAX_THREADS = 1024
# LinearNet's training memory (ds/step.py): per parameter its value, gradient and Adam's two moments;
# per hidden unit a batch's activations (three float32 values an example) and the whole test split's
# (two, evaluated in one pass over at most 10,000 examples); a batch is at most full MNIST's 60,000.
BYTES_PER_PARAMETER = 16
TEST_EXAMPLES_AT_MOST = 10_000
TRAIN_EXAMPLES_AT_MOST = 60_000


def _check(problems: list[str], ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        problems.append(f"{key}={value!r}: expected {expected}")


def validate(cfg: Any) -> None:
    """Raise ConfigError naming every bad key and value, before any work starts."""
    problems: list[str] = _key_problems(cfg, _schema(cfg))
    if problems:  # the values below may be missing
        raise ConfigError("invalid config: " + "; ".join(problems) + ".")
    _check_training(problems, cfg)
    _check_model(problems, cfg.model, cfg.params.batch_size)
    _check_optimizer(problems, cfg.optimizer)
    _check(
        problems,
        DEVICE_PATTERN.fullmatch(str(cfg.device)) is not None,
        "device",
        cfg.device,
        "auto, cpu, cuda, cuda:N (N a device number) or mps",
    )
    _check(problems, cfg.objective in OBJECTIVES, "objective", cfg.objective, " or ".join(OBJECTIVES))
    if cfg.evaluate is not None:
        where = Path(cfg.evaluate)
        found = "not a file" if where.exists() else "not found"
        _check(problems, where.is_file(), "evaluate", cfg.evaluate, f"the path of a model.pt file ({found})")
    if cfg.best_of_model:
        _check(
            problems,
            bool(cfg.best_of),
            "best_of_model",
            True,
            "best_of=<study> with it: whose best model to use",
        )
        _check(
            problems, cfg.evaluate is None, "evaluate", cfg.evaluate, "no evaluate= with best_of_model=true"
        )
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
    _check(
        problems,
        not _under_a_file(cache),
        "paths.cache",
        str(cache),
        "a directory (it or a folder above it is a file)",
    )
    log = Path(cfg.paths.log)
    log_problem = directory_problem(log)
    _check(
        problems,
        log_problem is None,
        "paths.log",
        str(log),
        f"a writable directory, or a path where one can be made ({log_problem})",
    )
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


def _check_model(problems: list[str], m: Any, batch_size: int) -> None:
    if not _check_target(problems, m, "model", MODEL_SCHEMAS):
        return
    if m._target_ == "ds.model.LinearNet":
        _check(problems, m.hidden >= 1, "model.hidden", m.hidden, "an integer >= 1")
        if m.hidden >= 1 and batch_size >= 1:
            _check_memory(problems, m.hidden, batch_size)
        return
    widths = list(m.hidden)
    _check(
        problems,
        bool(widths) and min(widths) >= 1,
        "model.hidden",
        widths,
        "a non-empty list of integers >= 1",
    )
    if widths and min(widths) >= 1 and batch_size >= 1:
        _check_memory(problems, widths, batch_size)
    _check(problems, m.activation in ACTIVATIONS, "model.activation", m.activation, " or ".join(ACTIVATIONS))
    _check(problems, 0 <= m.dropout < 1, "model.dropout", m.dropout, "a probability 0 <= dropout < 1")


def _check_optimizer(problems: list[str], o: Any) -> None:
    if not _check_target(problems, o, "optimizer", OPTIMIZER_SCHEMAS):
        return
    partial = o._partial_ is True
    _check(
        problems,
        partial,
        "optimizer._partial_",
        o._partial_,
        "true (the parameters and lr come at build time)",
    )
    decay = o.weight_decay
    _check(
        problems, math.isfinite(decay) and decay >= 0, "optimizer.weight_decay", decay, "a finite number >= 0"
    )
    if o._target_ == "torch.optim.SGD":
        momentum = o.momentum
        _check(
            problems,
            math.isfinite(momentum) and momentum >= 0,
            "optimizer.momentum",
            momentum,
            "a finite number >= 0",
        )
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


def _check_training(problems: list[str], cfg: Any) -> None:
    """The hyperparameters, the seed and the threads: what torch and this machine take."""
    p = cfg.params
    _check(problems, math.isfinite(p.lr) and p.lr > 0, "params.lr", p.lr, "a finite learning rate > 0")
    _check(problems, p.batch_size >= 1, "params.batch_size", p.batch_size, "an integer >= 1")
    epochs = f"an integer in 1..{MAX_EPOCHS}"
    _check(problems, 1 <= p.epoch_count <= MAX_EPOCHS, "params.epoch_count", p.epoch_count, epochs)
    seeds = f"an integer in 0..{MAX_SEED} (2**64-1), the seeds torch takes (a negative one is seed + 2**64)"
    _check(problems, 0 <= cfg.seed <= MAX_SEED, "seed", cfg.seed, seeds)
    threads = f"an integer in 1..{MAX_THREADS}"
    _check(problems, 1 <= cfg.threads <= MAX_THREADS, "threads", cfg.threads, threads)


def training_bytes(hidden: int | list[int], batch_size: int) -> int:
    """About the memory training takes (784 -> hidden... -> 10, Adam), in bytes."""
    widths = [hidden] if isinstance(hidden, int) else list(hidden)
    sizes = [28 * 28, *widths, 10]
    parameters = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    examples = 3 * min(batch_size, TRAIN_EXAMPLES_AT_MOST) + 2 * TEST_EXAMPLES_AT_MOST
    return BYTES_PER_PARAMETER * parameters + 4 * sum(widths) * examples


def memory_limit() -> tuple[int, str]:
    """The memory this process may use, in bytes, and what sets it: the machine's physical memory,
    or a smaller limit of its cgroup (a container's)."""
    limit = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine's memory"
    try:
        cgroup = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return limit
    return min(limit, (int(cgroup), "this container's memory limit")) if cgroup.isdigit() else limit


def _check_memory(problems: list[str], hidden: int | list[int], batch_size: int) -> None:
    """Refuse a model.hidden whose training cannot fit in memory, naming the widest LinearNet that can."""
    needed, (limit, what) = training_bytes(hidden, batch_size), memory_limit()
    if needed <= limit:
        return
    widest = ""
    if isinstance(hidden, int):
        fixed = training_bytes(0, batch_size)
        most = max(0, (limit - fixed) // (training_bytes(1, batch_size) - fixed))  # linear in the width
        widest = f"; at most model.hidden={most} with params.batch_size={batch_size} here"
    _check(
        problems,
        False,
        "model.hidden",
        hidden if isinstance(hidden, int) else list(hidden),
        f"a width whose training fits in memory: it needs about {_gib(needed)} (the parameters, their "
        f"gradients and Adam's state, and the activations of a batch and of the test split), more than "
        f"{what}, {_gib(limit)}{widest}",
    )


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def _key_problems(cfg: Any, schema: dict[str, Any], prefix: str = "") -> list[str]:
    """Keys of `cfg` the schema lacks, and schema keys `cfg` lacks, with the nearest known keys.

    Hydra's own node (`hydra`, in a sweeper's task config) is not the training config's.
    """
    problems = []
    keys = set(cfg.keys())  # not `key in cfg`, which resolves the value
    for key in sorted(keys - set(schema) - ({"hydra"} if not prefix else set())):
        value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
        problems.append(
            f"{prefix}{key}={value!r}: not a key of the training config (ds/config.py), which the run "
            f"would ignore; expected a key it has ({_nearest(prefix + str(key), schema, prefix)})"
        )
    for key, node in schema.items():
        if key not in keys:
            problems.append(
                f"{prefix}{key} is missing (removed with ~{prefix}{key}?); expected a value for it"
            )
        elif isinstance(node, dict) and OmegaConf.is_dict(cfg[key]):
            problems.extend(_key_problems(cfg[key], node, f"{prefix}{key}."))
    return problems


def _schema(cfg: Any = None) -> dict[str, Any]:
    """The dataclasses' keys as nested dicts, values unresolved (run_name's ${now:} needs Hydra);
    `model` and `optimizer` as the schema of the class `cfg` names there."""
    schema: Any = OmegaConf.to_container(OmegaConf.structured(Config), resolve=False)
    for group, schemas in (("model", MODEL_SCHEMAS), ("optimizer", OPTIMIZER_SCHEMAS)):
        target = OmegaConf.select(cfg, f"{group}._target_", default=None) if cfg is not None else None
        if target in schemas:
            schema[group] = OmegaConf.to_container(OmegaConf.structured(schemas[target]))
    return schema


def _nearest(key: str, schema: dict[str, Any], prefix: str) -> str:
    """The known keys nearest to `key` (by dotted path, or by last name: `lr` -> params.lr), or those
    beside it when none is near."""
    known = _leaf_keys(_schema())
    name = key.rsplit(".", 1)[-1]
    near = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    near += [k for k in known if difflib.SequenceMatcher(None, name, k.rsplit(".", 1)[-1]).ratio() >= 0.8]
    near = list(dict.fromkeys(near))[:3]
    if near:
        return "nearest: " + ", ".join(near)
    return "none is near; here: " + ", ".join(prefix + str(k) for k in schema)


def _leaf_keys(schema: dict[str, Any], prefix: str = "") -> list[str]:
    """Every key that holds a value (`params.lr`, `seed`), dotted."""
    keys = []
    for key, node in schema.items():
        if isinstance(node, dict):
            keys.extend(_leaf_keys(node, f"{prefix}{key}."))
        else:
            keys.append(prefix + str(key))
    return keys


def _under_a_file(path: Path) -> bool:
    """It, or the nearest existing folder above it, is not a directory."""
    existing = next((c for c in (path, *path.absolute().parents) if c.exists()), None)
    return existing is not None and not existing.is_dir()


def directory_problem(path: Path) -> str | None:
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
    disk = os.statvfs(path)
    if disk.f_bavail * disk.f_frsize < MIN_FREE_BYTES:
        return f"its disk is full ({disk.f_bavail * disk.f_frsize // 1024} KiB free)"
    return None


# What a run's folder needs free at least: its config files, log and model.pt (LinearNet's is 100 KiB).
MIN_FREE_BYTES = 1 << 20
