"""The feed's state and its conflated publishing: latest wins, one message per group per interval."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging

import numpy as np
import pytest

from marketdata.feed.pipeline import FeedPipeline
from marketdata.feed.publisher import Publisher
from marketdata.feed.state import FeedState
from marketdata.kite import build_frame
from trading_site.clock import IST

AT = dt.datetime(2026, 11, 23, 10, 15, 3, tzinfo=IST)
NIFTY, CALL, PUT = 256265, 10_191_874, 10_192_130


def full(token: int, price: float, *, volume: int = 1000, oi: int = 6500, at: dt.datetime = AT) -> dict:
    return {
        "instrument_token": token,
        "mode": "full",
        "last_price": price,
        "volume_traded": volume,
        "oi": oi,
        "ohlc": {"open": price - 1, "high": price + 2, "low": price - 3, "close": price - 0.5},
        "exchange_timestamp": at,
        "last_trade_time": at,
        "last_traded_quantity": 65,
        "depth": {
            "buy": [{"quantity": 650, "price": price - 0.05, "orders": 3}] * 5,
            "sell": [{"quantity": 130, "price": price + 0.05, "orders": 1}] * 5,
        },
    }


def index(price: float) -> dict:
    return {
        "instrument_token": NIFTY,
        "mode": "full",
        "last_price": price,
        "ohlc": {"open": 25950.0, "high": 26050.0, "low": 25900.0, "close": 25980.0},
        "exchange_timestamp": AT,
    }


class Recorder:
    """Stands in for the channel layer's group_send: it records what the feed sent, as clients get it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    async def __call__(self, group: str, message: dict) -> None:
        assert message["type"] in {"feed.ticks", "bar.closed", "feed.status"} and message["group"] == group
        self.sent.append((group, json.loads(message["json"])))


@pytest.fixture
def pipeline() -> FeedPipeline:
    state = FeedState(capacity=16)
    state.add([NIFTY, CALL, PUT])
    return FeedPipeline(state=state)


def test_the_state_keeps_the_latest_values_of_each_instrument(pipeline):
    pipeline.on_frame(build_frame([full(CALL, 101.5), index(26012.35), full(CALL, 102.25, volume=1300, oi=7150)]))
    state = pipeline.state
    call = state.slot(CALL)
    assert state.columns["last_price"][call] == 102.25
    assert (state.columns["volume_traded"][call], state.columns["oi"][call]) == (1300, 7150)
    assert state.columns["depth_buy_price"][call, 0] == pytest.approx(102.2)
    assert state.columns["last_price"][state.slot(NIFTY)] == 26012.35
    assert state.columns["last_price"][state.slot(PUT)] == 0  # no tick yet
    assert pipeline.counters.ticks == 3


def test_an_unsubscribed_token_is_counted_and_ignored(pipeline):
    pipeline.on_frame(build_frame([full(424242, 5.0), full(CALL, 10.0)]))
    assert pipeline.counters.unknown_ticks == 1
    assert pipeline.state.slot(424242) is None


def test_a_bad_frame_is_counted_and_the_feed_goes_on(pipeline, caplog):
    good = build_frame([full(CALL, 10.0)])
    with caplog.at_level(logging.WARNING, logger="marketdata.feed.pipeline"):
        for _ in range(3):
            pipeline.on_frame(good[:-7])  # truncated
        pipeline.on_frame(good)
    assert pipeline.counters.frame_errors == 3
    assert pipeline.state.columns["last_price"][pipeline.state.slot(CALL)] == 10.0
    assert len([r for r in caplog.records if "bad frame" in r.message]) == 1  # logged once a minute


def test_an_ltp_tick_changes_only_the_price(pipeline):
    pipeline.on_frame(build_frame([full(CALL, 100.0, volume=500, oi=6500)]))
    pipeline.on_frame(build_frame([{"instrument_token": CALL, "mode": "ltp", "last_price": 99.5}]))
    slot = pipeline.state.slot(CALL)
    assert pipeline.state.columns["last_price"][slot] == 99.5
    assert (pipeline.state.columns["volume_traded"][slot], pipeline.state.columns["oi"][slot]) == (500, 6500)


@pytest.mark.asyncio
async def test_one_message_per_group_with_the_latest_value_and_none_without_change(pipeline):
    recorder = Recorder()
    publisher = Publisher(state=pipeline.state, group_send=recorder)
    publisher.groups_of_token = {NIFTY: ["ticks.NIFTY"], CALL: ["ticks.NIFTY", "chain.NIFTY.20261124"]}

    for price in (100.0, 101.0, 102.5):
        pipeline.on_frame(build_frame([full(CALL, price)]))
    pipeline.on_frame(build_frame([index(26001.0)]))
    assert await publisher.publish_changes() == 2

    by_group = dict(recorder.sent)
    assert len(recorder.sent) == 2 == len(by_group)
    assert [t["last_price"] for t in by_group["chain.NIFTY.20261124"]["ticks"]] == [102.5]
    assert sorted(t["last_price"] for t in by_group["ticks.NIFTY"]["ticks"]) == [102.5, 26001.0]
    call = by_group["chain.NIFTY.20261124"]["ticks"][0]
    assert (call["bid"], call["ask"], call["oi"], call["exchange_timestamp"]) == (
        102.45,
        102.55,
        6500,
        int(AT.timestamp()),
    )

    recorder.sent.clear()
    assert await publisher.publish_changes() == 0
    assert recorder.sent == []


@pytest.mark.asyncio
async def test_watched_instruments_get_their_own_group_with_depth(pipeline):
    recorder = Recorder()
    publisher = Publisher(state=pipeline.state, group_send=recorder)
    publisher.watched_tokens = {CALL}
    pipeline.on_frame(build_frame([full(CALL, 50.0), full(PUT, 40.0)]))
    await publisher.publish_changes()
    assert [group for group, _ in recorder.sent] == [f"instrument.{CALL}"]
    depth = recorder.sent[0][1]["ticks"][0]["depth"]
    assert depth["buy"][0] == {"quantity": 650, "price": 49.95, "orders": 3} and len(depth["sell"]) == 5


def test_slots_are_reused_cleanly_after_an_unsubscribe():
    state = FeedState(capacity=2)
    state.add([1, 2])
    pipeline = FeedPipeline(state=state)
    pipeline.on_frame(build_frame([full(2 * 256 + 2, 10.0)]))  # unknown, ignored
    state.remove([1])
    state.add([3 * 256 + 2])
    assert state.instrument_count == 2
    with pytest.raises(ValueError, match="at most 2 instruments"):
        state.add([4 * 256 + 2])
    assert np.count_nonzero(state.tokens) == 2


@pytest.mark.asyncio
async def test_a_huge_group_update_is_split_under_the_message_size_limit():
    state = FeedState(capacity=5000)
    tokens = [(1000 + n) * 256 + 2 for n in range(4500)]
    state.add(tokens)
    pipeline = FeedPipeline(state=state)
    for start in range(0, 4500, 500):
        pipeline.on_frame(build_frame([full(token, 50.0) for token in tokens[start : start + 500]]))
    recorder = Recorder()
    publisher = Publisher(state=state, group_send=recorder)
    publisher.groups_of_token = {token: ["ticks.BIG"] for token in tokens}
    await publisher.publish_changes()
    assert [len(message["ticks"]) for _, message in recorder.sent] == [2000, 2000, 500]
    assert len({t["instrument_token"] for _, m in recorder.sent for t in m["ticks"]}) == 4500


class SwallowsCancellation(Recorder):
    """A group_send like some Redis client code: it absorbs a cancellation that lands inside it."""

    async def __call__(self, group: str, message: dict) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.2)
        await super().__call__(group, message)


@pytest.mark.asyncio
async def test_the_feed_stops_even_when_a_library_swallows_the_cancellation():
    from marketdata.feed.runner import FeedOptions, FeedRunner
    from marketdata.feed.sources import ReplaySource

    send = SwallowsCancellation()
    source = ReplaySource(load_ticks=lambda: [], speed=0)
    # The status task spends nearly all its time inside the send, so the stop's cancel lands there.
    runner = FeedRunner(source=source, universes=[], group_send=send, options=FeedOptions(status_interval=0.01))
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(0.5)
    runner.stop()
    await asyncio.wait_for(task, timeout=15)
    assert send.sent[-1][1]["status"]["state"] == "stopped"


def test_a_mode_change_on_resubscribe_keeps_the_open_bar():
    from marketdata.feed.runner import FeedRunner
    from marketdata.feed.sources import ReplaySource
    from tests.test_feed_universe import nifty

    runner = FeedRunner(source=ReplaySource(load_ticks=lambda: [], speed=0), universes=[nifty()], group_send=Recorder())
    runner.resubscribe()
    spot = runner.state.slot(256265)
    runner.pipeline.on_frame(build_frame([index(26001.0)]))
    opened = runner.pipeline.bars.start[spot]
    assert opened == int(AT.timestamp()) // 60 * 60

    runner.planner.subscribed[256265] = "quote"  # the next plan re-adds it in full mode
    runner.resubscribe()
    assert runner.pipeline.bars.start[spot] == opened and runner.state.slot(256265) == spot
