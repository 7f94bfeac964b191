"""`journal:///<path>` wherever a storage URL is accepted: this app's config (a sweep, best_of), the
CLI, the report and the dashboard command; and the refusals of a file that is not a journal and of
a study of another app.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from tests.cli import copy_example, offline_args, run_cli, run_example, run_main
from tests.dashboard import SWEEPS_DASHBOARD, dashboard
from tests.sweep_helpers import SHORT_EPOCHS

# Each test runs a sweep, the app or a tool in a subprocess: left out of `make test-fast`.
pytestmark = pytest.mark.slow

STUDY = "linearnet-mnist-sample"


def read_journal(path: Path, name: str = STUDY) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path))))


@pytest.fixture(scope="module")
def journal_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app's sweep of 3 trials into a journal, its storage given as the app's `storage` key."""
    workdir = tmp_path_factory.mktemp("journal")
    result = run_main(
        [
            "-m",
            "hydra/sweeper=optuna",
            "hydra/launcher=basic",
            "hydra.sweeper.n_jobs=1",
            "hydra.sweeper.n_trials=3",
            f"storage=journal:///{workdir / 'studies' / 'optuna.log'}",
            SHORT_EPOCHS,
            *offline_args(workdir),
        ],
        workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_the_app_sweeps_into_a_journal_and_trains_with_its_best(journal_sweep: Path) -> None:
    journal = journal_sweep / "studies" / "optuna.log"
    study = read_journal(journal)
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert all(t.intermediate_values for t in trials)
    url = f"journal:///{journal}"
    best = run_main(["best_of=" + STUDY, f"storage={url}", *offline_args(journal_sweep)], journal_sweep)
    assert best.returncode == 0, best.stderr[-3000:]
    assert f"best_of={STUDY}: trial {study.best_trial.number} of {url}" in best.stdout + best.stderr


def test_the_cli_report_and_dashboard_read_a_journal(journal_sweep: Path, tmp_path: Path) -> None:
    journal = journal_sweep / "studies" / "optuna.log"
    url = f"journal:///{journal}"
    study = read_journal(journal)
    shown = run_cli("show", STUDY, "--storage", url, cwd=tmp_path)
    assert shown.returncode == 0 and f"best: trial {study.best_trial.number:3d}" in shown.stdout, shown
    report = run_cli("report", STUDY, "--storage", url, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    # Its default folder is beside the journal, as beside a SQLite study file.
    written = [Path(line.split()[1]) for line in report.stdout.splitlines() if line.startswith("wrote ")]
    assert written and all(p.is_relative_to(journal.parent / "optuna-reports" / STUDY) for p in written)
    with dashboard(url, tmp_path, SWEEPS_DASHBOARD) as server:
        [listed] = server.get("/api/studies")["study_summaries"]
        detail = server.get(f"/api/studies/{listed['study_id']}")
    assert listed["study_name"] == STUDY
    assert sorted(t["number"] for t in detail["trials"]) == [t.number for t in study.get_trials()]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sqlite_study(path: Path) -> None:
    optuna.create_study(study_name="descent", storage=f"sqlite:///{path}")


def another_program_s(path: Path) -> None:
    path.write_text("2026-12-08 a log line of another program\n")


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (sqlite_study, "is a SQLite database (use sqlite:///...)"),
        (another_program_s, "is not an Optuna journal"),
    ],
)
def test_a_file_that_is_not_a_journal_is_refused_and_left_untouched(tmp_path: Path, make, cause: str) -> None:
    app = copy_example(tmp_path / "app")
    target = tmp_path / "data" / "optuna.log"
    target.parent.mkdir()
    make(target)
    before = digest(target)
    result = run_example(
        app,
        "descent.py",
        "-m",
        "hydra/sweeper=pruning_optuna",
        f"hydra.sweeper.storage=journal:///{target}",
        "hydra.sweeper.n_trials=2",
        "lr=tag(log, interval(1e-5, 1e-3))",
    )
    assert result.returncode != 0
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith(f"error: storage journal:///{target}: ") and cause in last, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert digest(target) == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["optuna.log"]  # no lock file left


def test_reading_a_missing_journal_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    result = run_cli("list", "--storage", f"journal:///{tmp_path / 'none' / 'optuna.log'}", cwd=tmp_path)
    assert result.returncode == 1
    assert "there is no journal file" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "none").exists()


def test_a_study_of_another_app_in_a_journal_is_refused(tmp_path: Path) -> None:
    """This app's best_of on a journal study whose trials searched another app's keys: refused."""
    journal = tmp_path / "optuna.log"
    other = optuna.create_study(
        study_name="descent", storage=JournalStorage(JournalFileBackend(str(journal)))
    )
    other.optimize(lambda trial: (1 - trial.suggest_float("lr", 1e-5, 1e-3, log=True)) ** 2, n_trials=2)
    before = digest(journal)
    result = run_main(["best_of=descent", f"storage=journal:///{journal}", *offline_args(tmp_path)], tmp_path)
    assert result.returncode != 0
    assert "expected a study of this app's sweeps" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert digest(journal) == before
    assert not list(tmp_path.glob("outputs/*/*/model.pt"))


def test_a_relative_journal_with_a_folder_per_trial_is_refused(tmp_path: Path) -> None:
    """hydra.job.chdir=true: each trial would open its own, empty journal."""
    app = copy_example(tmp_path / "app")
    result = run_example(
        app,
        "descent.py",
        "-m",
        "hydra/sweeper=pruning_optuna",
        "hydra.sweeper.storage=journal:///studies/optuna.log",
        "hydra.job.chdir=true",
        "lr=tag(log, interval(1e-5, 1e-3))",
    )
    assert result.returncode != 0
    assert "is a relative journal path and hydra.job.chdir=true" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (app / "studies").exists()
