"""load_demo: a demo master through sync_instruments, underlyings, a user and a paper account."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from instruments.master import MASTER_COLUMNS, parse_master
from instruments.models import BrokerAccount, Instrument, Underlying
from trading_site.clock import IST, frozen_clock

pytestmark = pytest.mark.django_db

SATURDAY = dt.datetime(2026, 11, 21, 9, 0, tzinfo=IST)


@pytest.fixture(autouse=True)
def demo_files_in_tmp(settings, tmp_path):
    settings.VAR_DIR = tmp_path


def load_demo(moment: dt.datetime = SATURDAY) -> str:
    out = io.StringIO()
    with frozen_clock(moment):
        call_command("load_demo", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_it_writes_a_master_in_kites_format_that_parses_cleanly(tmp_path):
    load_demo()
    written = tmp_path / "demo" / "instruments-2026-11-21.csv"
    parsed = parse_master(written.read_text())
    assert parsed.errors == []
    assert len(parsed.rows) == Instrument.objects.count()


def test_it_loads_the_three_indices_with_their_chains_and_futures():
    load_demo()
    nifty = Underlying.objects.get(symbol="NIFTY")
    assert nifty.spot_instrument.instrument_token == 256265
    assert Underlying.objects.get(symbol="BANKNIFTY").spot_instrument.instrument_token == 260105
    assert Underlying.objects.get(symbol="FINNIFTY").spot_instrument.instrument_token == 257801

    # NIFTY: weeklies 24 Nov, 1, 8, 15 Dec and monthlies 24 Nov, 29 Dec, 26 Jan.
    nifty_expiries = sorted(set(nifty.instruments.options().values_list("expiry", flat=True)))
    assert nifty_expiries == [
        dt.date(2026, 11, 24),
        dt.date(2026, 12, 1),
        dt.date(2026, 12, 8),
        dt.date(2026, 12, 15),
        dt.date(2026, 12, 29),
        dt.date(2027, 1, 26),
    ]
    assert nifty.instruments.options().count() == 6 * 81 * 2
    assert sorted(nifty.instruments.futures().values_list("tradingsymbol", flat=True)) == [
        "NIFTY26DECFUT",
        "NIFTY26NOVFUT",
        "NIFTY27JANFUT",
    ]
    banknifty = Underlying.objects.get(symbol="BANKNIFTY")
    assert set(banknifty.instruments.options().values_list("expiry", flat=True)) == {
        dt.date(2026, 11, 24),
        dt.date(2026, 12, 29),
        dt.date(2027, 1, 26),
    }
    assert set(banknifty.instruments.values_list("lot_size", flat=True)) == {30}
    assert Instrument.objects.get(tradingsymbol="NIFTY26D0126000CE").strike == 26000


def test_it_creates_a_demo_user_who_can_log_in_with_a_paper_account(client):
    out = load_demo()
    assert "Created user 'demo'" in out
    assert client.login(username="demo", password="demo")
    demo = get_user_model().objects.get(username="demo")
    assert demo.is_staff
    assert list(demo.broker_accounts.values_list("label", "kind")) == [("Paper", BrokerAccount.Kind.PAPER)]


def test_running_it_again_changes_nothing():
    load_demo()
    before = (
        list(Instrument.objects.order_by("pk").values_list("pk", "updated_at", "active")),
        list(Underlying.objects.values_list("pk", "spot_instrument_id", "strikes_each_side")),
        list(BrokerAccount.objects.values_list("pk", "label")),
        get_user_model().objects.get(username="demo").password,
    )
    out = load_demo(SATURDAY + dt.timedelta(hours=2))
    assert "0 created, 0 updated" in out and "0 marked inactive" in out
    after = (
        list(Instrument.objects.order_by("pk").values_list("pk", "updated_at", "active")),
        list(Underlying.objects.values_list("pk", "spot_instrument_id", "strikes_each_side")),
        list(BrokerAccount.objects.values_list("pk", "label")),
        get_user_model().objects.get(username="demo").password,
    )
    assert after == before


def test_a_week_later_expired_contracts_go_inactive_and_new_ones_appear():
    load_demo()
    load_demo(SATURDAY + dt.timedelta(days=7))
    expired = Instrument.objects.filter(expiry=dt.date(2026, 11, 24))
    assert expired.exists() and not expired.filter(active=True).exists()
    assert Instrument.objects.active().filter(expiry=dt.date(2026, 12, 22)).exists()


def test_operator_settings_and_a_real_master_survive_a_rerun(tmp_path):
    call_command("load_demo", stdout=io.StringIO())
    Underlying.objects.filter(symbol="NIFTY").update(strikes_each_side=25)
    header = ",".join(MASTER_COLUMNS)
    real = tmp_path / "real.csv"
    real.write_text(f"{header}\n738561,2885,RELIANCE,RELIANCE INDUSTRIES,0,,0,0.1,1,EQ,NSE,NSE\n")
    call_command(
        "sync_instruments",
        "--file",
        str(real),
        "--exchange",
        "NSE",
        "--name",
        "RELIANCE INDUSTRIES",
        stdout=io.StringIO(),
    )
    call_command("load_demo", stdout=io.StringIO())
    assert Underlying.objects.get(symbol="NIFTY").strikes_each_side == 25
    assert Instrument.objects.get(tradingsymbol="RELIANCE").active is True
