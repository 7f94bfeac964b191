"""Train a model on MNIST from the Hydra config in conf/.

    python main.py                          # one run
    python main.py params.lr=0.01           # any value overridden
    python main.py -m hydra/sweeper=optuna  # an Optuna sweep (see README)
    python main.py best_of=linearnet-mnist  # once more with a study's best
    python main.py evaluate=outputs/<date>/<time>/model.pt
"""

import dataclasses
import re
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ds.config import ConfigError, register_configs, validate
from ds.datasets import DatasetError, SampleFallbackWarning
from ds.errors import CheckpointError, DeviceError, NonFiniteLossError
from sweeps import BestOfError, TrialPruned, apply_best, current_trial
from sweeps.storage import StorageError, refuse_password_in_overrides
from sweeps.study import IdentityMismatchError, StudyError

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
    try:
        if not trial:  # a sweep checked its ranges before its trials
            validate(cfg)  # before ds.run imports torch: bad input is reported at once
        from ds.run import evaluate_saved, load_data, run

        if cfg.evaluate is not None:
            return evaluate_saved(cfg)
        if cfg.best_of:
            apply_best(cfg, cfg.best_of, cfg.storage, identity=dataclasses.asdict(load_data(cfg).identity))
        model = Path(HydraConfig.get().runtime.output_dir) / "model.pt"
        if not trial:
            return run(cfg, checkpoint=model)
        # A trial: runs/<study>/trial-NNNN (the study's name made safe as one folder name), its
        # epochs reported to the pruner, its model kept as an artifact of the trial, pruned or not.
        study = re.sub(r"[^A-Za-z0-9_.-]+", "_", trial.study_name).lstrip(".") or "study"
        OmegaConf.update(cfg, "run_name", f"{study}/trial-{trial.number:04d}")
        trial.set_user_attr("config", {"params": OmegaConf.to_container(cfg.params, resolve=True)})
        reached = []
        try:
            return run(cfg, on_epoch=[reached.append, lambda m: report(trial, m)], checkpoint=model)
        finally:
            record(trial, reached, model)
    except USER_ERRORS as error:
        if trial:
            raise  # the sweeper records the trial as failed, with this reason
        sys.exit(f"error: {error}")


def report(trial, metrics) -> None:
    """Report each epoch's objective to the sweep's pruner; stop when it says so."""
    trial.report(metrics.objective, metrics.epoch)
    if metrics.epoch < metrics.epoch_count and trial.should_prune():
        raise TrialPruned(f"pruned after epoch {metrics.epoch} at {metrics.objective_name} {metrics.objective:.4f}")


def record(trial, reached: list, model: Path) -> None:
    """What the trial reached: both accuracies, the epochs, and its model as an artifact."""
    if reached:
        last = reached[-1]
        for name in ("test_accuracy", "val_accuracy", "epoch"):
            if getattr(last, name) is not None:
                trial.set_user_attr(name if name != "epoch" else "epochs_trained", getattr(last, name))
    if model.is_file():
        trial.set_user_attr("model_artifact", trial.upload_artifact(model))


if __name__ == "__main__":
    # Before Hydra, which saves a run's overrides and prints a sweep's.
    try:
        refuse_password_in_overrides([a for a in sys.argv[1:] if not a.startswith("-")])
    except StorageError as error:
        sys.exit(f"error: {error}")
    main()
