"""This app's additions to its sweeps (see pruning_optuna_sweeper/hooks.py): the dataset a study was run on,
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
from pruning_optuna_sweeper import SweepHooks
from pruning_optuna_sweeper.groups import sweep_groups
from pruning_optuna_sweeper.storage import default_storage, mask_url
from pruning_optuna_sweeper.study import python_command

# Overrides that choose the data: a best_of run needs the same.
DATA_KEYS = ("paths.", "data.")
# Where and how a trial runs, or what it is judged by: one value for a whole study.
NOT_SWEPT = ("threads", "progress", "storage", "run_name", "best_of", "objective", "device", "evaluate")


class LinearNetHooks(SweepHooks):
    def study_identity(self, config: DictConfig) -> dict[str, Any]:
        """The data and the objective: trials on other data, or judged by another accuracy, do not compare."""
        from ds.data import data_options, load_arrays  # no torch: the sweep's process trains nothing

        identity = load_arrays(**data_options(config)).identity
        return {**dataclasses.asdict(identity), "objective": config.objective}

    def study_name(self, config: DictConfig, identity: dict[str, Any] | None) -> str:
        """After what is swept and fixed: the model's options (linearnet, linearnet+mlp), those of any
        other config group the sweep names (optimizer: adam+sgd), the data (mnist, mnist-sample), and
        -val_accuracy for that objective. So a sweep of other models gets a study of its own."""
        identity = identity or self.study_identity(config)
        named = sweep_groups(config, overridden_only=True)
        models = "+".join(sweep_groups(config).get("model", ["none"]))
        others = ["+".join(options) for group, options in named.items() if group != "model"]
        judged = [] if config.objective == "test_accuracy" else [str(config.objective)]
        return "-".join([models, *others, identity["name"], *judged])

    def check_search_space(self, ranges: dict[str, Any], fixed: dict[str, str]) -> None:
        for key in [*ranges, *fixed]:
            if key.startswith("+"):
                bare = key.lstrip("+")
                raise ValueError(
                    f"the sweep has '{key}', an override that adds or forces a key; "
                    f"the study would record it apart from '{bare}' and best_of could not apply it. "
                    f"Expected '{bare}=...' for a key of the training config"
                )
        for key in ("best_of", "run_name"):
            if fixed.get(key) not in (None, "null"):
                what = (
                    "trains once with a study's best parameters"
                    if key == "best_of"
                    else "the sweep sets for each trial"
                )
                raise ValueError(
                    f"the sweep has {key}={fixed[key]}, which {what}; expected no {key} in a sweep"
                )
        for key in ranges:
            if key.startswith(DATA_KEYS) or key in NOT_SWEPT:
                what = (
                    "selects the data (a study holds trials of one dataset)"
                    if key.startswith(DATA_KEYS)
                    else ("says where and how a trial runs")
                )
                raise ValueError(
                    f"the sweep has a range for '{key}', which {what}; "
                    f"expected one value for it ({key}=...), "
                    "and ranges only over what is trained"
                )

    def check_trial_config(self, config: DictConfig) -> None:
        validate(config)

    def best_command(self, study: optuna.Study, best: optuna.trial.FrozenTrial, config: DictConfig) -> str:
        choices = config.hydra.runtime.choices
        groups = [
            f"{k}={v}"
            for k, v in {**best.user_attrs.get("fixed_params", {}), **best.params}.items()
            if k in choices
        ]
        data = [
            o for o in config.hydra.overrides.task if o.split("=", 1)[0].lstrip("+~").startswith(DATA_KEYS)
        ]
        if "DS_DATA_DIR" in os.environ and not any(o.startswith("paths.data=") for o in data):
            data.append(f"paths.data={config.paths.data}")
        command = [python_command(), "main.py", f"best_of={study.study_name}", *groups, *data]
        if config.storage != default_storage():
            command.append(f"storage={mask_url(config.storage)}")
        return " ".join(shlex.quote(part) for part in command)
