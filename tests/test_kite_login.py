"""The Kite login flow, end to end against a local server that speaks Kite's protocol."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from instruments.models import BrokerAccount
from trading_site.clock import IST, frozen_clock

pytestmark = pytest.mark.django_db


def start_login(client, account) -> str:
    """Press 'Log in to Kite' and follow Kite's login page back; returns our callback path with its query."""
    response = client.get(f"/accounts/{account.pk}/kite/login/")
    assert response.status_code == 302
    kite_login = response["Location"]
    # The browser now logs in at Kite, which redirects it to the app's registered redirect URL.
    at_kite = requests.get(kite_login, allow_redirects=False, timeout=5)
    assert at_kite.status_code == 302
    back = urlsplit(at_kite.headers["Location"])
    return f"{back.path}?{back.query}"


def test_login_button_sends_the_browser_to_kites_login_page_with_the_api_key(
    client, alice, alice_kite_account, kite_server
):
    client.force_login(alice)
    response = client.get(f"/accounts/{alice_kite_account.pk}/kite/login/")
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == kite_server.login_url
    assert parse_qs(location.query) == {"api_key": ["alicekey123"], "v": ["3"]}


def test_a_completed_login_stores_an_encrypted_access_token_valid_until_6am(
    client, alice, alice_kite_account, kite_server
):
    client.force_login(alice)
    with frozen_clock(dt.datetime(2026, 11, 23, 9, 5, tzinfo=IST)):
        callback = start_login(client, alice_kite_account)
        response = client.get(callback, follow=True)
        alice_kite_account.refresh_from_db()
        assert alice_kite_account.token_state == BrokerAccount.TokenState.VALID

    assert alice_kite_account.access_token
    assert kite_server.kite.access_token_valid("alicekey123", alice_kite_account.access_token)
    assert alice_kite_account.kite_user_id == "AL1234"
    assert alice_kite_account.access_token_expires_at == dt.datetime(2026, 11, 24, 6, 0, tzinfo=IST)
    page = response.content.decode()
    assert "Connected Main to Kite as AL1234" in page
    assert "24 Nov 06:00 IST" in page
    assert alice_kite_account.access_token not in page


def test_a_wrong_api_secret_is_reported_as_such(client, alice, alice_kite_account):
    alice_kite_account.api_secret = "not-the-secret"
    alice_kite_account.save()
    client.force_login(alice)
    response = client.get(start_login(client, alice_kite_account), follow=True)
    alice_kite_account.refresh_from_db()
    assert alice_kite_account.token_state == BrokerAccount.TokenState.MISSING
    assert "the API secret stored for this account is wrong" in response.content.decode()


def test_a_stale_request_token_asks_to_log_in_again(client, alice, alice_kite_account, kite_server):
    client.force_login(alice)
    callback = start_login(client, alice_kite_account)
    kite_server.kite.age_request_tokens(seconds=600)
    response = client.get(callback, follow=True)
    alice_kite_account.refresh_from_db()
    assert alice_kite_account.token_state == BrokerAccount.TokenState.MISSING
    assert "request token is invalid or has expired" in response.content.decode()


def test_a_request_token_works_only_once(client, alice, alice_kite_account):
    client.force_login(alice)
    callback = start_login(client, alice_kite_account)
    client.get(callback)
    first_token = BrokerAccount.objects.get(pk=alice_kite_account.pk).access_token
    # Replaying the same redirect (browser back button) must not replace the session.
    client.get(f"/accounts/{alice_kite_account.pk}/kite/login/")
    response = client.get(callback, follow=True)
    assert "request token is invalid or has expired" in response.content.decode()
    assert BrokerAccount.objects.get(pk=alice_kite_account.pk).access_token == first_token


def test_a_callback_without_request_token_explains_the_redirect_url(client, alice, alice_kite_account):
    client.force_login(alice)
    client.get(f"/accounts/{alice_kite_account.pk}/kite/login/")
    response = client.get("/kite/callback/?action=login&status=success", follow=True)
    assert "came back without a request_token" in response.content.decode()


def test_a_cancelled_login_says_kite_did_not_complete_it(client, alice, alice_kite_account):
    client.force_login(alice)
    client.get(f"/accounts/{alice_kite_account.pk}/kite/login/")
    response = client.get("/kite/callback/?action=login&status=cancelled", follow=True)
    assert "Kite did not complete the login (status: cancelled)" in response.content.decode()


def test_a_callback_this_browser_did_not_start_is_refused(client, alice, alice_kite_account, kite_server):
    # Someone else's request token pushed into alice's browser (login CSRF) must not bind to her account.
    token = kite_server.kite.issue_request_token("alicekey123")
    client.force_login(alice)
    response = client.get(f"/kite/callback/?request_token={token}&action=login&status=success", follow=True)
    assert "No Kite login was in progress" in response.content.decode()
    alice_kite_account.refresh_from_db()
    assert alice_kite_account.access_token == ""


def test_a_callback_after_15_minutes_is_refused(client, alice, alice_kite_account):
    client.force_login(alice)
    with frozen_clock(dt.datetime(2026, 11, 23, 9, 0, tzinfo=IST)):
        callback = start_login(client, alice_kite_account)
    with frozen_clock(dt.datetime(2026, 11, 23, 9, 16, tzinfo=IST)):
        response = client.get(callback, follow=True)
    assert "took longer than 15 minutes" in response.content.decode()


def test_bob_cannot_start_a_login_on_alices_account(client, bob, alice_kite_account):
    client.force_login(bob)
    assert client.get(f"/accounts/{alice_kite_account.pk}/kite/login/").status_code == 404


def test_an_account_without_api_key_cannot_start_a_login(client, alice):
    account = BrokerAccount.objects.create(user=alice, label="Empty", api_key="")
    client.force_login(alice)
    response = client.get(f"/accounts/{account.pk}/kite/login/", follow=True)
    assert "has no Kite API key" in response.content.decode()


def test_after_6am_the_session_reads_expired_log_in_again(client, alice, alice_kite_account):
    client.force_login(alice)
    with frozen_clock(dt.datetime(2026, 11, 23, 20, 0, tzinfo=IST)):
        client.get(start_login(client, alice_kite_account))
    with frozen_clock(dt.datetime(2026, 11, 24, 6, 0, 1, tzinfo=IST)):
        alice_kite_account.refresh_from_db()
        assert alice_kite_account.token_state == BrokerAccount.TokenState.EXPIRED
        page = client.get("/accounts/").content.decode()
    assert "Expired, log in again" in page


def test_when_kite_is_unreachable_the_user_is_told_and_nothing_is_stored(client, alice, alice_kite_account, settings):
    client.force_login(alice)
    callback = start_login(client, alice_kite_account)
    settings.KITE_API_ROOT = "http://127.0.0.1:9"  # discard port: connection refused
    response = client.get(callback, follow=True)
    assert "Could not reach Kite to finish the login" in response.content.decode()
    alice_kite_account.refresh_from_db()
    assert alice_kite_account.access_token == ""
