"""Synthetic instrument masters in Kite's exact CSV format, shaped like the real one.

Kite's full master is about 100,000 rows: NSE/BSE equities and indices, then mostly
NFO/BFO stock and index options across several expiries, some futures, some MCX.
`synthetic_master(n)` gives n rows with that mix, deterministic for a given n.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from instruments.master import MasterRow, format_master

_SEGMENT_CODE = {"NSE": 1, "NFO": 2, "BSE": 4, "BFO": 5, "MCX": 7}


def _row(token_seq: int, exchange: str, symbol: str, name: str, kind: str, segment: str, **extra) -> MasterRow:
    exchange_token = 10_000 + token_seq
    return MasterRow(
        instrument_token=exchange_token * 256 + _SEGMENT_CODE[exchange],
        exchange_token=exchange_token,
        tradingsymbol=symbol,
        name=name,
        last_price=extra.get("last_price", Decimal("0.0000")),
        expiry=extra.get("expiry"),
        strike=extra.get("strike", Decimal("0.0000")),
        tick_size=Decimal("0.050000"),
        lot_size=extra.get("lot_size", 1),
        instrument_type=kind,
        segment=segment,
        exchange=exchange,
    )


def synthetic_rows(count: int, *, first_expiry: dt.date = dt.date(2026, 11, 24)) -> list[MasterRow]:
    rows: list[MasterRow] = []
    expiries = [first_expiry + dt.timedelta(weeks=w) for w in range(6)]
    stock = 0
    while len(rows) < count:
        name = f"STOCK{stock:04d}"
        seq = len(rows)
        rows.append(_row(seq, "NSE", name, name, "EQ", "NSE", last_price=Decimal("1234.5500")))
        for expiry in expiries:
            rows.append(
                _row(
                    len(rows),
                    "NFO",
                    f"{name}{expiry:%y%b%d}FUT".upper(),
                    name,
                    "FUT",
                    "NFO-FUT",
                    expiry=expiry,
                    lot_size=500,
                )
            )
            for step in range(-6, 7):
                strike = Decimal(1200 + 10 * step).quantize(Decimal("0.0001"))
                for kind in ("CE", "PE"):
                    symbol = f"{name}{expiry:%y%b}{int(strike)}{kind}".upper() + f"W{expiry:%d}"
                    rows.append(
                        _row(
                            len(rows), "NFO", symbol, name, kind, "NFO-OPT", expiry=expiry, strike=strike, lot_size=500
                        )
                    )
        stock += 1
    return rows[:count]


def synthetic_master(count: int, **kwargs) -> str:
    return format_master(synthetic_rows(count, **kwargs))
