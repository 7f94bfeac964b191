"""ds.cli: main.py's command line read as Hydra reads it, without Hydra's private parser."""

from __future__ import annotations

from ds.cli import CommandLine, parse_command_line


def test_overrides_and_mode_are_read_between_hydra_s_options() -> None:
    argv = [
        "-cn",
        "config",
        "params.lr=0.1",
        "-m",
        "--config-dir",
        "/x",
        "storage=a b",
        "-p",
        "params",
        "seed=1",
    ]
    assert parse_command_line(argv) == CommandLine(["params.lr=0.1", "storage=a b", "seed=1"], True, True)
    assert parse_command_line(["--cfg", "job", "seed=1"]) == CommandLine(["seed=1"], False, False)
    assert parse_command_line(["seed=1", "--info"]) == CommandLine(["seed=1"], False, False)
    assert parse_command_line(["--hydra-help"]).runs_jobs is False
    assert parse_command_line(["--cfg", "bogus"]) is None  # Hydra answers it with its usage message
