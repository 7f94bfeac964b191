"""The config group options a sweep runs with (`model=choice(linearnet,mlp)`, `optimizer=sgd`).

Trials of another model do not compare: the pruner would measure them against
the wrong curves. `sweep_groups(config)` reads a sweep's options from its
config (the command line and `hydra.sweeper.params`), so that an app's
`SweepHooks.study_name` can name a study after them; the sweeper records them
on the study (`GROUPS_ATTR`) and refuses a later sweep with other options.
"""

from __future__ import annotations

from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

# The sweep's group options recorded on a study: {group: [option, ...]}.
GROUPS_ATTR = "groups"


class GroupsMismatchError(ValueError):
    """A sweep whose config group options differ from those its study recorded."""


def sweep_groups(config: DictConfig, *, overridden_only: bool = False) -> dict[str, list[str]]:
    """{group: its sorted options} for every config group of the app (Hydra's own left out);
    `overridden_only`: only the groups the command line or `hydra.sweeper.params` name."""
    choices = config.hydra.runtime.choices
    groups = {
        g: [str(v)]
        for g, v in choices.items()
        if not g.startswith("hydra") and v is not None and "@" not in g
    }
    declared = config.hydra.sweeper.get("params") or {}
    entries = [f"{k}={v}" for k, v in declared.items() if v is not None]
    named: dict[str, list[str]] = {}
    parser = OverridesParser.create()
    for entry in [*entries, *config.hydra.overrides.task]:
        try:
            [override] = parser.parse_overrides([entry])
        except Exception:
            continue  # the sweeper reports it
        group = override.key_or_group
        if group not in choices or group.startswith("hydra"):
            continue
        if override.is_delete():
            named[group] = []
        elif override.is_choice_sweep():
            named[group] = sorted({str(v) for v in override.sweep_string_iterator()})
        else:
            named[group] = [override.get_value_element_as_str()]
    if overridden_only:
        return {g: v for g, v in named.items() if v}
    return {g: v for g, v in {**groups, **named}.items() if v}


def check_groups(study: optuna.Study, groups: dict[str, list[str]], where: str) -> None:
    """Refuse a sweep whose group options differ from those `study` recorded; record them on a
    study that has none yet."""
    recorded: Any = study.user_attrs.get(GROUPS_ATTR)
    if recorded is None:
        study.set_user_attr(GROUPS_ATTR, groups)
        return
    if not isinstance(recorded, dict):
        raise GroupsMismatchError(
            f"study {study.study_name!r} in {where} has a damaged user attr {GROUPS_ATTR!r} "
            f"({str(recorded)[:60]!r}); expected {{group: [options]}}, or another study "
            "(hydra.sweeper.study_name=...)"
        )
    differing = sorted(g for g in {*recorded, *groups} if sorted(recorded.get(g, [])) != groups.get(g, []))
    if differing:
        raise GroupsMismatchError(
            f"study {study.study_name!r} in {where} holds trials of {_shown(recorded, differing)}, "
            f"but this sweep's are {_shown(groups, differing)}; the pruner and sampler would compare "
            "them with one another. Expected the study's options, or another study: leave "
            "hydra.sweeper.study_name unset for one named after them, or name one"
        )


def _shown(groups: dict[str, Any], names: list[str]) -> str:
    return ", ".join(f"{g}={','.join(map(str, groups.get(g, []))) or '(none)'}" for g in names)
