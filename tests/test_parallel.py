"""Trials in parallel without a batch barrier: the app's default sweep, 2 at once, on real SQLite studies.

`python main.py -m hydra/sweeper=optuna` runs its trials in the pool launcher's worker
processes, as many at once as `hydra.sweeper.n_jobs` (the app's default: the
cores available); a new trial starts as soon as any ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from hydra_plugins.pruning_optuna_sweeper import config
from tests.cli import MAIN, main_env
from tests.sweep_helpers import load, retry_of, run_sweep, sqlite_url, sweep_args, wait_for

# Each test runs the app or a tool in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow

TWO_AT_ONCE = ["hydra.sweeper.n_jobs=2", "hydra/sweeper/pruner=none"]


def running(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(states=(TrialState.RUNNING,))


CORES = len(os.sched_getaffinity(0))


@pytest.mark.skipif(CORES < 2, reason="trials run at once on two cores or more")
def test_a_new_trial_starts_as_soon_as_one_ends_not_when_its_batch_ends(tmp_path: Path) -> None:
    # The app's default n_jobs (auto: the cores available, at most n_trials). Short and long
    # trials mixed: with a barrier, no trial would start before the longest of its batch ended.
    mixed = ["hydra/sweeper/pruner=none", "params.epoch_count=choice(1, 6)", "params.batch_size=32"]
    result = run_sweep(tmp_path, *mixed, n_trials=6, parallel=True)

    assert result.returncode == 0, result.stderr[-3000:]
    first = next(line for line in result.stdout.splitlines() if "[HYDRA]" in line)
    assert f"Sweeping 6 trials, {min(CORES, 6)} at once (each started as soon as one ends" in first, first
    trials = sorted(load(tmp_path).get_trials(), key=lambda t: t.datetime_start)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    spans = [(t.datetime_start, t.datetime_complete) for t in trials]
    overlapping = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1 :] if b[0] < a[1]]
    assert overlapping, f"no two trials ran at once: {spans}"
    # A trial of the "second batch" started while one of the first two was still running.
    assert any(later[0] < first[1] for first in spans[: min(CORES, 6)] for later in spans[min(CORES, 6) :]), (
        spans
    )


@pytest.mark.skipif(CORES < 2, reason="trials run at once on two cores or more")
def test_the_last_trial_takes_the_first_free_place_not_the_last(tmp_path: Path) -> None:
    # Trial 0 trains ten epochs, trials 1 and 2 one: trial 2 starts when trial 1 ends.
    study = optuna.create_study(
        study_name="linearnet-mnist-sample", storage=sqlite_url(tmp_path), direction="maximize"
    )
    for epochs in (10, 1, 1):
        study.enqueue_trial({"params.lr": 0.001, "params.batch_size": 32, "params.epoch_count": epochs})
    result = run_sweep(tmp_path, *TWO_AT_ONCE, n_trials=3, parallel=True)

    assert result.returncode == 0, result.stderr[-3000:]
    long, short, last = load(tmp_path).get_trials()
    assert [t.state for t in (long, short, last)] == [TrialState.COMPLETE] * 3
    assert len(long.intermediate_values) == 10 and len(last.intermediate_values) == 1
    assert short.datetime_complete <= last.datetime_start < long.datetime_complete, [
        (t.number, t.datetime_start.time(), t.datetime_complete.time()) for t in (long, short, last)
    ]


@pytest.mark.parametrize(
    ("signum", "times"),
    [(signal.SIGINT, 1), (signal.SIGINT, 3), (signal.SIGTERM, 1)],
    ids=["ctrl-c", "ctrl-c-x3", "sigterm"],
)
def test_an_interrupt_stops_every_running_trial_and_one_rerun_resumes_them_all(
    tmp_path: Path, signum: int, times: int
) -> None:
    """Also three Ctrl-C in a row, as fast as they can be sent: one unwinding, no traceback."""
    command = [*TWO_AT_ONCE, "params.epoch_count=10", "params.batch_size=16"]
    sweep = subprocess.Popen(
        [sys.executable, str(MAIN), *sweep_args(tmp_path, *command, n_trials=4, parallel=True)],
        cwd=tmp_path,
        env=main_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:

        def two_with_progress() -> bool:
            if sweep.poll() is not None:
                raise AssertionError(f"the sweep ended first:\n{sweep.communicate()[1][-3000:]}")
            try:
                return len([t for t in running(load(tmp_path)) if t.intermediate_values]) == 2
            except KeyError:  # the study is not there yet
                return False

        wait_for(two_with_progress, timeout=120, what="two running trials that reported an epoch")
        if signum == signal.SIGINT:
            for _ in range(times):
                os.killpg(sweep.pid, signal.SIGINT)  # Ctrl-C reaches the sweep and its workers
        else:
            sweep.send_signal(signal.SIGTERM)  # `kill`: the sweep alone
        stdout, stderr = sweep.communicate(timeout=60)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait(timeout=10)

    assert sweep.returncode == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr and "Sweep interrupted: trial" in stdout + stderr
    interrupted = load(tmp_path).get_trials()
    assert TrialState.RUNNING not in [t.state for t in interrupted]
    failed = [t for t in interrupted if t.state == TrialState.FAIL]
    queued = [t for t in interrupted if t.state == TrialState.WAITING]
    assert len(failed) == 2 and all(t.user_attrs["fail_reason"] == "interrupted" for t in failed)
    assert sorted(retry_of(t) for t in queued) == sorted(t.number for t in failed)  # each once

    resumed = subprocess.run(
        [sys.executable, str(MAIN),
         *sweep_args(tmp_path, *TWO_AT_ONCE, "params.epoch_count=1", n_trials=2, parallel=True)],
        cwd=tmp_path, env=main_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = load(tmp_path).get_trials()
    retried = [t for t in after if retry_of(t) in {t.number for t in failed}]
    assert len(retried) == 2 and all(t.state == TrialState.COMPLETE for t in retried)
    lr = {f.number: f.params["params.lr"] for f in failed}  # its queued lr; the rest is this command's
    assert all(r.params["params.lr"] == lr[retry_of(r)] for r in retried)
    assert not [t for t in after if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_a_total_budget_is_exact_with_two_commands_of_two_trials_at_once(tmp_path: Path) -> None:
    budget = ["hydra.sweeper.total_trials=6", *TWO_AT_ONCE, "params.epoch_count=choice(1, 2)"]
    commands = [
        subprocess.Popen(
            [
                sys.executable,
                str(MAIN),
                *sweep_args(
                    tmp_path / f"w{i}", *budget, f"storage={sqlite_url(tmp_path)}", n_trials=6, parallel=True
                ),
            ],
            cwd=tmp_path,
            env=main_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [c.communicate(timeout=300) for c in commands]

    assert [c.returncode for c in commands] == [0, 0], "\n".join(err[-2000:] for _, err in outputs)
    trials = load(tmp_path).get_trials()
    counted = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 6, [(t.number, t.state, t.user_attrs.get("fail_reason")) for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert all(
        t.user_attrs["fail_reason"].startswith("over budget") for t in trials if t.state == TrialState.FAIL
    )


def test_one_at_a_time_the_default_sweep_is_reproducible_trial_for_trial(tmp_path: Path) -> None:
    """n_jobs=1 through the app's own launcher: the same seed gives the same trials, values included."""
    runs = []
    for name in ("first", "second"):
        folder = tmp_path / name
        folder.mkdir()
        args = [
            "hydra.sweeper.n_jobs=1",
            "params.epoch_count=choice(1, 2)",
            "params.batch_size=choice(256, 512)",
        ]
        result = run_sweep(folder, *args, n_trials=3, parallel=True)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Sweeping 3 trials, 1 at once" in result.stdout
        runs.append([(t.number, t.state, t.params, t.values) for t in load(folder).get_trials()])
    assert runs[0] == runs[1] and len(runs[0]) == 3


def test_each_pool_worker_imports_the_preload_modules_once_before_the_first_trial(tmp_path: Path) -> None:
    """hydra.launcher.preload: imported by every worker as it starts (the app's: ds.warmup), and the
    first trial is asked for once all have, so that no trial's recorded time holds a worker's start."""
    marker = "import os, time\ntime.sleep(3)  # a heavy import\nwith open('imported-by', 'a') as f:\n"
    marker += "    f.write(f'{os.getpid()} {time.time()}\\n')\n"
    (tmp_path / "marker.py").write_text(marker)
    preload = "hydra.launcher.preload=[marker,no_such_module]"
    result = run_sweep(
        tmp_path,
        "params.epoch_count=1",
        *TWO_AT_ONCE,
        preload,
        n_trials=4,
        parallel=True,
        PYTHONPATH=str(tmp_path),
    )

    assert result.returncode == 0, result.stderr
    trials = load(tmp_path).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    imports = [line.split() for line in (tmp_path / "imported-by").read_text().splitlines()]
    assert len(imports) == len({pid for pid, _ in imports}) == 2  # each worker once, not each trial
    all_imported = max(float(at) for _, at in imports)
    assert min(t.datetime_start.timestamp() for t in trials) >= all_imported
    assert "hydra.launcher.preload: could not import no_such_module" in result.stdout + result.stderr


def test_a_worker_that_dies_importing_the_preload_stops_the_sweep_with_one_error(tmp_path: Path) -> None:
    (tmp_path / "crashing.py").write_text("import os\nos._exit(3)  # as a crash in native code would\n")
    result = run_sweep(
        tmp_path,
        *TWO_AT_ONCE,
        "hydra.launcher.preload=[crashing]",
        n_trials=4,
        parallel=True,
        PYTHONPATH=str(tmp_path),
    )

    assert result.returncode == 1, result.stderr[-3000:]
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "hydra/launcher=trials could not start: a worker process ended while importing" in error
    assert "['crashing']" in error and "Traceback" not in result.stderr
    # The crash ends the pool as it starts or while the sweep waits for it: no trial is asked either way.
    studies = optuna.study.get_all_study_names(storage=sqlite_url(tmp_path))
    assert all(not load(tmp_path, name).get_trials() for name in studies)


def test_n_jobs_over_n_trials_starts_only_as_many_workers_as_trials(tmp_path: Path) -> None:
    result = run_sweep(tmp_path, "hydra.sweeper.n_jobs=8", "params.epoch_count=1", n_trials=2, parallel=True)

    assert result.returncode == 0, result.stderr
    assert "Sweeping 2 trials, 2 at once" in result.stdout + result.stderr
    config.register()  # the resolver that gives the pool launcher its worker count
    assert OmegaConf.create({"workers": "${pruning_optuna.n_jobs:8,2}"}).workers == 2
    assert [t.state for t in load(tmp_path).get_trials()] == [TrialState.COMPLETE] * 2
