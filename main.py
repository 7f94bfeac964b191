"""Train LinearNet on MNIST from the Hydra config in conf/.

    python main.py                          # one run
    python main.py params.lr=0.01           # any value overridden
    python main.py -m hydra/sweeper=optuna  # an Optuna sweep (see README)
    python main.py best_of=linearnet-mnist  # once more with a study's best
"""

import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra._internal.utils import get_args_parser
from omegaconf import DictConfig

from ds.config import ConfigError, register_configs, validate
from ds.datasets import DatasetError, SampleFallbackWarning
from ds.errors import CheckpointError, DeviceError, NonFiniteLossError
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
    DeviceError,
    CheckpointError,
)

register_configs()


def say_sample_fallback_once() -> None:
    """ds.data logs the sample fallback (into the run's log too); its Python
    warning, for library callers, would say it a second time here."""
    warnings.filterwarnings("ignore", category=SampleFallbackWarning)


say_sample_fallback_once()


def saved_model_path(cfg: DictConfig) -> Path | None:
    """A single run keeps its model in its Hydra output folder; a sweep's trial saves none here."""
    if cfg.sweep.trial_number is not None:
        return None
    return Path(HydraConfig.get().runtime.output_dir) / "model.pt"


@hydra.main(config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Return the final value of the objective (test accuracy by default): what a sweeper maximises."""
    say_sample_fallback_once()  # also in a launcher's worker, where this module's top level did not run
    try:
        if cfg.sweep.trial_number is None:  # a sweep checked its ranges before its trials
            # Before ds.run imports torch and best_of reads data and a study: bad input is reported at once.
            validate(cfg)
        from ds.run import evaluate_saved, run

        if cfg.evaluate is not None:
            return evaluate_saved(cfg)
        apply_best_of(cfg)
        return run(cfg, on_epoch=trial_callbacks(cfg), checkpoint=saved_model_path(cfg))
    except USER_ERRORS as error:
        if cfg.sweep.trial_number is not None:
            raise  # the sweeper records the trial as failed, with this reason
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    # Before Hydra, which saves a run's overrides and prints a sweep's.
    try:
        refuse_password_in_overrides(get_args_parser().parse_intermixed_args().overrides)
    except StorageError as error:
        sys.exit(f"error: {error}")
    main()
