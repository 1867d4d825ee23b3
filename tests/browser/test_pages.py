"""The desk in a real browser: Debian's Chromium driven by Playwright against the real stack (daphne,
the simulated feed, a Celery worker, Redis, PostgreSQL), logged in through the login page.

Screenshots of every page at a desktop's and a phone's size go to tests/artifacts/ for a person to
look at (`<page>-<width>x<height>.png`); the processes' logs go to tests/artifacts/logs/.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.db import connection
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.conftest import DESKTOP, SYMBOL, PageErrors, log_in, new_context
from tests.browser.stack import child_environment
from tests.environment import TEST_REDIS_URL
from trading_site.clock import IST

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHAIN = f"/chain/{SYMBOL}/"
PAGES = {"login": "/login/", "dashboard": "/", "chain": CHAIN, "watchlist": "/watchlist/", "accounts": "/accounts/"}
# The feed reports every second and the page's socket flushes 4x a second: "a few seconds".
LIVE_DATA_MS = 10_000
RECONNECT_MS = 15_000
# A feed of a test's own boots in about two seconds; its page goes live at its first status report.
FEED_START_MS = 30_000
# After SIGTERM the feed reports "stopped"; were that lost, 5 s without a report make the server say stale.
STALE_MS = 10_000
# How long the chain page is watched under live updates, and the slowest round trip to its page allowed.
UNDER_UPDATES_SECONDS = 10.0
ROUND_TRIP_SECONDS = 1.0

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


def wait_until(page, script: str, arg, timeout: float, what: str) -> None:
    """Wait for `script(arg)` to be true in the page; fail saying `what` did not happen."""
    try:
        page.wait_for_function(script, arg=arg, timeout=timeout)
    except PlaywrightTimeout:
        raise AssertionError(f"{page.url}: not within {timeout} ms: {what}") from None


PRICE_SHOWN = """(id) => {
  const element = document.getElementById(id);
  return element !== null && /^\\d[\\d,]*(\\.\\d+)?$/.test(element.textContent.trim());
}"""

TEXT_CHANGED = """([id, before]) => {
  const element = document.getElementById(id);
  return element !== null && element.textContent.trim() !== before;
}"""


def wait_for_price(page, element_id: str, timeout: float = LIVE_DATA_MS) -> float:
    """Wait for a cell to show a price (not "—"); its value."""
    wait_until(page, PRICE_SHOWN, element_id, timeout, f"#{element_id} shows a price")
    return figure(text_of(page, element_id))


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


# Elements by tag name, to say which grew when the count does.
ELEMENTS_BY_TAG = """() => {
  const counts = {};
  for (const element of document.getElementsByTagName("*")) {
    counts[element.tagName] = (counts[element.tagName] || 0) + 1;
  }
  return counts;
}"""

COUNT_SWAPS = """() => {
  window.swapsSeen = 0;
  document.addEventListener("desk:swapped", () => { window.swapsSeen += 1; });
}"""


def test_the_chain_keeps_a_flat_dom_and_answers_at_once_under_live_updates(desktop):
    page = desktop
    open_live(page, CHAIN)
    # Settled first: the cells priced and the charts drawn (the chart libraries build their DOM once).
    atm = next(row_id for row_id, is_atm in page.evaluate(ROWS) if is_atm).removeprefix("row-")
    wait_for_price(page, f"ce-{atm}-ltp")
    with contextlib.suppress(PlaywrightTimeout):  # the chart test says which one did not draw
        page.wait_for_function(f"(charts) => charts.every({CANVAS_DRAWN})", arg=list(CHARTS), polling=250)
    page.evaluate(COUNT_SWAPS)
    before, prices_before = page.evaluate(ELEMENTS_BY_TAG), page.evaluate(LTP_TEXTS)

    round_trips = []
    watch_until = time.monotonic() + UNDER_UPDATES_SECONDS
    while time.monotonic() < watch_until:
        started = time.perf_counter()
        page.evaluate("1")
        round_trips.append(time.perf_counter() - started)
        page.wait_for_timeout(200)

    after, prices_after = page.evaluate(ELEMENTS_BY_TAG), page.evaluate(LTP_TEXTS)
    swaps = page.evaluate("window.swapsSeen")
    # The updates did flow: the socket flushes up to four times a second, and prices moved.
    assert swaps >= 2 * UNDER_UPDATES_SECONDS, f"{swaps} socket messages in {UNDER_UPDATES_SECONDS} s"
    assert prices_after != prices_before
    grown = {
        tag: (before.get(tag, 0), after.get(tag, 0)) for tag in before | after if before.get(tag) != after.get(tag)
    }
    assert sum(after.values()) == sum(before.values()) and not grown, f"elements (before, after) by tag: {grown}"
    assert max(round_trips) < ROUND_TRIP_SECONDS, f"slowest of {len(round_trips)} round trips: {max(round_trips):.3f} s"
    wait_for_state(page, "live", 1_000)
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


# -- The watchlist ----------------------------------------------------------------------------------

# The search's result rows: [tradingsymbol, kind, token, what its last cell offers].
RESULTS = """() => Array.from(document.querySelectorAll("#wl-results tbody tr"), (row) => [
  row.cells[0].firstChild.textContent.trim(),
  row.cells[1].textContent.trim(),
  row.cells[2].textContent.trim(),
  row.cells[3].textContent.trim(),
])"""


def search_watchlist(page, term: str) -> list[list[str]]:
    """Type `term` into the search box, key by key and without Enter; the result rows it shows."""
    page.locator("#wl-q").press_sequentially(term, delay=20)
    # The results are those of the whole term (each answer carries it in its add forms).
    wait_until(
        page,
        """(term) => {
            const rows = document.querySelectorAll("#wl-results tbody tr");
            const terms = document.querySelectorAll("#wl-results input[name=q]");
            return rows.length > 0 && Array.from(terms).every((input) => input.value === term);
        }""",
        term,
        5_000,
        f"search results for {term!r} as it was typed",
    )
    return page.evaluate(RESULTS)


def result_row(results: list[list[str]], kind: str) -> tuple[str, int]:
    """The first result of a kind ("Index", "Future"): its tradingsymbol and token."""
    found = [row for row in results if row[1].startswith(kind)]
    assert found, f"no {kind} in the results: {results}"
    return found[0][0], int(found[0][2])


def add_from_results(page, token: int) -> None:
    page.locator(f"#wl-results form:has(input[name=token][value='{token}']) button[type=submit]").click()
    page.wait_for_selector(f"#wl-{token}", state="attached")


def watch_nearest_future(page) -> int:
    """Have the nearest NIFTY future on the watchlist, priced, and in the depth panel; its token."""
    _, token = result_row(search_watchlist(page, SYMBOL), "Future")
    if page.locator(f"#wl-{token}").count() == 0:
        add_from_results(page, token)
    wait_for_price(page, f"wl-{token}-ltp")
    if page.locator(f"#depth[data-token='{token}']").count() == 0:
        page.locator(f"#wl-{token} .wl-select").click()
    wait_for_price(page, "depth-buy-0-price")
    return token


def test_the_watchlist_searches_as_one_types_adds_streams_shows_depth_and_removes(desktop):
    page = desktop
    open_live(page, "/watchlist/")
    page.evaluate("() => { window.notReloaded = true; }")
    assert page.locator("#watchlist tbody tr").count() == 0, "the watchlist is not empty to begin with"

    # Results as one types: no Enter, no page load.
    results = search_watchlist(page, SYMBOL)
    assert all(symbol.startswith(SYMBOL) for symbol, *_ in results), results
    assert page.evaluate("window.notReloaded === true") and urlsplit(page.url).query == "", page.url
    index_symbol, index = result_row(results, "Index")
    future_symbol, future = result_row(results, "Future")
    assert results[0][0] == index_symbol == "NIFTY 50", results  # the index first, as the search promises
    # Futures come nearest expiry first; the feed streams the nearest ones.
    assert future_symbol.endswith("FUT"), results

    # The index goes on the list first: it is what the depth panel shows until another is picked.
    add_from_results(page, index)
    wait_for_price(page, f"wl-{index}-ltp")
    page.wait_for_selector(f"#depth[data-token='{index}']", state="attached")
    add_from_results(page, future)
    assert page.evaluate("() => Array.from(document.querySelectorAll('#watchlist tbody tr'), (r) => r.id)") == [
        f"wl-{index}",
        f"wl-{future}",
    ]
    # On the list now, the results say so rather than offering to add it again.
    wait_until(
        page,
        f"() => document.querySelector(\"#wl-results form input[name=token][value='{future}']\") === null",
        None,
        5_000,
        "the results no longer offer to add the future",
    )

    # Its last price is a price, and it moves with the market.
    ltp_id = f"wl-{future}-ltp"
    ltp = wait_for_price(page, ltp_id)
    assert 10_000 < ltp < 60_000, ltp
    wait_until(page, TEXT_CHANGED, [ltp_id, text_of(page, ltp_id)], LIVE_DATA_MS, f"#{ltp_id} changes")
    figure(text_of(page, ltp_id))

    # Picked, its five-level book fills the depth panel, over the socket (no page load).
    page.locator(f"#wl-{future} .wl-select").click()
    page.wait_for_selector(f"#depth[data-token='{future}']", state="attached")
    assert future_symbol in text_of(page, "depth")
    bid, ask = wait_for_price(page, "depth-buy-0-price"), wait_for_price(page, "depth-sell-0-price")
    last = figure(text_of(page, ltp_id))
    assert bid < ask, (bid, ask)
    assert abs(bid - last) < 0.01 * last and abs(ask - last) < 0.01 * last, (bid, ask, last)
    assert page.evaluate("window.notReloaded === true") and urlsplit(page.url).query == "", page.url

    # Removed, its row goes and the panel falls back to what is left.
    page.locator(f"#wl-{future}").get_by_role("button", name="Remove").click()
    page.wait_for_selector(f"#wl-{future}", state="detached")
    page.wait_for_selector(f"#depth[data-token='{index}']", state="attached")
    assert page.locator("#wl-message").inner_text().startswith("Removed"), text_of(page, "wl-message")
    page.locator(f"#wl-{index}").get_by_role("button", name="Remove").click()
    page.wait_for_selector(f"#wl-{index}", state="detached")
    assert page.locator("#watchlist tbody tr").count() == 0
    assert page.errors == []


def test_the_accounts_page_lists_the_paper_account(desktop):
    page = desktop
    open_live(page, "/accounts/")
    assert page.get_by_text("Paper").first.is_visible()
    assert page.errors == []


# -- Screenshots, for a person to look at ---------------------------------------------------------


# Only a box of its own may scroll sideways (the chain's table scrolls inside .chain-wrap), never the page.
SIDEWAYS = """() => ({
  scrollWidth: document.documentElement.scrollWidth,
  innerWidth: window.innerWidth,
  widest: Array.from(document.body.querySelectorAll("*"))
    .filter((element) => element.getBoundingClientRect().right > window.innerWidth + 0.5)
    .slice(0, 5)
    .map((element) => element.tagName + (element.id ? "#" + element.id : "") + "." + element.className),
})"""


@pytest.mark.parametrize("name", PAGES)
def test_screenshots(viewport_page, name):
    """Each page at a desktop's and a phone's width: a screenshot of it populated, and no sideways scroll."""
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
    if name == "watchlist":
        watch_nearest_future(page)  # a list with live quotes and a depth panel, not an empty page
    ARTIFACTS.mkdir(exist_ok=True)
    file = ARTIFACTS / f"{name}-{page.viewport.size}.png"
    page.screenshot(path=file, full_page=True)
    assert file.stat().st_size > 0
    width = page.evaluate(SIDEWAYS)
    assert width["scrollWidth"] <= width["innerWidth"], f"{path} scrolls sideways at {page.viewport.size}: {width}"
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


# -- A stopped feed: on a feed and a daphne of the test's own ------------------------------------


def test_when_the_feed_stops_the_page_says_stale_with_the_time_of_its_last_data(stack, browser, signed_in_state):
    """Nothing keeps pretending to be live. The test's own feed publishes on a channel layer prefix
    of its own, so the module's feed, which the other tests need, runs on undisturbed."""
    web, feed = stack.own_feed("stop")
    context = new_context(browser, DESKTOP, web.url, storage_state=signed_in_state)
    try:
        page = context.new_page()
        page.errors = PageErrors(page)
        page.goto("/", wait_until="domcontentloaded")
        wait_for_state(page, "live", FEED_START_MS)
        tile = f"tile-{SYMBOL}-spot"
        wait_until(page, "(id) => /\\d/.test(document.getElementById(id).textContent)", tile, LIVE_DATA_MS, tile)

        stopped_at = dt.datetime.now(tz=IST)
        feed.stop()  # SIGTERM, and wait for it to exit
        assert feed.popen.returncode == 0, feed.describe()
        wait_for_state(page, "stale", STALE_MS)

        label = text_of(page, "conn")
        shown = re.search(r"last data (\d{2}):(\d{2}):(\d{2})", label)
        assert shown, f"the indicator does not say when the data stopped: {label!r}"
        hours, minutes, seconds = (int(part) for part in shown.groups())
        # The time the page last heard of the feed (its "stopped" report): now, in IST, give or take.
        since = (stopped_at.hour * 3600 + stopped_at.minute * 60 + stopped_at.second) - (
            hours * 3600 + minutes * 60 + seconds
        )
        assert -3 <= (since + 43_200) % 86_400 - 43_200 <= 2, (label, f"stopped at {stopped_at:%H:%M:%S}")

        # And it stays so: the quotes have stopped and the indicator does not come back to "live".
        spot = text_of(page, tile)
        with pytest.raises(PlaywrightTimeout):
            page.wait_for_selector("#conn[data-state=live]", state="attached", timeout=2_000)
        assert text_of(page, tile) == spot
        assert page.errors == []
    finally:
        context.close()
        web.stop()
        feed.stop()
