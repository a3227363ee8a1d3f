"""The forecast page on a phone and a laptop: no sideways scrolling from 360 to 1920 px
wide (683 px is a 1366 px screen at 200 % zoom), no axe-core violation (colour contrast
included), the map first on a phone, touch-sized controls, and street context
(labelled arrondissements and streets) on the map."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("tests.page_browser")

from tests.page_browser import (COUNTER, DAY, KEY, ROOT, open_page, page_url,  # noqa: E402
                                reset_viewport, set_viewport, wait_for, wait_ready,
                                wait_selected)

pytest_plugins = ["tests.page_browser"]

AXE = ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"  # 4.14.1, MPL-2.0 (README there)


@pytest.fixture
def sized(browser):
    """set(width, height); the browser's own size comes back afterwards."""
    yield lambda width, height: set_viewport(browser, width, height)
    reset_viewport(browser)


def open_counter(browser, page_servers) -> None:
    open_page(browser, page_url(page_servers, date=DAY, hour=8, counter=COUNTER), KEY)
    wait_ready(browser)
    wait_selected(browser, COUNTER, DAY)
    wait_for(browser, lambda d: d.find_elements("css selector", "#model-words li"),
             "model panel empty")


def overflow(browser) -> tuple[int, int]:
    return tuple(browser.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"))


@pytest.mark.parametrize("width,height", [(360, 740), (390, 844), (683, 450), (1366, 900),
                                          (1920, 1080)])
def test_no_horizontal_overflow(browser, page_servers, sized, width, height):
    sized(width, height)
    open_counter(browser, page_servers)
    browser.execute_script("document.getElementById('model-panel').open = true;"
                           "document.getElementById('raw-metrics').open = true;")
    scroll, inner = overflow(browser)
    assert inner == width and scroll <= inner, f"laid out {scroll} px wide in {inner} px"


@pytest.mark.parametrize("width,height", [(390, 844), (1366, 900)])
def test_axe_finds_no_violation(browser, page_servers, sized, width, height):
    sized(width, height)
    open_counter(browser, page_servers)
    browser.execute_script("document.getElementById('model-panel').open = true;"
                           "document.getElementById('raw-metrics').open = true;")
    browser.execute_script(AXE.read_text(encoding="utf-8"))  # offline: the vendored copy
    browser.set_script_timeout(120)
    violations = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        axe.run(document, {resultTypes: ['violations']}).then((r) => done(r.violations.map(
          (v) => `${v.id} (${v.impact}): ${v.help}: ` +
                 v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | '))));""")
    ran = browser.execute_script("return axe.getRules().map((r) => r.ruleId)")
    assert "color-contrast" in ran
    assert violations == [], "\n".join(violations)


def test_phone_shows_the_map_first_and_touch_sized_controls(browser, page_servers, sized):
    sized(390, 844)
    open_counter(browser, page_servers)
    top = browser.execute_script(
        "return ['map-panel', 'detail-panel', 'model-panel'].map("
        "(id) => document.getElementById(id).getBoundingClientRect().top)")
    assert top == sorted(top), top
    assert browser.execute_script("return document.getElementById('model-panel').open") is False
    small = browser.execute_script("""
        return [...document.querySelectorAll('#controls label, #controls select, '
            + '#controls input[type=date], #csv-link, #week button, #model-panel > summary')]
          .filter((e) => e.getBoundingClientRect().height < 44)
          .map((e) => e.id || e.textContent.trim().slice(0, 30));""")
    assert small == []


def test_map_has_labelled_arrondissements_and_streets(browser, page_servers):
    open_counter(browser, page_servers)
    labels = browser.find_elements("css selector", "#map .area-label")
    assert [label.text for label in labels] == ["1er"] + [f"{n}e" for n in range(2, 21)]
    assert len(browser.find_elements("css selector", "#arrondissements path")) == 20
    streets = {e.get_attribute("data-street") for e in
               browser.find_elements("css selector", "#streets .street-label")}
    assert "boulevard de Sébastopol" in streets and "Rue de Rivoli" in streets
    selected = browser.find_element("css selector", "#streets .street-label.selected")
    assert selected.text == "boulevard de Sébastopol" and selected.is_displayed()
