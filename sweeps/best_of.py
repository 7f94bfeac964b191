"""`python main.py best_of=<study>`: train with a study's best parameters."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from sweeps.storage import mask_url, open_storage
from sweeps.study import TRAINED_PARAMS_ATTR, best_params, best_trial, check_dataset, load_study

log = logging.getLogger(__name__)
_ABSENT = object()


class BestOfError(ValueError):
    """The best trial's settings cannot be applied to this run."""


def apply_best_of(cfg: DictConfig) -> None:
    """Set the best trial's parameters in `cfg`, except those given on the command line.

    `cfg` comes validated (main.py does it before anything is loaded)."""
    if not cfg.best_of:
        return
    where = mask_url(cfg.storage)
    storage = open_storage(cfg.storage, must_exist=True)
    study = load_study(cfg.best_of, storage, where)
    trial = best_trial(study, storage, where)
    from ds.run import load_data  # torch, imported once data is needed: config errors come fast

    check_dataset(study, load_data(cfg).identity, where, user="run")
    hydra = HydraConfig.get()
    explicit = {o.key_or_group.lstrip("+~") for o in OverridesParser.create().parse_overrides(list(hydra.overrides.task))}
    sampled_or_fixed = best_params(trial)
    # Every params.* value the trial trained with, as its task recorded it:
    # its params config may have been edited since.
    trained = {f"params.{k}": v for k, v in trial.user_attrs.get(TRAINED_PARAMS_ATTR, {}).items()}
    recorded = {**trained, **sampled_or_fixed}
    # `params=other` on the command line covers every params.* key; the
    # choice the best trial ran with (`params=tuned`) only selects the group.
    covering = {e for e in explicit if not (e in hydra.runtime.choices and recorded.get(e) == hydra.runtime.choices[e])}
    applied = {k: v for k, v in recorded.items() if not any(k == e or k.startswith(e + ".") for e in covering)}
    unknown = [k for k in applied if k not in hydra.runtime.choices and OmegaConf.select(cfg, k, default=_ABSENT) is _ABSENT]
    if unknown:
        raise BestOfError(
            f"best_of={cfg.best_of}: trial {trial.number} of study {study.study_name!r} in {where} has "
            f"{', '.join(unknown)}, not a key of this project's training config; expected a study of this "
            "project's sweeps (python -m sweeps list shows the studies)"
        )
    # What only the trained record gives, where this run's config differs: said, not silently replaced.
    current = {k: OmegaConf.select(cfg, k, default=v) for k, v in applied.items() if k not in sampled_or_fixed}
    edited = {k: v for k, v in current.items() if v != applied[k]}
    for key, value in applied.items():
        if key in hydra.runtime.choices:  # a config group, composed before best_of could choose it
            if hydra.runtime.choices[key] != value:
                raise BestOfError(
                    f"best_of={cfg.best_of}: trial {trial.number} ran with {key}={value}, this run has "
                    f"{key}={hydra.runtime.choices[key]}; expected {key}={value} on this command line"
                )
            continue
        OmegaConf.update(cfg, key, value)
    kept = sorted(set(recorded) - set(applied))
    if edited:
        log.info(
            "best_of=%s: as trial %d trained, where this run's config has other values: %s",
            cfg.best_of,
            trial.number,
            ", ".join(f"{k}={applied[k]!r} (not {v!r})" for k, v in edited.items()),
        )
    log.info(
        "best_of=%s: trial %d of %s (value %.4f) gives %s%s",
        cfg.best_of,
        trial.number,
        where,
        trial.value,
        applied,
        f"; kept from the command line: {kept}" if kept else "",
    )
    _save_source(
        {"study": cfg.best_of, "storage": where, "trial": trial.number, "value": trial.value, "applied": applied, "kept_from_command_line": kept}
    )


def _save_source(source: dict[str, Any]) -> None:
    """Beside Hydra's config.yaml (saved before best_of changed it): where the
    parameters came from and what they were."""
    hydra = HydraConfig.get()
    if hydra.output_subdir is not None:
        directory = Path(hydra.runtime.output_dir) / hydra.output_subdir
        directory.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(source), directory / "best_of.yaml")
