"""The admin: a read-only master that stays fast, editable underlyings, masked broker accounts."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from instruments import services
from instruments.master import parse_master
from instruments.models import BrokerAccount, Instrument, Underlying
from tests.master_factory import synthetic_master
from trading_site.clock import IST, frozen_clock

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(admin_user, client):
    client.force_login(admin_user)
    return admin_user


def load(rows: int) -> None:
    parsed = parse_master(synthetic_master(rows))
    services.instrument_sync(rows=parsed.rows)


def changelist_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


def test_the_instrument_list_costs_the_same_queries_at_any_size(client, staff):
    load(500)
    small = changelist_queries(client, "/admin/instruments/instrument/")
    load(20_000)
    large = changelist_queries(client, "/admin/instruments/instrument/")
    assert large == small
    assert large <= 12


def test_instruments_are_searchable_by_symbol_prefix_and_name(client, staff):
    load(2_000)
    changelist = client.get("/admin/instruments/instrument/?q=STOCK0001").context["cl"]
    found = set(changelist.queryset.values_list("tradingsymbol", flat=True))
    assert found == set(
        Instrument.objects.filter(tradingsymbol__startswith="STOCK0001").values_list("tradingsymbol", flat=True)
    )
    assert "STOCK000126NOV24FUT" in found and "STOCK0000" not in found
    by_name = client.get("/admin/instruments/instrument/?q=STOCK0002").context["cl"].result_count
    assert by_name == Instrument.objects.filter(name="STOCK0002").count() > 100


def test_search_ignores_case_and_finds_a_token(client, staff):
    load(2_000)
    lower = client.get("/admin/instruments/instrument/?q=stock0001").context["cl"]
    assert lower.result_count == Instrument.objects.filter(tradingsymbol__startswith="STOCK0001").count() > 0
    instrument = Instrument.objects.get(tradingsymbol="STOCK000126NOV24FUT")
    by_token = client.get(f"/admin/instruments/instrument/?q={instrument.instrument_token}").context["cl"]
    assert list(by_token.queryset) == [instrument]
    # Unicode digits are not a token (int() would refuse them): a prefix search that finds nothing.
    superscript = client.get("/admin/instruments/instrument/?q=²")
    assert superscript.status_code == 200 and superscript.context["cl"].result_count == 0


def test_instruments_filter_by_exchange_and_type(client, staff):
    load(2_000)
    changelist = client.get("/admin/instruments/instrument/?exchange=NSE&instrument_type=EQ").context["cl"]
    assert changelist.result_count == Instrument.objects.filter(exchange="NSE").count() > 0
    assert set(changelist.queryset.values_list("instrument_type", flat=True)) == {"EQ"}


def test_the_expiry_filter_offers_upcoming_expiries(client, staff):
    load(2_000)
    with frozen_clock(dt.datetime(2026, 11, 25, 10, 0, tzinfo=IST)):
        page = client.get("/admin/instruments/instrument/").content.decode()
    assert "01 Dec 2026" in page and "24 Nov 2026" not in page


def test_the_master_is_read_only_in_the_admin(client, staff):
    load(50)
    instrument = Instrument.objects.first()
    assert client.get("/admin/instruments/instrument/add/").status_code == 403
    page = client.get(f"/admin/instruments/instrument/{instrument.pk}/change/").content.decode()
    assert 'name="tradingsymbol"' not in page and instrument.tradingsymbol in page


def test_saving_an_underlying_in_the_admin_links_its_contracts(client, staff):
    load(200)
    response = client.post(
        "/admin/instruments/underlying/add/",
        {
            "symbol": "STOCK0000",
            "derivatives_exchange": "NFO",
            "enabled": "on",
            "strike_step": "10",
            "strikes_each_side": "5",
            "expiries_to_stream": "2",
            "risk_free_rate": "0.065",
            "dividend_yield": "0",
        },
        follow=True,
    )
    assert "futures and options linked" in response.content.decode()
    underlying = Underlying.objects.get(symbol="STOCK0000")
    assert underlying.instruments.count() == Instrument.objects.filter(name="STOCK0000", exchange="NFO").count() > 0


def test_broker_accounts_show_masked_secrets_and_never_the_secret(client, staff, alice):
    account = BrokerAccount.objects.create(
        user=alice, label="Main", api_key="key1", api_secret="top-secret-ABCD", access_token="token-WXYZ"
    )
    listing = client.get("/admin/instruments/brokeraccount/").content.decode()
    form = client.get(f"/admin/instruments/brokeraccount/{account.pk}/change/").content.decode()
    for page in (listing, form):
        assert "top-secret-ABCD" not in page and "token-WXYZ" not in page
    assert "••••ABCD" in listing and "••••WXYZ" in form and "Connect to Kite" in form


def test_the_admin_keeps_the_secret_when_the_box_is_left_blank(client, staff, alice):
    account = BrokerAccount.objects.create(user=alice, label="Main", api_key="key1", api_secret="top-secret-ABCD")
    response = client.post(
        f"/admin/instruments/brokeraccount/{account.pk}/change/",
        {"user": alice.pk, "label": "Main", "kind": "kite", "api_key": "key1", "api_secret": ""},
    )
    assert response.status_code == 302
    assert BrokerAccount.objects.get(pk=account.pk).api_secret == "top-secret-ABCD"


def test_only_one_account_can_feed_the_ticker(client, staff, alice, bob):
    first = BrokerAccount.objects.create(user=alice, label="A", api_key="a", is_data_account=True)
    second = BrokerAccount.objects.create(user=bob, label="B", api_key="b")
    response = client.post(
        f"/admin/instruments/brokeraccount/{second.pk}/change/",
        {"user": bob.pk, "label": "B", "kind": "kite", "api_key": "b", "api_secret": "", "is_data_account": "on"},
    )
    assert "Another account already feeds the ticker" in response.content.decode()

    client.post(
        "/admin/instruments/brokeraccount/",
        {"action": "make_data_account", "_selected_action": [second.pk]},
    )
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.is_data_account, second.is_data_account) == (False, True)


def test_a_paper_account_cannot_feed_the_ticker(client, staff, alice):
    paper = BrokerAccount.objects.create(user=alice, label="Paper", kind=BrokerAccount.Kind.PAPER)
    response = client.post(
        "/admin/instruments/brokeraccount/",
        {"action": "make_data_account", "_selected_action": [paper.pk]},
        follow=True,
    )
    assert "Only a Kite account can feed market data." in response.content.decode()
    assert BrokerAccount.objects.filter(is_data_account=True).count() == 0
