"""The pool-threads part: a third-party torch app (examples/mlp, which leaves torch's threads at
their defaults) swept with the pool launcher at n_jobs=2 against n_jobs=1, each worker limited to
its share of the cores (the launcher's default), and, for comparison, at n_jobs=2 unlimited."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.results import ROOT, Part, Results

APP = ROOT / "examples" / "mlp"
WALL_TARGET = 0.6  # n_jobs=2 / n_jobs=1, the whole command
TRIALS = 6
ROUNDS = 2  # the pair run back to back this often; the median ratio is checked
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def sweep(workdir: Path, name: str, *overrides: str, trials: int = TRIALS) -> float:
    """The command's wall seconds: `trials` trials of the same work (no pruning, fixed epochs)."""
    env = {k: v for k, v in os.environ.items() if k not in (*THREAD_VARIABLES, "PYTHONPATH")}
    command = [
        sys.executable,
        "mlp.py",
        "-m",
        "hydra/sweeper=pruning_optuna",
        "hydra/sweeper/pruner=none",
        "hydra/launcher=pool",
        f"hydra.sweeper.n_trials={trials}",
        "lr=tag(log, interval(0.001, 0.01))",
        "samples=16384",
        f"hydra.sweep.dir={workdir / name}",
        *overrides,
    ]
    started = time.perf_counter()
    subprocess.run(command, cwd=APP, env=env, check=True, capture_output=True, text=True, timeout=1800)
    return time.perf_counter() - started


def bench_pool_threads(results: Results, workdir: Path, trials: int | None) -> Part:
    count = trials or TRIALS
    one = ("hydra.sweeper.n_jobs=1", "hydra.launcher.n_jobs=1")
    two = ("hydra.sweeper.n_jobs=2", "hydra.launcher.n_jobs=2")
    pairs = [
        (sweep(workdir, f"one-{r}", *one, trials=count), sweep(workdir, f"two-{r}", *two, trials=count))
        for r in range(ROUNDS)
    ]
    unlimited = sweep(workdir, "two-unlimited", *two, "hydra.launcher.threads_per_worker=null", trials=count)
    # For reference: one worker on one thread, what n_jobs=2 runs twice of at once.
    single = sweep(workdir, "one-single-thread", *one, "hydra.launcher.threads_per_worker=1", trials=count)
    part = results.part(
        "pool-threads",
        f"examples/mlp (plain torch, threads left at their defaults), {count} trials of 3 epochs on "
        "16384 points, no pruning, "
        f"hydra/launcher=pool; wall: the command's start to its end; {ROUNDS} pairs back to back, "
        f"median ratio checked; {len(os.sched_getaffinity(0))} cores usable",
    )
    ones, twos = [p[0] for p in pairs], [p[1] for p in pairs]
    part.row("n_jobs=1 (1 worker, all cores' threads)", ", ".join(f"{s:.1f} s" for s in ones))
    part.row("n_jobs=2, threads_per_worker=auto (its share each)", ", ".join(f"{s:.1f} s" for s in twos))
    part.row("n_jobs=2, threads_per_worker=null (the libraries' defaults)", f"{unlimited:.1f} s")
    part.row("n_jobs=1, threads_per_worker=1 (reference)", f"{single:.1f} s")
    ratio = statistics.median(t / o for o, t in pairs)
    part.check("n_jobs=2 / n_jobs=1, wall", f"{ratio:.2f}x", f"<= {WALL_TARGET}x", ratio <= WALL_TARGET)
    part.row("n_jobs=2 unlimited / n_jobs=1, wall", f"{unlimited / statistics.median(ones):.2f}x")
    return part
