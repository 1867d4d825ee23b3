"""The desk in a real browser: Debian's Chromium driven by Playwright against the real stack (daphne,
the simulated feed, a Celery worker, Redis, PostgreSQL), logged in through the login page.

Screenshots of every page at a desktop's and a phone's size go to tests/artifacts/ for a person to
look at (`<page>-<width>x<height>.png`); the processes' logs go to tests/artifacts/logs/.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.db import connection
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.conftest import DESKTOP, SYMBOL, log_in, new_context
from tests.browser.stack import child_environment
from tests.environment import TEST_REDIS_URL

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHAIN = f"/chain/{SYMBOL}/"
PAGES = {"login": "/login/", "dashboard": "/", "chain": CHAIN, "watchlist": "/watchlist/", "accounts": "/accounts/"}
# The feed reports every second and the page's socket flushes 4x a second: "a few seconds".
LIVE_DATA_MS = 10_000
RECONNECT_MS = 15_000

CHAIN_FIELDS = ("ltp", "chg", "bid", "ask", "vol", "oi", "oich", "iv", "delta", "gamma", "theta", "vega", "buildup")
HEADER_FIGURES = (
    "hdr-spot",
    "hdr-future",
    "hdr-atm-iv",
    "hdr-expected-move",
    "hdr-pcr",
    "hdr-max-pain",
    "hdr-gex",
    "hdr-flip",
)
# The gamma flip is unknown ("—") when the net GEX does not change sign within the strikes shown.
MAY_BE_UNKNOWN = {"hdr-flip"}
CHARTS = ("chart-oi", "chart-gex", "chart-smile", "chart-intraday", "chart-candles")
UNKNOWN = "—"
MINUS = "\N{MINUS SIGN}"

# A figure as the pages write it: a real minus (U+2212), Indian digit grouping (12,34,567.8), a unit;
# anything after a space (an aside such as "(0.8%)") is not checked.
FIGURE = re.compile(
    rf"(?P<sign>[{MINUS}+±]?)(?P<number>(?:\d{{1,2}}(?:,\d{{2}})*,\d{{3}}|\d{{1,3}})(?:\.\d+)?)"
    r"\s?(?P<unit>%|Cr|L|K)?(?:\s.*)?"
)

CANVAS_DRAWN = """(id) => {
  const box = document.getElementById(id);
  if (!box) { return false; }
  for (const canvas of box.querySelectorAll("canvas")) {
    if (!canvas.width || !canvas.height) { continue; }
    let pixels;
    try {
      pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    } catch (error) {
      continue;  // a WebGL canvas, or one the page cannot read
    }
    for (let alpha = 3; alpha < pixels.length; alpha += 4) {
      if (pixels[alpha]) { return true; }
    }
  }
  return false;
}"""

# Each strike's row, and whether it is the ATM one: marked `atm` on the row or on its strike cell.
ROWS = """() => Array.from(
  document.querySelectorAll("#chain tr[id^=row-]"), (row) => [row.id, row.matches(".atm, :has(> .strike.atm)")]
)"""

LTP_TEXTS = """() => Array.from(
  document.querySelectorAll('#chain td[id$="-ltp"]'), (cell) => cell.id + "=" + cell.textContent.trim()
)"""


def figure(text: str) -> float:
    """The value of a figure as shown ("24,012.35", "\N{MINUS SIGN}3.2Cr", "14.2%"); AssertionError if it is not one."""
    text = text.strip()
    match = FIGURE.fullmatch(text)
    assert match, f"not a figure as the desk writes them: {text!r}"
    value = float(match["number"].replace(",", ""))
    return -value if match["sign"] == MINUS else value


def wait_for_state(page, state: str, timeout: float) -> None:
    """Wait for the connection indicator to say `state`; fail with what it says instead."""
    try:
        page.wait_for_selector(f"#conn[data-state={state}]", state="attached", timeout=timeout)
    except PlaywrightTimeout:
        shown = page.locator("#conn").evaluate_all("found => found.map(e => e.outerHTML)")
        raise AssertionError(f"{page.url}: the indicator is not {state!r} after {timeout} ms: {shown}") from None


def open_live(page, path: str) -> None:
    """Open a logged-in page and wait for its socket to say the feed is live."""
    page.goto(path, wait_until="domcontentloaded")  # the socket, not every image, makes it work
    assert urlsplit(page.url).path == path, f"{path} went to {page.url}"
    wait_for_state(page, "live", LIVE_DATA_MS)


def text_of(page, element_id: str) -> str:
    return page.locator(f"#{element_id}").inner_text().strip()


def test_the_stack_runs_on_the_test_database_and_redis(db):
    """What the child processes are given. (Asking for `db` here is also what makes pytest-django
    create the test database when these tests run on their own: the others must not ask for it,
    as Django refuses ORM calls in a thread where Playwright's event loop runs.)"""
    env = child_environment(connection.settings_dict, settings.REDIS_URL)
    assert connection.settings_dict["NAME"].startswith("test_")
    assert urlsplit(env["DATABASE_URL"]).path == "/" + connection.settings_dict["NAME"]
    assert env["REDIS_URL"] == TEST_REDIS_URL


# -- Logging in ----------------------------------------------------------------------------------


def test_an_anonymous_visitor_is_sent_to_log_in_and_comes_back_to_the_chain(anonymous):
    page = anonymous
    page.goto(CHAIN)
    url = urlsplit(page.url)
    assert url.path == "/login/"
    assert parse_qs(url.query)["next"] == [CHAIN]
    assert page.locator("#conn").count() == 0  # no socket, no indicator before logging in

    log_in(page)
    assert urlsplit(page.url).path == CHAIN
    wait_for_state(page, "live", LIVE_DATA_MS)


# -- The option chain ----------------------------------------------------------------------------


def test_the_chain_has_a_row_a_strike_and_its_cells_change_with_live_data(desktop):
    page = desktop
    open_live(page, CHAIN)
    rows = page.evaluate(ROWS)
    assert len(rows) >= 5, rows
    strikes = []
    for row_id, _ in rows:
        assert re.fullmatch(r"row-\d+", row_id), row_id
        strikes.append(int(row_id.removeprefix("row-")))
    assert strikes == sorted(strikes) and len(set(strikes)) == len(strikes), strikes
    assert sum(atm for _, atm in rows) == 1, "exactly one ATM row"
    for strike in (strikes[0], strikes[-1]):
        for side in ("ce", "pe"):
            for field in CHAIN_FIELDS:
                assert page.locator(f"#{side}-{strike}-{field}").count() == 1, f"#{side}-{strike}-{field}"

    # The prices are there, and they move as the market does.
    atm = next(row_id for row_id, is_atm in rows if is_atm).removeprefix("row-")
    page.wait_for_function(
        "(id) => /\\d/.test(document.getElementById(id).textContent)", arg=f"ce-{atm}-ltp", timeout=LIVE_DATA_MS
    )
    assert figure(text_of(page, f"ce-{atm}-ltp")) > 0
    before = page.evaluate(LTP_TEXTS)
    page.wait_for_function(
        f"(before) => ({LTP_TEXTS})().join('|') !== before.join('|')", arg=before, timeout=LIVE_DATA_MS
    )
    assert page.errors == []


def test_the_chain_header_figures_are_there_and_numeric(desktop):
    page = desktop
    open_live(page, CHAIN)
    known = [f for f in HEADER_FIGURES if f not in MAY_BE_UNKNOWN]
    page.wait_for_function(
        """(ids) => ids.every((id) => {
            const element = document.getElementById(id);
            return element && /\\d/.test(element.textContent) && !element.textContent.includes("—");
        })""",
        arg=known,
        timeout=LIVE_DATA_MS,
    )
    shown = {f: text_of(page, f) for f in HEADER_FIGURES}
    values = {f: figure(text) for f, text in shown.items() if not (f in MAY_BE_UNKNOWN and text == UNKNOWN)}
    assert 10_000 < values["hdr-spot"] < 60_000, shown
    assert abs(values["hdr-future"] - values["hdr-spot"]) < 0.05 * values["hdr-spot"], shown
    assert shown["hdr-atm-iv"].endswith("%") and 1 < values["hdr-atm-iv"] < 100, shown
    assert values["hdr-expected-move"] > 0, shown
    assert 0.01 < values["hdr-pcr"] < 100, shown
    assert abs(values["hdr-max-pain"] - values["hdr-spot"]) < 0.2 * values["hdr-spot"], shown
    if "hdr-flip" in values:
        assert abs(values["hdr-flip"] - values["hdr-spot"]) < 0.5 * values["hdr-spot"], shown
    # The ATM row is the strike nearest the spot (NIFTY's strikes are 50 apart).
    atm = next(row_id for row_id, is_atm in page.evaluate(ROWS) if is_atm).removeprefix("row-")
    assert abs(int(atm) - values["hdr-spot"]) <= 50, (atm, shown)
    assert page.errors == []


def test_the_chain_charts_have_drawn(desktop):
    page = desktop
    open_live(page, CHAIN)
    try:
        page.wait_for_function(
            f"(charts) => charts.every({CANVAS_DRAWN})", arg=list(CHARTS), timeout=LIVE_DATA_MS, polling=250
        )
    except PlaywrightTimeout:
        blank = [chart for chart in CHARTS if not page.evaluate(CANVAS_DRAWN, chart)]
        assert blank == [], "no canvas in these has drawn anything"
    assert page.errors == []


# -- The other pages -----------------------------------------------------------------------------


def test_the_dashboard_shows_the_spot_live(desktop):
    page = desktop
    open_live(page, "/")
    tile = f"tile-{SYMBOL}-spot"
    page.wait_for_function(
        "(id) => { const e = document.getElementById(id); return e && /\\d/.test(e.textContent); }",
        arg=tile,
        timeout=LIVE_DATA_MS,
    )
    # The tile may carry a label or the day's change beside the price: its first figure is the spot.
    numbers = re.findall(rf"[{MINUS}+]?\d[\d,]*(?:\.\d+)?", text_of(page, tile))
    assert numbers and 10_000 < figure(numbers[0]) < 60_000, text_of(page, tile)
    assert page.errors == []


def test_the_watchlist_has_a_search_box(desktop):
    page = desktop
    open_live(page, "/watchlist/")
    assert page.locator("input[type=search]").first.is_visible()
    assert page.errors == []


def test_the_accounts_page_lists_the_paper_account(desktop):
    page = desktop
    open_live(page, "/accounts/")
    assert page.get_by_text("Paper").first.is_visible()
    assert page.errors == []


# -- Screenshots, for a person to look at ---------------------------------------------------------


@pytest.mark.parametrize("name", PAGES)
def test_screenshots(viewport_page, name):
    page = viewport_page
    path = PAGES[name]
    if name == "login":
        page.context.clear_cookies()
        page.goto(path)
    else:
        open_live(page, path)
    if name == "chain":
        # Let the charts draw first; the chart test says which one did not.
        with contextlib.suppress(PlaywrightTimeout):
            page.wait_for_function(f"(charts) => charts.every({CANVAS_DRAWN})", arg=list(CHARTS), polling=250)
    ARTIFACTS.mkdir(exist_ok=True)
    file = ARTIFACTS / f"{name}-{page.viewport.size}.png"
    page.screenshot(path=file, full_page=True)
    assert file.stat().st_size > 0
    assert page.errors == []


# -- The connection indicator: last, and on a daphne of its own that it kills --------------------


@pytest.mark.parametrize("name", ["accounts", "chain"])
def test_the_indicator_says_reconnecting_when_the_socket_drops_and_live_when_it_is_back(
    stack, browser, signed_in_state, name
):
    web = stack.own_web(f"daphne-{name}-restart")
    context = new_context(browser, DESKTOP, web.url, storage_state=signed_in_state)
    try:
        page = context.new_page()
        open_live(page, PAGES[name])
        web.kill()  # no close frame: the browser sees 1006, as when the server dies
        wait_for_state(page, "reconnecting", 5_000)
        web.start()
        wait_for_state(page, "live", RECONNECT_MS)
    finally:
        context.close()
        web.stop()
