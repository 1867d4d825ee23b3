"""Shared fixtures: the people, and Kite played by a local server speaking its protocol."""

from __future__ import annotations

import os

import pytest

from instruments.models import BrokerAccount
from tests.kite_server import KiteServer

CALLBACK_URL = "http://testserver/kite/callback/"


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-password-1")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="bob-password-1")


@pytest.fixture
def kite_server(settings):
    """A Kite-like REST server on a free port, with the settings pointing at it."""
    with KiteServer() as server:
        settings.KITE_API_ROOT = server.url
        settings.KITE_LOGIN_URL = server.login_url
        yield server


@pytest.fixture
def alice_kite_account(alice, kite_server) -> BrokerAccount:
    """Alice's Kite app, registered with the Kite server and stored (secret encrypted) in our database."""
    kite_server.kite.register_app("alicekey123", "alice-secret-xyz", CALLBACK_URL, user_id="AL1234")
    return BrokerAccount.objects.create(user=alice, label="Main", api_key="alicekey123", api_secret="alice-secret-xyz")


@pytest.fixture
def subprocess_env(transactional_db) -> dict[str, str]:
    """The environment for a child process (daphne, run_feed) that must use the test database."""
    from django.db import connection

    db = connection.settings_dict
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
    }
