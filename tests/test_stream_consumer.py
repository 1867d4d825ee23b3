"""The JSON stream for programs (/ws/stream/), through the real Redis channel layer, with messages
sent the way the feed (marketdata.feed.publisher) and the chain task (services.chain_refresh) send them."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

import numpy as np
import pytest
import pytest_asyncio
import redis
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client
from knox.models import AuthToken

from instruments.models import Underlying
from marketdata import services
from marketdata.analytics.black_scholes import price
from marketdata.consumers import UNAUTHENTICATED_CLOSE_CODE, UNAUTHENTICATED_REASON, StreamConsumer
from marketdata.feed.bars import ClosedBars
from marketdata.feed.publisher import Publisher
from marketdata.feed.state import FeedState
from marketdata.groups import WATCHED_INSTRUMENTS_KEY, chain_key
from marketdata.kite import build_frame, parse_frame
from marketdata.stream import MAX_SUBSCRIPTIONS
from trading_site.asgi import application
from trading_site.clock import IST

pytestmark = [pytest.mark.asyncio]

ORIGIN = [(b"origin", b"http://localhost")]
NIFTY = 256265
EXPIRY = dt.date(2026, 11, 24)
AT = dt.datetime(2026, 11, 23, 10, 15, 7, tzinfo=IST)
SPOT, RATE, SIGMA = 26_010.0, 0.065, 0.14
STRIKES = (25_950, 26_000, 26_050)
CE_OI, PE_OI = (150_000, 300_000, 225_000), (450_000, 375_000, 150_000)


def token_of(strike: int, kind: str) -> int:
    return (100_000 + strike * 2 + (kind == "PE")) << 8 | 2  # an NFO token


def option_ticks() -> list[dict]:
    """Every contract of a small NIFTY chain priced at one volatility, quoted 0.05 either side."""
    years = (dt.datetime.combine(EXPIRY, dt.time(15, 30), tzinfo=IST) - AT).total_seconds() / (365 * 86_400)
    ticks = []
    for kind, ois in (("CE", CE_OI), ("PE", PE_OI)):
        values = price(SPOT, np.array(STRIKES, float), years, RATE, SIGMA, kind == "CE")
        for strike, value, oi in zip(STRIKES, values.tolist(), ois, strict=True):
            value = round(value, 2)
            ticks.append(
                {
                    "instrument_token": token_of(strike, kind),
                    "mode": "full",
                    "last_price": value,
                    "volume_traded": oi * 4,
                    "oi": oi,
                    "ohlc": {"open": value, "high": value, "low": value, "close": round(value - 3, 2)},
                    "exchange_timestamp": AT,
                    "depth": {
                        "buy": [{"quantity": 750, "price": round(value - 0.05, 2), "orders": 2}] * 5,
                        "sell": [{"quantity": 750, "price": round(value + 0.05, 2), "orders": 3}] * 5,
                    },
                }
            )
    return ticks


def spot_tick() -> dict:
    return {"instrument_token": NIFTY, "mode": "full", "last_price": SPOT, "exchange_timestamp": AT}


class Feed:
    """The feed's publisher on the real channel layer: ticks in, group messages out."""

    def __init__(self, *, groups_of_token: dict[int, list[str]] | None = None, watched: tuple[int, ...] = ()):
        self.state = FeedState(capacity=32)
        self.publisher = Publisher(state=self.state, group_send=get_channel_layer().group_send)
        self.publisher.groups_of_token = groups_of_token or {}
        self.publisher.watched_tokens = set(watched)

    async def publish(self, ticks: list[dict], *, redis_client=None) -> None:
        self.state.add(tick["instrument_token"] for tick in ticks)
        self.state.apply(parse_frame(build_frame(ticks)))
        self.publisher.redis = redis_client
        await self.publisher.publish_changes()


def stream_socket(user=None, path: str = "/ws/stream/") -> WebsocketCommunicator:
    socket = WebsocketCommunicator(StreamConsumer.as_asgi(), path)
    socket.scope["user"] = user or User(username="alice", pk=1)
    return socket


async def request(socket: WebsocketCommunicator, action: str, channels: list) -> list[dict]:
    """Send a request; the replies up to and including `subscribed`."""
    await socket.send_json_to({"action": action, "channels": channels})
    replies = [await socket.receive_json_from(timeout=5)]
    while replies[-1]["type"] != "subscribed":
        replies.append(await socket.receive_json_from(timeout=5))
    return replies


# -- who may connect ----------------------------------------------------------------------------------
async def close_code(socket: WebsocketCommunicator) -> int:
    """The code a socket is closed with once open (closed before opening, a client sees only a 403)."""
    assert (await socket.connect())[0]
    assert await socket.receive_json_from(timeout=5) == {
        "type": "error",
        "data": {"code": "unauthenticated", "message": UNAUTHENTICATED_REASON},
    }
    closed = await socket.receive_output(timeout=5)
    assert (closed["type"], closed["reason"]) == ("websocket.close", UNAUTHENTICATED_REASON)
    await socket.disconnect()
    return closed["code"]


async def test_an_anonymous_socket_is_closed_with_4401():
    for headers in (ORIGIN, []):  # a page of ours, and a program sending no Origin
        socket = WebsocketCommunicator(application, "/ws/stream/", headers=headers)
        assert await close_code(socket) == UNAUTHENTICATED_CLOSE_CODE

    # A request sent before the close arrives is not acted on.
    socket = WebsocketCommunicator(application, "/ws/stream/")
    assert (await socket.connect())[0]
    await socket.send_json_to({"action": "subscribe", "channels": ["feed:status"]})
    assert (await socket.receive_json_from(timeout=5))["data"]["code"] == "unauthenticated"
    assert (await socket.receive_output(timeout=5))["type"] == "websocket.close"
    assert await socket.receive_nothing(timeout=0.2)
    await socket.disconnect()


@pytest_asyncio.fixture
async def database(transactional_db):
    """The database, for tests whose sockets reach it through database_sync_to_async."""
    yield
    # Those calls run on asgiref's one worker thread, whose connection would outlive the test
    # and keep the test database from being dropped.
    await sync_to_async(connections.close_all)()


@pytest.fixture
def alice_session(database) -> str:
    alice = User.objects.create_user(username="alice")  # force_login needs no password (nor its hashing)
    client = Client()
    client.force_login(alice)
    return f"sessionid={client.cookies['sessionid'].value}"


@pytest.mark.django_db(transaction=True)
async def test_a_wrong_token_is_closed_with_4401_even_beside_a_session(alice_session):
    alice = await User.objects.aget(username="alice")
    _, good = await sync_to_async(AuthToken.objects.create)(alice)
    for token in ("0" * 64, good[:-1] + "x", "", "é" * 10, good[:8]):
        headers = [*ORIGIN, (b"cookie", alice_session.encode())]
        socket = WebsocketCommunicator(application, f"/ws/stream/?token={token}", headers=headers)
        assert await close_code(socket) == UNAUTHENTICATED_CLOSE_CODE, token


@pytest.mark.django_db(transaction=True)
async def test_an_api_token_opens_the_stream_for_a_program_sending_no_origin(alice_session):
    alice = await User.objects.aget(username="alice")
    _, token = await sync_to_async(AuthToken.objects.create)(alice)
    socket = WebsocketCommunicator(application, f"/ws/stream/?token={token}")
    assert (await socket.connect())[0]
    assert await request(socket, "subscribe", ["feed:status"]) == [{"type": "subscribed", "data": ["feed:status"]}]

    status = {"state": "running", "source": "sim", "ticks_per_s": 1800}
    await Publisher(state=FeedState(capacity=1), group_send=get_channel_layer().group_send).publish_status(status)
    streamed = await socket.receive_json_from(timeout=5)
    assert streamed == {"type": "feed_status", "channel": "feed:status", "data": status}
    await socket.disconnect()

    # A token is authentication enough from any page: no other site can know it.
    elsewhere = WebsocketCommunicator(
        application, f"/ws/stream/?token={token}", headers=[(b"origin", b"http://evil.example")]
    )
    assert (await elsewhere.connect())[0]
    await elsewhere.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_session_login_opens_the_stream_from_our_own_pages_only(alice_session):
    cookie = (b"cookie", alice_session.encode())
    socket = WebsocketCommunicator(application, "/ws/stream/", headers=[*ORIGIN, cookie])
    assert (await socket.connect())[0]
    assert await request(socket, "subscribe", ["ticks:NIFTY"]) == [{"type": "subscribed", "data": ["ticks:NIFTY"]}]
    await socket.disconnect()

    # Another site's page gets the visitor's cookie sent along: refused before any consumer runs.
    elsewhere = WebsocketCommunicator(application, "/ws/stream/", headers=[(b"origin", b"http://evil.example"), cookie])
    connected, code = await elsewhere.connect()
    assert connected is False and code != UNAUTHENTICATED_CLOSE_CODE
    await elsewhere.disconnect()


# -- channels --------------------------------------------------------------------------------------------
async def test_an_underlying_channel_streams_its_ticks_and_bars():
    socket = stream_socket()
    assert (await socket.connect())[0]
    await request(socket, "subscribe", ["ticks:NIFTY"])
    feed = Feed(groups_of_token={NIFTY: ["ticks.NIFTY"], token_of(26_000, "CE"): ["ticks.NIFTY"]})
    option = next(t for t in option_ticks() if t["instrument_token"] == token_of(26_000, "CE"))
    await feed.publish([spot_tick(), option])

    message = await socket.receive_json_from(timeout=5)
    assert (message["type"], message["channel"]) == ("tick", "ticks:NIFTY")
    index, contract = sorted(message["data"], key=lambda tick: tick["instrument_token"])
    assert index == {
        "tradable": False,
        "mode": "full",
        "instrument_token": NIFTY,
        "last_price": SPOT,
        "ohlc": {"open": 0.0, "high": 0.0, "low": 0.0, "close": 0.0},
        "change": 0,
        "exchange_timestamp": "2026-11-23T10:15:07+05:30",
    }
    assert (contract["last_price"], contract["oi"], contract["volume_traded"]) == (
        option["last_price"],
        option["oi"],
        option["volume_traded"],
    )
    assert contract["depth"] == {
        "buy": [{"quantity": 750, "price": option["depth"]["buy"][0]["price"], "orders": None}],
        "sell": [{"quantity": 750, "price": option["depth"]["sell"][0]["price"], "orders": None}],
    }

    start = int(AT.timestamp()) // 60 * 60 - 60
    bars = ClosedBars(*(np.array([v]) for v in (NIFTY, start, 26_000.0, 26_020.0, 25_990.0, SPOT, 0, 0, 42)))
    await feed.publisher.publish_bars(bars)
    message = await socket.receive_json_from(timeout=5)
    assert (message["type"], message["channel"]) == ("bar", "ticks:NIFTY")
    assert message["data"] == [
        {
            "instrument_token": NIFTY,
            "interval": "minute",
            "date": "2026-11-23T10:14:00+05:30",
            "open": 26_000.0,
            "high": 26_020.0,
            "low": 25_990.0,
            "close": SPOT,
            "volume": 0,
            "oi": 0,
            "tick_count": 42,
        }
    ]
    await socket.disconnect()


async def watched_until(client, token: int) -> float | None:
    """When the watched list says `token` stops being watched, once it is on it (None if not within 2 s)."""
    deadline = time.monotonic() + 2
    while (until := await client.zscore(WATCHED_INSTRUMENTS_KEY, token)) is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return until


async def test_an_instrument_channel_puts_it_on_the_watched_list_and_streams_its_full_depth():
    option, later = option_ticks()[:2]
    token = option["instrument_token"]
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    await client.zrem(WATCHED_INSTRUMENTS_KEY, token, later["instrument_token"])
    socket = stream_socket()
    assert (await socket.connect())[0]
    assert (await request(socket, "subscribe", [f"instrument:{token}"]))[-1]["data"] == [f"instrument:{token}"]

    # The feed publishes instrument groups only for tokens on this list, from the moment they are.
    assert await watched_until(client, token) > time.time()
    await request(socket, "subscribe", [f"instrument:{later['instrument_token']}"])
    assert await watched_until(client, later["instrument_token"]) > time.time()
    await client.aclose()

    await Feed(watched=(token,)).publish([option])
    message = await socket.receive_json_from(timeout=5)
    assert (message["type"], message["channel"]) == ("tick", f"instrument:{token}")
    [tick] = message["data"]
    assert tick["depth"] == {
        side: [{**level, "price": pytest.approx(level["price"])} for level in levels]
        for side, levels in option["depth"].items()
    }
    await socket.disconnect()


@pytest.fixture
def chain_in_redis(database):
    """What run_feed leaves in Redis for the chain task: its layout (and, once published, its ticks)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    Underlying.objects.create(symbol="NIFTY", strike_step=50)
    layout = {
        "symbol": "NIFTY",
        "expiry": EXPIRY.isoformat(),
        "spot_token": NIFTY,
        "future_token": None,
        "future_expiry": None,
        "lot_size": 75,
        "strike_step": 50.0,
        "risk_free_rate": RATE,
        "dividend_yield": 0.0,
        "contracts": [
            [token_of(k, kind), f"NIFTY26N24{k}{kind}", kind, float(k)] for k in STRIKES for kind in ("CE", "PE")
        ],
    }
    client.set(chain_key("NIFTY", EXPIRY, "layout"), json.dumps(layout))
    yield
    client.close()


@pytest.mark.django_db(transaction=True)
async def test_a_chain_channel_streams_its_option_ticks_and_the_tasks_figures(chain_in_redis):
    socket = stream_socket()
    assert (await socket.connect())[0]
    await request(socket, "subscribe", ["chain:NIFTY:2026-11-24"])
    options = option_ticks()
    groups = {t["instrument_token"]: ["ticks.NIFTY", "chain.NIFTY.20261124"] for t in options}
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    await Feed(groups_of_token={NIFTY: ["ticks.NIFTY"], **groups}).publish([spot_tick(), *options], redis_client=client)
    await client.aclose()

    ticks = await socket.receive_json_from(timeout=5)
    assert (ticks["type"], ticks["channel"]) == ("tick", "chain:NIFTY:2026-11-24")
    assert sorted(t["instrument_token"] for t in ticks["data"]) == sorted(groups)

    analytics = await sync_to_async(services.chain_refresh)(symbol="NIFTY", expiry=EXPIRY)
    chain, greeks, pcr = [await socket.receive_json_from(timeout=5) for _ in range(3)]
    assert [m["type"] for m in (chain, greeks, pcr)] == ["chain", "greeks_update", "pcr_update"]
    assert {m["channel"] for m in (chain, greeks, pcr)} == {"chain:NIFTY:2026-11-24"}
    assert chain["data"] == analytics

    assert len(greeks["data"]) == 6
    for contract in greeks["data"]:
        row = next(row for row in analytics["strikes"] if row["strike"] == contract["strike"])
        side = row[contract["option_type"].lower()]
        assert contract["token"] == side["token"] == token_of(int(row["strike"]), contract["option_type"])
        assert contract["tradingsymbol"] == side["tradingsymbol"]
        assert (contract["expiry"], contract["timestamp"]) == ("2026-11-24", "2026-11-23T10:15:07+05:30")
        assert contract["price"] == side["ltp"]
        for name in ("oi", "iv", "delta", "gamma", "theta", "vega", "rho"):
            assert contract[name] == side[name], name
        assert contract["iv"] == pytest.approx(SIGMA * 100, abs=0.1)

    summary = analytics["summary"]
    assert pcr["data"] == {
        "underlying": "NIFTY",
        "expiry": "2026-11-24",
        "pcr": summary["pcr_oi"],
        "pcr_volume": summary["pcr_volume"],
        "total_ce_oi": sum(CE_OI),
        "total_pe_oi": sum(PE_OI),
        "total_ce_volume": summary["total_ce_volume"],
        "total_pe_volume": summary["total_pe_volume"],
        "timestamp": "2026-11-23T10:15:07+05:30",
    }
    assert pcr["data"]["pcr"] == round(sum(PE_OI) / sum(CE_OI), 3)
    await socket.disconnect()


# -- requests ----------------------------------------------------------------------------------------------
async def test_unsubscribing_stops_delivery():
    socket = stream_socket()
    assert (await socket.connect())[0]
    await request(socket, "subscribe", ["ticks:NIFTY", "feed:status"])
    assert await request(socket, "unsubscribe", ["ticks:NIFTY", "ticks:BANKNIFTY"]) == [
        {"type": "subscribed", "data": ["feed:status"]}
    ]
    await Feed(groups_of_token={NIFTY: ["ticks.NIFTY"]}).publish([spot_tick()])
    assert await socket.receive_nothing(timeout=0.3)
    await socket.disconnect()


async def test_bad_requests_get_an_error_and_the_socket_stays_up():
    socket = stream_socket()
    assert (await socket.connect())[0]

    async def error_for(**send) -> dict:
        await socket.send_to(**send)
        reply = await socket.receive_json_from(timeout=5)
        assert reply["type"] == "error"
        return reply["data"]

    assert (await error_for(text_data="{not json"))["code"] == "invalid_json"
    assert (await error_for(bytes_data=b'{"action": "subscribe"}'))["code"] == "invalid_json"
    assert (await error_for(text_data='["ticks:NIFTY"]'))["code"] == "invalid_request"
    unknown = await error_for(text_data='{"action": "join", "channels": ["ticks:NIFTY"]}')
    assert unknown == {"code": "unknown_action", "message": unknown["message"], "action": "join"}

    # A mixed request: the good channels subscribe, the bad ones are named.
    replies = await request(socket, "subscribe", ["ticks:NIFTY", "quotes:NIFTY", "chain:NIFTY:24-11-2026"])
    assert replies == [
        {
            "type": "error",
            "data": {
                "code": "unknown_channel",
                "message": "unknown channels: quotes:NIFTY, chain:NIFTY:24-11-2026",
                "channels": ["quotes:NIFTY", "chain:NIFTY:24-11-2026"],
            },
        },
        {"type": "subscribed", "data": ["ticks:NIFTY"]},
    ]
    # Still up, still streaming.
    await Feed(groups_of_token={NIFTY: ["ticks.NIFTY"]}).publish([spot_tick()])
    assert (await socket.receive_json_from(timeout=5))["type"] == "tick"
    await socket.disconnect()


async def test_a_socket_holds_at_most_100_channels():
    socket = stream_socket()
    assert (await socket.connect())[0]
    first = [f"instrument:{n}" for n in range(1, 99)]
    assert len((await request(socket, "subscribe", first))[-1]["data"]) == 98
    replies = await request(socket, "subscribe", ["ticks:NIFTY", "feed:status", "instrument:1", "ticks:FINNIFTY"])
    assert replies[0]["data"] == {
        "code": "too_many_subscriptions",
        "message": "at most 100 channels per socket; not subscribed: ticks:FINNIFTY",
        "channels": ["ticks:FINNIFTY"],
        "limit": MAX_SUBSCRIPTIONS,
    }
    assert len(replies[1]["data"]) == 100 and "ticks:FINNIFTY" not in replies[1]["data"]
    # Room again after leaving one.
    await request(socket, "unsubscribe", ["instrument:1"])
    assert "ticks:FINNIFTY" in (await request(socket, "subscribe", ["ticks:FINNIFTY"]))[-1]["data"]
    await socket.disconnect()
