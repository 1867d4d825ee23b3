"""Pages: login everywhere, each user sees only their own accounts, account editing."""

from __future__ import annotations

import pytest

from instruments.models import BrokerAccount

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/", "/accounts/", "/accounts/new/", "/kite/callback/"])
def test_an_anonymous_visitor_is_sent_to_log_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={path}"


def test_the_login_page_logs_a_user_in(client, alice):
    response = client.post("/login/", {"username": "alice", "password": "alice-password-1"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert "Good to see you, alice" in client.get("/").content.decode()


def test_a_wrong_password_is_refused(client, alice):
    response = client.post("/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "Your username and password didn't match" in response.content.decode()
    assert client.get("/").status_code == 302  # still logged out


def test_each_user_sees_only_their_own_accounts(client, alice, bob):
    BrokerAccount.objects.create(user=alice, label="Alice main", api_key="a")
    BrokerAccount.objects.create(user=bob, label="Bob main", api_key="b")
    client.force_login(bob)
    for path in ("/", "/accounts/"):
        page = client.get(path).content.decode()
        assert "Bob main" in page and "Alice main" not in page


def test_a_user_adds_a_kite_account_with_its_secret_stored(client, alice):
    client.force_login(alice)
    response = client.post("/accounts/new/", {"label": "Main", "api_key": " key1 ", "api_secret": "s3cret-value"})
    assert response.status_code == 302
    account = BrokerAccount.objects.get(user=alice)
    assert (account.label, account.api_key, account.api_secret, account.kind) == (
        "Main",
        "key1",
        "s3cret-value",
        "kite",
    )


def test_a_new_account_needs_a_secret_and_a_unique_label(client, alice):
    BrokerAccount.objects.create(user=alice, label="Main", api_key="k")
    client.force_login(alice)
    response = client.post("/accounts/new/", {"label": "Main", "api_key": "key2", "api_secret": ""})
    page = response.content.decode()
    assert response.status_code == 200
    assert "You already have an account with this label." in page
    assert "This field is required." in page
    assert BrokerAccount.objects.filter(user=alice).count() == 1


def test_editing_with_a_blank_secret_keeps_the_secret_and_the_session(client, alice):
    account = BrokerAccount.objects.create(
        user=alice, label="Main", api_key="k", api_secret="old-secret", access_token="tok"
    )
    client.force_login(alice)
    client.post(f"/accounts/{account.pk}/edit/", {"label": "Renamed", "api_key": "k", "api_secret": ""})
    account.refresh_from_db()
    assert (account.label, account.api_secret, account.access_token) == ("Renamed", "old-secret", "tok")


def test_a_new_api_key_drops_the_old_session(client, alice):
    account = BrokerAccount.objects.create(
        user=alice, label="Main", api_key="k", api_secret="old-secret", access_token="tok"
    )
    client.force_login(alice)
    client.post(f"/accounts/{account.pk}/edit/", {"label": "Main", "api_key": "k2", "api_secret": ""})
    account.refresh_from_db()
    assert account.access_token == "" and account.token_state == BrokerAccount.TokenState.MISSING


def test_bob_cannot_edit_alices_account(client, alice, bob):
    account = BrokerAccount.objects.create(user=alice, label="Main", api_key="k")
    client.force_login(bob)
    assert client.get(f"/accounts/{account.pk}/edit/").status_code == 404
    assert client.post(f"/accounts/{account.pk}/edit/", {"label": "x", "api_key": "y"}).status_code == 404


def test_the_home_page_shows_whether_the_feed_is_reporting(client, alice):
    import json

    import redis
    from django.conf import settings

    from marketdata.groups import FEED_STATUS_KEY

    store = redis.Redis.from_url(settings.REDIS_URL)
    store.delete(FEED_STATUS_KEY)
    client.force_login(alice)
    assert '<p id="feed-hint" class="muted">No feed is reporting.' in client.get("/").content.decode()

    status = {
        "state": "running",
        "source": "sim",
        "session": "simulated",
        "instruments": 258,
        "ticks_per_s": 512.5,
        "lag_ms": 40,
        "ticks_total": 9000,
        "frame_errors": 2,
        "ticks_dropped": 0,
    }
    store.set(FEED_STATUS_KEY, json.dumps(status), ex=10)
    page = client.get("/").content.decode()
    store.delete(FEED_STATUS_KEY)
    assert '<span id="feed-instruments">258</span>' in page and '<span id="feed-tps">512</span>' in page
    assert '<span id="feed-frame-errors">2</span>' in page and '<span id="feed-dropped">0</span>' in page
    assert '<p id="feed-hint" class="muted"></p>' in page  # a running feed: no "start one" hint
