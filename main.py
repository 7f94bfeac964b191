"""Train a model on MNIST from the Hydra config in conf/.

python main.py                          # one run
python main.py params.lr=0.01           # any value overridden
python main.py -m hydra/sweeper=optuna  # an Optuna sweep (see README)
python main.py best_of=linearnet-mnist  # once more with a study's best
python main.py best_of=linearnet-mnist best_of_model=true  # its best trial's stored model, evaluated
python main.py evaluate=outputs/<date>/<time>/model.pt
python main.py resume=outputs/<date>/<time>  # a killed run, continued from its checkpoint
"""

import errno
import logging
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from ds.cli import resume_argv
from ds.config import ConfigError, register_configs, validate
from ds.datasets import DatasetError, SampleFallbackWarning
from ds.errors import CheckpointError, DeviceError, NonFiniteLossError
from ds.interrupts import RunProgress, exit_status, sigterm_as_interrupt
from pruning_optuna_sweeper import (
    ArtifactError,
    BestOfError,
    TrialPruned,
    apply_best,
    current_trial,
    fetch_best,
)
from pruning_optuna_sweeper.artifacts import MODEL_ARTIFACT_ATTR, ArtifactPathError
from pruning_optuna_sweeper.best_of import load_best
from pruning_optuna_sweeper.storage import StorageError, refuse_password_in_overrides
from pruning_optuna_sweeper.study import IdentityMismatchError, StudyError
from pruning_optuna_sweeper.trial import folder_name
from sweep_hooks import LinearNetHooks

log = logging.getLogger(__name__)

USER_ERRORS = (
    ConfigError,
    DatasetError,
    StorageError,
    StudyError,
    IdentityMismatchError,
    BestOfError,
    NonFiniteLossError,
    DeviceError,
    CheckpointError,
)

register_configs()


def say_sample_fallback_once() -> None:
    """ds.data logs the sample fallback (into the run's log too); its Python
    warning, for library callers, would say it a second time here."""
    warnings.filterwarnings("ignore", category=SampleFallbackWarning)


say_sample_fallback_once()


# The targets Hydra may instantiate from config on its own (conf/config.yaml: hydra.callbacks).
@hydra.main(config_path="conf", config_name="config", execution_whitelist=("ds.cli.OutputFolderCheck",))
def main(cfg: DictConfig) -> float:
    """Return the final value of the objective (test accuracy by default): what a sweeper maximises."""
    say_sample_fallback_once()  # also in a launcher's worker, where this module's top level did not run
    trial = current_trial()
    if trial or HydraConfig.get().mode != RunMode.RUN:
        return check_and_train(cfg, trial)  # a sweep takes Ctrl-C and SIGTERM itself
    progress = RunProgress(Path(HydraConfig.get().runtime.output_dir))
    with sigterm_as_interrupt():
        try:
            return check_and_train(cfg, trial, progress)
        except KeyboardInterrupt as interrupt:
            log.warning(progress.interrupted(interrupt))
            sys.exit(exit_status(interrupt))


def check_and_train(cfg: DictConfig, trial, progress: RunProgress | None = None) -> float:
    """Check, evaluate or apply best_of, train; a user error ends a single run with one `error:` paragraph."""
    try:
        if not trial:  # a sweep checked its ranges before its trials
            validate(cfg)  # before ds.run imports torch: bad input is reported at once
        from ds.run import evaluate_saved, run

        if cfg.evaluate is not None:
            return evaluate_saved(cfg)
        if cfg.best_of:
            load_best(cfg.best_of, cfg.storage)  # a study it cannot use, said before any data is loaded
        if cfg.best_of_model:
            return evaluate_best_model(cfg)
        if cfg.best_of:
            apply_best(cfg, cfg.best_of, cfg.storage, identity=LinearNetHooks().study_identity(cfg))
        model = Path(HydraConfig.get().runtime.output_dir) / "model.pt"
        if trial:
            return train_trial(cfg, trial, model)
        # The run's training state goes to checkpoint.pt in its folder each epoch (trial: a stand-in
        # that saves there), for `resume=<run folder>`; removed once the run has finished.
        on_epoch = [] if progress is None else [progress.epoch]
        started = None if progress is None else progress.started
        value = run(cfg, on_epoch=on_epoch, checkpoint=model, on_log_dir=started, checkpointer=trial)
        trial.discard_checkpoint()
        return value
    except USER_ERRORS as error:
        if trial:
            raise  # the sweeper records the trial as failed, with this reason
        sys.exit(f"error: {error}")
    except (MissingMandatoryValue, InterpolationResolutionError) as error:
        if trial:
            raise
        sys.exit(f"error: {unresolved(error)}")
    except OSError as error:
        if trial or error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        sys.exit(
            f"error: cannot write {error.filename or 'its files'}: {error.strerror}; expected room on "
            "its disk (what the run wrote before is kept)"
        )


def unresolved(error: MissingMandatoryValue | InterpolationResolutionError) -> str:
    """A config value that has none (`~model`) or whose interpolation fails (an unset
    `${oc.env:NAME}`), in one paragraph."""
    key = getattr(error, "full_key", None) or "?"
    if isinstance(error, MissingMandatoryValue):
        return (
            f"the config has no value for {key!r} (removed with ~{key}, or left ???); "
            f"expected {key}=... on the command line (python main.py --help lists the options)"
        )
    reason = str(error).splitlines()[0]
    return (
        f"config key {key!r} cannot be resolved: {reason}; expected the environment variable set, "
        "or a default: ${oc.env:NAME,default}"
        if "Environment variable" in reason
        else f"config key {key!r} cannot be resolved: {reason}; expected a value that resolves"
    )


def train_trial(cfg: DictConfig, trial, model: Path) -> float:
    """A sweep's trial: its TensorBoard run is runs/<study>/trial-NNNN ("trial-NNNN <study>" in
    HParams, with its outcome), its epochs go to the pruner, and what it reached (pruned or not)
    is recorded, its model as an artifact."""
    from ds.run import run
    from ds.tracking import Outcome, run_outcome

    OmegaConf.update(cfg, "run_name", f"{folder_name(trial.study_name)}/trial-{trial.number:04d}")
    OmegaConf.update(cfg, "progress", False)  # trials at once would draw their bars over one another
    trial.set_user_attr("config", {"params": OmegaConf.to_container(cfg.params, resolve=True)})
    reached = []

    def report(metrics) -> None:
        reached.append(metrics)
        trial.report(metrics.objective, metrics.epoch)
        if metrics.epoch < metrics.epoch_count and trial.should_prune():
            raise TrialPruned(
                f"pruned after epoch {metrics.epoch} at {metrics.objective_name} {metrics.objective:.4f}"
            )

    def outcome(error: BaseException | None) -> Outcome:
        # HParams has no status for "stopped early": FAILURE (it did not finish), outcome "pruned".
        return Outcome("pruned", "STATUS_FAILURE") if isinstance(error, TrialPruned) else run_outcome(error)

    try:
        # Each epoch's training state is saved with the trial before its value is reported; a retry of
        # the trial (a lost job's, a requeued one's, an interrupted sweep's) resumes from it.
        value = run(cfg, on_epoch=[report], checkpoint=model, outcome=outcome, checkpointer=trial)
        trial.discard_checkpoint()
        return value
    except TrialPruned:
        trial.discard_checkpoint()
        raise
    finally:
        if reached:
            last = reached[-1]
            trial.set_user_attr("epochs_trained", last.epoch)
            for name in ("test_accuracy", "val_accuracy"):
                if getattr(last, name) is not None:
                    trial.set_user_attr(name, getattr(last, name))
        if model.is_file():
            trial.set_user_attr(MODEL_ARTIFACT_ATTR, trial.upload_artifact(model))


def evaluate_best_model(cfg: DictConfig) -> float:
    """`best_of=<study> best_of_model=true`: the best trial's model.pt as its sweep stored it, copied into
    this run's folder and evaluated; nothing is trained (group choices on the command line do not matter)."""
    from ds.run import evaluate_saved

    model = Path(HydraConfig.get().runtime.output_dir) / "model.pt"
    try:
        fetch_best(cfg.best_of, cfg.storage, model, identity=LinearNetHooks().study_identity(cfg))
    except ArtifactPathError:
        raise
    except ArtifactError as error:
        raise BestOfError(
            f"best_of_model=true: {error}; or train it again: best_of={cfg.best_of} alone"
        ) from None
    return evaluate_saved(cfg, model)


def check_command_line() -> None:
    """Before Hydra, which prints and saves overrides, and echoes one it cannot parse: no password
    in any argument, no unset environment variable, resume= and best_of= expanded. An output
    folder Hydra cannot make is refused by ds.cli.OutputFolderCheck, a Hydra callback.

    The overrides are the arguments with `=` not starting with `-`: no option of Hydra's takes a
    value with `=` in it, so this needs no copy of Hydra's (private) parser."""
    command = sys.argv[1:]
    try:
        refuse_password_in_overrides(command)
    except StorageError as error:
        sys.exit(f"error: {error}")
    overrides = [a for a in command if "=" in a and not a.startswith("-")]
    if not ONLY_PRINTS.intersection(command):
        resumed = resume_argv(overrides, is_multirun(command))
        if isinstance(resumed, str):
            sys.exit(f"error: {resumed}.")
        if resumed != overrides:  # resume=<run folder>: that run's overrides, in its folder
            sys.argv[1:] = [*(a for a in command if a not in overrides), *resumed]
            command, overrides = sys.argv[1:], resumed
    problem = unset_variable(overrides)
    if problem is not None:
        sys.exit(f"error: {problem}.")
    if not is_multirun(command) and not ONLY_PRINTS.intersection(command):
        try:
            sys.argv.extend(best_trial_groups(overrides))
        except BestOfError as error:
            sys.exit(f"error: {error}")


# Hydra's options that print and run no job.
ONLY_PRINTS = {
    "--help",
    "-h",
    "--hydra-help",
    "--version",
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--shell-completion",
    "-sc",
}


def is_multirun(command: list[str]) -> bool:
    return "-m" in command or "--multirun" in command


def unset_variable(overrides: list[str]) -> str | None:
    """An override reading an environment variable that is not set, with no default
    (`storage=${oc.env:NAME}`): Hydra would fail on it with a traceback, in a sweep before
    its first check. None when every one it reads is set."""
    import os
    import re

    for override in overrides:
        for name in re.findall(r"\$\{oc\.env:\s*([^,}\s]+)\s*\}", override):
            if name not in os.environ:
                return (
                    f"{override!r} reads the environment variable {name}, which is not set; expected it "
                    f"set, or a default: ${{oc.env:{name},default}}"
                )
    return None


def best_trial_groups(overrides: list[str]) -> list[str]:
    """`best_of=<study>`: the config group options its best trial ran with (`model=mlp`), as
    overrides for Hydra to compose, where the command line names none. A study it cannot read, or
    an option not in conf/, is left to check_and_train and apply_best, which say so once the config
    is checked. Empty otherwise."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from pruning_optuna_sweeper.best_of import best_choices
    from pruning_optuna_sweeper.storage import default_storage

    given = {}
    try:
        for override in OverridesParser.create().parse_overrides(overrides):
            given[override.key_or_group] = None if override.is_delete() else override.value()
    except OverrideParseException:
        return []  # Hydra's own message says what is wrong
    study = given.get("best_of")
    if study is None:
        return []
    if not isinstance(study, str) or not study.strip():
        raise BestOfError(
            f"best_of={study!r}: expected the name of a study "
            "(python -m pruning_optuna_sweeper list), or latest"
        )
    conf = Path(__file__).resolve().parent / "conf"
    groups = {
        d.name: sorted(f.stem for f in d.glob("*.yaml"))
        for d in conf.iterdir()
        if d.is_dir() and d.name != "hydra"
    }
    storage = given.get("storage") or default_storage()
    if "${" in str(storage) or "${" in study:
        return []  # known once Hydra resolves it: apply_best checks the groups then
    # With hydra.searchpath, options only Hydra can find: the study is read, apply_best checks them.
    wanted = {} if "hydra.searchpath" in given else {g: o for g, o in groups.items() if g not in given}
    try:
        chosen = best_choices(study, str(storage), wanted)
    except (*USER_ERRORS, ArtifactError):
        return []  # said after the config is checked, before any data is loaded (check_and_train)
    if given.get("best_of_model") is True:
        return []  # the stored model's own config is used
    passed = [f"{group}={option}" for group, option in chosen.items()]
    if passed:
        print(f"best_of={study}: composed with its best trial's {' '.join(passed)}")
    return passed


if __name__ == "__main__":
    check_command_line()
    try:
        main()
    except KeyboardInterrupt as interrupt:
        # Before the run's job (or the sweep's first trial) began or after it ended: Hydra was
        # composing or closing it. A sweep's own interrupt ends in the sweeper.
        what = "Sweep" if is_multirun(sys.argv[1:]) else "Run"
        print(f"{what} interrupted by Ctrl-C while Hydra was starting or ending it.", file=sys.stderr)
        sys.exit(exit_status(interrupt))
