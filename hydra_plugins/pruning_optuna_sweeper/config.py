"""The sweeper's schema: every key of the stock hydra-optuna-sweeper, with its
stock default, plus pruning, budgets, heartbeats, artifacts and app hooks.

The sampler group (`hydra/sweeper/sampler`) is the stock plugin's, shipped in `samplers.py`.
"""

import os
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from pruning_optuna_sweeper.compat import hydra_whitelists_targets, register_resolver, store_config

from . import samplers

STOCK_TARGET_CALLBACK = "pruning_optuna_stock_target"


@dataclass
class StockTargetCallbackConf:
    _target_: str = "hydra_plugins.pruning_optuna_sweeper.migration.StockTargetCallback"


@dataclass
class MedianPrunerConfig:
    """optuna.pruners.MedianPruner, with Optuna's defaults."""

    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class PercentilePrunerConfig(MedianPrunerConfig):
    """optuna.pruners.PercentilePruner: the median's settings, keeping the top `percentile` percent."""

    _target_: str = "optuna.pruners.PercentilePruner"
    percentile: float = 25.0


@dataclass
class HyperbandPrunerConfig:
    """optuna.pruners.HyperbandPruner; `max_resource: auto` is pinned once for the whole study."""

    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3


@dataclass
class NopPrunerConfig:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class PruningOptunaSweeperConf:
    _target_: str = "hydra_plugins.pruning_optuna_sweeper.sweeper.PruningOptunaSweeper"
    defaults: list[Any] = field(default_factory=lambda: schema_defaults())

    # The stock plugin's keys, with its defaults.
    sampler: Any = MISSING
    # minimize or maximize, or a list of them for several objectives (the task returns a sequence).
    direction: Any = "minimize"
    # A SQLAlchemy URL; null keeps the study in memory (trials must run in the sweep's own process).
    storage: Any = None
    study_name: str | None = None
    n_trials: int = 20
    # Trials in flight at once, or `auto`: the cores available to the sweep, at most n_trials.
    n_jobs: Any = 2
    # The share of n_trials that may fail before the sweep stops.
    max_failure_rate: float = 0.0
    params: dict[str, str] | None = None
    # A function (config, trial) -> None that suggests further parameters.
    custom_search_space: str | None = None

    # Added by this sweeper.
    pruner: Any = MISSING
    # Names of the objectives, shown by optuna-dashboard (e.g. [test_accuracy]).
    metric_names: list[str] | None = None
    # Stop once the study holds this many COMPLETE or PRUNED trials, across reruns and workers.
    total_trials: int | None = None
    # Seconds between a running trial's heartbeats, and without one before another
    # worker fails the trial and queues it again (database storages only; null: off).
    heartbeat_interval: int | None = 10
    grace_period: int | None = 30
    # How often a dead worker's trial is queued again.
    max_retry: int = 1
    # Where trials store files (optuna.artifacts): auto (beside a SQLite study), a folder, a
    # `_target_` store config, or null.
    artifact_store: Any = "auto"
    # An app's pruning_optuna_sweeper.hooks.SweepHooks subclass, as a `_target_` config.
    hooks: Any = None
    # Batch mode (the stock behaviour: ask n_jobs, launch them together, wait for all) or async
    # (start a trial as soon as one ends). auto: async with a launcher that runs jobs in other
    # processes, batch with the basic launcher, which runs them one after another here.
    mode: str = "auto"
    # Where the jobs' own log lines go: console (stock), or file: only to each job's log file
    # (Hydra's job logging without its console handlers), the console then showing the sweep's
    # line per trial. The launcher's per-job lines are left out with either.
    job_output: str = "console"


def schema_defaults() -> list[Any]:
    """The stock sampler default, the pruner's, and on Hydra 1.3 the callback that points a stock
    `_target_` left in an app's config at this sweeper (migration.py). Hydra 1.4 would warn on
    every sweep for that callback (no execution whitelist), so there the docs' migration applies."""
    defaults: list[Any] = [{"sampler": "tpe"}, {"pruner": "median"}]
    if not hydra_whitelists_targets():
        defaults.append({f"migration@_global_.hydra.callbacks.{STOCK_TARGET_CALLBACK}": "stock_target"})
    return defaults


def trials_at_once(n_jobs: Any, n_trials: int) -> int:
    """`n_jobs` as a number, at most n_trials (more would only start idle workers): `auto` is the
    cores this process may use.

    Also the resolver `${pruning_optuna.n_jobs:${hydra.sweeper.n_jobs},${hydra.sweeper.n_trials}}`,
    with which a launcher's own worker count (the pool's or joblib's `n_jobs`) follows the sweep's.
    """
    if n_jobs == "auto":
        return max(1, min(len(os.sched_getaffinity(0)), int(n_trials)))
    return max(1, min(int(n_jobs), int(n_trials)))


def register() -> None:
    """Store the schema, the sampler and pruner groups; again in a launcher's worker, which also
    receives the sweep's ConfigStore with the jobs, so an existing entry is replaced."""
    provider = "pruning_optuna_sweeper"
    store_config(
        group="hydra/sweeper", name="pruning_optuna", node=PruningOptunaSweeperConf, provider=provider
    )
    samplers.register()
    store_config(
        group="hydra/sweeper/migration", name="stock_target", node=StockTargetCallbackConf, provider=provider
    )
    pruners = {
        "median": MedianPrunerConfig,
        "percentile": PercentilePrunerConfig,
        "hyperband": HyperbandPrunerConfig,
        "none": NopPrunerConfig,
    }
    for name, node in pruners.items():
        store_config(group="hydra/sweeper/pruner", name=name, node=node, provider=provider)
    register_resolver("pruning_optuna.n_jobs", trials_at_once)
