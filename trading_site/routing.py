"""Websocket URL routes of every app, gathered in one list for asgi.py."""

from django.urls import path

from marketdata.consumers import FeedConsumer

websocket_urlpatterns = [
    path("ws/feed/", FeedConsumer.as_asgi()),
]
