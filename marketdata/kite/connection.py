"""Dialling Kite's ticker, apart from the client's bookkeeping of who is subscribed where.

``KiteTickerClient`` (marketdata/kite/client.py) decides *when* a socket opens, streams and
closes; this module holds what it needs for each attempt and nothing that knows about the
client itself:

- ``connect_url`` and ``open_socket``: the URL (the access token travels in its query) and the
  handshake options Kite expects;
- ``backoff_delays``: how long to wait before the next attempt after a drop or a failed handshake;
- ``token_redactor`` and ``RedactingLogger``: masking of the access token, because it is in the
  URL and websockets' debug log prints the request line, and errors may echo it back;
- ``Connection``: the state of one of the client's (up to three) sockets.

Pure asyncio + websockets, no Django.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.uri import parse_uri

# A full-mode frame for 3000 instruments is 2 + 3000 * (2 + 184) bytes, about 560 kB.
MAX_MESSAGE_BYTES = 4 * 2**20
REDACTED = "[redacted]"


def connect_url(url: str, *, api_key: str, access_token: str) -> str:
    """``url`` with Kite's ``api_key`` and ``access_token`` in its query; websockets' InvalidURI if malformed."""
    parse_uri(url)  # a malformed URL is a configuration error, not something to retry
    query = urlencode({"api_key": api_key, "access_token": access_token})
    return f"{url}{'&' if '?' in url else '?'}{query}"


async def open_socket(url: str, *, heartbeat_timeout: float, logger: logging.LoggerAdapter) -> ClientConnection:
    """One websocket handshake with Kite; raises what ``websockets.connect`` raises."""
    return await connect(
        url,
        additional_headers={"X-Kite-Version": "3"},
        compression=None,  # Kite's own clients do not negotiate permessage-deflate
        ping_interval=None,  # silence is the liveness rule: see KiteTickerClient._watch
        close_timeout=min(heartbeat_timeout, 5.0),
        max_size=MAX_MESSAGE_BYTES,
        logger=logger,
    )


def backoff_delays(
    initial: float, maximum: float, *, factor: float = 2.0, jitter: float = 0.25, rng: random.Random | None = None
) -> Iterator[float]:
    """Reconnect delays: ``initial``, then ``factor`` times more per failure, capped at ``maximum``.

    Each delay is shaved by up to ``jitter`` of itself, so three connections (and many users)
    dropped by the same network blip do not knock on Kite at the same instant; it never exceeds
    the cap.
    """
    rng = rng or random.Random()
    base = min(initial, maximum)
    while True:
        yield base * (1.0 - jitter * rng.random())
        base = min(base * factor, maximum)


# Kite's access tokens are 32 characters; anything this long cannot be an ordinary word, so
# replacing it wherever it appears never mangles the rest of a message.
_MIN_BARE_SECRET = 8
_TOKEN_PARAMETER = re.compile(r"(access_token=)[^&\s'\"]+")


def token_redactor(access_token: str) -> Callable[[str], str]:
    """A function that hides ``access_token`` in a text: any access_token=... query value, and the
    token itself (as given or URL-quoted) wherever it appears, when it is long enough to be a secret."""
    secrets = [s for s in {access_token, quote(access_token, safe="")} if len(s) >= _MIN_BARE_SECRET]

    def redact(text: str) -> str:
        text = _TOKEN_PARAMETER.sub(rf"\g<1>{REDACTED}", text)
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        return text

    return redact


class RedactingLogger(logging.LoggerAdapter):
    """Hands websockets a logger that masks the access token (its debug log prints the request path)."""

    def __init__(self, target: logging.Logger, redact: Callable[[str], str]) -> None:
        super().__init__(target, {})
        self._redact = redact

    def log(self, level, msg, *args, **kwargs):  # type: ignore[override]
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, self._redact(text), **kwargs)


@dataclass(eq=False)
class Connection:
    """One of the client's sockets: the tokens sharded onto it and its current websocket, if up."""

    number: int  # 1-based, for log lines
    tokens: dict[int, str] = field(default_factory=dict)
    outbox: deque[str] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    websocket: ClientConnection | None = None
    task: asyncio.Task[None] | None = None
    retrying: bool = False
    retry_delay: float | None = None
    last_received: float = 0.0
    end_reason: str | None = None  # "idle" or "silent" when we closed it ourselves
