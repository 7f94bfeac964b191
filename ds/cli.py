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

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
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


RUN_CHECKPOINT = "checkpoint.pt"  # pruning_optuna_sweeper.checkpoint.RUN_CHECKPOINT, where a single run saves


def resume_argv(overrides: list[str], multirun: bool) -> list[str] | str:
    """The overrides that continue the run `resume=<run folder>` names, or why it cannot, in one sentence.

    The run's own overrides (its .hydra/overrides.yaml) come first, then this command line's, and
    the run's folder is the output folder again, where its checkpoint is. No resume=: unchanged.
    """
    folder = _last_value(overrides, "resume")
    if folder is None:
        return overrides
    if multirun:
        return (
            f"resume={folder!r} continues a single run; expected no -m (rerun a sweep's command to resume it)"
        )
    run = Path(str(folder))
    saved = run / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        return f"resume={folder!r}: expected the folder of a run (with .hydra/overrides.yaml in it)"
    if not (run / RUN_CHECKPOINT).is_file():
        return (
            f"resume={folder!r}: the run left no {RUN_CHECKPOINT} (it finished, or stopped before its "
            "first epoch ended); expected a run stopped during training"
        )
    from omegaconf import OmegaConf

    before = [str(o) for o in OmegaConf.load(saved) if not str(o).lstrip("+").startswith("resume=")]
    given = [o for o in overrides if not o.lstrip("+").startswith("hydra.run.dir=")]
    return [*before, *given, f"hydra.run.dir={_quoted(str(run))}"]


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _last_value(overrides: list[str], key: str) -> object:
    """The value the last override of `key` (with or without + or ++) gives it; None when none does."""
    parser = OverridesParser.create()
    value = None
    for text in overrides:
        try:
            [override] = parser.parse_overrides([text])
        except OverrideParseException:
            continue  # Hydra reports it
        if override.key_or_group == key:
            value = None if override.is_delete() else override.value()
    return value
