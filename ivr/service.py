"""The IVR's door: :class:`IvrService` runs one :class:`~ivr.interpreter.IvrSession` per
AGI channel, over AsyncAGI (AMI ``AGI`` actions, replies from the call events) or FastAGI
(its own TCP server), on the process's reactor.

Each step of the pure interpreter becomes AGI commands here (both transports alike):

====================== =====================================================================
Play                   ``STREAM FILE`` per prompt; barge-in: any key (0-9 * #) stops it
SayNumber              ``SAY NUMBER n ""``
CollectDigits          ``GET DATA prompt timeout_ms max``; the prompts but the last are played
                       first (a key stops them and counts as the first digit); no prompt at
                       all (the caller already keyed during a barge-in prompt): ``GET DATA``
                       of :data:`SILENCE`, one second of Asterisk's own silence, so the
                       caller's next keys are still collected with GET DATA's ``#`` and
                       timeout (a WAIT FOR DIGIT loop would time each key itself)
WaitDigit              ``WAIT FOR DIGIT ms``
SetVariable            ``SET VARIABLE``
LookupCaller, AskWait, the callables given (the CRM's caller, the ACD's estimate, the named
RunCheck               checks), each bounded by ``lookup_timeout``
RouteToQueue           ``SET VARIABLE`` of each variable (``IVR_PATH``, ``IVR_DIGITS``, the
                       flow's own), then an AMI ``Redirect`` to the queue's holding lane: the
                       caller parks there (``CtiParked``) and the ACD takes it
RequestCallback        ``EXEC UserEvent`` ``CtiParked`` (the queue's lane) then ``CtiCallback``
                       (the number): the ACD's own callback path, as the holding dialplan's
                       callback key sends it; the caller keeps its place as a request and
                       stays in the flow (its confirmation, its hang-up)
LeaveMessage           ``Redirect`` to the voicemail context, the mailbox as extension
TransferTo             ``Redirect`` to the outbound context, the number as extension
HangUp                 ``HANGUP``
====================== =====================================================================

A reply feeds the session its result; no reply within the step's own wait plus
``agi_timeout`` is the session's :meth:`~ivr.interpreter.IvrSession.on_timeout`. ``511``
ends the session (``channel_gone``), the end of the AGI session (hang-up: FastAGI's
``HANGUP``, AsyncAGIEnd, a closed connection) ends it as ``hung_up``. Every end is published
as :class:`~ivr.events.IvrFinished` on :attr:`IvrService.events`, and the session leaves
:attr:`IvrService.sessions`.

A channel whose script, argument or extension names no flow is left alone over AsyncAGI
(another AGI application on the link may drive it); a FastAGI connection for no flow is
closed (the channel's dialplan goes on).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, TypeAlias, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort

from cti.ami.codec import Message
from cti.calls.events import PbxEvent
from cti.stream import EventStream
from ivr.agi import (
    AgiChannel,
    AgiCommandError,
    AgiEnd,
    AgiError,
    AgiFailure,
    AgiReply,
    AgiSessionEnded,
    AgiTimeout,
    collected_digits,
    command_error,
    exec_app,
    get_data,
    hang_up,
    pressed_digit,
    quote_argument,
    set_variable,
    stream_file,
    wait_for_digit,
)
from ivr.asyncagi import AsyncAgi, AsyncAgiSession
from ivr.config import IvrSettings, entry_fallbacks, entry_flows, flow_files
from ivr.errors import FlowsInvalid, IvrStartupError
from ivr.events import IvrEvent, IvrFinished, IvrStarted
from ivr.fastagi import FastAgiServer, FastAgiSession
from ivr.flow import CallbackNode, FlowBook, QueueNode, load_flows
from ivr.interpreter import (
    AskWait,
    CallerFound,
    CallerUnknown,
    CheckResult,
    CollectDigits,
    DigitsCollected,
    Finished,
    HangUp,
    HungUp,
    IvrSession,
    LeaveMessage,
    LookupCaller,
    Play,
    PlayDone,
    RequestCallback,
    Result,
    RouteToQueue,
    RunCheck,
    SayNumber,
    SetVariable,
    Step,
    TransferTo,
    TransportError,
    WaitDigit,
    WaitFigures,
)

__all__ = [
    "BARGE_IN_KEYS",
    "SILENCE",
    "ActionSender",
    "HoldingLane",
    "IvrService",
    "IvrTargets",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The keys that stop a barge-in prompt.
BARGE_IN_KEYS = "0123456789*#"
#: The prompt of a GET DATA that plays nothing (Asterisk's ``sounds/silence/1``).
SILENCE = "silence/1"

#: What a look-up callable returns: the value, or a Deferred of it.
Answer: TypeAlias = T | Deferred[T]


class ActionSender(Protocol):
    """What the IVR needs of the AMI client: send an action, get its response."""

    def send_action(
        self, name: str, fields: Any = (), *, timeout: float | None = None
    ) -> Deferred[Message]: ...


@dataclass(frozen=True, slots=True)
class HoldingLane:
    """Where a queue's callers park: ``exten`` of ``context`` announces ``lane`` (the
    ``CtiParked`` ``Queue`` header the ACD reads)."""

    context: str
    exten: str
    lane: str


@dataclass(frozen=True, slots=True)
class IvrTargets:
    """Where the IVR sends channels, as the ACD's dialplan has them: each queue's holding
    lane, the voicemail context (mailbox as extension), the outbound context (number as
    extension), and the UserEvents the call model reads."""

    holding: Mapping[str, HoldingLane]
    voicemail_context: str = "voicemail"
    transfer_context: str = "outbound"
    parked_event: str = "CtiParked"
    callback_event: str = "CtiCallback"


@dataclass(eq=False)
class _Run:
    """One channel's session and what the service knows of its AGI side."""

    session: IvrSession
    channel: AgiChannel
    transport: str
    ended: bool = False  # the AGI session is over (hang-up, redirect, closed)
    hung_up: bool = False  # HANGUP sent
    redirected: bool = False  # a Redirect succeeded: the channel left AGI for the dialplan
    queue: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    published: bool = False


class IvrService:
    """The IVR inside one backend. Built from :class:`~ivr.config.IvrSettings` and what the
    process supplies: the reactor (clock and TCP), the AMI client (``AGI`` and ``Redirect``
    actions), the ACD's queues (names, or name -> config with ``hours``), where each queue
    parks callers (:class:`IvrTargets`), and callables:

    * ``call_of(channel)``: the call model's call id of a channel (None: unknown);
    * ``lookup_caller(number)``: :class:`~ivr.interpreter.CallerFound` or
      :class:`~ivr.interpreter.CallerUnknown` (or a Deferred of it);
    * ``wait_figures(queue)``: :class:`~ivr.interpreter.WaitFigures` for a caller joining
      now (position and estimated seconds), or a Deferred of it;
    * ``checks``: a collect's named checks, ``value -> bool`` (or a Deferred of it).

    :class:`~ivr.errors.IvrStartupError` when the flows do not load, an entry names no
    flow or a fallback queue without a holding lane, or a queue the flows route to has no
    holding lane.

    A channel the PBX's snapshot shows waiting in AsyncAGI after a (re)connect (its
    backend SIGKILLed or restarted mid-flow) runs its flow again from the start: a caller
    who was mid-menu hears the menu again (:attr:`IvrStarted.restored`).
    """

    def __init__(
        self,
        settings: IvrSettings,
        *,
        reactor: Any,
        actions: ActionSender,
        queues: Mapping[str, Any] | Collection[str],
        targets: IvrTargets,
        call_of: Callable[[str], str | None] = lambda channel: None,
        lookup_caller: Callable[[str], Answer[CallerFound | CallerUnknown]] | None = None,
        wait_figures: Callable[[str], Answer[WaitFigures]] | None = None,
        checks: Mapping[str, Callable[[str], Answer[bool]]] | None = None,
    ) -> None:
        self.settings = settings
        self.reactor = reactor
        self.actions = actions
        self.targets = targets
        self._call_of = call_of
        self._lookup_caller = lookup_caller
        self._wait_figures = wait_figures
        self._checks = dict(checks or {})
        try:
            self.book: FlowBook = load_flows(
                flow_files(settings.flows), queues=queues, checks=self._checks.keys()
            )
        except FlowsInvalid as exc:
            raise IvrStartupError(str(exc), setting="flows") from None
        entry_flows(settings, self.book.flows)
        known = queues.keys() if isinstance(queues, Mapping) else set(queues)
        entry_fallbacks(settings, [q for q in known if q in targets.holding])
        self._check_lanes()
        #: Sessions begun and finished, in order.
        self.events: EventStream[IvrEvent] = EventStream("ivr events")
        self.asyncagi = AsyncAgi(
            actions, reactor, self._async_session, reply_timeout=settings.agi_timeout
        )
        self.fastagi = FastAgiServer(
            self._fast_session, reactor, reply_timeout=settings.agi_timeout
        )
        self._port: IListeningPort | None = None
        self._runs: dict[str, _Run] = {}
        #: Live sessions by channel name (a read-only view).
        self.sessions: Mapping[str, _Run] = MappingProxyType(self._runs)

    # -- life ----------------------------------------------------------------------------

    @property
    def fastagi_port(self) -> int | None:
        """The FastAGI server's port once listening (None: not listening)."""
        port = getattr(self._port.getHost(), "port", None) if self._port is not None else None
        return port if isinstance(port, int) else None

    def start(self) -> None:
        """Listen for FastAGI (``fastagi_port``; 0: not at all)."""
        port = self.settings.fastagi_port
        if not port or self._port is not None:
            return
        try:
            self._port = self.reactor.listenTCP(
                port, self.fastagi, interface=self.settings.fastagi_host
            )
        except CannotListenError as exc:
            raise IvrStartupError(
                f"FastAGI cannot listen on {self.settings.fastagi_host}:{port}: "
                f"{exc.socketError}; another backend may use it (0 turns FastAGI off)",
                setting="fastagi_port",
            ) from None
        log.info(
            "IVR: FastAGI on %s:%d, %d flows", self.settings.fastagi_host, port,
            len(self.book.flows),
        )  # fmt: skip

    def stop(self) -> Deferred[None]:
        """Stop listening and close every AGI session (each caller's dialplan goes on); a
        flow cut short ends with outcome ``stopped``, not as a transport error."""
        now = self.now()
        for run in list(self._runs.values()):
            for step in run.session.on_stop(now):
                if isinstance(step, Finished):
                    self._finished(run, step)
        self.fastagi.close_all()
        self.asyncagi.close_all()
        port, self._port = self._port, None
        if port is None:
            return defer.succeed(None)
        return defer.maybeDeferred(port.stopListening).addCallback(lambda _: None)

    def on_call_event(self, event: PbxEvent) -> None:
        """Subscribe this to the call events: AsyncAGI's sessions and replies come there."""
        self.asyncagi.on_call_event(event)

    # -- sessions ------------------------------------------------------------------------

    def _async_session(self, channel: AsyncAgiSession) -> None:
        flow = self._flow_of(channel)
        if flow is None:
            log.debug("IVR: AsyncAGI on %s names no flow; left alone", channel.channel)
            return
        if channel.restored:
            # Its backend died (or the AMI link dropped) mid-flow: the caller hears
            # silence until someone drives the channel again; the flow starts over.
            log.info("IVR: %s found waiting in AsyncAGI; flow %s starts again",
                     channel.channel, flow)  # fmt: skip
        self._begin(channel, flow, "asyncagi", channel.call_id, restored=channel.restored)

    def _fast_session(self, channel: FastAgiSession) -> None:
        flow = self._flow_of(channel)
        if flow is None:
            log.warning(
                "IVR: FastAGI script %r of %s names no flow or entry; closing (the dialplan "
                "goes on)", channel.env.script, channel.env.channel,
            )  # fmt: skip
            channel.close()
            return
        self._begin(channel, flow, "fastagi", None)

    def _flow_of(self, channel: AgiChannel) -> str | None:
        env = channel.env
        return self.settings.flow_for(
            self.book.flows,
            script=env.script,
            argument=env.values.get("arg_1"),
            extension=env.extension,
        )

    def _begin(
        self,
        channel: AgiChannel,
        flow: str,
        transport: str,
        call_id: str | None,
        *,
        restored: bool = False,
    ) -> None:
        env = channel.env
        now = self.reactor.seconds()
        call_id = call_id or self._call_of(env.channel)
        old = self._runs.get(env.channel)
        if old is not None:  # its end was lost: the channel starts again
            self._ended(old)
        session = IvrSession(
            self.book,
            flow,
            caller=env.callerid,
            channel=env.channel,
            call_id=call_id or "",
            language=env.language,
        )
        run = _Run(session, channel, transport)
        self._runs[env.channel] = run
        channel.closed.addCallback(self._closed, run)
        started = IvrStarted(now, call_id, env.channel, flow, transport, restored=restored)
        self.events.publish(started)
        self._drive(run, session.start(now))

    def _closed(self, reason: AgiEnd, run: _Run) -> None:
        run.ended = True
        if not run.session.finished and reason is not AgiEnd.CLOSED:
            self._drive(run, run.session.on_hangup(self.reactor.seconds()))
        elif not run.session.finished:
            self._ended(run)

    def _ended(self, run: _Run) -> None:
        """Forget a run whose session cannot go on (closed by this side)."""
        if not run.session.finished:
            steps = run.session.on_result(TransportError(0, "AGI session closed"), self.now())
            for step in steps:
                if isinstance(step, Finished):
                    self._finished(run, step)
        self._forget(run)

    def _forget(self, run: _Run) -> None:
        name = run.session.channel
        if self._runs.get(name) is run:
            del self._runs[name]

    def now(self) -> float:
        return float(self.reactor.seconds())

    # -- carrying steps out --------------------------------------------------------------

    def _drive(self, run: _Run, steps: list[Step]) -> None:
        d = Deferred.fromCoroutine(self._carry_out(run, steps))
        d.addErrback(self._broken, run)

    def _broken(self, failure: Any, run: _Run) -> None:
        log.error("IVR %s: %s", run.session.channel, failure.getTraceback())
        if not run.session.finished:
            for step in run.session.on_result(TransportError(0, "IVR error"), self.now()):
                if isinstance(step, Finished):
                    self._finished(run, step)
        if not run.ended:
            run.channel.close()
        self._forget(run)

    async def _carry_out(self, run: _Run, steps: list[Step]) -> None:
        todo = deque(steps)
        session = run.session
        while todo:
            step = todo.popleft()
            if isinstance(step, Finished):
                self._finished(run, step)
                return
            if session.finished and run.ended:
                continue  # the channel is gone: only the Finished still counts
            try:
                result = await self._step(run, step)
            except AgiTimeout as exc:
                log.info("IVR %s: %s", session.channel, exc)
                if not session.finished:
                    todo.extend(session.on_timeout(self.now()))
                continue
            except Exception as exc:
                if session.finished:
                    log.info("IVR %s: after the flow's end: %s", session.channel, exc)
                    continue
                result = self._failure(run, exc)
                todo.clear()
            if result is not None:
                todo.extend(session.on_result(result, self.now()))

    def _failure(self, run: _Run, exc: Exception) -> Result:
        """What a failed command means to the session."""
        if isinstance(exc, AgiSessionEnded):
            if exc.reason in (AgiEnd.HANGUP, AgiEnd.ENDED):
                return HungUp()
            return TransportError(0, str(exc))
        if isinstance(exc, AgiFailure) and run.ended:
            return HungUp()
        if isinstance(exc, AgiCommandError):
            return TransportError(exc.code, str(exc))
        if not isinstance(exc, AgiError):
            log.warning("IVR %s: %s", run.session.channel, exc)
        return TransportError(0, str(exc))

    def _send(self, run: _Run, command: str, wait: float = 0.0) -> Deferred[AgiReply]:
        return run.channel.send(command, timeout=wait + self.settings.agi_timeout)

    async def _step(self, run: _Run, step: Step) -> Result | None:
        match step:
            case Play():
                return PlayDone(await self._play(run, step.prompts, step.barge_in))
            case SayNumber():
                reply = await self._send(run, f"SAY NUMBER {int(step.number)} {quote_argument('')}")
                return PlayDone(pressed_digit(reply, "SAY NUMBER"))
            case CollectDigits():
                return await self._collect(run, step)
            case WaitDigit():
                ms = max(1, round(step.timeout * 1000))
                command = wait_for_digit(ms)
                digit = pressed_digit(await self._send(run, command, step.timeout), command)
                return DigitsCollected(digit or "", timed_out=digit is None)
            case SetVariable():
                await self._ok(run, set_variable(step.name, step.value))
                return None
            case LookupCaller():
                found = await self._ask(
                    self._lookup_caller, step.number, CallerUnknown(), "caller look-up"
                )
                return found if isinstance(found, CallerFound | CallerUnknown) else CallerUnknown()
            case AskWait():
                figures = await self._ask(
                    self._wait_figures, step.queue, WaitFigures(None, None), "wait estimate"
                )
                return figures if isinstance(figures, WaitFigures) else WaitFigures(None, None)
            case RunCheck():
                check = self._checks.get(step.check)
                passed = await self._ask(check, step.value, False, step.check)
                return CheckResult(passed is True)
            case RouteToQueue():
                run.queue, run.variables = step.queue, dict(step.variables)
                for name, value in step.variables.items():
                    await self._ok(run, set_variable(name, value))
                lane = self.targets.holding[step.queue]
                await self._redirect(run, lane.context, lane.exten)
                return None
            case RequestCallback():
                await self._request_callback(run, step)
                return None
            case LeaveMessage():
                await self._redirect(run, self.targets.voicemail_context, step.mailbox)
                return None
            case TransferTo():
                await self._redirect(run, self.targets.transfer_context, step.number)
                return None
            case HangUp():
                run.hung_up = True
                await self._send(run, hang_up())
                return None
        raise AssertionError(f"unhandled step {step!r}")  # pragma: no cover

    async def _ok(self, run: _Run, command: str) -> AgiReply:
        """Send a command whose only answer is success (``200``) or its error."""
        reply = await self._send(run, command)
        error = command_error(reply, command)
        if error is not None:
            raise error
        return reply

    async def _play(self, run: _Run, prompts: tuple[str, ...], barge_in: bool) -> str | None:
        keys = BARGE_IN_KEYS if barge_in else ""
        for prompt in prompts:
            command = stream_file(prompt, keys)
            digit = pressed_digit(await self._send(run, command), command)
            if digit is not None and barge_in:
                return digit
        return None

    async def _collect(self, run: _Run, step: CollectDigits) -> DigitsCollected:
        first = await self._play(run, step.prompts[:-1], barge_in=True) or ""
        prompt = SILENCE if first or not step.prompts else step.prompts[-1]
        most = step.max_digits - len(first)
        if most <= 0 or first == step.terminator:
            return DigitsCollected(first)
        ms = max(1, round(step.timeout * 1000))
        command = get_data(prompt, ms, most)
        wait = step.timeout * (most + 1)
        digits, timed_out = collected_digits(await self._send(run, command, wait), command)
        return DigitsCollected(first + digits, timed_out=timed_out and not first)

    async def _ask(
        self,
        ask: Callable[[str], Answer[Any]] | None,
        value: str,
        otherwise: Any,
        what: str,
    ) -> Any:
        """``ask(value)`` within ``lookup_timeout``; ``otherwise`` when there is nobody to
        ask, it fails or it is late (the flow never waits on a slow CRM or ACD)."""
        if ask is None:
            return otherwise
        try:
            answer = await _within(
                defer.maybeDeferred(ask, value), self.settings.lookup_timeout, self.reactor
            )
        except Exception as exc:
            log.info("IVR: %s of %r failed or was late: %s", what, value, exc)
            return otherwise
        return answer

    async def _redirect(self, run: _Run, context: str, exten: str) -> None:
        fields = [("Channel", run.session.channel), ("Context", context), ("Exten", exten),
                  ("Priority", "1")]  # fmt: skip
        try:
            await self.actions.send_action("Redirect", fields)
        except Exception as exc:
            log.error(
                "IVR %s: Redirect to %s,%s,1 refused: %s; the dialplan takes the caller",
                run.session.channel, context, exten, exc,
            )  # fmt: skip
            return
        run.redirected = True

    async def _request_callback(self, run: _Run, step: RequestCallback) -> None:
        lane = self.targets.holding[step.queue].lane
        number = step.number.replace(",", "")
        run.queue = step.queue
        parked = f"{self.targets.parked_event},Queue: {lane},CallerIDNum: {number}"
        await self._ok(run, exec_app("UserEvent", parked))
        asked = f"{self.targets.callback_event},Number: {number}"
        await self._ok(run, exec_app("UserEvent", asked))

    def _finished(self, run: _Run, step: Finished) -> None:
        self._forget(run)
        if run.published:
            return
        run.published = True
        session = run.session
        self.events.publish(
            IvrFinished(
                self.now(),
                session.call_id or None,
                session.channel,
                session.flow_name,
                run.transport,
                step.outcome,
                step.path,
                step.digits,
                run.queue if step.outcome in ("queued", "callback") else None,
                run.variables,
            )
        )
        log.debug("IVR %s: %s after %s", session.channel, step.outcome, ">".join(step.path))
        if run.ended or step.outcome in ("hung_up", "channel_gone"):
            return  # the PBX ended the AGI session
        # FastAGI: closing the connection is always safe. AsyncAGI: after a Redirect or a
        # HANGUP the PBX ends the session itself; otherwise ASYNCAGI BREAK hands the
        # channel back to the dialplan (the entry hangs up).
        if run.transport == "fastagi" or not (run.redirected or run.hung_up):
            run.channel.close()

    def _check_lanes(self) -> None:
        """Every queue a flow routes or calls back to has a holding lane to send callers to."""
        for flow in self.book.flows.values():
            for node_id, node in flow.nodes.items():
                queue = node.queue if isinstance(node, QueueNode | CallbackNode) else None
                if queue is not None and queue not in self.targets.holding:
                    raise IvrStartupError(
                        f"{flow.file}: node '{flow.name}.{node_id}': queue {queue!r} "
                        "has no holding lane to redirect callers to; give the queue a "
                        "lane in the ACD's queues file and calls.holding"
                    )


def _within(d: Deferred[T], seconds: float, clock: Any) -> Awaitable[T]:
    """``d``, failed with :class:`~twisted.internet.defer.CancelledError` after ``seconds``."""
    return d.addTimeout(seconds, clock)
