"""Part `offline`: what finding no MNIST costs a run offline, side by side in one process.

The fallback to the bundled sample after one quick connectivity check (ds.download.any_reachable,
what ds.data does now) vs every file tried at every mirror (what it did before), and the length
of the line a run prints. Measured only where no mirror answers: online, a load would download.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.results import Part, Results
from ds.data import clear_memory_cache, load_mnist
from ds.datasets import DEFAULT_MIRRORS, MNIST
from ds.download import DownloadError, any_reachable, fetch_verified

# What the quick check may add to an offline run's start.
OFFLINE_CHECK_TARGET_S = 0.1
LINE_TARGET = 200


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def bench_offline(results: Results, repeats: int = 3) -> Part:
    part = results.part(
        "offline", f"no MNIST in paths.data, {len(DEFAULT_MIRRORS)} mirrors, median of {repeats}"
    )
    if any_reachable(DEFAULT_MIRRORS):
        part.row("a mirror answers here (online)", "not measured")
        return part
    checked, tried, lines = [], [], _Lines()
    logging.getLogger("ds.data").addHandler(lines)
    try:
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as folder:
                started = time.perf_counter()
                any_reachable(DEFAULT_MIRRORS)
                checked.append(time.perf_counter() - started)
                started = time.perf_counter()
                for resource in MNIST.resources():
                    with contextlib.suppress(DownloadError):  # offline: every mirror fails
                        fetch_verified(
                            resource.filename, resource.sha256, Path(folder) / "d", DEFAULT_MIRRORS
                        )
                tried.append(time.perf_counter() - started)
                clear_memory_cache()
                load_mnist(Path(folder) / "nowhere", Path(folder) / "cache")
    finally:
        logging.getLogger("ds.data").removeHandler(lines)
    check, every = statistics.median(checked), statistics.median(tried)
    part.check(
        "one quick check (now)",
        f"{check:.3f} s",
        f"< {OFFLINE_CHECK_TARGET_S} s",
        check < OFFLINE_CHECK_TARGET_S,
    )
    part.row("every file at every mirror (before)", f"{every:.3f} s")
    part.row("saved per run", f"{every - check:.3f} s ({every / max(check, 1e-6):.0f}x)")
    [line, *_] = [text for text in lines.lines if "FALLING BACK" in text] or [""]
    part.check(
        "the fallback line", f"{len(line)} characters", f"< {LINE_TARGET}", 0 < len(line) < LINE_TARGET
    )
    return part
