"""The option chain page in Chromium under live updates for minutes: does its memory stay flat?

`python -m tests.benchmarks.chain_page_browser` (make bench runs it in a process of its own,
DATABASE_URL on the bench database) loads the demo desk with NIFTY streaming 100 strikes each side
(two expiries: 804 options), starts the real stack (daphne, `run_feed --source sim`, a Celery
worker: tests.browser.stack) and opens /chain/NIFTY/?strikes=0 (every streamed strike of the
nearest expiry: about 400 contracts) in Debian's Chromium. Every SAMPLE_SECONDS it collects
garbage and reads the page's JS heap and element count, and counts the socket messages the page
swapped and their size. The heap's level at the start (after a minute's warm-up) and at the end
is the least of three samples: a forced collection sometimes leaves garbage behind.

Reference, side by side in the same browser and time: the same page with its socket refused, so
it never updates: what a page's memory does on its own over the same minutes.

BENCH_BROWSER_MINUTES (default 10, the issue's ten minutes). Redis: BENCH_REDIS_URL (default
database 11). Prints JSON.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
os.environ["CHANNEL_LAYER_PREFIX"] = f"desk-bench-{os.getpid()}:channels"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trading_site.settings")

import django

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from instruments.models import Underlying  # noqa: E402
from tests.benchmarks.demo_desk import load_demo_desk  # noqa: E402
from tests.browser.chromium import CHROMIUM  # noqa: E402
from tests.browser.stack import Stack  # noqa: E402

MINUTES = float(os.environ.get("BENCH_BROWSER_MINUTES", "10"))
SAMPLE_SECONDS = 30
# The first minute warms V8 up (code compiled lazily, the charts' caches filled): growth is
# measured from the first samples after it.
WARM_UP_SECONDS = 60
# A forced collection still leaves some garbage now and then (one sample in several reads 20 %
# high): the heap's level is the least of a few samples, at the start and at the end.
LEVEL_SAMPLES = 3
STRIKES_EACH_SIDE = 100
TARGET_GROWTH_PERCENT = 10
PASSWORD = "bench-only-password"
# Counts what the page's script swapped (desk.js dispatches desk:swapped after each socket message).
COUNT_MESSAGES = """
window.__bench = { messages: 0, bytes: 0 };
document.addEventListener('htmx:wsBeforeMessage', e => {
  window.__bench.messages++;
  window.__bench.bytes += e.detail.message.length;
});
"""
SAMPLE = """() => ({
  heap: performance.memory.usedJSHeapSize,
  elements: document.getElementsByTagName('*').length,
  messages: (window.__bench || {}).messages || 0,
  bytes: (window.__bench || {}).bytes || 0,
})"""


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="desk-bench-browser-") as scratch:
        load_demo_desk(Path(scratch))
        Underlying.objects.exclude(symbol="NIFTY").update(enabled=False)
        Underlying.objects.filter(symbol="NIFTY").update(strikes_each_side=STRIKES_EACH_SIDE)
        trader, _ = User.objects.get_or_create(username="bench-browser")
        trader.set_password(PASSWORD)
        trader.save()
        stack = Stack({**os.environ, "CHAIN_SNAPSHOT_SECONDS": "60"})
        stack.start()
        try:
            figures = measure(stack.web.url)
        finally:
            stack.stop()
            redis.Redis.from_url(settings.REDIS_URL).flushdb()
    print(json.dumps(figures))


def measure(base: str) -> dict:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--enable-precise-memory-info"]
        )
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        context.add_init_script(COUNT_MESSAGES)
        live = context.new_page()
        live.goto(base + "/login/")
        live.fill("input[name=username]", "bench-browser")
        live.fill("input[name=password]", PASSWORD)
        live.click("button[type=submit]")
        live.goto(base + "/chain/NIFTY/?strikes=0")
        live.wait_for_selector("#conn[data-state=live]", timeout=60_000)
        contracts = live.eval_on_selector_all("#chain tbody tr[id^=row-]", "rows => rows.length") * 2
        still = context.new_page()
        still.route("**/ws/**", lambda route: route.abort())
        still.goto(base + "/chain/NIFTY/?strikes=0")
        time.sleep(5)  # both settled: charts drawn, the first full redraw swapped in
        sessions = {page: context.new_cdp_session(page) for page in (live, still)}
        samples: dict[str, list[dict]] = {"live": [], "still": []}
        started = time.monotonic()
        while True:
            for name, page in (("live", live), ("still", still)):
                sessions[page].send("HeapProfiler.collectGarbage")
                samples[name].append({"at": time.monotonic() - started, **page.evaluate(SAMPLE)})
            if time.monotonic() - started >= MINUTES * 60:
                break
            time.sleep(SAMPLE_SECONDS)
        browser.close()
    warm = next(
        i for i, sample in enumerate(samples["live"]) if sample["at"] >= min(WARM_UP_SECONDS, seconds_run(samples))
    )
    first, last = samples["live"][warm], samples["live"][-1]
    seconds = last["at"] - first["at"]
    messages = last["messages"] - first["messages"]
    heaps = [s["heap"] for s in samples["live"]]
    start_level, end_level = level(samples["live"][warm:][:LEVEL_SAMPLES]), level(samples["live"][-LEVEL_SAMPLES:])
    return {
        "minutes": round(seconds / 60, 1),
        "warm_up_seconds": round(first["at"]),
        "contracts": contracts,
        "heap_start_mb": start_level / 2**20,
        "heap_end_mb": end_level / 2**20,
        "heap_max_mb": max(heaps) / 2**20,
        "heap_growth_percent": 100 * (end_level - start_level) / start_level,
        "elements_start": first["elements"],
        "elements_end": last["elements"],
        "messages_per_s": messages / seconds,
        "kb_per_message": (last["bytes"] - first["bytes"]) / max(messages, 1) / 1024,
        "still_heap_start_mb": level(samples["still"][warm:][:LEVEL_SAMPLES]) / 2**20,
        "still_heap_end_mb": level(samples["still"][-LEVEL_SAMPLES:]) / 2**20,
        "target_growth_percent": TARGET_GROWTH_PERCENT,
        "heap_series_mb": [round(s["heap"] / 2**20, 2) for s in samples["live"]],
        "still_heap_series_mb": [round(s["heap"] / 2**20, 2) for s in samples["still"]],
    }


def level(samples: list[dict]) -> float:
    return min(sample["heap"] for sample in samples)


def seconds_run(samples: dict[str, list[dict]]) -> float:
    return samples["live"][-1]["at"]


if __name__ == "__main__":
    main()
