"""Names shared by the feed (publisher) and the consumers (subscribers).

Channels group names allow ASCII letters, digits, '-', '_' and '.', under 100
characters; symbols such as M&M are made safe here, in one place.
"""

from __future__ import annotations

import datetime as dt
import re

FEED_STATUS_GROUP = "feed.status"
# Redis keys of the hot cache.
TICK_KEY_PREFIX = "desk:tick:"
FEED_STATUS_KEY = "desk:feed:status"
# Tokens someone is watching one by one (sorted set: token -> expiry epoch), so the feed
# publishes instrument.<token> groups only for them rather than for all 9,000.
WATCHED_INSTRUMENTS_KEY = "desk:feed:watched"
WATCH_SECONDS = 90
# Chain analytics: what the feed streams of each chain (its layout), the latest figures, and a
# marker that a refresh is queued and not yet started (the feed queues at most one per chain).
CHAIN_KEY_PREFIX = "desk:chain:"

# Channels message types the feed sends (a consumer handles "feed.ticks" in feed_ticks).
TICKS_MESSAGE = "feed.ticks"
STATUS_MESSAGE = "feed.status"
BAR_CLOSED_MESSAGE = "bar.closed"
CHAIN_ANALYTICS_MESSAGE = "chain.analytics"

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_GROUP = re.compile(
    r"^(feed\.status|ticks\.[A-Za-z0-9_-]{1,40}|instrument\.\d{1,12}|chain\.[A-Za-z0-9_-]{1,40}\.\d{8})$"
)


def safe_symbol(symbol: str) -> str:
    return _UNSAFE.sub("_", symbol).replace(".", "_")


def ticks_group(symbol: str) -> str:
    return f"ticks.{safe_symbol(symbol)}"


def instrument_group(token: int) -> str:
    return f"instrument.{int(token)}"


def chain_group(symbol: str, expiry: dt.date) -> str:
    return f"chain.{safe_symbol(symbol)}.{expiry:%Y%m%d}"


def is_feed_group(name: str) -> bool:
    return bool(_GROUP.match(name))


def tick_key(token: int) -> str:
    return f"{TICK_KEY_PREFIX}{int(token)}"


def chain_key(symbol: str, expiry: dt.date, part: str) -> str:
    """Redis key of one chain's `layout`, `analytics`, `pending` marker or `oi-open` reference."""
    return f"{CHAIN_KEY_PREFIX}{safe_symbol(symbol)}:{expiry:%Y%m%d}:{part}"
