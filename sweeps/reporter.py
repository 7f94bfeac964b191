"""The training loop's side of a sweep: report each epoch to the trial, prune.

The sweeper hands a trial to its task as overrides (`sweep.study_name`,
`sweep.trial_number`); the storage and pruner come from the sweeper's own
settings in the job's Hydra config. Nothing passes through process memory,
so this works wherever the launcher runs the task.
"""

from __future__ import annotations

import functools

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ds.train import EpochCallback, EpochMetrics
from sweeps.storage import open_storage
from sweeps.study import TRAINED_PARAMS_ATTR


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
    study = _study(sweeper.storage, cfg.sweep.study_name, OmegaConf.to_yaml(sweeper.pruner))
    storage = open_storage(sweeper.storage)
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(cfg.sweep.study_name), cfg.sweep.trial_number
    )
    trial = optuna.Trial(study, trial_id)
    trial.set_user_attr(TRAINED_PARAMS_ATTR, OmegaConf.to_container(cfg.params, resolve=True))
    return [TrialReporter(trial)]


@functools.lru_cache(maxsize=8)
def _study(storage_url: str, study_name: str, pruner_yaml: str) -> optuna.Study:
    """The study with the sweep's pruner, loaded once per process (a sweep's
    trials in one process share it)."""
    pruner = build_pruner(OmegaConf.create(pruner_yaml))
    return optuna.load_study(study_name=study_name, storage=open_storage(storage_url), pruner=pruner)


def build_pruner(config: DictConfig) -> optuna.pruners.BasePruner:
    """The pruner `hydra.sweeper.pruner` configures (the sweeper's and every trial's)."""
    return instantiate(config, _execution_whitelist_="optuna.pruners.*")
