"""Websocket consumers of the live feed.

`FeedConsumer` (/ws/feed/) is the plain JSON view of the feed's groups: a client
names the groups it wants (feed.status, ticks.<UNDERLYING>, chain.<UNDERLYING>.<YYYYMMDD>,
instrument.<token>) and receives each conflated message as JSON. Anonymous sockets
are closed with code 4401.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import parse_qs

import redis.asyncio as aioredis
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from marketdata.groups import (
    BAR_CLOSED_MESSAGE,
    CHAIN_ANALYTICS_MESSAGE,
    STATUS_MESSAGE,
    TICKS_MESSAGE,
    WATCH_SECONDS,
    WATCHED_INSTRUMENTS_KEY,
    is_feed_group,
)

UNAUTHENTICATED_CLOSE_CODE = 4401
FEED_MESSAGE_TYPES = frozenset({TICKS_MESSAGE, STATUS_MESSAGE, BAR_CLOSED_MESSAGE, CHAIN_ANALYTICS_MESSAGE})
MAX_GROUPS_PER_SOCKET = 100


class FeedConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        if not self.scope["user"].is_authenticated:
            await self.close(code=UNAUTHENTICATED_CLOSE_CODE)
            return
        self.joined: set[str] = set()
        self._watch_task: asyncio.Task | None = None
        await self.accept()
        query = parse_qs(self.scope.get("query_string", b"").decode())
        requested = [g for value in query.get("groups", []) for g in value.split(",") if g]
        if requested:
            await self.join(requested)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)
        if getattr(self, "_watch_task", None):
            self._watch_task.cancel()

    async def receive_json(self, content, **kwargs) -> None:
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
        if any(g.startswith("instrument.") for g in self.joined) and self._watch_task is None:
            self._watch_task = asyncio.create_task(self._keep_watching())
        await self.send_json({"type": "joined", "groups": sorted(self.joined)})

    async def _keep_watching(self) -> None:
        """Tell the feed which single instruments someone looks at (it publishes only those)."""
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        try:
            while True:
                tokens = [g.split(".", 1)[1] for g in self.joined if g.startswith("instrument.")]
                if tokens:
                    with contextlib.suppress(Exception):  # the feed falls back to not publishing them
                        await client.zadd(WATCHED_INSTRUMENTS_KEY, {t: time.time() + WATCH_SECONDS for t in tokens})
                await asyncio.sleep(WATCH_SECONDS / 3)
        finally:
            await client.aclose()

    async def dispatch(self, message: dict) -> None:
        # Channels closes stale database connections (a thread hop) before every message; feed
        # messages never touch the database, and at 100 sockets x 4 updates a second it adds up.
        if message.get("type") in FEED_MESSAGE_TYPES:
            await getattr(self, get_handler_name(message))(message)
        else:
            await super().dispatch(message)

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
