"""Writes of the marketdata app."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import transaction

from marketdata.feed.bars import ClosedBars
from marketdata.models import Bar

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
