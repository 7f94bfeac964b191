"""A multilayer perceptron and its LightningModule; the optimizer comes from the config, partial."""

from __future__ import annotations

import functools

import lightning.pytorch as pl
import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, input_size: int = 784, hidden: int = 64, output_size: int = 10) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(input_size, hidden), nn.ReLU(), nn.Linear(hidden, output_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Classifier(pl.LightningModule):
    """Trains `net` with `optimizer` (a factory of the parameters: `_partial_: true` in the config);
    logs train/loss, val/acc and val/acc_best, the best val/acc so far."""

    def __init__(self, net: nn.Module, optimizer: functools.partial[torch.optim.Optimizer]) -> None:
        super().__init__()
        self.net = net
        # A plain partial: it pickles (Hydra 1.4's factories do not), as ddp_spawn's ranks need.
        self.optimizer = functools.partial(optimizer.func, *optimizer.args, **optimizer.keywords)
        self.best = 0.0
        self.correct = self.seen = 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train/loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.correct += int((self.net(x).argmax(1) == y).sum())
        self.seen += len(y)

    def on_validation_epoch_end(self) -> None:
        acc = self.correct / max(self.seen, 1)
        self.correct = self.seen = 0
        if not self.trainer.sanity_checking:
            self.best = max(self.best, acc)
        self.log("val/acc", acc)
        self.log("val/acc_best", self.best)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(params=self.parameters())
