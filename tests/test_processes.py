"""The processes a sweep knows of: its children, ended on a stop, and a job's ancestors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psutil

from pruning_optuna_sweeper.job import HOST, sweep_can_see

# Run in a process of its own: stop_child_processes ends every child of the calling process,
# which under pytest would be the test servers too.
STOP_CHILDREN = textwrap.dedent(
    """
    import subprocess, sys
    from hydra_plugins.pruning_optuna_sweeper._cleanup import stop_child_processes

    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
    stop_child_processes()
    print(*[child.wait(timeout=20) for child in children])
    """
)


def test_a_stop_ends_every_child_of_the_sweep_process() -> None:
    result = subprocess.run([sys.executable, "-c", STOP_CHILDREN], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(-signal.SIGTERM)] * 2


def test_a_sweep_sees_its_own_process_and_its_descendants_only() -> None:
    assert sweep_can_see(f"{HOST}:{os.getpid()}")
    for ancestor in psutil.Process().parents():  # this process descends from each
        assert sweep_can_see(f"{HOST}:{ancestor.pid}")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as child:
        try:
            assert not sweep_can_see(f"{HOST}:{child.pid}")  # a child of this process, not an ancestor
        finally:
            child.kill()
    assert not sweep_can_see(f"another-{HOST}:{os.getppid()}")
    assert sweep_can_see(None)  # a sweep that did not say
