"""/ws/ui/watchlist/: the watchlist page's socket. Quotes of the user's instruments, and the
market depth of the one the page selected.

It joins instrument.<token> of each entry (the feed publishes those, depth included, for watched
tokens). The page tells it two things with htmx's ws-send: `{"select": "<token>"}` when a row is
picked (the depth panel is swapped whole, then only its changed cells follow), and
`{"watchlist": "changed"}` after an add or remove over HTTP, when it reads the list again and
joins or leaves groups to match.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs

import redis
from channels.db import database_sync_to_async
from django.contrib.auth.base_user import AbstractBaseUser

from marketdata import selectors
from marketdata.consumers.pages import LivePageConsumer
from marketdata.fragments.html import SentCells
from marketdata.fragments.watchlist import (
    DEPTH_ID,
    Selection,
    choose_selection,
    depth_cells,
    depth_panel,
    parse_token,
    quote_cells,
)
from marketdata.groups import instrument_group

log = logging.getLogger(__name__)


@database_sync_to_async
def watched_instruments(user: AbstractBaseUser) -> dict[int, str]:
    """Token -> label of the user's entries, in the list's order."""
    return {entry.instrument.instrument_token: str(entry.instrument) for entry in selectors.watchlist_entries(user)}


async def stored_ticks(tokens: list[int]) -> dict[int, dict]:
    """The latest ticks in Redis: what the page shows until the groups speak (best level only)."""
    if not tokens:
        return {}
    try:
        return await asyncio.to_thread(selectors.latest_ticks, tokens)
    except redis.RedisError as error:  # Redis down: the groups' ticks fill the cells as they come
        log.warning("watchlist socket could not read the latest ticks: %s", error)
        return {}


class WatchlistPageConsumer(LivePageConsumer):
    async def start_page(self) -> list[str]:
        self.labels: dict[int, str] = {}
        self.ticks: dict[int, dict] = {}
        self.selected: int | None = None
        self.depth_due = True  # the panel goes whole at the first flush, then cell by cell
        # Tokens with a tick not yet looked at: a flush formats only those rows, not all fifty.
        self.unsent: set[int] = set()
        self.sent = SentCells()
        # The page asks for the instrument its first render showed (`?select=` of the page's URL).
        query = parse_qs(self.scope.get("query_string", b"").decode(errors="replace"))
        await self._read_list(parse_token(query.get("select", [""])[0]))
        return [instrument_group(token) for token in self.labels]

    async def _read_list(self, wanted: int | None) -> None:
        """Read the user's list (again), with the latest stored ticks of instruments new on it."""
        labels = await watched_instruments(self.scope["user"])
        stored = await stored_ticks([t for t in labels if t not in self.labels])
        # No await from here on: a flush in between would see half a list (a selection removed).
        self.labels = labels
        self.ticks = {t: tick for t, tick in self.ticks.items() if t in labels} | stored
        self.unsent = set(self.ticks)
        selected = choose_selection(wanted, list(labels))
        if selected != self.selected:
            self.selected, self.depth_due = selected, True

    async def on_client_message(self, message: dict) -> None:
        if "select" in message:
            token = parse_token(message["select"])
            if token is not None and token in self.labels and token != self.selected:
                self.selected, self.depth_due = token, True
        if "watchlist" in message:
            before = set(self.labels)
            await self._read_list(self.selected)
            await self.leave_groups([instrument_group(t) for t in before - set(self.labels)])
            await self.join_groups([instrument_group(t) for t in self.labels if t not in before])
            # The page redrew the list from Redis: send every row again at the next flush.
            self.sent.forget_texts("wl-")

    def on_ticks(self, ticks: list[dict]) -> None:
        for tick in ticks:
            token = tick.get("instrument_token")
            if token in self.labels:
                self.ticks[token] = tick  # shared with every socket (feed_message): never mutated
                self.unsent.add(token)

    def changed_fragments(self) -> list[str]:
        fragments = []
        for token in self.labels:  # in the list's order
            if token in self.unsent:
                fragments += self.sent.changed(quote_cells(token, self.ticks[token]))
        if self.depth_due:
            self.depth_due = False
            selection = None if self.selected is None else Selection(self.selected, self.labels[self.selected])
            tick = self.ticks.get(self.selected) if self.selected is not None else None
            fragments.append(depth_panel(selection, tick, swap=True))
            self.sent.forget_texts(f"{DEPTH_ID}-")
            self.sent.remember(depth_cells(tick) if selection is not None else [])
        elif self.selected in self.unsent:
            fragments += self.sent.changed(depth_cells(self.ticks[self.selected]))
        self.unsent.clear()
        return fragments
