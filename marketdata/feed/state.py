"""The feed's in-memory state: the latest values of every subscribed instrument.

Preallocated NumPy arrays indexed by slot (one slot per instrument, assigned at
subscribe time) so that a parsed frame updates the state in a handful of vectorised
assignments. Tokens map to slots through a sorted array and `searchsorted`, which
stays O(log n) per tick with no Python dict lookups on the hot path.

No Django import: the pipeline benchmark runs this on plain arrays.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from marketdata.feed.universe import MAX_INSTRUMENTS

# Columns copied from a parsed TickBatch into the state, by dtype.
FLOAT_COLUMNS = ("last_price", "average_traded_price", "open", "high", "low", "close", "change")
INT_COLUMNS = (
    "last_traded_quantity",
    "volume_traded",
    "total_buy_quantity",
    "total_sell_quantity",
    "oi",
    "oi_day_high",
    "oi_day_low",
    "last_trade_time",
    "exchange_timestamp",
)
DEPTH_FLOAT_COLUMNS = ("depth_buy_price", "depth_sell_price")
DEPTH_INT_COLUMNS = ("depth_buy_quantity", "depth_buy_orders", "depth_sell_quantity", "depth_sell_orders")


class FeedState:
    """Latest values per instrument slot, and which slots changed since the last publish."""

    def __init__(self, capacity: int = MAX_INSTRUMENTS + 1000) -> None:
        self.capacity = capacity
        self.tokens = np.zeros(capacity, dtype=np.int64)  # slot -> token (0 = free)
        self.columns: dict[str, np.ndarray] = {}
        for name in FLOAT_COLUMNS:
            self.columns[name] = np.zeros(capacity, dtype=np.float64)
        for name in INT_COLUMNS:
            self.columns[name] = np.zeros(capacity, dtype=np.int64)
        for name in DEPTH_FLOAT_COLUMNS:
            self.columns[name] = np.zeros((capacity, 5), dtype=np.float64)
        for name in DEPTH_INT_COLUMNS:
            self.columns[name] = np.zeros((capacity, 5), dtype=np.int64)
        self.mode = np.zeros(capacity, dtype=np.uint8)
        self.ticks_seen = np.zeros(capacity, dtype=np.int64)
        self.changed = np.zeros(capacity, dtype=bool)
        # The same, kept apart for the chain refresher, which looks on its own schedule.
        self.chain_changed = np.zeros(capacity, dtype=bool)
        self._slot_of: dict[int, int] = {}
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._sorted_tokens = np.zeros(0, dtype=np.int64)
        self._sorted_slots = np.zeros(0, dtype=np.int64)

    # -- slots ------------------------------------------------------------------
    def add(self, tokens: Iterable[int]) -> np.ndarray:
        """Give each new token a slot (existing ones keep theirs); returns the slots in order."""
        slots = []
        for token in tokens:
            token = int(token)
            slot = self._slot_of.get(token)
            if slot is None:
                if not self._free:
                    raise ValueError(f"the feed state holds at most {self.capacity} instruments")
                slot = self._free.pop()
                self._slot_of[token] = slot
                self._clear(slot)
                self.tokens[slot] = token
            slots.append(slot)
        self._reindex()
        return np.asarray(slots, dtype=np.int64)

    def remove(self, tokens: Iterable[int]) -> None:
        for token in tokens:
            slot = self._slot_of.pop(int(token), None)
            if slot is not None:
                self._clear(slot)
                self._free.append(slot)
        self._reindex()

    def slot(self, token: int) -> int | None:
        return self._slot_of.get(int(token))

    def slots_for(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slots of `tokens`, and a mask of which tokens are known (unknown ones are not in the state)."""
        if self._sorted_tokens.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(len(tokens), dtype=bool)
        positions = np.searchsorted(self._sorted_tokens, tokens)
        positions[positions >= self._sorted_tokens.size] = 0
        known = self._sorted_tokens[positions] == tokens
        return self._sorted_slots[positions[known]], known

    @property
    def instrument_count(self) -> int:
        return len(self._slot_of)

    @property
    def used_slots(self) -> np.ndarray:
        return self._sorted_slots

    # -- updates ------------------------------------------------------------------
    def apply(self, batch) -> tuple[np.ndarray, np.ndarray]:
        """Copy a parsed TickBatch into the state; returns (slots, known mask) for the batch's rows.

        Where a token appears twice in one batch, its later packet wins (NumPy's
        fancy assignment writes in order). An ltp packet updates only the last
        price; quote and full packets update what they carry.
        """
        slots, known = self.slots_for(batch.instrument_token)
        if slots.size == 0:
            return slots, known
        rows = np.flatnonzero(known)
        mode = batch.mode[rows]
        self.columns["last_price"][slots] = batch.last_price[rows]
        carries_quote = mode > 0
        if carries_quote.any():
            quote_rows, quote_slots = rows[carries_quote], slots[carries_quote]
            # Index packets carry no volume or OI: their zeros are what the state should show.
            for name in FLOAT_COLUMNS[1:] + INT_COLUMNS:
                self.columns[name][quote_slots] = getattr(batch, name)[quote_rows]
            full = mode == 2
            if full.any():
                full_rows, full_slots = rows[full], slots[full]
                for name in DEPTH_FLOAT_COLUMNS + DEPTH_INT_COLUMNS:
                    self.columns[name][full_slots] = getattr(batch, name)[full_rows]
        self.mode[slots] = mode
        np.add.at(self.ticks_seen, slots, 1)
        self.changed[slots] = True
        self.chain_changed[slots] = True
        return slots, known

    def take_changed(self) -> np.ndarray:
        """Slots changed since the last call, and forget them (the conflation step)."""
        slots = np.flatnonzero(self.changed)
        self.changed[slots] = False
        return slots

    def take_chain_changed(self) -> np.ndarray:
        """Slots changed since the chain refresher last looked, and forget them."""
        slots = np.flatnonzero(self.chain_changed)
        self.chain_changed[slots] = False
        return slots

    def _clear(self, slot: int) -> None:
        self.tokens[slot] = 0
        for array in self.columns.values():
            array[slot] = 0
        self.mode[slot] = 0
        self.ticks_seen[slot] = 0
        self.changed[slot] = False
        self.chain_changed[slot] = False

    def _reindex(self) -> None:
        tokens = np.fromiter(self._slot_of.keys(), dtype=np.int64, count=len(self._slot_of))
        slots = np.fromiter(self._slot_of.values(), dtype=np.int64, count=len(self._slot_of))
        order = np.argsort(tokens)
        self._sorted_tokens, self._sorted_slots = tokens[order], slots[order]
