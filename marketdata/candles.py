"""Candles of Kite's intervals built from stored 1-minute bars, in one pass. No Django import.

Intraday buckets are aligned to the NSE session's 09:15 IST open, as Kite's are: a 5minute candle
covers 09:15-09:20, a 60minute candle 09:15-10:15 and so on to the 15:15-15:30 stub; a bar before
09:15 (pre-open, or a commodity session) falls in a bucket counted back from 09:15. A `day` candle is
the IST calendar day, dated 00:00 IST. Each candle: open = the first bar's open, high = the highest
high, low = the lowest low, close = the last bar's close, volume = the sum, oi = the last bar's OI.

India has kept one UTC offset since 1945, so the buckets are computed on epoch seconds shifted by
+05:30: a zone lookup per bar would cost more than the rest of the pass.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")
IST_OFFSET_SECONDS = 5 * 3600 + 30 * 60
SESSION_OPEN_MINUTE = 9 * 60 + 15
SECONDS_PER_DAY = 86_400

# Kite's interval names; None is the day.
INTERVAL_MINUTES: dict[str, int | None] = {
    "minute": 1,
    "3minute": 3,
    "5minute": 5,
    "10minute": 10,
    "15minute": 15,
    "30minute": 30,
    "60minute": 60,
    "day": None,
}

# One stored bar: start (epoch seconds), open, high, low, close, volume, oi.
BarRow = tuple[int, float, float, float, float, int, int]


def bucket_start(epoch_seconds: int, interval: str) -> int:
    """The epoch second at which the candle holding the bar that starts at `epoch_seconds` starts."""
    minutes = INTERVAL_MINUTES[interval]
    local = epoch_seconds + IST_OFFSET_SECONDS
    day_start = local - local % SECONDS_PER_DAY
    if minutes is None:
        return day_start - IST_OFFSET_SECONDS
    minute_of_day = (local - day_start) // 60
    bucket_minute = SESSION_OPEN_MINUTE + (minute_of_day - SESSION_OPEN_MINUTE) // minutes * minutes
    return day_start + bucket_minute * 60 - IST_OFFSET_SECONDS


def aggregate(bars: Iterable[BarRow], interval: str) -> list[dict]:
    """Candles {date, open, high, low, close, volume, oi} from bars in ascending start order."""
    if interval not in INTERVAL_MINUTES:
        raise ValueError(f"unknown interval {interval!r}; one of {', '.join(INTERVAL_MINUTES)}")
    candles: list[list] = []
    current_bucket = None
    candle: list = []
    for start, open_, high, low, close, volume, oi in bars:
        bucket = bucket_start(start, interval)
        if bucket != current_bucket:
            current_bucket = bucket
            candle = [bucket, open_, high, low, close, volume, oi]
            candles.append(candle)
            continue
        if high > candle[2]:
            candle[2] = high
        if low < candle[3]:
            candle[3] = low
        candle[4] = close
        candle[5] += volume
        candle[6] = oi
    return [
        {
            "date": dt.datetime.fromtimestamp(bucket, tz=IST).isoformat(),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "oi": oi,
        }
        for bucket, open_, high, low, close, volume, oi in candles
    ]
