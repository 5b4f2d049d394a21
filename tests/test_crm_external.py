"""The external CRM client against a real HTTP server on 127.0.0.1 (a small asyncio one,
written here so each test can make it answer normally, slowly, with garbage, with an HTTP
error, or not at all), counting the requests that reach it: every failure's reason within
the timeout, the breaker opening and its trial, the cache, single flight, cancellation of a
waiter, the token kept out of messages and logs, and the settings' checks."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr
from twisted.internet.defer import Deferred

from callcenter.settings import ExternalCrmSettings
from crm_bridge.errors import CrmConfigError
from crm_bridge.external import (
    MAX_ANSWER_BYTES,
    CrmAnswer,
    CrmUnavailable,
    CustomerDirectory,
    ExternalCustomer,
    HttpCrm,
    from_settings,
)

Run = Callable[..., Any]

NUMBER = "+4930901820"
OTHER = "+4989123456"
TOKEN = "tok-SECRET-7f3a"
TIMEOUT = 0.3

JURGEN = {
    "id": "c-1",
    "name": "Jürgen Müller",
    "numbers": ["+4930901820", "+49 89 123456"],
    "tier": "vip",
    "notes": "prefers mornings",
    "open_tickets": 2,
    "url": "https://crm.example.com/customers/c-1",
    "segment": "retail",  # a field the client does not know: ignored
}


def body_of(*customers: dict[str, Any]) -> bytes:
    return json.dumps({"customers": list(customers)}).encode()


@dataclass
class Request:
    target: str
    headers: dict[str, str]

    @property
    def number(self) -> str:
        return parse_qs(urlsplit(self.target).query)["number"][0]


@dataclass
class FakeCrm:
    """An HTTP/1.1 server on 127.0.0.1 answering ``GET /customers?number=...``, one request
    per connection. Every request is recorded before it is answered."""

    status: int = 200
    body: bytes = field(default_factory=lambda: body_of(JURGEN))
    delay: float = 0.0  # before the status line
    hold: asyncio.Event | None = None  # when set: answer only once it is set
    trickle: float = 0.0  # seconds between the body's bytes
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening (new connections are refused) and drop the open ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request_line = (await reader.readline()).decode()
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode().strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.requests.append(Request(request_line.split()[1], headers))
            if self.hold is not None:
                await self.hold.wait()
            await asyncio.sleep(self.delay)
            writer.write(
                f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n".encode()
            )
            if self.trickle:
                for i in range(len(self.body)):
                    writer.write(self.body[i : i + 1])
                    await writer.drain()
                    await asyncio.sleep(self.trickle)
            else:
                writer.write(self.body)
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)


class Clock:
    """The time the client reads for its cache and breaker; moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def crm_and_server(
    *, token: str | None = TOKEN, timeout: float = TIMEOUT, **client: Any
) -> AsyncIterator[tuple[HttpCrm, FakeCrm, Clock]]:
    server, clock = FakeCrm(), Clock()
    await server.start()
    settings: dict[str, Any] = {"cache_seconds": 60.0, "failures_to_open": 3, "open_seconds": 30.0}
    settings.update(client)
    crm = HttpCrm(server.url, token=token, timeout=timeout, clock=clock, **settings)
    try:
        yield crm, server, clock
    finally:
        await crm.aclose()
        await server.stop()


async def failure(crm: HttpCrm, number: str = NUMBER) -> tuple[str, float]:
    """The reason the look-up failed and how long it took."""
    started = time.monotonic()
    with pytest.raises(CrmUnavailable) as caught:
        await crm.lookup(number)
    return caught.value.reason, time.monotonic() - started


async def until(condition: Callable[[], bool], seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def go(run: Run, scenario: Coroutine[Any, Any, None], timeout: float = 10.0) -> None:
    """Run ``scenario`` as an asyncio task on the tests' loop (``run`` drives the loop)."""
    task = asyncio.get_event_loop_policy().get_event_loop().create_task(scenario)
    run(Deferred.fromFuture(task), timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- answers --------------------------------------------------------------------------------


def test_an_answer_becomes_customers_and_the_request_follows_the_contract(run: Run) -> None:
    async def scenario() -> None:
        async with crm_and_server() as (crm, server, clock):
            directory: CustomerDirectory = crm
            answer = await directory.lookup(NUMBER)
            assert answer == CrmAnswer(
                (
                    ExternalCustomer(
                        id="c-1",
                        name="Jürgen Müller",
                        numbers=("+4930901820", "+4989123456"),
                        tier="vip",
                        notes="prefers mornings",
                        open_tickets=2,
                        url="https://crm.example.com/customers/c-1",
                    ),
                ),
                "crm",
                clock.now,
            )
            (request,) = server.requests
            assert request.target == "/api/customers?number=%2B4930901820"
            assert request.number == NUMBER
            assert request.headers["authorization"] == f"Bearer {TOKEN}"
            assert request.headers["accept"] == "application/json"

    go(run, scenario())


def test_optional_fields_may_be_absent_or_null_and_no_token_sends_no_authorization(
    run: Run,
) -> None:
    async def scenario() -> None:
        async with crm_and_server(token=None) as (crm, server, _):
            server.body = body_of(
                {"id": "7", "name": "Ana"}, {"id": "8", "name": "Bo", "tier": None}
            )
            answer = await crm.lookup(NUMBER)
            assert answer.customers == (
                ExternalCustomer(id="7", name="Ana"),
                ExternalCustomer(id="8", name="Bo"),
            )
            assert "authorization" not in server.requests[0].headers

    go(run, scenario())


def test_404_is_no_customer_not_a_failure(run: Run) -> None:
    async def scenario() -> None:
        async with crm_and_server() as (crm, server, _):
            server.status, server.body = 404, b"not found"
            for _ in range(5):  # more than failures_to_open: none counts
                assert (await crm.lookup(NUMBER)).customers == ()
                await crm.lookup(OTHER)
            assert (crm.breaker.state, crm.breaker.failures) == ("closed", 0)
            assert len(server.requests) == 2  # and the empty answers are cached

    go(run, scenario())


def test_an_empty_list_is_no_customer(run: Run) -> None:
    async def scenario() -> None:
        async with crm_and_server() as (crm, server, _):
            server.body = b'{"customers": []}'
            assert (await crm.lookup(NUMBER)).customers == ()

    go(run, scenario())


# -- failures, each with its reason, within the timeout ---------------------------------------


def test_a_slow_crm_is_a_timeout_within_the_timeout(run: Run) -> None:
    async def scenario() -> None:
        async with crm_and_server() as (crm, server, _):
            server.delay = 5.0
            reason, took = await failure(crm)
            assert reason == "timeout"
            assert TIMEOUT * 0.9 <= took < TIMEOUT + 0.2
            assert crm.breaker.failures == 1

    go(run, scenario())


def test_a_body_trickling_in_is_a_timeout_for_the_whole_request(run: Run) -> None:
    async def scenario() -> None:
        async with crm_and_server() as (crm, server, _):
            server.trickle = 0.05  # each byte well within httpx's read timeout
            reason, took = await failure(crm)
            assert reason == "timeout" and took < TIMEOUT + 0.2

    go(run, scenario())


@pytest.mark.parametrize("status", [500, 503, 401, 302])
def test_an_http_error_is_named_by_its_status(run: Run, status: int) -> None:
    async def scenario() -> None:
        async with crm_and_server() as (crm, server, _):
            server.status = status
            reason, took = await failure(crm)
            assert reason == f"HTTP {status}" and took < TIMEOUT
            assert crm.breaker.failures == 1

    go(run, scenario())


def test_a_stopped_crm_is_connection_refused(run: Run) -> None:
    async def scenario() -> None:
        async with crm_and_server() as (crm, server, _):
            await crm.lookup(OTHER)
            await server.stop()
            reason, took = await failure(crm)
            assert reason == "connection refused" and took < TIMEOUT

    go(run, scenario())


def test_a_crm_that_was_never_there_is_connection_refused(run: Run) -> None:
    async def scenario() -> None:
        crm = HttpCrm(
            f"http://127.0.0.1:{free_port()}",
            token=None,
            timeout=TIMEOUT,
            cache_seconds=60,
            failures_to_open=3,
            open_seconds=30,
            clock=Clock(),
        )
        try:
            assert (await failure(crm))[0] == "connection refused"
        finally:
            await crm.aclose()

    go(run, scenario())


GARBAGE: list[tuple[str, bytes, str]] = [
    ("html", b"<html>Bad Gateway</html>", "bad answer: not JSON"),
    ("truncated", b'{"customers": [{"id": "1", "na', "bad answer: not JSON"),
    ("empty", b"", "bad answer: not JSON"),
    ("a list", b"[]", "bad answer: Input should be an object"),
    ("no customers key", b'{"clients": []}', "bad answer: customers: Field required"),
    (
        "customers not a list",
        b'{"customers": {"id": "1"}}',
        "bad answer: customers: Input should be a valid array",
    ),
    (
        "name a number",
        body_of({"id": "1", "name": 42}),
        "bad answer: customers.0.name: Input should be a valid string",
    ),
    (
        "empty name",
        body_of({"id": "1", "name": ""}),
        "bad answer: customers.0.name: String should have at least 1 character",
    ),
    ("id missing", body_of({"name": "Ana"}), "bad answer: customers.0.id: Field required"),
    (
        "unknown tier",
        body_of({"id": "1", "name": "A", "tier": "gold"}),
        "bad answer: customers.0.tier: Input should be 'vip', 'key', 'ordinary' or 'small'",
    ),
    (
        "tickets as text",
        body_of({"id": "1", "name": "A", "open_tickets": "3"}),
        "bad answer: customers.0.open_tickets: Input should be a valid integer",
    ),
    (
        "tickets as a bool",
        body_of({"id": "1", "name": "A", "open_tickets": True}),
        "bad answer: customers.0.open_tickets: Input should be a valid integer",
    ),
    (
        "negative tickets",
        body_of({"id": "1", "name": "A", "open_tickets": -1}),
        "bad answer: customers.0.open_tickets: Input should be greater than or equal to 0",
    ),
    (
        "national number",
        body_of({"id": "1", "name": "A", "numbers": ["030 901820"]}),
        "bad answer: customers.0.numbers.0: Value error, not an E.164 number (+ and country code)",
    ),
    (
        "impossible number",
        body_of({"id": "1", "name": "A", "numbers": ["+1 555"]}),
        "bad answer: customers.0.numbers.0: Value error, not a possible phone number",
    ),
    (
        "javascript link",
        body_of({"id": "1", "name": "A", "url": "javascript:alert(1)"}),
        "bad answer: customers.0.url: Value error, not an http:// or https:// link",
    ),
]


@pytest.mark.parametrize(("body", "reason"), [g[1:] for g in GARBAGE], ids=[g[0] for g in GARBAGE])
def test_garbage_is_a_bad_answer_naming_the_field(run: Run, body: bytes, reason: str) -> None:
    async def scenario() -> None:
        async with crm_and_server() as (crm, server, _):
            server.body = body
            got, took = await failure(crm)
            assert got == reason and took < TIMEOUT
            assert crm.breaker.failures == 1
            assert crm.cached_numbers == 0

    go(run, scenario())


def test_oversize_fields_and_answers_are_bad_answers(run: Run) -> None:
    async def scenario() -> None:
        async with crm_and_server(failures_to_open=10) as (crm, server, _):
            server.body = body_of({"id": "1", "name": "x" * 200})
            assert len((await crm.lookup(NUMBER)).customers[0].name) == 200  # at the cap
            server.body = body_of({"id": "1", "name": "x" * 201})
            assert (await failure(crm, OTHER))[0] == (
                "bad answer: customers.0.name: String should have at most 200 characters"
            )
            server.body = body_of(*({"id": str(i), "name": "A"} for i in range(21)))
            assert (await failure(crm, OTHER))[0] == (
                "bad answer: customers: List should have at most 20 items after validation, not 21"
            )
            server.body = body_of(
                {"id": "1", "name": "A", "notes": "n" * 2001}, {"id": "2", "name": 3}
            )
            assert (await failure(crm, OTHER))[0] == (
                "bad answer: customers.0.notes: String should have at most 2000 characters"
                " (and 1 more)"
            )
            server.body = b'{"customers": [], "pad": "' + b"x" * MAX_ANSWER_BYTES + b'"}'
            assert (await failure(crm, OTHER))[0] == (
                f"bad answer: more than {MAX_ANSWER_BYTES} bytes"
            )

    go(run, scenario())


# -- the breaker ----------------------------------------------------------------------------


def test_the_breaker_opens_after_n_failures_and_requests_stop_reaching_the_crm(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with crm_and_server(failures_to_open=3) as (crm, server, clock):
            server.status = 503
            for i in range(3):
                assert (await failure(crm, f"+49309018{i:02d}"))[0] == "HTTP 503"
                clock.now += 1
            assert crm.breaker.state == "open" and len(server.requests) == 3
            for i in range(20):
                reason, took = await failure(crm, f"+49309019{i:02d}")
                assert reason == "breaker open" and took < 0.05
            assert len(server.requests) == 3  # none reached the CRM
            assert crm.breaker.opened_at == 1002.0
            clock.now = 1002.0 + 29.9
            assert (await failure(crm))[0] == "breaker open"
            assert len(server.requests) == 3

    caplog.set_level(logging.DEBUG, logger="crm_bridge.external")
    go(run, scenario())
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "external CRM failing (3 failures in a row; last: HTTP 503): no requests for 30 s,"
        " then one trial"
    ]


def test_half_open_lets_one_trial_through_and_its_success_closes(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with crm_and_server(failures_to_open=2, timeout=1.0) as (crm, server, clock):
            server.delay = 5.0
            for _ in range(2):
                assert (await failure(crm, OTHER))[0] == "timeout"
            assert crm.breaker.state == "open"
            server.delay, server.hold = 0.0, asyncio.Event()
            clock.now += 30
            trial = asyncio.ensure_future(crm.lookup(NUMBER))
            await until(lambda: len(server.requests) == 3)
            assert crm.breaker.state == "half-open"
            # While the trial runs, other numbers are refused without a request.
            assert (await failure(crm, "+4940123456"))[0] == "breaker open"
            # The trial's own number joins it.
            joined = asyncio.ensure_future(crm.lookup(NUMBER))
            server.hold.set()
            assert (await trial).source == "crm"
            assert (await joined).source == "crm"
            assert crm.breaker.state == "closed"
            assert len(server.requests) == 3
            await crm.lookup("+4940123456")
            assert len(server.requests) == 4

    caplog.set_level(logging.INFO, logger="crm_bridge.external")
    go(run, scenario(), timeout=20)
    levels = [
        (r.levelname, r.getMessage()) for r in caplog.records if r.name == "crm_bridge.external"
    ]
    assert [level for level, _ in levels] == ["WARNING", "INFO"]
    assert levels[1][1] == "external CRM answers again; breaker closed after 30.0 s"


def test_a_failed_trial_opens_the_breaker_again(run: Run, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with crm_and_server(failures_to_open=1) as (crm, server, clock):
            server.status = 500
            assert (await failure(crm))[0] == "HTTP 500"
            for _ in range(3):  # three trials, thirty seconds apart, all failing
                clock.now += 30
                assert (await failure(crm))[0] == "HTTP 500"
                assert crm.breaker.state == "open"
                assert (await failure(crm))[0] == "breaker open"
            assert len(server.requests) == 4
            server.status = 200
            clock.now += 30
            assert (await crm.lookup(NUMBER)).source == "crm"
            assert crm.breaker.state == "closed"

    caplog.set_level(logging.INFO, logger="crm_bridge.external")
    go(run, scenario())
    # One outage: one WARNING, one INFO, nothing per trial.
    assert [r.levelname for r in caplog.records if r.name == "crm_bridge.external"] == [
        "WARNING",
        "INFO",
    ]


def test_a_cached_answer_is_served_while_the_breaker_is_open(run: Run) -> None:
    async def scenario() -> None:
        async with crm_and_server(failures_to_open=1) as (crm, server, _):
            await crm.lookup(NUMBER)
            server.status = 500
            await failure(crm, OTHER)
            assert crm.breaker.state == "open"
            assert (await crm.lookup(NUMBER)).source == "cache"

    go(run, scenario())


# -- cache, single flight, cancellation -----------------------------------------------------


def test_a_cache_hit_makes_no_request_until_the_answer_expires(run: Run) -> None:
    async def scenario() -> None:
        async with crm_and_server(cache_seconds=60.0) as (crm, server, clock):
            first = await crm.lookup(NUMBER)
            clock.now += 59.9
            again = await crm.lookup(NUMBER)
            assert again == CrmAnswer(first.customers, "cache", first.at)
            assert len(server.requests) == 1
            clock.now += 0.1
            fresh = await crm.lookup(NUMBER)
            assert (fresh.source, fresh.at, len(server.requests)) == ("crm", clock.now, 2)

    go(run, scenario())


def test_cache_seconds_zero_caches_nothing(run: Run) -> None:
    async def scenario() -> None:
        async with crm_and_server(cache_seconds=0.0) as (crm, server, _):
            for _ in range(3):
                assert (await crm.lookup(NUMBER)).source == "crm"
            assert len(server.requests) == 3 and crm.cached_numbers == 0

    go(run, scenario())


def test_the_cache_keeps_the_most_recently_used_numbers(run: Run) -> None:
    async def scenario() -> None:
        async with crm_and_server(cache_size=2) as (crm, server, _):
            a, b, c = "+4930111111", "+4930222222", "+4930333333"
            await crm.lookup(a)
            await crm.lookup(b)
            await crm.lookup(a)  # a used again: b is now the least recently used
            await crm.lookup(c)
            assert crm.cached_numbers == 2
            assert (await crm.lookup(a)).source == "cache"
            assert (await crm.lookup(c)).source == "cache"
            assert (await crm.lookup(b)).source == "crm"
            assert [r.number for r in server.requests] == [a, b, c, b]

    go(run, scenario())


def test_concurrent_lookups_of_one_number_share_one_request(run: Run) -> None:
    async def scenario() -> None:
        async with crm_and_server(timeout=2.0) as (crm, server, _):
            server.delay = 0.2
            answers = await asyncio.gather(*(crm.lookup(NUMBER) for _ in range(10)))
            assert len(server.requests) == 1
            assert len(set(answers)) == 1 and answers[0].source == "crm"
            # Different numbers do not share.
            server.delay = 0.0
            await asyncio.gather(crm.lookup("+4930111111"), crm.lookup("+4930222222"))
            assert len(server.requests) == 3

    go(run, scenario())


def test_concurrent_lookups_share_a_failure_too_and_it_counts_once(run: Run) -> None:
    async def scenario() -> None:
        async with crm_and_server() as (crm, server, _):
            server.delay = 5.0
            results = await asyncio.gather(
                *(crm.lookup(NUMBER) for _ in range(10)), return_exceptions=True
            )
            assert {r.reason for r in results if isinstance(r, CrmUnavailable)} == {"timeout"}
            assert len(results) == 10 and crm.breaker.failures == 1
            assert len(server.requests) == 1

    go(run, scenario())


def test_a_waiter_giving_up_leaves_the_request_to_the_others_and_the_answer_lands(
    run: Run,
) -> None:
    async def scenario() -> None:
        async with crm_and_server(timeout=2.0) as (crm, server, _):
            server.hold = asyncio.Event()
            patient = asyncio.ensure_future(crm.lookup(NUMBER))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(crm.lookup(NUMBER), 0.05)  # the pop's budget
            await asyncio.sleep(0.05)
            assert not patient.done()
            server.hold.set()
            assert (await patient).source == "crm"
            assert (await crm.lookup(NUMBER)).source == "cache"
            assert len(server.requests) == 1

    go(run, scenario())


def test_a_late_answer_lands_in_the_cache_when_nobody_waits_any_more(run: Run) -> None:
    async def scenario() -> None:
        async with crm_and_server(timeout=2.0) as (crm, server, _):
            server.hold = asyncio.Event()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(crm.lookup(NUMBER), 0.05)
            server.hold.set()
            await until(lambda: crm.cached_numbers == 1)
            answer = await crm.lookup(NUMBER)
            assert answer.source == "cache" and answer.customers[0].id == "c-1"
            assert len(server.requests) == 1

    go(run, scenario())


def test_looking_up_again_after_giving_up_joins_the_request_in_flight(run: Run) -> None:
    async def scenario() -> None:
        async with crm_and_server(timeout=2.0) as (crm, server, _):
            server.hold = asyncio.Event()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(crm.lookup(NUMBER), 0.05)
            late = asyncio.ensure_future(crm.lookup(NUMBER))  # "update the pop when it comes"
            await asyncio.sleep(0.05)
            server.hold.set()
            assert (await late).source == "crm"
            assert len(server.requests) == 1

    go(run, scenario())


def test_a_late_failure_nobody_waits_for_poisons_nothing(run: Run) -> None:
    async def scenario() -> None:
        async with crm_and_server(timeout=2.0) as (crm, server, _):
            server.hold, server.status = asyncio.Event(), 500
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(crm.lookup(NUMBER), 0.05)
            server.hold.set()
            await until(lambda: crm.breaker.failures == 1)  # it still counts
            assert crm.cached_numbers == 0
            server.hold, server.status = None, 200
            assert (await crm.lookup(NUMBER)).source == "crm"  # a new request, not stuck
            assert len(server.requests) == 2

    go(run, scenario())


# -- closing, secrets, bad input ------------------------------------------------------------


def test_aclose_closes_its_own_client_and_fails_waiters_clearly(run: Run) -> None:
    async def scenario() -> None:
        async with crm_and_server(timeout=2.0) as (crm, server, _):
            server.hold = asyncio.Event()
            waiting = asyncio.ensure_future(crm.lookup(NUMBER))
            await until(lambda: len(server.requests) == 1)
            await crm.aclose()
            with pytest.raises(CrmUnavailable, match="client closed"):
                await waiting
            assert (await failure(crm, OTHER))[0] == "client closed"
            assert crm.breaker.failures == 0  # our closing is not the CRM's failure
            server.hold.set()

    go(run, scenario())


def test_a_client_given_is_used_and_left_open(run: Run) -> None:
    async def scenario() -> None:
        server = FakeCrm()
        await server.start()
        client = httpx.AsyncClient()
        try:
            crm = HttpCrm(
                server.url,
                token=None,
                timeout=TIMEOUT,
                cache_seconds=0,
                failures_to_open=3,
                open_seconds=30,
                clock=Clock(),
                client=client,
            )
            await crm.lookup(NUMBER)
            await crm.aclose()
            assert not client.is_closed
            assert (await client.get(server.url + "customers?number=%2B1")).status_code == 200
        finally:
            await client.aclose()
            await server.stop()

    go(run, scenario())


def test_the_token_appears_in_no_reason_repr_or_log(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    reasons: list[str] = []

    async def scenario() -> None:
        async with crm_and_server(failures_to_open=2) as (crm, server, clock):
            for setup in (
                {"delay": 5.0},
                {"status": 401},
                {"body": b"nonsense " + TOKEN.encode()},
                {"status": 200},
            ):
                clock.now += 60
                server.delay, server.status, server.body = 0.0, 200, body_of(JURGEN)
                for name, value in setup.items():
                    setattr(server, name, value)
                try:
                    await crm.lookup(NUMBER)
                except CrmUnavailable as exc:
                    reasons.append(f"{exc} {exc.reason!r}")
            await server.stop()
            clock.now += 60
            reasons.append(str((await failure(crm))[0]))
            reasons.append(repr(crm))
            assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in server.requests)

    caplog.set_level(logging.DEBUG)
    go(run, scenario())
    assert len(reasons) == 5
    assert not [r for r in reasons if TOKEN in r]
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    "number", ["4930901820", "030901820", "+0301", "+49 30 901820", "", "anonymous"]
)
def test_a_number_that_is_not_e164_is_a_value_error(run: Run, number: str) -> None:
    async def scenario() -> None:
        async with crm_and_server() as (crm, server, _):
            with pytest.raises(ValueError, match=r"number must be E\.164"):
                await crm.lookup(number)
            assert server.requests == []

    go(run, scenario())


# -- from the settings ----------------------------------------------------------------------


def test_no_url_is_no_external_crm() -> None:
    assert from_settings(ExternalCrmSettings(), Clock()) is None


def test_the_settings_make_a_client_with_the_secret_token(run: Run) -> None:
    async def scenario() -> None:
        server = FakeCrm()
        await server.start()
        settings = ExternalCrmSettings(
            url=server.url, token=SecretStr(TOKEN), timeout=1.0, failures_to_open=7
        )
        crm = from_settings(settings, Clock())
        assert crm is not None
        try:
            await crm.lookup(NUMBER)
            assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
            assert (crm.timeout, crm.breaker.failures_to_open) == (1.0, 7)
            assert crm.breaker.open_seconds == settings.open_seconds
        finally:
            await crm.aclose()
            await server.stop()

    go(run, scenario())


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            "ftp://crm.example.com",
            "crm.external.url must start with http:// or https:// (got ftp:)",
        ),
        (
            "crm.example.com/api",
            "crm.external.url must start with http:// or https:// (got no scheme)",
        ),
        ("https:///api", "crm.external.url has no host"),
        ("https://[::1/api", "crm.external.url is not a valid URL"),
        ("https://crm.example.com:99999/", "crm.external.url is not a valid URL"),
        ("https://me:pw-XYZ@crm.example.com", "crm.external.url must not carry a user or password"),
        ("https://crm.example.com/api?key=1", "crm.external.url must be a base address"),
    ],
)
def test_a_bad_url_names_the_key(url: str, problem: str) -> None:
    with pytest.raises(CrmConfigError) as caught:
        from_settings(ExternalCrmSettings(url=url), Clock())
    assert caught.value.setting == "external.url"
    assert caught.value.problem.startswith(problem)
    assert "pw-XYZ" not in str(caught.value)
