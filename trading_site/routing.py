"""Websocket URL routes of every app, gathered in one list for asgi.py."""

from django.urls import path

from marketdata.consumers import FeedConsumer, StreamConsumer

websocket_urlpatterns = [
    path("ws/feed/", FeedConsumer.as_asgi()),
    path("ws/stream/", StreamConsumer.as_asgi()),
]

# Sockets for programs: given `?token=`, their consumer authenticates by that API token alone and
# ignores the session cookie, so asgi.py checks the Origin only of browsers' sockets without one.
PROGRAM_SOCKET_PATHS = frozenset({"/ws/stream/"})
