"""The sweep's search space: the stock syntax parsed into Optuna distributions, checked before any trial.

`key=choice(...)`, `range(...)`, `interval(...)` (`int(...)`, `tag(log, ...)`,
`shuffle(...)`) become distributions as in the stock hydra-optuna-sweeper; any
other override is a fixed value passed to every trial, and `~key` deletions
are passed through.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import FloatRange, Override, Transformer
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    check_distribution_compatibility,
)

from pruning_optuna_sweeper.hooks import SweepHooks, overridden
from pruning_optuna_sweeper.storage import first_line

from ._config_reuse import copy_config


class SearchSpaceError(ValueError):
    """A search space that cannot be swept."""


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution]
    fixed: dict[str, str]  # one value for every trial, as the override wrote it
    fixed_overrides: list[str]  # deletions (~key), passed through as they are


def parse_search_space(declared: DictConfig | None, arguments: list[str]) -> SearchSpace:
    """`hydra.sweeper.params` and the command line's overrides, the command line's winning per key."""
    given = {argument.split("=", 1)[0].strip(): argument for argument in arguments}
    declared_entries = [f"{k!s}={v}" for k, v in (declared or {}).items() if k not in given and v is not None]
    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    deletions: list[str] = []
    parser = OverridesParser.create()
    for entry in declared_entries + list(given.values()):
        try:
            [override] = parser.parse_overrides([entry])
            if override.is_delete():
                deletions.append(entry)
            elif override.is_sweep_override():
                distributions[override.get_key_element()] = distribution_of(override)
            else:
                fixed[override.get_key_element()] = override.get_value_element_as_str()
        except Exception as e:
            raise SearchSpaceError(
                f"cannot sweep '{entry}': {str(e).rstrip('.')}; expected key=value, choice(...), range(...) "
                "or interval(...) with low < high"
            ) from None
    return SearchSpace(distributions, fixed, deletions)


def distribution_of(override: Override) -> BaseDistribution:
    """The Optuna distribution of a sweep override, as the stock plugin reads it."""
    if override.is_choice_sweep():
        choices: list[Any] = list(override.sweep_iterator(transformer=Transformer.encode))
        return CategoricalDistribution(choices)
    value: Any = override.value()  # an IntervalSweep or RangeSweep here, as the checks below tell
    if override.is_interval_sweep():
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(int(value.start), int(value.end), log=log)
        return FloatDistribution(value.start, value.end, log=log)
    if override.is_range_sweep():
        if value.step == 0:
            raise ValueError("a range needs a nonzero step")
        values: list[Any] = list(override.sweep_iterator(transformer=Transformer.encode))
        if not values:
            raise ValueError("a range must hold at least one value")
        if value.shuffle or value.transformers:
            return CategoricalDistribution(values)
        low, high, step = min(values), max(values), abs(value.step)
        if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
            return IntDistribution(low, high, step=step)
        if all(Decimal(str(float(v))) == Decimal(str(v)) for v in (low, high, step)) and (
            step >= max(math.ulp(low), math.ulp(high)) or low == high
        ):
            return FloatDistribution(float(low), float(high), step=float(step))
        return CategoricalDistribution(values)
    raise SearchSpaceError(f"{override.input_line}: this sweep override is not supported")


def grid_choices(name: str, distribution: BaseDistribution) -> list[Any]:
    """The points of a discrete distribution, for the grid sampler."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution):
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if isinstance(distribution, FloatDistribution) and distribution.step is not None:
        # In decimal steps, as the stock sweeper counts them:
        # 0.1 + 2 * 0.1 is 0.3 here, not 0.30000000000000004.
        choices = list(FloatRange(distribution.low, distribution.high, distribution.step))
        if not choices or choices[-1] != distribution.high:
            choices.append(distribution.high)
        return choices
    raise SearchSpaceError(
        f"the grid sampler needs a finite grid, but the sweep's range for {name} is a continuous interval; "
        "expected choice(...) or range(...) for it, or a value"
    )


def check_search_space(
    space: SearchSpace,
    task_config: DictConfig,
    group_options: Callable[[str], list[str]],
    hooks: SweepHooks,
) -> None:
    """Refuse keys the task's config does not have, ranges of one value, and what an
    app's hooks refuse: a key it must not vary, a range reaching a value its task would refuse."""
    try:
        hooks.check_search_space(space.distributions, space.fixed)
    except ValueError as e:
        raise SearchSpaceError(str(e)) from None
    check_trial_config = hooks.check_trial_config if overridden(hooks, "check_trial_config") else None

    def is_group(key: str) -> bool:
        return bool(group_options(key))

    for name in [*space.distributions, *space.fixed]:
        if is_group(name):
            options = group_options(name)
            dist = space.distributions.get(name)
            chosen = (
                list(dist.choices) if isinstance(dist, CategoricalDistribution) else [space.fixed.get(name)]
            )
            unknown = [str(c) for c in chosen if str(c) not in options]
            if (dist is not None and not isinstance(dist, CategoricalDistribution)) or unknown:
                raise SearchSpaceError(
                    f"the sweep has {name}={', '.join(unknown) or dist}, "
                    f"but config group '{name}' has the options "
                    f"{', '.join(options)}; expected one of them, or choice(...) of them"
                )
            continue
        if name.startswith("+"):
            continue  # adds a key: Hydra checks it per trial
        if OmegaConf.select(task_config, name, default=_ABSENT, throw_on_missing=False) is _ABSENT:
            raise SearchSpaceError(
                f"the sweep has '{name}' (in hydra.sweeper.params or on the command line), "
                "which is not a key "
                f"of the task's config; expected one of its keys, or '+{name}=...' to add it"
            )
    for name, distribution in space.distributions.items():
        extremes = _extremes(name, distribution)
        if check_trial_config is None or name.startswith("+") or is_group(name):
            continue
        for value in extremes:
            trial_config = copy_config(task_config)
            try:
                with read_write(trial_config), open_dict(trial_config):
                    OmegaConf.update(trial_config, name, value, merge=True)
                check_trial_config(trial_config)
            except Exception as e:
                hint = ""
                held = OmegaConf.select(task_config, name, default=None)
                if (
                    isinstance(distribution, FloatDistribution)
                    and isinstance(held, int)
                    and not isinstance(held, bool)
                ):
                    low, high = int(distribution.low), int(distribution.high)
                    hint = f"; it is an integer there: expected int(interval({low}, {high}))"
                raise SearchSpaceError(
                    f"the search space of '{name}' can reach {value!r}, which the task's config rejects: "
                    f"{first_line(e)}{hint}"
                ) from None


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
                f"the sweep's range for '{name}' is {distribution!r}, "
                f"but study {study.study_name!r} in {where} "
                f"sampled it from {recorded[name]!r} ({str(e).rstrip('.')}); expected a compatible range, or "
                "another study (hydra.sweeper.study_name=...)"
            ) from None


_ABSENT = object()


def _extremes(name: str, distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        if len({(type(c), c) for c in distribution.choices}) < 2:  # True == 1, yet they differ here
            raise SearchSpaceError(
                f"the search space of '{name}' holds a single value, "
                f"choice({', '.join(map(repr, distribution.choices))}); expected two or more choices, "
                f"or a fixed value instead of a range ({name}={distribution.choices[0]})"
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


def describe(distribution: BaseDistribution) -> str:
    """A range as a person reads it: "in [0.0001, 0.1] (log)", "one of 32, 64, 128"."""
    if isinstance(distribution, CategoricalDistribution):
        return "one of " + ", ".join(str(c) for c in distribution.choices)
    if isinstance(distribution, (FloatDistribution, IntDistribution)):
        step = f" step {distribution.step}" if distribution.step not in (None, 1) else ""
        kind = "int " if isinstance(distribution, IntDistribution) else ""
        scale = " (log)" if distribution.log else ""
        return f"{kind}in [{distribution.low:g}, {distribution.high:g}]{step}{scale}"
    return repr(distribution)


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """What `study.ask(distributions)` does, through the public suggest API."""
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    raise TypeError(f"{name}: unsupported distribution {distribution!r}")
