"""The external CRM: customers looked up by number over HTTP, never slower than a budget.

:class:`CustomerDirectory` is what the screen pop asks; :class:`HttpCrm` answers it from a
CRM that serves ``GET {url}/customers?number=+4930...`` (the contract is in the README,
"External CRM"). A slow, dead or confused CRM costs at most ``timeout`` per request and, once
it has failed ``failures_to_open`` times in a row, nothing at all: the circuit breaker
(:mod:`crm_bridge.breaker`) refuses requests at once for ``open_seconds``, then lets one
trial through. Every failure is a :class:`CrmUnavailable` whose ``reason`` says what went
wrong; the token never appears in one.

Answers are cached per number for ``cache_seconds``; concurrent look-ups of one number share
one request (single flight). That request runs in its own task: a caller that stops waiting
(``asyncio.wait_for(directory.lookup(number), budget)`` timing out) cancels only its wait, so
the others still get the answer, and a late answer still lands in the cache (and still counts
for the breaker). A caller that wants the late answer looks the number up again, which joins
the request in flight or reads the cache.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol
from urllib.parse import urlsplit

import httpx
import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
)

from crm_bridge.breaker import CircuitBreaker, Permit, Transition
from crm_bridge.errors import CrmConfigError

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_CUSTOMERS",
    "MAX_NAME",
    "CrmAnswer",
    "CrmUnavailable",
    "CustomerDirectory",
    "ExternalCrmValues",
    "ExternalCustomer",
    "HttpCrm",
    "from_settings",
]

log = logging.getLogger(__name__)

#: Limits on one answer: customers per number, characters of a name, bytes of the body.
MAX_CUSTOMERS = 20
MAX_NAME = 200
MAX_ANSWER_BYTES = 1 << 20
#: Limits on the other text fields (ids, notes, links, numbers per customer).
_MAX_ID = 200
_MAX_NOTES = 2000
_MAX_URL = 2000
_MAX_NUMBERS = 20

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")

ExternalTier = Literal["vip", "key", "ordinary", "small"]


class CrmUnavailable(Exception):
    """The external CRM gave no usable answer. ``reason``: ``timeout``, ``breaker open``,
    ``connection refused``, ``HTTP 503``, ``bad answer: <what>``, ..."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"external CRM unavailable: {reason}")


@dataclass(frozen=True, slots=True)
class ExternalCustomer:
    """A customer as the external CRM knows it. ``numbers`` in E.164; ``url`` links to the
    CRM's record (http or https only)."""

    id: str
    name: str
    numbers: tuple[str, ...] = ()
    tier: ExternalTier | None = None
    notes: str | None = None
    open_tickets: int | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class CrmAnswer:
    """The customers on one number (empty: the CRM knows none). ``source``: a request made
    for this look-up (``crm``) or an earlier answer (``cache``); ``at``: when the CRM
    answered."""

    customers: tuple[ExternalCustomer, ...]
    source: Literal["crm", "cache"]
    at: float


class CustomerDirectory(Protocol):
    """Where the screen pop asks who is calling, beyond the customer tables."""

    async def lookup(self, number: str) -> CrmAnswer:
        """The customers on ``number`` (E.164); raises :class:`CrmUnavailable`."""
        ...


# -- the answer's shape (validated at the edge) --------------------------------------------


def _e164(number: str) -> str:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        raise ValueError("not an E.164 number (+ and country code)") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError("not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _web_link(url: str) -> str:
    # The pop renders it as a link: only http(s), never javascript: or data:.
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("not an http:// or https:// link")
    return url


class _Customer(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    id: Annotated[str, Field(min_length=1, max_length=_MAX_ID)]
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
    numbers: Annotated[
        list[Annotated[str, Field(max_length=32), AfterValidator(_e164)]],
        Field(max_length=_MAX_NUMBERS),
    ] = []
    tier: ExternalTier | None = None
    notes: Annotated[str, Field(max_length=_MAX_NOTES)] | None = None
    open_tickets: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    url: Annotated[str, Field(max_length=_MAX_URL), AfterValidator(_web_link)] | None = None


class _Answer(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    customers: Annotated[list[_Customer], Field(max_length=MAX_CUSTOMERS)]


def _parse_answer(body: bytes) -> tuple[ExternalCustomer, ...]:
    """The customers of a 200 answer; :class:`CrmUnavailable` naming the first problem."""
    try:
        answer = _Answer.model_validate_json(body)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_input=False)
        first = problems[0]
        where = ".".join(str(part) for part in first["loc"])
        what = "not JSON" if first["type"] == "json_invalid" else first["msg"]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CrmUnavailable(f"bad answer: {where + ': ' if where else ''}{what}{more}") from None
    return tuple(
        ExternalCustomer(
            id=c.id,
            name=c.name,
            numbers=tuple(c.numbers),
            tier=c.tier,
            notes=c.notes,
            open_tickets=c.open_tickets,
            url=c.url,
        )
        for c in answer.customers
    )


# -- the client ------------------------------------------------------------------------------


class _AnswerCache:
    """Answers by number, kept ``seconds`` from when the CRM gave them, the least recently
    used dropped beyond ``size`` numbers."""

    def __init__(self, seconds: float, size: int) -> None:
        self.seconds = seconds
        self.size = size
        self._answers: OrderedDict[str, CrmAnswer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, number: str, now: float) -> CrmAnswer | None:
        answer = self._answers.get(number)
        if answer is None:
            return None
        if now >= answer.at + self.seconds:
            del self._answers[number]
            return None
        self._answers.move_to_end(number)
        return answer

    def put(self, number: str, answer: CrmAnswer) -> None:
        if self.seconds <= 0:
            return
        self._answers[number] = answer
        self._answers.move_to_end(number)
        while len(self._answers) > self.size:
            self._answers.popitem(last=False)


class HttpCrm:
    """A :class:`CustomerDirectory` over an external CRM's HTTP API (see the module).

    ``clock`` gives the time for the cache and the breaker (e.g. ``time.monotonic``);
    ``client`` is used as given and left open (else one is created, and closed by
    :meth:`aclose`); ``cache_size`` bounds the numbers cached.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        timeout: float,
        cache_seconds: float,
        failures_to_open: int,
        open_seconds: float,
        clock: Callable[[], float],
        client: httpx.AsyncClient | None = None,
        cache_size: int = 10_000,
    ) -> None:
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be a positive number of seconds (got {timeout})")
        if not cache_seconds >= 0:
            raise ValueError(f"cache_seconds must be 0 or more (got {cache_seconds})")
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1 (got {cache_size})")
        self._endpoint = url.rstrip("/") + "/customers"
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout
        self._clock = clock
        self._own_client = client is None
        self._client = client if client is not None else httpx.AsyncClient()
        self.breaker = CircuitBreaker(
            failures_to_open, open_seconds, on_transition=self._breaker_moved
        )
        self._cache = _AnswerCache(cache_seconds, cache_size)
        self._in_flight: dict[str, asyncio.Task[CrmAnswer]] = {}
        self._last_failure = ""
        self._outage_since: float | None = None
        self._closed = False

    def __repr__(self) -> str:
        # No headers: the token stays out of reprs and so out of logs.
        return f"HttpCrm({self._endpoint!r}, breaker={self.breaker.state})"

    async def lookup(self, number: str) -> CrmAnswer:
        """The customers on ``number`` (E.164, e.g. ``+4930123456``): from the cache, from
        the request in flight for it, or from a new request. Raises :class:`CrmUnavailable`
        (at once while the breaker is open) and :class:`ValueError` for a number that is not
        E.164."""
        if not _E164.fullmatch(number):
            raise ValueError(f"number must be E.164 such as +4930123456 (got {number!r})")
        if self._closed:
            raise CrmUnavailable("client closed")
        now = self._clock()
        cached = self._cache.get(number, now)
        if cached is not None:
            return CrmAnswer(cached.customers, "cache", cached.at)
        request = self._in_flight.get(number)
        if request is None:
            permit = self.breaker.allow(now)
            if permit is None:
                raise CrmUnavailable("breaker open")
            request = asyncio.create_task(self._request(number, permit))
            self._in_flight[number] = request
            request.add_done_callback(lambda done: self._landed(number, done))
        try:
            # shield: a waiter cancelled (its budget spent) leaves the request to the others.
            return await asyncio.shield(request)
        except asyncio.CancelledError:
            waiter = asyncio.current_task()
            if self._closed and request.done() and (waiter is None or not waiter.cancelling()):
                raise CrmUnavailable("client closed") from None  # not this waiter's cancel
            raise

    @property
    def cached_numbers(self) -> int:
        """How many numbers have an answer in the cache (expired ones until asked)."""
        return len(self._cache)

    async def aclose(self) -> None:
        """Cancel the requests in flight (their waiters get ``client closed``, as does every
        later look-up) and close the HTTP client this object created."""
        self._closed = True
        requests = list(self._in_flight.values())
        for request in requests:
            request.cancel()
        await asyncio.gather(*requests, return_exceptions=True)
        if self._own_client:
            await self._client.aclose()

    async def _request(self, number: str, permit: Permit) -> CrmAnswer:
        """One request for ``number``; its outcome goes to the breaker and, when good, to the
        cache, whoever is still waiting."""
        try:
            customers = await self._fetch(number)
        except CrmUnavailable as exc:
            self._last_failure = exc.reason
            self.breaker.failed(self._clock(), permit)
            raise
        except asyncio.CancelledError:
            self.breaker.abandoned(permit)
            if self._closed:
                raise CrmUnavailable("client closed") from None
            raise
        except Exception as exc:
            # A bug of ours, not the CRM's failure: the look-up fails, the breaker is not
            # tripped by it, the caller still gets the one exception it handles.
            log.exception("external CRM look-up failed in the client")
            self.breaker.abandoned(permit)
            raise CrmUnavailable(f"client error: {type(exc).__name__}") from None
        answer = CrmAnswer(customers, "crm", self._clock())
        self.breaker.succeeded(answer.at, permit)
        self._cache.put(number, answer)
        return answer

    async def _fetch(self, number: str) -> tuple[ExternalCustomer, ...]:
        try:
            # httpx's timeout bounds each step (connect, each read); this bounds the whole.
            async with asyncio.timeout(self.timeout):
                async with self._client.stream(
                    "GET",
                    self._endpoint,
                    params={"number": number},
                    headers=self._headers,
                    timeout=self.timeout,
                ) as response:
                    if response.status_code == 404:
                        return ()
                    if response.status_code != 200:
                        raise CrmUnavailable(f"HTTP {response.status_code}")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_ANSWER_BYTES:
                            raise CrmUnavailable(f"bad answer: more than {MAX_ANSWER_BYTES} bytes")
        except TimeoutError:
            raise CrmUnavailable("timeout") from None
        except httpx.TimeoutException:
            raise CrmUnavailable("timeout") from None
        except httpx.ConnectError as exc:
            raise CrmUnavailable(_connect_failure(exc)) from None
        except httpx.DecodingError:
            raise CrmUnavailable("bad answer: body not decodable as its Content-Encoding") from None
        except httpx.TransportError as exc:
            raise CrmUnavailable(f"connection failed: {type(exc).__name__}") from None
        return _parse_answer(bytes(body))

    def _landed(self, number: str, request: asyncio.Task[CrmAnswer]) -> None:
        if self._in_flight.get(number) is request:
            del self._in_flight[number]
        if not request.cancelled():
            request.exception()  # retrieved: nobody may be waiting any more

    def _breaker_moved(self, transition: Transition) -> None:
        # One WARNING per outage and one INFO at its end; the trials between are DEBUG.
        if transition.was == "closed":
            self._outage_since = transition.at
            log.warning(
                "external CRM failing (%s; last: %s): no requests for %g s, then one trial",
                transition.reason,
                self._last_failure,
                self.breaker.open_seconds,
            )
        elif transition.to == "closed":
            since, self._outage_since = self._outage_since, None
            log.info(
                "external CRM answers again; breaker closed after %.1f s",
                transition.at - (since if since is not None else transition.at),
            )
        else:
            log.debug(
                "external CRM breaker %s -> %s: %s",
                transition.was,
                transition.to,
                transition.reason,
            )


def _connect_failure(exc: httpx.ConnectError) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip() or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    return f"cannot connect: {text[:200]}"


# -- from the process's settings ---------------------------------------------------------


class ExternalCrmValues(Protocol):
    """What :func:`from_settings` reads (``callcenter.settings.ExternalCrmSettings``)."""

    @property
    def url(self) -> str | None: ...
    @property
    def token(self) -> SecretStr | str | None: ...
    @property
    def timeout(self) -> float: ...
    @property
    def cache_seconds(self) -> float: ...
    @property
    def failures_to_open(self) -> int: ...
    @property
    def open_seconds(self) -> float: ...


def from_settings(external: ExternalCrmValues, clock: Callable[[], float]) -> HttpCrm | None:
    """The external CRM of ``crm.external``, or None when no url is set. A url that is not
    http(s) raises :class:`CrmConfigError` naming ``crm.external.url``."""
    if external.url is None:
        return None
    try:
        parts = urlsplit(external.url)
        host, _ = parts.hostname, parts.port  # both raise ValueError on a broken netloc
    except ValueError:
        raise CrmConfigError(
            "crm.external.url is not a valid URL (e.g. https://crm.example.com/api)",
            setting="external.url",
        ) from None
    if parts.scheme not in ("http", "https"):
        got = f"{parts.scheme}:" if parts.scheme else "no scheme"
        raise CrmConfigError(
            f"crm.external.url must start with http:// or https:// (got {got})",
            setting="external.url",
        )
    if not host:
        raise CrmConfigError(
            "crm.external.url has no host (e.g. https://crm.example.com/api)",
            setting="external.url",
        )
    if parts.username is not None or parts.password is not None:
        # Not echoed: it holds a credential.
        raise CrmConfigError(
            "crm.external.url must not carry a user or password; set crm.external.token",
            setting="external.url",
        )
    if parts.query or parts.fragment:
        raise CrmConfigError(
            "crm.external.url must be a base address without ?query or #fragment "
            "(the client adds /customers?number=...)",
            setting="external.url",
        )
    token = external.token
    if isinstance(token, SecretStr):
        token = token.get_secret_value()
    return HttpCrm(
        external.url,
        token=token or None,
        timeout=external.timeout,
        cache_seconds=external.cache_seconds,
        failures_to_open=external.failures_to_open,
        open_seconds=external.open_seconds,
        clock=clock,
    )
