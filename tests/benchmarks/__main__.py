"""`make bench`: every speed figure beside its target and a reference measured in the same run.

Each database gets its own process (settings bind the database at start):
SQLite in a temporary file, and PostgreSQL in a scratch database `desk_bench` on the
server of TEST_DATABASE_URL (created and dropped here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from tests.master_factory import synthetic_master

ROOT = Path(__file__).resolve().parents[2]
MASTER_ROWS = 100_000
BENCH_DATABASE = "desk_bench"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="desk-bench-") as scratch:
        master = Path(scratch) / "instruments.csv"
        master.write_text(synthetic_master(MASTER_ROWS))
        results = [run_backend("SQLite", f"sqlite:///{scratch}/bench.sqlite3", master)]
        postgres_url = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
        with scratch_postgres(postgres_url) as bench_url:
            results.append(run_backend("PostgreSQL", bench_url, master))
            feed = run_measurement("feed throughput", bench_url, ["tests.benchmarks.measure_feed", "throughput"])
            feed |= run_measurement("feed memory", bench_url, ["tests.benchmarks.measure_feed", "memory"])
            feed |= run_measurement("chain latency", bench_url, ["tests.benchmarks.measure_feed", "chain-latency"])
            analytics = run_measurement("option analytics", bench_url, ["tests.benchmarks.analytics"])
            analytics["chain"] = run_measurement("chain figures", bench_url, ["tests.benchmarks.chain"])
            page = run_measurement("chain page", bench_url, ["tests.benchmarks.chain_page"])
            page["browser"] = run_measurement(
                "chain page in Chromium", bench_url, ["tests.benchmarks.chain_page_browser"]
            )
    print_table(
        instrument_rows(results)
        + feed_rows(feed)
        + analytics_rows(analytics, feed["chain_latency"])
        + chain_page_rows(page)
    )
    return 0


def run_backend(label: str, database_url: str, master: Path) -> dict:
    result = run_measurement(label, database_url, ["tests.benchmarks.measure", str(master)])
    return {"backend": label, **result}


def run_measurement(label: str, database_url: str, module_and_args: list[str]) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "0",
        "SECRET_KEY": "bench-only",
        "FIELD_ENCRYPTION_KEY": "Y2F0Y2gtbWUtaWYteW91LWNhbi1iZW5jaC1rZXkxMjM=",
        "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
    }
    print(f"benchmarking {label}...", file=sys.stderr, flush=True)
    completed = subprocess.run(
        [sys.executable, "-m", *module_and_args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr)
        raise SystemExit(f"the {label} benchmark failed")
    return json.loads(completed.stdout.strip().splitlines()[-1])


class scratch_postgres:
    def __init__(self, server_url: str) -> None:
        self.server_url = server_url

    def __enter__(self) -> str:
        self._admin(f"DROP DATABASE IF EXISTS {BENCH_DATABASE}")
        self._admin(f"CREATE DATABASE {BENCH_DATABASE}")
        return urlunsplit(urlsplit(self.server_url)._replace(path=f"/{BENCH_DATABASE}"))

    def __exit__(self, *exc) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {BENCH_DATABASE}")

    def _admin(self, sql: str) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as connection:
            connection.execute(sql)


def instrument_rows(results: list[dict]) -> list[tuple]:
    rows = []
    for result in results:
        backend = result["backend"]
        rows += [
            (
                f"sync_instruments, first load of {MASTER_ROWS:,} rows",
                backend,
                f"{result['first_load_rows_per_s']:,.0f} rows/s ({result['first_load_s']:.1f} s)",
                f">= {MASTER_ROWS / 10:,.0f} rows/s (< 10 s)",
                f"{result['reference_rows_per_s']:,.0f} rows/s: ORM bulk_create(update_conflicts)"
                f" on {result['reference_rows']:,} rows",
            ),
            (
                "sync_instruments, rerun with nothing changed",
                backend,
                f"{result['rerun_rows_per_s']:,.0f} rows/s ({result['rerun_s']:.1f} s)",
                f">= {MASTER_ROWS / 10:,.0f} rows/s (< 10 s)",
                "-",
            ),
            (
                f"admin instrument list at {MASTER_ROWS:,} rows",
                backend,
                f"{result['admin_list_ms']:.0f} ms",
                "< 500 ms",
                f"{result['admin_list_small_ms']:.0f} ms at {result['admin_small_rows']:,} rows",
            ),
            (
                f"admin search 'STOCK01' at {MASTER_ROWS:,} rows",
                backend,
                f"{result['admin_search_ms']:.0f} ms",
                "< 500 ms",
                "-",
            ),
            (
                f"API GET /api/v1/instruments/ at {MASTER_ROWS:,} rows, first page",
                backend,
                f"{result['api_list_ms']:.0f} ms (COUNT {result['api_count_ms']:.0f} ms)",
                "< 100 ms",
                f"{result['api_naive_list_ms']:.0f} ms: plain ModelSerializer over Instrument.objects.all()",
            ),
            *(
                (
                    f"API instruments ?{result[f'api_{name}_query']}",
                    backend,
                    f"{result[f'api_{name}_ms']:.0f} ms",
                    "< 100 ms",
                    f"{result[f'api_naive_{name}_ms']:.0f} ms: the plain endpoint, {naive}",
                )
                for name, naive in (
                    ("filtered", "exact filters"),
                    ("type_filtered", "exact filters"),
                    ("search", "DRF SearchFilter (icontains)"),
                )
            ),
        ]
    return rows


def feed_rows(feed: dict) -> list[tuple]:
    parse, pipeline, storage, memory = feed["parse"], feed["pipeline"], feed["storage"], feed["memory"]
    rows = [
        (
            f"parse_frame, mixed frame of {parse['ticks_per_frame']} packets",
            "-",
            f"{parse['ours_ticks_per_s']:,.0f} ticks/s ({parse['speedup']:.0f}x)",
            ">= 40x kiteconnect",
            f"{parse['kiteconnect_ticks_per_s']:,.0f} ticks/s: kiteconnect's parser",
        ),
        (
            "feed pipeline: parse, state, bars, conflation, Redis",
            "-",
            f"{pipeline['ticks_per_s']:,.0f} ticks/s",
            ">= 250,000 ticks/s",
            f"{pipeline['reference_parse_only_ticks_per_s']:,.0f} ticks/s: kiteconnect parsing alone",
        ),
        (
            "tick storage (COPY)",
            "PostgreSQL",
            f"{storage['ticks_per_s']:,.0f} ticks/s",
            ">= 100,000 ticks/s",
            f"{storage['reference_ticks_per_s']:,.0f} ticks/s: ORM bulk_create",
        ),
        (
            f"feed memory, {memory['instruments']:,} instruments streaming {memory['seconds']:.0f} s",
            "-",
            f"{memory['rss_mb']:.0f} MB RSS",
            "<= 150 MB",
            f"{memory['baseline_rss_mb']:.0f} MB: a Django process of this project at rest",
        ),
    ]
    latency = feed.get("latency")
    if latency:
        rows.append(
            (
                f"tick to websocket, {latency['clients']} clients, {latency['ticks_per_second_offered']:,} ticks/s",
                "-",
                f"p50 {latency['p50_ms']:.0f} ms, p99 {latency['p99_ms']:.0f} ms",
                f"p99 <= {latency['target_p99_ms']} ms",
                f"p50 {latency['reference_p50_ms']:.1f} ms, p99 {latency['reference_p99_ms']:.1f} ms:"
                " the channel layer alone",
            )
        )
    return rows


def analytics_rows(analytics: dict, latency: dict) -> list[tuple]:
    chain = analytics["chain"]
    return [
        (
            f"implied_vol, {analytics['implied_vol_options']:,} NIFTY-like options, one core",
            "-",
            f"{analytics['implied_vol_ours_per_s']:,.0f} options/s",
            f">= {analytics['target_implied_vol_per_s']:,} options/s",
            f"{analytics['implied_vol_newton_bisection_per_s']:,.0f}/s NumPy Newton-bisection;"
            f" {analytics['implied_vol_vollib_per_s']:,.0f}/s vollib in a loop",
        ),
        (
            f"greeks, {analytics['greeks_options']:,} options, one core",
            "-",
            f"{analytics['greeks_ours_per_s']:,.0f} options/s",
            f">= {analytics['target_greeks_per_s']:,} options/s",
            f"{analytics['greeks_plain_numpy_per_s']:,.0f}/s plain NumPy;"
            f" {analytics['greeks_vollib_per_s']:,.0f}/s vollib in a loop",
        ),
        (
            f"whole chain of {chain['contracts']} contracts: IV, Greeks, every figure",
            "-",
            f"median {chain['ours_median_ms']:.2f} ms (p99 {chain['ours_p99_ms']:.2f})",
            f"median <= {chain['target_median_ms']} ms",
            f"{chain['plain_numpy_median_ms']:.2f} ms plain NumPy; {chain['vollib_median_ms']:.1f} ms vollib in a loop",
        ),
        (
            f"tick to chain figures at a websocket client, refresh every {latency['refresh_ms']} ms",
            "-",
            f"p50 {latency['p50_ms']:.0f} ms, p99 {latency['p99_ms']:.0f} ms",
            f"p99 <= {latency['target_p99_ms']} ms",
            f"{latency['refresh_ms']} ms: the refresh interval a tick may wait;"
            f" task {latency['task_compute_p50_ms']:.0f} ms (p50)",
        ),
    ]


def chain_page_rows(page: dict) -> list[tuple]:
    return [
        (
            f"chain page first render, {page['contracts']} contracts (server, logged in)",
            "PostgreSQL",
            f"median {page['render_median_ms']:.0f} ms (p95 {page['render_p95_ms']:.0f})",
            f"<= {page['target_render_ms']} ms",
            f"{page['reference_template_median_ms']:.0f} ms: the table alone as a Django template loop",
        ),
        *(
            (
                f"chain socket, one refresh after a small move, {page[f'{label}_contracts']} contracts on screen",
                "-",
                f"{page[f'{label}_update_bytes'] / 1024:,.1f} KB, {page[f'{label}_update_cells']:,} cells,"
                f" {page[f'{label}_diff_median_ms']:.1f} ms to work out",
                "only changed cells",
                f"{page['whole_table_bytes'] / 1024:,.0f} KB: the whole 400-contract table",
            )
            for label in ("window", "all")
        ),
        browser_row(page["browser"]),
    ]


def browser_row(browser: dict) -> tuple:
    return (
        f"chain page in Chromium, {browser['contracts']} contracts, live for {browser['minutes']:.0f} min"
        f" after {browser['warm_up_seconds']} s",
        "-",
        f"JS heap {browser['heap_start_mb']:.1f} -> {browser['heap_end_mb']:.1f} MB"
        f" ({browser['heap_growth_percent']:+.0f} %), elements {browser['elements_start']:,} ->"
        f" {browser['elements_end']:,}; {browser['messages_per_s']:.1f} messages/s of"
        f" {browser['kb_per_message']:.0f} KB",
        f"flat: heap <= +{browser['target_growth_percent']} %, elements unchanged",
        f"JS heap {browser['still_heap_start_mb']:.1f} -> {browser['still_heap_end_mb']:.1f} MB:"
        " the same page with its socket refused",
    )


def print_table(rows: list[tuple]) -> None:
    headers = ("figure", "database", "measured", "target", "reference (same run)")
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    line = "  ".join(f"{{:<{width}}}" for width in widths)
    print(line.format(*headers))
    print(line.format(*("-" * width for width in widths)))
    for row in rows:
        print(line.format(*row))


if __name__ == "__main__":
    sys.exit(main())
