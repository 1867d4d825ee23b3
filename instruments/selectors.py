"""Every non-trivial read of the instruments app."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, F, Max, Min, Q, QuerySet

from instruments.master import DERIVATIVE_TYPES
from instruments.models import BrokerAccount, Instrument, Underlying
from trading_site import clock


def broker_accounts_for_user(user: AbstractBaseUser) -> QuerySet[BrokerAccount]:
    return BrokerAccount.objects.filter(user=user).order_by("label")


def broker_account_for_user(user: AbstractBaseUser, account_id: int) -> BrokerAccount:
    """The user's own account; raises BrokerAccount.DoesNotExist for anyone else's."""
    return BrokerAccount.objects.get(pk=account_id, user=user)


def data_account() -> BrokerAccount | None:
    return BrokerAccount.objects.filter(is_data_account=True).first()


def instrument_by_token(instrument_token: int) -> Instrument | None:
    """The instrument a token means today: the active one, since Kite reuses tokens after expiry."""
    return (
        Instrument.objects.filter(instrument_token=instrument_token)
        .select_related("underlying")
        .order_by("-active", "-updated_at")
        .first()
    )


# ---------------------------------------------------------------------------
# The instrument list of the REST API
# ---------------------------------------------------------------------------
# The columns the API shows: the rest of a row (last_price, updated_at) is never read.
INSTRUMENT_LIST_COLUMNS = (
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "exchange",
    "segment",
    "instrument_type",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "active",
    "underlying__symbol",
)

# Each order ends on (exchange, tradingsymbol), the natural key, so pages never overlap or skip a row.
# Expiries put undated rows (equities, indices) last on every database.
INSTRUMENT_ORDERINGS = {
    "tradingsymbol": ("exchange", "tradingsymbol"),
    "expiry": (F("expiry").asc(nulls_last=True), "strike", "instrument_type", "exchange", "tradingsymbol"),
    "strike": ("strike", "instrument_type", F("expiry").asc(nulls_last=True), "exchange", "tradingsymbol"),
}


def instrument_list() -> QuerySet[Instrument]:
    """Every instrument, active or not, by exchange and symbol, with its underlying's symbol in the
    same query."""
    return (
        Instrument.objects.select_related("underlying")
        .only(*INSTRUMENT_LIST_COLUMNS)
        .order_by(*INSTRUMENT_ORDERINGS["tradingsymbol"])
    )


def instruments_on_underlying(queryset: QuerySet[Instrument], symbol: str) -> QuerySet[Instrument]:
    """Futures and options on `symbol`: Kite's `name` of the contracts, which is also how they are
    linked to an Underlying, so an underlying nobody configured is found too. Kite gives some
    equities the same name as their contracts: the type leaves them out."""
    return queryset.filter(name=symbol.upper(), instrument_type__in=sorted(DERIVATIVE_TYPES))


def instruments_matching(queryset: QuerySet[Instrument], term: str) -> QuerySet[Instrument]:
    """Instruments whose tradingsymbol or name starts with `term`, in any case; digits also find
    that instrument token (besides symbols starting with them, such as 360ONE).

    Kite's symbols and names are upper case, so an upper-cased, case-sensitive prefix match finds
    the same rows as a case-insensitive one and can use the pattern indexes on both columns
    (UPPER(...) LIKE would read all 100,000 rows), as the admin's search does.
    """
    term = term.strip().upper()
    if not term:
        return queryset
    matches = Q(tradingsymbol__startswith=term) | Q(name__startswith=term)
    # isascii: int() refuses digits such as "²" that str.isdigit accepts.
    if term.isascii() and term.isdigit():
        matches |= Q(instrument_token=int(term))
    return queryset.filter(matches)


# ---------------------------------------------------------------------------
# Underlyings and their expiries
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class UpcomingExpiry:
    date: dt.date
    is_monthly: bool  # the last expiry of its calendar month, the monthly contract
    streamed: bool  # among the nearest `expiries_to_stream` of an enabled underlying: the feed streams it
    lot_size: int
    strikes: int


def underlying_list() -> QuerySet[Underlying]:
    return Underlying.objects.select_related("spot_instrument").order_by("symbol")


def underlyings_attach_expiries(underlyings: Sequence[Underlying], *, today: dt.date) -> Sequence[Underlying]:
    """Set `upcoming_expiries` on each underlying: the option expiries from today on, nearest first,
    counted over the active contracts linked to it (the ones the feed streams). One query for all.

    The last expiry listed counts as a monthly: Kite lists the far months only as monthlies.
    """
    by_underlying: dict[int, list[dict]] = defaultdict(list)
    for row in (
        Instrument.objects.active()
        .options()
        .filter(underlying__in=[u.pk for u in underlyings], expiry__gte=today)
        .values("underlying_id", "expiry")
        .annotate(lot_size=Max("lot_size"), strikes=Count("strike", distinct=True))
        .order_by("underlying_id", "expiry")
    ):
        by_underlying[row["underlying_id"]].append(row)
    for underlying in underlyings:
        rows = by_underlying[underlying.pk]
        streamed = underlying.expiries_to_stream if underlying.enabled else 0
        underlying.upcoming_expiries = [
            UpcomingExpiry(
                date=row["expiry"],
                is_monthly=index + 1 == len(rows) or _month(rows[index + 1]["expiry"]) != _month(row["expiry"]),
                streamed=index < streamed,
                lot_size=row["lot_size"],
                strikes=row["strikes"],
            )
            for index, row in enumerate(rows)
        ]
    return underlyings


def _month(day: dt.date) -> tuple[int, int]:
    return day.year, day.month


def underlying_ids_by_contract_key() -> dict[tuple[str, str], int]:
    """(derivatives exchange, Kite name) -> underlying id, to link contracts during a sync."""
    return {
        (exchange, symbol): pk
        for pk, exchange, symbol in Underlying.objects.values_list("pk", "derivatives_exchange", "symbol")
    }


def underlyings_with_contract_counts() -> QuerySet[Underlying]:
    live = Q(instruments__active=True)
    return Underlying.objects.select_related("spot_instrument").annotate(
        active_contracts=Count("instruments", filter=live),
        nearest_expiry=Min("instruments__expiry", filter=live & Q(instruments__expiry__gte=clock.today())),
    )


def instrument_master_summary() -> dict:
    """Counts of the master by exchange, for the home page and the sync's report."""
    by_exchange = list(
        Instrument.objects.active().order_by().values("exchange").annotate(instruments=Count("id")).order_by("exchange")
    )
    totals = Instrument.objects.aggregate(
        active_count=Count("id", filter=Q(active=True)),
        inactive_count=Count("id", filter=Q(active=False)),
        last_change=Max("updated_at"),
    )
    return {"by_exchange": by_exchange, **totals}


def underlying_by_symbol(symbol: str) -> Underlying | None:
    """Symbols are Kite's names, upper case: `nifty` finds NIFTY."""
    return underlying_list().filter(symbol=symbol.upper()).first()
