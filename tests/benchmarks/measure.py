"""One database's measurements, run by tests/benchmarks/__main__.py in its own process.

Prints one JSON line. Times are wall-clock medians where a figure is repeated.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trading_site.settings")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from django.test import Client  # noqa: E402

from instruments import services  # noqa: E402
from instruments.master import parse_master  # noqa: E402
from instruments.models import Instrument  # noqa: E402
from tests.benchmarks.api import measure_instrument_api  # noqa: E402
from trading_site import clock  # noqa: E402

REFERENCE_ROWS = 20_000
ADMIN_SMALL_ROWS = 1_000


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def median_ms(action, repeats: int = 7) -> float:
    action()  # warm caches and connections
    return statistics.median(timed(action) for _ in range(repeats)) * 1000


def orm_reference(text: str) -> float:
    """What the straightforward Django code would do: parse, then bulk_create with update_conflicts."""
    rows = parse_master(text).rows[:REFERENCE_ROWS]
    Instrument.objects.all().delete()

    def load() -> None:
        now = clock.now()
        with transaction.atomic():
            Instrument.objects.bulk_create(
                [Instrument(**{field: getattr(row, field) for field in row.__slots__}, updated_at=now) for row in rows],
                update_conflicts=True,
                unique_fields=["exchange", "tradingsymbol"],
                update_fields=["instrument_token", "lot_size", "expiry", "strike", "updated_at"],
                batch_size=2000,
            )

    seconds = timed(load)
    Instrument.objects.all().delete()
    return len(rows) / seconds


def admin_list_ms(client: Client, query: str = "") -> float:
    return median_ms(lambda: client.get(f"/admin/instruments/instrument/{query}"))


def main(master_path: str) -> None:
    call_command("migrate", verbosity=0)
    text = Path(master_path).read_text()
    rows = len(text.splitlines()) - 1

    reference_rows_per_s = orm_reference(text)
    first = timed(lambda: services.instrument_sync_from_text(text=text))
    assert Instrument.objects.count() == rows, "the benchmark master must load without bad rows"
    rerun = timed(lambda: services.instrument_sync_from_text(text=text))

    staff = get_user_model().objects.create_superuser("bench", password="bench-password")
    client = Client()
    client.force_login(staff)
    large_ms = admin_list_ms(client)
    search_ms = admin_list_ms(client, "?q=STOCK01")

    # The REST API as an ordinary user (no staff rights), beside a naive endpoint on the same rows.
    api_user = get_user_model().objects.create_user("bench-api", password="bench-password")
    api_client = Client()
    api_client.force_login(api_user)
    api_figures = measure_instrument_api(api_client)

    keep = list(Instrument.objects.order_by("pk").values_list("pk", flat=True)[:ADMIN_SMALL_ROWS])
    Instrument.objects.exclude(pk__in=keep).delete()
    small_ms = admin_list_ms(client)

    print(
        json.dumps(
            {
                "first_load_s": first,
                "first_load_rows_per_s": rows / first,
                "rerun_s": rerun,
                "rerun_rows_per_s": rows / rerun,
                "reference_rows": REFERENCE_ROWS,
                "reference_rows_per_s": reference_rows_per_s,
                "admin_list_ms": large_ms,
                "admin_search_ms": search_ms,
                "admin_list_small_ms": small_ms,
                "admin_small_rows": ADMIN_SMALL_ROWS,
                **api_figures,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
