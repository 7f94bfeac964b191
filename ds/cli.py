"""Checks on main.py's command line that Hydra's callbacks make once the config is composed and
before any job starts: an output folder Hydra could not make is one `error:` paragraph, where
Hydra's own mkdir would end in a traceback.

conf/config.yaml registers OutputFolderCheck under hydra.callbacks. Hydra calls it for a run
or a sweep, not for what only prints (--cfg, --help, --info).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ds.config import directory_problem


class OutputFolderCheck(Callback):
    """Refuses hydra.run.dir (a run) or hydra.sweep.dir (a sweep, when the command line sets it)
    if it cannot be made."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse("hydra.run.dir", config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse("hydra.sweep.dir", config)


def _refuse(key: str, config: DictConfig) -> None:
    # A sweep's folder is made when its first trial starts: checked only where the command line
    # sets it. A run's is made at once, Hydra's default (outputs/...) included.
    if key == "hydra.sweep.dir" and not any(_key_of(o) == key for o in config.hydra.overrides.hydra):
        return
    group, name = key.rsplit(".", 1)
    section: Any = OmegaConf.to_container(OmegaConf.select(config, group), resolve=False)  # as written
    problem = output_dir_problem(key, str(section[name]))
    if problem is not None:
        sys.exit(f"error: {problem}.")


def _key_of(override: str) -> str:
    return override.split("=", 1)[0].strip().lstrip("+")


def output_dir_problem(key: str, value: str) -> str | None:
    """Why the job's output folder `value` cannot be made, in one sentence, or None.

    Only its part before the first interpolation (`${now:...}`) is known before Hydra resolves
    it; that part is made now if missing, as Hydra would next.
    """
    parts = Path(value).parts
    literal = next((i for i, part in enumerate(parts) if "${" in part), len(parts))
    if literal == 0:
        return None  # where it is depends on the interpolation
    known = Path(*parts[:literal])
    problem = directory_problem(known)
    if problem is None:
        return None
    where = problem if known == Path(value) else f"{known}: {problem}"
    return f"{key}={value!r}: expected a writable directory, or a path where one can be made ({where})"
