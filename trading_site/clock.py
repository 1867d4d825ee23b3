"""The one place the product reads the time.

Exchange time is IST. Code asks `now()` (aware, IST) or `today()` (the IST date), and
tests pin the clock with `frozen_clock` instead of patching datetime everywhere.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
