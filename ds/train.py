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
from ds.model import LinearNet

N_CLASSES = 10


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the run diverged."""


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
    # The fused kernel: one call per step instead of ~10 small ops per tensor.
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    loss_fn = nn.CrossEntropyLoss()
    batches = torch.Generator().manual_seed(seed)
    n_train = len(data.train_y)
    n_batches = math.ceil(n_train / batch_size)
    history: list[EpochMetrics] = []

    for epoch in range(1, epoch_count + 1):
        started = time.perf_counter()
        model.train()
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.long)
        bar = tqdm(
            iterate_batches(data.train_images, data.train_y, batch_size, batches),
            total=n_batches,
            desc=f"epoch {epoch}/{epoch_count}",
            leave=False,
            disable=None if progress else True,
        )
        for x, y in bar:
            logits = model(x)
            loss = loss_fn(logits, y)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"the training loss became {loss.item()} in epoch {epoch} "
                    f"(lr={lr}, batch_size={batch_size}): the run diverged; "
                    "try a smaller params.lr"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                loss_sum += loss.detach() * len(y)
                correct += (logits.argmax(dim=1) == y).sum()

        model.eval()
        test_accuracy, confusion = evaluate(model, data.test_x, data.test_y)
        metrics = EpochMetrics(
            epoch=epoch,
            epoch_count=epoch_count,
            train_loss=loss_sum.item() / n_train,
            train_accuracy=correct.item() / n_train,
            test_accuracy=test_accuracy,
            seconds=time.perf_counter() - started,
            confusion=confusion,
        )
        history.append(metrics)
        for callback in on_epoch:
            callback(metrics)
    return history
