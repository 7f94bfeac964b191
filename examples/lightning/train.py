"""Train a classifier with Lightning from a Hydra config, in lightning-hydra-template's shape.

    python train.py                                   # one run
    python train.py hparams_search=mnist_optuna       # a sweep, pruned by the pruning Optuna sweeper

The app knows nothing of Optuna: pruning is one callback in its callbacks config
(configs/callbacks/default.yaml), which does nothing outside a sweep.
"""

from __future__ import annotations

import hydra
import lightning.pytorch as pl
from omegaconf import DictConfig

# The targets this app's configs may name: Hydra 1.4 asks for them (its execution whitelist); 1.3 has none.
TRUSTED = ["src.*", "torch.optim.*", "lightning.pytorch.*", "pruning_optuna_sweeper.*"]
WHITELIST = {"_execution_whitelist_": TRUSTED} if hydra.__version__.split(".")[:2] >= ["1", "4"] else {}


@hydra.main(config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data, **WHITELIST)
    model = hydra.utils.instantiate(cfg.model, **WHITELIST)
    callbacks = [hydra.utils.instantiate(c, **WHITELIST) for c in (cfg.get("callbacks") or {}).values()]
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, **WHITELIST)
    trainer.fit(model, datamodule=datamodule)
    value = trainer.callback_metrics.get(cfg.optimized_metric)
    return None if value is None else float(value)


if __name__ == "__main__":
    main()
