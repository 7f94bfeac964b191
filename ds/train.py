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

    def state_dict(self) -> dict[str, Any]:
        adam = self.step_fn.adam
        tensors = {"exp_avg": adam.exp_avg, "exp_avg_sq": adam.exp_avg_sq, "steps": adam.steps}
        return {"path": "fast", "count": adam.count, **{k: v.clone() for k, v in tensors.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        adam = self.step_fn.adam
        for name in ("exp_avg", "exp_avg_sq", "steps"):
            getattr(adam, name).copy_(state[name])
        adam.count = int(state["count"])


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

    def state_dict(self) -> dict[str, Any]:
        return {"path": "general", "optimizer": _to_cpu(self.optimizer.state_dict())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])


def _to_cpu(value: Any) -> Any:
    """`value` with every tensor copied to the CPU (a checkpoint loads on any machine)."""
    if isinstance(value, Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


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
    resume: dict[str, Any] | None = None,
    on_state: Callable[[dict[str, Any]], None] | None = None,
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

    `on_state` gets the training state after every epoch, before the callbacks (a checkpoint is
    saved before its epoch is reported): the weights, the optimizer's state, the epoch, torch's RNG
    and the batch order's generator. `resume`, such a state, continues from its epoch and ends with
    the same weights as an uninterrupted run; one that does not fit is ignored with a warning. The
    callbacks hear the resumed epoch's metrics again first (a stop may have come before they did).
    """
    device = torch.device(device)
    model.to(device).train()
    why_not_fast, optimizer, settings = _choose_path(model, make_optimizer, device, allow_fast_path)
    if resume is not None:
        problem = resume_problem(resume, model, "fast" if optimizer is None else "general", epoch_count)
        if problem is not None:
            log.warning("checkpoint not used (%s): training starts from the first epoch", problem)
            resume = None
        else:
            model.load_state_dict(resume["model"])
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
    first = 1
    if resume is not None:
        steps.load_state_dict(resume["steps"])
        batches.set_state(resume["batches"])
        torch.set_rng_state(resume["torch_rng"])
        first = int(resume["epoch"]) + 1
        log.info("resumed from the checkpoint of epoch %d/%d", first - 1, epoch_count)
        # Its callbacks again: a stop between the checkpoint and them (a sweep's report) missed them.
        history.append(_metrics(resume["metrics"], objective))
        for callback in on_epoch:
            callback(history[-1])
    for epoch in range(first, epoch_count + 1):
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
        if on_state is not None:
            on_state(training_state(epoch, model, steps, batches, metrics))
        for callback in on_epoch:
            callback(metrics)
    return history


def training_state(
    epoch: int,
    model: nn.Module,
    steps: _FastSteps | _AutogradSteps,
    batches: torch.Generator,
    metrics: EpochMetrics,
) -> dict[str, Any]:
    """What `train(resume=...)` needs to go on after `epoch` exactly: plain data and CPU tensors."""
    return {
        "epoch": epoch,
        "model": _to_cpu(model.state_dict()),
        "steps": steps.state_dict(),
        "batches": batches.get_state(),
        "torch_rng": torch.get_rng_state(),
        "metrics": {**metrics.as_dict(), "confusion": metrics.confusion.clone()},
    }


def resume_problem(state: Any, model: nn.Module, path: str, epoch_count: int) -> str | None:
    """Why `state` cannot resume this training (None: it can): not a training state, another
    training path, weights of another model, or more epochs than this run has."""
    keys = ("epoch", "model", "steps", "batches", "torch_rng", "metrics")
    if not isinstance(state, dict) or any(k not in state for k in keys):
        return f"not a training state: expected the keys {', '.join(keys)}"
    if not isinstance(state["steps"], dict) or state["steps"].get("path") != path:
        return f"it was trained on another training path than this run's {path} path"
    if not isinstance(state["epoch"], int) or not 1 <= state["epoch"] <= epoch_count:
        return f"its epoch {state['epoch']!r} is not one of this run's 1 to {epoch_count}"
    own = model.state_dict()
    saved = state["model"]
    if (
        not isinstance(saved, dict)
        or set(saved) != set(own)
        or any(not isinstance(saved[k], Tensor) or saved[k].shape != own[k].shape for k in own)
    ):
        return "its weights are another model's"
    return None


def _metrics(saved: dict[str, Any], objective: str) -> EpochMetrics:
    return EpochMetrics(
        epoch=saved["epoch"],
        epoch_count=saved["epoch_count"],
        train_loss=saved["train_loss"],
        train_accuracy=saved["train_accuracy"],
        test_accuracy=saved["test_accuracy"],
        seconds=saved["seconds"],
        confusion=saved["confusion"],
        val_accuracy=saved["val_accuracy"],
        objective_name=objective,
    )
