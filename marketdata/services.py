"""Writes of the marketdata app: closed bars, and the chain analytics (Redis, groups, snapshots)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np
import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from instruments.models import Instrument, Underlying
from instruments.selectors import instrument_by_token
from marketdata import selectors
from marketdata.feed.bars import ClosedBars
from marketdata.groups import CHAIN_ANALYTICS_MESSAGE, chain_group, chain_key
from marketdata.models import Bar, ChainSnapshot, WatchlistEntry
from trading_site import clock

if TYPE_CHECKING:
    from marketdata.analytics.chain import ChainQuotes

log = logging.getLogger(__name__)

# NSE and BSE options expire at the close, 15:30 IST, of the expiry date.
EXPIRY_CLOSE = dt.time(15, 30)
SECONDS_PER_YEAR = 365 * 86_400
# The latest figures outlive a stopped feed long enough for the pages to show them as stale.
ANALYTICS_TTL_SECONDS = 36 * 3600
OI_OPEN_TTL_SECONDS = 36 * 3600

_FOUR_PLACES = Decimal("0.0001")


def bars_store(*, bars: ClosedBars) -> int:
    """Upsert closed 1-minute bars (a restarted feed may close the same minute again)."""
    if not len(bars):
        return 0
    rows = [
        Bar(
            instrument_token=row["instrument_token"],
            start=dt.datetime.fromtimestamp(row["start"], tz=dt.UTC),
            open=_price(row["open"]),
            high=_price(row["high"]),
            low=_price(row["low"]),
            close=_price(row["close"]),
            volume=row["volume"],
            oi=row["oi"],
            tick_count=row["tick_count"],
        )
        for row in bars.rows()
    ]
    with transaction.atomic():
        Bar.objects.bulk_create(
            rows,
            batch_size=1000,
            update_conflicts=True,
            unique_fields=["instrument_token", "start"],
            update_fields=["open", "high", "low", "close", "volume", "oi", "tick_count"],
        )
    return len(rows)


def _price(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(_FOUR_PLACES)


def chain_refresh(*, symbol: str, expiry: dt.date) -> dict | None:
    """Compute one chain's figures from the feed's latest ticks, publish them, snapshot if due.

    Writes the figures to Redis (`chain_key(..., "analytics")`), sends them to the chain's group
    as `chain.analytics`, and stores a ChainSnapshot at the first refresh of each
    CHAIN_SNAPSHOT_SECONDS interval. Returns the figures (None when the feed never streamed the
    chain). Safe to run twice for the same moment: it computes the same figures again.
    """
    # Imported here: the feed imports this module for bars_store, and must not carry SciPy (~15 MB).
    from marketdata.analytics.chain import compute_chain

    client = _redis()
    # From here on a new change may queue the next refresh: this one may not see it.
    client.delete(chain_key(symbol, expiry, "pending"))
    layout = selectors.chain_layout(symbol=symbol, expiry=expiry)
    if layout is None or not layout["contracts"]:
        return None
    started = time.perf_counter()
    contracts = layout["contracts"]
    tokens = [int(c[0]) for c in contracts]
    extra = [t for t in (layout["spot_token"], layout["future_token"]) if t]
    ticks = selectors.latest_ticks(tokens + extra)
    market_time = max((t.get("exchange_timestamp") or 0 for t in ticks.values()), default=0) or time.time()
    as_of = dt.datetime.fromtimestamp(market_time, tz=clock.IST)
    reference_oi = _reference_oi(client, symbol=symbol, expiry=expiry, as_of=as_of, ticks=ticks, tokens=tokens)
    quotes, token_at = _chain_quotes(layout, ticks, reference_oi, expiry=expiry, as_of=as_of)
    figures = compute_chain(quotes).to_dict()
    for row in figures["strikes"]:
        for side in ("ce", "pe"):
            contract = token_at.get((row["strike"], side.upper()))
            if row.get(side) is not None and contract is not None:
                row[side]["token"], row[side]["tradingsymbol"] = contract
    analytics = {
        "underlying": symbol,
        "expiry": expiry.isoformat(),
        "as_of": as_of.isoformat(),
        "computed_in_ms": round((time.perf_counter() - started) * 1000, 2),
        **figures,
    }
    encoded = json.dumps(analytics, separators=(",", ":"), allow_nan=False)
    client.set(chain_key(symbol, expiry, "analytics"), encoded, ex=ANALYTICS_TTL_SECONDS)
    group = chain_group(symbol, expiry)
    # Encoded once here; consumers pass it to their sockets untouched (see feed.publisher).
    message = f'{{"type":"chain","group":"{group}","chain":{encoded}}}'
    async_to_sync(get_channel_layer().group_send)(
        group, {"type": CHAIN_ANALYTICS_MESSAGE, "group": group, "json": message}
    )
    interval = settings.CHAIN_SNAPSHOT_SECONDS
    bucket = int(market_time // interval)
    if client.set(chain_key(symbol, expiry, f"snapshot:{bucket}"), "1", nx=True, ex=2 * interval + 60):
        taken_at = dt.datetime.fromtimestamp(bucket * interval, tz=clock.IST)
        chain_snapshot_store(symbol=symbol, expiry=expiry, taken_at=taken_at, analytics=analytics)
    return analytics


def chain_snapshots_prune(*, now: dt.datetime | None = None) -> int:
    """Delete snapshots older than CHAIN_SNAPSHOT_RETENTION_DAYS (0 keeps everything); returns how many."""
    days = settings.CHAIN_SNAPSHOT_RETENTION_DAYS
    if not days:
        return 0
    cutoff = (now or clock.now()) - dt.timedelta(days=days)
    deleted, _ = ChainSnapshot.objects.filter(taken_at__lt=cutoff).delete()
    return deleted


def chain_snapshot_store(*, symbol: str, expiry: dt.date, taken_at: dt.datetime, analytics: dict) -> ChainSnapshot:
    """Store (or replace) the snapshot of a chain for the interval starting at `taken_at`."""
    summary = analytics["summary"]
    underlying = Underlying.objects.get(symbol=symbol)
    snapshot, _ = ChainSnapshot.objects.update_or_create(
        underlying=underlying,
        expiry=expiry,
        taken_at=taken_at,
        defaults={
            **{field: summary.get(field) for field in ChainSnapshot.HEADLINE_FIELDS},
            "summary": summary,
            "strikes": analytics["strikes"],
        },
    )
    return snapshot


def _chain_quotes(
    layout: dict, ticks: dict[int, dict], reference_oi: dict[int, float], *, expiry: dt.date, as_of: dt.datetime
) -> tuple[ChainQuotes, dict]:
    """The chain's arrays per strike from the latest ticks; NaN where a contract or quote is missing."""
    from marketdata.analytics.chain import ChainQuotes, SideQuotes

    strikes = np.unique(np.array([float(c[3]) for c in layout["contracts"]]))
    index = {strike: i for i, strike in enumerate(strikes.tolist())}
    sides = {kind: {name: np.full(strikes.size, np.nan) for name in _SIDE_FIELDS} for kind in ("CE", "PE")}
    token_at = {}
    for token, tradingsymbol, kind, strike in layout["contracts"]:
        token_at[(float(strike), kind)] = (token, tradingsymbol)
        tick = ticks.get(int(token))
        if tick is None or kind not in sides:
            continue
        side, i = sides[kind], index[float(strike)]
        side["last_price"][i] = _positive(tick.get("last_price"))
        side["bid"][i] = _positive(tick.get("bid"))
        side["ask"][i] = _positive(tick.get("ask"))
        side["previous_close"][i] = _positive(tick.get("close"))
        side["volume"][i] = tick.get("volume_traded") or 0
        side["oi"][i] = tick.get("oi") or 0
        side["reference_oi"][i] = reference_oi.get(int(token), np.nan)
    years = _years_to_expiry(expiry, as_of)
    spot = _positive(ticks.get(layout["spot_token"], {}).get("last_price")) if layout["spot_token"] else np.nan
    future = _future_for_expiry(layout, ticks, spot=spot, years=years, as_of=as_of)
    if np.isnan(spot):  # no spot instrument (or no tick yet): the future, carried back, stands in
        spot = future * np.exp(-(layout["risk_free_rate"] - layout["dividend_yield"]) * years)
    quotes = ChainQuotes(
        strikes=strikes,
        spot=float(spot),
        time_to_expiry_years=years,
        ce=SideQuotes(**sides["CE"]),
        pe=SideQuotes(**sides["PE"]),
        future_price=float(future),
        rate=float(layout["risk_free_rate"]),
        dividend_yield=float(layout["dividend_yield"]),
        lot_size=int(layout["lot_size"]),
    )
    return quotes, token_at


_SIDE_FIELDS = ("last_price", "bid", "ask", "volume", "oi", "previous_close", "reference_oi")


def _future_for_expiry(layout: dict, ticks: dict, *, spot: float, years: float, as_of: dt.datetime) -> float:
    """The futures price for this chain's expiry: the future itself when it expires then; else the
    nearest future's basis carried to this expiry (weekly chains have no future of their own)."""
    token = layout["future_token"]
    price = _positive(ticks.get(token, {}).get("last_price")) if token else np.nan
    if np.isnan(price) or layout["future_expiry"] == layout["expiry"] or np.isnan(spot):
        return price
    future_years = _years_to_expiry(dt.date.fromisoformat(layout["future_expiry"]), as_of)
    if future_years <= 0:
        return np.nan
    return float(spot * (price / spot) ** (years / future_years))


def _years_to_expiry(expiry: dt.date, as_of: dt.datetime) -> float:
    close = dt.datetime.combine(expiry, EXPIRY_CLOSE, tzinfo=clock.IST)
    return (close - as_of).total_seconds() / SECONDS_PER_YEAR


def _positive(value) -> float:
    return float(value) if value is not None and value > 0 else np.nan


def _reference_oi(
    client: redis.Redis, *, symbol: str, expiry: dt.date, as_of: dt.datetime, ticks: dict, tokens: list[int]
) -> dict[int, float]:
    """Each contract's OI to measure the change from: N minutes ago, or the day's first seen."""
    minutes = settings.CHAIN_OI_CHANGE_MINUTES
    if minutes:
        snapshot = selectors.chain_snapshot_before(
            symbol=symbol, expiry=expiry, at=as_of - dt.timedelta(minutes=minutes)
        )
        if snapshot is None:
            return {}
        return {
            int(row[side]["token"]): float(row[side]["oi"])
            for row in snapshot.strikes
            for side in ("ce", "pe")
            if row.get(side) and row[side].get("token") is not None and row[side].get("oi") is not None
        }
    # OI does not change before the open, so the first OI seen on a day is the previous close's.
    key = chain_key(symbol, expiry, f"oi-open:{as_of:%Y%m%d}")
    seen = {int(token): float(oi) for token, oi in client.hgetall(key).items()}
    first_seen = {t: ticks[t]["oi"] for t in tokens if t not in seen and t in ticks and ticks[t].get("oi")}
    if first_seen:
        with client.pipeline(transaction=False) as pipe:
            for token, oi in first_seen.items():
                pipe.hsetnx(key, token, oi)  # another worker may have been first: its value stays
            pipe.expire(key, OI_OPEN_TTL_SECONDS)
            pipe.execute()
        seen.update({t: float(oi) for t, oi in first_seen.items()})
    return seen


def _redis() -> redis.Redis:
    return selectors.redis_client(settings.REDIS_URL)


# -- Watchlist --


class WatchlistError(Exception):
    """A watchlist change that cannot be made; the message says why, in words for the user."""


def watchlist_entry_add(*, user: AbstractBaseUser, instrument_token: int) -> WatchlistEntry:
    """Put the instrument a token means today on the user's watchlist."""
    instrument = instrument_by_token(instrument_token)
    if instrument is None:
        raise WatchlistError(f"No instrument has the token {instrument_token}.")
    if not instrument.active or (instrument.expiry is not None and instrument.expiry < clock.today()):
        raise WatchlistError(f"{instrument} has expired or left the instrument master: it cannot be watched.")
    limit = WatchlistEntry.MAX_PER_USER
    with transaction.atomic():
        # The user's row is the lock: two adds at once (two tabs) must not both pass the count
        # below and make 51 entries, nor both pass the duplicate check and hit the constraint.
        get_user_model().objects.select_for_update().only("pk").get(pk=user.pk)
        entries = WatchlistEntry.objects.filter(user=user)
        # By token, not by row: the page's quotes and the socket's groups are keyed by token.
        if entries.filter(instrument__instrument_token=instrument.instrument_token).exists():
            raise WatchlistError(f"{instrument} is already on your watchlist.")
        if entries.count() >= limit:
            raise WatchlistError(f"Your watchlist is full ({limit} instruments): remove one before adding another.")
        return WatchlistEntry.objects.create(user=user, instrument=instrument)


def watchlist_entry_remove(*, user: AbstractBaseUser, instrument_token: int) -> Instrument:
    """Take a token off the user's own watchlist (someone else's entries are never touched); the
    instrument it was."""
    own = WatchlistEntry.objects.filter(user=user, instrument__instrument_token=instrument_token)
    entry = own.select_related("instrument").first()
    if entry is None:
        raise WatchlistError(f"The token {instrument_token} is not on your watchlist.")
    own.delete()
    return entry.instrument
