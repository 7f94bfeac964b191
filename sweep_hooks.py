"""This app's additions to its sweeps (see sweeps/hooks.py): the dataset a study was run on,
ranges checked against the training config's validation, and the command that trains
with the best parameters."""

from __future__ import annotations

import dataclasses
import os
import shlex
from typing import Any

import optuna
from omegaconf import DictConfig

from ds.config import validate
from sweeps import SweepHooks
from sweeps.storage import default_storage, mask_url

# Overrides that choose the data: a best_of run needs the same.
DATA_KEYS = ("paths.data", "data.")


class LinearNetHooks(SweepHooks):
    def study_identity(self, config: DictConfig) -> dict[str, Any]:
        from ds.run import load_data  # torch, imported once data is needed: settings errors come fast

        return dataclasses.asdict(load_data(config).identity)

    def study_name(self, config: DictConfig, identity: dict[str, Any] | None) -> str:
        return f"linearnet-{identity['name']}"

    def check_trial_config(self, config: DictConfig) -> None:
        validate(config)

    def best_command(self, study: optuna.Study, best: optuna.trial.FrozenTrial, config: DictConfig) -> str:
        choices = config.hydra.runtime.choices
        groups = [f"{k}={v}" for k, v in {**best.user_attrs.get("fixed_params", {}), **best.params}.items() if k in choices]
        data = [o for o in config.hydra.overrides.task if o.split("=", 1)[0].lstrip("+~").startswith(DATA_KEYS)]
        if "DS_DATA_DIR" in os.environ and not any(o.startswith("paths.data=") for o in data):
            data.append(f"paths.data={config.paths.data}")
        command = ["python", "main.py", f"best_of={study.study_name}", *groups, *data]
        if config.storage != default_storage():
            command.append(f"storage={mask_url(config.storage)}")
        return " ".join(shlex.quote(part) for part in command)
