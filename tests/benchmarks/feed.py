"""Feed benchmarks: the whole pipeline's throughput, and the feed's memory with 9,000 instruments.

Run inside a set-up Django process (tests/benchmarks/measure_feed.py), with Redis reachable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time

import redis.asyncio as aioredis
from channels.layers import get_channel_layer
from django.conf import settings
from kiteconnect import KiteTicker

from marketdata.feed.pipeline import FeedPipeline
from marketdata.feed.publisher import Publisher
from marketdata.feed.state import FeedState
from marketdata.feed.universe import ChainContract, UnderlyingUniverse
from marketdata.kite import build_frame
from trading_site.clock import IST

PIPELINE_INSTRUMENTS = 3000
PACKETS_PER_FRAME = 500
START = dt.datetime(2026, 11, 23, 9, 15, tzinfo=IST)


def synthetic_universe(instruments: int, *, symbol: str = "BENCH") -> UnderlyingUniverse:
    """One underlying with enough strikes and expiries to reach `instruments` contracts."""
    expiries = tuple(START.date() + dt.timedelta(days=7 * (i + 1)) for i in range(6))
    per_expiry = (instruments - 2) // len(expiries) // 2
    options = tuple(
        ChainContract(
            instrument_token=(100_000 + e * 1000 + s * 2 + (kind == "PE")) * 256 + 2,
            tradingsymbol=f"{symbol}{e}{s}{kind}",
            kind=kind,
            strike=20_000.0 + 50 * s,
            expiry=expiry,
            lot_size=65,
        )
        for e, expiry in enumerate(expiries)
        for s in range(per_expiry)
        for kind in ("CE", "PE")
    )
    future = ChainContract(
        instrument_token=99_999 * 256 + 2,
        tradingsymbol=f"{symbol}FUT",
        kind="FUT",
        strike=0.0,
        expiry=expiries[0],
        lot_size=65,
    )
    return UnderlyingUniverse(
        symbol=symbol,
        spot_token=1001 * 256 + 9,
        strike_step=50.0,
        strikes_each_side=per_expiry,
        expiries=expiries,
        futures=(future,),
        options=options,
        reference_spot=20_000.0 + 25 * per_expiry,
    )


def _frames(tokens: list[int], frames: int) -> tuple[list[bytes], int]:
    rng = random.Random(5)
    out, ticks = [], 0
    for n in range(frames):
        at = START + dt.timedelta(seconds=n * 0.5)  # crosses minutes, so bars close during the run
        packets = [
            {
                "instrument_token": token,
                "mode": "full",
                "last_price": round(100 + rng.random() * 50, 2),
                "volume_traded": 1000 + n * 10,
                "oi": 6500 + n,
                "exchange_timestamp": at,
                "last_trade_time": at,
                "ohlc": {"open": 100.0, "high": 150.0, "low": 90.0, "close": 110.0},
                "depth": {
                    "buy": [{"quantity": 65, "price": 99.0, "orders": 1}] * 5,
                    "sell": [{"quantity": 65, "price": 101.0, "orders": 1}] * 5,
                },
            }
            for token in rng.sample(tokens, PACKETS_PER_FRAME)
        ]
        out.append(build_frame(packets))
        ticks += len(packets)
    return out, ticks


async def _pipeline_run(frames: list[bytes], universe: UnderlyingUniverse, conflation_seconds: float) -> float:
    state = FeedState()
    tokens = [
        universe.spot_token,
        universe.futures[0].instrument_token,
        *(c.instrument_token for c in universe.options),
    ]
    state.add(tokens)
    pipeline = FeedPipeline(state=state)
    redis_client = aioredis.Redis.from_url(settings.REDIS_URL)
    layer = get_channel_layer()
    publisher = Publisher(state=state, group_send=layer.group_send, redis_client=redis_client)
    publisher.groups_of_token = {t: [f"ticks.{universe.symbol}"] for t in tokens}
    started = last_publish = time.perf_counter()
    for frame in frames:
        pipeline.on_frame(frame)
        if time.perf_counter() - last_publish >= conflation_seconds:
            pipeline.close_due_bars(pipeline.counters.latest_exchange_timestamp)
            pipeline.take_closed_bars()
            await publisher.publish_changes()
            last_publish = time.perf_counter()
    await publisher.publish_changes()
    elapsed = time.perf_counter() - started
    await redis_client.delete(*[f"desk:tick:{t}" for t in tokens])
    await redis_client.aclose()
    return elapsed


def measure_pipeline(frames: int = 600) -> dict:
    """parse -> state -> bars -> conflation (real channel layer) -> Redis, fed as fast as it takes frames."""
    universe = synthetic_universe(PIPELINE_INSTRUMENTS)
    tokens = [c.instrument_token for c in universe.options]
    frame_list, ticks = _frames(tokens, frames)
    asyncio.run(_pipeline_run(frame_list[:20], universe, 0.25))  # warm up caches and connections
    elapsed = asyncio.run(_pipeline_run(frame_list, universe, 0.25))

    ticker = KiteTicker("bench", "bench")
    reference_started = time.perf_counter()
    for frame in frame_list[:100]:
        ticker._parse_binary(frame)
    reference = 100 * PACKETS_PER_FRAME / (time.perf_counter() - reference_started)
    return {"ticks": ticks, "ticks_per_s": ticks / elapsed, "reference_parse_only_ticks_per_s": reference}


def rss_megabytes() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure_feed_memory(seconds: float = 20.0, instruments: int = 9000) -> dict:
    """RSS of a simulated feed streaming 9,000 subscribed instruments, against the same process before it started."""
    from marketdata.feed.runner import FeedOptions, FeedRunner
    from marketdata.feed.sources import SimSource

    baseline = rss_megabytes()
    universe = synthetic_universe(instruments)
    source = SimSource([universe], seed=3, speed=1.0, start=START)
    runner = FeedRunner(
        source=source,
        universes=[universe],
        group_send=get_channel_layer().group_send,
        options=FeedOptions(conflation_ms=250),
    )
    peak = 0.0

    async def run() -> None:
        nonlocal peak
        task = asyncio.create_task(runner.run())
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            peak = max(peak, rss_megabytes())
        runner.stop()
        await task

    asyncio.run(run())
    return {
        "instruments": runner.state.instrument_count,
        "ticks": runner.pipeline.counters.ticks,
        "rss_mb": peak,
        "baseline_rss_mb": baseline,
        "seconds": seconds,
    }
