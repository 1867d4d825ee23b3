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
from scipy.special import ndtr, ndtri

DAYS_PER_YEAR = 365.0
VOLATILITY_POINT = 0.01
RATE_POINT = 0.01

# Long arrays go through in blocks, so that a block's intermediates stay in cache (greeks: 9 work
# rows and 6 outputs of 64 KiB) and implied_vol's working set (26 rows) stays a few MiB.
_GREEKS_BLOCK = 8192
_IMPLIED_VOL_BLOCK = 16384

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_INV_SQRT_2PI = 1.0 / _SQRT_2PI
_SQRT_PI_OVER_2 = math.sqrt(math.pi / 2.0)
_SQRT_3 = math.sqrt(3.0)
_TWO_PI_OVER_SQRT_27 = 2.0 * math.pi / math.sqrt(27.0)
_EPSILON = np.finfo(float).eps


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

    Arguments as for ``price``; units and edge cases in the module docstring.
    """
    args = _broadcast_arguments("greeks", S=S, K=K, T=T, r=r, sigma=sigma, is_call=is_call, q=q)
    size = math.prod(args.shape)
    flat = [_flat(array, args.shape) for array in args[:7]]
    result = Greeks(*(np.empty(size) for _ in Greeks._fields))
    # Intermediates live in one reused workspace: fresh temporaries per block would cost page
    # faults as well as allocations.
    work = np.empty((_GREEKS_WORK_ROWS, min(size, _GREEKS_BLOCK)))
    with np.errstate(all="ignore"):  # expired, zero-volatility and NaN entries are replaced below
        for start in range(0, size, _GREEKS_BLOCK):
            block = slice(start, start + _GREEKS_BLOCK)
            rows = work[:, : min(size - start, _GREEKS_BLOCK)]
            arguments = (a if a.ndim == 0 else a[block] for a in flat)
            _greeks_block(*arguments, out=Greeks(*(g[block] for g in result)), work=rows)
        irregular = _irregular(args)
        if irregular is not None:
            for values, edge in zip(result, _edge_greeks(flat, irregular), strict=True):
                values[irregular] = edge
    return Greeks(*(g.reshape(args.shape) for g in result))


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
    third-order Householder steps on objectives transformed to be nearly linear, two steps being
    enough to reach machine precision; a bracket with bisection guards the rare stragglers.
    """
    arrays, shape = _broadcast("implied_vol", price=price, S=S, K=K, T=T, r=r, is_call=is_call, q=q)
    premium, spot, strike, expiry, rate, call, dividend = arrays.values()
    with np.errstate(all="ignore"):  # unsolvable entries are masked out, and NaN compares False
        discounted_spot = spot * np.exp(-dividend * expiry)
        discounted_strike = strike * np.exp(-rate * expiry)
        call_minus_put = discounted_spot - discounted_strike
        time_value = premium - np.maximum(np.where(call, call_minus_put, -call_minus_put), 0.0)
        ceiling = np.where(call, discounted_spot, discounted_strike)
        # By put-call parity the out-of-the-money member of the pair has price time_value; solving
        # for it keeps every digit of a small time value instead of subtracting a large intrinsic.
        x = -np.abs(np.log(discounted_spot / discounted_strike))
        beta = time_value / np.sqrt(discounted_spot * discounted_strike)
        # S <= 0 or K <= 0 makes x or beta NaN or infinite, which fails the last test.
        solvable = (time_value > 0) & (premium < ceiling) & (expiry > 0) & (beta < np.exp(0.5 * x))
        size = math.prod(shape)
        solvable = _flat(solvable, shape) if solvable.ndim else np.full(size, bool(solvable))
        every = np.count_nonzero(solvable) == size
        chosen = slice(None) if every else np.flatnonzero(solvable)
        expiry, x, beta = (a if a.ndim == 0 else _flat(a, shape)[chosen] for a in (expiry, x, beta))
        count = size if every else chosen.size
        x, beta = (np.full(count, a) if a.ndim == 0 else a for a in (x, beta))
        normalised = np.empty(x.size)
        for start in range(0, x.size, _IMPLIED_VOL_BLOCK):
            block = slice(start, start + _IMPLIED_VOL_BLOCK)
            normalised[block] = _normalised_vol(x[block], beta[block])
        sigma = normalised / np.sqrt(expiry)
    if every:
        return sigma.reshape(shape)
    result = np.full(size, np.nan)
    result[chosen] = sigma
    return result.reshape(shape)


_GREEKS_WORK_ROWS = 9


def _greeks_block(S, K, T, r, sigma, is_call, q, out: Greeks, work: np.ndarray) -> None:
    """Price and Greeks of one block of entries with T > 0 and sigma > 0, written into ``out``.

    Arguments are 0-d arrays or blocks of flat values; ``work`` has a row per intermediate. What
    depends on scalars alone (an expiry's discount factors, on a chain) is computed once."""
    omega, signed_vol, spot, strike, omega_d1, omega_d2, cdf1, spot_leg, strike_leg = work
    value, delta, gamma, theta, vega, rho = out
    sqrt_t = np.sqrt(T)
    dividend_discount = np.exp(-q * T)
    np.multiply(is_call, 2.0, out=omega)
    omega -= 1.0  # +1 for calls, -1 for puts
    np.multiply(sigma, sqrt_t, out=signed_vol)
    signed_vol *= omega
    np.multiply(S, dividend_discount, out=spot)
    np.multiply(K, np.exp(-r * T), out=strike)
    _signed_d1_d2(spot, strike, signed_vol, out=(omega_d1, omega_d2))
    ndtr(omega_d1, out=cdf1)
    np.multiply(spot, cdf1, out=spot_leg)
    spot_leg *= omega  # omega S e^{-qT} N(omega d1)
    ndtr(omega_d2, out=strike_leg)
    strike_leg *= strike
    strike_leg *= omega  # omega K e^{-rT} N(omega d2)
    np.subtract(spot_leg, strike_leg, out=value)
    np.multiply(omega, dividend_discount, out=delta)
    delta *= cdf1
    # S e^{-qT} exp(-d1^2 / 2), the normal density of d1 times sqrt(2 pi) S e^{-qT}; the Greeks that
    # need it fold 1 / sqrt(2 pi) into their scalar factors.
    density = omega_d2
    np.multiply(omega_d1, omega_d1, out=density)
    density *= -0.5
    np.exp(density, out=density)
    density *= spot
    np.multiply(signed_vol, omega, out=gamma)
    gamma *= S * S * _SQRT_2PI
    np.divide(density, gamma, out=gamma)
    np.multiply(density, sqrt_t * (_INV_SQRT_2PI * VOLATILITY_POINT), out=vega)
    # -dV/dT = omega (q S e^{-qT} N(omega d1) - r K e^{-rT} N(omega d2)) - S e^{-qT} phi(d1) sigma / (2 sqrt T)
    np.multiply(sigma, density, out=theta)
    theta *= (-0.5 * _INV_SQRT_2PI / DAYS_PER_YEAR) / sqrt_t
    carry = omega_d1
    if q.ndim or q != 0:
        np.multiply(spot_leg, q / DAYS_PER_YEAR, out=carry)
        theta += carry
    np.multiply(strike_leg, r / DAYS_PER_YEAR, out=carry)
    theta -= carry
    np.multiply(strike_leg, T * RATE_POINT, out=rho)


def _signed_d1_d2(spot, strike, signed_vol, out=None) -> tuple[np.ndarray, np.ndarray]:
    """omega d1 and omega d2 from S e^{-qT}, K e^{-rT} and omega sigma sqrt(T) (omega = +1 for calls,
    -1 for puts: the arguments of N in the price). Meaningful only where T > 0 and sigma > 0:
    callers mask the rest (and call this under ``np.errstate(all="ignore")``)."""
    if out is None:
        omega_d1 = np.log(spot / strike) / signed_vol + 0.5 * signed_vol
        return omega_d1, omega_d1 - signed_vol
    omega_d1, omega_d2 = out
    np.divide(spot, strike, out=omega_d1)
    np.log(omega_d1, out=omega_d1)
    omega_d1 /= signed_vol
    np.multiply(signed_vol, 0.5, out=omega_d2)
    omega_d1 += omega_d2
    np.subtract(omega_d1, signed_vol, out=omega_d2)
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


# Implied volatility, after Peter Jäckel, "Let's Be Rational", Wilmott (2015) 2015(75), 40-53, and
# his reference implementation (www.jaeckel.org/LetsBeRational.7z; "Copyright © 2013-2014 Peter
# Jäckel. Permission to use, copy, modify, and distribute this software is freely granted, provided
# that this notice is preserved."), rewritten here to run on arrays. In normalised form an option is
# x = ln(F/K) and s = sigma sqrt(T), with the out-of-the-money call's undiscounted price divided by
# sqrt(F K): b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2), x <= 0, 0 < b < e^{x/2}.


def _normalised_vol(x: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """The s with b(x, s) = beta, for x <= 0 and 0 < beta < e^{x/2} (flat arrays)."""
    b_max = np.exp(0.5 * x)
    # b is convex in s below s_c = sqrt(2|x|) and concave above; its tangents there cut the floor
    # and ceiling at s_low and s_high, splitting beta's range into four segments, each with its guess.
    s_c = np.sqrt(-2.0 * x)
    b_c = 0.5 * b_max - ndtr(-s_c) / b_max
    below_inflection = beta < b_c
    s_outer = s_c + np.where(below_inflection, -b_c, b_max - b_c) / (_INV_SQRT_2PI * b_max)
    b_outer = _normalised_black(x, s_outer, b_max)
    lower = below_inflection & (beta < b_outer)
    upper = (beta > b_outer) & ~below_inflection
    upper_far = upper & (beta > 0.5 * b_max)  # close enough to the ceiling to iterate on ln(b_max - b)
    segments = [np.flatnonzero(lower), np.flatnonzero(~(lower | upper)), np.flatnonzero(upper ^ upper_far)]
    segments.append(np.flatnonzero(upper_far))
    # Contiguous segments let each guess and objective run on a slice instead of a masked copy.
    order = np.concatenate(segments)
    # One block holds every full-length intermediate of the solve, reused by the steps; besides
    # the allocations this saves, one large block freed per call keeps glibc from trimming and
    # re-faulting the heap under the remaining temporaries (which cost ~40 % on 10,000 options).
    work = np.empty((_WORK_ROWS, x.size))
    ordered, guess_rows, step_rows = work[:7], work[7:17], work[17:]
    for source, row in zip((x, beta, b_max, s_c, b_c, s_outer, b_outer), ordered, strict=True):
        np.take(source, order, out=row)
    x, beta, b_max, s_c, b_c, s_outer, b_outer = ordered
    below_inflection = below_inflection.take(order)
    n_lower, n_middle, n_upper_near = (len(segment) for segment in segments[:3])

    s, s_left, s_right = _initial_guess(
        x, beta, b_max, s_c, b_c, s_outer, b_outer, below_inflection, n_lower, n_middle, guess_rows
    )
    bad_guess = ~((s > s_left) & (s < s_right))
    if np.count_nonzero(bad_guess):
        s[bad_guess] = _bisection(s_left, s_right)[bad_guess]

    objectives = _Objectives(n_lower, n_lower + n_middle + n_upper_near, beta, b_max)
    solved = np.empty_like(x)
    position = np.arange(x.size)
    for iteration in range(_MAX_ITERATIONS):
        straggling = iteration >= 2
        s, step, inside = _householder_step(
            x, s, s_left, s_right, objectives, step_rows, straggling, iteration % 3 == 2
        )
        if iteration == 0:
            continue  # nothing converges in one step from the guess: do not pay for the test
        converged = inside & (np.abs(step) <= _CONVERGED_STEP * s)
        if straggling:
            converged |= s_right - s_left <= 4.0 * _EPSILON * s
        solved[position] = s
        if np.count_nonzero(converged) == converged.size:
            break
        # The stragglers keep their order, so each objective's entries stay contiguous.
        keep = ~converged
        position, x, s, s_left, s_right = (a[keep] for a in (position, x, s, s_left, s_right))
        objectives = objectives.compacted(keep)
    result = np.empty_like(solved)
    result[order] = solved
    return result


_MAX_ITERATIONS = 64
# A step below this (relative) leaves an error of order its fourth power: machine precision and beyond.
_CONVERGED_STEP = 1e-6
_WORK_ROWS = 7 + 10 + 9  # ordered inputs, initial guess, Householder steps


class _Objectives:
    """Which entries iterate on which objective: [0, lower_end) on 1/ln b (deep out of the money),
    [lower_end, direct_end) on b itself, [direct_end, n) on ln(b_max - b) (near the ceiling); and
    what the steps need of beta and b_max, computed once."""

    def __init__(self, lower_end: int, direct_end: int, beta: np.ndarray, b_max: np.ndarray) -> None:
        self.lower_end, self.direct_end = lower_end, direct_end
        self.beta, self.b_max = beta, b_max
        self.vega_scale = _INV_SQRT_2PI * b_max
        self.log_beta = np.log(beta[:lower_end])
        self.room_at_root = b_max[direct_end:] - beta[direct_end:]

    def compacted(self, keep: np.ndarray) -> _Objectives:
        lower_end = int(np.count_nonzero(keep[: self.lower_end]))
        direct_end = int(np.count_nonzero(keep[: self.direct_end]))
        return _Objectives(lower_end, direct_end, self.beta[keep], self.b_max[keep])


def _householder_step(x, s, s_left, s_right, objectives: _Objectives, work, straggling: bool, bisect_anyway: bool):
    """One third-order Householder step for every entry: the new s, the step and whether it stayed
    in the bracket [s_left, s_right] (else the new s bisects it). Stragglers also tighten the
    bracket (in place) and, every third step, bisect regardless, so that every entry converges.
    ``work`` rows hold the intermediates."""
    beta, b_max = objectives.beta, objectives.b_max
    h, t, h_plus_t, b, vega, h_over_s, halley, hh3, newton = work[:, : x.size]
    np.divide(x, s, out=h)
    np.multiply(s, 0.5, out=t)
    np.add(h, t, out=h_plus_t)
    ndtr(h_plus_t, out=b)
    b *= b_max
    np.subtract(h, t, out=t)
    ndtr(t, out=t)
    t /= b_max
    b -= t  # e^{x/2} N(h + t) - e^{-x/2} N(h - t)
    np.multiply(h_plus_t, h_plus_t, out=vega)
    vega *= -0.5
    np.exp(vega, out=vega)
    vega *= objectives.vega_scale  # db/ds = e^{x/2} phi(h + t), as h t = x / 2
    if straggling:
        np.maximum(s_left, s, out=s_left, where=b < beta)
        np.minimum(s_right, s, out=s_right, where=b > beta)
    np.divide(h, s, out=h_over_s)
    np.multiply(h, h_over_s, out=halley)
    np.multiply(s, 0.25, out=t)
    halley -= t  # b''/b' = x^2/s^3 - s/4
    np.multiply(halley, halley, out=hh3)
    h_over_s *= h_over_s
    h_over_s *= 3.0
    hh3 -= h_over_s
    hh3 -= 0.25  # b'''/b' = (b''/b')^2 - 3 x^2/s^4 - 1/4
    np.subtract(beta, b, out=newton)
    newton /= vega
    low, high = slice(0, objectives.lower_end), slice(objectives.direct_end, None)
    if objectives.lower_end:
        newton[low], halley[low], hh3[low] = _lower_objective(
            b[low], vega[low], halley[low], hh3[low], objectives.log_beta
        )
    if objectives.direct_end < x.size:
        newton[high], halley[high], hh3[high] = _upper_objective(
            b[high], vega[high], halley[high], hh3[high], b_max[high], objectives.room_at_root
        )
    # step = newton (1 + halley newton / 2) / (1 + newton (halley + hh3 newton / 6)), in place
    halley *= newton
    hh3 *= newton
    hh3 *= newton
    hh3 *= 1.0 / 6.0
    hh3 += halley
    hh3 += 1.0
    halley *= 0.5
    halley += 1.0
    newton *= halley
    newton /= hh3
    np.multiply(s, -0.5, out=t)
    step = np.maximum(newton, t, out=newton)  # at most halve s
    stepped = s + step
    # Non-strict: a converged step can land on a bracket end it has just tightened to s itself.
    inside = (stepped >= s_left) & (stepped <= s_right)
    if straggling and bisect_anyway:
        inside[:] = False
    if np.count_nonzero(inside) < inside.size:
        stepped = np.where(inside, stepped, _bisection(s_left, s_right))
    return stepped, step, inside


def _lower_objective(b, vega, halley, hh3, log_beta):
    """Newton step, g''/g' and g'''/g' for g(s) = 1/ln b(s) - 1/ln beta, nearly linear in s where b
    is tiny (deep out of the money)."""
    log_b = np.log(b)
    vega_over_b = vega / b
    newton = (log_beta - log_b) * log_b / (log_beta * vega_over_b)
    inverse_log = 1.0 / log_b
    halley_shift = vega_over_b * (1.0 + 2.0 * inverse_log)
    transformed_hh3 = (
        hh3
        + 2.0 * vega_over_b * vega_over_b * (1.0 + 3.0 * inverse_log * (1.0 + inverse_log))
        - 3.0 * halley * halley_shift
    )
    return newton, halley - halley_shift, transformed_hh3


def _upper_objective(b, vega, halley, hh3, b_max, room_at_root):
    """The same for g(s) = ln((b_max - beta) / (b_max - b(s))), nearly linear near the ceiling."""
    room = b_max - b
    slope = vega / room
    newton = -np.log(room_at_root / room) / slope
    return newton, halley + slope, hh3 + slope * (2.0 * slope + 3.0 * halley)


def _normalised_black(x, s, b_max):
    """b(x, s) for x <= 0 (b_max = e^{x/2}). Directly from N: cheaper than Jäckel's erfcx forms, and
    its rounding error in the far tails moves s by ~1e-16 relative / |x| only."""
    h = x / s
    t = 0.5 * s
    return ndtr(h + t) * b_max - ndtr(h - t) / b_max


def _initial_guess(x, beta, b_max, s_c, b_c, s_outer, b_outer, below_inflection, n_lower, n_middle, work):
    """Jäckel's initial guess, with a bracket of the root, for entries ordered lower | middle | upper.

    Each segment interpolates a rational cubic in beta between its ends: s itself in the middle
    segments, and in the outer ones f_lower(s) or f_upper(s), whose inverses are explicit. One
    interpolation serves all three segments (fewer NumPy calls on a chain-sized array). ``work``
    has ten rows for the interpolation data and the bracket."""
    low, middle, high = slice(0, n_lower), slice(n_lower, n_lower + n_middle), slice(n_lower + n_middle, None)
    segments = []
    if n_lower:
        segments.append(_lower_map(x[low], s_outer[low], b_outer[low]))
    if n_middle:
        segments.append(
            _middle_ends(
                x[middle],
                s_c[middle],
                b_c[middle],
                b_max[middle],
                s_outer[middle],
                b_outer[middle],
                below_inflection[middle],
            )
        )
    if x.size - n_lower - n_middle:
        segments.append(_upper_map(x[high], b_max[high], s_outer[high], b_outer[high]))
    # Ends (x_l, x_r) in beta, values and slopes there, the curvature to match at the end next to
    # the inflection point, and whether that is the right end.
    *data, fit_right = zip(*segments, strict=True)
    x_l, x_r, y_l, y_r, d_l, d_r, curvature, s_left, s_right, width = work
    for parts, row in zip(data, work, strict=False):
        np.concatenate(parts, out=row)
    fit_right = np.concatenate(fit_right)
    np.subtract(x_r, x_l, out=width)
    prefer_shape = np.ones(x.size, dtype=bool)
    prefer_shape[middle] = False
    control = _control(width, y_r - y_l, d_l, d_r, curvature, fit_right, prefer_shape)
    s = _rational_cubic(beta, x_l, width, y_l, y_r, d_l, d_r, control)
    s_left.fill(0.0)
    s_right.fill(np.inf)
    if n_lower:
        s[low] = _inverse_lower_map(x[low], beta[low], s[low], x_r[low], y_r[low])
        s_right[low] = s_outer[low]
    s_left[middle], s_right[middle] = y_l[middle], y_r[middle]
    if x.size - n_lower - n_middle:
        f_high, b_high = y_l[high], x_l[high]
        fraction = (beta[high] - b_high) / width[high]
        # The quadratic through f(b_high), f(b_max) = 0 and f'(b_max) = -1/2 where the cubic fails.
        fallback = (f_high * (1.0 - fraction) + 0.5 * width[high] * fraction) * (1.0 - fraction)
        s[high] = -2.0 * ndtri(np.where(s[high] > 0, s[high], fallback))
        s_left[high] = s_outer[high]
    return s, s_left, s_right


def _lower_map(x, s_low, b_low):
    """Interpolation data below b_low = b(x, s_low), for f_lower = 2 pi |x| N(-z)^3 / sqrt(27)
    with z = |x| / (sqrt(3) s), which is 0 at beta = 0 with slope 1."""
    abs_x = -x
    z = abs_x / (_SQRT_3 * s_low)
    y = z * z
    s2 = s_low * s_low
    tail = ndtr(-z)
    growth = np.exp(y + 0.125 * s2)
    f_low = _TWO_PI_OVER_SQRT_27 * abs_x * tail * tail * tail
    f_slope = (2.0 * math.pi) * y * tail * tail * growth
    tail_over_density = (_SQRT_2PI * tail) * np.exp(0.5 * y)
    f_curvature = (
        ((math.pi / 6.0) * y / (s2 * s_low) * tail)
        * (8.0 * _SQRT_3 * s_low * abs_x + (3.0 * s2 * (s2 - 8.0) - 8.0 * x * x) * tail_over_density)
        * (growth * growth)
    )
    zeros, ones = np.zeros_like(x), np.ones_like(x)
    return zeros, b_low, zeros, f_low, ones, f_slope, f_curvature, ones.astype(bool)


def _inverse_lower_map(x, beta, f, b_low, f_low):
    fraction = beta / b_low
    # The quadratic through f(0) = 0, f'(0) = 1 and f(b_low) where the cubic fails.
    f = np.where(f > 0, f, (f_low * fraction + b_low * (1.0 - fraction)) * fraction)
    return x / (_SQRT_3 * ndtri(np.cbrt(f / (-_TWO_PI_OVER_SQRT_27 * x))))


def _middle_ends(x, s_c, b_c, b_max, s_outer, b_outer, below_inflection):
    """Interpolation data of s(beta) between b_low and b_c, or b_c and b_high, with the slopes
    1/vega; s(beta) has an inflection at b_c, so its curvature there is 0."""
    slope_c = _SQRT_2PI / b_max
    outer_arg = x / s_outer + 0.5 * s_outer
    slope_outer = slope_c * np.exp(0.5 * outer_arg * outer_arg)
    b_left, b_right = np.where(below_inflection, b_outer, b_c), np.where(below_inflection, b_c, b_outer)
    s_left, s_right = np.where(below_inflection, s_outer, s_c), np.where(below_inflection, s_c, s_outer)
    slope_left = np.where(below_inflection, slope_outer, slope_c)
    slope_right = np.where(below_inflection, slope_c, slope_outer)
    return b_left, b_right, s_left, s_right, slope_left, slope_right, np.zeros_like(x), below_inflection


def _upper_map(x, b_max, s_high, b_high):
    """Interpolation data above b_high = b(x, s_high), for f_upper = N(-s/2), which is 0 at
    beta = b_max with slope -1/2."""
    f_high = ndtr(-0.5 * s_high)
    w = (x / s_high) ** 2
    f_slope = -0.5 * np.exp(0.5 * w)
    f_curvature = _SQRT_PI_OVER_2 * np.exp(w + 0.125 * s_high * s_high) * w / s_high
    zeros = np.zeros_like(x)
    return b_high, b_max, f_high, zeros, f_slope, np.full_like(x, -0.5), f_curvature, zeros.astype(bool)


_MINIMUM_CONTROL = -(1.0 - math.sqrt(_EPSILON))
_MAXIMUM_CONTROL = 2.0 / (_EPSILON * _EPSILON)  # at or above this the rational cubic is linear


def _rational_cubic(x, x_l, width, y_l, y_r, d_l, d_r, control):
    """Delbourgo and Gregory's shape-preserving rational cubic through (x_l, y_l) and
    (x_l + width, y_r) with slopes d_l and d_r; a large ``control`` makes it the straight line."""
    t = (x - x_l) / width
    u = 1.0 - t
    numerator = (y_r * t + (control * y_r - width * d_r) * u) * (t * t)
    numerator += ((control * y_l + width * d_l) * t + y_l * u) * (u * u)
    linear = y_r * t + y_l * u
    return np.where(control < _MAXIMUM_CONTROL, numerator / (1.0 + (control - 3.0) * (t * u)), linear)


def _control(width, rise, d_l, d_r, curvature, fit_right, prefer_shape):
    """The rational cubic's control parameter: the one matching ``curvature`` at the right end
    (``fit_right``) or the left, raised where needed to the least that keeps the interpolant
    monotonic and convex or concave where the data are (Delbourgo and Gregory 1985, (3.8) and
    (3.18)); with ``prefer_shape``, data that are monotonic but neither get a straight line."""
    secant = rise / width
    right_gap, left_gap, spread = d_r - secant, secant - d_l, d_r - d_l
    # x / 0 gives +-inf, and anything at or above the maximum makes a straight line.
    fitted = (0.5 * width * curvature + spread) / np.where(fit_right, right_gap, left_gap)
    monotonic = (d_l * secant >= 0) & (d_r * secant >= 0)
    r1 = np.where(monotonic, (d_r + d_l) / secant, -np.inf)
    r2 = np.maximum(np.abs(spread / right_gap), np.abs(spread / left_gap))
    r2 = np.where(left_gap * right_gap >= 0, r2, np.where(monotonic & prefer_shape, np.inf, -np.inf))
    return np.maximum(np.maximum(fitted, _MINIMUM_CONTROL), np.maximum(r1, r2))


def _bisection(s_left, s_right):
    """The middle of the bracket; doubling the lower end while it has no upper end."""
    return np.where(s_right < np.inf, 0.5 * (s_left + s_right), 2.0 * s_left)


def _broadcast(function: str, **arguments: ArrayLike) -> tuple[dict[str, np.ndarray], tuple[int, ...]]:
    """The arguments as arrays that broadcast together; a mismatch raises ValueError naming them."""
    arrays = {name: np.asarray(value, dtype=None if name == "is_call" else float) for name, value in arguments.items()}
    if arrays["is_call"].dtype.kind not in "biu":
        raise TypeError(f"{function}: is_call must be boolean (True for calls), got dtype {arrays['is_call'].dtype}")
    arrays["is_call"] = arrays["is_call"].astype(bool, copy=False)
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
    if array.ndim == 0:
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
