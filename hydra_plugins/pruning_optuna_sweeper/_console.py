"""What a sweep shows on the console: its own lines, a live progress line on a terminal, and
the jobs' lines unless `job_output=file` sends those to each job's log file only.

With `job_output=file` every job gets overrides that drop the console handlers from Hydra's
job logging (whatever the app's config holds). The launcher's per-job lines ("Launching 1 jobs",
"#3 : params.lr=... ++hydra.job.env_set...") are left out with either setting, since the
sweep's line per trial says the same and more.
"""

from __future__ import annotations

import importlib
import io
import logging
import re
import sys
import threading
from typing import Any, TextIO, cast

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

log = logging.getLogger(__name__)
SWEEP_LOGGER = "hydra_plugins.pruning_optuna_sweeper"
REDRAW_S = 0.5
BAR_FORMAT = "[{n_fmt}/{total_fmt} trials] best: {desc} | elapsed {elapsed} | left {remaining}"


def file_only_overrides(job_logging: DictConfig | None) -> list[str]:
    """Overrides that leave Hydra's job logging without the handlers that write to the console
    (a StreamHandler that is not a FileHandler, whatever its class); what cannot be overridden
    so (a logger whose name needs quoting) is said once."""
    if job_logging is None:
        return []
    logging_config = cast(dict[str, Any], OmegaConf.to_container(job_logging, resolve=False))
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
    """One live line at the bottom of a terminal, tqdm's: trials done of n, the best so far, the
    time elapsed and an estimate of the time left. Off where the console is not a terminal, and
    where the jobs write to it too (job_output=console: their lines would cross it).

    The console handlers' stream is wrapped so that a log line goes through `tqdm.write`, which
    clears the live line first and draws it again after.
    """

    def __init__(self, total: int, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stdout
        self.enabled = enabled and self.stream.isatty()
        self.bar: tqdm[Any] | None = None
        self._stop = threading.Event()
        self._wrapped: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []

    def __enter__(self) -> Progress:
        if not self.enabled:
            return self
        self.bar = tqdm(
            total=self.total, desc="none yet", file=self.stream, bar_format=BAR_FORMAT, leave=False
        )
        for logger in (logging.getLogger(), logging.getLogger(SWEEP_LOGGER)):
            for handler in logger.handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream is self.stream:
                    previous = handler.setStream(_AboveTheBar(self.stream))
                    if previous is not None:
                        self._wrapped.append((handler, previous))
        threading.Thread(target=self._tick, args=(self.bar,), name="sweep-progress", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for handler, stream in self._wrapped:
            handler.setStream(stream)
        self._wrapped.clear()
        if self.bar is not None:
            self.bar.close()  # leave=False: the line is cleared

    def update(self, done: int, best: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(best, refresh=False)
            self.bar.update(done - self.bar.n)

    def _tick(self, bar: tqdm[Any]) -> None:
        """The elapsed time keeps moving between trials' ends (tqdm draws only on an update)."""
        while not self._stop.wait(REDRAW_S):
            bar.refresh()


class _AboveTheBar(io.TextIOBase):
    """A console stream whose lines are written above the live line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        tqdm.write(text, file=self.stream, end="")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
