"""The REST API's front door: API tokens, the error shape, the schema and its docs page."""

from __future__ import annotations

import pytest
import requests
from django.core.cache import cache
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests.daphne import running_daphne


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def test_a_username_and_password_get_a_token_that_authenticates_until_revoked(api, alice):
    created = api.post("/api/v1/auth/token/", {"username": "alice", "password": "alice-password-1"}, format="json")
    assert created.status_code == 201
    token = created.json()["token"]
    assert len(token) >= 64 and created.json()["expires_at"]
    # Stored hashed: the database never holds the token itself.
    stored = AuthToken.objects.get(user=alice)
    assert token not in (stored.digest, stored.token_key) and stored.digest != token

    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.delete("/api/v1/auth/token/").status_code == 204
    assert AuthToken.objects.filter(user=alice).count() == 0
    refused = api.delete("/api/v1/auth/token/")
    assert refused.status_code == 401
    assert refused.json() == {"detail": "Invalid token.", "code": "authentication_failed"}


def test_wrong_credentials_and_missing_fields_get_clear_errors(api, alice):
    wrong = api.post("/api/v1/auth/token/", {"username": "alice", "password": "nope"}, format="json")
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "Wrong username or password.", "code": "authentication_failed"}
    missing = api.post("/api/v1/auth/token/", {"username": "alice"}, format="json")
    assert missing.status_code == 400
    assert missing.json() == {
        "detail": "Invalid input.",
        "code": "invalid",
        "errors": {"password": ["This field is required."]},
    }
    not_json = api.post("/api/v1/auth/token/", "username=alice", content_type="text/plain")
    assert not_json.status_code == 415 and not_json.json()["code"] == "unsupported_media_type"
    broken = api.post("/api/v1/auth/token/", "{not json", content_type="application/json")
    assert broken.status_code == 400 and broken.json()["code"] == "parse_error"


def test_an_anonymous_request_gets_401_json_not_the_login_page(api):
    response = api.delete("/api/v1/auth/token/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Token"


def test_the_schema_is_openapi_3_and_the_docs_page_loads_nothing_from_a_cdn(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    document = schema.json()
    assert document["openapi"].startswith("3.") and "/api/v1/auth/token/" in document["paths"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower() and "https://" not in html
    assert client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js").status_code == 200


def test_an_unknown_api_url_is_a_json_404_and_a_page_url_stays_html(api, client, alice):
    api.force_authenticate(alice)
    missing = api.get("/api/v1/no-such-thing/")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not found.", "code": "not_found"}
    client.force_login(alice)
    page = client.get("/no-such-page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


def test_a_nul_in_the_credentials_is_a_400_and_the_schema_says_so(api, client):
    refused = api.post("/api/v1/auth/token/", {"username": "al\x00ice", "password": "x"}, format="json")
    assert refused.status_code == 400 and "username" in refused.json()["errors"]
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    username = schema["components"]["schemas"]["TokenRequestRequest"]["properties"]["username"]
    assert username["pattern"] == "^[^\\u0000]*$"  # ECMA regex, as the schema converts it


def test_requests_over_the_configured_rates_get_429_saying_when_to_retry(subprocess_env, alice):
    """The rates come from the environment, as on a server: a user's, and the anonymous token
    requests' (password guessing), each counted per user or per address in Redis."""
    cache.clear()
    _, token = AuthToken.objects.create(alice)
    env = {**subprocess_env, "API_THROTTLE_USER": "3/min", "API_THROTTLE_ANON": "2/min"}
    with running_daphne(env) as base:
        signed_in = {"Authorization": f"Token {token}"}
        statuses = [requests.get(f"{base}/api/v1/underlyings/", headers=signed_in, timeout=10) for _ in range(4)]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        refused = statuses[-1].json()
        assert refused["code"] == "throttled" and 0 < refused["retry_after_seconds"] <= 60
        assert 0 < int(statuses[-1].headers["Retry-After"]) <= 60

        guesses = [
            requests.post(f"{base}/api/v1/auth/token/", json={"username": "alice", "password": "guess"}, timeout=10)
            for _ in range(3)
        ]
        assert [r.status_code for r in guesses] == [401, 401, 429]
