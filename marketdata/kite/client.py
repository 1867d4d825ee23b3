"""An asyncio client for Kite Connect's ticker websocket (wss://ws.kite.trade).

The client holds the *desired* subscriptions (instrument token -> mode) and keeps Kite's sockets
matching them: it shards tokens over up to three connections, subscribes and sets modes,
resubscribes after every reconnect, reconnects dropped or silent sockets with capped, jittered
exponential backoff, and gives up for good when Kite rejects the access token at the handshake.

Market data frames go to ``on_frame`` as raw bytes: parsing lives in the protocol modules, so the
receive loop stays tight. Pure asyncio + websockets, no Django.

What one handshake needs (URL, options, reconnect backoff, masking the access token in logs) lives
in ``marketdata.kite.connection`` and the JSON subscribe/mode messages in ``marketdata.kite.messages``.
This module keeps the client class whole, past the house ~400 lines: its per-connection loop shares
the client's counters, callbacks and run state, and splitting that across modules would hide more
than it shows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

# backoff_delays and the constants in __all__ stay importable from here, where they were first defined.
from marketdata.kite.connection import (
    MAX_MESSAGE_BYTES,
    REDACTED,
    Connection,
    RedactingLogger,
    backoff_delays,
    connect_url,
    open_socket,
    token_redactor,
)
from marketdata.kite.messages import (
    MODES,
    TOKENS_PER_MESSAGE,
    check_mode,
    encode_messages,
    resubscribe_messages,
    unique_tokens,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MIN_FRAME_BYTES",
    "MODES",
    "REDACTED",
    "TOKENS_PER_MESSAGE",
    "KiteTickerClient",
    "TickerStatus",
    "backoff_delays",
]

logger = logging.getLogger(__name__)

# Kite sends a 1-byte binary message when it has nothing else to send; a real frame starts with an
# int16 packet count, so anything shorter than 2 bytes carries no market data.
MIN_FRAME_BYTES = 2


@dataclass(frozen=True)
class TickerStatus:
    """A snapshot of the client; ``frames`` and ``heartbeats`` are running totals."""

    state: str  # connecting, connected, reconnecting, session_expired, stopped, failed
    connections_up: int = 0
    connections_wanted: int = 0
    instruments: int = 0
    last_error: str | None = None
    reconnects: int = 0  # retries that succeeded, after a drop, silence or failed handshake
    frames: int = 0
    heartbeats: int = 0
    retry_delay: float | None = None  # seconds a connection is waiting before its next attempt


class KiteTickerClient:
    """Kite's ticker for one API key: ``await client.run()`` until ``stop()``, an expired session or giving up.

    ``subscribe``/``unsubscribe``/``set_mode`` edit the desired set and may be called before or
    during ``run()``, from the event loop's thread (callbacks included). Callbacks run in the loop:
    ``on_frame`` gets every binary frame except heartbeats, raw; ``on_text`` gets the ``data`` of
    order postbacks; ``on_status`` gets a fresh ``TickerStatus`` whenever anything but the frame and
    heartbeat counters changes. The access token never reaches a log line or ``last_error``.
    """

    def __init__(
        self,
        *,
        api_key: str,
        access_token: str,
        url: str = "wss://ws.kite.trade",
        on_frame: Callable[[bytes], None],
        on_text: Callable[[dict], None] | None = None,
        on_status: Callable[[TickerStatus], None] | None = None,
        max_connections: int = 3,
        instruments_per_connection: int = 3000,
        heartbeat_timeout: float = 5.0,
        reconnect_initial_delay: float = 1.0,
        reconnect_max_delay: float = 60.0,
        max_reconnect_attempts: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not api_key or not access_token:
            raise ValueError("api_key and access_token are required")
        if max_connections < 1 or instruments_per_connection < 1:
            raise ValueError("max_connections and instruments_per_connection must be positive")
        if heartbeat_timeout <= 0 or not 0 < reconnect_initial_delay <= reconnect_max_delay:
            raise ValueError("need heartbeat_timeout > 0 and 0 < reconnect_initial_delay <= reconnect_max_delay")
        if max_reconnect_attempts is not None and max_reconnect_attempts < 0:
            raise ValueError("max_reconnect_attempts must be None or >= 0")
        self._connect_url = connect_url(url, api_key=api_key, access_token=access_token)
        self._redact = token_redactor(access_token)  # for every text that reaches a log line or last_error
        self._on_frame = on_frame
        self._on_text = on_text
        self._on_status = on_status
        self._per_connection = instruments_per_connection
        self._limit = max_connections * instruments_per_connection
        self._heartbeat_timeout = heartbeat_timeout
        self._initial_delay = reconnect_initial_delay
        self._max_delay = reconnect_max_delay
        self._max_attempts = max_reconnect_attempts
        self._rng = rng or random.Random()
        self._ws_logger = RedactingLogger(logging.getLogger(f"{__name__}.websockets"), self._redact)
        self._connections = [Connection(number) for number in range(1, max_connections + 1)]
        self._token_connection: dict[int, Connection] = {}
        self._terminal: str | None = "stopped"  # None while run() is running normally
        self._last_error: str | None = None
        self._reconnects = 0
        self._frames = 0
        self._heartbeats = 0
        self._published: TickerStatus | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finished: asyncio.Event | None = None
        self._run_done: asyncio.Event | None = None
        self._stop_requested = False

    # ---- desired subscriptions -------------------------------------------------------------

    @property
    def subscriptions(self) -> dict[int, str]:
        return {token: conn.tokens[token] for token, conn in self._token_connection.items()}

    def subscribe(self, tokens: Iterable[int], mode: str = "full") -> None:
        check_mode(mode)
        tokens = unique_tokens(tokens)
        new = [token for token in tokens if token not in self._token_connection]
        if len(self._token_connection) + len(new) > self._limit:
            raise ValueError(
                f"Kite allows at most {self._limit} instruments per API key "
                f"({len(self._connections)} connections x {self._per_connection}); "
                f"{len(self._token_connection)} subscribed + {len(new)} new would exceed it"
            )
        changed = [t for t in tokens if t in self._token_connection and self._token_connection[t].tokens[t] != mode]
        if changed:
            self.set_mode(mode, changed)
        for conn in self._connections:  # fill one connection before opening the next
            room = self._per_connection - len(conn.tokens)
            batch, new = new[:room], new[room:]
            if not batch:
                continue
            for token in batch:
                conn.tokens[token] = mode
                self._token_connection[token] = conn
            # Kite subscribes new tokens in quote mode, so the mode message always follows.
            self._send(conn, encode_messages("subscribe", batch) + encode_messages("mode", batch, mode))
            self._ensure_running(conn)
        self._publish()

    def unsubscribe(self, tokens: Iterable[int]) -> None:
        removed: dict[Connection, list[int]] = {}
        for token in unique_tokens(tokens):
            conn = self._token_connection.pop(token, None)
            if conn is not None:
                del conn.tokens[token]
                removed.setdefault(conn, []).append(token)
        for conn, batch in removed.items():
            self._send(conn, encode_messages("unsubscribe", batch))  # the writer closes a connection left empty
        self._publish()

    def set_mode(self, mode: str, tokens: Iterable[int]) -> None:
        check_mode(mode)
        changed: dict[Connection, list[int]] = {}
        for token in unique_tokens(tokens):
            conn = self._token_connection.get(token)
            if conn is None:
                logger.debug("set_mode ignores token %d: it is not subscribed", token)
                continue
            conn.tokens[token] = mode
            changed.setdefault(conn, []).append(token)
        for conn, batch in changed.items():
            self._send(conn, encode_messages("mode", batch, mode))

    def _send(self, conn: Connection, messages: list[str]) -> None:
        # While a connection is down there is nothing to queue: every (re)connect starts by
        # subscribing its whole current token set.
        if conn.websocket is not None:
            conn.outbox.extend(messages)
            conn.wakeup.set()

    # ---- status ----------------------------------------------------------------------------

    @property
    def status(self) -> TickerStatus:
        wanted = [conn for conn in self._connections if conn.tokens]
        down = [conn for conn in wanted if conn.websocket is None]
        if self._terminal is not None:
            state = self._terminal
        elif any(conn.retrying for conn in down):
            state = "reconnecting"
        else:
            state = "connecting" if down else "connected"
        delays = [conn.retry_delay for conn in self._connections if conn.retry_delay is not None]
        return TickerStatus(
            state=state,
            connections_up=len(wanted) - len(down),
            connections_wanted=len(wanted),
            instruments=len(self._token_connection),
            last_error=self._last_error,
            reconnects=self._reconnects,
            frames=self._frames,
            heartbeats=self._heartbeats,
            retry_delay=max(delays) if delays else None,
        )

    def _publish(self) -> None:
        """Tell on_status about a change; the frame and heartbeat counters alone do not count."""
        status = self.status
        key = replace(status, frames=0, heartbeats=0)
        if key == self._published:
            return
        self._published = key
        if self._on_status is not None:
            try:
                self._on_status(status)
            except Exception:
                logger.exception("on_status callback failed")

    def _record_error(self, message: str, level: int = logging.WARNING) -> None:
        self._last_error = self._redact(message)
        logger.log(level, "Kite ticker: %s", self._last_error)
        self._publish()

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        if self._run_done is not None and not self._run_done.is_set():
            raise RuntimeError("run() is already running")
        if self._stop_requested:  # stop() came first, e.g. before a run() task got scheduled
            self._stop_requested = False
            return
        self._loop = asyncio.get_running_loop()
        self._finished = asyncio.Event()
        self._run_done = asyncio.Event()
        self._terminal = None
        self._publish()
        try:
            for conn in self._connections:
                self._ensure_running(conn)
            await self._finished.wait()
        finally:
            await self._shutdown()
            if self._terminal is None:  # run() itself was cancelled
                self._terminal = "stopped"
            self._publish()
            self._run_done.set()

    async def stop(self) -> None:
        """Close every socket cleanly; run() returns. A finished run keeps its final state."""
        if self._run_done is None:  # run() not started yet (its task may be scheduled): make it return
            self._stop_requested = True
            return
        if self._run_done.is_set():
            return
        self._finish("stopped")
        await self._run_done.wait()

    def _finish(self, state: str, error: str | None = None) -> None:
        if self._terminal is None:
            self._terminal = state
        assert self._finished is not None
        self._finished.set()
        if error is None:
            self._publish()
        else:
            self._record_error(error, logging.ERROR)

    async def _shutdown(self) -> None:
        sockets = [conn.websocket for conn in self._connections if conn.websocket is not None]
        await asyncio.gather(*(websocket.close() for websocket in sockets), return_exceptions=True)
        tasks = [conn.task for conn in self._connections if conn.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in self._connections:
            conn.task, conn.websocket, conn.retrying, conn.retry_delay = None, None, False, None
            conn.outbox.clear()

    def _ensure_running(self, conn: Connection) -> None:
        """Open a connection lazily: only while run() runs and once it has tokens."""
        if self._loop is None or self._terminal is not None or not conn.tokens:
            return
        if conn.task is None or conn.task.done():
            conn.task = self._loop.create_task(self._run_connection(conn), name=f"kite-ticker-{conn.number}")
            conn.task.add_done_callback(self._connection_task_done)

    def _connection_task_done(self, task: asyncio.Task[None]) -> None:
        # A bug must not leave the client looking alive while one connection is dead for good.
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("Kite ticker connection task crashed", exc_info=exc)
            self._finish("failed", f"internal error: {type(exc).__name__}")

    # ---- one connection --------------------------------------------------------------------

    async def _run_connection(self, conn: Connection) -> None:
        assert self._finished is not None
        retries = 0
        delays: Iterator[float] | None = None
        while conn.tokens and not self._finished.is_set():
            if conn.retrying:
                if self._max_attempts is not None and retries >= self._max_attempts:
                    self._finish("failed", f"connection {conn.number}: gave up after {retries} reconnect attempts")
                    return
                delays = delays or backoff_delays(self._initial_delay, self._max_delay, rng=self._rng)
                conn.retry_delay = next(delays)
                self._publish()
                await asyncio.sleep(conn.retry_delay)
                conn.retry_delay = None
                retries += 1
                if not conn.tokens:
                    break
            try:
                websocket = await open_socket(
                    self._connect_url, heartbeat_timeout=self._heartbeat_timeout, logger=self._ws_logger
                )
            except InvalidStatus as exc:
                status_code = exc.response.status_code
                if status_code == 403:  # Kite's answer to an invalid or expired access token
                    self._finish(
                        "session_expired",
                        f"connection {conn.number}: Kite rejected the access token (HTTP 403); "
                        "the session has expired, log in again",
                    )
                    return
                self._connect_failed(conn, f"handshake rejected with HTTP {status_code}")
                continue
            except (OSError, TimeoutError, WebSocketException) as exc:
                self._connect_failed(conn, f"could not connect: {type(exc).__name__}: {exc}")
                continue
            if self._finished.is_set():
                await websocket.close()
                return
            if conn.retrying:
                self._reconnects += 1
            retries, conn.retrying = 0, False
            if await self._session(conn, websocket):
                delays = None  # it was healthy: the next drop starts the backoff afresh
        conn.retrying = False
        self._publish()

    def _connect_failed(self, conn: Connection, reason: str) -> None:
        conn.retrying = True
        self._record_error(f"connection {conn.number}: {reason}")

    async def _session(self, conn: Connection, websocket: ClientConnection) -> bool:
        """Stream on an open socket until it closes; True if it lived through a heartbeat window."""
        assert self._loop is not None
        conn.outbox = deque(resubscribe_messages(conn.tokens))
        conn.wakeup = asyncio.Event()  # bound to this loop, should run() be called again under another
        conn.websocket, conn.end_reason = websocket, None
        conn.last_received = opened = self._loop.time()
        logger.info("Kite ticker connection %d up, subscribing %d instruments", conn.number, len(conn.tokens))
        self._publish()
        writer = self._loop.create_task(self._write(conn, websocket))
        watchdog = self._loop.create_task(self._watch(conn, websocket))
        try:
            await self._read(conn, websocket)
        finally:
            writer.cancel()
            watchdog.cancel()
            await asyncio.gather(writer, watchdog, return_exceptions=True)
            conn.websocket = None
            conn.outbox.clear()
            conn.retrying = conn.end_reason != "idle"
        if conn.end_reason is None and not self._finished.is_set():  # Kite or the network closed it
            self._record_error(
                f"connection {conn.number} lost (code {websocket.close_code}, {websocket.close_reason or 'no reason'})"
            )
        else:
            self._publish()
        return self._loop.time() - opened >= self._heartbeat_timeout

    async def _read(self, conn: Connection, websocket: ClientConnection) -> None:
        assert self._loop is not None
        clock, on_frame = self._loop.time, self._on_frame
        try:
            async for message in websocket:
                conn.last_received = clock()
                if isinstance(message, bytes):
                    if len(message) < MIN_FRAME_BYTES:
                        self._heartbeats += 1
                        continue
                    self._frames += 1
                    try:
                        on_frame(message)
                    except Exception:
                        logger.exception("on_frame failed on a %d-byte frame; continuing", len(message))
                else:
                    self._handle_text(conn, message)
        except ConnectionClosed:
            pass

    async def _write(self, conn: Connection, websocket: ClientConnection) -> None:
        try:
            while True:
                while conn.outbox:
                    await websocket.send(conn.outbox.popleft())
                if not conn.tokens:  # everything unsubscribed: free the connection
                    conn.end_reason = "idle"
                    logger.info("Kite ticker connection %d has no instruments left; closing it", conn.number)
                    await websocket.close()
                    return
                conn.wakeup.clear()
                await conn.wakeup.wait()
        except ConnectionClosed:
            pass

    async def _watch(self, conn: Connection, websocket: ClientConnection) -> None:
        assert self._loop is not None
        timeout, clock = self._heartbeat_timeout, self._loop.time
        while (silent_for := clock() - conn.last_received) < timeout:
            await asyncio.sleep(timeout - silent_for)
        conn.end_reason = "silent"
        self._record_error(f"connection {conn.number}: nothing received for {timeout:g} s; reconnecting")
        websocket.transport.abort()  # a silent peer will not answer a closing handshake either

    def _handle_text(self, conn: Connection, text: str) -> None:
        try:
            message = json.loads(text)
            kind, data = message.get("type"), message.get("data")
        except (ValueError, AttributeError):
            logger.warning("Kite ticker connection %d: ignoring a text message that is not a JSON object", conn.number)
            return
        if kind == "order":
            if self._on_text is not None and isinstance(data, dict):
                try:
                    self._on_text(data)
                except Exception:
                    logger.exception("on_text failed on an order postback")
        elif kind == "error":
            self._record_error(f"Kite error on connection {conn.number}: {data}")
        elif kind == "message":
            logger.info("Kite message on connection %d: %s", conn.number, self._redact(str(data)))
        else:
            logger.debug("Kite ticker connection %d: ignoring text message of type %r", conn.number, kind)
