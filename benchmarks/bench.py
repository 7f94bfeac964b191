"""Speed figures for the README, measured side by side in one run.

    python benchmarks/bench.py [--data ../shared/data/mnist] [--only epoch,load,threads,sweep,parallel] [--seeds 0,1,2]
                               [--device auto] [--previous REV]

- epoch:    seconds per epoch, batch 128, 1 thread, on --device, side by
            side: the default run (LinearNet + Adam: the fast path on a
            CPU), the general path on the same model (autograd +
            torch.optim.Adam, fused and foreach), model=mlp [256, 128]
            through the general path, and a tutorial-style reference for
            each model (per-sample Dataset normalising in __getitem__, a
            DataLoader, Adam);
- previous: the default epoch of this tree vs the tree at --previous (a
            git revision, default the merge-base with main), each in its
            own process, alternating;
- load:     cold (gunzip, parse, hash, write the disk cache) vs cached load;
- threads:  our epoch with 1 and 2 torch threads;
- sweep:    the default 20-trial sweep with the median pruner and without,
            on TPE seeds 0 (the default), 1 and 2 (--seeds);
- pruners:  the same for the other pruner settings README compares
            (not in the default run: 18 sweeps on 3 seeds);
- parallel: the same 12 trials in 1 process, with the joblib launcher
            (2 workers, batches of 2 and of 12), and in 2 sweep processes
            sharing the study;
- overhead: where a trial's time goes besides training (overhead_probe.py),
            what Optuna's own calls for those trials cost alone on SQLite,
            and, for comparison, a job of Hydra's basic sweeper and of the
            stock hydra-optuna-sweeper running a task that only returns
            (noop_task.py).

Every ratio compares figures taken in this run, on this machine.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from ds.data import MNIST_MEAN, MNIST_STD, clear_memory_cache, load_mnist  # noqa: E402
from ds.device import resolve_device  # noqa: E402
from ds.model import MLP, LinearNet  # noqa: E402
from ds.train import train  # noqa: E402

DEFAULT_PRUNER = "median, 5 startup trials, no epoch warm-up (default)"
# The settings README's pruning table compares (--only pruners).
PRUNER_SETTINGS: dict[str, tuple[str, ...]] = {
    DEFAULT_PRUNER: (),
    "median, 3 startup trials, no epoch warm-up": ("hydra.sweeper.pruner.n_startup_trials=3",),
    "median, 5 startup trials, warm-up 2": ("hydra.sweeper.pruner.n_warmup_steps=2",),
    "median, 3 startup trials, warm-up 2 (the earlier default)": (
        "hydra.sweeper.pruner.n_startup_trials=3", "hydra.sweeper.pruner.n_warmup_steps=2"),
    "percentile 45, 5 startup trials, no epoch warm-up": ("hydra/sweeper/pruner=percentile",),
}
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist"


class TutorialMNIST(Dataset):
    """The usual tutorial dataset: one sample at a time, normalised on access."""

    def __init__(self, images, labels) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = torch.tensor(self.images[i], dtype=torch.float32) / 255.0
        return (x - MNIST_MEAN) / MNIST_STD, int(self.labels[i])


def reference_epoch(loader: DataLoader, make_model: Callable[[], nn.Module] = LinearNet, seed: int = 0) -> float:
    torch.manual_seed(seed)
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    started = time.perf_counter()
    correct = 0
    for x, y in loader:
        optimizer.zero_grad()
        logits = model(x)
        loss = loss_fn(logits, y)
        loss.backward()
        optimizer.step()
        correct += (logits.argmax(1) == y).sum().item()
    return time.perf_counter() - started


def our_epoch(data, make_model: Callable[[], nn.Module] = LinearNet, device: str = "cpu", **adam) -> float:
    """One epoch of ds.train.train; with `adam` settings (fused=..., foreach=...) the general path."""
    torch.manual_seed(0)
    optimizer = functools.partial(torch.optim.Adam, lr=1e-3, **adam)
    history = train(
        data, make_model(), optimizer, batch_size=128, epoch_count=1, seed=0, device=device, allow_fast_path=not adam
    )
    return history[0].seconds


def bench_epoch(data_dir: Path, cache: Path, device: str, repeats: int = 5) -> None:
    torch.set_num_threads(1)
    logging.getLogger("ds.train").setLevel(logging.WARNING)  # the path line, once per epoch run
    data = load_mnist(data_dir, cache)
    arrays = data.arrays
    loader = DataLoader(TutorialMNIST(arrays.train_x, arrays.train_y), batch_size=128, shuffle=True)
    mlp = functools.partial(MLP, [256, 128])
    on = str(resolve_device(device))
    runs: dict[str, Callable[[], float]] = {
        "default (LinearNet + Adam)": lambda: our_epoch(data, device=on),
        "general, LinearNet, fused Adam": lambda: our_epoch(data, device=on, fused=True),
        "general, LinearNet, foreach Adam": lambda: our_epoch(data, device=on, foreach=True),
        "tutorial, LinearNet": lambda: reference_epoch(loader),
        "general, mlp [256, 128], fused Adam": lambda: our_epoch(data, mlp, device=on, fused=on in ("cpu", "cuda")),
        "tutorial, mlp [256, 128]": lambda: reference_epoch(loader, mlp),
    }
    for run in runs.values():  # warm-up: first-call imports and allocations
        run()
    seconds: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeats):  # interleaved, so every row sees the same machine
        for label, run in runs.items():
            seconds[label].append(run())
    print(f"epoch (full MNIST, batch 128, 1 thread, device {on} (the tutorial rows: cpu), {repeats} each, interleaved):")
    # Noise on a shared machine only ever adds time: the fastest of several
    # runs is the steadiest figure; the median shows what a busy machine gives.
    for label in seconds:
        print(f"  {label:38s} fastest {min(seconds[label]):.3f} s   median {statistics.median(seconds[label]):.3f} s")
    ratios = (
        ("default vs tutorial, LinearNet", "default (LinearNet + Adam)", "tutorial, LinearNet"),
        ("general (fused) vs tutorial, LinearNet", "general, LinearNet, fused Adam", "tutorial, LinearNet"),
        ("general (foreach) vs tutorial, LinearNet", "general, LinearNet, foreach Adam", "tutorial, LinearNet"),
        ("default vs general (fused), LinearNet", "default (LinearNet + Adam)", "general, LinearNet, fused Adam"),
        ("general vs tutorial, mlp [256, 128]", "general, mlp [256, 128], fused Adam", "tutorial, mlp [256, 128]"),
    )
    for label, ours, theirs in ratios:
        fastest = min(seconds[theirs]) / min(seconds[ours])
        median = statistics.median(seconds[theirs]) / statistics.median(seconds[ours])
        print(f"  {label:42s} {fastest:5.1f}x faster (fastest)   {median:5.1f}x (median)")


# The default epoch in a tree of either API (train(data, lr=..., hidden=...) before model groups).
_TREE_EPOCH = """
import inspect, sys, time
from functools import partial
import torch
torch.set_num_threads(1)
from ds.data import load_mnist
from ds.model import LinearNet
from ds.train import train
data = load_mnist(sys.argv[1], sys.argv[2])
def epoch():
    torch.manual_seed(0)
    if "hidden" in inspect.signature(train).parameters:
        return train(data, lr=1e-3, batch_size=128, epoch_count=1, hidden=32, seed=0)[0].seconds
    return train(data, LinearNet(32), partial(torch.optim.Adam, lr=1e-3), batch_size=128, epoch_count=1, seed=0)[0].seconds
epoch()
print(min(epoch() for _ in range(3)))
"""


def bench_previous(data_dir: Path, workdir: Path, revision: str | None, rounds: int = 4) -> None:
    """This tree's default epoch vs another revision's, each process the fastest of 3 epochs."""
    if revision is None:
        revision = subprocess.run(
            ["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    previous = workdir / "previous"
    previous.mkdir()
    archive = subprocess.run(["git", "archive", revision, "ds"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(previous)], input=archive, check=True)
    trees = {"this tree": ROOT, f"previous ({revision[:10]})": previous}
    seconds: dict[str, list[float]] = {label: [] for label in trees}
    for _ in range(rounds):
        for label, tree in trees.items():
            result = subprocess.run(
                [sys.executable, "-c", _TREE_EPOCH, str(data_dir), str(workdir / f"cache-{tree.name}")],
                cwd=tree, capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(tree)},
            )
            seconds[label].append(float(result.stdout.strip().splitlines()[-1]))
    print(f"default epoch, this tree vs the previous code (cpu, 1 thread, {rounds} processes each, alternating):")
    for label, values in seconds.items():
        print(f"  {label:24s} fastest {min(values):.3f} s   median {statistics.median(values):.3f} s")
    this, before = seconds["this tree"], seconds[f"previous ({revision[:10]})"]
    print(f"  this tree takes {min(this) / min(before):.2f}x the previous time (fastest), "
          f"{statistics.median(this) / statistics.median(before):.2f}x (median)")


def bench_load(data_dir: Path) -> None:
    with tempfile.TemporaryDirectory() as cache:
        clear_memory_cache()
        started = time.perf_counter()
        load_mnist(data_dir, cache)
        cold = time.perf_counter() - started
        cached = []
        for _ in range(3):
            clear_memory_cache()
            started = time.perf_counter()
            load_mnist(data_dir, cache)
            cached.append(time.perf_counter() - started)
        started = time.perf_counter()
        load_mnist(data_dir, cache)
        in_memory = time.perf_counter() - started
    print("data load (full MNIST, to normalised tensors):")
    print(f"  cold {cold:.3f} s   disk-cached {min(cached):.3f} s   in-process again {in_memory * 1000:.2f} ms")


def bench_threads(data_dir: Path, cache: Path) -> None:
    data = load_mnist(data_dir, cache)
    figures = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        our_epoch(data)
        figures[threads] = statistics.median(our_epoch(data) for _ in range(3))
    torch.set_num_threads(1)
    print("threads (our epoch, batch 128): " + "   ".join(f"{t}: {s:.3f} s" for t, s in figures.items()))


def sweep_command(script: Path, data_dir: Path, workdir: Path, name: str, *overrides: str) -> list[str]:
    """A sweep on `data_dir` into study `name` of workdir's SQLite file, all output in `workdir`."""
    return [
        sys.executable, str(script), "-m", "hydra/sweeper=optuna",
        f"paths.data={data_dir}", f"paths.cache={workdir / 'cache'}", f"paths.log={workdir / 'runs'}",
        f"storage=sqlite:///{workdir / 'bench.db'}", f"hydra.sweeper.study_name={name}", "progress=false",
        f"hydra.sweep.dir={workdir / 'multirun' / name}", *overrides,
    ]


def run_sweep(data_dir: Path, workdir: Path, name: str, *overrides: str) -> dict:
    storage = f"sqlite:///{workdir / 'bench.db'}"
    command = sweep_command(ROOT / "main.py", data_dir, workdir, name, *overrides)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"sweep {name} failed:\n{result.stderr[-3000:]}")
    sweep_s = float(re.search(r"Sweep done in ([0-9.]+) s", result.stdout + result.stderr).group(1))
    epoch_s = sum(float(s) for s in re.findall(r"\[Epoch: \d+/\d+\].*Time: ([0-9.]+)s", result.stdout + result.stderr))
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials()
    return {
        "wall": wall,
        "sweep": sweep_s,
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "best": study.best_value,
        "trials": len(trials),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
        "overhead_ms": (sweep_s - epoch_s) / len(trials) * 1000,
        "phase": trial_phase(trials),
    }


def trial_phase(trials: list[optuna.trial.FrozenTrial]) -> float:
    """Seconds from the first trial's start (when it is asked for) to the last
    one's end: the wall time less the sweep processes' own start-up and
    wind-down. Joblib's workers start within it, after their first trials are asked for."""
    finished = [t for t in trials if t.datetime_start and t.datetime_complete]
    return (max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)).total_seconds()


def bench_sweep(data_dir: Path, workdir: Path, settings: dict[str, tuple[str, ...]], seeds: tuple[int, ...]) -> None:
    # Pruning changes which points TPE samples next, so its effect depends on
    # the seed: compare each pruner setting with no pruning on several seeds.
    # Seed 0 with the default setting is the default sweep.
    def sweep(name: str, seed: int, overrides: tuple[str, ...]) -> dict:
        return run_sweep(data_dir, workdir, f"{name}-seed{seed}", f"hydra.sweeper.sampler.seed={seed}", *overrides)

    off = {seed: sweep("none", seed, ("hydra/sweeper/pruner=none",)) for seed in seeds}
    on = {
        (label, seed): sweep(f"pruner{i}", seed, overrides)
        for i, (label, overrides) in enumerate(settings.items())
        for seed in seeds
    }
    print("default sweep (20 trials, full MNIST, TPE seed 0):" if 0 in seeds else "(no seed 0: no default sweep)")
    default_sweeps = (("median pruner", on[DEFAULT_PRUNER, 0]), ("no pruner", off[0])) if 0 in seeds else ()
    for label, r in default_sweeps:
        print(
            f"  {label:13s} wall {r['wall']:.1f} s (sweep {r['sweep']:.1f} s)   epochs {r['epochs']}"
            f"   pruned {r['pruned']}   best {r['best']:.4f}   overhead/trial {r['overhead_ms']:.0f} ms"
        )
    print("no pruning, seeds " + ", ".join(
        f"{seed}: {r['epochs']} epochs, best {r['best']:.4f}" for seed, r in off.items()))
    print("pruning vs none, TPE seeds " + " / ".join(map(str, seeds)) + " (mean):")
    for label in settings:
        savings = [1 - on[label, seed]["epochs"] / off[seed]["epochs"] for seed in seeds]
        changes = [(on[label, seed]["best"] - off[seed]["best"]) * 100 for seed in seeds]
        print(
            f"  {label}: epochs saved {' / '.join(f'{v:.0%}' for v in savings)} ({statistics.mean(savings):.0%}), "
            f"best {' / '.join(f'{v:+.2f}' for v in changes)} ({statistics.mean(changes):+.2f}) points"
        )


def run_workers(data_dir: Path, workdir: Path, name: str, workers: int, *overrides: str) -> dict:
    """`workers` sweep processes started together on one SQLite study."""
    storage = f"sqlite:///{workdir / 'bench.db'}"
    started = time.perf_counter()
    processes = [
        subprocess.Popen([*sweep_command(ROOT / "main.py", data_dir, workdir, name, *overrides),
                          f"hydra.sweep.dir={workdir / 'multirun' / f'{name}-{i}'}"], cwd=workdir,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for i in range(workers)
    ]
    errors = [p.communicate()[1] for p in processes]
    wall = time.perf_counter() - started
    if any(p.returncode for p in processes):
        raise RuntimeError(f"workers of {name} failed:\n" + "\n".join(e[-2000:] for e in errors))
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials()
    epochs = sum(len(t.intermediate_values) for t in trials)
    return {"wall": wall, "epochs": epochs, "best": study.best_value, "phase": trial_phase(trials)}


def queue_trials(workdir: Path, name: str, count: int = 12, seed: int = 0) -> None:
    """Create study `name` holding `count` queued trials drawn at random from
    the default search space, so that every configuration runs the same ones."""
    draw = random.Random(seed)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{workdir / 'bench.db'}", direction="maximize")
    for _ in range(count):
        study.enqueue_trial({
            "params.lr": 10 ** draw.uniform(-4, -1),
            "params.batch_size": draw.choice([32, 64, 128, 256, 512]),
            "params.epoch_count": draw.randint(1, 10),
        })


def bench_parallel(data_dir: Path, workdir: Path) -> None:
    # Without the same trials, parallel runs would sample other points than a
    # serial one (constant_liar) and do other work; without pruning, the
    # order in which trials finish cannot change how long they train.
    same_work = ("hydra/sweeper/pruner=none", "hydra.sweeper.n_trials=12")
    joblib = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    for name in ("one-process", "joblib-2", "joblib-12", "two-processes"):
        queue_trials(workdir, name)
    one = run_sweep(data_dir, workdir, "one-process", *same_work)
    # The sweeper launches hydra.sweeper.n_jobs trials at a time and the
    # launcher returns when all of them have ended; in a batch of 12, joblib's
    # 2 workers each take the next trial when free.
    batch_2 = run_sweep(data_dir, workdir, "joblib-2", *same_work, *joblib, "hydra.sweeper.n_jobs=2")
    batch_12 = run_sweep(data_dir, workdir, "joblib-12", *same_work, *joblib, "hydra.sweeper.n_jobs=12")
    processes = run_workers(data_dir, workdir, "two-processes", 2, *same_work, "hydra.sweeper.total_trials=12")
    print("the same 12 trials (queued, drawn at random; no pruning) on 2 cores, 1 torch thread per trial:")
    rows = (
        ("1 process", one),
        ("joblib, 2 workers, batches of 2", batch_2),
        ("joblib, 2 workers, batches of 12", batch_12),
        ("2 sweep processes", processes),
    )
    for label, r in rows:
        print(
            f"  {label:33s} wall {r['wall']:.1f} s (first trial's start to last one's end {r['phase']:.1f} s)"
            f"   epochs {r['epochs']}   best {r['best']:.4f}"
        )
    for label, r in rows[1:]:
        print(
            f"  {label}: {one['wall'] / r['wall']:.2f}x faster than 1 process"
            f" (first trial to last: {one['phase'] / r['phase']:.2f}x)"
        )


def bench_overhead(data_dir: Path, workdir: Path, trials: int = 10) -> None:
    command = sweep_command(
        ROOT / "benchmarks" / "overhead_probe.py", data_dir, workdir, "overhead",
        f"hydra.sweeper.n_trials={trials}", "params.epoch_count=1", "params.batch_size=512",
    )
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"overhead probe failed:\n{result.stderr[-3000:]}")
    print(f"per-trial overhead, {trials} one-epoch trials (ms per trial: mean, median):")
    for line in result.stdout.splitlines():
        if line.startswith("OVERHEAD   "):
            print("  " + line.removeprefix("OVERHEAD   "))
    # The part of those figures the libraries set by themselves: Hydra's
    # run_job above, and Optuna's calls here, with no Hydra job and no training.
    sweeper = default_sweeper()
    space = [f"{key}={values}" for key, values in sweeper.params.items()]
    print(f"optuna alone, {trials} trials (mean ms per trial):")
    print(f"  {'ask, heartbeat, report, tell (a subset of the above)':52s} {optuna_alone(sweeper, space, workdir, trials):8.1f}")
    # For comparison, what a job costs without this project's sweeper:
    # composed from scratch, like every job of Hydra's own launchers.
    noop = (sys.executable, str(ROOT / "benchmarks" / "noop_task.py"), "-m")
    basic = per_job(workdir, "basic", trials, lambda n, name: [
        *noop, "params.lr=" + ",".join(str(i + 1) for i in range(n)), f"hydra.sweep.dir={workdir / name}"])
    stock = per_job(workdir, "stock", trials, lambda n, name: [
        *noop, "hydra/sweeper=optuna", f"hydra.sweeper.n_trials={n}", "hydra.sweeper.n_jobs=1",
        f"hydra.sweeper.storage=sqlite:///{workdir / 'stock.db'}", f"hydra.sweeper.study_name={name}",
        "hydra.sweeper.sampler.seed=0", f"hydra.sweep.dir={workdir / name}", *space])
    print(f"a job of a task that only returns (noop_task.py), {trials} jobs (mean ms per job):")
    print(f"  {'Hydra basic sweeper and launcher':52s} {basic:8.1f}")
    print(f"  {'stock hydra-optuna-sweeper, its SQLite study':52s} {stock:8.1f}")


def default_sweeper():
    """The default sweep's `hydra.sweeper` settings, composed from conf/."""
    from hydra import compose, initialize_config_dir

    from ds.config import register_configs

    register_configs()
    with initialize_config_dir(str(ROOT / "conf")):
        return compose("config", ["hydra/sweeper=optuna"], return_hydra_config=True).hydra.sweeper


def optuna_alone(sweeper, space: list[str], workdir: Path, trials: int) -> float:
    """Mean ms of the Optuna calls no sweep can do without for a one-epoch
    trial (ask with sampling, a heartbeat, one report, tell), with the default
    sweep's sampler, pruner, search space and SQLite storage, and nothing
    else: no Hydra job, no training. The sweep makes a few more (its
    attributes, the trial's lookup, the stale-trial check, the best so far)."""
    from hydra.utils import instantiate
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    from hydra_plugins.pruning_optuna_sweeper._sweep import SAMPLER_WHITELIST  # also silences its warnings
    from sweeps.reporter import build_pruner
    from sweeps.storage import open_storage

    storage = open_storage(
        f"sqlite:///{workdir / 'optuna-alone.db'}",
        heartbeat_interval=sweeper.heartbeat_interval,
        grace_period=sweeper.grace_period,
    )
    study = optuna.create_study(
        storage=storage,
        sampler=instantiate(sweeper.sampler, _execution_whitelist_=SAMPLER_WHITELIST),
        pruner=build_pruner(sweeper.pruner),
        direction=sweeper.direction,
    )
    distributions, _, _ = create_params_from_overrides(space)
    started = time.perf_counter()
    for _ in range(trials):
        trial = study.ask(distributions)
        storage.record_heartbeat(trial._trial_id)
        trial.report(trial.params["params.lr"], step=1)  # one epoch: its last, so no should_prune
        study.tell(trial, trial.params["params.lr"])
    return (time.perf_counter() - started) / trials * 1000


def per_job(workdir: Path, kind: str, jobs: int, command: Callable[[int, str], list[str]]) -> float:
    """Mean ms a job adds to a multirun: `jobs + 1` jobs against 1, the same
    start-up in both; the fastest of two tries of each. `command(n, name)`
    runs n jobs, its study and folder called `name`."""
    def wall(n: int) -> float:
        times = []
        for attempt in range(2):
            started = time.perf_counter()
            result = subprocess.run(command(n, f"{kind}-{n}-{attempt}"), cwd=workdir, capture_output=True, text=True)
            times.append(time.perf_counter() - started)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(command(n, 'x'))} failed:\n{result.stderr[-3000:]}")
        return min(times)

    return (wall(jobs + 1) - wall(1)) / jobs * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="directory of the full MNIST set")
    parser.add_argument("--only", default="load,epoch,threads,overhead,sweep,parallel")
    parser.add_argument("--seeds", default="0,1,2", help="TPE seeds of the sweep and pruners parts (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="the epoch part's device (default: %(default)s)")
    parser.add_argument("--previous", default=None, help="the previous part's git revision (default: merge-base with main)")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"error: --data {args.data} is not a directory; expected the full MNIST set")
    parts = set(args.only.split(","))
    seeds = tuple(int(seed) for seed in args.seeds.split(","))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} default threads, data {args.data}\n")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cache = workdir / "cache"
        if "load" in parts:
            bench_load(args.data)
        if "epoch" in parts:
            bench_epoch(args.data, cache, args.device)
        if "previous" in parts:
            bench_previous(args.data, workdir, args.previous)
        if "threads" in parts:
            bench_threads(args.data, cache)
        if "overhead" in parts:
            bench_overhead(args.data, workdir)
        if "pruners" in parts:
            bench_sweep(args.data, workdir, PRUNER_SETTINGS, seeds)
        elif "sweep" in parts:
            bench_sweep(args.data, workdir, {DEFAULT_PRUNER: ()}, seeds)
        if "parallel" in parts:
            bench_parallel(args.data, workdir)


if __name__ == "__main__":
    main()
