"""The ticker's JSON requests: subscribe, unsubscribe and mode messages, and their validation.

Kite takes ``{"a": "subscribe" | "unsubscribe", "v": [tokens]}`` and
``{"a": "mode", "v": [mode, [tokens]]}`` as text messages, at most TOKENS_PER_MESSAGE tokens
each. ``KiteTickerClient`` (marketdata/kite/client.py) validates what callers hand it with
``check_mode`` and ``unique_tokens`` and sends what ``encode_messages`` and
``resubscribe_messages`` build; keeping them here lets the wire format be read without the
socket handling around it. Pure stdlib, no Django.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable

MODES = ("ltp", "quote", "full")
TOKENS_PER_MESSAGE = 3000


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")


def unique_tokens(tokens: Iterable[int]) -> list[int]:
    """Tokens as ints, in order, without repeats; Kite wants numbers on the wire, not strings."""
    unique: dict[int, None] = {}
    for token in tokens:
        if isinstance(token, bool):
            raise TypeError("instrument tokens are integers, not booleans")
        value = operator.index(token)
        if not 0 < value < 2**32:
            raise ValueError(f"instrument token out of range: {value}")
        unique[value] = None
    return list(unique)


def encode_messages(action: str, tokens: list[int], mode: str | None = None) -> list[str]:
    """The ``action`` request for ``tokens`` (with ``mode`` for "mode"), split at TOKENS_PER_MESSAGE."""
    messages = []
    for start in range(0, len(tokens), TOKENS_PER_MESSAGE):
        chunk = tokens[start : start + TOKENS_PER_MESSAGE]
        value = chunk if mode is None else [mode, chunk]
        messages.append(json.dumps({"a": action, "v": value}, separators=(",", ":")))
    return messages


def resubscribe_messages(tokens: dict[int, str]) -> list[str]:
    """What a fresh socket sends first: subscribe every token, then set each mode (Kite starts them in quote)."""
    by_mode: dict[str, list[int]] = {}
    for token, mode in tokens.items():
        by_mode.setdefault(mode, []).append(token)
    messages = encode_messages("subscribe", list(tokens))
    for mode, batch in by_mode.items():
        messages += encode_messages("mode", batch, mode)
    return messages
