"""Back and Forward move through the views a person chose (date, counter, colouring)
inside the page instead of leaving it; the hour slider does not flood the history."""

from __future__ import annotations

import json

import pytest

pytest.register_assert_rewrite("tests.page_browser")

from tests.page_browser import (COUNTER, DAY, KEY, marks, open_page, page_url,  # noqa: E402
                                wait_for, wait_ready, wait_selected)

pytest_plugins = ["tests.page_browser"]

OTHER = "Totem 64 Rue de Rivoli E-O"


def view(browser) -> dict:
    panel = browser.find_element("id", "detail-panel")
    return {"date": browser.find_element("id", "date").get_attribute("value"),
            "counter": panel.get_attribute("data-counter"),
            "chart_date": panel.get_attribute("data-date"),
            "mode": browser.find_element("css selector", 'input[name="mode"]:checked')
            .get_attribute("value")}


def change_date(browser, day: str) -> None:
    browser.execute_script("const d = document.getElementById('date');"
                           f"d.value = {json.dumps(day)}; d.dispatchEvent(new Event('change'));")


def test_back_restores_the_previous_view_and_forward_returns(browser, page_servers):
    open_page(browser, page_url(page_servers, date=DAY, hour=8, counter=COUNTER), KEY)
    wait_ready(browser)
    wait_selected(browser, COUNTER, DAY)
    first = view(browser)
    before = browser.execute_script("return history.length")
    change_date(browser, "2025-05-23")
    wait_for(browser, lambda d: view(d)["chart_date"] == "2025-05-23", "new date not shown")
    marks(browser)[OTHER].click()
    wait_selected(browser, OTHER, "2025-05-23")
    browser.find_element("css selector", 'input[name="mode"][value="usual"]').click()
    slider = browser.find_element("id", "hour")
    from selenium.webdriver.common.keys import Keys
    for _ in range(5):
        slider.send_keys(Keys.ARROW_RIGHT)
    # date, counter, colouring: three entries; five hour steps: none.
    assert browser.execute_script("return history.length") == before + 3

    browser.back()  # colouring
    wait_for(browser, lambda d: view(d)["mode"] == "traffic", "colouring not restored")
    browser.back()  # counter
    wait_for(browser, lambda d: view(d)["counter"] == COUNTER, "counter not restored")
    assert view(browser)["chart_date"] == "2025-05-23"
    browser.back()  # date
    wait_for(browser, lambda d: view(d) == first, "not the first view")
    wait_ready(browser)
    assert browser.current_url.split("/app", 1)[0] == page_servers["regress"].url  # still the page
    curve = json.loads(browser.find_element("id", "day-curve").get_attribute("data-values"))
    assert len(curve) == 24
    browser.forward()
    wait_for(browser, lambda d: view(d)["chart_date"] == "2025-05-23", "forward did not return")
