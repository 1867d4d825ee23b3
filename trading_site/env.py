"""Typed readers for settings that come from the environment.

Each helper returns a value of one type or raises ImproperlyConfigured naming the
variable and what was wrong with it, so a typo in a deployment fails at start-up
with a clear message rather than later with a confusing one.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

_TRUE_WORDS = {"1", "true", "yes", "on"}
_CREDENTIALS = re.compile(r":[^:@/]*@")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_FALSE_WORDS = {"0", "false", "no", "off"}


def load_env_file(path: Path) -> None:
    """Read KEY=VALUE lines from a local, git-ignored env file into os.environ.

    Variables already in the environment win, so a server's own settings are never
    overridden. Blank lines and # comments are skipped; values may be quoted. A line
    that is not KEY=VALUE stops start-up with its line number rather than being ignored.
    """
    if not path.exists():
        return
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, separator, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if not separator or not _ENV_NAME.fullmatch(name):
            raise ImproperlyConfigured(f"{path}, line {number}: expected NAME=value, got {raw!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        os.environ.setdefault(name, value)


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None else value.strip()


_RATE = re.compile(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)")


def env_rate(name: str, default: str) -> str:
    """A request rate as Django REST framework reads it: a count per s, min, hour or day ("600/min")."""
    value = (os.environ.get(name) or default).strip()
    if not _RATE.fullmatch(value):
        raise ImproperlyConfigured(f"{name}={value!r} must be a count per period, like 600/min or 10000/day.")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    # An empty value (NAME= in an env file) means "not set", never "off".
    if raw is None or not raw.strip():
        return default
    word = raw.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use one of 1/0, true/false, yes/no, on/off.")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below its minimum of {minimum}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={value} is above its maximum of {maximum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; blank items are dropped."""
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, default: str, *, schemes: tuple[str, ...]) -> str:
    raw = env_str(name, default) or ""
    scheme = urlsplit(raw).scheme
    if scheme not in schemes:
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ImproperlyConfigured(f"{name}={redact_url(raw)!r} must start with one of {allowed}.")
    return raw


def database_from_url(url: str, *, base_dir: Path, variable: str = "DATABASE_URL") -> dict:
    """Turn `postgres://user:pass@host:port/name?opt=v` or `sqlite:///path` into Django's DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ImproperlyConfigured(f"{variable} names no database: add /DBNAME after the host.")
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"{variable} has a port that is not a number.") from None
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            # A socket directory arrives percent-encoded: postgres://%2Fvar%2Frun%2Fpostgresql/db
            "HOST": unquote(parts.hostname or ""),
            "PORT": str(port or ""),
            "OPTIONS": dict(parse_qsl(parts.query)),
            # Reuse connections across requests; the feed and workers are long-lived anyway.
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    if parts.scheme == "sqlite":
        # sqlite:///relative/path or sqlite:////absolute/path, as in dj-database-url.
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if not path:
            raise ImproperlyConfigured(f"{variable} names no SQLite file: use sqlite:///var/db.sqlite3.")
        file = Path(path) if Path(path).is_absolute() else base_dir / path
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(file),
            # WAL lets the web process read while the feed and workers write. IMMEDIATE transactions
            # take the write lock when they begin, so a writer waits up to `timeout` for another;
            # a deferred one that reads first fails at once with "database is locked" instead.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
            },
        }
    raise ImproperlyConfigured(
        f"{variable} must start with postgres:// or sqlite:///, not {parts.scheme or 'nothing'}://."
    )


def fernet_keys(raw: str, *, variable: str = "FIELD_ENCRYPTION_KEY") -> list[str]:
    """A comma-separated list of Fernet keys: the first encrypts, all of them decrypt (key rotation)."""
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    if not keys:
        raise ImproperlyConfigured(f"{variable} is empty.")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"{variable}: key {position} is not a Fernet key (32 url-safe base64-encoded bytes). Make one with: "
                'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
            ) from None
    return keys


def development_secrets(path: Path) -> dict[str, str]:
    """Secrets for a development machine, generated once and kept in an ignored file.

    Only used when DEBUG is on and the real variables are unset: a production
    deployment must set SECRET_KEY and FIELD_ENCRYPTION_KEY itself.
    """
    stored: dict[str, str] = {}
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ImproperlyConfigured(f"{path} is not readable JSON ({error}); delete it to start afresh.") from None
        if not isinstance(stored, dict):
            raise ImproperlyConfigured(f"{path} does not hold a JSON object; delete it to start afresh.")
    wanted = {
        "SECRET_KEY": lambda: secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEY": lambda: Fernet.generate_key().decode(),
    }
    missing = {name: make() for name, make in wanted.items() if not stored.get(name)}
    if missing:
        stored.update(missing)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created owner-only from the first byte, not chmod-ed after being written.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(json.dumps(stored, indent=2))
    path.chmod(0o600)
    return stored


def redact_url(url: str) -> str:
    """Hide any user:password@ part, even in a URL whose scheme is missing or wrong."""
    return _CREDENTIALS.sub(":***@", url)
