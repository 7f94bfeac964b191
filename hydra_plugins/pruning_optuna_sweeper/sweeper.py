"""The Hydra entry point: a Sweeper whose work is done by `_sweep.py`.

Hydra imports every plugin module at start-up, single runs included, so this
one stays light: the sweep's modules are imported only when a sweep starts.
"""

import errno
import logging
import os
import signal
import sys
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from . import config

config.register()


class PruningOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.sweep_run: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from ._signals import Terminated
        from ._sweep import USER_ERRORS, SweepRun

        try:
            self.sweep_run = SweepRun(
                self.settings, hydra_context=hydra_context, task_function=task_function, config=config
            )
        except USER_ERRORS as error:
            sys.exit(f"error: {error}")
        except KeyboardInterrupt as interrupt:  # while the launcher's workers start: no trial yet
            _exit_now(
                128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT),
                "Sweep interrupted while it was starting, before its first trial: nothing was launched.",
            )

    def sweep(self, arguments: list[str]) -> None:
        from ._signals import Terminated
        from ._sweep import USER_ERRORS

        try:
            self.sweep_run.sweep(arguments)
        except USER_ERRORS as error:
            _exit_now(1, f"error: {error}")
        except OSError as error:  # a job's folder on a full disk, with a launcher that runs jobs here
            if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise
            _exit_now(
                1,
                f"error: the sweep could not write {error.filename or 'a file'}: {error.strerror}; expected "
                "room on its disk (hydra.sweep.dir); the trials recorded before stay in the study, closed.",
            )
        except KeyboardInterrupt as interrupt:
            # The sweep has logged what it closed and how to resume: no traceback.
            _exit_now(128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT))


def _exit_now(status: int, message: str | None = None) -> None:
    """End a stopped sweep at once: its trials are recorded and its workers ended, so nothing is
    left to wait for (a worker pool's exit handlers would wait for, or trip over, the workers)."""
    from ._cleanup import stop_child_processes

    stop_child_processes()  # a launcher's idle workers too, which would hold this process's output open
    if message:
        print(message, file=sys.stderr)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
