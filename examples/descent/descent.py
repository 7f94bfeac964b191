"""Minimise the Rosenbrock function by gradient descent with momentum.

A Hydra app that knows nothing of MNIST or of this repository: a task with
steps, tuned by the pruning Optuna sweeper (`pip install .` at the repository
root). Pruning takes three lines of the task: report, ask, raise.

    python descent.py -m hydra/sweeper=pruning_optuna 'lr=tag(log, interval(1e-5, 1e-2))'
"""

import math

import hydra
from omegaconf import DictConfig

from pruning_optuna_sweeper import TrialPruned, current_trial


def rosenbrock(x: float, y: float) -> tuple[float, float, float]:
    """The value and gradient of (1 - x)^2 + 100 (y - x^2)^2, whose minimum 0 is at (1, 1)."""
    value = (1 - x) ** 2 + 100 * (y - x * x) ** 2
    return value, -2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)


@hydra.main(config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | tuple[float, float]:
    if cfg.error:
        raise RuntimeError("cfg.error is true")
    trial = current_trial()
    x, y, vx, vy = cfg.x, cfg.y, 0.0, 0.0
    for step in range(1, cfg.steps + 1):
        loss, gx, gy = rosenbrock(x, y)
        vx, vy = cfg.momentum * vx - cfg.lr * gx, cfg.momentum * vy - cfg.lr * gy
        x, y = x + vx, y + vy
        loss = rosenbrock(x, y)[0]
        if not math.isfinite(loss) or loss > 1e6:
            loss = 1e6  # diverged: the worst value, not a failure
            break
        trial.report(loss, step)
        if trial.should_prune():
            raise TrialPruned()
    if cfg.objectives == 2:
        return loss, float(cfg.steps)  # accuracy against compute
    return loss


if __name__ == "__main__":
    main()
