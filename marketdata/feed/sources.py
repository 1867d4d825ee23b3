"""Where ticks come from: Kite's ticker, the market simulator, or a replay of stored ticks.

Every source hands the runner binary frames in Kite's exact protocol, so the same
parser and pipeline serve all three. A source also follows the runner's subscription
changes and reports its own status (connections, session).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable

from marketdata.feed.universe import SubscriptionChange, UnderlyingUniverse
from marketdata.kite import build_frame
from marketdata.kite.client import KiteTickerClient

log = logging.getLogger(__name__)

FrameSink = Callable[[bytes, float], object]
# Kite sends at most a few hundred packets a frame; the simulator and replay do the same.
PACKETS_PER_FRAME = 500


async def wait_or_stop(stopped: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if the source is stopped meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopped.wait(), timeout=seconds)


def frames_of(ticks: list[dict]) -> list[bytes]:
    return [build_frame(ticks[i : i + PACKETS_PER_FRAME]) for i in range(0, len(ticks), PACKETS_PER_FRAME)]


class SimSource:
    """The market simulator, emitting real Kite frames for the subscribed instruments."""

    name = "sim"

    def __init__(
        self, universes: list[UnderlyingUniverse], *, seed: int, speed: float, start: dt.datetime, step_seconds=0.1
    ) -> None:
        # Imported here: the simulator needs SciPy (about 40 MB), which a Kite feed never uses.
        from marketdata.sim.market import MarketSimulator

        self.simulator = MarketSimulator(
            [sim_underlying(u) for u in universes if u.spot_token], seed=seed, start=start, speed=speed
        )
        self.step_seconds = step_seconds
        self.subscribed: set[int] = set()
        self._new: set[int] = set()
        self._stopped = asyncio.Event()

    def apply(self, change: SubscriptionChange) -> None:
        self._new |= set(change.add) - self.subscribed
        self.subscribed |= set(change.add)
        self.subscribed -= change.remove

    def market_time(self) -> float:
        return self.simulator.now.timestamp()

    def status(self) -> dict:
        return {"session": "simulated", "connections_up": 1, "connections_wanted": 1}

    async def run(self, sink: FrameSink) -> None:
        while not self._stopped.is_set():
            ticks = []
            if self._new:
                fresh, self._new = self._new, set()
                ticks += [t for t in self.simulator.snapshot() if t["instrument_token"] in fresh]
            ticks += [t for t in self.simulator.step(self.step_seconds) if t["instrument_token"] in self.subscribed]
            received_at = time.time()
            for frame in frames_of(ticks):
                sink(frame, received_at)
            await wait_or_stop(self._stopped, self.step_seconds)

    async def stop(self) -> None:
        self._stopped.set()


def sim_underlying(universe: UnderlyingUniverse):
    from marketdata.sim.market import SimContract, SimUnderlying

    contracts = tuple(
        SimContract(
            instrument_token=c.instrument_token,
            kind=c.kind,
            strike=c.strike,
            expiry=c.expiry,
            lot_size=c.lot_size,
            tick_size=c.tick_size,
        )
        for c in (*universe.futures, *universe.options)
    )
    return SimUnderlying(
        symbol=universe.symbol,
        index_token=universe.spot_token,
        spot=universe.reference_spot or 1000.0,
        strike_step=universe.strike_step,
        contracts=contracts,
        risk_free_rate=universe.risk_free_rate,
        dividend_yield=universe.dividend_yield,
    )


class KiteSource:
    """Kite's ticker through the data account's session; waits for a login when the session is gone."""

    name = "kite"
    SESSION_POLL_SECONDS = 15.0

    def __init__(
        self,
        *,
        url: str,
        load_session: Callable[[], tuple[str, str] | None],
        on_session_expired: Callable[[], None],
        on_order: Callable[[dict], None] | None = None,
        client_options: dict | None = None,
    ) -> None:
        """`load_session` returns (api_key, access_token) of the data account, or None (it may query the database)."""
        self.url = url
        self.load_session = load_session
        self.on_session_expired = on_session_expired
        self.on_order = on_order
        self.client_options = client_options or {}
        self.client: KiteTickerClient | None = None
        self.session_state = "connecting"
        self._wanted: dict[int, str] = {}
        self._stopped = asyncio.Event()

    def apply(self, change: SubscriptionChange) -> None:
        self._wanted.update(change.add)
        for token in change.remove:
            self._wanted.pop(token, None)
        if self.client is not None:
            self._subscribe(self.client, change.add)
            if change.remove:
                self.client.unsubscribe(change.remove)

    def market_time(self) -> float:
        return time.time()

    def status(self) -> dict:
        client_status = self.client.status if self.client else None
        return {
            "session": self.session_state,
            "connections_up": client_status.connections_up if client_status else 0,
            "connections_wanted": client_status.connections_wanted if client_status else 0,
            "reconnects": client_status.reconnects if client_status else 0,
            "last_error": client_status.last_error if client_status else None,
        }

    async def run(self, sink: FrameSink) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopped.is_set():
            try:
                session = await loop.run_in_executor(None, self.load_session)
            except Exception:  # the database is down, say: keep the feed process up and try again
                log.exception("could not read the Kite session; retrying in %.0f s", self.SESSION_POLL_SECONDS)
                await wait_or_stop(self._stopped, self.SESSION_POLL_SECONDS)
                continue
            if session is None:
                self.session_state = "session expired"
                await wait_or_stop(self._stopped, self.SESSION_POLL_SECONDS)
                continue
            api_key, access_token = session
            self.session_state = "connecting"
            self.client = KiteTickerClient(
                api_key=api_key,
                access_token=access_token,
                url=self.url,
                on_frame=lambda frame: sink(frame, time.time()),
                on_text=self.on_order,
                on_status=self._client_status,
                **self.client_options,
            )
            self._subscribe(self.client, self._wanted)
            await self.client.run()
            if self.client.status.state == "session_expired":
                self.session_state = "session expired"
                await loop.run_in_executor(None, self.on_session_expired)
            elif not self._stopped.is_set():
                await wait_or_stop(self._stopped, self.SESSION_POLL_SECONDS)

    async def stop(self) -> None:
        self._stopped.set()
        if self.client is not None:
            await self.client.stop()

    def _client_status(self, status) -> None:
        if status.state == "connected":
            self.session_state = "connected"
        elif status.state == "session_expired":
            self.session_state = "session expired"

    @staticmethod
    def _subscribe(client: KiteTickerClient, tokens: dict[int, str]) -> None:
        by_mode: dict[str, list[int]] = {}
        for token, mode in tokens.items():
            by_mode.setdefault(mode, []).append(token)
        for mode, mode_tokens in by_mode.items():
            client.subscribe(mode_tokens, mode)


class ReplaySource:
    """Stored ticks of one day, in order, at `speed` times real time (0 = as fast as possible)."""

    name = "replay"

    def __init__(self, *, load_ticks: Callable[[], list[dict]], speed: float) -> None:
        """`load_ticks` returns the day's ticks as build_frame dicts, in exchange-time order (it may query)."""
        self.load_ticks = load_ticks
        self.speed = speed
        self.ticks_total = 0
        self.ticks_sent = 0
        self.finished = asyncio.Event()
        self._market_time = 0.0
        self._stopped = asyncio.Event()

    def apply(self, change: SubscriptionChange) -> None:
        """A replay sends what was recorded, whatever is subscribed."""

    def market_time(self) -> float:
        return self._market_time

    def status(self) -> dict:
        return {
            "session": "replay",
            "connections_up": 0 if self.finished.is_set() else 1,
            "connections_wanted": 1,
            "replayed": f"{self.ticks_sent}/{self.ticks_total}",
        }

    async def run(self, sink: FrameSink) -> None:
        loop = asyncio.get_running_loop()
        ticks = await loop.run_in_executor(None, self.load_ticks)
        self.ticks_total = len(ticks)
        started_real, started_market = time.monotonic(), None
        index = 0
        while index < len(ticks) and not self._stopped.is_set():
            second = int(ticks[index]["exchange_timestamp"].timestamp())
            end = index
            while end < len(ticks) and int(ticks[end]["exchange_timestamp"].timestamp()) == second:
                end += 1
            if started_market is None:
                started_market = second
            if self.speed > 0:
                due = started_real + (second - started_market) / self.speed
                if (wait := due - time.monotonic()) > 0:
                    await wait_or_stop(self._stopped, wait)
            self._market_time = float(second)
            for frame in frames_of(ticks[index:end]):
                sink(frame, time.time())
            self.ticks_sent = end
            index = end
            await asyncio.sleep(0)
        self._market_time += 60  # let the last minute's bars close
        self.finished.set()

    async def stop(self) -> None:
        self._stopped.set()
