"""The sweep's search space: parsed with the stock plugin, checked before any trial."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
from omegaconf import Container, DictConfig, OmegaConf, open_dict, read_write
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    check_distribution_compatibility,
)

from ds.config import ConfigError, validate
from ds.errors import first_line

from ._config_reuse import copy_config


class SearchSpaceError(ValueError):
    """A search space that cannot be swept."""


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution]
    fixed: dict[str, Any]  # parameters given one value: passed to every trial
    fixed_overrides: list[str]  # deletions (~key) passed through as they are
    fixed_training: dict[str, Any]  # what of `fixed` shapes the model: best_of applies it again


def parse_search_space(
    declared: DictConfig | None,
    arguments: list[str],
    task_config: DictConfig,
    group_options: Callable[[str], list[str]],
) -> SearchSpace:
    """The sweeper's `params` plus the command line's overrides, validated.

    Every key must exist in the training config, every range must hold more
    than one value, and every value a range can reach must pass the training
    config's own validation (so `params.lr: interval(-1, 1)` fails here, not
    in trial 7). A config group (a name `group_options` lists options for)
    takes one option for the whole sweep (`params=tuned`), which Hydra
    composes for every trial; ranges go over its values.
    """
    # As in Hydra, the last of a key's overrides wins, value or range; the
    # command line's replaces the sweeper config's, and a range a sweeper
    # config file sets to null (`params.lr: null`) is dropped.
    given = {argument.split("=", 1)[0].strip(): argument for argument in arguments}
    declared_entries = [f"{k}={v}" for k, v in (declared or {}).items() if k not in given and v is not None]
    entries = declared_entries + list(given.values())
    for entry in entries:  # one at a time, to name the entry that is wrong
        try:
            create_params_from_overrides([entry])
        except Exception as e:
            raise SearchSpaceError(
                f"cannot sweep '{entry}': {str(e).rstrip('.')}; expected key=value, choice(...), range(...) or interval(...) "
                "with low < high (see the README's Sweeps section)"
            ) from None
    distributions, fixed, fixed_overrides = create_params_from_overrides(entries)
    for name in [*distributions, *fixed]:
        if name.startswith("+"):
            bare = name.lstrip("+")
            raise SearchSpaceError(
                f"the sweep has '{name}', an override that adds or forces a key; the study would record it "
                f"apart from '{bare}' and best_of could not apply it. Expected '{bare}=...' for a key of the "
                "training config (a sweep's values and ranges replace the config's, no prefix needed)"
            )
    if fixed.get("best_of") not in (None, "null", ""):
        raise SearchSpaceError(
            f"the sweep has best_of={fixed['best_of']}, which trains once with a study's best parameters; "
            "expected no best_of in a sweep (run `python main.py best_of=<study>` after it)"
        )
    for name in sorted(set(fixed) & _SET_BY_THE_SWEEP - {"storage", "best_of"}):
        raise SearchSpaceError(
            f"the sweep has {name}={fixed[name]}, which the sweep sets for each trial itself (a trial's "
            "run is <study>/<start>/trial-NNNN under paths.log); expected no value for it in a sweep"
        )
    for name in distributions:
        if name in _SET_BY_THE_SWEEP or _is_operational(name):
            what = (
                "which selects the data (a study holds trials of one dataset)"
                if name == "paths.data" or name.startswith("data.")
                else "which says where and how the sweep runs"
            )
            raise SearchSpaceError(
                f"the sweep has a range for '{name}', {what}; expected one value for it ({name}=...), and "
                "ranges only over what is trained"
            )
    groups = {name for name in [*distributions, *fixed] if group_options(name)}
    for name in groups & set(distributions):
        options = group_options(name)
        chosen = OmegaConf.select(task_config, "hydra.runtime.choices", default={}).get(name) or options[0]
        raise SearchSpaceError(
            f"the sweep has a range over config group '{name}' (options: {', '.join(options)}), which this "
            f"sweeper does not search; expected one option for the whole sweep ({name}={chosen}) and "
            "ranges over its values"
        )
    values = {name: value for name, value in fixed.items() if name not in groups}

    for name in [*distributions, *values]:
        if OmegaConf.select(task_config, name, default=_ABSENT) is _ABSENT:
            raise SearchSpaceError(
                f"the sweep has '{name}' (in hydra.sweeper.params or on the command line), which is not a "
                "key of the training config; expected one of its keys, e.g. params.lr, params.batch_size, "
                "params.epoch_count"
            )
    # The command line's plain values are in the composed config: a bad one is
    # reported as itself, not as the fault of every range checked with it.
    validate(task_config)
    typed = {name: _check_value(task_config, name, value, None) for name, value in values.items()}
    for name, distribution in distributions.items():
        for value in _reachable_extremes(name, distribution):
            _check_value(task_config, name, value, distribution)
    # As the training config holds them (16, not the command line's '16'), for best_of and its log.
    fixed_training = {k: typed.get(k, v) for k, v in fixed.items() if not _is_operational(k)}
    return SearchSpace(distributions, fixed, fixed_overrides, fixed_training)


def check_against_study(space: SearchSpace, study: optuna.Study, where: str) -> None:
    """Refuse ranges the study's earlier trials cannot share a parameter with.

    Optuna lets a float or int range move between sweeps of one study, but
    not a choice's options, a log scale or the kind of range.
    """
    recorded: dict[str, BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        recorded.update(trial.distributions)
    for name, distribution in space.distributions.items():
        if name not in recorded:
            continue
        try:
            check_distribution_compatibility(recorded[name], distribution)
        except ValueError as e:
            raise SearchSpaceError(
                f"the sweep's range for '{name}' is {distribution!r}, but study {study.study_name!r} in {where} "
                f"sampled it from {recorded[name]!r} ({str(e).rstrip('.')}); expected a compatible range, or "
                "another study (hydra.sweeper.study_name=...)"
            ) from None


# Settings that say where and how a run happens, not what it trains.
_OPERATIONAL_KEYS = {"storage", "progress", "run_name", "best_of", "threads"}
# Keys the sweep itself sets or reads to find its study: never swept.
_SET_BY_THE_SWEEP = {"storage", "run_name", "best_of", "sweep", "sweep.study_name", "sweep.trial_number"}
_OPERATIONAL_PREFIXES = ("paths.", "data.", "sweep.", "hydra.")


def _is_operational(key: str) -> bool:
    key = key.lstrip("+~")
    return key in _OPERATIONAL_KEYS or key.startswith(_OPERATIONAL_PREFIXES)


_ABSENT = object()


def _reachable_extremes(name: str, distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        if len({(type(c), c) for c in distribution.choices}) < 2:  # True == 1, yet they differ here
            raise SearchSpaceError(
                f"the search space of '{name}' holds a single value, choice({', '.join(map(repr, distribution.choices))}); "
                f"expected two or more choices, or a fixed value instead of a range ({name}={distribution.choices[0]})"
            )
        return list(distribution.choices)
    if isinstance(distribution, (FloatDistribution, IntDistribution)):
        if distribution.low >= distribution.high:
            raise SearchSpaceError(
                f"the search space of '{name}' holds a single value ({distribution.low}); "
                "expected a range with low < high, or a fixed value instead of a range"
            )
        return [distribution.low, distribution.high]
    return []


def _check_value(task_config: DictConfig, name: str, value: Any, distribution: BaseDistribution | None) -> Any:
    """The value as the trial's config would hold it, if the training config accepts it."""
    trial_config = copy_config(task_config)
    try:
        with read_write(trial_config), open_dict(trial_config):
            OmegaConf.update(trial_config, name, value, force_add=True)
        validate(trial_config)
        held = OmegaConf.select(trial_config, name, throw_on_resolution_failure=False)
        if isinstance(held, Container):
            return OmegaConf.to_container(held)
        return value if held is None else held
    except ConfigError as e:
        where = f"can reach {value!r}" if distribution is not None else f"fixes it to {value!r}"
        raise SearchSpaceError(f"the search space of '{name}' {where}, which the training config rejects: {e}") from None
    except Exception as e:
        hint = ""
        if isinstance(distribution, FloatDistribution) and isinstance(OmegaConf.select(task_config, name), int):
            hint = f"; it is an integer there: expected int(interval({int(distribution.low)}, {int(distribution.high)}))"
        raise SearchSpaceError(
            f"the search space of '{name}' {value!r} does not fit the training config: {first_line(e)}{hint}"
        ) from None  # first_line: not OmegaConf's key dump
