"""Fixtures of the browser tests: the demo market in the test database, the real stack serving it,
Debian's Chromium driven by Playwright, and pages logged in at a desktop's and a phone's size.

Everything here is module-scoped, set up in this order and torn down in reverse: the database work
(committed, so the child processes see it) happens before Playwright starts, because Playwright's
sync API runs an event loop in this thread and Django refuses ORM calls while one runs. At the end
the database and the Redis database are emptied again, as pytest-django's transactional tests leave
them, so that the rest of the suite finds them clean.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections
from django.test import override_settings

from tests.browser import chromium
from tests.browser.stack import Stack, child_environment

USERNAME, PASSWORD = "trader", "browser-test-password-1"
SYMBOL = "NIFTY"
ACTION_TIMEOUT_MS = 15_000


@dataclass(frozen=True)
class Viewport:
    name: str
    width: int
    height: int
    mobile: bool

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


DESKTOP = Viewport("desktop", 1366, 768, mobile=False)
PHONE = Viewport("phone", 390, 844, mobile=True)
VIEWPORTS = (DESKTOP, PHONE)

_stacks: list[Stack] = []  # the running stack, for the failure report


def _empty_redis() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def desk_env(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[dict[str, str]]:
    """The demo market (NIFTY only) and a user in the test database, committed; the child processes' env."""
    if not connection.settings_dict["NAME"].startswith("test_"):
        # pytest-django sets up the test database only when a collected test asks for it (test_pages.py
        # has one that does); never load the demo into, and then empty, the database itself.
        pytest.fail(f"no test database: would use {connection.settings_dict['NAME']!r}", pytrace=False)
    try:
        with django_db_blocker.unblock():
            from instruments.models import Underlying

            _empty_redis()
            with override_settings(VAR_DIR=tmp_path_factory.mktemp("var")):
                call_command("load_demo", username=USERNAME, password=PASSWORD, stdout=io.StringIO())
            Underlying.objects.exclude(symbol=SYMBOL).update(enabled=False)
            env = child_environment(connection.settings_dict, settings.REDIS_URL)
            connections.close_all()
        yield env
    finally:
        with django_db_blocker.unblock():
            call_command("flush", verbosity=0, interactive=False)
            connections.close_all()
            _empty_redis()


@pytest.fixture(scope="module")
def stack(desk_env) -> Iterator[Stack]:
    """daphne, the simulated feed and a Celery worker, up and streaming."""
    desk = Stack(desk_env)
    desk.start()
    _stacks.append(desk)
    try:
        yield desk
    finally:
        _stacks.remove(desk)
        desk.stop()


@pytest.fixture(scope="module")
def browser(stack):
    """Chromium, started after the stack (and its database work) and closed before it stops."""
    if not chromium.is_installed():
        pytest.fail(chromium.missing_message(), pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(chromium.CHROMIUM), args=["--no-sandbox"], headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


def new_context(browser, viewport: Viewport, base_url: str, storage_state=None):
    context = browser.new_context(
        base_url=base_url,
        viewport={"width": viewport.width, "height": viewport.height},
        is_mobile=viewport.mobile,
        has_touch=viewport.mobile,
        device_scale_factor=1,
        storage_state=storage_state,
        timezone_id="Asia/Kolkata",
        locale="en-IN",
    )
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    return context


def log_in(page, username: str = USERNAME, password: str = PASSWORD) -> None:
    """Fill and submit the login form the page shows."""
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation(wait_until="domcontentloaded"):
        page.click("form:has(input[name=password]) [type=submit]")


@pytest.fixture(scope="module")
def signed_in_state(browser, stack) -> dict:
    """The session cookie of a login through the login page, for every logged-in page."""
    context = new_context(browser, DESKTOP, stack.web.url)
    page = context.new_page()
    page.goto("/login/")
    log_in(page)
    assert "/login/" not in page.url, f"login failed: still on {page.url}"
    state = context.storage_state()
    context.close()
    return state


class PageErrors(list):
    """Uncaught exceptions of a page's scripts, with where they happened."""

    def __init__(self, page) -> None:
        super().__init__()
        page.on("pageerror", lambda error: self.append(f"{page.url}: {error.stack or error}"[:1000]))


def _open(browser, stack, state, viewport: Viewport):
    context = new_context(browser, viewport, stack.web.url, storage_state=state)
    page = context.new_page()
    page.errors = PageErrors(page)
    return context, page


@pytest.fixture
def desktop(browser, stack, signed_in_state):
    """A logged-in page at 1366x768."""
    context, page = _open(browser, stack, signed_in_state, DESKTOP)
    yield page
    context.close()


@pytest.fixture
def phone(browser, stack, signed_in_state):
    """A logged-in page at a phone's 390x844."""
    context, page = _open(browser, stack, signed_in_state, PHONE)
    yield page
    context.close()


@pytest.fixture(params=VIEWPORTS, ids=lambda v: v.name)
def viewport_page(request, browser, stack, signed_in_state):
    """A logged-in page at each size; `page.viewport` says which."""
    context, page = _open(browser, stack, signed_in_state, request.param)
    page.viewport = request.param
    yield page
    context.close()


@pytest.fixture
def anonymous(browser, stack):
    """A fresh browser with no session."""
    context = new_context(browser, DESKTOP, stack.web.url)
    yield context.new_page()
    context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed browser test shows what the stack's processes said."""
    report = yield
    if report.failed and _stacks:
        report.sections.append(("stack logs", "\n".join(s.logs() for s in _stacks)))
    return report
