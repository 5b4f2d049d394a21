"""The IVR interpreter: a pure state machine, one :class:`IvrSession` per call.

Fed the transport's results and the time, it returns :class:`Step` decisions; it does no
I/O and never reads the clock. A batch of steps holds any number of fire-and-forget steps
followed by at most one step that awaits a result (``step.awaits``), or ends with
:class:`Finished`. Feed that result to :meth:`IvrSession.on_result`; when the transport's
own timer fires first, call :meth:`IvrSession.on_timeout`; a hang-up at any moment goes to
:meth:`IvrSession.on_hangup` (or ``on_result(HungUp())``). Once a session has returned
``Finished`` it is done (``finished`` is true, nothing is waited on) and ignores anything
fed to it later (late replies after a hang-up).

Steps (frozen dataclasses; ``awaits`` names the result a transport feeds back):

=========================================================== ================================
``Play(prompts: tuple[str, ...], barge_in: bool)``           PlayDone (digit: the key that
                                                             interrupted a barge-in prompt;
                                                             barge-in means any of 0-9 * #)
``SayNumber(number: int)``                                   PlayDone (position, minutes)
``CollectDigits(prompts, min_digits: int, max_digits: int,   DigitsCollected (prompts may be
timeout: float, terminator: str)``                           empty: the caller already keys)
``WaitDigit(timeout: float)``                                DigitsCollected (one key or
                                                             ``timed_out``)
``SetVariable(name: str, value: str)``                       none (``CHANNEL(language)`` for
                                                             a language node)
``LookupCaller(number: str)``                                CallerFound | CallerUnknown
``AskWait(queue: str)``                                      WaitFigures
``RunCheck(check: str, value: str)``                         CheckResult (a collect's named
                                                             check, supplied by the service)
``RouteToQueue(queue: str, variables: Mapping[str, str],     none: set the variables on the
tier: str | None)``                                          channel, then the holding lane
``RequestCallback(queue: str, number: str)``                 none
``LeaveMessage(mailbox: str)``                               none
``TransferTo(number: str)``                                  none
``HangUp()``                                                 none
``Finished(outcome: str, path: tuple[str, ...],              none: the session is over
digits: tuple[str, ...])``
=========================================================== ================================

Results: ``PlayDone(digit: str | None)``, ``DigitsCollected(digits: str, timed_out: bool)``,
``CallerFound(name: str | None, tier: str | None, open_tickets: int)``, ``CallerUnknown()``,
``WaitFigures(position: int | None, seconds: float | None)``, ``CheckResult(passed: bool)``,
``TransportError(code: int, text: str)`` (511: dead channel), ``HungUp()``.

Outcomes: ``queued``, ``voicemail``, ``transferred``, ``callback`` (a hangup node after a
callback request), ``ended`` (a hangup node, or a ``return`` outside any call),
``retries_exhausted`` (a menu or collect without ``after_retries``), ``hung_up`` (the
caller), ``channel_gone`` (AGI 511), ``agi_error`` (another transport error), ``stopped``
(the backend shut down mid-flow: :meth:`IvrSession.on_stop`), ``flow_loop``
(a safety stop: 1,000 nodes without input; the loader rejects such flows).

The path is the nodes entered, as ``flow.node``; the digits are each input keyed (a menu
key, a collected number; a ``private`` collect's digits as ``*``). Both go on
``RouteToQueue`` as ``IVR_PATH`` (joined by ``>``) and ``IVR_DIGITS`` (joined by ``-``),
with the flow's own variables (``set``, ``collect``, ``lookup_caller``).

A digit keyed during a barge-in prompt stops it; the barge-in prompts after it are skipped
and the digit is the first input of the next menu (its choice) or collect.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from ivr.errors import UnexpectedResult
from ivr.flow import (
    BranchNode,
    CallbackNode,
    CallNode,
    CollectNode,
    Flow,
    FlowBook,
    GotoNode,
    HangupNode,
    LanguageNode,
    LookupCallerNode,
    MenuNode,
    Node,
    PlayNode,
    Prompts,
    QueueNode,
    ReturnNode,
    SetNode,
    TransferNode,
    VoicemailNode,
    luhn_valid,
)

__all__ = [
    "MAX_HOPS",
    "AskWait",
    "CallerFound",
    "CallerUnknown",
    "CheckResult",
    "CollectDigits",
    "DigitsCollected",
    "Finished",
    "HangUp",
    "HungUp",
    "IvrSession",
    "LeaveMessage",
    "LookupCaller",
    "Play",
    "PlayDone",
    "RequestCallback",
    "Result",
    "RouteToQueue",
    "RunCheck",
    "SayNumber",
    "SetVariable",
    "Step",
    "TransferTo",
    "TransportError",
    "WaitDigit",
    "WaitFigures",
]

#: Nodes entered without any input before the session stops (a loop the loader missed).
MAX_HOPS = 1000
#: The AGI result code of a dead channel.
DEAD_CHANNEL = 511


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlayDone:
    digit: str | None = None


@dataclass(frozen=True)
class DigitsCollected:
    digits: str
    timed_out: bool = False


@dataclass(frozen=True)
class CallerFound:
    name: str | None
    tier: str | None
    open_tickets: int = 0


@dataclass(frozen=True)
class CallerUnknown:
    pass


@dataclass(frozen=True)
class WaitFigures:
    position: int | None
    seconds: float | None


@dataclass(frozen=True)
class CheckResult:
    passed: bool


@dataclass(frozen=True)
class TransportError:
    code: int
    text: str = ""


@dataclass(frozen=True)
class HungUp:
    pass


Result = (
    PlayDone
    | DigitsCollected
    | CallerFound
    | CallerUnknown
    | WaitFigures
    | CheckResult
    | TransportError
    | HungUp
)


# -- steps -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Play:
    prompts: tuple[str, ...]
    barge_in: bool = False
    awaits: ClassVar[tuple[type, ...]] = (PlayDone,)


@dataclass(frozen=True)
class SayNumber:
    number: int
    awaits: ClassVar[tuple[type, ...]] = (PlayDone,)


@dataclass(frozen=True)
class CollectDigits:
    prompts: tuple[str, ...]
    min_digits: int
    max_digits: int
    timeout: float
    terminator: str = "#"
    awaits: ClassVar[tuple[type, ...]] = (DigitsCollected,)


@dataclass(frozen=True)
class WaitDigit:
    timeout: float
    awaits: ClassVar[tuple[type, ...]] = (DigitsCollected,)


@dataclass(frozen=True)
class SetVariable:
    name: str
    value: str
    awaits: ClassVar[tuple[type, ...]] = ()


@dataclass(frozen=True)
class LookupCaller:
    number: str
    awaits: ClassVar[tuple[type, ...]] = (CallerFound, CallerUnknown)


@dataclass(frozen=True)
class AskWait:
    queue: str
    awaits: ClassVar[tuple[type, ...]] = (WaitFigures,)


@dataclass(frozen=True)
class RunCheck:
    check: str
    value: str
    awaits: ClassVar[tuple[type, ...]] = (CheckResult,)


@dataclass(frozen=True)
class RouteToQueue:
    queue: str
    variables: Mapping[str, str]
    tier: str | None = None
    awaits: ClassVar[tuple[type, ...]] = ()


@dataclass(frozen=True)
class RequestCallback:
    queue: str
    number: str
    awaits: ClassVar[tuple[type, ...]] = ()


@dataclass(frozen=True)
class LeaveMessage:
    mailbox: str
    awaits: ClassVar[tuple[type, ...]] = ()


@dataclass(frozen=True)
class TransferTo:
    number: str
    awaits: ClassVar[tuple[type, ...]] = ()


@dataclass(frozen=True)
class HangUp:
    awaits: ClassVar[tuple[type, ...]] = ()


@dataclass(frozen=True)
class Finished:
    outcome: str
    path: tuple[str, ...] = ()
    digits: tuple[str, ...] = ()
    awaits: ClassVar[tuple[type, ...]] = ()


Step = (
    Play
    | SayNumber
    | CollectDigits
    | WaitDigit
    | SetVariable
    | LookupCaller
    | AskWait
    | RunCheck
    | RouteToQueue
    | RequestCallback
    | LeaveMessage
    | TransferTo
    | HangUp
    | Finished
)

#: Where to go next: a flow and one of its nodes; None: the session waits or is over.
_Jump = tuple[Flow, str] | None
_Then = Callable[[Result, list[Step]], _Jump]


@dataclass
class _Frame:
    """A sub-flow call in progress: where its ``return`` goes back to."""

    flow: Flow
    next: str


@dataclass
class _Waiting:
    step: Step
    then: _Then


@dataclass
class IvrSession:
    """One call's walk through a flow. Create it with the call's facts, then :meth:`start`.

    ``language``: the caller's (e.g. the channel's); one the flow does not have falls back
    to its base (``fr_CA`` -> ``fr``), else to the flow's first language. ``tier``: the
    caller's tier when already known (the ACD's look-up); ``lookup_caller`` replaces it.
    """

    book: FlowBook
    flow_name: str
    caller: str | None = None
    channel: str = ""
    call_id: str = ""
    language: str | None = None
    tier: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    started_at: float | None = None
    ended_at: float | None = None
    outcome: str | None = None
    _path: list[str] = field(default_factory=list)
    _digits: list[str] = field(default_factory=list)
    _stack: list[_Frame] = field(default_factory=list)
    _waiting: _Waiting | None = None
    _carry: str | None = None
    _callback: bool = False
    _now: float = 0.0

    def __post_init__(self) -> None:
        flow = self.book.flow(self.flow_name)
        self._entry = flow
        wanted = self.language or ""
        if wanted not in flow.languages:
            base = wanted.split("_")[0].split("-")[0]
            self.language = base if base in flow.languages else flow.languages[0]

    # -- what the transport reads --

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self._path)

    @property
    def digits(self) -> tuple[str, ...]:
        return tuple(self._digits)

    @property
    def waiting_for(self) -> Step | None:
        """The step whose result the session waits on (None before start and once over)."""
        return self._waiting.step if self._waiting else None

    # -- what the transport feeds --

    def start(self, at: float) -> list[Step]:
        """Enter the flow's first node."""
        if self.started_at is not None:
            raise UnexpectedResult("the session has started already")
        self.started_at = self._now = at
        return self._run(self._entry, self._entry.start, [])

    def on_result(self, result: Result, at: float) -> list[Step]:
        """The result of the step waited on (or a hang-up, or a transport error)."""
        if self.finished:
            return []
        self._now = at
        if isinstance(result, HungUp):
            return self._finish("hung_up", [])
        if isinstance(result, TransportError):
            if result.code == DEAD_CHANNEL:
                return self._finish("channel_gone", [])
            return self._finish("agi_error", [HangUp()])
        waiting = self._waiting
        if waiting is None:
            raise UnexpectedResult(f"{result!r} arrived before the session started")
        if not isinstance(result, waiting.step.awaits):
            raise UnexpectedResult(f"{result!r} does not answer {waiting.step!r}")
        self._waiting = None
        out: list[Step] = []
        return self._proceed(waiting.then(result, out), out)

    def on_timeout(self, at: float) -> list[Step]:
        """The transport's timer ran out on the step waited on: as if nothing came."""
        waiting = self._waiting
        if self.finished or waiting is None:
            return []
        empty: dict[type, Result] = {
            PlayDone: PlayDone(None),
            DigitsCollected: DigitsCollected("", timed_out=True),
            CallerFound: CallerUnknown(),
            WaitFigures: WaitFigures(None, None),
            CheckResult: CheckResult(False),
        }
        return self.on_result(empty[waiting.step.awaits[0]], at)

    def on_hangup(self, at: float) -> list[Step]:
        """The caller hung up: the session ends, outcome ``hung_up``."""
        return self.on_result(HungUp(), at)

    def on_stop(self, at: float) -> list[Step]:
        """This side stops (the backend shuts down): the session ends, outcome ``stopped``;
        the caller is still there, in the dialplan's hands."""
        if self.finished:
            return []
        self._now = at
        return self._finish("stopped", [])

    # -- the walk --

    def _run(self, flow: Flow, node_id: str, out: list[Step]) -> list[Step]:
        jump: _Jump = (flow, node_id)
        hops = 0
        while jump is not None:
            hops += 1
            if hops > MAX_HOPS:
                return self._finish("flow_loop", [*out, HangUp()])
            flow, node_id = jump
            self._path.append(f"{flow.name}.{node_id}")
            jump = self._enter(flow, flow.nodes[node_id], out)
        return out

    def _proceed(self, jump: _Jump, out: list[Step]) -> list[Step]:
        return out if jump is None else self._run(jump[0], jump[1], out)

    def _await(self, out: list[Step], step: Step, then: _Then) -> _Jump:
        out.append(step)
        self._waiting = _Waiting(step, then)
        return None

    def _finish(self, outcome: str, out: list[Step]) -> list[Step]:
        self.outcome = outcome
        self.ended_at = self._now
        self._waiting = None
        self._stack.clear()
        self._carry = None
        out.append(Finished(outcome, self.path, self.digits))
        return out

    def _end(self, outcome: str, out: list[Step], *steps: Step) -> _Jump:
        out.extend(steps)
        self._finish(outcome, out)
        return None

    def _prompts(self, prompts: Prompts) -> tuple[str, ...]:
        return prompts.for_language(self.language or "")

    def _enter(self, flow: Flow, node: Node, out: list[Step]) -> _Jump:
        match node:
            case PlayNode():
                return self._play(flow, node, out)
            case MenuNode():
                return self._menu(flow, node, out, 0)
            case CollectNode():
                return self._collect(flow, node, out, 0)
            case LookupCallerNode():
                return self._lookup(flow, node, out)
            case BranchNode():
                return self._branch(flow, node, out)
            case SetNode():
                self.variables[node.variable] = node.value
                out.append(SetVariable(node.variable, node.value))
                return flow, node.next
            case LanguageNode():
                self.language = node.language
                out.append(SetVariable("CHANNEL(language)", node.language))
                return flow, node.next
            case QueueNode():
                return self._queue(node, out)
            case CallbackNode():
                number = self.variables.get(node.number_variable or "") or self.caller
                if not number:
                    return flow, node.no_number
                self._callback = True
                out.append(RequestCallback(node.queue, number))
                return flow, node.next
            case VoicemailNode():
                return self._end("voicemail", out, LeaveMessage(node.mailbox))
            case TransferNode():
                return self._end("transferred", out, TransferTo(node.number))
            case HangupNode():
                return self._end("callback" if self._callback else "ended", out, HangUp())
            case GotoNode():
                if node.flow is not None:
                    other = self.book.flow(node.flow)
                    return other, other.start
                return flow, node.next or ""
            case CallNode():
                self._stack.append(_Frame(flow, node.next))
                callee = self.book.flow(node.flow)
                return callee, callee.start
            case ReturnNode():
                if not self._stack:
                    return self._end("ended", out, HangUp())
                frame = self._stack.pop()
                return frame.flow, frame.next
        raise AssertionError(f"unhandled node {node!r}")  # pragma: no cover

    def _play(self, flow: Flow, node: PlayNode, out: list[Step]) -> _Jump:
        if node.barge_in and self._carry is not None:
            return flow, node.next  # the caller answered ahead: skip to the input

        def played(result: Result, out: list[Step]) -> _Jump:
            assert isinstance(result, PlayDone)
            if node.barge_in and result.digit:
                self._carry = result.digit
            return flow, node.next

        return self._await(out, Play(self._prompts(node.prompts), node.barge_in), played)

    # -- menu --

    def _menu(self, flow: Flow, node: MenuNode, out: list[Step], attempt: int) -> _Jump:
        carried, self._carry = self._carry, None
        if carried is not None:
            return self._menu_choice(flow, node, out, attempt, carried)

        def waited(result: Result, out: list[Step]) -> _Jump:
            assert isinstance(result, DigitsCollected)
            if result.digits:
                return self._menu_choice(flow, node, out, attempt, result.digits[0])
            return self._menu_miss(flow, node, out, attempt, "timeout")

        def played(result: Result, out: list[Step]) -> _Jump:
            assert isinstance(result, PlayDone)
            if result.digit:
                return self._menu_choice(flow, node, out, attempt, result.digit)
            return self._await(out, WaitDigit(node.timeout), waited)

        return self._await(out, Play(self._prompts(node.prompts), barge_in=True), played)

    def _menu_choice(
        self, flow: Flow, node: MenuNode, out: list[Step], attempt: int, digit: str
    ) -> _Jump:
        self._digits.append(digit)
        target = node.choices.get(digit)
        if target is not None:
            return flow, target
        if node.on_invalid is not None:
            return flow, node.on_invalid
        return self._menu_miss(flow, node, out, attempt, "invalid")

    def _menu_miss(
        self, flow: Flow, node: MenuNode, out: list[Step], attempt: int, why: str
    ) -> _Jump:
        if attempt >= node.retries:
            if node.after_retries is not None:
                return flow, node.after_retries
            return self._end("retries_exhausted", out, HangUp())
        prompts = self._prompts(node.timeout_prompts if why == "timeout" else node.invalid_prompts)
        if not prompts:
            return self._menu(flow, node, out, attempt + 1)

        def played(result: Result, out: list[Step]) -> _Jump:
            assert isinstance(result, PlayDone)
            self._carry = result.digit or None
            return self._menu(flow, node, out, attempt + 1)

        return self._await(out, Play(prompts, barge_in=True), played)

    # -- collect --

    def _collect(self, flow: Flow, node: CollectNode, out: list[Step], attempt: int) -> _Jump:
        prefix, self._carry = self._carry or "", None
        if prefix == node.terminator:
            return self._collected(flow, node, out, attempt, "", timed_out=False)
        remaining = node.max_length - len(prefix)
        if remaining <= 0:
            return self._collected(flow, node, out, attempt, prefix, timed_out=False)

        def collected(result: Result, out: list[Step]) -> _Jump:
            assert isinstance(result, DigitsCollected)
            return self._collected(
                flow, node, out, attempt, prefix + result.digits, result.timed_out
            )

        step = CollectDigits(
            () if prefix else self._prompts(node.prompts),
            max(node.min_length - len(prefix), 0),
            remaining,
            node.timeout,
            node.terminator,
        )
        return self._await(out, step, collected)

    def _collected(
        self,
        flow: Flow,
        node: CollectNode,
        out: list[Step],
        attempt: int,
        keyed: str,
        timed_out: bool,
    ) -> _Jump:
        if node.terminator and node.terminator in keyed:
            keyed = keyed[: keyed.index(node.terminator)]
        if not keyed:
            return self._collect_miss(flow, node, out, attempt)
        self._digits.append("*" * len(keyed) if node.private else keyed)
        valid = (
            node.min_length <= len(keyed) <= node.max_length
            and (node.pattern is None or node.pattern.fullmatch(keyed) is not None)
            and (not node.luhn or luhn_valid(keyed))
        )
        if not valid:
            return self._collect_miss(flow, node, out, attempt)
        if node.check is None:
            self.variables[node.variable] = keyed
            return flow, node.next

        def checked(result: Result, out: list[Step]) -> _Jump:
            assert isinstance(result, CheckResult)
            if not result.passed:
                return self._collect_miss(flow, node, out, attempt)
            self.variables[node.variable] = keyed
            return flow, node.next

        return self._await(out, RunCheck(node.check, keyed), checked)

    def _collect_miss(self, flow: Flow, node: CollectNode, out: list[Step], attempt: int) -> _Jump:
        if attempt >= node.retries:
            if node.after_retries is not None:
                return flow, node.after_retries
            return self._end("retries_exhausted", out, HangUp())
        prompts = self._prompts(node.invalid_prompts)
        if not prompts:
            return self._collect(flow, node, out, attempt + 1)

        def played(result: Result, out: list[Step]) -> _Jump:
            assert isinstance(result, PlayDone)
            self._carry = result.digit or None
            return self._collect(flow, node, out, attempt + 1)

        return self._await(out, Play(prompts, barge_in=True), played)

    # -- the caller, branches, queues --

    def _lookup(self, flow: Flow, node: LookupCallerNode, out: list[Step]) -> _Jump:
        if not self.caller:
            return flow, node.on_unknown  # withheld: nobody to look up

        def found(result: Result, out: list[Step]) -> _Jump:
            if not isinstance(result, CallerFound):
                return flow, node.on_unknown
            values = {"name": result.name, "tier": result.tier, "open_tickets": result.open_tickets}
            for key, variable in node.store.items():
                value = values.get(key)
                if value is not None:
                    self.variables[variable] = str(value)
            if result.tier is not None:
                self.tier = result.tier
            return flow, node.next

        return self._await(out, LookupCaller(self.caller), found)

    def _branch(self, flow: Flow, node: BranchNode, out: list[Step]) -> _Jump:
        default = node.default or ""
        match node.on:
            case "tier":
                return flow, node.cases.get(self.tier or "", default)
            case "variable":
                return flow, node.cases.get(self.variables.get(node.variable or "", ""), default)
            case "hours":
                is_open = node.hours is None or node.hours.is_open(self._now)
                return flow, node.cases["open" if is_open else "closed"]

        def figures(result: Result, out: list[Step]) -> _Jump:
            assert isinstance(result, WaitFigures)
            over = result.seconds is not None and result.seconds > (node.seconds or 0)
            return flow, node.cases["over" if over else "within"]

        return self._await(out, AskWait(node.queue or ""), figures)

    def _queue(self, node: QueueNode, out: list[Step]) -> _Jump:
        if node.announce_position is None and node.announce_wait is None:
            return self._route(node, out)

        def figures(result: Result, out: list[Step]) -> _Jump:
            assert isinstance(result, WaitFigures)
            said: list[Step] = []
            if node.announce_position is not None and result.position is not None:
                said += [Play(self._prompts(node.announce_position)), SayNumber(result.position)]
            if node.announce_wait is not None and result.seconds is not None:
                minutes = max(1, math.ceil(result.seconds / 60))
                said += [Play(self._prompts(node.announce_wait)), SayNumber(minutes)]
            return self._announce(node, said, out)

        return self._await(out, AskWait(node.queue), figures)

    def _announce(self, node: QueueNode, said: list[Step], out: list[Step]) -> _Jump:
        if not said:
            return self._route(node, out)

        def done(result: Result, out: list[Step]) -> _Jump:
            return self._announce(node, said[1:], out)

        return self._await(out, said[0], done)

    def _route(self, node: QueueNode, out: list[Step]) -> _Jump:
        variables = {
            **self.variables,
            "IVR_PATH": ">".join(self._path),
            "IVR_DIGITS": "-".join(self._digits),
        }
        return self._end("queued", out, RouteToQueue(node.queue, variables, self.tier))
