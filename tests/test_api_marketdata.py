"""The market-data REST API: quotes from the feed's values in Redis, candles from stored bars, stored
ticks in cursor pages, the feed's status; Redis down is a 503, never a 500. Real Redis and PostgreSQL;
the values reach Redis through the feed's own parser, state and publisher."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
import redis
import redis.asyncio as aioredis
from django.conf import settings
from knox.models import AuthToken
from rest_framework.test import APIClient

from marketdata.candles import bucket_start
from marketdata.feed.publisher import Publisher
from marketdata.feed.state import FeedState
from marketdata.kite import build_frame, parse_frame
from marketdata.models import Bar, Tick
from trading_site.clock import IST, frozen_clock

NIFTY_50, OPTION = 256265, 10191874  # an index (segment 9) and an NFO option (segment 2)
AT = dt.datetime(2026, 11, 23, 10, 15, 7, tzinfo=IST)
CLOSED_PORT = "redis://127.0.0.1:1/0"


@pytest.fixture
def flushed_redis():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def api(alice, flushed_redis) -> APIClient:
    client = APIClient()
    client.force_login(alice)
    return client


async def _publish(ticks: list[dict]) -> None:
    async def nowhere(group: str, message: dict) -> None:
        pass

    client = aioredis.Redis.from_url(settings.REDIS_URL)
    state = FeedState(capacity=16)
    state.add([tick["instrument_token"] for tick in ticks])
    state.apply(parse_frame(build_frame(ticks)))
    await Publisher(state=state, group_send=nowhere, redis_client=client).publish_changes()
    await client.aclose()


def publish(ticks: list[dict]) -> None:
    """Write ticks to Redis as run_feed does: Kite frames, parsed into the feed's state, published."""
    asyncio.run(_publish(ticks))


INDEX_TICK = {
    "instrument_token": NIFTY_50,
    "mode": "full",
    "last_price": 26010.35,
    "ohlc": {"open": 25990.0, "high": 26035.8, "low": 25961.2, "close": 25948.2},
    "exchange_timestamp": AT,
}
OPTION_TICK = {
    "instrument_token": OPTION,
    "mode": "full",
    "last_price": 112.5,
    "last_traded_quantity": 75,
    "average_traded_price": 109.85,
    "volume_traded": 18_234_750,
    "total_buy_quantity": 412_500,
    "total_sell_quantity": 389_250,
    "ohlc": {"open": 101.0, "high": 121.4, "low": 96.05, "close": 100.0},
    "last_trade_time": AT - dt.timedelta(seconds=1),
    "oi": 4_837_500,
    "oi_day_high": 4_901_250,
    "oi_day_low": 4_612_500,
    "exchange_timestamp": AT,
    "depth": {
        "buy": [{"quantity": 1500, "price": 112.45, "orders": 3}, {"quantity": 900, "price": 112.4, "orders": 2}],
        "sell": [{"quantity": 975, "price": 112.55, "orders": 4}],
    },
}


# ---------------------------------------------------------------------------
# Quotes
# ---------------------------------------------------------------------------


def test_quotes_are_the_feeds_latest_values_keyed_by_token_in_kites_quote_shape(api):
    publish([INDEX_TICK, OPTION_TICK])
    response = api.get(f"/api/v1/quotes/?tokens={NIFTY_50},{OPTION}&tokens=999999")
    assert response.status_code == 200
    quotes = response.json()
    assert list(quotes) == [str(NIFTY_50), str(OPTION)]  # the unknown token is simply absent
    assert quotes[str(OPTION)] == {
        "instrument_token": OPTION,
        "mode": "full",
        "timestamp": "2026-11-23T10:15:07+05:30",
        "last_trade_time": "2026-11-23T10:15:06+05:30",
        "last_price": 112.5,
        "last_quantity": 75,
        "buy_quantity": 412_500,
        "sell_quantity": 389_250,
        "volume": 18_234_750,
        "average_price": 109.85,
        "oi": 4_837_500,
        "oi_day_high": 4_901_250,
        "oi_day_low": 4_612_500,
        "net_change": 12.5,
        "change": 12.5,  # percent: 12.5 over a close of 100
        "ohlc": {"open": 101.0, "high": 121.4, "low": 96.05, "close": 100.0},
        "depth": {"buy": [{"price": 112.45, "quantity": 1500}], "sell": [{"price": 112.55, "quantity": 975}]},
    }
    index = quotes[str(NIFTY_50)]
    # An index packet has no volume, OI, depth or trade time.
    assert (index["last_price"], index["volume"], index["oi"]) == (26010.35, 0, 0)
    assert index["last_trade_time"] is None and index["depth"] == {"buy": [], "sell": []}
    assert index["net_change"] == pytest.approx(62.15) and index["change"] == pytest.approx(0.2395, abs=1e-4)


def test_quotes_take_repeated_parameters_and_count_each_token_once(api):
    publish([OPTION_TICK])
    response = api.get(f"/api/v1/quotes/?tokens={OPTION}&tokens={OPTION},{OPTION}")
    assert response.status_code == 200 and list(response.json()) == [str(OPTION)]
    assert api.get("/api/v1/quotes/?tokens=1").json() == {}  # nothing streamed: an empty mapping
    at_limit = ",".join(str(token) for token in range(1, 501))
    assert api.get(f"/api/v1/quotes/?tokens={at_limit}").status_code == 200


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "Give at least one instrument token."),
        ("?tokens=", "Give at least one instrument token."),
        ("?tokens=256265,abc", "'abc' is not an instrument token."),
        ("?tokens=-5", "'-5' is not an instrument token."),
        ("?tokens=1.5", "'1.5' is not an instrument token."),
        ("?tokens=1,,2", "'' is not an instrument token."),
        ("?tokens=9223372036854775808", "'9223372036854775808' is not an instrument token."),  # beyond 64 bits
        ("?tokens=" + ",".join(str(t) for t in range(1, 502)), "Give at most 500 tokens per request."),
        ("?tokens=" + ",".join(["1"] * 501), "Give at most 500 tokens per request."),
    ],
)
def test_quotes_refuse_missing_malformed_or_too_many_tokens_naming_the_parameter(api, query, message):
    response = api.get(f"/api/v1/quotes/{query}")
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid input.", "code": "invalid", "errors": {"tokens": [message]}}


def test_redis_down_is_a_503_saying_so_never_a_500(api, settings):
    settings.REDIS_URL = CLOSED_PORT
    for url in (f"/api/v1/quotes/?tokens={NIFTY_50}", "/api/v1/feed/status/"):
        response = api.get(url)
        assert response.status_code == 503, url
        assert response.json()["code"] == "unavailable" and "Redis" in response.json()["detail"]
        assert response["Retry-After"] == "5"


def test_a_rate_limit_store_that_is_down_is_a_503_too(api, settings):
    """Throttling counts requests in the Redis cache: its failure must not become a 500 either."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CLOSED_PORT}}
    # Every endpoint, not only the live-data ones: the instruments' come from the database.
    for url in (f"/api/v1/instruments/{OPTION}/bars/", "/api/v1/instruments/", "/api/v1/accounts/"):
        response = api.get(url)
        assert response.status_code == 503 and response.json()["code"] == "unavailable", url
        assert response["Retry-After"] == "5"


# ---------------------------------------------------------------------------
# Candles
# ---------------------------------------------------------------------------


def bar(token: int, at: dt.datetime, o, h, lo, c, volume: int, oi: int) -> Bar:
    prices = [Decimal(str(value)) for value in (o, h, lo, c)]
    return Bar(
        instrument_token=token,
        start=at,
        open=prices[0],
        high=prices[1],
        low=prices[2],
        close=prices[3],
        volume=volume,
        oi=oi,
    )


def minute(hour: int, minute_: int, day: int = 23) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute_, tzinfo=IST)


@pytest.fixture
def bars(db) -> None:
    Bar.objects.bulk_create(
        [
            bar(OPTION, minute(15, 29, day=20), 95, 96, 94, 95.5, 10, 40),  # the Friday before
            bar(OPTION, minute(9, 15), 100, 102, 99, 101, 1000, 50),
            bar(OPTION, minute(9, 16), 101, 103, 100.5, 102.5, 500, 55),
            bar(OPTION, minute(9, 17), 102.5, 102.6, 98, 99, 700, 60),
            bar(OPTION, minute(9, 18), 99, 100, 97.55, 99.95, 300, 58),
            bar(OPTION, minute(9, 19), 99.95, 101, 99.5, 100.4, 250, 57),
            bar(OPTION, minute(9, 20), 100.4, 100.9, 100, 100.8, 100, 56),
            bar(NIFTY_50, minute(9, 15), 1, 1, 1, 1, 0, 0),  # another instrument
        ]
    )


def candles(api, query: str, token: int = OPTION) -> list[dict]:
    with frozen_clock(minute(15, 0)):
        response = api.get(f"/api/v1/instruments/{token}/bars/{query}")
    assert response.status_code == 200, response.json()
    return response.json()["candles"]


def test_five_one_minute_bars_make_one_5minute_candle_aligned_to_the_0915_open(api, bars):
    with frozen_clock(minute(15, 0)):
        response = api.get(f"/api/v1/instruments/{OPTION}/bars/?interval=5minute&from=2026-11-23")
    assert response.json() == {
        "instrument_token": OPTION,
        "interval": "5minute",
        "candles": [
            # 09:15-09:19: first open, highest high, lowest low, last close, summed volume, last OI
            {
                "date": "2026-11-23T09:15:00+05:30",
                "open": 100.0,
                "high": 103.0,
                "low": 97.55,
                "close": 100.4,
                "volume": 2750,
                "oi": 57,
            },
            {
                "date": "2026-11-23T09:20:00+05:30",
                "open": 100.4,
                "high": 100.9,
                "low": 100.0,
                "close": 100.8,
                "volume": 100,
                "oi": 56,
            },
        ],
        "next": None,
    }


def test_day_candles_are_ist_calendar_days(api, bars):
    Bar.objects.bulk_create([bar(OPTION, minute(0, 10), 100.1, 100.1, 100.1, 100.1, 5, 49)])  # 22 Nov in UTC
    assert candles(api, "?interval=day") == [
        {
            "date": "2026-11-20T00:00:00+05:30",
            "open": 95.0,
            "high": 96.0,
            "low": 94.0,
            "close": 95.5,
            "volume": 10,
            "oi": 40,
        },
        {
            "date": "2026-11-23T00:00:00+05:30",
            "open": 100.1,
            "high": 103.0,
            "low": 97.55,
            "close": 100.8,
            "volume": 2855,
            "oi": 56,
        },
    ]


def test_minute_candles_are_the_bars_and_to_is_inclusive(api, bars):
    # The default minute window (5 days back from today, 23 Nov) holds Friday's bar too.
    assert [c["date"][11:16] for c in candles(api, "")] == [
        "15:29",
        "09:15",
        "09:16",
        "09:17",
        "09:18",
        "09:19",
        "09:20",
    ]
    window = candles(api, "?from=2026-11-23T09:16:00&to=2026-11-23T09:18:00")  # naive: IST
    assert [(c["date"], c["close"], c["volume"]) for c in window] == [
        ("2026-11-23T09:16:00+05:30", 102.5, 500),
        ("2026-11-23T09:17:00+05:30", 99.0, 700),
        ("2026-11-23T09:18:00+05:30", 99.95, 300),
    ]
    in_utc = candles(api, "?from=2026-11-23T03:46:00%2B00:00&to=2026-11-23T03:46:00Z")  # 09:16 IST
    assert [c["date"] for c in in_utc] == ["2026-11-23T09:16:00+05:30"]
    kite_style = candles(api, "?from=2026-11-23+09:16:00%2B0530&to=2026-11-23+09:16:00")  # Kite's own format
    assert [c["date"] for c in kite_style] == ["2026-11-23T09:16:00+05:30"]
    friday = candles(api, "?from=2026-11-20&to=2026-11-20")  # a date as `to` is the whole day
    assert [c["date"] for c in friday] == ["2026-11-20T15:29:00+05:30"]


def test_hourly_candles_run_from_0915_to_1015(api, db):
    Bar.objects.bulk_create(
        [
            bar(OPTION, minute(10, 14), 10, 11, 9, 10.5, 1, 1),
            bar(OPTION, minute(10, 15), 20, 21, 19, 20.5, 2, 2),
            bar(OPTION, minute(15, 29), 30, 31, 29, 30.5, 3, 3),
        ]
    )
    hourly = candles(api, "?interval=60minute&from=2026-11-23&to=2026-11-23")
    assert [(c["date"][11:16], c["open"]) for c in hourly] == [("09:15", 10.0), ("10:15", 20.0), ("15:15", 30.0)]


def test_a_token_without_bars_gets_no_candles_not_a_404(api, bars):
    assert candles(api, "?interval=day", token=4242) == []


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("?interval=2minute", "interval", '"2minute" is not a valid choice.'),
        ("?from=23-11-2026", "from", "Give a date (2026-11-23) or a date and time (2026-11-23T09:15:00)."),
        ("?to=yesterday", "to", "Give a date (2026-11-23) or a date and time (2026-11-23T09:15:00)."),
        ("?from=", "from", "Give a date (2026-11-23) or a date and time (2026-11-23T09:15:00)."),
        ("?from=2026-11-23T25:00:00", "from", "Give a date (2026-11-23) or a date and time (2026-11-23T09:15:00)."),
        ("?interval=", "interval", '"" is not a valid choice.'),
    ],
)
def test_bad_candle_parameters_are_a_400_naming_the_parameter(api, query, field, message):
    with frozen_clock(minute(15, 0)):
        response = api.get(f"/api/v1/instruments/{OPTION}/bars/{query}")
    assert response.status_code == 400
    assert response.json()["errors"] == {field: [message]}


def test_a_range_longer_than_a_request_covers_comes_in_pages(api, db):
    Bar.objects.bulk_create(
        [
            bar(OPTION, minute(9, 15, day=23) - dt.timedelta(days=61), 1, 1, 1, 1, 1, 1),
            bar(OPTION, minute(9, 15), 2, 2, 2, 2, 2, 2),
        ]
    )
    with frozen_clock(minute(15, 0)):
        first = api.get(f"/api/v1/instruments/{OPTION}/bars/?from=2026-09-23&to=2026-11-23").json()
        # 60 days of minute candles a page: 23 Sep to 22 Nov, then the rest.
        assert [c["date"] for c in first["candles"]] == ["2026-09-23T09:15:00+05:30"]
        assert first["next"] == (
            f"http://testserver/api/v1/instruments/{OPTION}/bars/?from=2026-11-22T00%3A00%3A00%2B05%3A30&to=2026-11-23"
        )
        second = api.get(first["next"]).json()
    assert [c["date"] for c in second["candles"]] == ["2026-11-23T09:15:00+05:30"] and second["next"] is None
    # Within a page's reach, one page; and a range that ends before it starts is empty, not an error.
    assert (
        api.get(f"/api/v1/instruments/{OPTION}/bars/?interval=day&from=2021-06-03&to=2026-11-23").json()["next"] is None
    )
    backwards = api.get(f"/api/v1/instruments/{OPTION}/bars/?from=2026-11-23T10:00:00&to=2026-11-23T09:00:00")
    assert backwards.status_code == 200 and backwards.json()["candles"] == []


def test_a_malformed_token_in_the_path_is_a_json_404(api, db):
    for token in ("abc", "-1", "9223372036854775808"):
        for part in ("bars", "ticks"):
            response = api.get(f"/api/v1/instruments/{token}/{part}/")
            assert response.status_code == 404 and response.json()["code"] == "not_found", (token, part)


# ---------------------------------------------------------------------------
# Stored ticks
# ---------------------------------------------------------------------------


def stored_tick(token: int, at: dt.datetime, price: str) -> Tick:
    return Tick(
        instrument_token=token,
        exchange_timestamp=at,
        last_price=Decimal(price),
        close=Decimal("100"),
        volume_traded=1000,
        oi=75,
        bid_price=Decimal(price) - Decimal("0.05"),
        bid_quantity=150,
        last_trade_time=at,
    )


def test_stored_ticks_come_oldest_first_in_cursor_pages(api, db):
    seconds = [3, 1, 2, 6, 5, 4, 7]
    Tick.objects.bulk_create(
        [stored_tick(OPTION, AT + dt.timedelta(seconds=s), f"{100 + s}.5") for s in seconds]
        + [stored_tick(NIFTY_50, AT, "26000"), stored_tick(OPTION, AT - dt.timedelta(days=1), "1")]
    )
    url, pages = f"/api/v1/instruments/{OPTION}/ticks/?page_size=3", []
    with frozen_clock(AT + dt.timedelta(hours=1)):  # by default: today's ticks
        while url:
            page = api.get(url).json()
            pages.append([t["last_price"] for t in page["results"]])
            url = page["next"]
            if len(pages) == 1:
                first = page["results"][0]
    assert pages == [[101.5, 102.5, 103.5], [104.5, 105.5, 106.5], [107.5]]
    assert first == {
        "instrument_token": OPTION,
        "mode": "full",
        "exchange_timestamp": "2026-11-23T10:15:08+05:30",
        "last_trade_time": "2026-11-23T10:15:08+05:30",
        "last_price": 101.5,
        "last_traded_quantity": 0,
        "average_traded_price": 0.0,
        "volume_traded": 1000,
        "total_buy_quantity": 0,
        "total_sell_quantity": 0,
        "ohlc": {"open": 0.0, "high": 0.0, "low": 0.0, "close": 100.0},
        "change": 1.5,
        "oi": 75,
        "oi_day_high": 0,
        "oi_day_low": 0,
        "depth": {"buy": [{"price": 101.45, "quantity": 150}], "sell": []},
    }
    window = api.get(f"/api/v1/instruments/{OPTION}/ticks/?from=2026-11-23T10:15:09&to=2026-11-23T10:15:10").json()
    assert [t["last_price"] for t in window["results"]] == [102.5, 103.5] and window["next"] is None
    yesterday = api.get(f"/api/v1/instruments/{OPTION}/ticks/?from=2026-11-22&to=2026-11-22").json()
    assert [t["last_price"] for t in yesterday["results"]] == [1.0]
    bad = api.get(f"/api/v1/instruments/{OPTION}/ticks/?from=soon")
    assert bad.status_code == 400 and list(bad.json()["errors"]) == ["from"]
    for size in ("0", "abc", "-3"):
        refused = api.get(f"/api/v1/instruments/{OPTION}/ticks/?page_size={size}")
        assert refused.status_code == 400 and refused.json()["errors"] == {"page_size": ["A whole number from 1."]}


# ---------------------------------------------------------------------------
# The feed's status, and authentication
# ---------------------------------------------------------------------------


def test_the_feed_status_is_what_the_feed_reported_or_not_running(api):
    response = api.get("/api/v1/feed/status/")
    assert response.status_code == 200
    assert response.json()["state"] == "not_running" and "run_feed" in response.json()["detail"]

    status = {
        "state": "running",
        "source": "sim",
        "session": "simulated",
        "connections_up": 1,
        "instruments": 65,
        "ticks_per_s": 812.5,
        "lag_ms": 12,
        "ticks_dropped": 0,
        "last_error": None,
        "exchange_time": "2026-11-23T04:45:06+00:00",
        "updated_at": "2026-11-23T04:45:07+00:00",
    }

    async def report() -> None:
        async def nowhere(group: str, message: dict) -> None:
            pass

        client = aioredis.Redis.from_url(settings.REDIS_URL)
        await Publisher(state=FeedState(capacity=1), group_send=nowhere, redis_client=client).publish_status(status)
        await client.aclose()

    asyncio.run(report())
    # As reported, with its times in IST like every time of the API.
    assert api.get("/api/v1/feed/status/").json() == {
        **status,
        "exchange_time": "2026-11-23T10:15:06+05:30",
        "updated_at": "2026-11-23T10:15:07+05:30",
    }


ENDPOINTS = [
    ("get", f"/api/v1/quotes/?tokens={NIFTY_50}"),
    ("get", f"/api/v1/instruments/{NIFTY_50}/bars/"),
    ("get", f"/api/v1/instruments/{NIFTY_50}/ticks/"),
    ("get", "/api/v1/chains/NIFTY/"),
    ("get", "/api/v1/chains/NIFTY/history/"),
    ("post", "/api/v1/greeks/"),
    ("get", "/api/v1/feed/status/"),
]


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_every_market_data_endpoint_needs_a_login_or_a_token(db, flushed_redis, alice, method, url):
    anonymous = getattr(APIClient(), method)(url, {} if method == "post" else None, format="json")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"
    _, token = AuthToken.objects.create(alice)
    with_token = APIClient()
    with_token.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = getattr(with_token, method)(url, {} if method == "post" else None, format="json")
    assert response.status_code not in (401, 403, 500)


def test_buckets_before_the_open_count_back_from_0915():
    """A pre-open or evening (commodity) bar still lands on the 09:15 grid, and a day starts at 00:00 IST."""

    def at(hour: int, minute_: int) -> int:
        return int(dt.datetime(2026, 11, 23, hour, minute_, tzinfo=IST).timestamp())

    assert bucket_start(at(9, 14), "15minute") == at(9, 0)
    assert bucket_start(at(9, 14), "60minute") == at(8, 15)
    assert bucket_start(at(23, 59), "30minute") == at(23, 45)
    assert bucket_start(at(0, 10), "day") == at(0, 0)
