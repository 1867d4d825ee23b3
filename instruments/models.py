from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from trading_site import clock
from trading_site.fields import EncryptedTextField


class Underlying(models.Model):
    """An index or stock whose derivatives the desk streams and prices.

    Options and futures are linked to it by name: Kite's master gives every NFO
    contract the `name` of its underlying (NIFTY, BANKNIFTY...), so `symbol` must be
    that name and `derivatives_exchange` the exchange the contracts trade on.
    """

    symbol = models.CharField(max_length=32, unique=True, help_text="Kite's `name` of the contracts, e.g. NIFTY.")
    spot_instrument = models.ForeignKey(
        "Instrument",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The index or stock itself, e.g. NSE:NIFTY 50 (token 256265).",
    )
    derivatives_exchange = models.CharField(max_length=8, default="NFO", help_text="NFO, BFO or MCX.")
    strike_step = models.DecimalField(
        max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))], help_text="e.g. 50 for NIFTY."
    )
    strikes_each_side = models.PositiveSmallIntegerField(
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Strikes streamed above and below the at-the-money strike.",
    )
    expiries_to_stream = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1), MaxValueValidator(12)], help_text="Nearest expiries streamed."
    )
    risk_free_rate = models.DecimalField(
        max_digits=6,
        decimal_places=4,
        default=Decimal("0.0650"),
        validators=[MinValueValidator(Decimal("-0.05")), MaxValueValidator(Decimal("0.5"))],
        help_text="Continuously compounded, as a fraction: 0.065 is 6.5%.",
    )
    dividend_yield = models.DecimalField(
        max_digits=6,
        decimal_places=4,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("0.5"))],
        help_text="Continuous, as a fraction.",
    )
    enabled = models.BooleanField(default=True, db_index=True, help_text="Stream and price this underlying.")
    store_ticks = models.BooleanField(
        default=False,
        help_text="Store every tick of this underlying and its chain (for replay). Bars are always stored.",
    )

    class Meta:
        ordering = ["symbol"]

    def __str__(self) -> str:
        return self.symbol


class InstrumentQuerySet(models.QuerySet):
    def active(self) -> InstrumentQuerySet:
        return self.filter(active=True)

    def options(self) -> InstrumentQuerySet:
        return self.filter(instrument_type__in=[Instrument.Type.CALL, Instrument.Type.PUT])

    def calls(self) -> InstrumentQuerySet:
        return self.filter(instrument_type=Instrument.Type.CALL)

    def puts(self) -> InstrumentQuerySet:
        return self.filter(instrument_type=Instrument.Type.PUT)

    def futures(self) -> InstrumentQuerySet:
        return self.filter(instrument_type=Instrument.Type.FUTURE)

    def indices(self) -> InstrumentQuerySet:
        return self.filter(segment=Instrument.INDEX_SEGMENT)

    def for_underlying(self, underlying: Underlying | str) -> InstrumentQuerySet:
        if isinstance(underlying, Underlying):
            return self.filter(underlying=underlying)
        return self.filter(underlying__symbol=underlying)

    def for_expiry(self, expiry: dt.date) -> InstrumentQuerySet:
        return self.filter(expiry=expiry)

    def expiring_from(self, day: dt.date) -> InstrumentQuerySet:
        return self.filter(expiry__gte=day)

    def near_atm(self, spot: float | Decimal, strikes_each_side: int) -> InstrumentQuerySet:
        """Options whose strike is among the `strikes_each_side` nearest strikes on each side of spot.

        Strikes are taken from the queryset itself (narrow it to one underlying and
        expiry first), so uneven strike grids work: at most 2n+1 distinct strikes.
        """
        spot = Decimal(str(spot))
        strikes = self.options().values_list("strike", flat=True).distinct()
        below = list(strikes.filter(strike__lte=spot).order_by("-strike")[: strikes_each_side + 1])
        above = list(strikes.filter(strike__gt=spot).order_by("strike")[:strikes_each_side])
        return self.options().filter(strike__in=below + above)


class Instrument(models.Model):
    """One row of Kite's instrument master.

    Kite reuses `instrument_token` after a contract expires, so the natural key is
    (exchange, tradingsymbol) and the token is only indexed, not unique.
    """

    INDEX_SEGMENT = "INDICES"

    class Type(models.TextChoices):
        # Kite lists indices as EQ in the INDICES segment; see InstrumentQuerySet.indices().
        EQUITY = "EQ", "Equity or index"
        FUTURE = "FUT", "Future"
        CALL = "CE", "Call option"
        PUT = "PE", "Put option"

    instrument_token = models.PositiveBigIntegerField()
    exchange_token = models.PositiveBigIntegerField()
    tradingsymbol = models.CharField(max_length=64)
    name = models.CharField(max_length=128, blank=True)
    last_price = models.DecimalField(max_digits=16, decimal_places=4, default=Decimal("0"))
    expiry = models.DateField(null=True, blank=True)
    strike = models.DecimalField(max_digits=14, decimal_places=4, default=Decimal("0"))
    tick_size = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    lot_size = models.PositiveIntegerField(default=0)
    instrument_type = models.CharField(max_length=4, choices=Type.choices)
    segment = models.CharField(max_length=16)
    exchange = models.CharField(max_length=8)
    active = models.BooleanField(default=True, help_text="False once the contract left Kite's master.")
    underlying = models.ForeignKey(
        Underlying, on_delete=models.SET_NULL, null=True, blank=True, related_name="instruments"
    )
    updated_at = models.DateTimeField(default=clock.now, help_text="When a sync last changed this row.")

    objects = InstrumentQuerySet.as_manager()

    class Meta:
        ordering = ["exchange", "tradingsymbol"]
        constraints = [
            models.UniqueConstraint(fields=["exchange", "tradingsymbol"], name="instrument_exchange_symbol_uniq"),
        ]
        indexes = [
            # Tick lookups and the ticker's token -> instrument map.
            models.Index(fields=["instrument_token"], name="instrument_token_idx"),
            # The option chain: one underlying, one expiry, strikes in order.
            models.Index(fields=["underlying", "expiry", "strike"], name="instrument_chain_idx"),
            # Admin filters and "what expires when" across the master.
            models.Index(fields=["expiry"], name="instrument_expiry_idx"),
            models.Index(fields=["segment"], name="instrument_segment_idx"),
            # Admin search and linking by name: prefix LIKE needs pattern ops on PostgreSQL
            # (ignored elsewhere); they serve equality as well.
            models.Index(fields=["name"], name="instrument_name_idx", opclasses=["varchar_pattern_ops"]),
            models.Index(fields=["tradingsymbol"], name="instrument_symbol_idx", opclasses=["varchar_pattern_ops"]),
        ]

    def __str__(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"

    @property
    def is_index(self) -> bool:
        return self.segment == self.INDEX_SEGMENT

    @property
    def is_option(self) -> bool:
        return self.instrument_type in (self.Type.CALL, self.Type.PUT)


class BrokerAccount(models.Model):
    """A user's account at a broker: a Kite Connect app, or the paper broker.

    The API secret and the access token are encrypted at rest and never shown in
    full; `__str__` and `__repr__` never include them, so they never reach a log.
    """

    class Kind(models.TextChoices):
        KITE = "kite", "Kite Connect"
        PAPER = "paper", "Paper trading"

    class TokenState(models.TextChoices):
        VALID = "valid", "Connected"
        EXPIRED = "expired", "Expired, log in again"
        MISSING = "missing", "Not connected"
        NOT_NEEDED = "not_needed", "No login needed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="broker_accounts")
    label = models.CharField(max_length=64, help_text="Your name for this account, e.g. 'Main'.")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.KITE, db_index=True)
    api_key = models.CharField(max_length=64, blank=True, help_text="From the Kite Connect developer console.")
    api_secret = EncryptedTextField(blank=True)
    access_token = EncryptedTextField(blank=True, editable=False)
    access_token_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    kite_user_id = models.CharField(max_length=32, blank=True, editable=False, help_text="Kite's client id.")
    kite_user_name = models.CharField(max_length=128, blank=True, editable=False)
    is_data_account = models.BooleanField(
        default=False, help_text="This account's session feeds the live ticker. Only one account can be it."
    )
    created_at = models.DateTimeField(default=clock.now, editable=False)

    class Meta:
        ordering = ["user_id", "label"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "label"],
                name="brokeraccount_user_label_uniq",
                violation_error_message="This user already has an account with this label.",
            ),
            # One ticker session for the whole site: Kite allows 3 sockets per API key.
            models.UniqueConstraint(
                fields=["is_data_account"],
                condition=Q(is_data_account=True),
                name="brokeraccount_one_data_account",
                violation_error_message="Another account already feeds the ticker: unmark it first.",
            ),
            models.CheckConstraint(
                condition=Q(kind="kite") | Q(is_data_account=False),
                name="brokeraccount_data_account_is_kite",
                violation_error_message="Only a Kite account can feed market data.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.get_kind_display()})"

    def __repr__(self) -> str:
        return f"<BrokerAccount {self.pk} {self.label!r} kind={self.kind}>"

    @property
    def token_state(self) -> str:
        if self.kind == self.Kind.PAPER:
            return self.TokenState.NOT_NEEDED
        if not self.access_token:
            return self.TokenState.MISSING
        if self.access_token_expires_at is None or self.access_token_expires_at <= clock.now():
            return self.TokenState.EXPIRED
        return self.TokenState.VALID

    def get_token_state_display(self) -> str:
        return self.TokenState(self.token_state).label

    @property
    def has_valid_session(self) -> bool:
        return self.token_state == self.TokenState.VALID

    @property
    def masked_api_secret(self) -> str:
        return mask_secret(self.api_secret)

    @property
    def masked_access_token(self) -> str:
        return mask_secret(self.access_token)


def mask_secret(value: str) -> str:
    """Show that a secret is set, and its last 4 characters to tell two apart, never more."""
    if not value:
        return ""
    if len(value) <= 8:
        return "••••"
    return "••••" + value[-4:]
