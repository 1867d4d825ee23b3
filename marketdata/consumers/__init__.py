"""Websocket consumers: the JSON feed and stream for programs (feed.py), and the live pages
(pages.py and one module a page), which turn the same group messages into HTML fragments."""

from marketdata.consumers.feed import (
    UNAUTHENTICATED_CLOSE_CODE,
    UNAUTHENTICATED_REASON,
    FeedConsumer,
    FeedGroupsMixin,
    StreamConsumer,
)

__all__ = [
    "UNAUTHENTICATED_CLOSE_CODE",
    "UNAUTHENTICATED_REASON",
    "FeedConsumer",
    "FeedGroupsMixin",
    "StreamConsumer",
]
