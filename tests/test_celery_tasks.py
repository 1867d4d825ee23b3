"""Tasks run on a real Celery worker over the Redis broker, against PostgreSQL."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings as django_settings

from instruments.master import MASTER_COLUMNS
from instruments.models import BrokerAccount, Instrument
from instruments.tasks import sync_instruments_from_kite
from trading_site.celery import app
from trading_site.clock import IST

HEADER = ",".join(MASTER_COLUMNS)


@pytest.fixture
def worker(transactional_db):
    app.control.purge()
    root_level = logging.root.level  # the embedded worker sets its own log level on the root logger
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10) as running:
            yield running
    finally:
        logging.root.setLevel(root_level)


def test_the_daily_sync_runs_on_a_worker_through_the_data_account(worker, alice_kite_account, kite_server):
    account = alice_kite_account
    account.access_token = kite_server.kite.grant_access_token(account.api_key)
    account.access_token_expires_at = dt.datetime(2099, 1, 1, tzinfo=IST)
    account.is_data_account = True
    account.save()
    kite_server.kite.instruments_csv[None] = (
        f"{HEADER}\n256265,1001,NIFTY 50,NIFTY 50,0,,0,0,0,EQ,INDICES,NSE\n"
        "10191874,39812,NIFTY26NOV26000CE,NIFTY,0,2026-11-24,26000,0.05,65,CE,NFO-OPT,NFO\n"
    )
    result = sync_instruments_from_kite.delay().get(timeout=30)
    assert result == {"status": "synced", "created": 2, "updated": 0, "unchanged": 0, "deactivated": 0, "errors": 0}
    assert Instrument.objects.count() == 2

    # acks_late means a redelivery can run it twice: the second run must change nothing.
    again = sync_instruments_from_kite.delay().get(timeout=30)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)


def test_without_a_session_the_task_reports_why_it_skipped(worker, alice_kite_account):
    result = sync_instruments_from_kite.delay().get(timeout=30)
    assert result == {
        "status": "skipped",
        "reason": "No broker account is marked as the data account: mark one in the admin.",
    }
    assert BrokerAccount.objects.get().token_state == BrokerAccount.TokenState.MISSING


def test_beat_refreshes_the_master_at_0830_ist_on_weekdays():
    entry = django_settings.CELERY_BEAT_SCHEDULE["sync-instruments-daily"]
    assert entry["task"] in app.tasks
    schedule = entry["schedule"]
    assert (schedule.hour, schedule.minute, schedule.day_of_week) == ({8}, {30}, {1, 2, 3, 4, 5})
    assert app.conf.timezone == "Asia/Kolkata"
