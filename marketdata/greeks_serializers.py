"""The Greeks calculator's request and response: `{"contracts": [...]}` in (1 to 1,000 contracts, each
given a price to solve for the IV or a volatility to solve for the price), `{"units", "results"}` out,
results in the order of the contracts. A contract's errors are keyed by its position in the list, as
DRF 3.18 reports a list's: `{"contracts": {"3": {"spot": [...]}}}`.

Everything the schema allows is answered: an expired contract is worth its intrinsic value, and a price
no volatility gives has a null IV with the reason. The schema states the rest of the rules (bounds, one
of price and volatility, one of expiry and time_to_expiry_years), so a request it allows is never a 400.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from rest_framework import exceptions, serializers

from marketdata import selectors
from marketdata.greeks_calculator import IV_REASONS, ContractBatch
from marketdata.serializers import SYMBOL_PATTERN, StrictChoiceField, StrictDateField
from marketdata.services import EXPIRY_CLOSE, SECONDS_PER_YEAR
from trading_site import clock

MAX_CONTRACTS = 1000
DEFAULT_RATE = 0.065
# Bounds keep every result finite (JSON has no NaN or infinity) and catch unit mistakes: a rate of 6.5
# is a percentage given where a fraction belongs.
MAX_PRICE = 1e9
MAX_YEARS = 100.0
MAX_VOLATILITY_PCT = 1000.0
MAX_RATE = 0.5

UNITS = {
    "spot": "₹ per unit of the underlying (so are strike and price; a lot is lot size times)",
    "time_to_expiry_years": "calendar years, ACT/365, to 15:30 IST on the expiry date",
    "rate": "continuously compounded annual rate, a fraction (0.065 is 6.5 %)",
    "dividend_yield": "continuous annual yield, a fraction; equal to rate for Black-76 on a future",
    "volatility": "annualised, percent points (20 is 20 %)",
    "iv": "annualised, percent points (20 is 20 %)",
    "price": "₹ per unit of the underlying",
    "delta": "change in price per ₹1 move of the underlying",
    "gamma": "change in delta per ₹1 move of the underlying",
    "theta": "change in price per calendar day that passes (usually negative)",
    "vega": "change in price per volatility point (20 % to 21 %)",
    "rho": "change in price per rate point (r + 0.01)",
}


class NumberField(serializers.FloatField):
    """A JSON number only: DRF's FloatField also takes "5" and true, which the schema does not allow."""

    def to_internal_value(self, data) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class PositiveNumberField(NumberField):
    """A number > 0 (the schema's exclusiveMinimum: see PositiveNumberSchema)."""

    default_error_messages = {"not_positive": _("Must be greater than 0.")}

    def to_internal_value(self, data) -> float:
        value = super().to_internal_value(data)
        if not value > 0:
            self.fail("not_positive")
        return value


class PositiveNumberSchema(OpenApiSerializerFieldExtension):
    target_class = PositiveNumberField

    def map_serializer_field(self, auto_schema, direction) -> dict:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return {**schema, "minimum": 0, "exclusiveMinimum": True}


def _rate(help_text: str) -> NumberField:
    # Django's validators %-format their message with the value: "%%" is how it shows "%".
    message = _("Give it as a fraction (0.065 for 6.5 %%), between {low} and {high}.").format(
        low=-MAX_RATE, high=MAX_RATE
    )
    return NumberField(
        required=False,
        min_value=-MAX_RATE,
        max_value=MAX_RATE,
        help_text=help_text,
        error_messages={"min_value": message, "max_value": message},
    )


class GreeksContractSerializer(serializers.Serializer):
    option_type = StrictChoiceField(choices=["CE", "PE"], help_text="CE (call) or PE (put).")
    spot = PositiveNumberField(max_value=MAX_PRICE, help_text="Price of the underlying, > 0.")
    strike = PositiveNumberField(max_value=MAX_PRICE, help_text="> 0.")
    expiry = StrictDateField(
        required=False,
        help_text="Expiry date; time runs to 15:30 IST on it (a past one is worth its intrinsic value). "
        "Or give time_to_expiry_years.",
    )
    time_to_expiry_years = PositiveNumberField(
        required=False, max_value=MAX_YEARS, help_text="Years (ACT/365), > 0. Or give expiry."
    )
    price = NumberField(
        required=False,
        min_value=0,
        max_value=MAX_PRICE,
        help_text="The option's price: solve for the IV. Or give volatility.",
    )
    volatility = PositiveNumberField(
        required=False,
        max_value=MAX_VOLATILITY_PCT,
        help_text="Percent points (20 is 20 %): solve for the price. Or give price.",
    )
    underlying = serializers.CharField(
        required=False,
        trim_whitespace=False,
        validators=[RegexValidator(SYMBOL_PATTERN, message=_("Not an underlying's symbol."))],
        help_text="e.g. NIFTY: its rate and dividend yield become the defaults (a 404 if there is none).",
    )
    rate = _rate("Risk-free rate, continuous, a fraction. Default: the underlying's, else 0.065.")
    dividend_yield = _rate("Continuous, a fraction. Default: the underlying's, else 0.")

    def validate(self, attrs: dict) -> dict:
        # The schema says the same with oneOf (GreeksContractSchema).
        if ("expiry" in attrs) == ("time_to_expiry_years" in attrs):
            raise serializers.ValidationError({"expiry": [_("Give expiry or time_to_expiry_years (one of them).")]})
        if ("price" in attrs) == ("volatility" in attrs):
            raise serializers.ValidationError(
                {"price": [_("Give price (to solve for the IV) or volatility (to solve for the price), one of them.")]}
            )
        if "expiry" in attrs:
            now = self.context.get("now") or clock.now()
            close = dt.datetime.combine(attrs["expiry"], EXPIRY_CLOSE, tzinfo=clock.IST)
            attrs["time_to_expiry_years"] = (close - now).total_seconds() / SECONDS_PER_YEAR
        return attrs


class GreeksContractSchema(OpenApiSerializerExtension):
    """Exactly one of price and volatility, and of expiry and time_to_expiry_years."""

    target_class = GreeksContractSerializer

    def map_serializer(self, auto_schema, direction) -> dict:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["allOf"] = [
                {"oneOf": [{"required": ["price"]}, {"required": ["volatility"]}]},
                {"oneOf": [{"required": ["expiry"]}, {"required": ["time_to_expiry_years"]}]},
            ]
        return schema


class GreeksRequestSerializer(serializers.Serializer):
    contracts = serializers.ListField(
        child=GreeksContractSerializer(), allow_empty=False, min_length=1, max_length=MAX_CONTRACTS
    )

    def resolve_rates(self) -> None:
        """Fill in each contract's rate and dividend yield: the named underlying's (one query for the
        batch), else 0.065 and 0. A name that is no underlying is a 404 naming the contracts."""
        contracts = self.validated_data["contracts"]
        rates = selectors.pricing_rates(c["underlying"] for c in contracts if "underlying" in c)
        unknown = [
            (i, c["underlying"])
            for i, c in enumerate(contracts)
            if "underlying" in c and c["underlying"].upper() not in rates
        ]
        if unknown:
            listed = ", ".join(f"{name!r} (contract {i})" for i, name in unknown[:10])
            raise exceptions.NotFound(_("No underlying named %s.") % listed, code="not_found")
        for contract in contracts:
            rate, dividend_yield = rates.get(contract.get("underlying", "").upper(), (DEFAULT_RATE, 0.0))
            contract.setdefault("rate", rate)
            contract.setdefault("dividend_yield", dividend_yield)

    def batch(self) -> ContractBatch:
        """The validated contracts as the calculator's arrays."""
        contracts = self.validated_data["contracts"]

        def column(name: str) -> np.ndarray:
            return np.array([c.get(name, np.nan) for c in contracts], dtype=float)

        return ContractBatch(
            spot=column("spot"),
            strike=column("strike"),
            years=column("time_to_expiry_years"),
            rate=column("rate"),
            dividend_yield=column("dividend_yield"),
            is_call=np.array([c["option_type"] == "CE" for c in contracts]),
            price=column("price"),
            volatility_pct=column("volatility"),
        )


class GreeksResultSerializer(serializers.Serializer):
    option_type = serializers.ChoiceField(choices=["CE", "PE"])
    spot = serializers.FloatField()
    strike = serializers.FloatField()
    time_to_expiry_years = serializers.FloatField(help_text="As given, or counted from now to the expiry.")
    rate = serializers.FloatField(help_text="As given, or the default used.")
    dividend_yield = serializers.FloatField(help_text="As given, or the default used.")
    solved_for = serializers.ChoiceField(choices=["iv", "price"], help_text="`iv` when a price was given.")
    price = serializers.FloatField(allow_null=True, help_text="The given price, or the model price.")
    iv = serializers.FloatField(
        allow_null=True, help_text="Percent points: implied from the price, or the volatility given."
    )
    iv_reason = serializers.ChoiceField(
        choices=list(IV_REASONS),
        allow_null=True,
        help_text="Why no volatility gives the price (then iv and the Greeks are null): "
        + " ".join(f"`{code}`: {text}" for code, text in IV_REASONS.items()),
    )
    delta = serializers.FloatField(allow_null=True)
    gamma = serializers.FloatField(allow_null=True)
    theta = serializers.FloatField(allow_null=True)
    vega = serializers.FloatField(allow_null=True)
    rho = serializers.FloatField(allow_null=True)


class GreeksResponseSerializer(serializers.Serializer):
    units = serializers.DictField(child=serializers.CharField(), help_text="What each number is measured in.")
    results = GreeksResultSerializer(many=True, help_text="One per contract, in the order given.")


def response_body(request: GreeksRequestSerializer, figures: list[dict]) -> dict:
    """The response body: each contract's inputs as used, beside its figures."""
    echoed = ("option_type", "spot", "strike", "time_to_expiry_years", "rate", "dividend_yield")
    rows = [
        {**{name: contract[name] for name in echoed}, **values}
        for contract, values in zip(request.validated_data["contracts"], figures, strict=True)
    ]
    return {"units": UNITS, "results": rows}
