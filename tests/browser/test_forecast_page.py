"""The forecast page in a real browser (tests/page_browser.py: Debian's chromium and
chromedriver through Selenium, both functions on loopback): marks, curves equal to the
functions' answers, recolouring, key prompts, error states, keyboard use, the band.
`make screenshot` refreshes the README's screenshots from
tests/browser/test_forecast_page_screenshot.py; `make test` leaves the tree clean.
"""

from __future__ import annotations

import json

import pytest

pytest.register_assert_rewrite("tests.page_browser")

from tests.page_browser import (COUNTER, DAY, KEY, coordinates, counters,  # noqa: E402
                                marks, open_page, page_url, predict, status, wait_for,
                                wait_ready, wait_selected)

pytest_plugins = ["tests.page_browser"]


def predicted(page_servers, function: str, names, day) -> dict:
    """What the page should show: the function's answer to the records it sends."""
    return predict(page_servers[function], names, day, where=coordinates(page_servers))


def test_page_loads_without_console_errors_and_marks_every_counter(browser, page_servers):
    open_page(browser, page_url(page_servers, date=DAY, hour=8), KEY)
    wait_ready(browser)
    known = {c["name"] for c in counters(page_servers)}
    shown = marks(browser)
    assert set(shown) == known and len(browser.find_elements(
        "css selector", "#map [data-counter]")) == len(known)
    assert all(m.get_attribute("data-value") for m in shown.values())
    assert browser.find_elements("css selector", "#legend .swatch")
    wait_for(browser, lambda d: len(d.find_elements("css selector", "#models tbody tr")) >= 4,
             "model panel empty")
    browser.execute_script("document.getElementById('model-panel').open = true")
    words = browser.find_element("id", "model-words").text
    assert "typical error ±" in words and "bikes/h" in words and "rmse_log" not in words
    browser.find_element("css selector", "#raw-metrics > summary").click()
    panel = browser.find_element("id", "models").text
    assert "served" in panel and "affluence" in panel and "rmse_log" in panel
    # functions-framework answers /favicon.ico 404 itself (before velocast); the browser
    # asks for it for open_page's stylesheet document, sometimes after the log was
    # emptied. The page itself declares no favicon to fetch (<link rel=icon href=data:,>).
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"
              and not e["message"].split(" ", 1)[0].endswith("/favicon.ico")]
    assert errors == []


def test_selected_counter_curve_equals_predict_with_busy_hours(browser, page_servers):
    open_page(browser, page_url(page_servers, date=DAY, hour=8), KEY)
    wait_ready(browser)
    marks(browser)[COUNTER].click()
    wait_selected(browser, COUNTER, DAY)
    curve = json.loads(browser.find_element("id", "day-curve").get_attribute("data-values"))
    assert curve == predicted(page_servers, "regress", [COUNTER], DAY)["predictions"]
    busy = predicted(page_servers, "classify", [COUNTER], DAY)["predictions"]
    points = browser.find_elements("css selector", "#day-points circle")
    assert [int(p.get_attribute("data-busy")) for p in points] == busy
    shaded = {int(r.get_attribute("data-hour"))
              for r in browser.find_elements("css selector", "#busy-hours rect")}
    assert shaded == {h for h, b in enumerate(busy) if b == 1} and shaded
    usual = json.loads(browser.find_element("id", "usual-curve").get_attribute("data-values"))
    card = next(c for c in counters(page_servers) if c["name"] == COUNTER)
    assert usual == card["usual"][0]  # a Tuesday: the working-day profile
    # The regress answers carry the 80 % interval: the band is drawn from it.
    answer = predicted(page_servers, "regress", [COUNTER], DAY)
    band = browser.find_element("id", "band")
    assert json.loads(band.get_attribute("data-lower")) == answer["lower"]
    assert json.loads(band.get_attribute("data-upper")) == answer["upper"]
    week = browser.find_elements("css selector", "#week button")
    assert [b.get_attribute("data-date") for b in week][0] == "2025-05-21"
    week_values = json.loads(week[6].get_attribute("data-values"))
    assert week_values == predicted(page_servers, "regress", [COUNTER], "2025-05-27")["predictions"]


def test_changing_the_hour_recolours_the_marks(browser, page_servers):
    from selenium.webdriver.common.keys import Keys

    open_page(browser, page_url(page_servers, date=DAY, hour=8), KEY)
    wait_ready(browser)

    def fills():
        return {n: m.find_element("css selector", ".dot").get_attribute("fill")
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
    night = predicted(page_servers, "regress", names, DAY)["predictions"]
    shown = {n: float(m.get_attribute("data-value")) for n, m in marks(browser).items()}
    assert shown == {n: night[i * 24 + 3] for i, n in enumerate(names)}
    browser.find_element("css selector", 'input[name="mode"][value="busy"]').click()
    busy = predicted(page_servers, "classify", names, DAY)["predictions"]
    assert {n: m.get_attribute("data-busy") for n, m in marks(browser).items()} == \
        {n: str(busy[i * 24 + 3]) for i, n in enumerate(names)}
    assert "busy" in browser.find_element("id", "legend").text


def test_wrong_key_shows_the_key_prompt_and_a_right_key_loads(browser, page_servers):
    open_page(browser, page_url(page_servers, date=DAY), "not-the-key")
    wait_for(browser, lambda d: status(d) == "auth", "no key prompt")
    form = browser.find_element("id", "key-form")
    assert form.is_displayed() and "403" in form.text
    assert browser.switch_to.active_element.get_attribute("id") == "api-key"
    browser.switch_to.active_element.send_keys(KEY + "\n")
    wait_ready(browser)
    assert not form.is_displayed() and marks(browser)
    assert browser.execute_script("return sessionStorage.getItem('velocast.apiKey')") == KEY
    assert browser.execute_script("return localStorage.length") == 0


def test_missing_key_shows_the_key_prompt(browser, page_servers):
    open_page(browser, page_url(page_servers), None)
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


def test_keyboard_alone_selects_a_counter_and_a_day(browser, page_servers):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    open_page(browser, page_url(page_servers, date=DAY, hour=8), KEY)
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
    assert curve == predicted(page_servers, "regress", [focused], DAY)["predictions"]
    # A day of the week strip, by keyboard: it becomes the chosen date.
    browser.find_elements("css selector", "#week button")[1].send_keys(Keys.SPACE)
    wait_for(browser, lambda d: d.find_element("id", "date").get_attribute("value") ==
             "2025-05-22", "date not changed")
    wait_for(browser, lambda d: d.find_element("css selector", "#week button")
             .get_attribute("data-date") == "2025-05-23", "week not reloaded")
    wait_ready(browser)


def test_band_is_drawn_when_answers_carry_an_interval(browser, page_servers):
    """Answers with lower/upper (the interval issue) get a band; stubbed in the page's
    own fetch so the rest of the stack stays real."""
    open_page(browser, page_url(page_servers, date=DAY, hour=8, counter=COUNTER), KEY)
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

