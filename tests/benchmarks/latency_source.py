"""The feed-side tick source of the latency benchmark (tests/benchmarks/latency.py).

`CountingSource` stands in for Kite's ticker inside a real `FeedRunner`: every 10 ms it hands the
feed's sink a binary frame of full-mode ticks, round-robin over the subscribed tokens, with prices
that name each tick, and keeps the moment each tick was emitted so the feed's process can match
what the clients receive against it.
"""

from __future__ import annotations

import asyncio
import time

from tests.benchmarks.latency_clients import now

FRAME_INTERVAL = 0.010  # the source emits one frame every 10 ms
# last_price = 100.00 + 0.05 * counter; the counter wraps long before a run could repeat a price.
BASE_PAISE = 10_000
STEP_PAISE = 5
PRICE_STEPS = 100_000


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
