"""What the page says: a note for a date far past the models' training data, dates
with their year and "Paris time", what busy and usual mean, "busier/quieter than usual
for this hour" from regress' answer against the usual profile, a label on the chosen
hour's line, and the shown day as CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from urllib.parse import unquote

import pytest
import requests

pytest.register_assert_rewrite("tests.page_browser")

from tests.page_browser import (COUNTER, DAY, KEY, MEASURED, coordinates,  # noqa: E402
                                counters, marks, open_page, page_url, predict, wait_for,
                                wait_ready, wait_selected)

pytest_plugins = ["tests.page_browser"]


def test_far_ahead_note_for_a_date_two_years_out(browser, page_servers):
    info = requests.get(page_servers["regress"].url + "/counters", headers={"X-API-Key": KEY},
                        timeout=30).json()
    trained_to = dt.date.fromisoformat(info["model"]["trained_to"])
    far = (trained_to + dt.timedelta(days=730)).isoformat()
    open_page(browser, page_url(page_servers, date=far, hour=8), KEY)
    wait_ready(browser)
    note = browser.find_element("id", "far-note")
    assert note.is_displayed() and "730 days after the newest training data" in note.text
    assert "checked up to 28 days ahead" in note.text
    # Past the published school calendar: said too.
    unpublished = info["school_calendar_until"]
    open_page(browser, page_url(page_servers, date=unpublished, hour=8), KEY)
    wait_ready(browser)
    assert "School holidays are published up to" in browser.find_element("id", "far-note").text
    open_page(browser, page_url(page_servers, date=(trained_to + dt.timedelta(days=10)).isoformat(),
                                hour=8), KEY)
    wait_ready(browser)
    assert not browser.find_element("id", "far-note").is_displayed()


def test_dates_carry_the_year_and_paris_time(browser, page_servers):
    open_page(browser, page_url(page_servers, date=DAY, hour=8, counter=COUNTER), KEY)
    wait_ready(browser)
    wait_selected(browser, COUNTER, DAY)
    assert "20 May 2025, 08:00 Paris time" in browser.find_element("id", "map-when").text
    assert "2025" in browser.find_element("id", "status").text
    assert browser.find_element("css selector", "#week button").text.startswith("Wed")
    assert "2025" in browser.find_element("css selector", "#week button").text
    label = browser.find_element("id", "hour-label").text
    value = predict(page_servers["regress"], [COUNTER], DAY, where=coordinates(page_servers))["predictions"][8]
    assert label == f"08:00: {round(value):,} bikes/h"


def test_busy_and_usual_are_explained_and_usual_colouring_follows_regress(browser, page_servers):
    open_page(browser, page_url(page_servers, date=DAY, hour=17), KEY)
    wait_ready(browser)
    browser.find_element("css selector", 'input[name="mode"][value="busy"]').click()
    help_text = browser.find_element("id", "mode-help").text
    assert "average hour over the whole week" in help_text and "forte" in help_text
    assert "faible" in help_text
    browser.find_element("css selector", 'input[name="mode"][value="usual"]').click()
    assert "typical count at that hour on the same kind of day" in \
        browser.find_element("id", "mode-help").text
    cards = {c["name"]: c for c in counters(page_servers)}
    names = sorted(cards)
    answer = predict(page_servers["regress"], names, DAY, where=coordinates(page_servers))["predictions"]
    shown = {n: m.get_attribute("data-usual") for n, m in marks(browser).items()}
    for i, name in enumerate(names):
        value, usual = answer[i * 24 + 17], cards[name]["usual"][0][17]  # a Tuesday
        ratio = value / max(usual, 1)
        expected = 2 if max(value, usual) < 5 else (
            0 if ratio < 2 / 3 else 1 if ratio < 0.9 else 2 if ratio <= 1.1 else
            3 if ratio <= 1.5 else 4)
        assert shown[name] == str(expected), name
    legend = browser.find_element("id", "legend").text
    assert "busier than usual" in legend and "quieter than usual" in legend


def test_legend_bins_do_not_change_with_the_day(browser, page_servers):
    texts = []
    for day in (DAY, "2025-05-25"):
        open_page(browser, page_url(page_servers, date=day, hour=8), KEY)
        wait_ready(browser)
        texts.append(browser.find_element("id", "legend").text)
    assert texts[0] == texts[1] and "300+ bikes/h" in texts[0]


def test_csv_of_the_shown_day(browser, page_servers):
    open_page(browser, page_url(page_servers, date=DAY, hour=8, counter=COUNTER), KEY)
    wait_ready(browser)
    wait_selected(browser, COUNTER, DAY)
    wait_for(browser, lambda d: d.find_elements("id", "measured-curve"), "no measured line")
    link = browser.find_element("id", "csv-link")
    assert link.is_displayed() and link.get_attribute("download") == f"velocast-{DAY}.csv"
    href = link.get_attribute("href")
    assert href.startswith("data:text/csv;charset=utf-8,")
    rows = list(csv.DictReader(io.StringIO(unquote(href.split(",", 1)[1]))))
    names = sorted(c["name"] for c in counters(page_servers))
    assert len(rows) == 24 * len(names)
    answer = predict(page_servers["regress"], names, DAY, where=coordinates(page_servers))
    by_key = {(r["counter"], r["hour_paris_time"]): r for r in rows}
    for i, name in enumerate(names):
        for h in (0, 8, 17):
            assert float(by_key[(name, f"{h:02d}:00")]["forecast"]) == answer["predictions"][i * 24 + h]
    counted = [by_key[(COUNTER, f"{h:02d}:00")]["counted"] for h in range(24)]
    assert counted == ["" if v is None else f"{v:g}" for v in MEASURED]
