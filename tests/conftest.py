"""Fixtures of the browser tests (tests/browserkit.py has the pieces they are made of) and of
the real services the scaling tests need (tests/rediskit.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browserkit import DESKTOP, Page, Samples, ServerProcess, choose_samples, launch_chromium
from tests.rediskit import RedisServer
from tests.serverkit import shared_store


@pytest.fixture(scope="session")
def samples() -> Samples:
    return choose_samples()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server for the browser tests that need no special flags."""
    srv = ServerProcess(tmp_path_factory.mktemp("server") / "server.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Per module: Playwright's sync API keeps an event loop running while it is open, and the
    asyncio tests of other modules need none to be."""
    yield from launch_chromium()


@pytest.fixture
def make_page(browser: Any) -> Iterator[Callable[..., Page]]:
    """New tabs, each in its own browser context (desktop 1280x800 at 2x unless told);
    a test fails if any of them threw."""
    contexts: list[Any] = []
    errors: list[str] = []

    def make(**options: Any) -> Page:
        context = browser.new_context(**{**DESKTOP, **options})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return Page(page, errors)

    yield make
    for context in contexts:
        context.close()
    assert errors == [], "the page threw"


@pytest.fixture
def page(make_page: Callable[..., Page], server: ServerProcess) -> Page:
    p = make_page()
    p.open(server.url)
    return p


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole run; each test keeps to its own key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop and start."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[str]:
    """Rooms in memory, and in Redis (one process), where room ink goes through the room's
    log: a test that takes it runs on both."""
    if request.param == "memory":
        yield "memory"
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    with shared_store(server.url):
        yield "redis"
