"""Train a model on MNIST from the Hydra config in conf/.

python main.py                          # one run
python main.py params.lr=0.01           # any value overridden
python main.py -m hydra/sweeper=optuna  # an Optuna sweep (see README)
python main.py best_of=linearnet-mnist  # once more with a study's best
python main.py best_of=linearnet-mnist best_of_model=true  # its best trial's stored model, evaluated
python main.py evaluate=outputs/<date>/<time>/model.pt
python main.py resume=outputs/<date>/<time>  # a killed run, continued from its checkpoint
"""

import logging
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ds.cli import CommandLine, output_dir_problem, parse_command_line, resume_argv
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


@hydra.main(config_path="conf", config_name="config")
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


def check_command_line() -> CommandLine | None:
    """Before Hydra, which saves a run's overrides and prints a sweep's, and which answers a
    folder it cannot make with a traceback. None: a command line only Hydra can answer."""
    command = parse_command_line(sys.argv[1:])
    if command is None:
        return None  # Hydra's usage message says what is wrong
    overrides = resume_argv(command)
    if isinstance(overrides, str):
        sys.exit(f"error: {overrides}.")
    if overrides != command.overrides:  # resume=<run folder>: that run's overrides, in its folder
        options = [a for a in sys.argv[1:] if a not in command.overrides]
        sys.argv[1:] = [*options, *overrides]
        command = parse_command_line(sys.argv[1:]) or command
    try:
        refuse_password_in_overrides(command.overrides)
    except StorageError as error:
        sys.exit(f"error: {error}")
    problem = output_dir_problem(command)
    if problem is not None:
        sys.exit(f"error: {problem}.")
    return command


if __name__ == "__main__":
    command = check_command_line()
    try:
        main()
    except KeyboardInterrupt as interrupt:
        if command is None or command.multirun:
            raise
        # Before the run's job began or after it ended: Hydra was composing or closing it.
        print("Run interrupted by Ctrl-C while Hydra was starting or ending it.", file=sys.stderr)
        sys.exit(exit_status(interrupt))
