"""The feed process: one asyncio loop running a source, the pipeline and the publisher.

Tasks: the source (frames in), conflation (every `conflation_ms`), status (every
second, plus a log line a minute), housekeeping (bar timer, chain re-centring, the
watched-instrument list) and, when a refresh is wired in, chain analytics requests.
SIGTERM or Ctrl-C stops it cleanly: the source stops, the last changes are published,
closed bars stored, and the tick queue flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from marketdata.feed.chains import ChainRefresher, RequestRefresh
from marketdata.feed.pipeline import FeedPipeline
from marketdata.feed.publisher import GroupSend, Publisher
from marketdata.feed.state import FeedState
from marketdata.feed.universe import SubscriptionPlanner, UnderlyingUniverse
from marketdata.groups import WATCHED_INSTRUMENTS_KEY

log = logging.getLogger(__name__)

STATUS_LOG_SECONDS = 60.0
# How long shutdown waits for the periodic tasks to end before flushing without them.
TASK_STOP_SECONDS = 5.0
# How often the chain refresher looks for changed chains: small against chain_refresh_ms, so a
# refresh is asked for within 20 ms of the moment its interval allows.
CHAIN_POLL_SECONDS = 0.02


@dataclass
class FeedOptions:
    conflation_ms: int = 250
    status_interval: float = 1.0
    housekeeping_interval: float = 1.0
    chain_refresh_ms: int = 500


class FeedRunner:
    def __init__(
        self,
        *,
        source,
        universes: list[UnderlyingUniverse],
        group_send: GroupSend,
        redis_client=None,
        tick_writer=None,
        store_bars: Callable | None = None,
        options: FeedOptions | None = None,
        request_chain_refresh: RequestRefresh | None = None,
    ) -> None:
        self.source = source
        self.options = options or FeedOptions()
        self.state = FeedState()
        self.pipeline = FeedPipeline(state=self.state, tick_writer=tick_writer)
        self.publisher = Publisher(state=self.state, group_send=group_send, redis_client=redis_client)
        self.planner = SubscriptionPlanner(universes)
        self.publisher.groups_of_token = self.planner.groups_of()
        self.redis = redis_client
        self.tick_writer = tick_writer
        self.store_bars = store_bars
        self.bars_stored = 0
        self.started_at = time.time()
        self.stopping = asyncio.Event()
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feed-db")
        self._previous_counts = (0, 0, time.monotonic())
        self._last_status_log = 0.0
        self.last_status: dict = {}
        self.source_error: BaseException | None = None
        self.chains = None
        if request_chain_refresh is not None and redis_client is not None and self.options.chain_refresh_ms > 0:
            self.chains = ChainRefresher(
                state=self.state,
                planner=self.planner,
                request=request_chain_refresh,
                redis_client=redis_client,
                refresh_ms=self.options.chain_refresh_ms,
                write_latest=self.publisher.write_latest,
            )

    # -- lifecycle --------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.stop)
        if self.tick_writer is not None:
            self.tick_writer.start()
        self.resubscribe()
        source_task = asyncio.create_task(self.source.run(self.pipeline.on_frame), name="source")
        source_task.add_done_callback(self._source_ended)
        tasks = [
            source_task,
            asyncio.create_task(self._every(self.options.conflation_ms / 1000, self.conflate), name="conflation"),
            asyncio.create_task(self._every(self.options.status_interval, self.report_status), name="status"),
            asyncio.create_task(self._every(self.options.housekeeping_interval, self.housekeeping), name="house"),
        ]
        if self.chains is not None:
            tasks.append(asyncio.create_task(self._every(CHAIN_POLL_SECONDS, self.chains.run_once), name="chains"))
        log.info("feed started: source=%s, %d instruments", self.source.name, self.state.instrument_count)
        try:
            await self.stopping.wait()
        finally:
            await self.source.stop()
            for task in tasks:
                task.cancel()
            # Some library code under these tasks (Redis clients) can swallow a cancellation; the
            # loops also watch `stopping`, and shutdown never waits on a task forever: the ticks and
            # bars still queued must be flushed whatever a library does.
            _, pending = await asyncio.wait(tasks, timeout=TASK_STOP_SECONDS)
            for task in pending:
                log.warning(
                    "feed task %s did not stop within %s s; shutting down without it",
                    task.get_name(),
                    TASK_STOP_SECONDS,
                )
            await self.shutdown()

    def _source_ended(self, task: asyncio.Task) -> None:
        # A source that dies leaves a feed that only pretends: log why and stop, so the
        # process exits non-zero and its supervisor (honcho, systemd) restarts it.
        if task.cancelled() or self.stopping.is_set():
            return
        error = task.exception()
        if error is not None:
            self.source_error = error
            log.error("the %s source failed; stopping the feed", self.source.name, exc_info=error)
            self.stop()

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("feed stopping: flushing ticks and bars")
            self.stopping.set()

    async def shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        await self.conflate()
        await self.store_closed_bars()
        if self.tick_writer is not None:
            await loop.run_in_executor(None, self.tick_writer.stop)
        status = self.status_snapshot(state="stopped")
        await self.publisher.publish_status(status)
        log.info("feed stopped: %s", json.dumps(status))
        await loop.run_in_executor(self._db_thread, _close_db_connections)
        self._db_thread.shutdown(wait=True)
        if self.chains is not None:
            self.chains.close()

    # -- periodic work ------------------------------------------------------------------
    async def _every(self, seconds: float, work: Callable) -> None:
        while not self.stopping.is_set():
            await asyncio.sleep(seconds)
            if self.stopping.is_set():
                return
            try:
                await work()
            except Exception:  # one failed round must not end the feed
                log.exception("feed task %s failed; it will run again", getattr(work, "__name__", work))

    async def conflate(self) -> None:
        await self.publisher.publish_changes()

    async def housekeeping(self) -> None:
        self.pipeline.close_due_bars(self.source.market_time())
        await self.store_closed_bars()
        if self.planner.universes:
            self.resubscribe()
        await self.refresh_watched()

    async def store_closed_bars(self) -> None:
        bars = self.pipeline.take_closed_bars()
        if not len(bars):
            return
        if self.store_bars is not None:
            loop = asyncio.get_running_loop()
            try:
                self.bars_stored += await loop.run_in_executor(self._db_thread, self.store_bars, bars)
            except Exception:
                log.exception("storing %d closed bars failed", len(bars))
        await self.publisher.publish_bars(bars)

    def resubscribe(self) -> None:
        """Re-centre each chain on its spot and follow the watched instruments; subscribe new
        instruments before dropping old ones."""
        change = self.planner.plan(self.spots())
        if not change:
            return
        new_tokens = [token for token in change.add if self.state.slot(token) is None]
        # Only new instruments start with empty bars: a mode change must not lose the open minute.
        self.pipeline.bars.reset(self.state.add(new_tokens))
        self.state.add(change.add)
        self.source.apply(change)
        self.state.remove(change.remove)
        store = self.planner.store_tokens()
        self.pipeline.store_slots[:] = False
        for token in store:
            slot = self.state.slot(token)
            if slot is not None:
                self.pipeline.store_slots[slot] = True
        if self.chains is not None:
            self.chains.assign()
        if change.remove:
            log.info("subscriptions changed: +%d / -%d instruments", len(change.add), len(change.remove))

    def spots(self) -> dict[str, float]:
        spots = {}
        for symbol, universe in self.planner.universes.items():
            for token in (universe.spot_token, *(f.instrument_token for f in universe.futures[:1])):
                slot = self.state.slot(token) if token else None
                if slot is not None and self.state.columns["last_price"][slot] > 0:
                    spots[symbol] = float(self.state.columns["last_price"][slot])
                    break
        return spots

    async def refresh_watched(self) -> None:
        if self.redis is None:
            return
        now = time.time()
        try:
            await self.redis.zremrangebyscore(WATCHED_INSTRUMENTS_KEY, "-inf", now)
            members = await self.redis.zrange(WATCHED_INSTRUMENTS_KEY, 0, -1)
        except Exception as error:
            log.debug("watched-instrument refresh failed: %s", error)
            return
        watched = {int(m) for m in members}
        self.publisher.watched_tokens = watched
        # A watched instrument outside every streamed chain (a far strike, another expiry): the
        # feed subscribes it too, or a watchlist would show it without a price all day.
        if watched != self.planner.watched and self.planner.universes:
            self.planner.watched = watched
            self.resubscribe()

    async def report_status(self) -> None:
        status = self.status_snapshot()
        self.last_status = status
        await self.publisher.publish_status(status)
        if time.monotonic() - self._last_status_log >= STATUS_LOG_SECONDS:
            self._last_status_log = time.monotonic()
            log.info("feed status %s", json.dumps(status))

    def status_snapshot(self, *, state: str = "running") -> dict:
        counters = self.pipeline.counters
        ticks, frames, since = self._previous_counts
        now = time.monotonic()
        elapsed = max(now - since, 1e-9)
        self._previous_counts = (counters.ticks, counters.frames, now)
        storage = self.tick_writer.status if self.tick_writer is not None else None
        source = self.source.status()
        exchange_time = counters.latest_exchange_timestamp
        return {
            "state": state,
            "source": self.source.name,
            "session": source.get("session"),
            "connections_up": source.get("connections_up", 0),
            "connections_wanted": source.get("connections_wanted", 0),
            "instruments": self.state.instrument_count,
            "ticks_per_s": round((counters.ticks - ticks) / elapsed, 1),
            "frames_per_s": round((counters.frames - frames) / elapsed, 1),
            "ticks_total": counters.ticks,
            # Against the source's own clock: wall time for Kite, simulated time for the simulator.
            "lag_ms": round((self.source.market_time() - exchange_time) * 1000) if exchange_time else None,
            "exchange_time": dt.datetime.fromtimestamp(exchange_time, tz=dt.UTC).isoformat() if exchange_time else None,
            "ticks_for_storage": counters.ticks_for_storage,
            "storage_backlog": storage.queued if storage else 0,
            "ticks_stored": storage.written if storage else 0,
            "ticks_dropped": storage.dropped if storage else 0,
            "bars_stored": self.bars_stored,
            "frame_errors": counters.frame_errors,
            "last_error": counters.last_frame_error
            or source.get("last_error")
            or (storage.last_error if storage else None),
            "messages_sent": self.publisher.messages_sent,
            **(self.chains.status() if self.chains is not None else {}),
            "started_at": dt.datetime.fromtimestamp(self.started_at, tz=dt.UTC).isoformat(),
            "updated_at": dt.datetime.now(tz=dt.UTC).isoformat(),
            **{
                k: v
                for k, v in source.items()
                if k not in {"session", "connections_up", "connections_wanted", "last_error"}
            },
        }


def _close_db_connections() -> None:
    from django.db import connections

    connections.close_all()


def with_own_connection(function: Callable) -> Callable:
    """Wrap a database call made from an executor thread so its connection is closed after it.

    Django keeps one connection per thread; threads of a long-running feed would
    otherwise each hold one open for the life of the process.
    """

    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            _close_db_connections()

    return call
