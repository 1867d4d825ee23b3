"""The feed's JSON websocket, through the real Redis channel layer."""

from __future__ import annotations

import json

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from marketdata.consumers import UNAUTHENTICATED_CLOSE_CODE, FeedConsumer
from trading_site.asgi import application

pytestmark = [pytest.mark.asyncio]

ORIGIN = [(b"origin", b"http://localhost")]


def communicator(path: str, user) -> WebsocketCommunicator:
    socket = WebsocketCommunicator(FeedConsumer.as_asgi(), path, headers=ORIGIN)
    socket.scope["user"] = user
    return socket


def trader() -> User:
    return User(username="alice", pk=1)


async def test_an_anonymous_socket_is_closed_with_4401():
    socket = WebsocketCommunicator(application, "/ws/feed/?groups=feed.status", headers=ORIGIN)
    assert (await socket.connect())[0]
    assert (await socket.receive_json_from(timeout=5))["error"].startswith("not authenticated")
    closed = await socket.receive_output(timeout=5)
    assert (closed["type"], closed["code"]) == ("websocket.close", UNAUTHENTICATED_CLOSE_CODE)
    # Nothing it asks for afterwards is acted on: it joined no group.
    await socket.send_json_to({"action": "join", "groups": ["feed.status"]})
    assert await socket.receive_nothing(timeout=0.2)
    await socket.disconnect()


async def test_a_socket_from_another_site_is_refused():
    socket = WebsocketCommunicator(application, "/ws/feed/", headers=[(b"origin", b"http://evil.example")])
    connected, _ = await socket.connect()
    assert connected is False
    await socket.disconnect()


async def test_it_joins_the_groups_asked_for_and_relays_feed_messages():
    socket = communicator("/ws/feed/?groups=feed.status,ticks.NIFTY", trader())
    assert (await socket.connect())[0]
    assert await socket.receive_json_from() == {"type": "joined", "groups": ["feed.status", "ticks.NIFTY"]}

    layer = get_channel_layer()
    tick = {"instrument_token": 256265, "last_price": 26012.35, "exchange_timestamp": 1795000000}
    update = {"type": "ticks", "group": "ticks.NIFTY", "ticks": [tick]}
    await layer.group_send("ticks.NIFTY", {"type": "feed.ticks", "group": "ticks.NIFTY", "json": json.dumps(update)})
    assert await socket.receive_json_from(timeout=5) == update

    status = json.dumps({"type": "status", "status": {"state": "running"}})
    await layer.group_send("feed.status", {"type": "feed.status", "group": "feed.status", "json": status})
    assert await socket.receive_json_from(timeout=5) == {"type": "status", "status": {"state": "running"}}

    # Chain analytics come from a Celery worker, to the chain's group.
    await socket.send_json_to({"action": "join", "groups": ["chain.NIFTY.20261124"]})
    assert (await socket.receive_json_from())["groups"] == ["chain.NIFTY.20261124", "feed.status", "ticks.NIFTY"]
    chain = {"type": "chain", "group": "chain.NIFTY.20261124", "chain": {"summary": {"pcr_oi": 1.21}}}
    await layer.group_send(
        "chain.NIFTY.20261124", {"type": "chain.analytics", "group": "chain.NIFTY.20261124", "json": json.dumps(chain)}
    )
    assert await socket.receive_json_from(timeout=5) == chain

    # A group it did not join does not reach it.
    await layer.group_send("ticks.BANKNIFTY", {"type": "feed.ticks", "group": "ticks.BANKNIFTY", "json": "{}"})
    assert await socket.receive_nothing(timeout=0.3)
    await socket.disconnect()


async def test_bad_requests_get_an_error_and_the_socket_stays_up():
    socket = communicator("/ws/feed/", trader())
    await socket.connect()
    await socket.send_json_to({"action": "join", "groups": ["ticks.NIFTY", "nonsense", "chain.NIFTY.2026"]})
    assert (await socket.receive_json_from())["error"] == "unknown groups: nonsense, chain.NIFTY.2026"
    assert await socket.receive_json_from() == {"type": "joined", "groups": ["ticks.NIFTY"]}
    await socket.send_json_to(["not", "an", "object"])
    assert (await socket.receive_json_from())["type"] == "error"
    await socket.send_json_to({"action": "leave", "groups": ["ticks.NIFTY"]})
    assert await socket.receive_json_from() == {"type": "joined", "groups": []}
    await socket.disconnect()


async def test_more_than_100_groups_are_refused():
    socket = communicator("/ws/feed/", trader())
    await socket.connect()
    await socket.send_json_to({"action": "join", "groups": [f"instrument.{n}" for n in range(101)]})
    assert (await socket.receive_json_from())["error"] == "at most 100 groups per socket"
    await socket.disconnect()


async def test_anonymous_user_object_is_refused_too():
    socket = communicator("/ws/feed/", AnonymousUser())
    assert (await socket.connect())[0]
    assert (await socket.receive_json_from(timeout=5))["type"] == "error"
    assert (await socket.receive_output(timeout=5))["code"] == UNAUTHENTICATED_CLOSE_CODE
    await socket.disconnect()
