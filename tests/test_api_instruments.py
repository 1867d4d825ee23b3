"""The instruments part of the REST API: instruments, underlyings and broker accounts.

The data is the demo master (NIFTY, BANKNIFTY, FINNIFTY on NSE's calendar) plus two synthetic
stocks shaped like Kite's master, loaded through the sync service, on Saturday 21 November 2026.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from knox.models import AuthToken
from rest_framework.test import APIClient

from instruments import selectors, services
from instruments.demo import DEMO_UNDERLYINGS, demo_master
from instruments.models import BrokerAccount, Instrument, Underlying
from tests.master_factory import synthetic_rows
from trading_site.clock import IST, frozen_clock

pytestmark = pytest.mark.django_db

SATURDAY = dt.datetime(2026, 11, 21, 9, 0, tzinfo=IST)
TODAY = SATURDAY.date()
STOCK_ROWS = 2 * 163  # STOCK0000 and STOCK0001: an equity, 6 futures and 156 options each
NIFTY_EXPIRIES = ["2026-11-24", "2026-12-01", "2026-12-08", "2026-12-15", "2026-12-29", "2027-01-26"]
INSTRUMENT_FIELDS = {
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "exchange",
    "segment",
    "instrument_type",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "underlying",
    "active",
}


@pytest.fixture(autouse=True)
def saturday(settings):
    # Logging people in is not what these tests are about: skip the deliberately slow hasher.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with frozen_clock(SATURDAY):
        yield


@pytest.fixture(scope="module")
def market(django_db_setup, django_db_blocker) -> dict:
    """The master, the demo underlyings (FINNIFTY disabled), and a token Kite gave to a new contract
    after its first holder left the master. Loaded once for the module (each test's own writes
    are rolled back), and removed after it."""
    with django_db_blocker.unblock(), frozen_clock(SATURDAY):
        stocks = synthetic_rows(STOCK_ROWS)
        services.instrument_sync(rows=demo_master(TODAY) + stocks)
        for demo in DEMO_UNDERLYINGS:
            services.underlying_ensure(
                symbol=demo.symbol,
                defaults={"strike_step": Decimal(demo.strike_step), "enabled": demo.symbol != "FINNIFTY"},
                spot_instrument=selectors.instrument_by_token(demo.index_token),
            )
        gone = next(row for row in stocks if row.tradingsymbol == "STOCK000126NOV24FUT")
        reusing = dataclasses.replace(gone, tradingsymbol="STOCK000127JANFUT", expiry=dt.date(2027, 1, 26))
        stock0001 = [row for row in stocks if row.name == "STOCK0001" and row is not gone]
        services.instrument_sync(rows=[*stock0001, reusing], names={"STOCK0001"})
    yield {"reused_token": gone.instrument_token}
    with django_db_blocker.unblock():
        Underlying.objects.all().delete()
        Instrument.objects.all().delete()


@pytest.fixture
def api(alice) -> APIClient:
    client = APIClient()
    client.force_login(alice)
    return client


def listed(api: APIClient, query: str = "", path: str = "/api/v1/instruments/") -> dict:
    response = api.get(f"{path}?{query}")
    assert response.status_code == 200, response.content
    return response.json()


def symbols(body: dict) -> list[str]:
    return [row["tradingsymbol"] for row in body["results"]]


# ---------------------------------------------------------------------------
# Authentication
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/instruments/",
        "/api/v1/instruments/256265/",
        "/api/v1/underlyings/",
        "/api/v1/underlyings/NIFTY/",
        "/api/v1/accounts/",
        "/api/v1/accounts/1/",
    ],
)
def test_an_anonymous_request_gets_401_json_not_the_login_page(path):
    response = APIClient().get(path)
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided.", "code": "not_authenticated"}


def test_an_api_token_authenticates(market, alice):
    _, token = AuthToken.objects.create(alice)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.get("/api/v1/instruments/256265/")
    assert response.status_code == 200
    assert response.json()["tradingsymbol"] == "NIFTY 50"


# ---------------------------------------------------------------------------
# The instrument list and its filters
# ---------------------------------------------------------------------------
def test_the_list_pages_active_instruments_by_exchange_and_symbol(api, market):
    body = listed(api)
    active = Instrument.objects.active()
    assert body["count"] == active.count() == len(demo_master(TODAY)) + STOCK_ROWS
    assert symbols(body) == list(
        active.order_by("exchange", "tradingsymbol").values_list("tradingsymbol", flat=True)[:100]
    )
    assert body["next"].endswith("/api/v1/instruments/?page=2") and body["previous"] is None

    second = listed(api, "page=2&page_size=50")
    assert symbols(second) == symbols(body)[50:100]


def test_an_instrument_shows_kites_columns_and_its_underlying(api, market):
    stored = Instrument.objects.get(tradingsymbol="NIFTY26D0126000CE")
    body = listed(api, "search=NIFTY26D0126000CE")
    assert body["results"] == [
        {
            "instrument_token": stored.instrument_token,
            "exchange_token": stored.exchange_token,
            "tradingsymbol": "NIFTY26D0126000CE",
            "name": "NIFTY",
            "exchange": "NFO",
            "segment": "NFO-OPT",
            "instrument_type": "CE",
            "expiry": "2026-12-01",
            "strike": 26000.0,
            "tick_size": 0.05,
            "lot_size": 65,
            "underlying": "NIFTY",
            "active": True,
        }
    ]
    stock = listed(api, "search=STOCK0000&segment=NSE")["results"]
    assert [(row["tradingsymbol"], row["expiry"], row["underlying"]) for row in stock] == [("STOCK0000", None, None)]


def test_exchange_and_segment_match_in_any_case(api, market):
    indices = listed(api, "segment=indices")
    assert sorted(symbols(indices)) == ["NIFTY 50", "NIFTY BANK", "NIFTY FIN SERVICE"]
    assert listed(api, "exchange=nse")["count"] == 3 + 2  # the indices and the two stocks
    assert listed(api, "exchange=NFO")["count"] == Instrument.objects.active().filter(exchange="NFO").count()
    assert listed(api, "exchange=NS")["count"] == 0  # equality, not a prefix


def test_instrument_type_takes_one_or_several(api, market):
    futures = listed(api, "instrument_type=FUT&page_size=1000")
    assert {row["instrument_type"] for row in futures["results"]} == {"FUT"}
    assert futures["count"] == 3 * 3 + 2 * 6  # 3 monthlies per index; STOCK0001 swapped one for another

    options = listed(api, "instrument_type=CE&instrument_type=PE&page_size=1")
    assert options["count"] == Instrument.objects.active().options().count()


def test_underlying_means_kites_name_of_the_contracts_configured_or_not(api, market):
    nifty = listed(api, "underlying=nifty&page_size=1000")
    assert nifty["count"] == 6 * 81 * 2 + 3
    assert {(row["name"], row["underlying"]) for row in nifty["results"]} == {("NIFTY", "NIFTY")}

    stock = listed(api, "underlying=STOCK0000&page_size=1000")
    assert stock["count"] == 6 + 6 * 26  # futures and options, not the equity (Kite names it the same)...
    assert {row["underlying"] for row in stock["results"]} == {None}  # ...and no Underlying is configured


def test_expiry_filters_take_iso_dates(api, market):
    one_day = listed(api, "expiry=2026-12-01&page_size=1000")
    assert {row["expiry"] for row in one_day["results"]} == {"2026-12-01"}
    assert one_day["count"] == 81 * 2 + 2 * 27  # the NIFTY weekly, and the stocks' second weekly with its future

    december = listed(api, "underlying=NIFTY&expiry_from=2026-12-01&expiry_to=2026-12-31&instrument_type=CE")
    assert december["count"] == 4 * 81
    days = {row["expiry"] for row in listed(api, "underlying=NIFTY&expiry_from=2026-12-29&page_size=1000")["results"]}
    assert days == {"2026-12-29", "2027-01-26"}


def test_strike_range_is_inclusive_and_takes_decimals(api, market):
    body = listed(api, "underlying=NIFTY&expiry=2026-11-24&instrument_type=CE&strike_min=25899.5&strike_max=26100")
    assert [row["strike"] for row in body["results"]] == [25900.0, 25950.0, 26000.0, 26050.0, 26100.0]


def test_search_is_a_case_insensitive_prefix_of_symbol_or_name_or_a_token(api, market):
    weekly = listed(api, "search=nifty26d01&page_size=1000")
    assert weekly["count"] == 81 * 2
    assert all(symbol.startswith("NIFTY26D01") for symbol in symbols(weekly))

    by_name = listed(api, "search=stock000&page_size=1000")
    assert {row["name"] for row in by_name["results"]} == {"STOCK0000", "STOCK0001"}

    by_token = listed(api, "search=256265")
    assert symbols(by_token) == ["NIFTY 50"]
    assert listed(api, "search=ZZZ")["count"] == 0
    assert listed(api, "search=")["count"] == Instrument.objects.active().count()


def test_inactive_contracts_are_left_out_unless_asked_for(api, market):
    token = market["reused_token"]
    assert symbols(listed(api, f"search={token}")) == ["STOCK000127JANFUT"]
    assert symbols(listed(api, f"search={token}&active=false")) == ["STOCK000126NOV24FUT"]
    both = listed(api, f"search={token}&active=all")
    assert [(row["tradingsymbol"], row["active"]) for row in both["results"]] == [
        ("STOCK000126NOV24FUT", False),
        ("STOCK000127JANFUT", True),
    ]


def test_ordering_by_strike_lists_a_chain_in_order(api, market):
    chain = listed(api, "underlying=NIFTY&expiry=2026-11-24&instrument_type=CE&instrument_type=PE&ordering=strike")
    rows = [(row["strike"], row["instrument_type"]) for row in chain["results"]]
    assert rows[:4] == [(24000.0, "CE"), (24000.0, "PE"), (24050.0, "CE"), (24050.0, "PE")]
    assert rows == sorted(rows)

    by_expiry = listed(api, "underlying=NIFTY&instrument_type=FUT&ordering=expiry")
    assert [row["expiry"] for row in by_expiry["results"]] == ["2026-11-24", "2026-12-29", "2027-01-26"]


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("expiry=2026-13-45", "expiry", "Enter a valid date."),
        ("expiry=24-11-2026", "expiry", "Enter a valid date."),
        ("expiry_from=2026-02-30", "expiry_from", "Enter a valid date."),
        ("expiry_to=tomorrow", "expiry_to", "Enter a valid date."),
        ("strike_min=abc", "strike_min", "Enter a number."),
        ("strike_max=NaN", "strike_max", "Enter a number."),
        ("strike_max=Infinity", "strike_max", "Enter a number."),
        ("strike_min=1e400", "strike_min", "Ensure this value is less than or equal to 10000000000."),
        ("strike_min=-50", "strike_min", "Ensure this value is greater than or equal to 0."),
        ("instrument_type=ce", "instrument_type", "Select a valid choice. ce is not one of the available choices."),
        ("active=yes", "active", "Select a valid choice. yes is not one of the available choices."),
        ("ordering=price", "ordering", "Select a valid choice. price is not one of the available choices."),
        ("search=NI%00FTY", "search", "Null characters are not allowed."),
        ("page=0", "page", "Ensure this value is greater than or equal to 1."),
        ("page=abc", "page", "A valid integer is required."),
        ("page=", "page", "A valid integer is required."),
        ("page_size=100000", "page_size", "Ensure this value is less than or equal to 1000."),
        ("page_size=0", "page_size", "Ensure this value is greater than or equal to 1."),
        ("page_size=1.5", "page_size", "A valid integer is required."),
    ],
)
def test_a_bad_value_is_a_400_naming_the_parameter(api, market, query, field, message):
    response = api.get(f"/api/v1/instruments/?{query}")
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid input.", "code": "invalid", "errors": {field: [message]}}


@pytest.mark.parametrize("name", ["expiry", "strike_min", "active", "ordering"])
def test_a_typed_parameter_given_empty_is_a_400_not_no_filter(api, market, name):
    response = api.get(f"/api/v1/instruments/?{name}=")
    assert response.status_code == 400
    assert response.json()["errors"] == {name: ["Give a value or leave the parameter out."]}


def test_an_empty_text_parameter_filters_nothing(api, market):
    assert listed(api, "exchange=&underlying=&search=")["count"] == Instrument.objects.active().count()


def test_every_bad_parameter_is_named_at_once(api, market):
    response = api.get("/api/v1/instruments/?expiry=2026-13-45&strike_min=abc")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"expiry", "strike_min"}


@pytest.mark.parametrize(
    "query",
    [
        "search=99999999999999999999999",
        "strike_min=9999999999.9999",
        "strike_max=0&instrument_type=CE",
        "expiry=9999-12-31",
    ],
)
def test_extreme_but_valid_values_find_nothing_rather_than_fail(api, market, query):
    assert listed(api, query)["count"] == 0


def test_a_page_past_the_last_is_a_404(api, market):
    response = api.get("/api/v1/instruments/?page=99999999999999999999")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


# ---------------------------------------------------------------------------
# One instrument by token
# ---------------------------------------------------------------------------
def test_a_token_finds_the_contract_it_means_today(api, market):
    response = api.get(f"/api/v1/instruments/{market['reused_token']}/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == INSTRUMENT_FIELDS
    assert (body["tradingsymbol"], body["expiry"], body["active"]) == ("STOCK000127JANFUT", "2027-01-26", True)


@pytest.mark.parametrize("token", ["1", "abc", "-1", "1.5", "99999999999999999999999"])
def test_an_unknown_or_malformed_token_is_a_json_404(api, market, token):
    response = api.get(f"/api/v1/instruments/{token}/")
    assert response.status_code == 404
    assert response.json() == {"detail": "No instrument has this token.", "code": "not_found"}


# ---------------------------------------------------------------------------
# Underlyings
# ---------------------------------------------------------------------------
def test_underlyings_show_their_settings_and_upcoming_expiries(api, market):
    body = listed(api, path="/api/v1/underlyings/")
    assert [row["symbol"] for row in body["results"]] == ["BANKNIFTY", "FINNIFTY", "NIFTY"]
    nifty = body["results"][2]
    expiries = nifty.pop("expiries")
    assert nifty == {
        "symbol": "NIFTY",
        "spot_instrument_token": 256265,
        "spot_tradingsymbol": "NIFTY 50",
        "spot_exchange": "NSE",
        "derivatives_exchange": "NFO",
        "strike_step": 50.0,
        "strikes_each_side": 10,
        "expiries_to_stream": 2,
        "risk_free_rate": 0.065,
        "dividend_yield": 0.0,
        "enabled": True,
        "store_ticks": False,
    }
    assert [row["date"] for row in expiries] == NIFTY_EXPIRIES
    # Monthlies are the last Tuesday of their month; the feed streams the two nearest.
    assert [row["is_monthly"] for row in expiries] == [True, False, False, False, True, True]
    assert [row["streamed"] for row in expiries] == [True, True, False, False, False, False]
    assert {(row["lot_size"], row["strikes"]) for row in expiries} == {(65, 81)}


def test_a_disabled_underlying_streams_no_expiry(api, market):
    finnifty = api.get("/api/v1/underlyings/finnifty/").json()
    assert finnifty["enabled"] is False
    assert [(row["date"], row["streamed"]) for row in finnifty["expiries"]] == [
        ("2026-11-24", False),
        ("2026-12-29", False),
        ("2027-01-26", False),
    ]
    assert [row["symbol"] for row in listed(api, "enabled=true", path="/api/v1/underlyings/")["results"]] == [
        "BANKNIFTY",
        "NIFTY",
    ]


def test_expired_contracts_are_not_upcoming(api, market):
    with frozen_clock(dt.datetime(2026, 11, 25, 9, 0, tzinfo=IST)):
        expiries = api.get("/api/v1/underlyings/NIFTY/").json()["expiries"]
    assert [row["date"] for row in expiries] == NIFTY_EXPIRIES[1:]
    assert [row["streamed"] for row in expiries] == [True, True, False, False, False]


@pytest.mark.parametrize("symbol", ["SENSEX", "NIFTY%00", "%20"])
def test_an_unknown_underlying_is_a_json_404(api, market, symbol):
    response = api.get(f"/api/v1/underlyings/{symbol}/")
    assert response.status_code == 404
    assert response.json() == {"detail": "No underlying has this symbol.", "code": "not_found"}


def test_enabled_takes_only_true_or_false(api, market):
    response = api.get("/api/v1/underlyings/?enabled=1")
    assert response.status_code == 400
    assert response.json()["errors"] == {"enabled": ["Use true or false."]}


# ---------------------------------------------------------------------------
# Broker accounts
# ---------------------------------------------------------------------------
ALICE_SECRET = "alice-api-secret-0123456789"
ALICE_ACCESS_TOKEN = "alice-access-token-abcdefghijklmnop"


@pytest.fixture
def accounts(alice, bob) -> dict[str, BrokerAccount]:
    kite = BrokerAccount.objects.create(
        user=alice,
        label="Main",
        api_key="alicekey123",
        api_secret=ALICE_SECRET,
        access_token=ALICE_ACCESS_TOKEN,
        access_token_expires_at=dt.datetime(2026, 11, 22, 6, 0, tzinfo=IST),
        kite_user_id="AL1234",
        kite_user_name="Alice",
        is_data_account=True,
    )
    return {
        "alice_kite": kite,
        "alice_paper": services.broker_account_paper_ensure(user=alice),
        "bob_kite": BrokerAccount.objects.create(user=bob, label="Bob's", api_key="bobkey", api_secret="bob-secret-1"),
    }


def test_a_user_lists_only_their_own_accounts(api, accounts):
    body = listed(api, path="/api/v1/accounts/")
    assert body["count"] == 2
    main, paper = body["results"]
    assert main == {
        "id": accounts["alice_kite"].pk,
        "label": "Main",
        "kind": "kite",
        "api_key": "alicekey123",
        "api_secret_masked": "••••6789",
        "is_data_account": True,
        "token_state": "valid",
        "access_token_expires_at": "2026-11-22T06:00:00+05:30",
        "kite_user_id": "AL1234",
        "kite_user_name": "Alice",
        "created_at": main["created_at"],
    }
    assert (paper["label"], paper["kind"], paper["token_state"], paper["api_secret_masked"]) == (
        "Paper",
        "paper",
        "not_needed",
        "",
    )


def test_another_users_account_is_a_404_like_a_missing_one(api, accounts):
    own = api.get(f"/api/v1/accounts/{accounts['alice_kite'].pk}/")
    assert own.status_code == 200 and own.json()["label"] == "Main"
    bobs = api.get(f"/api/v1/accounts/{accounts['bob_kite'].pk}/")
    missing = api.get("/api/v1/accounts/999999/")
    malformed = api.get("/api/v1/accounts/99999999999999999999999/")
    assert bobs.status_code == missing.status_code == malformed.status_code == 404
    assert (
        bobs.json() == missing.json() == malformed.json() == {"detail": "No such broker account.", "code": "not_found"}
    )


def test_secrets_appear_in_no_response(api, accounts):
    # The columns as stored (Fernet tokens), read below the encrypted field.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT api_secret, access_token FROM instruments_brokeraccount WHERE id = %s", [accounts["alice_kite"].pk]
        )
        ciphertexts = list(cursor.fetchone())
    assert all(ciphertexts)
    bodies = [
        api.get("/api/v1/accounts/").content.decode(),
        api.get(f"/api/v1/accounts/{accounts['alice_kite'].pk}/").content.decode(),
    ]
    for body in bodies:
        for secret in [ALICE_SECRET, ALICE_ACCESS_TOKEN, *ciphertexts]:
            assert secret not in body
        assert '"access_token"' not in body and '"api_secret"' not in body


# ---------------------------------------------------------------------------
# Query counts: a page costs the same number of queries whatever its size
# ---------------------------------------------------------------------------
def queries_for(api: APIClient, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert api.get(url).status_code == 200
    return len(captured)


@pytest.mark.parametrize(
    "path",
    ["/api/v1/instruments/", "/api/v1/instruments/?underlying=NIFTY&ordering=strike", "/api/v1/underlyings/"],
)
def test_a_list_costs_the_same_queries_whatever_the_page_size(api, market, path, django_assert_max_num_queries):
    joiner = "&" if "?" in path else "?"
    small = queries_for(api, f"{path}{joiner}page_size=1")
    with django_assert_max_num_queries(small):
        assert len(api.get(f"{path}{joiner}page_size=1000").json()["results"]) > 1
    # The session, its user, COUNT(*), the page (and the underlyings' expiries, in one query).
    assert small <= 5


def test_accounts_cost_the_same_queries_whatever_their_number(api, accounts, alice, django_assert_max_num_queries):
    few = queries_for(api, "/api/v1/accounts/")
    for number in range(10):
        BrokerAccount.objects.create(user=alice, label=f"Extra {number}", api_key=f"key{number}")
    with django_assert_max_num_queries(few):
        assert api.get("/api/v1/accounts/").json()["count"] == 12


# ---------------------------------------------------------------------------
# The schema
# ---------------------------------------------------------------------------
def test_the_schema_documents_every_parameter_and_error(client):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    listing = paths["/api/v1/instruments/"]["get"]
    assert {parameter["name"] for parameter in listing["parameters"]} == {
        "exchange",
        "segment",
        "instrument_type",
        "underlying",
        "expiry",
        "expiry_from",
        "expiry_to",
        "strike_min",
        "strike_max",
        "search",
        "active",
        "ordering",
        "page",
        "page_size",
    }
    assert set(listing["responses"]) == {"200", "400", "401", "404"}
    for path in (
        "/api/v1/instruments/{instrument_token}/",
        "/api/v1/underlyings/{symbol}/",
        "/api/v1/accounts/{account_id}/",
    ):
        assert set(paths[path]["get"]["responses"]) == {"200", "401", "404"}
