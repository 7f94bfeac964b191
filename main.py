"""Train LinearNet on MNIST from the Hydra config in conf/.

    python main.py                          # one run
    python main.py params.lr=0.01           # any value overridden
    python main.py -m hydra/sweeper=optuna  # an Optuna sweep (see README)
    python main.py best_of=linearnet-mnist  # once more with a study's best
"""

import re
import sys
import warnings

import hydra
from omegaconf import DictConfig, OmegaConf

from ds.config import ConfigError, register_configs, validate
from ds.datasets import DatasetError, SampleFallbackWarning
from ds.errors import NonFiniteLossError
from sweeps import BestOfError, TrialPruned, apply_best, current_trial
from sweeps.storage import StorageError, refuse_password_in_overrides
from sweeps.study import IdentityMismatchError, StudyError

USER_ERRORS = (ConfigError, DatasetError, StorageError, StudyError, IdentityMismatchError, BestOfError, NonFiniteLossError)

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
    trial = current_trial()
    try:
        if not trial:  # a sweep checked its ranges before its trials
            validate(cfg)  # before ds.run imports torch: bad input is reported at once
        from ds.run import load_data, run

        if cfg.best_of:
            import dataclasses

            apply_best(cfg, cfg.best_of, cfg.storage, identity=dataclasses.asdict(load_data(cfg).identity))
        if trial:  # runs/<study>/trial-NNNN, the study's name made safe as one folder name
            study = re.sub(r"[^A-Za-z0-9_.-]+", "_", trial.study_name).lstrip(".") or "study"
            OmegaConf.update(cfg, "run_name", f"{study}/trial-{trial.number:04d}")
            # What best_of and export apply: every params value, not only the swept ones.
            trial.set_user_attr("config", {"params": OmegaConf.to_container(cfg.params, resolve=True)})
        return run(cfg, on_epoch=[lambda m: report(trial, m)] if trial else [])
    except USER_ERRORS as error:
        if trial:
            raise  # the sweeper records the trial as failed, with this reason
        sys.exit(f"error: {error}")


def report(trial, metrics) -> None:
    """Report each epoch's test accuracy to the sweep's pruner; stop when it says so."""
    trial.report(metrics.test_accuracy, metrics.epoch)
    if metrics.epoch < metrics.epoch_count and trial.should_prune():
        raise TrialPruned(f"pruned after epoch {metrics.epoch} at test accuracy {metrics.test_accuracy:.4f}")


if __name__ == "__main__":
    # Before Hydra, which saves a run's overrides and prints a sweep's.
    try:
        refuse_password_in_overrides([a for a in sys.argv[1:] if not a.startswith("-")])
    except StorageError as error:
        sys.exit(f"error: {error}")
    main()
