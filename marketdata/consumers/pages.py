"""Sockets of the live pages: group messages in, HTML fragments out, at most four a second.

A page connects with htmx's websocket extension (`ws-connect`) and never sends JSON of its own
unless it has controls (`ws-send`). Its consumer joins the groups the page needs, keeps the
latest of what they say, and every FLUSH_SECONDS sends one message holding the fragments that
changed since its last one; htmx swaps each by id. Conflating here, on top of the feed's own
conflation, is what bounds a page to four messages a second however many groups it joins.

Every page also gets the connection indicator and the market clock once a second. The
indicator is the server's verdict on the feed ("live" only while the feed reports running);
the page's script adds what only the browser can know (the socket is down: "reconnecting").
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from functools import lru_cache

from channels.generic.websocket import AsyncWebsocketConsumer

from marketdata.consumers.feed import UNAUTHENTICATED_CLOSE_CODE, UNAUTHENTICATED_REASON, FeedGroupsMixin
from marketdata.fragments.connection import LIVE, NO_FEED, SIGNED_OUT, STALE, connection_indicator, market_clock
from marketdata.fragments.html import socket_messages
from marketdata.groups import FEED_STATUS_GROUP
from trading_site import clock

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.25
HEARTBEAT_SECONDS = 1.0
# The feed reports its status every second; this long without one, it is not running.
FEED_SILENT_AFTER_SECONDS = 5.0
PAGE_UNAVAILABLE_CLOSE_CODE = 4404
# A client's ws-send message is a small form; anything bigger is not from our pages.
MAX_CLIENT_MESSAGE_CHARS = 4096


class PageUnavailable(Exception):
    """The page's socket cannot serve what the URL names (no such underlying, say)."""


class _SocketGone(Exception):
    """Sending failed: the client has gone."""


@lru_cache(maxsize=64)  # one message reaches every socket of the process as the same string
def feed_message(text: str) -> dict:
    """A feed group message's JSON, decoded once per process. Shared: callers must not mutate it."""
    return json.loads(text)


class LivePageConsumer(FeedGroupsMixin, AsyncWebsocketConsumer):
    """The base of every page's socket. Subclasses say which groups to join (`start_page`), take
    the feed's messages (`on_ticks`, `on_chain`, ...) and say what changed (`changed_fragments`)."""

    async def connect(self) -> None:
        self.joined: list[str] = []
        self.latest_status: dict | None = None
        self.feed_status_at: float | None = None  # monotonic
        self.last_data_at = None  # IST datetime of the feed's last message, shown when stale
        self.indicator_sent: str | None = None
        self.heartbeat_at = 0.0
        self._flusher: asyncio.Task | None = None
        # Accepted before closing (as FeedConsumer): the page's script reads the close code and
        # says "signed out" rather than retrying for ever.
        await self.accept()
        if not self.scope["user"].is_authenticated:
            await self.send(text_data=connection_indicator(SIGNED_OUT, None))
            await self.close(code=UNAUTHENTICATED_CLOSE_CODE, reason=UNAUTHENTICATED_REASON)
            return
        try:
            groups = await self.start_page()
        except PageUnavailable as error:
            log.info("page socket refused: %s", error)
            await self.close(code=PAGE_UNAVAILABLE_CLOSE_CODE, reason=str(error)[:120])
            return
        for group in dict.fromkeys([FEED_STATUS_GROUP, *groups]):
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined.append(group)
        self.watch_instruments()
        self._flusher = asyncio.create_task(self._flush_forever())

    async def disconnect(self, code: int) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.stop_watching()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.joined or not text_data or len(text_data) > MAX_CLIENT_MESSAGE_CHARS:
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            return
        if isinstance(message, dict):
            await self.on_client_message(message)

    def instrument_tokens(self) -> list[str]:
        return [g.split(".", 1)[1] for g in self.joined if g.startswith("instrument.")]

    async def join_groups(self, groups: list[str]) -> None:
        """Join more groups after connecting (a page control asked for them)."""
        for group in groups:
            if group not in self.joined:
                await self.channel_layer.group_add(group, self.channel_name)
                self.joined.append(group)
        self.watch_instruments()

    async def leave_groups(self, groups: list[str]) -> None:
        for group in groups:
            if group in self.joined and group != FEED_STATUS_GROUP:
                await self.channel_layer.group_discard(group, self.channel_name)
                self.joined.remove(group)

    # -- what a page overrides ---------------------------------------------------------------
    async def start_page(self) -> list[str]:
        """Read what the page needs (the URL's kwargs are in self.scope["url_route"]); the groups to join."""
        return []

    def on_status(self, status: dict) -> None:
        """The feed's status (every second)."""

    def on_ticks(self, ticks: list[dict]) -> None:
        """A conflated batch of ticks of one group."""

    def on_bars(self, bars: list[dict]) -> None:
        """One-minute bars that just closed."""

    def on_chain(self, chain: dict) -> None:
        """A chain's fresh analytics (marketdata.analytics.chain_json)."""

    async def on_client_message(self, message: dict) -> None:
        """A control on the page sent its values (htmx ws-send)."""

    def changed_fragments(self) -> list[str]:
        """Out-of-band fragments for what changed since the last call."""
        return []

    # -- the feed's messages ---------------------------------------------------------------
    def _heard_from_feed(self) -> None:
        self.last_data_at = clock.now()

    async def feed_status(self, event: dict) -> None:
        self.latest_status = feed_message(event["json"])["status"]
        self.feed_status_at = time.monotonic()
        self._heard_from_feed()
        self.on_status(self.latest_status)

    async def feed_ticks(self, event: dict) -> None:
        self._heard_from_feed()
        self.on_ticks(feed_message(event["json"])["ticks"])

    async def bar_closed(self, event: dict) -> None:
        self.on_bars(feed_message(event["json"])["bars"])

    async def chain_analytics(self, event: dict) -> None:
        self._heard_from_feed()
        self.on_chain(feed_message(event["json"])["chain"])

    # -- sending ---------------------------------------------------------------------------
    async def _flush_forever(self) -> None:
        try:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                await self.flush()
        except _SocketGone as gone:
            # The browser left mid-send (its disconnect is on its way): nothing to repair.
            log.debug("page socket gone while sending: %s", gone.__cause__)
        except Exception:
            # A bug in one page's rendering must not leave it silently frozen: the close makes
            # the page say "reconnecting", and its reconnect starts from a fresh render.
            log.exception("live page socket failed; closing it")
            await self.close(code=1011)

    async def flush(self) -> None:
        fragments = self.changed_fragments()
        now = time.monotonic()
        state = self.feed_state(now)
        if state != self.indicator_sent or now - self.heartbeat_at >= HEARTBEAT_SECONDS:
            session = clock.market_session()
            moment = clock.now()
            fragments.append(connection_indicator(state, self.last_data_at))
            fragments.append(market_clock(moment, is_open=session.is_open, next_change=session.next_change))
            self.indicator_sent, self.heartbeat_at = state, now
        for message in socket_messages(fragments):
            try:
                await self.send(text_data=message)
            except Exception as error:
                raise _SocketGone from error

    def feed_state(self, now: float) -> str:
        if self.feed_status_at is None:
            return NO_FEED if self.last_data_at is None else STALE
        if now - self.feed_status_at > FEED_SILENT_AFTER_SECONDS or self.latest_status.get("state") != "running":
            return STALE
        return LIVE


class StatusPageConsumer(LivePageConsumer):
    """/ws/ui/status/: pages with no live data of their own still show the feed and the clock."""
