"""`python main.py best_of=<study>`: train with a study's best parameters."""

from __future__ import annotations

import logging
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from sweeps.storage import mask_url, open_storage
from sweeps.study import best_params, best_trial, load_study

log = logging.getLogger(__name__)


def apply_best_of(cfg: Any) -> None:
    """Set the best trial's parameters in `cfg`, except those given on the command line."""
    if not cfg.best_of:
        return
    where = mask_url(cfg.storage)
    storage = open_storage(cfg.storage, must_exist=True)
    trial = best_trial(load_study(cfg.best_of, storage, where), storage, where)
    explicit = {o.key_or_group.lstrip("+~") for o in OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))}
    applied = {k: v for k, v in best_params(trial).items() if k not in explicit}
    for key, value in applied.items():
        OmegaConf.update(cfg, key, value)
    kept = sorted(set(best_params(trial)) - set(applied))
    log.info(
        "best_of=%s: trial %d of %s (value %.4f) gives %s%s",
        cfg.best_of,
        trial.number,
        where,
        trial.value,
        applied,
        f"; kept from the command line: {kept}" if kept else "",
    )
