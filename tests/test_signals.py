"""Ctrl-C while a sweep records what the first Ctrl-C interrupted: real signals to this process."""

from __future__ import annotations

import os
import signal

import pytest

from hydra_plugins.pruning_optuna_sweeper._signals import Terminated, interrupts_held, sigterm_as_interrupt


@pytest.fixture(autouse=True)
def _ctrl_c_raises():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_second_interrupt_is_held_until_the_block_ends() -> None:
    with sigterm_as_interrupt():
        with interrupts_held() as received:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            marked = True  # the work of the block goes on
        assert marked and received == [signal.SIGINT, signal.SIGTERM]
        # Afterwards both unwind again.
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)


def test_an_ignored_signal_stays_ignored() -> None:
    """SIGINT in a script's background job: not turned into a held one."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with interrupts_held() as received:
        os.kill(os.getpid(), signal.SIGINT)
    assert received == [] and signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_a_worker_forked_during_the_sweep_is_ended_by_sigterm_as_before() -> None:
    """joblib's multiprocessing pool forks its workers and ends them with
    SIGTERM: the sweep's handler must not raise (and print a traceback) there."""
    with sigterm_as_interrupt():
        pid = os.fork()
        if pid == 0:  # the worker: leave without pytest's teardown whatever happens
            try:
                os.kill(os.getpid(), signal.SIGTERM)
            except BaseException:
                os._exit(3)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, status
