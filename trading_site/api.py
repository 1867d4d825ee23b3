"""What every endpoint of the REST API shares: the error format and pagination.

Errors are JSON with a human message and a machine code, and per-field messages for a 400:

    {"detail": "Invalid input.", "code": "invalid", "errors": {"tokens": ["Give at most 500 tokens."]}}
    {"detail": "Authentication credentials were not provided.", "code": "not_authenticated"}

Django REST framework imports this module while it sets itself up (DEFAULT_PAGINATION_CLASS,
EXCEPTION_HANDLER): it must not import DRF's views or generics at module level.
"""

from __future__ import annotations

import logging

import redis
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext_lazy as _
from django.views import defaults
from rest_framework import exceptions, serializers
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.response import Response

log = logging.getLogger(__name__)

# Redis holds the live data and the rate limits' counters: while it does not answer, say so.
RETRY_AFTER_SECONDS = 5


class LiveDataUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = _("The live market data store (Redis) is not answering. Try again shortly.")
    default_code = "unavailable"


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler, with every error body in one shape: detail, code, and errors for a 400."""
    from rest_framework.views import exception_handler as drf_exception_handler

    redis_down = isinstance(exc, redis.RedisError)
    if redis_down:
        log.warning("%s: Redis error: %s", type(context.get("view")).__name__, exc)
        exc = LiveDataUnavailable()
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": "Invalid input.", "code": "invalid", "errors": _as_field_errors(exc.detail)}
    elif isinstance(exc, exceptions.APIException):
        code = exc.get_codes()
        response.data = {
            "detail": str(exc.detail),
            "code": code if isinstance(code, str) else exc.default_code,
        }
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            response.data["retry_after_seconds"] = int(exc.wait + 0.999)
    if redis_down:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _as_field_errors(detail) -> dict:
    """Field -> messages; errors not tied to a field go under "non_field_errors"."""
    if isinstance(detail, dict):
        return {field: _messages(value) for field, value in detail.items()}
    return {"non_field_errors": _messages(detail)}


def _messages(value) -> list | dict:
    # A batch's errors come keyed by position: {"contracts": {"3": {"spot": [...]}}}.
    if isinstance(value, dict):
        return {key: _messages(item) for key, item in value.items()}
    if isinstance(value, list):
        return [str(item) for item in value]
    return [str(value)]


class PagePagination(PageNumberPagination):
    """Pages of 100 (`page_size` up to 1,000). A bad `page` or `page_size` is a 400 naming it, where
    DRF would quietly use the default size for `page_size=abc`, clamp `page_size=100000`, and answer
    `page=0` with a 404. A page past the last one is still a 404."""

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
    last_page_strings = ()  # the schema promises an integer page

    def get_page_size(self, request) -> int:
        # A plain dict, not the QueryDict: DRF reads an empty form value (`page=`) as "not given".
        given = {name: request.query_params[name] for name in ("page", "page_size") if name in request.query_params}
        params = _PageParams(data=given)
        params.is_valid(raise_exception=True)
        self.requested_page = params.validated_data.get("page", 1)
        return params.validated_data.get("page_size", self.page_size)

    def get_page_number(self, request, paginator) -> int:
        return self.requested_page

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = {parameter["name"]: parameter for parameter in super().get_schema_operation_parameters(view)}
        parameters[self.page_query_param]["schema"]["minimum"] = 1
        page_size = parameters[self.page_size_query_param]
        page_size["schema"].update(minimum=1, maximum=self.max_page_size)
        page_size["description"] = f"Results per page: {self.page_size} unless given, at most {self.max_page_size}."
        return list(parameters.values())


class _PageParams(serializers.Serializer):
    page = serializers.IntegerField(min_value=1, required=False)
    page_size = serializers.IntegerField(min_value=1, max_value=PagePagination.max_page_size, required=False)


class TimeCursorPagination(CursorPagination):
    """Cursor pages over a time column: stable while rows are appended, and no COUNT(*)."""

    page_size = 500
    page_size_query_param = "page_size"
    max_page_size = 5000
    ordering = ("exchange_timestamp", "id")


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: an unknown URL under /api/ answers in the API's error shape, not an HTML page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a bug under /api/ still answers JSON a program can read (and is logged as ever)."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Server error.", "code": "server_error"}, status=500)
    return defaults.server_error(request)
