"""Simulated exchange time: IST, the NSE session and its U-shaped intraday activity.

Times inside the simulator are float epoch seconds; IST has no daylight saving, so the
local time of day is a fixed offset away and needs no datetime arithmetic in the hot path.
"""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import numpy as np

IST = ZoneInfo("Asia/Kolkata")
IST_OFFSET_SECONDS = 19_800  # +05:30, all year
SECONDS_PER_DAY = 86_400
SESSION_OPEN_SECONDS = 9 * 3600 + 15 * 60  # 09:15 IST
SESSION_CLOSE_SECONDS = 15 * 3600 + 30 * 60  # 15:30 IST
SESSION_SECONDS = SESSION_CLOSE_SECONDS - SESSION_OPEN_SECONDS  # 22,500
TRADING_DAYS_PER_YEAR = 252
# Volatility is quoted per year of trading time (252 sessions), option expiry per calendar year.
TRADING_SECONDS_PER_YEAR = TRADING_DAYS_PER_YEAR * SESSION_SECONDS
CALENDAR_SECONDS_PER_YEAR = 365 * SECONDS_PER_DAY  # ACT/365, as in marketdata.analytics.black_scholes
EXPIRY_TIME = dt.time(15, 30)


def expiry_epoch(expiry: dt.date) -> float:
    """NSE options and futures expire at 15:30 IST on the expiry date."""
    return dt.datetime.combine(expiry, EXPIRY_TIME, tzinfo=IST).timestamp()


def session_fraction(epoch: float) -> float:
    """How far through the day's session `epoch` is: 0 before 09:15 IST, 1 after 15:30."""
    seconds_of_day = (epoch + IST_OFFSET_SECONDS) % SECONDS_PER_DAY
    return min(max((seconds_of_day - SESSION_OPEN_SECONDS) / SESSION_SECONDS, 0.0), 1.0)


def _raw_profile(fraction: float | np.ndarray) -> float | np.ndarray:
    # Busy opening half hour, a quiet lunch, a pick-up into the close: the shape of NSE volume.
    return 0.75 + 1.1 * np.exp(-fraction / 0.05) + 0.45 * np.exp(-(1.0 - fraction) / 0.06)


# Scaled so that the variance over a whole session is what the annual volatility says.
_PROFILE_SCALE = 1.0 / math.sqrt(float(np.mean(_raw_profile(np.linspace(0.0, 1.0, 10_001)) ** 2)))


def intraday_multiplier(epoch: float) -> float:
    """Volatility and activity at `epoch` relative to the session average (about 2.3 at the
    open, 0.7 at lunch, 1.2 at the close). Outside the session it holds the nearest edge's value:
    the simulator keeps running, and the feed decides what to do out of hours."""
    return float(_raw_profile(session_fraction(epoch))) * _PROFILE_SCALE


class TimestampCache:
    """Aware IST datetimes for whole epoch seconds, built once each (ticks share their second).

    Kite's packets carry whole seconds, so ticks do too: a tick survives a trip through a binary
    frame unchanged.
    """

    def __init__(self) -> None:
        self._cache: dict[int, dt.datetime] = {}

    def __call__(self, epoch_seconds: int) -> dt.datetime:
        found = self._cache.get(epoch_seconds)
        if found is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            found = self._cache[epoch_seconds] = dt.datetime.fromtimestamp(epoch_seconds, IST)
        return found
