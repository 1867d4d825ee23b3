"""Tick storage throughput: TickWriter (binary COPY) against the ORM's bulk_create.

Runs inside a Django process that is already set up, on a database with migrations
applied (the bench's scratch PostgreSQL). Leaves the Tick table as it found it.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import numpy as np

from marketdata.feed.storage import TickWriter
from marketdata.models import Tick

FRAME_ROWS = 500  # ticks per submit(), about one busy Kite frame
REFERENCE_ROWS = 20_000
RECEIVED_AT = 1_767_245_400.0  # 2026-01-01 11:00 IST


def synthetic_columns(n: int, *, seed: int = 7) -> dict[str, np.ndarray]:
    """n full-mode ticks over 3000 instruments, shaped like a parsed TickBatch."""
    rng = np.random.default_rng(seed)
    price = np.round(rng.uniform(1, 30_000, n), 2)
    spread = np.round(rng.uniform(0.05, 2, n), 2)
    seconds = RECEIVED_AT + np.arange(n) // 2_000  # 2000 ticks a second
    quantities = {
        name: rng.integers(0, 10_000_000, n, dtype=np.int64)
        for name in ("last_traded_quantity", "volume_traded", "total_buy_quantity", "total_sell_quantity", "oi")
    }
    depth_quantity = rng.integers(1, 5_000, (n, 5), dtype=np.int64)
    depth_offsets = np.arange(5) * 0.05
    return {
        "instrument_token": rng.integers(256_265, 256_265 + 3_000, n, dtype=np.int64),
        "mode": np.full(n, 2, dtype=np.uint8),
        "last_price": price,
        "average_traded_price": np.round(price * 0.999, 2),
        "open": np.round(price * 0.99, 2),
        "high": np.round(price * 1.01, 2),
        "low": np.round(price * 0.98, 2),
        "close": np.round(price * 0.995, 2),
        **quantities,
        "oi_day_high": quantities["oi"] + 1_000,
        "oi_day_low": np.maximum(quantities["oi"] - 1_000, 0),
        "exchange_timestamp": seconds.astype(np.int64),
        # One tick in four without a last trade time (NULL), as ltp/quote-mode ticks have.
        "last_trade_time": np.where(np.arange(n) % 4 == 0, 0, seconds - 1).astype(np.int64),
        "depth_buy_price": np.round(price - spread / 2, 2)[:, None] - depth_offsets,
        "depth_buy_quantity": depth_quantity,
        "depth_sell_price": np.round(price + spread / 2, 2)[:, None] + depth_offsets,
        "depth_sell_quantity": depth_quantity[:, ::-1].copy(),
    }


def measure_tick_storage(n: int = 200_000) -> dict:
    """Ticks per second from the first submit() to stop() returning with all rows committed."""
    columns = synthetic_columns(n)
    Tick.objects.all().delete()
    writer = TickWriter(max_backlog_rows=n)
    started = time.perf_counter()
    writer.start()
    for start in range(0, n, FRAME_ROWS):
        frame = {name: values[start : start + FRAME_ROWS] for name, values in columns.items()}
        writer.submit(frame, received_at=RECEIVED_AT)
    status = writer.stop()
    seconds = time.perf_counter() - started
    stored = Tick.objects.count()
    assert status.written == stored == n and status.dropped == 0, f"stored {stored} of {n}: {status}"
    Tick.objects.all().delete()

    reference_ticks_per_s = orm_reference(columns)
    return {"ticks": n, "ticks_per_s": n / seconds, "reference_ticks_per_s": reference_ticks_per_s}


def orm_reference(columns: dict[str, np.ndarray]) -> float:
    """The straightforward Django code: a Tick per row from the columns, bulk_create in batches of 2000."""
    started = time.perf_counter()
    c = {name: values[:REFERENCE_ROWS].tolist() for name, values in columns.items()}

    def price(value: float) -> Decimal:
        return Decimal(str(round(value, 4)))

    def moment(seconds: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(seconds, dt.UTC)

    ticks = [
        Tick(
            instrument_token=c["instrument_token"][i],
            exchange_timestamp=moment(c["exchange_timestamp"][i] or RECEIVED_AT),
            mode=c["mode"][i],
            last_price=price(c["last_price"][i]),
            last_traded_quantity=c["last_traded_quantity"][i],
            average_traded_price=price(c["average_traded_price"][i]),
            volume_traded=c["volume_traded"][i],
            total_buy_quantity=c["total_buy_quantity"][i],
            total_sell_quantity=c["total_sell_quantity"][i],
            open=price(c["open"][i]),
            high=price(c["high"][i]),
            low=price(c["low"][i]),
            close=price(c["close"][i]),
            last_trade_time=moment(c["last_trade_time"][i]) if c["last_trade_time"][i] else None,
            oi=c["oi"][i],
            oi_day_high=c["oi_day_high"][i],
            oi_day_low=c["oi_day_low"][i],
            bid_price=price(c["depth_buy_price"][i][0]),
            bid_quantity=c["depth_buy_quantity"][i][0],
            ask_price=price(c["depth_sell_price"][i][0]),
            ask_quantity=c["depth_sell_quantity"][i][0],
        )
        for i in range(len(c["instrument_token"]))
    ]
    Tick.objects.bulk_create(ticks, batch_size=2000)
    seconds = time.perf_counter() - started
    Tick.objects.all().delete()
    return len(ticks) / seconds
