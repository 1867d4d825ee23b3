"""Every write of the instruments app: the master sync, underlyings, broker accounts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

import requests
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from kiteconnect import exceptions as kite_errors

from instruments import selectors
from instruments.kite_api import kite_client, session_expires_at
from instruments.master import DERIVATIVE_TYPES, MASTER_COLUMNS, MasterRow, RowError, decode_master, parse_master
from instruments.models import BrokerAccount, Instrument, Underlying
from instruments.upsert import upsert_instruments
from trading_site import clock

log = logging.getLogger(__name__)

# Columns a sync compares and writes, besides the natural key (exchange, tradingsymbol):
# Kite's own columns, then the two the desk adds.
MASTER_VALUE_FIELDS = tuple(column for column in MASTER_COLUMNS if column not in ("exchange", "tradingsymbol"))
SYNCED_FIELDS = (*MASTER_VALUE_FIELDS, "underlying_id", "active")
_ACTIVE_POSITION = SYNCED_FIELDS.index("active")
UPSERT_COLUMNS = ("exchange", "tradingsymbol", *SYNCED_FIELDS, "updated_at")
# Rows written per statement batch: small enough to report progress, large enough to be cheap.
WRITE_BATCH_SIZE = 10_000
# Ids per `pk IN (...)`: under the 999 bind parameters of older SQLite builds.
ID_BATCH_SIZE = 900
# Arbitrary constant naming the advisory lock that serialises syncs on PostgreSQL.
INSTRUMENT_SYNC_LOCK_ID = 0x1A57_0001

Progress = Callable[[str, int, int], None]


class KiteSessionError(Exception):
    """There is no usable Kite session for what was asked; the message says what to do."""


class KiteLoginError(Exception):
    """The Kite login could not complete; the message is meant for the user."""


@dataclass
class SyncReport:
    rows_read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    out_of_scope: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def loaded(self) -> int:
        return self.created + self.updated + self.unchanged

    def summary(self) -> str:
        parts = [
            f"{self.rows_read} rows read",
            f"{self.created} created",
            f"{self.updated} updated",
            f"{self.unchanged} unchanged",
            f"{self.deactivated} marked inactive",
            f"{len(self.errors)} skipped as bad",
        ]
        if self.out_of_scope:
            parts.append(f"{self.out_of_scope} outside the chosen exchanges or names")
        return ", ".join(parts)


# ---------------------------------------------------------------------------
# Instrument master
# ---------------------------------------------------------------------------
def instrument_sync(
    *,
    rows: Iterable[MasterRow],
    errors: Iterable[RowError] = (),
    exchanges: Collection[str] | None = None,
    names: Collection[str] | None = None,
    progress: Progress | None = None,
) -> SyncReport:
    """Make the Instrument table match a master, writing only what changed.

    `exchanges` and `names`, when given, limit the sync to part of the master:
    rows outside are ignored, and only instruments inside are marked inactive when
    missing. A second run over the same master changes nothing.
    """
    report = SyncReport(errors=list(errors))
    wanted: dict[tuple[str, str], MasterRow] = {}
    for row in rows:
        report.rows_read += 1
        if (exchanges and row.exchange not in exchanges) or (names and row.name not in names):
            report.out_of_scope += 1
            continue
        wanted[row.key] = row
    report.rows_read += len(report.errors)

    with transaction.atomic():
        _lock_instrument_sync()
        now = clock.now()
        underlying_ids = selectors.underlying_ids_by_contract_key()
        existing = _existing_instruments(exchanges=exchanges, names=names)

        to_write: list[tuple] = []
        for key, row in wanted.items():
            values = _synced_values(row, underlying_ids)
            current = existing.get(key)
            if current is None:
                report.created += 1
            elif current[1] == values:
                report.unchanged += 1
                continue
            else:
                report.updated += 1
            to_write.append((row.exchange, row.tradingsymbol, *values, now))

        for done in range(0, len(to_write), WRITE_BATCH_SIZE):
            upsert_instruments(UPSERT_COLUMNS, to_write[done : done + WRITE_BATCH_SIZE])
            if progress:
                progress("writing", min(done + WRITE_BATCH_SIZE, len(to_write)), len(to_write))

        gone = [pk for key, (pk, values) in existing.items() if key not in wanted and values[_ACTIVE_POSITION]]
        for done in range(0, len(gone), ID_BATCH_SIZE):
            report.deactivated += Instrument.objects.filter(pk__in=gone[done : done + ID_BATCH_SIZE]).update(
                active=False, updated_at=now
            )
    log.info("instrument sync: %s", report.summary())
    return report


def instrument_sync_from_text(
    *,
    text: str,
    exchanges: Collection[str] | None = None,
    names: Collection[str] | None = None,
    progress: Progress | None = None,
) -> SyncReport:
    """Parse a master in Kite's CSV format and sync it (raises MasterFormatError if it is not one)."""
    parsed = parse_master(text)
    if progress:
        progress("parsed", len(parsed.rows) + len(parsed.errors), len(parsed.rows) + len(parsed.errors))
    return instrument_sync(rows=parsed.rows, errors=parsed.errors, exchanges=exchanges, names=names, progress=progress)


def instrument_sync_from_kite(
    *,
    exchanges: Collection[str] | None = None,
    names: Collection[str] | None = None,
    progress: Progress | None = None,
) -> SyncReport:
    """Download the master through the data account's Kite session and sync it."""
    account = selectors.data_account()
    if account is None:
        raise KiteSessionError("No broker account is marked as the data account: mark one in the admin.")
    if not account.has_valid_session:
        raise KiteSessionError(f"The data account {account.label!r} has no valid Kite session: log in to Kite again.")
    client = kite_client(api_key=account.api_key, access_token=account.access_token)
    texts = []
    try:
        # kiteconnect's instruments() parses the CSV itself and dies on the first bad
        # row; fetching the raw CSV lets our parser report and skip bad rows instead.
        for exchange in exchanges or [None]:
            if exchange is None:
                raw = client._get("market.instruments.all")
            else:
                raw = client._get("market.instruments", url_args={"exchange": exchange})
            texts.append(decode_master(raw))
    except kite_errors.TokenException:
        broker_account_mark_session_expired(account=account)
        raise KiteSessionError(
            f"Kite says the session of {account.label!r} has expired: log in to Kite again."
        ) from None
    except kite_errors.KiteException as error:
        raise KiteSessionError(f"Kite refused the instrument download: {error}") from None
    except requests.RequestException as error:
        raise KiteSessionError(f"Could not reach Kite: {type(error).__name__}") from None

    rows: list[MasterRow] = []
    errors: list[RowError] = []
    for text in texts:
        parsed = parse_master(text)
        rows.extend(parsed.rows)
        errors.extend(parsed.errors)
    return instrument_sync(rows=rows, errors=errors, exchanges=exchanges, names=names, progress=progress)


def _lock_instrument_sync() -> None:
    # Two syncs at once (the 08:30 beat and a manual run) would each compute a diff
    # from the same snapshot; serialise them. SQLite already has one writer at a time.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [INSTRUMENT_SYNC_LOCK_ID])


def _existing_instruments(
    *, exchanges: Collection[str] | None, names: Collection[str] | None
) -> dict[tuple[str, str], tuple[int, tuple]]:
    rows = Instrument.objects.all()
    if exchanges:
        rows = rows.filter(exchange__in=list(exchanges))
    if names:
        rows = rows.filter(name__in=list(names))
    return {
        (exchange, symbol): (pk, tuple(values))
        for pk, exchange, symbol, *values in rows.order_by()
        .values_list("pk", "exchange", "tradingsymbol", *SYNCED_FIELDS)
        .iterator(chunk_size=WRITE_BATCH_SIZE)
    }


def _synced_values(row: MasterRow, underlying_ids: dict[tuple[str, str], int]) -> tuple:
    """The row's values in SYNCED_FIELDS order, as the database holds them for comparison."""
    underlying_id = underlying_ids.get((row.exchange, row.name)) if row.instrument_type in DERIVATIVE_TYPES else None
    return (*(getattr(row, field) for field in MASTER_VALUE_FIELDS), underlying_id, True)


# ---------------------------------------------------------------------------
# Underlyings
# ---------------------------------------------------------------------------
def underlying_link_instruments(*, underlying: Underlying) -> int:
    """Link the underlying's futures and options to it (and unlink any that no longer match).

    Returns how many contracts are linked. Called when an underlying is created or edited.
    """
    with transaction.atomic():
        Instrument.objects.filter(underlying=underlying).exclude(
            exchange=underlying.derivatives_exchange, name=underlying.symbol
        ).update(underlying=None)
        return Instrument.objects.filter(
            exchange=underlying.derivatives_exchange,
            name=underlying.symbol,
            instrument_type__in=sorted(DERIVATIVE_TYPES),
        ).update(underlying=underlying)


# ---------------------------------------------------------------------------
# Broker accounts and the Kite login
# ---------------------------------------------------------------------------
def broker_account_save(
    *,
    user: AbstractBaseUser,
    label: str,
    api_key: str,
    api_secret: str = "",
    account: BrokerAccount | None = None,
) -> BrokerAccount:
    """Create a Kite account for `user`, or update `account` (which must be theirs).

    A blank `api_secret` on update keeps the stored one. A new API key or secret
    invalidates the stored session: it belonged to the old app.
    """
    with transaction.atomic():
        if account is None:
            account = BrokerAccount(user=user, kind=BrokerAccount.Kind.KITE)
        else:
            # Re-read under a row lock: a login callback may be storing a token right now.
            account = BrokerAccount.objects.select_for_update().get(pk=account.pk, user=user)
        credentials_changed = account.pk is not None and (
            account.api_key != api_key or (api_secret and api_secret != account.api_secret)
        )
        account.label = label
        account.api_key = api_key
        if api_secret:
            account.api_secret = api_secret
        if credentials_changed:
            _clear_session(account)
        account.save()
    return account


def kite_login_url(*, account: BrokerAccount) -> str:
    if account.kind != BrokerAccount.Kind.KITE or not account.api_key:
        raise KiteLoginError(f"{account.label!r} has no Kite API key: add it before logging in.")
    return kite_client(api_key=account.api_key).login_url()


def broker_account_session_create(*, account: BrokerAccount, request_token: str) -> BrokerAccount:
    """Exchange a login's `request_token` for an access token and store it, encrypted."""
    if not account.api_secret:
        raise KiteLoginError(f"{account.label!r} has no API secret: add it, then log in again.")
    client = kite_client(api_key=account.api_key)
    try:
        session = client.generate_session(request_token, api_secret=account.api_secret)
    except kite_errors.TokenException as error:
        # Kite answers both a wrong secret and a stale token with TokenException;
        # only the message tells them apart.
        if "checksum" in str(error).lower():
            raise KiteLoginError(
                "Kite rejected the checksum: the API secret stored for this account is wrong. "
                "Copy it again from the Kite developer console."
            ) from None
        raise KiteLoginError(
            "Kite says the request token is invalid or has expired (it lasts a few minutes and works once). "
            "Log in to Kite again."
        ) from None
    except kite_errors.KiteException as error:
        raise KiteLoginError(f"Kite refused the login: {error}") from None
    except requests.RequestException as error:
        raise KiteLoginError(f"Could not reach Kite to finish the login ({type(error).__name__}); try again.") from None

    with transaction.atomic():
        account = BrokerAccount.objects.select_for_update().get(pk=account.pk)
        account.access_token = session["access_token"]
        account.access_token_expires_at = session_expires_at(clock.now())
        account.kite_user_id = session.get("user_id") or ""
        account.kite_user_name = session.get("user_name") or ""
        account.save()
    log.info("Kite session stored for broker account %s (Kite user %s)", account.pk, account.kite_user_id)
    return account


def broker_account_mark_session_expired(*, account: BrokerAccount) -> None:
    """Kite said the token is dead: forget it so every screen says 'log in again'."""
    with transaction.atomic():
        account = BrokerAccount.objects.select_for_update().get(pk=account.pk)
        _clear_session(account, keep_expired_marker=True)
        account.save()
    log.warning("Kite session of broker account %s expired", account.pk)


def broker_account_set_data_account(*, account: BrokerAccount) -> None:
    """Make `account` the one whose session feeds the ticker (and no other)."""
    if account.kind != BrokerAccount.Kind.KITE:
        raise ValueError("Only a Kite account can feed market data.")
    with transaction.atomic():
        BrokerAccount.objects.filter(is_data_account=True).exclude(pk=account.pk).update(is_data_account=False)
        BrokerAccount.objects.filter(pk=account.pk).update(is_data_account=True)


def _clear_session(account: BrokerAccount, *, keep_expired_marker: bool = False) -> None:
    if keep_expired_marker and account.access_token:
        # Keep an expiry in the past, so the state reads "expired" rather than "never connected".
        account.access_token_expires_at = clock.now()
        return
    account.access_token = ""
    account.access_token_expires_at = None


def broker_account_paper_ensure(*, user: AbstractBaseUser, label: str = "Paper") -> BrokerAccount:
    """The user's paper-trading account, created once."""
    account, _ = BrokerAccount.objects.get_or_create(
        user=user, label=label, defaults={"kind": BrokerAccount.Kind.PAPER}
    )
    return account


def underlying_ensure(*, symbol: str, defaults: dict, spot_instrument: Instrument | None) -> Underlying:
    """Create the underlying if it is missing, and fill in its spot instrument if it has none.

    Settings an operator changed in the admin are left as they are.
    """
    with transaction.atomic():
        underlying, _ = Underlying.objects.get_or_create(symbol=symbol, defaults=defaults)
        if spot_instrument is not None and underlying.spot_instrument_id is None:
            underlying.spot_instrument = spot_instrument
            underlying.save(update_fields=["spot_instrument"])
        underlying_link_instruments(underlying=underlying)
    return underlying
