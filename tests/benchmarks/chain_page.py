"""The option chain page at 400 contracts: its first render on the server, and what its socket sends.

`python -m tests.benchmarks.chain_page` (make bench runs it in a process of its own, DATABASE_URL on
the bench database) migrates, loads the demo desk, and writes a 400-contract NIFTY chain (the one of
tests.benchmarks.chain, through compute_chain and figures_to_dict) to Redis as the refresh task
does. Then:

- first render: GET /chain/NIFTY/?strikes=0 (every strike) through Django's test client, logged in:
  session, middleware, the view, Redis, the snapshot and candle queries and the template. Reference,
  in the same run: the same table drawn the obvious way, a Django template looping over strikes
  and columns with its own filters.
- the socket: the message one refresh sends after a small move of the market (the spot 5 points
  up, a third of the contracts a tick away: every Greek moves), to a page showing ATM ± 10 and to
  one showing all 400 contracts, against the whole table; and the time a socket takes to work
  that message out.

Redis: BENCH_REDIS_URL (default database 11 of the local server), emptied first. Prints JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trading_site.settings")

import django

django.setup()

import numpy as np  # noqa: E402
import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.template import Context, Template  # noqa: E402
from django.test import Client  # noqa: E402

from instruments.models import Underlying  # noqa: E402
from marketdata import selectors  # noqa: E402
from marketdata.analytics.chain import compute_chain  # noqa: E402
from marketdata.analytics.chain_json import figures_to_dict  # noqa: E402
from marketdata.fragments.chain import ChainPageState, build_view  # noqa: E402
from marketdata.groups import chain_key  # noqa: E402
from tests.benchmarks.chain import nifty_chain  # noqa: E402
from tests.benchmarks.demo_desk import load_demo_desk  # noqa: E402

TARGET_RENDER_MS = 300
RENDERS = 30
COLUMNS = (
    "ltp",
    "change_pct",
    "bid",
    "ask",
    "volume",
    "oi",
    "oi_change",
    "iv",
    "delta",
    "gamma",
    "theta",
    "vega",
    "buildup",
)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="desk-bench-page-") as scratch:
        load_demo_desk(Path(scratch))
        underlying = Underlying.objects.get(symbol="NIFTY")
        expiry = selectors.nearest_option_expiry(underlying=underlying)
        chain = analytics(np.random.default_rng(2026), expiry)
        redis.Redis.from_url(settings.REDIS_URL).set(chain_key("NIFTY", expiry, "analytics"), json.dumps(chain))
        render = first_render_ms(len(chain["strikes"]))
        reference = reference_render_ms(chain)
        socket = socket_message(chain, expiry)
        redis.Redis.from_url(settings.REDIS_URL).flushdb()
    print(
        json.dumps(
            {
                "contracts": 2 * len(chain["strikes"]),
                "render_median_ms": render[0],
                "render_p95_ms": render[1],
                "target_render_ms": TARGET_RENDER_MS,
                "reference_template_median_ms": reference,
                **socket,
            }
        )
    )


def analytics(rng: np.random.Generator, expiry, *, moved: bool = False) -> dict:
    """The refresh task's JSON for tests.benchmarks.chain's 400 contracts. `moved`: half a second
    later, the spot 5 points up and a third of the contracts traded a tick away, quotes with them."""
    quotes = nifty_chain(rng)
    if moved:
        ticked = np.random.default_rng(7).random(quotes.strikes.size) < 1 / 3
        sides = {
            name: dataclasses.replace(
                side,
                **{field: getattr(side, field) + np.where(ticked, 0.05, 0.0) for field in ("last_price", "bid", "ask")},
            )
            for name, side in (("ce", quotes.ce), ("pe", quotes.pe))
        }
        quotes = dataclasses.replace(quotes, spot=quotes.spot + 5.0, **sides)
    return {
        "underlying": "NIFTY",
        "expiry": expiry.isoformat(),
        "as_of": "2026-11-23T10:31:02+05:30",
        **figures_to_dict(compute_chain(quotes)),
    }


def first_render_ms(strikes: int) -> tuple[float, float]:
    client = Client()
    trader, _ = User.objects.get_or_create(username="bench-trader")
    client.force_login(trader)
    times = []
    for attempt in range(RENDERS + 3):
        started = time.perf_counter()
        response = client.get("/chain/NIFTY/", {"strikes": 0})
        elapsed = (time.perf_counter() - started) * 1000
        body = response.content.decode()
        if response.status_code != 200 or body.count('<tr id="row-') != strikes:
            raise SystemExit(f"the chain page did not show {strikes} strikes ({response.status_code})")
        if attempt >= 3:  # the first renders load templates and warm caches
            times.append(elapsed)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def reference_render_ms(chain: dict) -> float:
    """The same cells drawn the obvious way: a template looping over strikes and columns."""
    reference = Template(
        '<table><tbody>{% for row in rows %}<tr id="row-{{ row.strike }}">'
        '{% for value in row.ce %}<td id="ce-{{ row.strike }}-{{ forloop.counter }}">'
        '{{ value|floatformat:"2g"|default:"—" }}</td>{% endfor %}<th>{{ row.strike|floatformat:0 }}</th>'
        '{% for value in row.pe %}<td id="pe-{{ row.strike }}-{{ forloop.counter }}">'
        '{{ value|floatformat:"2g"|default:"—" }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>'
    )
    rows = [
        {"strike": row["strike"], "ce": [row["ce"].get(c) for c in COLUMNS], "pe": [row["pe"].get(c) for c in COLUMNS]}
        for row in chain["strikes"]
    ]
    context = Context({"rows": rows})
    times = []
    for _ in range(7):
        started = time.perf_counter()
        html = reference.render(context)
        times.append((time.perf_counter() - started) * 1000)
    if html.count("<tr") != len(rows):
        raise SystemExit("the reference template did not draw every strike")
    return statistics.median(times)


def socket_message(chain: dict, expiry) -> dict:
    """What one refresh sends a page showing ATM ± 10 (the default) and one showing every strike."""
    before = build_view(chain)
    after = build_view(analytics(np.random.default_rng(2026), expiry, moved=True))
    figures = {"whole_table_bytes": len("".join(ChainPageState(strikes_each_side=0).fragments(before)).encode())}
    for label, each_side in (("window", 10), ("all", 0)):
        times, message = [], ""
        for _ in range(7):
            state = ChainPageState(strikes_each_side=each_side)
            state.fragments(before)
            started = time.perf_counter()
            message = "".join(state.fragments(after))
            times.append((time.perf_counter() - started) * 1000)
        figures |= {
            f"{label}_contracts": 2 * len(before.window(each_side)),
            f"{label}_update_bytes": len(message.encode()),
            f"{label}_update_cells": message.count("<td "),
            f"{label}_diff_median_ms": statistics.median(times),
        }
    return figures


if __name__ == "__main__":
    main()
