"""The parallel parts: the same queued trials with 1 and 2 trials in flight, and the
default sweep (n_jobs auto) against the same command with n_jobs=1, with its CPU use."""

from __future__ import annotations

import os
import statistics

from benchmarks.pruners import BEST_TARGET, default_sweep
from benchmarks.results import Part, Results
from benchmarks.sweeprun import Sweep, SweepRunner

QUEUED_TRIALS = 12
PHASE_TARGET = 1.8  # n_jobs=1 / n_jobs=2, first trial's start to last one's end
WALL_TARGET = 1.6
TARGET_PAIRS = 3  # runs of the targets' pair (n_jobs=1, n_jobs=2); the median ratio is checked
SWEEP_WALL_TARGET = 0.6  # the default sweep's wall / the same with n_jobs=1
BEST_GAP_POINTS = 0.2
UTILISATION_TARGET = 1.7


def bench_parallel(results: Results, runner: SweepRunner, trials: int | None) -> Part:
    """The same queued trials, pruning off, so every configuration does the same work."""
    count = trials or QUEUED_TRIALS
    # Without the same trials, parallel runs would sample other points than a
    # serial one (constant_liar) and do other work; without pruning, the
    # order in which trials finish cannot change how long they train.
    same = ("hydra/sweeper/pruner=none", f"hydra.sweeper.n_trials={count}")
    basic = ("hydra/launcher=basic", "hydra.sweeper.n_jobs=1")
    joblib = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2")
    one_label, two_label = (
        "the app's launcher (pool), n_jobs=1",
        "the app's launcher (pool), n_jobs=2 (async)",
    )
    configurations = {  # interleaved so that the pair the targets compare runs back to back
        one_label: ("pool-1", (*same, "hydra.sweeper.n_jobs=1"), 1),
        two_label: ("pool-2", (*same, "hydra.sweeper.n_jobs=2"), 1),
        "basic launcher, n_jobs=1 (sequential, reproducible)": ("basic-1", (*same, *basic), 1),
        "joblib, n_jobs=2 (async)": ("joblib-2", (*same, *joblib), 1),
        "pool, n_jobs=2, mode=batch (the stock sweeper's batches)": (
            "pool-2-batch",
            (*same, "hydra.sweeper.n_jobs=2", "hydra.sweeper.mode=batch"),
            1,
        ),
        "2 sweep processes on one study, basic launcher each": (
            "two-processes",
            (*same, *basic, f"hydra.sweeper.total_trials={count}"),
            2,
        ),
    }
    runs: dict[str, Sweep] = {
        label: runner.run(name, *overrides, processes=processes, queue=count)
        for label, (name, overrides, processes) in configurations.items()
    }
    # The targeted pair again, back to back: two processes sharing two cores vary from run to run.
    pairs = [(runs[one_label], runs[two_label])] + [
        tuple(
            runner.run(configurations[label][0], *configurations[label][1], queue=count, repeat=repeat)
            for label in (one_label, two_label)
        )
        for repeat in range(1, TARGET_PAIRS)
    ]
    part = results.part(
        "parallel",
        f"the same {count} queued trials (drawn at random from the default space; no pruning), "
        "1 torch thread each; wall: the sweep command's start to its end; trials: the first trial's start "
        "to the last one's end (the study's datetime_start and datetime_complete; the pool launcher's "
        f"first trials are asked for once its workers have started); the targets' pair run {TARGET_PAIRS} "
        "times, their median ratio",
    )
    for label, r in runs.items():
        part.row(
            label,
            f"wall {r.wall:.1f} s, trials {r.phase:.1f} s, CPU/wall {r.utilisation:.2f}, "
            f"{r.epochs} epochs in {r.epoch_s:.1f} s of epoch time, best {r.best:.4f}",
        )
    for what, target, figure in (("trials", PHASE_TARGET, "phase"), ("wall", WALL_TARGET, "wall")):
        ratios = [getattr(one, figure) / getattr(two, figure) for one, two in pairs]
        middle = statistics.median(ratios)
        part.check(
            f"n_jobs=1 / n_jobs=2 (the app's launcher both), {what}",
            f"{middle:.2f}x (runs: {', '.join(f'{r:.2f}x' for r in ratios)})",
            f">= {target}x",
            middle >= target,
        )
    two = runs[two_label]
    sequential, joblib_two = (
        runs["basic launcher, n_jobs=1 (sequential, reproducible)"],
        runs["joblib, n_jobs=2 (async)"],
    )
    part.row(
        "basic n_jobs=1 / pool n_jobs=2",
        f"trials {sequential.phase / two.phase:.2f}x, wall {sequential.wall / two.wall:.2f}x",
    )
    part.row(
        "basic n_jobs=1 / joblib n_jobs=2",
        f"trials {sequential.phase / joblib_two.phase:.2f}x, wall {sequential.wall / joblib_two.wall:.2f}x",
    )
    epoch_ratios = [b.epoch_s / a.epoch_s for a, b in pairs]
    part.row(
        "epoch time, n_jobs=2 / n_jobs=1 (two trials sharing the machine), each pair",
        ", ".join(f"{r:.2f}x" for r in epoch_ratios),
    )
    everything = [*runs.values(), *(r for pair in pairs[1:] for r in pair)]
    same_work = len({(r.epochs, round(r.best, 6)) for r in everything}) == 1
    failed = sum(r.failed for r in everything)
    part.row(
        "every configuration trained the same epochs to the same best",
        "yes" if same_work else "**no**" + (f" ({failed} failed trials)" if failed else ""),
    )
    return part


def bench_parallel_sweep(results: Results, runner: SweepRunner, seeds: tuple[int, ...]) -> Part:
    """The default sweep (n_jobs auto) and the same command with n_jobs=1, per TPE seed, side by side."""
    pairs: dict[int, tuple[Sweep, Sweep]] = {}
    for seed in seeds:
        pairs[seed] = (
            default_sweep(runner, seed),
            default_sweep(runner, seed, "n_jobs-1", "hydra.sweeper.n_jobs=1"),
        )
    cores = len(os.sched_getaffinity(0))
    part = results.part(
        "parallel-sweep",
        f"`main.py -m hydra/sweeper=optuna` ({runner.trials or 20} trials; "
        f"n_jobs auto: {cores} on this machine, "
        "the pool launcher, median pruner) vs "
        f"the same with `hydra.sweeper.n_jobs=1`, TPE seeds {', '.join(map(str, seeds))}, each pair "
        "back to back; CPU: user + system seconds of the sweep and all its processes, over its wall time",
    )
    for seed, (par, seq) in pairs.items():
        part.row(
            f"seed {seed}",
            f"wall {par.wall:.1f} vs {seq.wall:.1f} s ({par.wall / seq.wall:.2f}x), "
            f"epochs {par.epochs} vs {seq.epochs} (pruned {par.pruned} vs {seq.pruned}), "
            f"best {par.best:.4f} vs {seq.best:.4f}, "
            f"CPU/wall {par.utilisation:.2f} vs {seq.utilisation:.2f}",
        )
    total = sum(p.wall for p, _ in pairs.values()) / sum(s.wall for _, s in pairs.values())
    if 0 in pairs:
        par, seq = pairs[0]
        part.check(
            "wall, n_jobs auto / n_jobs=1, seed 0 (the default sweep)",
            f"{par.wall / seq.wall:.2f}x",
            f"<= {SWEEP_WALL_TARGET}x",
            par.wall / seq.wall <= SWEEP_WALL_TARGET,
        )
    if len(pairs) > 1:  # information: the target is the default sweep's (seed 0)
        per_epoch = (sum(p.wall for p, _ in pairs.values()) / sum(p.epochs for p, _ in pairs.values())) / (
            sum(s.wall for _, s in pairs.values()) / sum(s.epochs for _, s in pairs.values())
        )
        part.row(
            "wall, n_jobs auto / n_jobs=1, all seeds' sweeps together",
            f"{total:.2f}x; per epoch trained {per_epoch:.2f}x (the seeds' sweeps sample other trials "
            "when two run at once, and train other epoch counts)",
        )
    if 0 in pairs:
        best = pairs[0][0].best
        part.check(
            "best test accuracy, n_jobs auto, seed 0", f"{best:.4f}", f">= {BEST_TARGET}", best >= BEST_TARGET
        )
    mean_par = statistics.mean(p.best for p, _ in pairs.values())
    mean_seq = statistics.mean(s.best for _, s in pairs.values())
    gap = (mean_par - mean_seq) * 100
    which = "seeds " + ", ".join(map(str, seeds))
    if set(seeds) != set(range(5)):
        which += " (the target names seeds 0 to 4)"
    part.check(
        f"best, mean of {which}: n_jobs auto vs n_jobs=1",
        f"{mean_par:.4f} vs {mean_seq:.4f} ({gap:+.2f} points)",
        f"no more than {BEST_GAP_POINTS} points below",
        gap >= -BEST_GAP_POINTS,
    )
    if 0 in pairs:
        use = pairs[0][0].utilisation
        part.check(
            "CPU/wall of the default sweep, seed 0",
            f"{use:.2f} (n_jobs=1: {pairs[0][1].utilisation:.2f})",
            f">= {UTILISATION_TARGET} on {cores} cores",
            use >= UTILISATION_TARGET,
        )
    failed = sum(p.failed + s.failed for p, s in pairs.values())
    if failed:
        part.row("failed trials (all sweeps)", str(failed))
    return part
