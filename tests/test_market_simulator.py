"""The market simulator behind `run_feed --source sim`: Kite-shaped ticks that a trader recognises."""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import math

import numpy as np
import pytest

from marketdata.sim import MarketSimulator, SimContract, SimUnderlying
from marketdata.sim.clock import IST

NIFTY_INDEX_TOKEN = 1001 * 256 + 9  # Kite's NIFTY 50 token, 256265
BANKNIFTY_INDEX_TOKEN = 1016 * 256 + 9
MONDAY = dt.date(2026, 1, 19)
WEEKLY, MONTHLY = dt.date(2026, 1, 20), dt.date(2026, 1, 27)  # NIFTY expiries: Tuesdays, the last one monthly
OPEN_1000 = dt.datetime(2026, 1, 19, 10, 0, tzinfo=IST)
INDEX_KEYS = {"instrument_token", "mode", "last_price", "ohlc", "exchange_timestamp"}
TRADABLE_KEYS = INDEX_KEYS | {
    "last_traded_quantity",
    "average_traded_price",
    "volume_traded",
    "total_buy_quantity",
    "total_sell_quantity",
    "last_trade_time",
    "oi",
    "oi_day_high",
    "oi_day_low",
    "depth",
}


def contract_token(token_base: int, expiry: dt.date, slot: int) -> int:
    """Tokens as in instruments.demo: stable per (underlying, expiry, strike, kind), NFO segment 2."""
    return (token_base + (expiry.toordinal() % 1000) * 1000 + slot) * 256 + 2


def option_chain(
    symbol: str,
    *,
    token_base: int,
    centre: float,
    step: float,
    lot: int,
    expiries: tuple[dt.date, ...],
    each_side: int,
    future_expiry: dt.date | None,
) -> tuple[SimContract, ...]:
    contracts = []
    if future_expiry is not None:
        contracts.append(SimContract(contract_token(token_base, future_expiry, 950), "FUT", 0.0, future_expiry, lot))
    for expiry in expiries:
        for offset in range(-each_side, each_side + 1):
            strike = centre + offset * step
            slot = int(strike / step) % 450 * 2
            contracts.append(SimContract(contract_token(token_base, expiry, slot), "CE", strike, expiry, lot))
            contracts.append(SimContract(contract_token(token_base, expiry, slot + 1), "PE", strike, expiry, lot))
    return tuple(contracts)


def nifty(spot: float = 26_000.0, each_side: int = 10, expiries: tuple[dt.date, ...] = (WEEKLY, MONTHLY)):
    """NIFTY at 26,000: ATM +- 10 strikes 50 apart, this week's and the monthly expiry, lot 65,
    and the monthly future."""
    contracts = option_chain(
        "NIFTY",
        token_base=1_000_000,
        centre=26_000.0,
        step=50.0,
        lot=65,
        expiries=expiries,
        each_side=each_side,
        future_expiry=MONTHLY,
    )
    return SimUnderlying("NIFTY", NIFTY_INDEX_TOKEN, spot, 50.0, contracts, annual_volatility=0.13)


def banknifty() -> SimUnderlying:
    contracts = option_chain(
        "BANKNIFTY",
        token_base=2_000_000,
        centre=59_000.0,
        step=100.0,
        lot=30,
        expiries=(MONTHLY,),
        each_side=5,
        future_expiry=MONTHLY,
    )
    return SimUnderlying("BANKNIFTY", BANKNIFTY_INDEX_TOKEN, 59_000.0, 100.0, contracts)


def run(simulator: MarketSimulator, steps: int, seconds: float) -> list[dict]:
    ticks = []
    for _ in range(steps):
        ticks.extend(simulator.step(seconds))
    return ticks


def is_index(tick: dict) -> bool:
    return tick["instrument_token"] & 0xFF == 9


def paise(rupees: float) -> int:
    return round(rupees * 100)


@pytest.fixture(scope="module")
def hour() -> tuple[SimUnderlying, list[dict]]:
    """A simulated hour, 10:00-11:00 IST, at speed 60 in quarter-second steps."""
    underlying = nifty()
    simulator = MarketSimulator([underlying], seed=7, start=OPEN_1000, speed=60)
    return underlying, simulator.snapshot() + run(simulator, 240, 0.25)


def by_contract(underlying: SimUnderlying) -> dict[int, SimContract]:
    return {contract.instrument_token: contract for contract in underlying.contracts}


def test_the_same_seed_repeats_the_ticks_and_another_seed_does_not():
    step_lengths = [0.05, 0.1, 0.05, 1.0, 0.25] * 12

    def ticks(seed: int) -> list[dict]:
        simulator = MarketSimulator([nifty(), banknifty()], seed=seed, start=OPEN_1000, speed=5)
        return simulator.snapshot() + [tick for seconds in step_lengths for tick in simulator.step(seconds)]

    first, again, other = ticks(11), ticks(11), ticks(12)
    assert len(first) > 500
    assert first == again
    assert first != other
    assert [t["last_price"] for t in first if is_index(t)] != [t["last_price"] for t in other if is_index(t)]


def test_an_underlyings_path_does_not_depend_on_the_others_simulated_with_it():
    alone = MarketSimulator([nifty()], seed=3, start=OPEN_1000)
    together = MarketSimulator([banknifty(), nifty()], seed=3, start=OPEN_1000)
    nifty_tokens = set(alone.tokens)
    for _ in range(50):
        assert alone.step(0.1) == [t for t in together.step(0.1) if t["instrument_token"] in nifty_tokens]


def test_ticks_have_kites_keys_and_types(hour):
    underlying, ticks = hour
    contracts = by_contract(underlying)
    for tick in ticks:
        assert isinstance(tick["instrument_token"], int) and tick["mode"] == "full"
        assert isinstance(tick["last_price"], float)
        assert set(tick["ohlc"]) == {"open", "high", "low", "close"}
        assert all(isinstance(value, float) for value in tick["ohlc"].values())
        for name in ("exchange_timestamp", "last_trade_time"):
            if name in tick:
                assert tick[name].utcoffset() == dt.timedelta(hours=5, minutes=30)
                assert tick[name].microsecond == 0  # whole seconds, as Kite's packets carry
        if is_index(tick):
            continue
        assert set(tick) == TRADABLE_KEYS
        assert tick["instrument_token"] in contracts
        for name in ("last_traded_quantity", "volume_traded", "total_buy_quantity", "total_sell_quantity"):
            assert type(tick[name]) is int
        for name in ("oi", "oi_day_high", "oi_day_low"):
            assert type(tick[name]) is int
        assert isinstance(tick["average_traded_price"], float)
        assert tick["last_trade_time"] <= tick["exchange_timestamp"]
        assert set(tick["depth"]) == {"buy", "sell"}
        for side in ("buy", "sell"):
            assert len(tick["depth"][side]) == 5
            for level in tick["depth"][side]:
                assert set(level) == {"quantity", "price", "orders"}
                assert type(level["quantity"]) is int and type(level["orders"]) is int
                assert isinstance(level["price"], float)


def test_index_ticks_carry_only_what_kites_index_packets_carry(hour):
    underlying, ticks = hour
    index_ticks = [tick for tick in ticks if tick["instrument_token"] == underlying.index_token]
    assert len(index_ticks) > 200  # about one a second, at most one per step
    for tick in index_ticks:
        assert set(tick) == INDEX_KEYS
        ohlc = tick["ohlc"]
        assert ohlc["low"] <= tick["last_price"] <= ohlc["high"] and ohlc["low"] <= ohlc["open"] <= ohlc["high"]
    assert len({tick["ohlc"]["close"] for tick in index_ticks}) == 1  # the previous close stays put
    assert len({tick["last_price"] for tick in index_ticks}) > 100  # and spot moves


def test_prices_sit_on_the_tick_grid_and_never_below_one_tick(hour):
    underlying, ticks = hour
    contracts = by_contract(underlying)
    for tick in ticks:
        if is_index(tick):
            continue
        tick_paise = paise(contracts[tick["instrument_token"]].tick_size)
        prices = [tick["last_price"], *tick["ohlc"].values()]
        prices += [level["price"] for side in ("buy", "sell") for level in tick["depth"][side] if level["quantity"]]
        for value in prices:
            assert value >= 0.05
            assert paise(value) % tick_paise == 0, (tick["instrument_token"], value)
            assert value == paise(value) / 100  # exactly what Kite's parser gives for these paise


def test_books_have_bids_below_offers_sorted_away_from_the_touch_in_lots(hour):
    underlying, ticks = hour
    contracts = by_contract(underlying)
    for tick in ticks:
        if is_index(tick):
            continue
        lot = contracts[tick["instrument_token"]].lot_size
        bids = [level for level in tick["depth"]["buy"] if level["quantity"]]
        asks = [level for level in tick["depth"]["sell"] if level["quantity"]]
        assert bids and len(asks) == 5  # a cheap option's bid side may run out of ticks above zero
        assert bids[0]["price"] < asks[0]["price"]
        assert [level["price"] for level in bids] == sorted({level["price"] for level in bids}, reverse=True)
        assert [level["price"] for level in asks] == sorted({level["price"] for level in asks})
        for level in bids + asks:
            assert level["quantity"] % lot == 0 and 1 <= level["orders"] <= level["quantity"] // lot
        assert tick["total_buy_quantity"] >= sum(level["quantity"] for level in bids)
        assert tick["total_sell_quantity"] >= sum(level["quantity"] for level in asks)
        assert tick["total_buy_quantity"] % lot == 0 and tick["total_sell_quantity"] % lot == 0


def test_volume_only_grows_and_open_interest_stays_in_whole_lots(hour):
    underlying, ticks = hour
    contracts = by_contract(underlying)
    latest: dict[int, dict] = {}
    for tick in ticks:
        token = tick["instrument_token"]
        if is_index(tick):
            continue
        lot = contracts[token].lot_size
        assert tick["last_traded_quantity"] % lot == 0 and tick["last_traded_quantity"] <= tick["volume_traded"]
        assert tick["oi"] >= 0 and tick["oi"] % lot == 0
        assert 0 <= tick["oi_day_low"] <= tick["oi"] <= tick["oi_day_high"]
        ohlc = tick["ohlc"]
        assert ohlc["low"] <= tick["last_price"] <= ohlc["high"]
        assert ohlc["low"] - 0.05 <= tick["average_traded_price"] <= ohlc["high"] + 0.05  # a VWAP of the day
        if token in latest:
            before = latest[token]
            assert tick["volume_traded"] >= before["volume_traded"]
            assert tick["oi_day_high"] >= before["oi_day_high"] and tick["oi_day_low"] <= before["oi_day_low"]
            assert tick["ohlc"]["open"] == before["ohlc"]["open"] and tick["ohlc"]["close"] == before["ohlc"]["close"]
        latest[token] = tick
    first = {tick["instrument_token"]: tick for tick in reversed(ticks)}
    grew = [token for token in latest if latest[token]["volume_traded"] > first[token]["volume_traded"]]
    assert len(grew) == len(contracts)  # over an hour every contract trades


def test_every_buildup_label_occurs_within_a_simulated_hour(hour):
    underlying, ticks = hour
    contracts = by_contract(underlying)
    # Each option's last tick in every 5-minute window; label the change from one window to the next.
    windows: dict[int, dict[int, tuple[float, int]]] = collections.defaultdict(dict)
    for tick in ticks:
        if tick["instrument_token"] in contracts and contracts[tick["instrument_token"]].kind != "FUT":
            window = int((tick["exchange_timestamp"] - OPEN_1000).total_seconds() // 300)
            windows[window][tick["instrument_token"]] = (tick["last_price"], tick["oi"])
    labels = collections.Counter()
    for window in sorted(windows)[1:]:
        for token, (last_price, oi) in windows[window].items():
            previous_price, previous_oi = windows[window - 1][token]
            price_move, oi_move = np.sign(last_price - previous_price), np.sign(oi - previous_oi)
            labels[
                {
                    (1, 1): "long buildup",
                    (-1, 1): "short buildup",
                    (1, -1): "short covering",
                    (-1, -1): "long unwinding",
                }.get((price_move, oi_move), "flat")
            ] += 1
    assert windows.keys() == set(range(12))
    for label in ("long buildup", "short buildup", "short covering", "long unwinding"):
        assert labels[label] >= 50, labels  # of about 900 window changes
    assert labels["flat"] < 0.1 * sum(labels.values())


def test_atm_contracts_tick_more_often_than_far_otm_ones():
    underlying = nifty()
    simulator = MarketSimulator([underlying], seed=5, start=OPEN_1000)
    counts = collections.Counter(tick["instrument_token"] for tick in run(simulator, 3000, 0.1))
    weekly = [c for c in underlying.contracts if c.expiry == WEEKLY]
    atm = [counts[c.instrument_token] for c in weekly if abs(c.strike - 26_000) <= 50]
    far = [counts[c.instrument_token] for c in weekly if abs(c.strike - 26_000) >= 400]
    assert np.mean(atm) > 1.5 * np.mean(far) > 0
    future = next(c.instrument_token for c in underlying.contracts if c.kind == "FUT")
    assert counts[future] > np.mean(atm)


def fresh_chain(seed: int) -> tuple[SimUnderlying, MarketSimulator, dict[int, dict]]:
    """A chain after a long step, so that every contract was re-priced at the same moment."""
    underlying = nifty()
    simulator = MarketSimulator([underlying], seed=seed, start=OPEN_1000)
    run(simulator, 20, 0.5)
    simulator.step(900)
    return underlying, simulator, {tick["instrument_token"]: tick for tick in simulator.snapshot()}


def touch(tick: dict) -> tuple[float, float]:
    return tick["depth"]["buy"][0]["price"], tick["depth"]["sell"][0]["price"]


def mid(tick: dict) -> float:
    return sum(touch(tick)) / 2


@pytest.mark.parametrize("seed", [1, 2])
def test_calls_get_cheaper_and_puts_dearer_as_the_strike_rises(seed):
    underlying, _, ticks = fresh_chain(seed)
    for expiry in (WEEKLY, MONTHLY):
        for kind, direction in (("CE", -1), ("PE", 1)):
            chain = sorted(
                (c for c in underlying.contracts if c.kind == kind and c.expiry == expiry), key=lambda c: c.strike
            )
            books = [touch(ticks[c.instrument_token]) for c in chain]
            mids = np.array([mid(ticks[c.instrument_token]) for c in chain])
            for (lower_bid, lower_ask), (upper_bid, upper_ask) in itertools.pairwise(books):
                # no arbitrage between neighbours: the books overlap in the right order
                if direction < 0:
                    assert lower_ask >= upper_bid
                else:
                    assert upper_ask >= lower_bid
            priced = mids > 3.0  # above a few rupees the model's ordering shows through the spread
            assert np.all(direction * np.diff(mids[priced]) > 0), (kind, expiry, mids)


def test_calls_and_puts_are_in_put_call_parity_with_the_future():
    underlying, simulator, ticks = fresh_chain(4)
    future = next(c for c in underlying.contracts if c.kind == "FUT")
    forward = mid(ticks[future.instrument_token])
    years = (dt.datetime.combine(MONTHLY, dt.time(15, 30), IST) - simulator.now).total_seconds() / (365 * 86_400)
    discount = math.exp(-underlying.risk_free_rate * years)
    calls = {
        c.strike: ticks[c.instrument_token] for c in underlying.contracts if c.kind == "CE" and c.expiry == MONTHLY
    }
    puts = {c.strike: ticks[c.instrument_token] for c in underlying.contracts if c.kind == "PE" and c.expiry == MONTHLY}
    for strike in calls:
        synthetic = mid(calls[strike]) - mid(puts[strike])
        half_spreads = sum((ask - bid) / 2 for bid, ask in (touch(calls[strike]), touch(puts[strike])))
        assert synthetic == pytest.approx(discount * (forward - strike), abs=half_spreads + 0.15), strike


def test_options_expire_at_1530_ist_on_the_expiry_date():
    underlying = nifty(expiries=(WEEKLY,))
    tokens = {(c.kind, c.strike): c.instrument_token for c in underlying.contracts if c.expiry == WEEKLY}

    def snapshot_at(hour: int, minute: int) -> dict[int, dict]:
        start = dt.datetime.combine(WEEKLY, dt.time(hour, minute), IST)
        return {t["instrument_token"]: t for t in MarketSimulator([underlying], seed=1, start=start).snapshot()}

    at_close = snapshot_at(15, 30)  # spot 26,000: intrinsic value, the worthless at one tick
    assert at_close[tokens["CE", 25_900.0]]["last_price"] == 100.0
    assert at_close[tokens["PE", 26_100.0]]["last_price"] == 100.0
    assert at_close[tokens["CE", 26_000.0]]["last_price"] == 0.05
    assert at_close[tokens["PE", 26_050.0]]["last_price"] == 50.0
    # Half an hour earlier the ATM straddle still holds about 0.8 sigma sqrt(T) S of time value.
    half_hour_before = snapshot_at(15, 0)
    straddle = sum(half_hour_before[tokens[kind, 26_000.0]]["last_price"] for kind in ("CE", "PE"))
    assert straddle == pytest.approx(0.8 * 0.13 * math.sqrt(1800 / (365 * 86_400)) * 26_000, rel=0.15)


def test_exchange_time_never_goes_back_and_advances_by_seconds_times_speed():
    simulator = MarketSimulator([nifty(), banknifty()], seed=9, start=OPEN_1000, speed=60)
    previous_now = simulator.now
    all_ticks = []
    for seconds in [0.05] * 40 + [0.5] * 10:
        ticks = simulator.step(seconds)
        assert simulator.now - previous_now == dt.timedelta(seconds=seconds * 60)
        floor = previous_now.replace(microsecond=0)
        assert all(floor <= tick["exchange_timestamp"] <= simulator.now for tick in ticks)
        previous_now = simulator.now
        all_ticks.extend(ticks)
    times = [tick["exchange_timestamp"] for tick in all_ticks]
    assert times == sorted(times)
    assert simulator.now == OPEN_1000 + dt.timedelta(minutes=7)
    assert simulator.step(0) == []


def test_speed_scales_simulated_time_and_the_clock_runs_past_the_close():
    simulator = MarketSimulator([nifty()], seed=1, start=dt.datetime(2026, 1, 19, 15, 29, tzinfo=IST), speed=600)
    assert simulator.step(1.0)  # ten simulated minutes: the market kept ticking
    assert simulator.now == dt.datetime(2026, 1, 19, 15, 39, tzinfo=IST)
    with pytest.raises(ValueError, match="aware"):
        MarketSimulator([nifty()], seed=1, start=dt.datetime(2026, 1, 19, 10, 0))


def test_the_snapshot_has_one_full_tick_per_instrument_and_no_time_passes():
    simulator = MarketSimulator([nifty(), banknifty()], seed=2, start=OPEN_1000)
    run(simulator, 10, 0.1)
    now = simulator.now
    snapshot = simulator.snapshot()
    assert [tick["instrument_token"] for tick in snapshot] == simulator.tokens
    assert len(set(simulator.tokens)) == 1 + len(nifty().contracts) + 1 + len(banknifty().contracts)
    assert simulator.now == now and simulator.snapshot() == snapshot


def test_contracts_can_be_added_and_removed_when_the_chain_recentres():
    underlying = nifty(each_side=2)
    simulator = MarketSimulator([underlying], seed=8, start=OPEN_1000, speed=30)
    run(simulator, 10, 0.5)
    wider = option_chain(
        "NIFTY",
        token_base=1_000_000,
        centre=26_000.0,
        step=50.0,
        lot=65,
        expiries=(WEEKLY,),
        each_side=4,
        future_expiry=None,
    )
    added = [c for c in wider if c.instrument_token not in set(simulator.tokens)]
    dropped = [c.instrument_token for c in underlying.contracts if c.expiry == WEEKLY and c.strike == 25_900.0]
    simulator.add_contracts("NIFTY", wider)  # the ones already simulated are left alone
    simulator.remove_contracts("NIFTY", dropped)
    assert len(added) == 8
    tokens = set(simulator.tokens)
    assert {c.instrument_token for c in added} <= tokens and not tokens & set(dropped)
    ticked = {tick["instrument_token"] for tick in run(simulator, 20, 0.5)}
    assert {c.instrument_token for c in added} <= ticked and not ticked & set(dropped)
    new_call = next(t for t in simulator.snapshot() if t["instrument_token"] == added[0].instrument_token)
    assert new_call["last_price"] > 0 and new_call["oi"] > 0
    with pytest.raises(ValueError, match="already belongs to NIFTY"):
        simulator.add_contracts("NIFTY", [])  # nothing to add is fine
        MarketSimulator([underlying, banknifty()], seed=1, start=OPEN_1000).add_contracts(
            "BANKNIFTY", [underlying.contracts[1]]
        )
    with pytest.raises(KeyError, match="SENSEX"):
        simulator.add_contracts("SENSEX", [])
