"""Option analytics: black_scholes.implied_vol and greeks against plain references, on one core.

- implied_vol: 10,000 NIFTY-like options (spot 24,000, strikes 20,000-28,000, 1-60 days, sigma
  8-60 %, calls and puts, r = 6.5 %) priced by black_scholes.price, keeping only contracts whose
  time value is at least one 0.05 tick (what the exchange can quote; the rest have no volatility to
  find). Against the vectorised Newton with bisection of tests.benchmarks.baselines, and vollib
  (Jäckel's LetsBeRational) called once per option, timed on the first VOLLIB_SUBSET options and
  reported per option. The IVs are checked against the true sigma and against vollib's.
- greeks: 1,000,000 options of the same kind, against the plain NumPy formulas of baselines and
  vollib's analytical Greeks (per option, on VOLLIB_SUBSET options).
- chain: one 400-contract chain (200 strikes, calls and puts, one expiry: scalars for S, T, r as
  marketdata.analytics.chain passes them; prices on the 0.05 tick, some of them without a
  volatility), the array size a chain page refresh computes.

Timing by parse.best_seconds: each side in runs of at least 0.1 s, the sides' runs interleaved,
best run kept. The process is pinned to one CPU and uses no threads.
`python -m tests.benchmarks.analytics` prints the figures as one JSON line.
"""

from __future__ import annotations

import json
import os

import numpy as np

from marketdata.analytics import black_scholes
from tests.benchmarks import baselines
from tests.benchmarks.parse import best_seconds

IMPLIED_VOL_OPTIONS = 10_000
GREEKS_OPTIONS = 1_000_000
CHAIN_STRIKES = 200
VOLLIB_SUBSET = 1_000
SPOT, RATE, TICK = 24_000.0, 0.065, 0.05
TARGET_IMPLIED_VOL_PER_S = 4_000_000
TARGET_GREEKS_PER_S = 20_000_000
TARGET_CHAIN_US = 500  # implied_vol and greeks of a 400-contract chain, with the chain's own work


def measure_analytics() -> dict:
    rng = np.random.default_rng(2026)
    return implied_vol_figures(rng) | greeks_figures(rng) | chain_figures()


def implied_vol_figures(rng: np.random.Generator) -> dict:
    premium, K, T, sigma, is_call = quoted_options(rng, IMPLIED_VOL_OPTIONS)
    subset = slice(0, VOLLIB_SUBSET)
    ours, newton, vollib = best_seconds(
        lambda: black_scholes.implied_vol(premium, SPOT, K, T, RATE, is_call),
        lambda: baselines.newton_bisection_implied_vol(premium, SPOT, K, T, RATE, is_call),
        lambda: baselines.vollib_implied_vol_loop(premium[subset], SPOT, K[subset], T[subset], RATE, is_call[subset]),
    )
    iv = black_scholes.implied_vol(premium, SPOT, K, T, RATE, is_call)
    vollib_iv = baselines.vollib_implied_vol_loop(premium, SPOT, K, T, RATE, is_call)
    newton_iv = baselines.newton_bisection_implied_vol(premium, SPOT, K, T, RATE, is_call)
    vollib_per_option = vollib / VOLLIB_SUBSET
    return {
        "implied_vol_options": IMPLIED_VOL_OPTIONS,
        "implied_vol_ours_per_s": IMPLIED_VOL_OPTIONS / ours,
        "implied_vol_ours_ms": ours * 1e3,
        "implied_vol_newton_bisection_per_s": IMPLIED_VOL_OPTIONS / newton,
        "implied_vol_vollib_per_s": 1 / vollib_per_option,
        "implied_vol_vollib_timed_on_first_options": VOLLIB_SUBSET,
        "implied_vol_speedup_vs_newton_bisection": newton / ours,
        "implied_vol_speedup_vs_vollib": vollib_per_option * IMPLIED_VOL_OPTIONS / ours,
        "implied_vol_max_abs_diff_vs_vollib": float(np.max(np.abs(iv - vollib_iv))),
        "implied_vol_max_abs_error_vs_true_sigma": float(np.max(np.abs(iv - sigma))),
        "implied_vol_newton_bisection_max_abs_error": float(np.max(np.abs(newton_iv - sigma))),
        "target_implied_vol_per_s": TARGET_IMPLIED_VOL_PER_S,
    }


def greeks_figures(rng: np.random.Generator) -> dict:
    K, T, sigma, is_call = nifty_like(rng, GREEKS_OPTIONS)
    subset = slice(0, VOLLIB_SUBSET)
    ours, plain, vollib = best_seconds(
        lambda: black_scholes.greeks(SPOT, K, T, RATE, sigma, is_call),
        lambda: baselines.plain_numpy_greeks(SPOT, K, T, RATE, sigma, is_call),
        lambda: baselines.vollib_greeks_loop(SPOT, K[subset], T[subset], RATE, sigma[subset], is_call[subset]),
    )
    return {
        "greeks_options": GREEKS_OPTIONS,
        "greeks_ours_per_s": GREEKS_OPTIONS / ours,
        "greeks_ours_ms": ours * 1e3,
        "greeks_plain_numpy_per_s": GREEKS_OPTIONS / plain,
        "greeks_vollib_per_s": VOLLIB_SUBSET / vollib,
        "greeks_vollib_timed_on_first_options": VOLLIB_SUBSET,
        "greeks_speedup_vs_plain_numpy": plain / ours,
        "target_greeks_per_s": TARGET_GREEKS_PER_S,
    }


def chain_figures() -> dict:
    strikes = SPOT + 50.0 * np.arange(-CHAIN_STRIKES // 2, CHAIN_STRIKES // 2)
    K = np.concatenate([strikes, strikes])
    is_call = np.repeat([True, False], CHAIN_STRIKES)
    T = 6.25 / 365
    sigma = 0.12 + 0.6 * (K / SPOT - 1) ** 2
    premium = black_scholes.price(SPOT, K, T, RATE, sigma, is_call)
    premium = np.maximum(np.round(premium / TICK) * TICK, TICK)  # quoted prices, some without a volatility
    iv = black_scholes.implied_vol(premium, SPOT, K, T, RATE, is_call)
    solved = np.where(np.isnan(iv), 1.0, iv)  # a stand-in where there is none, as chain.py does
    implied_vol, greeks = best_seconds(
        lambda: black_scholes.implied_vol(premium, SPOT, K, T, RATE, is_call),
        lambda: black_scholes.greeks(SPOT, K, T, RATE, solved, is_call),
    )
    return {
        "chain_contracts": K.size,
        "chain_implied_vol_us": implied_vol * 1e6,
        "chain_greeks_us": greeks * 1e6,
        "target_chain_us": TARGET_CHAIN_US,
    }


def nifty_like(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    K = rng.uniform(20_000.0, 28_000.0, n)
    T = rng.integers(1, 61, n) / 365
    sigma = rng.uniform(0.08, 0.60, n)
    is_call = rng.random(n) < 0.5
    return K, T, sigma, is_call


def quoted_options(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """n NIFTY-like options whose price holds at least a tick of time value, with their true sigma."""
    K, T, sigma, is_call = nifty_like(rng, 2 * n)
    premium = black_scholes.price(SPOT, K, T, RATE, sigma, is_call)
    intrinsic = np.maximum(np.where(is_call, 1.0, -1.0) * (SPOT - K * np.exp(-RATE * T)), 0.0)
    keep = np.flatnonzero(premium - intrinsic >= TICK)[:n]
    assert keep.size == n, "the candidate set is too small"
    return premium[keep], K[keep], T[keep], sigma[keep], is_call[keep]


if __name__ == "__main__":
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(json.dumps(measure_analytics()))
