"""The Tick table's rows as NumPy records, and their encodings for the database.

Pure NumPy and stdlib, no Django, so it is tested on plain arrays. The tick writer
(marketdata/feed/storage.py) holds the queue, the thread and the database I/O and calls these:

- `tick_rows`: a parsed batch (TickBatch or a dict of its arrays) to ROW_DTYPE records, already
  in the table's shape (prices as integer ten-thousandths, times as integer microseconds), with
  rows the table cannot hold left out;
- `copy_binary` / `copy_binary_chunks`: records to a PostgreSQL binary COPY stream, encoded in
  a few vectorised passes (every row has the same layout but for a NULL `last_trade_time`), so
  no Python object is made per value;
- `tick_values`: records to tuples of Python values, for the other databases' INSERT.

COLUMNS fixes the column order every one of them uses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import numpy as np

# How the writer holds each Tick column in a row record, and so how it is sent.
BIGINT, SMALLINT, PRICE, TIME, OPTIONAL_TIME = "bigint", "smallint", "price", "time", "optional time"

# Every Tick column but the id, in the order rows are built and copied.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("instrument_token", BIGINT),
    ("exchange_timestamp", TIME),
    ("mode", SMALLINT),
    ("last_price", PRICE),
    ("last_traded_quantity", BIGINT),
    ("average_traded_price", PRICE),
    ("volume_traded", BIGINT),
    ("total_buy_quantity", BIGINT),
    ("total_sell_quantity", BIGINT),
    ("open", PRICE),
    ("high", PRICE),
    ("low", PRICE),
    ("close", PRICE),
    ("last_trade_time", OPTIONAL_TIME),
    ("oi", BIGINT),
    ("oi_day_high", BIGINT),
    ("oi_day_low", BIGINT),
    ("bid_price", PRICE),
    ("bid_quantity", BIGINT),
    ("ask_price", PRICE),
    ("ask_quantity", BIGINT),
)
# Where each Tick column comes from in a parsed batch: (batch column, depth level or None).
SOURCES: dict[str, tuple[str, int | None]] = {
    **{name: (name, None) for name, _ in COLUMNS},
    "bid_price": ("depth_buy_price", 0),
    "bid_quantity": ("depth_buy_quantity", 0),
    "ask_price": ("depth_sell_price", 0),
    "ask_quantity": ("depth_sell_quantity", 0),
}

# A row record: prices in ten-thousandths (Tick prices are DECIMAL(16, 4)), times in
# microseconds since the Unix epoch, NO_TIME for an absent last trade time (NULL).
ROW_DTYPE = np.dtype([(name, np.int16 if kind == SMALLINT else np.int64) for name, kind in COLUMNS])
PRICE_SCALE = 10_000
PRICE_LIMIT = 10**16  # DECIMAL(16, 4) holds less than 10**12, i.e. 10**16 ten-thousandths
MICROSECONDS = 1_000_000
SECONDS_LIMIT = 2**33  # Kite sends uint32 epoch seconds; anything past the year 2242 is garbage
NO_TIME = np.iinfo(np.int64).min
UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def tick_rows(columns: Any, *, received_at: float, index: np.ndarray | None = None) -> np.ndarray:
    """The Tick rows (a ROW_DTYPE array) for a parsed batch's rows `index` (all when None).

    `columns` is a TickBatch or a dict of its arrays. Prices are rounded to 4 decimals;
    bid and ask are depth level 0; an exchange timestamp of 0 becomes `received_at` (epoch
    seconds) and a last trade time of 0 becomes NULL. A row the table cannot hold (a price
    not finite or past DECIMAL(16, 4), a negative token or time) is left out: the database
    would reject its whole batch.
    """

    def pick(name: str) -> np.ndarray:
        source, level = SOURCES[name]
        values = np.asarray(columns[source] if isinstance(columns, Mapping) else getattr(columns, source))
        if level is not None:
            values = values[:, level]
        return values if index is None else values[index]

    tokens = pick("instrument_token")
    rows = np.empty(len(tokens), ROW_DTYPE)
    storable = tokens >= 0
    for name, kind in COLUMNS:
        if kind == PRICE:
            scaled = np.rint(pick(name) * PRICE_SCALE)
            fits = np.abs(scaled) < PRICE_LIMIT  # False for NaN and infinities
            storable &= fits
            rows[name] = np.where(fits, scaled, 0)
        elif kind in (TIME, OPTIONAL_TIME):
            seconds = pick(name).astype(np.int64)  # a uint32 would overflow in microseconds
            storable &= (seconds >= 0) & (seconds < SECONDS_LIMIT)
            seconds = np.where(storable, seconds, 0)  # no overflow from the rows left out
            absent = round(received_at * MICROSECONDS) if kind == TIME else NO_TIME
            rows[name] = np.where(seconds == 0, absent, seconds * MICROSECONDS)
        else:
            rows[name] = pick(name)
    return rows if storable.all() else rows[storable]


# -- PostgreSQL binary COPY ------------------------------------------------------------
# The format: a header, then per row a field count and per field a length (-1 for NULL)
# and the value in network byte order; timestamps count microseconds from 2000-01-01.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
COPY_TRAILER = b"\xff\xff"
POSTGRES_EPOCH_US = 946_684_800 * MICROSECONDS
# NUMERIC on the wire: ndigits, weight, sign, dscale, then base-10000 digits. Four digits of
# weight 2 hold any DECIMAL(16, 4): 10000**2, 10000**1, 10000**0 and the 4 decimals.
# PostgreSQL strips the leading and trailing zero digits itself.
NUMERIC_HEADER = (4, 2, 0x0000, 4)
NUMERIC_NEGATIVE = 0x4000
TIME_BYTES = 8
_WIRE_TYPES = {BIGINT: ">i8", SMALLINT: ">i2", TIME: ">i8", OPTIONAL_TIME: ">i8", PRICE: (">u2", (8,))}
COPY_DTYPE = np.dtype(
    [("field_count", ">i2")]
    + [field for name, kind in COLUMNS for field in ((f"{name}__length", ">i4"), (name, _WIRE_TYPES[kind]))]
)


def _copy_template() -> np.ndarray:
    """One record of what is the same in every row: the field count, lengths and NUMERIC headers."""
    template = np.zeros((), COPY_DTYPE)
    template["field_count"] = len(COLUMNS)
    for name, kind in COLUMNS:
        template[f"{name}__length"] = COPY_DTYPE.fields[name][0].itemsize
        if kind == PRICE:
            template[name][:4] = NUMERIC_HEADER
    return np.frombuffer(template.tobytes(), dtype=np.uint8)


_COPY_TEMPLATE = _copy_template()


def copy_binary(rows: np.ndarray) -> bytes:
    """`rows` (ROW_DTYPE) as one PostgreSQL binary COPY stream, columns in COLUMNS order."""
    return b"".join(copy_binary_chunks(rows))


def copy_binary_chunks(rows: np.ndarray, chunk_rows: int = 2_000) -> Iterator[bytes]:
    """The same stream in pieces of `chunk_rows` rows. The writer sends each piece before
    encoding the next, so PostgreSQL ingests one while NumPy encodes the other, and the GIL
    is never held for long (the feed's asyncio thread waits for it)."""
    yield COPY_HEADER
    for start in range(0, len(rows), chunk_rows):
        yield _copy_records(rows[start : start + chunk_rows])
    yield COPY_TRAILER


def _copy_records(rows: np.ndarray) -> bytes:
    records = np.empty(len(rows), COPY_DTYPE)
    records.view(np.uint8).reshape(len(rows), COPY_DTYPE.itemsize)[:] = _COPY_TEMPLATE
    for name, kind in COLUMNS:
        values = rows[name]
        if kind == PRICE:
            wire = records[name]
            wire[:, 2] = np.where(values < 0, NUMERIC_NEGATIVE, 0)
            magnitude = np.abs(values)
            for digit in (7, 6, 5):  # base-10000 digits from the last; a scalar divisor is the fast path
                quotient = magnitude // 10_000
                wire[:, digit] = magnitude - quotient * 10_000
                magnitude = quotient
            wire[:, 4] = magnitude
        elif kind in (TIME, OPTIONAL_TIME):
            records[name] = np.where(values == NO_TIME, 0, values - POSTGRES_EPOCH_US)
        else:
            records[name] = values
    # A NULL is length -1 with no value bytes: cut those out of the stream, row order kept.
    cuts = []
    for name, kind in COLUMNS:
        if kind == OPTIONAL_TIME:
            absent = np.flatnonzero(rows[name] == NO_TIME)
            records[f"{name}__length"][absent] = -1
            cuts.append(absent * COPY_DTYPE.itemsize + COPY_DTYPE.fields[name][1])
    cut_at = np.sort(np.concatenate(cuts)).tolist()
    stream = memoryview(records.view(np.uint8))
    starts, ends = [0, *(cut + TIME_BYTES for cut in cut_at)], [*cut_at, len(stream)]
    return b"".join([stream[start:end] for start, end in zip(starts, ends, strict=True)])


# -- Other databases: Python values ----------------------------------------------------
def tick_values(rows: np.ndarray) -> list[tuple]:
    """`rows` (ROW_DTYPE) as tuples of Python values in COLUMNS order: int, Decimal, aware UTC datetime, None."""
    moments: dict[int, dt.datetime | None] = {NO_TIME: None}

    def moment(microseconds: int) -> dt.datetime | None:
        if microseconds not in moments:
            moments[microseconds] = UNIX_EPOCH + dt.timedelta(microseconds=microseconds)
        return moments[microseconds]

    columns = []
    for name, kind in COLUMNS:
        values = rows[name].tolist()
        if kind == PRICE:
            values = [Decimal(value).scaleb(-4) for value in values]
        elif kind in (TIME, OPTIONAL_TIME):
            values = [moment(value) for value in values]
        columns.append(values)
    return list(zip(*columns, strict=True))
