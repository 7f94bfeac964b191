"""The pictures the README shows: optuna-dashboard's study page, and a plot of
`python -m pruning_optuna_sweeper report`.

    python scripts/screenshot.py                             # a fresh 20-trial sweep on the bundled sample
    python scripts/screenshot.py --storage URL --study NAME  # an existing study

Without --storage it runs `python main.py -m hydra/sweeper=optuna` on the bundled
sample in a temporary folder. It serves the study with `python -m pruning_optuna_sweeper.dashboard`
on 127.0.0.1, loads the study page in Debian's headless Chromium (selenium through
/usr/bin/chromedriver: nothing is downloaded), waits for the plots and saves the
screenshot; then writes the study's report and copies its intermediate-values PNG.
Needs chromium and chromium-driver (apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Talk to 127.0.0.1 directly, whatever http_proxy the environment sets.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
WAIT_S = 120


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n", 1)[0].split()))
    parser.add_argument("--storage", help="a study storage URL (default: a fresh sweep's)")
    parser.add_argument("--study", default="linearnet-mnist-sample", help="the study (default: %(default)s)")
    parser.add_argument("--out", default=str(ROOT / "docs/images/dashboard.png"), help="default: %(default)s")
    parser.add_argument(
        "--report-png", default=str(ROOT / "docs/images/report-intermediate.png"), help="default: %(default)s"
    )
    parser.add_argument("--trials", type=int, default=20, help="a fresh sweep's size (default: %(default)s)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        sys.exit(f"error: {', '.join(missing)} missing; apt-get install chromium chromium-driver")
    with tempfile.TemporaryDirectory(prefix="screenshot-") as scratch:
        workdir = Path(scratch)
        storage = args.storage or sweep(workdir, args.trials)
        dashboard, port = serve(storage, workdir)
        try:
            shoot(port, args.study, Path(args.out))
        finally:
            dashboard.terminate()
            dashboard.wait(timeout=30)
        report_png(storage, args.study, workdir / "report", Path(args.report_png))


def sweep(workdir: Path, trials: int) -> str:
    """A sweep of the app's defaults on the bundled sample, into `workdir`'s own SQLite study."""
    storage = f"sqlite:///{workdir / 'study.db'}"
    command = [
        sys.executable,
        str(ROOT / "main.py"),
        "-m",
        "hydra/sweeper=optuna",
        f"hydra.sweeper.n_trials={trials}",
        f"storage={storage}",
        f"paths.data={ROOT / 'data/sample'}",
        "data.download=false",
        "progress=false",
    ]
    print(f"sweeping {trials} trials on the bundled sample in {workdir}", flush=True)
    subprocess.run(command, cwd=workdir, check=True, stdout=subprocess.DEVNULL)
    return storage


def serve(storage: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`python -m pruning_optuna_sweeper.dashboard` on a free 127.0.0.1 port, once its API answers;
    the process and port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = workdir / "dashboard.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pruning_optuna_sweeper.dashboard", storage, "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + WAIT_S
    while api(port, "/api/meta") is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            sys.exit(f"error: the dashboard did not start; its log:\n{log.read_text()}")
        time.sleep(0.2)
    return process, port


def api(port: int, route: str) -> dict | None:
    """The JSON the dashboard serves at `route`, or None while it does not answer yet."""
    try:
        with HTTP.open(f"http://127.0.0.1:{port}{route}", timeout=10) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def shoot(port: int, study: str, out: Path) -> None:
    """The study page, once its history plot shows every finished trial, saved as `out`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    studies = (api(port, "/api/studies") or {}).get("study_summaries", [])
    ids = [s["study_id"] for s in studies if s["study_name"] == study]
    if not ids:
        present = ", ".join(s["study_name"] for s in studies) or "none"
        sys.exit(f"error: no study {study!r} in the storage; studies present: {present}")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(f"http://127.0.0.1:{port}/dashboard/studies/{ids[0]}")
        WebDriverWait(driver, WAIT_S).until(
            lambda d: (
                "History" in d.find_element(By.TAG_NAME, "body").text
                and d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .scatterlayer .point")
            )
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")


def report_png(storage: str, study: str, folder: Path, out: Path) -> None:
    """`python -m pruning_optuna_sweeper report`'s intermediate-values PNG (every trial's curve,
    pruned too), as `out`."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pruning_optuna_sweeper",
            "--storage",
            storage,
            "report",
            study,
            "--out",
            str(folder),
        ],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / "intermediate.png", out)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main(sys.argv[1:])
