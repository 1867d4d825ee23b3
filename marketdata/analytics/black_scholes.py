"""Black-Scholes-Merton pricing of European options on NumPy arrays.

Conventions (the same for every function in this module):

- ``T`` is time to expiry in years on the calendar, ACT/365: seconds to expiry / (365 * 86_400).
  NSE and BSE index options expire at 15:30 IST on the expiry date, so count to then, not to midnight.
- ``r`` (risk-free rate) and ``q`` (dividend or carry yield) are continuously compounded annual
  rates. Convert a quoted annual rate first: ``r = log1p(quoted)``.
- ``q`` is what makes this Black-Scholes-Merton rather than Black-Scholes. Black-76 on a future
  (or on a forward implied from the futures price) is this model with ``S = F`` and ``q = r``.
- ``sigma`` is annualised volatility as a fraction (0.13 is 13 %).
- Prices are per unit of the underlying, in the currency of ``S`` and ``K``; a lot is lot size times.

Every argument may be a scalar or an array; together they broadcast the NumPy way and the result
has the broadcast shape (a 0-d array when every argument is a scalar). Arguments whose shapes do not
broadcast raise ``ValueError`` naming them. ``is_call`` is a boolean (True for a call, False for a
put). Edge cases, entry by entry:

- ``T <= 0``: the option has expired and is worth its intrinsic value, ``max(S - K, 0)`` for a call
  and ``max(K - S, 0)`` for a put (undiscounted: it is paid now).
- ``sigma <= 0`` (with ``T > 0``): the future is certain, so the value is the discounted intrinsic
  value of the forward ``F = S e^{(r-q)T}``: ``e^{-rT} max(F - K, 0)``, or ``max(K - F, 0)`` for puts.
- A NaN in any argument makes that entry NaN and leaves its neighbours alone.

The private helpers (``_broadcast_arguments``, ``_d1_d2``) are shared with the Greeks and implied
volatility, so that all of them agree on conventions, broadcasting and edge cases.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr


class _Arguments(NamedTuple):
    """The model's arguments as float arrays (``is_call`` bool) that broadcast together to
    ``shape``. They are not materialised at that shape (scalars stay 0-d, which is much faster on
    the simulator's and the feed's hot paths): use ``np.broadcast_arrays`` before indexing them."""

    S: np.ndarray
    K: np.ndarray
    T: np.ndarray
    r: np.ndarray
    sigma: np.ndarray
    is_call: np.ndarray
    q: np.ndarray
    shape: tuple[int, ...]

    def any_nan(self) -> np.ndarray:
        market = np.isnan(self.S) | np.isnan(self.K) | np.isnan(self.T)
        return market | np.isnan(self.r) | np.isnan(self.sigma) | np.isnan(self.q)


def price(
    S: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = 0.0,
) -> np.ndarray:
    """Black-Scholes-Merton value of European calls (``is_call`` True) and puts (False).

    ``S`` spot, ``K`` strike, ``T`` years to expiry (ACT/365), ``r`` and ``q`` continuous annual
    rate and yield, ``sigma`` annual volatility. See the module docstring for the edge cases.
    """
    args = _broadcast_arguments("price", S=S, K=K, T=T, r=r, sigma=sigma, is_call=is_call, q=q)
    # +1 for calls, -1 for puts: one formula, omega * (S e^{-qT} N(omega d1) - K e^{-rT} N(omega d2)).
    omega = np.where(args.is_call, 1.0, -1.0)
    with np.errstate(all="ignore"):  # expired, zero-volatility and NaN entries are replaced below
        discounted_spot = args.S * np.exp(-args.q * args.T)
        discounted_strike = args.K * np.exp(-args.r * args.T)
        d1, d2 = _d1_d2(args)
        model = omega * (discounted_spot * ndtr(omega * d1) - discounted_strike * ndtr(omega * d2))
        forward_intrinsic = np.maximum(omega * (discounted_spot - discounted_strike), 0.0)
        expiry_intrinsic = np.maximum(omega * (args.S - args.K), 0.0)
    value = np.where(args.T <= 0, expiry_intrinsic, np.where(args.sigma <= 0, forward_intrinsic, model))
    return _full_shape(np.where(args.any_nan(), np.nan, value), args.shape)


def _d1_d2(args: _Arguments) -> tuple[np.ndarray, np.ndarray]:
    """BSM's d1 and d2. Meaningful only where ``T > 0`` and ``sigma > 0``: callers mask the rest
    (and call this under ``np.errstate(all="ignore")``)."""
    vol_sqrt_t = args.sigma * np.sqrt(args.T)
    d1 = (np.log(args.S / args.K) + (args.r - args.q + 0.5 * args.sigma**2) * args.T) / vol_sqrt_t
    return d1, d1 - vol_sqrt_t


def _broadcast_arguments(function: str, **arguments: ArrayLike) -> _Arguments:
    """The arguments as arrays that broadcast together; a mismatch raises ValueError naming them."""
    arrays = {name: np.asarray(value, dtype=None if name == "is_call" else float) for name, value in arguments.items()}
    if arrays["is_call"].dtype.kind not in "biu":
        raise TypeError(f"{function}: is_call must be boolean (True for calls), got dtype {arrays['is_call'].dtype}")
    arrays["is_call"] = arrays["is_call"].astype(bool, copy=False)
    try:
        shape = np.broadcast_shapes(*(array.shape for array in arrays.values()))
    except ValueError:
        raise ValueError(f"{function}: {_mismatch(arrays)}") from None
    return _Arguments(**arrays, shape=shape)


def _full_shape(result: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Every argument takes part in the result, so it has the broadcast shape already; make sure."""
    return result if result.shape == shape else np.broadcast_to(result, shape).copy()


def _mismatch(arrays: dict[str, np.ndarray]) -> str:
    """Which arguments' shapes cannot broadcast together, e.g. "S shape (3,) and K shape (4,) ..."."""
    names = list(arrays)
    clashes = []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            try:
                np.broadcast_shapes(arrays[first].shape, arrays[second].shape)
            except ValueError:
                clashes.append(f"{first} shape {arrays[first].shape} and {second} shape {arrays[second].shape}")
    # Shapes that broadcast pairwise broadcast together, so at least one pair clashes.
    return "arguments do not broadcast together: " + "; ".join(clashes)
