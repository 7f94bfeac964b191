"""The epoch loop: Adam on LinearNet, per-epoch train and test metrics."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ds.data import MnistData, iterate_batches
from ds.errors import NonFiniteLossError
from ds.model import LinearNet
from ds.step import LinearNetAdam

N_CLASSES = 10


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    epoch_count: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float
    seconds: float
    confusion: Tensor = field(repr=False, compare=False)  # [true, predicted] test counts

    def summary(self) -> str:
        return (
            f"[Epoch: {self.epoch}/{self.epoch_count}], "
            f"Test Accuracy: {self.test_accuracy:.4f}, "
            f"Train Accuracy: {self.train_accuracy:.4f}, "
            f"Train Loss: {self.train_loss:.4f}, Time: {self.seconds:.2f}s"
        )


EpochCallback = Callable[[EpochMetrics], None]


def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, Tensor]:
    """Accuracy and confusion matrix over a whole split, in one forward pass."""
    with torch.inference_mode():
        predicted = model(x).argmax(dim=1)
    confusion = torch.bincount(y * N_CLASSES + predicted, minlength=N_CLASSES**2)
    accuracy = (predicted == y).sum().item() / len(y)
    return accuracy, confusion.view(N_CLASSES, N_CLASSES)


def train(
    data: MnistData,
    *,
    lr: float,
    batch_size: int,
    epoch_count: int,
    hidden: int,
    seed: int,
    progress: bool = False,
    on_epoch: Sequence[EpochCallback] = (),
) -> list[EpochMetrics]:
    """Train a fresh LinearNet; the same seed gives the same result on a CPU.

    Each callback sees every epoch's metrics and may raise to stop the run
    (a sweep's reporter raises when the trial is pruned).
    """
    torch.manual_seed(seed)
    model = LinearNet(hidden=hidden)
    optimizer = LinearNetAdam(model, lr=lr)
    batches = torch.Generator().manual_seed(seed)
    n_train = len(data.train_y)
    n_batches = math.ceil(n_train / batch_size)
    # Per-example results of the current epoch, written by each step and
    # summed once at the end: no per-step reduction or synchronisation.
    true_log_prob = torch.empty(n_train)
    correct = torch.empty(n_train, dtype=torch.bool)
    history: list[EpochMetrics] = []

    for epoch in range(1, epoch_count + 1):
        started = time.perf_counter()
        bar = tqdm(
            iterate_batches(data.train_images, data.train_y, batch_size, batches),
            total=n_batches,
            desc=f"epoch {epoch}/{epoch_count}",
            leave=False,
            disable=None if progress else True,
        )
        start = 0
        for x, y in bar:
            end = start + len(y)
            optimizer.step(x, y, true_log_prob[start:end], correct[start:end])
            start = end

        train_loss = -true_log_prob.sum().item() / n_train
        if not math.isfinite(train_loss):
            # Once a step's loss is not finite, every later one is NaN too.
            raise NonFiniteLossError(
                f"the training loss became {train_loss} in epoch {epoch} "
                f"(lr={lr}, batch_size={batch_size}): the run diverged; "
                "try a smaller params.lr"
            )
        test_accuracy, confusion = evaluate(model, data.test_x, data.test_y)
        metrics = EpochMetrics(
            epoch=epoch,
            epoch_count=epoch_count,
            train_loss=train_loss,
            train_accuracy=correct.sum().item() / n_train,
            test_accuracy=test_accuracy,
            seconds=time.perf_counter() - started,
            confusion=confusion,
        )
        history.append(metrics)
        for callback in on_epoch:
            callback(metrics)
    return history
