"""Model fields shared by the apps."""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@lru_cache(maxsize=4)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _fernet() -> MultiFernet:
    # Keyed on the tuple so that tests overriding the setting get their own instance.
    return _fernet_for(tuple(settings.FIELD_ENCRYPTION_KEYS))


class SecretDecryptionError(ImproperlyConfigured):
    """A stored secret could not be decrypted with any configured key."""


class EncryptedTextField(models.TextField):
    """Text encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

    The column holds only the Fernet token; Python sees the plain value. The first
    key of FIELD_ENCRYPTION_KEY encrypts, every key decrypts, so keys can be rotated
    by prepending a new one. Encryption is randomised: the column cannot be searched.
    An empty string is stored as it is, so "not set yet" needs no decryption.
    """

    description = "Text encrypted with Fernet"

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        try:
            return _fernet().decrypt(value.encode()).decode()
        except InvalidToken:
            raise SecretDecryptionError(
                f"{self.model.__name__}.{self.name} cannot be decrypted with FIELD_ENCRYPTION_KEY: "
                "the key was changed or lost. Restore it, or add the old key after the new one."
            ) from None

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return _fernet().encrypt(value.encode()).decode()
