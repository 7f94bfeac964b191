"""main.py's command line as Hydra will read it, and the checks made on it before Hydra starts.

Hydra's own parser is not public API; this one declares the same
options with argparse, so that the overrides (what Hydra saves and prints)
and the mode are known before Hydra runs. No torch here: main.py checks its
command line in about a second.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException

from ds.config import directory_problem

# Hydra's options (hydra.main's command line) that take a value, with their short forms.
_VALUE_OPTIONS = {
    "--cfg": "-c",
    "--package": "-p",
    "--config-path": "-cp",
    "--config-name": "-cn",
    "--config-dir": "-cd",
    "--experimental-rerun": None,
}
_CHOICES = {
    "--cfg": ["job", "hydra", "all"],
    "--info": ["all", "aliases", "config", "defaults", "defaults-tree", "plugins", "searchpath"],
}
_FLAGS = {
    "--help": "-h",
    "--hydra-help": None,
    "--version": None,
    "--resolve": None,
    "--run": "-r",
    "--multirun": "-m",
    "--shell-completion": "-sc",
}


class _Unparsed(Exception):
    """A command line Hydra itself should answer (with its usage message)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _Unparsed(message)


@dataclass(frozen=True)
class CommandLine:
    overrides: list[str]
    multirun: bool
    runs_jobs: bool  # False for --cfg, --help, --info and the like, which only print


def parse_command_line(argv: list[str]) -> CommandLine | None:
    """The overrides and mode of `argv` (sys.argv[1:]), or None when Hydra will refuse it anyway."""
    parser = _Parser(add_help=False)
    parser.add_argument("overrides", nargs="*")
    for option, short in _VALUE_OPTIONS.items():
        parser.add_argument(option, *([short] if short else []), choices=_CHOICES.get(option))
    for option, short in _FLAGS.items():
        parser.add_argument(option, *([short] if short else []), action="store_true")
    parser.add_argument("--info", "-i", nargs="?", const="all", choices=_CHOICES["--info"])
    try:
        args, _ = parser.parse_known_intermixed_args(argv)
    except _Unparsed:
        return None
    only_prints = any((args.help, args.hydra_help, args.version, args.cfg, args.info, args.shell_completion))
    return CommandLine(list(args.overrides), bool(args.multirun), not only_prints)


def output_dir_problem(command: CommandLine) -> str | None:
    """Why the job's output folder (hydra.run.dir, or a multirun's hydra.sweep.dir) given on the
    command line cannot be made, in one sentence, or None.

    Only its part before the first interpolation (`${now:...}`) is known before Hydra
    runs; it is made now if missing, as Hydra would next (paths.log is checked alike).
    """
    key = "hydra.sweep.dir" if command.multirun else "hydra.run.dir"
    value = _last_value(command.overrides, key)
    if not command.runs_jobs or not isinstance(value, str):
        return None
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


def resume_argv(command: CommandLine) -> list[str] | str:
    """The overrides that continue the run `resume=<run folder>` names, or why it cannot, in one sentence.

    The run's own overrides (its .hydra/overrides.yaml) come first, then this command line's, and
    the run's folder is the output folder again, where its checkpoint is. No resume=: unchanged.
    """
    folder = _last_value(command.overrides, "resume")
    if folder is None or not command.runs_jobs:
        return command.overrides
    if command.multirun:
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
    given = [o for o in command.overrides if not o.lstrip("+").startswith("hydra.run.dir=")]
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
