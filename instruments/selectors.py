"""Every non-trivial read of the instruments app."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Max, Min, Q, QuerySet

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
    return Instrument.objects.filter(instrument_token=instrument_token).order_by("-active", "-updated_at").first()


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
