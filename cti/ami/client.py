"""The Twisted AMI client: one logged-in Asterisk Manager session, kept alive.

* :class:`AmiClient` owns the reconnect loop (``ClientService``, exponential backoff with
  jitter), the consumer and an :class:`~cti.stream.EventStream` of everything received.
* :class:`AmiProtocol` is one TCP connection: it logs in (plain or MD5 challenge),
  correlates responses by ActionID, collects EventList actions, pings, and after each login
  runs a resync whose result reaches the consumer *before* any live event of that session.

Failure policy: nothing the server sends crashes the client or stops it silently. Malformed
frames, responses nobody waits for and unexpected closes are logged with the connection, the
byte offset and the frame's first lines; every pending action fails with
:class:`AmiConnectionLost` when the link drops; a refused login is logged with the server's
message and retried with backoff. The secret is never logged and never in a repr. Values the
PBX sent are logged through :func:`~cti.ami.codec.for_log`, so none can forge a log line.

Why the link is down (the PBX unreachable, the login refused, the link lost) is one WARNING
per change of reason, not one per retry; ``AmiClient.problem`` keeps that reason until the
next session is ready, and each new reason also reaches the consumer as a
:class:`LinkChange` (``DISCONNECTED``), also when a connection attempt fails.

Backpressure: live events go into ``client.stream``. When a subscriber falls ``max_pending``
events behind, the stream pauses the client, which pauses reading from the socket (TCP flow
control then throttles Asterisk). Several streams may pause the client (its own and, in the
app, the call event stream it feeds); it counts their outstanding pauses, and reads again
only when none is left. The count outlives connections: a session that goes live while a
consumer is still behind pauses at once, right after delivering its resync. Login and resync
answers must be read whatever the consumers do, so events arriving meanwhile are held, up to
``max_held_events``; beyond that the connection is dropped (the next session resyncs). While
reading is paused, action timeouts and keepalive are suspended, since no response can be
read; they restart in full when reading resumes.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import random as _random
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, Protocol

from twisted.application.internet import ClientService
from twisted.internet import defer, error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocolFactory,
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from zope.interface import implementer

from cti.ami.codec import Message, Parser, encode_action, for_log
from cti.stream import EventStream

log = logging.getLogger(__name__)

Fields = Mapping[str, str] | Iterable[tuple[str, str]]

#: What a fresh session asks for before delivering live events (Asterisk loses the events
#: that happened while no one was connected, so the state has to be read back).
DEFAULT_RESYNC_ACTIONS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("CoreShowChannels", ()),
    ("BridgeList", ()),
    ("QueueStatus", ()),
    ("Status", (("AllVariables", "true"),)),
)


@dataclass(frozen=True, slots=True)
class AmiClientSettings:
    """Where and how to log in. ``secret`` is kept out of ``repr``."""

    host: str
    username: str
    secret: str = field(repr=False)
    port: int = 5038
    auth: Literal["plain", "md5"] = "plain"
    #: The Login ``Events:`` mask: ``on``, ``off`` or classes like ``call,agent,user,system``.
    events: str = "on"
    ping_interval: float = 20.0
    action_timeout: float = 10.0
    reconnect_min_delay: float = 1.0
    reconnect_max_delay: float = 60.0
    #: Spread of each reconnect delay, 0..1: 0.2 draws it within +-20 % of the backoff, so
    #: many clients restarted together do not reconnect in lockstep.
    reconnect_jitter: float = 0.2
    #: Session event filters sent after login (``Action: Filter``, Asterisk's syntax:
    #: ``Event: Newexten`` keeps only matching events, ``!Event: VarSet`` drops them).
    filters: tuple[str, ...] = ()
    #: High-water mark of the consumer's queue (events) before the socket is paused.
    max_pending_events: int = 10_000
    #: Events held while a session logs in and resyncs (reading cannot pause then); past
    #: this many the connection is dropped rather than memory growing without bound.
    max_held_events: int = 100_000
    resync_actions: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = DEFAULT_RESYNC_ACTIONS

    def __post_init__(self) -> None:
        if self.auth not in ("plain", "md5"):
            raise ValueError(f"auth must be 'plain' or 'md5', not {self.auth!r}")
        if not 0 < self.reconnect_min_delay <= self.reconnect_max_delay:
            raise ValueError("need 0 < reconnect_min_delay <= reconnect_max_delay")
        if not 0.0 <= self.reconnect_jitter <= 1.0:
            raise ValueError("reconnect_jitter must be in [0, 1]")
        if self.max_pending_events < 1 or self.max_held_events < 1:
            raise ValueError("max_pending_events and max_held_events must be at least 1")
        if self.action_timeout <= 0 or self.ping_interval <= 0:
            raise ValueError("action_timeout and ping_interval must be positive")
        named = [(name, getattr(self, name)) for name in ("host", "username", "secret", "events")]
        for name, value in [*named, *(("filter", f) for f in self.filters)]:
            if any(c in value for c in "\r\n"):
                raise ValueError(f"{name} must not contain CR or LF")


class AmiError(Exception):
    """Base of the client's errors."""


class ActionFailed(AmiError):
    """Asterisk answered ``Response: Error``; ``message`` is its ``Message:`` header."""

    def __init__(self, action: str, response: Message) -> None:
        self.action = action
        self.response = response
        self.message = response.get("Message") or ""
        super().__init__(f"{action} failed: {for_log(self.message or response.name)}")


class ActionTimeout(AmiError):
    """No (complete) answer within the action timeout."""


class AmiConnectionLost(AmiError):
    """The link dropped, or was never up, before the answer came."""


class LinkState(Enum):
    CONNECTED = "connected"  # TCP up, not logged in yet
    LOGGED_IN = "logged-in"  # login accepted, resync running
    READY = "ready"  # resync delivered, live events flowing
    DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class LinkChange:
    """A connection state change, for logs and the supervisor view."""

    state: LinkState
    at: float
    connection: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ListResult:
    """An EventList action's answer: the response, the items, the ``...Complete`` event."""

    response: Message
    items: list[Message]
    complete: Message | None


@dataclass(frozen=True, slots=True)
class ResyncSnapshot:
    """Resync results in the event stream: ``results[action]`` holds the items of each
    resync action that succeeded (a failed one is absent and listed in ``failed``)."""

    results: dict[str, list[Message]]
    at: float
    failed: tuple[str, ...] = ()


#: What flows through ``AmiClient.stream``.
AmiFeed = Message | ResyncSnapshot


class AmiConsumer(Protocol):
    """What the client feeds. ``on_message`` and ``on_resync`` may return a Deferred (the
    next item waits for it); ``on_link`` is informational and called inline."""

    def on_message(self, message: Message) -> Deferred[Any] | None: ...

    def on_resync(self, results: dict[str, list[Message]], now: float) -> Deferred[Any] | None: ...

    def on_link(self, change: LinkChange) -> None: ...


#: Bytes read from the AMI socket at a time (Twisted's default is 64 KiB). Measured with
#: bench.screen_pop at 50 offers/s: pop p99 65-188 ms with 64 KiB reads, 31-32 ms with 16.
READ_SIZE = 16384
#: The shortest reconnect delay, whatever the jitter draws: never a busy loop.
MIN_RECONNECT_DELAY = 0.01


def reconnect_delay(
    failures: int, min_delay: float, max_delay: float, jitter: float, random_value: float
) -> float:
    """Seconds before reconnect attempt number ``failures`` (1, 2, ...).

    The base doubles from ``min_delay`` up to ``max_delay``; ``jitter`` (0..1) spreads it
    symmetrically by up to that fraction, ``random_value`` (0..1) picking where (0.5 is the
    base itself). The result is capped at ``max_delay`` and at least
    :data:`MIN_RECONNECT_DELAY`.
    """
    base = min(max_delay, min_delay * 2 ** min(failures - 1, 64))
    spread = base * (1.0 + jitter * (2.0 * random_value - 1.0))
    return max(MIN_RECONNECT_DELAY, min(max_delay, spread))


@implementer(IPushProducer)
class AmiClient:
    """A self-healing AMI session feeding ``consumer``; see the module docstring."""

    def __init__(
        self,
        settings: AmiClientSettings,
        consumer: AmiConsumer,
        *,
        reactor: Any = None,
        endpoint: IStreamClientEndpoint | None = None,
        random: Callable[[], float] = _random.random,
        action_id_prefix: str | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.settings = settings
        self.consumer = consumer
        self.reactor: IReactorTime = reactor
        self.name = f"{settings.host}:{settings.port}"
        self.state = LinkState.DISCONNECTED
        #: Every live event and each resync snapshot, in order; add subscribers freely.
        self.stream: EventStream[AmiFeed] = EventStream(f"ami {self.name}")
        self.subscription = self.stream.subscribe(
            self._dispatch, max_pending=settings.max_pending_events, name="ami-consumer"
        )
        self.stream.register_producer(self)
        #: The connection currently up, if any.
        self.protocol: AmiProtocol | None = None
        self._random = random
        self._failures = 0
        self._connections = itertools.count(1)
        prefix = action_id_prefix if action_id_prefix is not None else f"cti{os.getpid()}"
        self._action_ids = (f"{prefix}-{n}" for n in itertools.count(1))
        self._ready_waiters: list[Deferred[None]] = []
        self._stop_reason: str | None = None
        #: Why the link is not up, as last warned (cannot connect, login refused, link
        #: lost); None once a session is ready. Repeats of the same reason are not warned.
        self.problem: str | None = None
        # Outstanding pauseProducing calls: each stream that registered this client pauses
        # and resumes it in balanced pairs (see EventStream), so a count tells whether any
        # consumer is still behind, across connections.
        self._pauses = 0
        if endpoint is None:
            endpoint = HostnameEndpoint(reactor, settings.host, settings.port)
        self._service = ClientService(
            _ReportingEndpoint(endpoint, self._connect_failed),
            _AmiFactory(self),
            retryPolicy=self._retry_delay,
            clock=reactor,
        )

    # -- public API ---------------------------------------------------------------------

    def start(self) -> None:
        """Connect, log in, and keep reconnecting until :meth:`stop`."""
        self._stop_reason = None
        self._service.startService()

    def stop(self) -> Deferred[None]:
        """Close the link and stop reconnecting; fires when the connection is closed."""
        self._stop_reason = "client stopped"
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.errback(AmiConnectionLost(f"AMI client {self.name} stopped"))
        return self._service.stopService()

    def when_ready(self) -> Deferred[None]:
        """Fires when the current or next session has logged in and delivered its resync."""
        if self.state is LinkState.READY:
            return defer.succeed(None)
        d: Deferred[None] = Deferred()
        self._ready_waiters.append(d)
        return d

    def send_action(
        self, name: str, fields: Fields = (), *, timeout: float | None = None
    ) -> Deferred[Message]:
        """Send an action; fires with its response, or fails with :class:`ActionFailed`,
        :class:`ActionTimeout` or :class:`AmiConnectionLost`."""
        proto = self._logged_in_protocol(name)
        if proto is None:
            return defer.fail(AmiConnectionLost(f"{name}: AMI link {self.name} is not logged in"))
        return proto.send_action(name, fields, timeout=timeout)

    def send_list_action(
        self, name: str, fields: Fields = (), *, timeout: float | None = None
    ) -> Deferred[ListResult]:
        """Send an EventList action (``CoreShowChannels``, ``QueueStatus``...); fires with
        every item once the ``...Complete`` event arrives. The timeout restarts with each
        item, so long lists are fine as long as they keep coming."""
        proto = self._logged_in_protocol(name)
        if proto is None:
            return defer.fail(AmiConnectionLost(f"{name}: AMI link {self.name} is not logged in"))
        return proto.send_list_action(name, fields, timeout=timeout)

    # -- IPushProducer, driven by the stream's high/low-water marks -----------------------

    @property
    def paused(self) -> bool:
        """True while some stream has paused the client (a consumer is behind)."""
        return self._pauses > 0

    def pauseProducing(self) -> None:
        self._pauses += 1
        if self.protocol is not None:
            self.protocol.pause_reading()

    def resumeProducing(self) -> None:
        if self._pauses == 0:
            log.warning("AMI %s: resumeProducing without a matching pauseProducing; ignored",
                        self.name)
            return
        self._pauses -= 1
        if self._pauses == 0 and self.protocol is not None:
            self.protocol.resume_reading()

    def stopProducing(self) -> None:
        self.stop()

    # -- used by AmiProtocol --------------------------------------------------------------

    def _logged_in_protocol(self, action: str) -> AmiProtocol | None:
        if self.state in (LinkState.LOGGED_IN, LinkState.READY) and self.protocol is not None:
            return self.protocol
        return None

    def _next_action_id(self) -> str:
        return next(self._action_ids)

    def _next_connection(self) -> str:
        return f"AMI#{next(self._connections)} {self.name}"

    def _retry_delay(self, _attempts: int) -> float:
        # ClientService resets its own counter whenever TCP connects, but a refused login
        # also connects: count failures ourselves, reset only by a successful login.
        self._failures += 1
        s = self.settings
        delay = reconnect_delay(self._failures, s.reconnect_min_delay, s.reconnect_max_delay,
                                s.reconnect_jitter, self._random())
        # The reason was warned once (see _trouble); each retry is detail.
        log.log(logging.INFO if self._failures == 1 else logging.DEBUG,
                "AMI %s: reconnecting in %.2f s (attempt %d)", self.name, delay, self._failures)
        return delay

    def _connect_failed(self, failure: Failure) -> None:
        if self._stop_reason is not None or failure.check(CancelledError):
            return
        connection = f"AMI {self.name}"
        problem = f"cannot connect to the PBX: {_connect_error(failure)}"
        if self._trouble(connection, problem):
            # A failed attempt changes no state, but a new reason is news for the consumer.
            self._set_state(LinkState.DISCONNECTED, connection, problem, level=logging.DEBUG)

    def _trouble(self, connection: str, problem: str) -> bool:
        """Say why the link is down: a WARNING when the reason is new, DEBUG when it
        repeats (a retry failing the same way); True if it was new."""
        problem = for_log(problem)
        if problem == self.problem:
            log.debug("%s: still %s", connection, problem)
            return False
        self.problem = problem
        log.warning("%s: %s; retrying with backoff (up to %g s apart)", connection, problem,
                    self.settings.reconnect_max_delay)
        return True

    def _logged_in(self) -> None:
        self._failures = 0

    def _set_state(self, state: LinkState, connection: str, reason: str | None = None, *,
                   level: int = logging.INFO) -> None:
        self.state = state
        change = LinkChange(state, self.reactor.seconds(), connection, reason)
        if state is LinkState.READY and self.problem is not None:
            reason = f"{reason}; was: {self.problem}" if reason else f"was: {self.problem}"
            self.problem = None
        elif state is LinkState.CONNECTED and self.problem is not None:
            level = logging.DEBUG  # another retry while the reason stands: warned already
        if reason:
            log.log(level, "%s: %s (%s)", connection, state.value, for_log(reason))
        else:
            log.log(level, "%s: %s", connection, state.value)
        try:
            self.consumer.on_link(change)
        except Exception:
            log.exception("%s: consumer failed on link change %s", connection, state.value)
        if state is LinkState.READY:
            waiters, self._ready_waiters = self._ready_waiters, []
            for d in waiters:
                d.callback(None)

    def _dispatch(self, item: AmiFeed) -> Deferred[Any] | None:
        if isinstance(item, ResyncSnapshot):
            return self.consumer.on_resync(item.results, item.at)
        return self.consumer.on_message(item)


@implementer(IStreamClientEndpoint)
class _ReportingEndpoint:
    """An endpoint that tells the client why a connection attempt failed (ClientService
    only retries)."""

    def __init__(self, endpoint: IStreamClientEndpoint,
                 failed: Callable[[Failure], None]) -> None:
        self._endpoint = endpoint
        self._failed = failed

    def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
        d = self._endpoint.connect(factory)

        def report(failure: Failure) -> Failure:
            self._failed(failure)
            return failure

        return d.addErrback(report)


class _AmiFactory(Factory):
    def __init__(self, client: AmiClient) -> None:
        self.client = client

    def buildProtocol(self, addr: object) -> AmiProtocol:
        return AmiProtocol(self.client)


class _Pending:
    """An action waiting for its answer."""

    __slots__ = ("action", "action_id", "deferred", "items", "response", "timeout", "timer",
                 "wants_list")

    def __init__(self, action: str, action_id: str, wants_list: bool, timeout: float) -> None:
        self.action = action
        self.action_id = action_id
        self.wants_list = wants_list
        self.timeout = timeout
        self.deferred: Deferred[Any] = Deferred()
        self.response: Message | None = None
        self.items: list[Message] = []
        self.timer: IDelayedCall | None = None


class _IStreamTransport(ITCPTransport, IPushProducer):
    """For the type checker: the TCP transport an AMI connection runs on, which can also
    pause and resume reading (Twisted's transports provide both interfaces)."""


class AmiProtocol(TwistedProtocol):
    """One AMI connection: login, action correlation, keepalive, resync, delivery."""

    transport: _IStreamTransport

    def __init__(self, client: AmiClient) -> None:
        self.client = client
        self.settings = client.settings
        self.reactor = client.reactor
        self.connection = client._next_connection()
        self._parser = Parser(expect_banner=True)
        self._pending: dict[str, _Pending] = {}
        self._bytes = 0
        self._frames = 0
        self._banner: str | None = None
        self._live = False  # resync delivered: events go straight to the stream
        self._held: list[Message] = []  # events received before the resync was delivered
        self._reading_paused = False
        self._closed = False
        self._ping: LoopingCall | None = None
        self._ping_outstanding = False
        self._close_reason: str | None = None
        #: Why the login failed (warned by the client), if it did.
        self._login_trouble: str | None = None

    def __repr__(self) -> str:
        return f"<AmiProtocol {self.connection} live={self._live}>"

    # -- connection lifecycle -------------------------------------------------------------

    def connectionMade(self) -> None:
        self.client.protocol = self
        # Smaller reads than Twisted's 64 KiB: a burst of events is handled in slices, and
        # the loop gets to what the events produced (screen-pop frames, API replies)
        # between two slices instead of after the whole burst.
        self.transport.bufferSize = READ_SIZE  # type: ignore[attr-defined]
        self.client._set_state(LinkState.CONNECTED, self.connection)
        # Asterisk reads actions as soon as the socket is up: no need to await the banner.
        self._session().addErrback(self._session_failed)

    def _session_failed(self, failure: Failure) -> None:
        # A bug in login/resync handling must not leave a connected but dead session.
        log.error("%s: session setup crashed; reconnecting: %s", self.connection,
                  failure.getTraceback())
        if not self._closed:
            self._drop("session setup crashed")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed = True
        if self._ping is not None and self._ping.running:
            self._ping.stop()
        for msg in self._parser.close():
            self._log_frame(logging.WARNING, "incomplete frame at close", msg)
        why = self._close_reason or self.client._stop_reason or (
            "closed by the server" if reason.check(ConnectionDone) else reason.getErrorMessage())
        if self._held:
            log.warning("%s: %d events received before the resync completed are discarded; "
                        "the next session's resync replaces them", self.connection,
                        len(self._held))
            self._held.clear()
        pending, self._pending = self._pending, {}
        for p in pending.values():
            self._cancel_timer(p)
            p.deferred.errback(AmiConnectionLost(
                f"{p.action} (ActionID {p.action_id}): connection {self.connection} lost: {why}"))
        if self.client.protocol is self:
            self.client.protocol = None
        detail = f"{why}; {self._bytes} bytes, {self._frames} frames received"
        client = self.client
        if client._stop_reason is not None:
            client._set_state(LinkState.DISCONNECTED, self.connection, detail)
        elif self._login_trouble is not None:
            # The login's reason is warned already (or repeats): the close is detail.
            client._set_state(LinkState.DISCONNECTED, self.connection, detail,
                              level=logging.DEBUG)
        else:
            was = client.state
            client._set_state(LinkState.DISCONNECTED, self.connection, detail,
                              level=logging.DEBUG)
            what = "link lost" if was is LinkState.READY else "link lost before it was ready"
            client._trouble(self.connection, f"AMI {what}: {why}")

    @defer.inlineCallbacks
    def _session(self) -> Generator[Deferred[Any], Any, None]:
        try:
            yield self._login()
        except AmiConnectionLost:
            return  # connectionLost has logged it
        except ActionFailed as exc:
            self._login_failed("login refused",
                               f"login as {self.settings.username!r} refused by the server: "
                               f"{exc.message or exc.response.name}")
            return
        except ActionTimeout:
            self._login_failed("login failed", "the login got no answer within "
                               f"{self.settings.action_timeout:g} s")
            return
        except Exception as exc:
            self._login_failed("login failed", f"login failed: {exc}")
            return
        self.client._logged_in()
        self.client._set_state(LinkState.LOGGED_IN, self.connection)
        self._ping = LoopingCall(self._keepalive)
        self._ping.clock = self.reactor
        self._ping.start(self.settings.ping_interval, now=False)
        for expression in self.settings.filters:
            try:
                yield self.send_action("Filter", [("Operation", "Add"), ("Filter", expression)])
            except AmiConnectionLost:
                return
            except Exception as exc:
                log.error("%s: event filter %r not set: %s; events it would drop still come",
                          self.connection, expression, for_log(exc))
        results: dict[str, list[Message]] = {}
        failed: list[str] = []
        for action, fields in self.settings.resync_actions:
            try:
                result = yield self.send_list_action(action, fields)
            except AmiConnectionLost:
                return
            except Exception as exc:
                log.error("%s: resync %s failed: %s; continuing without it",
                          self.connection, action, for_log(exc))
                failed.append(action)
            else:
                results[action] = result.items
        if not self._closed:
            self._go_live(ResyncSnapshot(results, self.reactor.seconds(), tuple(failed)))

    def _login_failed(self, reason: str, problem: str) -> None:
        self._login_trouble = problem
        self.client._trouble(self.connection, problem)
        self._drop(reason)

    def _drop(self, reason: str, *, abort: bool = False) -> None:
        self._close_reason = reason
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def _login(self) -> Deferred[Message]:
        s = self.settings
        events = ("Events", s.events)
        if s.auth == "plain":
            return self.send_action(
                "Login", [("Username", s.username), ("Secret", s.secret), events])

        def answer(challenge: Message) -> Deferred[Message]:
            key = hashlib.md5((challenge.get("Challenge", "") + s.secret).encode()).hexdigest()
            return self.send_action(
                "Login", [("AuthType", "md5"), ("Username", s.username), ("Key", key), events])

        return self.send_action("Challenge", [("AuthType", "md5")]).addCallback(answer)

    def _go_live(self, snapshot: ResyncSnapshot) -> None:
        self._live = True
        held, self._held = self._held, []
        stream = self.client.stream
        stream.publish(snapshot)
        for msg in held:
            stream.publish(msg)
        # Any stream (this client's or one it feeds) may have paused the client before this
        # session could stop reading: honour it now.
        if self.client.paused:
            self.pause_reading()
        self.client._set_state(
            LinkState.READY, self.connection,
            f"resync: {', '.join(f'{k} {len(v)}' for k, v in snapshot.results.items())}"
            + (f"; failed: {', '.join(snapshot.failed)}" if snapshot.failed else ""),
        )

    # -- keepalive and flow control -------------------------------------------------------

    def _keepalive(self) -> None:
        if self._reading_paused or self._ping_outstanding or self._closed:
            return
        self._ping_outstanding = True
        d = self.send_action("Ping")

        def done(result: object) -> None:
            self._ping_outstanding = False
            if isinstance(result, Failure):
                if result.check(ActionTimeout):
                    log.warning("%s: no Pong within %.1f s; dropping the connection",
                                self.connection, self.settings.action_timeout)
                    self._drop("keepalive timeout", abort=True)
                elif not result.check(AmiConnectionLost):
                    log.warning("%s: Ping failed: %s", self.connection,
                                for_log(result.getErrorMessage()))

        d.addBoth(done)

    def pause_reading(self) -> None:
        """Stop reading the socket (the consumer is behind); only once live, since login
        and resync answers must still be read."""
        if not self._live or self._reading_paused or self._closed:
            return
        self._reading_paused = True
        self.transport.pauseProducing()
        for p in self._pending.values():
            self._cancel_timer(p)
        log.info("%s: a consumer is behind (%d AMI events pending): paused reading",
                 self.connection, self.client.stream.pending)

    def resume_reading(self) -> None:
        """Read the socket again, restarting action timeouts in full."""
        if not self._reading_paused or self._closed:
            return
        self._reading_paused = False
        for p in self._pending.values():
            self._arm_timer(p)
        self.transport.resumeProducing()
        log.info("%s: consumer caught up: resumed reading", self.connection)

    # -- actions --------------------------------------------------------------------------

    def send_action(
        self, name: str, fields: Fields = (), *, timeout: float | None = None
    ) -> Deferred[Message]:
        """See :meth:`AmiClient.send_action`."""
        return self._send(name, fields, wants_list=False, timeout=timeout)

    def send_list_action(
        self, name: str, fields: Fields = (), *, timeout: float | None = None
    ) -> Deferred[ListResult]:
        """See :meth:`AmiClient.send_list_action`."""
        return self._send(name, fields, wants_list=True, timeout=timeout)

    def _send(self, name: str, fields: Fields, *, wants_list: bool,
              timeout: float | None) -> Deferred[Any]:
        if self._closed:
            return defer.fail(AmiConnectionLost(f"{name}: connection {self.connection} closed"))
        pairs = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
        action_id = self.client._next_action_id()
        try:
            data = encode_action(name, [("ActionID", action_id), *pairs])
        except ValueError as exc:
            return defer.fail(exc)
        p = _Pending(name, action_id, wants_list,
                     self.settings.action_timeout if timeout is None else timeout)
        self._pending[action_id.lower()] = p
        self._arm_timer(p)
        log.debug("%s: -> %s (ActionID %s)", self.connection, name, action_id)
        self.transport.write(data)
        return p.deferred

    def _arm_timer(self, p: _Pending) -> None:
        self._cancel_timer(p)
        if not self._reading_paused:
            p.timer = self.reactor.callLater(p.timeout, self._timed_out, p)

    @staticmethod
    def _cancel_timer(p: _Pending) -> None:
        if p.timer is not None and p.timer.active():
            p.timer.cancel()
        p.timer = None

    def _timed_out(self, p: _Pending) -> None:
        p.timer = None
        del self._pending[p.action_id.lower()]
        got = f" after {len(p.items)} items" if p.items else ""
        p.deferred.errback(ActionTimeout(
            f"{p.action} (ActionID {p.action_id}): no complete answer within "
            f"{p.timeout:g} s{got} on {self.connection}"))

    def _finish(self, p: _Pending, result: object) -> None:
        self._cancel_timer(p)
        del self._pending[p.action_id.lower()]
        if isinstance(result, Exception):
            p.deferred.errback(result)
        else:
            p.deferred.callback(result)

    # -- incoming -------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self._bytes += len(data)
        for msg in self._parser.feed(data):
            self._frames += 1
            try:
                self._received(msg)
            except Exception:
                # A bug here must not stop the session: log and go on with the next frame.
                self._log_frame(logging.ERROR, "failed to handle frame", msg, exc_info=True)

    def _received(self, msg: Message) -> None:
        kind = msg.kind
        if kind == "banner":
            if self._banner is None:
                # Once per session; a retry while the link is in trouble is detail.
                log.log(logging.INFO if self.client.problem is None else logging.DEBUG,
                        "%s: banner %r", self.connection, msg.name)
            else:
                self._log_frame(logging.WARNING, "second banner mid-stream", msg)
            self._banner = msg.name
            return
        if self._banner is None:
            self._banner = ""
            self._log_frame(logging.WARNING, "no AMI banner; is this an Asterisk manager port?",
                            msg)
        if msg.problems:
            self._log_frame(logging.WARNING, f"malformed frame ({'; '.join(msg.problems)})", msg)
        if kind == "response":
            self._response(msg)
        elif kind == "event":
            self._event(msg)
        else:
            self._log_frame(logging.WARNING, "frame is neither an event nor a response; dropped",
                            msg)

    def _response(self, msg: Message) -> None:
        aid = msg.action_id
        p = self._pending.get(aid.lower()) if aid else None
        if p is None:
            self._log_frame(logging.WARNING,
                            "response to no pending action (timed out or not ours); dropped", msg)
            return
        status = msg.name.lower()
        if status in ("error", "failure"):
            self._finish(p, ActionFailed(p.action, msg))
        elif not p.wants_list:
            self._finish(p, msg)
        elif (msg.get("EventList") or "").lower() == "start":
            p.response = msg
            self._arm_timer(p)
        else:
            log.warning("%s: %s (ActionID %s) answered %s without an event list",
                        self.connection, p.action, p.action_id, for_log(msg.name))
            self._finish(p, ListResult(msg, p.items, None))

    def _event(self, msg: Message) -> None:
        aid = msg.action_id
        p = self._pending.get(aid.lower()) if aid else None
        if p is not None and p.wants_list:
            if (msg.get("EventList") or "").lower() == "complete":
                self._complete_list(p, msg)
            else:
                p.items.append(msg)
                self._arm_timer(p)
            return
        if self._live:
            self.client.stream.publish(msg)
        elif len(self._held) < self.settings.max_held_events:
            self._held.append(msg)
        elif self._close_reason is None:
            log.error("%s: %d events arrived during login and resync (limit %d) at byte %d, "
                      "last %s; dropping the connection, the next session resyncs",
                      self.connection, len(self._held) + 1, self.settings.max_held_events,
                      self._bytes, _first_lines(msg))
            self._drop("too many events held during resync", abort=True)
        # else: already dropping; connectionLost discards what is held

    def _complete_list(self, p: _Pending, complete: Message) -> None:
        announced = complete.get("ListItems")
        if announced is not None and announced.isdigit() and int(announced) != len(p.items):
            log.warning("%s: %s (ActionID %s) announced %s items, got %d", self.connection,
                        p.action, p.action_id, for_log(announced), len(p.items))
        response = p.response if p.response is not None else complete
        self._finish(p, ListResult(response, p.items, complete))

    def _log_frame(self, level: int, what: str, msg: Message, exc_info: bool = False) -> None:
        log.log(level, "%s: %s at byte %d: %s", self.connection, what, self._bytes,
                _first_lines(msg), exc_info=exc_info)


def _connect_error(failure: Failure) -> str:
    """Why a connection attempt failed, in a few words."""
    if failure.check(error.ConnectionRefusedError):
        return "connection refused (nothing listens on that port, or a firewall rejects it)"
    if failure.check(error.DNSLookupError):
        return "host name not found"
    if failure.check(error.TimeoutError, error.TCPTimedOutError):
        return "no answer (timed out)"
    if failure.check(error.NoRouteError):
        return "no route to host"
    return failure.getErrorMessage().rstrip(".")


def _first_lines(msg: Message, lines: int = 3, limit: int = 240) -> str:
    if msg.banner is not None:
        return repr(msg.banner)
    if not msg.headers:
        return "(no headers)"
    text = for_log(" | ".join(f"{k}: {v}" for k, v in msg.headers[:lines]))
    if len(msg.headers) > lines:
        text += f" | ... ({len(msg.headers)} headers)"
    return text if len(text) <= limit else text[:limit] + "..."


__all__ = [
    "DEFAULT_RESYNC_ACTIONS",
    "MIN_RECONNECT_DELAY",
    "ActionFailed",
    "ActionTimeout",
    "AmiClient",
    "AmiClientSettings",
    "AmiConnectionLost",
    "AmiConsumer",
    "AmiError",
    "AmiFeed",
    "AmiProtocol",
    "LinkChange",
    "LinkState",
    "ListResult",
    "ResyncSnapshot",
    "reconnect_delay",
]
