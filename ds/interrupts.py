"""How a single run stops on Ctrl-C or SIGTERM: one line saying what it wrote, exit 130 or 143.

A sweep has its own handling (hydra_plugins/pruning_optuna_sweeper): its
trials are marked and queued again. No torch here: main.py imports this
before the run's checks.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is, to unwind like Ctrl-C (closing its TensorBoard files)."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises Terminated while the block runs; its handler before is put back after."""

    def interrupt(signum: int, frame: Any) -> None:
        raise Terminated(signal.Signals(signum).name)

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal's number, the shell's status for a process a signal ended: 130 or 143."""
    return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)


@dataclass
class RunProgress:
    """What a single run has written so far: fed by ds.run.run's callbacks, read when it is interrupted."""

    output_dir: Path  # Hydra's: the run's config, overrides and log
    log_dir: Path | None = None  # the TensorBoard run, once made
    epochs_done: int = 0
    epoch_count: int | None = None

    def started(self, log_dir: Path) -> None:
        self.log_dir = log_dir

    def epoch(self, metrics: Any) -> None:
        self.epochs_done, self.epoch_count = metrics.epoch, metrics.epoch_count

    def interrupted(self, interrupt: KeyboardInterrupt) -> str:
        """The one line a run stopped by `interrupt` ends with."""
        by = "SIGTERM" if isinstance(interrupt, Terminated) else "Ctrl-C"
        if self.log_dir is None:
            when, tensorboard = "before training", "no TensorBoard run yet"
        elif self.epochs_done == 0:
            when, tensorboard = "in its first epoch", f"TensorBoard run {_shown(self.log_dir)} (no epoch yet)"
        else:
            when = f"after {self.epochs_done} of {self.epoch_count} epochs"
            tensorboard = f"TensorBoard run {_shown(self.log_dir)} (those epochs and the hyperparameters)"
        folder = _shown(self.output_dir)
        said = f"Run interrupted by {by} {when}; written: {tensorboard}, Hydra output folder {folder}"
        if not (self.output_dir / "checkpoint.pt").is_file():
            return f"{said} (config and log)."
        resume = f"continue it: python main.py resume={folder}"
        return f"{said} (config, log and the checkpoint of its last epoch); {resume}"


def _shown(path: Path) -> str:
    """`path` relative to the launch folder when it is inside it, as the user gave paths."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative
