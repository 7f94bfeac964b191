"""Fit a multilayer perceptron to a synthetic regression with plain torch.

A third-party torch app that leaves torch's threads at their defaults, as most do: swept on the
pool launcher, its workers share the cores (benchmarks/bench.py, part `threads`, times it at
n_jobs=2 against 1). It logs the threads it trains with.

    python mlp.py -m hydra/sweeper=pruning_optuna hydra/launcher=pool 'lr=tag(log, interval(1e-4, 1e-1))'
"""

import logging
import os

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from pruning_optuna_sweeper import TrialPruned, current_trial

log = logging.getLogger(__name__)


@hydra.main(config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    log.info(
        "torch threads: %d (OMP_NUM_THREADS=%s)", torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    )
    torch.manual_seed(cfg.seed)
    x = torch.randn(cfg.samples, cfg.features)
    y = torch.tanh(x @ torch.randn(cfg.features, 1))
    model = nn.Sequential(
        nn.Linear(cfg.features, cfg.hidden),
        nn.ReLU(),
        nn.Linear(cfg.hidden, cfg.hidden),
        nn.ReLU(),
        nn.Linear(cfg.hidden, 1),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    trial = current_trial()
    loss = float("inf")
    for epoch in range(cfg.epochs):
        for start in range(0, cfg.samples, cfg.batch_size):
            optimizer.zero_grad()
            batch = slice(start, start + cfg.batch_size)
            step_loss = nn.functional.mse_loss(model(x[batch]), y[batch])
            step_loss.backward()
            optimizer.step()
        with torch.no_grad():
            loss = nn.functional.mse_loss(model(x), y).item()
        trial.report(loss, epoch)
        if trial.should_prune():
            raise TrialPruned()
    return loss


if __name__ == "__main__":
    main()
