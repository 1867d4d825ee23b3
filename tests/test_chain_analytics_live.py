"""Chain analytics on a real Celery worker: the feed's latest state in Redis in, figures out to Redis,
the chain's Channels group and ChainSnapshot rows. Real Redis, real channel layer, real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import redis
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from celery.contrib.testing.worker import start_worker
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management import call_command
from django.db import connections

from instruments.models import Underlying
from marketdata import selectors, services
from marketdata.analytics.black_scholes import price
from marketdata.feed.chains import chain_layouts
from marketdata.feed.publisher import Publisher
from marketdata.feed.state import FeedState
from marketdata.feed.universe import ChainContract, SubscriptionPlanner, UnderlyingUniverse
from marketdata.groups import chain_group, chain_key
from marketdata.kite import build_frame, parse_frame
from marketdata.models import ChainSnapshot
from marketdata.tasks import refresh_chain
from trading_site.celery import app
from trading_site.clock import IST
from trading_site.log_filters import FrequentTasksFilter

ROOT = Path(__file__).resolve().parent.parent
EXPIRY = dt.date(2026, 11, 24)
AT = dt.datetime(2026, 11, 23, 10, 15, 7, tzinfo=IST)
SPOT_TOKEN, SPOT, RATE, SIGMA = 256265, 26_010.0, 0.065, 0.14
STRIKES = (25_950, 26_000, 26_050)
# OI in units, as Kite sends it (lots x 75); volumes likewise.
CE_OI, PE_OI = (150_000, 300_000, 225_000), (450_000, 375_000, 150_000)
CE_VOLUME, PE_VOLUME = (1_000_000, 2_000_000, 1_000_000), (3_000_000, 2_000_000, 1_000_000)


def token_of(strike: int, kind: str) -> int:
    return 20_000_000 + strike * 2 + (kind == "PE")


def universe() -> UnderlyingUniverse:
    return UnderlyingUniverse(
        symbol="NIFTY",
        spot_token=SPOT_TOKEN,
        strike_step=50.0,
        strikes_each_side=5,
        expiries=(EXPIRY,),
        futures=(),
        options=tuple(
            ChainContract(token_of(k, kind), f"NIFTY26N24{k}{kind}", kind, float(k), EXPIRY, 75)
            for k in STRIKES
            for kind in ("CE", "PE")
        ),
        risk_free_rate=RATE,
        reference_spot=26_000.0,
    )


def years_at(at: dt.datetime) -> float:
    return (dt.datetime.combine(EXPIRY, dt.time(15, 30), tzinfo=IST) - at).total_seconds() / (365 * 86_400)


def chain_ticks(at: dt.datetime, *, ce_oi=CE_OI, bump: dict | None = None) -> list[dict]:
    """Every contract priced at one volatility, quoted 0.05 either side of its value."""
    ticks = [{"instrument_token": SPOT_TOKEN, "mode": "full", "last_price": SPOT, "exchange_timestamp": at}]
    for kind, ois, volumes in (("CE", ce_oi, CE_VOLUME), ("PE", PE_OI, PE_VOLUME)):
        values = price(SPOT, np.array(STRIKES, float), years_at(at), RATE, SIGMA, kind == "CE")
        for strike, value, oi, volume in zip(STRIKES, values.tolist(), ois, volumes, strict=True):
            value += (bump or {}).get((strike, kind), 0.0)
            ticks.append(
                {
                    "instrument_token": token_of(strike, kind),
                    "mode": "full",
                    "last_price": round(value, 2),
                    "volume_traded": volume,
                    "oi": oi,
                    "ohlc": {"open": 1.0, "high": 1.0, "low": 1.0, "close": round(value - 3, 2)},
                    "exchange_timestamp": at,
                    "depth": {
                        "buy": [{"quantity": 750, "price": round(value - 0.05, 2), "orders": 2}] * 5,
                        "sell": [{"quantity": 750, "price": round(value + 0.05, 2), "orders": 2}] * 5,
                    },
                }
            )
    return ticks


class FeedInRedis:
    """What run_feed leaves in Redis for this chain: its layout and the latest ticks (real publisher)."""

    def __init__(self) -> None:
        self.planner = SubscriptionPlanner([universe()])
        self.state = FeedState(capacity=32)
        self.state.add(self.planner.plan({"NIFTY": SPOT}).add)
        self.publisher = Publisher(state=self.state, group_send=self._nowhere)

    async def write(self, ticks: list[dict]) -> None:
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        self.publisher.redis = client
        layout = chain_layouts(self.planner)[("NIFTY", EXPIRY)]
        await client.set(chain_key("NIFTY", EXPIRY, "layout"), json.dumps(layout))
        self.state.apply(parse_frame(build_frame(ticks)))
        await self.publisher.publish_changes()
        await client.aclose()

    @staticmethod
    async def _nowhere(group: str, message: dict) -> None:
        pass


@pytest.fixture
def worker(transactional_db):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    Underlying.objects.create(symbol="NIFTY", strike_step=50)
    root_level = logging.root.level
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10) as running:
            yield running
    finally:
        logging.root.setLevel(root_level)


async def next_chain_message(layer, channel: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = await asyncio.wait_for(layer.receive(channel), timeout=max(deadline - time.monotonic(), 0.01))
        if message["type"] == "chain.analytics":
            return json.loads(message["json"])


async def snapshots_when(count: int, queryset, timeout: float = 10.0) -> list:
    """The snapshots once there are `count` (the task stores one just after it publishes)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await sync_to_async(list)(queryset.all())
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


def side(chain: dict, strike: int, kind: str) -> dict:
    return next(row for row in chain["strikes"] if row["strike"] == strike)[kind]


@pytest.mark.asyncio
async def test_a_refresh_publishes_the_chains_figures_and_stores_one_snapshot_a_minute(worker):
    feed = FeedInRedis()
    await feed.write(chain_ticks(AT))
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(chain_group("NIFTY", EXPIRY), channel)
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    await client.set(chain_key("NIFTY", EXPIRY, "pending"), "1")

    refresh_chain.delay("NIFTY", EXPIRY.isoformat())
    message = await next_chain_message(layer, channel)
    assert message["type"] == "chain" and message["group"] == "chain.NIFTY.20261124"
    chain = message["chain"]
    assert (chain["underlying"], chain["expiry"]) == ("NIFTY", "2026-11-24")
    assert dt.datetime.fromisoformat(chain["as_of"]) == AT
    assert await client.get(chain_key("NIFTY", EXPIRY, "pending")) is None  # the next may be queued
    assert json.loads(await client.get(chain_key("NIFTY", EXPIRY, "analytics"))) == chain

    summary = chain["summary"]
    # Every contract was priced at 14 %: each IV comes back, calls and puts alike.
    ivs = [side(chain, k, kind)["iv"] for k in STRIKES for kind in ("ce", "pe")]
    assert ivs == pytest.approx([14.0] * 6, abs=0.01)
    assert summary["atm_strike"] == 26_000 and summary["atm_iv"] == pytest.approx(14.0, abs=0.01)
    # PCR: PE OI 450k + 375k + 150k = 975k over CE OI 150k + 300k + 225k = 675k; volume 6M / 4M.
    assert summary["pcr_oi"] == pytest.approx(975 / 675, abs=1e-3)
    assert summary["pcr_volume"] == pytest.approx(1.5, abs=1e-3)
    # Payout to holders if NIFTY settles at 25,950: PE 375k x 50 + 150k x 100 = 33.75M; at 26,000:
    # CE 150k x 50 + PE 150k x 50 = 15M; at 26,050: CE 150k x 100 + 300k x 50 = 30M.
    assert summary["max_pain"] == 26_000
    assert (summary["call_wall"], summary["put_wall"]) == (26_000, 25_950)
    call = side(chain, 26_000, "ce")
    assert (call["token"], call["tradingsymbol"]) == (token_of(26_000, "CE"), "NIFTY26N2426000CE")
    assert 0.4 < call["delta"] < 0.6 and call["gamma"] > 0 and call["theta"] < 0 and call["vega"] > 0

    rows = await snapshots_when(1, ChainSnapshot.objects.values("taken_at", "pcr_oi", "max_pain", "atm_iv"))
    assert rows == [
        {
            "taken_at": dt.datetime(2026, 11, 23, 10, 15, tzinfo=IST),
            "pcr_oi": pytest.approx(975 / 675, abs=1e-3),
            "max_pain": 26_000.0,
            "atm_iv": pytest.approx(14.0, abs=0.01),
        }
    ]

    # Later in the same minute: CE 26,000 trades up with 30k more OI. No second snapshot.
    later = AT + dt.timedelta(seconds=20)
    await feed.write(chain_ticks(later, ce_oi=(150_000, 330_000, 225_000), bump={(26_000, "CE"): 5.0}))
    refresh_chain.delay("NIFTY", EXPIRY.isoformat())
    chain = (await next_chain_message(layer, channel))["chain"]
    call = side(chain, 26_000, "ce")
    # Against the OI first seen today (300k): +30k, 10 %; price up and OI up is long buildup.
    assert (call["oi_change"], call["oi_change_pct"]) == (30_000, pytest.approx(10.0))
    assert call["buildup"] == "long_buildup"
    assert side(chain, 26_050, "ce")["oi_change"] == 0
    assert await sync_to_async(ChainSnapshot.objects.count)() == 1

    # The next minute gets its own snapshot.
    await feed.write(chain_ticks(AT + dt.timedelta(minutes=1)))
    refresh_chain.delay("NIFTY", EXPIRY.isoformat())
    await next_chain_message(layer, channel)
    taken = await snapshots_when(2, ChainSnapshot.objects.values_list("taken_at", flat=True))
    assert taken == [dt.datetime(2026, 11, 23, 10, 15, tzinfo=IST), dt.datetime(2026, 11, 23, 10, 16, tzinfo=IST)]
    await client.aclose()
    await sync_to_async(connections.close_all)()


def test_a_chain_the_feed_never_streamed_is_a_quiet_no_op(db):
    """No layout in Redis: nothing computed or stored, and the marker cleared so the feed may ask again."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    Underlying.objects.create(symbol="NIFTY", strike_step=50)
    client.set(chain_key("NIFTY", dt.date(2026, 12, 29), "pending"), "1")
    result = refresh_chain.apply(args=["NIFTY", "2026-12-29"]).get()  # the task's body, in this process
    assert result is None and ChainSnapshot.objects.count() == 0
    assert client.get(chain_key("NIFTY", dt.date(2026, 12, 29), "pending")) is None
    assert client.get(chain_key("NIFTY", dt.date(2026, 12, 29), "analytics")) is None
    client.close()


@pytest.fixture
def demo(transactional_db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("load_demo", stdout=io.StringIO(), stderr=io.StringIO())
    Underlying.objects.exclude(symbol="NIFTY").update(enabled=False)
    return selectors.feed_universe()


@pytest.mark.asyncio
async def test_the_simulated_market_streams_chain_analytics_and_snapshots_accumulate(demo, subprocess_env, settings):
    """run_feed and a worker as `make run` has them: figures arrive while the chain ticks."""
    settings.CHAIN_SNAPSHOT_SECONDS = 1  # the embedded worker stores a snapshot a second
    nearest = demo[0].expiries[0]
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(chain_group("NIFTY", nearest), channel)
    root_level = logging.root.level
    feed = None
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            feed = subprocess.Popen(
                [sys.executable, "manage.py", "run_feed", "--source", "sim", "--no-store", "--chain-refresh-ms", "300"],
                cwd=ROOT,
                env=subprocess_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            chains = [(await next_chain_message(layer, channel, timeout=30))["chain"]]
            started = time.monotonic()
            while time.monotonic() - started < 3.0:
                chains.append((await next_chain_message(layer, channel))["chain"])
    finally:
        logging.root.setLevel(root_level)
        if feed is not None:
            feed.send_signal(signal.SIGTERM)
            _, stderr = feed.communicate(timeout=60)
            assert feed.returncode == 0, stderr[-2000:]

    # At most one refresh per 300 ms, and they keep coming while the market moves.
    assert 5 <= len(chains) <= 3.0 / 0.3 + 2
    latest = chains[-1]
    summary = latest["summary"]
    assert latest["expiry"] == nearest.isoformat() and len(latest["strikes"]) == 21
    assert 20_000 < summary["spot"] < 32_000 and summary["atm_strike"] % 50 == 0
    assert 5 < summary["atm_iv"] < 60  # the simulator's smile is around 10-20 % for NIFTY
    assert 0.1 < summary["pcr_oi"] < 10 and summary["max_pain"] in [row["strike"] for row in latest["strikes"]]
    assert len({c["as_of"] for c in chains}) > 2  # the figures follow the market
    snapshots = await snapshots_when(2, ChainSnapshot.objects.filter(expiry=nearest))
    assert len(snapshots) >= 2
    assert all(s.atm_iv == pytest.approx(s.summary["atm_iv"]) for s in snapshots)
    await sync_to_async(connections.close_all)()


def snapshot(taken_at: dt.datetime, pcr: float) -> ChainSnapshot:
    return ChainSnapshot.objects.create(
        underlying=Underlying.objects.get(symbol="NIFTY"), expiry=EXPIRY, taken_at=taken_at, pcr_oi=pcr
    )


def test_chain_history_is_the_days_series_oldest_first(db):
    Underlying.objects.create(symbol="NIFTY", strike_step=50)
    for minute, pcr in ((17, 1.3), (15, 1.1), (16, 1.2), (30, 1.9)):
        snapshot(dt.datetime(2026, 11, 23, 10, minute, tzinfo=IST), pcr)
    start, end = dt.datetime(2026, 11, 23, 10, 15, tzinfo=IST), dt.datetime(2026, 11, 23, 10, 30, tzinfo=IST)
    series = selectors.chain_history(symbol="NIFTY", expiry=EXPIRY, start=start, end=end)
    assert [(s.taken_at.astimezone(IST).minute, s.pcr_oi) for s in series] == [(15, 1.1), (16, 1.2), (17, 1.3)]
    assert selectors.chain_history(symbol="BANKNIFTY", expiry=EXPIRY, start=start, end=end).count() == 0
    before = selectors.chain_snapshot_before(symbol="NIFTY", expiry=EXPIRY, at=start + dt.timedelta(seconds=119))
    assert before.taken_at == start + dt.timedelta(minutes=1)


def test_the_daily_prune_keeps_the_retention_window(db, settings):
    Underlying.objects.create(symbol="NIFTY", strike_step=50)
    settings.CHAIN_SNAPSHOT_RETENTION_DAYS = 30
    now = dt.datetime(2026, 11, 23, 18, 0, tzinfo=IST)
    for days in (31, 30, 29, 1):
        snapshot(now - dt.timedelta(days=days, minutes=1), 1.0)
    assert services.chain_snapshots_prune(now=now) == 2
    assert ChainSnapshot.objects.count() == 2
    settings.CHAIN_SNAPSHOT_RETENTION_DAYS = 0  # keep everything
    assert services.chain_snapshots_prune(now=now + dt.timedelta(days=400)) == 0
    entry = settings.CELERY_BEAT_SCHEDULE["prune-chain-snapshots-daily"]
    assert entry["task"] in app.tasks and entry["schedule"].hour == {18}


def test_the_worker_log_leaves_out_each_chain_refresh_but_not_its_failures():
    """Twice a second per chain, Celery's received/succeeded lines would bury the rest of the log."""
    quiet = FrequentTasksFilter(["marketdata.tasks.refresh_chain"])

    def record(level: int, name: str) -> logging.LogRecord:
        fields = {"name": name, "id": "abc", "runtime": 0.01, "return_value": None}
        message = "Task %(name)s[%(id)s] succeeded"
        return logging.LogRecord("celery.app.trace", level, __file__, 1, message, fields, None)

    assert not quiet.filter(record(logging.INFO, "marketdata.tasks.refresh_chain"))
    assert quiet.filter(record(logging.ERROR, "marketdata.tasks.refresh_chain"))
    assert quiet.filter(record(logging.INFO, "instruments.tasks.sync_instruments_from_kite"))
    handlers = logging.getLogger().handlers
    configured = next(f for h in handlers for f in h.filters if isinstance(f, FrequentTasksFilter))
    assert configured.tasks == {"marketdata.tasks.refresh_chain"}


def test_the_admin_lists_snapshots_in_ist_and_never_edits_them(admin_client):
    Underlying.objects.create(symbol="NIFTY", strike_step=50)
    stored = snapshot(dt.datetime(2026, 11, 23, 10, 15, tzinfo=IST), 1.234)
    page = admin_client.get("/admin/marketdata/chainsnapshot/")
    assert page.status_code == 200
    assert "NIFTY" in page.text and "1.234" in page.text
    assert str(stored) == "NIFTY 2026-11-24 @ 2026-11-23 10:15"
    assert admin_client.get("/admin/marketdata/chainsnapshot/add/").status_code == 403
    form = admin_client.post(f"/admin/marketdata/chainsnapshot/{stored.pk}/change/", {"pcr_oi": 9})
    assert form.status_code == 403 and ChainSnapshot.objects.get().pcr_oi == 1.234
