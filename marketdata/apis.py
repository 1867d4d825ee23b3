"""Market data over REST: live quotes, candles, stored ticks and the feed's status (option chains and
the Greeks calculator are in option_apis). Thin: parameters are validated by serializers, data read
by selectors.

Live values are kept in Redis. When it does not answer, these endpoints (like every endpoint whose
rate limit counts requests there) answer 503 with code `unavailable` (trading_site.api), never a 500.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, generics
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from marketdata import selectors
from marketdata.serializers import (
    MAX_QUOTE_TOKENS,
    MAX_TOKEN,
    TOKEN_SCHEMA,
    BarsQuerySerializer,
    CandlesSerializer,
    FeedStatusSerializer,
    QuotesByTokenSerializer,
    QuoteSerializer,
    StoredTickSerializer,
    TicksQuerySerializer,
    parse_tokens,
)
from trading_site import clock
from trading_site.api import TimeCursorPagination
from trading_site.auth_api import ERROR_RESPONSE

log = logging.getLogger(__name__)

UNAVAILABLE = OpenApiResponse(ERROR_RESPONSE, description="Redis, which holds the live data, is not answering.")
TOKEN_PATH = OpenApiParameter(
    "token",
    TOKEN_SCHEMA,
    OpenApiParameter.PATH,
    description="Kite's instrument token, e.g. 256265 for NIFTY 50.",
    examples=[OpenApiExample("NIFTY 50", value=256265)],
)
NO_SUCH_TOKEN = OpenApiResponse(ERROR_RESPONSE, description="Not a token (not a whole number, or beyond 64 bits).")


def stored_token(token: str) -> int:
    """The URL's token as a number, or a 404 when no stored row could have it (the columns are 64-bit)."""
    if not (token.isascii() and token.isdigit() and int(token) <= MAX_TOKEN):
        raise exceptions.NotFound(_("No instrument has token %r.") % token)
    return int(token)


def next_page_url(request: Request, next_from: dt.datetime | None) -> str | None:
    """The same request for the range's next page, with `to` pinned (it may have defaulted to now)."""
    if next_from is None:
        return None
    params = request.query_params.copy()
    params.setdefault("to", clock.now().isoformat())
    params["from"] = next_from.astimezone(clock.IST).isoformat()
    return request.build_absolute_uri(f"{request.path}?{params.urlencode()}")


class StrictTimeCursorPagination(TimeCursorPagination):
    """`page_size` must be a whole number from 1 (the schema says so): DRF would quietly use the
    default for `page_size=abc`. Sizes above the maximum are capped, as DRF does."""

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not (raw.isascii() and raw.isdigit() and int(raw) >= 1):
            raise ValidationError({self.page_size_query_param: [_("A whole number from 1.")]})
        return min(int(raw), self.max_page_size)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
                parameter["description"] = f"Ticks per page, {self.page_size} by default; at most {self.max_page_size}."
        return parameters


NIFTY_QUOTE = {
    "instrument_token": 256265,
    "mode": "full",
    "timestamp": "2026-11-23T10:15:07+05:30",
    "last_trade_time": None,
    "last_price": 26010.35,
    "last_quantity": 0,
    "buy_quantity": 0,
    "sell_quantity": 0,
    "volume": 0,
    "average_price": 0.0,
    "oi": 0,
    "oi_day_high": 0,
    "oi_day_low": 0,
    "net_change": 62.15,
    "change": 0.2393,
    "ohlc": {"open": 25990.0, "high": 26035.8, "low": 25961.2, "close": 25948.2},
    "depth": {"buy": [], "sell": []},
}
OPTION_QUOTE = {
    "instrument_token": 10191874,
    "mode": "full",
    "timestamp": "2026-11-23T10:15:07+05:30",
    "last_trade_time": "2026-11-23T10:15:06+05:30",
    "last_price": 112.5,
    "last_quantity": 75,
    "buy_quantity": 412500,
    "sell_quantity": 389250,
    "volume": 18234750,
    "average_price": 109.85,
    "oi": 4837500,
    "oi_day_high": 4901250,
    "oi_day_low": 4612500,
    "net_change": 9.3,
    "change": 9.0116,
    "ohlc": {"open": 101.0, "high": 121.4, "low": 96.05, "close": 103.2},
    "depth": {"buy": [{"price": 112.45, "quantity": 1500}], "sell": [{"price": 112.55, "quantity": 975}]},
}


class QuotesAPI(APIView):
    @extend_schema(
        operation_id="quotes",
        summary="Latest quotes of up to 500 instruments",
        description=(
            "The feed's latest value of each instrument (written every conflation interval), like Kite's "
            "`GET /quote`: a mapping keyed by the instrument token as a string. Tokens the feed has no value "
            "for (not streamed, unknown) are simply absent. Depth is the best bid and offer only."
        ),
        parameters=[
            OpenApiParameter(
                "tokens",
                {"type": "array", "items": TOKEN_SCHEMA, "minItems": 1, "maxItems": MAX_QUOTE_TOKENS},
                OpenApiParameter.QUERY,
                required=True,
                explode=False,
                style="form",
                description=f"Instrument tokens, comma-separated (`tokens=256265,10191874`) and/or repeated "
                f"(`tokens=256265&tokens=10191874`); at most {MAX_QUOTE_TOKENS}.",
            )
        ],
        responses={
            200: QuotesByTokenSerializer,
            400: ERROR_RESPONSE,
            401: ERROR_RESPONSE,
            503: UNAVAILABLE,
        },
        examples=[
            OpenApiExample(
                "NIFTY 50 and an option",
                value={"256265": NIFTY_QUOTE, "10191874": OPTION_QUOTE},
                response_only=True,
                status_codes=["200"],
            ),
            OpenApiExample(
                "A bad token",
                value={
                    "detail": "Invalid input.",
                    "code": "invalid",
                    "errors": {"tokens": ["'abc' is not an instrument token."]},
                },
                response_only=True,
                status_codes=["400"],
            ),
        ],
    )
    def get(self, request: Request) -> Response:
        tokens = parse_tokens(request.query_params.getlist("tokens"))
        ticks = selectors.latest_ticks(tokens)
        found = [ticks[token] for token in tokens if token in ticks]
        quotes = QuoteSerializer(found, many=True).data
        return Response({str(quote["instrument_token"]): quote for quote in quotes})


class InstrumentBarsAPI(APIView):
    @extend_schema(
        operation_id="instrument_bars",
        summary="Candles of an instrument",
        description=(
            "OHLC candles with volume and OI, like Kite's historical data, built from the stored 1-minute "
            "bars: open is the first bar's, high the highest, low the lowest, close the last bar's, volume the "
            "sum and OI the last. Intraday candles start at 09:15 IST and every interval after (a 60minute "
            "candle covers 09:15-10:15); `day` is the IST calendar day, dated 00:00 IST. A request covers at "
            "most 60 days of `minute` candles, 100 of the other intraday intervals and 2,000 of `day` (Kite's "
            "limits, or less): a longer range comes in pages, `next` being the URL of the next one (null on "
            "the last). `from` after `to` is an empty range. A token with no stored bars (unknown, or never "
            "streamed) gets an empty list, not a 404: Kite reuses tokens after expiry and bars outlive the "
            "instrument master."
        ),
        parameters=[TOKEN_PATH, BarsQuerySerializer],
        responses={
            200: CandlesSerializer,
            400: ERROR_RESPONSE,
            401: ERROR_RESPONSE,
            404: NO_SUCH_TOKEN,
            503: UNAVAILABLE,
        },
        examples=[
            OpenApiExample(
                "5minute",
                value={
                    "instrument_token": 256265,
                    "interval": "5minute",
                    "candles": [
                        {
                            "date": "2026-11-23T09:15:00+05:30",
                            "open": 25990.0,
                            "high": 26012.4,
                            "low": 25971.05,
                            "close": 26004.8,
                            "volume": 0,
                            "oi": 0,
                        }
                    ],
                    "next": None,
                },
                response_only=True,
                status_codes=["200"],
            ),
            OpenApiExample(
                "A bad interval",
                value={
                    "detail": "Invalid input.",
                    "code": "invalid",
                    "errors": {"interval": ['"2minute" is not a valid choice.']},
                },
                response_only=True,
                status_codes=["400"],
            ),
        ],
    )
    def get(self, request: Request, token: str) -> Response:
        instrument_token = stored_token(token)
        query = BarsQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        params = query.validated_data
        candles = selectors.candles(
            token=instrument_token, interval=params["interval"], start=params["start"], end=params["end"]
        )
        return Response(
            {
                "instrument_token": instrument_token,
                "interval": params["interval"],
                "candles": candles,
                "next": next_page_url(request, params["next_from"]),
            }
        )


@extend_schema_view(
    get=extend_schema(
        operation_id="instrument_ticks",
        summary="Stored ticks of an instrument",
        description=(
            "Ticks as stored for replay (only for underlyings marked 'store ticks'), oldest first, in cursor "
            "pages: follow `next` until it is null. Field names are kiteconnect's ticker's; depth is the best "
            "bid and offer only. An instrument with no stored ticks gets an empty page."
        ),
        parameters=[TOKEN_PATH, TicksQuerySerializer],
        responses={
            200: StoredTickSerializer(many=True),
            400: ERROR_RESPONSE,
            401: ERROR_RESPONSE,
            404: OpenApiResponse(ERROR_RESPONSE, description="An invalid cursor, or not a token (see bars)."),
            503: UNAVAILABLE,
        },
    )
)
class InstrumentTicksAPI(generics.ListAPIView):
    serializer_class = StoredTickSerializer
    pagination_class = StrictTimeCursorPagination
    filter_backends: list = []

    def get_queryset(self):
        query = TicksQuerySerializer(data=self.request.query_params.dict())
        query.is_valid(raise_exception=True)
        params = query.validated_data
        return selectors.stored_ticks(
            token=stored_token(self.kwargs["token"]), start=params["start"], end=params["end"]
        )


class FeedStatusAPI(APIView):
    NOT_RUNNING = {
        "state": "not_running",
        "detail": "No feed has reported in the last 10 seconds. Start one with `python manage.py run_feed`.",
    }

    @extend_schema(
        operation_id="feed_status",
        summary="The live feed's status",
        description=(
            "What `run_feed` reports every second (the same as the `feed.status` websocket group). When no "
            "feed has reported for 10 seconds the answer is still a 200, with state `not_running`: the API "
            "itself is up, and a client polling this wants an answer, not an error."
        ),
        responses={200: FeedStatusSerializer, 401: ERROR_RESPONSE, 503: UNAVAILABLE},
        examples=[
            OpenApiExample(
                "Running on Kite",
                value={
                    "state": "running",
                    "source": "kite",
                    "session": "connected",
                    "connections_up": 3,
                    "connections_wanted": 3,
                    "instruments": 8916,
                    "ticks_per_s": 2140.5,
                    "lag_ms": 180,
                    "storage_backlog": 0,
                    "ticks_dropped": 0,
                    "last_error": None,
                    "updated_at": "2026-11-23T10:15:08.120000+05:30",
                },
                response_only=True,
            ),
            OpenApiExample("Not running", value=NOT_RUNNING, response_only=True),
        ],
    )
    def get(self, request: Request) -> Response:
        status = selectors.feed_status()
        return Response(FeedStatusSerializer(status).data if status else self.NOT_RUNNING)
