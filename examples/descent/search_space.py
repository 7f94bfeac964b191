"""A custom search space (hydra.sweeper.custom_search_space=search_space.momentum_below_lr_bound):
the momentum's range depends on the sampled learning rate, which Hydra's override syntax cannot say."""

import optuna
from omegaconf import DictConfig


def momentum_below_lr_bound(cfg: DictConfig, trial: optuna.Trial) -> None:
    lr = trial.params.get("lr", cfg.lr)
    trial.suggest_float("momentum", 0.0, 0.99 if lr < 1e-3 else 0.9)
