"""The Greeks calculator's arithmetic: a batch of contracts, each given a price (solve for the IV) or a
volatility (solve for the price), priced with one call of `implied_vol` and one of `greeks` for the
whole batch. No Django import; units as in `marketdata.analytics.black_scholes`, except that
volatilities come in and go out in percent points, as in the chain figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marketdata.analytics import black_scholes

# Why a price implies no volatility (black_scholes.implied_vol returns NaN exactly there).
IV_REASONS = {
    "expired": "The contract has expired: it is worth its intrinsic value, at any volatility.",
    "below_intrinsic": "The price is at or below the intrinsic value of the discounted forward: "
    "no volatility gives a price that low.",
    "above_upper_bound": "The price is at or above what any volatility gives (the discounted spot for a "
    "call, the discounted strike for a put).",
    "too_little_time_value": "The time value above intrinsic is too small to imply a volatility.",
}


@dataclass(frozen=True)
class ContractBatch:
    """One entry per contract. `price` is NaN where the volatility is given, and `volatility_pct`
    (percent points) NaN where the price is given; rates are continuous annual fractions; `years`
    is not positive for an expired contract (then worth its intrinsic value, as black_scholes says)."""

    spot: np.ndarray
    strike: np.ndarray
    years: np.ndarray
    rate: np.ndarray
    dividend_yield: np.ndarray
    is_call: np.ndarray
    price: np.ndarray
    volatility_pct: np.ndarray


def evaluate(batch: ContractBatch) -> list[dict]:
    """Per contract: what was solved for, the price, the IV (percent points; null with an `iv_reason`
    where none exists) and the Greeks at that IV (null without one). Non-finite results are null."""
    given_price = ~np.isnan(batch.price)
    implied = black_scholes.implied_vol(
        batch.price, batch.spot, batch.strike, batch.years, batch.rate, batch.is_call, batch.dividend_yield
    )
    sigma = np.where(given_price, implied, batch.volatility_pct / 100.0)
    values = black_scholes.greeks(
        batch.spot, batch.strike, batch.years, batch.rate, sigma, batch.is_call, batch.dividend_yield
    )
    price = np.where(given_price, batch.price, values.price)
    iv_pct = np.where(given_price, implied * 100.0, batch.volatility_pct)
    reasons = _no_iv_reasons(batch, given_price & np.isnan(implied))
    columns = {
        "price": _finite_or_none(price),
        "iv": _finite_or_none(iv_pct),
        "iv_reason": reasons,
        **{name: _finite_or_none(getattr(values, name)) for name in ("delta", "gamma", "theta", "vega", "rho")},
    }
    solved_for = np.where(given_price, "iv", "price").tolist()
    return [
        {"solved_for": solved, **{name: column[i] for name, column in columns.items()}}
        for i, solved in enumerate(solved_for)
    ]


def _no_iv_reasons(batch: ContractBatch, missing: np.ndarray) -> list[str | None]:
    """Expiry, then the bounds implied_vol checks: intrinsic of the discounted forward below, the
    discounted spot (calls) or strike (puts) above."""
    if not missing.any():
        return [None] * missing.size
    with np.errstate(all="ignore"):
        discounted_spot = batch.spot * np.exp(-batch.dividend_yield * batch.years)
        discounted_strike = batch.strike * np.exp(-batch.rate * batch.years)
        intrinsic = np.maximum(np.where(batch.is_call, 1.0, -1.0) * (discounted_spot - discounted_strike), 0.0)
        upper = np.where(batch.is_call, discounted_spot, discounted_strike)
    codes = np.select(
        [batch.years <= 0, batch.price <= intrinsic, batch.price >= upper],
        ["expired", "below_intrinsic", "above_upper_bound"],
        "too_little_time_value",
    )
    return [code if gone else None for code, gone in zip(codes.tolist(), missing.tolist(), strict=True)]


def _finite_or_none(values: np.ndarray) -> list[float | None]:
    finite = np.isfinite(values)
    return [value if ok else None for value, ok in zip(values.tolist(), finite.tolist(), strict=True)]
