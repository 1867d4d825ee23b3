"""/watchlist/: each user's instruments with live quotes, search as you type, add and remove, and the
market depth of the picked instrument; its socket through the real Redis channel layer, fed by the
feed's own publisher."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
import pytest_asyncio
import redis
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections
from django.test import Client

from instruments.models import Instrument
from marketdata import selectors, services
from marketdata.consumers import UNAUTHENTICATED_CLOSE_CODE
from marketdata.consumers.watchlist import WatchlistPageConsumer
from marketdata.feed.publisher import Publisher
from marketdata.feed.state import FeedState
from marketdata.fragments.html import LiveCell, SentCells
from marketdata.fragments.watchlist import (
    Selection,
    choose_selection,
    depth_cells,
    depth_panel,
    parse_token,
    quote_cells,
)
from marketdata.groups import tick_key
from marketdata.kite import build_frame, parse_frame
from marketdata.models import WatchlistEntry
from trading_site import clock
from trading_site.asgi import application

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = [(b"origin", b"http://localhost")]
HTMX = {"HX-Request": "true"}
MINUS = "\N{MINUS SIGN}"  # the fragments' sign of a fall (marketdata.fragments.html.signed)
# Made-up tokens: Redis pub/sub ignores the database number, so a feed running elsewhere on this
# Redis (the demo master's real NIFTY 256265, say) would reach these sockets too.
NIFTY_INDEX = 7777 << 8 | 9  # an NSE index (segment code 9)


def nfo_token(number: int) -> int:
    return number << 8 | 2  # Kite's NFO segment code in the low byte


CALL, PUT, FUTURE = nfo_token(7001), nfo_token(7002), nfo_token(7003)
TOKENS = (NIFTY_INDEX, CALL, PUT, FUTURE)


def option(token: int, symbol: str, *, kind: str = "CE", days: int = 7, strike: int = 26000, **extra) -> Instrument:
    return Instrument.objects.create(
        instrument_token=token,
        exchange_token=token >> 8,
        tradingsymbol=symbol,
        name="NIFTY",
        expiry=clock.today() + dt.timedelta(days=days),
        strike=strike,
        lot_size=65,
        tick_size="0.05",
        instrument_type=kind,
        segment="NFO-OPT" if kind in ("CE", "PE") else "NFO-FUT",
        exchange="NFO",
        **extra,
    )


def nifty_index() -> Instrument:
    return Instrument.objects.create(
        instrument_token=NIFTY_INDEX,
        exchange_token=7777,
        tradingsymbol="NIFTY 50",
        name="NIFTY 50",
        instrument_type="EQ",
        segment="INDICES",
        exchange="NSE",
    )


@pytest.fixture
def market(db) -> dict[str, Instrument]:
    """The NIFTY index, a future, a call and a put, none with a tick in Redis yet."""
    redis.Redis.from_url(settings.REDIS_URL).delete(*(tick_key(t) for t in TOKENS))
    return {
        "index": nifty_index(),
        "future": option(FUTURE, "NIFTY26DECFUT", kind="FUT", days=30, strike=0),
        "call": option(CALL, "NIFTY26D0126000CE"),
        "put": option(PUT, "NIFTY26D0126000PE", kind="PE"),
    }


def full_tick(token: int, last: float, *, close: float = 100.0, bid_step: float = 0.05, **changes) -> dict:
    """A full-mode tick as Kite sends it: five levels a side, quoted `bid_step` apart."""
    tick = {
        "instrument_token": token,
        "mode": "full",
        "last_price": last,
        "volume_traded": 1_250_000,
        "oi": 375_000,
        "total_buy_quantity": 9_000,
        "total_sell_quantity": 7_250,
        "ohlc": {"open": close, "high": last + 1, "low": close - 1, "close": close},
        "exchange_timestamp": 1_795_000_000,
        "depth": {
            "buy": [
                {"quantity": 750 * (n + 1), "price": round(last - bid_step * (n + 1), 2), "orders": n + 1}
                for n in range(5)
            ],
            "sell": [
                {"quantity": 650 * (n + 1), "price": round(last + bid_step * (n + 1), 2), "orders": n + 2}
                for n in range(5)
            ],
        },
    }
    tick.update(changes)
    return tick


async def _nowhere(group: str, message: dict) -> None:
    """A group send for tests that only need the feed's Redis writes."""


class Feed:
    """The feed's publisher: ticks in, Redis's latest values and instrument.<token> messages out."""

    def __init__(self, *, group_send=None) -> None:
        self.state = FeedState(capacity=16)
        self.publisher = Publisher(state=self.state, group_send=group_send or get_channel_layer().group_send)
        self.publisher.watched_tokens = set(TOKENS)

    async def publish(self, ticks: list[dict]) -> None:
        self.publisher.redis = aioredis.Redis.from_url(settings.REDIS_URL)
        try:
            self.state.add(tick["instrument_token"] for tick in ticks)
            self.state.apply(parse_frame(build_frame(ticks)))
            await self.publisher.publish_changes()
        finally:
            await self.publisher.redis.aclose()


def store_latest(ticks: list[dict]) -> None:
    """Put ticks in Redis as the feed does (for pages drawn from the latest values)."""
    asyncio.run(Feed(group_send=_nowhere).publish(ticks))


# -- HTML -----------------------------------------------------------------------------------------
@dataclass
class Element:
    tag: str
    attrs: dict
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts).strip()

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())


class Elements(HTMLParser):
    """Every element with an id, and the ids of the top-level ones (the swaps of a socket message)."""

    VOID = frozenset({"input", "meta", "link", "br", "img", "hr"})

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, Element] = {}
        self.top: list[str] = []
        self._open: list[Element] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        element = Element(tag, dict(attrs))
        if "id" in element.attrs:
            self.by_id[element.attrs["id"]] = element
            if not self._open:
                self.top.append(element.attrs["id"])
        if tag not in self.VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.parts.append(data)

    def text(self, element_id: str) -> str:
        return self.by_id[element_id].text


def texts(html: str, *ids: str) -> list[str]:
    found = Elements(html)
    return [found.text(i) for i in ids]


# -- the model and its services -----------------------------------------------------------------
def test_a_user_adds_an_instrument_once(market, alice):
    entry = services.watchlist_entry_add(user=alice, instrument_token=CALL)
    assert (entry.user, entry.instrument) == (alice, market["call"])
    assert str(entry) == "NFO:NIFTY26D0126000CE on alice's watchlist"

    with pytest.raises(services.WatchlistError) as refused:
        services.watchlist_entry_add(user=alice, instrument_token=CALL)
    assert str(refused.value) == "NFO:NIFTY26D0126000CE is already on your watchlist."
    assert WatchlistEntry.objects.filter(user=alice).count() == 1


def test_unknown_and_expired_instruments_cannot_be_added(market, alice):
    option(nfo_token(7100), "NIFTY25N1826000CE", days=-3)
    option(nfo_token(7101), "NIFTY26D0126100CE", strike=26100, active=False)
    expected = {
        nfo_token(9999): "No instrument has the token 2559746.",
        nfo_token(7100): "NFO:NIFTY25N1826000CE has expired or left the instrument master: it cannot be watched.",
        nfo_token(7101): "NFO:NIFTY26D0126100CE has expired or left the instrument master: it cannot be watched.",
    }
    for token, message in expected.items():
        with pytest.raises(services.WatchlistError) as refused:
            services.watchlist_entry_add(user=alice, instrument_token=token)
        assert str(refused.value) == message
    assert not WatchlistEntry.objects.exists()


def test_a_watchlist_holds_at_most_fifty_instruments(market, alice, bob):
    for number in range(WatchlistEntry.MAX_PER_USER):
        option(nfo_token(8000 + number), f"NIFTY26D08{24000 + number * 50}CE", days=14, strike=24000 + number * 50)
        services.watchlist_entry_add(user=alice, instrument_token=nfo_token(8000 + number))

    with pytest.raises(services.WatchlistError) as refused:
        services.watchlist_entry_add(user=alice, instrument_token=CALL)
    assert str(refused.value) == "Your watchlist is full (50 instruments): remove one before adding another."
    assert WatchlistEntry.objects.filter(user=alice).count() == 50
    # Alice's full list is hers alone: Bob still adds.
    services.watchlist_entry_add(user=bob, instrument_token=CALL)


def test_bob_cannot_remove_an_instrument_from_alices_watchlist(market, alice, bob):
    services.watchlist_entry_add(user=alice, instrument_token=CALL)
    with pytest.raises(services.WatchlistError) as refused:
        services.watchlist_entry_remove(user=bob, instrument_token=CALL)
    assert str(refused.value) == f"The token {CALL} is not on your watchlist."
    assert list(WatchlistEntry.objects.values_list("user__username", "instrument__tradingsymbol")) == [
        ("alice", "NIFTY26D0126000CE")
    ]

    assert services.watchlist_entry_remove(user=alice, instrument_token=CALL) == market["call"]
    assert not WatchlistEntry.objects.exists()


def test_entries_come_in_the_order_they_were_added(market, alice, bob):
    for token in (PUT, NIFTY_INDEX, CALL):
        services.watchlist_entry_add(user=alice, instrument_token=token)
    services.watchlist_entry_add(user=bob, instrument_token=FUTURE)
    assert [e.instrument.instrument_token for e in selectors.watchlist_entries(alice)] == [PUT, NIFTY_INDEX, CALL]


# -- search ---------------------------------------------------------------------------------------
def test_search_finds_by_prefix_in_any_case_index_and_future_first(market):
    for number in range(25):
        option(nfo_token(8100 + number), f"NIFTY26D01{24000 + number * 50}CE", strike=24000 + number * 50)
    option(nfo_token(7100), "NIFTY25N1826000CE", days=-1)  # expired yesterday
    option(nfo_token(7101), "NIFTY26D0126100PE", kind="PE", strike=26100, active=False)

    found = selectors.watchlist_search("  nifty ")
    symbols = [i.tradingsymbol for i in found]
    assert len(found) == selectors.WATCHLIST_SEARCH_LIMIT == 20
    assert symbols[:4] == ["NIFTY 50", "NIFTY26DECFUT", "NIFTY26D0124000CE", "NIFTY26D0124050CE"]
    assert "NIFTY25N1826000CE" not in symbols and "NIFTY26D0126100PE" not in symbols


def test_search_narrows_by_symbol_and_finds_a_token(market):
    option(nfo_token(7100), "NIFTY25N1826000CE", days=-1)
    assert [i.tradingsymbol for i in selectors.watchlist_search("nifty26d0126")] == [
        "NIFTY26D0126000CE",
        "NIFTY26D0126000PE",
    ]
    assert [i.tradingsymbol for i in selectors.watchlist_search(str(PUT))] == ["NIFTY26D0126000PE"]
    assert selectors.watchlist_search("NIFTY25N18") == []  # only an expired contract starts so
    assert selectors.watchlist_search("   ") == []


# -- fragments ------------------------------------------------------------------------------------
QUOTE = {
    "instrument_token": CALL,
    "last_price": 26012.35,
    "change": -1.2049,
    "bid": 26012.3,
    "ask": 26012.4,
    "volume_traded": 1_250_000,
    "oi": 37_500,
}


def test_quote_cells_have_stable_ids_and_indian_formatting():
    cells = quote_cells(CALL, QUOTE)
    assert [(c.element_id, c.text) for c in cells] == [
        (f"wl-{CALL}-ltp", "26,012.35"),
        (f"wl-{CALL}-chg", f"{MINUS}1.20%"),
        (f"wl-{CALL}-bid", "26,012.30"),
        (f"wl-{CALL}-ask", "26,012.40"),
        (f"wl-{CALL}-vol", "12.50L"),
        (f"wl-{CALL}-oi", "37,500"),
    ]
    assert cells[1].html() == f'<span id="wl-{CALL}-chg" class="neg">{MINUS}1.20%</span>'
    assert (
        quote_cells(CALL, {**QUOTE, "change": 0.456})[1].html() == f'<span id="wl-{CALL}-chg" class="pos">+0.46%</span>'
    )


def test_what_is_not_known_is_a_dash():
    assert [c.text for c in quote_cells(CALL, None)] == ["—"] * 6
    # No trade yet and an empty book: Kite sends zeros, which are not prices.
    empty = {"last_price": 0.0, "change": -100.0, "bid": 0.0, "ask": 0.0, "volume_traded": 0, "oi": 0}
    assert [c.text for c in quote_cells(CALL, empty)] == ["—", "—", "—", "—", "0", "0"]


def test_depth_cells_read_five_levels_a_side_and_the_totals():
    tick = full_tick(CALL, 101.5)
    tick["depth"]["sell"][4] = {"quantity": 0, "price": 0.0, "orders": 0}  # an empty level
    by_id = {c.element_id: c.text for c in depth_cells(tick)}
    assert len(by_id) == 32
    assert [by_id[f"depth-buy-0-{f}"] for f in ("price", "quantity", "orders")] == ["101.45", "750", "1"]
    assert [by_id[f"depth-buy-4-{f}"] for f in ("price", "quantity", "orders")] == ["101.25", "3,750", "5"]
    assert [by_id[f"depth-sell-0-{f}"] for f in ("price", "quantity", "orders")] == ["101.55", "650", "2"]
    assert [by_id[f"depth-sell-4-{f}"] for f in ("price", "quantity", "orders")] == ["—", "—", "—"]
    assert (by_id["depth-total-buy"], by_id["depth-total-sell"]) == ("9,000", "7,250")


def test_the_depth_of_a_stored_tick_is_its_best_bid_and_ask():
    stored = {"bid": 101.45, "bid_quantity": 750, "ask": 101.55, "ask_quantity": 650, "total_buy_quantity": 9000}
    by_id = {c.element_id: c.text for c in depth_cells(stored)}
    assert [by_id[f"depth-buy-0-{f}"] for f in ("price", "quantity", "orders")] == ["101.45", "750", "—"]
    assert [by_id[f"depth-sell-0-{f}"] for f in ("price", "quantity")] == ["101.55", "650"]
    assert by_id["depth-buy-1-price"] == by_id["depth-total-sell"] == "—"


def test_the_depth_panel_is_one_section_swapped_whole():
    panel = depth_panel(Selection(CALL, "NFO:<NIFTY>"), full_tick(CALL, 101.5), swap=True)
    assert panel.startswith(f'<section id="depth" class="card depth" data-token="{CALL}" hx-swap-oob="true">')
    found = Elements(panel)
    assert found.top == ["depth"]
    assert "NFO:&lt;NIFTY&gt;" in panel  # the label is escaped
    assert (found.text("depth-buy-0-price"), found.text("depth-sell-2-orders")) == ("101.45", "4")
    assert "hx-swap-oob" not in panel.removeprefix(panel[: panel.index(">") + 1])  # cells inside are plain

    empty = depth_panel(None, None)
    assert empty.startswith('<section id="depth" class="card depth">') and "Add an instrument" in empty


def test_the_fragments_import_no_django():
    """The same functions draw the page and the socket's updates; they stay plain Python."""
    code = "import sys, marketdata.fragments.watchlist; print(sorted(m for m in sys.modules if m.startswith('django')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"


def test_only_a_plain_number_is_a_token():
    assert [parse_token(v) for v in ("1792258", " 42 ", 1792258)] == [1792258, 42, 1792258]
    for bad in ("abc", "", "0", "-5", "1.5", "²", "9" * 13, True, None, ["1"]):
        assert parse_token(bad) is None, bad


def test_the_depth_panel_shows_the_instrument_asked_for_if_listed_else_the_first():
    assert choose_selection(PUT, [CALL, PUT]) == PUT
    assert choose_selection(FUTURE, [CALL, PUT]) == CALL
    assert choose_selection(None, [PUT]) == PUT
    assert choose_selection(CALL, []) is None


def test_only_cells_whose_text_changed_are_sent_again_flashing_their_direction():
    sent = SentCells()
    first = sent.changed(quote_cells(CALL, QUOTE))
    assert len(first) == 6 and all('hx-swap-oob="true"' in f for f in first)
    assert "up" not in Elements(first[0]).by_id[f"wl-{CALL}-ltp"].classes  # nothing to compare with yet
    assert sent.changed(quote_cells(CALL, QUOTE)) == []

    up = sent.changed(quote_cells(CALL, {**QUOTE, "last_price": 26012.40}))
    assert up == [f'<span id="wl-{CALL}-ltp" hx-swap-oob="true" class="up">26,012.40</span>']
    down = sent.changed(quote_cells(CALL, {**QUOTE, "last_price": 26000.0, "bid": 25999.95}))
    assert [Elements(f).top[0] for f in down] == [f"wl-{CALL}-ltp", f"wl-{CALL}-bid"]
    assert all("dn" in Elements(f).by_id[Elements(f).top[0]].classes for f in down)

    # A redrawn page: everything goes again, and a changed number still flashes its way.
    sent.forget_texts("wl-")
    again = sent.changed(quote_cells(CALL, {**QUOTE, "last_price": 26001.0, "bid": 25999.95}))
    assert len(again) == 6 and 'class="up">26,001.00<' in again[0]
    assert sent.changed([LiveCell("depth-total-buy", "9,000", 9000)]) != []


# -- the page -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/watchlist/"), ("get", "/watchlist/search/?q=NIFTY"), ("post", "/watchlist/add/")],
)
def test_an_anonymous_visitor_is_sent_to_log_in(client, db, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/watchlist/")


def test_the_page_shows_each_users_own_list_with_quotes_from_redis(client, market, alice, bob):
    services.watchlist_entry_add(user=alice, instrument_token=CALL)
    services.watchlist_entry_add(user=alice, instrument_token=PUT)
    services.watchlist_entry_add(user=bob, instrument_token=FUTURE)
    store_latest([full_tick(CALL, 101.5)])
    client.force_login(alice)

    page = client.get("/watchlist/").content.decode()
    found = Elements(page)
    assert f'<td class="num"><span id="wl-{CALL}-ltp">101.50</span></td>' in page
    assert texts(page, f"wl-{CALL}-chg", f"wl-{CALL}-bid", f"wl-{CALL}-ask", f"wl-{CALL}-vol", f"wl-{CALL}-oi") == [
        "+1.50%",
        "101.45",
        "101.55",
        "12.50L",
        "3.75L",
    ]
    assert [found.text(f"wl-{PUT}-{f}") for f in ("ltp", "chg", "vol")] == ["—", "—", "—"]  # no tick yet
    assert f"wl-{FUTURE}" not in found.by_id  # Bob's
    assert "2 of 50" in found.text("wl-title")
    # The first instrument's depth, as far as Redis knows it (the best level), and the socket told so.
    assert found.by_id["depth"].attrs["data-token"] == str(CALL)
    assert (found.text("depth-buy-0-price"), found.text("depth-buy-0-quantity"), found.text("depth-buy-1-price")) == (
        "101.45",
        "750",
        "—",
    )
    assert f'ws-connect="/ws/ui/watchlist/?select={CALL}"' in page
    assert found.by_id["wl-resubscribe"].attrs["hx-trigger"] == "watchlist-changed from:body"


def test_select_picks_the_depth_panels_instrument_without_javascript(client, market, alice):
    for token in (CALL, PUT):
        services.watchlist_entry_add(user=alice, instrument_token=token)
    client.force_login(alice)
    found = Elements(client.get(f"/watchlist/?select={PUT}").content.decode())
    assert found.by_id["depth"].attrs["data-token"] == str(PUT)
    assert "NFO:NIFTY26D0126000PE" in found.text("depth")
    # Not on the list, or not a token: the first instrument.
    for select in (FUTURE, "abc"):
        found = Elements(client.get(f"/watchlist/?select={select}").content.decode())
        assert found.by_id["depth"].attrs["data-token"] == str(CALL)


def test_search_answers_htmx_with_the_results_and_a_plain_request_with_the_page(client, market, alice):
    services.watchlist_entry_add(user=alice, instrument_token=CALL)
    client.force_login(alice)

    fragment = client.get("/watchlist/search/", {"q": "nifty26d01"}, headers=HTMX).content.decode()
    found = Elements(fragment)
    assert found.top == ["wl-results"] and "<html" not in fragment
    rows = re.findall(r"<tr>\s*<td>(\S+) <span", fragment)
    assert rows == ["NIFTY26D0126000CE", "NIFTY26D0126000PE"]
    assert "On your list" in fragment and f'name="token" value="{PUT}"' in fragment
    assert f'name="token" value="{CALL}"' not in fragment  # already added: no Add button

    page = client.get("/watchlist/search/", {"q": "nifty26d01"}).content.decode()
    assert page.startswith("<!doctype html>") and 'value="nifty26d01"' in page and "NIFTY26D0126000PE" in page
    assert (
        "No active instrument starts with “ZZZ”."
        in client.get("/watchlist/search/?q=ZZZ", headers=HTMX).content.decode()
    )


def test_adding_with_htmx_returns_the_list_and_tells_the_socket(client, market, alice):
    client.force_login(alice)
    response = client.post("/watchlist/add/", {"token": str(PUT), "q": "NIFTY"}, headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Trigger"] == "watchlist-changed"
    found = Elements(response.content.decode())
    assert found.top == ["watchlist"]
    assert found.text("wl-message") == "Added NFO:NIFTY26D0126000PE."
    assert f"wl-{PUT}-ltp" in found.by_id

    response = client.post(f"/watchlist/{PUT}/remove/", headers=HTMX)
    assert (response.status_code, response["HX-Trigger"]) == (200, "watchlist-changed")
    assert Elements(response.content.decode()).text("wl-message") == "Removed NFO:NIFTY26D0126000PE."
    assert not WatchlistEntry.objects.exists()


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("abc", "Pick an instrument from the search results to add it."),
        ("", "Pick an instrument from the search results to add it."),
        ("99999999999999999999", "Pick an instrument from the search results to add it."),
        (str(nfo_token(9999)), "No instrument has the token 2559746."),
        (str(CALL), "NFO:NIFTY26D0126000CE is already on your watchlist."),
    ],
)
def test_a_refused_add_is_a_400_with_its_reason(client, market, alice, token, message):
    services.watchlist_entry_add(user=alice, instrument_token=CALL)
    client.force_login(alice)
    response = client.post("/watchlist/add/", {"token": token}, headers=HTMX)
    assert response.status_code == 400
    assert (response["HX-Retarget"], response["HX-Reswap"]) == ("#wl-message", "outerHTML")
    assert "HX-Trigger" not in response
    assert Elements(response.content.decode()).text("wl-message") == message
    assert WatchlistEntry.objects.filter(user=alice).count() == 1


def test_a_refused_remove_is_a_400_and_leaves_others_lists_alone(client, market, alice, bob):
    services.watchlist_entry_add(user=alice, instrument_token=CALL)
    client.force_login(bob)
    response = client.post(f"/watchlist/{CALL}/remove/", headers=HTMX)
    assert response.status_code == 400
    assert Elements(response.content.decode()).text("wl-message") == f"The token {CALL} is not on your watchlist."
    response = client.post("/watchlist/99999999999999999999/remove/", headers=HTMX)
    assert response.status_code == 400
    assert WatchlistEntry.objects.filter(user=alice).count() == 1
    assert client.post("/watchlist/abc/remove/").status_code == 404  # not a URL of the page


def test_without_javascript_add_and_remove_redirect_back_with_a_message(client, market, alice):
    client.force_login(alice)
    response = client.post("/watchlist/add/", {"token": str(PUT), "q": "NIFTY26"})
    assert (response.status_code, response["Location"]) == (302, "/watchlist/?q=NIFTY26")
    page = client.get(response["Location"]).content.decode()
    assert "Added NFO:NIFTY26D0126000PE." in page and f'id="wl-{PUT}"' in page

    response = client.post("/watchlist/add/", {"token": str(PUT)})
    assert response["Location"] == "/watchlist/"
    assert "NFO:NIFTY26D0126000PE is already on your watchlist." in client.get("/watchlist/").content.decode()

    client.post(f"/watchlist/{PUT}/remove/")
    assert "Removed NFO:NIFTY26D0126000PE." in client.get("/watchlist/").content.decode()
    assert client.get("/watchlist/add/").status_code == 405


def test_add_and_remove_need_the_csrf_token(market, alice):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    assert browser.post("/watchlist/add/", {"token": str(PUT)}, headers=HTMX).status_code == 403
    assert not WatchlistEntry.objects.exists()

    page = browser.get("/watchlist/?q=NIFTY26D01").content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = browser.post("/watchlist/add/", {"token": str(PUT), "csrfmiddlewaretoken": csrf}, headers=HTMX)
    assert response.status_code == 200
    assert browser.post(f"/watchlist/{PUT}/remove/", headers=HTMX).status_code == 403
    assert WatchlistEntry.objects.filter(user=alice).count() == 1


# -- the socket -----------------------------------------------------------------------------------
@pytest_asyncio.fixture
async def database(transactional_db):
    """The database, for tests whose sockets reach it through database_sync_to_async."""
    yield
    # Those calls run on asgiref's one worker thread, whose connection would outlive the test.
    await sync_to_async(connections.close_all)()


async def page_socket(user, path: str = "/ws/ui/watchlist/") -> WebsocketCommunicator:
    socket = WebsocketCommunicator(WatchlistPageConsumer.as_asgi(), path)
    socket.scope["user"] = user
    assert (await socket.connect())[0]
    return socket


async def next_with(socket: WebsocketCommunicator, element_id: str, timeout: float = 5.0) -> Elements:
    """The next message that swaps `element_id` (messages before it are dropped)."""
    deadline = time.monotonic() + timeout
    while True:
        found = Elements(await socket.receive_from(timeout=max(deadline - time.monotonic(), 0.01)))
        if element_id in found.top:
            return found
        assert time.monotonic() < deadline, f"no message swapped {element_id}"


def data_ids(found: Elements) -> set[str]:
    """What a message swapped, besides the connection indicator and the clock every page gets."""
    return set(found.top) - {"conn", "market-clock"}


@pytest.mark.asyncio
async def test_an_anonymous_socket_is_closed_with_4401():
    socket = WebsocketCommunicator(application, "/ws/ui/watchlist/", headers=ORIGIN)
    assert (await socket.connect())[0]
    assert 'data-state="signed-out"' in await socket.receive_from(timeout=5)
    closed = await socket.receive_output(timeout=5)
    assert (closed["type"], closed["code"]) == ("websocket.close", UNAUTHENTICATED_CLOSE_CODE)
    await socket.disconnect()


@pytest.mark.asyncio
async def test_the_socket_pushes_quotes_depth_and_follows_the_list(database, alice):
    await sync_to_async(nifty_index)()
    for token, symbol, kind in ((CALL, "NIFTY26D0126000CE", "CE"), (PUT, "NIFTY26D0126000PE", "PE")):
        await sync_to_async(option)(token, symbol, kind=kind)
    await sync_to_async(redis.Redis.from_url(settings.REDIS_URL).delete)(*(tick_key(t) for t in TOKENS))
    for token in (CALL, PUT):
        await sync_to_async(services.watchlist_entry_add)(user=alice, instrument_token=token)
    feed = Feed()
    socket = await page_socket(alice)

    # The first flush draws the depth panel of the first instrument, empty until a tick comes.
    found = await next_with(socket, "depth")
    assert found.by_id["depth"].attrs["data-token"] == str(CALL)
    assert found.text("depth-buy-0-price") == "—"

    # The feed's ticks reach the instrument groups; the changed cells come out.
    await feed.publish([full_tick(CALL, 101.5), full_tick(PUT, 88.0, close=80.0)])
    found = await next_with(socket, f"wl-{CALL}-ltp")
    assert [found.text(f"wl-{CALL}-{f}") for f in ("ltp", "chg", "bid", "ask", "vol", "oi")] == [
        "101.50",
        "+1.50%",
        "101.45",
        "101.55",
        "12.50L",
        "3.75L",
    ]
    assert [found.text(f"wl-{PUT}-{f}") for f in ("ltp", "chg")] == ["88.00", "+10.00%"]
    assert found.by_id[f"wl-{CALL}-ltp"].attrs["hx-swap-oob"] == "true"
    assert (found.text("depth-buy-0-price"), found.text("depth-sell-4-quantity")) == ("101.45", "3,250")
    assert "depth-total-buy" in found.top and "depth" not in found.top  # the panel's cells, not the panel

    # Picking the put (the row's button, through ws-send) swaps the whole panel to it.
    await socket.send_json_to({"select": str(PUT), "HEADERS": {"HX-Request": "true", "HX-Trigger": None}})
    found = await next_with(socket, "depth")
    assert found.by_id["depth"].attrs["data-token"] == str(PUT)
    assert (found.text("depth-buy-0-price"), found.text("depth-buy-0-orders")) == ("87.95", "1")
    assert "NFO:NIFTY26D0126000PE" in found.text("depth")

    # Then only what changed. The book widens: the best bid stays at 87.95 (88.05 - 0.10), the
    # levels behind it fall, the asks rise; sizes, orders, volume and OI stay as they were.
    await feed.publish([full_tick(PUT, 88.05, close=80.0, bid_step=0.10)])
    found = await next_with(socket, f"wl-{PUT}-ltp")
    changed = data_ids(found)
    assert changed == {
        f"wl-{PUT}-ltp",
        f"wl-{PUT}-chg",
        f"wl-{PUT}-ask",
        *(f"depth-buy-{level}-price" for level in range(1, 5)),
        *(f"depth-sell-{level}-price" for level in range(5)),
    }
    assert (found.text(f"wl-{PUT}-ltp"), found.text(f"wl-{PUT}-chg")) == ("88.05", "+10.06%")
    assert "up" in found.by_id[f"wl-{PUT}-ltp"].classes
    assert found.text("depth-buy-1-price") == "87.85" and "dn" in found.by_id["depth-buy-1-price"].classes
    assert found.text("depth-sell-0-price") == "88.15" and "up" in found.by_id["depth-sell-0-price"].classes

    # Added over HTTP: the page says so, and the socket joins the new instrument's group.
    await sync_to_async(services.watchlist_entry_add)(user=alice, instrument_token=NIFTY_INDEX)
    await socket.send_json_to({"watchlist": "changed", "HEADERS": {"HX-Request": "true"}})
    found = await next_with(socket, f"wl-{CALL}-ltp")  # the redrawn list gets every row again
    index_tick = {"instrument_token": NIFTY_INDEX, "mode": "full", "last_price": 26012.35}
    index_tick |= {"ohlc": {"open": 26000, "high": 26020, "low": 25990, "close": 26100.0}}
    index_tick |= {"exchange_timestamp": 1_795_000_000}
    await asyncio.sleep(0.3)  # a Redis subscription takes effect a moment after it is made
    await feed.publish([index_tick])
    found = await next_with(socket, f"wl-{NIFTY_INDEX}-ltp")
    assert [found.text(f"wl-{NIFTY_INDEX}-{f}") for f in ("ltp", "chg", "bid")] == ["26,012.35", f"{MINUS}0.34%", "—"]

    # Removed: its ticks no longer come, and the panel falls back to the first instrument left.
    await sync_to_async(services.watchlist_entry_remove)(user=alice, instrument_token=PUT)
    await socket.send_json_to({"watchlist": "changed"})
    found = await next_with(socket, "depth")
    assert found.by_id["depth"].attrs["data-token"] == str(CALL)
    await feed.publish([full_tick(PUT, 90.0, close=80.0)])
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if await socket.receive_nothing(timeout=0.3):
            continue
        assert not any(i.startswith(f"wl-{PUT}") for i in Elements(await socket.receive_from()).top)
    await socket.disconnect()


@pytest.mark.asyncio
async def test_selecting_an_instrument_not_on_the_list_changes_nothing(database, alice, bob):
    await sync_to_async(option)(CALL, "NIFTY26D0126000CE")
    await sync_to_async(option)(PUT, "NIFTY26D0126000PE", kind="PE")
    await sync_to_async(services.watchlist_entry_add)(user=alice, instrument_token=CALL)
    await sync_to_async(services.watchlist_entry_add)(user=bob, instrument_token=PUT)
    socket = await page_socket(alice, f"/ws/ui/watchlist/?select={PUT}")
    found = await next_with(socket, "depth")
    assert found.by_id["depth"].attrs["data-token"] == str(CALL)
    for message in ({"select": str(PUT)}, {"select": "abc"}, {"select": ["x"]}):
        await socket.send_json_to(message)
    await socket.send_to(text_data="not json")
    deadline = time.monotonic() + 0.8
    while time.monotonic() < deadline:
        if not await socket.receive_nothing(timeout=0.2):
            assert "depth" not in Elements(await socket.receive_from()).top
    await socket.disconnect()


@pytest.mark.asyncio
async def test_a_new_socket_brings_the_page_up_to_date_from_redis(database, alice):
    """A page drawn a while ago (or a socket reconnecting) gets the latest values at once, not at
    the next tick of each instrument."""
    await sync_to_async(option)(CALL, "NIFTY26D0126000CE")
    await sync_to_async(services.watchlist_entry_add)(user=alice, instrument_token=CALL)
    await Feed(group_send=_nowhere).publish([full_tick(CALL, 101.5)])
    socket = await page_socket(alice)
    found = await next_with(socket, "depth")
    assert data_ids(found) == {"depth", *(f"wl-{CALL}-{f}" for f in ("ltp", "chg", "bid", "ask", "vol", "oi"))}
    assert (found.text(f"wl-{CALL}-ltp"), found.text(f"wl-{CALL}-chg")) == ("101.50", "+1.50%")
    # Redis keeps the best level only: the rest of the book waits for the instrument's group.
    assert (found.text("depth-buy-0-price"), found.text("depth-buy-0-orders")) == ("101.45", "—")
    assert found.text("depth-total-sell") == "7,250"
    await socket.disconnect()
