"""What a sweep shows on the console: its own lines, a live progress line on a terminal, and
the jobs' lines unless `job_output=file` sends those to each job's log file only.

With `job_output=file` every job gets overrides that drop the console handlers from Hydra's
job logging (whatever the app's config holds). The launcher's per-job lines ("Launching 1 jobs",
"#3 : params.lr=... ++hydra.job.env_set...") are left out with either setting, since the
sweep's line per trial says the same and more.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import threading
import time
from typing import Any, TextIO

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
SWEEP_LOGGER = "hydra_plugins.pruning_optuna_sweeper"
REDRAW_S = 0.5


def file_only_overrides(job_logging: DictConfig | None) -> list[str]:
    """Overrides that leave Hydra's job logging without the handlers that write to the console
    (a StreamHandler that is not a FileHandler, whatever its class); what cannot be overridden
    so (a logger whose name needs quoting) is said once."""
    if job_logging is None:
        return []
    logging_config = OmegaConf.to_container(job_logging, resolve=False)
    handlers = logging_config.get("handlers")
    if not isinstance(handlers, dict):
        return []
    console = {name for name, handler in handlers.items() if _writes_to_console(handler)}
    loggers = logging_config.get("loggers")
    owners = {"root": logging_config.get("root")}
    owners.update({f"loggers.{n}": lg for n, lg in (loggers.items() if isinstance(loggers, dict) else [])})
    overrides = []
    for owner, logger in owners.items():
        used = logger.get("handlers") if isinstance(logger, dict) else None
        if not isinstance(used, list) or not console & set(used):
            continue
        if not re.fullmatch(r"root|loggers\.[A-Za-z_][A-Za-z0-9_]*", owner):
            log.warning("job_output=file: hydra.job_logging.%s keeps its console handlers", owner)
            continue
        kept = ",".join(h for h in used if h not in console)
        overrides.append(f"hydra.job_logging.{owner}.handlers=[{kept}]")
    return overrides


def _writes_to_console(handler: Any) -> bool:
    if not isinstance(handler, dict):
        return False
    module, _, name = str(handler.get("class", "")).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module or "logging"), name)
    except (ImportError, AttributeError, ValueError):  # a `()` factory, or a class not importable here
        return "stream" in handler
    stream = isinstance(cls, type) and issubclass(cls, logging.StreamHandler)
    return stream and not issubclass(cls, logging.FileHandler)


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
    elapsed and an estimate of the time left. Off where the console is not a terminal, and
    where the jobs write to it too (job_output=console: their lines would cross it).

    The console handlers' stream is wrapped so that a log line first clears the live line,
    which is drawn again after it.
    """

    def __init__(self, total: int, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stdout
        self.enabled = enabled and self.stream.isatty()
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
        for handler, stream in self._wrapped:  # outside the lock: a handler writing holds its own
            handler.setStream(stream)
        self._wrapped.clear()
        with self._lock:
            self._clear()

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

    def write_through(self, text: str) -> int:
        """Write a log line: the live line is cleared first and drawn again after it."""
        with self._lock:
            self._clear()
            written = self.stream.write(text)
            if text.endswith("\n"):
                self._draw()
            return written

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
        return self.progress.write_through(text)

    def flush(self) -> None:
        self.progress.stream.flush()


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
