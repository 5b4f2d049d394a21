"""The FastAGI server: Asterisk's ``AGI(agi://host:port/script)`` connects here, one TCP
connection per call (recording 09).

A connection sends the ``agi_*`` environment, then the server's commands are answered one
at a time. :class:`FastAgiSession` (the Twisted protocol) is the call's
:class:`~ivr.agi.AgiChannel`: once the environment is in, the factory hands it to
``on_session``; each reply fires the Deferred of the command it answers. A ``HANGUP`` line
or the connection closing ends the session. Time (reply and environment timeouts) comes from
the clock given to the factory: the reactor, or ``twisted.internet.task.Clock`` in tests.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITransport
from twisted.python.failure import Failure

from ivr.agi import (
    AgiArgumentError,
    AgiEnd,
    AgiEnvironment,
    AgiError,
    AgiProtocolError,
    AgiReply,
    AgiSessionEnded,
    AgiTimeout,
    FastAgiReader,
    Hangup,
)

__all__ = ["FastAgiServer", "FastAgiSession"]

log = logging.getLogger(__name__)


class FastAgiSession(protocol.Protocol):
    """One call's FastAGI connection; an :class:`~ivr.agi.AgiChannel` once ``env`` is in."""

    factory: FastAgiServer
    transport: ITransport

    def __init__(self) -> None:
        self._reader = FastAgiReader()
        self._env: AgiEnvironment | None = None
        self._queue: deque[tuple[str, Deferred[AgiReply], float]] = deque()
        self._current: tuple[str, Deferred[AgiReply]] | None = None
        self._timer: IDelayedCall | None = None
        self._end: AgiEnd | None = None
        self._closed: Deferred[AgiEnd] = Deferred()
        self._peer = "?"

    # -- AgiChannel ------------------------------------------------------------------------

    @property
    def env(self) -> AgiEnvironment:
        if self._env is None:
            raise RuntimeError("FastAGI session has no environment yet")
        return self._env

    @property
    def closed(self) -> Deferred[AgiEnd]:
        """Fires once with why the session ended (see :class:`~ivr.agi.AgiEnd`)."""
        return self._closed

    @property
    def ended(self) -> AgiEnd | None:
        """Why the session ended, None while it runs."""
        return self._end

    def send(self, command: str, timeout: float | None = None) -> Deferred[AgiReply]:
        """Queue ``command``; it is written when the previous one has its reply."""
        if self._end is not None:
            return defer.fail(AgiSessionEnded(self._end, command))
        if not command or "\n" in command or "\r" in command:
            return defer.fail(AgiArgumentError("command", f"must be one line, got {command!r}"))
        d: Deferred[AgiReply] = Deferred()
        wait = self.factory.reply_timeout if timeout is None else timeout
        self._queue.append((command, d, wait))
        if self._current is None:
            self._write_next()
        return d

    def close(self) -> None:
        """End the script: the connection closes and the channel's dialplan goes on."""
        if self._end is None:
            self._finish(AgiEnd.CLOSED)
            self.transport.loseConnection()

    # -- Twisted -----------------------------------------------------------------------------

    def connectionMade(self) -> None:
        self._peer = str(self.transport.getPeer())
        self.factory.sessions.add(self)
        self._timer = self.factory.clock.callLater(
            self.factory.environment_timeout, self._environment_late
        )

    def dataReceived(self, data: bytes) -> None:
        if self._end is not None:
            return
        try:
            items = self._reader.feed(data)
        except AgiProtocolError as exc:
            self._fail(exc)
            return
        for item in items:
            if self._end is not None:
                return
            if isinstance(item, AgiEnvironment):
                self._started(item)
            elif isinstance(item, Hangup):
                log.debug("FastAGI %s: the caller hung up", self._describe())
                self._finish(AgiEnd.HANGUP)
                self.transport.loseConnection()
            else:
                self._replied(item)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.factory.sessions.discard(self)
        if self._end is None:
            self._finish(AgiEnd.ENDED)

    # -- inside ------------------------------------------------------------------------------

    def _describe(self) -> str:
        return self._env.channel if self._env is not None else f"from {self._peer}"

    def _started(self, env: AgiEnvironment) -> None:
        self._env = env
        self._cancel_timer()
        try:
            self.factory.on_session(self)
        except Exception:
            log.exception("FastAGI %s: the session handler failed; closing", env.channel)
            self.close()

    def _environment_late(self) -> None:
        self._timer = None
        self._fail(AgiTimeout("(the agi_* environment)", self.factory.environment_timeout))

    def _write_next(self) -> None:
        if not self._queue or self._end is not None:
            return
        command, d, wait = self._queue.popleft()
        self._current = (command, d)
        self.transport.write(command.encode() + b"\n")
        self._timer = self.factory.clock.callLater(wait, self._timed_out, command, wait)

    def _replied(self, reply: AgiReply) -> None:
        if self._current is None:
            self._fail(AgiProtocolError("a reply to no command", reply.raw))
            return
        _, d = self._current
        self._current = None
        self._cancel_timer()
        d.callback(reply)  # may send() again: it writes at once, nothing being in flight
        if self._current is None:
            self._write_next()

    def _timed_out(self, command: str, wait: float) -> None:
        self._timer = None
        self._fail(AgiTimeout(command, wait))

    def _fail(self, error: AgiError) -> None:
        log.warning("FastAGI %s: %s; closing the connection", self._describe(), error)
        current, self._current = self._current, None
        self._finish(AgiEnd.FAILED)
        if current is not None:
            current[1].errback(error)
        self.transport.loseConnection()

    def _finish(self, reason: AgiEnd) -> None:
        """Mark the session over, fail what waits, then tell whoever watches ``closed``."""
        self._end = reason
        self._cancel_timer()
        waiting = [d for _, d, _ in self._queue]
        if self._current is not None:
            waiting.insert(0, self._current[1])
            self._current = None
        self._queue.clear()
        for d in waiting:
            d.errback(AgiSessionEnded(reason))
        self._closed.callback(reason)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class FastAgiServer(protocol.ServerFactory[FastAgiSession]):
    """Makes a :class:`FastAgiSession` per connection and hands each to ``on_session`` once
    its environment is in (``session.env.script`` names the script asked for). A handler
    that raises gets the session closed. ``reply_timeout`` is the default wait for a reply
    (seconds), ``environment_timeout`` the wait for the environment after connecting."""

    protocol = FastAgiSession

    def __init__(
        self,
        on_session: Callable[[FastAgiSession], Any],
        clock: IReactorTime,
        *,
        reply_timeout: float = 30.0,
        environment_timeout: float = 5.0,
    ) -> None:
        self.on_session = on_session
        self.clock = clock
        self.reply_timeout = reply_timeout
        self.environment_timeout = environment_timeout
        #: Connections open now (with or without their environment).
        self.sessions: set[FastAgiSession] = set()

    def close_all(self) -> None:
        """Close every open session (at shutdown: each caller's dialplan goes on)."""
        for session in list(self.sessions):
            if session.ended is None:
                session.close()
            else:
                session.transport.loseConnection()
