"""A Hydra task that only returns a value: what Hydra and the stock
hydra-optuna-sweeper cost per job when there is nothing to train.

    python benchmarks/noop_task.py -m params.lr=0.1,0.2,0.3        # Hydra's basic sweeper
    python benchmarks/noop_task.py -m hydra/sweeper=optuna ...      # the stock Optuna sweeper

Its config is the training config's `params` and nothing else. Without the
project's conf/, `hydra/sweeper=optuna` is the stock plugin's config (the
project's sweeper is selected by conf/hydra/sweeper/optuna.yaml). Used by
bench.py (the overhead part).
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore

sys.path.append(str(Path(__file__).resolve().parents[1]))
from ds.config import ParamsConfig


@dataclass
class NoopConfig:
    params: ParamsConfig = field(default_factory=ParamsConfig)


ConfigStore.instance().store(name="noop", node=NoopConfig)


@hydra.main(config_path=None, config_name="noop")
def main(cfg: NoopConfig) -> float:
    return cfg.params.lr


if __name__ == "__main__":
    main()
