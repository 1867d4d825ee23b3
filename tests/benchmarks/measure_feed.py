"""The feed's measurements, run by tests/benchmarks/__main__.py in a process of their own.

`python -m tests.benchmarks.measure_feed throughput` (parse, pipeline, storage, latency),
`... memory` (alone in a fresh process, so earlier work does not inflate its RSS), or
`... chain-latency` (tick to chain figures at a websocket client, through a Celery worker).
Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trading_site.settings")
django.setup()

from django.core.management import call_command  # noqa: E402

from tests.benchmarks.feed import measure_feed_memory, measure_pipeline  # noqa: E402
from tests.benchmarks.parse import measure_parse  # noqa: E402
from tests.benchmarks.storage import measure_tick_storage  # noqa: E402


def main(part: str) -> None:
    call_command("migrate", verbosity=0)
    if part == "memory":
        result = {"memory": measure_feed_memory()}
    elif part == "chain-latency":
        from tests.benchmarks.chain_latency import measure_chain_latency

        result = {"chain_latency": measure_chain_latency(os.environ["DATABASE_URL"])}
    else:
        result = {
            "parse": measure_parse(),
            "pipeline": measure_pipeline(),
            "storage": measure_tick_storage(),
        }
        try:
            from tests.benchmarks.latency import measure_tick_latency
        except ImportError:
            result["latency"] = None
        else:
            result["latency"] = measure_tick_latency(os.environ["DATABASE_URL"])
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
