"""KiteTickerClient against a local server speaking Kite's ticker protocol, over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as sync_connect

from marketdata.kite.client import KiteTickerClient, TickerStatus, backoff_delays
from tests.kite_ticker_server import (
    LOGGER_NAME,
    KiteTickerServer,
    ThreadedKiteTickerServer,
    ltp_frame,
    wait_until,
)

API_KEY = "kitekey123"
ACCESS_TOKEN = "Acc3ssT0kenSecret42"


@dataclass
class Recorder:
    frames: list[bytes] = field(default_factory=list)
    orders: list[dict] = field(default_factory=list)
    statuses: list[TickerStatus] = field(default_factory=list)

    @property
    def states(self) -> list[str]:
        return [state for state, _ in itertools.groupby(s.state for s in self.statuses)]


@pytest_asyncio.fixture
async def server() -> AsyncIterator[KiteTickerServer]:
    async with KiteTickerServer(API_KEY, ACCESS_TOKEN) as server:
        yield server


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make_client(server: KiteTickerServer, recorder: Recorder, **options) -> KiteTickerClient:
    settings = {
        "api_key": API_KEY,
        "access_token": ACCESS_TOKEN,
        "url": server.url,
        "on_frame": recorder.frames.append,
        "on_text": recorder.orders.append,
        "on_status": recorder.statuses.append,
        "heartbeat_timeout": 2.0,
        "reconnect_initial_delay": 0.05,
        "reconnect_max_delay": 0.2,
    }
    return KiteTickerClient(**(settings | options))


@contextlib.asynccontextmanager
async def running(client: KiteTickerClient) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(client.run())
    try:
        yield task
    finally:
        await client.stop()
        await asyncio.wait_for(task, 5)


@pytest.mark.asyncio
async def test_it_subscribes_then_sets_the_mode_in_kites_wire_format(server, recorder):
    client = make_client(server, recorder)
    client.subscribe([408065, 884737], mode="full")
    async with running(client):
        await wait_until(lambda: server.subscriptions == {408065: "full", 884737: "full"})
        kite_side = server.connections[0]
        assert kite_side.raw_messages == [
            '{"a":"subscribe","v":[408065,884737]}',
            '{"a":"mode","v":["full",[408065,884737]]}',
        ]
        await wait_until(lambda: client.status.state == "connected")

        client.subscribe([256265], mode="ltp")
        await wait_until(lambda: len(kite_side.messages) == 4)
        assert kite_side.messages[2:] == [{"a": "subscribe", "v": [256265]}, {"a": "mode", "v": ["ltp", [256265]]}]
        assert server.subscriptions == {408065: "full", 884737: "full", 256265: "ltp"}
        assert client.subscriptions == {408065: "full", 884737: "full", 256265: "ltp"}
        status = client.status
        assert (status.connections_up, status.connections_wanted, status.instruments) == (1, 1, 3)
    assert [(h.status, h.api_key) for h in server.handshakes] == [(101, API_KEY)]
    assert recorder.states == ["stopped", "connecting", "connected", "stopped"]


@pytest.mark.asyncio
async def test_frames_reach_on_frame_in_order_and_heartbeats_are_only_counted(server, recorder):
    client = make_client(server, recorder)
    client.subscribe([408065])
    frames = [ltp_frame((408065, 2_450_000 + i), (884737, 61_000 + i)) for i in range(40)]
    async with running(client):
        await wait_until(lambda: server.subscriptions == {408065: "full"})
        for i, frame in enumerate(frames):
            await server.send_binary(frame)
            if i % 4 == 0:
                await server.send_heartbeat()
        await wait_until(lambda: len(recorder.frames) == 40 and client.status.heartbeats == 10)
        assert recorder.frames == frames
        assert (client.status.frames, client.status.heartbeats) == (40, 10)


@pytest.mark.asyncio
async def test_4500_tokens_are_sharded_3000_then_1500(server, recorder):
    client = make_client(server, recorder)
    tokens = list(range(1001, 5501))
    client.subscribe(tokens, mode="quote")
    async with running(client):
        await wait_until(
            lambda: (
                len(server.subscriptions) == 4500
                and client.status.connections_up == 2
                and all(len(connection.messages) == 2 for connection in server.connections)
            )  # subscribe, then mode
        )
        first, second = server.connection_with(1001), server.connection_with(5500)
        assert list(first.subscriptions) == tokens[:3000]
        assert list(second.subscriptions) == tokens[3000:]
        assert first.messages == [{"a": "subscribe", "v": tokens[:3000]}, {"a": "mode", "v": ["quote", tokens[:3000]]}]
        assert second.messages == [{"a": "subscribe", "v": tokens[3000:]}, {"a": "mode", "v": ["quote", tokens[3000:]]}]
        status = client.status
        assert (status.state, status.connections_up, status.connections_wanted, status.instruments) == (
            "connected",
            2,
            2,
            4500,
        )


def test_it_refuses_more_than_9000_instruments(recorder):
    client = KiteTickerClient(api_key=API_KEY, access_token=ACCESS_TOKEN, on_frame=recorder.frames.append)
    with pytest.raises(ValueError, match="at most 9000 instruments"):
        client.subscribe(range(1, 9002))
    assert client.subscriptions == {}

    client.subscribe(range(1, 9001))
    with pytest.raises(ValueError, match="9000"):
        client.subscribe([9001])
    client.subscribe([1, 2], mode="ltp")  # already subscribed: only their mode changes
    assert len(client.subscriptions) == 9000
    assert (client.subscriptions[1], client.subscriptions[3]) == ("ltp", "full")
    with pytest.raises(ValueError, match="mode must be one of"):
        client.subscribe([5], mode="depth")
    with pytest.raises(TypeError):
        client.subscribe(["408065"])


@pytest.mark.asyncio
async def test_a_dropped_socket_is_reconnected_and_resubscribed_while_the_other_streams(server, recorder):
    client = make_client(
        server, recorder, instruments_per_connection=2, reconnect_initial_delay=0.3, reconnect_max_delay=1.0
    )
    client.subscribe([101, 102], mode="full")
    client.subscribe([103], mode="quote")
    client.set_mode("ltp", [102])
    async with running(client):
        await wait_until(lambda: server.subscriptions == {101: "full", 102: "ltp", 103: "quote"})
        dropped, other = server.connection_with(101), server.connection_with(103)
        assert dropped is not other

        await server.drop(dropped)
        for price in range(5):
            await server.send_binary(ltp_frame((103, price)), other)
        await wait_until(lambda: len(recorder.frames) == 5)
        during_the_gap = client.status
        assert (during_the_gap.state, during_the_gap.connections_up, during_the_gap.connections_wanted) == (
            "reconnecting",
            1,
            2,
        )

        await wait_until(lambda: server.subscriptions == {101: "full", 102: "ltp", 103: "quote"})
        reconnected = server.connection_with(101)
        assert reconnected is not dropped
        assert reconnected.messages == [
            {"a": "subscribe", "v": [101, 102]},
            {"a": "mode", "v": ["full", [101]]},
            {"a": "mode", "v": ["ltp", [102]]},
        ]
        assert server.connection_with(103) is other  # never reconnected
        assert server.total_connections_accepted == 3
        await wait_until(lambda: client.status.state == "connected")
        await server.send_binary(ltp_frame((101, 7)), reconnected)
        await wait_until(lambda: len(recorder.frames) == 6)
        assert recorder.frames == [ltp_frame((103, price)) for price in range(5)] + [ltp_frame((101, 7))]
        assert client.status.reconnects == 1
        assert client.status.last_error.startswith("connection 1 lost (code 1006")
        assert recorder.states == ["stopped", "connecting", "connected", "reconnecting", "connected"]


@pytest.mark.asyncio
async def test_silence_beyond_the_heartbeat_timeout_forces_a_reconnect(server, recorder):
    client = make_client(server, recorder, heartbeat_timeout=0.5)
    client.subscribe([101], mode="quote")
    async with running(client):
        await wait_until(lambda: server.subscriptions == {101: "quote"})
        went_quiet = time.monotonic()
        await wait_until(lambda: server.total_connections_accepted == 2, timeout=3)
        assert time.monotonic() - went_quiet >= 0.5
        server.heartbeat_interval = 0.1  # keep the new socket alive
        await wait_until(lambda: server.subscriptions == {101: "quote"} and client.status.state == "connected")
        assert server.closed_connections[0].close_code == 1006  # the client cut it, no closing handshake
        assert client.status.reconnects == 1
        assert client.status.last_error == "connection 1: nothing received for 0.5 s; reconnecting"


@pytest.mark.asyncio
async def test_steady_heartbeats_keep_an_idle_connection_up(server, recorder):
    server.heartbeat_interval = 0.1
    client = make_client(server, recorder, heartbeat_timeout=0.5)
    client.subscribe([101])
    async with running(client):
        await wait_until(lambda: server.subscriptions == {101: "full"})
        await asyncio.sleep(1.5)
        status = client.status
        assert server.total_connections_accepted == 1
        assert (status.state, status.reconnects, status.frames) == ("connected", 0, 0)
        assert status.heartbeats >= 10
        assert recorder.frames == []


@pytest.mark.asyncio
async def test_an_expired_session_at_the_handshake_stops_for_good(server, recorder):
    server.expire_session()
    client = make_client(server, recorder)
    client.subscribe([101])
    await asyncio.wait_for(client.run(), 5)  # returns on its own
    await asyncio.sleep(0.3)
    assert [h.status for h in server.handshakes] == [403]
    status = client.status
    assert status.state == "session_expired"
    assert "HTTP 403" in status.last_error
    assert ACCESS_TOKEN not in status.last_error
    assert recorder.states == ["stopped", "connecting", "session_expired"]
    await client.stop()  # the feed's cleanup must not hide why it ended
    assert client.status.state == "session_expired"


@pytest.mark.asyncio
async def test_a_session_expiring_mid_stream_closes_every_connection(server, recorder):
    client = make_client(server, recorder, instruments_per_connection=1)
    client.subscribe([101, 102])
    run = asyncio.create_task(client.run())
    await wait_until(lambda: server.subscriptions == {101: "full", 102: "full"})
    other = server.connection_with(102)
    server.expire_session()
    await server.drop(server.connection_with(101))
    await asyncio.wait_for(run, 5)
    assert client.status.state == "session_expired"
    assert server.connections == []
    assert other.close_code == 1000  # closed cleanly by the client
    assert sorted(h.status for h in server.handshakes) == [101, 101, 403]


@pytest.mark.asyncio
async def test_failed_handshakes_are_retried_with_growing_capped_backoff(server, recorder):
    server.fail_next_handshakes(4, status=500)
    client = make_client(server, recorder, rng=random.Random(7))
    client.subscribe([101])
    async with running(client):
        await wait_until(lambda: client.status.state == "connected")
        assert [h.status for h in server.handshakes] == [500, 500, 500, 500, 101]
        delays = [s.retry_delay for s in recorder.statuses if s.retry_delay is not None]
        assert delays == list(itertools.islice(backoff_delays(0.05, 0.2, rng=random.Random(7)), 4))
        for delay, base in zip(delays, [0.05, 0.1, 0.2, 0.2], strict=True):
            assert 0.75 * base <= delay <= base
        gaps = [b.at - a.at for a, b in itertools.pairwise(server.handshakes)]
        assert all(gap >= delay - 0.01 for gap, delay in zip(gaps, delays, strict=True))
        assert client.status.reconnects == 1
        assert client.status.last_error == "connection 1: handshake rejected with HTTP 500"
        assert recorder.states == ["stopped", "connecting", "reconnecting", "connected"]
        await wait_until(lambda: server.subscriptions == {101: "full"})


def test_backoff_starts_at_the_initial_delay_grows_and_is_capped():
    assert list(itertools.islice(backoff_delays(1.0, 60.0, jitter=0.0), 9)) == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    jittered = list(itertools.islice(backoff_delays(1.0, 60.0, rng=random.Random(3)), 50))
    bases = [min(2.0**n, 60.0) for n in range(50)]
    assert all(0.75 * base <= delay <= base for delay, base in zip(jittered, bases, strict=True))
    assert max(jittered) <= 60.0
    assert len(set(jittered[10:])) == 40  # capped delays still spread out


@pytest.mark.asyncio
async def test_it_gives_up_after_max_reconnect_attempts(server, recorder):
    server.fail_next_handshakes(10, status=503)
    client = make_client(server, recorder, max_reconnect_attempts=2)
    client.subscribe([101])
    await asyncio.wait_for(client.run(), 5)
    assert [h.status for h in server.handshakes] == [503, 503, 503]
    assert client.status.state == "failed"
    assert client.status.last_error == "connection 1: gave up after 2 reconnect attempts"


@pytest.mark.asyncio
async def test_order_postbacks_go_to_on_text_and_errors_to_last_error_without_the_token(server, recorder, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(server, recorder)
    client.subscribe([101])
    order = {"order_id": "250101000012345", "status": "COMPLETE", "tradingsymbol": "NIFTY25JAN24000CE"}
    async with running(client):
        await wait_until(lambda: server.subscriptions == {101: "full"})
        await server.send_text({"type": "order", "data": order})
        await server.send_text({"type": "message", "data": "Market opens at 09:15"})
        await server.send_text("{not json")
        await server.send_text({"type": "error", "data": f"Invalid access_token {ACCESS_TOKEN}"})
        await server.send_binary(ltp_frame((101, 5)))  # the loop is still alive after all that
        await wait_until(lambda: recorder.frames == [ltp_frame((101, 5))])
        assert recorder.orders == [order]
        assert client.status.last_error == "Kite error on connection 1: Invalid access_token [redacted]"

    ours = [r for r in caplog.records if not r.name.startswith(LOGGER_NAME)]
    assert not [r for r in ours if ACCESS_TOKEN in r.getMessage()]
    handshake_lines = [r.getMessage() for r in ours if r.getMessage().startswith("> GET")]
    assert handshake_lines == [f"> GET /?api_key={API_KEY}&access_token=[redacted] HTTP/1.1"]
    assert any("not a JSON object" in r.getMessage() and r.levelno == logging.WARNING for r in ours)
    assert any("Market opens at 09:15" in r.getMessage() for r in ours)


@pytest.mark.asyncio
async def test_unsubscribe_and_set_mode_reach_kite(server, recorder):
    client = make_client(server, recorder)
    client.subscribe([101, 102, 103], mode="quote")
    async with running(client):
        await wait_until(lambda: server.subscriptions == {101: "quote", 102: "quote", 103: "quote"})
        kite_side = server.connections[0]

        client.unsubscribe([102, 999])  # 999 was never subscribed
        await wait_until(lambda: len(kite_side.messages) == 3)
        assert kite_side.messages[-1] == {"a": "unsubscribe", "v": [102]}
        assert server.subscriptions == {101: "quote", 103: "quote"}

        client.set_mode("full", [101, 103])
        await wait_until(lambda: len(kite_side.messages) == 4)
        assert kite_side.messages[-1] == {"a": "mode", "v": ["full", [101, 103]]}
        assert server.subscriptions == {101: "full", 103: "full"}
        assert client.subscriptions == {101: "full", 103: "full"}
        assert client.status.instruments == 2


@pytest.mark.asyncio
async def test_a_connection_left_without_instruments_closes_and_reopens_when_needed(server, recorder):
    client = make_client(server, recorder, instruments_per_connection=2)
    client.subscribe([101, 102, 103])
    async with running(client):
        await wait_until(lambda: len(server.subscriptions) == 3)
        second = server.connection_with(103)

        client.unsubscribe([103])
        await wait_until(lambda: len(server.connections) == 1)
        assert second.messages[-1] == {"a": "unsubscribe", "v": [103]}
        assert second.close_code == 1000
        status = client.status
        assert (status.state, status.connections_up, status.connections_wanted) == ("connected", 1, 1)

        client.subscribe([104], mode="ltp")
        await wait_until(lambda: server.subscriptions == {101: "full", 102: "full", 104: "ltp"})
        assert server.total_connections_accepted == 3
        assert client.status.reconnects == 0


@pytest.mark.asyncio
async def test_stop_closes_every_socket_cleanly(server, recorder):
    client = make_client(server, recorder, instruments_per_connection=1)
    client.subscribe([101, 102])
    run = asyncio.create_task(client.run())
    await wait_until(lambda: len(server.subscriptions) == 2)
    await client.stop()
    assert run.done()
    await wait_until(lambda: len(server.closed_connections) == 2)
    assert [c.close_code for c in server.closed_connections] == [1000, 1000]
    assert client.status.state == "stopped"
    await asyncio.sleep(0.2)
    assert len(server.handshakes) == 2


@pytest.mark.asyncio
async def test_a_stop_that_comes_before_run_starts_makes_run_return(server, recorder):
    client = make_client(server, recorder)
    client.subscribe([101])
    run = asyncio.create_task(client.run())  # scheduled, not started yet
    await client.stop()
    await asyncio.wait_for(run, 1)
    assert server.handshakes == []
    assert client.status.state == "stopped"


@pytest.mark.asyncio
async def test_the_server_rejects_bad_handshakes_and_messages_like_kite(server):
    good = f"{server.url}?api_key={API_KEY}&access_token={ACCESS_TOKEN}"
    with pytest.raises(InvalidStatus) as missing_version:
        await connect(good)
    with pytest.raises(InvalidStatus) as wrong_token:
        await connect(f"{server.url}?api_key={API_KEY}&access_token=stale", additional_headers={"X-Kite-Version": "3"})
    assert (missing_version.value.response.status_code, wrong_token.value.response.status_code) == (400, 403)

    server.max_tokens_per_connection = 2
    async with connect(good, additional_headers={"X-Kite-Version": "3"}) as websocket:
        await websocket.send('{"a":"subscribe","v":[1,2,3]}')
        assert await websocket.recv() == '{"type": "error", "data": "Maximum 2 instruments per connection"}'
        await websocket.send('{"a":"depth","v":[1]}')
        assert await websocket.recv() == '{"type": "error", "data": "Invalid action: \'depth\'"}'
        assert server.subscriptions == {}


def test_the_threaded_server_serves_synchronous_code():
    with ThreadedKiteTickerServer(API_KEY, ACCESS_TOKEN) as server:
        url = f"{server.url}?api_key={API_KEY}&access_token={ACCESS_TOKEN}"
        with sync_connect(url, additional_headers={"X-Kite-Version": "3"}) as websocket:
            websocket.send('{"a":"subscribe","v":[408065]}')
            websocket.send('{"a":"mode","v":["ltp",[408065]]}')
            server.wait_until(lambda: server.subscriptions == {408065: "ltp"})
            assert server.send_binary(ltp_frame((408065, 123_400))) == 1
            assert websocket.recv() == ltp_frame((408065, 123_400))
            server.drop(0)
            with pytest.raises(ConnectionClosed):
                websocket.recv(timeout=2)
        assert server.total_connections_accepted == 1
        assert server.connections == []


def test_redaction_hides_the_token_without_mangling_the_message():
    from marketdata.kite.connection import token_redactor

    short = token_redactor("t")
    assert short("could not connect to ws://h/?api_key=k&access_token=t") == (
        "could not connect to ws://h/?api_key=k&access_token=[redacted]"
    )
    secret = "Ab3dEf9hIj2kLm5nOp8qRs1tUv4wXy7z"
    assert token_redactor(secret)(f"header token k:{secret} failed") == "header token k:[redacted] failed"
