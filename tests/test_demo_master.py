"""The demo instrument master: NSE's expiry calendar, Kite's symbols and stable tokens."""

import datetime as dt
import itertools
from collections import Counter
from decimal import Decimal

import pytest

from instruments.demo import (
    DEMO_UNDERLYINGS,
    demo_master,
    future_symbol,
    last_tuesday,
    monthly_expiries,
    option_symbol,
    weekly_expiries,
)
from instruments.master import format_master, parse_master

TUESDAY = 1
TODAY = dt.date(2025, 12, 17)  # a Wednesday
LOT_SIZES = {"NIFTY": 65, "BANKNIFTY": 30, "FINNIFTY": 60}
INDEX_TOKENS = {"NIFTY 50": 256265, "NIFTY BANK": 260105, "NIFTY FIN SERVICE": 257801}


@pytest.fixture(scope="module")
def rows():
    return demo_master(TODAY)


def derivatives(rows, name=None):
    return [row for row in rows if row.exchange == "NFO" and (name is None or row.name == name)]


def test_weekly_expiries_from_a_tuesday_start_that_day_and_are_a_week_apart():
    expiries = weekly_expiries(dt.date(2025, 12, 16), 4)

    assert expiries == [dt.date(2025, 12, 16), dt.date(2025, 12, 23), dt.date(2025, 12, 30), dt.date(2026, 1, 6)]
    assert all(expiry.weekday() == TUESDAY for expiry in expiries)


def test_weekly_expiries_from_a_wednesday_start_the_next_tuesday():
    assert weekly_expiries(dt.date(2025, 12, 17), 2) == [dt.date(2025, 12, 23), dt.date(2025, 12, 30)]


def test_weekly_expiries_from_a_monday_start_the_next_day():
    assert weekly_expiries(dt.date(2025, 12, 15), 1) == [dt.date(2025, 12, 16)]
    assert weekly_expiries(dt.date(2025, 12, 15), 0) == []


@pytest.mark.parametrize(
    ("year", "month", "expected"),
    [
        (2025, 12, dt.date(2025, 12, 30)),
        (2026, 1, dt.date(2026, 1, 27)),
        (2026, 2, dt.date(2026, 2, 24)),
        (2026, 3, dt.date(2026, 3, 31)),
        (2025, 9, dt.date(2025, 9, 30)),
        (2024, 2, dt.date(2024, 2, 27)),
    ],
)
def test_last_tuesday_of_known_months(year, month, expected):
    assert last_tuesday(year, month) == expected


def test_monthly_expiries_skip_a_month_whose_last_tuesday_has_passed_and_cross_the_year():
    assert monthly_expiries(dt.date(2025, 12, 31), 3) == [
        dt.date(2026, 1, 27),
        dt.date(2026, 2, 24),
        dt.date(2026, 3, 31),
    ]


def test_monthly_expiries_include_an_expiry_falling_today():
    assert monthly_expiries(dt.date(2025, 12, 30), 2) == [dt.date(2025, 12, 30), dt.date(2026, 1, 27)]
    assert monthly_expiries(dt.date(2025, 12, 29), 1) == [dt.date(2025, 12, 30)]


@pytest.mark.parametrize(
    ("expiry", "strike", "kind", "monthly", "expected"),
    [
        (dt.date(2025, 12, 30), "26000", "CE", True, "NIFTY25DEC26000CE"),
        (dt.date(2025, 12, 30), "26000.0000", "PE", True, "NIFTY25DEC26000PE"),
        (dt.date(2025, 12, 9), "26000", "CE", False, "NIFTY25D0926000CE"),
        (dt.date(2026, 1, 6), "26000", "PE", False, "NIFTY2610626000PE"),
        (dt.date(2025, 10, 14), "25100", "CE", False, "NIFTY25O1425100CE"),
        (dt.date(2025, 11, 4), "25500.0000", "PE", False, "NIFTY25N0425500PE"),
        (dt.date(2026, 9, 1), "24000", "CE", False, "NIFTY2690124000CE"),
        (dt.date(2025, 12, 9), "25012.5", "CE", False, "NIFTY25D0925012.5CE"),
    ],
)
def test_option_symbol_uses_kites_monthly_and_weekly_formats(expiry, strike, kind, monthly, expected):
    assert option_symbol("NIFTY", expiry, Decimal(strike), kind, monthly=monthly) == expected


def test_future_symbol_uses_kites_format():
    assert future_symbol("NIFTY", dt.date(2025, 12, 30)) == "NIFTY25DECFUT"
    assert future_symbol("BANKNIFTY", dt.date(2026, 1, 27)) == "BANKNIFTY26JANFUT"


def test_demo_master_has_kites_real_index_rows(rows):
    indices = [row for row in rows if row.segment == "INDICES"]

    assert {row.tradingsymbol: row.instrument_token for row in indices} == INDEX_TOKENS
    for row in indices:
        assert (row.exchange, row.instrument_type, row.expiry, row.lot_size) == ("NSE", "EQ", None, 0)
        assert row.name == row.tradingsymbol
        assert row.instrument_token & 0xFF == 9
        assert row.instrument_token >> 8 == row.exchange_token


def test_every_derivative_has_its_underlyings_lot_size(rows):
    found = Counter((row.name, row.lot_size) for row in derivatives(rows))

    assert {name for name, _ in found} == set(LOT_SIZES)
    assert all(lot == LOT_SIZES[name] for name, lot in found)


def test_every_derivative_is_an_nfo_contract_with_a_tick_of_five_paise(rows):
    for row in derivatives(rows):
        assert row.instrument_token & 0xFF == 2
        assert row.instrument_token >> 8 == row.exchange_token
        assert row.tick_size == Decimal("0.05")
        assert row.segment == ("NFO-FUT" if row.instrument_type == "FUT" else "NFO-OPT")


@pytest.mark.parametrize(
    "today",
    [dt.date(2025, 12, 16), dt.date(2025, 12, 17), dt.date(2025, 12, 30), dt.date(2025, 12, 31), dt.date(2026, 3, 1)],
)
def test_every_expiry_is_a_tuesday_on_or_after_today(today):
    expiries = {row.expiry for row in demo_master(today) if row.expiry is not None}

    assert expiries
    assert min(expiries) >= today
    assert {expiry.weekday() for expiry in expiries} == {TUESDAY}


def test_nifty_has_weeklies_and_the_others_only_monthlies(rows):
    expiries = {name: {row.expiry for row in derivatives(rows, name)} for name in LOT_SIZES}

    monthlies = {dt.date(2025, 12, 30), dt.date(2026, 1, 27), dt.date(2026, 2, 24)}
    assert expiries["BANKNIFTY"] == monthlies
    assert expiries["FINNIFTY"] == monthlies
    assert expiries["NIFTY"] == monthlies | {dt.date(2025, 12, 23), dt.date(2026, 1, 6), dt.date(2026, 1, 13)}


def test_futures_are_listed_only_on_the_monthly_expiries(rows):
    futures = sorted((row.name, row.expiry, row.tradingsymbol) for row in rows if row.instrument_type == "FUT")

    assert [(name, symbol) for name, _, symbol in futures if name == "NIFTY"] == [
        ("NIFTY", "NIFTY25DECFUT"),
        ("NIFTY", "NIFTY26JANFUT"),
        ("NIFTY", "NIFTY26FEBFUT"),
    ]
    assert len(futures) == 9
    assert all(row.strike == 0 for row in rows if row.instrument_type == "FUT")


def test_weekly_and_monthly_options_carry_the_right_symbols(rows):
    symbols = {row.tradingsymbol for row in derivatives(rows, "NIFTY")}

    assert "NIFTY25D2326000CE" in symbols  # weekly
    assert "NIFTY25DEC26000PE" in symbols  # last Tuesday: monthly format
    assert "NIFTY25D3026000PE" not in symbols
    assert "NIFTY2610624000CE" in symbols
    assert "BANKNIFTY26JAN59000CE" in {row.tradingsymbol for row in derivatives(rows, "BANKNIFTY")}


def test_no_two_rows_share_a_tradingsymbol_or_a_token(rows):
    assert len({row.key for row in rows}) == len(rows)
    assert len({row.instrument_token for row in rows}) == len(rows)
    assert len({(row.exchange, row.exchange_token) for row in rows}) == len(rows)


@pytest.mark.parametrize("underlying", DEMO_UNDERLYINGS, ids=lambda underlying: underlying.symbol)
def test_strikes_are_multiples_of_the_step_centred_on_the_spot(rows, underlying):
    options = [row for row in derivatives(rows, underlying.symbol) if row.instrument_type in ("CE", "PE")]
    strikes = sorted({row.strike for row in options})
    step = underlying.strike_step
    each_side = underlying.strikes_listed_each_side

    assert all(strike % step == 0 for strike in strikes)
    assert len(strikes) == 2 * each_side + 1
    assert strikes[each_side] == underlying.spot
    assert (strikes[0], strikes[-1]) == (underlying.spot - step * each_side, underlying.spot + step * each_side)
    assert [b - a for a, b in itertools.pairwise(strikes)] == [step] * (len(strikes) - 1)


def test_each_expiry_lists_a_call_and_a_put_at_every_strike(rows):
    per_expiry = Counter((row.name, row.expiry) for row in rows if row.instrument_type in ("CE", "PE"))

    assert set(per_expiry.values()) == {2 * 81}
    assert Counter(row.instrument_type for row in rows)["CE"] == Counter(row.instrument_type for row in rows)["PE"]


def test_a_contract_keeps_its_token_from_one_day_to_the_next():
    before = {row.key: row.instrument_token for row in demo_master(dt.date(2025, 12, 17))}
    after = {row.key: row.instrument_token for row in demo_master(dt.date(2025, 12, 24))}

    shared = before.keys() & after.keys()
    assert ("NFO", "NIFTY25DEC26000CE") in shared
    assert ("NFO", "NIFTY26JANFUT") in shared
    assert len(shared) > 1000
    assert {key: before[key] for key in shared} == {key: after[key] for key in shared}
    # A contract that only the later master lists gets a token nobody else had.
    assert not (set(after.values()) - {after[key] for key in shared}) & set(before.values())


def test_the_whole_demo_master_survives_format_and_parse(rows):
    parsed = parse_master(format_master(rows))

    assert parsed.errors == []
    assert parsed.rows == rows
    assert len(parsed.rows) == len(rows) == 3 + 9 + (6 + 3 + 3) * 162
