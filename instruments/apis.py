"""The instruments app's REST endpoints: instruments, underlyings and the user's broker accounts.

All are read-only. The master changes only through sync_instruments, underlyings in the admin, and
accounts on the accounts pages, where secrets are typed in a form and never echoed.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from instruments import selectors
from instruments.models import BrokerAccount
from instruments.serializers import (
    BrokerAccountSerializer,
    InstrumentFilter,
    InstrumentSerializer,
    UnderlyingFilter,
    UnderlyingSerializer,
)
from trading_site import clock
from trading_site.auth_api import ERROR_RESPONSE

# ---------------------------------------------------------------------------
# Shared by the endpoints
# ---------------------------------------------------------------------------
NOT_AUTHENTICATED = OpenApiResponse(ERROR_RESPONSE, description="No session and no valid token.")
LIST_ERRORS = {
    400: OpenApiResponse(ERROR_RESPONSE, description="A bad parameter; `errors` names each one."),
    401: NOT_AUTHENTICATED,
    404: OpenApiResponse(ERROR_RESPONSE, description="A page past the last one."),
}
NO_INSTRUMENT = "No instrument has this token."
NO_UNDERLYING = "No underlying has this symbol."
NO_ACCOUNT = "No such broker account."


def _errors_of_one(missing: str) -> dict:
    return {401: NOT_AUTHENTICATED, 404: OpenApiResponse(ERROR_RESPONSE, description=missing)}


def _positive_int_or_404(text: str, message: str) -> int:
    # The path takes any text, so that a malformed id gets this JSON 404 rather than the site's HTML one.
    if not (text.isascii() and text.isdigit()):
        raise NotFound(message)
    return int(text)


# ---------------------------------------------------------------------------
# Instruments
# ---------------------------------------------------------------------------
NIFTY_CALL = {
    "instrument_token": 10893826,
    "exchange_token": 42554,
    "tradingsymbol": "NIFTY26D0126000CE",
    "name": "NIFTY",
    "exchange": "NFO",
    "segment": "NFO-OPT",
    "instrument_type": "CE",
    "expiry": "2026-12-01",
    "strike": 26000.0,
    "tick_size": 0.05,
    "lot_size": 65,
    "underlying": "NIFTY",
    "active": True,
}


@extend_schema(
    summary="List instruments",
    description="Kite's instrument master, filtered; only active contracts unless `active` says otherwise. "
    "Every filter combines with the others (AND). A bad value is a 400 naming the parameter.",
    responses={200: InstrumentSerializer(many=True), **LIST_ERRORS},
    examples=[OpenApiExample("A NIFTY weekly call", value=NIFTY_CALL, response_only=True)],
)
class InstrumentListAPI(generics.ListAPIView):
    serializer_class = InstrumentSerializer
    filterset_class = InstrumentFilter

    def get_queryset(self):
        return selectors.instrument_list()


@extend_schema(
    summary="One instrument by Kite token",
    description="Kite reuses a token after its contract expires: this is the contract the token means today "
    "(the active one), or the latest to have had it.",
    parameters=[OpenApiParameter("instrument_token", OpenApiTypes.INT, OpenApiParameter.PATH)],
    responses={200: InstrumentSerializer, **_errors_of_one(NO_INSTRUMENT)},
    examples=[OpenApiExample("A NIFTY weekly call", value=NIFTY_CALL, response_only=True)],
)
class InstrumentDetailAPI(generics.GenericAPIView):
    serializer_class = InstrumentSerializer

    def get(self, request: Request, instrument_token: str) -> Response:
        instrument = selectors.instrument_by_token(_positive_int_or_404(instrument_token, NO_INSTRUMENT))
        if instrument is None:
            raise NotFound(NO_INSTRUMENT)
        return Response(self.get_serializer(instrument).data)


# ---------------------------------------------------------------------------
# Underlyings
# ---------------------------------------------------------------------------
NIFTY_UNDERLYING = {
    "symbol": "NIFTY",
    "spot_instrument_token": 256265,
    "spot_tradingsymbol": "NIFTY 50",
    "spot_exchange": "NSE",
    "derivatives_exchange": "NFO",
    "strike_step": 50.0,
    "strikes_each_side": 10,
    "expiries_to_stream": 2,
    "risk_free_rate": 0.065,
    "dividend_yield": 0.0,
    "enabled": True,
    "store_ticks": True,
    "expiries": [
        {"date": "2026-11-24", "is_monthly": True, "streamed": True, "lot_size": 65, "strikes": 81},
        {"date": "2026-12-01", "is_monthly": False, "streamed": True, "lot_size": 65, "strikes": 81},
        {"date": "2026-12-08", "is_monthly": False, "streamed": False, "lot_size": 65, "strikes": 81},
    ],
}


@extend_schema(
    summary="List underlyings",
    description="The underlyings configured for streaming and pricing, each with its upcoming option expiries.",
    responses={200: UnderlyingSerializer(many=True), **LIST_ERRORS},
    examples=[OpenApiExample("NIFTY", value=NIFTY_UNDERLYING, response_only=True)],
)
class UnderlyingListAPI(generics.ListAPIView):
    serializer_class = UnderlyingSerializer
    filterset_class = UnderlyingFilter

    def get_queryset(self):
        return selectors.underlying_list()

    def list(self, request: Request, *args, **kwargs) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        # The page's expiries in one query, not one per underlying.
        selectors.underlyings_attach_expiries(page, today=clock.today())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


@extend_schema(
    summary="One underlying",
    parameters=[OpenApiParameter("symbol", OpenApiTypes.STR, OpenApiParameter.PATH, description="e.g. NIFTY")],
    responses={200: UnderlyingSerializer, **_errors_of_one(NO_UNDERLYING)},
    examples=[OpenApiExample("NIFTY", value=NIFTY_UNDERLYING, response_only=True)],
)
class UnderlyingDetailAPI(generics.GenericAPIView):
    serializer_class = UnderlyingSerializer

    def get(self, request: Request, symbol: str) -> Response:
        # PostgreSQL refuses text with NUL characters outright: no underlying has one.
        underlying = None if "\x00" in symbol else selectors.underlying_by_symbol(symbol)
        if underlying is None:
            raise NotFound(NO_UNDERLYING)
        selectors.underlyings_attach_expiries([underlying], today=clock.today())
        return Response(self.get_serializer(underlying).data)


# ---------------------------------------------------------------------------
# Broker accounts: the requesting user's own, and nobody else's
# ---------------------------------------------------------------------------
KITE_ACCOUNT = {
    "id": 7,
    "label": "Main",
    "kind": "kite",
    "api_key": "abcd1234efgh5678",
    "api_secret_masked": "••••9xyz",
    "is_data_account": True,
    "token_state": "valid",
    "access_token_expires_at": "2026-11-24T06:00:00+05:30",
    "kite_user_id": "AB1234",
    "kite_user_name": "A Trader",
    "created_at": "2026-11-02T18:41:07+05:30",
}


@extend_schema(
    summary="List your broker accounts",
    description="Your own accounts only. Secrets never leave the server: the API secret is masked, the "
    "access token is never shown. Accounts are added and edited on the accounts page.",
    responses={200: BrokerAccountSerializer(many=True), **LIST_ERRORS},
    examples=[OpenApiExample("A Kite account", value=KITE_ACCOUNT, response_only=True)],
)
class BrokerAccountListAPI(generics.ListAPIView):
    serializer_class = BrokerAccountSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema is built without a user
            return BrokerAccount.objects.none()
        return selectors.broker_accounts_for_user(self.request.user)


@extend_schema(
    summary="One of your broker accounts",
    description="Another user's account is a 404, as is one that does not exist: ids reveal nothing.",
    parameters=[OpenApiParameter("account_id", OpenApiTypes.INT, OpenApiParameter.PATH)],
    responses={200: BrokerAccountSerializer, **_errors_of_one(f"{NO_ACCOUNT} Also for another user's account.")},
    examples=[OpenApiExample("A Kite account", value=KITE_ACCOUNT, response_only=True)],
)
class BrokerAccountDetailAPI(generics.GenericAPIView):
    serializer_class = BrokerAccountSerializer

    def get(self, request: Request, account_id: str) -> Response:
        try:
            account = selectors.broker_account_for_user(request.user, _positive_int_or_404(account_id, NO_ACCOUNT))
        except BrokerAccount.DoesNotExist:
            raise NotFound(NO_ACCOUNT) from None
        return Response(self.get_serializer(account).data)
