"""What the instruments API reads and shows: its query parameters (FilterSets, typed so that a bad
value is a 400 naming it) and its read-only response shapes."""

from __future__ import annotations

from decimal import Decimal

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from instruments import selectors
from instruments.models import BrokerAccount, Instrument, Underlying


class InstrumentSerializer(serializers.ModelSerializer):
    underlying = serializers.CharField(
        source="underlying.symbol",
        allow_null=True,
        read_only=True,
        help_text="The configured underlying the contract is linked to (see /underlyings/), or null.",
    )

    class Meta:
        model = Instrument
        fields = (
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
            "underlying",
            "active",
        )
        read_only_fields = fields


class UpcomingExpirySerializer(serializers.Serializer):
    date = serializers.DateField()
    is_monthly = serializers.BooleanField(help_text="The last expiry of its calendar month: the monthly contract.")
    streamed = serializers.BooleanField(
        help_text="The feed streams this expiry's chain (one of the nearest `expiries_to_stream` of an enabled "
        "underlying): live quotes and chain figures exist for it."
    )
    lot_size = serializers.IntegerField()
    strikes = serializers.IntegerField(help_text="Distinct strikes listed.")


class UnderlyingSerializer(serializers.ModelSerializer):
    spot_instrument_token = serializers.IntegerField(
        source="spot_instrument.instrument_token", allow_null=True, read_only=True
    )
    spot_tradingsymbol = serializers.CharField(source="spot_instrument.tradingsymbol", allow_null=True, read_only=True)
    spot_exchange = serializers.CharField(source="spot_instrument.exchange", allow_null=True, read_only=True)
    expiries = UpcomingExpirySerializer(
        source="upcoming_expiries",
        many=True,
        read_only=True,
        help_text="Option expiries from today on, nearest first.",
    )

    class Meta:
        model = Underlying
        fields = (
            "symbol",
            "spot_instrument_token",
            "spot_tradingsymbol",
            "spot_exchange",
            "derivatives_exchange",
            "strike_step",
            "strikes_each_side",
            "expiries_to_stream",
            "risk_free_rate",
            "dividend_yield",
            "enabled",
            "store_ticks",
            "expiries",
        )
        read_only_fields = fields


class BrokerAccountSerializer(serializers.ModelSerializer):
    """The API secret and the access token are left out on purpose: only the masked secret, as on
    the accounts page, and the session's state."""

    api_secret_masked = serializers.CharField(
        source="masked_api_secret",
        read_only=True,
        help_text="'••••' and the secret's last 4 characters, or empty when no secret is set.",
    )
    token_state = serializers.ChoiceField(
        choices=BrokerAccount.TokenState.choices,
        read_only=True,
        help_text="valid: a Kite session is open; expired: log in again; missing: never logged in; "
        "not_needed: a paper account.",
    )

    class Meta:
        model = BrokerAccount
        fields = (
            "id",
            "label",
            "kind",
            "api_key",
            "api_secret_masked",
            "is_data_account",
            "token_state",
            "access_token_expires_at",
            "kite_user_id",
            "kite_user_name",
            "created_at",
        )
        read_only_fields = fields


# ---------------------------------------------------------------------------
# Query parameters
# ---------------------------------------------------------------------------
class UpperCaseField(forms.CharField):
    def to_python(self, value) -> str:
        return super().to_python(value).upper()


class TextFilter(django_filters.CharFilter):
    """Text, upper-cased: Kite's exchanges, segments, names and symbols are upper case, so `nfo` is
    NFO and still matched on an index. The schema says what forms.CharField refuses with a 400: a
    NUL character, which PostgreSQL cannot hold in text."""

    field_class = UpperCaseField

    def __init__(self, *, help_text: str, **kwargs) -> None:
        super().__init__(help_text=help_text, **kwargs)
        extend_schema_field({"type": "string", "pattern": r"^[^\u0000]*$", "description": help_text})(self)


class StrictBooleanField(forms.Field):
    """Only `true` or `false`: Django's NullBooleanField would quietly ignore `enabled=maybe`."""

    def to_python(self, value) -> bool | None:
        if value in self.empty_values:
            return None
        if value in ("true", "false"):
            return value == "true"
        raise ValidationError("Use true or false.", code="invalid")


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


STRIKE_LIMIT = 10**10  # Instrument.strike holds 14 digits, 4 of them after the point


def _iso_date_filter(**kwargs) -> django_filters.DateFilter:
    return django_filters.DateFilter(input_formats=["%Y-%m-%d"], **kwargs)


class StrikeFilter(django_filters.NumberFilter):
    """Bounded by the column, and said so in the schema, rather than by django-filter's 1e50, which
    the schema would not show."""

    def __init__(self, lookup: str, description: str) -> None:
        super().__init__(field_name="strike", lookup_expr=lookup, min_value=Decimal(0))
        extend_schema_field({"type": "number", "minimum": 0, "maximum": STRIKE_LIMIT, "description": description})(self)

    def get_max_validator(self) -> MaxValueValidator:
        return MaxValueValidator(STRIKE_LIMIT)


class StrictFilterSet(django_filters.FilterSet):
    """A date, number, choice or boolean given empty (`expiry=`) is a 400, as the schema says, rather
    than django-filter's "no filter": `active=` would otherwise list inactive contracts too."""

    def is_valid(self) -> bool:
        valid = super().is_valid()
        for name, declared in self.filters.items():
            blank = "" in self.data.getlist(name) and name not in self.form.errors
            if blank and not isinstance(declared, django_filters.CharFilter):
                self.form.add_error(name, ValidationError("Give a value or leave the parameter out.", code="blank"))
                valid = False
        return valid


class InstrumentFilter(StrictFilterSet):
    exchange = TextFilter(help_text="NSE, BSE, NFO, BFO, MCX, CDS... (any case).")
    segment = TextFilter(help_text="Kite's segment: NFO-OPT, NFO-FUT, INDICES, NSE... (any case).")
    instrument_type = django_filters.MultipleChoiceFilter(
        choices=Instrument.Type.choices,
        distinct=False,  # no join repeats a row; SELECT DISTINCT over every column would sort the lot
        help_text="Repeat for several: `instrument_type=CE&instrument_type=PE` lists options.",
    )
    underlying = TextFilter(
        method="filter_underlying",
        help_text="Futures and options on this underlying, any case (Kite's `name` of the contracts, e.g. NIFTY), "
        "whether or not it is configured under /underlyings/.",
    )
    expiry = _iso_date_filter(help_text="Contracts expiring on this day, YYYY-MM-DD.")
    expiry_from = _iso_date_filter(field_name="expiry", lookup_expr="gte", help_text="Expiring on or after.")
    expiry_to = _iso_date_filter(field_name="expiry", lookup_expr="lte", help_text="Expiring on or before.")
    strike_min = StrikeFilter("gte", "Strike at least.")
    strike_max = StrikeFilter("lte", "Strike at most.")
    search = TextFilter(
        method="filter_search",
        help_text="A tradingsymbol or name prefix, any case (`nifty26d`), or an instrument token.",
    )
    active = extend_schema_field(
        {
            "type": "string",
            "enum": ["true", "false", "all"],
            "default": "true",
            "description": "Contracts in Kite's master today (true, the default), those that left it "
            "(false: expired or delisted; Kite may have reused their tokens), or all.",
        }
    )(django_filters.ChoiceFilter(choices=[(v, v) for v in ("true", "false", "all")], method="filter_active"))
    ordering = extend_schema_field(
        {
            "type": "string",
            "enum": list(selectors.INSTRUMENT_ORDERINGS),
            "default": "tradingsymbol",
            "description": "tradingsymbol: by exchange then symbol (the default); expiry: by expiry, strike, "
            "type (a chain in order across expiries); strike: by strike, type, expiry. "
            "Every order ends on exchange and symbol, so pages are stable.",
        }
    )(django_filters.ChoiceFilter(choices=[(v, v) for v in selectors.INSTRUMENT_ORDERINGS], method="filter_ordering"))

    class Meta:
        model = Instrument
        fields: list[str] = []  # all declared above

    def __init__(self, data=None, *args, **kwargs) -> None:
        # Only live contracts unless asked: a reused token otherwise appears twice.
        if data is not None and "active" not in data:
            data = data.copy()
            data["active"] = "true"
        super().__init__(data, *args, **kwargs)

    def filter_underlying(self, queryset, name: str, value: str):
        return selectors.instruments_on_underlying(queryset, value)

    def filter_search(self, queryset, name: str, value: str):
        return selectors.instruments_matching(queryset, value)

    def filter_active(self, queryset, name: str, value: str):
        return queryset if value == "all" else queryset.filter(active=value == "true")

    def filter_ordering(self, queryset, name: str, value: str):
        return queryset.order_by(*selectors.INSTRUMENT_ORDERINGS[value])


class UnderlyingFilter(StrictFilterSet):
    enabled = StrictBooleanFilter(help_text="Only underlyings the feed streams (true) or does not (false).")

    class Meta:
        model = Underlying
        fields: list[str] = []
