"""The forecast page's browser harness, shared by the page's test files: Debian's
chromium + chromedriver driven by Selenium, both functions as functions-framework
page_servers on loopback with the session's synthetic models, client keys configured as in
the cloud, and ingested counts for one fixture day (COUNTS_STORE).

The page is opened on `regress` and reaches `classify` through a loopback
`?classify=` (CORS allowed there by ALLOWED_ORIGINS).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

pytest.register_assert_rewrite("tests.function_clients")

from tests.function_clients import ROOT, Server  # noqa: E402,F401  (ROOT: the page tests import it from here)

# Debian's packages by default (make browser); the variables name another pair.
CHROMIUM = Path(os.environ.get("VELOCAST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("VELOCAST_CHROMEDRIVER", "/usr/bin/chromedriver"))

KEY = "page-test-key"
DAY = "2025-05-20"  # a Tuesday: the screenshot stays the same from run to run
COUNTER = "Totem 73 boulevard de Sébastopol S-N"
WAIT = 30
# The fixture day's stored counts for COUNTER (local hours; 13h not published).
MEASURED = [float(10 * h + 3) if h != 13 else None for h in range(24)]


@pytest.fixture(scope="session")
def page_counts_store(tmp_path_factory) -> Path:
    """A data bucket as the daily ingest leaves it (velocast.train.counts.commit)."""
    from velocast.catalog.store import open_store
    from velocast.train import counts

    folder = tmp_path_factory.mktemp("data-bucket")
    start = dt.datetime.fromisoformat(f"{DAY}T00:00:00+02:00")
    rows = [(COUNTER, int((start + dt.timedelta(hours=h)).timestamp()), v, 48.86377, 2.35096)
            for h, v in enumerate(MEASURED) if v is not None]
    counts.commit(open_store(str(folder)), rows, "browser test", {})
    return folder


@pytest.fixture(scope="session")
def page_servers(trained_store, page_counts_store):
    env = {"MODEL_STORE": str(trained_store), "REFRESH_SECONDS": "3600", "API_KEYS": KEY,
           "MAX_RECORDS": "500", "COUNTS_STORE": str(page_counts_store)}
    with page_pair(env) as servers:
        yield servers


@contextlib.contextmanager
def page_pair(env: dict):
    """regress serving the page, classify allowing its origin, as `make serve` runs them."""
    regress = Server("regress", env).spawn()
    classify = Server("classify", {**env, "ALLOWED_ORIGINS": regress.url}).spawn()
    try:
        for server in (regress, classify):
            server.wait_ready(timeout=90)
        yield {"regress": regress, "classify": classify}
    finally:
        for server in (regress, classify):
            server.close()


@pytest.fixture(scope="module")
def empty_regress(tmp_path_factory):
    with Server("regress", {"MODEL_STORE": str(tmp_path_factory.mktemp("empty"))}) as server:
        yield server


@pytest.fixture(scope="session")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # tests/browser/conftest.py has failed the tier already if either is missing.
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-extensions",
                "--no-first-run", "--window-size=1280,1100"):
        options.add_argument(arg)
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def page_url(page_servers, **params) -> str:
    query = "&".join(f"{k}={quote(str(v))}" for k, v in
                     {"classify": page_servers["classify"].url, **params}.items())
    return f"{page_servers['regress'].url}/app?{query}"


def open_page(browser, url: str, key: str | None) -> None:
    """Loads `url` with `key` in sessionStorage (None: no key), console log emptied."""
    origin = url.split("/app", 1)[0]
    browser.get(origin + "/app/forecast.css")  # same origin, so same sessionStorage
    browser.execute_script("sessionStorage.clear();" +
                           (f"sessionStorage.setItem('velocast.apiKey', {json.dumps(key)});"
                            if key else ""))
    browser.get_log("browser")
    browser.get(url)


def wait_for(browser, condition, message: str):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The page redraws its lists and charts: an element found a moment ago may be gone.
    return WebDriverWait(browser, WAIT, ignored_exceptions=[StaleElementReferenceException]) \
        .until(lambda d: condition(d), message)


def status(browser) -> str:
    return browser.find_element("id", "status").get_attribute("data-state")


def wait_ready(browser) -> None:
    wait_for(browser, lambda d: status(d) != "loading", "page still loading")
    assert status(browser) == "ready", browser.find_element("id", "status").text


def marks(browser) -> dict:
    return {m.get_attribute("data-counter"): m
            for m in browser.find_elements("css selector", "#map [data-counter]")}


def predict(server, names, day, key=KEY, where=None) -> dict:
    """What /predict answers for `names` x 24 hours of `day`, with each counter's
    coordinates (where: name -> "lat, lon") when given, as the page sends them."""
    records = [{"nom_du_compteur": n, "date_et_heure_de_comptage": f"{day}T{h:02d}:00:00",
                **({"coordonnées_géographiques": where[n]} if where else {})}
               for n in names for h in range(24)]
    r = requests.post(server.url + "/predict", json={"records": records},
                      headers={"X-API-Key": key}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def counters(page_servers) -> list[dict]:
    r = requests.get(page_servers["regress"].url + "/counters", headers={"X-API-Key": KEY},
                     timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["counters"]


def wait_selected(browser, name: str, day: str) -> None:
    wait_for(browser, lambda d: d.find_element("id", "detail-panel").get_attribute(
        "data-counter") == name and d.find_elements("css selector", "#day-curve") and
        len(d.find_elements("css selector", "#week button[data-date]")) == 7,
        f"{name} not shown")




def coordinates(page_servers) -> dict:
    return {c["name"]: f"{c['latitude']}, {c['longitude']}" for c in counters(page_servers)}


def set_viewport(browser, width: int, height: int) -> None:
    """The layout viewport in CSS px, exactly (a window size includes the browser's own
    frame); mobile=True for phone widths, as a phone's browser lays pages out."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def reset_viewport(browser) -> None:
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
