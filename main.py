"""Train LinearNet on MNIST from the Hydra config in conf/.

    python main.py                          # one run
    python main.py params.lr=0.01           # any value overridden
    python main.py -m hydra/sweeper=optuna  # an Optuna sweep (see README)
    python main.py best_of=linearnet-mnist  # once more with a study's best
"""

import hydra
from omegaconf import DictConfig

from ds.config import register_configs
from ds.run import run
from sweeps.best_of import apply_best_of
from sweeps.reporter import trial_callbacks

register_configs()


@hydra.main(config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Return the final test accuracy: the value a sweeper maximises."""
    apply_best_of(cfg)
    return run(cfg, on_epoch=trial_callbacks(cfg))


if __name__ == "__main__":
    main()
