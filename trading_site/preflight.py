"""Check that the services the product needs answer, and say how to start any that do not.

`python -m trading_site.preflight` is run by `make run`; the test suite runs the same
checks before it starts, so a stopped PostgreSQL or Redis gives one clear line,
not hundreds of tracebacks. Needs no Django settings.
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

from trading_site.env import redact_url

HOW_TO_START = {
    "Redis": "redis-server --daemonize yes --bind 127.0.0.1 --port 6379  (or set REDIS_URL)",
    "PostgreSQL": "pg_ctlcluster <version> main start, or service postgresql start  (or set the URL)",
}


def redis_problem(url: str) -> str | None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except (redis.RedisError, OSError, ValueError) as error:
        return f"Redis is not reachable at {redact_url(url)} ({error}). Start it with: {HOW_TO_START['Redis']}"
    return None


def postgres_problem(url: str, *, variable: str) -> str | None:
    import psycopg

    parts = urlsplit(url)
    try:
        psycopg.connect(
            host=parts.hostname or None,
            port=parts.port or 5432,
            user=parts.username or None,
            password=parts.password or None,
            dbname=(parts.path or "/").lstrip("/") or None,
            connect_timeout=3,
        ).close()
    except psycopg.Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return (
            f"PostgreSQL is not reachable at {redact_url(url)} ({variable}): {reason}. "
            f"Start it with: {HOW_TO_START['PostgreSQL']}"
        )
    return None


def problems(*, database_url: str, redis_url: str, database_variable: str = "DATABASE_URL") -> list[str]:
    found = [redis_problem(redis_url)]
    if urlsplit(database_url).scheme.startswith("postgres"):
        found.append(postgres_problem(database_url, variable=database_variable))
    return [problem for problem in found if problem]


def main() -> int:
    import os

    found = problems(
        database_url=os.environ.get("DATABASE_URL", "sqlite:///"),
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
