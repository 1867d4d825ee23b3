"""Building Kite ticker binary frames: the inverse of `parse_frame`, for the simulator, replay and tests.

`build_frame` takes kiteconnect-style tick dicts (what `TickBatch.to_ticks()` returns, or less:
missing values are 0); `build_frame_columns` takes a whole `TickBatch` and is vectorised.
Prices are multiplied by the segment divisor and rounded to the nearest integer; a value that a
uint32 field cannot hold is a ValueError rather than a silently wrapped number.

An index packet carries the exchange's net change (signed int32, in divisor units) that
kiteconnect ignores; it is written as round(ltp * divisor) - round(close * divisor), the
difference of the two fields the packet itself carries, clipped to int32.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from marketdata.kite.protocol import (
    DEPTH_LEVELS,
    DIVISOR_BY_SEGMENT,
    IST,
    KIND_BY_LENGTH,
    KIND_FULL,
    KIND_INDEX_FULL,
    KIND_LENGTHS,
    KIND_LTP,
    KIND_QUOTE,
    KIND_UNKNOWN,
    MODE_CODES,
    MODE_FULL,
    MODE_LTP,
    MODE_QUOTE,
    PRICE_COLUMNS,
    PRICE_WORDS,
    QUANTITY_COLUMNS,
    QUANTITY_WORDS,
    SEGMENT_INDICES,
    W_CLOSE,
    W_DEPTH,
    W_EXCHANGE_TIME,
    W_HIGH,
    W_LAST_PRICE,
    W_LAST_TRADE_TIME,
    W_LOW,
    W_OPEN,
    W_TOKEN,
    WORDS_PER_ROW,
    TickBatch,
    segment_divisor,
)

UINT32_MAX = 0xFFFF_FFFF
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
MAX_PACKETS = 0xFFFF
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LTP = struct.Struct(">II")
_INDEX_QUOTE = struct.Struct(">IIIIIIi")
_INDEX_FULL = struct.Struct(">IIIIIIiI")
_QUOTE = struct.Struct(">11I")
_FULL_HEAD = struct.Struct(">16I")
_DEPTH_ENTRY = struct.Struct(">IIH2x")
_FULL = struct.Struct(">16I" + "IIH2x" * 2 * DEPTH_LEVELS)
_DIVISORS = DIVISOR_BY_SEGMENT.tolist()
_SECOND = timedelta(seconds=1)
_NO_VALUES: Mapping = {}
_NO_DEPTH = (0, 0, 0) * DEPTH_LEVELS
_LENGTH = struct.Struct(">H")
# Index packet words in wire order, taken from the 46-word tradable row layout (change is added).
_INDEX_WIRE_WORDS = [W_TOKEN, W_LAST_PRICE, W_HIGH, W_LOW, W_OPEN, W_CLOSE]


def build_heartbeat() -> bytes:
    return b"\x00"


def build_frame(ticks: Sequence[Mapping]) -> bytes:
    """One binary frame holding a packet per tick, in order."""
    if len(ticks) > MAX_PACKETS:
        raise ValueError(f"a frame holds at most {MAX_PACKETS} packets, not {len(ticks)}")
    parts = [_LENGTH.pack(len(ticks))]
    for number, tick in enumerate(ticks, start=1):
        try:
            packet = _packet(tick)
        except (KeyError, TypeError, ValueError, OverflowError, struct.error) as error:
            raise ValueError(f"tick {number} ({tick.get('instrument_token')!r}): {error}") from error
        parts += (_LENGTH.pack(len(packet)), packet)
    return b"".join(parts)


def _packet(tick: Mapping) -> bytes:
    try:
        return _unchecked_packet(tick)
    except (KeyError, TypeError, ValueError, OverflowError, struct.error):
        return _checked_packet(tick)  # raises a ValueError that names the field


def _unchecked_packet(tick: Mapping) -> bytes:
    """The packet, leaving range and type checks to struct: any error sends the tick to _checked_packet."""
    token, mode, get = tick["instrument_token"], tick["mode"], tick.get
    divisor = _DIVISORS[token & 0xFF]
    last_price = round(float(get("last_price") or 0) * divisor)
    if mode == MODE_LTP:
        return _LTP.pack(token, last_price)
    if mode not in (MODE_QUOTE, MODE_FULL):
        raise ValueError(mode)
    ohlc = get("ohlc") or _NO_VALUES
    open_ = round(float(ohlc.get("open") or 0) * divisor)
    high = round(float(ohlc.get("high") or 0) * divisor)
    low = round(float(ohlc.get("low") or 0) * divisor)
    close = round(float(ohlc.get("close") or 0) * divisor)
    if token & 0xFF == SEGMENT_INDICES:
        change = min(max(last_price - close, INT32_MIN), INT32_MAX)
        if mode == MODE_FULL:
            timestamp = _seconds(get("exchange_timestamp"))
            return _INDEX_FULL.pack(token, last_price, high, low, open_, close, change, timestamp)
        return _INDEX_QUOTE.pack(token, last_price, high, low, open_, close, change)
    values = [
        token,
        last_price,
        get("last_traded_quantity") or 0,
        round(float(get("average_traded_price") or 0) * divisor),
        get("volume_traded") or 0,
        get("total_buy_quantity") or 0,
        get("total_sell_quantity") or 0,
        open_,
        high,
        low,
        close,
    ]
    if mode == MODE_QUOTE:
        return _QUOTE.pack(*values)
    values += (
        _seconds(get("last_trade_time")),
        get("oi") or 0,
        get("oi_day_high") or 0,
        get("oi_day_low") or 0,
        _seconds(get("exchange_timestamp")),
    )
    depth = get("depth") or _NO_VALUES
    for side in ("buy", "sell"):
        levels = depth.get(side) or ()
        if len(levels) > DEPTH_LEVELS:
            raise ValueError(side)
        for level in levels:
            values += (
                level.get("quantity") or 0,
                round(float(level.get("price") or 0) * divisor),
                level.get("orders") or 0,
            )
        values += _NO_DEPTH[: 3 * (DEPTH_LEVELS - len(levels))]
    return _FULL.pack(*values)


def _seconds(value: object) -> object:
    if isinstance(value, datetime):
        return ((value if value.tzinfo is not None else value.replace(tzinfo=IST)) - _EPOCH) // _SECOND
    return value or 0


def _checked_packet(tick: Mapping) -> bytes:
    token = _uint32(tick["instrument_token"], "instrument_token")
    mode = tick["mode"]
    if mode not in MODE_CODES:
        raise ValueError(f"mode must be one of {sorted(MODE_CODES)}, not {mode!r}")
    divisor = segment_divisor(token)

    def price(value: object, name: str) -> int:
        return _uint32(round(float(value or 0) * divisor), name)

    last_price = price(tick.get("last_price"), "last_price")
    if mode == MODE_LTP:
        return _LTP.pack(token, last_price)
    ohlc = tick.get("ohlc") or {}
    open_, high, low, close = (price(ohlc.get(name), name) for name in ("open", "high", "low", "close"))
    if token & 0xFF == SEGMENT_INDICES:
        change = min(max(last_price - close, INT32_MIN), INT32_MAX)
        if mode == MODE_FULL:
            timestamp = _epoch_seconds(tick.get("exchange_timestamp"), "exchange_timestamp")
            return _INDEX_FULL.pack(token, last_price, high, low, open_, close, change, timestamp)
        return _INDEX_QUOTE.pack(token, last_price, high, low, open_, close, change)
    quantity = {name: _uint32(tick.get(name), name) for name in QUANTITY_COLUMNS}
    head = (
        token,
        last_price,
        quantity["last_traded_quantity"],
        price(tick.get("average_traded_price"), "average_traded_price"),
        quantity["volume_traded"],
        quantity["total_buy_quantity"],
        quantity["total_sell_quantity"],
        open_,
        high,
        low,
        close,
    )
    if mode != MODE_FULL:
        return _QUOTE.pack(*head)
    times = (
        _epoch_seconds(tick.get("last_trade_time"), "last_trade_time"),
        quantity["oi"],
        quantity["oi_day_high"],
        quantity["oi_day_low"],
        _epoch_seconds(tick.get("exchange_timestamp"), "exchange_timestamp"),
    )
    depth = tick.get("depth") or {}
    entries = []
    for side in ("buy", "sell"):
        levels = list(depth.get(side) or ())
        if len(levels) > DEPTH_LEVELS:
            raise ValueError(f"depth {side} has {len(levels)} levels, at most {DEPTH_LEVELS}")
        levels += [{}] * (DEPTH_LEVELS - len(levels))
        for level in levels:
            orders = _uint32(level.get("orders"), "depth orders")
            if orders > 0xFFFF:
                raise ValueError(f"depth orders {orders} does not fit 16 bits")
            quantity_at_level = _uint32(level.get("quantity"), "depth quantity")
            entries.append(_DEPTH_ENTRY.pack(quantity_at_level, price(level.get("price"), "depth price"), orders))
    return _FULL_HEAD.pack(*head, *times) + b"".join(entries)


def _uint32(value: object, name: str) -> int:
    number = 0 if value is None else operator.index(value)
    if not 0 <= number <= UINT32_MAX:
        raise ValueError(f"{name} {number} does not fit an unsigned 32-bit field")
    return number


def _epoch_seconds(value: object, name: str) -> int:
    """Epoch seconds from an aware datetime, a naive one taken as IST, or an int."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=IST)
        return _uint32((aware - _EPOCH) // timedelta(seconds=1), name)
    return _uint32(value, name)


def build_frame_columns(batch: TickBatch) -> bytes:
    """The frame `batch` was parsed from (vectorised), for batches without depth padding or net change.

    Every column is written back at the packet kind's offsets; values a packet kind has no room
    for are dropped, as the wire would drop them.
    """
    n = len(batch)
    if n > MAX_PACKETS:
        raise ValueError(f"a frame holds at most {MAX_PACKETS} packets, not {n}")
    lengths = batch.packet_length.astype(np.int64)
    kinds = KIND_BY_LENGTH[lengths & 0xFFFF]
    if n and (kinds.max() == KIND_UNKNOWN or lengths.min() < 0):
        raise ValueError(f"packet lengths must be among {KIND_LENGTHS}")
    words = _row_words(batch)
    sizes = np.array(KIND_LENGTHS, dtype=np.int64)[kinds] if n else lengths
    headers = np.empty(n, dtype=np.int64)
    headers[:1] = 2
    np.cumsum(sizes[:-1] + 2, out=headers[1:])
    headers[1:] += 2
    frame = np.zeros(2 + int((sizes + 2).sum()), dtype=np.uint8)
    frame[:2] = (n >> 8, n & 0xFF)
    frame[headers], frame[headers + 1] = sizes >> 8, sizes & 0xFF
    for kind, length in enumerate(KIND_LENGTHS):
        rows = np.flatnonzero(kinds == kind)
        if rows.size:
            bodies = np.ascontiguousarray(_wire_words(words[rows], kind), dtype=">u4")
            at_every_offset = np.ndarray((len(frame) - length + 1,), f"V{length}", frame, strides=(1,))
            at_every_offset[headers[rows] + 2] = bodies.view(f"V{length}").ravel()
    return frame.tobytes()


def _row_words(batch: TickBatch) -> np.ndarray:
    """The 46-word tradable row of every tick, as int64, checked to fit uint32."""
    n = len(batch)
    words = np.zeros((n, WORDS_PER_ROW), dtype=np.int64)
    token = batch.instrument_token.astype(np.int64)
    divisor = DIVISOR_BY_SEGMENT[token & 0xFF]
    words[:, W_TOKEN] = token
    prices = np.stack([getattr(batch, name) for name in PRICE_COLUMNS], axis=1) if n else 0
    words[:, PRICE_WORDS] = np.rint(prices * divisor[:, None])
    words[:, QUANTITY_WORDS] = np.stack([getattr(batch, name) for name in QUANTITY_COLUMNS], axis=1) if n else 0
    words[:, W_LAST_TRADE_TIME] = batch.last_trade_time
    words[:, W_EXCHANGE_TIME] = batch.exchange_timestamp
    depth = words[:, W_DEPTH:].reshape(n, 2, DEPTH_LEVELS, 3)
    for side_index, side in enumerate(("buy", "sell")):
        depth[:, side_index, :, 0] = getattr(batch, f"depth_{side}_quantity")
        depth[:, side_index, :, 1] = np.rint(getattr(batch, f"depth_{side}_price") * divisor[:, None])
        orders = getattr(batch, f"depth_{side}_orders")
        if n and (orders.min() < 0 or orders.max() > 0xFFFF):
            raise ValueError("depth orders must fit 16 bits")
        depth[:, side_index, :, 2] = orders.astype(np.int64) << 16
    if n and (words.min() < 0 or words.max() > UINT32_MAX):
        raise ValueError("a value does not fit its unsigned 32-bit field")
    return words


def _wire_words(rows: np.ndarray, kind: int) -> np.ndarray:
    if kind == KIND_FULL:
        return rows
    if kind == KIND_QUOTE:
        return rows[:, :W_LAST_TRADE_TIME]
    if kind == KIND_LTP:
        return rows[:, :2]
    change = np.clip(rows[:, W_LAST_PRICE] - rows[:, W_CLOSE], INT32_MIN, INT32_MAX) & UINT32_MAX
    wire = np.column_stack([rows[:, _INDEX_WIRE_WORDS], change, rows[:, W_EXCHANGE_TIME]])
    return wire if kind == KIND_INDEX_FULL else wire[:, :-1]
