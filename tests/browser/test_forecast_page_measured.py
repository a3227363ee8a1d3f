"""The measured hours beside the forecast: for a day whose counts are stored (the
browser harness ingests one fixture day for one counter), the page draws the counted
line with exactly the stored values and says the day's error in words; where nothing
is stored it says so."""

from __future__ import annotations

import json

import pytest

pytest.register_assert_rewrite("tests.page_browser")

from tests.page_browser import (COUNTER, DAY, KEY, MEASURED, open_page,  # noqa: E402
                                page_url, wait_for, wait_ready, wait_selected)

pytest_plugins = ["tests.page_browser"]


def show(browser, page_servers, counter: str, day: str) -> str:
    open_page(browser, page_url(page_servers, date=day, hour=8, counter=counter), KEY)
    wait_ready(browser)
    wait_selected(browser, counter, day)
    wait_for(browser, lambda d: d.find_element("id", "measured-note").is_displayed(),
             "no word on the measured counts")
    return browser.find_element("id", "measured-note").text


def test_measured_line_equals_the_stored_counts(browser, page_servers):
    note = show(browser, page_servers, COUNTER, DAY)
    line = browser.find_element("id", "measured-curve")
    assert json.loads(line.get_attribute("data-values")) == MEASURED
    assert line.get_attribute("d").count("M") == 2  # 13h was not counted: a gap
    forecast = json.loads(browser.find_element("id", "day-curve").get_attribute("data-values"))
    hours = [h for h, v in enumerate(MEASURED) if v is not None]
    f = round(sum(forecast[h] for h in hours))
    c = round(sum(MEASURED[h] for h in hours))
    error = round(100 * (f - c) / c)
    assert f"forecast {f:,}, counted {c:,} over the 23 counted hours: {abs(error)} % " \
           f"{'high' if error > 0 else 'low'}" in note
    assert "counted" in browser.find_element("id", "chart-legend").text


def test_a_day_without_stored_counts_says_so(browser, page_servers):
    note = show(browser, page_servers, COUNTER, "2025-05-21")
    assert "No measured counts are stored for this counter" in note
    assert not browser.find_elements("id", "measured-curve")


def test_future_days_ask_for_no_counts(browser, page_servers):
    open_page(browser, page_url(page_servers, date="2099-01-06", hour=8, counter=COUNTER), KEY)
    wait_ready(browser)
    wait_selected(browser, COUNTER, "2099-01-06")
    assert not browser.find_element("id", "measured-note").is_displayed()
