"""What every endpoint of the REST API shares: the error format and pagination.

Errors are JSON with a human message and a machine code, and per-field messages for a 400:

    {"detail": "Invalid input.", "code": "invalid", "errors": {"tokens": ["Give at most 500 tokens."]}}
    {"detail": "Authentication credentials were not provided.", "code": "not_authenticated"}

Django REST framework imports this module while it sets itself up (DEFAULT_PAGINATION_CLASS,
EXCEPTION_HANDLER): it must not import DRF's views or generics at module level.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.response import Response


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler, with every error body in one shape: detail, code, and errors for a 400."""
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, Http404):
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
    return response


def _as_field_errors(detail) -> dict:
    """Field -> messages; errors not tied to a field go under "non_field_errors"."""
    if isinstance(detail, dict):
        return {field: _messages(value) for field, value in detail.items()}
    return {"non_field_errors": _messages(detail)}


def _messages(value) -> list | dict:
    if isinstance(value, dict):
        return {key: _messages(item) for key, item in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(item, dict) for item in value):  # a list of objects, e.g. a batch
            return [_messages(item) for item in value]
        return [str(item) for item in value]
    return [str(value)]


class PagePagination(PageNumberPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


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
