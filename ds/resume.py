"""Resuming a run: its training state saved every epoch through a checkpointer, and read back.

ds knows no sweep: a `Checkpointer` is anything with `save_checkpoint(state, step)` and
`checkpoint() -> (step, state) | None` (the app passes its sweep trial, or the run's folder). The
state is ds.train's `training_state` with the config it trained (the keys that decide the weights)
and its data's identity; a state of another config or data is not resumed (one warning).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf

from ds.datasets import DatasetIdentity

log = logging.getLogger(__name__)

# The config keys that decide a run's weights: a checkpoint resumes only a run that has them all equal.
TRAINING_KEYS = ("params", "model", "optimizer", "seed", "objective")


class Checkpointer(Protocol):
    def save_checkpoint(self, state: Any, step: int) -> None: ...

    def checkpoint(self) -> tuple[int, Any] | None: ...


def training_config(cfg: DictConfig, data: DatasetIdentity) -> dict[str, Any]:
    """The part of `cfg` and the data that a checkpoint must match, as plain data."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    return {**{k: plain.get(k) for k in TRAINING_KEYS}, "data": asdict(data)}


def resumable(
    checkpointer: Checkpointer, cfg: DictConfig, data: DatasetIdentity
) -> tuple[dict[str, Any] | None, Callable[[dict[str, Any]], None]]:
    """(the training state to resume, or None; the callback that saves each epoch's state)."""
    config = training_config(cfg, data)

    def save(state: dict[str, Any]) -> None:
        checkpointer.save_checkpoint({"config": config, "training": state}, state["epoch"])

    found = checkpointer.checkpoint()
    if found is None:
        return None, save
    step, saved = found
    if not isinstance(saved, dict) or "training" not in saved:
        log.warning("the checkpoint of step %s is not a training state: training starts over", step)
        return None, save
    if saved.get("config") != config:
        log.warning(
            "the checkpoint of step %s was trained with another config or data: training starts over", step
        )
        return None, save
    return saved["training"], save
