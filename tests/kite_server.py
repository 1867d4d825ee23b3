"""A local HTTP server that answers like Kite Connect's REST API and login page.

The product's real kiteconnect client talks to it over HTTP (settings point
KITE_API_ROOT and KITE_LOGIN_URL here), so tests exercise the real code path:
headers, form encoding, checksums, error envelopes, gzipped CSV. Behaviour follows
Kite's documentation and observed responses:

- GET  /connect/login?api_key=&v=3 -> 302 to the app's redirect URL with
  request_token, action=login, type=login, status=success
- POST /session/token (api_key, request_token, checksum) -> the session; a wrong
  checksum is TokenException "Invalid `checksum`.", an unknown, used or stale request
  token is TokenException "Token is invalid or has expired."
- GET  /instruments[/EXCHANGE] -> gzipped CSV (text/csv)
- GET  /user/profile
Errors use Kite's envelope {"status": "error", "message", "error_type", "data": null}.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit


@dataclass
class KiteApp:
    api_key: str
    api_secret: str
    redirect_url: str
    user_id: str = "AB1234"
    user_name: str = "Asha Trader"


@dataclass
class FakeKite:
    """Kite's state: registered apps, issued tokens, the instrument master."""

    apps: dict[str, KiteApp] = field(default_factory=dict)
    request_token_lifetime_seconds: float = 300.0
    # exchange (or None for the whole master) -> CSV text
    instruments_csv: dict[str | None, str] = field(default_factory=dict)
    requests_seen: list[tuple[str, str]] = field(default_factory=list)
    _request_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    _access_tokens: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register_app(self, api_key: str, api_secret: str, redirect_url: str, **user) -> KiteApp:
        app = KiteApp(api_key=api_key, api_secret=api_secret, redirect_url=redirect_url, **user)
        self.apps[api_key] = app
        return app

    def issue_request_token(self, api_key: str) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._request_tokens[token] = (api_key, time.monotonic())
        return token

    def age_request_tokens(self, seconds: float) -> None:
        """Make every issued request token `seconds` older (to test staleness without sleeping)."""
        with self._lock:
            self._request_tokens = {t: (k, issued - seconds) for t, (k, issued) in self._request_tokens.items()}

    def expire_sessions(self) -> None:
        """What Kite does at 6 AM: every access token stops working."""
        with self._lock:
            self._access_tokens.clear()

    def grant_access_token(self, api_key: str) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._access_tokens[token] = api_key
        return token

    def access_token_valid(self, api_key: str, access_token: str) -> bool:
        with self._lock:
            return self._access_tokens.get(access_token) == api_key

    def redeem_request_token(self, api_key: str, request_token: str) -> bool:
        with self._lock:
            issued = self._request_tokens.pop(request_token, None)  # single use
        if issued is None or issued[0] != api_key:
            return False
        return time.monotonic() - issued[1] <= self.request_token_lifetime_seconds


class _Handler(BaseHTTPRequestHandler):
    server: _KiteHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # keep test output clean
        pass

    # -- routing -------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        kite = self.server.kite
        kite.requests_seen.append((method, url.path))
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if method == "GET" and url.path == "/connect/login":
            return self._login_page(query)
        if self.headers.get("X-Kite-Version") != "3":
            return self._error(400, "InputException", "Missing or invalid X-Kite-Version header.")
        if method == "POST" and url.path == "/session/token":
            return self._session_token(self._form())
        if method == "GET" and (url.path == "/instruments" or url.path.startswith("/instruments/")):
            if (app := self._authenticated()) is None:
                return None
            exchange = url.path.removeprefix("/instruments").strip("/") or None
            return self._instruments(exchange)
        if method == "GET" and url.path == "/user/profile":
            if (app := self._authenticated()) is None:
                return None
            return self._json(200, {"user_id": app.user_id, "user_name": app.user_name, "broker": "ZERODHA"})
        return self._error(404, "GeneralException", "Route not found")

    # -- endpoints -------------------------------------------------------------
    def _login_page(self, query: dict[str, str]) -> None:
        app = self.server.kite.apps.get(query.get("api_key", ""))
        if app is None or query.get("v") != "3":
            body = b"<h1>Invalid api_key or version</h1>"
            return self._send(400, "text/html", body)
        params = {
            "request_token": self.server.kite.issue_request_token(app.api_key),
            "action": "login",
            "type": "login",
            "status": "success",
        }
        separator = "&" if "?" in app.redirect_url else "?"
        self.send_response(302)
        self.send_header("Location", app.redirect_url + separator + urlencode(params))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _session_token(self, form: dict[str, str]) -> None:
        kite = self.server.kite
        app = kite.apps.get(form.get("api_key", ""))
        request_token = form.get("request_token", "")
        if app is None:
            return self._error(403, "TokenException", "Invalid `api_key`.")
        if not request_token or not form.get("checksum"):
            return self._error(400, "InputException", "Missing `request_token` or `checksum`.")
        expected = hashlib.sha256((app.api_key + request_token + app.api_secret).encode()).hexdigest()
        if not secrets.compare_digest(expected, form["checksum"]):
            return self._error(403, "TokenException", "Invalid `checksum`.")
        if not kite.redeem_request_token(app.api_key, request_token):
            return self._error(403, "TokenException", "Token is invalid or has expired.")
        access_token = kite.grant_access_token(app.api_key)
        return self._json(
            200,
            {
                "user_type": "individual",
                "email": "asha@example.com",
                "user_name": app.user_name,
                "user_shortname": app.user_name.split()[0],
                "broker": "ZERODHA",
                "exchanges": ["NSE", "NFO", "BSE", "BFO", "MCX"],
                "products": ["CNC", "NRML", "MIS"],
                "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
                "avatar_url": None,
                "user_id": app.user_id,
                "api_key": app.api_key,
                "access_token": access_token,
                "public_token": secrets.token_hex(16),
                "refresh_token": "",
                "enctoken": secrets.token_urlsafe(32),
                "login_time": time.strftime("%Y-%m-%d %H:%M:%S"),
                "meta": {"demat_consent": "consent"},
            },
        )

    def _instruments(self, exchange: str | None) -> None:
        csv_text = self.server.kite.instruments_csv.get(exchange)
        if csv_text is None:
            return self._error(400, "InputException", f"Invalid exchange {exchange}.")
        body = gzip.compress(csv_text.encode())
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # -- helpers ----------------------------------------------------------------
    def _authenticated(self) -> KiteApp | None:
        scheme, _, credentials = self.headers.get("Authorization", "").partition(" ")
        api_key, _, access_token = credentials.partition(":")
        app = self.server.kite.apps.get(api_key)
        if scheme != "token" or app is None or not self.server.kite.access_token_valid(api_key, access_token):
            self._error(403, "TokenException", "Incorrect `api_key` or `access_token`.")
            return None
        return app

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        return {k: v[-1] for k, v in parse_qs(raw).items()}

    def _json(self, status: int, data) -> None:
        self._send(status, "application/json", json.dumps({"status": "success", "data": data}).encode())

    def _error(self, status: int, error_type: str, message: str) -> None:
        envelope = {"status": "error", "message": message, "data": None, "error_type": error_type}
        self._send(status, "application/json", json.dumps(envelope).encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _KiteHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, kite: FakeKite) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.kite = kite


class KiteServer:
    """Runs a FakeKite on a free local port: `with KiteServer() as kite_server: ...`."""

    def __init__(self, kite: FakeKite | None = None) -> None:
        self.kite = kite or FakeKite()
        self._server = _KiteHTTPServer(self.kite)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kite", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def login_url(self) -> str:
        return self.url + "/connect/login"

    def __enter__(self) -> KiteServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
