"""Compose a sweep's config once, then give each trial a copy with its values.

Hydra recomposes the whole config (defaults tree, schemas, hydra's own
groups) for every job a launcher starts, which can take longer than a
one-epoch trial on a small dataset takes to train. Trials of a sweep differ
only in the values of the same keys: when a trial's overrides that are not
plain values (config groups, `~` deletions, `+` additions of new keys) are the
same as those of the last composition, and its plain values set the same
keys, the trial's config is a copy of that composition with the values set
by `OmegaConf.update`, as Hydra's own override step does. Anything else is
composed by Hydra as usual; tests/test_config_reuse.py compares the two.

The composition is kept pickled: unpickling is the copy, several times faster
than `copy.deepcopy` on an OmegaConf config, with the same nodes and flags. A
launcher that runs trials in worker processes (joblib) pickles the loader
with every job; each worker unpickles it to one loader per sweep, so a worker
composes once and reuses that for the later trials it runs.
"""

from __future__ import annotations

import copy
import pickle
import uuid
from typing import Any, cast

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import Container, DictConfig, OmegaConf, read_write

# Hydra keys a sweep sets per trial that are plain values of the job's config.
_PER_TRIAL_HYDRA_KEYS = ("hydra.job.env_set.",)


class ReusingConfigLoader:
    """Wraps Hydra's config loader; only `load_sweep_config` is changed."""

    def __init__(self, inner: ConfigLoader, sweep_id: str | None = None) -> None:
        self._inner = inner
        self._sweep_id = sweep_id or uuid.uuid4().hex
        self._parser = OverridesParser.create()
        # (the overrides' shape, the pickled composition): one attribute, replaced whole.
        self._base: tuple[tuple[list[str], list[str | None]], bytes | None] | None = None

    def __reduce__(self) -> tuple[Any, tuple[str, Any]]:
        return _loader_of_sweep, (self._sweep_id, self._inner)

    def __getattr__(self, name: str) -> Any:
        # Only called for names not found on self; the dunders pickle looks up are not forwarded.
        if name == "_inner" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        parsed = self._parser.parse_overrides(list(sweep_overrides))
        if any(o.is_sweep_override() for o in parsed):
            return self._inner.load_sweep_config(master_config, sweep_overrides)
        plain: list[Override] = []
        others: list[Override] = []
        for override in parsed:
            (plain if _is_plain_value(override, master_config) else others).append(override)
        key = ([o.key_or_group for o in plain], [o.input_line for o in others])
        base = self._base
        if base is None or base[1] is None or key != base[0]:
            composed = self._inner.load_sweep_config(master_config, sweep_overrides)
            self._base = (key, _pickled(composed))
            return composed
        config = pickle.loads(base[1])
        with read_write(config):
            for override in plain:
                OmegaConf.update(config, override.key_or_group, override.value(), merge=True, force_add=True)
            hydra = [o.input_line for o in parsed if o.key_or_group.startswith("hydra.")]
            config.hydra.overrides.hydra = [*master_config.hydra.overrides.hydra, *hydra]
            config.hydra.overrides.task = [
                o.input_line for o in parsed if not o.key_or_group.startswith("hydra.")
            ]
        return cast(DictConfig, config)


_LOADERS_OF_SWEEPS: dict[str, ReusingConfigLoader] = {}


def _loader_of_sweep(sweep_id: str, inner: ConfigLoader) -> ReusingConfigLoader:
    """Unpickling in a worker: this process's loader for that sweep, made at
    its first job (a worker kept for a later sweep drops the earlier one's)."""
    if sweep_id not in _LOADERS_OF_SWEEPS:
        _LOADERS_OF_SWEEPS.clear()
        _LOADERS_OF_SWEEPS[sweep_id] = ReusingConfigLoader(inner, sweep_id)
    return _LOADERS_OF_SWEEPS[sweep_id]


def copy_config(config: DictConfig) -> DictConfig:
    """A deep copy of `config`, several times faster than `copy.deepcopy`."""
    pickled = _pickled(config)
    if pickled is None:
        return copy.deepcopy(config)
    copied: DictConfig = pickle.loads(pickled)
    return copied


def _pickled(config: DictConfig) -> bytes | None:
    """None for a config that does not pickle (one built from a class defined
    in a function): it is copied or composed the slow way."""
    try:
        return pickle.dumps(config, pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        return None


def _is_plain_value(override: Override, config: DictConfig) -> bool:
    """A value for a leaf the composition already has: setting it is all Hydra would do."""
    key = override.key_or_group
    if override.is_delete() or override.is_add() or override.package is not None:
        return False
    if isinstance(override.value(), (dict, list)):
        return False  # merged into a copy, a dict would keep the earlier trial's keys
    if key.startswith(_PER_TRIAL_HYDRA_KEYS):
        return True
    if key == "hydra" or key.startswith("hydra."):
        return False
    node = OmegaConf.select(
        config, key, default=_ABSENT, throw_on_missing=False, throw_on_resolution_failure=False
    )
    return node is not _ABSENT and not isinstance(node, Container)


_ABSENT = object()
