"""The app's REST endpoints, mounted under /api/v1/ by trading_site.urls."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
