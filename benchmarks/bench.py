"""Speed figures for the README, measured side by side in one run.

    python benchmarks/bench.py [--only PARTS] [--seeds 0,1,2] [--data DIR] [--results PATH] ...
    python benchmarks/bench.py --smoke [--only PARTS]      # every part, tiny, on data/sample

Each part prints its figures and adds them, as a markdown table, to a dated
section of --results (default benchmarks/results.md, newest first), with the
machine they were measured on. Parts (--only, comma-separated; default
quickstart,load,epoch,threads,pool-threads,checkpoint,resume,overhead,parallel,parallel-sweep,sweep,
scale,shared,tpe,offline), run in this order:

- quickstart: what the README's `make sweep` gives, on the bundled sample and
            on the full set: the default sweep's wall time and best accuracy;
- load:     cold (gunzip, parse, hash, write the disk cache) vs cached load;
- epoch:    seconds per epoch, batch 128, 1 thread, on --device, side by
            side: the default run (LinearNet + Adam: the fast path on a
            CPU), the general path on the same model (autograd +
            torch.optim.Adam, fused and foreach), model=mlp [256, 128]
            through the general path, and a tutorial-style reference for
            each model (per-sample Dataset normalising in __getitem__, a
            DataLoader, Adam);
- previous: the default epoch of this tree vs the tree at --previous (a
            git revision, default the merge-base with main), each in its
            own process, alternating (not in the default run);
- threads:  our epoch with 1 and 2 torch threads;
- pool-threads: a third-party torch app (examples/mlp) swept on the pool
            launcher at n_jobs=2 vs 1, its workers limited to their share of
            the cores, and at n_jobs=2 unlimited for comparison;
- overhead: where a trial's time goes besides training (overhead_probe.py,
            trials in the sweep's process), what Optuna's own calls for those
            trials cost alone on SQLite, and, for comparison, a job of
            Hydra's basic sweeper and of the stock hydra-optuna-sweeper
            running a task that only returns (noop_task.py);
- noop-overhead: the sweep's own cost per trial for a task that only
            returns, in blocks of 1,000 of 10,000 trials (--trials) in one
            process on SQLite with the random sampler (noop_probe.py), beside
            Optuna's own calls for such trials (not in the default run);
- parallel: the same 12 queued trials, no pruning, with hydra.sweeper.n_jobs=1
            and 2 (the app's pool launcher both: the targets, that pair run 3 times
            and its median ratio checked), and for comparison n_jobs=1 on the basic
            launcher, joblib, n_jobs=2 in batches, and 2 sweep processes;
- parallel-sweep: the default sweep vs the same command with
            hydra.sweeper.n_jobs=1, on TPE seeds 0 to 4 (--seeds), each pair
            back to back: wall time, best accuracy, and the default sweep's
            CPU time (the sweep and all its processes) over its wall time;
- sweep:    the default 20-trial sweep (`main.py -m hydra/sweeper=optuna`:
            the pool launcher, n_jobs auto) with the median pruner and without, on TPE
            seeds 0, 1 and 2 (--seeds), the default sweeps shared with
            parallel-sweep;
- pruners:  the same for the other pruner settings README compares
            (not in the default run: 18 sweeps on 3 seeds);
- scale:    --scale-trials no-op trials (default 100; --full: 10,000) by 1, 2
            and 4 sweep processes on SQLite, a journal, PostgreSQL and the gRPC
            proxy, with optuna-dashboard polling: trials/s, exact count, lock errors;
- shared:   examples/descent, two sweep processes each on journal:// and on
            grpc:// sharing total_trials=200: exactly 200;
- tpe:      TPESampler's own ms per ask as the study grows (to 3,000 trials;
            --full: 10,000), with its defaults and the options that bound it.
- test-fast: `make test-fast`'s wall time, target under 2 minutes (not in
            the default run).
- offline:  finding no MNIST offline: one quick mirror check vs every file
            tried at every mirror, and the fallback line's length (offline.py).
- checkpoint: the default epoch without a checkpoint, with a single run's and with
            a trial's saved after it, interleaved (benchmarks/resume.py);
- resume:   a sweep of one 10-epoch trial SIGKILLed after 5 epochs and run again:
            the retry's value and time against an untouched trial's.

Sweeps the parts share (the default sweep of a seed) run once. Every ratio
compares figures taken in this run, on this machine. Smoke runs (--smoke,
--trials, --max-epochs, --data data/sample) write to the temp folder unless
--results says otherwise: their figures are no benchmark.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402

from benchmarks import (  # noqa: E402
    noop_overhead,
    offline,
    overhead,
    parallel,
    pool_threads,
    pruners,
    quickstart,
    resume,
    scale,
    testfast,
    training,
)
from benchmarks.results import DEFAULT_RESULTS, Results, machine  # noqa: E402
from benchmarks.sweeprun import SweepRunner  # noqa: E402
from ds.device import resolve_device  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist"
# The order they run in: parallel-sweep runs each default sweep next to its n_jobs=1 twin; sweep reuses it.
PARTS = (
    "quickstart",
    "load",
    "epoch",
    "previous",
    "threads",
    "pool-threads",
    "checkpoint",
    "resume",
    "overhead",
    "noop-overhead",
    "parallel",
    "parallel-sweep",
    "sweep",
    "pruners",
    "scale",
    "shared",
    "tpe",
    "test-fast",
    "offline",
)
DEFAULT_PARTS = (
    "quickstart,load,epoch,threads,pool-threads,checkpoint,resume,overhead,parallel,parallel-sweep,sweep,"
    "scale,shared,tpe,offline"
)
SWEEP_SEEDS = (0, 1, 2)
PARALLEL_SWEEP_SEEDS = (0, 1, 2, 3, 4)
SMOKE = {
    "data": ROOT / "data" / "sample",
    "trials": 3,
    "max_epochs": 2,
    "seeds": "0",
    "repeats": 1,
    "scale_trials": 20,
}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--only", default=DEFAULT_PARTS, help=f"parts to run, of {', '.join(PARTS)} (default: %(default)s)")
    add("--data", type=Path, help=f"directory of the full MNIST set (default: {DEFAULT_DATA})")
    add(
        "--seeds",
        help="TPE seeds of the sweep, pruners and parallel-sweep parts "
        "(default: 0,1,2 for sweep and pruners, 0,1,2,3,4 for parallel-sweep)",
    )
    add("--device", default="auto", help="the epoch part's device (default: %(default)s)")
    add("--previous", default=None, help="the previous part's git revision (default: merge-base with main)")
    add(
        "--results",
        type=Path,
        help=f"the results file (default: {DEFAULT_RESULTS.relative_to(ROOT)}; "
        "with --trials, --max-epochs, --smoke or data/sample: bench-smoke.md in "
        "the temp folder)",
    )
    add(
        "--trials",
        type=int,
        help="trials of every sweep (default: the app's 20; 12 queued in parallel; 10 in overhead)",
    )
    add(
        "--max-epochs",
        type=int,
        help="the largest params.epoch_count a sweep samples (default: the app's 10)",
    )
    add(
        "--repeats",
        type=int,
        default=5,
        help="runs of each epoch (epoch; threads: at most 3) (default: %(default)s)",
    )
    add(
        "--workdir",
        type=Path,
        help="keep the sweeps' studies, logs and outputs here (default: a temporary folder)",
    )
    add(
        "--scale-trials",
        type=int,
        default=100,
        help="no-op trials of each scale run (default: %(default)s; --full: 10000)",
    )
    add("--full", action="store_true", help="scale: 10,000 trials a run; tpe: studies of up to 10,000 trials")
    smoke = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in SMOKE.items())
    add("--smoke", action="store_true", help=f"every part tiny, to check that it runs: {smoke}")
    args = parser.parse_args()
    if args.smoke:
        for key, value in SMOKE.items():
            if getattr(args, key) in (None, parser.get_default(key)):
                setattr(args, key, value)
    args.data = args.data or DEFAULT_DATA
    if args.results is None:
        sample = args.data.resolve() == SMOKE["data"].resolve()
        shrunk = args.trials is not None or args.max_epochs is not None or sample
        args.results = Path(tempfile.gettempdir()) / "bench-smoke.md" if shrunk else DEFAULT_RESULTS
    parts = args.only.split(",")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(
            f"--only {args.only}: unknown part(s) {', '.join(unknown)}; expected some of {', '.join(PARTS)}"
        )
    if not args.data.is_dir():
        parser.error(f"--data {args.data} is not a directory; expected the full MNIST set")
    if args.max_epochs is not None and not 1 <= args.max_epochs <= 10:
        parser.error("--max-epochs: expected 1 to 10")
    if args.full:
        args.scale_trials = 10000
    if args.scale_trials < 1:
        parser.error(f"--scale-trials {args.scale_trials}: expected a number of trials >= 1")
    args.parts = parts
    return args


def main() -> None:
    args = arguments()
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results = Results(args.results, machine(str(resolve_device(args.device))))
    given = [k for k in ("trials", "max_epochs", "seeds") if getattr(args, k) is not None]
    options = "".join(f" --{k.replace('_', '-')} {getattr(args, k)}" for k in given)
    results.machine["settings"] = f"--data {args.data}{options}"
    print("\n".join(f"{k}: {v}" for k, v in results.machine.items()) + "\n", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        cache = workdir / "cache"
        runner = SweepRunner(args.data.resolve(), workdir, args.trials, args.max_epochs)
        seeds_of_sweeps = seeds or SWEEP_SEEDS
        parts = {
            "quickstart": lambda: quickstart.bench_quickstart(results, runner),
            "load": lambda: training.bench_load(results, args.data),
            "epoch": lambda: training.bench_epoch(results, args.data, cache, args.device, args.repeats),
            "previous": lambda: training.bench_previous(
                results, args.data, workdir, args.previous, rounds=max(2, args.repeats - 1)
            ),
            "threads": lambda: training.bench_threads(results, args.data, cache, min(3, args.repeats)),
            "pool-threads": lambda: pool_threads.bench_pool_threads(results, workdir, args.trials),
            "checkpoint": lambda: resume.bench_checkpoint(results, args.data, cache, args.repeats),
            "resume": lambda: resume.bench_resume(results, runner),
            "overhead": lambda: overhead.bench_overhead(results, runner, workdir, args.trials or 10),
            "noop-overhead": lambda: noop_overhead.bench_noop_overhead(
                results, workdir, args.trials or 10_000
            ),
            "parallel": lambda: parallel.bench_parallel(results, runner, args.trials),
            "parallel-sweep": lambda: parallel.bench_parallel_sweep(
                results, runner, seeds or PARALLEL_SWEEP_SEEDS
            ),
            "sweep": lambda: pruners.bench_pruners(
                results, runner, {pruners.DEFAULT_PRUNER: ()}, seeds_of_sweeps
            ),
            "pruners": lambda: pruners.bench_pruners(
                results, runner, pruners.PRUNER_SETTINGS, seeds_of_sweeps
            ),
            "scale": lambda: scale.bench_scale(results, workdir, args.scale_trials),
            "shared": lambda: scale.bench_shared(results, workdir),
            "tpe": lambda: scale.bench_tpe(results, 10000 if args.full else 3000),
            "test-fast": lambda: testfast.bench_test_fast(results),
            "offline": lambda: offline.bench_offline(results),
        }
        try:
            for name in PARTS:  # in this order, whatever the order of --only
                if name not in args.parts or (name == "sweep" and "pruners" in args.parts):  # pruners has it
                    continue
                try:
                    results.show(parts[name]())
                except Exception:
                    traceback.print_exc()
                    print(f"part {name} failed; going on with the others\n", file=sys.stderr, flush=True)
                    results.failed.append(name)
        finally:
            if results.parts or results.failed:
                results.write()
    if results.failed:
        sys.exit(f"failed parts: {', '.join(results.failed)}")


if __name__ == "__main__":
    main()
