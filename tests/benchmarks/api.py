"""The instruments API at 100,000 instruments, timed through Django's test Client as a logged-in user.

The reference is what a naive endpoint costs on the same rows in the same run: a plain DRF
ModelSerializer with every field over `Instrument.objects.all()`, the default pagination,
django-filter's automatic exact filters and DRF's SearchFilter (`icontains`). It is mounted
only here, by this module's URLconf (the project's URLs plus that one view).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from django.db import connection
from django.test import Client, override_settings
from django.urls import path
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import generics, serializers
from rest_framework.filters import SearchFilter

from instruments.models import Instrument
from trading_site.urls import urlpatterns as project_urlpatterns

NAIVE_PATH = "/bench/naive-instruments/"
# (ours, the naive endpoint's): a stock and the first weekly of the synthetic master
# (tests/master_factory.py), a big slice of it, and a prefix matching 100 of its stocks.
QUERIES = {
    "filtered": ("underlying=STOCK0001&expiry=2026-11-24", "name=STOCK0001&expiry=2026-11-24"),
    "type_filtered": ("exchange=NFO&instrument_type=CE", "exchange=NFO&instrument_type=CE"),
    "search": ("search=stock01", "search=stock01"),
}


class NaiveInstrumentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Instrument
        fields = "__all__"


class NaiveInstrumentList(generics.ListAPIView):
    queryset = Instrument.objects.all()
    serializer_class = NaiveInstrumentSerializer
    filter_backends = [DjangoFilterBackend, SearchFilter]
    filterset_fields = ["exchange", "instrument_type", "name", "expiry"]
    search_fields = ["tradingsymbol", "name"]


urlpatterns = [path(NAIVE_PATH.strip("/") + "/", NaiveInstrumentList.as_view()), *project_urlpatterns]


def median_ms(action: Callable[[], object], repeats: int = 7) -> float:
    action()  # warm caches and connections
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def get_ok(client: Client, url: str) -> Callable[[], object]:
    def get() -> None:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
        assert response.json()["results"], f"{url} found nothing: the benchmark would time an empty page"

    return get


def measure_instrument_api(client: Client) -> dict:
    """Median milliseconds per request, ours and the naive endpoint's; `client` is logged in."""
    if connection.vendor == "postgresql":
        # Autovacuum would have analysed the table within a minute of a load like this one; a
        # benchmark server may run with it off, and plans without statistics are not what production
        # sees. (SQLite has no autovacuum of statistics: nothing to do.)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE instruments_instrument")
    with override_settings(ROOT_URLCONF=__name__):
        figures = {
            "api_list_ms": median_ms(get_ok(client, "/api/v1/instruments/")),
            "api_naive_list_ms": median_ms(get_ok(client, NAIVE_PATH)),
            # The part of a page spent counting the matching rows for `count`: the active ones here.
            "api_count_ms": median_ms(lambda: Instrument.objects.filter(active=True).count()),
        }
        for name, (ours, naive) in QUERIES.items():
            figures[f"api_{name}_ms"] = median_ms(get_ok(client, f"/api/v1/instruments/?{ours}"))
            figures[f"api_naive_{name}_ms"] = median_ms(get_ok(client, f"{NAIVE_PATH}?{naive}"))
            figures[f"api_{name}_query"] = ours
    return figures
