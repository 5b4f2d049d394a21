"""AsyncAGI over the AMI connection (recording 04): ``AGI(agi:async)`` parks the channel,
commands go as AMI ``AGI`` actions (``Channel``, ``Command``, ``CommandID``), replies come
back as AsyncAGIExec events with the same CommandID.

This module reads no AMI: the call model turns AsyncAGIStart / AsyncAGIExec / AsyncAGIEnd
into :class:`~cti.calls.events.AsyncAgiStarted`, ``AsyncAgiReplied`` and ``AsyncAgiEnded`` on
the call-event stream (and a channel its (re)connect snapshot shows waiting in
``AGI(agi:async)`` into a restored ``AsyncAgiStarted``: Asterisk keeps such a channel waiting
for commands for ever, so a new session opens for it), which the process feeds to
:meth:`AsyncAgi.on_call_event`. Actions go out through an injected
:class:`~acd.service.ActionSender`-shaped object (the AMI client).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from itertools import count
from types import MappingProxyType
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from cti.ami.codec import Message
from cti.calls.events import AsyncAgiEnded, AsyncAgiReplied, AsyncAgiStarted, PbxEvent
from ivr.agi import (
    AgiArgumentError,
    AgiEnd,
    AgiEnvironment,
    AgiError,
    AgiReply,
    AgiSessionEnded,
    AgiTimeout,
    asyncagi_break,
    parse_reply,
)

__all__ = ["ActionSender", "AsyncAgi", "AsyncAgiSession"]

log = logging.getLogger(__name__)


class ActionSender(Protocol):
    """What AsyncAGI needs of the AMI client: send an action, get its response."""

    def send_action(
        self, name: str, fields: Sequence[tuple[str, str]] = (), *, timeout: float | None = None
    ) -> Deferred[Message]: ...


class AsyncAgiSession:
    """One channel's AsyncAGI session: an :class:`~ivr.agi.AgiChannel`. Made by
    :class:`AsyncAgi`; ``call_id`` is the call the channel belongs to (None if unknown);
    ``restored``: found in AsyncAGI in the PBX's snapshot after a (re)connect, its
    environment rebuilt from it (no AsyncAGIStart was seen)."""

    def __init__(
        self,
        transport: AsyncAgi,
        channel: str,
        env: AgiEnvironment,
        call_id: str | None,
        *,
        restored: bool = False,
    ) -> None:
        self._transport = transport
        self.channel = channel
        self.call_id = call_id
        self.restored = restored
        self._env = env
        self._end: AgiEnd | None = None
        self._closed: Deferred[AgiEnd] = Deferred()
        # CommandID -> (command, its Deferred, its timer), in the order sent.
        self._pending: dict[str, tuple[str, Deferred[AgiReply], IDelayedCall]] = {}

    @property
    def env(self) -> AgiEnvironment:
        return self._env

    @property
    def closed(self) -> Deferred[AgiEnd]:
        """Fires once with why the session ended (see :class:`~ivr.agi.AgiEnd`)."""
        return self._closed

    @property
    def ended(self) -> AgiEnd | None:
        return self._end

    def send(self, command: str, timeout: float | None = None) -> Deferred[AgiReply]:
        """Send ``command`` as an ``AGI`` action. The PBX runs a channel's commands in the
        order it gets them, so they go out at once; each reply is matched by CommandID.
        A command the PBX refuses (``AGI`` action error: the channel left AGI) fails with
        the AMI client's error; one without a reply in ``timeout`` with
        :class:`~ivr.agi.AgiTimeout` (a late reply is then ignored)."""
        if self._end is not None:
            return defer.fail(AgiSessionEnded(self._end, command))
        if not command or "\n" in command or "\r" in command:
            return defer.fail(AgiArgumentError("command", f"must be one line, got {command!r}"))
        transport = self._transport
        command_id = transport.next_command_id()
        wait = transport.reply_timeout if timeout is None else timeout
        d: Deferred[AgiReply] = Deferred()
        timer = transport.clock.callLater(wait, self._timed_out, command_id, wait)
        self._pending[command_id] = (command, d, timer)
        fields = [("Channel", self.channel), ("Command", command), ("CommandID", command_id)]
        sent = transport.actions.send_action("AGI", fields, timeout=transport.action_timeout)
        sent.addErrback(self._refused, command_id)
        return d

    def close(self) -> None:
        """``ASYNCAGI BREAK``: the channel leaves ``AGI()`` and its dialplan goes on. (A
        Redirect ends the session too; its AsyncAGIEnd then finds it closed already.)"""
        if self._end is not None:
            return
        self._finish(AgiEnd.CLOSED)
        fields = [("Channel", self.channel), ("Command", asyncagi_break()),
                  ("CommandID", self._transport.next_command_id())]  # fmt: skip
        sent = self._transport.actions.send_action(
            "AGI", fields, timeout=self._transport.action_timeout
        )
        sent.addErrback(
            lambda f: log.info("AsyncAGI %s: ASYNCAGI BREAK refused: %s", self.channel, f.value)
        )

    # -- from the transport ------------------------------------------------------------------

    def _replied(self, command_id: str, text: str) -> None:
        pending = self._pending.pop(command_id, None)
        if pending is None:
            log.debug("AsyncAGI %s: reply to unknown or late command %s", self.channel, command_id)
            return
        command, d, timer = pending
        if timer.active():
            timer.cancel()
        try:
            reply = parse_reply(text)
        except AgiError as exc:
            log.warning("AsyncAGI %s: %s (command %r)", self.channel, exc, command)
            d.errback(exc)
            return
        d.callback(reply)

    def _refused(self, failure: Failure, command_id: str) -> None:
        pending = self._pending.pop(command_id, None)
        if pending is None:
            return None
        command, d, timer = pending
        if timer.active():
            timer.cancel()
        log.info("AsyncAGI %s: %r not sent: %s", self.channel, command, failure.value)
        d.errback(failure)
        return None

    def _timed_out(self, command_id: str, wait: float) -> None:
        pending = self._pending.pop(command_id, None)
        if pending is not None:
            pending[1].errback(AgiTimeout(pending[0], wait))

    def _finish(self, reason: AgiEnd) -> None:
        self._end = reason
        self._transport._forget(self)
        pending = list(self._pending.values())
        self._pending.clear()
        for command, d, timer in pending:
            if timer.active():
                timer.cancel()
            d.errback(AgiSessionEnded(reason, command))
        self._closed.callback(reason)


class AsyncAgi:
    """The AsyncAGI transport of one AMI link: watches the call events for channels that
    enter AsyncAGI and hands each new :class:`AsyncAgiSession` to ``on_session``.

    ``actions`` sends the ``AGI`` actions; ``clock`` times replies (``reply_timeout``
    seconds by default); ``action_timeout`` is passed to ``send_action``. CommandIDs are
    ``<prefix>-<n>``, the prefix random unless given, so two backends on one PBX never
    take each other's replies.
    """

    def __init__(
        self,
        actions: ActionSender,
        clock: IReactorTime,
        on_session: Callable[[AsyncAgiSession], Any],
        *,
        reply_timeout: float = 30.0,
        action_timeout: float | None = None,
        prefix: str | None = None,
    ) -> None:
        self.actions = actions
        self.clock = clock
        self.on_session = on_session
        self.reply_timeout = reply_timeout
        self.action_timeout = action_timeout
        self._prefix = prefix or f"ivr-{secrets.token_hex(4)}"
        self._ids = count(1)
        self._sessions: dict[str, AsyncAgiSession] = {}
        #: Live sessions by channel name (a read-only view).
        self.sessions: Mapping[str, AsyncAgiSession] = MappingProxyType(self._sessions)

    def next_command_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    def on_call_event(self, event: PbxEvent) -> None:
        """Subscribe this to the call-event stream; it reads only the AsyncAGI events."""
        if isinstance(event, AsyncAgiReplied):
            session = self._sessions.get(event.channel)
            if session is not None:
                session._replied(event.command_id, event.reply)
        elif isinstance(event, AsyncAgiStarted):
            self._started(event)
        elif isinstance(event, AsyncAgiEnded):
            session = self._sessions.get(event.channel)
            if session is not None:
                session._finish(AgiEnd.ENDED)

    def close_all(self) -> None:
        """Close every live session (``ASYNCAGI BREAK`` each)."""
        for session in list(self._sessions.values()):
            session.close()

    def _started(self, event: AsyncAgiStarted) -> None:
        try:
            env = AgiEnvironment.from_values({"agi_channel": event.channel, **event.env})
        except AgiError as exc:
            log.warning("AsyncAGI %s: unusable environment: %s", event.channel, exc)
            return
        old = self._sessions.get(event.channel)
        if old is not None:  # its AsyncAGIEnd was lost (an AMI reconnect): it is over
            old._finish(AgiEnd.ENDED)
        session = AsyncAgiSession(self, event.channel, env, event.call_id, restored=event.restored)
        self._sessions[event.channel] = session
        try:
            self.on_session(session)
        except Exception:
            log.exception("AsyncAGI %s: the session handler failed; closing", event.channel)
            session.close()

    def _forget(self, session: AsyncAgiSession) -> None:
        if self._sessions.get(session.channel) is session:
            del self._sessions[session.channel]
