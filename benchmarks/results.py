"""The benchmark's figures: printed as each part ends, and written to a results file.

Each run adds one dated section (machine, versions, then a markdown table per
part) to the results file, newest first under the file's header, so
benchmarks/results.md is the record the README links to.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = ROOT / "benchmarks" / "results.md"
HEADER = """# Benchmark results

Written by `python benchmarks/bench.py` (`make bench`): one section per run,
newest first. Figures in one section come from one run on one machine; a
ratio compares runs made side by side in it. `benchmarks/bench.py --help`
says what each part measures.
"""


@dataclass
class Row:
    what: str
    measured: str
    target: str = ""
    met: bool | None = None  # None: no target


@dataclass
class Part:
    title: str
    note: str = ""
    rows: list[Row] = field(default_factory=list)

    def row(self, what: str, measured: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(what, measured, target, met))

    def check(self, what: str, measured: str, target: str, met: bool) -> None:
        self.row(what, measured, target, bool(met))


def verdict(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "**not met**")


class Results:
    """The parts measured in this run, in order; `write` adds them to the results file."""

    def __init__(self, path: Path, machine: dict[str, str]) -> None:
        self.path = path
        self.machine = machine
        self.started = datetime.datetime.now().astimezone()
        self.parts: list[Part] = []
        self.failed: list[str] = []
        self.load_start = _load()

    def part(self, title: str, note: str = "") -> Part:
        part = Part(title, note)
        self.parts.append(part)
        return part

    def show(self, part: Part) -> None:
        """Print a part's figures (after the part has run)."""
        print(f"{part.title}:" + (f" ({part.note})" if part.note else ""))
        width = max((len(r.what) for r in part.rows), default=0)
        for r in part.rows:
            target = f"   [target {r.target}: {'met' if r.met else 'NOT MET'}]" if r.met is not None else ""
            print(f"  {r.what:{width}s}  {r.measured}{target}")
        print(flush=True)

    def markdown(self) -> str:
        when = self.started.isoformat(timespec="seconds")
        lines = [f"## {when}", ""]
        lines += [f"- {key}: {value}" for key, value in self.machine.items()]
        lines.append(f"- load average (1 min) at the start / end: {self.load_start} / {_load()}")
        if self.failed:
            lines.append(f"- **failed parts** (no figures): {', '.join(self.failed)}")
        for part in self.parts:
            lines += ["", f"### {part.title}", ""]
            if part.note:
                lines += [part.note, ""]
            with_targets = any(r.met is not None for r in part.rows)
            lines.append("| what | measured |" + (" target | |" if with_targets else ""))
            lines.append("| --- | --- |" + (" --- | --- |" if with_targets else ""))
            for r in part.rows:
                cells = [_cell(r.what), _cell(r.measured)]
                if with_targets:
                    cells += [_cell(r.target), verdict(r.met)]
                lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        """Insert this run's section under the file's header (created if missing): newest first."""
        old = self.path.read_text() if self.path.is_file() else HEADER
        head, sep, rest = old.partition("\n## ")
        section = self.markdown()
        text = head.rstrip("\n") + "\n\n" + section + (("\n## " + rest) if sep else "")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(text)
        print(f"figures written to {self.path}")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def machine(device: str) -> dict[str, str]:
    """What the figures were measured on."""
    import hydra
    import optuna
    import torch

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or "unknown"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    commit, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    return {
        "machine": f"{model}, {os.cpu_count()} cores ({usable} usable by this process), "
        f"{platform.system()} {platform.release()}",
        "software": f"Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} default threads), optuna {optuna.__version__}, "
        f"hydra-core {hydra.__version__}",
        "device": device,
        "code": f"{commit or 'unknown'}{' with uncommitted changes' if dirty else ''}",
    }
