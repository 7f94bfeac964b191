"""Train LinearNet on MNIST from the Hydra config in conf/.

    python main.py                          # one run
    python main.py params.lr=0.01           # any value overridden
    python main.py -m hydra/sweeper=optuna  # an Optuna sweep (see README)
    python main.py best_of=linearnet-mnist  # once more with a study's best
"""

import sys
import warnings

import hydra
from omegaconf import DictConfig

from ds.cli import output_dir_problem, parse_command_line
from ds.config import ConfigError, register_configs, validate
from ds.datasets import DatasetError, SampleFallbackWarning
from ds.errors import NonFiniteLossError
from sweeps.best_of import BestOfError, apply_best_of
from sweeps.reporter import trial_callbacks
from sweeps.storage import StorageError, refuse_password_in_overrides
from sweeps.study import DatasetMismatchError, StudyError

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
    try:
        if cfg.sweep.trial_number is None:  # a sweep checked its ranges before its trials
            # Before ds.run imports torch and best_of reads data and a study: bad input is reported at once.
            validate(cfg)
        from ds.run import run

        apply_best_of(cfg)
        return run(cfg, on_epoch=trial_callbacks(cfg))
    except USER_ERRORS as error:
        if cfg.sweep.trial_number is not None:
            raise  # the sweeper records the trial as failed, with this reason
        sys.exit(f"error: {error}")


def check_command_line() -> None:
    """Before Hydra, which saves a run's overrides and prints a sweep's, and which answers a
    folder it cannot make with a traceback."""
    command = parse_command_line(sys.argv[1:])
    if command is None:
        return  # Hydra's usage message says what is wrong
    try:
        refuse_password_in_overrides(command.overrides)
    except StorageError as error:
        sys.exit(f"error: {error}")
    problem = output_dir_problem(command)
    if problem is not None:
        sys.exit(f"error: {problem}.")


if __name__ == "__main__":
    check_command_line()
    main()
