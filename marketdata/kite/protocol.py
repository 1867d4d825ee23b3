"""Kite Connect ticker binary frames, decoded into NumPy columns in one pass.

A frame is big-endian: a uint16 packet count, then for each packet a uint16 length and that many
bytes. The length tells the packet kind (8 ltp, 28 index quote, 32 index full, 44 quote,
184 full); `instrument_token & 0xff` is the segment, which sets the price divisor. kiteconnect
5.2.2 (`KiteTicker._parse_binary`) is the reference: `TickBatch.to_ticks()` returns what it
returns, except that times are timezone-aware (Asia/Kolkata) instead of naive local time.

How the decode stays vectorised: every packet is copied out of the frame as a 184-byte row (one
fancy-index gather through an overlapping view), shorter packets have the bytes past their end
zeroed and index packets are moved into the tradable layout, and then every field of every row
is read at once as 46 big-endian uint32 words. Only the walk over the packet lengths is a Python
loop (a list comprehension doing one table lookup per packet), because each packet's offset
depends on the previous length; a frame whose packets all share one length skips even that.

No Django here: this module is imported by the feed, the simulator, the replay and benchmarks.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

MODE_LTP, MODE_QUOTE, MODE_FULL = "ltp", "quote", "full"
MODE_CODES = {MODE_LTP: 0, MODE_QUOTE: 1, MODE_FULL: 2}
MODE_NAMES = (MODE_LTP, MODE_QUOTE, MODE_FULL)

IST = ZoneInfo("Asia/Kolkata")

SEGMENT_CDS, SEGMENT_BCD, SEGMENT_INDICES, SEGMENT_NCO = 3, 6, 9, 12
LTP_LENGTH, INDEX_QUOTE_LENGTH, INDEX_FULL_LENGTH, QUOTE_LENGTH, FULL_LENGTH = 8, 28, 32, 44, 184
DEPTH_LEVELS = 5

# Price divisor by segment (token & 0xff), as kiteconnect: cds 1e7, bcd and nco 1e4, others 100.
DIVISOR_BY_SEGMENT = np.full(256, 100.0)
DIVISOR_BY_SEGMENT[SEGMENT_CDS] = 10_000_000.0
DIVISOR_BY_SEGMENT[[SEGMENT_BCD, SEGMENT_NCO]] = 10_000.0


def segment_divisor(segment: int) -> float:
    return float(DIVISOR_BY_SEGMENT[segment & 0xFF])


# Packet kinds, told by the length; packets of any other length are KIND_UNKNOWN and skipped.
KIND_LTP, KIND_INDEX_QUOTE, KIND_INDEX_FULL, KIND_QUOTE, KIND_FULL, KIND_UNKNOWN = range(6)
KIND_LENGTHS = (LTP_LENGTH, INDEX_QUOTE_LENGTH, INDEX_FULL_LENGTH, QUOTE_LENGTH, FULL_LENGTH)
KIND_BY_LENGTH = np.full(1 << 16, KIND_UNKNOWN, dtype=np.int8)
KIND_BY_LENGTH[list(KIND_LENGTHS)] = range(len(KIND_LENGTHS))
# The same, by the number of 16-bit words a packet and its length header take: (length + 2) / 2.
_KIND_BY_WORD_STEP = np.full(1 << 15, KIND_UNKNOWN, dtype=np.int8)
_KIND_BY_WORD_STEP[[length // 2 + 1 for length in KIND_LENGTHS]] = range(len(KIND_LENGTHS))
_MODE_BY_KIND = np.array([0, 1, 2, 1, 2], dtype=np.uint8)
_LENGTH_BY_KIND = np.array(KIND_LENGTHS, dtype=np.int16)

# The tradable (184-byte) layout as 46 big-endian uint32 words: 16 fields, then 10 depth entries
# of 3 words (quantity, price, orders << 16 | padding), 5 bids then 5 offers.
WORDS_PER_ROW = FULL_LENGTH // 4
W_TOKEN, W_LAST_PRICE, W_LAST_QTY, W_AVERAGE_PRICE, W_VOLUME, W_BUY_QTY, W_SELL_QTY = range(7)
W_OPEN, W_HIGH, W_LOW, W_CLOSE, W_LAST_TRADE_TIME, W_OI, W_OI_HIGH, W_OI_LOW, W_EXCHANGE_TIME = range(7, 16)
W_DEPTH = 16
PRICE_WORDS = [W_LAST_PRICE, W_AVERAGE_PRICE, W_OPEN, W_HIGH, W_LOW, W_CLOSE]
QUANTITY_WORDS = [W_LAST_QTY, W_VOLUME, W_BUY_QTY, W_SELL_QTY, W_OI, W_OI_HIGH, W_OI_LOW]
# Where the index packet's words (token, ltp, high, low, open, close, [change], timestamp) go.
INDEX_WORDS_TO_ROW = [W_TOKEN, W_LAST_PRICE, W_HIGH, W_LOW, W_OPEN, W_CLOSE]
INDEX_TIMESTAMP_WORD = 7

PRICE_COLUMNS = ("last_price", "average_traded_price", "open", "high", "low", "close")
QUANTITY_COLUMNS = ("last_traded_quantity", "volume_traded", "total_buy_quantity", "total_sell_quantity")
QUANTITY_COLUMNS += ("oi", "oi_day_high", "oi_day_low")
TIME_COLUMNS = ("last_trade_time", "exchange_timestamp")

# A frame's packets are gathered as 184-byte rows from any offset; padding the frame lets the row
# of a short packet near the end read past it (those bytes are zeroed afterwards).
_ROW_PADDING = bytes(FULL_LENGTH)


class FrameError(ValueError):
    """A frame whose structure is damaged: truncated, over-long, or with trailing bytes."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset

    def __reduce__(self) -> tuple:
        return type(self), (str(self), self.offset)


@dataclass(slots=True, eq=False, repr=False)
class TickBatch:
    """Equal-length columns, one entry per parsed packet in frame order; absent fields hold 0.

    Columns may be views into blocks shared with other columns (the depth columns are strided
    (n, 5) views, buy and sell side by side), but no two overlap: writing into one never changes
    another.
    """

    instrument_token: np.ndarray  # int64
    segment: np.ndarray  # uint8
    tradable: np.ndarray  # bool
    mode: np.ndarray  # uint8: MODE_CODES
    packet_length: np.ndarray  # int16
    last_price: np.ndarray  # float64, divided by the segment divisor like every price
    average_traded_price: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    change: np.ndarray  # float64 percent change from close, 0 where close is 0
    last_traded_quantity: np.ndarray  # int64
    volume_traded: np.ndarray
    total_buy_quantity: np.ndarray
    total_sell_quantity: np.ndarray
    oi: np.ndarray
    oi_day_high: np.ndarray
    oi_day_low: np.ndarray
    last_trade_time: np.ndarray  # int64 epoch seconds
    exchange_timestamp: np.ndarray
    depth_buy_quantity: np.ndarray  # (n, 5) int64
    depth_buy_price: np.ndarray  # (n, 5) float64
    depth_buy_orders: np.ndarray  # (n, 5) int64
    depth_sell_quantity: np.ndarray
    depth_sell_price: np.ndarray
    depth_sell_orders: np.ndarray
    skipped_packets: int = 0  # packets of an unknown length, skipped as kiteconnect skips them

    def __len__(self) -> int:
        return len(self.instrument_token)

    def __repr__(self) -> str:
        return f"<TickBatch of {len(self)} ticks, {self.skipped_packets} skipped>"

    @classmethod
    def empty(cls) -> TickBatch:
        return cls(**{name: np.zeros(shape, dtype) for name, (dtype, shape) in _EMPTY_SPECS.items()})

    @classmethod
    def concat(cls, batches: Iterable[TickBatch]) -> TickBatch:
        batches = list(batches)
        if not batches:
            return cls.empty()
        columns = {name: np.concatenate([getattr(batch, name) for batch in batches]) for name in COLUMN_NAMES}
        return cls(**columns, skipped_packets=sum(batch.skipped_packets for batch in batches))

    def to_ticks(self) -> list[dict]:
        """What kiteconnect's `_parse_binary` returns, with aware IST datetimes for its naive ones."""
        return _ticks_from_columns(self)


def _column_specs(n: int) -> dict[str, tuple[type, tuple[int, ...]]]:
    depth = (n, DEPTH_LEVELS)
    specs = {"instrument_token": (np.int64, (n,)), "segment": (np.uint8, (n,)), "tradable": (np.bool_, (n,))}
    specs |= {"mode": (np.uint8, (n,)), "packet_length": (np.int16, (n,))}
    specs |= dict.fromkeys((*PRICE_COLUMNS, "change"), (np.float64, (n,)))
    specs |= dict.fromkeys(QUANTITY_COLUMNS + TIME_COLUMNS, (np.int64, (n,)))
    for side in ("buy", "sell"):
        specs |= {f"depth_{side}_quantity": (np.int64, depth), f"depth_{side}_price": (np.float64, depth)}
        specs |= {f"depth_{side}_orders": (np.int64, depth)}
    return specs


COLUMN_NAMES = tuple(field.name for field in fields(TickBatch) if field.name != "skipped_packets")
_EMPTY_SPECS = _column_specs(0)


def parse_frame(frame: bytes | bytearray | memoryview) -> TickBatch:
    """Decode one binary frame; a heartbeat (under 2 bytes) gives an empty batch.

    Raises FrameError, and only FrameError, when the declared structure does not fit the bytes.
    """
    data = frame if type(frame) is bytes else bytes(frame)
    if len(data) < 2:
        return TickBatch.empty()
    starts, kinds = _packets(data)
    present = np.bincount(kinds, minlength=KIND_UNKNOWN + 1)
    skipped = int(present[KIND_UNKNOWN])
    if skipped:
        known = kinds != KIND_UNKNOWN
        starts, kinds = starts[known], kinds[known]
    if not starts.size:
        batch = TickBatch.empty()
        batch.skipped_packets = skipped
        return batch
    padded = data + _ROW_PADDING
    rows_at_every_offset = np.ndarray((len(padded) - FULL_LENGTH + 1,), f"V{FULL_LENGTH}", padded, strides=(1,))
    words = rows_at_every_offset[starts].view(">u4").reshape(-1, WORDS_PER_ROW).astype(np.int64)
    if present[KIND_FULL] != len(kinds):
        _normalise_short_packets(words, kinds, present)
    return _columns_from_words(words, kinds, skipped)


def _packets(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Offset of every packet's body and its kind, the packets checked to tile the frame exactly."""
    size = len(data)
    count = data[0] << 8 | data[1]
    if count and size >= 4:
        # One length for every packet (a full-mode subscription): check it without a loop.
        length = data[2] << 8 | data[3]
        if size == 2 + count * (length + 2):
            declared = np.ndarray((count,), ">u2", data, offset=2, strides=(length + 2,))
            if (declared == length).all():
                starts = np.arange(count, dtype=np.int64) * (length + 2) + 4
                return starts, np.full(count, KIND_BY_LENGTH[length])
    header_words = _walk_known_lengths(data, count)
    if header_words is not None:
        steps = header_words[1:] - header_words[:-1]
        return header_words[:-1] * 2 + 2, _KIND_BY_WORD_STEP[steps]
    ends = _walk_any_lengths(data, count)
    headers = np.empty_like(ends)
    headers[:1] = 2
    headers[1:] = ends[:-1]
    return headers + 2, KIND_BY_LENGTH[ends - headers - 2]


# The walk over known lengths reads each length header as a native-endian uint16 word and looks up
# how many words to advance. Other lengths advance far off the frame, which ends this walk and
# leaves the frame to the byte-by-byte walk that handles any length and reports damage.
_OFF_THE_FRAME = -(1 << 62)
_WORD_ADVANCE = [_OFF_THE_FRAME] * (1 << 16)
for _length in KIND_LENGTHS:
    _WORD_ADVANCE[int.from_bytes(_length.to_bytes(2, "big"), sys.byteorder)] = _length // 2 + 1


def _walk_known_lengths(data: bytes, count: int) -> np.ndarray | None:
    """Word index of every packet's length header, then of the frame's end; None unless every
    packet has a known length and they fill the frame."""
    if len(data) % 2:
        return None
    words, advance, position = memoryview(data).cast("H"), _WORD_ADVANCE, 1
    try:
        headers = [position := position + advance[words[position]] for _ in range(count)]
    except IndexError:
        return None
    if position * 2 != len(data):
        return None
    headers.insert(0, 1)
    return np.array(headers, dtype=np.int64)


def _walk_any_lengths(data: bytes, count: int) -> np.ndarray:
    """Byte offset where each packet ends, any lengths; FrameError if they do not fill the frame."""
    ends, position = [0] * count, 2
    try:
        for index in range(count):
            position += (data[position] << 8 | data[position + 1]) + 2
            ends[index] = position
    except IndexError:
        position = -1
    if position != len(data):
        _raise_structure_error(data, count)
    return np.array(ends, dtype=np.int64)


def _raise_structure_error(data: bytes, count: int) -> None:
    """Walk the frame again, carefully, to say what is wrong and where."""
    size, position = len(data), 2
    for number in range(1, count + 1):
        if position + 2 > size:
            remaining = size - position
            raise FrameError(
                f"packet {number} of {count} at byte {position} needs a 2-byte length but only {remaining} remain",
                position,
            )
        length = data[position] << 8 | data[position + 1]
        if position + 2 + length > size:
            remaining = size - position - 2
            raise FrameError(
                f"packet {number} of {count} at byte {position} declares {length} bytes but only {remaining} remain",
                position,
            )
        position += 2 + length
    raise FrameError(f"{size - position} bytes of trailing data at byte {position} after {count} packets", position)


def _normalise_short_packets(words: np.ndarray, kinds: np.ndarray, present: np.ndarray) -> None:
    """Zero what a short packet's row read past its end; move index fields into the tradable layout."""
    # One stable sort groups the rows of every kind (in frame order), instead of a search per kind.
    by_kind = np.argsort(kinds, kind="stable")
    ends = np.cumsum(present).tolist()
    rows = {kind: by_kind[ends[kind] - present[kind] : ends[kind]] for kind in range(KIND_FULL) if present[kind]}
    if KIND_LTP in rows:
        words[rows[KIND_LTP], 2:] = 0
    if KIND_QUOTE in rows:
        words[rows[KIND_QUOTE], W_LAST_TRADE_TIME:] = 0
    for kind in (KIND_INDEX_QUOTE, KIND_INDEX_FULL):
        if kind in rows:
            index_rows = rows[kind]
            index_words = words[index_rows, : INDEX_TIMESTAMP_WORD + 1]
            words[index_rows] = 0
            words[index_rows[:, None], INDEX_WORDS_TO_ROW] = index_words[:, : len(INDEX_WORDS_TO_ROW)]
            if kind == KIND_INDEX_FULL:
                words[index_rows, W_EXCHANGE_TIME] = index_words[:, INDEX_TIMESTAMP_WORD]


def _columns_from_words(words: np.ndarray, kinds: np.ndarray, skipped: int) -> TickBatch:
    n = len(words)
    header = words[:, :W_DEPTH].T.copy()  # each field's row is then a contiguous column
    token = header[W_TOKEN]
    segment = token.astype(np.uint8)  # the low byte: the cast wraps modulo 256
    divisor = DIVISOR_BY_SEGMENT[segment]
    prices = header[PRICE_WORDS] / divisor
    last_price, close = prices[0], prices[5]
    change = np.zeros(n)
    np.divide((last_price - close) * 100, close, out=change, where=close != 0)
    # Depth columns are (n, 5) views, [:, side] of one (n, 2, 5) block per field: copying them
    # apart into contiguous arrays would cost more than the rest of the depth decode.
    depth = words[:, W_DEPTH:].reshape(n, 2, DEPTH_LEVELS, 3)  # row, side, level, field
    depth_quantity = depth[..., 0]
    depth_price = depth[..., 1] / divisor[:, None, None]
    depth_orders = depth[..., 2] >> 16  # the low 16 bits are padding
    return TickBatch(
        token,
        segment,
        segment != SEGMENT_INDICES,
        _MODE_BY_KIND[kinds],
        _LENGTH_BY_KIND[kinds],
        *prices,
        change,
        *(header[word] for word in QUANTITY_WORDS),
        header[W_LAST_TRADE_TIME],
        header[W_EXCHANGE_TIME],
        depth_quantity[:, 0],
        depth_price[:, 0],
        depth_orders[:, 0],
        depth_quantity[:, 1],
        depth_price[:, 1],
        depth_orders[:, 1],
        skipped_packets=skipped,
    )


@lru_cache(maxsize=4096)  # a frame's ticks share a handful of seconds; datetimes are immutable
def epoch_to_ist(seconds: int) -> datetime | None:
    """The instant as an aware IST datetime; None where kiteconnect's fromtimestamp would fail."""
    try:
        return datetime.fromtimestamp(seconds, IST)
    except (OverflowError, OSError, ValueError):
        return None


def _ticks_from_columns(batch: TickBatch) -> list[dict]:
    column = {name: getattr(batch, name).tolist() for name in COLUMN_NAMES}
    token, tradable, mode, lengths = (
        column[name] for name in ("instrument_token", "tradable", "mode", "packet_length")
    )
    last_price, average, change = column["last_price"], column["average_traded_price"], column["change"]
    open_, high, low, close = column["open"], column["high"], column["low"], column["close"]
    ticks = []
    for i, length in enumerate(lengths):
        tick = {"tradable": tradable[i], "mode": MODE_NAMES[mode[i]], "instrument_token": token[i]}
        tick["last_price"] = last_price[i]
        if length == LTP_LENGTH:
            ticks.append(tick)
            continue
        if length in (INDEX_QUOTE_LENGTH, INDEX_FULL_LENGTH):
            tick["ohlc"] = {"high": high[i], "low": low[i], "open": open_[i], "close": close[i]}
        else:
            tick["last_traded_quantity"] = column["last_traded_quantity"][i]
            tick["average_traded_price"] = average[i]
            for name in ("volume_traded", "total_buy_quantity", "total_sell_quantity"):
                tick[name] = column[name][i]
            tick["ohlc"] = {"open": open_[i], "high": high[i], "low": low[i], "close": close[i]}
        # kiteconnect leaves the int 0 where close is 0.
        tick["change"] = change[i] if close[i] != 0 else 0
        if length == FULL_LENGTH:
            tick["last_trade_time"] = epoch_to_ist(column["last_trade_time"][i])
            for name in ("oi", "oi_day_high", "oi_day_low"):
                tick[name] = column[name][i]
        if length in (INDEX_FULL_LENGTH, FULL_LENGTH):
            tick["exchange_timestamp"] = epoch_to_ist(column["exchange_timestamp"][i])
        if length == FULL_LENGTH:
            tick["depth"] = {side: _depth_entries(column, side, i) for side in ("buy", "sell")}
        ticks.append(tick)
    return ticks


def _depth_entries(column: dict[str, list], side: str, i: int) -> list[dict]:
    quantity, price = column[f"depth_{side}_quantity"][i], column[f"depth_{side}_price"][i]
    orders = column[f"depth_{side}_orders"][i]
    return [
        {"quantity": quantity[level], "price": price[level], "orders": orders[level]} for level in range(DEPTH_LEVELS)
    ]
