"""Option chains and the Greeks calculator over REST: the latest figures as the real chain refresh wrote
them to Redis, their stored history, and Black-Scholes on request. Real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import numpy as np
import pytest
import redis
import redis.asyncio as aioredis
from django.conf import settings
from rest_framework.test import APIClient

from instruments.models import Instrument, Underlying
from marketdata import services
from marketdata.analytics import black_scholes
from marketdata.feed.chains import chain_layouts
from marketdata.feed.publisher import Publisher
from marketdata.feed.state import FeedState
from marketdata.feed.universe import ChainContract, SubscriptionPlanner, UnderlyingUniverse
from marketdata.groups import chain_key
from marketdata.kite import build_frame, parse_frame
from marketdata.models import ChainSnapshot
from trading_site.clock import IST, frozen_clock

EXPIRY, NEXT_EXPIRY = dt.date(2026, 11, 24), dt.date(2026, 12, 1)
AT = dt.datetime(2026, 11, 23, 10, 15, 7, tzinfo=IST)
SPOT_TOKEN, SPOT, RATE, SIGMA = 256265, 26_010.0, 0.065, 0.14
STRIKES = (25_950, 26_000, 26_050)
CE_OI, PE_OI = (150_000, 300_000, 225_000), (450_000, 375_000, 150_000)


def token_of(strike: int, kind: str) -> int:
    return 20_000_000 + strike * 2 + (kind == "PE")


@pytest.fixture
def api(alice) -> APIClient:
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    client = APIClient()
    client.force_login(alice)
    return client


@pytest.fixture
def nifty(db) -> Underlying:
    """NIFTY with its options of two expiries in the instrument master."""
    underlying = Underlying.objects.create(symbol="NIFTY", strike_step=50, risk_free_rate="0.07", dividend_yield="0.01")
    Instrument.objects.bulk_create(
        Instrument(
            instrument_token=token_of(strike, kind) + (expiry == NEXT_EXPIRY) * 1000,
            exchange_token=1,
            tradingsymbol=f"NIFTY{expiry:%y%m%d}{strike}{kind}",
            instrument_type=kind,
            segment="NFO-OPT",
            exchange="NFO",
            expiry=expiry,
            strike=strike,
            lot_size=75,
            underlying=underlying,
        )
        for expiry in (NEXT_EXPIRY, EXPIRY)
        for strike in STRIKES
        for kind in ("CE", "PE")
    )
    return underlying


def universe() -> UnderlyingUniverse:
    options = tuple(
        ChainContract(token_of(k, kind), f"NIFTY{EXPIRY:%y%m%d}{k}{kind}", kind, float(k), EXPIRY, 75)
        for k in STRIKES
        for kind in ("CE", "PE")
    )
    return UnderlyingUniverse(
        symbol="NIFTY",
        spot_token=SPOT_TOKEN,
        strike_step=50.0,
        strikes_each_side=5,
        expiries=(EXPIRY,),
        futures=(),
        options=options,
        risk_free_rate=RATE,
        reference_spot=26_000.0,
    )


def chain_ticks() -> list[dict]:
    """Every contract priced at 14 %, quoted 0.05 either side of its value."""
    years = (dt.datetime.combine(EXPIRY, dt.time(15, 30), tzinfo=IST) - AT).total_seconds() / (365 * 86_400)
    ticks = [{"instrument_token": SPOT_TOKEN, "mode": "full", "last_price": SPOT, "exchange_timestamp": AT}]
    for kind, ois in (("CE", CE_OI), ("PE", PE_OI)):
        values = black_scholes.price(SPOT, np.array(STRIKES, float), years, RATE, SIGMA, kind == "CE")
        for strike, value, oi in zip(STRIKES, values.tolist(), ois, strict=True):
            ticks.append(
                {
                    "instrument_token": token_of(strike, kind),
                    "mode": "full",
                    "last_price": round(value, 2),
                    "volume_traded": 1_000_000,
                    "oi": oi,
                    "ohlc": {"open": 1.0, "high": 1.0, "low": 1.0, "close": round(value - 3, 2)},
                    "exchange_timestamp": AT,
                    "depth": {
                        "buy": [{"quantity": 750, "price": round(value - 0.05, 2), "orders": 2}],
                        "sell": [{"quantity": 750, "price": round(value + 0.05, 2), "orders": 2}],
                    },
                }
            )
    return ticks


async def _stream_chain() -> None:
    """What run_feed leaves in Redis: the chain's layout and latest ticks (real planner and publisher)."""

    async def nowhere(group: str, message: dict) -> None:
        pass

    client = aioredis.Redis.from_url(settings.REDIS_URL)
    planner = SubscriptionPlanner([universe()])
    state = FeedState(capacity=32)
    state.add(planner.plan({"NIFTY": SPOT}).add)
    await client.set(chain_key("NIFTY", EXPIRY, "layout"), json.dumps(chain_layouts(planner)[("NIFTY", EXPIRY)]))
    state.apply(parse_frame(build_frame(chain_ticks())))
    await Publisher(state=state, group_send=nowhere, redis_client=client).publish_changes()
    await client.aclose()


@pytest.fixture
def chain(api, nifty) -> dict:
    """The chain's figures, computed by the real refresh (which also stores the 10:15 snapshot)."""
    asyncio.run(_stream_chain())
    return services.chain_refresh(symbol="NIFTY", expiry=EXPIRY)


# ---------------------------------------------------------------------------
# The latest figures
# ---------------------------------------------------------------------------


def test_the_latest_chain_is_what_the_refresh_task_wrote_for_the_nearest_expiry(api, chain):
    with frozen_clock(AT):
        response = api.get("/api/v1/chains/nifty/")  # any case
    assert response.status_code == 200
    body = response.json()
    assert body == chain
    assert (body["underlying"], body["expiry"], body["as_of"]) == ("NIFTY", "2026-11-24", AT.isoformat())
    summary = body["summary"]
    assert summary["atm_strike"] == 26_000 and summary["atm_iv"] == pytest.approx(14.0, abs=0.01)
    assert summary["pcr_oi"] == pytest.approx(975 / 675, abs=1e-3) and summary["max_pain"] == 26_000
    call = body["strikes"][1]["ce"]
    assert (call["token"], call["tradingsymbol"]) == (token_of(26_000, "CE"), "NIFTY26112426000CE")
    assert call["iv"] == pytest.approx(14.0, abs=0.01) and call["theta"] < 0 < call["vega"]
    assert api.get("/api/v1/chains/NIFTY/?expiry=2026-11-24").json() == chain


def test_the_schema_describes_every_field_of_the_chain_figures(api, chain, client):
    schemas = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["components"]["schemas"]

    def properties(name: str) -> set[str]:
        return set(schemas[name]["properties"])

    assert set(chain) == properties("ChainAnalytics")
    assert set(chain["summary"]) == properties("ChainSummary")
    assert set(chain["summary"]["smile"]) == properties("Smile")
    for row in chain["strikes"]:
        assert set(row) == properties("ChainStrikeRow")
        assert set(row["ce"]) == set(row["pe"]) == properties("ChainSide")
    assert set(schemas["ChainSnapshotWithStrikes"]["properties"]) >= {"taken_at", "atm_iv", "summary", "strikes"}


def test_chains_that_do_not_exist_or_have_no_figures_yet_are_404s_with_a_code(api, chain, nifty):
    unknown = api.get("/api/v1/chains/NOPE/")
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "No underlying named 'NOPE'.", "code": "not_found"}
    not_yet = api.get("/api/v1/chains/NIFTY/?expiry=2026-12-01")
    assert not_yet.status_code == 404 and not_yet.json()["code"] == "no_chain_yet"
    assert "NIFTY 2026-12-01" in not_yet.json()["detail"]
    Underlying.objects.create(symbol="SENSEX", strike_step=100)  # no instruments loaded
    no_expiry = api.get("/api/v1/chains/SENSEX/")
    assert no_expiry.status_code == 404 and no_expiry.json()["code"] == "no_expiry"
    bad = api.get("/api/v1/chains/NIFTY/?expiry=24-11-2026")
    assert bad.status_code == 400 and list(bad.json()["errors"]) == ["expiry"]


def test_redis_down_is_a_503_for_the_latest_chain(api, nifty, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = api.get("/api/v1/chains/NIFTY/?expiry=2026-11-24")
    assert response.status_code == 503 and response.json()["code"] == "unavailable"


# ---------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------


def test_chain_history_is_the_days_snapshots_oldest_first(api, chain, nifty):
    for taken_at, pcr in ((AT.replace(minute=17, second=0), 1.7), (AT.replace(minute=16, second=0), 1.6)):
        ChainSnapshot.objects.create(underlying=nifty, expiry=EXPIRY, taken_at=taken_at, pcr_oi=pcr)
    ChainSnapshot.objects.create(underlying=nifty, expiry=EXPIRY, taken_at=AT - dt.timedelta(days=1), pcr_oi=9)
    ChainSnapshot.objects.create(underlying=nifty, expiry=NEXT_EXPIRY, taken_at=AT, pcr_oi=8)

    with frozen_clock(AT + dt.timedelta(minutes=5)):
        body = api.get("/api/v1/chains/NIFTY/history/").json()
    assert (body["underlying"], body["expiry"]) == ("NIFTY", "2026-11-24")
    first, *later = body["snapshots"]
    assert [s["taken_at"] for s in body["snapshots"]] == [
        "2026-11-23T10:15:00+05:30",
        "2026-11-23T10:16:00+05:30",
        "2026-11-23T10:17:00+05:30",
    ]
    summary = chain["summary"]
    assert first == {
        "taken_at": "2026-11-23T10:15:00+05:30",
        **{
            name: summary[name]
            for name in ("spot", "future", "atm_strike", "atm_iv", "pcr_oi", "pcr_volume", "max_pain", "total_gex")
        },
        "gamma_flip": summary["gamma_flip"],
    }
    assert [s["pcr_oi"] for s in later] == [1.6, 1.7]

    yesterday = api.get("/api/v1/chains/NIFTY/history/?from=2026-11-22&to=2026-11-22").json()
    assert [s["pcr_oi"] for s in yesterday["snapshots"]] == [9]
    with_strikes = api.get("/api/v1/chains/NIFTY/history/?from=2026-11-23T10:15:00&to=2026-11-23T10:15:00&strikes=true")
    (snapshot,) = with_strikes.json()["snapshots"]
    assert snapshot["summary"] == chain["summary"] and snapshot["strikes"] == chain["strikes"]


def test_long_history_ranges_come_in_pages_and_backward_ones_are_empty(api, nifty):
    for day in (1, 20):  # 1 and 20 November
        ChainSnapshot.objects.create(underlying=nifty, expiry=EXPIRY, taken_at=AT.replace(day=day), pcr_oi=day)
    with frozen_clock(AT):
        first = api.get("/api/v1/chains/NIFTY/history/?from=2026-10-01&to=2026-11-23").json()
        # 31 days a page: 1 October to 31 October is empty, and says where to go on.
        assert first["snapshots"] == [] and "from=2026-11-01T00%3A00%3A00%2B05%3A30" in first["next"]
        second = api.get(first["next"]).json()
        assert [s["pcr_oi"] for s in second["snapshots"]] == [1, 20] and second["next"] is None
        # With strikes, a day a page.
        daily = api.get("/api/v1/chains/NIFTY/history/?from=2026-11-20&to=2026-11-21&strikes=true").json()
        assert [s["pcr_oi"] for s in daily["snapshots"]] == [20] and "from=2026-11-21T00" in daily["next"]
        backwards = api.get("/api/v1/chains/NIFTY/history/?from=2026-11-23T11:00:00&to=2026-11-23T10:00:00")
        assert backwards.status_code == 200 and backwards.json()["snapshots"] == []
        not_a_boolean = api.get("/api/v1/chains/NIFTY/history/?strikes=1")
        assert not_a_boolean.status_code == 400 and list(not_a_boolean.json()["errors"]) == ["strikes"]


# ---------------------------------------------------------------------------
# The Greeks calculator
# ---------------------------------------------------------------------------


def greeks(api, *contracts: dict, status: int = 200) -> dict:
    with frozen_clock(AT):
        response = api.post("/api/v1/greeks/", {"contracts": list(contracts)}, format="json")
    assert response.status_code == status, response.json()
    return response.json()


CALL = {"option_type": "CE", "spot": 100, "strike": 100, "time_to_expiry_years": 1, "rate": 0.05}


def test_the_textbook_call_is_worth_10_4506(api, db):
    body = greeks(api, {**CALL, "volatility": 20})
    (result,) = body["results"]
    assert result["price"] == pytest.approx(10.4506, abs=5e-5)
    assert (result["solved_for"], result["iv"], result["iv_reason"]) == ("price", 20, None)
    assert result["delta"] == pytest.approx(0.6368, abs=1e-4)  # N(d1), d1 = 0.35
    assert body["units"]["iv"].startswith("annualised, percent points")
    assert body["units"]["theta"] == "change in price per calendar day that passes (usually negative)"
    assert body["units"]["vega"] == "change in price per volatility point (20 % to 21 %)"


def test_a_batch_agrees_with_black_scholes_and_prices_give_back_their_volatility(api, db):
    spot, strikes, years = 26_010.0, np.array([25_500.0, 26_000.0, 26_500.0, 26_000.0]), 0.05
    is_call, sigma, r, q = np.array([True, True, False, False]), np.array([0.16, 0.14, 0.13, 0.15]), 0.065, 0.012
    expected = black_scholes.greeks(spot, strikes, years, r, sigma, is_call, q)
    contracts = [
        {
            "option_type": "CE" if call else "PE",
            "spot": spot,
            "strike": strike,
            "time_to_expiry_years": years,
            "rate": r,
            "dividend_yield": q,
            # the first two priced from a volatility, the last two solved from their price
            **({"volatility": vol * 100} if i < 2 else {"price": value}),
        }
        for i, (strike, call, vol, value) in enumerate(
            zip(strikes.tolist(), is_call.tolist(), sigma.tolist(), expected.price.tolist(), strict=True)
        )
    ]
    results = greeks(api, *contracts)["results"]
    assert [r["solved_for"] for r in results] == ["price", "price", "iv", "iv"]
    assert [r["iv"] for r in results] == pytest.approx([16.0, 14.0, 13.0, 15.0], abs=1e-8)
    for name in ("price", "delta", "gamma", "theta", "vega", "rho"):
        assert [r[name] for r in results] == pytest.approx(getattr(expected, name).tolist(), rel=1e-9), name
    assert results[2]["option_type"] == "PE" and results[2]["dividend_yield"] == q


def test_an_expiry_date_counts_to_1530_ist_and_rates_default_to_the_underlyings(api, nifty):
    contract = {"option_type": "PE", "spot": 26_010, "strike": 26_000, "expiry": "2026-11-24", "volatility": 14}
    (named, plain) = greeks(api, {**contract, "underlying": "nifty"}, contract)["results"]
    years = (dt.datetime(2026, 11, 24, 15, 30, tzinfo=IST) - AT).total_seconds() / (365 * 86_400)
    assert named["time_to_expiry_years"] == pytest.approx(years, rel=1e-12)
    assert (named["rate"], named["dividend_yield"]) == (0.07, 0.01)
    assert (plain["rate"], plain["dividend_yield"]) == (0.065, 0.0)
    value = black_scholes.price(26_010, 26_000, years, 0.07, 0.14, False, 0.01)
    assert named["price"] == pytest.approx(float(value), rel=1e-12)


def test_a_price_no_volatility_gives_has_a_null_iv_and_a_reason_not_an_error(api, db):
    deep = {"option_type": "CE", "spot": 120, "strike": 100, "time_to_expiry_years": 0.5, "rate": 0.05}
    results = greeks(api, {**deep, "price": 15}, {**deep, "price": 130}, {**deep, "price": 0}, {**deep, "price": 25})[
        "results"
    ]
    assert [r["iv_reason"] for r in results] == ["below_intrinsic", "above_upper_bound", "below_intrinsic", None]
    assert results[0]["iv"] is None and results[0]["delta"] is None and results[0]["price"] == 15
    assert results[3]["iv"] > 0 and results[3]["delta"] > 0.5


def test_bad_contracts_are_a_400_listing_each_ones_errors_at_its_position(api, db):
    good = {**CALL, "volatility": 20}
    body = greeks(
        api,
        good,
        {**good, "spot": -1},
        {**good, "price": 10},
        {**CALL},
        {**good, "time_to_expiry_years": None},
        {**good, "rate": 6.5, "option_type": "CALL"},
        {**good, "time_to_expiry_years": 0},
        status=400,
    )
    errors = body["errors"]["contracts"]
    assert list(errors) == ["1", "2", "3", "4", "5", "6"]  # keyed by position; the good one is absent
    assert errors["1"] == {"spot": ["Must be greater than 0."]}
    assert (
        errors["2"]
        == errors["3"]
        == {"price": ["Give price (to solve for the IV) or volatility (to solve for the price), one of them."]}
    )
    assert errors["4"] == {"time_to_expiry_years": ["This field may not be null."]}
    assert errors["5"] == {
        "option_type": ['"CALL" is not a valid choice.'],
        "rate": ["Give it as a fraction (0.065 for 6.5 %), between -0.5 and 0.5."],
    }
    assert errors["6"] == {"time_to_expiry_years": ["Must be greater than 0."]}


def test_an_expired_contract_is_worth_its_intrinsic_value(api, db):
    contract = {"option_type": "CE", "spot": 110, "strike": 100, "expiry": "2026-11-20"}
    priced, solved = greeks(api, {**contract, "volatility": 20}, {**contract, "price": 10})["results"]
    assert priced["time_to_expiry_years"] < 0
    assert (priced["price"], priced["delta"], priced["gamma"], priced["theta"]) == (10, 1, 0, 0)
    assert (solved["iv"], solved["iv_reason"], solved["delta"]) == (None, "expired", None)


def test_an_unknown_underlying_is_a_404_naming_the_contract(api, db):
    contracts = [{**CALL, "volatility": 20}, {**CALL, "volatility": 20, "underlying": "XYZ"}]
    response = api.post("/api/v1/greeks/", {"contracts": contracts}, format="json")
    assert response.status_code == 404
    assert response.json() == {"detail": "No underlying named 'XYZ' (contract 1).", "code": "not_found"}
    both = greeks(api, {**CALL, "volatility": 20, "expiry": "2026-11-24"}, status=400)
    assert both["errors"]["contracts"] == {"0": {"expiry": ["Give expiry or time_to_expiry_years (one of them)."]}}
    padded = greeks(api, {**CALL, "volatility": 20, "underlying": " NIFTY"}, status=400)
    assert padded["errors"]["contracts"] == {"0": {"underlying": ["Not an underlying's symbol."]}}


def test_the_batch_holds_one_to_a_thousand_contracts(api, db):
    contract = {**CALL, "volatility": 20}
    assert len(greeks(api, *[contract] * 1000)["results"]) == 1000
    too_many = greeks(api, *[contract] * 1001, status=400)
    assert too_many["errors"] == {"contracts": ["Ensure this field has no more than 1000 elements."]}
    assert greeks(api, status=400)["errors"] == {"contracts": ["This list may not be empty."]}
    with frozen_clock(AT):
        single = api.post("/api/v1/greeks/", contract, format="json")
    assert single.status_code == 400 and single.json()["errors"] == {"contracts": ["This field is required."]}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ('{"contracts": [{"option_type": "CE", "spot": 1e999, "strike": 100, "time_to_expiry_years": 1, '
         '"volatility": 20}]}', "spot", "A valid number is required."),
        ('{"contracts": [{"option_type": "CE", "spot": "nan", "strike": 100, "time_to_expiry_years": 1, '
         '"volatility": 20}]}', "spot", "A valid number is required."),
        ('{"contracts": [{"option_type": "CE", "spot": 1e308, "strike": 100, "time_to_expiry_years": 1, '
         '"volatility": 20}]}', "spot", "Ensure this value is less than or equal to 1000000000.0."),
        ('{"contracts": [{"option_type": "CE", "spot": 100, "strike": 100, "time_to_expiry_years": 1e300, '
         '"price": 5}]}', "time_to_expiry_years", "Ensure this value is less than or equal to 100.0."),
        # JSON numbers only, as the schema says: no numeric strings, no booleans
        ('{"contracts": [{"option_type": "CE", "spot": "100", "strike": 100, "time_to_expiry_years": 1, '
         '"volatility": 20}]}', "spot", "A valid number is required."),
        ('{"contracts": [{"option_type": "CE", "spot": 100, "strike": true, "time_to_expiry_years": 1, '
         '"volatility": 20}]}', "strike", "A valid number is required."),
    ],
)  # fmt: skip
def test_non_finite_and_huge_numbers_are_400s_never_500s(api, db, body, field, message):
    with frozen_clock(AT):
        response = api.post("/api/v1/greeks/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"contracts": {"0": {field: [message]}}}


def test_nan_literals_are_refused_and_extreme_valid_inputs_still_answer(api, db):
    nan = api.post("/api/v1/greeks/", '{"contracts": [{"spot": NaN}]}', content_type="application/json")
    assert nan.status_code == 400 and nan.json()["code"] == "parse_error"
    extreme = [
        {
            "option_type": "CE",
            "spot": 1e9,
            "strike": 1e-9,
            "time_to_expiry_years": 100,
            "volatility": 1000,
            "rate": 0.5,
        },
        {"option_type": "PE", "spot": 1e-9, "strike": 1e9, "time_to_expiry_years": 1e-9, "price": 1e9, "rate": -0.5},
        {"option_type": "CE", "spot": 1e9, "strike": 1e9, "time_to_expiry_years": 1e-9, "volatility": 1e-9},
    ]
    results = greeks(api, *extreme)["results"]
    assert len(results) == 3
    assert all(
        value is None or np.isfinite(value) for r in results for value in r.values() if not isinstance(value, str)
    )
