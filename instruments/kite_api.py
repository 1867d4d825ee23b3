"""The one place that builds kiteconnect clients.

Every Kite REST call goes through `kite_client`, so the API root and login URL
come from settings: in tests they point at a local server that speaks Kite's
protocol, in production at Kite itself.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from kiteconnect import KiteConnect

from trading_site.clock import IST

# Kite flushes access tokens every morning; 06:00 IST is when a session stops working.
SESSION_EXPIRY_TIME = dt.time(6, 0)


def kite_client(*, api_key: str, access_token: str | None = None) -> KiteConnect:
    client = KiteConnect(
        api_key=api_key,
        access_token=access_token or None,
        root=settings.KITE_API_ROOT,
        timeout=settings.KITE_TIMEOUT_SECONDS,
    )
    # kiteconnect reads the login page from a class attribute; shadow it per client.
    client._default_login_uri = settings.KITE_LOGIN_URL
    return client


def session_expires_at(logged_in_at: dt.datetime) -> dt.datetime:
    """The next 06:00 IST after `logged_in_at`: when Kite invalidates the access token."""
    local = logged_in_at.astimezone(IST)
    expiry = dt.datetime.combine(local.date(), SESSION_EXPIRY_TIME, tzinfo=IST)
    if expiry <= local:
        expiry += dt.timedelta(days=1)
    return expiry
