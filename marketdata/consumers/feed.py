"""Websocket consumers of the live feed.

`FeedConsumer` (/ws/feed/) is the plain JSON view of the feed's groups: a client
names the groups it wants (feed.status, ticks.<UNDERLYING>, chain.<UNDERLYING>.<YYYYMMDD>,
instrument.<token>) and receives each conflated message as JSON. Anonymous sockets
are closed with code 4401.

`StreamConsumer` (/ws/stream/) is the stream for programs (README, "JSON websocket stream"):
session or `?token=` API token, named channels, kiteconnect-shaped ticks and chain updates
(the conversions live in marketdata.stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import parse_qs

import redis.asyncio as aioredis
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from django.conf import settings
from knox.auth import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from marketdata.groups import (
    BAR_CLOSED_MESSAGE,
    CHAIN_ANALYTICS_MESSAGE,
    STATUS_MESSAGE,
    TICKS_MESSAGE,
    WATCH_SECONDS,
    WATCHED_INSTRUMENTS_KEY,
    is_feed_group,
)
from marketdata.stream import (
    RequestError,
    api_token,
    error_frame,
    parse_request,
    plan_subscriptions,
    stream_frames,
    subscribed_frame,
)

UNAUTHENTICATED_CLOSE_CODE = 4401
UNAUTHENTICATED_REASON = "not authenticated: log in, or add ?token=<API token>"
FEED_MESSAGE_TYPES = frozenset({TICKS_MESSAGE, STATUS_MESSAGE, BAR_CLOSED_MESSAGE, CHAIN_ANALYTICS_MESSAGE})
MAX_GROUPS_PER_SOCKET = 100


class FeedGroupsMixin:
    """What every socket on the feed's groups needs: the watched-instruments heartbeat, and feed
    messages dispatched without Channels' per-message database cleanup."""

    _watch_task: asyncio.Task | None = None

    def instrument_tokens(self) -> list[str]:
        """Tokens of the instrument.<token> groups this socket is in."""
        raise NotImplementedError

    def watch_instruments(self) -> None:
        """Put this socket's instruments on the watched list now (not at the next renewal), and keep them there."""
        if self._watch_task is not None:
            self._instruments_changed.set()
        elif self.instrument_tokens():
            self._instruments_changed = asyncio.Event()
            self._watch_task = asyncio.create_task(self._keep_watching())

    def stop_watching(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()

    async def _keep_watching(self) -> None:
        """Tell the feed which single instruments someone looks at (it publishes only those)."""
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        try:
            while True:
                self._instruments_changed.clear()
                tokens = self.instrument_tokens()
                if tokens:
                    with contextlib.suppress(Exception):  # the feed falls back to not publishing them
                        await client.zadd(WATCHED_INSTRUMENTS_KEY, {t: time.time() + WATCH_SECONDS for t in tokens})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._instruments_changed.wait(), WATCH_SECONDS / 3)
        finally:
            await client.aclose()

    async def dispatch(self, message: dict) -> None:
        # Channels closes stale database connections (a thread hop) before every message; feed
        # messages never touch the database, and at 100 sockets x 4 updates a second it adds up.
        if message.get("type") in FEED_MESSAGE_TYPES:
            await getattr(self, get_handler_name(message))(message)
        else:
            await super().dispatch(message)


class FeedConsumer(FeedGroupsMixin, AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.joined: set[str] = set()
        # Accepted before closing, as StreamConsumer does: a socket closed during the handshake
        # reaches a browser as a bare HTTP 403, and the page could not tell "log in" from "refused".
        await self.accept()
        if not self.scope["user"].is_authenticated:
            await self.send_json({"type": "error", "error": UNAUTHENTICATED_REASON})
            await self.close(code=UNAUTHENTICATED_CLOSE_CODE, reason=UNAUTHENTICATED_REASON)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        requested = [g for value in query.get("groups", []) for g in value.split(",") if g]
        if requested:
            await self.join(requested)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.stop_watching()

    async def receive_json(self, content, **kwargs) -> None:
        if not self.scope["user"].is_authenticated:
            return  # sent before our close reached the client
        if not isinstance(content, dict) or not isinstance(content.get("groups"), list):
            await self.send_json({"type": "error", "error": 'send {"action": "join"|"leave", "groups": [...]}'})
            return
        if content.get("action") == "leave":
            for group in content["groups"]:
                if group in self.joined:
                    self.joined.discard(group)
                    await self.channel_layer.group_discard(group, self.channel_name)
            await self.send_json({"type": "joined", "groups": sorted(self.joined)})
        else:
            await self.join(content["groups"])

    async def join(self, groups: list) -> None:
        bad = [g for g in groups if not isinstance(g, str) or not is_feed_group(g)]
        wanted = [g for g in groups if g not in bad and g not in self.joined]
        if len(self.joined) + len(wanted) > MAX_GROUPS_PER_SOCKET:
            await self.send_json({"type": "error", "error": f"at most {MAX_GROUPS_PER_SOCKET} groups per socket"})
            return
        for group in wanted:
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined.add(group)
        if bad:
            await self.send_json({"type": "error", "error": f"unknown groups: {', '.join(map(str, bad))[:200]}"})
        self.watch_instruments()
        await self.send_json({"type": "joined", "groups": sorted(self.joined)})

    def instrument_tokens(self) -> list[str]:
        return [g.split(".", 1)[1] for g in self.joined if g.startswith("instrument.")]

    # -- group message handlers: one per message type the feed sends ------------------------
    # The feed sends each update already encoded as the JSON clients receive: pass it on as is.
    async def feed_ticks(self, event: dict) -> None:
        await self.send(text_data=event["json"])

    async def feed_status(self, event: dict) -> None:
        await self.send(text_data=event["json"])

    async def bar_closed(self, event: dict) -> None:
        await self.send(text_data=event["json"])

    async def chain_analytics(self, event: dict) -> None:
        await self.send(text_data=event["json"])


@database_sync_to_async
def user_for_api_token(token: str):
    """The active user an API (knox) token belongs to, or None for a wrong or expired token."""
    try:
        user, _ = TokenAuthentication().authenticate_credentials(token.encode())
    except (AuthenticationFailed, UnicodeError):
        return None
    return user


class StreamConsumer(FeedGroupsMixin, AsyncWebsocketConsumer):
    """/ws/stream/: channels in, `{"type", "channel", "data"}` frames out (marketdata.stream)."""

    async def connect(self) -> None:
        self.subscribed: set[str] = set()
        self.authenticated = False
        token = api_token(self.scope.get("query_string", b""))
        # A token, when given, is the only credential: asgi.py lets such sockets in without an
        # Origin check, so a session cookie riding along from another site must not count.
        if token is not None:
            user = await user_for_api_token(token)
        else:
            user = self.scope.get("user")
        # Accepted before closing: a socket closed during the handshake reaches the client as a bare
        # HTTP 403, and daphne drops close reasons, so a program learns why from the error message.
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.send(text_data=error_frame("unauthenticated", UNAUTHENTICATED_REASON))
            await self.close(code=UNAUTHENTICATED_CLOSE_CODE, reason=UNAUTHENTICATED_REASON)
            return
        self.scope["user"] = user
        self.authenticated = True

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "subscribed", ()):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.stop_watching()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.authenticated:  # sent before our close reached the client
            return
        try:
            request = parse_request(text_data)
        except RequestError as error:
            await self.send(text_data=error.frame())
            return
        change = plan_subscriptions(request, self.subscribed)
        for group in change.remove:
            self.subscribed.discard(group)
            await self.channel_layer.group_discard(group, self.channel_name)
        for group in change.add:
            await self.channel_layer.group_add(group, self.channel_name)
            self.subscribed.add(group)
        for error in change.error_frames():
            await self.send(text_data=error)
        self.watch_instruments()
        await self.send(text_data=subscribed_frame(self.subscribed))

    def instrument_tokens(self) -> list[str]:
        return [g.split(".", 1)[1] for g in self.subscribed if g.startswith("instrument.")]

    # -- group message handlers: the feed's JSON, converted once per process (marketdata.stream) --
    async def _relay(self, event: dict) -> None:
        for text in stream_frames(event["json"]):
            await self.send(text_data=text)

    feed_ticks = feed_status = bar_closed = chain_analytics = _relay
