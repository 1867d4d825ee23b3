"""The ASGI application served by daphne, as `make run` starts it."""

from __future__ import annotations

import json

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.daphne import running_daphne


@pytest.fixture
def daphne_server(subprocess_env):
    with running_daphne(subprocess_env) as base:
        yield base


def test_daphne_serves_the_login_page_and_the_stylesheet(daphne_server):
    login = requests.get(daphne_server + "/login/", timeout=5)
    assert login.status_code == 200 and "Log in" in login.text
    css = requests.get(daphne_server + "/static/css/app.css", timeout=5)
    assert css.status_code == 200 and "--bg" in css.text
    home = requests.get(daphne_server + "/", allow_redirects=False, timeout=5)
    assert (home.status_code, home.headers["Location"]) == (302, "/login/?next=/")


def test_a_user_logs_in_through_daphne_and_sees_the_home_page(daphne_server, alice):
    session = requests.Session()
    page = session.get(daphne_server + "/login/", timeout=5)
    token = page.text.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    response = session.post(
        daphne_server + "/login/",
        data={"username": "alice", "password": "alice-password-1", "csrfmiddlewaretoken": token},
        headers={"Referer": daphne_server + "/login/"},
        timeout=5,
    )
    assert response.status_code == 200
    assert "Good to see you, alice" in response.text


def test_the_admin_answers(daphne_server):
    response = requests.get(daphne_server + "/admin/login/", timeout=5)
    assert response.status_code == 200 and "Options desk administration" in response.text


@pytest.mark.parametrize("path", ["/ws/feed/", "/ws/stream/"])
def test_a_real_client_sees_why_an_anonymous_socket_is_closed(daphne_server, path):
    """Through daphne, not only in-process: the 4401 reaches the client (a close during the
    handshake would reach it as a bare HTTP 403)."""
    url = daphne_server.replace("http://", "ws://") + path
    with connect(url, origin=daphne_server, open_timeout=10) as socket:
        first = json.loads(socket.recv(timeout=10))
        assert first["type"] == "error"
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
    assert closed.value.rcvd.code == 4401
