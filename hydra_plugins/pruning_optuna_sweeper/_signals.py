"""How a sweep takes Ctrl-C and SIGTERM: the first one unwinds it, later ones are only noted.

The first signal raises KeyboardInterrupt (Terminated for SIGTERM) where the
sweep is, so its in-flight trials are marked and queued again. A second or
third Ctrl-C, however soon, must not cut that short or print a traceback on
the way out: while unwinding and exiting, signals are noted, not raised.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the sweep is, to unwind like Ctrl-C."""


# The handlers from before `first_interrupt_unwinds`, while it is in force.
_before: list[dict[signal.Signals, Any]] = []


@contextmanager
def first_interrupt_unwinds() -> Iterator[list[int]]:
    """Yields the signals received. Handlers come back only when the block ends
    normally; after an interrupt the process is on its way out and stays deaf."""
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Terminated("SIGTERM") if signum == signal.SIGTERM else KeyboardInterrupt()

    # A signal ignored (SIGINT in a script's background job) stays ignored.
    previous = {s: signal.signal(s, handler) for s in SIGNALS if signal.getsignal(s) != signal.SIG_IGN}
    _before.append(previous)
    try:
        yield received
    except BaseException:
        raise
    else:
        for signum, old in previous.items():
            signal.signal(signum, old)
    finally:
        _before.pop()


def _as_before_in_a_forked_worker() -> None:
    """A process forked by the sweep (joblib's multiprocessing pool) is not the
    sweep: its pool ends it with SIGTERM, which must not raise there."""
    if _before:
        for signum, old in _before[0].items():
            signal.signal(signum, old)


os.register_at_fork(after_in_child=_as_before_in_a_forked_worker)
