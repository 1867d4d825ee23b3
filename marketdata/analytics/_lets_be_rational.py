"""The implied-volatility solver behind ``black_scholes.implied_vol``, in normalised form.

After Peter Jäckel, "Let's Be Rational", Wilmott (2015) 2015(75), 40-53, and his reference
implementation (www.jaeckel.org/LetsBeRational.7z; "Copyright © 2013-2014 Peter Jäckel. Permission to
use, copy, modify, and distribute this software is freely granted, provided that this notice is
preserved."), rewritten here to run on arrays. In normalised form an option is x = ln(F/K) and
s = sigma sqrt(T), with the out-of-the-money call's undiscounted price divided by sqrt(F K):
b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2), x <= 0, 0 < b < e^{x/2}.

A chain page solves a few hundred options at a time, where a NumPy call costs about as much as its
arithmetic, so this module economises on calls: it writes into preallocated rows, passes ufunc
outputs positionally (``add(a, b, out)``: the keyword costs more), gives ufuncs their constants as
0-d arrays (a Python float operand costs a conversion on every call, ~0.2 µs) and skips empty segments.
The initial guess lives in ``_lets_be_rational_guess``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy import (
    absolute,
    add,
    copyto,
    divide,
    exp,
    greater,
    less,
    less_equal,
    log,
    maximum,
    minimum,
    multiply,
    negative,
    sqrt,
    subtract,
)
from scipy.special import ndtr

from marketdata.analytics._lets_be_rational_guess import initial_guess

_ZERO, _ONE, _TWO, _THREE, _HALF, _MINUS_HALF, _QUARTER, _SIXTH, _MINUS_TWO, _MINUS_THREE_HALVES = map(
    np.array, (0.0, 1.0, 2.0, 3.0, 0.5, -0.5, 0.25, 1 / 6, -2.0, -1.5)
)
_SQRT_2PI, _INV_SQRT_2PI = np.array(math.sqrt(2 * math.pi)), np.array(1 / math.sqrt(2 * math.pi))
# A step below this (relative) leaves an error of order its cube (Halley's steps, which follow the
# first): machine precision and beyond.
_CONVERGED_STEP = np.array(1e-6)
_STRAGGLER_BRACKET = np.array(4 * np.finfo(float).eps)
_MAX_ITERATIONS = 64
# One block holds every row of a solve: classified, classified in segment order, the iterate and
# the scratch rows. Besides the allocations this saves, one large block freed per call raises
# glibc's trim threshold above the call's other temporaries, which would otherwise go back to the
# system and be faulted in again on every call (+60 % on 10,000 options).
_CLASSIFIED, _ORDERED, _ITERATE, _SCRATCH = slice(0, 6), slice(6, 12), slice(12, 17), slice(17, 29)
_BLOCK_ROWS = 29


def implied_vol(
    premium: np.ndarray,
    spot: np.ndarray,
    strike: np.ndarray,
    expiry: np.ndarray,
    rate: np.ndarray,
    call: np.ndarray,
    dividend: np.ndarray,
    *,
    shape: tuple[int, ...],
    block: int,
) -> np.ndarray:
    """``black_scholes.implied_vol`` once its arguments are arrays that broadcast to ``shape``:
    NaN where no volatility exists, else sigma, solving ``block`` entries at a time."""
    size = math.prod(shape)
    with np.errstate(all="ignore"):  # unsolvable entries are masked out, and NaN compares False
        discounted_spot = spot * np.exp(-dividend * expiry)
        discounted_strike = strike * np.exp(-rate * expiry)
        forward_gap = discounted_spot - discounted_strike
        time_value = premium - np.maximum(np.where(call, forward_gap, -forward_gap), _ZERO)
        # By put-call parity the out-of-the-money member of the pair has price time_value; solving
        # for it keeps every digit of a small time value instead of subtracting a large intrinsic.
        x = -np.abs(np.log(discounted_spot / discounted_strike))
        beta = time_value / np.sqrt(discounted_spot * discounted_strike)
        b_max = np.exp(x * _HALF)
        # S <= 0 or K <= 0 makes x or beta NaN or infinite, which fails the last test. time_value
        # depends on every argument, so these have the broadcast shape.
        solvable = np.greater(time_value, _ZERO)
        solvable &= premium < np.where(call, discounted_spot, discounted_strike)
        solvable &= beta < b_max
        if expiry.ndim or not expiry > 0:
            solvable &= expiry > _ZERO
        solvable = solvable.reshape(-1)
        count = np.count_nonzero(solvable)
        chosen = None if count == size else solvable.nonzero()[0]
        x, beta, b_max = [_entries(array, shape, chosen, count) for array in (x, beta, b_max)]
        expiry = expiry if expiry.ndim == 0 else _entries(expiry, shape, chosen, count)
        sigma = np.empty(count)
        for start in range(0, count, block):
            part = slice(start, start + block)
            normalised_vol(x[part], beta[part], b_max[part], out=sigma[part])
        np.divide(sigma, np.sqrt(expiry), sigma)
    if chosen is None:
        return sigma.reshape(shape)
    result = np.empty(size)
    result.fill(np.nan)
    result[chosen] = sigma
    return result.reshape(shape)


def _entries(array: np.ndarray, shape: tuple[int, ...], chosen: np.ndarray | None, count: int) -> np.ndarray:
    """The flat values of ``array`` broadcast to ``shape`` at ``chosen``, all ``count`` of them if None."""
    if array.ndim == 0:
        return np.broadcast_to(array, (count,))
    flat = array.reshape(-1) if array.shape == shape else np.broadcast_to(array, shape).reshape(-1)
    return flat if chosen is None else flat[chosen]


def normalised_vol(x: np.ndarray, beta: np.ndarray, b_max: np.ndarray, out: np.ndarray) -> None:
    """The s with b(x, s) = beta into ``out``, for x <= 0 and 0 < beta < b_max = e^{x/2} (flat arrays)."""
    n = x.size
    block = np.empty((_BLOCK_ROWS, n))
    classified, scratch = block[_CLASSIFIED], block[_SCRATCH]
    order, n_lower, n_middle, n_near = _classify(x, beta, b_max, classified, scratch)
    if order is not None:
        # Contiguous segments let each guess and objective run on a slice instead of a masked copy.
        # mode="clip": with the default, take() buffers its output through a copy.
        classified = classified.take(order, axis=1, out=block[_ORDERED], mode="clip")
        x, beta, b_max = x[order], beta[order], b_max[order]
    s, s_left, s_right, objective_constant, vega_scale = block[_ITERATE]
    initial_guess(x, beta, b_max, list(classified), (s, s_left, s_right), n_lower, n_middle, scratch)
    inside = (s > s_left) & (s < s_right)
    if np.count_nonzero(inside) < n:
        copyto(s, _bisection(s_left, s_right), where=~inside)
    # What the transformed objectives need of beta: ln beta below, b_max - beta near the ceiling.
    if n_lower:
        log(beta[:n_lower], objective_constant[:n_lower])
    direct_end = n_lower + n_middle + n_near
    if direct_end < n:
        subtract(b_max[direct_end:], beta[direct_end:], objective_constant[direct_end:])
    multiply(b_max, _INV_SQRT_2PI, vega_scale)
    solved = _iterate(
        [x, beta, b_max, vega_scale, objective_constant, s, s_left, s_right], n_lower, direct_end, scratch
    )
    if order is None:
        copyto(out, solved)
    else:
        out[order] = solved


def _classify(x, beta, b_max, classified, scratch):
    """Jäckel's segments of beta's range, and the points that bound them, into ``classified``.

    b is convex in s below s_c = sqrt(2|x|) and concave above; its tangents there cut the floor and
    ceiling at s_low and s_high (s_outer, whichever side of b_c = b(x, s_c) beta is), splitting the
    range into lower | middle | upper, the upper split again where ln(b_max - b) pays off. Returns
    the order that makes the segments contiguous (None if they are) and the first three's sizes."""
    slope_c, b_c, b_outer, s_c, s_outer, h_plus = classified
    h, half_s = scratch[:2]
    multiply(x, _MINUS_TWO, s_c)
    sqrt(s_c, s_c)
    divide(_SQRT_2PI, b_max, slope_c)  # ds/db at s_c
    negative(s_c, h)
    ndtr(h, h)
    divide(h, b_max, h)
    multiply(b_max, _HALF, b_c)
    subtract(b_c, h, b_c)
    below = less(beta, b_c)
    subtract(np.where(below, _ZERO, b_max), b_c, s_outer)
    multiply(s_outer, slope_c, s_outer)
    add(s_outer, s_c, s_outer)
    divide(x, s_outer, h)
    multiply(s_outer, _HALF, half_s)
    add(h, half_s, h_plus)
    subtract(h, half_s, h)
    ndtr(h_plus, b_outer)
    multiply(b_outer, b_max, b_outer)
    ndtr(h, h)
    divide(h, b_max, h)
    subtract(b_outer, h, b_outer)  # b(x, s_outer)
    lower = less(beta, b_outer)
    lower &= below
    upper = greater(beta, b_outer)
    upper &= ~below
    n, n_lower, n_upper = x.size, np.count_nonzero(lower), np.count_nonzero(upper)
    n_far = 0
    if n_upper:
        far = greater(beta, multiply(b_max, _HALF)) & upper
        n_far = np.count_nonzero(far)
    n_middle = n - n_lower - n_upper
    if max(n_lower, n_middle, n_upper - n_far, n_far) == n:
        return None, n_lower, n_middle, n_upper - n_far
    parts = [lower.nonzero()[0], (~(lower | upper)).nonzero()[0]]
    if n_upper:
        parts += [(upper ^ far).nonzero()[0], far.nonzero()[0]]
    return np.concatenate(parts), n_lower, n_middle, n_upper - n_far


def _iterate(state, lower_end, direct_end, scratch) -> np.ndarray:
    """Steps from the guess in ``state`` until every entry converges; s in state order.

    Entries [0, lower_end) iterate on 1/ln b (deep out of the money), [lower_end, direct_end) on b
    itself, the rest on ln(b_max - b) (near the ceiling). From the guess, one third-order Householder
    step leaves relative errors below 1e-6 (under 1e-6 on every test grid); from there Halley's step,
    Householder's of second order at a third fewer NumPy calls, takes them below 1e-17 (their cube),
    and the convergence test checks that it did. Stragglers are compacted, tighten their bracket and
    bisect every third step."""
    solved = position = None
    rows = _step_rows(state, scratch, lower_end, direct_end)
    for iteration in range(_MAX_ITERATIONS):
        straggling = iteration >= 2
        step, inside = _step(*rows, iteration == 0, straggling, iteration % 3 == 2)
        if iteration == 0:
            continue  # nothing converges in one step from the guess: do not pay for the test
        s, s_left, s_right = state[5:]
        size, bound = rows[1][:2]
        absolute(step, size)
        multiply(s, _CONVERGED_STEP, bound)
        converged = less_equal(size, bound)
        converged &= inside
        if straggling:
            subtract(s_right, s_left, size)
            multiply(s, _STRAGGLER_BRACKET, bound)
            converged |= less_equal(size, bound)
        done = np.count_nonzero(converged)
        if solved is None:
            if done == s.size:
                return s
            solved, position = np.empty(s.size), np.arange(s.size)
        solved[position[converged]] = s[converged]
        if done == s.size:
            return solved
        # The stragglers keep their order, so each objective's entries stay contiguous.
        keep = ~converged
        lower_end, direct_end = int(np.count_nonzero(keep[:lower_end])), int(np.count_nonzero(keep[:direct_end]))
        state, position = [row[keep] for row in state], position[keep]
        rows = _step_rows(state, scratch, lower_end, direct_end)
    solved[position] = state[5]  # at the iteration limit the rest keep their last iterate
    return solved


def _step_rows(state, scratch, lower_end, direct_end):
    """The rows a step works on, and their slices for the two transformed objectives (None where
    empty), made once rather than per step."""
    size = state[0].size
    work = scratch[:10, :size]
    h, _, h_plus, b, vega, halley, hh3, newton, spare, _ = work
    lower = upper = None
    if lower_end:
        lower = tuple(row[:lower_end] for row in (b, vega, halley, hh3, newton, state[4], h, h_plus, spare))
    if direct_end < size:
        upper = tuple(row[direct_end:] for row in (b, vega, halley, hh3, newton, state[2], state[4], h, h_plus))
    return state, work, lower, upper


def _step(state, work, lower, upper, third_order, straggling, bisect_anyway):
    """One Householder step for every entry, third-order or Halley's, in place in s: returns the
    step and whether it stayed in the bracket [s_left, s_right] (else s bisects it). Stragglers also
    tighten the bracket (in place) and, with ``bisect_anyway``, bisect regardless. ``lower`` and
    ``upper`` are the rows' slices that iterate on the transformed objectives."""
    x, beta, b_max, vega_scale, _, s, s_left, s_right = state
    h, minus_half_s, h_plus, b, vega, halley, hh3, newton, other, _ = work
    divide(x, s, h)
    multiply(s, _MINUS_HALF, minus_half_s)
    subtract(h, minus_half_s, h_plus)
    add(h, minus_half_s, other)
    multiply(h_plus, other, halley)
    divide(halley, s, halley)  # b''/b' = x^2/s^3 - s/4 = (h + s/2)(h - s/2)/s
    ndtr(other, other)
    divide(other, b_max, other)
    ndtr(h_plus, b)
    multiply(b, b_max, b)
    subtract(b, other, b)  # e^{x/2} N(h + s/2) - e^{-x/2} N(h - s/2)
    multiply(h_plus, h_plus, vega)
    multiply(vega, _MINUS_HALF, vega)
    exp(vega, vega)
    multiply(vega, vega_scale, vega)  # db/ds = e^{x/2} phi(h + s/2)
    if straggling:
        maximum(s_left, s, out=s_left, where=b < beta)
        minimum(s_right, s, out=s_right, where=b > beta)
    if third_order:
        divide(h, s, other)
        multiply(other, other, other)
        multiply(other, _THREE, other)
        multiply(halley, halley, hh3)
        subtract(hh3, other, hh3)
        subtract(hh3, _QUARTER, hh3)  # b'''/b' = (b''/b')^2 - 3 x^2/s^4 - 1/4
    subtract(beta, b, newton)
    divide(newton, vega, newton)
    if lower is not None:
        _lower_objective(*lower, third_order)
    if upper is not None:
        _upper_objective(*upper, third_order)
    if third_order:  # newton (1 + halley newton / 2) / (1 + newton (halley + hh3 newton / 6))
        multiply(halley, newton, halley)
        multiply(hh3, newton, hh3)
        multiply(hh3, newton, hh3)
        multiply(hh3, _SIXTH, hh3)
        add(hh3, halley, hh3)
        add(hh3, _ONE, hh3)
        multiply(halley, _HALF, halley)
        add(halley, _ONE, halley)
        multiply(newton, halley, newton)
        divide(newton, hh3, newton)
    else:  # newton / (1 + halley newton / 2)
        multiply(halley, newton, halley)
        multiply(halley, _HALF, halley)
        add(halley, _ONE, halley)
        divide(newton, halley, newton)
    step = maximum(newton, minus_half_s, out=newton)  # at most halve s
    add(s, step, s)
    # Non-strict: a converged step can land on a bracket end it has just tightened to s itself.
    inside = (s >= s_left) & (s <= s_right)
    if straggling and bisect_anyway:
        inside[:] = False
    if np.count_nonzero(inside) < inside.size:
        copyto(s, _bisection(s_left, s_right), where=~inside)
    return step, inside


def _lower_objective(b, vega, halley, hh3, newton, log_beta, log_b, shift, twice, third_order) -> None:
    """Newton step, g''/g' and (if ``third_order``) g'''/g', in place, for g(s) = 1/ln b(s) - 1/ln beta,
    nearly linear in s where b is tiny (deep out of the money). With v = b'/b, w = v / ln b and
    shift = v + 2 w: the step is (ln beta - ln b) / (w ln beta), g''/g' = b''/b' - shift, and
    g'''/g' = b'''/b' + 2 v^2 (1 + 3/ln b + 3/ln^2 b) - 3 shift b''/b'
            = b'''/b' + v^2/2 - 3/2 shift (b''/b' + g''/g')."""
    log(b, log_b)
    divide(vega, b, vega)  # v
    divide(vega, log_b, shift)  # w
    subtract(log_beta, log_b, newton)
    multiply(shift, log_beta, log_b)
    divide(newton, log_b, newton)
    multiply(shift, _TWO, shift)
    add(shift, vega, shift)
    if third_order:
        multiply(halley, _TWO, twice)
        subtract(twice, shift, twice)  # b''/b' + g''/g'
    subtract(halley, shift, halley)
    if third_order:
        multiply(twice, shift, twice)
        multiply(twice, _MINUS_THREE_HALVES, twice)
        add(hh3, twice, hh3)
        multiply(vega, vega, vega)
        multiply(vega, _HALF, vega)
        add(hh3, vega, hh3)


def _upper_objective(b, vega, halley, hh3, newton, b_max, room_at_root, slope, product, third_order) -> None:
    """The same for g(s) = ln((b_max - beta) / (b_max - b(s))), nearly linear near the ceiling."""
    subtract(b_max, b, slope)  # room
    divide(slope, room_at_root, newton)
    log(newton, newton)
    divide(vega, slope, slope)
    divide(newton, slope, newton)
    if third_order:
        multiply(halley, _THREE, product)
        add(product, slope, product)
        add(product, slope, product)
        multiply(product, slope, product)
        add(hh3, product, hh3)  # b'''/b' + slope (2 slope + 3 b''/b')
    add(halley, slope, halley)


def _bisection(s_left, s_right):
    """The middle of the bracket; doubling the lower end while it has no upper end."""
    return np.where(s_right < np.inf, 0.5 * (s_left + s_right), 2.0 * s_left)
