"""A config written for the stock sweeper that now selects pruning_optuna keeps working.

Such configs (lightning-hydra-template's `hparams_search` overlays) name the stock class in
`hydra.sweeper._target_`, which Hydra would then build with this sweeper's keys (a TypeError for
`pruner`, or an unknown plugin where the stock one is not installed). On Hydra 1.3, selecting
pruning_optuna adds this Hydra callback (`hydra.callbacks.pruning_optuna_stock_target`), which
runs before Hydra builds the sweeper and points `_target_` at this one, saying so in one line.
Hydra 1.4 warns for a callback built without an execution whitelist and requires every job's
`hydra.sweeper` to equal the sweep's, so there the config's `_target_` line is removed instead
(docs/sweeper.md, "Migrating from the stock sweeper").
"""

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, read_write

log = logging.getLogger(__name__)
STOCK = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
OURS = "hydra_plugins.pruning_optuna_sweeper.sweeper.PruningOptunaSweeper"


class StockTargetCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper = config.hydra.sweeper
        if sweeper.get("_target_") != STOCK:
            return
        with read_write(sweeper):
            sweeper._target_ = OURS
        log.info(
            "hydra.sweeper._target_ names the stock OptunaSweeper; hydra/sweeper=pruning_optuna runs "
            "PruningOptunaSweeper with the same keys (drop the _target_ line to silence this)"
        )
