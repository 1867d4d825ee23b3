"""Broker secrets are encrypted in the database and never shown or logged in full."""

from __future__ import annotations

import logging

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from instruments.models import BrokerAccount
from trading_site.fields import SecretDecryptionError

pytestmark = pytest.mark.django_db

SECRET = "api-secret-VERY-private-1234"
TOKEN = "access-token-also-private-9876"


def raw_columns(account_id: int) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_secret, access_token FROM instruments_brokeraccount WHERE id = %s", [account_id])
        return cursor.fetchone()


@pytest.fixture
def account(alice) -> BrokerAccount:
    return BrokerAccount.objects.create(user=alice, label="Main", api_key="key1", api_secret=SECRET, access_token=TOKEN)


def test_secrets_are_unreadable_in_the_database(account):
    stored_secret, stored_token = raw_columns(account.pk)
    assert SECRET not in stored_secret and TOKEN not in stored_token
    assert stored_secret.startswith("gAAAA")  # a Fernet token
    assert BrokerAccount.objects.get(pk=account.pk).api_secret == SECRET


def test_the_same_secret_encrypts_differently_each_time(alice, account):
    other = BrokerAccount.objects.create(user=alice, label="Second", api_key="key2", api_secret=SECRET)
    assert raw_columns(account.pk)[0] != raw_columns(other.pk)[0]


def test_a_rotated_key_still_reads_old_secrets(account, settings):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old_key]
    assert BrokerAccount.objects.get(pk=account.pk).api_secret == SECRET
    account.api_secret = SECRET
    account.save()
    settings.FIELD_ENCRYPTION_KEYS = settings.FIELD_ENCRYPTION_KEYS[:1]  # the old key retired
    assert BrokerAccount.objects.get(pk=account.pk).api_secret == SECRET


def test_a_lost_key_is_a_clear_error_not_garbage(account, settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(SecretDecryptionError, match=r"BrokerAccount\.api_secret cannot be decrypted"):
        BrokerAccount.objects.get(pk=account.pk)


def test_secrets_are_masked_and_kept_out_of_str_and_repr(account):
    assert account.masked_api_secret == "••••1234"
    assert account.masked_access_token == "••••9876"
    for text in (str(account), repr(account)):
        assert SECRET not in text and TOKEN not in text


def test_pages_show_only_the_masked_secret(client, alice, account):
    client.force_login(alice)
    page = client.get("/accounts/").content.decode()
    assert "••••1234" in page
    assert SECRET not in page and TOKEN not in page


def test_saving_an_account_logs_no_secret(client, alice, account, caplog):
    client.force_login(alice)
    with caplog.at_level(logging.DEBUG):
        client.post(
            f"/accounts/{account.pk}/edit/",
            {"label": "Main", "api_key": "key1", "api_secret": "a-brand-new-secret-5555"},
        )
    assert "a-brand-new-secret-5555" not in caplog.text
    assert BrokerAccount.objects.get(pk=account.pk).api_secret == "a-brand-new-secret-5555"
