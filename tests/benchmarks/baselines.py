"""Reference implementations the analytics benchmark measures ours against.

Written the way a competent developer would write them first, not slowed down on purpose:
- ``newton_bisection_implied_vol``: vectorised NumPy Newton on sigma from a Brenner-Subrahmanyam
  guess, falling back to a bisection step whenever Newton leaves the bracket or vega vanishes;
- ``plain_numpy_greeks``: the textbook closed forms, one array expression per Greek;
- ``vollib_implied_vol_loop`` / ``vollib_greeks_loop``: vollib (Jäckel's LetsBeRational) called once
  per option in a Python loop, which is how it is used on scalars.

Units everywhere match marketdata.analytics.black_scholes: theta per calendar day, vega per
volatility point (0.01), rho per rate point (0.01); vollib's analytical Greeks already use these.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr
from vollib.black_scholes_merton import black_scholes_merton
from vollib.black_scholes_merton.greeks import analytical
from vollib.black_scholes_merton.implied_volatility import implied_volatility

SQRT_2PI = math.sqrt(2.0 * math.pi)
NEWTON_MAX_ITERATIONS = 100
NEWTON_SIGMA_TOLERANCE = 1e-10
SIGMA_CEILING = 10.0


def newton_bisection_implied_vol(
    price: ArrayLike,
    S: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = 0.0,
) -> np.ndarray:
    """Implied volatility by safeguarded Newton; NaN where the price is outside the no-arbitrage band."""
    price, S, K, T, r, is_call, q = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (price, S, K, T, r)),
        np.asarray(is_call, dtype=bool),
        np.asarray(q, dtype=float),
    )
    omega = np.where(is_call, 1.0, -1.0)
    discounted_spot = S * np.exp(-q * T)
    discounted_strike = K * np.exp(-r * T)
    lower = np.maximum(omega * (discounted_spot - discounted_strike), 0.0)
    upper = np.where(is_call, discounted_spot, discounted_strike)
    valid = (T > 0) & (price > lower) & (price < upper)

    sqrt_t = np.sqrt(np.where(T > 0, T, 1.0))
    log_moneyness = np.log(S / K) + (r - q) * T
    # Brenner-Subrahmanyam's at-the-money guess, kept inside the bracket.
    sigma = np.clip(price / np.maximum(discounted_spot, 1e-300) * SQRT_2PI / sqrt_t, 1e-3, 5.0)
    low = np.zeros_like(sigma)
    high = np.full_like(sigma, SIGMA_CEILING)
    active = valid.copy()
    with np.errstate(all="ignore"):
        for _ in range(NEWTON_MAX_ITERATIONS):
            if not active.any():
                break
            vol_sqrt_t = sigma * sqrt_t
            d1 = log_moneyness / vol_sqrt_t + 0.5 * vol_sqrt_t
            d2 = d1 - vol_sqrt_t
            model = omega * (discounted_spot * ndtr(omega * d1) - discounted_strike * ndtr(omega * d2))
            vega = discounted_spot * np.exp(-0.5 * d1 * d1) / SQRT_2PI * sqrt_t
            difference = model - price
            low = np.where(difference < 0, sigma, low)
            high = np.where(difference > 0, sigma, high)
            newton = sigma - difference / vega
            outside = ~np.isfinite(newton) | (newton <= low) | (newton >= high)
            stepped = np.where(outside, 0.5 * (low + high), newton)
            converged = np.abs(stepped - sigma) < NEWTON_SIGMA_TOLERANCE
            sigma = np.where(active, stepped, sigma)
            active &= ~converged
    return np.where(valid, sigma, np.nan)


def plain_numpy_greeks(
    S: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = 0.0,
) -> dict[str, np.ndarray]:
    """Price and Greeks by the textbook formulas, each written as its own array expression."""
    S, K, T, r, sigma, q = (np.asarray(a, dtype=float) for a in (S, K, T, r, sigma, q))
    is_call = np.asarray(is_call, dtype=bool)
    sqrt_t = np.sqrt(T)
    d1 = (np.log(S / K) + (r - q + 0.5 * sigma**2) * T) / (sigma * sqrt_t)
    d2 = d1 - sigma * sqrt_t
    dividend_discount = np.exp(-q * T)
    rate_discount = np.exp(-r * T)
    density = np.exp(-0.5 * d1**2) / SQRT_2PI
    call_price = S * dividend_discount * ndtr(d1) - K * rate_discount * ndtr(d2)
    put_price = K * rate_discount * ndtr(-d2) - S * dividend_discount * ndtr(-d1)
    decay = -S * dividend_discount * density * sigma / (2 * sqrt_t)
    call_theta = decay + q * S * dividend_discount * ndtr(d1) - r * K * rate_discount * ndtr(d2)
    put_theta = decay - q * S * dividend_discount * ndtr(-d1) + r * K * rate_discount * ndtr(-d2)
    return {
        "price": np.where(is_call, call_price, put_price),
        "delta": np.where(is_call, dividend_discount * ndtr(d1), -dividend_discount * ndtr(-d1)),
        "gamma": dividend_discount * density / (S * sigma * sqrt_t),
        "theta": np.where(is_call, call_theta, put_theta) / 365.0,
        "vega": S * dividend_discount * density * sqrt_t * 0.01,
        "rho": np.where(is_call, K * T * rate_discount * ndtr(d2), -K * T * rate_discount * ndtr(-d2)) * 0.01,
    }


def vollib_implied_vol_loop(
    price: ArrayLike,
    S: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = 0.0,
) -> np.ndarray:
    """vollib's implied volatility one option at a time; NaN where vollib refuses the price."""
    arrays = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (price, S, K, T, r, q)), np.asarray(is_call, dtype=bool)
    )
    result = np.empty(arrays[0].shape)
    flat = result.reshape(-1)
    for index, (p, s, k, t, rate, dividend, call) in enumerate(
        zip(*(a.reshape(-1).tolist() for a in arrays), strict=True)
    ):
        try:
            flat[index] = implied_volatility(p, s, k, t, rate, dividend, "c" if call else "p")
        except Exception:  # vollib raises its own types for prices outside the band
            flat[index] = math.nan
    return result


def vollib_greeks_loop(
    S: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = 0.0,
) -> dict[str, np.ndarray]:
    """vollib's price and analytical Greeks one option at a time (same units as ours)."""
    arrays = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (S, K, T, r, sigma, q)), np.asarray(is_call, dtype=bool)
    )
    names = ("price", "delta", "gamma", "theta", "vega", "rho")
    columns: dict[str, list[float]] = {name: [] for name in names}
    for s, k, t, rate, vol, dividend, call in zip(*(a.reshape(-1).tolist() for a in arrays), strict=True):
        flag = "c" if call else "p"
        columns["price"].append(black_scholes_merton(flag, s, k, t, rate, vol, dividend))
        columns["delta"].append(analytical.delta(flag, s, k, t, rate, vol, dividend))
        columns["gamma"].append(analytical.gamma(flag, s, k, t, rate, vol, dividend))
        columns["theta"].append(analytical.theta(flag, s, k, t, rate, vol, dividend))
        columns["vega"].append(analytical.vega(flag, s, k, t, rate, vol, dividend))
        columns["rho"].append(analytical.rho(flag, s, k, t, rate, vol, dividend))
    shape = arrays[0].shape
    return {name: np.array(values, dtype=float).reshape(shape) for name, values in columns.items()}
