"""Every trial keeps its trained model as an Optuna artifact: listed, downloaded, served by the
dashboard, evaluated again (best_of_model=true), copied out (python -m pruning_optuna_sweeper model)."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from ds.config import ConfigError, validate
from pruning_optuna_sweeper.artifacts import MODEL_ARTIFACT_ATTR
from pruning_optuna_sweeper.trial import ARTIFACT_STORE_ATTR
from tests.cli import epoch_lines, offline_args, run_cli, run_main
from tests.dashboard import SWEEPS_DASHBOARD, dashboard
from tests.sweep_helpers import load, run_sweep, sqlite_url
from tests.test_config import composed

STUDY = "linearnet-mnist-sample"
# The bar at epoch 1 that a 2-epoch trial misses (so it is pruned there), set by 2 trials without models.
BAR = {1: 0.99}


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sweep on the sample into the default store beside its SQLite study: trial 2 or 3 runs its
    1 epoch (COMPLETE), the other is PRUNED after epoch 1 of 2; trials 0 and 1, added first with a
    higher first epoch and a value of 0, have no model."""
    workdir = tmp_path_factory.mktemp("stored")
    study = optuna.create_study(study_name=STUDY, storage=sqlite_url(workdir), direction="maximize")
    for _ in range(2):
        study.add_trial(create_trial(value=0.0, intermediate_values=BAR))
    swept = run_sweep(
        workdir,
        "hydra/sweeper/sampler=grid",
        "params.epoch_count=choice(1, 2)",  # both, one each: a last epoch is never pruned
        "params.lr=0.003",
        "params.batch_size=64",
        "hydra.sweeper.pruner.n_startup_trials=2",
        n_trials=2,
    )
    assert swept.returncode == 0, swept.stderr
    states = {t.params["params.epoch_count"]: t.state for t in load(workdir).get_trials()[2:]}
    assert states == {1: TrialState.COMPLETE, 2: TrialState.PRUNED}
    return workdir


def store_folder(workdir: Path) -> Path:
    return workdir / "study-artifacts"


@pytest.mark.slow
def test_every_trial_keeps_its_model_and_the_file_evaluates_to_its_recorded_accuracy(
    stored: Path, tmp_path: Path
) -> None:
    study = load(stored)
    storage = optuna.storages.RDBStorage(sqlite_url(stored))
    store = optuna.artifacts.FileSystemArtifactStore(str(store_folder(stored)))
    without, trained = study.get_trials()[:2], study.get_trials()[2:]
    for trial in without:
        assert MODEL_ARTIFACT_ATTR not in trial.user_attrs
        assert optuna.artifacts.get_all_artifact_meta(trial, storage=storage) == []
    downloaded = {}
    for trial in trained:  # the pruned trial too: the model it reached
        artifact_id = trial.user_attrs[MODEL_ARTIFACT_ATTR]
        [meta] = optuna.artifacts.get_all_artifact_meta(trial, storage=storage)
        assert (meta.artifact_id, meta.filename) == (artifact_id, "model.pt")
        assert trial.user_attrs[ARTIFACT_STORE_ATTR] == {"folder": str(store_folder(stored))}
        path = tmp_path / f"trial-{trial.number}.pt"
        optuna.artifacts.download_artifact(artifact_store=store, file_path=str(path), artifact_id=artifact_id)
        downloaded[trial.state] = (trial, path)

    complete, path = downloaded[TrialState.COMPLETE]
    evaluated = run_main([f"evaluate={path}", *offline_args(tmp_path)], tmp_path)

    assert evaluated.returncode == 0, evaluated.stderr
    assert complete.value == complete.user_attrs["test_accuracy"]
    assert f"Test Accuracy: {complete.user_attrs['test_accuracy']:.4f}" in evaluated.stdout
    assert epoch_lines(evaluated.stdout) == []  # evaluated, not trained
    pruned, path = downloaded[TrialState.PRUNED]
    assert pruned.user_attrs["epochs_trained"] == 1
    assert path.read_bytes() != downloaded[TrialState.COMPLETE][1].read_bytes()  # each trial its own model


@pytest.mark.slow
def test_the_dashboard_lists_each_trial_s_model_and_serves_its_bytes(stored: Path, tmp_path: Path) -> None:
    trials = load(stored).get_trials()

    with dashboard(sqlite_url(stored), tmp_path, SWEEPS_DASHBOARD) as server:
        study_id = server.study_id(STUDY)
        detail = server.get(f"/api/studies/{study_id}")
        served = {t["number"]: t for t in detail["trials"]}
        routes = {
            t.number: (
                f"/artifacts/{study_id}/{served[t.number]['trial_id']}/{t.user_attrs[MODEL_ARTIFACT_ATTR]}"
            )
            for t in trials[2:]
        }
        bodies = {number: server.get_bytes(route) for number, route in routes.items()}

    assert [served[t.number]["artifacts"] for t in trials[:2]] == [[], []]
    for trial in trials[2:]:
        [listed] = served[trial.number]["artifacts"]
        artifact_id = trial.user_attrs[MODEL_ARTIFACT_ATTR]
        assert (listed["artifact_id"], listed["filename"]) == (artifact_id, "model.pt")
        assert bodies[trial.number] == (store_folder(stored) / artifact_id).read_bytes()


@pytest.mark.slow
def test_best_of_model_evaluates_the_best_trial_s_stored_model_without_training(
    stored: Path, tmp_path: Path
) -> None:
    best = load(stored).best_trial
    args = [
        *offline_args(tmp_path),
        f"best_of={STUDY}",
        "best_of_model=true",
        f"storage={sqlite_url(stored)}",
    ]

    result = run_main(
        [*args, "hydra.run.dir=best", "optimizer=sgd"], tmp_path
    )  # the model's own config is used

    assert result.returncode == 0, result.stderr
    assert epoch_lines(result.stdout) == []
    said = f"best_of={STUDY}: trial {best.number} of {sqlite_url(stored)} (value {best.value:.4f})"
    assert said in result.stdout
    assert f"Test Accuracy: {best.value:.4f}" in result.stdout
    copied = tmp_path / "best" / "model.pt"
    assert copied.read_bytes() == (store_folder(stored) / best.user_attrs[MODEL_ARTIFACT_ATTR]).read_bytes()


@pytest.mark.slow
def test_sweeps_model_copies_the_best_or_a_chosen_trial_s_file_and_overwrites_nothing(
    stored: Path, tmp_path: Path
) -> None:
    study = load(stored)
    best, pruned = study.best_trial, study.get_trials(states=(TrialState.PRUNED,))[0]
    storage = ["--storage", sqlite_url(stored)]
    out = tmp_path / "models" / "best.pt"

    copied = run_cli(*storage, "model", STUDY, "--out", str(out), cwd=tmp_path)
    again = run_cli(*storage, "model", STUDY, "--out", str(out), "--trial", str(pruned.number), cwd=tmp_path)
    of_pruned = run_cli(
        *storage, "model", STUDY, "--out", str(tmp_path / "p.pt"), "--trial", str(pruned.number), cwd=tmp_path
    )
    modelless = run_cli(
        *storage, "model", STUDY, "--out", str(tmp_path / "0.pt"), "--trial", "0", cwd=tmp_path
    )

    stored_bytes = {
        t.number: (store_folder(stored) / t.user_attrs[MODEL_ARTIFACT_ATTR]).read_bytes()
        for t in (best, pruned)
    }
    assert copied.returncode == 0, copied.stderr
    assert (
        f"wrote {out}: trial {best.number}'s model_artifact (COMPLETE, value {best.value:.4f})"
        in copied.stdout
    )
    assert out.read_bytes() == stored_bytes[best.number]
    assert again.returncode == 1
    assert f"error: {out} exists; expected the path of a new file" in again.stderr
    assert out.read_bytes() == stored_bytes[best.number]
    assert of_pruned.returncode == 0 and (tmp_path / "p.pt").read_bytes() == stored_bytes[pruned.number]
    assert modelless.returncode == 1 and not (tmp_path / "0.pt").exists()
    assert (
        f"error: trial 0 of study '{STUDY}' in {sqlite_url(stored)} (COMPLETE) "
        "records no artifact id under user attr "
        "'model_artifact'; it has no artifacts" in modelless.stderr
    )


@pytest.mark.slow
def test_a_study_moved_with_its_store_beside_it_still_gives_its_models(tmp_path: Path) -> None:
    """A trial records its store's absolute folder; moved with the study, the folder beside it is used."""
    url = sqlite_url(tmp_path)  # tmp_path/study.db, whose default store is tmp_path/study-artifacts
    store_folder(tmp_path).mkdir()
    study = optuna.create_study(study_name="moved", storage=url, direction="maximize")
    trial = study.ask()
    (tmp_path / "model.pt").write_bytes(b"weights")
    store = optuna.artifacts.FileSystemArtifactStore(str(store_folder(tmp_path)))
    artifact_id = optuna.artifacts.upload_artifact(
        study_or_trial=trial, file_path=str(tmp_path / "model.pt"), artifact_store=store
    )
    trial.set_user_attr(MODEL_ARTIFACT_ATTR, artifact_id)
    trial.set_user_attr(
        ARTIFACT_STORE_ATTR, {"folder": str(tmp_path / "before-the-move" / "study-artifacts")}
    )
    study.tell(trial, 0.5)

    copied = run_cli("--storage", url, "model", "moved", "--out", str(tmp_path / "best.pt"), cwd=tmp_path)

    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "best.pt").read_bytes() == b"weights"


def recorded_trial(url: str, name: str, **user_attrs: object) -> None:
    """A study whose one COMPLETE trial records `user_attrs` (an artifact id, where its store is)."""
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    study.add_trial(create_trial(value=0.5, user_attrs=user_attrs))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({}, "(COMPLETE) records no artifact id under user attr 'model_artifact'; it has no artifacts"),
        (
            {MODEL_ARTIFACT_ATTR: "0f0f-aa", ARTIFACT_STORE_ATTR: {"folder": "{tmp}/gone"}},
            "were stored in the folder {tmp}/gone, which is gone; expected that folder",
        ),
        (
            {MODEL_ARTIFACT_ATTR: "0f0f-aa", ARTIFACT_STORE_ATTR: {"folder": "{tmp}"}},
            "records artifact 0f0f-aa in the folder {tmp}, which does not hold it",
        ),
        (
            {MODEL_ARTIFACT_ATTR: "../../etc/passwd"},
            "records '../../etc/passwd' as user attr 'model_artifact'",
        ),
        (
            {MODEL_ARTIFACT_ATTR: "0f0f-aa", ARTIFACT_STORE_ATTR: {"config": {"_target_": "os.getcwd"}}},
            "are in the store its config names (os.getcwd), which cannot be opened here",
        ),
    ],
    ids=["no-artifact", "store-gone", "artifact-gone", "a-path-as-id", "untrusted-store-class"],
)
def test_a_trial_s_model_that_cannot_be_fetched_is_one_error_naming_study_and_trial(
    tmp_path: Path, attrs: dict, message: str
) -> None:
    """In-process (`python -m pruning_optuna_sweeper model`); best_of_model=true says the same,
    run for real below."""
    url = sqlite_url(tmp_path)
    shown = {k: in_tmp(v, tmp_path) for k, v in attrs.items()}
    recorded_trial(url, "old", **shown)

    result = run_cli("--storage", url, "model", "old", "--out", str(tmp_path / "m.pt"), cwd=tmp_path)

    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert f"trial 0 of study 'old' in {url}" in result.stderr
    assert message.format(tmp=tmp_path) in result.stderr
    assert not (tmp_path / "m.pt").exists()


def in_tmp(value: object, tmp_path: Path) -> object:
    """`value` with "{tmp}" in a recorded folder replaced by `tmp_path`."""
    if isinstance(value, dict) and "folder" in value:
        return {"folder": value["folder"].format(tmp=tmp_path)}
    return value


@pytest.mark.slow
def test_best_of_model_of_a_trial_without_a_model_says_what_is_expected(tmp_path: Path) -> None:
    recorded_trial(sqlite_url(tmp_path), "before-artifacts")

    url = sqlite_url(tmp_path)
    args = [*offline_args(tmp_path), "best_of=before-artifacts", "best_of_model=true", f"storage={url}"]
    result = run_main(args, tmp_path)

    assert result.returncode == 1
    assert (
        f"error: best_of_model=true: trial 0 of study 'before-artifacts' in {url} (COMPLETE) records "
        "no artifact id under user attr 'model_artifact'" in result.stderr
    )
    assert "; or train it again: best_of=before-artifacts alone" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["best_of_model=true"], "best_of_model=True: expected best_of=<study> with it"),
        (
            ["best_of=s", "best_of_model=true", "evaluate=main.py"],
            "evaluate='main.py': expected no evaluate= with",
        ),
    ],
)
def test_best_of_model_needs_a_study_and_no_other_model(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(composed(overrides))
