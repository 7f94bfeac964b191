"""The pruning parts: the default sweep with its pruner and without, and the other pruner
settings README compares, on several TPE seeds. Sweeps run as the default command does
(the pool launcher, n_jobs auto), so which trials are pruned also depends on their timing."""

from __future__ import annotations

import statistics

from benchmarks.results import Part, Results
from benchmarks.sweeprun import SweepRunner

DEFAULT_PRUNER = "median, 5 startup trials, no epoch warm-up (default)"
# The settings README's pruning table compares (--only pruners).
PRUNER_SETTINGS: dict[str, tuple[str, ...]] = {
    DEFAULT_PRUNER: (),
    "median, 3 startup trials, no epoch warm-up": ("hydra.sweeper.pruner.n_startup_trials=3",),
    "median, 5 startup trials, warm-up 2": ("hydra.sweeper.pruner.n_warmup_steps=2",),
    "median, 3 startup trials, warm-up 2 (the earlier default)": (
        "hydra.sweeper.pruner.n_startup_trials=3",
        "hydra.sweeper.pruner.n_warmup_steps=2",
    ),
    # README's row; the distribution's percentile config defaults to 25 since it was split out.
    "percentile 45, 5 startup trials, no epoch warm-up": (
        "hydra/sweeper/pruner=percentile",
        "hydra.sweeper.pruner.percentile=45",
    ),
}
# README's targets for the default sweep and for pruning.
SWEEP_TARGET_S = 60.0
BEST_TARGET = 0.965
SAVED_TARGET = 0.30
LOST_TARGET_POINTS = 0.3


def seeded(seed: int) -> tuple[str, ...]:
    return () if seed == 0 else (f"hydra.sweeper.sampler.seed={seed}",)


def default_sweep(runner: SweepRunner, seed: int, tag: str = "default", *overrides: str):
    """The default command on TPE seed `seed` (seed 0: the default sweep), with `overrides`."""
    return runner.run(f"{tag}-seed{seed}", *seeded(seed), *overrides)


def bench_pruners(
    results: Results, runner: SweepRunner, settings: dict[str, tuple[str, ...]], seeds: tuple[int, ...]
) -> Part:
    # Pruning changes which points TPE samples next, so its effect depends on
    # the seed: compare each pruner setting with no pruning on several seeds.
    off = {seed: default_sweep(runner, seed, "no-pruner", "hydra/sweeper/pruner=none") for seed in seeds}
    on = {
        (label, seed): default_sweep(runner, seed, f"pruner{i}" if overrides else "default", *overrides)
        for i, (label, overrides) in enumerate(settings.items())
        for seed in seeds
    }
    title = "sweep" if list(settings) == [DEFAULT_PRUNER] else "pruners"
    part = results.part(
        title,
        f"the default sweep (`main.py -m hydra/sweeper=optuna`: {runner.trials or 20} trials, "
        f"the pool launcher, n_jobs auto), TPE seeds {', '.join(map(str, seeds))}",
    )
    if 0 in seeds:
        r, n = on[DEFAULT_PRUNER, 0], off[0]
        part.check(
            "default sweep, seed 0: wall",
            f"{r.wall:.1f} s ({r.epochs} epochs, {r.pruned} pruned)",
            f"<= {SWEEP_TARGET_S:g} s",
            r.wall <= SWEEP_TARGET_S,
        )
        part.check("default sweep, seed 0: best", f"{r.best:.4f}", f">= {BEST_TARGET}", r.best >= BEST_TARGET)
        part.row("no pruning, seed 0", f"wall {n.wall:.1f} s, {n.epochs} epochs, best {n.best:.4f}")
    part.row(
        "no pruning: epochs, best", "; ".join(f"seed {s}: {r.epochs}, {r.best:.4f}" for s, r in off.items())
    )
    for label in settings:
        saved = [1 - on[label, seed].epochs / off[seed].epochs for seed in seeds]
        change = [(on[label, seed].best - off[seed].best) * 100 for seed in seeds]
        measured = (
            f"epochs saved {' / '.join(f'{v:.0%}' for v in saved)} (mean {statistics.mean(saved):.0%}); "
            f"best {' / '.join(f'{v:+.2f}' for v in change)} points (mean {statistics.mean(change):+.2f})"
        )
        part.check(
            f"pruning: {label}",
            measured,
            f"mean >= {SAVED_TARGET:.0%} saved, >= -{LOST_TARGET_POINTS} points",
            statistics.mean(saved) >= SAVED_TARGET and statistics.mean(change) >= -LOST_TARGET_POINTS,
        )
    failed = sum(r.failed for r in [*off.values(), *on.values()])
    if failed:
        part.row("failed trials (all sweeps)", str(failed))
    return part
