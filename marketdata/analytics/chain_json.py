"""A chain's figures as JSON-safe dicts, for Redis, the websocket and the API.

NaN becomes None, IV is shown in percent points (fractions in the arrays). Rounding: prices, changes
and percentages 2 dp (mid 3 dp, so that 0.05 / 0.20 shows 0.125), IV 2 dp, delta 4 dp, the other
Greeks 5 significant digits, OI, volume and GEX (rupees) whole, PCR 3 dp.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from marketdata.analytics.chain import ChainFigures, SideFigures


def figures_to_dict(figures: ChainFigures) -> dict:
    """JSON-safe: NaN becomes None and IV is in percent points. Rounding: prices, changes and
    percentages 2 dp (mid 3 dp, so that 0.05 / 0.20 shows 0.125), IV 2 dp, delta 4 dp, the other
    Greeks 5 significant digits, OI, volume, GEX (rupees) and strength whole, PCR 3 dp."""
    strike_values = _decimals(figures.strikes, 2)
    rows = [
        {"strike": strike, "ce": ce, "pe": pe, "gex": gex, "pcr_oi": pcr}
        for strike, ce, pe, gex, pcr in zip(
            strike_values,
            _side_rows(figures.ce),
            _side_rows(figures.pe),
            _integers(figures.gex),
            _decimals(figures.pcr_oi_by_strike, 3),
            strict=True,
        )
    ]
    return {"summary": _summary(figures, strike_values), "strikes": rows}


def _summary(figures: ChainFigures, strike_values: list) -> dict:
    return {
        "spot": _scalar(figures.spot, 2),
        "future": _scalar(figures.future_price, 2),
        "forward": _scalar(figures.forward, 2),
        "forward_source": figures.forward_source,
        "implied_dividend_yield": _scalar(figures.implied_dividend_yield, 6),
        "time_to_expiry_years": _scalar(figures.time_to_expiry_years, 8),
        "days_to_expiry": _scalar(figures.time_to_expiry_years * 365.0, 2),
        "atm_strike": _scalar(figures.atm_strike, 2),
        "atm_iv": _scalar(figures.atm_iv * 100.0, 2),
        "atm_straddle": _scalar(figures.atm_straddle, 2),
        "expected_move": _scalar(figures.expected_move, 2),
        "expected_move_pct": _scalar(figures.expected_move_pct, 2),
        "iv_25d_call": _scalar(figures.iv_25d_call * 100.0, 2),
        "iv_25d_put": _scalar(figures.iv_25d_put * 100.0, 2),
        "risk_reversal_25d": _scalar(figures.risk_reversal_25d * 100.0, 2),
        "butterfly_25d": _scalar(figures.butterfly_25d * 100.0, 2),
        "pcr_oi": _scalar(figures.pcr_oi, 3),
        "pcr_volume": _scalar(figures.pcr_volume, 3),
        "max_pain": _scalar(figures.max_pain, 2),
        "call_wall": _scalar(figures.call_wall, 2),
        "put_wall": _scalar(figures.put_wall, 2),
        "total_gex": _scalar(figures.total_gex, 0),
        "gamma_flip": _scalar(figures.gamma_flip, 2),
        "total_ce_oi": _scalar(figures.total_ce_oi, 0),
        "total_pe_oi": _scalar(figures.total_pe_oi, 0),
        "total_ce_volume": _scalar(figures.total_ce_volume, 0),
        "total_pe_volume": _scalar(figures.total_pe_volume, 0),
        "lot_size": int(figures.lot_size),
        "smile": {
            "strikes": strike_values,
            "ce_iv": _decimals(figures.ce.iv * 100.0, 2),
            "pe_iv": _decimals(figures.pe.iv * 100.0, 2),
        },
    }


IV_SOURCES = ("ltp", "mid")  # indexed by iv_from_mid
BUILDUP_LABELS = (None, "long_buildup", "short_buildup", "short_covering", "long_unwinding")
_SIDE_KEYS = (
    "ltp",
    "change",
    "change_pct",
    "bid",
    "ask",
    "mid",
    "volume",
    "oi",
    "oi_change",
    "oi_change_pct",
    "iv",
    "iv_source",
    "delta",
    "gamma",
    "theta",
    "vega",
    "rho",
    "gex",
    "buildup",
    "buildup_strength",
)


def _side_rows(side: SideFigures) -> list[dict]:
    known = (side.iv == side.iv).tolist()
    sources = [
        (IV_SOURCES[mid] if has_iv else None) for mid, has_iv in zip(side.iv_from_mid.tolist(), known, strict=True)
    ]
    columns = (
        _decimals(side.last_price, 2),
        _decimals(side.change, 2),
        _decimals(side.change_pct, 2),
        _decimals(side.bid, 2),
        _decimals(side.ask, 2),
        _decimals(side.mid, 3),
        _integers(side.volume),
        _integers(side.oi),
        _integers(side.oi_change),
        _decimals(side.oi_change_pct, 2),
        _decimals(side.iv * 100.0, 2),
        sources,
        _decimals(side.delta, 4),
        _significant(side.gamma, 5),
        _significant(side.theta, 5),
        _significant(side.vega, 5),
        _significant(side.rho, 5),
        _integers(side.gex),
        [BUILDUP_LABELS[code] for code in side.buildup.tolist()],
        _integers(side.buildup_strength),
    )
    return [dict(zip(_SIDE_KEYS, values, strict=True)) for values in zip(*columns, strict=True)]


def _decimals(values: np.ndarray, places: int) -> list[float | None]:
    return _floats_or_none(np.round(values, places))


def _floats_or_none(values: np.ndarray) -> list[float | None]:
    finite = np.isfinite(values)
    if finite.all():
        return values.tolist()
    return [value if ok else None for value, ok in zip(values.tolist(), finite.tolist(), strict=True)]


def _integers(values: np.ndarray) -> list[int | None]:
    rounded = np.round(values)
    finite = np.isfinite(rounded)
    if finite.all():
        return rounded.astype(np.int64).tolist()
    return [int(value) if ok else None for value, ok in zip(rounded.tolist(), finite.tolist(), strict=True)]


def _significant(values: np.ndarray, digits: int) -> list[float | None]:
    """Rounded to ``digits`` significant digits. Dividing the rounded integer by an exact power of
    ten gives the double nearest the short decimal, so the JSON shows 0.00032154, not 0.000321540001."""
    with np.errstate(all="ignore"):
        magnitude = np.floor(np.log10(np.abs(values)))
        # clipped so that the powers of ten stay finite, even for zero and subnormal values
        places = np.clip(np.where(np.isfinite(magnitude), digits - 1 - magnitude, 0), -300, 300)
        up, down = 10.0 ** np.maximum(places, 0), 10.0 ** np.maximum(-places, 0)
        return _floats_or_none(np.round(values * up / down) * down / up)


def _scalar(value: float, places: int) -> float | int | None:
    if not math.isfinite(value):
        return None
    return round(value) if places == 0 else round(float(value), places)
