"""sync_instruments: loading Kite's master from a file or from Kite, on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import gzip
import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from instruments import selectors, services
from instruments.master import MASTER_COLUMNS
from instruments.models import BrokerAccount, Instrument, Underlying
from tests.master_factory import synthetic_master
from trading_site.clock import IST, frozen_clock

pytestmark = pytest.mark.django_db

HEADER = ",".join(MASTER_COLUMNS)
NIFTY_INDEX = "256265,1001,NIFTY 50,NIFTY 50,0,,0,0,0,EQ,INDICES,NSE"
NIFTY_FUT = "13238786,51714,NIFTY26NOVFUT,NIFTY,0,2026-11-24,0,0.1,65,FUT,NFO-FUT,NFO"
NIFTY_CE = "10191874,39812,NIFTY26NOV26000CE,NIFTY,0,2026-11-24,26000,0.05,65,CE,NFO-OPT,NFO"
NIFTY_PE = "10192130,39813,NIFTY26NOV26000PE,NIFTY,0,2026-11-24,26000,0.05,65,PE,NFO-OPT,NFO"
RELIANCE = "738561,2885,RELIANCE,RELIANCE INDUSTRIES,0,,0,0.1,1,EQ,NSE,NSE"


def write_master(tmp_path, *lines, name="instruments.csv") -> str:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return str(path)


def sync(path, *args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("sync_instruments", "--file", path, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_loads_every_column_of_the_master(tmp_path):
    out, _ = sync(write_master(tmp_path, NIFTY_INDEX, NIFTY_FUT, NIFTY_CE, NIFTY_PE, RELIANCE))

    assert "5 created, 0 updated, 0 unchanged" in out
    call = Instrument.objects.get(exchange="NFO", tradingsymbol="NIFTY26NOV26000CE")
    assert (call.instrument_token, call.exchange_token, call.name) == (10191874, 39812, "NIFTY")
    assert (call.expiry, call.strike, call.tick_size, call.lot_size) == (
        dt.date(2026, 11, 24),
        Decimal("26000"),
        Decimal("0.05"),
        65,
    )
    assert (call.instrument_type, call.segment, call.active) == ("CE", "NFO-OPT", True)
    index = Instrument.objects.get(instrument_token=256265)
    assert index.is_index and index.expiry is None and index.lot_size == 0


def test_a_second_run_over_the_same_master_changes_nothing(tmp_path):
    path = write_master(tmp_path, NIFTY_INDEX, NIFTY_FUT, NIFTY_CE, NIFTY_PE, RELIANCE)
    with frozen_clock(dt.datetime(2026, 11, 20, 8, 30, tzinfo=IST)):
        sync(path)
    before = list(Instrument.objects.values_list("pk", "updated_at", "active"))
    with frozen_clock(dt.datetime(2026, 11, 21, 8, 30, tzinfo=IST)):
        out, _ = sync(path)
    assert "0 created, 0 updated, 5 unchanged, 0 marked inactive" in out
    assert list(Instrument.objects.values_list("pk", "updated_at", "active")) == before


def test_a_changed_lot_size_updates_only_that_row(tmp_path):
    sync(write_master(tmp_path, NIFTY_FUT, NIFTY_CE))
    out, _ = sync(write_master(tmp_path, NIFTY_FUT.replace(",65,FUT", ",75,FUT"), NIFTY_CE))
    assert "0 created, 1 updated, 1 unchanged" in out
    assert Instrument.objects.get(tradingsymbol="NIFTY26NOVFUT").lot_size == 75


def test_bad_rows_are_reported_with_line_and_reason_and_the_rest_loads(tmp_path):
    path = write_master(
        tmp_path,
        NIFTY_CE,
        NIFTY_PE.replace(",26000,", ",abc,"),  # line 3
        RELIANCE,
        "1,2,ONLY,THREE",  # line 5
        NIFTY_FUT.replace("2026-11-24", "2026-13-01"),  # line 6
    )
    out, err = sync(path)
    assert "skipped line 3: strike 'abc' is not a number" in err
    assert "skipped line 5: has 4 fields, expected 12" in err
    assert "skipped line 6: expiry '2026-13-01' is not a date (YYYY-MM-DD)" in err
    assert "2 created" in out and "3 skipped as bad" in out
    assert set(Instrument.objects.values_list("tradingsymbol", flat=True)) == {"NIFTY26NOV26000CE", "RELIANCE"}


def test_it_fails_only_when_nothing_could_be_loaded(tmp_path):
    path = write_master(tmp_path, "x,y,z,,,,,,,,,", NIFTY_CE.replace("CE,NFO-OPT", "XX,NFO-OPT"))
    with pytest.raises(CommandError, match="Nothing could be loaded"):
        sync(path)
    assert Instrument.objects.count() == 0


def test_a_file_that_is_not_a_master_names_the_missing_columns(tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("token,symbol\n1,ABC\n")
    with pytest.raises(CommandError, match=r"lacks column.*instrument_token"):
        sync(str(path))


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match=r"Cannot read .*nope\.csv"):
        sync(str(tmp_path / "nope.csv"))


def test_it_reads_a_gzipped_master(tmp_path):
    path = tmp_path / "instruments.csv.gz"
    path.write_bytes(gzip.compress(f"{HEADER}\n{NIFTY_CE}\n{RELIANCE}\n".encode()))
    out, _ = sync(str(path))
    assert "2 created" in out


def test_instruments_that_left_the_master_become_inactive_and_can_come_back(tmp_path):
    sync(write_master(tmp_path, NIFTY_CE, NIFTY_PE, RELIANCE))
    out, _ = sync(write_master(tmp_path, NIFTY_CE, RELIANCE))
    assert "1 marked inactive" in out
    assert Instrument.objects.get(tradingsymbol="NIFTY26NOV26000PE").active is False
    assert Instrument.objects.active().count() == 2

    out, _ = sync(write_master(tmp_path, NIFTY_CE, NIFTY_PE, RELIANCE))
    assert "1 updated" in out
    assert Instrument.objects.get(tradingsymbol="NIFTY26NOV26000PE").active is True


def test_a_reused_token_points_to_the_new_contract(tmp_path):
    sync(write_master(tmp_path, NIFTY_CE))
    # Next month Kite gives the expired contract's token to a new one.
    reused = "10191874,39812,NIFTY26DEC26500CE,NIFTY,0,2026-12-29,26500,0.05,65,CE,NFO-OPT,NFO"
    sync(write_master(tmp_path, reused))

    old = Instrument.objects.get(tradingsymbol="NIFTY26NOV26000CE")
    new = Instrument.objects.get(tradingsymbol="NIFTY26DEC26500CE")
    assert old.active is False and new.active is True
    assert old.instrument_token == new.instrument_token == 10191874
    assert selectors.instrument_by_token(10191874) == new


def test_an_exchange_limited_sync_leaves_other_exchanges_alone(tmp_path):
    sync(write_master(tmp_path, NIFTY_INDEX, RELIANCE, NIFTY_CE))
    out, _ = sync(write_master(tmp_path, NIFTY_PE), "--exchange", "nfo")
    assert "1 created" in out and "1 marked inactive" in out
    assert set(Instrument.objects.active().values_list("tradingsymbol", flat=True)) == {
        "NIFTY 50",
        "RELIANCE",
        "NIFTY26NOV26000PE",
    }


def test_futures_and_options_link_to_their_underlying(tmp_path):
    nifty = Underlying.objects.create(symbol="NIFTY", strike_step=50)
    nse_namesake = "99999,1,NIFTYBEES,NIFTY,0,,0,0.01,1,EQ,NSE,NSE"
    sync(write_master(tmp_path, NIFTY_INDEX, NIFTY_FUT, NIFTY_CE, NIFTY_PE, nse_namesake))
    assert set(Instrument.objects.for_underlying(nifty).values_list("tradingsymbol", flat=True)) == {
        "NIFTY26NOVFUT",
        "NIFTY26NOV26000CE",
        "NIFTY26NOV26000PE",
    }


def test_an_underlying_added_after_the_sync_links_existing_contracts(tmp_path):
    sync(write_master(tmp_path, NIFTY_FUT, NIFTY_CE, NIFTY_PE))
    nifty = Underlying.objects.create(symbol="NIFTY", strike_step=50, derivatives_exchange="BFO")
    assert services.underlying_link_instruments(underlying=nifty) == 0
    nifty.derivatives_exchange = "NFO"
    nifty.save()
    assert services.underlying_link_instruments(underlying=nifty) == 3


def test_near_atm_picks_the_nearest_strikes_each_side(tmp_path):
    lines = [
        f"{1000 + i},{i},NIFTY26NOV{strike}{kind},NIFTY,0,2026-11-24,{strike},0.05,65,{kind},NFO-OPT,NFO"
        for i, (strike, kind) in enumerate((s, k) for s in range(25500, 26550, 50) for k in ("CE", "PE"))
    ]
    sync(write_master(tmp_path, *lines))
    chain = Instrument.objects.options().for_expiry(dt.date(2026, 11, 24))
    strikes = sorted({int(s) for s in chain.near_atm(26012.4, 2).values_list("strike", flat=True)})
    assert strikes == [25900, 25950, 26000, 26050, 26100]
    assert chain.near_atm(26012.4, 2).calls().count() == 5


def test_a_full_size_master_loads_and_reloads_idempotently(tmp_path):
    path = tmp_path / "full.csv"
    path.write_text(synthetic_master(20_000))
    assert "20000 created" in sync(str(path))[0]
    assert "0 created, 0 updated, 20000 unchanged" in sync(str(path))[0]
    assert (
        Instrument.objects.options().count()
        == 20_000 - Instrument.objects.exclude(instrument_type__in=["CE", "PE"]).count()
    )


# --- From Kite, through the data account's session -------------------------------------------
def connect(account: BrokerAccount, kite_server) -> None:
    account.access_token = kite_server.kite.grant_access_token(account.api_key)
    account.access_token_expires_at = dt.datetime(2099, 1, 1, tzinfo=IST)
    account.is_data_account = True
    account.save()


def test_it_downloads_the_master_from_kite_through_the_data_account(alice_kite_account, kite_server):
    connect(alice_kite_account, kite_server)
    kite_server.kite.instruments_csv[None] = "\n".join([HEADER, NIFTY_INDEX, NIFTY_CE, "bad,row"]) + "\n"
    out, err = io.StringIO(), io.StringIO()
    call_command("sync_instruments", stdout=out, stderr=err)
    assert "2 created" in out.getvalue()
    assert "skipped line 4: has 2 fields, expected 12" in err.getvalue()
    assert ("GET", "/instruments") in kite_server.kite.requests_seen


def test_it_downloads_one_exchange_when_asked(alice_kite_account, kite_server):
    connect(alice_kite_account, kite_server)
    kite_server.kite.instruments_csv["NFO"] = f"{HEADER}\n{NIFTY_FUT}\n"
    call_command("sync_instruments", "--exchange", "NFO", stdout=io.StringIO())
    assert ("GET", "/instruments/NFO") in kite_server.kite.requests_seen
    assert Instrument.objects.get().tradingsymbol == "NIFTY26NOVFUT"


def test_an_expired_kite_session_is_recorded_and_explained(alice_kite_account, kite_server):
    connect(alice_kite_account, kite_server)
    kite_server.kite.instruments_csv[None] = f"{HEADER}\n{NIFTY_CE}\n"
    kite_server.kite.expire_sessions()  # 6 AM came
    with pytest.raises(CommandError, match="session of 'Main' has expired: log in to Kite again"):
        call_command("sync_instruments", stdout=io.StringIO())
    alice_kite_account.refresh_from_db()
    assert alice_kite_account.token_state == BrokerAccount.TokenState.EXPIRED


def test_without_a_data_account_it_says_how_to_get_one(alice_kite_account):
    with pytest.raises(CommandError, match="No broker account is marked as the data account"):
        call_command("sync_instruments", stdout=io.StringIO())
