"""The initial guess of ``_lets_be_rational``: Jäckel's rational cubic interpolations on four segments.

After Peter Jäckel, "Let's Be Rational", Wilmott (2015) 2015(75), 40-53, and his reference
implementation (www.jaeckel.org/LetsBeRational.7z; "Copyright © 2013-2014 Peter Jäckel. Permission to
use, copy, modify, and distribute this software is freely granted, provided that this notice is
preserved."), rewritten here to run on arrays; notation and NumPy conventions as in _lets_be_rational.

Each segment interpolates a rational cubic in beta between two ends: s itself in the middle segments,
and in the outer ones f_lower(s) or f_upper(s), whose inverses are explicit. The cubic matches a
curvature at one end, the "fit" end; the other end is the "other". The classification leaves each
row as the middle segments need it (fit end: the inflection point b_c, s_c, slope sqrt(2 pi)/b_max;
other end: the outer tangent point b_outer, s_outer, and h_plus = x/s_outer + s_outer/2 for its
slope), and the outer segments overwrite their share; then one interpolation serves all segments.
"""

from __future__ import annotations

import math

import numpy as np
from numpy import (
    absolute,
    add,
    cbrt,
    copyto,
    divide,
    exp,
    fmin,
    greater,
    greater_equal,
    maximum,
    minimum,
    multiply,
    subtract,
)
from scipy.special import ndtr, ndtri

_ZERO, _ONE, _THREE, _EIGHT, _HALF, _MINUS_HALF, _EIGHTH, _MINUS_TWO, _MINUS_INF = map(
    np.array, (0.0, 1.0, 3.0, 8.0, 0.5, -0.5, 0.125, -2.0, -np.inf)
)
_SQRT_3, _SQRT_2PI, _TWO_PI, _PI_OVER_4 = map(
    np.array, (math.sqrt(3), math.sqrt(2 * math.pi), 2 * math.pi, math.pi / 4)
)
_HALF_SQRT_PI_OVER_2 = np.array(0.5 * math.sqrt(math.pi / 2))
_MINUS_TWO_PI_OVER_SQRT_27 = np.array(-2 * math.pi / math.sqrt(27))
_EPSILON = np.finfo(float).eps
_MINIMUM_CONTROL = np.array(-(1.0 - math.sqrt(_EPSILON)))
_MAXIMUM_CONTROL = np.array(2.0 / (_EPSILON * _EPSILON))  # at or above this the rational cubic is linear


def initial_guess(
    x: np.ndarray,
    beta: np.ndarray,
    b_max: np.ndarray,
    ends: list[np.ndarray],
    iterate: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_lower: int,
    n_middle: int,
    scratch: np.ndarray,
) -> None:
    """Jäckel's initial guess and a bracket of the root into ``iterate`` (s, s_left, s_right), for
    entries ordered lower | middle | upper; ``ends`` are the classification's rows (module
    docstring), ``scratch`` twelve rows to work in."""
    n = x.size
    half_curvature, shape_fallback = scratch[:2]
    s, s_left, s_right = iterate
    low, middle, high = slice(0, n_lower), slice(n_lower, n_lower + n_middle), slice(n_lower + n_middle, n)
    fit_slope, fit_b, _, fit_y, other_y, other_slope = ends
    if n_lower:
        _lower_ends(x[low], *(row[low] for row in (*ends, half_curvature, s_left, s_right)), scratch[2:, low])
    if n_middle:
        minimum(other_y[middle], fit_y[middle], out=s_left[middle])
        maximum(other_y[middle], fit_y[middle], out=s_right[middle])
        slope = other_slope[middle]  # ds/db at s_outer: slope_c e^{h_plus^2 / 2}
        multiply(slope, slope, slope)
        multiply(slope, _HALF, slope)
        exp(slope, slope)
        multiply(slope, fit_slope[middle], slope)
        half_curvature[middle] = 0.0  # s(beta) has its inflection at b_c
        shape_fallback[middle] = -np.inf  # as Jäckel's middle segments, prefer smoothness to shape
    if n_lower + n_middle < n:
        rows = (b_max, *ends, half_curvature, s_left, s_right)
        _upper_ends(x[high], *(row[high] for row in rows), scratch[2:, high])
    shape_fallback[low] = np.inf
    shape_fallback[high] = np.inf
    _rational_cubic(beta, *ends, half_curvature, shape_fallback, s, scratch[2:])
    if n_lower:
        _inverse_lower_map(x[low], beta[low], s[low], fit_b[low], fit_y[low], scratch[2, low])
    if n_lower + n_middle < n:
        _inverse_upper_map(beta[high], s[high], b_max[high], fit_b[high], fit_y[high])


def _lower_ends(x, fit_slope, fit_b, other_b, fit_y, other_y, other_slope, half_curvature, s_left, s_right, scratch):
    """Ends below b_low = b(x, s_low) for f_lower = 2 pi |x| N(-z)^3 / sqrt(27), z = |x| / (sqrt(3) s),
    which is 0 at beta = 0 with slope 1: at the fit end f_lower(b_low) and its first two derivatives."""
    s = other_y  # s_low, where the classification left it
    s_left.fill(0.0)
    copyto(s_right, s)
    minus_z, y, s2, tail, tail2, growth, density_ratio, factor = scratch[:8]
    multiply(s, _SQRT_3, minus_z)
    divide(x, minus_z, minus_z)
    multiply(minus_z, minus_z, y)
    multiply(s, s, s2)
    ndtr(minus_z, tail)
    multiply(tail, tail, tail2)
    multiply(s2, _EIGHTH, growth)
    add(growth, y, growth)
    exp(growth, growth)  # e^{z^2 + s^2/8}
    multiply(x, _MINUS_TWO_PI_OVER_SQRT_27, fit_y)
    multiply(fit_y, tail2, fit_y)
    multiply(fit_y, tail, fit_y)
    multiply(y, tail2, fit_slope)
    multiply(fit_slope, growth, fit_slope)
    multiply(fit_slope, _TWO_PI, fit_slope)
    multiply(y, _HALF, density_ratio)
    exp(density_ratio, density_ratio)
    multiply(density_ratio, tail, density_ratio)
    multiply(density_ratio, _SQRT_2PI, density_ratio)  # N(-z) / phi(z)
    # Jäckel's f'' = pi/6 y/s^3 N(-z) (8 sqrt(3) s |x| + (3 s^2 (s^2 - 8) - 8 x^2) N(-z)/phi(z)) e^{2y + s^2/4}
    # with y = z^2; as |x| = -sqrt(3) s (-z) and x^2 = 3 s^2 y, half of it is
    # pi/4 y N(-z)/s ((s^2 - 8 - 8y) N(-z)/phi(z) - 8 (-z)) e^{2y + s^2/4}.
    multiply(y, _EIGHT, factor)
    subtract(s2, factor, factor)
    subtract(factor, _EIGHT, factor)
    multiply(factor, density_ratio, factor)
    multiply(minus_z, _EIGHT, minus_z)
    subtract(factor, minus_z, factor)
    multiply(y, tail, half_curvature)
    divide(half_curvature, s, half_curvature)
    multiply(half_curvature, _PI_OVER_4, half_curvature)
    multiply(half_curvature, factor, half_curvature)
    multiply(growth, growth, growth)
    multiply(half_curvature, growth, half_curvature)
    copyto(fit_b, other_b)
    other_b.fill(0.0)
    other_y.fill(0.0)
    other_slope.fill(1.0)


def _upper_ends(
    x, b_max, fit_slope, fit_b, other_b, fit_y, other_y, other_slope, half_curvature, s_left, s_right, scratch
):
    """Ends above b_high = b(x, s_high) for f_upper = N(-s/2), which is 0 at beta = b_max with slope
    -1/2: at the fit end f_upper(b_high) and its first two derivatives."""
    s = other_y  # s_high, where the classification left it
    copyto(s_left, s)
    s_right.fill(np.inf)
    w, exponent = scratch[:2]
    multiply(s, _MINUS_HALF, fit_y)
    ndtr(fit_y, fit_y)
    divide(x, s, w)
    multiply(w, w, w)  # (x/s)^2
    multiply(w, _HALF, fit_slope)
    exp(fit_slope, fit_slope)
    multiply(fit_slope, _MINUS_HALF, fit_slope)
    multiply(s, s, exponent)
    multiply(exponent, _EIGHTH, exponent)
    add(exponent, w, exponent)
    exp(exponent, half_curvature)
    multiply(half_curvature, w, half_curvature)
    divide(half_curvature, s, half_curvature)
    multiply(half_curvature, _HALF_SQRT_PI_OVER_2, half_curvature)
    copyto(fit_b, other_b)
    copyto(other_b, b_max)
    other_y.fill(0.0)
    other_slope.fill(-0.5)


def _rational_cubic(
    beta, fit_slope, fit_b, other_b, fit_y, other_y, other_slope, half_curvature, fallback, out, scratch
):
    """Delbourgo and Gregory's shape-preserving rational cubic through the two ends, at beta.

    Its control parameter matches the curvature at the fit end, raised where needed to the least
    that keeps the interpolant monotonic and convex or concave where the data are (Delbourgo and
    Gregory 1985, (3.8) and (3.18)); data that are monotonic but neither get at least ``fallback``,
    +inf (a straight line) to prefer shape, -inf to prefer smoothness. The cubic and these
    conditions are symmetric in the ends, so the other end serves as the left one whichever side it
    is on (width = fit_b - other_b < 0 when it is the right one); t = (beta - other_b) / width and
    u = 1 - t, the cubic is the straight line through the ends less
    width t u (right_gap t + left_gap u) / (1 + (control - 3) t u)."""
    width, rise, secant, right_gap, left_gap, spread, control, limit, shape, t = scratch[:10]
    subtract(fit_b, other_b, width)
    subtract(fit_y, other_y, rise)
    divide(rise, width, secant)
    subtract(fit_slope, secant, right_gap)
    subtract(secant, other_slope, left_gap)
    add(right_gap, left_gap, spread)  # fit_slope - other_slope
    multiply(width, half_curvature, control)
    add(control, spread, control)
    divide(control, right_gap, control)  # x / 0 gives +-inf: at or above the maximum is linear
    multiply(left_gap, right_gap, shape)
    convex_or_concave = greater_equal(shape, _ZERO)
    # The least control that keeps convex or concave data so, max |spread / gap| >= 1 (above the
    # minimum); where the data are also monotonic, the least that keeps them so, (d_l + d_r) /
    # secant, never exceeds it.
    divide(spread, right_gap, limit)
    absolute(limit, limit)
    divide(spread, left_gap, t)
    absolute(t, t)
    maximum(limit, t, out=limit)
    if np.count_nonzero(convex_or_concave) < limit.size:
        multiply(other_slope, secant, shape)
        multiply(fit_slope, secant, t)
        minimum(shape, t, out=shape)
        monotonic = greater_equal(shape, _ZERO)
        add(fit_slope, other_slope, shape)
        divide(shape, secant, shape)
        maximum(shape, fallback, out=shape)
        copyto(shape, _MINUS_INF, where=~monotonic)
        copyto(limit, shape, where=~convex_or_concave)
        maximum(limit, _MINIMUM_CONTROL, out=limit)
    maximum(control, limit, out=control)
    fmin(control, _MAXIMUM_CONTROL, out=control)  # a NaN control (0 / 0) means the straight line too
    subtract(beta, other_b, t)
    divide(t, width, t)
    u = subtract(_ONE, t, limit)
    multiply(right_gap, t, right_gap)
    multiply(left_gap, u, left_gap)
    add(right_gap, left_gap, right_gap)
    multiply(u, t, u)  # t u
    multiply(right_gap, width, right_gap)
    multiply(right_gap, u, right_gap)
    subtract(control, _THREE, control)
    multiply(control, u, control)
    add(control, _ONE, control)
    divide(right_gap, control, right_gap)
    multiply(rise, t, out)
    add(out, other_y, out)
    subtract(out, right_gap, out)


def _inverse_lower_map(x, beta, f, b_low, f_low, scale) -> None:
    """s from the interpolated f_lower, in place in ``f``."""
    positive = greater(f, _ZERO)
    if np.count_nonzero(positive) < f.size:
        # The quadratic through f(0) = 0, f'(0) = 1 and f(b_low) where the cubic fails.
        fraction = beta / b_low
        copyto(f, (f_low * fraction + b_low * (1.0 - fraction)) * fraction, where=~positive)
    multiply(x, _MINUS_TWO_PI_OVER_SQRT_27, scale)
    divide(f, scale, f)
    cbrt(f, f)
    ndtri(f, f)
    multiply(f, _SQRT_3, f)
    divide(x, f, f)


def _inverse_upper_map(beta, f, b_max, b_high, f_high) -> None:
    """s from the interpolated f_upper, in place in ``f``."""
    positive = greater(f, _ZERO)
    if np.count_nonzero(positive) < f.size:
        # The quadratic through f(b_high), f(b_max) = 0 and f'(b_max) = -1/2 where the cubic fails.
        width = b_max - b_high
        fraction = (beta - b_high) / width
        copyto(f, (f_high * (1.0 - fraction) + 0.5 * width * fraction) * (1.0 - fraction), where=~positive)
    ndtri(f, f)
    multiply(f, _MINUS_TWO, f)
