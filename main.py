"""Train LinearNet on MNIST from the Hydra config in conf/.

    python main.py                          # one run
    python main.py params.lr=0.01           # any value overridden
    python main.py -m hydra/sweeper=optuna  # an Optuna sweep (see README)
    python main.py best_of=linearnet-mnist  # once more with a study's best
"""

import logging
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ds.cli import CommandLine, output_dir_problem, parse_command_line
from ds.config import ConfigError, register_configs, validate
from ds.datasets import DatasetError, SampleFallbackWarning
from ds.errors import NonFiniteLossError
from ds.interrupts import RunProgress, exit_status, sigterm_as_interrupt
from sweeps.best_of import BestOfError, apply_best_of
from sweeps.reporter import trial_callbacks
from sweeps.storage import StorageError, refuse_password_in_overrides
from sweeps.study import DatasetMismatchError, StudyError

log = logging.getLogger(__name__)

USER_ERRORS = (
    ConfigError,
    DatasetError,
    StorageError,
    StudyError,
    DatasetMismatchError,
    BestOfError,
    NonFiniteLossError,
)

register_configs()


def say_sample_fallback_once() -> None:
    """ds.data logs the sample fallback (into the run's log too); its Python
    warning, for library callers, would say it a second time here."""
    warnings.filterwarnings("ignore", category=SampleFallbackWarning)


say_sample_fallback_once()


@hydra.main(config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Return the final test accuracy: the value a sweeper maximises."""
    say_sample_fallback_once()  # also in a launcher's worker, where this module's top level did not run
    if cfg.sweep.trial_number is not None or HydraConfig.get().mode != RunMode.RUN:
        return check_and_train(cfg)  # a sweep takes Ctrl-C and SIGTERM itself
    progress = RunProgress(Path(HydraConfig.get().runtime.output_dir))
    with sigterm_as_interrupt():
        try:
            return check_and_train(cfg, progress)
        except KeyboardInterrupt as interrupt:
            log.warning(progress.interrupted(interrupt))
            sys.exit(exit_status(interrupt))


def check_and_train(cfg: DictConfig, progress: RunProgress | None = None) -> float:
    """Check, apply best_of, train; a user error ends a single run with one `error:` paragraph."""
    try:
        if cfg.sweep.trial_number is None:  # a sweep checked its ranges before its trials
            # Before ds.run imports torch and best_of reads data and a study: bad input is reported at once.
            validate(cfg)
        from ds.run import run

        apply_best_of(cfg)
        if progress is None:
            return run(cfg, on_epoch=trial_callbacks(cfg))
        return run(cfg, on_epoch=[*trial_callbacks(cfg), progress.epoch], on_log_dir=progress.started)
    except USER_ERRORS as error:
        if cfg.sweep.trial_number is not None:
            raise  # the sweeper records the trial as failed, with this reason
        sys.exit(f"error: {error}")


def check_command_line() -> CommandLine | None:
    """Before Hydra, which saves a run's overrides and prints a sweep's, and which answers a
    folder it cannot make with a traceback. None: a command line only Hydra can answer."""
    command = parse_command_line(sys.argv[1:])
    if command is None:
        return None  # Hydra's usage message says what is wrong
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
