"""The forecast page in a real browser: Debian's chromium + chromedriver driven by
Selenium, against both functions as functions-framework servers on loopback with the
session's synthetic models, and client keys configured as in the cloud.

The page is opened on `regress` and reaches `classify` through a loopback
`?classify=` (CORS allowed there by ALLOWED_ORIGINS). `make screenshot` refreshes
docs/forecast-page.png, the README's screenshot, from the same test; `make test` leaves
the tree clean.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

pytest.register_assert_rewrite("tests.function_clients")

from tests.function_clients import ROOT, Server  # noqa: E402

# Debian's packages by default (make browser); the variables name another pair.
CHROMIUM = Path(os.environ.get("VELOCAST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("VELOCAST_CHROMEDRIVER", "/usr/bin/chromedriver"))

KEY = "page-test-key"
DAY = "2025-05-20"  # a Tuesday: the screenshot stays the same from run to run
COUNTER = "Totem 73 boulevard de Sébastopol S-N"
SCREENSHOT = ROOT / "docs" / "forecast-page.png"   # written when PAGE_SCREENSHOT=docs
WAIT = 30


@pytest.fixture(scope="module")
def servers(trained_store):
    env = {"MODEL_STORE": str(trained_store), "REFRESH_SECONDS": "3600", "API_KEYS": KEY,
           "MAX_RECORDS": "500"}
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


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: `make browser` installs Debian's chromium "
                    "and chromium-driver (.ci/run does it)")
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


def page_url(servers, **params) -> str:
    query = "&".join(f"{k}={quote(str(v))}" for k, v in
                     {"classify": servers["classify"].url, **params}.items())
    return f"{servers['regress'].url}/app?{query}"


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


def predict(server, names, day, key=KEY) -> dict:
    records = [{"nom_du_compteur": n, "date_et_heure_de_comptage": f"{day}T{h:02d}:00:00"}
               for n in names for h in range(24)]
    r = requests.post(server.url + "/predict", json={"records": records},
                      headers={"X-API-Key": key}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def counters(servers) -> list[dict]:
    r = requests.get(servers["regress"].url + "/counters", headers={"X-API-Key": KEY}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["counters"]


def wait_selected(browser, name: str, day: str) -> None:
    wait_for(browser, lambda d: d.find_element("id", "detail-panel").get_attribute(
        "data-counter") == name and d.find_elements("css selector", "#day-curve") and
        len(d.find_elements("css selector", "#week button[data-date]")) == 7,
        f"{name} not shown")


def test_page_loads_without_console_errors_and_marks_every_counter(browser, servers):
    open_page(browser, page_url(servers, date=DAY, hour=8), KEY)
    wait_ready(browser)
    known = {c["name"] for c in counters(servers)}
    shown = marks(browser)
    assert set(shown) == known and len(browser.find_elements(
        "css selector", "#map [data-counter]")) == len(known)
    assert all(m.get_attribute("data-value") for m in shown.values())
    assert browser.find_elements("css selector", "#legend .swatch")
    wait_for(browser, lambda d: len(d.find_elements("css selector", "#models tbody tr")) >= 4,
             "model panel empty")
    panel = browser.find_element("id", "models").text
    assert "served" in panel and "affluence" in panel and "rmse_log" in panel
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_selected_counter_curve_equals_predict_with_busy_hours(browser, servers, tmp_path):
    open_page(browser, page_url(servers, date=DAY, hour=8), KEY)
    wait_ready(browser)
    marks(browser)[COUNTER].click()
    wait_selected(browser, COUNTER, DAY)
    curve = json.loads(browser.find_element("id", "day-curve").get_attribute("data-values"))
    assert curve == predict(servers["regress"], [COUNTER], DAY)["predictions"]
    busy = predict(servers["classify"], [COUNTER], DAY)["predictions"]
    points = browser.find_elements("css selector", "#day-points circle")
    assert [int(p.get_attribute("data-busy")) for p in points] == busy
    shaded = {int(r.get_attribute("data-hour"))
              for r in browser.find_elements("css selector", "#busy-hours rect")}
    assert shaded == {h for h, b in enumerate(busy) if b == 1} and shaded
    usual = json.loads(browser.find_element("id", "usual-curve").get_attribute("data-values"))
    card = next(c for c in counters(servers) if c["name"] == COUNTER)
    assert usual == card["usual"][0]  # a Tuesday: the working-day profile
    # The regress answers carry the 80 % interval: the band is drawn from it.
    answer = predict(servers["regress"], [COUNTER], DAY)
    band = browser.find_element("id", "band")
    assert json.loads(band.get_attribute("data-lower")) == answer["lower"]
    assert json.loads(band.get_attribute("data-upper")) == answer["upper"]
    week = browser.find_elements("css selector", "#week button")
    assert [b.get_attribute("data-date") for b in week][0] == "2025-05-21"
    week_values = json.loads(week[6].get_attribute("data-values"))
    assert week_values == predict(servers["regress"], [COUNTER], "2025-05-27")["predictions"]
    shot = SCREENSHOT if os.environ.get("PAGE_SCREENSHOT") == "docs" else tmp_path / "page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_changing_the_hour_recolours_the_marks(browser, servers):
    from selenium.webdriver.common.keys import Keys

    open_page(browser, page_url(servers, date=DAY, hour=8), KEY)
    wait_ready(browser)

    def fills():
        return {n: m.find_element("css selector", "circle").get_attribute("fill")
                for n, m in marks(browser).items()}

    at_eight = fills()
    slider = browser.find_element("id", "hour")
    slider.send_keys(Keys.HOME)  # hour 0, then up to 3 by keyboard
    for _ in range(3):
        slider.send_keys(Keys.ARROW_RIGHT)
    assert browser.find_element("id", "hour-value").text == "03:00"
    at_three = fills()
    assert at_three != at_eight
    names = sorted(at_three)
    night = predict(servers["regress"], names, DAY)["predictions"]
    shown = {n: float(m.get_attribute("data-value")) for n, m in marks(browser).items()}
    assert shown == {n: night[i * 24 + 3] for i, n in enumerate(names)}
    browser.find_element("css selector", 'input[name="mode"][value="busy"]').click()
    busy = predict(servers["classify"], names, DAY)["predictions"]
    assert {n: m.get_attribute("data-busy") for n, m in marks(browser).items()} == \
        {n: str(busy[i * 24 + 3]) for i, n in enumerate(names)}
    assert "busy" in browser.find_element("id", "legend").text


def test_wrong_key_shows_the_key_prompt_and_a_right_key_loads(browser, servers):
    open_page(browser, page_url(servers, date=DAY), "not-the-key")
    wait_for(browser, lambda d: status(d) == "auth", "no key prompt")
    form = browser.find_element("id", "key-form")
    assert form.is_displayed() and "403" in form.text
    assert browser.switch_to.active_element.get_attribute("id") == "api-key"
    browser.switch_to.active_element.send_keys(KEY + "\n")
    wait_ready(browser)
    assert not form.is_displayed() and marks(browser)
    assert browser.execute_script("return sessionStorage.getItem('velocast.apiKey')") == KEY
    assert browser.execute_script("return localStorage.length") == 0


def test_missing_key_shows_the_key_prompt(browser, servers):
    open_page(browser, page_url(servers), None)
    wait_for(browser, lambda d: status(d) == "auth", "no key prompt")
    assert "401" in browser.find_element("id", "key-form").text


def test_no_model_yet_on_503_then_network_error_once_the_server_is_gone(browser, empty_regress):
    open_page(browser, f"{empty_regress.url}/app", None)
    wait_for(browser, lambda d: status(d) != "loading", "page still loading")
    assert status(browser) == "no-model"
    assert "No model yet" in browser.find_element("id", "status").text
    empty_regress.stop()  # nothing listens on that port any more
    browser.find_element("css selector", "#status button").click()  # Retry
    wait_for(browser, lambda d: status(d) == "network", "no network error state")
    assert "Network error" in browser.find_element("id", "status").text


def test_keyboard_alone_selects_a_counter_and_a_day(browser, servers):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    open_page(browser, page_url(servers, date=DAY, hour=8), KEY)
    wait_ready(browser)
    focused = None
    for _ in range(30):  # controls first, then the map's marks
        ActionChains(browser).send_keys(Keys.TAB).perform()
        focused = browser.switch_to.active_element.get_attribute("data-counter")
        if focused:
            break
    assert focused, "Tab never reached a counter"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    wait_selected(browser, focused, DAY)
    assert browser.find_element("css selector", f'[data-counter="{focused}"]') \
        .get_attribute("aria-pressed") == "true"
    curve = json.loads(browser.find_element("id", "day-curve").get_attribute("data-values"))
    assert curve == predict(servers["regress"], [focused], DAY)["predictions"]
    # A day of the week strip, by keyboard: it becomes the chosen date.
    browser.find_elements("css selector", "#week button")[1].send_keys(Keys.SPACE)
    wait_for(browser, lambda d: d.find_element("id", "date").get_attribute("value") ==
             "2025-05-22", "date not changed")
    wait_for(browser, lambda d: d.find_element("css selector", "#week button")
             .get_attribute("data-date") == "2025-05-23", "week not reloaded")
    wait_ready(browser)


def test_band_is_drawn_when_answers_carry_an_interval(browser, servers):
    """Answers with lower/upper (the interval issue) get a band; stubbed in the page's
    own fetch so the rest of the stack stays real."""
    open_page(browser, page_url(servers, date=DAY, hour=8, counter=COUNTER), KEY)
    browser.execute_script("""
        const real = window.fetch;
        window.fetch = async (url, init) => {
          const r = await real(url, init);
          if (!String(url).startsWith(location.origin) || !String(url).endsWith('/predict'))
            return r;
          const body = await r.json();
          body.lower = body.predictions.map((v) => v * 0.8);
          body.upper = body.predictions.map((v) => v * 1.25);
          return new Response(JSON.stringify(body), {status: r.status,
            headers: {'Content-Type': 'application/json'}});
        };""")
    browser.execute_script("const d = document.getElementById('date');"
                           "d.value = '2025-05-21'; d.dispatchEvent(new Event('change'));")

    def stubbed_band(d) -> bool:
        # The served models carry intervals too: the band of the first load is drawn
        # before the stubbed answers arrive, so wait for the stubbed one.
        bands = d.find_elements("id", "band")
        if not bands:
            return False
        upper = json.loads(bands[0].get_attribute("data-upper"))
        curve = json.loads(d.find_element("id", "day-curve").get_attribute("data-values"))
        return upper == [v * 1.25 for v in curve]

    wait_for(browser, stubbed_band, "no band from the stubbed answers (upper = 1.25 x curve)")
    assert "80 % interval" in browser.find_element("id", "chart-legend").text

