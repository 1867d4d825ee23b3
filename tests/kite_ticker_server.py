"""A local websocket server that speaks Kite Connect's ticker protocol, for tests.

It plays wss://ws.kite.trade for our ticker client over real sockets:

- handshake: ``?api_key=&access_token=`` must match, else HTTP 403 (Kite's answer to an invalid
  or expired access token); header ``X-Kite-Version: 3``, else HTTP 400;
- client -> server JSON text: ``{"a": "subscribe"|"unsubscribe", "v": [tokens]}`` and
  ``{"a": "mode", "v": [mode, [tokens]]}``; new subscriptions start in quote mode, as on Kite; an
  unknown action or more than ``max_tokens_per_connection`` tokens gets a text
  ``{"type": "error", "data": ...}``;
- server -> client: binary market data frames, 1-byte heartbeats, text order postbacks/errors.

Tests drive it with ``send_binary``, ``send_text``, ``heartbeat_interval``, ``silent``, ``drop``,
``expire_session`` and ``fail_next_handshakes``. ``ThreadedKiteTickerServer`` runs one in a
background thread for synchronous tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

HEARTBEAT = b"\x00"
MODES = ("ltp", "quote", "full")
# The server sees access tokens in request paths and websockets logs those at DEBUG: tests that
# look for leaked tokens in their captured logs leave this logger out.
LOGGER_NAME = "tests.kite_ticker_server"
logger = logging.getLogger(LOGGER_NAME)


@dataclass(eq=False)
class TickerConnection:
    """One accepted socket, with what its client sent and what Kite would now stream to it."""

    websocket: ServerConnection
    number: int  # 1-based order of acceptance
    subscriptions: dict[int, str] = field(default_factory=dict)
    messages: list[Any] = field(default_factory=list)  # every JSON message, parsed
    raw_messages: list[str] = field(default_factory=list)  # every text message, as sent
    silent: bool = False  # sends nothing, heartbeats included
    close_code: int | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class Handshake:
    at: float  # time.monotonic()
    status: int  # 101 when accepted
    api_key: str | None


def ltp_frame(*ticks: tuple[int, int]) -> bytes:
    """A binary frame of LTP packets: (instrument_token, last_price in paise) each."""
    packets = [struct.pack(">hII", 8, token, price) for token, price in ticks]
    return struct.pack(">h", len(packets)) + b"".join(packets)


async def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


class KiteTickerServer:
    def __init__(
        self,
        api_key: str,
        access_token: str,
        *,
        heartbeat_interval: float | None = None,
        max_tokens_per_connection: int = 3000,
    ) -> None:
        self.api_key = api_key
        self.access_token = access_token
        self.heartbeat_interval = heartbeat_interval  # None: no heartbeats
        self.max_tokens_per_connection = max_tokens_per_connection
        self.silent = False  # True: no connection gets anything (heartbeats, data, text)
        self.connections: list[TickerConnection] = []
        self.closed_connections: list[TickerConnection] = []
        self.handshakes: list[Handshake] = []
        self.total_connections_accepted = 0
        self._session_expired = False
        self._failures: list[int] = []
        self._server: Server | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None

    # ---- lifecycle ----

    async def start(self) -> KiteTickerServer:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            compression=None,
            ping_interval=None,
            logger=logging.getLogger(f"{LOGGER_NAME}.websockets"),
        )
        self._heartbeat_task = asyncio.get_running_loop().create_task(self._heartbeats())
        return self

    async def stop(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> KiteTickerServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    # ---- scenario knobs ----

    def expire_session(self) -> None:
        """From now on handshakes with the token get 403; open sockets stay up (drop them to force it)."""
        self._session_expired = True

    def fail_next_handshakes(self, count: int, status: int = 500) -> None:
        self._failures.extend([status] * count)

    def connection_with(self, token: int) -> TickerConnection | None:
        return next((c for c in self.connections if token in c.subscriptions), None)

    @property
    def subscriptions(self) -> dict[int, str]:
        """Every live connection's subscriptions merged: what Kite streams for this API key."""
        return {token: mode for c in self.connections for token, mode in c.subscriptions.items()}

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 5.0) -> None:
        await wait_until(predicate, timeout)

    # ---- sending ----

    async def send_binary(self, frame: bytes, connection: int | TickerConnection | None = None) -> int:
        """Send a binary message to one connection (index or record) or all; returns how many got it."""
        return await self._send(frame, connection)

    async def send_text(self, message: Any, connection: int | TickerConnection | None = None) -> int:
        """Send a JSON text message (a str goes out as is, for malformed-message tests)."""
        return await self._send(message if isinstance(message, str) else json.dumps(message), connection)

    async def send_heartbeat(self, connection: int | TickerConnection | None = None) -> int:
        return await self._send(HEARTBEAT, connection)

    async def drop(self, connection: int | TickerConnection = 0) -> None:
        """Cut a connection without a closing handshake, as a network failure would."""
        record = self._targets(connection)[0]
        record.websocket.transport.abort()
        await asyncio.wait_for(record.closed.wait(), 5)

    async def close(self, connection: int | TickerConnection = 0, code: int = 1000, reason: str = "") -> None:
        """Close a connection cleanly with a close frame."""
        record = self._targets(connection)[0]
        await record.websocket.close(code, reason)
        await asyncio.wait_for(record.closed.wait(), 5)

    async def _send(self, data: str | bytes, connection: int | TickerConnection | None) -> int:
        if self.silent:
            return 0
        sent = 0
        for record in self._targets(connection):
            if record.silent:
                continue
            try:
                await record.websocket.send(data)
                sent += 1
            except ConnectionClosed:
                pass
        return sent

    def _targets(self, connection: int | TickerConnection | None) -> list[TickerConnection]:
        if connection is None:
            return list(self.connections)
        if isinstance(connection, TickerConnection):
            return [connection]
        return [self.connections[connection]]

    async def _heartbeats(self) -> None:
        while True:
            interval = self.heartbeat_interval
            await asyncio.sleep(interval or 0.05)
            if interval is not None and self.heartbeat_interval is not None:
                await self._send(HEARTBEAT, None)

    # ---- protocol ----

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        query = parse_qs(urlsplit(request.path).query)
        api_key = query.get("api_key", [None])[0]
        status = self._handshake_status(api_key, query.get("access_token", [None])[0], request.headers)
        self.handshakes.append(Handshake(at=time.monotonic(), status=status, api_key=api_key))
        if status == HTTPStatus.SWITCHING_PROTOCOLS:
            return None
        return connection.respond(status, f"{HTTPStatus(status).phrase}\n")

    def _handshake_status(self, api_key: str | None, access_token: str | None, headers: Headers) -> int:
        if self._failures:
            return self._failures.pop(0)
        if api_key != self.api_key or access_token != self.access_token or self._session_expired:
            return HTTPStatus.FORBIDDEN
        if headers.get("X-Kite-Version") != "3":
            return HTTPStatus.BAD_REQUEST
        return HTTPStatus.SWITCHING_PROTOCOLS

    async def _handle(self, websocket: ServerConnection) -> None:
        self.total_connections_accepted += 1
        record = TickerConnection(websocket=websocket, number=self.total_connections_accepted)
        self.connections.append(record)
        try:
            async for raw in websocket:
                if isinstance(raw, str):  # Kite ignores binary messages from clients
                    await self._on_message(record, raw)
        except ConnectionClosed:
            pass
        finally:
            record.close_code = websocket.close_code
            self.connections.remove(record)
            self.closed_connections.append(record)
            record.closed.set()

    async def _on_message(self, record: TickerConnection, raw: str) -> None:
        record.raw_messages.append(raw)
        try:
            message = json.loads(raw)
        except ValueError:
            await self._error(record, "Invalid message: not JSON")
            return
        record.messages.append(message)
        action = message.get("a") if isinstance(message, dict) else None
        value = message.get("v") if isinstance(message, dict) else None
        if action in ("subscribe", "unsubscribe"):
            tokens = _tokens(value)
            if tokens is None:
                await self._error(record, f"Invalid instrument tokens for {action}")
            elif action == "unsubscribe":
                for token in tokens:
                    record.subscriptions.pop(token, None)
            elif len(record.subscriptions.keys() | set(tokens)) > self.max_tokens_per_connection:
                await self._error(record, f"Maximum {self.max_tokens_per_connection} instruments per connection")
            else:
                for token in tokens:
                    record.subscriptions.setdefault(token, "quote")
        elif action == "mode":
            mode, tokens = value if isinstance(value, list) and len(value) == 2 else (None, None)
            tokens = _tokens(tokens)
            if mode not in MODES or tokens is None:
                await self._error(record, "Invalid mode message")
                return
            for token in tokens:
                if token in record.subscriptions:
                    record.subscriptions[token] = mode
        else:
            await self._error(record, f"Invalid action: {action!r}")

    async def _error(self, record: TickerConnection, text: str) -> None:
        await self._send(json.dumps({"type": "error", "data": text}), record)


def _tokens(value: Any) -> list[int] | None:
    if not isinstance(value, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        return None
    return value


class ThreadedKiteTickerServer:
    """A KiteTickerServer on its own event loop in a background thread, for synchronous code.

    Reads (``connections``, ``handshakes``, ``subscriptions``) go straight to the server's lists;
    actions run on the server's loop and block until done.
    """

    def __init__(self, api_key: str, access_token: str, **options: Any) -> None:
        self.server = KiteTickerServer(api_key, access_token, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kite-ticker-server", daemon=True)

    def start(self) -> ThreadedKiteTickerServer:
        self._thread.start()
        self._call(self.server.start())
        return self

    def stop(self) -> None:
        self._call(self.server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> ThreadedKiteTickerServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, coroutine: Any, timeout: float = 10.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def connections(self) -> list[TickerConnection]:
        return self.server.connections

    @property
    def handshakes(self) -> list[Handshake]:
        return self.server.handshakes

    @property
    def total_connections_accepted(self) -> int:
        return self.server.total_connections_accepted

    @property
    def subscriptions(self) -> dict[int, str]:
        return self._loop_call(lambda: self.server.subscriptions)

    def set_heartbeat_interval(self, seconds: float | None) -> None:
        self._loop_call(lambda: setattr(self.server, "heartbeat_interval", seconds))

    def set_silent(self, silent: bool) -> None:
        self._loop_call(lambda: setattr(self.server, "silent", silent))

    def expire_session(self) -> None:
        self._loop_call(self.server.expire_session)

    def fail_next_handshakes(self, count: int, status: int = 500) -> None:
        self._loop_call(lambda: self.server.fail_next_handshakes(count, status))

    def send_binary(self, frame: bytes, connection: int | TickerConnection | None = None) -> int:
        return self._call(self.server.send_binary(frame, connection))

    def send_text(self, message: Any, connection: int | TickerConnection | None = None) -> int:
        return self._call(self.server.send_text(message, connection))

    def send_heartbeat(self, connection: int | TickerConnection | None = None) -> int:
        return self._call(self.server.send_heartbeat(connection))

    def drop(self, connection: int | TickerConnection = 0) -> None:
        self._call(self.server.drop(connection))

    def close(self, connection: int | TickerConnection = 0, code: int = 1000, reason: str = "") -> None:
        self._call(self.server.close(connection, code, reason))

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 5.0) -> None:
        """Poll from the calling thread (the server keeps running meanwhile)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            time.sleep(0.01)

    def _loop_call(self, function: Callable[[], Any]) -> Any:
        async def call() -> Any:
            return function()

        return self._call(call())
