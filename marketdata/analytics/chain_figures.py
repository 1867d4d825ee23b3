"""The figures of an option chain that look across its strikes: the 25-delta IVs, the gamma flip,
max pain and the OI buildup with its strength. Definitions: marketdata/analytics/chain.py's docstring.

Private to ``chain.compute_chain``, which hands these the contracts of a chain as 2n arrays (the n
calls, then the n puts, strikes ascending).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

RISK_REVERSAL_DELTA = 0.25
FLIP_RANGE = 0.10
FLIP_GRID_POINTS = 41
FLIP_REFINEMENTS = 3
STRENGTH_OI_WEIGHT = 0.7
SQRT_2PI = math.sqrt(2.0 * math.pi)
# exp() of arguments below about -708 underflows on NumPy's slow path, five times slower.
UNDERFLOW_EXPONENT = -700.0
_FLIP_MULTIPLES = np.linspace(1.0 - FLIP_RANGE, 1.0 + FLIP_RANGE, FLIP_GRID_POINTS)
# rows (1, x, x^2) with x = ln(s / spot)
_FLIP_POWERS_32 = np.vander(np.log(_FLIP_MULTIPLES), 3, increasing=True).astype(np.float32)
_FLIP_WIDEST_LOG = max(-math.log(1.0 - FLIP_RANGE), math.log(1.0 + FLIP_RANGE))


@lru_cache(maxsize=16)
def contract_layout(n: int) -> tuple[np.ndarray, np.ndarray]:
    """For 2n contracts, CE then PE: is_call, and +1 / -1 (the GEX sign and the 25-delta side)."""
    is_call = np.arange(2 * n) < n
    signs = np.where(is_call, 1.0, -1.0)
    is_call.flags.writeable = signs.flags.writeable = False
    return is_call, signs


def iv_at_25_delta(delta: np.ndarray, iv: np.ndarray, n: int) -> tuple[float, float]:
    """The call IV at delta +0.25 and the put IV at -0.25, interpolated linearly in delta between
    neighbouring strikes that have an IV (deltas fall with the strike on both sides)."""
    known = np.flatnonzero(iv == iv)
    excess = (delta - _delta_targets(n))[known]
    below = excess < 0
    steps = np.flatnonzero(below[1:] & ~below[:-1]).tolist()
    call_iv = put_iv = math.nan
    for step in steps:
        upper, lower = int(known[step]), int(known[step + 1])
        if (upper < n) != (lower < n):
            continue  # the last call next to the first put: not neighbouring strikes
        weight = float(excess[step] / (excess[step] - excess[step + 1]))
        level = float(iv[upper] + (iv[lower] - iv[upper]) * weight)
        if upper < n and call_iv != call_iv:
            call_iv = level  # the first call crossing: the one nearest the money
        elif upper >= n:
            put_iv = level  # the last put crossing is the one nearest the money
    return call_iv, put_iv


@lru_cache(maxsize=16)
def _delta_targets(n: int) -> np.ndarray:
    """+0.25 for the n calls, -0.25 for the n puts."""
    targets = contract_layout(n)[1] * RISK_REVERSAL_DELTA
    targets.flags.writeable = False
    return targets


def gamma_flip(
    spot: float,
    contract_strikes: np.ndarray,
    iv: np.ndarray,
    signed_oi: np.ndarray,
    T: float,
    r: float,
    q: float,
    contributes: np.ndarray,
) -> float:
    """Where total GEX changes sign as spot moves, IVs held: a grid, then Illinois steps."""
    chosen = np.flatnonzero(contributes)
    if not (spot > 0 and T > 0 and chosen.size):
        return math.nan
    vol_sqrt_t = iv[chosen] * math.sqrt(T)
    variance = vol_sqrt_t * vol_sqrt_t
    # At spot s = spot e^x a contract's GEX is 0.01 s OI e^{-qT} phi(d1) / (vol sqrt T), where
    # d1^2 / 2 = (x - centre)^2 / (2 variance): a quadratic in x, so the exponents of the whole grid
    # are one (grid x 3) @ (3 x contracts) product, leaving one exp and one product with the weights.
    centre = np.log(contract_strikes[chosen] * (1.0 / spot)) - ((r - q) * T + 0.5 * variance)
    curvature = -0.5 / variance
    weight = signed_oi[chosen] * (0.01 * math.exp(-q * T) / SQRT_2PI) / vol_sqrt_t
    coefficients = np.empty((3, chosen.size))
    np.multiply(curvature, centre, out=coefficients[1])
    np.multiply(coefficients[1], centre, out=coefficients[0])
    coefficients[1] *= -2.0
    coefficients[2] = curvature
    # clamp only when a bound on the grid's most negative exponent says underflow is possible
    widest = float(np.maximum.reduce(np.abs(centre))) + _FLIP_WIDEST_LOG
    clamp = float(np.minimum.reduce(curvature)) * widest * widest < UNDERFLOW_EXPONENT
    # The grid only has to get the signs right, so it runs in float32 (exp() is twice as fast);
    # the refinement runs in float64.
    coefficients_32, weight_32 = coefficients.astype(np.float32), weight.astype(np.float32)

    def gex_sum_at(powers: np.ndarray, coefficients: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Total GEX / s (so of the same sign) at the spots whose (1, x, x^2) rows are given."""
        exponent = powers @ coefficients
        if clamp:
            np.maximum(exponent, UNDERFLOW_EXPONENT, out=exponent)
        return np.exp(exponent, out=exponent) @ weight

    def gex_sum_at_multiple(multiple: float) -> float:
        x = math.log(multiple)
        return float(gex_sum_at(np.array((1.0, x, x * x)), coefficients, weight))

    sums = gex_sum_at(_FLIP_POWERS_32, coefficients_32, weight_32)
    positive = sums > 0
    steps = np.flatnonzero(positive[1:] != positive[:-1]).tolist()
    if not steps:
        return math.nan
    grid, sums = _FLIP_MULTIPLES.tolist(), sums.tolist()

    def interpolated(step: int) -> float:
        return grid[step] + (grid[step + 1] - grid[step]) * sums[step] / (sums[step] - sums[step + 1])

    step = min(steps, key=lambda step: abs(interpolated(step) - 1.0))
    return spot * _illinois(gex_sum_at_multiple, grid[step], sums[step], grid[step + 1], sums[step + 1])


def _illinois(function, a: float, f_a: float, b: float, f_b: float) -> float:
    """The root of ``function`` between ``a`` and ``b`` (``f_a`` and ``f_b`` of opposite signs or
    one zero) after FLIP_REFINEMENTS steps of the Illinois variant of regula falsi, which keeps the
    root bracketed and, unlike plain regula falsi, does not stall at one end."""
    for _ in range(FLIP_REFINEMENTS):
        c = (a * f_b - b * f_a) / (f_b - f_a)
        f_c = function(c)
        if f_c == 0:
            return c
        if (f_c > 0) != (f_b > 0):
            a, f_a = b, f_b
        else:
            f_a *= 0.5
        b, f_b = c, f_c
    return (a * f_b - b * f_a) / (f_b - f_a)


def max_pain(strikes: np.ndarray, ce_oi: np.ndarray, pe_oi: np.ndarray, total_pe_oi: float) -> float:
    """The settlement strike that pays option holders least. At strike j calls pay
    K_j sum_{i<=j} C_i - sum_{i<=j} C_i K_i, and puts sum_i P_i K_i - K_j sum_i P_i - (sum_{i<=j} P_i K_i
    - K_j sum_{i<=j} P_i): two cumulative sums of C + P give every strike's payout at once (exactly,
    for whole OI and strikes, while the sums stay below 2^53)."""
    oi = ce_oi + pe_oi
    # the constant sum_i P_i K_i is left out: it does not move the minimum
    payout = strikes * (np.add.accumulate(oi) - total_pe_oi) - np.add.accumulate(oi * strikes)
    return float(strikes[payout.argmin()])


def buildup_codes(changes: np.ndarray, oi: np.ndarray, volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Buildup codes (indices into BUILDUP_LABELS) and their 0-100 strength, from the rows
    (price change, OI change) of ``changes``."""
    down = changes < 0
    moved = (changes > 0) | down
    labelled = moved[0] & moved[1]
    # int8 views of the booleans: arithmetic on them skips a cast to int64 per step
    down_8 = down.view(np.int8)
    codes = (down_8[0] + down_8[1] * 2 + 1) * labelled.view(np.int8)
    oi_weight = 100.0 * STRENGTH_OI_WEIGHT
    magnitude = np.abs(changes[1])
    known = magnitude[magnitude == magnitude]
    oi_part = 0.5 * oi_weight
    if known.size:
        mean = np.add.reduce(known) / known.size
        deviation = known - mean
        spread = math.sqrt(np.dot(deviation, deviation) / known.size)
        if spread > 0:  # oi_weight x clip((z + 3) / 6, 0, 1), z = (magnitude - mean) / spread
            scaled = (magnitude - (mean - 3.0 * spread)) * (oi_weight / (6.0 * spread))
            oi_part = np.minimum(np.maximum(scaled, 0.0), oi_weight)
    # fmax turns the NaN of an unknown volume (or of 0 / 0) into the documented 0
    activity_part = np.fmax(volume * (100.0 - oi_weight) / (volume + oi), 0.0)
    return codes, np.where(labelled, oi_part + activity_part, np.nan)
