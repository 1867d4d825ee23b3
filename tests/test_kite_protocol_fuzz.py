"""Property tests and fuzzing for the Kite binary protocol.

Whatever bytes arrive, parse_frame gives a TickBatch or a FrameError whose offset lies inside the
input, never another exception; whenever it gives a batch, kiteconnect parses the same bytes to
the same ticks. Frames built from valid ticks round-trip through parse_frame and both builders.
"""

from __future__ import annotations

import random
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketdata.kite import FrameError, TickBatch, build_frame, build_frame_columns, parse_frame
from tests.test_kite_protocol import KITE, assert_parses_like_kiteconnect, assert_same_ticks, pack_frame

SEGMENTS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 0, 10, 11, 13, 255)
DIVISORS = {3: 10_000_000.0, 6: 10_000.0, 12: 10_000.0}
KNOWN_LENGTHS = (8, 28, 32, 44, 184)
UINT32_MAX = 0xFFFF_FFFF
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def raw_value(rng: random.Random) -> int:
    """A uint32 leaning to the edges: 0, 1, the maximum, small and any."""
    pick = rng.randrange(8)
    if pick < 3:
        return (0, 1, UINT32_MAX)[pick]
    return rng.randrange(10_000_000) if pick < 6 else rng.randrange(UINT32_MAX + 1)


@st.composite
def ticks(draw) -> dict:
    """A tick of any kind and segment, with every value in range; prices exact at the divisor.

    Hypothesis draws the shape (kind, segment, zero close, depth levels) and a Random it seeds
    fills in the two dozen values: drawing each one through Hypothesis is several times slower.
    """
    segment = draw(st.sampled_from(SEGMENTS))
    rng = draw(st.randoms(use_true_random=True))
    divisor = DIVISORS.get(segment, 100.0)

    def price() -> float:
        return raw_value(rng) / divisor

    tick = {
        "instrument_token": rng.randrange(1 << 24) << 8 | segment,
        "mode": draw(st.sampled_from(("ltp", "quote", "full"))),
        "last_price": price(),
    }
    # close == 0 gets its own chance: kiteconnect's change is then the int 0.
    close = 0.0 if draw(st.booleans()) else price()
    tick["ohlc"] = {"open": price(), "high": price(), "low": price(), "close": close}
    for name in ("last_traded_quantity", "volume_traded", "total_buy_quantity", "total_sell_quantity"):
        tick[name] = raw_value(rng)
    tick["average_traded_price"] = price()
    for name in ("oi", "oi_day_high", "oi_day_low", "last_trade_time", "exchange_timestamp"):
        tick[name] = raw_value(rng)
    tick["depth"] = {
        side: [
            {"quantity": raw_value(rng), "price": price(), "orders": rng.choice((0, 1, 0xFFFF, rng.randrange(1 << 16)))}
            for _ in range(draw(st.integers(0, 5)))
        ]
        for side in ("buy", "sell")
    }
    return tick


tick_lists = st.lists(ticks(), max_size=12)


@FUZZ
@given(tick_lists)
def test_frames_of_valid_ticks_parse_like_kiteconnect(ticks_in):
    assert_parses_like_kiteconnect(build_frame(ticks_in))


@FUZZ
@given(tick_lists)
def test_build_then_parse_gives_back_the_values(ticks_in):
    batch = parse_frame(build_frame(ticks_in))
    assert len(batch) == len(ticks_in)
    assert batch.skipped_packets == 0
    for row, tick in enumerate(ticks_in):
        index = tick["instrument_token"] & 0xFF == 9
        assert batch.instrument_token[row] == tick["instrument_token"]
        assert batch.last_price[row] == tick["last_price"]
        if tick["mode"] == "ltp":
            assert batch.close[row] == 0.0
            continue
        assert batch.close[row] == tick["ohlc"]["close"]
        assert batch.high[row] == tick["ohlc"]["high"]
        assert batch.volume_traded[row] == (0 if index else tick["volume_traded"])
        if tick["mode"] == "full":
            assert batch.exchange_timestamp[row] == tick["exchange_timestamp"]
            assert batch.oi[row] == (0 if index else tick["oi"])
            if not index:
                buy = tick["depth"]["buy"] + [{"quantity": 0, "price": 0.0, "orders": 0}] * 5
                assert batch.depth_buy_price[row].tolist() == [level["price"] for level in buy[:5]]
                assert batch.depth_buy_orders[row].tolist() == [level["orders"] for level in buy[:5]]


@FUZZ
@given(tick_lists)
def test_build_frame_columns_and_build_frame_invert_parse_frame(ticks_in):
    frame = build_frame(ticks_in)
    batch = parse_frame(frame)
    assert build_frame_columns(batch) == frame
    assert build_frame(batch.to_ticks()) == frame


# Packets of known and unknown lengths with arbitrary contents (nonzero depth padding, tokens of
# any segment, lengths kiteconnect skips); at least 4 bytes, as kiteconnect raises below that.
packet_bodies = st.one_of(
    st.sampled_from(KNOWN_LENGTHS).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    st.binary(min_size=4, max_size=200),
)


@FUZZ
@given(st.lists(packet_bodies, max_size=10))
def test_well_formed_frames_of_arbitrary_packets_parse_like_kiteconnect(packets):
    batch = assert_parses_like_kiteconnect(pack_frame(*packets))
    assert batch.skipped_packets == sum(len(p) not in KNOWN_LENGTHS for p in packets)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_a_batch_or_a_frame_error(frame):
    check_frame(frame)


@FUZZ
@given(st.lists(st.sampled_from(KNOWN_LENGTHS), min_size=1, max_size=8), st.data())
def test_frames_with_a_wrong_count_or_length_never_raise_anything_else(lengths, data):
    frame = bytearray(pack_frame(*(bytes(n) for n in lengths)))
    field = data.draw(st.sampled_from(["count", "length"]))
    if field == "count":
        offset = 0
    else:
        packet = data.draw(st.integers(0, len(lengths) - 1))
        offset = 2 + sum(n + 2 for n in lengths[:packet])
    old = struct.unpack_from(">H", frame, offset)[0]
    new = data.draw(st.integers(0, 0xFFFF).filter(lambda value: value != old))
    struct.pack_into(">H", frame, offset, new)
    outcome = check_frame(bytes(frame))
    # Another count leaves packets over or missing. Another length may still tile the frame by
    # chance (reading later bytes as headers), so only the count is sure to be an error.
    if field == "count":
        assert isinstance(outcome, FrameError)


# -- deterministic fuzzing: thousands of damaged frames in about a second ----------------------


def check_frame(frame: bytes) -> TickBatch | FrameError:
    """parse_frame's outcome, checked: a batch that kiteconnect agrees with, or a located FrameError."""
    try:
        batch = parse_frame(frame)
    except FrameError as error:
        assert 2 <= error.offset <= len(frame)
        assert f"byte {error.offset}" in str(error)
        return error
    assert isinstance(batch, TickBatch)
    if all(length >= 4 for length in packet_lengths(frame)):
        assert_same_ticks(batch.to_ticks(), KITE._parse_binary(frame))
    return batch


def packet_lengths(frame: bytes) -> list[int]:
    """Lengths of a well-formed frame's packets (parse_frame has already accepted it)."""
    if len(frame) < 2:
        return []
    lengths, position = [], 2
    for _ in range(struct.unpack_from(">H", frame)[0]):
        length = struct.unpack_from(">H", frame, position)[0]
        lengths.append(length)
        position += 2 + length
    return lengths


def sample_frame(rng: random.Random) -> bytes:
    packets = [
        struct.pack(">I", rng.randrange(1 << 24) << 8 | rng.choice(SEGMENTS)) + rng.randbytes(n - 4)
        for n in (184, 44, 8, 32, 28, 184, 8)
    ]
    rng.shuffle(packets)
    return pack_frame(*packets)


def test_every_truncation_of_a_valid_frame_is_a_frame_error():
    frame = sample_frame(random.Random(1))
    for cut in range(len(frame)):
        outcome = check_frame(frame[:cut])
        if cut < 2:
            assert isinstance(outcome, TickBatch)
            assert len(outcome) == 0
        else:
            assert isinstance(outcome, FrameError), cut
            assert outcome.offset <= cut
    assert len(check_frame(frame)) == 7


def test_single_byte_mutations_never_raise_anything_else():
    rng = random.Random(2)
    frame = sample_frame(rng)
    outcomes = {FrameError: 0, TickBatch: 0}
    for offset in range(len(frame)):
        for value in (0x00, 0xFF, frame[offset] ^ 0x01, rng.randrange(256)):
            mutated = bytearray(frame)
            mutated[offset] = value
            outcomes[type(check_frame(bytes(mutated)))] += 1
    # Most bytes are packet contents, so most mutations still parse; the headers' do not.
    assert outcomes[TickBatch] > outcomes[FrameError] > 0


def test_random_bytes_and_random_headers_never_raise_anything_else():
    rng = random.Random(3)
    for _ in range(1500):
        check_frame(rng.randbytes(rng.randrange(0, 64)))
    for _ in range(1000):
        count = rng.choice((0, 1, 2, 3, 255, 0xFFFF, rng.randrange(1 << 16)))
        body = b"".join(
            struct.pack(">H", rng.choice((0, 4, 8, 28, 44, 184, 500))) + rng.randbytes(rng.randrange(0, 200))
            for _ in range(rng.randrange(0, 4))
        )
        check_frame(struct.pack(">H", count) + body)


def test_huge_declared_counts_and_lengths_are_frame_errors():
    for frame in (b"\xff\xff", b"\xff\xff\x00", b"\xff\xff\x00\x08" + bytes(8), b"\x00\x01\xff\xff" + bytes(100)):
        outcome = check_frame(frame)
        assert isinstance(outcome, FrameError)
    assert check_frame(b"\x00\x01\xff\xff" + bytes(100)).offset == 2
