"""N14: the page sends each counter's coordinates with its records, so a counter that a
function does not know is predicted from its nearest known counters (with a warning)
and cannot turn its whole 400-record chunk into a 422 that blanks the map."""

from __future__ import annotations

import json

import pytest

pytest.register_assert_rewrite("tests.page_browser")

from tests.page_browser import DAY, KEY, counters, marks, open_page, page_url  # noqa: E402
from tests.page_browser import status, wait_for  # noqa: E402

pytest_plugins = ["tests.page_browser"]

UNKNOWN = {"name": "Compteur tout neuf 1 rue Oberkampf E-O", "latitude": 48.8650,
           "longitude": 2.3720}


@pytest.fixture
def on_new_document(browser):
    """Runs a script before the page's own (DevTools), removed afterwards."""
    added = []

    def add(source: str) -> None:
        added.append(browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                             {"source": source})["identifier"])
    yield add
    for identifier in added:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument",
                                {"identifier": identifier})


def test_every_record_carries_its_counters_coordinates(browser, page_servers, on_new_document):
    on_new_document("""
        window.sentRecords = [];
        const real = window.fetch;
        window.fetch = (url, init) => {
          if (String(url).endsWith('/predict')) window.sentRecords.push(
            ...JSON.parse(init.body).records);
          return real(url, init);
        };""")
    open_page(browser, page_url(page_servers, date=DAY, hour=8), KEY)
    wait_for(browser, lambda d: status(d) == "ready", "page not ready")
    sent = browser.execute_script("return window.sentRecords")
    where = {c["name"]: f"{c['latitude']}, {c['longitude']}" for c in counters(page_servers)}
    assert len(sent) == 2 * 24 * len(where)  # regress and classify
    assert all(r["coordonnées_géographiques"] == where[r["nom_du_compteur"]] for r in sent)


def test_a_counter_no_model_knows_does_not_blank_the_map(browser, page_servers, on_new_document):
    # /counters answers one counter more than the models know (a new sensor).
    on_new_document("""
        const real = window.fetch;
        window.fetch = async (url, init) => {
          const r = await real(url, init);
          if (!String(url).endsWith('/counters')) return r;
          const body = await r.json();
          body.counters.push(Object.assign(%s, {mean_count: 0, usual: body.counters[0].usual}));
          return new Response(JSON.stringify(body), {status: r.status,
            headers: {'Content-Type': 'application/json'}});
        };""" % json.dumps(UNKNOWN))
    open_page(browser, page_url(page_servers, date=DAY, hour=8), KEY)
    wait_for(browser, lambda d: status(d) != "loading", "page still loading")
    assert status(browser) == "ready", browser.find_element("id", "status").text
    assert "Busy hours unavailable" not in browser.find_element("id", "status").text
    shown = marks(browser)
    assert UNKNOWN["name"] in shown
    assert all(m.get_attribute("data-value") and m.get_attribute("data-busy") in ("0", "1")
               for m in shown.values())
