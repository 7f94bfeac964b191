"""What a sweep shows on the console: its own lines, a live progress line on a terminal, and
the jobs' lines unless `job_output=file` sends those to each job's log file only.

With `job_output=file` every job gets overrides that drop the console handlers from Hydra's
job logging (whatever the app's config holds), and the launcher's per-job lines
("Launching 1 jobs", "#3 : params.lr=...") are left out, since the sweep's line per trial
says the same and more.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, TextIO

from omegaconf import DictConfig, OmegaConf

SWEEP_LOGGER = "hydra_plugins.pruning_optuna_sweeper"
REDRAW_S = 0.5


def file_only_overrides(job_logging: DictConfig | None) -> list[str]:
    """Overrides that leave Hydra's job logging without the handlers that write to the console."""
    if job_logging is None:
        return []
    logging_config = OmegaConf.to_container(job_logging, resolve=False)
    handlers = logging_config.get("handlers") or {}
    console = {name for name, handler in handlers.items() if _writes_to_console(handler or {})}
    owners = {"root": logging_config.get("root") or {}}
    owners.update(
        {f"loggers.{name}": logger or {} for name, logger in (logging_config.get("loggers") or {}).items()}
    )
    overrides = []
    for owner, logger in owners.items():
        used = list(logger.get("handlers") or [])
        if console & set(used):
            kept = ",".join(h for h in used if h not in console)
            overrides.append(f"hydra.job_logging.{owner}.handlers=[{kept}]")
    return overrides


def _writes_to_console(handler: dict[str, Any]) -> bool:
    return "stream" in handler or handler.get("class") in ("logging.StreamHandler", "StreamHandler")


def quieten_launcher(launcher: Any) -> None:
    """The launcher's per-job INFO lines are left out; its warnings and errors stay."""
    logging.getLogger(type(launcher).__module__).setLevel(logging.WARNING)


def keep_sweep_lines_on_console() -> None:
    """The sweep's own lines keep today's console handlers, whatever logging a job that runs in
    this process (the basic launcher) configures afterwards."""
    console = [h for h in logging.getLogger().handlers if _is_console(h)]
    if not console:
        return
    sweep_logger = logging.getLogger(SWEEP_LOGGER)
    for handler in console:
        if handler not in sweep_logger.handlers:
            sweep_logger.addHandler(handler)
    sweep_logger.propagate = False


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) in (
        sys.stdout,
        sys.stderr,
    )


class Progress:
    """One live line at the bottom of a terminal: trials done of n, the best so far, the time
    elapsed and an estimate of the time left. Off where the console is not a terminal.

    The console handlers' stream is wrapped so that a log line first clears the live line,
    which is drawn again after it.
    """

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stdout
        self.enabled = self.stream.isatty()
        self.done = 0
        self.best = "none yet"
        self.started = time.monotonic()
        self._lock = threading.RLock()
        self._drawn = False
        self._stop = threading.Event()
        self._wrapped: list[tuple[logging.StreamHandler, TextIO]] = []

    def __enter__(self) -> Progress:
        if self.enabled:
            for logger in (logging.getLogger(), logging.getLogger(SWEEP_LOGGER)):
                for handler in logger.handlers:
                    if _is_console(handler) and handler.stream is self.stream:
                        self._wrapped.append((handler, handler.setStream(_ClearingStream(self))))
            threading.Thread(target=self._tick, name="sweep-progress", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with self._lock:
            self._clear()
            for handler, stream in self._wrapped:
                handler.setStream(stream)
            self._wrapped.clear()

    def update(self, done: int, best: str) -> None:
        with self._lock:
            self.done, self.best = done, best
            self._draw()

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        left = "-"
        if 0 < self.done < self.total:
            left = f"~{_clock(elapsed / self.done * (self.total - self.done))}"
        elif self.done >= self.total:
            left = "0:00"
        return (
            f"[{self.done}/{self.total} trials] best: {self.best} | elapsed {_clock(elapsed)} | left {left}"
        )

    def _tick(self) -> None:
        while not self._stop.wait(REDRAW_S):
            with self._lock:
                self._draw()

    def _draw(self) -> None:
        if self.enabled and not self._stop.is_set():
            self.stream.write("\r" + self.line() + "\033[K")
            self.stream.flush()
            self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn = False


class _ClearingStream:
    """A console stream that clears the progress line before a log line, and draws it after."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def write(self, text: str) -> int:
        with self.progress._lock:
            self.progress._clear()
            written = self.progress.stream.write(text)
            if text.endswith("\n"):
                self.progress._draw()
            return written

    def flush(self) -> None:
        self.progress.stream.flush()


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
