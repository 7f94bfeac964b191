"""The epoch loop: any configured model and optimizer, per-epoch metrics.

One general path, autograd with a torch.optim optimizer, trains every model
and optimizer a config can name, on any device. LinearNet with plain Adam on
a CPU takes the fast path instead (ds/step.py), which makes the same updates
in fewer operations. Every run logs which path it took. Batch results are
summed on the device and read once per epoch: no per-step synchronisation.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from ds.build import OptimizerFactory, OptimizerSpec
from ds.data import MnistData, iterate_batches, normalise_images, validation_split
from ds.errors import NonFiniteLossError
from ds.model import LinearNet
from ds.step import LinearNetAdam, fast_path_refusal

log = logging.getLogger(__name__)
N_CLASSES = 10


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch's results. `objective` is the value the run reports (a sweep's pruner reads it)."""

    epoch: int
    epoch_count: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float
    seconds: float
    confusion: Tensor = field(repr=False, compare=False)  # [true, predicted] test counts, on the CPU
    val_accuracy: float | None = None  # on the held-out tenth of the training set, when held out
    objective_name: str = "test_accuracy"

    @property
    def objective(self) -> float:
        """The chosen objective's value this epoch (config key `objective`)."""
        value = getattr(self, self.objective_name)
        assert value is not None, f"{self.objective_name} was not measured"
        return value

    def as_dict(self) -> dict[str, float | int | str | None]:
        """The scalar metrics (everything but the confusion matrix), for a saved model."""
        return {
            "epoch": self.epoch,
            "epoch_count": self.epoch_count,
            "train_loss": self.train_loss,
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "val_accuracy": self.val_accuracy,
            "objective": self.objective_name,
            "seconds": self.seconds,
        }

    def summary(self) -> str:
        val = "" if self.val_accuracy is None else f"Val Accuracy: {self.val_accuracy:.4f}, "
        return (
            f"[Epoch: {self.epoch}/{self.epoch_count}], "
            f"Test Accuracy: {self.test_accuracy:.4f}, "
            f"Train Accuracy: {self.train_accuracy:.4f}, {val}"
            f"Train Loss: {self.train_loss:.4f}, Time: {self.seconds:.2f}s"
        )


EpochCallback = Callable[[EpochMetrics], None]


def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, Tensor]:
    """Accuracy and confusion matrix (on the CPU) over a whole split, in one forward pass."""
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        predicted = model(x).argmax(dim=1)
        confusion = torch.bincount(y * N_CLASSES + predicted, minlength=N_CLASSES**2).cpu()
    model.train(was_training)
    confusion = confusion.view(N_CLASSES, N_CLASSES)
    return int(confusion.trace()) / len(y), confusion


class _FastSteps:
    """LinearNet + Adam on a CPU through ds/step.py; per-example results summed per epoch."""

    def __init__(self, model: nn.Module, group: dict[str, Any], n_train: int) -> None:
        self.step_fn = LinearNetAdam(
            cast(LinearNet, model), lr=group["lr"], betas=group["betas"], eps=group["eps"]
        )
        kernel = (
            "torch's fused Adam kernel"
            if self.step_fn.adam.use_kernel
            else "Adam in public tensor operations"
        )
        self.description = f"fast (LinearNet + Adam on the CPU: hand-derived gradients, {kernel})"
        self.true_log_prob = torch.empty(n_train)
        self.correct = torch.empty(n_train, dtype=torch.bool)
        self.start = 0

    def step(self, x: Tensor, y: Tensor) -> None:
        end = self.start + len(y)
        self.step_fn.step(x, y, self.true_log_prob[self.start : end], self.correct[self.start : end])
        self.start = end

    def end_epoch(self) -> tuple[float, int]:
        self.start = 0
        return -self.true_log_prob.sum().item(), int(self.correct.sum())


class _AutogradSteps:
    """The general path: autograd and a torch.optim optimizer, any model, any device."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        n_train: int,
        why_not_fast: str | None,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        flavour = next((k for k in ("fused", "foreach") if optimizer.defaults.get(k)), "")
        name = _class_name(optimizer) + (f" ({flavour})" if flavour else "")
        self.description = f"general (autograd + {name} on {device}; not the fast path: {why_not_fast})"
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.empty(n_train, dtype=torch.bool, device=device)  # per example, summed per epoch
        self.start = 0

    def step(self, x: Tensor, y: Tensor) -> None:
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        # argmax and eq record no graph; loss.detach() keeps the sum out of it.
        end = self.start + len(y)
        torch.eq(logits.argmax(dim=1), y, out=self.correct[self.start : end])
        self.loss_sum.add_(loss.detach(), alpha=len(y))
        self.start = end

    def end_epoch(self) -> tuple[float, int]:
        loss_sum, correct = self.loss_sum.item(), int(self.correct.sum())  # the epoch's one sync
        self.loss_sum.zero_()
        self.start = 0
        return loss_sum, correct


def _class_name(optimizer: torch.optim.Optimizer) -> str:
    cls = type(optimizer)
    public = getattr(torch.optim, cls.__name__, None) is cls
    return f"torch.optim.{cls.__name__}" if public else f"{cls.__module__}.{cls.__qualname__}"


def _choose_path(
    model: nn.Module, make_optimizer: OptimizerFactory, device: torch.device, allow_fast_path: bool
) -> tuple[str | None, torch.optim.Optimizer | None, dict[str, Any]]:
    """Why the fast path is refused (None: it is taken), the optimizer the general path steps, and
    the optimizer's settings. An OptimizerSpec is judged, and built only for the general path."""
    spec = make_optimizer if isinstance(make_optimizer, OptimizerSpec) else None
    why: str | None = "turned off by the caller"
    if allow_fast_path and spec is not None:
        why = fast_path_refusal(model, spec, device)
        if why is None:
            return None, None, spec.settings
    optimizer = make_optimizer(model.parameters())
    if allow_fast_path and spec is None:
        why = fast_path_refusal(model, optimizer, device)
    return why, None if why is None else optimizer, optimizer.param_groups[0]


def train(
    data: MnistData,
    model: nn.Module,
    make_optimizer: OptimizerFactory,
    *,
    batch_size: int,
    epoch_count: int,
    seed: int,
    device: torch.device | str = "cpu",
    objective: str = "test_accuracy",
    progress: bool = False,
    on_epoch: Sequence[EpochCallback] = (),
    allow_fast_path: bool = True,
) -> list[EpochMetrics]:
    """Train `model` in place with `make_optimizer(model.parameters())`; return each epoch's metrics.

    The model, the data and the metrics live on `device`. With objective
    "val_accuracy", every 10th training digit is held out of training and
    measured each epoch (ds/data.py: validation_split). The batch order comes
    from `seed`; seed torch before building the model for repeatable weights:
    then the same seed gives the same result on a CPU. Each callback sees every
    epoch's metrics and may raise to stop the run (a sweep's reporter raises
    when the trial is pruned). `allow_fast_path=False` forces the general path
    (to compare the two). An OptimizerSpec (ds.build.optimizer_factory) is
    built only when the general path trains.
    """
    device = torch.device(device)
    model.to(device).train()
    why_not_fast, optimizer, settings = _choose_path(model, make_optimizer, device, allow_fast_path)
    images, labels = data.train_images.to(device), data.train_y.to(device)
    val_x = val_y = None
    if objective == "val_accuracy":
        kept, held_out = (index.to(device) for index in validation_split(len(labels)))
        val_x, val_y = normalise_images(images.index_select(0, held_out)), labels.index_select(0, held_out)
        images, labels = images.index_select(0, kept), labels.index_select(0, kept)
    test_x, test_y = data.test_x.to(device), data.test_y.to(device)

    steps = (
        _FastSteps(model, settings, len(labels))
        if optimizer is None
        else _AutogradSteps(model, optimizer, device, len(labels), why_not_fast)
    )
    log.info("training path: %s", steps.description)

    batches = torch.Generator().manual_seed(seed)
    n_train = len(labels)
    n_batches = math.ceil(n_train / batch_size)
    lr = settings["lr"]
    history: list[EpochMetrics] = []
    for epoch in range(1, epoch_count + 1):
        started = time.perf_counter()
        bar = tqdm(
            iterate_batches(images, labels, batch_size, batches),
            total=n_batches,
            desc=f"epoch {epoch}/{epoch_count}",
            leave=False,
            disable=None if progress else True,
        )
        for x, y in bar:
            steps.step(x, y)
        loss_sum, correct = steps.end_epoch()
        train_loss = loss_sum / n_train
        if not math.isfinite(train_loss):
            # Once a step's loss is not finite, every later one is NaN too.
            raise NonFiniteLossError(
                f"the training loss became {train_loss} in epoch {epoch} "
                f"(lr={lr}, batch_size={batch_size}): the run diverged; "
                "try a smaller params.lr"
            )
        test_accuracy, confusion = evaluate(model, test_x, test_y)
        val_accuracy = None if val_x is None or val_y is None else evaluate(model, val_x, val_y)[0]
        metrics = EpochMetrics(
            epoch=epoch,
            epoch_count=epoch_count,
            train_loss=train_loss,
            train_accuracy=correct / n_train,
            test_accuracy=test_accuracy,
            seconds=time.perf_counter() - started,
            confusion=confusion,
            val_accuracy=val_accuracy,
            objective_name=objective,
        )
        history.append(metrics)
        for callback in on_epoch:
            callback(metrics)
    return history
