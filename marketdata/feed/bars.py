"""1-minute bars built from ticks, vectorised over instrument slots.

A bar covers [start, start + 60 s) of exchange time. OHLC comes from the last
price, volume from the change in Kite's cumulative day volume, OI is the last OI
seen in the minute. A bar closes on the first tick of a later minute or, for a
quiet instrument, when the timer sees the minute is over, whichever comes first.
A tick older than its instrument's open bar (it arrived late) is not counted.

No Django import: storage and publishing of closed bars are the pipeline's job.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BAR_SECONDS = 60
NO_BAR = -1


@dataclass(frozen=True)
class ClosedBars:
    """Columns of the bars closed by one update, one entry per bar."""

    instrument_token: np.ndarray
    start: np.ndarray  # epoch seconds of the minute
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    oi: np.ndarray
    tick_count: np.ndarray

    def __len__(self) -> int:
        return int(self.instrument_token.size)

    @classmethod
    def concat(cls, parts: list[ClosedBars]) -> ClosedBars:
        parts = [part for part in parts if len(part)]
        if not parts:
            return EMPTY_BARS
        if len(parts) == 1:
            return parts[0]
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in cls.__dataclass_fields__})

    def rows(self) -> list[dict]:
        """Plain Python rows (for storage and messages)."""
        return [
            {
                "instrument_token": int(self.instrument_token[i]),
                "start": int(self.start[i]),
                "open": float(self.open[i]),
                "high": float(self.high[i]),
                "low": float(self.low[i]),
                "close": float(self.close[i]),
                "volume": int(self.volume[i]),
                "oi": int(self.oi[i]),
                "tick_count": int(self.tick_count[i]),
            }
            for i in range(len(self))
        ]


EMPTY_BARS = ClosedBars(
    *(np.zeros(0, dtype=np.int64) for _ in range(2)),
    *(np.zeros(0, dtype=np.float64) for _ in range(4)),
    *(np.zeros(0, dtype=np.int64) for _ in range(3)),
)


class BarBuilder:
    def __init__(self, slot_tokens: np.ndarray) -> None:
        """`slot_tokens` is the feed state's slot -> token array (shared, not copied)."""
        capacity = slot_tokens.size
        self.slot_tokens = slot_tokens
        self.start = np.full(capacity, NO_BAR, dtype=np.int64)
        self.open = np.zeros(capacity)
        self.high = np.zeros(capacity)
        self.low = np.zeros(capacity)
        self.close = np.zeros(capacity)
        self.last_volume = np.zeros(capacity, dtype=np.int64)
        # Cumulative volume when the current bar opened; the bar's volume is the difference.
        self.volume_base = np.zeros(capacity, dtype=np.int64)
        self.has_volume_base = np.zeros(capacity, dtype=bool)
        self.oi = np.zeros(capacity, dtype=np.int64)
        self.tick_count = np.zeros(capacity, dtype=np.int64)
        self.late_ticks = 0

    def reset(self, slots: np.ndarray) -> None:
        """Forget the bars of slots given to new instruments."""
        self.start[slots] = NO_BAR
        self.has_volume_base[slots] = False
        self.tick_count[slots] = 0

    def update(
        self, slots: np.ndarray, price: np.ndarray, volume: np.ndarray, oi: np.ndarray, timestamp: np.ndarray
    ) -> ClosedBars:
        """Add ticks (in arrival order) and return the bars they closed."""
        if slots.size == 0:
            return EMPTY_BARS
        minute = timestamp - timestamp % BAR_SECONDS
        late = minute < self.start[slots]
        if late.any():
            self.late_ticks += int(late.sum())
            keep = ~late
            slots, price, volume, oi, minute = slots[keep], price[keep], volume[keep], oi[keep], minute[keep]
        closed = []
        minutes = np.unique(minute)
        for current in minutes:
            if minutes.size == 1:
                s, p, v, o = slots, price, volume, oi
            else:
                in_minute = minute == current
                s, p, v, o = slots[in_minute], price[in_minute], volume[in_minute], oi[in_minute]
            closed.append(self._add_minute(int(current), s, p, v, o))
        return ClosedBars.concat(closed)

    def close_due(self, now: float) -> ClosedBars:
        """Close every open bar whose minute ended by `now` (epoch seconds of exchange time)."""
        due = np.flatnonzero((self.start != NO_BAR) & (self.start + BAR_SECONDS <= now))
        bars = self._emit(due)
        self.start[due] = NO_BAR
        return bars

    def _add_minute(self, minute: int, slots: np.ndarray, price, volume, oi) -> ClosedBars:
        unique_slots, first = np.unique(slots, return_index=True)
        # The last occurrence of each slot: first occurrence in the reversed order.
        _, last_from_end = np.unique(slots[::-1], return_index=True)
        last = slots.size - 1 - last_from_end

        current_start = self.start[unique_slots]
        closing = unique_slots[(current_start != NO_BAR) & (current_start < minute)]
        bars = self._emit(closing)

        opening = current_start != minute
        open_slots = unique_slots[opening]
        first_price = price[first[opening]]
        self.start[open_slots] = minute
        self.open[open_slots] = first_price
        self.high[open_slots] = first_price
        self.low[open_slots] = first_price
        self.tick_count[open_slots] = 0
        new_base = open_slots[~self.has_volume_base[open_slots]]
        if new_base.size:
            # First bar seen for the instrument: Kite's volume is cumulative for the day,
            # so the first tick is the baseline (what traded before it is not this bar's).
            first_volume = volume[first[opening]][~self.has_volume_base[open_slots]]
            self.volume_base[new_base] = first_volume
            self.last_volume[new_base] = first_volume
            self.has_volume_base[new_base] = True

        np.maximum.at(self.high, slots, price)
        np.minimum.at(self.low, slots, price)
        self.close[unique_slots] = price[last]
        self.last_volume[unique_slots] = volume[last]
        self.oi[unique_slots] = oi[last]
        np.add.at(self.tick_count, slots, 1)
        return bars

    def _emit(self, slots: np.ndarray) -> ClosedBars:
        if slots.size == 0:
            return EMPTY_BARS
        traded = self.last_volume[slots] - self.volume_base[slots]
        # A smaller cumulative volume means a new trading day began: count from zero.
        traded = np.where(traded < 0, self.last_volume[slots], traded)
        bars = ClosedBars(
            instrument_token=self.slot_tokens[slots].copy(),
            start=self.start[slots].copy(),
            open=self.open[slots].copy(),
            high=self.high[slots].copy(),
            low=self.low[slots].copy(),
            close=self.close[slots].copy(),
            volume=traded,
            oi=self.oi[slots].copy(),
            tick_count=self.tick_count[slots].copy(),
        )
        self.volume_base[slots] = self.last_volume[slots]
        return bars
