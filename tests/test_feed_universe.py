"""Which tokens the feed subscribes: spot and future always, the chain ATM ± N, re-centred as spot moves."""

from __future__ import annotations

import datetime as dt

from marketdata.feed.universe import ChainContract, SubscriptionPlanner, UnderlyingUniverse

EXPIRY = dt.date(2026, 11, 24)


def nifty(strikes_each_side: int = 2) -> UnderlyingUniverse:
    options = tuple(
        ChainContract(
            instrument_token=10_000 + strike * 2 + (kind == "PE"),
            tradingsymbol=f"N{strike}{kind}",
            kind=kind,
            strike=float(strike),
            expiry=EXPIRY,
            lot_size=65,
        )
        for strike in range(25_800, 26_250, 50)
        for kind in ("CE", "PE")
    )
    future = ChainContract(
        instrument_token=999, tradingsymbol="NIFTY26NOVFUT", kind="FUT", strike=0.0, expiry=EXPIRY, lot_size=65
    )
    return UnderlyingUniverse(
        symbol="NIFTY",
        spot_token=256265,
        strike_step=50.0,
        strikes_each_side=strikes_each_side,
        expiries=(EXPIRY,),
        futures=(future,),
        options=options,
        reference_spot=26_000.0,
    )


def strikes_of(planner: SubscriptionPlanner) -> list[float]:
    universe = planner.universes["NIFTY"]
    subscribed = set(planner.subscribed)
    return sorted({c.strike for c in universe.options if c.instrument_token in subscribed})


def test_it_subscribes_spot_future_and_the_strikes_around_atm_in_full_mode():
    planner = SubscriptionPlanner([nifty()])
    change = planner.plan({"NIFTY": 26_012.0})
    assert strikes_of(planner) == [25_900, 25_950, 26_000, 26_050, 26_100]
    assert {256265, 999} <= set(change.add)
    assert set(change.add.values()) == {"full"}
    assert len(change.add) == 2 + 5 * 2 and not change.remove


def test_before_any_spot_it_centres_on_the_reference():
    planner = SubscriptionPlanner([nifty()])
    planner.plan({})
    assert strikes_of(planner) == [25_900, 25_950, 26_000, 26_050, 26_100]


def test_a_small_move_keeps_the_window_and_changes_nothing():
    planner = SubscriptionPlanner([nifty()])
    planner.plan({"NIFTY": 26_000.0})
    assert not planner.plan({"NIFTY": 26_030.0})  # 0.6 of a step: hysteresis holds


def test_a_move_of_a_strike_re_centres_adding_new_and_dropping_old_strikes():
    planner = SubscriptionPlanner([nifty()])
    planner.plan({"NIFTY": 26_000.0})
    change = planner.plan({"NIFTY": 26_105.0})
    assert strikes_of(planner) == [26_000, 26_050, 26_100, 26_150, 26_200]
    added = sorted({c.strike for c in planner.universes["NIFTY"].options if c.instrument_token in change.add})
    removed = sorted({c.strike for c in planner.universes["NIFTY"].options if c.instrument_token in change.remove})
    assert (added, removed) == ([26_150, 26_200], [25_900, 25_950])
    assert 256265 not in change.remove and 999 not in change.remove


def test_the_window_is_clipped_at_the_edge_of_the_listed_strikes():
    planner = SubscriptionPlanner([nifty(strikes_each_side=3)])
    planner.plan({"NIFTY": 25_700.0})
    assert strikes_of(planner) == [25_800, 25_850, 25_900, 25_950]


def test_groups_put_every_option_in_its_ticks_and_chain_group():
    planner = SubscriptionPlanner([nifty()])
    groups = planner.groups_of()
    assert groups[256265] == ["ticks.NIFTY"]
    assert groups[10_000 + 26_000 * 2] == ["ticks.NIFTY", "chain.NIFTY.20261124"]


def test_it_never_asks_for_more_than_kites_limit_dropping_the_farthest_strikes(caplog):
    planner = SubscriptionPlanner([nifty(strikes_each_side=4)], max_instruments=8)
    planner.plan({"NIFTY": 26_000.0})
    assert len(planner.subscribed) == 8 and planner.trimmed == 12
    assert {256265, 999} <= set(planner.subscribed)
    assert strikes_of(planner) == [25_950, 26_000, 26_050]
    assert "over Kite's limit of 8" in caplog.text
