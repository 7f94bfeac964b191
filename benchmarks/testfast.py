"""`make test-fast`, the inner loop's tests: its wall time against the 2-minute target, and the CPU
time it takes, which does not depend on what else loads the machine."""

from __future__ import annotations

import re
import resource
import subprocess
import time

from benchmarks.results import ROOT, Part, Results

TARGET_S = 120.0


def bench_test_fast(results: Results) -> Part:
    subprocess.run(["make", "-s", "install"], cwd=ROOT, check=True)  # not timed: the venv is made once
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(["make", "-s", "test-fast"], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"make test-fast failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = re.findall(r"\d+ passed[^\n]*", done.stdout)
    part = results.part(
        "test-fast",
        "`make test-fast`: pytest without the tests marked slow, postgres, slurm or browser; wall: the "
        "command's start to its end; CPU: user and system time of it and all its processes",
    )
    measured = f"wall {wall:.1f} s, CPU {cpu:.1f} s ({summary[-1] if summary else 'no summary'})"
    part.row("make test-fast", measured, f"< {TARGET_S:.0f} s", wall < TARGET_S)
    return part
