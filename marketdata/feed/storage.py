"""Tick storage: a bounded queue, drained off the websocket's path into the Tick table.

The feed's asyncio thread hands each parsed frame to `TickWriter.submit()`, which copies
the selected rows into one compact record array (already in the table's shape: prices as
integer ten-thousandths, times as integer microseconds) and returns at once. A writer
thread with its own database connection drains the queue in batches, one transaction each:

- PostgreSQL: binary COPY. NumPy encodes rows in a few vectorised passes (every row has the
  same layout but for a NULL `last_trade_time`), so no Python object is made per value;
  text COPY or psycopg's `write_row` spend most of their time in Python.
- Other databases (SQLite for the demo): one executemany INSERT of Python values.

Nothing is lost silently. The queue is bounded in rows: when full, `submit()` accepts what
fits, counts the rest in `dropped` and logs a warning at most once a minute. A database
error keeps the batch queued and retries with backoff, so a database restart costs no
ticks, and `stop()` writes everything still queued before it returns. Only a batch the
database refuses for its data (DataError, IntegrityError) is dropped, counted and logged:
retrying it would block every batch behind it for good.

The row records and their encodings (`tick_rows`, `copy_binary`, `tick_values`, COLUMNS...)
are pure NumPy and live in `marketdata.feed.tick_encoding`; this module keeps the writer
thread and the database I/O, and re-exports those names (see `__all__`).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import DataError, IntegrityError, connections, transaction

from marketdata.feed.tick_encoding import (
    BIGINT,
    COLUMNS,
    OPTIONAL_TIME,
    PRICE,
    ROW_DTYPE,
    SMALLINT,
    TIME,
    copy_binary,
    copy_binary_chunks,
    tick_rows,
    tick_values,
)
from trading_site import clock

# The row encoding was defined here first: tests and callers import these names from here.
# The COPY wire-format constants are only in tick_encoding.
__all__ = [
    "BIGINT",
    "COLUMNS",
    "OPTIONAL_TIME",
    "PRICE",
    "ROW_DTYPE",
    "SMALLINT",
    "TIME",
    "StorageStatus",
    "TickWriter",
    "copy_binary",
    "copy_binary_chunks",
    "tick_rows",
    "tick_values",
    "write_rows",
]

logger = logging.getLogger(__name__)


# -- Writing one batch -------------------------------------------------------------------
def write_rows(rows: np.ndarray, *, using: str = "default") -> None:
    """Insert `rows` (ROW_DTYPE) into Tick in one transaction, by the backend's fastest path."""
    from marketdata.models import Tick  # here, so this module (and its re-exports) loads without the app registry

    connection = connections[using]
    quote = connection.ops.quote_name
    table = quote(Tick._meta.db_table)
    column_list = ", ".join(quote(Tick._meta.get_field(name).column) for name, _ in COLUMNS)
    # wrap_database_errors: errors from the raw psycopg cursor come out as Django's, like the ORM's.
    with transaction.atomic(using=using), connection.cursor() as cursor, connection.wrap_database_errors:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({column_list}) FROM STDIN (FORMAT BINARY)") as copy:
                for chunk in copy_binary_chunks(rows):
                    copy.write(chunk)
        else:
            placeholders = ", ".join(["%s"] * len(COLUMNS))
            sql = f"INSERT INTO {table} ({column_list}) VALUES ({placeholders})"
            cursor.executemany(sql, _adapted(tick_values(rows), connection))


def _adapted(values: list[tuple], connection) -> list[tuple]:
    """Decimals and datetimes as the ORM would hand them to this backend's driver."""
    ops = connection.ops
    kinds = [kind for _, kind in COLUMNS]
    datetimes: dict[dt.datetime | None, Any] = {None: None}

    def adapt(value, kind):
        if kind == PRICE:
            return ops.adapt_decimalfield_value(value, 16, 4)
        if kind in (TIME, OPTIONAL_TIME):
            if value not in datetimes:
                datetimes[value] = ops.adapt_datetimefield_value(value)
            return datetimes[value]
        return value

    return [tuple(adapt(value, kind) for value, kind in zip(row, kinds, strict=True)) for row in values]


# -- The queue and its writer thread -----------------------------------------------------
@dataclass(frozen=True)
class StorageStatus:
    queued: int  # rows accepted and not yet committed (the batch being written included)
    written: int  # rows committed
    dropped: int  # rows not stored: backlog full, values the table cannot hold, or stop() gave up
    batches: int  # transactions committed
    last_error: str | None  # the most recent database error, kept after recovery
    last_flush_ms: float  # how long the last committed batch took, encoding included


class _Throttle:
    """True at most once per `seconds`: one log line a minute, not one per frame."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last = -math.inf

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.seconds:
            return False
        self._last = now
        return True


class TickWriter:
    """Queues parsed ticks from the feed and writes them to Tick from a thread of its own."""

    def __init__(
        self,
        *,
        max_backlog_rows: int = 500_000,
        batch_rows: int = 20_000,
        flush_interval: float = 0.5,
        retry_delay: float = 0.2,
        max_retry_delay: float = 10.0,
        using: str = "default",
    ) -> None:
        self.max_backlog_rows = max_backlog_rows
        self.batch_rows = batch_rows
        self.flush_interval = flush_interval
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.using = using
        # One lock guards the queue and the counters; the condition wakes the writer (rows,
        # flush, stop) and whoever waits in flush() (a batch committed).
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._pending: deque[np.ndarray] = deque()
        self._queued = self._written = self._dropped = self._batches = 0
        self._last_error: str | None = None
        self._last_flush_ms = 0.0
        self._flush_waiters = 0
        self._stopping = False
        self._give_up_at = math.inf
        self._thread: threading.Thread | None = None
        self._drop_log = _Throttle(60.0)
        self._error_log = _Throttle(60.0)

    # -- the feed's side --------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (once)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="tick-writer", daemon=True)
        self._thread.start()

    def submit(self, columns: Any, *, mask: np.ndarray | None = None, received_at: float | None = None) -> int:
        """Queue the rows of `columns` selected by `mask` (all when None); return how many were accepted.

        Never blocks and never raises: rows that do not fit the backlog, or cannot be read,
        are counted in `dropped` and logged at most once a minute.
        """
        offered = 0
        try:
            index = None if mask is None else np.flatnonzero(mask)
            offered = len(index) if index is not None else len(_tokens(columns))
            if received_at is None:
                received_at = clock.now().timestamp()
            rows = tick_rows(columns, received_at=received_at, index=index)
        except Exception:
            if self._error_log.ready():
                logger.exception("Tick storage could not read a batch of %d ticks; they are not stored", offered)
            self._count_dropped(offered)
            return 0
        with self._lock:
            room = 0 if self._stopping else max(0, self.max_backlog_rows - self._queued)
            accepted = rows if len(rows) <= room else rows[:room].copy()
            if len(accepted):
                self._pending.append(accepted)
                was_below = self._queued < self.batch_rows
                self._queued += len(accepted)
                if was_below and self._queued >= self.batch_rows:
                    self._changed.notify_all()
        self._count_dropped(offered - len(accepted))
        return len(accepted)

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every queued row is committed (True) or `timeout` passes (False). Needs start()."""
        with self._lock:
            if self._thread is None:
                raise RuntimeError("flush() needs a started TickWriter")
            self._flush_waiters += 1
            self._changed.notify_all()
            try:
                self._changed.wait_for(lambda: self._queued == 0 or not self._thread.is_alive(), timeout)
                return self._queued == 0
            finally:
                self._flush_waiters -= 1

    def stop(self, timeout: float = 30.0) -> StorageStatus:
        """Write everything queued, then stop the thread. Whatever is still unwritten after
        `timeout` (the database down all that time) is counted as dropped and logged."""
        self.start()  # a writer that never ran still owes its queue to the database
        with self._lock:
            self._stopping = True
            self._give_up_at = time.monotonic() + timeout
            self._changed.notify_all()
        self._thread.join(timeout + 1.0)
        if self._thread.is_alive():
            logger.error("Tick storage is still writing after %.0f s; %d ticks queued", timeout, self._queued)
        return self.status

    @property
    def status(self) -> StorageStatus:
        with self._lock:
            return StorageStatus(
                queued=self._queued,
                written=self._written,
                dropped=self._dropped,
                batches=self._batches,
                last_error=self._last_error,
                last_flush_ms=self._last_flush_ms,
            )

    def _count_dropped(self, count: int) -> None:
        if count <= 0:
            return
        with self._lock:
            self._dropped += count
            total = self._dropped
        if self._drop_log.ready():
            logger.warning(
                "Tick storage dropped %d ticks (%d in all): backlog full at %d rows, or unstorable values",
                count,
                total,
                self.max_backlog_rows,
            )

    # -- the writer thread ------------------------------------------------------------
    def _run(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                parts, rows = batch
                if not self._write_until_done(parts, rows):
                    break
            self._drop_unwritten()
        except Exception:  # a bug here must not pass for a quiet feed: the queue would only grow
            logger.exception("The tick writer thread crashed; ticks are no longer stored")
            raise
        finally:
            connections[self.using].close()

    def _next_batch(self) -> tuple[int, np.ndarray] | None:
        """The oldest rows, up to batch_rows, once a batch is full, flush_interval has passed,
        or someone is waiting; None when stopping with nothing left. Rows stay queued until committed."""
        with self._lock:
            self._changed.wait_for(
                lambda: self._queued >= self.batch_rows or self._stopping or (self._flush_waiters and self._pending),
                self.flush_interval,
            )
            if not self._pending:
                return None if self._stopping else (0, np.empty(0, ROW_DTYPE))
            parts, count = [], 0
            for position, part in enumerate(self._pending):
                room = self.batch_rows - count
                if len(part) > room:
                    if room:  # split this part so the batch is exactly full; the rest waits its turn
                        self._pending[position] = part[:room]
                        self._pending.insert(position + 1, part[room:])
                        parts.append(part[:room])
                    break  # leave the loop before the mutated deque is iterated again
                parts.append(part)
                count += len(part)
        return len(parts), parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _write_until_done(self, parts: int, rows: np.ndarray) -> bool:
        """Commit `rows` (the first `parts` queued arrays), retrying with backoff; False if stop() gave up."""
        if not len(rows):
            return True
        delay = self.retry_delay
        while True:
            started = time.perf_counter()
            try:
                self._connect()
                write_rows(rows, using=self.using)
            except (DataError, IntegrityError) as error:
                # The rows themselves are refused: retrying would block every batch behind them.
                self._database_failed(error, len(rows), retrying=False)
                self._done(parts, len(rows), written=False)
                return True
            except Exception as error:
                self._database_failed(error, len(rows), retrying=True)
                with self._lock:
                    if time.monotonic() >= self._give_up_at:
                        return False
                    # stop() and flush() wake this wait: they retry at once.
                    self._changed.wait(min(delay, self._give_up_at - time.monotonic()))
                delay = min(delay * 2, self.max_retry_delay)
                continue
            self._done(parts, len(rows), written=True, seconds=time.perf_counter() - started)
            return True

    def _connect(self) -> None:
        """Open the thread's connection if needed, named so pg_stat_activity shows which one is ours."""
        connection = connections[self.using]
        if connection.connection is None and connection.vendor == "postgresql":
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute("SET application_name = 'tick-writer'")

    def _done(self, parts: int, rows: int, *, written: bool, seconds: float = 0.0) -> None:
        """Take a batch off the queue: committed, or refused by the database for its data."""
        with self._lock:
            for _ in range(parts):
                self._pending.popleft()
            self._queued -= rows
            if written:
                self._written += rows
                self._batches += 1
                self._last_flush_ms = seconds * 1000
            else:
                self._dropped += rows
            self._changed.notify_all()

    def _database_failed(self, error: Exception, rows: int, *, retrying: bool) -> None:
        with self._lock:
            self._last_error = f"{type(error).__name__}: {error}".strip()
            queued = self._queued
        if self._error_log.ready():
            outcome = "retrying" if retrying else "the database refuses them, dropped"
            logger.error("Tick storage could not write %d ticks (%d queued), %s: %s", rows, queued, outcome, error)
        try:  # a fresh connection for the retry: the old one may be dead with the server
            connections[self.using].close()
        except Exception:
            logger.debug("Closing the tick writer's broken connection failed", exc_info=True)

    def _drop_unwritten(self) -> None:
        with self._lock:
            lost, self._queued = self._queued, 0
            self._pending.clear()
            self._dropped += lost
            self._changed.notify_all()
        if lost:
            logger.error(
                "Tick storage stopped with %d ticks unwritten (database unavailable): %s", lost, self._last_error
            )


def _tokens(columns: Any) -> np.ndarray:
    return np.asarray(columns["instrument_token"] if isinstance(columns, Mapping) else columns.instrument_token)
