"""The README's screenshots of the forecast page, on a laptop and a phone. `make
screenshot` runs this on `make demo`'s own models (PAGE_STORE=models, trained on the
synthetic sample like the demo) and writes docs/forecast-page.png and
docs/forecast-page-phone.png (PAGE_SCREENSHOT=docs); `make test` runs it on the test
models and writes to a temporary folder, so the tree stays clean."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.page_browser")

from tests.page_browser import (COUNTER, KEY, ROOT, open_page, page_pair, page_url,  # noqa: E402
                                reset_viewport, set_viewport, wait_ready, wait_selected)

pytest_plugins = ["tests.page_browser"]

# A Tuesday 16 days after the demo's training data ends (the sample runs to 2025-09-01):
# a real forecast, within the 28 days the models were checked on.
DAY = "2025-09-16"


@pytest.fixture(scope="module")
def page_servers(request):
    """As `make demo` serves: the demo's store when PAGE_STORE names it, no ingest."""
    store = os.environ.get("PAGE_STORE") or str(request.getfixturevalue("trained_store"))
    env = {"MODEL_STORE": str(Path(store).resolve()), "REFRESH_SECONDS": "3600",
           "API_KEYS": KEY}
    with page_pair(env) as servers:
        yield servers


@pytest.mark.parametrize("name,width,height", [("forecast-page.png", 1366, 900),
                                               ("forecast-page-phone.png", 390, 844)])
def test_screenshot(browser, page_servers, tmp_path, name, width, height):
    folder = ROOT / "docs" if os.environ.get("PAGE_SCREENSHOT") == "docs" else tmp_path
    set_viewport(browser, width, height)
    try:
        open_page(browser, page_url(page_servers, date=DAY, hour=8, counter=COUNTER), KEY)
        wait_ready(browser)
        wait_selected(browser, COUNTER, DAY)
        # The whole page, not only the first screen: the phone's chart is below the map.
        full = browser.execute_script("return document.documentElement.scrollHeight")
        set_viewport(browser, width, min(full, 2400))
        shot = folder / name
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        reset_viewport(browser)
