"""`python -m pruning_optuna_sweeper`: list studies, show the best trial, print the trials, recover dead
workers' trials, export the best parameters, copy the best trial's stored model (its artifact) to a file,
write a report (an HTML page and PNGs), serve a storage to many workers (a gRPC proxy and a dashboard).

Works on any study of any app; the storage is --storage, else $SWEEP_STORAGE,
else sqlite:///studies/optuna.db.
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from pathlib import Path

import optuna
from omegaconf import OmegaConf

from pruning_optuna_sweeper.artifacts import MODEL_ARTIFACT_ATTR, ArtifactError, fetch_artifact
from pruning_optuna_sweeper.compat import retry_callback
from pruning_optuna_sweeper.serve import add_arguments as add_serve_arguments
from pruning_optuna_sweeper.serve import serve
from pruning_optuna_sweeper.storage import (
    DEFAULT_STORAGE,
    StorageError,
    default_storage,
    mask_url,
    open_storage,
)
from pruning_optuna_sweeper.stranded import recover_stranded
from pruning_optuna_sweeper.study import (
    StudyError,
    best_params,
    best_trials,
    describe_states,
    describe_trial,
    load_study,
    trained_values,
    trial_table,
)

# A name Hydra selects as a config group option: no path, no dot, no quoting.
CONFIG_NAME = re.compile(r"[A-Za-z0-9_-]+")


class ExportError(ValueError):
    """An export target that cannot be written or selected."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = getattr(args, "storage", None) or default_storage()
    try:
        if args.command == "serve":
            serve(url, args.host, args.port, args.dashboard_port, dashboard=not args.no_dashboard)
            return 0
        storage = open_storage(url, must_exist=True)
        where = mask_url(url)
        if args.command == "list":
            list_studies(storage, where)
            return 0
        study = load_study(args.study, storage, where)
        if args.command == "show":
            show(study, storage, where)
        elif args.command == "trials":
            trials = study.get_trials(deepcopy=False)
            print("\n".join(trial_table(trials)) if trials else f"study {study.study_name}: no trials")
        elif args.command == "recover":
            recover(url, study.study_name, args.grace_period)
        elif args.command == "report":
            report(study, url, args.out)
        elif args.command == "model":
            copy_model(study, storage, url, Path(args.out), args.trial, args.attr)
        else:
            export(study, storage, where, args.group, args.name, Path(args.dir) if args.dir else None)
    except (StorageError, StudyError, ExportError) as error:  # ArtifactError is a StudyError
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def list_studies(storage: optuna.storages.BaseStorage, where: str) -> None:
    names = optuna.study.get_all_study_names(storage)
    if not names:
        print(f"no studies in {where}")
        return
    print(f"studies in {where}:")
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        best = f"{study.best_value:.4f}" if complete and len(study.directions) == 1 else "-"
        print(f"  {name}: {describe_states(study)}; best value {best}")


def show(study: optuna.Study, storage: optuna.storages.BaseStorage, where: str) -> None:
    print(f"study {study.study_name} in {where}")
    for best in best_trials(study, storage, where):
        print(f"best: {describe_trial(best)}")
        for key, value in best_params(best).items():
            print(f"  {key}={value}")


def report(study: optuna.Study, url: str, out: str | None) -> None:
    """Write the study's report (pruning_optuna_sweeper/report.py) into `out`, else its default
    folder, and say where."""
    from pruning_optuna_sweeper.report import default_folder, write_report

    folder = Path(out) if out else default_folder(url, study.study_name)
    written = write_report(study, folder, mask_url(url))
    size = written.html.stat().st_size
    print(f"wrote {written.html} ({size / 1e6:.1f} MB, plotly.js included: opens offline)")
    for png in written.pngs:
        print(f"wrote {png} ({png.stat().st_size / 1e3:.0f} kB)")
    for heading, why in written.skipped.items():
        print(f"not drawn: {heading.lower()}: {why}")


def recover(url: str, study_name: str, grace_period: int) -> None:
    """Fail the study's RUNNING trials whose sweep process on this machine has ended, or whose
    worker sent no heartbeat for `grace_period` seconds, and queue each again once: what a sweep
    does before each trial (Optuna's stale-trial check and RetryHeartbeatStaleTrialCallback)."""
    retry = retry_callback()(max_retry=1, inherit_intermediate_values=True)
    storage = open_storage(url, heartbeat_interval=1, grace_period=grace_period, stale_trial_callback=retry)
    study = optuna.load_study(study_name=study_name, storage=storage)
    running = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    stranded = [t.number for t in recover_stranded(study, storage, retry)]
    for number in stranded:
        print(f"trial {number}: its sweep process on this machine has ended; marked FAIL and queued again")
    optuna.storages.fail_stale_trials(study)
    still = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    for number in sorted(running - still - set(stranded)):
        print(f"trial {number}: no heartbeat for over {grace_period} s; marked FAIL and queued again")
    for number in sorted(still):
        print(f"trial {number}: still RUNNING (its worker beats, or it has no heartbeats to judge by)")
    if not running:
        print(f"study {study_name}: no RUNNING trial")


def export(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    where: str,
    group: str | None,
    name: str | None,
    directory: Path | None,
) -> Path:
    """Write the best trial's values under `group` (by default the common first part of the
    searched keys, e.g. params for params.lr) as an option of that config group."""
    [best] = best_trials(study, storage, where)[:1]
    values = trained_values(best)
    prefixes = {k.lstrip("+").split(".", 1)[0] for k in best.params if "." in k}
    group = group or (prefixes.pop() if len(prefixes) == 1 else None)
    if group is None:
        raise ExportError(
            f"the best trial's searched keys ({', '.join(best.params) or 'none'}) "
            "share no config group; expected "
            "--group NAME, the group whose keys to export"
        )
    grouped = {k.removeprefix(f"{group}."): v for k, v in values.items() if k.startswith(f"{group}.")}
    if not grouped:
        raise ExportError(
            f"the best trial has no key under {group}. ({', '.join(values)}); expected another --group"
        )
    name = name or f"best_{study.study_name}".replace("-", "_")
    if not CONFIG_NAME.fullmatch(name):
        raise ExportError(
            f"config name {name!r} cannot be selected with {group}=<name>; "
            "expected letters, digits, '_' or '-' (--name)"
        )
    directory = directory or Path("conf") / group
    if directory.exists() and not directory.is_dir():
        raise ExportError(f"--dir {directory} is a file; expected a directory (default: conf/{group})")
    target = directory / f"{name}.yaml"
    if target.exists():
        raise ExportError(
            f"{target} exists; expected a new config name: choose another --name or remove it first"
        )
    # What else the sweep searched, which a command selecting the option must still give.
    others = [f"{k}={v}" for k, v in best.params.items() if not k.startswith(f"{group}.") and k != group]
    lines = [
        f"# Best trial {best.number} of study {study.study_name} in {where}:",
        f"# value {best.value:.4f}, exported {datetime.date.today().isoformat()}.",
        f"# Select it with {group}={name}" + (f" (the trial also had {' '.join(others)})" if others else ""),
        OmegaConf.to_yaml(OmegaConf.create(grouped)).rstrip(),
    ]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(lines) + "\n")
    except OSError as e:
        raise ExportError(f"cannot write {target} ({e.strerror}); expected a writable --dir") from None
    print(f"wrote {target}; select it with {group}={name}" + (f" {' '.join(others)}" if others else ""))
    return target


def copy_model(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    url: str,
    out: Path,
    number: int | None,
    attr: str,
) -> Path:
    """Copy the stored file of the best trial (or of trial `number`, e.g. a pruned one) to `out`, a new
    file: the artifact whose id the trial records under user attr `attr`, byte for byte."""
    where = mask_url(url)
    if number is None:
        [trial] = best_trials(study, storage, where)[:1]
    else:
        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        if number not in trials:
            raise ArtifactError(
                f"--trial {number}: study {study.study_name!r} in {where} has no such trial; expected one of "
                f"{_span(sorted(trials))}"
            )
        trial = trials[number]
    fetch_artifact(study, storage, trial, url, out, attr)
    value = "-" if trial.value is None else f"{trial.value:.4f}"
    print(
        f"wrote {out}: trial {trial.number}'s {attr} ({trial.state.name}, value {value}) "
        f"of study {study.study_name}"
    )
    return out


def _span(numbers: list[int]) -> str:
    return "none (it has no trials)" if not numbers else f"{numbers[0]}..{numbers[-1]}"


def _parser() -> argparse.ArgumentParser:
    # --storage before or after the command: `--storage X list` and `list --storage X`.
    storage = argparse.ArgumentParser(add_help=False)
    storage.add_argument(
        "--storage",
        default=argparse.SUPPRESS,
        help=f"study storage URL (default: $SWEEP_STORAGE, else {DEFAULT_STORAGE})",
    )
    # Usage and errors name the command as it was called: the console script, or `python -m`.
    called = "pruning-optuna-sweeper" if Path(sys.argv[0]).name == "pruning-optuna-sweeper" else None
    parser = argparse.ArgumentParser(
        prog=called or "python -m pruning_optuna_sweeper", description=__doc__, parents=[storage]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", parents=[storage], help="studies with trial counts by state and best value")

    def study_command(name: str, text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, parents=[storage], help=text)
        command.add_argument("study")
        return command

    study_command("show", "a study's best trial and its parameters")
    study_command("trials", "every trial, one line each")
    report_cmd = study_command(
        "report", "an HTML page of plots and trials, and PNGs of the main plots (needs plotly, matplotlib)"
    )
    report_cmd.add_argument(
        "--out", help="the folder to write to (default: <study file>-reports/<study>/ beside a SQLite study)"
    )
    recover_cmd = study_command("recover", "fail and queue again the RUNNING trials of dead workers")
    recover_cmd.add_argument(
        "--grace-period", type=int, default=30, help="seconds without a heartbeat (default: %(default)s)"
    )
    export_cmd = study_command(
        "export", "write the best parameters as a config group option (conf/<group>/<name>.yaml)"
    )
    export_cmd.add_argument("--group", help="the config group (default: the common first part of the keys)")
    export_cmd.add_argument("--name", help="the option's name (default: best_<study>)")
    export_cmd.add_argument("--dir", help="where to write it (default: conf/<group>)")
    model_cmd = study_command(
        "model", "copy the best trial's stored model (an Optuna artifact) to a new file"
    )
    model_cmd.add_argument(
        "--out", required=True, help="the file to write (an existing one is not overwritten)"
    )
    model_cmd.add_argument("--trial", type=int, help="another trial's, by number (default: the best trial)")
    model_cmd.add_argument(
        "--attr",
        default=MODEL_ARTIFACT_ATTR,
        help="the user attr holding the artifact id (default: %(default)s)",
    )
    serve_cmd = commands.add_parser(
        "serve",
        parents=[storage],
        help="serve a storage to many workers (storage=grpc://HOST:PORT), with optuna-dashboard beside it",
    )
    add_serve_arguments(serve_cmd)
    return parser
