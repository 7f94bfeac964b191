"""ds.cli.OutputFolderCheck: the Hydra callback that refuses an output folder Hydra could not make,
called here on configs Hydra composed from conf/ with real folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate

from tests.test_config import composed


def check(hook: str, overrides: list[str]) -> None:
    """The callback as conf/config.yaml registers it, on the config Hydra composes from `overrides`."""
    config = composed(overrides, with_hydra=True)
    callback = instantiate(
        config.hydra.callbacks.output_folder, _execution_whitelist_=["ds.cli.OutputFolderCheck"]
    )
    getattr(callback, hook)(config=config)


@pytest.mark.parametrize(
    ("hook", "override", "expected"),
    [
        (
            "on_run_start",
            "hydra.run.dir=FILE/${now:%H-%M-%S}",
            "hydra.run.dir='FILE/${now:%H-%M-%S}': expected a writable directory, or a path where one can "
            "be made (FILE: it or a folder above it is a file).",
        ),
        (
            "on_multirun_start",
            "hydra.sweep.dir=FILE/sweep",
            "hydra.sweep.dir='FILE/sweep': expected a writable directory, or a path where one can be made "
            "(it or a folder above it is a file).",
        ),
    ],
)
def test_a_folder_under_a_file_is_one_error(tmp_path: Path, hook: str, override: str, expected: str) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(SystemExit) as refused:
        check(hook, [override.replace("FILE", str(a_file))])
    assert refused.value.code == "error: " + expected.replace("FILE", str(a_file))


def test_a_folder_it_can_make_is_made_up_to_its_first_interpolation(tmp_path: Path) -> None:
    check("on_run_start", [f"hydra.run.dir={tmp_path}/made/${{now:%H-%M-%S}}"])
    assert [p.name for p in tmp_path.iterdir()] == ["made"] and not any((tmp_path / "made").iterdir())


def test_a_run_s_default_folder_is_checked_and_a_sweep_s_left_to_hydra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's folder is made at once (a full disk or a file named `outputs` is refused before any
    work); a sweep's only when its first trial starts, so it is checked only where it is given."""
    monkeypatch.chdir(tmp_path)
    check("on_multirun_start", [])
    assert not list(tmp_path.iterdir())
    check("on_run_start", [])
    assert [p.name for p in tmp_path.iterdir()] == ["outputs"] and not any((tmp_path / "outputs").iterdir())
    (tmp_path / "outputs").rmdir()
    (tmp_path / "outputs").write_text("x")
    with pytest.raises(SystemExit) as refused:
        check("on_run_start", [])
    assert str(refused.value.code).startswith("error: hydra.run.dir='outputs/${now:")
