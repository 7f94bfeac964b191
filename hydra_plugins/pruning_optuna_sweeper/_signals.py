"""How a sweep takes Ctrl-C and SIGTERM: unwinding, except while it records what they interrupted."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the sweep is, to unwind like Ctrl-C."""


# SIGTERM's handler from before sigterm_as_interrupt, while that is in force.
_sigterm_before: list[Any] = []


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so running trials are closed, not left RUNNING."""

    def interrupt(signum: int, frame: Any) -> None:
        raise Terminated(f"signal {signal.Signals(signum).name}")

    _sigterm_before.append(signal.signal(signal.SIGTERM, interrupt))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, _sigterm_before.pop())


def _sigterm_as_before_in_a_forked_worker() -> None:
    """A process forked by the sweep (joblib's multiprocessing pool) is not the
    sweep: its pool ends it with SIGTERM, which must not raise there."""
    if _sigterm_before:
        signal.signal(signal.SIGTERM, _sigterm_before[0])


os.register_at_fork(after_in_child=_sigterm_as_before_in_a_forked_worker)


@contextmanager
def interrupts_held() -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM noted, not raised, while the block runs: a second
    Ctrl-C must not cut short the marking and queuing that the first one started.
    Yields the signals received meanwhile."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # only the main thread takes signals
        yield received
        return

    def note(signum: int, frame: Any) -> None:
        received.append(signum)

    # A signal ignored (SIGINT in a script's background job) stays ignored.
    ignored = {signum for signum in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(signum) == signal.SIG_IGN}
    previous = {signum: signal.signal(signum, note) for signum in (signal.SIGINT, signal.SIGTERM) if signum not in ignored}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
