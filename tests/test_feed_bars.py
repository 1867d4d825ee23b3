"""1-minute bars from ticks: boundaries, gaps, timer closes, late ticks, volume and OI."""

from __future__ import annotations

import numpy as np

from marketdata.feed.bars import BarBuilder

T0 = 1_795_000_020  # 09:47:00 IST on some day, a minute boundary
assert T0 % 60 == 0


def builder(*tokens: int) -> BarBuilder:
    slot_tokens = np.zeros(8, dtype=np.int64)
    slot_tokens[: len(tokens)] = tokens
    return BarBuilder(slot_tokens)


def ticks(*rows):
    """rows of (slot, price, cumulative volume, oi, seconds after T0)."""
    slots, price, volume, oi, seconds = zip(*rows, strict=True)
    return (
        np.array(slots, dtype=np.int64),
        np.array(price, dtype=np.float64),
        np.array(volume, dtype=np.int64),
        np.array(oi, dtype=np.int64),
        np.array(seconds, dtype=np.int64) + T0,
    )


def test_a_bar_closes_on_the_first_tick_of_the_next_minute_with_ohlc_volume_and_oi():
    bars = builder(256265)
    assert len(bars.update(*ticks((0, 100.0, 1000, 50, 1), (0, 103.5, 1300, 55, 20), (0, 99.0, 1450, 60, 40)))) == 0
    closed = bars.update(*ticks((0, 101.0, 1500, 65, 61)))
    assert closed.rows() == [
        {
            "instrument_token": 256265,
            "start": T0,
            "open": 100.0,
            "high": 103.5,
            "low": 99.0,
            "close": 99.0,
            "volume": 450,
            "oi": 60,
            "tick_count": 3,
        }
    ]
    later = bars.close_due(T0 + 120)
    assert later.rows()[0] == {
        "instrument_token": 256265,
        "start": T0 + 60,
        "open": 101.0,
        "high": 101.0,
        "low": 101.0,
        "close": 101.0,
        "volume": 50,
        "oi": 65,
        "tick_count": 1,
    }


def test_a_batch_spanning_two_minutes_closes_the_first_inside_the_batch():
    bars = builder(11, 22)
    closed = bars.update(
        *ticks((0, 10.0, 100, 0, 50), (1, 20.0, 5, 0, 55), (0, 11.0, 130, 0, 59), (0, 12.0, 170, 0, 62))
    )
    assert [(r["instrument_token"], r["close"], r["volume"]) for r in closed.rows()] == [(11, 11.0, 30)]
    # Instrument 22 had no tick in the new minute: its bar is still open until the timer.
    assert bars.start[1] == T0


def test_a_minute_without_ticks_makes_no_bar():
    bars = builder(11)
    bars.update(*ticks((0, 10.0, 100, 0, 5)))
    closed = bars.update(*ticks((0, 12.0, 160, 0, 185)))  # three minutes later
    assert [r["start"] for r in closed.rows()] == [T0]
    assert bars.start[0] == T0 + 180


def test_the_timer_closes_only_finished_minutes():
    bars = builder(11, 22)
    bars.update(*ticks((0, 10.0, 100, 0, 10), (1, 20.0, 5, 0, 70)))
    assert [r["instrument_token"] for r in bars.close_due(T0 + 60).rows()] == [11]
    assert len(bars.close_due(T0 + 119)) == 0
    assert [r["instrument_token"] for r in bars.close_due(T0 + 120).rows()] == [22]


def test_after_a_timer_close_the_next_bar_counts_volume_from_the_previous_close():
    bars = builder(11)
    bars.update(*ticks((0, 10.0, 100, 0, 10), (0, 10.5, 140, 0, 20)))
    bars.close_due(T0 + 60)
    bars.update(*ticks((0, 11.0, 200, 0, 130)))
    assert bars.close_due(T0 + 180).rows()[0]["volume"] == 60


def test_a_late_tick_for_a_closed_minute_is_not_counted():
    bars = builder(11)
    bars.update(*ticks((0, 10.0, 100, 0, 10), (0, 11.0, 150, 0, 65)))
    closed = bars.update(*ticks((0, 50.0, 160, 0, 30)))  # belongs to the closed minute
    assert len(closed) == 0 and bars.late_ticks == 1
    assert bars.high[0] == 11.0


def test_repeated_ticks_of_one_instrument_in_a_batch_keep_order():
    bars = builder(11)
    bars.update(*ticks((0, 10.0, 100, 7, 1), (0, 9.0, 110, 8, 2), (0, 12.0, 120, 9, 3), (0, 11.0, 130, 6, 4)))
    row = bars.close_due(T0 + 60).rows()[0]
    assert (row["open"], row["high"], row["low"], row["close"], row["oi"], row["tick_count"]) == (
        10.0,
        12.0,
        9.0,
        11.0,
        6,
        4,
    )


def test_a_new_trading_day_resets_the_cumulative_volume():
    bars = builder(11)
    bars.update(*ticks((0, 10.0, 90_000, 0, 10), (0, 10.0, 95_000, 0, 20)))
    bars.close_due(T0 + 60)
    next_day = 86_400
    bars.update(*ticks((0, 10.0, 300, 0, next_day + 10)))
    assert bars.close_due(T0 + next_day + 60).rows()[0]["volume"] == 300
