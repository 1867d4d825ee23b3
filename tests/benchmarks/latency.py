"""Tick-to-websocket-client latency: the feed, the Redis channel layer, daphne and 100 sockets, end to end.

The issue's target: "p99 from the exchange timestamp to a client receiving it, at 2,000 ticks/s
with 100 clients connected through daphne and the Redis channel layer: p99 at most the
conflation interval + 50 ms". Kite's exchange timestamps have 1-second resolution, so the
latency is measured from the feed receiving the frame (the moment the source hands it to the
feed's sink) to a client's websocket receiving the message that carries that tick's value.

How:
- daphne serves `trading_site.asgi:application` in a subprocess, on the caller's database.
- This process's asyncio loop runs a real `FeedRunner` (parser, state, bars, conflation, the
  real Redis channel layer) over a 400-instrument synthetic universe. Its source emits a frame
  of full-mode ticks every 10 ms, round-robin over the subscribed tokens; tick n of a token has
  last_price 100.00 + 0.05 n, so (token, price) names one tick, and its emit time is kept.
- The clients run in a second process (`python -m tests.benchmarks.latency_clients ...`), all
  logged in with one staff session cookie and joined to `ticks.BENCH`. A socket's reader stamps
  each message the moment the websocket hands it over, and queues it; a parser then reads it
  (JSON), and keeps per ticks message the stamp, the tick count and a checksum of the (token,
  price) of every tick. In the feed's process the two are matched, and every delivered tick
  gives receive time - emit time. Both processes read CLOCK_MONOTONIC (`time.monotonic`), one
  clock for the whole machine; the start-up handshake checks it.
- Why the clients are not in the feed's loop, and why stamping comes before parsing: one
  message carries every instrument that changed (~400 here, ~190 KB of JSON), four times a
  second, to 100 sockets. Parsing 100 copies inline in one loop delays each later socket's
  receive by every earlier socket's parse, and in the feed's own loop it stalls the feed: the
  figure would be the test rig's queue. Browsers parse on their own machines, after receipt.
- By default the parser reads each distinct message once per clients process; a copy that is
  byte-for-byte identical (the other 99 sockets) is compared, not parsed again, so simulating
  100 browsers does not take a core away from the server being measured on a small machine.
  `parse_every_copy=True` parses every copy (the stamps stay receipt times); the result gives
  the parse cost per message and `p99_after_client_parse_ms` either way.
- Conflation delivers only an instrument's latest value per interval, so the latencies are
  those of the delivered values: what a client sees. Ticks emitted in the first 2 s (warm-up)
  are not counted; after the measured window the run waits until every client has received the
  last message published, so slow deliveries are not cut off.
- The reference, measured in the same run, is the channel-layer floor: group_send of a small
  message to a group of one bare channel -> its receive(), in this process.

Besides the figures, the result says where the time goes: the wait for the conflation round
(emit -> publish), the feed's group_send, delivery (publish -> client) to the first client and to
all, the spread between the first and the last client receiving one message, whether latency
grows during the run (a queue building up: `keeping_up`), and the CPU used by daphne, the feed
process, the clients process, Redis and the whole machine (100 = one core).

Run inside a set-up Django process (DATABASE_URL pointing at a migrated scratch database, Redis
reachable), like the other benchmarks; `measure_tick_latency` returns one dict.

This module holds the feed's side: the run, from the logged-in session to cleaning up GROUP. Its
counting source is tests/benchmarks/latency_source.py; the result arithmetic and the channel-layer
floor are in tests/benchmarks/latency_figures.py. The clients' process is
tests/benchmarks/latency_clients.py; starting daphne, stopping processes and reading CPU use are in
tests/benchmarks/processes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from tests.benchmarks.latency_clients import (
    CONNECT_TIMEOUT,
    COOKIE_ENV,
    DRAIN_TIMEOUT_SECONDS,
    GROUP,
    SYMBOL,
    now,
    tick_checksum,
)
from tests.benchmarks.latency_figures import Published, Window, channel_layer_floor, figures
from tests.benchmarks.latency_source import CountingSource
from tests.benchmarks.processes import (
    ROOT,
    cpu_seconds,
    free_port,
    machine_cpu,
    redis_cpu_seconds,
    start_daphne,
    stop_process,
    tail,
    wait_for_http,
)

UNIVERSE_INSTRUMENTS = 400
WARMUP_SECONDS = 2.0
STALE_MEMBER_SECONDS = 600
BENCH_USERNAME = "latency-bench"


def measure_tick_latency(
    database_url: str,
    *,
    clients: int = 100,
    ticks_per_second: int = 2000,
    seconds: float = 12.0,
    conflation_ms: int = 250,
    parse_every_copy: bool = False,
) -> dict:
    """p50/p99 from the feed receiving a tick's frame to a websocket client receiving its value."""
    if clients < 1 or ticks_per_second < 1 or seconds <= 0 or conflation_ms < 1:
        raise ValueError("clients, ticks_per_second, seconds and conflation_ms must be positive")
    session_key = staff_session_key()
    port = free_port()
    with tempfile.TemporaryFile(prefix="desk-latency-daphne-") as daphne_log:
        daphne = start_daphne(database_url, port, daphne_log)
        try:
            wait_for_http(daphne, port, daphne_log)
            return asyncio.run(
                _measure(
                    port=port,
                    daphne=daphne,
                    daphne_log=daphne_log,
                    session_key=session_key,
                    clients=clients,
                    ticks_per_second=ticks_per_second,
                    seconds=seconds,
                    conflation_ms=conflation_ms,
                    parse_every_copy=parse_every_copy,
                )
            )
        finally:
            stop_process(daphne)


# -- set-up: a logged-in session -------------------------------------------------------------
def staff_session_key() -> str:
    """A database session logged in as a staff user; every benchmark socket shares its cookie."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(username=BENCH_USERNAME, defaults={"is_staff": True})
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(user)
    cookie = client.cookies.get(settings.SESSION_COOKIE_NAME)
    if cookie is None or not cookie.value:
        raise RuntimeError("force_login did not produce a session cookie")
    return cookie.value


# -- the measured run (the feed's process) --------------------------------------------------------------
async def _measure(
    *,
    port: int,
    daphne: subprocess.Popen,
    daphne_log,
    session_key: str,
    clients: int,
    ticks_per_second: int,
    seconds: float,
    conflation_ms: int,
    parse_every_copy: bool,
) -> dict:
    import redis.asyncio as aioredis
    from channels.layers import get_channel_layer
    from django.conf import settings

    from marketdata.feed.runner import FeedOptions, FeedRunner
    from marketdata.groups import TICKS_MESSAGE
    from tests.benchmarks.feed import synthetic_universe

    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured (CHANNEL_LAYERS)")
    reference = await channel_layer_floor(layer)

    emitted: dict[tuple[int, int], float] = {}
    published: dict[tuple[int, int], Published] = {}  # by the (token, paise) of the message's first tick
    order: list[Published] = []

    async def group_send(group: str, message: dict) -> None:
        ticks = json.loads(message["json"])["ticks"] if message.get("type") == TICKS_MESSAGE else None
        if group == GROUP and ticks:
            keys = [(tick["instrument_token"], round(tick["last_price"] * 100)) for tick in ticks]
            entry = Published(
                seq=len(order),
                sent_at=now(),
                send_seconds=0.0,
                emitted=np.array([emitted.get(key, np.nan) for key in keys]),
                checksum=tick_checksum(keys),
            )
            published[keys[0]] = entry
            order.append(entry)
            await layer.group_send(group, message)
            entry.send_seconds = now() - entry.sent_at
        else:
            await layer.group_send(group, message)

    redis = aioredis.Redis.from_url(settings.REDIS_URL)
    others = await _clear_stale_members(layer, redis)
    ours: set[bytes] = set()
    with tempfile.TemporaryFile(prefix="desk-latency-clients-") as clients_log:
        swarm = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.benchmarks.latency_clients",
            f"ws://127.0.0.1:{port}/ws/feed/?groups={GROUP}",
            f"http://127.0.0.1:{port}",
            str(clients),
            "parse-every-copy" if parse_every_copy else "parse-once",
            cwd=ROOT,
            env={**os.environ, COOKIE_ENV: f"{settings.SESSION_COOKIE_NAME}={session_key}"},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=clients_log,
            limit=1 << 26,
        )
        source = CountingSource(ticks_per_second, emitted)
        runner = FeedRunner(
            source=source,
            universes=[synthetic_universe(UNIVERSE_INSTRUMENTS, symbol=SYMBOL)],
            group_send=group_send,
            options=FeedOptions(conflation_ms=conflation_ms),
        )

        async def cpu_used() -> tuple[float, float, float, float]:
            """CPU seconds so far of daphne, this process, the clients' process and Redis."""
            return cpu_seconds(daphne.pid), cpu_seconds(), cpu_seconds(swarm.pid), await redis_cpu_seconds(redis)

        feed: asyncio.Task | None = None
        window = Window()
        try:
            ready = await _read_line(swarm, CONNECT_TIMEOUT + 15, clients_log, daphne_log, "connecting")
            if "error" in ready:
                raise RuntimeError(f"websocket clients could not connect: {ready['error']}\n{tail(daphne_log)}")
            skew = now() - ready["clock"]
            if not 0 <= skew < 5:
                raise RuntimeError(f"the clients' process clock is {skew:.3f} s off this one's: not one clock")
            ours = set(await _members(layer, redis)) - others

            feed = asyncio.create_task(runner.run(), name="latency-feed")
            window.start = now() + WARMUP_SECONDS
            window.end = window.start + seconds
            await _sleep_or_fail(window.start - now(), feed, daphne)
            ticks_before, frames_before = source.ticks_sent, source.frames_sent
            cpu_before = await cpu_used()
            machine_before = machine_cpu()
            await _sleep_or_fail(window.end - now(), feed, daphne)
            elapsed = now() - window.start
            cpu_after = await cpu_used()
            machine_after = machine_cpu()
            fed = (source.ticks_sent - ticks_before) / elapsed
            frames = (source.frames_sent - frames_before) / elapsed
            cpu = [(after - before) / elapsed * 100 for before, after in zip(cpu_before, cpu_after, strict=True)]
            # The whole machine, in the same unit (100 = one core busy): is anything else competing?
            cores = os.cpu_count() or 1
            busy, total = (after - before for before, after in zip(machine_before, machine_after, strict=True))
            cpu.append(busy / total * 100 * cores if total else float("nan"))

            # The next conflation round carries the window's last ticks; wait for every client to get it.
            await _sleep_or_fail(conflation_ms / 1000 * 1.5, feed, daphne)
            if not order:
                raise RuntimeError(f"the feed published nothing to {GROUP} in {seconds + WARMUP_SECONDS:.0f} s")
            last = next(key for key, entry in published.items() if entry is order[-1])
            swarm.stdin.write(json.dumps({"drain": list(last), "timeout": DRAIN_TIMEOUT_SECONDS}).encode() + b"\n")
            await swarm.stdin.drain()
            report = await _read_line(swarm, DRAIN_TIMEOUT_SECONDS + 30, clients_log, daphne_log, "draining")
            if "error" in report:
                raise RuntimeError(f"the websocket clients failed: {report['error']}")
        finally:
            runner.stop()
            if feed is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(feed, timeout=15)
            if swarm.returncode is None:
                with contextlib.suppress(Exception):
                    swarm.stdin.close()
                try:
                    await asyncio.wait_for(swarm.wait(), timeout=10)
                except TimeoutError:
                    swarm.kill()
                    await swarm.wait()
            with contextlib.suppress(Exception):
                await _leave_group(layer, redis, ours)
            with contextlib.suppress(Exception):
                await redis.aclose()
            # RedisChannelLayer's pools; the pub/sub layer has no close_pools (AttributeError, suppressed)
            # and closes its connections when asyncio.run closes the loop (channels_redis's _wrap_close).
            with contextlib.suppress(Exception):
                await layer.close_pools()

    if runner.source_error is not None:
        raise RuntimeError(f"the benchmark source failed: {runner.source_error!r}")
    return figures(
        report=report,
        published=published,
        order=order,
        window=window,
        reference=reference,
        clients=clients,
        ticks_per_second=ticks_per_second,
        fed=fed,
        frames=frames,
        elapsed=elapsed,
        conflation_ms=conflation_ms,
        instruments=len(source.tokens),
        ticks_skipped=source.ticks_skipped,
        cpu=cpu,
        other_members=len(others),
    )


async def _read_line(swarm, timeout: float, clients_log, daphne_log, doing: str) -> dict:
    try:
        line = await asyncio.wait_for(swarm.stdout.readline(), timeout=timeout)
    except TimeoutError:
        raise RuntimeError(
            f"the websocket clients were still {doing} after {timeout:.0f} s:\n{tail(clients_log)}\n"
            f"daphne:\n{tail(daphne_log)}"
        ) from None
    if not line:
        await swarm.wait()
        raise RuntimeError(
            f"the websocket clients' process exited ({swarm.returncode}) while {doing}:\n{tail(clients_log)}\n"
            f"daphne:\n{tail(daphne_log)}"
        )
    return json.loads(line)


# -- GROUP's members in Redis: the list-based RedisChannelLayer only -------------------------------------
# channels_redis's RedisChannelLayer (core.py) keeps a group in Redis as a sorted set of channel names
# scored by the time each joined, which a killed run can leave full of dead members. The
# RedisPubSubChannelLayer that settings.py configures keeps no such set (pubsub.py: a group is a Redis
# pub/sub channel, its members a dict in each subscribing process, gone with that process) and has no
# `_group_key`, so on it these helpers are a no-op: no key, no members, nothing to clear or discard,
# `other_group_members` 0. They stay so the benchmark still cleans up after itself if CHANNEL_LAYERS
# is switched back to RedisChannelLayer.
def _group_key(layer) -> str | None:
    # None on the pub/sub layer: its __getattr__ forwards to a per-loop layer without _group_key.
    group_key = getattr(layer, "_group_key", None)
    return group_key(GROUP) if group_key else None


async def _members(layer, redis) -> list[bytes]:
    key = _group_key(layer)
    return await redis.zrange(key, 0, -1) if key else []


async def _clear_stale_members(layer, redis) -> set[bytes]:
    """Drop members an earlier, killed run left in GROUP; return the members still there.

    A member that joined more than STALE_MEMBER_SECONDS ago cannot belong to a running benchmark,
    and every one of them would make each group_send serialise and store one more copy.
    """
    key = _group_key(layer)
    if key:
        await redis.zremrangebyscore(key, "-inf", time.time() - STALE_MEMBER_SECONDS)
    return set(await _members(layer, redis))


async def _leave_group(layer, redis, ours: set[bytes]) -> None:
    """Wait for daphne to take the closed sockets out of GROUP; discard any it did not get to."""
    deadline = now() + 5
    while ours and now() < deadline:
        remaining = ours & set(await _members(layer, redis))
        if not remaining:
            return
        await asyncio.sleep(0.1)
    for channel in ours & set(await _members(layer, redis)):
        await layer.group_discard(GROUP, channel.decode())


async def _sleep_or_fail(seconds: float, feed: asyncio.Task, daphne: subprocess.Popen) -> None:
    """Sleep, but fail at once if the feed or daphne ends on its own."""
    if seconds > 0:
        await asyncio.wait([feed], timeout=seconds)
    if feed.done():
        error = None if feed.cancelled() else feed.exception()
        raise RuntimeError(f"the feed stopped during the benchmark: {error!r}")
    if daphne.poll() is not None:
        raise RuntimeError(f"daphne exited with code {daphne.returncode} during the benchmark")
