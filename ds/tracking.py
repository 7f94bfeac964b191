"""TensorBoard logging of one run: epoch scalars, hparams with the run's outcome, confusion matrix."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2, summary_v2
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

from ds.train import EpochMetrics

HParamValue = bool | str | float | int


@dataclass(frozen=True)
class Outcome:
    """How a run ended: `label` is shown as its hparam `outcome`; `status` is the HParams
    session status (a name of tensorboard's hparams Status: STATUS_SUCCESS, STATUS_FAILURE...)."""

    label: str
    status: str


COMPLETE = Outcome("complete", "STATUS_SUCCESS")
FAILED = Outcome("failed", "STATUS_FAILURE")
INTERRUPTED = Outcome("interrupted", "STATUS_FAILURE")


def run_outcome(error: BaseException | None) -> Outcome:
    """A run's outcome from the exception that ended it (None: it finished)."""
    if error is None:
        return COMPLETE
    return INTERRUPTED if isinstance(error, KeyboardInterrupt) else FAILED


def session_name(run_name: str) -> str:
    """The run's name in the HParams table, its last part first ("trial-0007 my-study" for
    "my-study/trial-0007"): the table cuts long names, and the last part tells runs apart."""
    return " ".join(reversed(PurePosixPath(run_name).parts)) or run_name


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

    def log_hparams(self, params: dict[str, HParamValue], outcome: Outcome, name: str) -> None:
        """Record the run's hyperparameters and how it ended for the HParams tab, as session `name`.

        Its metrics there are the last values of its scalar curves (accuracy/test...), so no
        `hparam/*` scalar of one point is written (SummaryWriter.add_hparams writes those, in a
        new time-stamped subdirectory per call); the summaries go into this run's own directory.
        The start is tensorboard's summary_v2.hparams_pb. The end is built as tensorboard's
        hparams `summary.session_end_pb` builds it: that function imports TensorFlow, summary_v2
        has none, and torch's `summary.hparams` always says STATUS_SUCCESS.
        """
        start = summary_v2.hparams_pb({**params, "outcome": outcome.label}, trial_id=name)
        end = plugin_data_pb2.HParamsPluginData(
            session_end_info=plugin_data_pb2.SessionEndInfo(
                status=api_pb2.Status.Value(outcome.status), end_time_secs=time.time()
            )
        )
        value = Summary.Value(
            tag=metadata.SESSION_END_INFO_TAG,
            metadata=metadata.create_summary_metadata(end),
            tensor=metadata.NULL_TENSOR,
        )
        writer = self._writer.file_writer
        if writer is None:  # SummaryWriter sets it when made, and clears it on close()
            raise RuntimeError(f"the TensorBoard writer of {self.log_dir} is closed")
        writer.add_summary(start)
        writer.add_summary(Summary(value=[value]))

    def log_confusion(self, confusion: Tensor, step: int) -> None:
        self._writer.add_text("confusion/test", confusion_markdown(confusion), step)
        self._writer.add_image("confusion/test", confusion_image(confusion, step), step, dataformats="HWC")


def confusion_markdown(confusion: Tensor) -> str:
    """A markdown table: rows are true digits, columns predicted digits."""
    n = confusion.shape[0]
    header = "| true \\ predicted | " + " | ".join(str(c) for c in range(n)) + " |"
    rule = "|---" * (n + 1) + "|"
    rows = [f"| **{t}** | " + " | ".join(str(int(v)) for v in confusion[t]) + " |" for t in range(n)]
    return "\n".join([header, rule, *rows])


def confusion_image(confusion: Tensor, epoch: int) -> Any:
    """The confusion matrix as an RGB array (height, width, 3): rows the true digits, columns the
    predicted ones, each cell's count written in it and shaded by its share of the true digit's
    examples, with a colour scale. Drawn with Pillow (matplotlib's dependency) in a few
    milliseconds: a sweep draws one for every trial."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    counts = confusion.numpy()
    shares = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    n, cell, left, top = counts.shape[0], 34, 58, 40
    size = (left + n * cell + 90, top + n * cell + 48)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font, small = ImageFont.load_default(size=13), ImageFont.load_default(size=11)
    draw.text((left + n * cell / 2, 8), f"test set, epoch {epoch}", fill="black", font=font, anchor="mt")
    for t in range(n):
        for p in range(n):
            shade = _blue(shares[t, p])
            x, y = left + p * cell, top + t * cell
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=shade)
            ink = "white" if shares[t, p] > 0.5 else "black"
            draw.text((x + cell / 2, y + cell / 2), str(int(counts[t, p])), fill=ink, font=small, anchor="mm")
        draw.text((left - 6, top + t * cell + cell / 2), str(t), fill="black", font=font, anchor="rm")
        column = left + t * cell + cell / 2
        draw.text((column, top + n * cell + 4), str(t), fill="black", font=font, anchor="mt")
    draw.text((left + n * cell / 2, size[1] - 6), "predicted", fill="black", font=font, anchor="mb")
    label = Image.new("RGB", (n * cell, 18), "white")
    ImageDraw.Draw(label).text((n * cell / 2, 9), "true", fill="black", font=font, anchor="mm")
    image.paste(label.rotate(90, expand=True), (4, top))
    scale_x = left + n * cell + 20
    for i in range(n * cell):
        draw.line((scale_x, top + i, scale_x + 14, top + i), fill=_blue(1 - i / (n * cell - 1)))
    for share, y in ((1.0, top), (0.5, top + n * cell / 2), (0.0, top + n * cell)):
        draw.text((scale_x + 18, y), f"{share:.0%}", fill="black", font=small, anchor="lm")
    draw.text((scale_x + 7, top - 6), "share", fill="black", font=small, anchor="mb")
    return np.asarray(image).copy()


def _blue(share: float) -> tuple[int, int, int]:
    """White at 0 to a dark blue at 1."""
    low, high = (247, 251, 255), (8, 48, 107)
    r, g, b = (round(a + (b - a) * float(share)) for a, b in zip(low, high, strict=True))
    return r, g, b
