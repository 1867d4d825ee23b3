"""A realistic demo instrument master for NIFTY, BANKNIFTY and FINNIFTY.

Pure Python: rows in Kite's format with Kite's real index tokens, expiries on
NSE's calendar from September 2025 (NIFTY weeklies on Tuesdays; monthlies on the
last Tuesday of the month), Kite's tradingsymbol formats and the lot sizes in
force from the January 2026 expiries. Exchange holidays, which move an expiry to
the previous trading day, are not modelled.

Tokens are derived from (underlying, expiry, strike, type), never from position,
so a contract keeps its token from one day's demo master to the next, as on Kite.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from instruments.master import MasterRow

NFO_SEGMENT_CODE = 2  # instrument_token & 0xff for NFO
INDICES_SEGMENT_CODE = 9
OPTION_TICK_SIZE = Decimal("0.05")
_MONTH_LETTERS = "123456789OND"  # Kite's weekly-symbol month codes, January..December


@dataclass(frozen=True)
class DemoUnderlying:
    symbol: str  # Kite's `name` of the contracts
    index_symbol: str  # the index's tradingsymbol on NSE
    index_exchange_token: int  # Kite's real token is this * 256 + 9
    spot: Decimal  # a plausible level, centre of the listed strikes
    strike_step: int
    lot_size: int
    weekly_expiries: int  # NIFTY alone keeps weeklies on NSE
    monthly_expiries: int
    strikes_listed_each_side: int
    token_base: int

    @property
    def index_token(self) -> int:
        return self.index_exchange_token * 256 + INDICES_SEGMENT_CODE


DEMO_UNDERLYINGS = (
    DemoUnderlying("NIFTY", "NIFTY 50", 1001, Decimal("26000"), 50, 65, 4, 3, 40, 1_000_000),
    DemoUnderlying("BANKNIFTY", "NIFTY BANK", 1016, Decimal("59000"), 100, 30, 0, 3, 40, 2_000_000),
    DemoUnderlying("FINNIFTY", "NIFTY FIN SERVICE", 1007, Decimal("27500"), 50, 60, 0, 3, 40, 3_000_000),
)


def demo_master(today: dt.date) -> list[MasterRow]:
    """Every row of the demo master as of `today` (contracts expiring today included)."""
    rows: list[MasterRow] = []
    for underlying in DEMO_UNDERLYINGS:
        rows.append(_index_row(underlying))
        monthlies = monthly_expiries(today, underlying.monthly_expiries)
        for expiry in monthlies:
            rows.append(_future_row(underlying, expiry))
        expiries = sorted(set(weekly_expiries(today, underlying.weekly_expiries)) | set(monthlies))
        for expiry in expiries:
            monthly = expiry == last_tuesday(expiry.year, expiry.month)
            for strike in _listed_strikes(underlying):
                for kind in ("CE", "PE"):
                    rows.append(_option_row(underlying, expiry, strike, kind, monthly=monthly))
    return rows


def weekly_expiries(today: dt.date, count: int) -> list[dt.date]:
    """The next `count` Tuesdays from `today` on (today included when it is a Tuesday)."""
    first = today + dt.timedelta(days=(calendar.TUESDAY - today.weekday()) % 7)
    return [first + dt.timedelta(weeks=week) for week in range(count)]


def monthly_expiries(today: dt.date, count: int) -> list[dt.date]:
    """The next `count` last-Tuesdays-of-the-month from `today` on."""
    expiries: list[dt.date] = []
    year, month = today.year, today.month
    while len(expiries) < count:
        expiry = last_tuesday(year, month)
        if expiry >= today:
            expiries.append(expiry)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return expiries


def last_tuesday(year: int, month: int) -> dt.date:
    last_day = dt.date(year, month, calendar.monthrange(year, month)[1])
    return last_day - dt.timedelta(days=(last_day.weekday() - calendar.TUESDAY) % 7)


def option_symbol(symbol: str, expiry: dt.date, strike: Decimal, kind: str, *, monthly: bool) -> str:
    """Kite's format: NIFTY25DEC26000CE for a monthly, NIFTY25D0926000CE for a weekly."""
    strike_text = format(strike.normalize(), "f")
    if monthly:
        return f"{symbol}{expiry:%y}{expiry.strftime('%b').upper()}{strike_text}{kind}"
    return f"{symbol}{expiry:%y}{_MONTH_LETTERS[expiry.month - 1]}{expiry:%d}{strike_text}{kind}"


def future_symbol(symbol: str, expiry: dt.date) -> str:
    return f"{symbol}{expiry:%y}{expiry.strftime('%b').upper()}FUT"


def _listed_strikes(underlying: DemoUnderlying) -> list[Decimal]:
    step = Decimal(underlying.strike_step)
    atm = (underlying.spot / step).to_integral_value() * step
    n = underlying.strikes_listed_each_side
    return [atm + step * offset for offset in range(-n, n + 1)]


def _index_row(underlying: DemoUnderlying) -> MasterRow:
    return MasterRow(
        instrument_token=underlying.index_token,
        exchange_token=underlying.index_exchange_token,
        tradingsymbol=underlying.index_symbol,
        name=underlying.index_symbol,
        last_price=Decimal("0"),
        expiry=None,
        strike=Decimal("0"),
        tick_size=Decimal("0"),
        lot_size=0,
        instrument_type="EQ",
        segment="INDICES",
        exchange="NSE",
    )


def _future_row(underlying: DemoUnderlying, expiry: dt.date) -> MasterRow:
    # Slot 950 of the expiry's block of 1000 is kept for the future; options use 0..901.
    exchange_token = underlying.token_base + (expiry.toordinal() % 1000) * 1000 + 950
    return _derivative_row(
        underlying, exchange_token, future_symbol(underlying.symbol, expiry), expiry, Decimal(0), "FUT"
    )


def _option_row(underlying: DemoUnderlying, expiry: dt.date, strike: Decimal, kind: str, *, monthly: bool) -> MasterRow:
    strike_slot = int(strike / underlying.strike_step) % 450
    exchange_token = (
        underlying.token_base + (expiry.toordinal() % 1000) * 1000 + strike_slot * 2 + (1 if kind == "PE" else 0)
    )
    symbol = option_symbol(underlying.symbol, expiry, strike, kind, monthly=monthly)
    return _derivative_row(underlying, exchange_token, symbol, expiry, strike, kind)


def _derivative_row(
    underlying: DemoUnderlying, exchange_token: int, symbol: str, expiry: dt.date, strike: Decimal, kind: str
) -> MasterRow:
    return MasterRow(
        instrument_token=exchange_token * 256 + NFO_SEGMENT_CODE,
        exchange_token=exchange_token,
        tradingsymbol=symbol,
        name=underlying.symbol,
        last_price=Decimal("0"),
        expiry=expiry,
        strike=strike.quantize(Decimal("0.0001")),
        tick_size=OPTION_TICK_SIZE.quantize(Decimal("0.000001")),
        lot_size=underlying.lot_size,
        instrument_type=kind,
        segment="NFO-FUT" if kind == "FUT" else "NFO-OPT",
        exchange="NFO",
    )
