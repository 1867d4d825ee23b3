"""Asking for chain analytics: which option chains changed, and when each may be refreshed.

The feed does not compute IV or Greeks itself (that would stall the socket): for every chain
whose contracts ticked it asks a Celery worker (marketdata.tasks.refresh_chain) for a refresh,

- at most once every `refresh_ms` per chain, and as soon as that interval allows, so that a
  change reaches the chain's page within `refresh_ms` plus the worker's own time;
- never while a refresh of that chain is still queued: a Redis marker (SET NX with a TTL) is
  set here and deleted by the task when it starts. A busy or stopped worker therefore gets one
  waiting refresh per chain, not a growing queue; the chain stays marked as changed and is
  asked for again once the marker is gone (or has expired, if a worker died holding it).

It also writes each chain's layout to Redis (the contracts currently streamed, with their
strikes and the spot and future tokens), which is all the task needs besides the latest ticks.
Those reach Redis at each conflation round; a chain's own changes are written just before its
refresh is asked for, so the task sees the very tick that asked for it.

No Django import: the request is a callable handed in by run_feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from marketdata.feed.state import FeedState
from marketdata.feed.universe import SubscriptionPlanner
from marketdata.groups import chain_key

log = logging.getLogger(__name__)

# A queued refresh that no worker has started within this long is presumed lost (the worker
# died, or the broker dropped it): the marker expires and the feed may ask again. Tasks are
# sent with the same expiry, so a late worker drops them instead of computing stale figures.
PENDING_TTL_SECONDS = 10
LAYOUT_TTL_SECONDS = 36 * 3600

RequestRefresh = Callable[[str, dt.date], None]


@dataclass(frozen=True)
class ChainId:
    symbol: str
    expiry: dt.date


class ChainRefresher:
    def __init__(
        self,
        *,
        state: FeedState,
        planner: SubscriptionPlanner,
        request: RequestRefresh,
        redis_client,
        refresh_ms: int,
        write_latest: Callable[[np.ndarray], Awaitable[None]] | None = None,
    ) -> None:
        self.state = state
        self.write_latest = write_latest
        self.planner = planner
        self.request = request
        self.redis = redis_client
        self.interval = refresh_ms / 1000
        self.chains: list[ChainId] = []
        self.chain_of_slot = np.full(state.capacity, -1, dtype=np.int64)  # options: their chain
        self.underlying_of_slot = np.full(state.capacity, -1, dtype=np.int64)  # spot and future
        self.chains_of_underlying: list[list[int]] = []
        self.changed: set[int] = set()  # indexes into self.chains
        self.last_requested: dict[int, float] = {}
        self.requests_sent = 0
        self.requests_skipped_pending = 0
        self.request_errors = 0
        self._layouts_due = True
        # Celery's publish is blocking network I/O: one thread keeps it off the event loop and in order.
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feed-chain-refresh")

    def assign(self) -> None:
        """Map the state's slots to their chains again (after the subscriptions changed)."""
        chains: dict[ChainId, int] = {}
        self.chain_of_slot[:] = -1
        self.underlying_of_slot[:] = -1
        self.chains_of_underlying = []
        for underlying_index, universe in enumerate(self.planner.universes.values()):
            indexes = [chains.setdefault(ChainId(universe.symbol, expiry), len(chains)) for expiry in universe.expiries]
            self.chains_of_underlying.append(indexes)
            for contract in universe.options:
                slot = self.state.slot(contract.instrument_token)
                if slot is not None:
                    self.chain_of_slot[slot] = chains[ChainId(universe.symbol, contract.expiry)]
            # Spot and future move every figure of every chain of their underlying.
            for token in universe.fixed_tokens():
                slot = self.state.slot(token)
                if slot is not None:
                    self.underlying_of_slot[slot] = underlying_index
        self.chains = list(chains)
        self.changed = {index for index in self.changed if index < len(self.chains)}
        self._layouts_due = True

    async def run_once(self) -> None:
        """Note the chains that ticked since the last call and ask for those whose time has come."""
        if self._layouts_due:
            await self.write_layouts()
        slots = self.state.take_chain_changed()
        if slots.size:
            chains = np.unique(self.chain_of_slot[slots])
            self.changed.update(chains[chains >= 0].tolist())
            underlyings = np.unique(self.underlying_of_slot[slots])
            for underlying_index in underlyings[underlyings >= 0].tolist():
                self.changed.update(self.chains_of_underlying[underlying_index])
        now = time.monotonic()
        for index in sorted(self.changed):
            if now - self.last_requested.get(index, float("-inf")) >= self.interval:
                await self._ask(index, now)

    async def _ask(self, index: int, now: float) -> None:
        chain = self.chains[index]
        pending = chain_key(chain.symbol, chain.expiry, "pending")
        try:
            if not await self.redis.set(pending, "1", nx=True, ex=PENDING_TTL_SECONDS):
                self.requests_skipped_pending += 1
                return  # the last request still waits for a worker: it will see this change too
        except Exception as error:
            self._error(f"pending marker for {chain.symbol} {chain.expiry}", error)
            return
        self.changed.discard(index)
        self.last_requested[index] = now
        loop = asyncio.get_running_loop()
        try:
            if self.write_latest is not None:
                await self.write_latest(self._unpublished_slots(index))
            await loop.run_in_executor(self._sender, self.request, chain.symbol, chain.expiry)
            self.requests_sent += 1
        except Exception as error:
            self._error(f"refresh request for {chain.symbol} {chain.expiry}", error)
            self.changed.add(index)
            with contextlib.suppress(Exception):  # else the marker's TTL clears it
                await self.redis.delete(pending)

    def _unpublished_slots(self, index: int) -> np.ndarray:
        """The chain's slots (with its spot and future) changed since the last conflation round."""
        underlying = next(u for u, chains in enumerate(self.chains_of_underlying) if index in chains)
        mine = (self.chain_of_slot == index) | (self.underlying_of_slot == underlying)
        return np.flatnonzero(mine & self.state.changed)

    async def write_layouts(self) -> None:
        layouts = chain_layouts(self.planner)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for (symbol, expiry), layout in layouts.items():
                    pipe.set(chain_key(symbol, expiry, "layout"), json.dumps(layout), ex=LAYOUT_TTL_SECONDS)
                await pipe.execute()
            self._layouts_due = False
        except Exception as error:
            self._error("chain layout write", error)

    def close(self) -> None:
        self._sender.shutdown(wait=True)

    def status(self) -> dict:
        return {
            "chain_refreshes_requested": self.requests_sent,
            "chain_refreshes_waiting_on_worker": self.requests_skipped_pending,
            "chain_refresh_errors": self.request_errors,
        }

    def _error(self, what: str, error: Exception) -> None:
        self.request_errors += 1
        if self.request_errors == 1 or self.request_errors % 1000 == 0:
            log.warning("%s failed (%d failures so far): %s", what, self.request_errors, error)


def chain_layouts(planner: SubscriptionPlanner) -> dict[tuple[str, dt.date], dict]:
    """Each streamed chain's layout: the subscribed contracts, and the tokens of spot and future."""
    layouts = {}
    for universe in planner.universes.values():
        future = universe.futures[0] if universe.futures else None
        for expiry in universe.expiries:
            contracts = [
                [c.instrument_token, c.tradingsymbol, c.kind, c.strike]
                for c in universe.options
                if c.expiry == expiry and c.instrument_token in planner.subscribed
            ]
            lot_sizes = {c.lot_size for c in universe.options if c.expiry == expiry}
            layouts[(universe.symbol, expiry)] = {
                "symbol": universe.symbol,
                "expiry": expiry.isoformat(),
                "spot_token": universe.spot_token,
                "future_token": future.instrument_token if future else None,
                "future_expiry": future.expiry.isoformat() if future else None,
                "lot_size": max(lot_sizes) if lot_sizes else 1,
                "strike_step": universe.strike_step,
                "risk_free_rate": universe.risk_free_rate,
                "dividend_yield": universe.dividend_yield,
                "contracts": contracts,
            }
    return layouts
