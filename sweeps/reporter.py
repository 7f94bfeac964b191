"""The training loop's side of a sweep: report each epoch to the trial, prune.

The sweeper hands a trial to its task as overrides (`sweep.study_name`,
`sweep.trial_number`); the storage and pruner come from the sweeper's own
settings in the job's Hydra config. Nothing passes through process memory,
so this works wherever the launcher runs the task.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.storages import BaseStorage

from sweeps.storage import open_storage
from sweeps.study import HYPERBAND_RESOURCE_ATTR, TRAINED_PARAMS_ATTR

if TYPE_CHECKING:  # torch; a sweep's settings errors come before it loads
    from ds.train import EpochCallback, EpochMetrics


class TrialReporter:
    """Reports test accuracy per epoch; raises TrialPruned when the pruner says so."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def __call__(self, m: EpochMetrics) -> None:
        self.trial.report(m.test_accuracy, step=m.epoch)
        if m.epoch < m.epoch_count and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {m.epoch} at test accuracy {m.test_accuracy:.4f}")


def trial_callbacks(cfg: DictConfig) -> list[EpochCallback]:
    """The epoch callbacks a sweep trial needs (none for a single run); the
    trial also records the params it trains with, for an export."""
    if cfg.sweep.trial_number is None:
        return []
    sweeper = HydraConfig.get().sweeper
    # With the sweeper's settings: a trial in the sweep's own process shares its storage.
    storage = open_storage(sweeper.storage, heartbeat_interval=sweeper.heartbeat_interval, grace_period=sweeper.grace_period)
    study_id = storage.get_study_id_from_name(cfg.sweep.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, cfg.sweep.trial_number)
    pruner = pinned_max_resource(sweeper.pruner, storage, study_id, trial_id, cfg.params.epoch_count)
    study = _study(storage, cfg.sweep.study_name, OmegaConf.to_yaml(pruner))
    trial = optuna.Trial(study, trial_id)
    trial.set_user_attr(TRAINED_PARAMS_ATTR, OmegaConf.to_container(cfg.params, resolve=True))
    return [TrialReporter(trial)]


@functools.lru_cache(maxsize=8)
def _study(storage: BaseStorage, study_name: str, pruner_yaml: str) -> optuna.Study:
    """The study with the sweep's pruner, loaded once per process and storage
    (a sweep's trials in one process share it; a forked worker's storage is its own)."""
    pruner = build_pruner(OmegaConf.create(pruner_yaml))
    return optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)


def pinned_max_resource(pruner: DictConfig, storage: BaseStorage, study_id: int, trial_id: int, epoch_count: int) -> DictConfig:
    """The pruner config with Hyperband's `max_resource: auto` replaced by the
    most epochs a trial of the study's first Hyperband run could train,
    recorded on the study (HYPERBAND_RESOURCE_ATTR) by that run's first trial.

    Left on auto, Hyperband takes it from the first completed trial the
    process sees when it first prunes, so joblib workers, workers on other
    machines and reruns would each count their own number of brackets and
    put the same trial in different ones; a rerun with a wider epoch range
    must not change it either. Steps are epochs, counted from 1.
    """
    if OmegaConf.select(pruner, "max_resource", default=None) != "auto":
        return pruner
    most = storage.get_study_user_attrs(study_id).get(HYPERBAND_RESOURCE_ATTR)
    if most is None:
        most = _most_epochs(storage.get_trial(trial_id), epoch_count)
        storage.set_study_user_attr(study_id, HYPERBAND_RESOURCE_ATTR, most)
    return OmegaConf.merge(pruner, {"max_resource": most})


def _most_epochs(trial: optuna.trial.FrozenTrial, epoch_count: int) -> int:
    distribution = trial.distributions.get("params.epoch_count")
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return distribution.high
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return max(int(choice) for choice in distribution.choices)
    return epoch_count  # not searched: every trial of this run trains as many


def build_pruner(config: DictConfig) -> optuna.pruners.BasePruner:
    """The pruner `hydra.sweeper.pruner` configures (the sweeper's, and every
    trial's once pinned_max_resource has set Hyperband's auto)."""
    return instantiate(config, _execution_whitelist_="optuna.pruners.*")
