"""Black-Scholes-Merton prices, Greeks and implied volatility of European options on NumPy arrays.

Three functions: ``price``, ``greeks`` (returning a ``Greeks`` named tuple of arrays) and
``implied_vol``. Conventions, the same for all of them:

- ``T`` is time to expiry in years on the calendar, ACT/365: seconds to expiry / (365 * 86_400).
  NSE and BSE index options expire at 15:30 IST on the expiry date, so count to then, not to midnight.
- ``r`` (risk-free rate) and ``q`` (dividend or carry yield) are continuously compounded annual
  rates. Convert a quoted annual rate first: ``r = log1p(quoted)``.
- ``q`` is what makes this Black-Scholes-Merton rather than Black-Scholes. Black-76 on a future
  (or on a forward implied from the futures price) is this model with ``S = F`` and ``q = r``.
- ``sigma`` is annualised volatility as a fraction (0.13 is 13 %).
- Prices are per unit of the underlying, in the currency of ``S`` and ``K``; a lot is lot size times.
- ``is_call`` is a boolean: True for a call (CE), False for a put (PE).

Greeks, per unit of the underlying like the price, with A = S e^{-qT} and B = K e^{-rT}:

- ``delta``: dV/dS, per 1 unit (₹1) move of the spot. Calls lie in [0, e^{-qT}], puts in
  [-e^{-qT}, 0], and a call's delta minus the put's is e^{-qT}.
- ``gamma``: d2V/dS2, the change in delta per 1 unit move of the spot; the same for calls and puts.
- ``theta``: the change in value per calendar day that passes with the spot, rates and volatility
  held: -dV/dT / 365 (QuantLib's BlackCalculator.theta / 365). Usually negative; a deep
  in-the-money put (or call with q > 0) can gain with time.
- ``vega``: dV/dsigma / 100, the change in value per volatility point (sigma + 0.01).
- ``rho``: dV/dr / 100, the change in value per rate point (r + 0.01) with the spot and ``q`` held,
  so the forward moves with r (QuantLib's BlackCalculator.rho / 100). For Black-76 (S = F, q = r)
  the rho that holds the future instead is -T * price / 100.

Every argument may be a scalar or an array; together they broadcast the NumPy way and the result
has the broadcast shape (a 0-d array when every argument is a scalar). Arguments whose shapes do not
broadcast raise ``ValueError`` naming them. Edge cases, entry by entry (a bad entry never raises
and never affects its neighbours):

- ``T <= 0``: the option has expired and is worth its intrinsic value, ``max(S - K, 0)`` for a call
  and ``max(K - S, 0)`` for a put (undiscounted: it is paid now). Its delta is 1 for a call with
  S > K, -1 for a put with S < K, otherwise 0 (at the money too); gamma, theta, vega and rho are 0.
- ``sigma <= 0`` (with ``T > 0``): the future is certain, so the value is the discounted intrinsic
  value of the forward ``F = S e^{(r-q)T}``: ``e^{-rT} max(F - K, 0)``, or ``max(K - F, 0)`` for puts.
  The Greeks are their limits as sigma falls to 0: where the forward is strictly in the money,
  delta ±e^{-qT}, theta ±(qA - rB) / 365 and rho ±T B / 100 (+ calls, - puts); elsewhere 0.
  Gamma and vega are 0 (at F = K exactly their limits do not exist).
- A NaN in any argument makes that entry NaN.

``implied_vol(price, ...)`` inverts ``price`` for sigma. It is NaN wherever no volatility
reproduces the price: ``T <= 0``, ``S <= 0`` or ``K <= 0``, a price at or below the lower bound
(the intrinsic value of the discounted forward, ``max(A - B, 0)`` for calls and ``max(B - A, 0)``
for puts, so any non-positive price too, and any price whose time value is below its last digit),
at or above the upper bound (``A`` for calls, ``B`` for puts), or a NaN argument. Elsewhere the
solver converges to the last digits of the normalised volatility; what limits sigma is how much
the price says about it, |d sigma| ~ |d price| / (dV/dsigma): to 1e-10 wherever the time value
is a 0.05 tick or more, while a deep in-the-money price keeps only the digits of its time value
that survive next to the intrinsic value.

Accuracy (tests/test_black_scholes_greeks.py, tests/test_implied_vol.py): price and Greeks agree
with QuantLib to 1e-10 relative or 1e-12 absolute per 100 of spot, and far out of the money keep
their relative accuracy where QuantLib's does not; implied_vol recovers sigma to 1e-10 on a grid
of 1 % to 300 % vol, an hour to two years, strikes at half to twice the spot.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr

from marketdata.analytics import _lets_be_rational

DAYS_PER_YEAR = 365.0
VOLATILITY_POINT = 0.01
RATE_POINT = 0.01

# Long arrays go through in blocks, which bounds the workspace (greeks: 9 rows of a block, 2.3 MiB;
# implied_vol: 29 rows, 3.6 MiB) and keeps it in cache; greeks measured fastest from 32768 to 65536.
_GREEKS_BLOCK = 32768
_IMPLIED_VOL_BLOCK = 16384

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_INV_SQRT_2PI = 1.0 / _SQRT_2PI
# ufunc operands: a Python float costs NumPy a conversion on every call, a 0-d array does not.
_ONE, _TWO, _HALF, _MINUS_HALF = np.array(1.0), np.array(2.0), np.array(0.5), np.array(-0.5)


class Greeks(NamedTuple):
    """Value and sensitivities of each option, arrays of the broadcast shape (units: module docstring)."""

    price: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    theta: np.ndarray
    vega: np.ndarray
    rho: np.ndarray


class _Arguments(NamedTuple):
    """The model's arguments as float arrays (``is_call`` bool) that broadcast together to
    ``shape``. They are not materialised at that shape (scalars stay 0-d, which is much faster on
    the simulator's and the feed's hot paths): use ``np.broadcast_to`` before indexing them."""

    S: np.ndarray
    K: np.ndarray
    T: np.ndarray
    r: np.ndarray
    sigma: np.ndarray
    is_call: np.ndarray
    q: np.ndarray
    shape: tuple[int, ...]


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
    with np.errstate(all="ignore"):  # expired, zero-volatility and NaN entries are replaced below
        # The formula of _greeks_block, so that price() agrees with greeks().price.
        omega = np.where(args.is_call, 1.0, -1.0)
        signed_vol = omega * (args.sigma * np.sqrt(args.T))
        spot = args.S * np.exp(-args.q * args.T)
        strike = args.K * np.exp(-args.r * args.T)
        omega_d1, omega_d2 = _signed_d1_d2(spot, strike, signed_vol)
        value = np.array(omega * (spot * ndtr(omega_d1) - strike * ndtr(omega_d2)), dtype=float)
        value = _full_shape(value, args.shape)
        irregular = _irregular(args)
        if irregular is not None:
            flat = [_flat(array, args.shape) for array in args[:7]]
            value.reshape(-1)[irregular] = _edge_greeks(flat, irregular).price
    return value


def greeks(
    S: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = 0.0,
) -> Greeks:
    """Black-Scholes-Merton price, delta, gamma, theta (per day), vega and rho (per point).

    Arguments as for ``price``; units and edge cases in the module docstring. The six arrays are new
    on every call, rows of one allocation: keeping any of them keeps the memory of all six.
    """
    args = _broadcast_arguments("greeks", S=S, K=K, T=T, r=r, sigma=sigma, is_call=is_call, q=q)
    size = math.prod(args.shape)
    flat = [_flat(array, args.shape) for array in args[:7]]
    # One block for the six outputs: a single allocation faults its pages in about half the time
    # six do (~4 ns an option on a million). Each Greek is a fresh view of it.
    values = np.empty((len(Greeks._fields), size))
    # Intermediates live in one reused workspace: fresh temporaries per block would cost page
    # faults as well as allocations.
    block_size = min(size, _GREEKS_BLOCK)
    work, pairs = np.empty((_GREEKS_WORK_ROWS, block_size)), np.empty((2, block_size, 2))
    regular = True
    with np.errstate(all="ignore"):  # expired, zero-volatility and NaN entries are replaced below
        for start in range(0, size, _GREEKS_BLOCK):
            count = min(size - start, _GREEKS_BLOCK)
            block = slice(start, start + count)
            arguments = flat if count == size else [a if a.ndim == 0 else a[block] for a in flat]
            outputs = Greeks(*(values if count == size else values[:, block]))
            _greeks_block(*arguments, outputs, work[:, :count], pairs[:, :count])
            # Checked while the block is in cache; the minimum is NaN if any entry is.
            regular = regular and _all_positive(arguments[2]) and _all_positive(arguments[4])
        irregular = None if regular else _irregular(args)
        if irregular is not None:
            for row, edge in zip(values, _edge_greeks(flat, irregular), strict=True):
                row[irregular] = edge
    if values.shape[1:] == args.shape:
        return Greeks(*values)
    return Greeks(*(row.reshape(args.shape) for row in values))


def _all_positive(array: np.ndarray) -> bool:
    return bool((array if array.ndim == 0 else np.minimum.reduce(array, axis=None)) > 0)


def implied_vol(
    price: ArrayLike,
    S: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = 0.0,
) -> np.ndarray:
    """The annual volatility at which ``price`` (per unit, as ``price()`` returns) is the model value.

    NaN where no volatility exists (see the module docstring). Jäckel's "Let's Be Rational" method
    (Wilmott 2015): out-of-the-money normalised form, a rational initial guess on four segments, and
    on objectives transformed to be nearly linear a third-order Householder step, then Halley's, two
    steps being enough to reach machine precision; a bracket with bisection guards the rare
    stragglers. The solver is ``_lets_be_rational``.
    """
    arrays, shape = _broadcast("implied_vol", price=price, S=S, K=K, T=T, r=r, is_call=is_call, q=q)
    return _lets_be_rational.implied_vol(*arrays.values(), shape=shape, block=_IMPLIED_VOL_BLOCK)


_GREEKS_WORK_ROWS = 5


def _greeks_block(S, K, T, r, sigma, is_call, q, out: Greeks, work: np.ndarray, pairs: np.ndarray) -> None:
    """Price and Greeks of one block of entries with T > 0 and sigma > 0, written into ``out``.

    Arguments are 0-d arrays or blocks of flat values; ``work`` has a row per intermediate, and
    the outputs hold some before their own values. What depends on scalars alone (an expiry's
    discount factors, on a chain) is computed once; with q = 0 (a spot) S e^{-qT} is S.

    ``pairs`` holds (omega d1, omega d2) and then their N side by side, for one ndtr call: N
    branches on its argument, and d2 is close to d1, so interleaved the branch predictor guesses
    d2's way from d1's (6 ns an option less on random contracts than two calls)."""
    omega, vol, signed_vol, strike, density = work
    value, delta, gamma, theta, vega, rho = out
    arguments, cdfs = pairs
    sqrt_t = np.sqrt(T)
    np.multiply(is_call, _TWO, omega)
    np.subtract(omega, _ONE, omega)  # +1 for calls, -1 for puts
    np.multiply(sigma, sqrt_t, vol)
    np.multiply(vol, omega, signed_vol)
    without_carry = q.ndim == 0 and q == 0
    dividend_discount = None if without_carry else np.exp(-q * T)
    spot = S if without_carry else S * dividend_discount
    np.multiply(K, np.exp(-r * T), strike)
    omega_d1, omega_d2 = density, rho
    _signed_d1_d2(spot, strike, signed_vol, out=(omega_d1, omega_d2))
    # Copied in rather than computed in place: strided arithmetic costs more than the copies.
    first, second = arguments.T
    np.copyto(first, omega_d1)
    np.copyto(second, omega_d2)
    ndtr(arguments, cdfs)
    cdf1, cdf2 = cdfs.T
    np.multiply(cdf1, omega, delta)  # omega N(omega d1)
    np.multiply(delta, spot, value)  # omega S e^{-qT} N(omega d1), the spot leg
    strike_leg = rho
    np.multiply(cdf2, strike, strike_leg)
    np.multiply(strike_leg, omega, strike_leg)  # omega K e^{-rT} N(omega d2)
    if not without_carry:
        np.multiply(value, q / DAYS_PER_YEAR, theta)  # the carry term of theta, before value is
        np.multiply(delta, dividend_discount, delta)
    np.subtract(value, strike_leg, value)
    # S e^{-qT} exp(-d1^2 / 2), the normal density of d1 times sqrt(2 pi) S e^{-qT}; the Greeks that
    # need it fold 1 / sqrt(2 pi) into their scalar factors.
    np.multiply(omega_d1, omega_d1, density)  # in place of omega d1
    np.multiply(density, _MINUS_HALF, density)
    np.exp(density, density)
    np.multiply(density, spot, density)
    np.multiply(vol, S * S * _SQRT_2PI, gamma)
    np.divide(density, gamma, gamma)
    np.multiply(density, sqrt_t * (_INV_SQRT_2PI * VOLATILITY_POINT), vega)
    # -dV/dT = omega (q S e^{-qT} N(omega d1) - r K e^{-rT} N(omega d2)) - S e^{-qT} phi(d1) sigma / (2 sqrt T)
    decay = density
    np.multiply(density, sigma, decay)
    np.multiply(decay, (-0.5 * _INV_SQRT_2PI / DAYS_PER_YEAR) / sqrt_t, decay)
    if without_carry:
        np.multiply(strike_leg, r / DAYS_PER_YEAR, theta)
        np.subtract(decay, theta, theta)
    else:
        np.add(theta, decay, theta)
        np.multiply(strike_leg, r / DAYS_PER_YEAR, decay)
        np.subtract(theta, decay, theta)
    np.multiply(strike_leg, T * RATE_POINT, rho)


def _signed_d1_d2(spot, strike, signed_vol, out=None) -> tuple[np.ndarray, np.ndarray]:
    """omega d1 and omega d2 from S e^{-qT}, K e^{-rT} and omega sigma sqrt(T) (omega = +1 for calls,
    -1 for puts: the arguments of N in the price). Meaningful only where T > 0 and sigma > 0:
    callers mask the rest (and call this under ``np.errstate(all="ignore")``)."""
    if out is None:
        omega_d1 = np.log(spot / strike) / signed_vol + 0.5 * signed_vol
        return omega_d1, omega_d1 - signed_vol
    omega_d1, omega_d2 = out
    np.divide(spot, strike, omega_d1)
    np.log(omega_d1, omega_d1)
    np.divide(omega_d1, signed_vol, omega_d1)
    np.multiply(signed_vol, _HALF, omega_d2)
    np.add(omega_d1, omega_d2, omega_d1)
    np.subtract(omega_d1, signed_vol, omega_d2)
    return omega_d1, omega_d2


def _irregular(args: _Arguments) -> np.ndarray | None:
    """The flat indices where the model formula does not apply (expired, no volatility, NaN T or
    sigma); None when it applies everywhere, the common case, checked cheaply."""
    regular = (args.T > 0) & (args.sigma > 0)
    if regular.ndim == 0:
        return None if regular else np.arange(math.prod(args.shape))
    if np.count_nonzero(regular) == regular.size:
        return None
    return np.flatnonzero(~np.broadcast_to(regular, args.shape))


def _edge_greeks(flat: list[np.ndarray], where: np.ndarray) -> Greeks:
    """Price and Greeks of the irregular entries at flat indices ``where`` (module docstring);
    ``flat`` holds the arguments as ``_flat`` returns them."""
    S, K, T, r, sigma, is_call, q = (a if a.ndim == 0 else a[where] for a in flat)
    omega = np.where(is_call, 1.0, -1.0)
    dividend_discount = np.exp(-q * T)
    discounted_spot, discounted_strike = S * dividend_discount, K * np.exp(-r * T)
    expired = T <= 0
    # Expired: paid now on the spot; otherwise the certain forward, paid at expiry.
    payoff = omega * np.where(expired, S - K, discounted_spot - discounted_strike)
    in_the_money = payoff > 0
    live_itm = in_the_money & ~expired
    nan = np.isnan(S + K + T + r + sigma + q)
    zeros = np.where(nan, np.nan, np.zeros(np.shape(payoff)))
    value = np.where(nan, np.nan, np.maximum(payoff, 0.0))
    delta = zeros + np.where(in_the_money, omega * np.where(expired, 1.0, dividend_discount), 0.0)
    theta = zeros + np.where(live_itm, omega * (q * discounted_spot - r * discounted_strike) / DAYS_PER_YEAR, 0.0)
    rho = zeros + np.where(live_itm, omega * T * discounted_strike * RATE_POINT, 0.0)
    return Greeks(value, delta, zeros, theta, zeros, rho)


def _broadcast(function: str, **arguments: ArrayLike) -> tuple[dict[str, np.ndarray], tuple[int, ...]]:
    """The arguments as arrays that broadcast together; a mismatch raises ValueError naming them."""
    arrays = {name: np.asarray(value, dtype=None if name == "is_call" else float) for name, value in arguments.items()}
    if arrays["is_call"].dtype.kind not in "biu":
        raise TypeError(f"{function}: is_call must be boolean (True for calls), got dtype {arrays['is_call'].dtype}")
    arrays["is_call"] = arrays["is_call"].astype(bool, copy=False)
    shapes = {array.shape for array in arrays.values()} - {()}
    if len(shapes) <= 1:  # scalars and arrays of one shape, the common case, decided cheaply
        return arrays, shapes.pop() if shapes else ()
    try:
        shape = np.broadcast(*arrays.values()).shape
    except ValueError:
        raise ValueError(f"{function}: {_mismatch(arrays)}") from None
    return arrays, shape


def _broadcast_arguments(function: str, **arguments: ArrayLike) -> _Arguments:
    arrays, shape = _broadcast(function, **arguments)
    return _Arguments(**arrays, shape=shape)


def _flat(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A 0-d array as it is (it broadcasts), anything else as flat values of the broadcast shape."""
    if array.ndim == 0 or (array.ndim == 1 and array.shape == shape):
        return array
    return array.reshape(-1) if array.shape == shape else np.broadcast_to(array, shape).reshape(-1)


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
