"""Shared fixtures.

Twisted runs on the asyncio reactor here, as in the app (``callcenter.app``): it is installed
once, before anything imports ``twisted.internet.reactor``, and tests that need real sockets
or threads drive it through the ``run`` fixture, which runs the loop until a Deferred (or a
coroutine) completes or a timeout expires. Pure-core tests need none of this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from twisted.internet import asyncioreactor

_loop = asyncio.new_event_loop()
asyncio.set_event_loop(_loop)
asyncioreactor.install(_loop)

from twisted.internet import reactor as _reactor  # noqa: E402  (must follow install())
from twisted.internet.defer import Deferred, ensureDeferred  # noqa: E402

_reactor.startRunning(installSignalHandlers=False)

T = TypeVar("T")


def run_until(awaitable: Deferred[T] | Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
    """Run the reactor until ``awaitable`` completes; fail the test after ``timeout`` s."""
    d = ensureDeferred(awaitable) if not isinstance(awaitable, Deferred) else awaitable
    return _loop.run_until_complete(asyncio.wait_for(d.asFuture(_loop), timeout))


def sleep(seconds: float) -> Deferred[None]:
    """A Deferred that fires after ``seconds`` of real time on the running reactor."""
    d: Deferred[None] = Deferred()
    _reactor.callLater(seconds, d.callback, None)
    return d


@pytest.fixture
def reactor() -> Any:
    """The global asyncio-backed reactor (real sockets, real time)."""
    return _reactor


@pytest.fixture
def run() -> Callable[..., Any]:
    """``run(deferred_or_coroutine, timeout=10)`` -> its result, with the reactor running."""
    return run_until


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the reactor's thread pool and close the loop, so the process can exit."""
    # The shutdown triggers stop the reactor's thread pool; the loop is not run again.
    _reactor.fireSystemEvent("shutdown")


def _service_url(variable: str, what: str) -> str:
    """A real service's URL from the environment; under CI its absence is a failure."""
    import os

    url = os.environ.get(variable)
    if url:
        return url
    message = f"{what} not configured: set {variable} (.ci/services.sh starts one)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def postgres_url() -> str:
    """A real, empty PostgreSQL database (its public schema is dropped and re-created)."""
    from sqlalchemy import create_engine, text

    url = _service_url("CALLCENTER_TEST_POSTGRES_URL", "PostgreSQL")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture
def redis_url() -> str:
    """A real redis-server (database flushed)."""
    import redis

    url = _service_url("CALLCENTER_TEST_REDIS_URL", "redis-server")
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url
