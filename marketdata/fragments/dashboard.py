"""The dashboard's live values as HTML: the feed's health, a tile per underlying, the market's
state, and the nearest expiries' biggest open-interest moves.

No Django import (as marketdata.fragments.html): the view draws the first render and the page's
socket every update with these same functions, so a value reads the same however it was drawn.
Each function returns `LiveCell`s keyed by a short name, which the template places and the socket
sends only when their text changed (`marketdata.fragments.html.SentCells`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape
from typing import Protocol
from urllib.parse import quote

from marketdata.fragments.html import (
    BUILDUP,
    DASH,
    LiveCell,
    fixed,
    is_number,
    percent,
    price,
    quantity,
    sign_class,
    signed,
    signed_quantity,
)
from marketdata.groups import safe_symbol

# What KiteSource reports while the data account's access token is gone (marketdata.feed.sources).
SESSION_EXPIRED = "session expired"
KITE_LOGIN_ID = "feed-login"
OI_GAINERS_ID = "oi-gainers"
OI_LOSERS_ID = "oi-losers"
OI_MOVERS_SHOWN = 5


class FollowedUnderlying(Protocol):
    """What a tile follows (marketdata.selectors.UnderlyingTile)."""

    symbol: str
    spot_token: int | None
    future_token: int | None


def chain_path(symbol: str, expiry: str | None = None) -> str:
    """The chain page of an underlying (the URL named "chain"), at an expiry (ISO) when given."""
    path = f"/chain/{quote(symbol, safe='')}/"
    return f"{path}?expiry={quote(expiry)}" if expiry else path


# -- the feed ----------------------------------------------------------------------------------
NO_FEED_HINT = "No feed is reporting. Start one with: python manage.py run_feed"


def feed_cells(status: Mapping | None) -> dict[str, LiveCell]:
    """The feed's health from its status message; "—" for everything when no feed reports.

    These cells do not flash: counters that change every second would flash without end and
    hide the price moves that matter.
    """
    status = status or {}
    state, session = status.get("state"), status.get("session")
    up, wanted = status.get("connections_up"), status.get("connections_wanted")
    lag = status.get("lag_ms")
    return {
        "state": LiveCell(
            "feed-state", state or DASH, classes=f"badge feed-{safe_symbol(state)}" if state else "badge"
        ),
        "connections": LiveCell(
            "feed-connections", f"{up} / {wanted}" if is_number(up) and is_number(wanted) else DASH
        ),
        "instruments": LiveCell("feed-instruments", price(status.get("instruments"), 0)),
        "tps": LiveCell("feed-tps", price(status.get("ticks_per_s"), 0)),
        "lag": LiveCell("feed-lag", f"{price(lag, 0)} ms" if is_number(lag) else DASH),
        "backlog": LiveCell("feed-backlog", price(status.get("storage_backlog"), 0)),
        "dropped": LiveCell("feed-dropped", price(status.get("ticks_dropped"), 0)),
        "frame_errors": LiveCell("feed-frame-errors", price(status.get("frame_errors"), 0)),
        "session": LiveCell("feed-session", session or DASH, classes="error" if session == SESSION_EXPIRED else ""),
        "error": LiveCell("feed-error", status.get("last_error") or DASH, classes="muted"),
        # Said only while no feed reports running, so the card never contradicts itself.
        "hint": LiveCell("feed-hint", "" if state == "running" else NO_FEED_HINT, tag="p", classes="muted"),
    }


def kite_login_link(status: Mapping | None, login_url: str | None, *, swap: bool = False) -> str:
    """A 'Log in to Kite' link while the feed's Kite session is expired, for whoever can log the
    data account in (`login_url`, None for everyone else); an empty element otherwise."""
    expired = (status or {}).get("session") == SESSION_EXPIRED
    link = f'<a href="{escape(login_url)}">Log in to Kite</a>' if expired and login_url else ""
    return f'<span id="{KITE_LOGIN_ID}"' + (' hx-swap-oob="true"' if swap else "") + f">{link}</span>"


# -- the underlyings' tiles ------------------------------------------------------------------------
def tile_cells(
    symbol: str, *, spot: Mapping | None, future: Mapping | None, chain: Mapping | None
) -> dict[str, LiveCell]:
    """One underlying's tile: spot and its change from the previous close, the nearest future
    (both from the feed's ticks, the chain's own figures standing in until a tick arrives),
    and the nearest expiry's ATM IV and put-call ratio of open interest."""
    summary = (chain or {}).get("summary") or {}
    spot_price = _positive(spot, "last_price", fallback=summary.get("spot"))
    future_price = _positive(future, "last_price", fallback=summary.get("future"))
    points, change_pct = _change(spot)
    change_text = signed(change_pct, 2, "%")
    if is_number(points):
        change_text = f"{signed(points)} ({change_text})"
    atm_iv, pcr = summary.get("atm_iv"), summary.get("pcr_oi")
    prefix = f"tile-{safe_symbol(symbol)}"
    return {
        "spot": LiveCell(f"{prefix}-spot", price(spot_price), spot_price, classes="dash-spot num"),
        "chg": LiveCell(f"{prefix}-chg", change_text, change_pct, classes=f"dash-chg num {sign_class(change_pct)}"),
        "future": LiveCell(f"{prefix}-future", price(future_price), future_price, tag="dd", classes="num"),
        "atm_iv": LiveCell(f"{prefix}-atm-iv", percent(atm_iv, 2), atm_iv, tag="dd", classes="num"),
        "pcr": LiveCell(f"{prefix}-pcr", fixed(pcr, 2), pcr, tag="dd", classes="num"),
    }


def followed_tile_cells(
    tile: FollowedUnderlying, ticks: Mapping[int, Mapping], chains: Mapping[str, Mapping]
) -> dict[str, LiveCell]:
    """tile_cells from the latest ticks by token and chain analytics by symbol."""
    return tile_cells(
        tile.symbol,
        spot=ticks.get(tile.spot_token) if tile.spot_token else None,
        future=ticks.get(tile.future_token) if tile.future_token else None,
        chain=chains.get(tile.symbol),
    )


def _positive(tick: Mapping | None, key: str, *, fallback: object) -> float | None:
    """A price from a tick; zero means Kite has no trade yet, so the fallback stands in."""
    value = (tick or {}).get(key)
    if is_number(value) and value > 0:
        return value
    return fallback if is_number(fallback) and fallback > 0 else None


def _change(tick: Mapping | None) -> tuple[float | None, float | None]:
    """(points, percent) from the previous close; the tick's own percent when it has no close."""
    tick = tick or {}
    last, close, change = tick.get("last_price"), tick.get("close"), tick.get("change")
    if is_number(last) and last > 0 and is_number(close) and close > 0:
        return last - close, change if is_number(change) else (last - close) / close * 100
    return None, change if is_number(change) else None


# -- the market's state ----------------------------------------------------------------------------
def market_cells(moment: dt.datetime, *, is_open: bool, next_change: dt.datetime) -> dict[str, LiveCell]:
    """The market card: open or closed, how long until that changes, and the time in IST, to the
    minute (the top bar's clock has the seconds), so the card changes once a minute."""
    wait = time_until(moment, next_change)
    if is_open:
        state, countdown = "Open", f"closes in {wait} ({next_change:%H:%M})"
    else:
        state, countdown = "Closed", f"opens in {wait} ({next_change:%a %H:%M})"
    return {
        "state": LiveCell("market-state", state, tag="strong", classes="market-" + state.lower()),
        "next": LiveCell("market-next", countdown),
        "time": LiveCell("market-time", f"{moment:%a %d %b %Y, %H:%M} IST", classes="muted"),
    }


def time_until(moment: dt.datetime, later: dt.datetime) -> str:
    """'4h 59m', '2d 17h 44m' (whole minutes, rounded down; never negative)."""
    remaining = max(int((later - moment).total_seconds()), 0)
    hours, minutes = divmod(remaining // 60, 60)
    days, hours = divmod(hours, 24)
    return (f"{days}d " if days else "") + f"{hours}h {minutes:02d}m"


# -- open-interest movers --------------------------------------------------------------------------
@dataclass(frozen=True)
class OiMover:
    underlying: str
    expiry: str | None  # ISO, as the chain's analytics say it
    tradingsymbol: str
    oi: int | None
    oi_change: int | None
    oi_change_pct: float
    buildup: str | None


def oi_movers(chains: Iterable[Mapping], *, limit: int = OI_MOVERS_SHOWN) -> tuple[list[OiMover], list[OiMover]]:
    """The contracts whose OI rose most and fell most, in percent, across the given chains'
    analytics: (gainers, biggest rise first; losers, biggest fall first). Ties go by symbol."""
    movers = [mover for chain in chains for mover in _chain_movers(chain)]
    gainers = sorted((m for m in movers if m.oi_change_pct > 0), key=lambda m: (-m.oi_change_pct, m.tradingsymbol))
    losers = sorted((m for m in movers if m.oi_change_pct < 0), key=lambda m: (m.oi_change_pct, m.tradingsymbol))
    return gainers[:limit], losers[:limit]


def _chain_movers(chain: Mapping) -> Iterable[OiMover]:
    symbol, expiry = chain.get("underlying") or "", chain.get("expiry")
    for row in chain.get("strikes") or ():
        for side in ("ce", "pe"):
            contract = row.get(side)
            if not contract or not is_number(contract.get("oi_change_pct")):
                continue
            yield OiMover(
                underlying=symbol,
                expiry=expiry,
                tradingsymbol=contract.get("tradingsymbol") or f"{symbol} {row.get('strike')} {side.upper()}",
                oi=contract.get("oi"),
                oi_change=contract.get("oi_change"),
                oi_change_pct=contract["oi_change_pct"],
                buildup=contract.get("buildup"),
            )


def oi_movers_body(element_id: str, movers: Iterable[OiMover], *, swap: bool = False) -> str:
    """A table body of movers, swapped whole: a row each, the contract linking to its chain."""
    rows = "".join(_mover_row(mover) for mover in movers)
    if not rows:
        rows = f'<tr><td colspan="5" class="muted">{DASH}</td></tr>'
    return f'<tbody id="{element_id}"' + (' hx-swap-oob="true"' if swap else "") + f">{rows}</tbody>"


def _mover_row(mover: OiMover) -> str:
    label, _, colour = BUILDUP.get(mover.buildup or "", (DASH, DASH, "muted"))
    return (
        "<tr>"
        f'<td><a href="{escape(chain_path(mover.underlying, mover.expiry))}">{escape(mover.tradingsymbol)}</a></td>'
        f'<td class="num">{quantity(mover.oi)}</td>'
        f'<td class="num {sign_class(mover.oi_change)}">{signed_quantity(mover.oi_change)}</td>'
        f'<td class="num {sign_class(mover.oi_change_pct)}">{signed(mover.oi_change_pct, 1, "%")}</td>'
        f'<td class="{colour}">{label}</td>'
        "</tr>"
    )
