"""The two things every live page shows in its top bar: the connection indicator and the market clock."""

from __future__ import annotations

import datetime as dt

from marketdata.fragments.html import cell

CONNECTION_ID = "conn"
CLOCK_ID = "market-clock"
# States the server decides. The page's script adds "connecting" and "reconnecting" (the socket's
# own state, which only the browser knows) and "stale" when the server itself goes quiet.
LIVE, STALE, SIGNED_OUT, NO_FEED = "live", "stale", "signed-out", "no-feed"
_LABELS = {LIVE: "Live", STALE: "Stale", SIGNED_OUT: "Signed out", NO_FEED: "No feed"}


def connection_indicator(state: str, last_data: dt.datetime | None, *, swap: bool = True) -> str:
    """'Live', or 'Stale · last data 10:31:02' (IST), as the indicator element."""
    label = _LABELS[state]
    if state != LIVE and last_data is not None:
        label += f" · last data {last_data:%H:%M:%S}"
    last = f' data-last="{last_data:%H:%M:%S}"' if last_data is not None else ""
    return cell(
        CONNECTION_ID,
        label,
        tag="span",
        classes="conn",
        swap=swap,
        attrs=f'data-state="{state}"{last} role="status" aria-live="polite"',
    )


def market_clock(moment: dt.datetime, *, is_open: bool, next_change: dt.datetime, swap: bool = True) -> str:
    """'IST 10:31:02 · Open · closes in 4h 59m' (or 'Closed · opens in ...')."""
    remaining = max(int((next_change - moment).total_seconds()), 0)
    hours, minutes = divmod(remaining // 60, 60)
    days, hours = divmod(hours, 24)
    span = (f"{days}d " if days else "") + f"{hours}h {minutes:02d}m"
    state = f"Open · closes in {span}" if is_open else f"Closed · opens in {span}"
    return cell(
        CLOCK_ID,
        f"IST {moment:%H:%M:%S} · {state}",
        tag="span",
        classes="clock " + ("open" if is_open else "closed"),
        swap=swap,
    )
