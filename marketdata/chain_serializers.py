"""Option chains in the API: the latest figures (as the refresh task wrote them to Redis) and their
stored history.

The figures are returned exactly as `marketdata.services.chain_refresh` made them; the serializers
here describe them for the OpenAPI schema (tests check the two agree). Units: prices and premiums in
₹ per unit of the underlying; IV in percent points (14.2 is 14.2 %); delta per ₹1 of the underlying,
gamma per ₹1², theta in ₹ per calendar day, vega in ₹ per volatility point, rho in ₹ per rate point;
OI and volume in units (contracts x lot size); GEX in ₹ per 1 % move of the underlying. A figure
that cannot be computed is null.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from marketdata.analytics.chain_json import BUILDUP_LABELS, IV_SOURCES
from marketdata.models import ChainSnapshot
from marketdata.serializers import StrictDateField, TimeRangeQuerySerializer


def _number(help_text: str = "", **kwargs) -> serializers.FloatField:
    return serializers.FloatField(allow_null=True, help_text=help_text, **kwargs)


def _whole(help_text: str = "", **kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(allow_null=True, help_text=help_text, **kwargs)


# ---------------------------------------------------------------------------
# Query parameters
# ---------------------------------------------------------------------------

EXPIRY_HELP = "Expiry date (YYYY-MM-DD). Default: the underlying's nearest option expiry, the first the feed streams."


class ChainQuerySerializer(serializers.Serializer):
    expiry = StrictDateField(required=False, help_text=EXPIRY_HELP)


HISTORY_PAGE_DAYS = 31
HISTORY_PAGE_DAYS_WITH_STRIKES = 1


@extend_schema_field({"type": "boolean"})
class StrictBooleanField(serializers.BooleanField):
    """`true` or `false` only (DRF also takes 1, yes, on...), as the schema says."""

    def to_internal_value(self, data) -> bool:
        if data not in ("true", "false"):
            self.fail("invalid", input=data)
        return data == "true"


class ChainHistoryQuerySerializer(TimeRangeQuerySerializer):
    expiry = StrictDateField(required=False, help_text=EXPIRY_HELP)
    strikes = StrictBooleanField(
        default=False,
        help_text="`true`: also each snapshot's whole summary and per-strike rows (about 10 kB a snapshot), "
        f"{HISTORY_PAGE_DAYS_WITH_STRIKES} day a page.",
    )
    from_help = "Start, inclusive: a date or a date and time, IST unless it has an offset. Default: 00:00 IST today."

    def page_days(self, attrs: dict) -> int:
        return HISTORY_PAGE_DAYS_WITH_STRIKES if attrs["strikes"] else HISTORY_PAGE_DAYS


# ---------------------------------------------------------------------------
# The latest figures
# ---------------------------------------------------------------------------


class ChainSideSerializer(serializers.Serializer):
    """One contract (the CE or the PE of a strike)."""

    token = serializers.IntegerField(required=False, help_text="Instrument token; absent if not streamed.")
    tradingsymbol = serializers.CharField(required=False)
    ltp = _number("Last traded price, ₹.")
    change = _number("ltp - previous close, ₹.")
    change_pct = _number("Percent of the previous close.")
    bid = _number("Best bid, ₹.")
    ask = _number("Best offer, ₹.")
    mid = _number("(bid + ask) / 2, ₹.")
    volume = _whole("Day volume, units.")
    oi = _whole("Open interest, units.")
    oi_change = _whole("OI - reference OI (the day's first, or N minutes ago: CHAIN_OI_CHANGE_MINUTES), units.")
    oi_change_pct = _number("Percent of the reference OI.")
    iv = _number("Implied volatility, percent points.")
    iv_source = serializers.ChoiceField(
        choices=list(IV_SOURCES), allow_null=True, help_text="Priced from the mid of a sane quote, or the last price."
    )
    delta = _number("Per ₹1 of the underlying.")
    gamma = _number("Delta per ₹1 of the underlying.")
    theta = _number("₹ per calendar day.")
    vega = _number("₹ per volatility point (IV + 1).")
    rho = _number("₹ per rate point (r + 0.01).")
    gex = _whole("Gamma exposure, ₹ per 1 % move: gamma x OI x spot² x 0.01; calls +, puts -.")
    buildup = serializers.ChoiceField(
        choices=[label for label in BUILDUP_LABELS if label],
        allow_null=True,
        help_text="Price and OI change against the previous close and reference OI: long_buildup (↑↑), "
        "short_buildup (price ↓, OI ↑), short_covering (price ↑, OI ↓), long_unwinding (↓↓).",
    )
    buildup_strength = _whole("0-100: how unusual the OI change is in this chain, and the day's turnover.")


class ChainStrikeRowSerializer(serializers.Serializer):
    strike = serializers.FloatField()
    ce = ChainSideSerializer()
    pe = ChainSideSerializer()
    gex = _whole("Both sides' GEX, ₹ per 1 % move.")
    pcr_oi = _number("PE OI / CE OI at this strike.")


class SmileSerializer(serializers.Serializer):
    strikes = serializers.ListField(child=serializers.FloatField())
    ce_iv = serializers.ListField(child=serializers.FloatField(allow_null=True), help_text="Percent points.")
    pe_iv = serializers.ListField(child=serializers.FloatField(allow_null=True), help_text="Percent points.")


class ChainSummarySerializer(serializers.Serializer):
    spot = _number("₹.")
    future = _number("The future for this expiry, ₹ (the nearest future's basis carried, for weeklies).")
    forward = _number("₹: from put-call parity at the strikes nearest the money, else the future, else carry.")
    forward_source = serializers.ChoiceField(choices=["parity", "future", "carry"], allow_null=True)
    implied_dividend_yield = _number("r - ln(forward / spot) / T, continuous, a fraction.")
    time_to_expiry_years = _number("ACT/365 to 15:30 IST on the expiry date.")
    days_to_expiry = _number("Calendar days, fractional.")
    atm_strike = _number("The strike nearest the forward.")
    atm_iv = _number("Mean of the ATM CE and PE IVs, percent points.")
    atm_straddle = _number("ATM CE + PE, ₹.")
    expected_move = _number("One standard deviation to expiry, ₹: spot x ATM IV x √T.")
    expected_move_pct = _number("Percent of spot.")
    iv_25d_call = _number("IV at call delta +0.25, percent points.")
    iv_25d_put = _number("IV at put delta -0.25, percent points.")
    risk_reversal_25d = _number("iv_25d_call - iv_25d_put, percent points.")
    butterfly_25d = _number("(iv_25d_call + iv_25d_put) / 2 - ATM IV, percent points.")
    pcr_oi = _number("Total PE OI / total CE OI.")
    pcr_volume = _number("Total PE volume / total CE volume.")
    max_pain = _number("The settlement strike that pays option holders least.")
    call_wall = _number("Strike of the largest CE OI.")
    put_wall = _number("Strike of the largest PE OI.")
    total_gex = _whole("₹ per 1 % move of the underlying.")
    gamma_flip = _number("Spot at which total GEX changes sign, within ±10 % of spot; null if it does not.")
    total_ce_oi = _whole("Units.")
    total_pe_oi = _whole("Units.")
    total_ce_volume = _whole("Units.")
    total_pe_volume = _whole("Units.")
    lot_size = serializers.IntegerField()
    smile = SmileSerializer()


class ChainAnalyticsSerializer(serializers.Serializer):
    underlying = serializers.CharField()
    expiry = serializers.DateField()
    as_of = serializers.DateTimeField(help_text="Market time of the latest tick the figures use (IST).")
    computed_in_ms = serializers.FloatField()
    summary = ChainSummarySerializer()
    strikes = ChainStrikeRowSerializer(many=True, help_text="One row per streamed strike, ascending.")


# ---------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------


class ChainSnapshotSerializer(serializers.ModelSerializer):
    class Meta:
        model = ChainSnapshot
        fields = ("taken_at", *ChainSnapshot.HEADLINE_FIELDS)
        extra_kwargs = {"taken_at": {"help_text": "Start of the minute (CHAIN_SNAPSHOT_SECONDS) it stands for."}}


@extend_schema_field(ChainSummarySerializer)
class StoredSummaryField(serializers.Field):
    """A snapshot's summary JSON, returned as stored (the live figures' `summary`)."""

    def to_representation(self, value: dict) -> dict:
        return value


@extend_schema_field(ChainStrikeRowSerializer(many=True))
class StoredStrikesField(serializers.Field):
    """A snapshot's per-strike rows, returned as stored (the live figures' `strikes`)."""

    def to_representation(self, value: list) -> list:
        return value


class ChainSnapshotWithStrikesSerializer(ChainSnapshotSerializer):
    summary = StoredSummaryField(required=False, help_text="Only with `strikes=true`.")
    strikes = StoredStrikesField(required=False, help_text="Only with `strikes=true`.")

    class Meta(ChainSnapshotSerializer.Meta):
        fields = (*ChainSnapshotSerializer.Meta.fields, "summary", "strikes")


class ChainHistorySerializer(serializers.Serializer):
    underlying = serializers.CharField()
    expiry = serializers.DateField()
    snapshots = ChainSnapshotWithStrikesSerializer(
        many=True, help_text="Oldest first. `summary` and `strikes` only with `strikes=true`."
    )
    next = serializers.URLField(allow_null=True, help_text="The next page of a range longer than a page; else null.")
