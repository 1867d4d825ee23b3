"""API tokens: `POST /api/v1/auth/token/` with a username and password returns a token, stored
hashed by django-rest-knox and shown once; `DELETE /api/v1/auth/token/` revokes the token it is
sent with. Also the schema's shared error shape, and the API's exemption from the login page.
"""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.contrib.auth.decorators import login_not_required
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from knox.auth import TokenAuthentication
from knox.models import AuthToken
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

ERROR_RESPONSE = inline_serializer(
    "Error",
    {
        "detail": serializers.CharField(),
        "code": serializers.CharField(),
        "errors": serializers.DictField(required=False, help_text="Per-field messages, for a 400."),
    },
)


# DRF refuses NUL characters in text (PostgreSQL cannot store them); the pattern puts that in the schema.
_NO_NUL = RegexValidator(r"^[^\x00]*$", "Null characters are not allowed.")


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150, validators=[_NO_NUL])
    password = serializers.CharField(
        max_length=128, trim_whitespace=False, style={"input_type": "password"}, validators=[_NO_NUL]
    )

    def validate(self, attrs: dict) -> dict:
        user = authenticate(self.context["request"], username=attrs["username"], password=attrs["password"])
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed(_("Wrong username or password."), code="authentication_failed")
        attrs["user"] = user
        return attrs


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send it as `Authorization: Token <token>`. Shown only once.")
    expires_at = serializers.DateTimeField()


class TokenThrottle(AnonRateThrottle):
    """Password guesses are throttled per client address, signed in or not."""

    scope = "anon"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": "token", "ident": self.get_ident(request)}


class AuthTokenView(APIView):
    """Exchange a username and password for an API token; revoke the token in use."""

    authentication_classes = [TokenAuthentication]
    throttle_classes = [TokenThrottle]

    def get_permissions(self):
        return [AllowAny()] if self.request.method == "POST" else [IsAuthenticated()]

    @extend_schema(
        operation_id="auth_token_create",
        request=TokenRequestSerializer,
        responses={201: TokenSerializer, 400: ERROR_RESPONSE, 401: ERROR_RESPONSE, 429: ERROR_RESPONSE},
        auth=[],
        examples=[OpenApiExample("Log in", value={"username": "demo", "password": "demo"}, request_only=True)],
        summary="Get an API token",
    )
    def post(self, request: Request) -> Response:
        serializer = TokenRequestSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        instance, token = AuthToken.objects.create(serializer.validated_data["user"])
        return Response({"token": token, "expires_at": instance.expiry}, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="auth_token_revoke",
        request=None,
        responses={204: None, 401: ERROR_RESPONSE},
        summary="Revoke the token this request is sent with",
    )
    def delete(self, request: Request) -> Response:
        request.auth.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


def exempt_from_login_page(patterns: list) -> list:
    """The API authenticates on its own (session or token) and answers 401, never a redirect to
    the login page: keep LoginRequiredMiddleware off these views."""
    for pattern in patterns:
        if hasattr(pattern, "url_patterns"):
            exempt_from_login_page(pattern.url_patterns)
        else:
            login_not_required(pattern.callback)
    return patterns
