"""Order books and trades: five levels a side around the model price, trades at the touch."""

from __future__ import annotations

import numpy as np

from marketdata.sim.chain import AGGRESSOR, BUY, DEPTH_LEVELS, SELL

# Kite sends a level's order count as an unsigned 16-bit number.
_MAX_ORDERS = 9_999
# A contract's total resting quantity is several times what the five visible levels show.
_HIDDEN_DEPTH_RANGE = (6.0, 20.0)


def spread_ticks(
    rng: np.random.Generator, fair: np.ndarray, tick: np.ndarray, moneyness: np.ndarray, is_future: np.ndarray
) -> np.ndarray:
    """Bid-ask spread in ticks: at least one, wider in relative terms away from the money.

    Options quote about 0.03 % of price plus 0.025 % per standard deviation out, so an ATM
    weekly at 200 shows 0.05-0.10 and a deep ITM one at 800 a rupee or more, while a cheap
    far OTM option sits at one or two ticks (a wide spread relative to its price). Futures are
    the tightest book on the exchange: one to three ticks.
    """
    relative = 0.0003 * (1.0 + 0.8 * np.abs(moneyness))
    option_ticks = np.maximum(1, np.rint(fair * relative / tick)) + (rng.random(len(fair)) < 0.35)
    future_ticks = 1 + (rng.random(len(fair)) < 0.5) + (rng.random(len(fair)) < 0.15)
    return np.where(is_future, future_ticks, option_ticks).astype(np.int64)


def build_depth(
    rng: np.random.Generator,
    fair: np.ndarray,
    tick: np.ndarray,
    spread: np.ndarray,
    lot: np.ndarray,
    mean_lots: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Five bids and five offers per row: (price paise, quantity units, orders), each (rows, 2, 5).

    The touch straddles `fair` (paise) with `spread` ticks between bid and ask, the best bid never
    below one tick; deeper levels step away one or two ticks at a time. A bid level that would
    fall to zero or below is left empty (price, quantity and orders 0), as Kite sends it.
    """
    rows = len(fair)
    best_bid = np.maximum(1, np.rint(fair / tick - spread / 2.0)).astype(np.int64)
    best_ask = best_bid + spread
    steps = np.ones((rows, 2, DEPTH_LEVELS), dtype=np.int64) + (rng.random((rows, 2, DEPTH_LEVELS)) < 0.3)
    steps[:, :, 0] = 0
    away = np.cumsum(steps, axis=2)  # ticks from the touch, 0 at the best level
    level_ticks = np.empty((rows, 2, DEPTH_LEVELS), dtype=np.int64)
    level_ticks[:, BUY] = best_bid[:, None] - away[:, BUY]
    level_ticks[:, SELL] = best_ask[:, None] + away[:, SELL]
    present = level_ticks > 0
    deeper = 1.0 + 0.4 * np.arange(DEPTH_LEVELS)  # more size rests away from the touch
    # Exponential sizes (a few big resting orders among small ones); cheaper than Poisson draws,
    # which NumPy makes one element at a time when each has its own mean.
    exponential = rng.standard_exponential((rows, 2, DEPTH_LEVELS))
    lots = 1 + (exponential * mean_lots[:, None, None] * deeper).astype(np.int64)
    orders = np.minimum(
        1 + ((lots - 1) * rng.uniform(0.04, 0.2, (rows, 2, DEPTH_LEVELS))).astype(np.int64), _MAX_ORDERS
    )
    price = np.where(present, level_ticks * tick[:, None, None], 0)
    quantity = np.where(present, lots * lot[:, None, None], 0)
    return price, quantity, np.where(present, orders, 0)


def resting_totals(
    rng: np.random.Generator, depth_quantity: np.ndarray, lot: np.ndarray, regime: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Total buy and sell quantity: the visible depth plus hidden size, leaning to the regime's
    aggressive side (buyers in a long buildup show more total buy quantity)."""
    rows = len(lot)
    lean = 1.0 + 0.25 * AGGRESSOR[regime]
    totals = []
    for side, side_lean in ((BUY, lean), (SELL, 2.0 - lean)):
        visible_lots = depth_quantity[:, side].sum(axis=1) // lot
        hidden = rng.uniform(*_HIDDEN_DEPTH_RANGE, size=rows) * side_lean
        totals.append(np.maximum(visible_lots, np.rint(visible_lots * hidden)).astype(np.int64) * lot)
    return totals[0], totals[1]


def trade_prices(rng: np.random.Generator, depth_price: np.ndarray, regime: np.ndarray) -> np.ndarray:
    """Where the latest trade printed: at the offer when a buyer crossed, at the bid when a seller
    did. The regime's aggressor crosses seven times in ten."""
    buyer_probability = np.where(AGGRESSOR[regime] > 0, 0.7, 0.3)
    buyer_crossed = rng.random(len(regime)) < buyer_probability
    return np.where(buyer_crossed, depth_price[:, SELL, 0], depth_price[:, BUY, 0])


def trade_counts(rng: np.random.Generator, expected: np.ndarray) -> np.ndarray:
    """Poisson counts with these means, drawn cheaply: one uniform per row decides whether any
    trade happened, and only those rows (few, at the feed's 10-20 steps a second) draw more.
    Still exact: given at least one event, the first falls at an exponential time truncated to the
    window, and the rest of the window holds a Poisson number more."""
    any_probability = -np.expm1(-expected)
    counts = (rng.random(len(expected)) < any_probability).astype(np.int64)
    rows = np.flatnonzero(counts)
    if rows.size:
        first = -np.log1p(-rng.random(rows.size) * any_probability[rows])
        counts[rows] += rng.poisson(np.maximum(expected[rows] - first, 0.0))
    return counts


def traded_lots(
    rng: np.random.Generator, trades: np.ndarray, mean_lots_per_trade: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Lots traded over a step with `trades` (>= 1) trades, and the size of the last trade.

    Each trade is one lot plus an exponential number more; their sum is approximated by its mean
    and spread (Gamma-like), which keeps the cost independent of how many trades a step holds."""
    spread = 1.0 + (rng.standard_exponential(len(trades)) - 1.0) / np.sqrt(trades)
    total = trades + np.rint(trades * (mean_lots_per_trade - 1.0) * spread).astype(np.int64)
    last = np.minimum(total, rng.geometric(0.35, size=len(trades)))
    return total, last


def last_arrival(rng: np.random.Generator, rate: np.ndarray, start: float, seconds: float) -> np.ndarray:
    """When the last event of a Poisson process of `rate` fell in (start, start + seconds], given
    that there was one (inverse of its distribution function; exact for any step length)."""
    none_probability = np.exp(-rate * seconds)
    uniform = rng.random(len(rate))
    with np.errstate(divide="ignore", invalid="ignore"):
        before_end = np.log(none_probability + uniform * (1.0 - none_probability)) / np.maximum(rate, 1e-12)
    return start + seconds + np.minimum(np.maximum(before_end, -seconds), 0.0)
