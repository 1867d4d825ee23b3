"""The synchronous hot path of the feed: frame -> parse -> state -> bars -> storage queue.

Called for every binary frame, on the event loop's thread, so it never blocks: the
database and Redis are reached later, by the publisher, at the conflation interval.
No Django import: the pipeline benchmark runs it on its own.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from marketdata.feed.bars import BarBuilder, ClosedBars
from marketdata.feed.state import FeedState
from marketdata.kite import FrameError, parse_frame

log = logging.getLogger(__name__)

# A bad frame is logged at most this often; every one is counted.
FRAME_ERROR_LOG_SECONDS = 60.0


@dataclass
class PipelineCounters:
    frames: int = 0
    heartbeats: int = 0
    ticks: int = 0
    unknown_ticks: int = 0  # tokens we did not subscribe (after an unsubscribe, say)
    ticks_for_storage: int = 0  # handed to the tick writer (it counts what it stored or dropped)
    frame_errors: int = 0
    last_frame_error: str | None = None
    latest_exchange_timestamp: int = 0
    latest_received_at: float = 0.0


@dataclass
class FeedPipeline:
    state: FeedState
    tick_writer: object | None = None  # marketdata.feed.storage.TickWriter, when ticks are stored
    counters: PipelineCounters = field(default_factory=PipelineCounters)
    store_slots: np.ndarray | None = None  # bool per slot: store this instrument's ticks

    def __post_init__(self) -> None:
        self.bars = BarBuilder(self.state.tokens)
        self.closed_bars: list[ClosedBars] = []
        if self.store_slots is None:
            self.store_slots = np.zeros(self.state.capacity, dtype=bool)
        self._last_error_logged = float("-inf")

    def on_frame(self, frame: bytes, received_at: float | None = None) -> int:
        """Take one binary frame; returns the number of ticks it carried."""
        received_at = time.time() if received_at is None else received_at
        counters = self.counters
        counters.frames += 1
        try:
            batch = parse_frame(frame)
        except FrameError as error:
            self._frame_error(error, frame)
            return 0
        if len(batch) == 0:
            counters.heartbeats += 1
            return 0
        counters.ticks += len(batch)
        counters.latest_received_at = received_at

        slots, known = self.state.apply(batch)
        if slots.size < len(batch):
            counters.unknown_ticks += len(batch) - slots.size
        if slots.size == 0:
            return len(batch)

        rows = np.flatnonzero(known)
        exchange_time = batch.exchange_timestamp[rows]
        # ltp packets carry no timestamp: they happened when they arrived.
        exchange_time = np.where(exchange_time > 0, exchange_time, int(received_at))
        latest = int(exchange_time.max())
        if latest > counters.latest_exchange_timestamp:
            counters.latest_exchange_timestamp = latest

        closed = self.bars.update(
            slots, batch.last_price[rows], batch.volume_traded[rows], batch.oi[rows], exchange_time
        )
        if len(closed):
            self.closed_bars.append(closed)

        if self.tick_writer is not None:
            store = self.store_slots[slots]
            if store.any():
                mask = np.zeros(len(batch), dtype=bool)
                mask[rows[store]] = True
                self.counters.ticks_for_storage += int(store.sum())
                self.tick_writer.submit(batch, mask=mask, received_at=received_at)
        return len(batch)

    def close_due_bars(self, now: float) -> None:
        closed = self.bars.close_due(now)
        if len(closed):
            self.closed_bars.append(closed)

    def take_closed_bars(self) -> ClosedBars:
        closed, self.closed_bars = ClosedBars.concat(self.closed_bars), []
        return closed

    def _frame_error(self, error: FrameError, frame: bytes) -> None:
        self.counters.frame_errors += 1
        self.counters.last_frame_error = str(error)
        now = time.monotonic()
        if now - self._last_error_logged >= FRAME_ERROR_LOG_SECONDS:
            self._last_error_logged = now
            log.warning("bad frame of %d bytes skipped (%d so far): %s", len(frame), self.counters.frame_errors, error)
