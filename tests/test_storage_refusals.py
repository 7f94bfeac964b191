"""A storage that is not a study is refused before anything is written; one that fails
mid-sweep (a full disk) ends the sweep with its real cause and no trial left RUNNING.

Sweeps of examples/descent through the installed sweeper; the read-only and full
disks are small tmpfs mounts (root only: skipped elsewhere, with the reason).
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.cli import copy_example, run_example

# Each test runs the app or a tool in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_example(tmp_path_factory.mktemp("app"))


def sweep_into(app: Path, database: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_example(
        app,
        "descent.py",
        "-m",
        "hydra/sweeper=pruning_optuna",
        f"hydra.sweep.dir={app / 'multirun' / database.parent.name}",
        f"hydra.sweeper.storage=sqlite:///{database}",
        "hydra.sweeper.study_name=descent",
        "hydra.sweeper.n_jobs=1",
        "lr=tag(log, interval(1e-5, 1e-3))",
        *extra,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(result: subprocess.CompletedProcess[str], database: Path, cause: str) -> None:
    assert result.returncode != 0
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith(f"error: storage sqlite:///{database}: ") and cause in last, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def another_application_s(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (name TEXT)")
        db.execute("INSERT INTO customers VALUES ('Ada')")


def a_study(path: Path) -> None:
    """A study file of the example's study, closed again."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    optuna.create_study(study_name="descent", storage=storage)
    storage.engine.dispose()


def a_damaged_study(path: Path) -> None:
    a_study(path)
    data = bytearray(path.read_bytes())
    data[4096 : 3 * 4096] = b"\xa5" * (2 * 4096)  # pages 2 and 3: tables of the schema
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (
            another_application_s,
            "is a SQLite database of another application (tables: customers), not an Optuna study",
        ),
        (
            lambda p: p.write_text("name,score\nAda,3\n"),
            "is not a SQLite database (damaged, or another kind of file)",
        ),
        (a_damaged_study, "damaged"),
    ],
    ids=["foreign", "not-sqlite", "damaged"],
)
def test_a_file_that_is_not_a_study_is_refused_and_left_untouched(
    app: Path, tmp_path: Path, make, cause: str
) -> None:
    database = tmp_path / "data.db"
    make(database)
    before = digest(database)

    result = sweep_into(app, database, "hydra.sweeper.n_trials=2")

    refused(result, database, cause)
    assert digest(database) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.db"]  # no journal beside it


def can_mount() -> bool:
    probe = Path("/proc/self/status").read_text()
    return "\nUid:\t0\t" in probe


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@pytest.mark.skipif(not can_mount(), reason="a read-only or full disk is a tmpfs mount, which needs root")
def test_a_read_only_study_is_refused_before_anything_is_written(app: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "2m") as disk:
        database = disk / "study.db"
        a_study(database)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        before = digest(database)

        result = sweep_into(app, database, "hydra.sweeper.n_trials=2")

        refused(result, database, "is read-only")
        assert digest(database) == before


@pytest.mark.skipif(not can_mount(), reason="a read-only or full disk is a tmpfs mount, which needs root")
def test_a_disk_that_fills_mid_sweep_ends_it_with_the_cause_and_no_trial_running(
    app: Path, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "full", "2m") as disk:
        database = disk / "study.db"
        a_study(database)
        free = int(
            subprocess.run(
                ["df", "-k", "--output=avail", str(disk)], capture_output=True, text=True
            ).stdout.split()[-1]
        )
        (disk / "filler").write_bytes(bytes((free - 700) * 1024))  # room for a few trials' reports

        result = sweep_into(
            app, database, "hydra.sweeper.n_trials=400", "steps=100", "hydra/sweeper/pruner=none"
        )

        assert result.returncode != 0 and "Traceback" not in result.stderr
        last = result.stderr.rstrip().splitlines()[-1]
        assert last.startswith(f"error: storage sqlite:///{database} refused a write during the sweep: ")
        assert "database or disk is full" in last, last
        trials = optuna.load_study(study_name="descent", storage=f"sqlite:///{database}").get_trials()
        assert trials and TrialState.RUNNING not in [t.state for t in trials], [t.state for t in trials]
        assert "database or disk is full" in trials[-1].user_attrs["fail_reason"]
