"""The dashboard `/`: its fragments on hand-made values, the page drawn from Redis, and its socket
(/ws/ui/dashboard/) on the real Redis channel layer, fed the feed's own message shapes."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import itertools
import json
import re
import time

import pytest
import pytest_asyncio
import redis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections
from django.urls import reverse

from instruments.models import BrokerAccount
from marketdata import selectors
from marketdata.consumers import UNAUTHENTICATED_CLOSE_CODE
from marketdata.consumers.dashboard import DashboardPageConsumer
from marketdata.fragments import dashboard as fragments
from marketdata.fragments.html import DASH, SentCells, fixed, percent, price
from marketdata.groups import FEED_STATUS_KEY, chain_group, instrument_group
from tests.market_data import load_demo_market, stream_simulated_market
from trading_site import clock
from trading_site.asgi import application
from trading_site.clock import IST, frozen_clock

ORIGIN = [(b"origin", b"http://localhost")]
MINUS = "\N{MINUS SIGN}"  # the fragments' sign of a fall (marketdata.fragments.html.signed)
MONDAY_MORNING = dt.datetime(2026, 11, 23, 10, 31, 2, tzinfo=IST)
# The socket's own elements besides the page's: the base consumer's indicator and top-bar clock.
BASE_IDS = {"conn", "market-clock"}
_ELEMENT = re.compile(r'<(\w+) id="([^"]+)"([^>]*)>(.*?)</\1>', re.S)


@pytest.fixture(autouse=True)
def own_channel_layer(settings):
    """The real Redis channel layer under a prefix of these tests' own. Redis's pub/sub ignores the
    database number, so a feed running beside the tests (make dev) would otherwise reach their
    sockets through the same group names."""
    settings.CHANNEL_LAYERS = {
        "default": {
            **settings.CHANNEL_LAYERS["default"],
            "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": "desk-test-dashboard:channels"},
        }
    }


def elements(page: str) -> dict[str, tuple[str, str]]:
    """Element id -> (its attributes, its inner HTML), for every element with an id."""
    return {element_id: (attrs, inner) for _, element_id, attrs, inner in _ELEMENT.findall(page)}


def texts(page: str) -> dict[str, str]:
    """Element id -> its text (tags stripped, entities decoded)."""
    return {
        element_id: html.unescape(re.sub(r"<[^>]+>", "", inner)) for element_id, (_, inner) in elements(page).items()
    }


def rows(tbody: str) -> list[list[str]]:
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", td)) for td in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", tbody, re.S)
    ]


def clear_redis() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    client.close()


# -- fragments ----------------------------------------------------------------------------------------
def test_a_tile_shows_spot_change_future_iv_and_pcr_under_stable_ids():
    cells = fragments.tile_cells(
        "BANKNIFTY",
        spot={"last_price": 1234567.5, "close": 1234000.0, "change": 0.046},
        future={"last_price": 1236001.25},
        chain={"summary": {"spot": 1.0, "future": 2.0, "atm_iv": 14.236, "pcr_oi": 1.2349}},
    )
    drawn = {name: live.html() for name, live in cells.items()}
    assert drawn == {
        "spot": '<span id="tile-BANKNIFTY-spot" class="dash-spot num">12,34,567.50</span>',
        "chg": '<span id="tile-BANKNIFTY-chg" class="dash-chg num pos">+567.50 (+0.05%)</span>',
        "future": '<dd id="tile-BANKNIFTY-future" class="num">12,36,001.25</dd>',
        "atm_iv": '<dd id="tile-BANKNIFTY-atm-iv" class="num">14.24%</dd>',
        "pcr": '<dd id="tile-BANKNIFTY-pcr" class="num">1.23</dd>',
    }


def test_a_fall_carries_a_minus_sign_and_missing_values_show_a_dash():
    falling = fragments.tile_cells(
        "NIFTY", spot={"last_price": 25914.5, "close": 26000.0, "change": -0.3288}, future=None, chain=None
    )
    assert falling["chg"].text == f"{MINUS}85.50 ({MINUS}0.33%)"
    assert "neg" in falling["chg"].classes
    assert [falling[name].text for name in ("future", "atm_iv", "pcr")] == [DASH, DASH, DASH]

    # No tick yet: the chain's own spot and future stand in; a zero price (no trade yet) is no price.
    from_chain = fragments.tile_cells(
        "NIFTY", spot={"last_price": 0.0}, future=None, chain={"summary": {"spot": 26010.0, "future": 26090.35}}
    )
    assert (from_chain["spot"].text, from_chain["future"].text, from_chain["chg"].text) == (
        "26,010.00",
        "26,090.35",
        DASH,
    )

    nothing = fragments.tile_cells("M&M", spot=None, future=None, chain=None)
    assert {live.element_id: live.text for live in nothing.values()} == {
        "tile-M_M-spot": DASH,
        "tile-M_M-chg": DASH,
        "tile-M_M-future": DASH,
        "tile-M_M-atm-iv": DASH,
        "tile-M_M-pcr": DASH,
    }


def test_the_feed_card_reads_the_status_and_shows_dashes_without_one():
    status = {
        "state": "running",
        "source": "kite",
        "session": "connected",
        "connections_up": 2,
        "connections_wanted": 3,
        "instruments": 123456,
        "ticks_per_s": 1834.6,
        "lag_ms": 1205,
        "storage_backlog": 4500,
        "ticks_dropped": 0,
        "frame_errors": 2,
        "last_error": None,
    }
    assert {live.element_id: live.text for live in fragments.feed_cells(status).values()} == {
        "feed-state": "running",
        "feed-connections": "2 / 3",
        "feed-instruments": "1,23,456",
        "feed-tps": "1,835",
        "feed-lag": "1,205 ms",
        "feed-backlog": "4,500",
        "feed-dropped": "0",
        "feed-frame-errors": "2",
        "feed-session": "connected",
        "feed-error": DASH,
        "feed-hint": "",
    }
    assert (
        fragments.feed_cells(status)["state"].html()
        == '<span id="feed-state" class="badge feed-running">running</span>'
    )
    without = {live.element_id: live.text for live in fragments.feed_cells(None).values()}
    assert without.pop("feed-hint") == fragments.NO_FEED_HINT and set(without.values()) == {DASH}


def test_the_kite_login_link_shows_only_while_the_session_is_expired_and_to_its_owner():
    expired = {"session": "session expired"}
    assert fragments.kite_login_link(expired, "/accounts/7/kite/login/", swap=True) == (
        '<span id="feed-login" hx-swap-oob="true"><a href="/accounts/7/kite/login/">Log in to Kite</a></span>'
    )
    assert fragments.kite_login_link(expired, None) == '<span id="feed-login"></span>'
    assert (
        fragments.kite_login_link({"session": "connected"}, "/accounts/7/kite/login/")
        == '<span id="feed-login"></span>'
    )
    assert fragments.kite_login_link(None, "/accounts/7/kite/login/") == '<span id="feed-login"></span>'
    assert 'class="error"' in fragments.feed_cells(expired)["session"].html()


def test_the_market_card_says_open_or_closed_and_how_long_until_that_changes():
    session = clock.market_session(MONDAY_MORNING)
    open_cells = fragments.market_cells(MONDAY_MORNING, is_open=session.is_open, next_change=session.next_change)
    assert [live.text for live in open_cells.values()] == [
        "Open",
        "closes in 4h 58m (15:30)",
        "Mon 23 Nov 2026, 10:31 IST",
    ]
    assert open_cells["state"].html() == '<strong id="market-state" class="market-open">Open</strong>'

    friday_evening = dt.datetime(2026, 11, 27, 16, 0, tzinfo=IST)
    session = clock.market_session(friday_evening)
    closed = fragments.market_cells(friday_evening, is_open=session.is_open, next_change=session.next_change)
    assert [live.text for live in closed.values()] == [
        "Closed",
        "opens in 2d 17h 15m (Mon 09:15)",
        "Fri 27 Nov 2026, 16:00 IST",
    ]


def side(symbol: str, oi: int, change: int | None, pct: float | None, buildup: str | None = None) -> dict:
    return {"tradingsymbol": symbol, "oi": oi, "oi_change": change, "oi_change_pct": pct, "buildup": buildup}


def test_oi_movers_are_the_top_five_each_way_by_percent_across_chains():
    nifty = {
        "underlying": "NIFTY",
        "expiry": "2026-11-24",
        "strikes": [
            {
                "strike": 26000.0,
                "ce": side("NIFTY26N2426000CE", 150_000, 25_000, 20.0, "long_buildup"),
                "pe": side("NIFTY26N2426000PE", 300_000, -60_000, -16.67, "long_unwinding"),
            },
            {
                "strike": 26050.0,
                "ce": side("NIFTY26N2426050CE", 90_000, 5_000, 5.88),
                "pe": side("NIFTY26N2426050PE", 80_000, 0, 0.0),
            },
            {"strike": 26100.0, "ce": side("NIFTY26N2426100CE", 50_000, None, None), "pe": None},
        ],
    }
    bank = {
        "underlying": "BANKNIFTY",
        "expiry": "2026-11-25",
        "strikes": [
            {
                "strike": 59000.0,
                "ce": side("BANKNIFTY26N2559000CE", 12_00_000, 6_00_000, 100.0, "short_buildup"),
                "pe": side("BANKNIFTY26N2559000PE", 40_000, -2_000, -4.76, "short_covering"),
            },
            {
                "strike": 59100.0,
                "ce": side("BANKNIFTY26N2559100CE", 70_000, 3_000, 4.48),
                "pe": side("BANKNIFTY26N2559100PE", 60_000, 2_000, 3.45),
            },
            {
                "strike": 59200.0,
                "ce": side("BANKNIFTY26N2559200CE", 55_000, 1_000, 1.85),
                "pe": side("BANKNIFTY26N2559200PE", 20_000, -9_000, -31.03),
            },
        ],
    }
    gainers, losers = fragments.oi_movers([nifty, bank])
    assert [(m.tradingsymbol, m.oi_change_pct) for m in gainers] == [
        ("BANKNIFTY26N2559000CE", 100.0),
        ("NIFTY26N2426000CE", 20.0),
        ("NIFTY26N2426050CE", 5.88),
        ("BANKNIFTY26N2559100CE", 4.48),
        ("BANKNIFTY26N2559100PE", 3.45),
    ]  # the sixth (+1.85%), the unchanged and the unknown are left out
    assert [m.tradingsymbol for m in losers] == ["BANKNIFTY26N2559200PE", "NIFTY26N2426000PE", "BANKNIFTY26N2559000PE"]

    body = fragments.oi_movers_body("oi-gainers", gainers[:2], swap=True)
    assert body.startswith('<tbody id="oi-gainers" hx-swap-oob="true"><tr>')
    assert rows(body) == [
        ["BANKNIFTY26N2559000CE", "12.00L", "+6.00L", "+100.0%", "Short buildup"],
        ["NIFTY26N2426000CE", "1.50L", "+25,000", "+20.0%", "Long buildup"],
    ]
    assert '<a href="/chain/NIFTY/?expiry=2026-11-24">NIFTY26N2426000CE</a>' in body
    assert rows(fragments.oi_movers_body("oi-losers", losers[:1])) == [
        ["BANKNIFTY26N2559200PE", "20,000", f"{MINUS}9,000", f"{MINUS}31.0%", DASH]
    ]
    assert (
        fragments.oi_movers_body("oi-losers", [])
        == '<tbody id="oi-losers"><tr><td colspan="5" class="muted">—</td></tr></tbody>'
    )


def test_only_changed_cells_are_sent_again_flashing_the_way_they_moved():
    sent = SentCells()
    before = fragments.tile_cells(
        "NIFTY", spot={"last_price": 26000.0, "close": 26000.0, "change": 0.0}, future=None, chain=None
    )
    first = sent.changed(before.values())
    assert len(first) == 5 and all('hx-swap-oob="true"' in part for part in first)
    assert not any(" up" in part or " dn" in part for part in first)  # nothing to have moved from
    assert sent.changed(before.values()) == []

    lower = fragments.tile_cells(
        "NIFTY", spot={"last_price": 25990.0, "close": 26000.0, "change": -0.0385}, future=None, chain=None
    )
    assert sent.changed(lower.values()) == [
        '<span id="tile-NIFTY-spot" hx-swap-oob="true" class="dash-spot num dn">25,990.00</span>',
        f'<span id="tile-NIFTY-chg" hx-swap-oob="true" class="dash-chg num neg dn">{MINUS}10.00 ({MINUS}0.04%)</span>',
    ]
    body = fragments.oi_movers_body("oi-gainers", [], swap=True)
    assert sent.changed_element("oi-gainers", body) == [body]
    assert sent.changed_element("oi-gainers", body) == []


def test_links_match_the_chain_page_urls():
    assert fragments.chain_path("NIFTY") == reverse("chain", args=["NIFTY"]) == "/chain/NIFTY/"
    assert fragments.chain_path("NIFTY", "2026-11-24") == "/chain/NIFTY/?expiry=2026-11-24"


# -- the page -------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_an_anonymous_visitor_is_sent_to_log_in(client):
    response = client.get("/")
    assert (response.status_code, response["Location"]) == (302, "/login/?next=/")


@pytest.fixture
def demo_market(transactional_db, settings, tmp_path):
    """The demo instruments with NIFTY and BANKNIFTY enabled, and nothing in Redis."""
    settings.VAR_DIR = tmp_path
    clear_redis()
    load_demo_market(symbols=("NIFTY", "BANKNIFTY"))


def test_the_page_renders_dashes_when_redis_holds_nothing(demo_market, client, alice, bob):
    BrokerAccount.objects.create(user=alice, label="Alice main", api_key="a")
    BrokerAccount.objects.create(user=bob, label="Bob main", api_key="b")
    client.force_login(alice)
    response = client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    shown = texts(page)
    for symbol in ("BANKNIFTY", "NIFTY"):
        for name in ("spot", "chg", "future", "atm-iv", "pcr"):
            assert shown[f"tile-{symbol}-{name}"] == DASH
        assert f'<a href="/chain/{symbol}/">{symbol}</a>' in page
    for name in ("state", "connections", "instruments", "tps", "lag", "backlog", "session"):
        assert shown[f"feed-{name}"] == DASH
    assert rows(elements(page)["oi-gainers"][1]) == [[DASH]] and rows(elements(page)["oi-losers"][1]) == [[DASH]]
    assert shown["market-state"] in {"Open", "Closed"}
    assert 'ws-connect="/ws/ui/dashboard/"' in page
    assert "Alice main" in page and "Bob main" not in page


def test_the_page_still_renders_when_redis_is_down(demo_market, client, alice, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    client.force_login(alice)
    response = client.get("/")
    assert response.status_code == 200
    assert texts(response.content.decode())["tile-NIFTY-spot"] == DASH


def test_the_page_offers_a_kite_login_to_the_data_accounts_owner_when_its_session_expired(
    demo_market, client, alice, bob
):
    account = BrokerAccount.objects.create(user=alice, label="Data", api_key="a", is_data_account=True)
    status = {"state": "running", "session": "session expired", "connections_up": 0, "connections_wanted": 1}
    redis.Redis.from_url(settings.REDIS_URL).set(FEED_STATUS_KEY, json.dumps(status))

    client.force_login(alice)
    page = client.get("/").content.decode()
    assert texts(page)["feed-session"] == "session expired"
    assert elements(page)["feed-login"][1] == f'<a href="/accounts/{account.pk}/kite/login/">Log in to Kite</a>'
    client.force_login(bob)  # not his account: he could not log it in
    assert elements(client.get("/").content.decode())["feed-login"][1] == ""


def test_the_page_shows_the_streamed_market_from_redis(demo_market, client, alice):
    stream_simulated_market(seconds=4.0)
    tiles = {tile.symbol: tile for tile in selectors.underlying_tiles()}
    latest = selectors.dashboard_latest(tiles.values())
    client.force_login(alice)
    page = client.get("/").content.decode()
    shown = texts(page)

    for symbol, tile in tiles.items():
        spot, future = latest.ticks[tile.spot_token], latest.ticks[tile.future_token]
        summary = latest.chains[symbol]["summary"]
        assert shown[f"tile-{symbol}-spot"] == price(spot["last_price"]) != DASH
        assert shown[f"tile-{symbol}-future"] == price(future["last_price"]) != DASH
        assert shown[f"tile-{symbol}-atm-iv"] == percent(summary["atm_iv"], 2) != DASH
        assert shown[f"tile-{symbol}-pcr"] == fixed(summary["pcr_oi"], 2) != DASH
        assert shown[f"tile-{symbol}-chg"].endswith("%)")
    assert shown["feed-instruments"] == price(latest.feed_status["instruments"], 0) != DASH
    assert shown["feed-session"] == "simulated"

    gainers = rows(elements(page)["oi-gainers"][1])
    assert 1 <= len(gainers) <= 5
    percents = [float(row[3].rstrip("%").replace(MINUS, "-")) for row in gainers]
    assert percents == sorted(percents, reverse=True) and percents[-1] > 0


# -- the socket -------------------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def socket_market(transactional_db, settings, tmp_path):
    """demo_market for socket tests: their consumers reach the database on asgiref's thread."""
    settings.VAR_DIR = tmp_path
    await sync_to_async(clear_redis)()
    await sync_to_async(load_demo_market)(symbols=("NIFTY",))
    yield (await sync_to_async(selectors.underlying_tiles)())[0]
    # That thread's connection would outlive the test and keep the test database from being dropped.
    await sync_to_async(connections.close_all)()


def dashboard_socket(user: User) -> WebsocketCommunicator:
    socket = WebsocketCommunicator(DashboardPageConsumer.as_asgi(), "/ws/ui/dashboard/", headers=ORIGIN)
    socket.scope["user"] = user
    return socket


async def receive_until(
    socket: WebsocketCommunicator, wanted: dict[str, str], *, timeout: float = 5.0
) -> dict[str, str]:
    """The latest text of every element received until each wanted id shows its wanted text."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while any(seen.get(key) != value for key, value in wanted.items()):
        assert time.monotonic() < deadline, f"still waiting for {wanted}, saw {seen}"
        seen.update(texts(await socket.receive_from(timeout=deadline - time.monotonic())))
    return seen


async def send_to_group(group: str, message_type: str, payload: dict) -> None:
    """A group message as the feed (marketdata.feed.publisher) and the chain task send it: JSON encoded once."""
    await get_channel_layer().group_send(group, {"type": message_type, "group": group, "json": json.dumps(payload)})


@pytest.mark.asyncio
async def test_an_anonymous_dashboard_socket_is_closed_with_4401():
    socket = WebsocketCommunicator(application, "/ws/ui/dashboard/", headers=ORIGIN)
    assert (await socket.connect())[0]
    assert texts(await socket.receive_from(timeout=5)) == {"conn": "Signed out"}
    closed = await socket.receive_output(timeout=5)
    assert (closed["type"], closed["code"]) == ("websocket.close", UNAUTHENTICATED_CLOSE_CODE)
    await socket.disconnect()


@pytest.mark.asyncio
async def test_the_socket_sends_the_feeds_values_then_only_what_changed(socket_market):
    tile = socket_market
    with frozen_clock(MONDAY_MORNING):  # the market card changes only when the minute does
        socket = dashboard_socket(User(username="alice", pk=1))
        assert (await socket.connect())[0]
        first = texts(await socket.receive_from(timeout=5))  # every value, before the feed said anything
        assert {first["tile-NIFTY-spot"], first["tile-NIFTY-pcr"], first["feed-state"]} == {DASH}
        assert (first["market-state"], first["market-next"]) == ("Open", "closes in 4h 58m (15:30)")
        assert {"oi-gainers", "oi-losers", "feed-login"} <= first.keys()

        status = {
            "state": "running",
            "source": "kite",
            "session": "connected",
            "connections_up": 3,
            "connections_wanted": 3,
            "instruments": 1234,
            "ticks_per_s": 987.4,
            "lag_ms": 85,
            "storage_backlog": 120000,
            "ticks_dropped": 0,
        }
        await send_to_group("feed.status", "feed.status", {"type": "status", "status": status})
        spot = {
            "instrument_token": tile.spot_token,
            "mode": "full",
            "last_price": 26117.2,
            "close": 26000.0,
            "change": 0.4508,
        }
        future = {"instrument_token": tile.future_token, "mode": "full", "last_price": 26180.5, "close": 26100.0}
        group = instrument_group(tile.spot_token)
        await send_to_group(group, "feed.ticks", {"type": "ticks", "group": group, "ticks": [spot]})
        group = instrument_group(tile.future_token)
        await send_to_group(group, "feed.ticks", {"type": "ticks", "group": group, "ticks": [future]})
        expiry = tile.option_expiry.isoformat()
        chain = {
            "underlying": "NIFTY",
            "expiry": expiry,
            "as_of": MONDAY_MORNING.isoformat(),
            "summary": {"spot": 26117.2, "future": 26180.5, "atm_strike": 26100.0, "atm_iv": 13.87, "pcr_oi": 0.9134},
            "strikes": [
                {
                    "strike": 26100.0,
                    "ce": side("NIFTY26N2426100CE", 2_50_000, 50_000, 25.0, "short_buildup"),
                    "pe": side("NIFTY26N2426100PE", 1_00_000, -25_000, -20.0, "long_unwinding"),
                }
            ],
        }
        group = chain_group("NIFTY", tile.option_expiry)
        await send_to_group(group, "chain.analytics", {"type": "chain", "group": group, "chain": chain})

        seen = await receive_until(
            socket,
            {
                "tile-NIFTY-spot": "26,117.20",
                "tile-NIFTY-chg": "+117.20 (+0.45%)",
                "tile-NIFTY-future": "26,180.50",
                "tile-NIFTY-atm-iv": "13.87%",
                "tile-NIFTY-pcr": "0.91",
                "feed-state": "running",
                "feed-connections": "3 / 3",
                "feed-instruments": "1,234",
                "feed-tps": "987",
                "feed-lag": "85 ms",
                "feed-backlog": "1,20,000",
                "feed-session": "connected",
            },
        )
        assert seen["oi-gainers"] == "NIFTY26N2426100CE2.50L+50,000+25.0%Short buildup"
        assert seen["oi-losers"] == f"NIFTY26N2426100PE1.00L{MINUS}25,000{MINUS}20.0%Long unwinding"

        # A higher spot alone: the next message carries only the spot and its change, flashed up.
        await asyncio.sleep(0.3)  # past the flush that may still hold the last of the above
        while await socket.receive_nothing(timeout=0.05) is False:
            await socket.receive_from()
        higher = {**spot, "last_price": 26130.0, "change": 0.5}
        group = instrument_group(tile.spot_token)
        await send_to_group(group, "feed.ticks", {"type": "ticks", "group": group, "ticks": [higher]})
        message = await socket.receive_from(timeout=5)
        while set(elements(message)) <= BASE_IDS:  # a heartbeat of the base consumer's own
            message = await socket.receive_from(timeout=5)
        assert set(elements(message)) - BASE_IDS == {"tile-NIFTY-spot", "tile-NIFTY-chg"}
        assert elements(message)["tile-NIFTY-spot"] == (' hx-swap-oob="true" class="dash-spot num up"', "26,130.00")
        assert elements(message)["tile-NIFTY-chg"][1] == "+130.00 (+0.50%)"
        await socket.disconnect()


@pytest.mark.asyncio
async def test_the_socket_sends_at_most_one_message_a_quarter_second(socket_market):
    tile = socket_market
    socket = dashboard_socket(User(username="alice", pk=1))
    assert (await socket.connect())[0]
    await socket.receive_from(timeout=5)
    group = instrument_group(tile.spot_token)

    async def flood() -> None:  # a tick every 20 ms, each a new price
        for step in range(75):
            tick = {"instrument_token": tile.spot_token, "last_price": 26000.0 + step, "close": 26000.0}
            await send_to_group(group, "feed.ticks", {"type": "ticks", "group": group, "ticks": [tick]})
            await asyncio.sleep(0.02)

    sender = asyncio.create_task(flood())
    arrivals, prices = [], []
    while not sender.done() or not await socket.receive_nothing(timeout=0.4):
        message = await socket.receive_from(timeout=5)
        arrivals.append(time.monotonic())
        prices.append(texts(message).get("tile-NIFTY-spot"))
    await sender
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(arrivals) >= 4 and min(gaps) > 0.2, gaps
    assert [p for p in prices if p][-1] == "26,074.00"  # conflated, but the last price does arrive
    await socket.disconnect()


@pytest.mark.asyncio
async def test_the_socket_ends_on_the_values_the_page_draws_after_a_streamed_session(socket_market):
    socket = dashboard_socket(User(username="alice", pk=1))
    assert (await socket.connect())[0]
    seen = texts(await socket.receive_from(timeout=5))
    await asyncio.to_thread(stream_simulated_market, 4.0)
    while not await socket.receive_nothing(timeout=0.6):
        seen.update(texts(await socket.receive_from(timeout=5)))
    await socket.disconnect()

    page = await sync_to_async(_dashboard_page_as_alice)()
    drawn = texts(page)
    live_ids = [f"tile-NIFTY-{name}" for name in ("spot", "chg", "future", "atm-iv", "pcr")] + [
        "oi-gainers",
        "oi-losers",
    ]
    assert {key: seen[key] for key in live_ids} == {key: drawn[key] for key in live_ids}
    assert seen["tile-NIFTY-spot"] != DASH and seen["tile-NIFTY-pcr"] != DASH


def _dashboard_page_as_alice() -> str:
    from django.test import Client

    client = Client()
    client.force_login(User.objects.create_user(username="alice"))
    return client.get("/").content.decode()
