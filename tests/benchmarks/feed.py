"""Feed benchmarks: the whole pipeline's throughput, and the feed's memory with 9,000 instruments.

Run inside a set-up Django process (tests/benchmarks/measure_feed.py), with Redis reachable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis
from channels.layers import get_channel_layer
from django.conf import settings
from kiteconnect import KiteTicker

from instruments import selectors
from marketdata.feed.pipeline import FeedPipeline
from marketdata.feed.publisher import Publisher
from marketdata.feed.state import FeedState
from marketdata.feed.universe import ChainContract, UnderlyingUniverse
from marketdata.kite import build_frame
from trading_site.clock import IST

ROOT = Path(__file__).resolve().parents[2]

PIPELINE_INSTRUMENTS = 3000
PACKETS_PER_FRAME = 500
START = dt.datetime(2026, 11, 23, 9, 15, tzinfo=IST)


def synthetic_universe(instruments: int, *, symbol: str = "BENCH") -> UnderlyingUniverse:
    """One underlying with enough strikes and expiries to reach `instruments` contracts."""
    expiries = tuple(START.date() + dt.timedelta(days=7 * (i + 1)) for i in range(6))
    per_expiry = (instruments - 2) // len(expiries) // 2
    options = tuple(
        ChainContract(
            instrument_token=(100_000 + e * 10_000 + s * 2 + (kind == "PE")) * 256 + 2,
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


def rss_megabytes(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


MEMORY_UNDERLYINGS = ("BENCHA", "BENCHB", "BENCHC")
MEMORY_STRIKES_EACH_SIDE = 67  # 135 strikes
MEMORY_EXPIRIES = 11  # 3 x (135 x 2 x 11 + index + future) = 8,916 instruments, under Kite's 9,000


def _load_memory_universe() -> None:
    """Three underlyings whose streamed chains add up to about 9,000 instruments."""
    from decimal import Decimal

    from instruments import services
    from instruments.master import MasterRow
    from instruments.models import Underlying

    rows, expiries = [], [START.date() + dt.timedelta(days=7 * (n + 1)) for n in range(MEMORY_EXPIRIES)]
    for u, symbol in enumerate(MEMORY_UNDERLYINGS):
        base = 200_000 + u * 20_000
        index = MasterRow(
            (base - 1) * 256 + 9,
            base - 1,
            f"{symbol} INDEX",
            f"{symbol} INDEX",
            Decimal(0),
            None,
            Decimal(0),
            Decimal(0),
            0,
            "EQ",
            "INDICES",
            "NSE",
        )
        future = MasterRow(
            (base - 2) * 256 + 2,
            base - 2,
            f"{symbol}FUT",
            symbol,
            Decimal(0),
            expiries[0],
            Decimal(0),
            Decimal("0.05"),
            65,
            "FUT",
            "NFO-FUT",
            "NFO",
        )
        rows += [index, future]
        for e, expiry in enumerate(expiries):
            for s in range(2 * MEMORY_STRIKES_EACH_SIDE + 1):
                for kind in ("CE", "PE"):
                    token = base + e * 400 + s * 2 + (kind == "PE")
                    rows.append(
                        MasterRow(
                            token * 256 + 2,
                            token,
                            f"{symbol}{e:02d}{s:03d}{kind}",
                            symbol,
                            Decimal(0),
                            expiry,
                            Decimal(20_000 + 50 * s),
                            Decimal("0.05"),
                            65,
                            kind,
                            "NFO-OPT",
                            "NFO",
                        )
                    )
        Underlying.objects.update_or_create(
            symbol=symbol,
            defaults={
                "strike_step": 50,
                "strikes_each_side": MEMORY_STRIKES_EACH_SIDE,
                "expiries_to_stream": MEMORY_EXPIRIES,
                "enabled": True,
            },
        )
    services.instrument_sync(rows=rows, names={r.name for r in rows})
    for underlying in Underlying.objects.filter(symbol__in=MEMORY_UNDERLYINGS):
        index_token = (200_000 + MEMORY_UNDERLYINGS.index(underlying.symbol) * 20_000 - 1) * 256 + 9
        services.underlying_ensure(
            symbol=underlying.symbol, defaults={}, spot_instrument=selectors.instrument_by_token(index_token)
        )


def _sample_rss(process: subprocess.Popen, seconds: float, during=None) -> float:
    peak, deadline = 0.0, time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        if during is not None:
            during()
        peak = max(peak, rss_megabytes(process.pid))
        time.sleep(0.1)
    return peak


def _stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    return stderr


MEMORY_SPOT = 20_000 + 50 * MEMORY_STRIKES_EACH_SIDE  # the middle strike: the window stays put


def _kite_frames(tokens: list[int], ticks_per_frame: int = 400) -> list[bytes]:
    """Full-mode frames cycling over `tokens`, as Kite streams a busy chain (indices at the money)."""
    at = dt.datetime.now(tz=IST)
    frames = []
    for start in range(0, len(tokens), ticks_per_frame):
        frames.append(
            build_frame(
                [
                    {
                        "instrument_token": token,
                        "mode": "full",
                        "last_price": float(MEMORY_SPOT) if (token & 0xFF) == 9 else 100.0 + (token % 97),
                        "volume_traded": 1000,
                        "oi": 6500,
                        "exchange_timestamp": at,
                        "last_trade_time": at,
                        "ohlc": {"open": 100.0, "high": 200.0, "low": 90.0, "close": 110.0},
                        "depth": {
                            "buy": [{"quantity": 65, "price": 99.0, "orders": 1}] * 5,
                            "sell": [{"quantity": 65, "price": 101.0, "orders": 1}] * 5,
                        },
                    }
                    for token in tokens[start : start + ticks_per_frame]
                ]
            )
        )
    return frames


def measure_feed_memory(seconds: float = 25.0, ticks_per_second: int = 4000) -> dict:
    """Peak RSS of `run_feed --source kite` with ~9,000 instruments subscribed and streaming.

    Kite is played by the local Kite-protocol ticker server in this process; the reference is
    a Django process of this project at rest (what every process pays before doing anything).
    """
    from django.contrib.auth import get_user_model

    from instruments.models import BrokerAccount
    from tests.kite_ticker_server import ThreadedKiteTickerServer

    _load_memory_universe()
    user, _ = get_user_model().objects.get_or_create(username="bench-feed")
    BrokerAccount.objects.filter(is_data_account=True).update(is_data_account=False)
    BrokerAccount.objects.update_or_create(
        user=user,
        label="bench",
        defaults={
            "api_key": "benchkey",
            "api_secret": "benchsecret",
            "access_token": "benchtoken",
            "is_data_account": True,
            "access_token_expires_at": dt.datetime.now(tz=IST) + dt.timedelta(hours=6),
        },
    )
    with ThreadedKiteTickerServer("benchkey", "benchtoken") as server:
        feed = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "run_feed",
                "--source",
                "kite",
                "--no-store",
                "--underlyings",
                *MEMORY_UNDERLYINGS,
            ],
            cwd=ROOT,
            env={**os.environ, "KITE_TICKER_URL": server.url, "LOG_LEVEL": "INFO"},  # its final status line is read
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            server.wait_until(lambda: len(server.subscriptions) >= 8916, timeout=60)
            frames = [
                (index, frame)
                for index, connection in enumerate(server.connections)
                for frame in _kite_frames(sorted(connection.subscriptions))
            ]
            interval = len(frames[0][1]) and 400 / ticks_per_second  # one 400-tick frame every interval
            cursor = {"next": 0, "due": time.monotonic()}

            def stream() -> None:
                while time.monotonic() >= cursor["due"]:
                    index, frame = frames[cursor["next"] % len(frames)]
                    server.send_binary(frame, connection=index)
                    cursor["next"] += 1
                    cursor["due"] += interval

            peak = _sample_rss(feed, seconds, during=stream)
        finally:
            stderr = _stop(feed)
    if "feed stopped: " not in stderr:
        raise RuntimeError(f"run_feed did not stop cleanly: {stderr[-2000:]}")
    final = json.loads(stderr.split("feed stopped: ", 1)[1].splitlines()[0])
    idle = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", "import time; time.sleep(60)"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    idle_peak = _sample_rss(idle, 6.0)
    _stop(idle)
    return {
        "instruments": final["instruments"],
        "ticks": final["ticks_total"],
        "rss_mb": peak,
        "baseline_rss_mb": idle_peak,
        "seconds": seconds,
    }
