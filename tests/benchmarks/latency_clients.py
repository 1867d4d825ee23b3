"""The websocket clients of the latency benchmark (tests/benchmarks/latency.py), run in their own process.

`latency.measure_tick_latency` starts this module as
`python -m tests.benchmarks.latency_clients WS_URL ORIGIN COUNT parse-once|parse-every-copy`, with
the staff session cookie in the DESK_LATENCY_COOKIE environment variable. It connects COUNT
sockets to GROUP, says `{"ready": n, "clock": t}` on stdout, stamps and records every ticks
message until the feed's process writes `{"drain": [token, paise], "timeout": s}` on stdin, waits
until every socket has the message whose first tick is that (token, paise), then reports what
arrived as one JSON line. Why the clients are a process of their own, and why a message is
stamped before it is parsed, is in latency.py's docstring.

Also here is what both processes must agree on: the group, the clock, and a message's checksum.
This module imports neither Django nor numpy, so the clients' process stays small.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

SYMBOL = "BENCH"
GROUP = f"ticks.{SYMBOL}"
COOKIE_ENV = "DESK_LATENCY_COOKIE"
CONNECT_TIMEOUT = 30.0
CONNECTS_AT_ONCE = 20
# After the window: how long the clients may take to receive the last message published.
DRAIN_TIMEOUT_SECONDS = 15.0
CHECKSUM_FACTOR = 1_000_003
MODES = {"parse-once": False, "parse-every-copy": True}
# One clock for every timestamp, in both processes: CLOCK_MONOTONIC, machine-wide on Linux.
now = time.monotonic


def tick_checksum(pairs: Iterable[tuple[int, int]]) -> int:
    """Names a message's exact contents: its ticks' (token, price in paise), in order."""
    return sum(token * CHECKSUM_FACTOR + paise for token, paise in pairs)


@dataclass
class ClientLog:
    # Per ticks message: first tick's token and paise, receive time, parsed time, tick count, checksum.
    messages: list[list] = field(default_factory=list)
    seen: set[tuple[int, int]] = field(default_factory=set)
    busy: float = 0.0  # seconds spent parsing
    error: str | None = None


async def run_clients(url: str, origin: str, count: int, *, parse_every_copy: bool = False) -> int:
    """Connect `count` sockets, report ready, read until told to drain, then report what arrived."""
    import websockets
    from websockets.asyncio.client import connect as connect_websocket

    headers = {"Cookie": os.environ.get(COOKIE_ENV, "")}
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)

    async def connect(number: int):
        async with gate:
            try:
                socket_ = await connect_websocket(
                    url,
                    additional_headers=headers,
                    origin=origin,
                    max_size=None,
                    ping_interval=None,
                    open_timeout=CONNECT_TIMEOUT,
                )
            except Exception as error:
                status = getattr(getattr(error, "response", None), "status_code", None)
                refused = " (origin refused, or the cookie is not a logged-in session)" if status == 403 else ""
                raise RuntimeError(f"client {number} could not connect to {url}{refused}: {error!r}") from error
        try:
            while True:
                reply = json.loads(await asyncio.wait_for(socket_.recv(), timeout=CONNECT_TIMEOUT))
                if reply.get("type") == "joined":
                    if GROUP not in reply.get("groups", ()):
                        raise RuntimeError(f"client {number} joined {reply.get('groups')}, not {GROUP}")
                    return socket_
                if reply.get("type") == "error":
                    raise RuntimeError(f"client {number}: the server said {reply.get('error')}")
        except websockets.ConnectionClosed as error:
            refused = error.rcvd is not None and error.rcvd.code == 4401
            hint = " (not authenticated: the session cookie was refused)" if refused else ""
            raise RuntimeError(f"client {number} was closed before joining {GROUP}{hint}: {error}") from error
        except BaseException:
            await socket_.close()
            raise

    # Receiving is timed apart from parsing: each socket's reader only stamps and queues a message,
    # and one parser works through the queue a message at a time, yielding in between. One process
    # parsing for 100 sockets would otherwise delay every later socket's receive by every earlier
    # socket's parse, and time the simulator's queue rather than the server's delivery.
    queue: collections.deque[tuple[ClientLog, str, float]] = collections.deque()
    queued = asyncio.Event()
    backlog = {"max": 0}
    parses = {"count": 0}
    # The last few distinct message texts and what they hold: a byte-identical copy reads the same.
    recent: dict[str, tuple[int, int, int, int]] = {}

    async def listen(socket_, log: ClientLog) -> None:
        try:
            async for raw in socket_:
                queue.append((log, raw, now()))
                queued.set()
        except websockets.ConnectionClosed:
            pass
        except Exception as error:
            log.error = repr(error)

    async def parse() -> None:
        while True:
            if not queue:
                queued.clear()
                await queued.wait()
                continue
            backlog["max"] = max(backlog["max"], len(queue))
            log, raw, received = queue.popleft()
            started = now()
            try:
                summary = None if parse_every_copy else recent.get(raw)
                if summary is None:
                    summary = summarise(json.loads(raw))
                    parses["count"] += 1
                    if summary is not None and not parse_every_copy:
                        recent[raw] = summary
                        if len(recent) > 8:
                            del recent[next(iter(recent))]
                if summary is not None:
                    first_token, first_paise, count, checksum = summary
                    log.messages.append([first_token, first_paise, received, now(), count, checksum])
                    log.seen.add((first_token, first_paise))
            except Exception as error:
                log.error = f"unreadable message: {error!r}"
            log.busy += now() - started
            await asyncio.sleep(0)

    def summarise(message: dict) -> tuple[int, int, int, int] | None:
        """A ticks message's first (token, paise), tick count and checksum; None for other messages."""
        if message.get("type") != "ticks" or not message.get("ticks"):
            return None
        keys = [(tick["instrument_token"], round(tick["last_price"] * 100)) for tick in message["ticks"]]
        return (*keys[0], len(keys), tick_checksum(keys))

    def say(payload: dict) -> None:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()

    results = await asyncio.gather(*(connect(n) for n in range(count)), return_exceptions=True)
    sockets = [r for r in results if not isinstance(r, BaseException)]
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
        say({"error": f"{len(failures)} of {count} clients failed to connect; the first: {failures[0]}"})
        return 2
    logs = [ClientLog() for _ in sockets]
    listeners = [asyncio.create_task(listen(s, log)) for s, log in zip(sockets, logs, strict=True)]
    listeners.append(asyncio.create_task(parse()))
    say({"ready": len(sockets), "clock": now()})

    line = await asyncio.to_thread(sys.stdin.readline)
    drained = False
    if line:
        order = json.loads(line)
        last, deadline = tuple(order["drain"]), now() + order["timeout"]
        while now() < deadline and not all(last in log.seen or log.error for log in logs):
            await asyncio.sleep(0.02)
        drained = all(last in log.seen for log in logs)
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    # Messages already received still count: read what is queued before reporting.
    deadline = now() + DRAIN_TIMEOUT_SECONDS
    while queue and now() < deadline:
        await asyncio.sleep(0.02)
    for task in listeners:
        task.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    errors = [log.error for log in logs if log.error]
    if errors:
        say({"error": f"{len(errors)} clients failed while reading; the first: {errors[0]}"})
        return 2
    say(
        {
            "connected": len(sockets),
            "drained": drained,
            "busy": sum(log.busy for log in logs),
            "backlog_max": backlog["max"],
            "parses": parses["count"],
            "parse_every_copy": parse_every_copy,
            "messages": sum(len(log.messages) for log in logs),
            "clients": [{"messages": log.messages} for log in logs],
        }
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[4] not in MODES:
        raise SystemExit(f"usage: python -m tests.benchmarks.latency_clients WS_URL ORIGIN COUNT {'|'.join(MODES)}")
    url, origin, count, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    sys.exit(asyncio.run(run_clients(url, origin, count, parse_every_copy=MODES[mode])))
