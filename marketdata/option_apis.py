"""Option chains over REST (the latest figures from Redis, their stored history) and the Greeks
calculator. Thin: serializers validate, selectors read, greeks_calculator computes."""

from __future__ import annotations

import datetime as dt
import re

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from instruments.models import Underlying
from marketdata import greeks_calculator, selectors
from marketdata.apis import UNAVAILABLE, next_page_url
from marketdata.chain_serializers import (
    ChainAnalyticsSerializer,
    ChainHistoryQuerySerializer,
    ChainHistorySerializer,
    ChainQuerySerializer,
    ChainSnapshotSerializer,
    ChainSnapshotWithStrikesSerializer,
)
from marketdata.greeks_serializers import (
    MAX_CONTRACTS,
    GreeksRequestSerializer,
    GreeksResponseSerializer,
    response_body,
)
from marketdata.serializers import SYMBOL_PATTERN
from trading_site import clock
from trading_site.auth_api import ERROR_RESPONSE

SYMBOL_PATH = OpenApiParameter(
    "symbol",
    {"type": "string", "pattern": SYMBOL_PATTERN.replace("\\A", "^").replace("\\Z", "$")},
    OpenApiParameter.PATH,
    description="The underlying, as Kite names its contracts: NIFTY, BANKNIFTY… (any case).",
    examples=[OpenApiExample("NIFTY", value="NIFTY")],
)
NOT_FOUND = OpenApiResponse(
    ERROR_RESPONSE,
    description="`not_found`: no such underlying; `no_expiry`: it has no option expiry ahead and none was given; "
    "`no_chain_yet` (latest figures only): no figures for this chain yet.",
)


class ChainLookup:
    """The underlying named in the URL and the expiry asked for (or its nearest), or a 404."""

    def chain_of(self, symbol: str, expiry: dt.date | None) -> tuple[Underlying, dt.date]:
        underlying = selectors.underlying_by_symbol(symbol) if re.match(SYMBOL_PATTERN, symbol) else None
        if underlying is None:
            raise exceptions.NotFound(_("No underlying named %r.") % symbol, code="not_found")
        expiry = expiry or selectors.nearest_option_expiry(underlying=underlying)
        if expiry is None:
            raise exceptions.NotFound(
                _("%s has no option expiry from today in the instrument master: give `expiry`.") % underlying.symbol,
                code="no_expiry",
            )
        return underlying, expiry


class ChainAPI(ChainLookup, APIView):
    @extend_schema(
        operation_id="chain_latest",
        summary="The latest figures of an option chain",
        description=(
            "Every figure of one underlying's chain for one expiry, exactly as the chain refresh task last "
            "computed it from the live feed (it is also pushed to the `chain.<UNDERLYING>.<YYYYMMDD>` websocket "
            "group): the summary (spot, forward, ATM IV, expected move, 25-delta skew, PCR, max pain, walls, "
            "GEX and gamma flip, the IV smile) and one row per streamed strike with each side's quote, IV and "
            "Greeks, OI change and buildup. Units: IV in percent points; delta per ₹1, gamma per ₹1², theta "
            "in ₹ per calendar day, vega in ₹ per volatility point, rho in ₹ per rate point; OI and volume in "
            "units; GEX in ₹ per 1 % move. A figure that cannot be computed is null. No figures yet (the feed "
            "has not streamed this chain, or no worker has refreshed it) is a 404 with code `no_chain_yet`."
        ),
        parameters=[SYMBOL_PATH, ChainQuerySerializer],
        responses={
            200: ChainAnalyticsSerializer,
            400: ERROR_RESPONSE,
            401: ERROR_RESPONSE,
            404: NOT_FOUND,
            503: UNAVAILABLE,
        },
        examples=[
            OpenApiExample(
                "No figures yet",
                value={
                    "detail": "No figures for NIFTY 2026-11-24 yet: the feed has not streamed this chain, "
                    "or no worker has refreshed it.",
                    "code": "no_chain_yet",
                },
                response_only=True,
                status_codes=["404"],
            )
        ],
    )
    def get(self, request: Request, symbol: str) -> Response:
        query = ChainQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        underlying, expiry = self.chain_of(symbol, query.validated_data.get("expiry"))
        analytics = selectors.latest_chain_analytics(symbol=underlying.symbol, expiry=expiry)
        if analytics is None:
            raise exceptions.NotFound(
                _(
                    "No figures for %(symbol)s %(expiry)s yet: the feed has not streamed this chain, or no worker "
                    "has refreshed it."
                )
                % {"symbol": underlying.symbol, "expiry": expiry},
                code="no_chain_yet",
            )
        return Response(analytics)


class ChainHistoryAPI(ChainLookup, APIView):
    @extend_schema(
        operation_id="chain_history",
        summary="An option chain's stored history",
        description=(
            "The chain's snapshots (one a minute, the first refresh of each: CHAIN_SNAPSHOT_SECONDS) in a range, "
            "oldest first: the headline figures, and with `strikes=true` each snapshot's whole summary and "
            "per-strike rows as the live figures had them. Default range: today (IST) so far. A response covers "
            "at most 31 days, or 1 day with strikes: a longer range comes in pages, `next` being the URL of the "
            "next one (null on the last). No snapshots in the range (or `from` after `to`) is an empty list."
        ),
        parameters=[SYMBOL_PATH, ChainHistoryQuerySerializer],
        responses={
            200: ChainHistorySerializer,
            400: ERROR_RESPONSE,
            401: ERROR_RESPONSE,
            404: NOT_FOUND,
            503: UNAVAILABLE,
        },
        examples=[
            OpenApiExample(
                "Two minutes",
                value={
                    "underlying": "NIFTY",
                    "expiry": "2026-11-24",
                    "snapshots": [
                        {
                            "taken_at": "2026-11-23T10:15:00+05:30",
                            "spot": 26010.0,
                            "future": 26062.5,
                            "atm_strike": 26000.0,
                            "atm_iv": 14.02,
                            "pcr_oi": 1.444,
                            "pcr_volume": 1.5,
                            "max_pain": 26000.0,
                            "total_gex": -512340000,
                            "gamma_flip": 26105.4,
                        },
                        {
                            "taken_at": "2026-11-23T10:16:00+05:30",
                            "spot": 26014.5,
                            "future": 26066.9,
                            "atm_strike": 26000.0,
                            "atm_iv": 13.97,
                            "pcr_oi": 1.451,
                            "pcr_volume": 1.49,
                            "max_pain": 26000.0,
                            "total_gex": -498120000,
                            "gamma_flip": 26101.2,
                        },
                    ],
                },
                response_only=True,
                status_codes=["200"],
            )
        ],
    )
    def get(self, request: Request, symbol: str) -> Response:
        query = ChainHistoryQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        params = query.validated_data
        underlying, expiry = self.chain_of(symbol, params.get("expiry"))
        snapshots = selectors.chain_snapshots(
            symbol=underlying.symbol,
            expiry=expiry,
            start=params["start"],
            end=params["end"],
            with_strikes=params["strikes"],
        )
        serializer = ChainSnapshotWithStrikesSerializer if params["strikes"] else ChainSnapshotSerializer
        return Response(
            {
                "underlying": underlying.symbol,
                "expiry": expiry.isoformat(),
                "snapshots": serializer(snapshots, many=True).data,
                "next": next_page_url(request, params["next_from"]),
            }
        )


class GreeksAPI(APIView):
    @extend_schema(
        operation_id="greeks_calculate",
        summary="Greeks calculator",
        description=(
            f"Black-Scholes-Merton prices, implied volatilities and Greeks of 1 to {MAX_CONTRACTS:,} European "
            'contracts in one request, always as `{"contracts": [...]}` (one contract is a list of one). Each '
            "contract gives `price` (the IV is solved for) or `volatility` in percent points (the price is "
            "solved for), and `expiry` (time runs to 15:30 IST on it) or `time_to_expiry_years`. `rate` and "
            "`dividend_yield` are continuous fractions, defaulting to the named `underlying`'s, else 0.065 and "
            "0; for Black-76 on a future give the future as `spot` and `dividend_yield` equal to `rate`. An "
            "expired contract (expiry before now) is worth its intrinsic value. A price that no volatility "
            "gives is not an error: its `iv` and Greeks are null and `iv_reason` says why. Results come in "
            "the order of the contracts, with the units in `units`. Errors of one contract "
            'are keyed by its position, from 0: `{"errors": {"contracts": {"3": {"spot": [...]}}}}`.'
        ),
        request=GreeksRequestSerializer,
        responses={
            200: GreeksResponseSerializer,
            400: ERROR_RESPONSE,
            401: ERROR_RESPONSE,
            404: OpenApiResponse(ERROR_RESPONSE, description="A contract names an underlying there is none of."),
            503: UNAVAILABLE,
        },
        examples=[
            OpenApiExample(
                "Price from a volatility (the textbook call: 10.4506)",
                value={
                    "contracts": [
                        {
                            "option_type": "CE",
                            "spot": 100,
                            "strike": 100,
                            "time_to_expiry_years": 1,
                            "rate": 0.05,
                            "volatility": 20,
                        }
                    ]
                },
                request_only=True,
            ),
            OpenApiExample(
                "IVs from prices, NIFTY's rates",
                value={
                    "contracts": [
                        {
                            "option_type": "CE",
                            "spot": 26010,
                            "strike": 26000,
                            "expiry": "2026-11-24",
                            "price": 112.5,
                            "underlying": "NIFTY",
                        },
                        {
                            "option_type": "PE",
                            "spot": 26010,
                            "strike": 26000,
                            "expiry": "2026-11-24",
                            "price": 96.1,
                            "underlying": "NIFTY",
                        },
                    ]
                },
                request_only=True,
            ),
            OpenApiExample(
                "Result",
                value={
                    "units": {
                        "iv": "annualised, percent points (20 is 20 %)",
                        "theta": "change in price per calendar day that passes (usually negative)",
                    },
                    "results": [
                        {
                            "option_type": "CE",
                            "spot": 100.0,
                            "strike": 100.0,
                            "time_to_expiry_years": 1.0,
                            "rate": 0.05,
                            "dividend_yield": 0.0,
                            "solved_for": "price",
                            "price": 10.450583572185565,
                            "iv": 20.0,
                            "iv_reason": None,
                            "delta": 0.6368306511756191,
                            "gamma": 0.018762017345846895,
                            "theta": -0.01757267820941972,
                            "vega": 0.3752403469169379,
                            "rho": 0.5323248154537634,
                        }
                    ],
                },
                response_only=True,
                status_codes=["200"],
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        contracts = GreeksRequestSerializer(data=request.data, context={"now": clock.now()})
        contracts.is_valid(raise_exception=True)
        contracts.resolve_rates()
        return Response(response_body(contracts, greeks_calculator.evaluate(contracts.batch())))
