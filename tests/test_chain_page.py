"""The option chain page: its cells on hand-made figures, what a socket sends as the figures move,
the page drawn from Redis, and its socket (/ws/ui/chain/...) on the real Redis channel layer."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import pytest_asyncio
import redis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections
from django.urls import reverse

from instruments.models import Underlying
from marketdata import selectors
from marketdata.consumers import UNAUTHENTICATED_CLOSE_CODE
from marketdata.consumers.chain import ChainPageConsumer
from marketdata.consumers.pages import PAGE_UNAVAILABLE_CLOSE_CODE
from marketdata.fragments.chain import COLUMNS, ChainPageState, build_view, strike_key, strikes_each_side
from marketdata.fragments.html import DASH, MINUS, socket_messages
from marketdata.groups import CHAIN_ANALYTICS_MESSAGE, chain_group, chain_key
from tests.market_data import load_demo_market, stream_simulated_market
from trading_site.asgi import application

ORIGIN = [(b"origin", b"http://localhost")]
_LEAF = re.compile(r'<(\w+) id="([^"]+)"([^>]*)>([^<]*)</\1>')
STRIKES = [23800.0, 23900.0, 24000.0, 24100.0, 24200.0]


def elements(html: str) -> dict[str, tuple[str, str]]:
    """Element id -> (its attributes, its text), for every element with an id that holds only text."""
    return {element_id: (attrs, inner) for _, element_id, attrs, inner in _LEAF.findall(html)}


def side(ltp: float, *, oi: int = 100_000, change_pct: float = 5.0, iv: float | None = 14.0, buildup=None) -> dict:
    return {
        "ltp": ltp,
        "change": ltp * change_pct / 100,
        "change_pct": change_pct,
        "bid": ltp - 0.05,
        "ask": ltp + 0.05,
        "volume": 1_250_000,
        "oi": oi,
        "oi_change": -12_500,
        "oi_change_pct": -2.5,
        "iv": iv,
        "delta": 0.5123,
        "gamma": 0.00123,
        "theta": -12.345,
        "vega": 8.9,
        "buildup": buildup,
    }


def chain(spot: float = 24_012.35, *, atm: float = 24_000.0, ce_ltp_24000: float = 120.5, strikes=STRIKES) -> dict:
    rows = []
    for strike in strikes:
        ce_ltp = ce_ltp_24000 if strike == 24_000 else max(spot - strike, 0) + 50
        rows.append(
            {
                "strike": strike,
                "gex": 1.5e7,
                "ce": side(ce_ltp, oi=200_000 if strike == 24_100 else 100_000, buildup="short_buildup"),
                "pe": side(max(strike - spot, 0) + 45, change_pct=-3.3, iv=None),
            }
        )
    return {
        "underlying": "NIFTY",
        "expiry": "2026-11-24",
        "as_of": "2026-11-23T10:31:02+05:30",
        "summary": {
            "spot": spot,
            "future": spot + 15.6,
            "atm_strike": atm,
            "atm_iv": 14.2,
            "expected_move": 296.07,
            "expected_move_pct": 1.14,
            "pcr_oi": 1.037,
            "max_pain": 24_000.0,
            "total_gex": -3.2e10,
            "gamma_flip": 24_028.4,
            "call_wall": 24_100.0,
            "put_wall": 23_900.0,
            "days_to_expiry": 1.2,
            "smile": {"strikes": strikes, "ce_iv": [14.0] * len(strikes), "pe_iv": [None] * len(strikes)},
        },
        "strikes": rows,
    }


# -- cells ---------------------------------------------------------------------------------------
def test_every_value_has_a_stable_id_and_reads_as_a_trader_reads_it():
    view = build_view(chain())
    html = view.body_html(view.window(10))
    cells = elements(html)
    assert cells["ce-24000-ltp"] == (' class="itm"', "120.50")
    assert cells["ce-24000-chg"][1] == "+5.0%" and 'class="pos itm"' in cells["ce-24000-chg"][0]
    assert cells["pe-24000-chg"][1] == f"{MINUS}3.3%" and 'class="neg"' in cells["pe-24000-chg"][0]
    assert cells["ce-24000-vol"][1] == "12.50L" and cells["ce-24000-oich"][1] == f"{MINUS}12,500"
    assert cells["ce-24000-iv"][1] == "14.0" and cells["pe-24000-iv"][1] == DASH
    assert [cells[f"ce-24000-{g}"][1] for g in ("delta", "gamma", "theta", "vega")] == [
        "0.51",
        "0.0012",
        f"{MINUS}12.35",
        "8.90",
    ]
    assert cells["ce-24000-buildup"] == (' class="neg itm"', "Short build")
    # The OI bar is against the largest OI on screen (200,000 at 24,100), in 5 % steps.
    assert 'style="--bar:50%"' in cells["ce-24000-oi"][0] and 'style="--bar:100%"' in cells["ce-24100-oi"][0]
    # Columns mirror around the strike: the last prices sit next to it.
    row = re.search(r'<tr id="row-24000".*?</tr>', html).group(0)
    ids = re.findall(r'id="([^"]+)"', row)[1:]
    assert ids[len(COLUMNS) - 1 : len(COLUMNS) + 2] == ["ce-24000-ltp", "strike-24000", "pe-24000-ltp"]
    assert ids[0] == "ce-24000-buildup" and ids[-1] == "pe-24000-buildup"


def test_in_the_money_sides_are_shaded_and_the_atm_strike_marked():
    cells = elements(build_view(chain(spot=24_012.35)).body_html(STRIKES))
    assert "itm" in cells["ce-23900-ltp"][0] and "itm" in cells["ce-24000-ltp"][0]
    assert "itm" not in cells["ce-24100-ltp"][0] and "itm" in cells["pe-24100-ltp"][0]
    assert "itm" not in cells["pe-24000-ltp"][0]
    assert 'class="strike atm"' in cells["strike-24000"][0] and 'class="strike"' in cells["strike-24100"][0]


def test_the_header_figures_are_formatted_with_signs_and_units():
    header = {key: cell.text for key, cell in build_view(chain()).header.items()}
    assert header == {
        "hdr-spot": "24,012.35",
        "hdr-future": "24,027.95",
        "hdr-atm-iv": "14.20%",
        "hdr-expected-move": "±296.07 (1.14%)",
        "hdr-pcr": "1.04",
        "hdr-max-pain": "24,000",
        "hdr-gex": f"{MINUS}3,200.00Cr",
        "hdr-flip": "24,028",
        "hdr-walls": "24,100 / 23,900",
        "hdr-dte": "1.2",
        "hdr-as-of": "10:31:02",
    }
    assert {cell.text for cell in build_view({}).header.values()} == {DASH, f"{DASH} / {DASH}"}


def test_the_window_is_n_strikes_each_side_of_atm():
    strikes = [23_000.0 + 100 * i for i in range(21)]
    view = build_view(chain(spot=24_012.35, strikes=strikes))
    assert view.window(2) == [23_800.0, 23_900.0, 24_000.0, 24_100.0, 24_200.0]
    assert view.window(0) == strikes
    assert view.window(30) == strikes
    assert strikes_each_side(b"strikes=20") == 20 and strikes_each_side(b"strikes=0") == 0
    assert strikes_each_side(b"strikes=7") == 10 and strikes_each_side(b"strikes=x") == 10  # the default
    assert strike_key(24_000.0) == "24000" and strike_key(112.5) == "112_5"


def test_a_socket_sends_the_whole_table_first_then_only_cells_that_changed():
    state = ChainPageState(strikes_each_side=2)
    first = state.fragments(build_view(chain()))
    assert first[0].startswith('<tbody id="chain-rows" hx-swap-oob="true">')
    assert len(re.findall(r'<tr id="row-', first[0])) == 5
    assert {"hdr-spot", "hdr-pcr"} <= set(elements("".join(first[1:])))

    assert state.fragments(build_view(chain())) == []  # nothing moved, nothing sent

    moved = state.fragments(build_view(chain(ce_ltp_24000=118.25)))
    assert moved[0] == '<td id="ce-24000-ltp" hx-swap-oob="true" class="itm dn">118.25</td>'
    assert set(elements("".join(moved))) == {"ce-24000-ltp", "ce-24000-bid", "ce-24000-ask"}  # bid, ask move with it


def test_a_spot_crossing_a_strike_resends_that_strikes_cells_and_a_new_atm_its_strike():
    state = ChainPageState(strikes_each_side=2)
    state.fragments(build_view(chain(spot=24_012.35)))
    crossed = elements("".join(state.fragments(build_view(chain(spot=24_112.35, atm=24_100.0)))))
    assert "itm" in crossed["ce-24100-oi"][0] and "itm" not in crossed["pe-24100-oi"][0]
    assert 'class="strike"' in crossed["strike-24000"][0] and 'class="strike atm"' in crossed["strike-24100"][0]
    assert "strike-23800" not in crossed and not any(key.startswith("pe-23800") for key in crossed)


def test_atm_two_strikes_away_recentres_the_table():
    strikes = [23_000.0 + 100 * i for i in range(21)]
    state = ChainPageState(strikes_each_side=2)
    state.fragments(build_view(chain(spot=24_012.35, strikes=strikes)))
    assert not state.fragments(build_view(chain(spot=24_112.35, atm=24_100.0, strikes=strikes)))[0].startswith("<tbody")
    recentred = state.fragments(build_view(chain(spot=24_212.35, atm=24_200.0, strikes=strikes)))
    assert recentred[0].startswith("<tbody") and state.strikes == [24_000.0, 24_100.0, 24_200.0, 24_300.0, 24_400.0]


def test_socket_messages_keep_table_parts_where_the_browser_parser_keeps_them():
    # htmx parses a message in a <template>: cells first, a <tbody> never beside cells.
    assert socket_messages(["<span id=a>", "<td id=b>", "<dd id=c>"]) == ["<td id=b><span id=a><dd id=c>"]
    assert socket_messages(["<td id=b>", "<tbody id=t>", "<span id=a>"]) == ["<tbody id=t><span id=a>", "<td id=b>"]
    assert socket_messages(["<span id=a>"]) == ["<span id=a>"]
    assert socket_messages([]) == []


# -- the page ------------------------------------------------------------------------------------
def test_an_anonymous_visitor_is_sent_to_log_in(client):
    response = client.get("/chain/NIFTY/")
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=/chain/NIFTY/")


@pytest.fixture
def demo_market(transactional_db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    load_demo_market(symbols=("NIFTY",))
    return selectors.nearest_option_expiry(underlying=Underlying.objects.get(symbol="NIFTY"))


def test_the_page_draws_the_latest_figures_from_redis(demo_market, client, alice, django_assert_max_num_queries):
    stream_simulated_market(4.0)
    figures = selectors.latest_chain_analytics(symbol="NIFTY", expiry=demo_market)
    client.force_login(alice)
    with django_assert_max_num_queries(12):  # session, user, underlying, expiries, snapshots, bars
        response = client.get(reverse("chain", args=["NIFTY"]), {"strikes": 5})
    assert response.status_code == 200
    page = response.content.decode()
    cells = elements(page)
    atm = figures["summary"]["atm_strike"]
    shown = [row for row in figures["strikes"] if row["strike"] in build_view(figures).window(5)]
    assert len(re.findall(r'<tr id="row-', page)) == len(shown) == 11
    row = next(r for r in shown if r["strike"] == atm)
    assert cells[f"ce-{strike_key(atm)}-ltp"][1] == f"{row['ce']['ltp']:,.2f}"
    assert "atm" in cells[f"strike-{strike_key(atm)}"][0]
    spot = f"{figures['summary']['spot']:.2f}"
    assert cells["hdr-spot"][1].replace(",", "") == spot
    assert f'ws-connect="/ws/ui/chain/NIFTY/{demo_market:%Y%m%d}/?strikes=5"' in page
    charts = json.loads(re.search(r'id="chain-charts-data"[^>]*>(.*?)</script>', page).group(1))
    assert (
        charts["strikes"] == [r["strike"] for r in shown] and charts["gamma_flip"] == figures["summary"]["gamma_flip"]
    )


def test_the_page_says_so_when_no_figures_exist_yet(demo_market, client, alice):
    client.force_login(alice)
    page = client.get(reverse("chain", args=["nifty"]), follow=True).content.decode()
    assert "No figures for this chain yet." in page
    assert elements(page)["hdr-spot"][1] == DASH


def test_bad_expiries_and_unknown_underlyings_get_clear_errors(demo_market, client, alice):
    client.force_login(alice)
    bad_date = client.get(reverse("chain", args=["NIFTY"]), {"expiry": "24-11-2026"})
    assert bad_date.status_code == 400 and b"YYYY-MM-DD" in bad_date.content
    no_such = client.get(reverse("chain", args=["NIFTY"]), {"expiry": "2031-01-01"})
    assert no_such.status_code == 400 and demo_market.isoformat().encode() in no_such.content
    assert client.get(reverse("chain", args=["NOPE"])).status_code == 404
    assert client.get(reverse("chain-default"))["Location"] == reverse("chain", args=["NIFTY"])


# -- the socket ----------------------------------------------------------------------------------
@pytest_asyncio.fixture
async def socket_market(transactional_db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    await sync_to_async(redis.Redis.from_url(settings.REDIS_URL).flushdb)()
    await sync_to_async(load_demo_market)(symbols=("NIFTY",))
    yield await sync_to_async(
        lambda: selectors.nearest_option_expiry(underlying=Underlying.objects.get(symbol="NIFTY"))
    )()
    await sync_to_async(connections.close_all)()


def chain_socket(path: str, user: User | None) -> WebsocketCommunicator:
    if user is None:
        return WebsocketCommunicator(application, path, headers=ORIGIN)
    socket = WebsocketCommunicator(ChainPageConsumer.as_asgi(), path, headers=ORIGIN)
    socket.scope["user"] = user
    socket.scope["url_route"] = {"kwargs": dict(zip(("symbol", "expiry"), path.split("/")[4:6], strict=True))}
    return socket


async def send_chain(expiry: dt.date, figures: dict) -> None:
    group = chain_group("NIFTY", expiry)
    payload = json.dumps({"type": "chain", "group": group, "chain": figures})
    await get_channel_layer().group_send(group, {"type": CHAIN_ANALYTICS_MESSAGE, "group": group, "json": payload})


async def next_message_with(socket: WebsocketCommunicator, element_id: str) -> dict[str, tuple[str, str]]:
    """The elements of the next message holding #element_id (the clock and indicator come between);
    the charts' data element decoded."""
    for _ in range(40):
        message = await socket.receive_from(timeout=5)
        if f'id="{element_id}"' in message:
            found = elements(message)
            data = re.search(r'<script type="application/json" id="chain-charts-data"[^>]*>([^<]*)</script>', message)
            return found | ({"chain-charts-data": json.loads(data.group(1))} if data else {})
    raise AssertionError(f"no message with #{element_id}")


@pytest.mark.asyncio
async def test_an_anonymous_chain_socket_is_closed_with_4401():
    socket = chain_socket("/ws/ui/chain/NIFTY/20261124/", None)
    assert (await socket.connect())[0]
    assert elements(await socket.receive_from(timeout=5))["conn"][1] == "Signed out"
    closed = await socket.receive_output(timeout=5)
    assert (closed["type"], closed["code"]) == ("websocket.close", UNAUTHENTICATED_CLOSE_CODE)


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/ws/ui/chain/NOPE/20261124/", "/ws/ui/chain/NIFTY/2026-11-24/"])
async def test_a_socket_for_no_such_chain_is_closed_with_4404(socket_market, path):
    socket = chain_socket(path, User(username="alice", pk=1))
    assert (await socket.connect())[0]
    closed = await socket.receive_output(timeout=5)
    assert (closed["type"], closed["code"]) == ("websocket.close", PAGE_UNAVAILABLE_CLOSE_CODE)


@pytest.mark.asyncio
async def test_a_socket_draws_the_latest_figures_at_once_without_waiting_for_a_refresh(socket_market):
    expiry = socket_market
    await sync_to_async(redis.Redis.from_url(settings.REDIS_URL).set)(
        chain_key("NIFTY", expiry, "analytics"), json.dumps(chain(ce_ltp_24000=131.0))
    )
    socket = chain_socket(f"/ws/ui/chain/NIFTY/{expiry:%Y%m%d}/?strikes=2", User(username="alice", pk=1))
    assert (await socket.connect())[0]
    first = await next_message_with(socket, "chain-rows")
    assert first["ce-24000-ltp"][1] == "131.00" and first["hdr-spot"][1] == "24,012.35"
    await socket.disconnect()


@pytest.mark.asyncio
async def test_the_socket_draws_the_table_then_sends_only_changed_cells(socket_market):
    expiry = socket_market
    socket = chain_socket(f"/ws/ui/chain/NIFTY/{expiry:%Y%m%d}/?strikes=2", User(username="alice", pk=1))
    assert (await socket.connect())[0]
    assert "market-clock" in elements(await socket.receive_from(timeout=5))  # joined: the heartbeat comes after
    await send_chain(expiry, chain())
    first = await next_message_with(socket, "chain-rows")
    assert first["ce-24000-ltp"][1] == "120.50" and first["hdr-pcr"][1] == "1.04"

    await send_chain(expiry, chain(ce_ltp_24000=125.0))
    moved = await next_message_with(socket, "ce-24000-ltp")
    assert moved["ce-24000-ltp"] == (' hx-swap-oob="true" class="itm up"', "125.00")
    assert {key for key in moved if key.startswith(("ce-", "pe-", "hdr-"))} == {
        "ce-24000-ltp",
        "ce-24000-bid",
        "ce-24000-ask",
    }
    charts = await next_message_with(socket, "chain-charts-data")
    assert charts["chain-charts-data"]["strikes"] == STRIKES
    await socket.disconnect()
