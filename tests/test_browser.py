"""optuna-dashboard on a real sweep's study, loaded in a real (headless) browser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import PAGE_TIMEOUT_S, browser_or_skip, chromium
from tests.dashboard import SWEEPS_DASHBOARD, Dashboard, dashboard
from tests.sweep_helpers import load, sqlite_url

# Each test drives headless Chromium against a real dashboard: left out of `make test-fast`.
pytestmark = [pytest.mark.slow, pytest.mark.browser]

STUDY = "linearnet-mnist-sample"


@pytest.fixture(scope="module")
def served(swept_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dashboard, Any]]:
    """`python -m pruning_optuna_sweeper.dashboard` (it serves the trials' artifacts) on the shared sweep,
    and a browser."""
    browser_or_skip()
    with (
        dashboard(sqlite_url(swept_study), tmp_path_factory.mktemp("browser"), SWEEPS_DASHBOARD) as server,
        chromium() as driver,
    ):
        yield server, driver


def shown(driver: Any, url: str, *texts: str) -> str:
    """Load `url` and wait until the page's text holds every one of `texts`; that text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)

    def holds_all(d: Any) -> str | bool:
        body = d.find_element(By.TAG_NAME, "body").text
        return body if all(t in body for t in texts) else False

    try:
        return WebDriverWait(driver, PAGE_TIMEOUT_S).until(holds_all)
    except Exception:
        body = driver.find_element(By.TAG_NAME, "body").text
        missing = [t for t in texts if t not in body]
        raise AssertionError(
            f"{url} did not show {missing} in {PAGE_TIMEOUT_S} s; it shows:\n{body[:2000]}"
        ) from None


def test_the_study_page_shows_the_objective_and_the_trials(served, swept_study: Path) -> None:
    server, driver = served
    study_id = server.study_id(STUDY)
    base = f"http://127.0.0.1:{server.port}/dashboard/studies/{study_id}"

    page = shown(driver, base, STUDY, "History", "test_accuracy")
    assert "Include PRUNED trials" in page
    trials = load(swept_study).get_trials()
    states = {"COMPLETE": "Complete", "PRUNED": "Pruned", "FAIL": "Fail"}
    page = shown(driver, f"{base}/trials", *(f"Trial {t.number}" for t in trials))
    listed = page[page.index("Trial 0") :].splitlines()
    for t in trials:
        assert listed[listed.index(f"Trial {t.number}") + 1] == states[t.state.name]


def test_a_pruned_trial_shows_its_intermediate_values_and_its_model(served, swept_study: Path) -> None:
    from selenium.webdriver.common.by import By

    server, driver = served
    study_id = server.study_id(STUDY)
    pruned = load(swept_study).trials[2]
    assert pruned.state.name == "PRUNED" and sorted(pruned.intermediate_values) == [1, 2]
    url = f"http://127.0.0.1:{server.port}/dashboard/studies/{study_id}/trials?numbers={pruned.number}"

    heading = f"Trial {pruned.number} (trial_id="
    page = shown(driver, url, heading, "Intermediate Values", "Artifacts", "model.pt")
    detail = page[page.index(heading) :]
    assert detail.splitlines()[1] == "Pruned"
    values = detail[detail.index("Intermediate Values") : detail.index("Parameter")].splitlines()[1:]
    # The browser writes each number as JavaScript does; repr gives the same shortest form.
    assert values == [f"{step} {value!r}" for step, value in sorted(pruned.intermediate_values.items())]
    # Its model: the download link is the trial's recorded artifact, and serves the stored bytes.
    [link] = driver.find_elements(By.CSS_SELECTOR, 'a[download="model.pt"]')
    href = link.get_attribute("href")
    assert href.endswith(f"/{pruned.user_attrs['model_artifact']}")
    stored = swept_study / "study-artifacts" / pruned.user_attrs["model_artifact"]
    assert server.get_bytes(href.removeprefix(f"http://127.0.0.1:{server.port}")) == stored.read_bytes()
