"""The feed end to end: simulator, Kite's ticker (a local server speaking its protocol), replay,
and a clean stop that loses no tick. Real Redis channel layer, real Redis, real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management import call_command

from instruments.models import BrokerAccount, Underlying
from marketdata import selectors, services
from marketdata.feed.runner import FeedOptions, FeedRunner, with_own_connection
from marketdata.feed.sources import KiteSource, ReplaySource, SimSource
from marketdata.groups import FEED_STATUS_KEY, WATCHED_INSTRUMENTS_KEY, tick_key
from marketdata.kite import build_frame
from marketdata.models import Bar, Tick
from tests.kite_ticker_server import KiteTickerServer, ThreadedKiteTickerServer
from trading_site import clock
from trading_site.clock import IST

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def demo(transactional_db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("load_demo", stdout=io.StringIO(), stderr=io.StringIO())
    Underlying.objects.exclude(symbol="NIFTY").update(enabled=False)
    return selectors.feed_universe()


async def run_for(runner: FeedRunner, seconds: float) -> None:
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(seconds)
    runner.stop()
    await asyncio.wait_for(task, timeout=30)


async def drain(layer, channel: str, seconds: float) -> list[tuple[float, dict]]:
    received, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(layer.receive(channel), timeout=left)
        except TimeoutError:
            break
        received.append((time.monotonic(), message))
    return received


@pytest.mark.asyncio
async def test_the_simulated_feed_streams_conflated_messages_and_writes_redis(demo):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("ticks.NIFTY", channel)
    redis_client = aioredis.Redis.from_url(settings.REDIS_URL)
    start = dt.datetime(2026, 11, 23, 10, 0, tzinfo=IST)
    runner = FeedRunner(
        source=SimSource(demo, seed=7, speed=1.0, start=start),
        universes=demo,
        group_send=layer.group_send,
        redis_client=redis_client,
        options=FeedOptions(conflation_ms=200),
    )
    task = asyncio.create_task(runner.run())
    messages = await drain(layer, channel, 3.0)
    runner.stop()
    await asyncio.wait_for(task, timeout=30)

    ticks_messages = [(at, m) for at, m in messages if m["type"] == "feed.ticks"]
    # At most one message per interval (3 s at 200 ms, give or take the first and last); receive
    # times are not compared, since a busy receiver can read two queued messages back to back.
    assert 5 <= len(ticks_messages) <= 3.0 / 0.2 + 2
    ticks_messages = [(at, json.loads(m["json"])) for at, m in ticks_messages]
    tokens = {t["instrument_token"] for _, m in ticks_messages for t in m["ticks"]}
    nifty = demo[0]
    assert nifty.spot_token in tokens and len(tokens) > 20
    for _, message in ticks_messages:  # one entry per instrument per message: the latest
        listed = [t["instrument_token"] for t in message["ticks"]]
        assert len(listed) == len(set(listed))

    latest = json.loads(await redis_client.get(tick_key(nifty.spot_token)))
    spot_slot = runner.state.slot(nifty.spot_token)
    assert latest["last_price"] == pytest.approx(runner.state.columns["last_price"][spot_slot], abs=1e-4)
    status = json.loads(await redis_client.get(FEED_STATUS_KEY))
    assert status["state"] == "stopped" and status["source"] == "sim" and status["ticks_total"] > 0
    assert status["instruments"] == 2 + 2 * 21 * 2  # spot, future, ATM ± 10 of two expiries
    await redis_client.aclose()


@pytest.mark.asyncio
async def test_the_kite_source_subscribes_streams_and_stops_on_an_expired_session(demo):
    nifty = demo[0]
    expired = []
    async with KiteTickerServer("demokey", "good-token") as server:
        source = KiteSource(
            url=server.url,
            load_session=lambda: None if expired else ("demokey", "good-token"),
            on_session_expired=lambda: expired.append(True),
            client_options={"reconnect_initial_delay": 0.05, "heartbeat_timeout": 2.0},
        )
        runner = FeedRunner(source=source, universes=demo, group_send=get_channel_layer().group_send)
        task = asyncio.create_task(runner.run())
        for _ in range(100):  # subscribe, then the mode message (Kite's default until then is quote)
            subscriptions = server.connections[0].subscriptions if server.connections else {}
            if len(subscriptions) == runner.state.instrument_count and set(subscriptions.values()) == {"full"}:
                break
            await asyncio.sleep(0.05)
        subscribed = server.connections[0].subscriptions
        assert set(subscribed) == set(runner.planner.subscribed) and set(subscribed.values()) == {"full"}

        at = clock.now()
        await server.send_binary(
            build_frame(
                [
                    {
                        "instrument_token": nifty.spot_token,
                        "mode": "full",
                        "last_price": 26033.4,
                        "exchange_timestamp": at,
                        "ohlc": {"open": 26000.0, "high": 26050.0, "low": 25990.0, "close": 25980.0},
                    },
                ]
            )
        )
        for _ in range(50):
            if runner.pipeline.counters.ticks:
                break
            await asyncio.sleep(0.05)
        assert runner.state.columns["last_price"][runner.state.slot(nifty.spot_token)] == 26033.4
        assert source.status()["session"] == "connected"

        server.expire_session()
        await server.drop(0)
        for _ in range(100):
            if expired:
                break
            await asyncio.sleep(0.05)
        assert expired and source.status()["session"] == "session expired"
        runner.stop()
        await asyncio.wait_for(task, timeout=30)


async def subscriptions_when(server, condition, timeout: float = 10.0) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        subscriptions = dict(server.connections[0].subscriptions) if server.connections else {}
        if condition(subscriptions):
            return subscriptions
        await asyncio.sleep(0.05)
    raise AssertionError(f"subscriptions never matched: {sorted(subscriptions)[:20]}")


@pytest.mark.asyncio
async def test_a_watched_instrument_outside_the_chains_is_subscribed_until_nobody_watches_it(demo):
    """A watchlist's far strike: no chain window holds it, so only being watched brings its ticks."""
    nifty = demo[0]
    redis_client = aioredis.Redis.from_url(settings.REDIS_URL)
    await redis_client.delete(WATCHED_INSTRUMENTS_KEY)
    async with KiteTickerServer("demokey", "good-token") as server:
        source = KiteSource(
            url=server.url,
            load_session=lambda: ("demokey", "good-token"),
            on_session_expired=lambda: None,
            client_options={"reconnect_initial_delay": 0.05, "heartbeat_timeout": 5.0},
        )
        runner = FeedRunner(
            source=source, universes=demo, group_send=get_channel_layer().group_send, redis_client=redis_client
        )
        task = asyncio.create_task(runner.run())
        chains = await subscriptions_when(server, lambda s: len(s) == len(runner.planner.subscribed) > 0)
        far = max(nifty.options, key=lambda c: c.strike).instrument_token  # the highest strike listed
        assert far not in chains

        await redis_client.zadd(WATCHED_INSTRUMENTS_KEY, {str(far): time.time() + 60})
        watching = await subscriptions_when(server, lambda s: far in s)
        assert watching[far] == "full" and set(watching) - set(chains) == {far}
        assert runner.state.slot(far) is not None  # its ticks will be kept and published

        await redis_client.zrem(WATCHED_INSTRUMENTS_KEY, str(far))
        after = await subscriptions_when(server, lambda s: far not in s)
        assert set(after) == set(chains)  # the chains' own instruments never dropped
        runner.stop()
        await asyncio.wait_for(task, timeout=30)
    await redis_client.aclose()


@pytest.mark.asyncio
async def test_a_replay_rebuilds_bars_from_stored_ticks(transactional_db):
    day = dt.date(2026, 11, 20)
    token = 10_191_874
    prices = [100.0, 101.5, 99.0, 100.5, 102.0]

    def store_ticks() -> None:
        Tick.objects.bulk_create(
            [
                Tick(
                    instrument_token=token,
                    exchange_timestamp=dt.datetime(2026, 11, 20, 9, 15, 10 * i, tzinfo=IST),
                    last_price=price,
                    volume_traded=1000 + 100 * i,
                    oi=6500 + 65 * i,
                )
                for i, price in enumerate(prices)
            ]
            + [
                Tick(
                    instrument_token=token,
                    exchange_timestamp=dt.datetime(2026, 11, 20, 9, 16, 5, tzinfo=IST),
                    last_price=98.0,
                    volume_traded=1600,
                    oi=6435,
                )
            ]
        )

    await asyncio.to_thread(with_own_connection(store_ticks))
    source = ReplaySource(load_ticks=with_own_connection(lambda: selectors.ticks_for_replay(day)), speed=0)
    runner = FeedRunner(
        source=source,
        universes=[],
        group_send=get_channel_layer().group_send,
        store_bars=lambda bars: services.bars_store(bars=bars),
        options=FeedOptions(housekeeping_interval=0.2),
    )
    runner.state.add([token])
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(source.finished.wait(), timeout=20)
    await asyncio.sleep(0.6)
    runner.stop()
    await asyncio.wait_for(task, timeout=30)

    bars = await asyncio.to_thread(
        with_own_connection(lambda: list(Bar.objects.filter(instrument_token=token).order_by("start")))
    )
    first = bars[0]
    assert first.start == dt.datetime(2026, 11, 20, 9, 15, tzinfo=IST)
    assert (float(first.open), float(first.high), float(first.low), float(first.close)) == (100.0, 102.0, 99.0, 102.0)
    assert (first.volume, first.oi, first.tick_count) == (400, 6760, 5)
    assert [float(b.close) for b in bars] == [102.0, 98.0]


def test_sigterm_flushes_every_stored_tick(demo, subprocess_env):
    feed = subprocess.Popen(
        [sys.executable, "manage.py", "run_feed", "--source", "sim", "--speed", "20", "--conflation-ms", "100"],
        cwd=ROOT,
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(6)
    feed.send_signal(signal.SIGTERM)
    _, stderr = feed.communicate(timeout=60)
    assert feed.returncode == 0, stderr[-2000:]
    final = json.loads(stderr.split("feed stopped: ", 1)[1].splitlines()[0])
    assert final["ticks_for_storage"] > 100
    assert final["ticks_dropped"] == 0 and final["storage_backlog"] == 0
    assert Tick.objects.count() == final["ticks_stored"] == final["ticks_for_storage"]
    nifty_tokens = {
        demo[0].spot_token,
        *(c.instrument_token for c in demo[0].options),
        demo[0].futures[0].instrument_token,
    }
    assert set(Tick.objects.values_list("instrument_token", flat=True)) <= nifty_tokens


def test_run_feed_streams_kite_through_the_data_accounts_session(demo, subprocess_env, alice):
    BrokerAccount.objects.create(
        user=alice,
        label="Main",
        api_key="demokey",
        api_secret="secret",
        access_token="good-token",
        access_token_expires_at=clock.now() + dt.timedelta(hours=6),
        is_data_account=True,
    )
    nifty = demo[0]
    redis_client = redis.Redis.from_url(settings.REDIS_URL)
    redis_client.delete(tick_key(nifty.spot_token))
    with ThreadedKiteTickerServer("demokey", "good-token") as server:
        feed = subprocess.Popen(
            [sys.executable, "manage.py", "run_feed", "--no-store"],  # kite by default: the session is valid
            cwd=ROOT,
            env={**subprocess_env, "KITE_TICKER_URL": server.url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Subscribe, then the mode message: until it lands Kite has them in its default, quote.
            server.wait_until(
                lambda: len(server.subscriptions) == 2 + 2 * 21 * 2 and set(server.subscriptions.values()) == {"full"},
                timeout=30,
            )
            spot = {
                "instrument_token": nifty.spot_token,
                "mode": "full",
                "last_price": 26044.15,
                "exchange_timestamp": clock.now(),
                "ohlc": {"open": 26000.0, "high": 26050.0, "low": 25990.0, "close": 25980.0},
            }
            server.send_binary(build_frame([spot]))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not redis_client.get(tick_key(nifty.spot_token)):
                time.sleep(0.1)
            latest = json.loads(redis_client.get(tick_key(nifty.spot_token)))
            assert latest["last_price"] == 26044.15 and latest["change"] == pytest.approx(0.2470, abs=1e-4)
        finally:
            feed.send_signal(signal.SIGTERM)
            _, stderr = feed.communicate(timeout=60)
    final = json.loads(stderr.split("feed stopped: ", 1)[1].splitlines()[0])
    # Stopped: the sockets were closed cleanly before the last status.
    assert (final["source"], final["session"], final["connections_up"]) == ("kite", "connected", 0)
    assert final["ticks_total"] == 1 and final["frame_errors"] == 0
