"""The one place the product reads the time.

Exchange time is IST. Code asks `now()` (aware, IST) or `today()` (the IST date), and
tests pin the clock with `frozen_clock` instead of patching datetime everywhere.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")


def _system_now() -> dt.datetime:
    return dt.datetime.now(tz=IST)


_source: Callable[[], dt.datetime] = _system_now


def now() -> dt.datetime:
    """The current time, timezone-aware, in IST."""
    return _source()


def today() -> dt.date:
    """Today's date on the exchange's calendar (IST), whatever the server's zone."""
    return now().date()


@contextmanager
def frozen_clock(moment: dt.datetime) -> Iterator[None]:
    """Pin `now()` to `moment` (which must be aware) for the duration of the block."""
    global _source
    if moment.tzinfo is None:
        raise ValueError("frozen_clock needs a timezone-aware datetime")
    pinned = moment.astimezone(IST)
    previous, _source = _source, (lambda: pinned)
    try:
        yield
    finally:
        _source = previous


# NSE's equity-derivatives session. Exchange holidays are not modelled: on one, the clock says
# "open" while no ticks come, and the pages' connection indicator says the data is stale.
MARKET_OPENS = dt.time(9, 15)
MARKET_CLOSES = dt.time(15, 30)


@dataclass(frozen=True)
class MarketSession:
    is_open: bool
    # While open: the close today. While closed: the next open (the next weekday's 09:15).
    next_change: dt.datetime

    def until_next_change(self, moment: dt.datetime) -> dt.timedelta:
        return self.next_change - moment


def market_session(moment: dt.datetime | None = None) -> MarketSession:
    """Whether the F&O market is open at `moment` (default now), and when that next changes."""
    moment = (moment or now()).astimezone(IST)
    day, time_of_day = moment.date(), moment.time()
    if day.weekday() < 5 and MARKET_OPENS <= time_of_day < MARKET_CLOSES:
        return MarketSession(True, dt.datetime.combine(day, MARKET_CLOSES, tzinfo=IST))
    if day.weekday() >= 5 or time_of_day >= MARKET_CLOSES:
        day += dt.timedelta(days=1)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return MarketSession(False, dt.datetime.combine(day, MARKET_OPENS, tzinfo=IST))
