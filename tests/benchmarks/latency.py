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

This module holds the feed's side: the run, its counting source and the figures. The clients'
process is tests/benchmarks/latency_clients.py; starting daphne, stopping processes and reading
CPU use are in tests/benchmarks/processes.py.
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
from dataclasses import dataclass

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
FRAME_INTERVAL = 0.010  # the source emits one frame every 10 ms
WARMUP_SECONDS = 2.0
REFERENCE_SENDS = 200
REFERENCE_GROUP = "bench.latency.floor"
STALE_MEMBER_SECONDS = 600
# Median latency rising faster than this over the window means a queue is growing somewhere.
KEEPING_UP_MS_PER_S = 25.0
BENCH_USERNAME = "latency-bench"
# last_price = 100.00 + 0.05 * counter; the counter wraps long before a run could repeat a price.
BASE_PAISE = 10_000
STEP_PAISE = 5
PRICE_STEPS = 100_000


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


# -- the feed's source: counting ticks with known emit times -------------------------------------------
class CountingSource:
    """Every 10 ms, a frame of full-mode ticks round-robin over the subscribed tokens.

    Tick n of a token carries last_price = 100.00 + 0.05 * n, so (token, price in paise) names
    it; its emit time (the moment the frame goes to the sink) is kept in `emitted`.
    """

    name = "latency-bench"

    def __init__(self, ticks_per_second: int, emitted: dict[tuple[int, int], float]) -> None:
        self.ticks_per_second = ticks_per_second
        self.emitted = emitted
        self.tokens: list[int] = []
        self.ticks_sent = 0
        self.frames_sent = 0
        self.ticks_skipped = 0  # offered ticks not sent because the loop fell more than 100 ms behind
        self._counter: dict[int, int] = {}
        self._cursor = 0
        self._owed = 0.0
        self._stopped = asyncio.Event()
        self._ohlc = {"open": 100.0, "high": 9000.0, "low": 99.0, "close": 100.0}
        self._depth = {
            "buy": [{"quantity": 65, "price": 99.0, "orders": 1}] * 5,
            "sell": [{"quantity": 65, "price": 101.0, "orders": 1}] * 5,
        }

    def apply(self, change) -> None:
        known = set(self.tokens)
        self.tokens += [token for token in change.add if token not in known]
        if change.remove:
            self.tokens = [token for token in self.tokens if token not in change.remove]

    def market_time(self) -> float:
        return time.time()

    def status(self) -> dict:
        return {"session": "benchmark", "connections_up": 1, "connections_wanted": 1}

    async def run(self, sink) -> None:
        from marketdata.kite import build_frame

        due = now()
        while not self._stopped.is_set():
            wait = due - now()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if wait < -0.1:  # far behind: drop the backlog rather than burst it
                self.ticks_skipped += int(-wait * self.ticks_per_second)
                due = now()
            due += FRAME_INTERVAL
            self._owed += self.ticks_per_second * FRAME_INTERVAL
            count = int(self._owed)
            if count == 0 or not self.tokens:
                continue
            self._owed -= count
            ticks, keys = self._ticks(count)
            frame = build_frame(ticks)
            emitted_at = now()
            for key in keys:
                self.emitted[key] = emitted_at
            self.ticks_sent += count
            self.frames_sent += 1
            sink(frame, time.time())

    def _ticks(self, count: int) -> tuple[list[dict], list[tuple[int, int]]]:
        exchange_second = int(time.time())
        ticks, keys = [], []
        tokens = self.tokens
        for _ in range(count):
            token = tokens[self._cursor % len(tokens)]
            self._cursor += 1
            counter = self._counter[token] = (self._counter.get(token, 0) + 1) % PRICE_STEPS
            paise = BASE_PAISE + STEP_PAISE * counter
            ticks.append(
                {
                    "instrument_token": token,
                    "mode": "full",
                    "last_price": paise / 100,
                    "last_traded_quantity": 65,
                    "average_traded_price": 100.0,
                    "volume_traded": 1000 + counter,
                    "total_buy_quantity": 6500,
                    "total_sell_quantity": 6500,
                    "oi": 65_000,
                    "exchange_timestamp": exchange_second,
                    "last_trade_time": exchange_second,
                    "ohlc": self._ohlc,
                    "depth": self._depth,
                }
            )
            keys.append((token, paise))
        return ticks, keys

    async def stop(self) -> None:
        self._stopped.set()


# -- the measured run (the feed's process) --------------------------------------------------------------
@dataclass
class Published:
    """One ticks message the feed sent to GROUP."""

    seq: int
    sent_at: float
    send_seconds: float  # how long group_send took (serialising, Redis)
    emitted: np.ndarray  # emit time of each tick in it, in order
    checksum: int


@dataclass
class Window:
    start: float = float("inf")
    end: float = float("inf")


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
    return _figures(
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


def _figures(
    *,
    report: dict,
    published: dict[tuple[int, int], Published],
    order: list[Published],
    window: Window,
    reference: tuple[float, float],
    clients: int,
    ticks_per_second: int,
    fed: float,
    frames: float,
    elapsed: float,
    conflation_ms: int,
    instruments: int,
    ticks_skipped: int,
    cpu: list[float],
    other_members: int,
) -> dict:
    def in_window(entry: Published) -> np.ndarray:
        return (entry.emitted >= window.start) & (entry.emitted < window.end)

    latencies, parsed, emit_times, delivery = [], [], [], []
    received: dict[int, list[float]] = {}
    foreign = corrupt = 0
    for client in report["clients"]:
        for token, paise, at, parsed_at, count, checksum in client["messages"]:
            entry = published.get((token, paise))
            if entry is None:
                foreign += 1  # not this run's feed (another feed on the same group?)
                continue
            if checksum != entry.checksum or count != entry.emitted.size:
                corrupt += 1
                continue
            received.setdefault(entry.seq, []).append(at)
            mask = in_window(entry)
            if mask.any():
                latencies.append(at - entry.emitted[mask])
                parsed.append(parsed_at - entry.emitted[mask])
                emit_times.append(entry.emitted[mask])
                delivery.append(at - entry.sent_at)
    if corrupt:
        raise RuntimeError(f"{corrupt} messages reached a client with other ticks than the feed published")
    if not latencies:
        raise RuntimeError(
            f"no samples: the clients received {sum(len(c['messages']) for c in report['clients'])} ticks "
            f"messages ({foreign} not from this run), the feed published {len(order)}"
        )
    samples = np.concatenate(latencies) * 1000
    after_parse = np.concatenate(parsed) * 1000
    emit_at = np.concatenate(emit_times)
    carrying = [entry for entry in order if in_window(entry).any()]
    waits = np.concatenate([entry.sent_at - entry.emitted[in_window(entry)] for entry in carrying]) * 1000
    spread = [max(times) - min(times) for entry in carrying if len(times := received.get(entry.seq, [])) > 1]
    first = [min(received[entry.seq]) - entry.sent_at for entry in carrying if entry.seq in received]
    sends = np.array([entry.send_seconds for entry in carrying]) * 1000
    missed = sum(clients - len(received.get(entry.seq, [])) for entry in carrying)
    seconds_in = ((emit_at - window.start) // 1).astype(int)
    p50, p99 = np.percentile(samples, [50, 99])
    by_second = [samples[seconds_in == second] for second in range(int(seconds_in.max()) + 1)]
    by_second = [values for values in by_second if values.size]
    # A server that keeps up has a flat latency; one that does not queues more every second.
    growth = (
        float(np.polyfit(np.arange(len(by_second)), [np.median(v) for v in by_second], 1)[0])
        if len(by_second) > 2
        else 0.0
    )
    return {
        "clients": clients,
        "clients_connected": report["connected"],
        "clients_receiving": sum(1 for client in report["clients"] if client["messages"]),
        "ticks_per_second_offered": ticks_per_second,
        "ticks_per_second_fed": round(fed, 1),
        "frames_per_second_fed": round(frames, 1),
        "ticks_skipped": ticks_skipped,
        "instruments": instruments,
        "seconds": round(elapsed, 2),
        "conflation_ms": conflation_ms,
        "samples": int(samples.size),
        "p50_ms": round(float(p50), 1),
        "p99_ms": round(float(p99), 1),
        "max_ms": round(float(samples.max()), 1),
        "target_p99_ms": conflation_ms + 50,
        "reference_p50_ms": round(reference[0], 2),
        "reference_p99_ms": round(reference[1], 2),
        "reference": f"channel-layer floor: group_send -> receive() of a small message on one channel, "
        f"{REFERENCE_SENDS} sends",
        "measured_from": "the feed receiving the frame",
        # Where the time goes.
        "messages_published": len(carrying),
        "ticks_per_message": round(float(np.mean([entry.emitted.size for entry in carrying])), 1),
        "messages_missed": missed,
        "drained": report["drained"],
        "conflation_wait_p50_ms": _percentile(waits, 50),
        "conflation_wait_p99_ms": _percentile(waits, 99),
        "group_send_p50_ms": _percentile(sends, 50),
        "group_send_p99_ms": _percentile(sends, 99),
        "first_client_delivery_p50_ms": _percentile(np.asarray(first) * 1000, 50),
        "first_client_delivery_p99_ms": _percentile(np.asarray(first) * 1000, 99),
        "delivery_p50_ms": _percentile(np.asarray(delivery) * 1000, 50),
        "delivery_p99_ms": _percentile(np.asarray(delivery) * 1000, 99),
        "fanout_spread_p50_ms": _percentile(np.asarray(spread) * 1000, 50),
        "fanout_spread_p99_ms": _percentile(np.asarray(spread) * 1000, 99),
        "within_target": bool(p99 <= conflation_ms + 50),
        "p50_growth_ms_per_s": round(growth, 1),
        "keeping_up": abs(growth) < KEEPING_UP_MS_PER_S,
        "p99_ms_by_second": [_percentile(values, 99) for values in by_second],
        "cpu_percent": {
            "daphne": round(cpu[0], 1),
            "feed_process": round(cpu[1], 1),
            "clients_process": round(cpu[2], 1),
            "redis": round(cpu[3], 1),
            "whole_machine": round(cpu[4], 1),
            "cores": os.cpu_count(),
        },
        "client_parsing": "every copy" if report["parse_every_copy"] else "once per distinct message",
        "client_parses": report["parses"],
        "client_parse_ms_per_message": round(report["busy"] / max(1, report["messages"]) * 1000, 2),
        "client_parse_backlog_max": report["backlog_max"],
        "p99_after_client_parse_ms": _percentile(after_parse, 99),
        "foreign_messages": foreign,
        "other_group_members": other_members,
    }


async def channel_layer_floor(layer) -> tuple[float, float]:
    """p50/p99 ms of group_send -> receive() on one bare channel, in this process."""
    channel = await layer.new_channel()
    await layer.group_add(REFERENCE_GROUP, channel)
    samples = []
    try:
        for number in range(REFERENCE_SENDS + 20):
            sent = now()
            await layer.group_send(REFERENCE_GROUP, {"type": "bench.ping", "n": number})
            message = await asyncio.wait_for(layer.receive(channel), timeout=5)
            if message.get("n") != number:
                raise RuntimeError(f"the channel layer returned {message!r} for ping {number}")
            if number >= 20:  # the first sends warm the connections
                samples.append(now() - sent)
    finally:
        await layer.group_discard(REFERENCE_GROUP, channel)
    p50, p99 = np.percentile(np.asarray(samples) * 1000, [50, 99])
    return float(p50), float(p99)


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


def _percentile(values: np.ndarray, percentile: float) -> float | None:
    return round(float(np.percentile(values, percentile)), 1) if len(values) else None
