"""Schema of the pruning Optuna sweeper and its `pruner` config group.

The keys are the stock hydra-optuna-sweeper's (whose sampler group,
`hydra/sweeper/sampler`, is reused as it is) plus `pruner`, `total_trials`
and the heartbeat settings.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class PrunerConfig:
    _target_: str = MISSING


@dataclass
class MedianPrunerConfig(PrunerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/generated/optuna.pruners.MedianPruner.html"""

    _target_: str = "optuna.pruners.MedianPruner"
    # The pruner's warm-up: complete trials before any pruning, so that the
    # median compares with several whole curves.
    n_startup_trials: int = 5
    # Steps are epochs, counted from 1: after that warm-up, a trial may stop
    # after any epoch but its last. Both chosen by comparing settings over
    # TPE seeds 0-4 (README, Performance): five startup trials kept the best
    # accuracy where three lost it, and an epoch of warm-up cost savings.
    n_warmup_steps: int = 1
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class PercentilePrunerConfig(MedianPrunerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/generated/optuna.pruners.PercentilePruner.html"""

    _target_: str = "optuna.pruners.PercentilePruner"
    # The median's settings, but trials whose best accuracy so far is outside
    # the top `percentile` percent of the completed trials' accuracies at that
    # epoch are pruned (50 would be the median).
    percentile: float = 45.0


@dataclass
class HyperbandPrunerConfig(PrunerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/generated/optuna.pruners.HyperbandPruner.html"""

    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3


@dataclass
class NopPrunerConfig(PrunerConfig):
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class PruningOptunaSweeperConf:
    _target_: str = "hydra_plugins.pruning_optuna_sweeper.sweeper.PruningOptunaSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])

    sampler: Any = MISSING
    pruner: Any = MISSING
    direction: str = "maximize"
    # Any SQLAlchemy URL (trials report to it from their own processes).
    storage: str | None = None
    # None: derived from the model and the dataset, e.g. "linearnet-mnist".
    study_name: str | None = None
    # Trials this command launches (a rerun launches that many more).
    n_trials: int = 20
    # Trials launched together; with a parallel launcher, they run at once.
    n_jobs: int = 1
    # The share of n_trials that may fail before the sweep stops.
    max_failure_rate: float = 0.0
    # Stop once the study holds this many COMPLETE or PRUNED trials, counted
    # across reruns and across every worker on the same storage.
    total_trials: int | None = None
    # Seconds between a running trial's heartbeats, and without one before
    # another worker declares the trial failed and retries it. RDB storages only.
    heartbeat_interval: int | None = 10
    grace_period: int | None = 30
    params: dict[str, str] | None = None


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(group="hydra/sweeper", name="pruning_optuna", node=PruningOptunaSweeperConf, provider="pruning_optuna_sweeper", replace=True)
    for name, node in (("median", MedianPrunerConfig), ("percentile", PercentilePrunerConfig), ("hyperband", HyperbandPrunerConfig), ("none", NopPrunerConfig)):
        cs.store(group="hydra/sweeper/pruner", name=name, node=node, provider="pruning_optuna_sweeper", replace=True)
