"""TensorBoard logging of one run: epoch scalars, hparams, confusion matrix."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from ds.train import EpochMetrics

HParamValue = bool | str | float | int


def fresh_run_dir(wanted: Path) -> Path:
    """`wanted`, made now for this run alone, or `wanted-2`, `-3`... when another
    run has it (one started in the same second, or a run_name used again), so
    that no two runs' curves and hparams mix in one TensorBoard run."""
    wanted.parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        candidate = wanted if n == 1 else wanted.with_name(f"{wanted.name}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")


class RunTracker:
    """Writes one run's events into `log_dir` (one directory per run)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._writer = SummaryWriter(log_dir=str(log_dir))

    def __enter__(self) -> RunTracker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._writer.close()

    def log_epoch(self, m: EpochMetrics) -> None:
        self._writer.add_scalar("loss/train", m.train_loss, m.epoch)
        self._writer.add_scalar("accuracy/train", m.train_accuracy, m.epoch)
        self._writer.add_scalar("accuracy/test", m.test_accuracy, m.epoch)
        if m.val_accuracy is not None:
            self._writer.add_scalar("accuracy/val", m.val_accuracy, m.epoch)
        self._writer.add_scalar("time/epoch_seconds", m.seconds, m.epoch)

    def log_hparams(self, params: dict[str, HParamValue], metrics: dict[str, float]) -> None:
        """Record hyperparameters with final metrics for the HParams tab.

        Written into this run's own directory (SummaryWriter.add_hparams would
        make a new time-stamped subdirectory per call).
        """
        for summary in hparams(params, metrics):
            self._writer.file_writer.add_summary(summary)
        for name, value in metrics.items():
            self._writer.add_scalar(name, value)

    def log_confusion(self, confusion: Tensor, step: int) -> None:
        self._writer.add_text("confusion/test", confusion_markdown(confusion), step)
        self._writer.add_image("confusion/test", confusion_image(confusion), step, dataformats="HW")


def confusion_markdown(confusion: Tensor) -> str:
    """A markdown table: rows are true digits, columns predicted digits."""
    n = confusion.shape[0]
    header = "| true \\ predicted | " + " | ".join(str(c) for c in range(n)) + " |"
    rule = "|---" * (n + 1) + "|"
    rows = [f"| **{t}** | " + " | ".join(str(int(v)) for v in confusion[t]) + " |" for t in range(n)]
    return "\n".join([header, rule, *rows])


def confusion_image(confusion: Tensor, cell: int = 24) -> Tensor:
    """Row-normalised confusion as a grey image, one `cell`-pixel square per entry."""
    rows = confusion.float()
    shares = rows / rows.sum(dim=1, keepdim=True).clamp(min=1)
    return shares.repeat_interleave(cell, dim=0).repeat_interleave(cell, dim=1).clamp(0, 1)

