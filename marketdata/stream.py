"""The JSON stream for programs (/ws/stream/): channel names, client requests, and the feed's
group messages turned into the stream's messages. No Django import: tested on plain values.

The feed and the chain task send each group message already encoded as the JSON of /ws/feed/
(`{"type": "ticks", "group", "ticks"}`, `bars`, `status`, `chain`). `stream_frames` turns one
into the stream's text frames, `{"type", "channel", "data"}`. A group message reaches every
subscribed socket of a process as an equal string, so the conversion is cached on that string:
a hundred sockets in one daphne cost one decode and one encode, plus a hundred string hashes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import parse_qs

from marketdata.groups import FEED_STATUS_GROUP, is_feed_group, safe_symbol

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 100
# A request may name more channels than fit (the rest are refused one by one), but not without
# bound: parsing a million names would stall every socket of the process.
MAX_CHANNELS_PER_REQUEST = 1000
ACTIONS = ("subscribe", "unsubscribe")
FEED_STATUS_CHANNEL = "feed:status"
# India has kept +05:30 all year since 1945: a fixed offset is exact and cheaper than zoneinfo.
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
# Channels group names stay under 100 characters, and so do the channel names that map to them.
MAX_CHANNEL_CHARS = 100
# How much of a bad value an error message echoes back.
ECHO_ITEMS, ECHO_CHARS = 20, 100

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MODE_NAMES = ("ltp", "quote", "full")  # by the feed's mode codes 0, 1, 2 (marketdata.kite.MODE_CODES)
INDEX_SEGMENT = 9  # instrument_token & 0xff of an index: not tradable, no quantities, OI or depth
_QUOTE_FIELDS = (
    "last_traded_quantity",
    "average_traded_price",
    "volume_traded",
    "total_buy_quantity",
    "total_sell_quantity",
)
_OI_FIELDS = ("oi", "oi_day_high", "oi_day_low")
_GREEK_FIELDS = ("oi", "iv", "delta", "gamma", "theta", "vega", "rho")
_PCR_TOTALS = ("total_ce_oi", "total_pe_oi", "total_ce_volume", "total_pe_volume")


# -- channels -----------------------------------------------------------------------------------
def group_for_channel(channel: object) -> str | None:
    """The feed's Channels group a stream channel names, or None when it names none.

    `ticks:<UNDERLYING>`, `instrument:<token>`, `chain:<UNDERLYING>:<YYYY-MM-DD>`, `feed:status`.
    Symbols are upper-cased (Kite's names are) and made group-safe (M&M becomes M_M).
    """
    if not isinstance(channel, str) or len(channel) > MAX_CHANNEL_CHARS:
        return None
    kind, _, rest = channel.partition(":")
    if kind == "feed" and rest == "status":
        return FEED_STATUS_GROUP
    if kind == "ticks":
        group = f"ticks.{safe_symbol(rest.upper())}"
    elif kind == "instrument" and rest.isascii() and rest.isdigit():
        group = f"instrument.{int(rest)}"
    elif kind == "chain":
        symbol, _, day = rest.rpartition(":")
        if not _ISO_DATE.match(day) or not _is_date(day):
            return None
        group = f"chain.{safe_symbol(symbol.upper())}.{day.replace('-', '')}"
    else:
        return None
    return group if is_feed_group(group) else None


def channel_for_group(group: str) -> str:
    """The canonical channel name of a feed group (what `subscribed` lists and messages carry)."""
    kind, _, rest = group.partition(".")
    if kind == "chain":
        symbol, _, day = rest.rpartition(".")
        return f"chain:{symbol}:{day[:4]}-{day[4:6]}-{day[6:]}"
    return f"{kind}:{rest}"


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def api_token(query_string: bytes) -> str | None:
    """The `token` query parameter, "" when given empty, None when absent (then the session counts)."""
    query = parse_qs(query_string.decode("latin-1"), keep_blank_values=True)
    return query["token"][0] if "token" in query else None


# -- client requests ------------------------------------------------------------------------------
class RequestError(ValueError):
    """A request the stream cannot act on; `frame()` is the error message that answers it."""

    def __init__(self, code: str, message: str, **details: object) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details

    def frame(self) -> str:
        return error_frame(self.code, self.message, **self.details)


@dataclass(frozen=True)
class StreamRequest:
    action: str
    channels: list


def parse_request(text: str | None) -> StreamRequest:
    """A client's `{"action": "subscribe" | "unsubscribe", "channels": [...]}`; raises RequestError."""
    if text is None:
        raise RequestError("invalid_json", "send JSON text frames, not binary ones")
    try:
        content = json.loads(text)
    except (ValueError, RecursionError):
        raise RequestError("invalid_json", "the message is not JSON") from None
    if not isinstance(content, dict):
        raise RequestError("invalid_request", 'send an object: {"action": "subscribe", "channels": [...]}')
    action = content.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise RequestError("unknown_action", 'the action must be "subscribe" or "unsubscribe"', action=_echo(action))
    channels = content.get("channels")
    if not isinstance(channels, list):
        raise RequestError("invalid_request", '"channels" must be a list of channel names')
    if len(channels) > MAX_CHANNELS_PER_REQUEST:
        raise RequestError("invalid_request", f"at most {MAX_CHANNELS_PER_REQUEST} channels in one request")
    return StreamRequest(action, channels)


@dataclass
class SubscriptionChange:
    """What a request does to a socket's groups, and what it names that cannot be done."""

    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    unknown: list[object] = field(default_factory=list)
    over_limit: list[str] = field(default_factory=list)  # canonical channel names

    def error_frames(self) -> list[str]:
        frames = []
        if self.unknown:
            echoed = [_echo(channel) for channel in self.unknown[:ECHO_ITEMS]]
            frames.append(error_frame("unknown_channel", f"unknown channels: {', '.join(echoed)}", channels=echoed))
        if self.over_limit:
            frames.append(
                error_frame(
                    "too_many_subscriptions",
                    f"at most {MAX_SUBSCRIPTIONS} channels per socket; not subscribed: {', '.join(self.over_limit)}",
                    channels=self.over_limit,
                    limit=MAX_SUBSCRIPTIONS,
                )
            )
        return frames


def plan_subscriptions(request: StreamRequest, subscribed: Collection[str]) -> SubscriptionChange:
    """The groups to join or leave for `request` on a socket in `subscribed` groups.

    Valid channels are acted on even when others in the same request are not; subscriptions
    past MAX_SUBSCRIPTIONS are refused in request order. Leaving a channel not subscribed is a no-op.
    """
    change = SubscriptionChange()
    after = set(subscribed)
    for channel in request.channels:
        group = group_for_channel(channel)
        if group is None:
            change.unknown.append(channel)
        elif request.action == "unsubscribe":
            if group in after:
                after.discard(group)
                change.remove.append(group)
        elif group not in after:
            if len(after) >= MAX_SUBSCRIPTIONS:
                change.over_limit.append(channel_for_group(group))
            else:
                after.add(group)
                change.add.append(group)
    return change


def _echo(value: object) -> str:
    return (value if isinstance(value, str) else json.dumps(value, default=str))[:ECHO_CHARS]


# -- server messages ------------------------------------------------------------------------------
def frame(kind: str, data: object, channel: str | None = None) -> str:
    message = {"type": kind, "channel": channel, "data": data} if channel else {"type": kind, "data": data}
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def error_frame(code: str, message: str, **details: object) -> str:
    return frame("error", {"code": code, "message": message, **details})


def subscribed_frame(groups: Iterable[str]) -> str:
    return frame("subscribed", sorted(channel_for_group(group) for group in groups))


@lru_cache(maxsize=128)  # one conflation round's distinct messages; each is wanted within milliseconds
def stream_frames(feed_json: str) -> tuple[str, ...]:
    """The stream's frames for one feed group message (its /ws/feed/ JSON); () for none."""
    try:
        return _convert(json.loads(feed_json))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        # Cached like a success, so a malformed message is logged once, not once per socket.
        log.warning("cannot stream a feed message (%s): %.200s", error, feed_json)
        return ()


def _convert(message: dict) -> tuple[str, ...]:
    kind = message["type"]
    channel = channel_for_group(message["group"]) if message.get("group") else None
    if kind == "ticks":
        return (frame("tick", [stream_tick(tick) for tick in message["ticks"]], channel),)
    if kind == "bars":
        return (frame("bar", [stream_bar(row) for row in message["bars"]], channel),)
    if kind == "status":
        return (frame("feed_status", message["status"], FEED_STATUS_CHANNEL),)
    if kind == "chain":
        chain = message["chain"]
        return (
            frame("chain", chain, channel),
            frame("greeks_update", greeks_update(chain), channel),
            frame("pcr_update", pcr_update(chain), channel),
        )
    return ()


def stream_tick(tick: dict) -> dict:
    """A feed tick with the keys and nesting kiteconnect's `on_ticks` gets for the same packet.

    Times are ISO-8601 in IST (kiteconnect gives naive datetimes), null when the exchange sent
    none. A full tradable tick always has `depth`: the feed's five levels where it sends them
    (instrument channels), else only the best bid and offer, with `orders` null.
    """
    token = tick["instrument_token"]
    mode = tick.get("mode", 2)
    mode = _MODE_NAMES[mode] if isinstance(mode, int) and 0 <= mode < len(_MODE_NAMES) else str(mode)
    tradable = token & 0xFF != INDEX_SEGMENT
    out = {"tradable": tradable, "mode": mode, "instrument_token": token, "last_price": tick.get("last_price")}
    if mode == "ltp":
        return out
    if tradable:
        out.update((name, tick.get(name)) for name in _QUOTE_FIELDS)
    out["ohlc"] = {name: tick.get(name) for name in ("open", "high", "low", "close")}
    out["change"] = tick.get("change", 0)
    if mode != "full":
        return out
    if tradable:
        out["last_trade_time"] = ist_iso(tick.get("last_trade_time"))
        out.update((name, tick.get(name)) for name in _OI_FIELDS)
    out["exchange_timestamp"] = ist_iso(tick.get("exchange_timestamp"))
    if tradable:
        out["depth"] = tick.get("depth") or {
            "buy": [{"quantity": tick.get("bid_quantity"), "price": tick.get("bid"), "orders": None}],
            "sell": [{"quantity": tick.get("ask_quantity"), "price": tick.get("ask"), "orders": None}],
        }
    return out


def stream_bar(row: dict) -> dict:
    """A closed 1-minute bar, named like kiteconnect's historical candles (`date` is its start)."""
    return {
        "instrument_token": row["instrument_token"],
        "interval": "minute",
        "date": ist_iso(row["start"]),
        **{name: row.get(name) for name in ("open", "high", "low", "close", "volume", "oi", "tick_count")},
    }


def greeks_update(chain: dict) -> list[dict]:
    """One entry per contract of the chain (strike ascending, CE before PE), its figures as computed."""
    expiry, timestamp = chain.get("expiry"), chain.get("as_of")
    contracts = []
    for row in chain.get("strikes") or ():
        for option_type in ("CE", "PE"):
            side = row.get(option_type.lower())
            if not side:
                continue
            contracts.append(
                {
                    "token": side.get("token"),
                    "tradingsymbol": side.get("tradingsymbol"),
                    "strike": row.get("strike"),
                    "option_type": option_type,
                    "expiry": expiry,
                    "price": side.get("ltp"),
                    **{name: side.get(name) for name in _GREEK_FIELDS},
                    "timestamp": timestamp,
                }
            )
    return contracts


def pcr_update(chain: dict) -> dict:
    summary = chain.get("summary") or {}
    return {
        "underlying": chain.get("underlying"),
        "expiry": chain.get("expiry"),
        "pcr": summary.get("pcr_oi"),
        "pcr_volume": summary.get("pcr_volume"),
        **{name: summary.get(name) for name in _PCR_TOTALS},
        "timestamp": chain.get("as_of"),
    }


@lru_cache(maxsize=4096)  # one message's ticks share a handful of seconds
def ist_iso(seconds: int | None) -> str | None:
    """Epoch seconds as ISO-8601 in IST; None for 0 or None (the exchange sent no time)."""
    if not seconds:
        return None
    try:
        return dt.datetime.fromtimestamp(seconds, IST).isoformat()
    except (OverflowError, OSError, ValueError):
        return None
