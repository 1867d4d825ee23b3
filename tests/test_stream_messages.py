"""The JSON stream's pure part (marketdata.stream): channel names, requests, and the feed's
messages converted, against kiteconnect's own parser and the chain's own figures."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from kiteconnect import KiteTicker

from marketdata import stream
from marketdata.analytics.black_scholes import price
from marketdata.analytics.chain import ChainQuotes, SideQuotes, compute_chain
from marketdata.feed.bars import ClosedBars
from marketdata.feed.publisher import Publisher
from marketdata.feed.state import FeedState
from marketdata.kite import build_frame, parse_frame

KITE = KiteTicker("key", "token")
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
NIFTY = 256265  # an index: & 0xff == 9
OPTION = 12345602  # an NFO contract: & 0xff == 2
T0 = 1_795_409_107  # 2026-11-23 10:15:07 IST


# -- channels and requests ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("channel", "group", "canonical"),
    [
        ("ticks:NIFTY", "ticks.NIFTY", "ticks:NIFTY"),
        ("ticks:nifty", "ticks.NIFTY", "ticks:NIFTY"),
        ("ticks:M&M", "ticks.M_M", "ticks:M_M"),
        ("instrument:12345602", "instrument.12345602", "instrument:12345602"),
        ("instrument:0042", "instrument.42", "instrument:42"),
        ("chain:NIFTY:2026-11-24", "chain.NIFTY.20261124", "chain:NIFTY:2026-11-24"),
        ("chain:BANKNIFTY:2026-12-29", "chain.BANKNIFTY.20261229", "chain:BANKNIFTY:2026-12-29"),
        ("feed:status", "feed.status", "feed:status"),
    ],
)
def test_channel_names_map_onto_the_feeds_groups(channel, group, canonical):
    assert stream.group_for_channel(channel) == group
    assert stream.channel_for_group(group) == canonical


@pytest.mark.parametrize(
    "channel",
    [
        "",
        "ticks:",
        "ticks:" + "A" * 41,
        "ticks.NIFTY",
        "instrument:abc",
        "instrument:-5",
        "instrument:١٢٣",  # Arabic-Indic digits pass str.isdigit
        "instrument:1234567890123",
        "chain:NIFTY:20261124",
        "chain:NIFTY:2026-02-30",
        "chain::2026-11-24",
        "chain:NIFTY",
        "feed:statuses",
        "quotes:NIFTY",
        "x" * 500,
        42,
        None,
        ["ticks:NIFTY"],
    ],
)
def test_anything_else_names_no_channel(channel):
    assert stream.group_for_channel(channel) is None


def test_the_token_query_parameter_is_read_when_present_even_empty():
    assert stream.api_token(b"token=abc123") == "abc123"
    assert stream.api_token(b"x=1&token=a%2Bb") == "a+b"
    assert stream.api_token(b"token=") == ""
    assert stream.api_token(b"") is None
    assert stream.api_token(b"tokens=abc") is None


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (None, "invalid_json"),
        ("{not json", "invalid_json"),
        ("[" * 100_000, "invalid_json"),
        ('["ticks:NIFTY"]', "invalid_request"),
        ('"subscribe"', "invalid_request"),
        ('{"action": "join", "channels": ["ticks:NIFTY"]}', "unknown_action"),
        ('{"channels": ["ticks:NIFTY"]}', "unknown_action"),
        ('{"action": ["subscribe"], "channels": []}', "unknown_action"),
        ('{"action": "subscribe"}', "invalid_request"),
        ('{"action": "subscribe", "channels": "ticks:NIFTY"}', "invalid_request"),
        (json.dumps({"action": "subscribe", "channels": ["feed:status"] * 1001}), "invalid_request"),
    ],
)
def test_a_request_the_stream_cannot_act_on_is_answered_with_its_error_code(text, code):
    with pytest.raises(stream.RequestError) as raised:
        stream.parse_request(text)
    message = json.loads(raised.value.frame())
    assert message["type"] == "error"
    assert message["data"]["code"] == code and message["data"]["message"]


def test_valid_channels_of_a_mixed_request_are_planned_and_the_bad_ones_named():
    request = stream.parse_request(
        json.dumps({"action": "subscribe", "channels": ["ticks:NIFTY", "nonsense", 7, "feed:status", "ticks:NIFTY"]})
    )
    change = stream.plan_subscriptions(request, {"feed.status"})
    assert (change.add, change.remove, change.unknown, change.over_limit) == (["ticks.NIFTY"], [], ["nonsense", 7], [])
    [error] = [json.loads(frame) for frame in change.error_frames()]
    assert error == {
        "type": "error",
        "data": {"code": "unknown_channel", "message": "unknown channels: nonsense, 7", "channels": ["nonsense", "7"]},
    }


def test_subscriptions_past_the_limit_are_refused_in_request_order():
    held = {f"instrument.{n}" for n in range(98)}
    request = stream.StreamRequest("subscribe", ["instrument:5", "ticks:NIFTY", "feed:status", "ticks:BANKNIFTY"])
    change = stream.plan_subscriptions(request, held)
    assert change.add == ["ticks.NIFTY", "feed.status"]
    assert change.over_limit == ["ticks:BANKNIFTY"]
    error = json.loads(change.error_frames()[0])["data"]
    assert (error["code"], error["channels"], error["limit"]) == ("too_many_subscriptions", ["ticks:BANKNIFTY"], 100)


def test_unsubscribing_leaves_only_what_is_held_and_ignores_the_rest():
    request = stream.StreamRequest("unsubscribe", ["ticks:NIFTY", "ticks:BANKNIFTY", "instrument:x"])
    change = stream.plan_subscriptions(request, {"ticks.NIFTY", "feed.status"})
    assert (change.add, change.remove, change.unknown) == ([], ["ticks.NIFTY"], ["instrument:x"])
    assert json.loads(stream.subscribed_frame({"feed.status", "chain.NIFTY.20261124"})) == {
        "type": "subscribed",
        "data": ["chain:NIFTY:2026-11-24", "feed:status"],
    }


# -- ticks, against kiteconnect ---------------------------------------------------------------------
def full_option_tick() -> dict:
    return {
        "instrument_token": OPTION,
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
        "exchange_timestamp": T0,
        "depth": {
            "buy": [{"quantity": 75 * (n + 1), "price": 101.2 - n * 0.05, "orders": n + 1} for n in range(5)],
            "sell": [{"quantity": 150 * (n + 1), "price": 101.3 + n * 0.05, "orders": n + 2} for n in range(5)],
        },
    }


def streamed_ticks(ticks: list[dict], *, watched: bool) -> tuple[dict, list[dict]]:
    """The ticks through the real feed (parse, state, publisher) and the stream's conversion."""
    sent: list[tuple[str, dict]] = []

    async def group_send(group: str, message: dict) -> None:
        sent.append((group, message))

    state = FeedState(capacity=8)
    state.add(tick["instrument_token"] for tick in ticks)
    state.apply(parse_frame(build_frame(ticks)))
    publisher = Publisher(state=state, group_send=group_send)
    tokens = [tick["instrument_token"] for tick in ticks]
    if watched:
        publisher.watched_tokens = set(tokens)
    else:
        publisher.groups_of_token = {token: ["ticks.NIFTY"] for token in tokens}
    asyncio.run(publisher.publish_changes())
    [(_, message)] = sent
    [text] = stream.stream_frames(message["json"])
    return json.loads(text), KITE._parse_binary(build_frame(ticks))


def shape(value):
    """Keys and nesting, with list lengths: what a program indexing into a tick relies on."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return None


def test_a_full_tick_on_an_instrument_channel_has_kiteconnects_keys_and_values():
    message, [kite] = streamed_ticks([full_option_tick()], watched=True)
    assert (message["type"], message["channel"]) == ("tick", "instrument:12345602")
    [tick] = message["data"]
    assert shape(tick) == shape(kite)
    assert list(tick) == list(kite)  # the same order, too
    for name in ("tradable", "mode", "instrument_token", "last_price", "volume_traded", "oi", "oi_day_low"):
        assert tick[name] == kite[name], name
    assert tick["average_traded_price"] == kite["average_traded_price"]
    assert tick["ohlc"] == kite["ohlc"]
    assert tick["change"] == pytest.approx(kite["change"], abs=1e-4)  # the feed keeps 4 decimals
    assert tick["depth"] == {
        side: [{**level, "price": pytest.approx(level["price"], abs=1e-9)} for level in levels]
        for side, levels in kite["depth"].items()
    }
    # kiteconnect's naive local datetimes; the stream's are ISO-8601 with the IST offset.
    assert tick["exchange_timestamp"] == "2026-11-23T10:15:07+05:30"
    assert dt.datetime.fromisoformat(tick["exchange_timestamp"]) == kite["exchange_timestamp"].astimezone(IST)
    assert dt.datetime.fromisoformat(tick["last_trade_time"]) == kite["last_trade_time"].astimezone(IST)


def test_a_full_tick_on_an_underlying_channel_keeps_the_keys_with_the_best_bid_and_offer_as_depth():
    message, [kite] = streamed_ticks([full_option_tick()], watched=False)
    assert message["channel"] == "ticks:NIFTY"
    [tick] = message["data"]
    assert {key: shape(value) for key, value in tick.items() if key != "depth"} == {
        key: shape(value) for key, value in kite.items() if key != "depth"
    }
    assert tick["depth"] == {
        "buy": [{"quantity": 75, "price": 101.2, "orders": None}],
        "sell": [{"quantity": 150, "price": 101.3, "orders": None}],
    }


@pytest.mark.parametrize(
    "tick",
    [
        {"instrument_token": OPTION, "mode": "quote", "last_price": 55.5, "volume_traded": 10, "ohlc": {"close": 50}},
        {"instrument_token": OPTION, "mode": "ltp", "last_price": 55.5},
        {"instrument_token": NIFTY, "mode": "full", "last_price": 26010.5, "exchange_timestamp": T0},
        {"instrument_token": NIFTY, "mode": "quote", "last_price": 26010.5, "ohlc": {"close": 25990.0}},
        {"instrument_token": NIFTY, "mode": "ltp", "last_price": 26010.5},
    ],
    ids=["quote", "ltp", "index-full", "index-quote", "index-ltp"],
)
def test_every_packet_kind_streams_with_kiteconnects_keys(tick):
    message, [kite] = streamed_ticks([tick], watched=True)
    [streamed] = message["data"]
    assert shape(streamed) == shape(kite)
    assert (streamed["mode"], streamed["tradable"], streamed["last_price"]) == (
        kite["mode"],
        kite["tradable"],
        kite["last_price"],
    )


def test_a_missing_exchange_time_streams_as_null():
    tick = {**full_option_tick(), "last_trade_time": 0}
    message, _ = streamed_ticks([tick], watched=True)
    assert message["data"][0]["last_trade_time"] is None


# -- bars, status --------------------------------------------------------------------------------------
def test_closed_bars_stream_as_kiteconnect_style_minute_candles():
    sent = []

    async def group_send(group: str, message: dict) -> None:
        sent.append(message)

    bars = ClosedBars(
        np.array([OPTION]),
        np.array([T0 - 7 - 60]),  # 10:14:00 IST
        *(np.array([value]) for value in (100.0, 102.5, 99.0, 101.25)),
        np.array([7_500]),
        np.array([456_000]),
        np.array([31]),
    )
    publisher = Publisher(state=FeedState(capacity=1), group_send=group_send)
    publisher.groups_of_token = {OPTION: ["ticks.NIFTY"]}
    asyncio.run(publisher.publish_bars(bars))
    [text] = stream.stream_frames(sent[0]["json"])
    assert json.loads(text) == {
        "type": "bar",
        "channel": "ticks:NIFTY",
        "data": [
            {
                "instrument_token": OPTION,
                "interval": "minute",
                "date": "2026-11-23T10:14:00+05:30",
                "open": 100.0,
                "high": 102.5,
                "low": 99.0,
                "close": 101.25,
                "volume": 7_500,
                "oi": 456_000,
                "tick_count": 31,
            }
        ],
    }


def test_the_feed_status_streams_as_it_is():
    status = {"state": "running", "source": "sim", "ticks_per_s": 2000}
    [text] = stream.stream_frames(json.dumps({"type": "status", "status": status}))
    assert json.loads(text) == {"type": "feed_status", "channel": "feed:status", "data": status}


# -- chain figures ------------------------------------------------------------------------------------
EXPIRY = dt.date(2026, 11, 24)
STRIKES = (25_950.0, 26_000.0, 26_050.0)


def chain_message() -> dict:
    """A chain's figures computed by compute_chain and wrapped as services.chain_refresh sends them."""
    years, spot = 1.2 / 365, 26_010.0
    values = {kind: price(spot, np.array(STRIKES), years, 0.065, 0.14, kind == "ce") for kind in ("ce", "pe")}
    quotes = ChainQuotes(
        strikes=np.array(STRIKES),
        spot=spot,
        time_to_expiry_years=years,
        ce=SideQuotes(last_price=values["ce"], oi=[150_000, 300_000, 225_000], volume=[1e6, 2e6, 1e6]),
        pe=SideQuotes(last_price=values["pe"], oi=[450_000, 375_000, 150_000], volume=[3e6, 2e6, 1e6]),
        rate=0.065,
        lot_size=75,
    )
    figures = compute_chain(quotes).to_dict()
    for row in figures["strikes"]:
        for side in ("ce", "pe"):
            row[side]["token"] = 20_000_000 + int(row["strike"]) * 2 + (side == "pe")
            row[side]["tradingsymbol"] = f"NIFTY26N24{int(row['strike'])}{side.upper()}"
    chain = {"underlying": "NIFTY", "expiry": "2026-11-24", "as_of": "2026-11-23T10:15:07+05:30", **figures}
    chain["computed_in_ms"] = 1.5
    return {"type": "chain", "group": "chain.NIFTY.20261124", "chain": chain}


def test_a_chain_message_streams_as_chain_greeks_and_pcr_with_the_chains_own_figures():
    sent = chain_message()
    chain = sent["chain"]
    texts = stream.stream_frames(json.dumps(sent, separators=(",", ":")))
    whole, greeks, pcr = (json.loads(text) for text in texts)
    assert [m["type"] for m in (whole, greeks, pcr)] == ["chain", "greeks_update", "pcr_update"]
    assert {m["channel"] for m in (whole, greeks, pcr)} == {"chain:NIFTY:2026-11-24"}
    assert whole["data"] == chain

    assert len(greeks["data"]) == 6
    for contract in greeks["data"]:
        row = next(row for row in chain["strikes"] if row["strike"] == contract["strike"])
        side = row[contract["option_type"].lower()]
        assert contract == {
            "token": side["token"],
            "tradingsymbol": side["tradingsymbol"],
            "strike": row["strike"],
            "option_type": contract["option_type"],
            "expiry": "2026-11-24",
            "price": side["ltp"],
            **{name: side[name] for name in ("oi", "iv", "delta", "gamma", "theta", "vega", "rho")},
            "timestamp": "2026-11-23T10:15:07+05:30",
        }
        assert side["iv"] == pytest.approx(14.0, abs=0.05)  # priced at 14 %, shown in percent points
    assert [(c["strike"], c["option_type"]) for c in greeks["data"][:2]] == [(25_950.0, "CE"), (25_950.0, "PE")]

    summary = chain["summary"]
    assert pcr["data"] == {
        "underlying": "NIFTY",
        "expiry": "2026-11-24",
        "pcr": summary["pcr_oi"],
        "pcr_volume": summary["pcr_volume"],
        "total_ce_oi": summary["total_ce_oi"],
        "total_pe_oi": summary["total_pe_oi"],
        "total_ce_volume": summary["total_ce_volume"],
        "total_pe_volume": summary["total_pe_volume"],
        "timestamp": "2026-11-23T10:15:07+05:30",
    }
    assert pcr["data"]["pcr"] == round(975_000 / 675_000, 3)


# -- once per process -------------------------------------------------------------------------------
def test_equal_messages_are_converted_once():
    message = json.dumps({"type": "status", "status": {"state": "running", "run": 4242}})
    first = stream.stream_frames(message)
    before = stream.stream_frames.cache_info()
    # Each socket deserialises its own copy of a group message: equal strings, distinct objects.
    copies = ["".join([message[:10], message[10:]]) for _ in range(100)]
    assert all(copy is not message for copy in copies)
    assert all(stream.stream_frames(copy) is first for copy in copies)
    after = stream.stream_frames.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (100, 0)


def test_a_malformed_feed_message_streams_nothing_and_does_not_raise():
    assert stream.stream_frames('{"type":"ticks","group":"ticks.NIFTY","ticks":[{"last_price":1}]}') == ()
    assert stream.stream_frames('{"type":"something new"}') == ()
    assert stream.stream_frames("not json") == ()


def test_the_module_imports_without_django():
    code = "import sys, marketdata.stream; assert not any(m.startswith('django') for m in sys.modules), 'django'"
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
