"""A Hydra launcher whose worker processes are forked once and keep the sweep's state.

Hydra's joblib launcher sends Hydra's state (the config store, the context,
the task function) with every job, and each worker unpickles it, for trials
that may train for a second (benchmarks/results.md, part `parallel`, compares
the two). Here the workers are forked when the launcher is set up, before the
sweep starts any thread or connects to its study, and inherit that state: a job
sends its overrides and its number, and returns its JobReturn. Several
threads may launch at once (the sweeper's async mode does). Linux and other
systems with fork only.

`preload` names modules each worker imports as soon as it starts, while the
sweep still sets up: the task's heavy imports (torch) are then done before the
first trial instead of inside it. The sweeper asks for its first trials once
`wait_until_ready` returns, so that a trial's recorded time is its own.

    hydra/launcher=pool hydra.launcher.n_jobs=2 'hydra.launcher.preload=[torch]'

Workers share the cores: each limits its libraries' intra-op threads to its share
(`threads_per_worker: auto`, the cores this process may use divided by n_jobs, at least one),
as Hydra's joblib launcher does. The OpenMP, MKL and OpenBLAS variables are set as a worker
starts, before the task imports those libraries (a variable the user exported is kept), and
torch's own setting too where torch is loaded already (imported by the sweep's process before
the fork). Without it each of N workers starts as many threads as there are cores, and they
crowd each other out. A number sets every library to that many; null leaves them as they are.
"""

# No `from __future__ import annotations` in a plugin module with a dataclass: Hydra 1.3 scans it
# outside sys.modules, where a dataclass with string annotations fails (tests/test_compat.py).
import contextlib
import importlib
import io
import logging
import multiprocessing
import os
import pickle
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from pruning_optuna_sweeper.compat import store_config

log = logging.getLogger(__name__)


@dataclass
class PoolLauncherConf:
    _target_: str = "hydra_plugins.pruning_optuna_sweeper.pool_launcher.PoolLauncher"
    # Worker processes; -1: the cores this process may use.
    n_jobs: int = -1
    # Modules each worker imports when it starts, before its first job (the task's heavy ones).
    preload: list[str] = field(default_factory=list)
    # Intra-op threads (OpenMP, MKL, OpenBLAS, torch) per worker. auto: the cores this process
    # may use, shared among the n_jobs workers (at least 1); a number: that many; null: left as they are.
    threads_per_worker: Any = "auto"


store_config(group="hydra/launcher", name="pool", node=PoolLauncherConf, provider="pruning_optuna_sweeper")

# After this long, the sweep says that it waits for its workers' preload.
SLOW_PRELOAD_S = 20.0
# What a forked worker runs its jobs with: set in the sweep process just before the fork.
_STATE: dict[str, Any] = {}
# The intra-op thread pools' settings a worker limits (threads_per_worker).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Set in a worker once it has imported `preload`.
_PRELOADED = threading.Event()


class PoolLauncher(Launcher):
    def __init__(
        self, n_jobs: int = -1, preload: Sequence[str] = (), threads_per_worker: Any = "auto"
    ) -> None:
        self.n_jobs = len(os.sched_getaffinity(0)) if n_jobs in (-1, None) else int(n_jobs)
        self.preload = [str(name) for name in preload or ()]
        self.threads = worker_threads(threads_per_worker, self.n_jobs)
        self.threads_set = threads_per_worker != "auto"  # a number set explicitly wins over the environment
        self.config: DictConfig | None = None
        self.pool: ProcessPoolExecutor | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        if "fork" not in multiprocessing.get_all_start_methods():
            raise RuntimeError("hydra/launcher=pool forks its workers, which this system cannot; use joblib")
        self.config = config
        context = multiprocessing.get_context("fork")
        ready = context.Barrier(self.n_jobs)  # shared with the workers by the fork, as it must be
        _STATE.update(hydra_context=hydra_context, task_function=task_function, config=config, ready=ready)
        self.pool = ProcessPoolExecutor(
            max_workers=self.n_jobs,
            mp_context=context,
            initializer=_start_worker,
            initargs=(os.getpid(), self.preload, self.threads, self.threads_set),
        )
        try:
            self.pool.submit(os.getpid).result()  # forks every worker now, before any thread of the sweep
        except BrokenProcessPool:
            raise self._preload_died() from None

    def wait_until_ready(self) -> None:
        """Return once every worker has imported `preload`; a worker that died meanwhile is an error."""
        assert self.pool is not None, "setup() first"
        try:
            # Each task holds its worker at the barrier until all are there: one task per worker.
            # A worker that died already breaks the pool at submit: that is the same error.
            futures = [self.pool.submit(_ready) for _ in range(self.n_jobs)]
            if wait(futures, timeout=SLOW_PRELOAD_S).not_done:
                log.info(
                    "Waiting for the %d pool workers to import hydra.launcher.preload=%s",
                    self.n_jobs,
                    self.preload,
                )
            for future in futures:
                future.result()
        except BrokenProcessPool:
            raise self._preload_died() from None

    def _preload_died(self) -> RuntimeError:
        return RuntimeError(
            f"a worker process ended while importing hydra.launcher.preload={self.preload} (killed, or "
            "a crash in a module's native code); expected modules that import in a fresh process "
            "(python -c 'import <module>' shows the crash)"
        )

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.pool is not None and self.config is not None, "setup() first"
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        futures = [
            self.pool.submit(_run_one, list(overrides), initial_job_idx + i)
            for i, overrides in enumerate(job_overrides)
        ]
        return [future.result() for future in futures]


def worker_threads(setting: Any, n_jobs: int) -> int | None:
    """The intra-op threads each of `n_jobs` workers may use (`threads_per_worker`); None: unlimited."""
    if setting is None:
        return None
    if setting == "auto":
        return max(1, len(os.sched_getaffinity(0)) // max(1, n_jobs))
    if isinstance(setting, int) and not isinstance(setting, bool) and setting > 0:
        return setting
    raise ValueError(
        f"hydra.launcher.threads_per_worker={setting!r}; expected auto (the cores shared among the "
        "workers), a positive number of threads, or null (the libraries' own defaults)"
    )


def limit_threads(threads: int, explicit: bool) -> None:
    """Limit this process's OpenMP, MKL and OpenBLAS pools, and torch's where it is loaded, to
    `threads`; unless `explicit`, a variable already in the environment (the user's) is kept."""
    for variable in THREAD_VARIABLES:
        if explicit or variable not in os.environ:
            os.environ[variable] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        kept = os.environ["OMP_NUM_THREADS"]
        torch.set_num_threads(int(kept) if kept.isdigit() and int(kept) > 0 else threads)


def _start_worker(parent: int, preload: list[str], threads: int | None, explicit: bool) -> None:
    """A worker whose sweep was killed outright (SIGKILL) ends too, instead of waiting for jobs
    forever; it limits its threads to its share of the cores, then imports `preload` in the
    background (a job importing the same waits for it)."""
    if threads is not None:
        limit_threads(threads, explicit)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    def import_preload() -> None:
        try:
            for name in preload:
                try:
                    importlib.import_module(name)
                except Exception as error:  # the job's own import says it again, where it matters
                    log.warning("hydra.launcher.preload: could not import %s: %s", name, error)
        finally:
            _PRELOADED.set()

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()
    threading.Thread(target=import_preload, name="preload", daemon=True).start()


def _ready() -> None:
    _PRELOADED.wait()
    _STATE["ready"].wait()


def _run_one(overrides: list[str], idx: int) -> JobReturn:
    """A job in a worker, as Hydra's own launchers run one, once the worker's preload is done
    (a job that forks while another thread holds an import lock would leave its child stuck)."""
    _PRELOADED.wait()
    setup_globals()
    hydra_context, config = _STATE["hydra_context"], _STATE["config"]
    sweep_config = hydra_context.config_loader.load_sweep_config(config, overrides)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    ret = run_job(
        hydra_context=hydra_context,
        config=sweep_config,
        task_function=_STATE["task_function"],
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    try:
        pickle.dumps(ret)
    except Exception:  # the task's exception does not pickle: its type and message do
        error = _failure(ret)
        ret.return_value = RuntimeError(f"{type(error).__name__}: {error}")
    return ret


def _failure(ret: JobReturn) -> BaseException:
    """The exception a failed job raised (its return_value raises it, after a line on stderr)."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            _ = ret.return_value  # read only for the exception it raises
    except BaseException as error:
        return error
    return RuntimeError("the job's result does not pickle")
