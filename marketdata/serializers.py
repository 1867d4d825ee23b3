"""Shapes of the market-data API: query parameters in, quotes, candles, stored ticks and the feed's
status out. Option chains are in chain_serializers, the Greeks calculator in greeks_serializers.

Field names follow Kite Connect, so that code written against Kite reads them unchanged: a quote
has the names of Kite's `GET /quote`, a stored tick those of kiteconnect's ticker. Times are
ISO-8601 in IST (`2026-11-23T10:15:07+05:30`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.plumbing import build_object_type
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from marketdata.candles import INTERVAL_MINUTES
from trading_site import clock

MAX_QUOTE_TOKENS = 500
# Stored times have microsecond resolution, so `< to + 1 µs` is `<= to`: `to` is inclusive, as Kite's is.
_ONE_MICROSECOND = dt.timedelta(microseconds=1)
# Kite's tick modes, by the code the feed stores.
MODE_NAMES = {0: "ltp", 1: "quote", 2: "full"}


# ---------------------------------------------------------------------------
# Query parameters
# ---------------------------------------------------------------------------


# Aware times near datetime's limits overflow when moved to IST or by a day; the API keeps its times
# inside these bounds, which no market data comes near.
EARLIEST = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
LATEST = dt.datetime(9999, 12, 30, tzinfo=dt.UTC)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?", re.ASCII)


def shifted(moment: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    """moment + delta, kept within [EARLIEST, LATEST], in UTC: PostgreSQL refuses offsets beyond
    ±15:59, which ISO 8601 (and Python) allow."""
    try:
        moved = moment + delta
    except OverflowError:
        return LATEST if delta > dt.timedelta(0) else EARLIEST
    return min(max(moved, EARLIEST), LATEST).astimezone(dt.UTC)


@extend_schema_field({"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]})
class MarketTimeField(serializers.Field):
    """A date (`2026-11-23`) or a date and time (`2026-11-23T09:15:00`, or with a space, or an offset
    without a colon, as Kite writes them; IST unless it has an offset). Becomes an aware datetime: a
    date is its 00:00 IST, or for an `end` field the next day's (so a date as `to` means the whole day)."""

    default_error_messages = {"invalid": _("Give a date (2026-11-23) or a date and time (2026-11-23T09:15:00).")}

    def __init__(self, *, end: bool = False, **kwargs) -> None:
        self.end = end
        super().__init__(**kwargs)

    def to_internal_value(self, data) -> dt.datetime:
        try:
            if isinstance(data, str) and _DATE.fullmatch(data):
                moment = dt.datetime.combine(dt.date.fromisoformat(data), dt.time(0, 0), tzinfo=clock.IST)
                return shifted(moment, dt.timedelta(days=1 if self.end else 0))
            if isinstance(data, str) and _DATE_TIME.fullmatch(data):
                moment = dt.datetime.fromisoformat(data.upper())
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=clock.IST)
                return shifted(moment, _ONE_MICROSECOND if self.end else dt.timedelta(0))
        except ValueError:
            pass
        self.fail("invalid")

    def to_representation(self, value):
        return value


class TimeRangeQuerySerializer(serializers.Serializer):
    """`from` and `to` (a Python keyword and its partner), both optional. validated_data holds the
    half-open range as `start` and `end`; with `page_days`, a longer range is served a page at a time:
    `end` is then the page's and `next_from` where the next begins (None on the last page)."""

    from_help = "Start, inclusive: a date or a date and time, IST unless it has an offset."
    to_help = "End, inclusive: a date (the whole day) or a date and time. Default: now."

    def get_fields(self) -> dict:
        fields = super().get_fields()
        fields["from"] = MarketTimeField(required=False, help_text=self.from_help)
        fields["to"] = MarketTimeField(end=True, required=False, help_text=self.to_help)
        return fields

    def validate(self, attrs: dict) -> dict:
        end = attrs.pop("to", None) or clock.now()
        start = attrs.pop("from", None) or self.default_start(end, attrs)
        days = self.page_days(attrs)
        page_end = min(end, shifted(start, dt.timedelta(days=days))) if days else end
        next_from = page_end if start < page_end < end else None
        return {**attrs, "start": start, "end": page_end, "next_from": next_from}

    def default_start(self, end: dt.datetime, attrs: dict) -> dt.datetime:
        return _ist_midnight(end, days_back=0)

    def page_days(self, attrs: dict) -> int | None:
        return None


def _ist_midnight(moment: dt.datetime, *, days_back: int) -> dt.datetime:
    day = moment.astimezone(clock.IST).date()
    return shifted(dt.datetime.combine(day, dt.time(0, 0), tzinfo=clock.IST), -dt.timedelta(days=days_back))


# Candles are built on request from 1-minute bars, so a request reads at most this many days of them
# and a longer range comes in pages. Measured on PostgreSQL: 60 days of minute candles (22,500) take
# 0.6 s end to end, 1.6 MB of JSON; 60 days of 5minute 0.2 s; day candles are grouped by the database
# (60 days in 25 ms). Kite's limits per request: 60 days of minute candles, 100-400 of the other
# intraday intervals, 2,000 of day.
PAGE_DAYS = dict.fromkeys(INTERVAL_MINUTES, 100) | {"minute": 60, "day": 2000}
DEFAULT_DAYS = dict.fromkeys(INTERVAL_MINUTES, 30) | {"minute": 5, "day": 365}


class StrictDateField(serializers.DateField):
    """YYYY-MM-DD only, as the schema's `format: date` says (Django would also take 2026-1-5)."""

    def to_internal_value(self, data) -> dt.date:
        if not (isinstance(data, str) and _DATE.fullmatch(data)):
            self.fail("invalid", format="YYYY-MM-DD")
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    """Only the choices themselves: DRF would also match 5 to "5", or True to "True"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class BarsQuerySerializer(TimeRangeQuerySerializer):
    interval = StrictChoiceField(
        choices=list(INTERVAL_MINUTES),
        default="minute",
        help_text="Kite's interval names. Intraday candles start at 09:15 IST and every interval after; "
        "`day` is the IST calendar day.",
    )
    from_help = (
        "Start, inclusive: a date or a date and time, IST unless it has an offset. Default: 00:00 IST "
        "5 days back for `minute`, 30 days for the other intraday intervals, 365 for `day`."
    )

    def default_start(self, end: dt.datetime, attrs: dict) -> dt.datetime:
        return _ist_midnight(end, days_back=DEFAULT_DAYS[attrs["interval"]] - 1)

    def page_days(self, attrs: dict) -> int:
        return PAGE_DAYS[attrs["interval"]]


class TicksQuerySerializer(TimeRangeQuerySerializer):
    from_help = "Start, inclusive: a date or a date and time, IST unless it has an offset. Default: 00:00 IST today."
    to_help = "End, inclusive: a date (the whole day) or a date and time. Default: no end."

    def validate(self, attrs: dict) -> dict:
        open_ended = "to" not in attrs
        attrs = super().validate(attrs)
        return {**attrs, "end": None} if open_ended else attrs


# An underlying's symbol as Kite names it (NIFTY, M&M, BAJAJ-AUTO).
SYMBOL_PATTERN = r"\A[A-Za-z0-9&_.-]{1,32}\Z"
MAX_TOKEN = 2**63 - 1  # tokens are stored as signed 64-bit integers
TOKEN_SCHEMA = {"type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_TOKEN}


def parse_tokens(values: list[str]) -> list[int]:
    """Instrument tokens from `tokens` parameters, each a token or a comma-separated list: in the
    order given, each once. Raises ValidationError naming `tokens`."""
    pieces = [piece for value in values for piece in value.split(",")]
    if not "".join(pieces):
        raise serializers.ValidationError({"tokens": [_("Give at least one instrument token.")]})
    if len(pieces) > MAX_QUOTE_TOKENS:
        raise serializers.ValidationError({"tokens": [_("Give at most %d tokens per request.") % MAX_QUOTE_TOKENS]})
    for piece in pieces:
        if not (piece.isascii() and piece.isdigit() and int(piece) <= MAX_TOKEN):
            raise serializers.ValidationError({"tokens": [_("%r is not an instrument token.") % piece]})
    return list(dict.fromkeys(int(piece) for piece in pieces))


# ---------------------------------------------------------------------------
# Quotes
# ---------------------------------------------------------------------------


@extend_schema_field({"type": "string", "format": "date-time", "nullable": True})
class EpochSecondsField(serializers.Field):
    """Epoch seconds as ISO-8601 in IST; null when the feed has none (0)."""

    def to_representation(self, value) -> str | None:
        return dt.datetime.fromtimestamp(value, tz=clock.IST).isoformat() if value else None


@extend_schema_field(serializers.ChoiceField(choices=list(MODE_NAMES.values())))
class ModeField(serializers.Field):
    """Kite's tick mode: `ltp` (last price only), `quote` (no depth, OI or times) or `full`."""

    def to_representation(self, value) -> str:
        return MODE_NAMES.get(value, "full")


class OhlcSerializer(serializers.Serializer):
    open = serializers.FloatField()
    high = serializers.FloatField()
    low = serializers.FloatField()
    close = serializers.FloatField(help_text="The previous session's close.")


class DepthLevelSerializer(serializers.Serializer):
    price = serializers.FloatField()
    quantity = serializers.IntegerField()


class BestDepthSerializer(serializers.Serializer):
    """The best bid and offer: the feed keeps one level of Kite's five. Empty when there is none."""

    buy = DepthLevelSerializer(many=True)
    sell = DepthLevelSerializer(many=True)

    def to_representation(self, instance: Mapping) -> dict:
        return {
            "buy": _level(instance.get("bid"), instance.get("bid_quantity")),
            "sell": _level(instance.get("ask"), instance.get("ask_quantity")),
        }


def _level(price, quantity) -> list[dict]:
    return [{"price": float(price), "quantity": int(quantity)}] if price or quantity else []


class QuoteSerializer(serializers.Serializer):
    """The latest value of one instrument, from a tick as the feed wrote it to Redis."""

    instrument_token = serializers.IntegerField()
    mode = ModeField(help_text="Kite's tick mode: which fields the exchange sent (the feed asks for `full`).")
    timestamp = EpochSecondsField(source="exchange_timestamp", help_text="Exchange time of the tick.")
    last_trade_time = EpochSecondsField()
    last_price = serializers.FloatField()
    last_quantity = serializers.IntegerField(source="last_traded_quantity")
    buy_quantity = serializers.IntegerField(source="total_buy_quantity", help_text="Total bid quantity.")
    sell_quantity = serializers.IntegerField(source="total_sell_quantity", help_text="Total offer quantity.")
    volume = serializers.IntegerField(source="volume_traded", help_text="Day volume, in units.")
    average_price = serializers.FloatField(source="average_traded_price")
    oi = serializers.IntegerField(help_text="Open interest, in units (contracts x lot size).")
    oi_day_high = serializers.IntegerField()
    oi_day_low = serializers.IntegerField()
    net_change = serializers.SerializerMethodField(help_text="last_price - the previous close, in ₹.")
    change = serializers.FloatField(help_text="Percent change from the previous close (as in Kite's ticks).")
    ohlc = OhlcSerializer(source="*")
    depth = BestDepthSerializer(source="*")

    def get_net_change(self, tick: Mapping) -> float:
        close = tick.get("close") or 0.0
        return round(tick["last_price"] - close, 4) if close else 0.0


class QuotesByTokenSerializer(serializers.Serializer):
    """Quotes keyed by instrument token as a string, like the `data` of Kite's `GET /quote`. Only
    describes the response for the schema (QuotesByTokenSchema): the view builds the mapping."""


class QuotesByTokenSchema(OpenApiSerializerExtension):
    """drf-spectacular cannot describe a mapping of serializers by itself: an object whose every
    property is a Quote."""

    target_class = QuotesByTokenSerializer

    def map_serializer(self, auto_schema, direction) -> dict:
        quote = auto_schema.resolve_serializer(QuoteSerializer, direction)
        return build_object_type(
            properties={},
            additionalProperties=quote.ref,
            description="Instrument token (a string) -> its quote; tokens with no value are absent.",
        )


# ---------------------------------------------------------------------------
# Candles and stored ticks
# ---------------------------------------------------------------------------


class CandleSerializer(serializers.Serializer):
    date = serializers.DateTimeField(help_text="Start of the candle, IST.")
    open = serializers.FloatField()
    high = serializers.FloatField()
    low = serializers.FloatField()
    close = serializers.FloatField()
    volume = serializers.IntegerField(help_text="Volume traded in the candle, in units.")
    oi = serializers.IntegerField(help_text="Open interest at the candle's close, in units.")


class CandlesSerializer(serializers.Serializer):
    instrument_token = serializers.IntegerField()
    interval = serializers.ChoiceField(choices=list(INTERVAL_MINUTES))
    candles = CandleSerializer(many=True, help_text="Oldest first; empty when no bars are stored.")
    next = serializers.URLField(allow_null=True, help_text="The next page of a range longer than a page; else null.")


class StoredTickSerializer(serializers.Serializer):
    """A stored tick (kiteconnect's ticker names): what replay needs, depth kept to the best level."""

    instrument_token = serializers.IntegerField()
    mode = ModeField()
    exchange_timestamp = serializers.DateTimeField()
    last_trade_time = serializers.DateTimeField(allow_null=True)
    last_price = serializers.FloatField()
    last_traded_quantity = serializers.IntegerField()
    average_traded_price = serializers.FloatField()
    volume_traded = serializers.IntegerField(help_text="Day volume, in units.")
    total_buy_quantity = serializers.IntegerField()
    total_sell_quantity = serializers.IntegerField()
    ohlc = OhlcSerializer(source="*")
    change = serializers.SerializerMethodField(help_text="Percent change from the previous close.")
    oi = serializers.IntegerField()
    oi_day_high = serializers.IntegerField()
    oi_day_low = serializers.IntegerField()
    depth = serializers.SerializerMethodField()

    def get_change(self, tick) -> float:
        return float((tick.last_price - tick.close) * 100 / tick.close) if tick.close else 0.0

    @extend_schema_field(BestDepthSerializer)
    def get_depth(self, tick) -> dict:
        return {
            "buy": _level(tick.bid_price, tick.bid_quantity),
            "sell": _level(tick.ask_price, tick.ask_quantity),
        }


# ---------------------------------------------------------------------------
# The feed's status
# ---------------------------------------------------------------------------


class IstTimeField(serializers.DateTimeField):
    """An ISO-8601 time as the feed wrote it (UTC), shown in IST like every other time of the API."""

    def to_representation(self, value) -> str | None:
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        return super().to_representation(value)


class FeedStatusSerializer(serializers.Serializer):
    """What `run_feed` reports every second; only `state` when no feed has reported for 10 s."""

    state = serializers.ChoiceField(
        choices=["running", "stopped", "not_running"],
        help_text="`running`; `stopped` for 10 s after a feed stops; `not_running` when no feed reports.",
    )
    detail = serializers.CharField(required=False, help_text="With `not_running`: what to do.")
    source = serializers.ChoiceField(choices=["kite", "sim", "replay"], required=False)
    session = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="Kite: `connecting`, `connected` or `session expired`; else `simulated` or `replay`.",
    )
    connections_up = serializers.IntegerField(required=False)
    connections_wanted = serializers.IntegerField(required=False)
    instruments = serializers.IntegerField(required=False, help_text="Instruments subscribed.")
    ticks_per_s = serializers.FloatField(required=False)
    frames_per_s = serializers.FloatField(required=False)
    ticks_total = serializers.IntegerField(required=False)
    lag_ms = serializers.IntegerField(
        required=False, allow_null=True, help_text="Source clock minus the latest exchange timestamp."
    )
    exchange_time = IstTimeField(required=False, allow_null=True, help_text="The latest tick's exchange time.")
    ticks_for_storage = serializers.IntegerField(required=False)
    storage_backlog = serializers.IntegerField(required=False, help_text="Ticks queued for the database.")
    ticks_stored = serializers.IntegerField(required=False)
    ticks_dropped = serializers.IntegerField(required=False, help_text="Dropped because the queue was full.")
    bars_stored = serializers.IntegerField(required=False)
    frame_errors = serializers.IntegerField(required=False)
    last_error = serializers.CharField(required=False, allow_null=True)
    messages_sent = serializers.IntegerField(required=False)
    chain_refreshes_requested = serializers.IntegerField(required=False)
    chain_refreshes_waiting_on_worker = serializers.IntegerField(required=False)
    chain_refresh_errors = serializers.IntegerField(required=False)
    reconnects = serializers.IntegerField(required=False, help_text="Kite only.")
    replayed = serializers.CharField(required=False, help_text="Replay only: ticks sent / total.")
    started_at = IstTimeField(required=False)
    updated_at = IstTimeField(required=False, help_text="When the feed wrote this status.")
