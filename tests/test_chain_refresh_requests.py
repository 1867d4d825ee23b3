"""When the feed asks for chain analytics: only for chains that changed, at most once per interval,
never while a refresh of the chain is still queued. Real FeedState, real Redis."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_asyncio
import redis
import redis.asyncio as aioredis
from django.conf import settings

from marketdata.feed.chains import PENDING_TTL_SECONDS, ChainRefresher
from marketdata.feed.publisher import Publisher
from marketdata.feed.state import FeedState
from marketdata.feed.universe import ChainContract, SubscriptionPlanner, UnderlyingUniverse
from marketdata.groups import chain_key, tick_key
from marketdata.kite import build_frame, parse_frame
from trading_site.clock import IST

WEEKLY, MONTHLY = dt.date(2026, 11, 24), dt.date(2026, 11, 26)
SPOT, FUTURE = 256265, 999
AT = dt.datetime(2026, 11, 23, 10, 15, tzinfo=IST)

ROOT = Path(__file__).resolve().parent.parent


def option(strike: int, kind: str, expiry: dt.date) -> ChainContract:
    token = 10_000 + strike * 4 + (kind == "PE") + 2 * (expiry == MONTHLY)
    return ChainContract(token, f"NIFTY{expiry:%d}{strike}{kind}", kind, float(strike), expiry, 75)


def nifty() -> UnderlyingUniverse:
    return UnderlyingUniverse(
        symbol="NIFTY",
        spot_token=SPOT,
        strike_step=50.0,
        strikes_each_side=1,
        expiries=(WEEKLY, MONTHLY),
        futures=(ChainContract(FUTURE, "NIFTY26NOVFUT", "FUT", 0.0, MONTHLY, 75),),
        options=tuple(
            option(strike, kind, expiry)
            for expiry in (WEEKLY, MONTHLY)
            for strike in (25_950, 26_000, 26_050, 26_100)
            for kind in ("CE", "PE")
        ),
        risk_free_rate=0.065,
        reference_spot=26_000.0,
    )


class Requests:
    """The feed's end of the Celery call: what it asked for, and when."""

    def __init__(self) -> None:
        self.made: list[tuple[str, dt.date]] = []

    def __call__(self, symbol: str, expiry: dt.date) -> None:
        self.made.append((symbol, expiry))


@pytest_asyncio.fixture
async def redis_client():
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    await client.flushdb()
    yield client
    await client.aclose()


def tick(state: FeedState, token: int, price: float) -> None:
    frame = build_frame([{"instrument_token": token, "mode": "full", "last_price": price, "exchange_timestamp": AT}])
    state.apply(parse_frame(frame))


def refresher_for(redis_client, requests: Requests, refresh_ms: int = 200) -> ChainRefresher:
    state = FeedState(capacity=64)
    planner = SubscriptionPlanner([nifty()])
    change = planner.plan({"NIFTY": 26_010.0})
    state.add(change.add)
    refresher = ChainRefresher(
        state=state, planner=planner, request=requests, redis_client=redis_client, refresh_ms=refresh_ms
    )
    refresher.assign()
    return refresher


@pytest.mark.asyncio
async def test_an_option_tick_asks_for_its_own_chain_only_and_spot_asks_for_every_chain(redis_client):
    requests = Requests()
    refresher = refresher_for(redis_client, requests)
    await refresher.run_once()
    assert requests.made == []  # nothing ticked yet

    tick(refresher.state, option(26_000, "PE", MONTHLY).instrument_token, 120.0)
    await refresher.run_once()
    assert requests.made == [("NIFTY", MONTHLY)]

    await redis_client.delete(chain_key("NIFTY", WEEKLY, "pending"), chain_key("NIFTY", MONTHLY, "pending"))
    refresher.last_requested.clear()
    tick(refresher.state, SPOT, 26_020.0)
    await refresher.run_once()
    assert sorted(requests.made[1:]) == [("NIFTY", WEEKLY), ("NIFTY", MONTHLY)]


@pytest.mark.asyncio
async def test_a_chain_is_asked_for_at_most_once_per_interval_and_a_later_change_is_not_lost(redis_client):
    requests = Requests()
    refresher = refresher_for(redis_client, requests, refresh_ms=300)
    call = option(26_050, "CE", WEEKLY).instrument_token

    tick(refresher.state, call, 50.0)
    await refresher.run_once()
    await redis_client.delete(chain_key("NIFTY", WEEKLY, "pending"))  # a worker took it at once
    tick(refresher.state, call, 51.0)
    await refresher.run_once()
    assert requests.made == [("NIFTY", WEEKLY)]  # too soon: the change waits

    await asyncio.sleep(0.35)
    await refresher.run_once()  # no new tick, but the waiting change is asked for now
    assert requests.made == [("NIFTY", WEEKLY)] * 2
    await redis_client.delete(chain_key("NIFTY", WEEKLY, "pending"))
    await asyncio.sleep(0.35)
    await refresher.run_once()
    assert len(requests.made) == 2  # and nothing more without a change


@pytest.mark.asyncio
async def test_no_second_refresh_is_queued_while_the_first_is_still_waiting(redis_client):
    requests = Requests()
    refresher = refresher_for(redis_client, requests, refresh_ms=50)
    put = option(25_950, "PE", WEEKLY).instrument_token
    pending = chain_key("NIFTY", WEEKLY, "pending")

    tick(refresher.state, put, 80.0)
    await refresher.run_once()
    assert await redis_client.get(pending) == b"1"
    assert 0 < await redis_client.ttl(pending) <= PENDING_TTL_SECONDS
    for price in (81.0, 82.0, 83.0):  # the worker is busy: changes keep coming
        await asyncio.sleep(0.06)
        tick(refresher.state, put, price)
        await refresher.run_once()
    assert requests.made == [("NIFTY", WEEKLY)]
    assert refresher.requests_skipped_pending == 3

    await redis_client.delete(pending)  # what refresh_chain does when it starts
    await refresher.run_once()
    assert requests.made == [("NIFTY", WEEKLY)] * 2


@pytest.mark.asyncio
async def test_a_failed_request_clears_its_marker_and_is_tried_again(redis_client):
    attempts = []

    def broker_down(symbol: str, expiry: dt.date) -> None:
        attempts.append(expiry)
        if len(attempts) == 1:
            raise ConnectionError("broker unreachable")

    refresher = refresher_for(redis_client, broker_down, refresh_ms=50)
    tick(refresher.state, option(26_000, "CE", WEEKLY).instrument_token, 99.0)
    await refresher.run_once()
    assert refresher.request_errors == 1
    assert await redis_client.get(chain_key("NIFTY", WEEKLY, "pending")) is None
    await asyncio.sleep(0.06)
    await refresher.run_once()
    assert attempts == [WEEKLY, WEEKLY] and refresher.requests_sent == 1


@pytest.mark.asyncio
async def test_each_chains_layout_lists_the_streamed_contracts_spot_and_future(redis_client):
    refresher = refresher_for(redis_client, Requests())
    await refresher.run_once()
    weekly = json.loads(await redis_client.get(chain_key("NIFTY", WEEKLY, "layout")))
    # Spot 26,010: ATM 26,000 with one strike each side.
    assert sorted({c[3] for c in weekly["contracts"]}) == [25_950.0, 26_000.0, 26_050.0]
    assert {(c[2], c[3]) for c in weekly["contracts"]} == {
        (kind, strike) for kind in ("CE", "PE") for strike in (25_950.0, 26_000.0, 26_050.0)
    }
    assert all(c[0] == option(int(c[3]), c[2], WEEKLY).instrument_token for c in weekly["contracts"])
    assert (weekly["spot_token"], weekly["future_token"], weekly["future_expiry"]) == (SPOT, FUTURE, "2026-11-26")
    assert (weekly["lot_size"], weekly["risk_free_rate"], weekly["expiry"]) == (75, 0.065, "2026-11-24")

    # A re-centre rewrites the layouts: the window follows spot.
    change = refresher.planner.plan({"NIFTY": 26_100.0})
    refresher.state.add(change.add)
    refresher.assign()
    await refresher.run_once()
    weekly = json.loads(await redis_client.get(chain_key("NIFTY", WEEKLY, "layout")))
    assert sorted({c[3] for c in weekly["contracts"]}) == [26_050.0, 26_100.0]


@pytest.mark.asyncio
async def test_the_chains_new_ticks_are_in_redis_before_its_refresh_is_asked_for(redis_client):
    """The task reads Redis: it must see the tick that asked for it, not wait for a conflation round."""
    seen = []
    reader = redis.Redis.from_url(settings.REDIS_URL)
    call = option(26_000, "CE", WEEKLY).instrument_token

    def request(symbol: str, expiry: dt.date) -> None:  # runs where the Celery publish would
        seen.append(json.loads(reader.get(tick_key(call)))["last_price"])

    refresher = refresher_for(redis_client, request)
    publisher = Publisher(state=refresher.state, group_send=None, redis_client=redis_client)
    refresher.write_latest = publisher.write_latest
    tick(refresher.state, call, 123.45)
    await refresher.run_once()
    assert seen == [123.45]
    reader.close()


def test_the_feed_process_never_loads_the_analytics_or_the_web_stack():
    """run_feed sends refresh_chain by name and skips Django's checks (which import the URLconf):
    either would bring the analytics and SciPy (~30 MB) into the feed's process."""
    from marketdata.management.commands.run_feed import REFRESH_CHAIN_TASK
    from marketdata.tasks import refresh_chain

    assert refresh_chain.name == REFRESH_CHAIN_TASK
    # The command as manage.py runs it, up to its first argument check (checks run before it).
    probe = (
        "import sys, django; django.setup()\n"
        "from django.core.management import ManagementUtility\n"
        "try:\n"
        "    ManagementUtility(['manage.py', 'run_feed', '--speed', '-1']).execute()\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('scipy', 'marketdata.analytics.chain', 'marketdata.tasks', 'trading_site.urls')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "trading_site.settings"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert "--speed must be positive" in done.stderr
    assert done.stdout.strip() == "[]"
