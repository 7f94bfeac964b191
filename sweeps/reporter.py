"""The training loop's side of a sweep: report each epoch to the trial, prune.

The sweeper hands a trial to its task as overrides (`sweep.study_name`,
`sweep.trial_number`); the storage and pruner come from the sweeper's own
settings in the job's Hydra config. Nothing passes through process memory,
so this works wherever the launcher runs the task.
"""

from __future__ import annotations

from typing import Any

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from ds.train import EpochCallback, EpochMetrics
from sweeps.storage import open_storage


class TrialReporter:
    """Reports test accuracy per epoch; raises TrialPruned when the pruner says so."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def __call__(self, m: EpochMetrics) -> None:
        self.trial.report(m.test_accuracy, step=m.epoch)
        if m.epoch < m.epoch_count and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {m.epoch} at test accuracy {m.test_accuracy:.4f}")


def trial_callbacks(cfg: Any) -> list[EpochCallback]:
    """The epoch callbacks a sweep trial needs; none for a single run."""
    if cfg.sweep.trial_number is None:
        return []
    sweeper = HydraConfig.get().sweeper
    storage = open_storage(sweeper.storage)
    study = optuna.load_study(
        study_name=cfg.sweep.study_name,
        storage=storage,
        pruner=instantiate(sweeper.pruner, _execution_whitelist_="optuna.pruners.*"),
    )
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(cfg.sweep.study_name), cfg.sweep.trial_number
    )
    return [TrialReporter(optuna.Trial(study, trial_id))]
