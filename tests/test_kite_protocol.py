"""The Kite ticker binary protocol: parse_frame against kiteconnect's own parser, and build_frame.

Frames here are packed by hand with struct (not with build_frame), so a mistake shared by the
builder and the parser cannot hide; kiteconnect 5.2.2's `KiteTicker._parse_binary` is the oracle.
"""

from __future__ import annotations

import os
import pickle
import random
import struct
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from kiteconnect import KiteTicker

from marketdata.kite import (
    MODE_CODES,
    MODE_FULL,
    MODE_LTP,
    MODE_QUOTE,
    FrameError,
    TickBatch,
    build_frame,
    build_frame_columns,
    build_heartbeat,
    parse_frame,
)

IST = ZoneInfo("Asia/Kolkata")
KITE = KiteTicker("key", "token")
UINT32_MAX = 0xFFFF_FFFF
ALL_SEGMENTS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 12)
UNKNOWN_SEGMENTS = (0, 10, 11, 13, 200, 255)
DIVISORS = {3: 10_000_000.0, 6: 10_000.0, 12: 10_000.0}
NIFTY = 256265  # & 0xff == 9, an index
NFO_OPTION = 12345602  # & 0xff == 2
T0 = 1_735_789_501  # 2025-01-02 09:15:01 IST


# -- hand-packed packets ---------------------------------------------------------------------


def pack_frame(*packets: bytes) -> bytes:
    return struct.pack(">H", len(packets)) + b"".join(struct.pack(">H", len(p)) + p for p in packets)


def ltp_packet(token: int, ltp: int) -> bytes:
    return struct.pack(">II", token, ltp)


def index_packet(token: int, ltp: int, high: int, low: int, open_: int, close: int, change: int = 0, ts=None) -> bytes:
    body = struct.pack(">IIIIIIi", token, ltp, high, low, open_, close, change)
    return body if ts is None else body + struct.pack(">I", ts)


def quote_packet(token: int, *values: int) -> bytes:
    """ltp, ltq, atp, volume, buy qty, sell qty, open, high, low, close (missing values 0)."""
    return struct.pack(">11I", token, *values, *[0] * (10 - len(values)))


def full_packet(token: int, quote: tuple = (), tail: tuple = (), depth: list | None = None, padding=0) -> bytes:
    """quote values as quote_packet, tail (ltt, oi, oi high, oi low, exchange ts), 10 depth entries."""
    head = quote_packet(token, *quote) + struct.pack(">5I", *tail, *[0] * (5 - len(tail)))
    depth = depth or [(0, 0, 0)] * 10
    return head + b"".join(struct.pack(">IIHH", q, p, o, padding) for q, p, o in depth)


def random_packet(rng: random.Random, length: int, segment: int) -> bytes:
    token = rng.randrange(1 << 24) << 8 | segment
    return struct.pack(">I", token) + rng.randbytes(length - 4)


# -- comparison with kiteconnect ----------------------------------------------------------------


def assert_same_ticks(ours: list[dict], theirs: list[dict]) -> None:
    assert len(ours) == len(theirs)
    for number, (mine, reference) in enumerate(zip(ours, theirs, strict=True)):
        assert_same_value(mine, reference, f"tick {number}")


def assert_same_value(mine, reference, where: str) -> None:
    if isinstance(reference, datetime):
        # kiteconnect: naive, in the process's local time; ours: aware IST. Same instant.
        assert isinstance(mine, datetime), where
        assert mine.tzinfo == IST, where
        assert reference.tzinfo is None, where
        assert mine.timestamp() == reference.timestamp(), where
        return
    assert type(mine) is type(reference), f"{where}: {type(mine).__name__} != {type(reference).__name__}"
    if isinstance(reference, dict):
        assert list(mine) == list(reference), where
        for key in reference:
            assert_same_value(mine[key], reference[key], f"{where}.{key}")
    elif isinstance(reference, list):
        assert len(mine) == len(reference), where
        for index, (a, b) in enumerate(zip(mine, reference, strict=True)):
            assert_same_value(a, b, f"{where}[{index}]")
    else:
        assert mine == reference, f"{where}: {mine!r} != {reference!r}"


def assert_parses_like_kiteconnect(frame: bytes) -> TickBatch:
    batch = parse_frame(frame)
    assert_same_ticks(batch.to_ticks(), KITE._parse_binary(frame))
    return batch


# -- values, field by field -----------------------------------------------------------------------


def test_full_packet_decodes_every_field_and_the_depth():
    depth = [(75 * (i + 1), 10_000 + i * 5, i + 1) for i in range(5)]
    depth += [(150 * (i + 1), 10_050 + i * 5, 20 + i) for i in range(5)]
    packet = full_packet(
        NFO_OPTION,
        quote=(10_125, 75, 10_080, 123_450, 9_000, 8_000, 9_950, 10_300, 9_900, 10_000),
        tail=(T0 - 2, 456_000, 460_000, 440_000, T0),
        depth=depth,
    )
    batch = assert_parses_like_kiteconnect(pack_frame(packet))

    assert len(batch) == 1
    assert batch.instrument_token.tolist() == [NFO_OPTION]
    assert batch.segment.tolist() == [2]
    assert batch.tradable.tolist() == [True]
    assert batch.mode.tolist() == [MODE_CODES[MODE_FULL]]
    assert batch.packet_length.tolist() == [184]
    assert batch.last_price.tolist() == [101.25]
    assert batch.last_traded_quantity.tolist() == [75]
    assert batch.average_traded_price.tolist() == [100.8]
    assert batch.volume_traded.tolist() == [123_450]
    assert batch.total_buy_quantity.tolist() == [9_000]
    assert batch.total_sell_quantity.tolist() == [8_000]
    assert (batch.open[0], batch.high[0], batch.low[0], batch.close[0]) == (99.5, 103.0, 99.0, 100.0)
    assert batch.change[0] == (101.25 - 100.0) * 100 / 100.0
    assert batch.last_trade_time.tolist() == [T0 - 2]
    assert batch.exchange_timestamp.tolist() == [T0]
    assert (batch.oi[0], batch.oi_day_high[0], batch.oi_day_low[0]) == (456_000, 460_000, 440_000)
    assert batch.depth_buy_quantity.tolist() == [[75, 150, 225, 300, 375]]
    assert batch.depth_buy_price.tolist() == [[100.0, 100.05, 100.1, 100.15, 100.2]]
    assert batch.depth_buy_orders.tolist() == [[1, 2, 3, 4, 5]]
    assert batch.depth_sell_quantity.tolist() == [[150, 300, 450, 600, 750]]
    assert batch.depth_sell_price.tolist() == [[100.5, 100.55, 100.6, 100.65, 100.7]]
    assert batch.depth_sell_orders.tolist() == [[20, 21, 22, 23, 24]]

    tick = batch.to_ticks()[0]
    assert tick["exchange_timestamp"] == datetime(2025, 1, 2, 9, 15, 1, tzinfo=IST)
    assert tick["last_trade_time"] == datetime(2025, 1, 2, 9, 14, 59, tzinfo=IST)
    assert tick["depth"]["sell"][4] == {"quantity": 750, "price": 100.7, "orders": 24}


def test_index_packet_reads_ltp_high_low_open_close_in_that_order():
    packet = index_packet(NIFTY, 2_400_055, 2_410_000, 2_385_050, 2_390_000, 2_395_000, change=5_055, ts=T0)
    batch = assert_parses_like_kiteconnect(pack_frame(packet))

    assert batch.tradable.tolist() == [False]
    assert batch.mode.tolist() == [MODE_CODES[MODE_FULL]]
    assert batch.last_price[0] == 24000.55
    assert (batch.open[0], batch.high[0], batch.low[0], batch.close[0]) == (23900.0, 24100.0, 23850.5, 23950.0)
    assert batch.exchange_timestamp.tolist() == [T0]
    # Fields an index packet does not carry are 0.
    assert batch.volume_traded.tolist() == [0]
    assert batch.last_trade_time.tolist() == [0]
    assert batch.depth_buy_quantity.tolist() == [[0] * 5]


def test_index_quote_packet_is_quote_mode_without_a_timestamp():
    packet = index_packet(NIFTY, 2_400_000, 2_410_000, 2_385_000, 2_390_000, 2_395_000)
    batch = assert_parses_like_kiteconnect(pack_frame(packet))
    assert batch.mode.tolist() == [MODE_CODES[MODE_QUOTE]]
    assert batch.packet_length.tolist() == [28]
    assert batch.exchange_timestamp.tolist() == [0]
    assert "exchange_timestamp" not in batch.to_ticks()[0]


def test_ltp_and_quote_packets_leave_later_fields_zero():
    frame = pack_frame(ltp_packet(408065, 150_025), quote_packet(408065, 150_030, 5, 150_000, 99, 1, 2, 3, 4, 5, 6))
    batch = assert_parses_like_kiteconnect(frame)
    assert batch.mode.tolist() == [0, 1]
    assert batch.last_price.tolist() == [1500.25, 1500.3]
    assert batch.close.tolist() == [0.0, 0.06]
    assert batch.last_traded_quantity.tolist() == [0, 5]
    assert batch.oi.tolist() == [0, 0]
    assert batch.exchange_timestamp.tolist() == [0, 0]
    assert batch.depth_sell_price.tolist() == [[0.0] * 5, [0.0] * 5]


@pytest.mark.parametrize("segment", ALL_SEGMENTS + UNKNOWN_SEGMENTS)
def test_each_segment_divides_prices_by_its_divisor(segment):
    token = 4242 << 8 | segment
    frame = pack_frame(
        ltp_packet(token, 123_456_789),
        quote_packet(token, 123_456_789, 1, 987_654_321),
        full_packet(token, quote=(3, 0, 0, 0, 0, 0, 0, 0, 0, 7), depth=[(1, 99_999_999, 1)] * 10),
    )
    batch = assert_parses_like_kiteconnect(frame)
    divisor = DIVISORS.get(segment, 100.0)
    assert batch.segment.tolist() == [segment] * 3
    assert batch.tradable.tolist() == [segment != 9] * 3
    assert batch.last_price.tolist() == [123_456_789 / divisor, 123_456_789 / divisor, 3 / divisor]
    assert batch.average_traded_price[1] == 987_654_321 / divisor
    assert batch.close[2] == 7 / divisor
    assert batch.depth_sell_price[2].tolist() == [99_999_999 / divisor] * 5


def test_every_kind_and_segment_mixed_and_shuffled_matches_kiteconnect():
    rng = random.Random(7)
    packets = [
        random_packet(rng, length, segment)
        for length in (8, 28, 32, 44, 184)
        for segment in ALL_SEGMENTS + UNKNOWN_SEGMENTS
        for _ in range(3)
    ]
    rng.shuffle(packets)
    batch = assert_parses_like_kiteconnect(pack_frame(*packets))
    # Rows stay in frame order.
    assert batch.instrument_token.tolist() == [struct.unpack(">I", p[:4])[0] for p in packets]
    assert batch.packet_length.tolist() == [len(p) for p in packets]


def test_a_zero_close_gives_kiteconnects_int_zero_change():
    frame = pack_frame(
        quote_packet(NFO_OPTION, 10_000, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        index_packet(NIFTY, 2_400_000, 0, 0, 0, 0),
        quote_packet(NFO_OPTION, 10_000, 0, 0, 0, 0, 0, 0, 0, 0, 8_000),
    )
    batch = assert_parses_like_kiteconnect(frame)
    ticks = batch.to_ticks()
    assert [type(tick["change"]) for tick in ticks] == [int, int, float]
    assert batch.change.tolist() == [0.0, 0.0, 25.0]


def test_values_are_read_as_unsigned_32_bit():
    full = full_packet(
        UINT32_MAX,  # segment 255: divisor 100
        quote=(UINT32_MAX,) * 10,
        tail=(UINT32_MAX,) * 5,
        depth=[(UINT32_MAX, UINT32_MAX, 0xFFFF)] * 10,
        padding=0xFFFF,
    )
    index = index_packet(0xFFFF_FF09, UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX, -1, UINT32_MAX)
    batch = assert_parses_like_kiteconnect(pack_frame(full, index, ltp_packet(UINT32_MAX, UINT32_MAX)))
    assert batch.instrument_token.tolist() == [UINT32_MAX, 0xFFFF_FF09, UINT32_MAX]
    assert batch.last_price.tolist() == [UINT32_MAX / 100] * 3
    assert batch.volume_traded[0] == UINT32_MAX
    assert batch.depth_sell_orders[0].tolist() == [0xFFFF] * 5  # the padding bytes are not part of it
    assert batch.exchange_timestamp.tolist() == [UINT32_MAX, UINT32_MAX, 0]
    assert batch.to_ticks()[0]["exchange_timestamp"] == datetime(2106, 2, 7, 6, 28, 15, tzinfo=ZoneInfo("UTC"))


def test_a_timestamp_of_zero_is_the_epoch_in_ist():
    frame = pack_frame(full_packet(NFO_OPTION), index_packet(NIFTY, 1, 1, 1, 1, 1, ts=0))
    ticks = assert_parses_like_kiteconnect(frame).to_ticks()
    epoch = datetime(1970, 1, 1, 5, 30, tzinfo=IST)
    assert ticks[0]["last_trade_time"] == ticks[0]["exchange_timestamp"] == ticks[1]["exchange_timestamp"] == epoch
    assert ticks[0]["exchange_timestamp"].utcoffset() == timedelta(hours=5, minutes=30)


@pytest.fixture
def new_york_local_time():
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    yield
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()


def test_times_are_ist_whatever_the_process_timezone(new_york_local_time):
    frame = pack_frame(full_packet(NFO_OPTION, tail=(T0, 0, 0, 0, T0)))
    theirs = KITE._parse_binary(frame)[0]["exchange_timestamp"]
    ours = assert_parses_like_kiteconnect(frame).to_ticks()[0]["exchange_timestamp"]
    assert theirs == datetime(2025, 1, 1, 22, 45, 1)  # naive New York wall clock
    assert ours == datetime(2025, 1, 2, 9, 15, 1, tzinfo=IST)
    assert (ours.hour, ours.minute) == (9, 15)


def test_unknown_length_packets_are_skipped_and_counted_like_kiteconnect():
    rng = random.Random(3)
    known = [random_packet(rng, 184, 2), random_packet(rng, 8, 1), random_packet(rng, 44, 1)]
    odd = [rng.randbytes(4), rng.randbytes(7), rng.randbytes(45), rng.randbytes(183), rng.randbytes(300)]
    frame = pack_frame(odd[0], known[0], odd[1], odd[2], known[1], odd[3], odd[4], known[2])
    batch = assert_parses_like_kiteconnect(frame)
    assert batch.skipped_packets == 5
    assert batch.packet_length.tolist() == [184, 8, 44]
    assert batch.last_price.tolist() == parse_frame(pack_frame(*known)).last_price.tolist()


def test_packets_under_four_bytes_are_skipped_where_kiteconnect_raises():
    # kiteconnect unpacks a token before looking at the length, so it raises struct.error and
    # loses the whole frame; a short packet does not damage the framing, so it is skipped here.
    frame = pack_frame(b"", ltp_packet(408065, 100), b"\x01\x02\x03")
    with pytest.raises(struct.error):
        KITE._parse_binary(frame)
    batch = parse_frame(frame)
    assert batch.instrument_token.tolist() == [408065]
    assert batch.skipped_packets == 2


def test_a_frame_of_only_unknown_packets_is_empty_with_the_skips_counted():
    batch = parse_frame(pack_frame(b"abc", b"defg"))
    assert len(batch) == 0
    assert batch.skipped_packets == 2


@pytest.mark.parametrize("frame", [b"", b"\x00", b"\xff"])
def test_a_frame_under_two_bytes_is_a_heartbeat(frame):
    batch = parse_frame(frame)
    assert len(batch) == 0
    assert batch.to_ticks() == KITE._parse_binary(frame) == []


def test_a_frame_of_zero_packets_is_empty():
    assert len(parse_frame(b"\x00\x00")) == 0


def test_uniform_frames_take_the_fast_path_and_still_match():
    rng = random.Random(11)
    for length, segment in ((184, 2), (44, 1), (8, 7), (32, 9), (28, 9), (7, 1), (100, 1)):
        packets = [random_packet(rng, length, segment) for _ in range(50)]
        batch = assert_parses_like_kiteconnect(pack_frame(*packets))
        assert len(batch) == (50 if length in (8, 28, 32, 44, 184) else 0)
        assert batch.skipped_packets == 50 - len(batch)
    assert parse_frame(pack_frame(*[b""] * 50)).skipped_packets == 50


def test_bytearray_and_memoryview_frames_parse_the_same():
    frame = pack_frame(full_packet(NFO_OPTION, quote=(12_345,)), ltp_packet(408065, 99))
    as_bytes = parse_frame(frame)
    for other in (bytearray(frame), memoryview(frame), memoryview(b"xx" + frame)[2:]):
        batch = parse_frame(other)
        assert batch.last_price.tolist() == as_bytes.last_price.tolist() == [123.45, 0.99]


def test_columns_have_the_documented_dtypes_and_shapes():
    rng = random.Random(5)
    batch = parse_frame(pack_frame(*(random_packet(rng, n, 2) for n in (184, 44, 8, 32, 28))))
    for candidate in (batch, TickBatch.empty(), TickBatch.concat([batch, batch])):
        n = len(candidate)
        assert candidate.instrument_token.dtype == np.int64
        assert candidate.segment.dtype == np.uint8
        assert candidate.tradable.dtype == np.bool_
        assert candidate.mode.dtype == np.uint8
        assert candidate.packet_length.dtype == np.int16
        for name in ("last_price", "average_traded_price", "open", "high", "low", "close", "change"):
            assert getattr(candidate, name).dtype == np.float64
            assert getattr(candidate, name).shape == (n,)
        for name in ("volume_traded", "oi", "oi_day_low", "last_trade_time", "exchange_timestamp"):
            assert getattr(candidate, name).dtype == np.int64
        for side in ("buy", "sell"):
            assert getattr(candidate, f"depth_{side}_quantity").dtype == np.int64
            assert getattr(candidate, f"depth_{side}_price").dtype == np.float64
            assert getattr(candidate, f"depth_{side}_orders").shape == (n, 5)


def test_concat_keeps_order_and_sums_skips():
    first = parse_frame(pack_frame(ltp_packet(408065, 100), b"??"))
    second = parse_frame(pack_frame(ltp_packet(884737, 200), ltp_packet(408065, 300)))
    both = TickBatch.concat([first, TickBatch.empty(), second])
    assert both.instrument_token.tolist() == [408065, 884737, 408065]
    assert both.last_price.tolist() == [1.0, 2.0, 3.0]
    assert both.skipped_packets == 1
    assert len(TickBatch.concat([])) == 0


# -- damaged frames -------------------------------------------------------------------------------


def test_a_truncated_packet_is_reported_with_its_number_and_offset():
    rng = random.Random(1)
    packets = [random_packet(rng, 8, 1), random_packet(rng, 8, 1), random_packet(rng, 184, 2)]
    packets += [random_packet(rng, 44, 1), random_packet(rng, 8, 1)]
    frame = pack_frame(*packets)
    header_of_third = 2 + 10 + 10
    cut = frame[: header_of_third + 2 + 40]
    with pytest.raises(FrameError) as caught:
        parse_frame(cut)
    assert str(caught.value) == f"packet 3 of 5 at byte {header_of_third} declares 184 bytes but only 40 remain"
    assert caught.value.offset == header_of_third


def test_a_cut_length_header_is_reported():
    frame = pack_frame(ltp_packet(408065, 1), ltp_packet(408065, 2))
    with pytest.raises(FrameError) as caught:
        parse_frame(frame[:13])
    assert str(caught.value) == "packet 2 of 2 at byte 12 needs a 2-byte length but only 1 remain"
    assert caught.value.offset == 12


def test_bytes_after_the_declared_packets_are_rejected():
    frame = pack_frame(ltp_packet(408065, 1), ltp_packet(408065, 2)) + b"\x00\x08"
    with pytest.raises(FrameError) as caught:
        parse_frame(frame)
    assert str(caught.value) == "2 bytes of trailing data at byte 22 after 2 packets"
    assert caught.value.offset == 22


def test_a_huge_packet_count_on_a_short_frame_is_a_frame_error():
    with pytest.raises(FrameError) as caught:
        parse_frame(b"\xff\xff" + struct.pack(">H", 8) + ltp_packet(408065, 1))
    assert caught.value.offset == 12
    assert "packet 2 of 65535" in str(caught.value)


def test_frame_error_is_a_value_error_that_survives_pickling():
    error = FrameError("2 bytes of trailing data at byte 22 after 2 packets", 22)
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, ValueError)
    assert (str(copy), copy.offset) == (str(error), 22)


def test_writing_into_one_column_leaves_the_others_alone():
    frame = pack_frame(full_packet(NFO_OPTION, quote=(100, 1, 2, 3, 4, 5, 6, 7, 8, 9), depth=[(1, 2, 3)] * 10))
    batch = parse_frame(frame)
    batch.depth_buy_quantity[:] = 99
    batch.volume_traded[:] = 99
    assert batch.depth_sell_quantity.tolist() == [[1] * 5]
    assert batch.depth_buy_price.tolist() == [[0.02] * 5]
    assert batch.last_traded_quantity.tolist() == [1]
    assert batch.average_traded_price.tolist() == [0.02]


# -- build_frame ----------------------------------------------------------------------------------


def test_build_frame_writes_the_packet_kind_the_mode_and_segment_call_for():
    ticks = [
        {"instrument_token": NFO_OPTION, "mode": MODE_FULL},
        {"instrument_token": NFO_OPTION, "mode": MODE_QUOTE},
        {"instrument_token": NFO_OPTION, "mode": MODE_LTP},
        {"instrument_token": NIFTY, "mode": MODE_FULL},
        {"instrument_token": NIFTY, "mode": MODE_QUOTE},
        {"instrument_token": NIFTY, "mode": MODE_LTP},
    ]
    frame = build_frame(ticks)
    assert parse_frame(frame).packet_length.tolist() == [184, 44, 8, 32, 28, 8]
    assert len(frame) == 2 + (184 + 44 + 8 + 32 + 28 + 8) + 6 * 2


def test_build_frame_matches_hand_packed_bytes():
    full = {
        "instrument_token": NFO_OPTION,
        "mode": "full",
        "last_price": 101.25,
        "last_traded_quantity": 75,
        "average_traded_price": 100.8,
        "volume_traded": 123_450,
        "total_buy_quantity": 9_000,
        "total_sell_quantity": 8_000,
        "ohlc": {"open": 99.5, "high": 103.0, "low": 99.0, "close": 100.0},
        "last_trade_time": T0 - 2,
        "oi": 456_000,
        "oi_day_high": 460_000,
        "oi_day_low": 440_000,
        "exchange_timestamp": datetime(2025, 1, 2, 9, 15, 1, tzinfo=IST),
        "depth": {"buy": [{"quantity": 75, "price": 100.0, "orders": 1}], "sell": []},
    }
    index = {
        "instrument_token": NIFTY,
        "mode": "full",
        "last_price": 24000.55,
        "ohlc": {"open": 23900.0, "high": 24100.0, "low": 23850.5, "close": 23950.0},
        "exchange_timestamp": datetime(2025, 1, 2, 9, 15, 1),  # naive: taken as IST
    }
    expected_full = full_packet(
        NFO_OPTION,
        quote=(10_125, 75, 10_080, 123_450, 9_000, 8_000, 9_950, 10_300, 9_900, 10_000),
        tail=(T0 - 2, 456_000, 460_000, 440_000, T0),
        depth=[(75, 10_000, 1)] + [(0, 0, 0)] * 9,
    )
    expected_index = index_packet(NIFTY, 2_400_055, 2_410_000, 2_385_050, 2_390_000, 2_395_000, 5_055, T0)
    assert build_frame([full, index]) == pack_frame(expected_full, expected_index)


def test_build_frame_rounds_prices_to_the_segment_divisor():
    ticks = [
        {"instrument_token": 77 << 8 | 3, "mode": "ltp", "last_price": 83.12345678},
        {"instrument_token": 77 << 8 | 6, "mode": "ltp", "last_price": 83.12346},
        {"instrument_token": 77 << 8 | 1, "mode": "ltp", "last_price": 0.015000001},
    ]
    frame = build_frame(ticks)
    assert frame == pack_frame(
        ltp_packet(77 << 8 | 3, 831_234_568), ltp_packet(77 << 8 | 6, 831_235), ltp_packet(77 << 8 | 1, 2)
    )


def test_build_frame_rejects_values_a_packet_cannot_hold():
    with pytest.raises(ValueError, match="last_price"):
        build_frame([{"instrument_token": NFO_OPTION, "mode": "ltp", "last_price": -1.0}])
    with pytest.raises(ValueError, match="volume_traded"):
        build_frame([{"instrument_token": NFO_OPTION, "mode": "quote", "volume_traded": 1 << 32}])
    with pytest.raises(ValueError, match="mode"):
        build_frame([{"instrument_token": NFO_OPTION, "mode": "snapshot"}])
    with pytest.raises(ValueError, match="instrument_token"):
        build_frame([{"mode": "ltp"}])
    with pytest.raises(ValueError, match="orders"):
        build_frame([{"instrument_token": NFO_OPTION, "mode": "full", "depth": {"buy": [{"orders": 70_000}]}}])


def test_heartbeat_is_one_byte_that_parses_empty():
    assert build_heartbeat() == b"\x00"
    assert len(parse_frame(build_heartbeat())) == 0


def test_build_frame_columns_rebuilds_the_frame_a_batch_came_from():
    rng = random.Random(9)
    ticks = []
    for segment in ALL_SEGMENTS + UNKNOWN_SEGMENTS:
        for mode in (MODE_LTP, MODE_QUOTE, MODE_FULL):
            divisor = DIVISORS.get(segment, 100.0)

            def price(divisor=divisor) -> float:
                return rng.randrange(1 << 32) / divisor

            ticks.append(
                {
                    "instrument_token": rng.randrange(1 << 24) << 8 | segment,
                    "mode": mode,
                    "last_price": price(),
                    "volume_traded": rng.randrange(1 << 32),
                    "ohlc": {"open": price(), "high": price(), "low": price(), "close": price()},
                    "exchange_timestamp": rng.randrange(1 << 32),
                    "depth": {"sell": [{"quantity": 1, "price": price(), "orders": 65535}] * 5},
                }
            )
    rng.shuffle(ticks)
    frame = build_frame(ticks)
    batch = assert_parses_like_kiteconnect(frame)
    assert build_frame_columns(batch) == frame
    assert build_frame(batch.to_ticks()) == frame
    assert build_frame_columns(TickBatch.empty()) == b"\x00\x00"


def test_the_module_imports_without_django():
    code = "import sys, marketdata.kite; assert not any(m.startswith('django') for m in sys.modules), 'django'"
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        env={key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
