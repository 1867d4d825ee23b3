"""python manage.py run_feed [--source kite|sim|replay] ..."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import redis.asyncio as aioredis
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from instruments import selectors as instrument_selectors
from instruments import services as instrument_services
from marketdata import selectors, services
from marketdata.feed.chains import PENDING_TTL_SECONDS
from marketdata.feed.runner import FeedOptions, FeedRunner, with_own_connection
from marketdata.feed.sources import KiteSource, ReplaySource, SimSource
from marketdata.feed.storage import TickWriter
from marketdata.signals import order_update
from trading_site import clock
from trading_site.celery import app as celery_app

log = logging.getLogger(__name__)

REFRESH_CHAIN_TASK = "marketdata.tasks.refresh_chain"


class Command(BaseCommand):
    help = (
        "Stream market data into the desk: Kite's ticker (--source kite), the market simulator "
        "(--source sim) or a replay of stored ticks (--source replay --date YYYY-MM-DD). "
        "Runs until SIGTERM or Ctrl-C, then flushes stored ticks and bars."
    )
    # Django's checks would import the URLconf, and with it the whole web and API stack (SciPy
    # included, ~30 MB) into a process that serves no URL. `manage.py check` and the web process
    # run them; the feed needs only its models, which it uses at once.
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--source",
            choices=["kite", "sim", "replay"],
            help="Default: kite when the data account has a valid session, else sim.",
        )
        parser.add_argument("--underlyings", nargs="+", metavar="SYMBOL", help="Only these enabled underlyings.")
        parser.add_argument("--seed", type=int, default=1, help="Simulator seed (same seed, same market).")
        parser.add_argument("--speed", type=float, default=1.0, help="Simulated or replayed time per real second.")
        parser.add_argument("--date", type=dt.date.fromisoformat, help="The day to replay (YYYY-MM-DD).")
        parser.add_argument("--conflation-ms", type=int, default=settings.FEED_CONFLATION_MS)
        parser.add_argument(
            "--chain-refresh-ms",
            type=int,
            default=settings.CHAIN_REFRESH_MS,
            help="Ask a Celery worker for each changed chain's analytics at most this often (0: never).",
        )
        parser.add_argument("--no-store", action="store_true", help="Do not store ticks (bars are still stored).")

    def handle(
        self,
        *args,
        source: str | None,
        underlyings,
        seed,
        speed,
        date,
        conflation_ms,
        chain_refresh_ms,
        no_store,
        **options,
    ):
        if speed < 0 or (speed == 0 and source != "replay"):
            raise CommandError("--speed must be positive (0 means 'as fast as possible' for a replay only).")
        if not 20 <= conflation_ms <= 10_000:
            raise CommandError("--conflation-ms must be between 20 and 10000.")
        if chain_refresh_ms != 0 and not 50 <= chain_refresh_ms <= 60_000:
            raise CommandError("--chain-refresh-ms must be 0 (off) or between 50 and 60000.")
        source = source or ("kite" if _kite_session() else "sim")
        universes = selectors.feed_universe(symbols=underlyings)
        if source != "replay" and not universes:
            raise CommandError("No enabled underlyings to stream: run `manage.py load_demo` or add one in the admin.")

        if source == "sim":
            feed_source = SimSource(universes, seed=seed, speed=speed, start=clock.now())
        elif source == "kite":
            feed_source = KiteSource(
                url=settings.KITE_TICKER_URL,
                load_session=with_own_connection(_kite_session),
                on_session_expired=with_own_connection(_mark_session_expired),
                on_order=_dispatch_order_update,
            )
        else:
            if date is None:
                raise CommandError("--source replay needs --date YYYY-MM-DD.")
            feed_source = ReplaySource(
                load_ticks=with_own_connection(lambda: selectors.ticks_for_replay(date)), speed=speed
            )

        tick_writer = None if (no_store or source == "replay") else TickWriter()
        self.stdout.write(
            f"Feed: source={source}, {len(universes)} underlyings, conflation {conflation_ms} ms, "
            f"chain analytics {f'every {chain_refresh_ms} ms' if chain_refresh_ms else 'off'}."
        )
        options = FeedOptions(conflation_ms=conflation_ms, chain_refresh_ms=chain_refresh_ms)
        asyncio.run(self._run(feed_source, universes, tick_writer, options))

    async def _run(self, feed_source, universes, tick_writer, options: FeedOptions) -> None:
        redis_client = aioredis.Redis.from_url(settings.REDIS_URL)
        runner = FeedRunner(
            source=feed_source,
            universes=universes,
            group_send=get_channel_layer().group_send,
            redis_client=redis_client,
            tick_writer=tick_writer,
            store_bars=lambda bars: services.bars_store(bars=bars),
            options=options,
            request_chain_refresh=_request_chain_refresh,
        )
        if isinstance(feed_source, ReplaySource):
            asyncio.get_running_loop().create_task(_stop_when_finished(feed_source, runner))
        try:
            await runner.run()
        finally:
            await redis_client.aclose()
        if runner.source_error is not None:
            raise CommandError(f"the feed's source failed: {runner.source_error!r}")


async def _stop_when_finished(source: ReplaySource, runner: FeedRunner) -> None:
    await source.finished.wait()
    await asyncio.sleep(1.5)  # one more housekeeping round closes the last bars
    runner.stop()


def _request_chain_refresh(symbol: str, expiry: dt.date) -> None:
    # By name: importing the task would bring the analytics, and SciPy, into the feed's process.
    # A refresh that waited PENDING_TTL_SECONDS would compute figures nobody wants any more.
    celery_app.send_task(REFRESH_CHAIN_TASK, args=[symbol, expiry.isoformat()], expires=PENDING_TTL_SECONDS)


def _dispatch_order_update(order: dict) -> None:
    """Hand a postback to the order_update receivers on a worker thread: they may use the database."""
    send = with_own_connection(lambda: order_update.send(sender="kite_ticker", order=order))
    asyncio.get_running_loop().run_in_executor(None, send)


def _kite_session() -> tuple[str, str] | None:
    account = instrument_selectors.data_account()
    if account is None or not account.has_valid_session:
        return None
    return account.api_key, account.access_token


def _mark_session_expired() -> None:
    account = instrument_selectors.data_account()
    if account is not None:
        instrument_services.broker_account_mark_session_expired(account=account)
