"""Websocket URL routes of every app, gathered in one list for asgi.py."""

from django.urls import path

from marketdata.consumers import FeedConsumer, StreamConsumer
from marketdata.consumers.chain import ChainPageConsumer
from marketdata.consumers.dashboard import DashboardPageConsumer
from marketdata.consumers.pages import StatusPageConsumer
from marketdata.consumers.watchlist import WatchlistPageConsumer

websocket_urlpatterns = [
    path("ws/feed/", FeedConsumer.as_asgi()),
    path("ws/stream/", StreamConsumer.as_asgi()),
    # The live pages' sockets (HTML fragments for htmx), one per page.
    path("ws/ui/status/", StatusPageConsumer.as_asgi()),
    path("ws/ui/dashboard/", DashboardPageConsumer.as_asgi()),
    path("ws/ui/chain/<str:symbol>/<str:expiry>/", ChainPageConsumer.as_asgi()),
    path("ws/ui/watchlist/", WatchlistPageConsumer.as_asgi()),
]

# Sockets for programs: given `?token=`, their consumer authenticates by that API token alone and
# ignores the session cookie, so asgi.py checks the Origin only of browsers' sockets without one.
PROGRAM_SOCKET_PATHS = frozenset({"/ws/stream/"})
