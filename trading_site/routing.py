"""Websocket URL routes of every app, gathered in one list for asgi.py.

Apps add their consumers here as they grow them (the live feed and the JSON stream).
"""

websocket_urlpatterns: list = []
