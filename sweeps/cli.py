"""`python -m sweeps`: list studies, show the best trial, export its parameters."""

from __future__ import annotations

import argparse
import datetime
import re
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial

from ds.config import register_configs
from ds.errors import first_line
from sweeps.storage import DEFAULT_STORAGE, StorageError, default_storage, mask_url, open_storage
from sweeps.study import (
    SEARCHPATH_ATTR,
    TRAINED_PARAMS_ATTR,
    StudyError,
    best_params,
    best_trial,
    describe_states,
    describe_trial,
    load_study,
)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
REPO_PARAMS_DIR = CONF_DIR / "params"
# A name `python main.py params=<name>` selects: no path, no dot, no quoting.
CONFIG_NAME = re.compile(r"[A-Za-z0-9_-]+")


class ExportError(ValueError):
    """An export target that cannot be written or selected."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = getattr(args, "storage", None) or default_storage()
    try:
        storage = open_storage(url, must_exist=True)
        where = mask_url(url)
        if args.command == "list":
            list_studies(storage, where)
        elif args.command == "show":
            show(load_study(args.study, storage, where), storage, where)
        else:
            export(load_study(args.study, storage, where), storage, where, args.name, Path(args.params_dir))
    except (StorageError, StudyError, ExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def list_studies(storage: optuna.storages.BaseStorage, where: str) -> None:
    summaries = optuna.get_all_study_summaries(storage)
    if not summaries:
        print(f"no studies in {where}")
        return
    print(f"studies in {where}:")
    for summary in summaries:
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        best = f"{summary.best_trial.value:.4f}" if summary.best_trial else "-"
        print(f"  {summary.study_name}: {describe_states(study)}; best value {best}")


def show(study: optuna.Study, storage: optuna.storages.BaseStorage, where: str) -> None:
    best = best_trial(study, storage, where)
    print(f"study {study.study_name} in {where}")
    print(f"best: {describe_trial(best)}")
    for key, value in best_params(best).items():
        print(f"  {key}={value}")


def export(
    study: optuna.Study, storage: optuna.storages.BaseStorage, where: str, name: str | None, params_dir: Path
) -> Path:
    """Write the best trial's `params.*` values as a config of the `params` group."""
    best = best_trial(study, storage, where)
    name = name or f"best_{study.study_name}".replace("-", "_")
    if not CONFIG_NAME.fullmatch(name):
        raise ExportError(
            f"config name {name!r} cannot be selected with params=<name>; expected letters, digits, '_' or '-' (--name ...)"
        )
    if params_dir.exists() and not params_dir.is_dir():
        raise ExportError(f"--params-dir {params_dir} is a file; expected a directory (default: {REPO_PARAMS_DIR})")
    target = params_dir / f"{name}.yaml"
    if target.exists():
        raise ExportError(f"{target} exists; expected a new config name: choose another --name or remove it first")
    params = best_params(best)
    values = trained_params(best)
    # A config-group choice (`params=tuned`) is what the exported config replaces.
    others = [f"{k}={v}" for k, v in params.items() if not k.startswith("params.") and not (CONF_DIR / k).is_dir()]
    command = " ".join(["python", "main.py", *_search_path_override(params_dir), f"params={name}", *others])
    lines = [
        f"# Best trial {best.number} of study {study.study_name} in {where}:",
        f"# test accuracy {best.value:.4f}, exported {datetime.date.today().isoformat()}.",
        f"# Use it with: {command}",
        OmegaConf.to_yaml(OmegaConf.create(values)).rstrip(),
    ]
    try:
        params_dir.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(lines) + "\n")
    except OSError as e:
        raise ExportError(f"cannot write {target} ({e.strerror}); expected a writable --params-dir") from None
    if params_dir.resolve() == REPO_PARAMS_DIR or params_dir.name == "params":
        print(f"wrote {target}; train with it: {command}")
    else:
        print(
            f"wrote {target}; Hydra finds params configs in conf/params/ or in a folder named params/ on "
            f"hydra.searchpath: move it to conf/params/, then train with it: {command}"
        )
    if others:
        print(f"note: the best trial also set {' '.join(others)}, which a params config cannot hold; pass it as above")
    return target


def trained_params(trial: FrozenTrial) -> dict[str, Any]:
    """Every `params.*` value `trial` trained with, so that the export also
    holds what the sweep neither sampled nor fixed: as the trial's task
    recorded them or, for a trial without that record (from an earlier
    version of this project), its recorded values over its params config,
    composed from the files as they are now."""
    if TRAINED_PARAMS_ATTR in trial.user_attrs:
        return dict(trial.user_attrs[TRAINED_PARAMS_ATTR])
    recorded = best_params(trial)
    group = recorded.get("params")
    overrides = [*trial.user_attrs.get(SEARCHPATH_ATTR, []), *([f"params={group}"] if group else [])]
    register_configs()
    try:
        with _own_hydra():
            values = OmegaConf.to_container(compose(config_name="config", overrides=overrides).params)
    except HydraException as e:
        raise ExportError(
            f"trial {trial.number} trained on params={group or 'default'}, which Hydra cannot compose from here "
            f"({first_line(e)}); expected that params config in {REPO_PARAMS_DIR}"
            + "".join(f" or as the sweep found it ({o})" for o in overrides if o.startswith("hydra.searchpath"))
        ) from None
    unknown = [k for k in recorded if k.startswith("params.") and k.removeprefix("params.") not in values]
    if unknown:
        raise ExportError(
            f"trial {trial.number} has {', '.join(unknown)}, not a key of the params config; expected a study "
            "of this project's sweeps"
        )
    values.update({k.removeprefix("params."): v for k, v in recorded.items() if k.startswith("params.")})
    return values


@contextmanager
def _own_hydra() -> Iterator[None]:
    """Hydra set up on conf/ for composing, also when the caller runs inside
    another Hydra app (whose set-up comes back afterwards)."""
    outer = GlobalHydra.instance().hydra if GlobalHydra.instance().is_initialized() else None
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR)):
            yield
    finally:
        if outer is not None:
            GlobalHydra.instance().initialize(outer)


def _search_path_override(params_dir: Path) -> list[str]:
    """What makes Hydra find a `params` config written to `params_dir`, beside conf/params."""
    if params_dir.resolve() == REPO_PARAMS_DIR or params_dir.name != "params":
        return []
    return [shlex.quote(f"hydra.searchpath=[file://{params_dir.parent.resolve()}]")]


def _parser() -> argparse.ArgumentParser:
    # --storage before or after the command: `--storage X list` and `list --storage X`.
    storage = argparse.ArgumentParser(add_help=False)
    storage.add_argument(
        "--storage",
        default=argparse.SUPPRESS,
        help=f"study storage URL (default: $SWEEP_STORAGE, else {DEFAULT_STORAGE})",
    )
    parser = argparse.ArgumentParser(prog="python -m sweeps", description=__doc__, parents=[storage])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", parents=[storage], help="studies with trial counts by state and best value")
    show_cmd = commands.add_parser("show", parents=[storage], help="a study's best trial and its parameters")
    show_cmd.add_argument("study")
    export_cmd = commands.add_parser(
        "export", parents=[storage], help="write the best parameters to conf/params/<name>.yaml"
    )
    export_cmd.add_argument("study")
    export_cmd.add_argument("--name", help="config name (default: best_<study>)")
    export_cmd.add_argument("--params-dir", default=str(REPO_PARAMS_DIR), help="default: %(default)s")
    return parser

