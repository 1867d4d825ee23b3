"""A market to test against: the demo instruments, and a few simulated minutes streamed through the
real feed, so that Redis holds ticks, layouts and chain analytics and the database bars, ticks and
chain snapshots, all written by the product's own code."""

from __future__ import annotations

import asyncio
import datetime as dt
import io

import redis.asyncio as aioredis
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management import call_command

from instruments.models import Underlying
from marketdata import selectors, services
from marketdata.feed.runner import FeedOptions, FeedRunner, with_own_connection
from marketdata.feed.sources import SimSource
from marketdata.feed.storage import TickWriter
from trading_site.clock import IST

# A Monday morning session; the simulator's time runs SPEED times faster than the wall clock.
SESSION_START = dt.datetime(2026, 11, 23, 10, 0, tzinfo=IST)
SPEED = 60


def load_demo_market(*, symbols: tuple[str, ...] = ("NIFTY",)) -> None:
    call_command("load_demo", stdout=io.StringIO(), stderr=io.StringIO())
    Underlying.objects.exclude(symbol__in=symbols).update(enabled=False)


def stream_simulated_market(seconds: float = 4.0) -> FeedRunner:
    """Run the feed on the simulator for `seconds` (minutes of market time at SPEED), computing
    each changed chain's analytics inline, as a worker would. Returns the stopped runner."""
    return asyncio.run(_stream(seconds))


async def _stream(seconds: float) -> FeedRunner:
    universes = await asyncio.to_thread(with_own_connection(selectors.feed_universe))
    redis_client = aioredis.Redis.from_url(settings.REDIS_URL)
    refresh = with_own_connection(services.chain_refresh)
    runner = FeedRunner(
        source=SimSource(universes, seed=3, speed=SPEED, start=SESSION_START),
        universes=universes,
        group_send=get_channel_layer().group_send,
        redis_client=redis_client,
        tick_writer=TickWriter(),
        store_bars=with_own_connection(lambda bars: services.bars_store(bars=bars)),
        options=FeedOptions(conflation_ms=100, chain_refresh_ms=200),
        request_chain_refresh=lambda symbol, expiry: refresh(symbol=symbol, expiry=expiry),
    )
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(seconds)
    runner.stop()
    await asyncio.wait_for(task, timeout=60)
    await redis_client.aclose()
    return runner
