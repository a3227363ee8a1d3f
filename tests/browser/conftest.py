"""The browser tier: the forecast page in a real Chromium driven by Selenium, against
both functions on loopback (tests/page_browser.py, the shared harness).

Nothing here skips: without chromium and its driver the whole tier fails at once,
before any server starts, with the one command that installs them.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("tests.page_browser", "tests.function_clients")

from tests.page_browser import CHROMEDRIVER, CHROMIUM  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def chromium_installed():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `make browser` (apt-get install chromium "
                    "chromium-driver; VELOCAST_CHROMIUM / VELOCAST_CHROMEDRIVER name another pair)")
