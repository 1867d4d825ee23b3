"""Option-chain figures: compute_chain on a NIFTY chain of 400 contracts against two references.

The chain: spot ~24,000, 200 strikes 50 apart (19,000 to 28,950), a week to expiry, a skewed smile,
quotes on the 0.05 tick with spreads that widen in the wings and deep in the money (where some
contracts have no quote at all), OI and volume peaking near the money and at round strikes.

References, each computing the same figures from the same ChainQuotes:
(a) plain NumPy: IV by tests.benchmarks.baselines.newton_bisection_implied_vol, Greeks by its
    plain_numpy_greeks, and the figures written the straightforward way (the n x n max-pain table,
    the gamma flip on a coarse and a fine grid of the textbook gamma);
(b) vollib in a loop for IV and Greeks, plus the same figure code as (a).

Timing interleaves the three in ROUNDS rounds, timing every call; a round's median is one sample and
the best round's median is reported (on a shared machine noise only adds time), with the p99 over
every call. To show where the time goes, the two black_scholes calls compute_chain makes
(implied_vol, greeks) are timed alone with its arguments, and compute_chain with those two answering
from earlier results: each part runs hot on its own, so the parts need not add up to the whole. No threads, no Django:
`python -m tests.benchmarks.chain` prints the figures as JSON.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable

import numpy as np

from marketdata.analytics import black_scholes
from marketdata.analytics.chain import ChainQuotes, SideQuotes, compute_chain
from tests.benchmarks import baselines

TARGET_MEDIAN_MS = 0.5
ROUNDS = 7
CALLS_PER_ROUND = {
    "ours": 400,
    "implied_vol": 200,
    "greeks": 200,
    "figures": 400,
    "plain_numpy": 40,
    "vollib": 3,
    "to_dict": 100,
}
SPOT = 24_012.35
STRIKES = np.arange(19_000.0, 29_000.0, 50.0)
T = (6 + 6.25 / 24) / 365  # Thursday 15:30 seen from the Friday before, 09:15
RATE = math.log1p(0.0672)
TRUE_DIVIDEND_YIELD = 0.011  # the chain is not told: parity finds it
LOT_SIZE = 75
TICK = 0.05


def measure_chain() -> dict:
    quotes = nifty_chain(np.random.default_rng(2026))
    figures = compute_chain(quotes)
    plain = reference_chain(quotes, baselines.newton_bisection_implied_vol, baselines.plain_numpy_greeks)
    vollib = reference_chain(quotes, baselines.vollib_implied_vol_loop, vollib_greeks)
    # the two black_scholes calls inside compute_chain, with its arguments, to show the split
    n, contract_strikes = STRIKES.size, np.concatenate([STRIKES, STRIKES])
    is_call = np.arange(2 * n) < n
    pricing = np.concatenate([figures.ce.pricing_price, figures.pe.pricing_price])
    iv = np.concatenate([figures.ce.iv, figures.pe.iv])
    stand_in_iv = np.where(np.isnan(iv), 1.0, iv)
    stand_in_greeks = black_scholes.greeks(
        quotes.spot, contract_strikes, T, RATE, iv, is_call, figures.implied_dividend_yield
    )
    model = (quotes.spot, contract_strikes, T, RATE)
    samples = interleaved_samples(
        {
            "ours": lambda: compute_chain(quotes),
            "implied_vol": lambda: black_scholes.implied_vol(pricing, *model, is_call, figures.implied_dividend_yield),
            "greeks": lambda: black_scholes.greeks(*model, stand_in_iv, is_call, figures.implied_dividend_yield),
            "figures": lambda: figures_only(quotes, iv, stand_in_greeks),
            "plain_numpy": lambda: reference_chain(
                quotes, baselines.newton_bisection_implied_vol, baselines.plain_numpy_greeks
            ),
            "vollib": lambda: reference_chain(quotes, baselines.vollib_implied_vol_loop, vollib_greeks),
            "to_dict": figures.to_dict,
        }
    )
    best = {name: min(statistics.median(round_) for round_ in rounds) * 1e3 for name, rounds in samples.items()}
    every_call = sorted(seconds for round_ in samples["ours"] for seconds in round_)
    return {
        "contracts": 2 * STRIKES.size,
        "contracts_with_iv": int(np.isfinite(figures.ce.iv).sum() + np.isfinite(figures.pe.iv).sum()),
        "ours_median_ms": best["ours"],
        "ours_p99_ms": every_call[int(0.99 * (len(every_call) - 1))] * 1e3,
        "of_which_implied_vol_ms": best["implied_vol"],
        "of_which_greeks_ms": best["greeks"],
        "of_which_figures_ms": best["figures"],
        "plain_numpy_median_ms": best["plain_numpy"],
        "vollib_median_ms": best["vollib"],
        "speedup_vs_plain_numpy": best["plain_numpy"] / best["ours"],
        "speedup_vs_vollib": best["vollib"] / best["ours"],
        "target_median_ms": TARGET_MEDIAN_MS,
        "to_dict_median_ms": best["to_dict"],
        "figures_agree_with_plain_numpy": disagreements(figures, plain) == [],
        "figures_agree_with_vollib": disagreements(figures, vollib) == [],
    }


def figures_only(quotes: ChainQuotes, iv: np.ndarray, greeks: black_scholes.Greeks) -> None:
    """compute_chain with black_scholes' implied_vol and greeks answering from earlier results."""
    saved = black_scholes.implied_vol, black_scholes.greeks
    black_scholes.implied_vol, black_scholes.greeks = (lambda *_: iv), (lambda *_: greeks)
    try:
        compute_chain(quotes)
    finally:
        black_scholes.implied_vol, black_scholes.greeks = saved


def interleaved_samples(actions: dict[str, Callable[[], object]]) -> dict[str, list[list[float]]]:
    """Seconds per call, one list per round and action; the actions take turns round by round."""
    for action in actions.values():
        action()  # warm caches
    samples: dict[str, list[list[float]]] = {name: [] for name in actions}
    for _ in range(ROUNDS):
        for name, action in actions.items():
            seconds = []
            for _ in range(CALLS_PER_ROUND[name]):
                started = time.perf_counter()
                action()
                seconds.append(time.perf_counter() - started)
            samples[name].append(seconds)
    return samples


def nifty_chain(rng: np.random.Generator) -> ChainQuotes:
    n = STRIKES.size
    forward = SPOT * math.exp((RATE - TRUE_DIVIDEND_YIELD) * T)
    moneyness = np.log(STRIKES / forward)
    smile = np.clip(0.128 - 0.28 * moneyness + 3.2 * moneyness**2, 0.08, 1.0)
    distance = np.abs(moneyness)
    round_strike = np.where(STRIKES % 500 == 0, 3.0, np.where(STRIKES % 100 == 0, 1.6, 1.0))
    sides = []
    for is_call in (True, False):
        value = black_scholes.price(SPOT, STRIKES, T, RATE, smile, is_call, TRUE_DIVIDEND_YIELD)
        itm = moneyness < 0 if is_call else moneyness > 0
        # writers crowd out of the money: call OI peaks 1.5 % above the forward, put OI as far below
        writers = moneyness - (0.015 if is_call else -0.015)
        # half-spread: a tick near the money, 0.4 % of the premium, wider deep in the money
        half_spread = np.maximum(TICK, value * np.where(itm, 0.004 + 0.02 * distance, 0.004))
        mid = on_tick(value + rng.normal(0.0, 0.3, n) * half_spread)
        bid = np.where(mid - half_spread >= TICK, on_tick(mid - half_spread), 0.0)  # 0: no bid
        ask = on_tick(np.maximum(mid + half_spread, TICK))
        last = np.maximum(on_tick(mid + rng.uniform(-1.0, 1.0, n) * half_spread), TICK)
        oi = lots(8e5 * np.exp(-0.5 * (writers / 0.03) ** 2) * round_strike * rng.uniform(0.5, 1.5, n))
        oi = np.where(itm & (distance > 0.05), lots(oi * 0.1), oi)
        # Deep in the money some contracts have not traded, or show no quote, today.
        silent = itm & (distance > 0.08) & (rng.random(n) < 0.3)
        bid, ask, last = (np.where(silent, np.nan, values) for values in (bid, ask, last))
        sides.append(
            SideQuotes(
                last_price=last,
                bid=bid,
                ask=ask,
                volume=lots(oi * rng.lognormal(0.3, 0.8, n)),
                oi=oi,
                previous_close=np.maximum(on_tick(last * np.exp(rng.normal(0.0, 0.15, n))), TICK),
                reference_oi=lots(oi * (1.0 + rng.normal(0.0, 0.08, n))),
            )
        )
    return ChainQuotes(
        strikes=STRIKES,
        spot=SPOT,
        time_to_expiry_years=T,
        ce=sides[0],
        pe=sides[1],
        future_price=math.nan,
        rate=RATE,
        dividend_yield=0.0,
        lot_size=LOT_SIZE,
    )


def on_tick(values: np.ndarray) -> np.ndarray:
    return np.round(values / TICK) * TICK


def lots(values: np.ndarray) -> np.ndarray:
    return np.maximum(np.round(values / LOT_SIZE), 0.0) * LOT_SIZE


def vollib_greeks(S, K, T, r, sigma, is_call, q) -> dict[str, np.ndarray]:
    """vollib's Greeks where there is an IV (it raises on a NaN volatility), NaN elsewhere."""
    known = np.isfinite(sigma)
    values = baselines.vollib_greeks_loop(S, K[known], T, r, sigma[known], is_call[known], q)
    result = {name: np.full(K.shape, np.nan) for name in values}
    for name, column in values.items():
        result[name][known] = column
    return result


def reference_chain(quotes: ChainQuotes, implied_vol, greeks) -> dict:
    """The chain's figures as straightforward code computes them, IV and Greeks as given."""
    K, n, S, T, r = quotes.strikes, quotes.strikes.size, quotes.spot, quotes.time_to_expiry_years, quotes.rate
    prices = []
    for side in (quotes.ce, quotes.pe):
        mid = (side.bid + side.ask) / 2
        spread = side.ask - side.bid
        sane = (side.bid > 0) & (spread >= 0) & (spread <= np.maximum(0.25 * mid, 0.20))
        prices.append(np.where(sane, mid, np.where(side.last_price > 0, side.last_price, np.nan)))
    parity = K + np.exp(r * T) * (prices[0] - prices[1])
    usable = np.flatnonzero(parity > 0)
    guess = S * math.exp((r - quotes.dividend_yield) * T)
    nearest = usable[np.argsort(np.abs(K[usable] - guess), kind="stable")[:5]]
    forward = float(np.median(parity[nearest]))
    q = r - math.log(forward / S) / T
    contract_strikes, is_call = np.concatenate([K, K]), np.arange(2 * n) < n
    iv = implied_vol(np.concatenate(prices), S, contract_strikes, T, r, is_call, q)
    g = greeks(S, contract_strikes, T, r, iv, is_call, q)

    atm = int(np.argmin(np.abs(K - forward)))
    atm_iv = float(np.nanmean([iv[atm], iv[n + atm]]))
    iv_25d_call = iv_at_delta(g["delta"][:n], iv[:n], 0.25)
    iv_25d_put = iv_at_delta(g["delta"][n:], iv[n:], -0.25)
    ce_oi, pe_oi = np.nan_to_num(quotes.ce.oi), np.nan_to_num(quotes.pe.oi)
    payout = np.maximum(K[:, None] - K[None, :], 0) @ ce_oi + np.maximum(K[None, :] - K[:, None], 0) @ pe_oi
    signed_oi = np.concatenate([quotes.ce.oi, -quotes.pe.oi])
    gex = g["gamma"] * signed_oi * S**2 * 0.01
    both = np.vstack([gex[:n], gex[n:]])
    strike_gex = np.where(np.isnan(both).all(axis=0), np.nan, np.nansum(both, axis=0))
    buildup, strength = reference_buildup(quotes)
    return {
        "forward": forward,
        "iv": iv,
        "delta": g["delta"],
        "gamma": g["gamma"],
        "atm_strike": float(K[atm]),
        "atm_iv": atm_iv,
        "atm_straddle": float(prices[0][atm] + prices[1][atm]),
        "expected_move": S * atm_iv * math.sqrt(T),
        "iv_25d_call": iv_25d_call,
        "iv_25d_put": iv_25d_put,
        "pcr_oi": pe_oi.sum() / ce_oi.sum(),
        "pcr_volume": np.nansum(quotes.pe.volume) / np.nansum(quotes.ce.volume),
        "max_pain": float(K[np.argmin(payout)]),
        "call_wall": float(K[np.argmax(ce_oi)]),
        "put_wall": float(K[np.argmax(pe_oi)]),
        "gex": strike_gex,
        "total_gex": float(np.nansum(gex)),
        "gamma_flip": reference_gamma_flip(S, contract_strikes, iv, signed_oi, T, r, q),
        "buildup": buildup,
        "buildup_strength": strength,
    }


def iv_at_delta(delta: np.ndarray, iv: np.ndarray, target: float) -> float:
    known = ~np.isnan(iv)
    order = np.argsort(delta[known])
    return float(np.interp(target, delta[known][order], iv[known][order]))


def reference_gamma_flip(S, K, iv, signed_oi, T, r, q) -> float:
    use = ~np.isnan(iv) & ~np.isnan(signed_oi) & (signed_oi != 0)
    K, iv, signed_oi = K[use], iv[use], signed_oi[use]

    def total_gex(spots: np.ndarray) -> np.ndarray:
        s = spots[:, None]
        d1 = (np.log(s / K) + (r - q + 0.5 * iv**2) * T) / (iv * np.sqrt(T))
        gamma = np.exp(-q * T) * np.exp(-0.5 * d1**2) / np.sqrt(2 * np.pi) / (s * iv * np.sqrt(T))
        return (gamma * signed_oi).sum(axis=1) * spots**2 * 0.01

    def crossing(spots: np.ndarray, totals: np.ndarray) -> tuple[float, int]:
        steps = np.flatnonzero(np.sign(totals[:-1]) != np.sign(totals[1:]))
        if steps.size == 0:
            return math.nan, -1
        levels = spots[steps] - totals[steps] * (spots[steps + 1] - spots[steps]) / (totals[steps + 1] - totals[steps])
        best = int(np.argmin(np.abs(levels - S)))
        return float(levels[best]), int(steps[best])

    coarse = S * np.linspace(0.9, 1.1, 41)
    _, step = crossing(coarse, total_gex(coarse))
    if step < 0:
        return math.nan
    fine = np.linspace(coarse[step], coarse[step + 1], 101)
    return crossing(fine, total_gex(fine))[0]


def reference_buildup(quotes: ChainQuotes) -> tuple[np.ndarray, np.ndarray]:
    side_arrays = (quotes.ce, quotes.pe)
    price_change = np.concatenate([s.last_price - s.previous_close for s in side_arrays])
    oi_change = np.concatenate([s.oi - s.reference_oi for s in side_arrays])
    oi = np.concatenate([s.oi for s in side_arrays])
    volume = np.concatenate([s.volume for s in side_arrays])
    codes = np.select(
        [
            (price_change > 0) & (oi_change > 0),
            (price_change < 0) & (oi_change > 0),
            (price_change > 0) & (oi_change < 0),
            (price_change < 0) & (oi_change < 0),
        ],
        [1, 2, 3, 4],
        default=0,
    )
    magnitude = np.abs(oi_change)
    spread = np.nanstd(magnitude)
    z = (magnitude - np.nanmean(magnitude)) / spread if spread > 0 else np.zeros_like(magnitude)
    with np.errstate(invalid="ignore"):  # 0 / 0 where a contract has neither
        activity = np.nan_to_num(volume / (volume + oi))
    strength = 100 * (0.7 * np.clip((z + 3) / 6, 0, 1) + 0.3 * activity)
    return codes, np.where(codes > 0, strength, np.nan)


def disagreements(figures, reference: dict) -> list[str]:
    """Names of the figures where ours and a reference differ by more than their methods explain."""
    n = figures.strikes.size
    ours = {
        "forward": figures.forward,
        "iv": np.concatenate([figures.ce.iv, figures.pe.iv]),
        "delta": np.concatenate([figures.ce.delta, figures.pe.delta]),
        "gamma": np.concatenate([figures.ce.gamma, figures.pe.gamma]),
        "atm_strike": figures.atm_strike,
        "atm_iv": figures.atm_iv,
        "atm_straddle": figures.atm_straddle,
        "expected_move": figures.expected_move,
        "iv_25d_call": figures.iv_25d_call,
        "iv_25d_put": figures.iv_25d_put,
        "pcr_oi": figures.pcr_oi,
        "pcr_volume": figures.pcr_volume,
        "max_pain": figures.max_pain,
        "call_wall": figures.call_wall,
        "put_wall": figures.put_wall,
        "gex": figures.gex,
        "total_gex": figures.total_gex,
        "gamma_flip": figures.gamma_flip,
        "buildup": np.concatenate([figures.ce.buildup, figures.pe.buildup]),
        "buildup_strength": np.concatenate([figures.ce.buildup_strength, figures.pe.buildup_strength]),
    }
    # the references' gamma flip is linear on a grid 1/100 of a 0.5 % step apart: a few rupees
    tolerances = {"gamma_flip": 5.0, "expected_move": 1e-3, "forward": 1e-6, "atm_straddle": 1e-9}
    names = []
    for name, value in ours.items():
        expected = reference[name]
        tolerance = tolerances.get(name, 0.0)
        if not np.allclose(value, expected, rtol=1e-6, atol=tolerance, equal_nan=True):
            names.append(name)
    assert len(ours["iv"]) == 2 * n
    return names


if __name__ == "__main__":
    print(json.dumps(measure_chain()))
