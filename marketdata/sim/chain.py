"""The state of one underlying's contracts, one NumPy array per field (a row per contract).

Prices are integer paise and quantities integer units, as in Kite's binary packets, so a tick
built from them survives a round trip through a frame exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Self

import numpy as np

KIND_CODES = {"CE": 0, "PE": 1, "FUT": 2}
DEPTH_LEVELS = 5
BUY, SELL = 0, 1  # first axis of the depth arrays after the row

# What open interest and the aggressive side do in each regime. Spot moves set the price
# direction; together they produce each of the four buildup labels a trader reads off a chain.
LONG_BUILDUP, SHORT_BUILDUP, SHORT_COVERING, LONG_UNWINDING = range(4)
REGIME_COUNT = 4
OI_DIRECTION = np.array([1, 1, -1, -1])  # new positions opened, or old ones closed
AGGRESSOR = np.array([1, -1, 1, -1])  # buyers lift offers (+1) or sellers hit bids (-1)


@dataclass
class ChainState:
    # What a contract is (fixed when it is added).
    token: np.ndarray  # int64
    is_call: np.ndarray  # bool
    is_future: np.ndarray  # bool
    strike: np.ndarray  # float64, 0 for futures
    expiry_epoch: np.ndarray  # float64, 15:30 IST on the expiry date
    lot: np.ndarray  # int64 units
    tick: np.ndarray  # int64 paise
    liquidity: np.ndarray  # float64, this contract's activity relative to its moneyness peers
    # How it trades now.
    regime: np.ndarray  # int64, one of the four regimes above
    ltp: np.ndarray  # int64 paise
    day_open: np.ndarray
    day_high: np.ndarray
    day_low: np.ndarray
    prev_close: np.ndarray
    volume: np.ndarray  # int64 units, cumulative for the day
    turnover: np.ndarray  # float64 paise x units, for the day's VWAP
    last_quantity: np.ndarray  # int64 units
    last_trade_time: np.ndarray  # float64 epoch seconds
    exchange_time: np.ndarray  # float64 epoch seconds of the latest tick
    oi: np.ndarray  # int64 units
    oi_high: np.ndarray
    oi_low: np.ndarray
    total_buy: np.ndarray  # int64 units resting on the bid, all levels
    total_sell: np.ndarray
    depth_price: np.ndarray  # int64 paise, shape (rows, 2, 5): [row, BUY|SELL, level]; 0 = empty level
    depth_quantity: np.ndarray
    depth_orders: np.ndarray

    @classmethod
    def zeros(cls, rows: int = 0) -> Self:
        columns = {}
        for field in dataclasses.fields(cls):
            shape = (rows, 2, DEPTH_LEVELS) if field.name.startswith("depth_") else (rows,)
            columns[field.name] = np.zeros(shape, dtype=_dtype(field.name))
        return cls(**columns)

    def __len__(self) -> int:
        return len(self.token)

    def select(self, rows: np.ndarray) -> Self:
        """The contracts at `rows` (a boolean mask or indices), as a new state."""
        return type(self)(**{name: column[rows] for name, column in self.columns().items()})

    def concat(self, other: ChainState) -> Self:
        return type(self)(
            **{name: np.concatenate([column, getattr(other, name)]) for name, column in self.columns().items()}
        )

    def columns(self) -> dict[str, np.ndarray]:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


def _dtype(name: str) -> type:
    if name in ("is_call", "is_future"):
        return bool
    if name in ("strike", "expiry_epoch", "liquidity", "turnover", "last_trade_time", "exchange_time"):
        return np.float64
    return np.int64
