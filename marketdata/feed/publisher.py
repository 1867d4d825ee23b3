"""Conflated publishing: what changed goes to Channels groups and Redis, once per interval.

Browsers cannot take thousands of messages a second, so every `conflation_ms` each
group gets at most one message holding the latest value of each of its instruments
that changed; a group with no change gets nothing. The same values are written to
Redis (one pipelined MSET) for the web, the API and Celery to read.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

import numpy as np

from marketdata.feed.bars import ClosedBars
from marketdata.feed.state import FLOAT_COLUMNS, INT_COLUMNS, FeedState
from marketdata.groups import (
    BAR_CLOSED_MESSAGE,
    FEED_STATUS_GROUP,
    FEED_STATUS_KEY,
    STATUS_MESSAGE,
    TICKS_MESSAGE,
    instrument_group,
    tick_key,
)

log = logging.getLogger(__name__)

GroupSend = Callable[[str, dict], Awaitable[None]]
# About 250 bytes a tick once msgpacked: 2,000 ticks keep a message near 0.5 MB.
MAX_TICKS_PER_MESSAGE = 2000
# The status key outlives a few missed beats, then vanishes: no key means no feed.
STATUS_TTL_SECONDS = 10
# A message carries the state's columns (depth reduced to the best bid and ask).
_PAYLOAD_FLOATS = FLOAT_COLUMNS
_PAYLOAD_INTS = INT_COLUMNS


def tick_payloads(state: FeedState, slots: np.ndarray, *, with_depth: bool = False) -> list[dict]:
    """The latest value of each slot as plain, msgpack- and JSON-safe dicts (one gather per column)."""
    columns = state.columns
    names = ["instrument_token", "mode", *_PAYLOAD_FLOATS, *_PAYLOAD_INTS, "bid", "bid_quantity", "ask", "ask_quantity"]
    values = [
        state.tokens[slots].tolist(),
        state.mode[slots].tolist(),
        *(np.round(columns[name][slots], 4).tolist() for name in _PAYLOAD_FLOATS),
        *(columns[name][slots].tolist() for name in _PAYLOAD_INTS),
        np.round(columns["depth_buy_price"][slots, 0], 4).tolist(),
        columns["depth_buy_quantity"][slots, 0].tolist(),
        np.round(columns["depth_sell_price"][slots, 0], 4).tolist(),
        columns["depth_sell_quantity"][slots, 0].tolist(),
    ]
    payloads = [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
    if with_depth:
        for payload, slot in zip(payloads, slots.tolist(), strict=True):
            payload["depth"] = {
                side: [
                    {
                        "quantity": int(columns[f"depth_{key}_quantity"][slot, level]),
                        "price": round(float(columns[f"depth_{key}_price"][slot, level]), 4),
                        "orders": int(columns[f"depth_{key}_orders"][slot, level]),
                    }
                    for level in range(5)
                ]
                for side, key in (("buy", "buy"), ("sell", "sell"))
            }
    return payloads


class Publisher:
    """Sends conflated updates; owns the token -> groups map and the set of watched instruments."""

    def __init__(self, *, state: FeedState, group_send: GroupSend, redis_client=None) -> None:
        self.state = state
        self.group_send = group_send
        self.redis = redis_client
        self.groups_of_token: dict[int, list[str]] = {}
        self.watched_tokens: set[int] = set()
        self.messages_sent = 0
        self.publish_errors = 0

    async def publish_changes(self) -> int:
        """One conflation step; returns how many instruments changed."""
        slots = self.state.take_changed()
        if slots.size == 0:
            return 0
        payloads = tick_payloads(self.state, slots)
        by_group: dict[str, list[dict]] = defaultdict(list)
        for payload in payloads:
            for group in self.groups_of_token.get(payload["instrument_token"], ()):
                by_group[group].append(payload)
        if self.watched_tokens:
            tokens = self.state.tokens[slots]
            watched = np.isin(tokens, np.fromiter(self.watched_tokens, dtype=np.int64))
            for payload in tick_payloads(self.state, slots[watched], with_depth=True):
                by_group[instrument_group(payload["instrument_token"])].append(payload)
        for group, ticks in by_group.items():
            # Channels messages must stay under 1 MB: a group whose thousands of instruments
            # all changed gets its update in parts (still one update per interval).
            for start in range(0, len(ticks), MAX_TICKS_PER_MESSAGE):
                part = ticks[start : start + MAX_TICKS_PER_MESSAGE]
                await self._send(group, TICKS_MESSAGE, {"type": "ticks", "group": group, "ticks": part})
        await self._write_latest(payloads)
        return int(slots.size)

    async def publish_bars(self, bars: ClosedBars) -> None:
        rows = bars.rows()
        by_group: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            token = row["instrument_token"]
            for group in self.groups_of_token.get(token, ())[:1]:  # the underlying's ticks group
                by_group[group].append(row)
            if token in self.watched_tokens:
                by_group[instrument_group(token)].append(row)
        for group, group_rows in by_group.items():
            await self._send(group, BAR_CLOSED_MESSAGE, {"type": "bars", "group": group, "bars": group_rows})

    async def publish_status(self, status: dict) -> None:
        await self._send(FEED_STATUS_GROUP, STATUS_MESSAGE, {"type": "status", "status": status})
        if self.redis is not None:
            try:
                await self.redis.set(FEED_STATUS_KEY, json.dumps(status), ex=STATUS_TTL_SECONDS)
            except Exception as error:  # Redis down: the feed keeps streaming and says so
                self._error("status write", error)

    async def write_latest(self, slots: np.ndarray) -> None:
        """Write these slots' latest values to Redis now, ahead of the next conflation round."""
        if slots.size:
            await self._write_latest(tick_payloads(self.state, slots))

    async def _write_latest(self, payloads: list[dict]) -> None:
        if self.redis is None or not payloads:
            return
        try:
            await self.redis.mset({tick_key(p["instrument_token"]): json.dumps(p) for p in payloads})
        except Exception as error:
            self._error("latest-state write", error)

    async def _send(self, group: str, message_type: str, payload: dict) -> None:
        """Send `payload` to a group, already encoded as the JSON its clients receive.

        Encoding once here, not in each consumer, is what lets one daphne serve a hundred
        sockets: re-encoding a 400-instrument update per socket costs more than a core.
        """
        message = {"type": message_type, "group": group, "json": json.dumps(payload, separators=(",", ":"))}
        try:
            await self.group_send(group, message)
            self.messages_sent += 1
        except Exception as error:
            self._error(f"group send to {group}", error)

    def _error(self, what: str, error: Exception) -> None:
        self.publish_errors += 1
        if self.publish_errors == 1 or self.publish_errors % 1000 == 0:
            log.warning("%s failed (%d failures so far): %s", what, self.publish_errors, error)
