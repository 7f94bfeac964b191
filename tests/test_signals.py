"""Ctrl-C and SIGTERM during a sweep: real signals to this process."""

from __future__ import annotations

import os
import signal

import pytest

from hydra_plugins.pruning_optuna_sweeper._signals import Terminated, first_interrupt_unwinds


@pytest.fixture(autouse=True)
def _handlers_restored():
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for s, handler in previous.items():
        signal.signal(s, handler)


def test_the_first_interrupt_unwinds_and_later_ones_are_only_noted() -> None:
    """A triple Ctrl-C: one KeyboardInterrupt, however soon the others come, and none while exiting."""
    with pytest.raises(KeyboardInterrupt), first_interrupt_unwinds() as received:
        os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGINT)  # while marking trials, summarising, exiting: no raise
    os.kill(os.getpid(), signal.SIGTERM)
    assert received == [signal.SIGINT, signal.SIGINT, signal.SIGTERM]


def test_sigterm_unwinds_as_terminated_and_a_clean_block_restores_the_handlers() -> None:
    with pytest.raises(Terminated), first_interrupt_unwinds():
        os.kill(os.getpid(), signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a new process, say
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with first_interrupt_unwinds():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_an_ignored_signal_stays_ignored() -> None:
    """SIGINT in a script's background job."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with first_interrupt_unwinds() as received:
        os.kill(os.getpid(), signal.SIGINT)
    assert received == [] and signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_a_worker_forked_during_the_sweep_is_ended_by_sigterm_as_before() -> None:
    """joblib's multiprocessing pool forks its workers and ends them with
    SIGTERM: the sweep's handler must not raise (and print a traceback) there."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with first_interrupt_unwinds():
        pid = os.fork()
        if pid == 0:  # the worker: leave without pytest's teardown whatever happens
            try:
                os.kill(os.getpid(), signal.SIGTERM)
            except BaseException:
                os._exit(3)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, status
