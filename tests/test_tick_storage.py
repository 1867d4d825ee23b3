"""Tick storage: what the feed submits is what the Tick table holds, through backlog and outages."""

from __future__ import annotations

import datetime as dt
import logging
import time
from decimal import Decimal
from types import SimpleNamespace

import numpy as np
import pytest
from django.db import connection, connections
from django.db.backends.sqlite3.base import DatabaseWrapper

from marketdata.feed.storage import BIGINT, COLUMNS, PRICE, SMALLINT, TickWriter, tick_rows, tick_values, write_rows
from marketdata.models import Tick
from trading_site.clock import frozen_clock

UTC = dt.UTC
RECEIVED_AT = 1_767_245_400.123456  # 2026-01-01 05:30:00.123456 UTC, 11:00 IST
NAMES = [name for name, _ in COLUMNS]

# Columns of a parsed TickBatch, with the dtypes the parser gives them.
FLOATS = ("last_price", "average_traded_price", "open", "high", "low", "close")
INTS = (
    "last_traded_quantity",
    "volume_traded",
    "total_buy_quantity",
    "total_sell_quantity",
    "oi",
    "oi_day_high",
    "oi_day_low",
    "last_trade_time",
    "exchange_timestamp",
)


def batch(*ticks: dict) -> dict[str, np.ndarray]:
    """A TickBatch-shaped dict of arrays; each tick names its non-zero fields. `bid`/`ask` are
    (price, quantity) at depth level 0; the deeper levels get prices storage must not pick."""
    columns = {
        "instrument_token": np.array([tick["instrument_token"] for tick in ticks], dtype=np.int64),
        "mode": np.array([tick.get("mode", 2) for tick in ticks], dtype=np.uint8),
        **{name: np.array([tick.get(name, 0.0) for tick in ticks], dtype=np.float64) for name in FLOATS},
        **{name: np.array([tick.get(name, 0) for tick in ticks], dtype=np.int64) for name in INTS},
    }
    for side in ("buy", "sell"):
        level_zero = [tick.get("bid" if side == "buy" else "ask", (0.0, 0)) for tick in ticks]
        prices = np.array([[price + 1000.0 * (level + 1) for level in range(5)] for price, _ in level_zero])
        quantities = np.array([[quantity + 7 * (level + 1) for level in range(5)] for _, quantity in level_zero])
        prices[:, 0] = [price for price, _ in level_zero]
        quantities[:, 0] = [quantity for _, quantity in level_zero]
        columns[f"depth_{side}_price"] = prices.astype(np.float64)
        columns[f"depth_{side}_quantity"] = quantities.astype(np.int64)
    return columns


def stored(tick: dict, *, received: dt.datetime) -> dict:
    """The Tick row expected for `tick`."""
    prices = {name: Decimal(str(tick.get(name, 0))).quantize(Decimal("0.0001")) for name in FLOATS}
    bid_price, bid_quantity = tick.get("bid", (0, 0))
    ask_price, ask_quantity = tick.get("ask", (0, 0))
    seconds = {name: tick.get(name, 0) for name in ("exchange_timestamp", "last_trade_time")}
    return {
        "instrument_token": tick["instrument_token"],
        "mode": tick.get("mode", 2),
        **prices,
        **{name: tick.get(name, 0) for name in INTS if name not in seconds},
        "exchange_timestamp": dt.datetime.fromtimestamp(seconds["exchange_timestamp"], UTC)
        if seconds["exchange_timestamp"]
        else received,
        "last_trade_time": dt.datetime.fromtimestamp(seconds["last_trade_time"], UTC)
        if seconds["last_trade_time"]
        else None,
        "bid_price": Decimal(str(bid_price)).quantize(Decimal("0.0001")),
        "bid_quantity": bid_quantity,
        "ask_price": Decimal(str(ask_price)).quantize(Decimal("0.0001")),
        "ask_quantity": ask_quantity,
    }


def table_rows(using: str = "default") -> list[dict]:
    return list(Tick.objects.using(using).order_by("id").values(*NAMES))


NIFTY_SPOT = {"instrument_token": 256265, "mode": 0, "last_price": 26012.35}  # no timestamps: an ltp packet
NIFTY_CALL = {
    "instrument_token": 12_345_678,
    "last_price": 123.45,
    "average_traded_price": 121.987654,  # rounds to 121.9877
    "open": 99_999_999_999.9999,  # 11 integer digits, 4 decimals: within DECIMAL(16, 4) and float precision
    "high": 0.05,
    "low": 0.0001,
    "close": -1.25,  # prices can go negative (crude oil, 2020)
    "last_traded_quantity": 75,
    "volume_traded": 2**40,
    "total_buy_quantity": 1_500_000,
    "total_sell_quantity": 1_499_925,
    "oi": 9_876_543,
    "oi_day_high": 9_900_000,
    "oi_day_low": 9_000_000,
    "last_trade_time": 1_767_245_399,
    "exchange_timestamp": 1_767_245_400,
    "bid": (123.40, 150),
    "ask": (123.55, 300),
}
BANKNIFTY_PUT = {
    "instrument_token": 87_654_321,
    "mode": 1,
    "last_price": 410.0,
    "exchange_timestamp": 1_767_245_401,
    "bid": (409.95, 30),
    "ask": (410.05, 45),
}


@pytest.fixture
def writers():
    """Writers made by a test are stopped at its end, so no thread outlives its database."""
    made: list[TickWriter] = []

    def make(**options) -> TickWriter:
        made.append(TickWriter(**options))
        return made[-1]

    yield make
    for writer in made:
        writer.stop(timeout=5)


# -- the row builder ----------------------------------------------------------------------
def test_rows_round_prices_to_four_decimals_take_depth_level_zero_and_fill_absent_times():
    parsed = SimpleNamespace(**batch(NIFTY_SPOT, NIFTY_CALL))  # columns as attributes, like a TickBatch
    rows = tick_rows(parsed, received_at=RECEIVED_AT)
    values = [dict(zip(NAMES, row, strict=True)) for row in tick_values(rows)]

    received = dt.datetime(2026, 1, 1, 5, 30, 0, 123456, tzinfo=UTC)
    assert values == [stored(NIFTY_SPOT, received=received), stored(NIFTY_CALL, received=received)]
    assert values[0]["last_price"] == Decimal("26012.35")
    assert values[1]["average_traded_price"] == Decimal("121.9877")
    assert values[1]["bid_price"] == Decimal("123.4") and values[1]["ask_quantity"] == 300
    assert values[1]["exchange_timestamp"] == dt.datetime(2026, 1, 1, 5, 30, tzinfo=UTC)


def test_rows_leave_out_ticks_whose_prices_the_table_cannot_hold():
    ticks = [
        {**BANKNIFTY_PUT, "instrument_token": 1},
        {**BANKNIFTY_PUT, "instrument_token": 2, "last_price": float("nan")},
        {**BANKNIFTY_PUT, "instrument_token": 3, "high": float("inf")},
        {**BANKNIFTY_PUT, "instrument_token": 4, "ask": (1e12, 1)},  # 13 integer digits
        {**BANKNIFTY_PUT, "instrument_token": -5},
        {**BANKNIFTY_PUT, "instrument_token": 6, "last_trade_time": 2**40},  # microseconds would overflow
        {**BANKNIFTY_PUT, "instrument_token": 7},
    ]
    rows = tick_rows(batch(*ticks), received_at=RECEIVED_AT)

    assert rows["instrument_token"].tolist() == [1, 7]


def test_columns_are_every_tick_field_with_the_types_binary_copy_sends():
    fields = [field for field in Tick._meta.concrete_fields if field.name != "id"]
    assert [field.name for field in fields] == NAMES
    wire_types = {BIGINT: "bigint", SMALLINT: "smallint", PRICE: "numeric(16, 4)"}
    for name, kind in COLUMNS:
        expected = wire_types.get(kind, "timestamp with time zone")
        assert Tick._meta.get_field(name).db_type(connection) == expected, name


# -- the writer on PostgreSQL ----------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_every_selected_tick_is_stored_exactly_and_masked_out_ones_are_not(writers):
    writer = writers(flush_interval=0.05)
    writer.start()
    first = [NIFTY_SPOT, {**NIFTY_CALL, "instrument_token": 111}, NIFTY_CALL]
    second = [BANKNIFTY_PUT, {**NIFTY_SPOT, "instrument_token": 222}]
    accepted = [
        writer.submit(batch(*first), mask=np.array([True, False, True]), received_at=RECEIVED_AT),
        writer.submit(batch(*second), received_at=RECEIVED_AT),
    ]
    pinned = dt.datetime(2026, 1, 2, 9, 15, 30, 250000, tzinfo=UTC)
    with frozen_clock(pinned):  # without received_at the writer reads the clock
        accepted.append(writer.submit(batch({**NIFTY_SPOT, "instrument_token": 333}), mask=np.array([True])))
    accepted.append(writer.submit(batch(BANKNIFTY_PUT), mask=np.array([False])))
    status = writer.stop()

    received = dt.datetime.fromtimestamp(RECEIVED_AT, UTC)
    assert accepted == [2, 2, 1, 0]
    assert table_rows() == [
        stored(NIFTY_SPOT, received=received),
        stored(NIFTY_CALL, received=received),
        stored(BANKNIFTY_PUT, received=received),
        stored({**NIFTY_SPOT, "instrument_token": 222}, received=received),
        stored({**NIFTY_SPOT, "instrument_token": 333}, received=pinned),
    ]
    assert (status.queued, status.written, status.dropped, status.last_error) == (0, 5, 0, None)


@pytest.mark.django_db(transaction=True)
def test_stop_writes_the_backlog_submitted_just_before_it(writers):
    # Batches of 1000 rows and a timer that never fires: only stop() gets the tail written.
    writer = writers(batch_rows=1000, flush_interval=3600)
    writer.start()
    ticks = [{**BANKNIFTY_PUT, "instrument_token": token, "volume_traded": token * 3} for token in range(1, 2501)]
    columns = batch(*ticks)
    for start in range(0, 2500, 500):
        writer.submit({name: values[start : start + 500] for name, values in columns.items()}, received_at=RECEIVED_AT)
    status = writer.stop()

    assert (status.queued, status.written, status.batches, status.dropped) == (0, 2500, 3, 0)
    stored_rows = list(Tick.objects.order_by("id").values_list("instrument_token", "volume_traded"))
    assert stored_rows == [(token, token * 3) for token in range(1, 2501)]


@pytest.mark.django_db(transaction=True)
def test_flush_returns_once_everything_queued_is_committed(writers):
    writer = writers(batch_rows=100_000, flush_interval=3600)
    writer.start()
    writer.submit(batch(NIFTY_SPOT, BANKNIFTY_PUT), received_at=RECEIVED_AT)

    assert writer.flush(timeout=10) is True
    assert Tick.objects.count() == 2
    assert (writer.status.queued, writer.status.written, writer.status.batches) == (0, 2, 1)


@pytest.mark.django_db(transaction=True)
def test_ticks_beyond_the_backlog_bound_are_counted_as_dropped_and_the_rest_written(writers, caplog):
    writer = writers(max_backlog_rows=10)  # not started: nothing drains the queue yet
    columns = batch(*({**BANKNIFTY_PUT, "instrument_token": token} for token in range(1, 7)))

    with caplog.at_level(logging.WARNING, logger="marketdata.feed.storage"):
        accepted = [writer.submit(columns, received_at=RECEIVED_AT) for _ in range(3)]
    assert accepted == [6, 4, 0]
    assert (writer.status.queued, writer.status.dropped) == (10, 8)
    drop_warnings = [record for record in caplog.records if "dropped" in record.getMessage()]
    assert len(drop_warnings) == 1  # once a minute, not once per frame

    writer.start()
    status = writer.stop()
    assert (status.written, status.dropped, status.queued) == (10, 8, 0)
    assert list(Tick.objects.order_by("id").values_list("instrument_token", flat=True)) == [
        1,
        2,
        3,
        4,
        5,
        6,
        1,
        2,
        3,
        4,
    ]


@pytest.mark.django_db(transaction=True)
def test_a_database_error_is_recorded_and_the_ticks_are_written_after_recovery(writers):
    table = connection.ops.quote_name(Tick._meta.db_table)
    writer = writers(flush_interval=0.05, retry_delay=0.05, max_retry_delay=0.2)
    columns = batch(*({**NIFTY_CALL, "instrument_token": token} for token in range(1, 101)))
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO tick_away")
    try:
        writer.start()
        writer.submit(columns, received_at=RECEIVED_AT)
        deadline = time.monotonic() + 10
        while writer.status.last_error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        failing = writer.status
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE tick_away RENAME TO {table}")
    status = writer.stop()

    assert "marketdata_tick" in failing.last_error and "does not exist" in failing.last_error
    assert (failing.queued, failing.written, failing.dropped) == (100, 0, 0)
    assert (status.queued, status.written, status.dropped) == (0, 100, 0)
    assert list(Tick.objects.order_by("id").values_list("instrument_token", flat=True)) == list(range(1, 101))
    assert Tick.objects.filter(last_price=Decimal("123.45"), open=Decimal("99999999999.9999")).count() == 100


# -- other databases: executemany ---------------------------------------------------------------
@pytest.fixture
def sqlite_alias():
    """An in-memory SQLite database with the Tick table, as a second alias for the test's length."""
    alias = "tick_storage_sqlite"
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    # configure_settings fills in the defaults Django gives every database (it insists on a "default").
    settings = connections.configure_settings({"default": sqlite, alias: sqlite})[alias]
    sqlite_connection = DatabaseWrapper(settings, alias)
    # Connect before registering: Django's test case refuses new connections to aliases it was not told of.
    sqlite_connection.ensure_connection()
    connections.settings[alias] = settings
    connections[alias] = sqlite_connection
    with sqlite_connection.schema_editor() as editor:
        editor.create_model(Tick)
    yield alias
    sqlite_connection.close()
    del connections[alias]
    del connections.settings[alias]


@pytest.mark.django_db
def test_sqlite_stores_the_same_values_through_executemany(sqlite_alias):
    rows = tick_rows(batch(NIFTY_SPOT, NIFTY_CALL, BANKNIFTY_PUT), received_at=RECEIVED_AT)
    write_rows(rows, using=sqlite_alias)

    received = dt.datetime.fromtimestamp(RECEIVED_AT, UTC)
    assert connections[sqlite_alias].vendor == "sqlite"
    assert table_rows(sqlite_alias) == [
        stored(tick, received=received) for tick in (NIFTY_SPOT, NIFTY_CALL, BANKNIFTY_PUT)
    ]


@pytest.mark.django_db(transaction=True)
def test_a_batch_the_database_refuses_for_its_data_is_dropped_and_does_not_block_the_next(writers):
    table = connection.ops.quote_name(Tick._meta.db_table)
    writer = writers(flush_interval=3600, retry_delay=0.05)
    writer.start()
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT tick_storage_test CHECK (instrument_token <> 13)")
    try:
        writer.submit(batch(*({**BANKNIFTY_PUT, "instrument_token": token} for token in (11, 12, 13))))
        writer.flush(timeout=10)
        writer.submit(batch(*({**BANKNIFTY_PUT, "instrument_token": token} for token in (21, 22))))
        writer.flush(timeout=10)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT tick_storage_test")
    status = writer.stop()

    assert "tick_storage_test" in status.last_error
    assert (status.queued, status.written, status.dropped, status.batches) == (0, 2, 3, 1)
    assert list(Tick.objects.order_by("id").values_list("instrument_token", flat=True)) == [21, 22]


@pytest.mark.django_db(transaction=True)
def test_ticks_survive_the_server_dropping_the_writers_connection(writers):
    writer = writers(flush_interval=3600, retry_delay=0.05)
    writer.start()
    writer.submit(batch({**BANKNIFTY_PUT, "instrument_token": 1}), received_at=RECEIVED_AT)
    assert writer.flush(timeout=10)
    with connection.cursor() as cursor:  # what a database restart does to the writer's session
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'tick-writer'"
        )
        assert cursor.fetchall() == [(True,)]
    writer.submit(batch({**BANKNIFTY_PUT, "instrument_token": 2}), received_at=RECEIVED_AT)
    assert writer.flush(timeout=10)
    status = writer.stop()

    assert status.last_error is not None and "OperationalError" in status.last_error
    assert (status.written, status.dropped, status.batches) == (2, 0, 2)
    assert list(Tick.objects.order_by("id").values_list("instrument_token", flat=True)) == [1, 2]
