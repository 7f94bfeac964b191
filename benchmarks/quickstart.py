"""What the README's `make sweep` gives: the default sweep on the bundled sample (a fresh
machine offline) and on the full set, its wall time and best test accuracy."""

from __future__ import annotations

from benchmarks.pruners import default_sweep
from benchmarks.results import ROOT, Part, Results
from benchmarks.sweeprun import SweepRunner

SAMPLE = ROOT / "data" / "sample"


def bench_quickstart(results: Results, runner: SweepRunner) -> Part:
    on_sample = SweepRunner(SAMPLE, runner.workdir / "sample", runner.trials, runner.max_epochs)
    on_sample.workdir.mkdir(parents=True, exist_ok=True)
    sample, full = default_sweep(on_sample, 0), default_sweep(runner, 0)
    part = results.part(
        "quickstart",
        "`make sweep`: `main.py -m hydra/sweeper=optuna` as it is (20 trials, n_jobs auto, TPE seed 0), "
        "on the bundled 10,000-digit sample and on the full set; wall: the command's start to its end",
    )
    for where, sweep in (("bundled sample", sample), ("full MNIST", full)):
        part.row(
            where,
            f"wall {sweep.wall:.1f} s, best {sweep.best:.4f}, {sweep.epochs} epochs, "
            f"{sweep.pruned} of {sweep.trials} trials pruned",
        )
    return part
