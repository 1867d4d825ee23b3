"""ASGI entry point: HTTP goes to Django, websockets to Channels consumers.

Run with `daphne trading_site.asgi:application`.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trading_site.settings")
# Django must be set up before anything imports models, so build the HTTP app first.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from marketdata.stream import api_token  # noqa: E402
from trading_site.routing import PROGRAM_SOCKET_PATHS, websocket_urlpatterns  # noqa: E402


class OwnPagesOrPrograms:
    """Browsers' websockets only from pages served by our own hosts; programs' too on their paths.

    A browser sends the session cookie with any site's websocket, and always an Origin header, so
    a browser's socket must come from our own pages (Channels' check, which also refuses sockets
    with no Origin). A program sends no Origin and cannot be made to ride someone else's cookie;
    a socket with `?token=` is authenticated by the token alone, which no other site can supply.
    On PROGRAM_SOCKET_PATHS those two skip the check; the consumer closes the unauthenticated
    ones with 4401.
    """

    def __init__(self, application) -> None:
        self.application = application
        self.origin_checked = AllowedHostsOriginValidator(application)

    async def __call__(self, scope, receive, send):
        if scope["path"] in PROGRAM_SOCKET_PATHS and (
            api_token(scope.get("query_string", b"")) is not None
            or not any(name == b"origin" for name, _ in scope.get("headers", ()))
        ):
            return await self.application(scope, receive, send)
        return await self.origin_checked(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Session (or, for programs, API token) auth on sockets; browsers' only from our own pages.
        "websocket": OwnPagesOrPrograms(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
