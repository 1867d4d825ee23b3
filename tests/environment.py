"""A pytest plugin loaded before Django (`-p tests.environment` in pyproject.toml).

pytest-django reads the settings while pytest starts, before any conftest.py, so
this is the one place that can point the settings at the test services:
TEST_DATABASE_URL (PostgreSQL) and TEST_REDIS_URL (a Redis database of its own).
It also checks both answer before a single test runs.
"""

from __future__ import annotations

import os

import pytest
from cryptography.fernet import Fernet

from trading_site import preflight

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

os.environ["DATABASE_URL"] = TEST_DATABASE_URL
os.environ["REDIS_URL"] = TEST_REDIS_URL
# Pub/sub ignores the database number: without a prefix of their own, the tests' sockets would
# hear a `make run` feed on the same Redis server, or another test run's. Child processes inherit it.
os.environ["CHANNEL_LAYER_PREFIX"] = f"desk-test-{os.getpid()}:channels"
os.environ["DEBUG"] = "0"
os.environ["SECRET_KEY"] = "test-only-secret-key-not-for-production"
os.environ["FIELD_ENCRYPTION_KEY"] = Fernet.generate_key().decode()
os.environ["SECURE_COOKIES"] = "0"
os.environ["ALLOWED_HOSTS"] = "localhost,127.0.0.1,testserver"


def pytest_sessionstart(session: pytest.Session) -> None:
    found = preflight.problems(
        database_url=TEST_DATABASE_URL, redis_url=TEST_REDIS_URL, database_variable="TEST_DATABASE_URL"
    )
    if found:
        pytest.exit("The tests need these services:\n  " + "\n  ".join(found), returncode=3)
