"""Tick dicts in kiteconnect's shape, built from the simulator's arrays.

Prices leave as ``paise / 100`` and quantities as Python ints, exactly what kiteconnect's parser
yields from a binary packet; times are aware IST datetimes to the second.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from marketdata.sim.chain import BUY, SELL, ChainState
from marketdata.sim.clock import TimestampCache

Tick = dict[str, Any]


def index_tick(
    token: int,
    ltp: int,
    day_open: int,
    day_high: int,
    day_low: int,
    prev_close: int,
    exchange_time: float,
    timestamps: TimestampCache,
) -> Tick:
    """An index's full tick: Kite's index packets carry only these values."""
    return {
        "instrument_token": token,
        "mode": "full",
        "last_price": ltp / 100,
        "ohlc": {"open": day_open / 100, "high": day_high / 100, "low": day_low / 100, "close": prev_close / 100},
        "exchange_timestamp": timestamps(int(exchange_time)),
    }


def contract_ticks(chain: ChainState, rows: np.ndarray, timestamps: TimestampCache) -> list[Tick]:
    """Full-mode ticks for the contracts at `rows`, in that order."""
    # tolist() once per column turns NumPy scalars into Python ints and floats in bulk.
    token, ltp = chain.token[rows].tolist(), chain.ltp[rows].tolist()
    last_quantity, volume = chain.last_quantity[rows].tolist(), chain.volume[rows].tolist()
    average = np.rint(chain.turnover[rows] / np.maximum(chain.volume[rows], 1)).astype(np.int64).tolist()
    total_buy, total_sell = chain.total_buy[rows].tolist(), chain.total_sell[rows].tolist()
    day_open, day_high = chain.day_open[rows].tolist(), chain.day_high[rows].tolist()
    day_low, prev_close = chain.day_low[rows].tolist(), chain.prev_close[rows].tolist()
    trade_time = chain.last_trade_time[rows].astype(np.int64).tolist()
    exchange_time = chain.exchange_time[rows].astype(np.int64).tolist()
    oi, oi_high, oi_low = chain.oi[rows].tolist(), chain.oi_high[rows].tolist(), chain.oi_low[rows].tolist()
    depth_price = chain.depth_price[rows].tolist()
    depth_quantity = chain.depth_quantity[rows].tolist()
    depth_orders = chain.depth_orders[rows].tolist()
    ticks = []
    for i in range(len(token)):
        price, quantity, orders = depth_price[i], depth_quantity[i], depth_orders[i]
        ticks.append(
            {
                "instrument_token": token[i],
                "mode": "full",
                "last_price": ltp[i] / 100,
                "last_traded_quantity": last_quantity[i],
                "average_traded_price": average[i] / 100,
                "volume_traded": volume[i],
                "total_buy_quantity": total_buy[i],
                "total_sell_quantity": total_sell[i],
                "ohlc": {
                    "open": day_open[i] / 100,
                    "high": day_high[i] / 100,
                    "low": day_low[i] / 100,
                    "close": prev_close[i] / 100,
                },
                "last_trade_time": timestamps(trade_time[i]),
                "oi": oi[i],
                "oi_day_high": oi_high[i],
                "oi_day_low": oi_low[i],
                "exchange_timestamp": timestamps(exchange_time[i]),
                "depth": {
                    "buy": _side(price[BUY], quantity[BUY], orders[BUY]),
                    "sell": _side(price[SELL], quantity[SELL], orders[SELL]),
                },
            }
        )
    return ticks


def _side(price: list[int], quantity: list[int], orders: list[int]) -> list[dict[str, Any]]:
    return [
        {"quantity": quantity[level], "price": price[level] / 100, "orders": orders[level]}
        for level in range(len(price))
    ]
