"""The telephony core: Local channel pairs running the dialplan, bridges, app_queue,
app_dial, transfers, AsyncAGI/FastAGI and DTMF. Pure: time comes from the
:class:`Scheduler` (advanced by the caller), randomness from the ``random.Random``
passed in, and every AMI event goes to ``emit``.

Dialplan applications are generators: they ``yield Wait(...)`` to block (for a time, a
digit or an AGI command) and return ``None`` (next priority), a :class:`Jump` or
``HANGUP``. A channel is driven by resuming its generator from timers and wake-ups."""

from __future__ import annotations

import heapq
import inspect
import itertools
import random
import uuid
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .agi import FastAgiSession, agi_environment, parse_agi_url
from .dialplan import (
    Data,
    Dialplan,
    Step,
    can_match_more,
    expand,
    find_extension,
    lab_dialplan,
)
from .frames import CAUSE_TEXT, Headers, agi_quote, bridge_block, channel_block, timestamp
from .settings import Hint, Member, QueueSettings, Settings

HANGUP = object()
DOWN, RING, RINGING, UP = 0, 4, 5, 6
#: From a tone generator's start to the first voice frame through the Local pairs on its
#: way (recording 14: PlayTones at +0.0 s, LocalOptimizationBegin at +0.04 s).
MEDIA_LATENCY = 0.04
#: The lab's ``[globals]`` the simulator keeps per call instead (a member's ring and
#: talk time): a ``Dial()`` passes them on to the line it dials.
CALL_GLOBALS = ("AGENT_RING_SECS", "AGENT_TALK_SECS")

#: ``ExtensionStatus`` ``Status`` -> ``StatusText`` (Asterisk's ast_extension_state2str).
EXTENSION_STATUS_TEXT = {
    -1: "Unknown",
    0: "Idle",
    1: "InUse",
    2: "Busy",
    4: "Unavailable",
    8: "Ringing",
    9: "InUse&Ringing",
    16: "Hold",
    17: "InUse&Hold",
}


# ---------------------------------------------------------------------------- time


@dataclass(order=True)
class Timer:
    due: float
    seq: int
    fn: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """A heap of timers; ``advance(now)`` fires the due ones with ``now`` set to each
    timer's own due time, so event timestamps are exact whatever the driver's jitter."""

    def __init__(self, now: float) -> None:
        self.now = now
        self._heap: list[Timer] = []
        self._seq = itertools.count()

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        timer = Timer(self.now + max(0.0, delay), next(self._seq), fn)
        heapq.heappush(self._heap, timer)
        return timer

    def next_deadline(self) -> float | None:
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0].due if self._heap else None

    def advance(self, now: float) -> None:
        while (due := self.next_deadline()) is not None and due <= now:
            timer = heapq.heappop(self._heap)
            self.now = max(self.now, timer.due)
            timer.fn()
        self.now = max(self.now, now)


# ---------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class Jump:
    context: str | None
    exten: str | None
    priority: int | str


@dataclass(slots=True)
class Wait:
    """Block the channel's dialplan: for ``seconds`` (None = until woken), woken early by
    a digit (``wake_on='digit'``) or a queued AGI command (``wake_on='agi'``)."""

    seconds: float | None
    wake_on: str | None = None


@dataclass(eq=False)
class Channel:
    name: str
    uniqueid: str
    linkedid: str
    created: float
    context: str
    exten: str
    priority: int = 1
    state: int = DOWN
    cid_num: str = "<unknown>"
    cid_name: str = "<unknown>"
    conn_num: str = "<unknown>"
    conn_name: str = "<unknown>"
    variables: dict[str, str] = field(default_factory=dict)
    inherited: set[str] = field(default_factory=set)
    partner: Channel | None = None
    device: str = ""
    app: str = ""
    app_data: str = ""
    runner: Generator[Wait, Any, Any] | None = None
    waiting: Wait | None = None
    wait_timer: Timer | None = None
    digits: deque[str] = field(default_factory=deque)
    gosub_stack: list[tuple[str, str, int]] = field(default_factory=list)
    bridge: Bridge | None = None
    #: What to do when the bridge ends under this channel: resume the dialplan at the
    #: next priority (``continue``), at the priority it shows (``resume``: an AMI
    #: ``Bridge`` already moved it on), end the dialplan with a soft hang-up (``end``:
    #: ``Dial()`` without ``g``), or hang up (a queue's agent leg has no dialplan).
    after_bridge: str = "hangup"
    dial: Dial | None = None
    #: The leg this channel's ``Dial()`` is ringing.
    outgoing: Dial | None = None
    #: An ``Atxfer`` in progress with this channel as the transferer.
    transfer: Transfer | None = None
    queue_call: QueueCall | None = None
    moh: bool = False
    #: A ;1 half that marks its device (queue member interface) in use.
    holds_device: bool = False
    agi_commands: deque[tuple[str, str]] | None = None
    fastagi: FastAgiCall | None = None
    #: Bridge feature digits keyed so far (a prefix of ``blindxfer``).
    feature_digits: str = ""
    #: A blind transfer this channel started by DTMF: the number keyed so far.
    xfer_number: str | None = None
    xfer_timer: Timer | None = None
    gone: bool = False

    @property
    def half(self) -> int:
        return int(self.name[-1])


@dataclass(eq=False)
class Dial:
    """An outgoing leg being dialled: by Originate (``caller`` None) or by a queue."""

    leg: Channel  # the ;1 half
    dialstring: str
    caller: Channel | None = None
    started: float = 0.0
    timer: Timer | None = None
    on_answer: Callable[[], object] | None = None
    on_fail: Callable[[int], None] | None = None
    #: The dialled side signalled busy (``Busy()``); None: nobody to tell (an Originate).
    on_busy: Callable[[], None] | None = None


@dataclass(eq=False)
class Bridge:
    uniqueid: str
    channels: list[Channel] = field(default_factory=list)
    #: Called once, when the first channel leaves (app_queue's AgentComplete).
    on_break: Callable[[Channel], None] | None = None
    #: Made by the AMI ``Bridge`` action: a hangup inside it is not soft-requested.
    by_action: bool = False
    #: Ended by a transfer (app_queue then reports AgentComplete Reason=transfer).
    transferred: bool = False
    #: The parties allowed to transfer with the DTMF feature (Queue options ``t``/``T``).
    transferers: set[Channel] = field(default_factory=set)
    #: A Local pair was optimised out of the bridge: ``(old, new)`` (app_queue follows).
    on_swap: Callable[[Channel, Channel], None] | None = None


@dataclass(eq=False)
class Transfer:
    """An attended transfer: the transferer talks to ``target`` in the consult bridge
    while the transferee waits on hold in the original one."""

    original: Bridge
    consult: Bridge
    transferee: Channel
    target: Channel


@dataclass(eq=False)
class QueueMember:
    settings: Member
    name: str
    interface: str
    penalty: int
    membership: str = "static"
    paused: bool = False
    paused_reason: str = ""
    calls_taken: int = 0
    last_call: int = 0
    last_pause: int = 0
    login_time: int = 0
    in_call: bool = False


@dataclass(eq=False)
class QueueCall:
    caller: Channel
    queue: Queue
    joined: float
    original_position: int
    #: The Queue() options (``t``: the agent may transfer, ``T``: the caller may).
    options: str = ""
    rings: list[Dial] = field(default_factory=list)
    #: The caller's next turn check (app_queue polls; nothing is event-driven).
    turn_timer: Timer | None = None


@dataclass(eq=False)
class Queue:
    settings: QueueSettings
    members: list[QueueMember]
    calls: list[QueueCall] = field(default_factory=list)
    last_member: int = -1
    completed: int = 0
    abandoned: int = 0
    total_hold: float = 0.0
    total_talk: float = 0.0

    @property
    def name(self) -> str:
        return self.settings.name


@dataclass(eq=False)
class FastAgiCall:
    """A channel's FastAGI connection as the I/O layer sees it: it reports
    :meth:`connected`, :meth:`received`, :meth:`closed` or :meth:`failed`; the core
    writes through the callables given to :meth:`connected`."""

    pbx: Pbx
    channel: Channel
    host: str
    port: int
    environment: str
    state: str = "connecting"  # -> connected -> closed, or failed
    commands: deque[str] = field(default_factory=deque)
    session: FastAgiSession = field(default_factory=FastAgiSession)
    _write: Callable[[bytes], None] | None = None
    _close: Callable[[], None] | None = None

    def connected(self, write: Callable[[bytes], None], close: Callable[[], None]) -> None:
        self._write, self._close = write, close
        if self.state != "connecting" or self.channel.gone:
            close()
            return
        self.state = "connected"
        write(self.environment.encode())

    def received(self, data: bytes) -> None:
        if self.state == "connected":
            self.commands.extend(self.session.feed(data))
            self.pbx.wake(self.channel, "agi")

    def closed(self) -> None:
        """The server ended the script (or the connection dropped)."""
        if self.state == "connected":
            self.state = "closed"
            self.pbx.wake(self.channel, "agi")

    def failed(self) -> None:
        """The server could not be reached."""
        if self.state == "connecting":
            self.state = "failed"
            self.pbx.wake(self.channel, "agi")

    def send(self, result: str) -> None:
        if self.state == "connected" and self._write is not None:
            self._write(FastAgiSession.reply(result))

    def hang_up(self) -> None:
        """The channel went away: drop the connection."""
        if self.state == "connected" and self._close is not None:
            self._close()
        self.state = "closed"


class ChannelError(LookupError):
    """An action named a channel that does not exist."""


# ---------------------------------------------------------------------------- engine


class Pbx:
    """The simulated Asterisk: channels, dialplan, queues, bridges, AsyncAGI."""

    def __init__(
        self,
        settings: Settings,
        scheduler: Scheduler,
        rng: random.Random,
        emit: Callable[[Headers], None],
        dialplan: Dialplan | None = None,
    ) -> None:
        self.settings = settings
        self.clock = scheduler
        self.rng = rng
        self._emit = emit
        self.dialplan = dialplan if dialplan is not None else lab_dialplan(settings)
        self.channels: dict[str, Channel] = {}
        self.bridges: dict[str, Bridge] = {}
        self.started = scheduler.now
        self._unique_counter = itertools.count()
        self._local_counter = itertools.count()
        self.devices_in_use: dict[str, int] = {}
        #: Asterisk's device state cache as DeviceStateList shows it: app_queue's
        #: ``Queue:*`` pseudo-devices only (Local channel device states are never cached).
        self.device_states: dict[str, str] = {}
        #: Draws an agent's talk time in seconds; None = the lab's 600 s.
        self.handle_time: Callable[[], float] | None = None
        #: Opens a FastAGI connection for a call (the I/O layer's); None = unreachable.
        self.fastagi_connector: Callable[[FastAgiCall], None] | None = None
        #: AMI ``Bridge``; the traffic generator wraps it to hang its callers up later.
        self.bridge_action: Callable[[Channel, Channel], None] = self._bridge_action
        #: Channels sending audio (PlayTones); elsewhere the lab's channels are silent.
        self.media_sources: list[Channel] = []
        #: core_local's optimisation Id: a counter over the whole process.
        self._optimization_ids = itertools.count(1)
        login = int(scheduler.now)
        self.queues: dict[str, Queue] = {
            q.name: Queue(
                q,
                [
                    QueueMember(m, m.name, m.interface, m.penalty, login_time=login)
                    for m in q.members
                ],
            )
            for q in settings.queues
        }
        for queue in self.queues.values():
            # As after a (re)load: ``_avail`` says INUSE until a member's device changes.
            for member in queue.members:
                self.device_states[self._pause_device(queue, member)] = _paused_state(member)
            self.device_states[f"Queue:{queue.name}_avail"] = "INUSE"
        self._apps: dict[str, Callable[[Channel, str], Generator[Wait, Any, Any]]] = {
            "NoOp": self._app_noop,
            "Verbose": self._app_noop,
            "Set": self._app_set,
            "ExecIf": self._app_execif,
            "Gosub": self._app_gosub,
            "Return": self._app_return,
            "Goto": self._app_goto,
            "GotoIf": self._app_gotoif,
            "Answer": self._app_answer,
            "Ringing": self._app_ringing,
            "Wait": self._app_wait,
            "Hangup": self._app_hangup,
            "Queue": self._app_queue,
            "BackGround": self._app_background,
            "WaitExten": self._app_waitexten,
            "Playback": self._app_playback,
            "Read": self._app_read,
            "AGI": self._app_agi,
            "UserEvent": self._app_userevent,
            "MusicOnHold": self._app_moh,
            "SendDTMF": self._app_senddtmf,
            "Dial": self._app_dial,
            "Busy": self._app_busy,
            "PlayTones": self._app_playtones,
        }

    # ------------------------------------------------------------ events

    @property
    def now(self) -> float:
        return self.clock.now

    def emit(self, name: str, privilege: str, body: Headers) -> None:
        self._emit(
            [("Event", name), ("Privilege", privilege), ("Timestamp", timestamp(self.now)), *body]
        )

    def block(self, ch: Channel, prefix: str = "") -> Headers:
        return channel_block(ch, self.settings.channelvars, prefix)

    def emit_channel(
        self, name: str, privilege: str, ch: Channel, extra: Sequence[tuple[str, str]] = ()
    ) -> None:
        self.emit(name, privilege, [*self.block(ch), *extra])

    def emit_dial(self, name: str, leg: Dial, extra: Headers) -> None:
        src = self.block(leg.caller) if leg.caller is not None else []
        self.emit(name, "call,all", [*src, *self.block(leg.leg, "Dest"), *extra])

    # ------------------------------------------------------------ channels

    def find(self, name: str) -> Channel:
        ch = self.channels.get(name)
        if ch is None:
            raise ChannelError(name)
        return ch

    def _new_uniqueid(self) -> str:
        return f"{int(self.now)}.{next(self._unique_counter)}"

    def new_local_pair(
        self,
        exten: str,
        context: str,
        *,
        linkedid: str | None = None,
        ids: tuple[str | None, str | None] = (None, None),
    ) -> tuple[Channel, Channel]:
        """``Local/<exten>@<context>-XXXXXXXX;1`` and ``;2``, announced by Newchannel."""
        base = f"Local/{exten}@{context}-{next(self._local_counter):08x}"
        one_id = ids[0] or self._new_uniqueid()
        two_id = ids[1] or self._new_uniqueid()
        link = linkedid or one_id
        one = Channel(
            f"{base};1", one_id, link, self.now, context, exten, device=f"Local/{exten}@{context}"
        )
        two = Channel(
            f"{base};2", two_id, link, self.now, context, exten, state=RING, device=one.device
        )
        one.partner, two.partner = two, one
        for ch in (one, two):
            self.channels[ch.name] = ch
            self.emit_channel("Newchannel", "call,all", ch)
        return one, two

    def set_var(self, ch: Channel, name: str, value: str, *, event: bool = True) -> None:
        bare = name.lstrip("_")
        if name.startswith("_"):
            ch.inherited.add(bare)
        ch.variables[bare] = value
        if event:
            self.emit_channel("VarSet", "dialplan,all", ch, [("Variable", name), ("Value", value)])

    def inherit(self, src: Channel, dst: Channel) -> None:
        for name in sorted(src.inherited):
            self.set_var(dst, f"__{name}", src.variables[name])

    def set_callerid(self, ch: Channel, num: str, name: str | None = None) -> None:
        ch.cid_num = num
        if name is not None:
            ch.cid_name = name
        self.emit_channel(
            "NewCallerid",
            "call,all",
            ch,
            [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")],
        )

    def set_connected(self, ch: Channel, num: str, name: str) -> None:
        ch.conn_num, ch.conn_name = num, name
        self.emit_channel("NewConnectedLine", "call,all", ch)

    def set_state(self, ch: Channel, state: int) -> None:
        if ch.state != state:
            ch.state = state
            self.emit_channel("Newstate", "call,all", ch)

    def local_bridge(self, one: Channel, two: Channel) -> None:
        self.emit(
            "LocalBridge",
            "call,all",
            [
                *self.block(one, "LocalOne"),
                *self.block(two, "LocalTwo"),
                ("Context", two.context),
                ("Exten", two.exten),
                ("LocalOptimization", "Yes"),
            ],
        )

    def channel_vars(self, ch: Channel) -> dict[str, str]:
        """Variables visible to dialplan expressions, including the built-ins."""
        v = dict(ch.variables)
        v["EXTEN"] = ch.exten
        v["UNIQUEID"] = ch.uniqueid
        v["CALLERID(num)"] = ch.cid_num
        v["CALLERID(name)"] = ch.cid_name
        v["CALLERID(all)"] = f'"{ch.cid_name}" <{ch.cid_num}>'
        return v

    # ------------------------------------------------------------ devices

    def device_use(self, device: str, delta: int) -> None:
        """A channel pair of ``device`` starts (+1) or stops (-1) using it. When the
        device goes between idle and in use: the hints on it (``ExtensionStatus``), a
        (never cached) ``DeviceStateChange``, and app_queue's view of its members."""
        before = self.devices_in_use.get(device, 0)
        after = max(0, before + delta)
        self.devices_in_use[device] = after
        if (before == 0) == (after == 0):
            return
        for hint in self.settings.hints:
            if hint.device == device:
                self.extension_event(hint)
        state = "INUSE" if after else "NOT_INUSE"
        self.emit("DeviceStateChange", "call,all", [("Device", device), ("State", state)])
        for queue in self.queues.values():
            found = False
            for member in queue.members:
                if member.interface == device:
                    found = True
                    if not after:
                        self.member_done(member)
                    self.member_event("QueueMemberStatus", queue, member)
            if found:
                self.update_avail(queue)

    def extension_state(self, hint: Hint) -> int:
        """The hint's ``Status``. Asterisk's Local channel driver knows only NOT_INUSE and
        INUSE for its devices (a ringing agent leg counts as in use), so these hints
        are 0 Idle or 1 InUse, never 8 Ringing (recordings 13 and 14)."""
        return 1 if self.devices_in_use.get(hint.device) else 0

    def extension_fields(self, hint: Hint) -> Headers:
        status = self.extension_state(hint)
        return [
            ("Exten", hint.exten),
            ("Context", hint.context),
            ("Hint", hint.device),
            ("Status", str(status)),
            ("StatusText", EXTENSION_STATUS_TEXT[status]),
        ]

    def extension_event(self, hint: Hint) -> None:
        self.emit("ExtensionStatus", "call,all", self.extension_fields(hint))

    def publish_device_state(self, device: str, state: str) -> None:
        """A cached (``Queue:*``) device state: AMI hears of it only when it changes."""
        if self.device_states.get(device) != state:
            self.device_states[device] = state
            self.emit("DeviceStateChange", "call,all", [("Device", device), ("State", state)])

    def update_avail(self, queue: Queue) -> None:
        """``Queue:<q>_avail``: NOT_INUSE while some member could take a call."""
        avail = any(self._member_available(queue, m) for m in queue.members)
        self.publish_device_state(f"Queue:{queue.name}_avail", "NOT_INUSE" if avail else "INUSE")

    @staticmethod
    def _pause_device(queue: Queue, member: QueueMember) -> str:
        return f"Queue:{queue.name}_pause_{member.interface}"

    def member_status(self, member: QueueMember) -> int:
        return 2 if self.devices_in_use.get(member.interface, 0) else 1

    def member_fields(self, queue: Queue, m: QueueMember, *, listing: bool = False) -> Headers:
        name_keys = ("Name", "Location") if listing else ("MemberName", "Interface")
        out: Headers = [
            ("Queue", queue.name),
            (name_keys[0], m.name),
            (name_keys[1], m.interface),
            ("StateInterface", m.interface),
            ("Membership", m.membership),
            ("Penalty", str(m.penalty)),
            ("CallsTaken", str(m.calls_taken)),
            ("LastCall", str(m.last_call)),
            ("LastPause", str(m.last_pause)),
            ("LoginTime", str(m.login_time)),
            ("InCall", str(int(m.in_call))),
            ("Status", str(self.member_status(m))),
            ("Paused", str(int(m.paused))),
            ("PausedReason", m.paused_reason),
        ]
        if not listing:
            out.append(("Ringinuse", "0"))
        out.append(("Wrapuptime", "0"))
        return out

    def member_event(self, name: str, queue: Queue, member: QueueMember) -> None:
        self.emit(name, "agent,all", self.member_fields(queue, member))

    # ------------------------------------------------------------ dialplan runner

    def start_dialplan(
        self,
        ch: Channel,
        context: str,
        exten: str,
        priority: int = 1,
        shown: tuple[str, str] | None = None,
        *,
        announced: bool = False,
    ) -> None:
        """Run ``ch`` from ``context,exten,priority``. ``shown`` is the application the
        first Newexten reports: after an async goto Asterisk still shows the old one;
        ``announced``: that Newexten is already out (:meth:`async_goto`)."""
        self.stop_runner(ch)
        ch.runner = self._run(ch, context, exten, priority, shown, announced)
        self._resume(ch, None)

    def run_application(self, ch: Channel, app: str, data: str) -> None:
        """Originate's ``Application``/``Data``: run one app on the answered leg."""

        def single() -> Generator[Wait, Any, Any]:
            ch.app, ch.app_data = app, data
            yield from self._apps.get(app, self._app_noop)(ch, data)
            self.hangup(ch, 16, request=True)

        self.stop_runner(ch)
        ch.runner = single()
        self._resume(ch, None)

    def stop_runner(self, ch: Channel) -> None:
        if ch.wait_timer is not None:
            ch.wait_timer.cancel()
        ch.wait_timer = None
        ch.waiting = None
        runner, ch.runner = ch.runner, None
        if runner is not None and inspect.getgeneratorstate(runner) != inspect.GEN_RUNNING:
            runner.close()

    def _resume(self, ch: Channel, value: Any) -> None:
        runner = ch.runner
        if runner is None or ch.gone:
            return
        if ch.wait_timer is not None:
            ch.wait_timer.cancel()
        ch.wait_timer = None
        ch.waiting = None
        try:
            wait = runner.send(value)
        except StopIteration:
            if ch.runner is runner:
                ch.runner = None
            return
        if ch.runner is not runner:  # the app redirected or replaced this channel's runner
            return
        ch.waiting = wait
        if wait.seconds is not None:
            ch.wait_timer = self.clock.call_later(wait.seconds, lambda: self._resume(ch, None))

    def wake(self, ch: Channel, kind: str, value: Any = True) -> bool:
        if ch.waiting is not None and ch.waiting.wake_on == kind:
            self._resume(ch, value)
            return True
        return False

    def _run(
        self,
        ch: Channel,
        context: str,
        exten: str,
        priority: int,
        shown: tuple[str, str] | None,
        announced: bool,
    ) -> Generator[Wait, Any, Any]:
        while True:
            steps = find_extension(self.dialplan, context, exten)
            if steps is None or priority > len(steps):
                # autofallthrough=yes: running off the end hangs up
                self.hangup(ch, 16, request=True)
                return
            step = steps[priority - 1]
            ch.context, ch.exten, ch.priority = context, exten, priority
            data = expand(step.data, self.channel_vars(ch))
            ch.app, ch.app_data = step.app, data
            app_shown, data_shown = shown or (step.app, data)
            if not announced:
                self.newexten(ch, app_shown, data_shown)
            shown, announced = None, False
            result = yield from self._apps[step.app](ch, data)
            if result is HANGUP or ch.gone:
                return
            if isinstance(result, Jump):
                context = result.context or context
                exten = result.exten or exten
                priority = self._priority(
                    steps if result.exten is None else None, context, exten, result.priority
                )
            else:
                priority += 1

    def _priority(self, steps: list[Step] | None, context: str, exten: str, prio: int | str) -> int:
        if isinstance(prio, int):
            return prio
        if prio.isdigit():
            return int(prio)
        steps = steps or find_extension(self.dialplan, context, exten) or []
        return next((i + 1 for i, s in enumerate(steps) if s.label == prio), 1)

    def newexten(self, ch: Channel, app: str, data: str) -> None:
        self.emit_channel(
            "Newexten",
            "dialplan,all",
            ch,
            [("Extension", ch.exten), ("Application", app), ("AppData", data)],
        )

    @staticmethod
    def parse_goto(target: str) -> Jump:
        parts = target.split(",")
        if len(parts) == 3:
            return Jump(parts[0], parts[1], parts[2])
        if len(parts) == 2:
            return Jump(None, parts[0], parts[1])
        return Jump(None, None, parts[0])

    # ------------------------------------------------------------ applications

    def _app_noop(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        return None
        yield

    def _app_set(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        name, _, value = data.partition("=")
        if name == "CALLERID(num)":
            self.set_callerid(ch, value)
        elif name == "CALLERID(name)":
            self.set_callerid(ch, ch.cid_num, value)
        elif not name.startswith("TIMEOUT("):
            self.set_var(ch, name, value)
        return None
        yield

    def _app_execif(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        cond, _, call = data.partition("?")
        if cond.strip() not in ("", "0") and call.startswith("Set(") and call.endswith(")"):
            yield from self._app_set(ch, call[4:-1])

    def _app_gosub(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        jump = self.parse_goto(data)
        ch.gosub_stack.append((ch.context, ch.exten, ch.priority))
        context, exten = jump.context or ch.context, jump.exten or ch.exten
        # Asterisk announces the subroutine at priority 0 before running priority 1.
        ch.context, ch.exten, ch.priority = context, exten, 0
        self.newexten(ch, "Gosub", data)
        self.set_var(ch, "LOCAL(ARGC)", "0")
        return jump
        yield

    def _app_return(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        if not ch.gosub_stack:
            return None
        context, exten, priority = ch.gosub_stack.pop()
        ch.context, ch.exten, ch.priority = context, exten, priority
        self.newexten(ch, "Return", data)
        self.set_var(ch, "GOSUB_RETVAL", "")
        return Jump(context, exten, priority + 1)
        yield

    def _app_goto(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        return self.parse_goto(data)
        yield

    def _app_gotoif(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        cond, _, labels = data.partition("?")
        when_true, _, when_false = labels.partition(":")
        target = when_true if cond.strip() not in ("", "0") else when_false
        return self.parse_goto(target) if target else None
        yield

    def _app_answer(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        if ch.state != UP:
            self.answer(ch)
            yield Wait(0.5)  # Answer() on a Local channel waits for media (~0.5 s)

    def _app_ringing(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        one = ch.partner
        if one is not None and one.state != UP:
            self.set_state(one, RINGING)
            self.clock.call_later(0, lambda: self._ring_reported(one))
        return None
        yield

    def hold_device(self, one: Channel) -> None:
        if not one.holds_device:
            one.holds_device = True
            self.device_use(one.device, +1)

    def _ring_reported(self, one: Channel) -> None:
        if one.gone:
            return
        self.hold_device(one)
        if one.dial is not None:
            self.emit_dial("DialState", one.dial, [("DialStatus", "RINGING")])
            # A Local channel passes the ringing on to whoever dialled its ;1 half.
            dialler = one.dial.caller
            upstream = dialler.partner if dialler is not None and dialler.half == 2 else None
            if upstream is not None and upstream.dial is not None and upstream.state != UP:
                self.set_state(upstream, RINGING)
                self.hold_device(upstream)
                self.emit_dial("DialState", upstream.dial, [("DialStatus", "RINGING")])

    def _app_wait(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        yield Wait(_seconds(data))

    def _app_busy(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        """``Busy()``: the line signals busy to whoever dials it (their ``Dial`` ends with
        DIALSTATUS=BUSY and hangs this pair up, cause 17 User busy); then it waits to be
        hung up, as Asterisk's does."""
        one = ch.partner
        dial = one.dial if one is not None else None
        busy = dial.on_busy if dial is not None else None
        if one is None or busy is None:
            self.hangup(ch, 17, request=True)
            return HANGUP
        self.clock.call_later(0, lambda: busy() if one.dial is dial else None)
        yield Wait(None)

    def _app_hangup(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        self.hangup(ch, int(data) if data.isdigit() else 16, request=True)
        return HANGUP
        yield

    def _app_userevent(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        name, *pairs = data.split(",")
        extra: Headers = [("UserEvent", name)]
        for pair in pairs:
            key, _, value = pair.partition(":")
            extra.append((key.strip(), value.strip()))
        self.emit_channel("UserEvent", "user,all", ch, extra)
        return None
        yield

    def _app_moh(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        klass, _, secs = data.partition(",")
        self.moh_start(ch, klass or "default")
        yield Wait(_seconds(secs) if secs else None)
        self.moh_stop(ch)

    def moh_start(self, ch: Channel, klass: str = "default") -> None:
        ch.moh = True
        self.emit_channel("MusicOnHoldStart", "call,all", ch, [("Class", klass)])

    def moh_stop(self, ch: Channel) -> None:
        if ch.moh:
            ch.moh = False
            self.emit_channel("MusicOnHoldStop", "call,all", ch)

    def _app_playback(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        yield Wait(self.settings.prompt_seconds)

    def _app_playtones(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        """``PlayTones``: a tone generator on the channel until it hangs up; the
        dialplan goes on at once. Its voice frames are what make Asterisk optimise the
        Local pairs they pass through (:meth:`_media_flows`)."""
        if ch not in self.media_sources:
            self.media_sources.append(ch)
            self.clock.call_later(MEDIA_LATENCY, lambda: self._media_flows(ch))
        return None
        yield

    def _digit(self, ch: Channel, timeout: float | None) -> Generator[Wait, Any, str | None]:
        """The next DTMF digit received (buffered first), or None after ``timeout``."""
        if ch.digits:
            return ch.digits.popleft()
        got = yield Wait(timeout, "digit")
        if got and ch.digits:
            return ch.digits.popleft()
        return None

    def _menu_choice(self, ch: Channel, digit: str) -> Jump:
        exten = digit if find_extension(self.dialplan, ch.context, digit) else "i"
        # Asterisk announces the new extension at priority 0 with the interrupted app.
        ch.exten, ch.priority = exten, 0
        self.newexten(ch, ch.app, ch.app_data)
        return Jump(None, exten, 1)

    def _app_background(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        digit = yield from self._digit(ch, self.settings.prompt_seconds)
        return self._menu_choice(ch, digit) if digit else None

    def _app_waitexten(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        digit = yield from self._digit(ch, _seconds(data or "10"))
        if digit:
            return self._menu_choice(ch, digit)
        return Jump(None, "t", 1)

    def _collect(
        self, ch: Channel, prompt: float, max_digits: int, timeout: float
    ) -> Generator[Wait, Any, str | None]:
        """Digits up to ``#`` or ``max_digits``; None if nothing came before the timeout."""
        got = ""
        first = yield from self._digit(ch, prompt)
        digit = first
        while True:
            if digit is None:
                digit = yield from self._digit(ch, timeout)
                if digit is None:
                    return got or None
            if digit == "#":
                return got
            got += digit
            if len(got) >= max_digits:
                return got
            digit = None

    def _app_read(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        args = data.split(",") + [""] * 6
        var, max_digits, timeout = args[0], int(args[2] or 255), _seconds(args[5] or "6")
        got = yield from self._collect(ch, self.settings.prompt_seconds, max_digits, timeout)
        self.set_var(ch, var, got or "")
        self.set_var(ch, "READSTATUS", "OK" if got else "TIMEOUT")

    def _app_senddtmf(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        digits, *rest = data.split(",")
        between = int(rest[0]) / 1000 if rest and rest[0] else 0.25
        duration = int(rest[1]) if len(rest) > 1 and rest[1] else 250
        for i, digit in enumerate(digits):
            yield Wait(0.1 if i == 0 else between)
            far = ch.partner
            if far is None or far.gone:
                return None
            self.emit_channel(
                "DTMFBegin", "dtmf,all", far, [("Digit", digit), ("Direction", "Received")]
            )
            yield Wait(duration / 1000)
            if far.gone:
                return None
            self.emit_channel(
                "DTMFEnd",
                "dtmf,all",
                far,
                [("Digit", digit), ("DurationMs", str(duration)), ("Direction", "Received")],
            )
            if self._feature_digit(far, digit):
                continue
            far.digits.append(digit)
            self.wake(far, "digit")
        yield Wait(between)

    def _app_dial(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        """``Dial(Local/<exten>@<context>[,timeout[,options]])``: ring, bridge on answer.
        Unanswered: DIALSTATUS, then the next priority. Answered: when the other side
        leaves the bridge, this channel hangs up (soft hang-up request first), as Dial
        without option ``g`` does (recording 14: the transferred agent leg once 6004 hung
        up); with ``g`` the dialplan goes on at the next priority."""
        target, _, rest = data.partition(",")
        timeout, _, options = rest.partition(",")
        dial = self.dial_local(
            target,
            caller=ch,
            linkedid=ch.linkedid,
            first_app="AppDial",
            # app_dial: the callee's caller ID is the dialling channel's extension and
            # connected name, its connected line the dialler's caller ID (06, 14).
            cid=(ch.exten, ch.conn_name),
            conn=(ch.cid_num, ch.cid_name),
        )
        two = dial.leg.partner
        assert two is not None
        for name in CALL_GLOBALS:
            if name in ch.variables:
                two.variables[name] = ch.variables[name]
        ch.outgoing = dial
        self.emit_dial("DialBegin", dial, [("DialString", target.removeprefix("Local/"))])
        dial.on_answer = lambda: self.wake(ch, "dial", True)

        def unanswered(status: str, cause: int) -> None:
            if dial.timer is not None:
                dial.timer.cancel()
            ch.outgoing = None
            self.emit_dial("DialEnd", dial, [("DialStatus", status)])
            self.fail_dial(dial, cause)
            self.wake(ch, "dial", status)

        dial.on_busy = lambda: unanswered("BUSY", 17)
        if timeout:
            dial.timer = self.clock.call_later(
                _seconds(timeout), lambda: unanswered("NOANSWER", 0)
            )
        self.start_dialplan(two, two.context, two.exten, 1)
        answered = yield Wait(None, "dial")
        ch.outgoing = None
        if answered is not True:
            self.set_var(ch, "DIALSTATUS", answered or "NOANSWER")
            return None
        callee = dial.leg
        callee.exten = ""  # app_dial's outgoing channel has no extension of its own
        ch.after_bridge = "continue" if "g" in options else "end"
        callee.after_bridge = "hangup"
        answering = ch.state != UP
        if answering:
            self.set_state(ch, UP)
        bridge = self.bridge_channels([])
        self.newexten(callee, "AppDial", "(Outgoing Line)")
        self._enter_bridge(callee, bridge)
        self._enter_bridge(ch, bridge)
        if answering:
            # A Local ;2 half: its ;1 (and whoever dialled that) hears of the answer
            # after the bridge is up (recording 14's desk line).
            self.answer(ch)
        yield Wait(None)  # until the bridge ends

    # ------------------------------------------------------------ answer, dial

    def answer(self, ch: Channel) -> None:
        """``ch`` (a ;2 half) answers: both halves go Up and whoever dialled is told."""
        self.set_state(ch, UP)
        one = ch.partner
        if one is None or one.gone:
            return
        self.set_state(one, UP)
        dial, one.dial = one.dial, None
        if dial is not None:
            if dial.timer is not None:
                dial.timer.cancel()
            self.hold_device(one)
            self.emit_dial("DialEnd", dial, [("DialStatus", "ANSWER")])
            if dial.on_answer is not None:
                dial.on_answer()

    def dial_local(
        self,
        dialstring: str,
        *,
        caller: Channel | None,
        linkedid: str | None = None,
        ids: tuple[str | None, str | None] = (None, None),
        first_app: str,
        cid: tuple[str, str] | None = None,
        conn: tuple[str, str] | None = None,
        variables: dict[str, str] | None = None,
        exten_after: str | None = None,
    ) -> Dial:
        """Create the Local pair for ``exten@context`` and dial its ;1 half, with the
        event sequence Asterisk produces (Newchannel x2, Newexten, caller ID, LocalBridge)."""
        exten, _, context = dialstring.removeprefix("Local/").partition("@")
        one, two = self.new_local_pair(exten, context, linkedid=linkedid, ids=ids)
        one.app, one.app_data = first_app, "(Outgoing Line)"
        if cid is not None and caller is not None:
            # app_queue and app_dial set the caller ID before the first Newexten goes out
            # (app_dial the connected line too): recording 14 shows it there already.
            one.cid_num, one.cid_name = cid
            if first_app == "AppDial":
                one.conn_num, one.conn_name = conn or cid
        self.newexten(one, first_app, "(Outgoing Line)")
        for name, value in (variables or {}).items():
            self.set_var(one, name, value)
        if cid is not None:
            self.set_callerid(one, *cid)
            self.set_connected(one, *(conn or cid))
        if caller is not None:
            self.inherit(caller, one)
        if exten_after is not None:
            one.exten = exten_after
            self.newexten(one, first_app, "(Outgoing Line)")
        for name in one.variables:
            self.set_var(two, ("__" if name in one.inherited else "") + name, one.variables[name])
        if cid is not None:
            # A Local pair crosses its caller IDs: the ;2 half's caller ID is the ;1's
            # connected line and the other way round; the ;2's connected line is in
            # place before its NewCallerid.
            two.cid_num, two.cid_name = (one.conn_num, one.conn_name) if caller else cid
            two.conn_num, two.conn_name = (one.cid_num, one.cid_name) if caller else (conn or cid)
            if two.cid_num != "<unknown>" or two.cid_name != "<unknown>":  # a withheld caller
                self.set_callerid(two, two.cid_num)
            self.set_connected(two, two.conn_num, two.conn_name)
        self.local_bridge(one, two)
        dial = Dial(
            one,
            dialstring.removeprefix("Local/") if caller is None else dialstring,
            caller,
            self.now,
        )
        one.dial = dial
        return dial

    def fail_dial(self, dial: Dial, cause: int) -> None:
        """The dialled leg did not answer in time: tear its Local pair down."""
        one = dial.leg
        one.dial = None
        two = one.partner
        if dial.on_fail is not None:
            dial.on_fail(cause)
        if two is not None and not two.gone:
            self.emit_channel("HangupRequest", "call,all", two, [("Cause", str(cause))])
        self._finish(one, cause)
        if two is not None and not two.gone:
            self._teardown(two, cause)

    # ------------------------------------------------------------ hangup

    def hangup(self, ch: Channel, cause: int = 16, *, request: bool) -> None:
        """Hang ``ch`` up and its Local partner with it. ``request`` = the channel was
        asked (dialplan ``Hangup()``, AMI ``Hangup``): a SoftHangupRequest comes first."""
        if ch.gone:
            return
        if ch.dial is not None:
            # Still ringing: the dialler sees a cancel.
            self.emit_dial("DialEnd", ch.dial, [("DialStatus", "CANCEL")])
            if ch.dial.timer is not None:
                ch.dial.timer.cancel()
            ch.dial = None
        if ch.transfer is not None:
            self._complete_attended_transfer(ch, ch.transfer)
        if request and ch.bridge is None:
            self.emit_channel("SoftHangupRequest", "call,all", ch, [("Cause", "16")])
        far = ch.partner
        bridge = ch.bridge
        if bridge is not None:
            cause = 16  # a bridged channel ends on its own normal clearing
        if bridge is not None:
            self._leave_bridge(ch)
        if far is not None and not far.gone:
            self.emit_channel("HangupRequest", "call,all", far, [("Cause", str(cause))])
        self._finish(ch, cause)
        if bridge is not None:
            self._bridge_remainder(bridge)
        if far is not None and not far.gone:
            self._teardown(far, cause)

    def _teardown(self, ch: Channel, cause: int) -> None:
        """The Local partner of a channel that hung up: leave the app, then go. A channel
        running dialplan is asked to hang up (SoftHangupRequest); a bridged one without
        (an agent leg, a dialled line, a channel bridged by AMI) just goes (06, 14)."""
        self._leave_app(ch, abandon=True)
        bridge = ch.bridge
        if bridge is not None:
            self._leave_bridge(ch)
        if bridge is None or (ch.after_bridge in ("continue", "end") and not bridge.by_action):
            self.emit_channel("SoftHangupRequest", "call,all", ch, [("Cause", "16")])
        # Pulled out of a bridge, the channel ends on its own normal clearing.
        self._finish(ch, cause if bridge is None else 16)
        if bridge is not None:
            self._bridge_remainder(bridge)

    def _finish(self, ch: Channel, cause: int) -> None:
        self._leave_app(ch, abandon=True)
        self.stop_runner(ch)
        ch.gone = True
        if ch in self.media_sources:
            self.media_sources.remove(ch)
        if ch.xfer_timer is not None:
            ch.xfer_timer.cancel()
        self.emit_channel(
            "Hangup",
            "call,all",
            ch,
            [("Cause", str(cause)), ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown"))],
        )
        self.channels.pop(ch.name, None)
        one = ch if ch.half == 1 else ch.partner
        if (
            one is not None
            and one.holds_device
            and (one.partner is None or one.partner.gone)
            and one.gone
        ):
            one.holds_device = False
            self.device_use(one.device, -1)

    def _leave_app(self, ch: Channel, *, abandon: bool) -> None:
        """Stop what the channel is doing (queue wait, MOH, AsyncAGI) before it goes
        away or is redirected/bridged elsewhere."""
        if ch.queue_call is not None:
            self._queue_leave(ch.queue_call, abandon=abandon)
        self.moh_stop(ch)
        if ch.agi_commands is not None:
            ch.agi_commands = None
            self.emit_channel("AsyncAGIEnd", "agi,all", ch)
        fastagi, ch.fastagi = ch.fastagi, None
        if fastagi is not None:
            fastagi.hang_up()
        outgoing, ch.outgoing = ch.outgoing, None
        if outgoing is not None and outgoing.leg.dial is outgoing:
            if outgoing.timer is not None:
                outgoing.timer.cancel()
            self.emit_dial("DialEnd", outgoing, [("DialStatus", "CANCEL")])
            self.fail_dial(outgoing, 0)

    # ------------------------------------------------------------ bridges

    def bridge_channels(
        self, channels: list[Channel], on_break: Callable[[Channel], None] | None = None
    ) -> Bridge:
        bridge = Bridge(str(uuid.UUID(int=self.rng.getrandbits(128), version=4)), on_break=on_break)
        self.bridges[bridge.uniqueid] = bridge
        self.emit("BridgeCreate", "call,all", bridge_block(bridge))
        for ch in channels:
            self._enter_bridge(ch, bridge)
        return bridge

    def _enter_bridge(self, ch: Channel, bridge: Bridge, swap: Channel | None = None) -> None:
        """``swap``: the channel ``ch`` replaces (a Local pair optimised away)."""
        bridge.channels.append(ch)
        ch.bridge = bridge
        extra = [("SwapUniqueid", swap.uniqueid)] if swap is not None else []
        self.emit("BridgeEnter", "call,all", [*bridge_block(bridge), *self.block(ch), *extra])
        for source in self.media_sources:  # a new path for the frames of a tone
            self.clock.call_later(MEDIA_LATENCY, partial(self._media_flows, source))

    def _step_out(self, ch: Channel) -> None:
        """Leave the bridge without ending the call in it (no ``on_break``)."""
        bridge = ch.bridge
        assert bridge is not None
        on_break, bridge.on_break = bridge.on_break, None
        self._leave_bridge(ch)
        bridge.on_break = on_break

    def _move(self, ch: Channel, bridge: Bridge) -> None:
        """Move ``ch`` between bridges without ending the call it leaves."""
        self._step_out(ch)
        self._enter_bridge(ch, bridge)

    def _leave_bridge(self, ch: Channel) -> None:
        bridge = ch.bridge
        if bridge is None:
            return
        if bridge.on_break is not None:
            on_break, bridge.on_break = bridge.on_break, None
            on_break(ch)
        bridge.channels.remove(ch)
        ch.bridge = None
        self.emit("BridgeLeave", "call,all", [*bridge_block(bridge), *self.block(ch)])
        if not bridge.channels:
            self.bridges.pop(bridge.uniqueid, None)
            self.emit("BridgeDestroy", "call,all", bridge_block(bridge))

    def _bridge_remainder(self, bridge: Bridge) -> None:
        """A two-party bridge lost a side: the other side leaves too, then either carries
        on in its dialplan or hangs up (a queue's agent leg)."""
        for other in list(bridge.channels):
            self._leave_bridge(other)
            if other.after_bridge == "continue":
                self.start_dialplan(other, other.context, other.exten, other.priority + 1)
            elif other.after_bridge == "resume":
                self.start_dialplan(other, other.context, other.exten, other.priority)
            elif other.after_bridge == "end":
                self.hangup(other, 16, request=True)
            else:
                self.hangup(other, 16, request=False)

    def leave_for(self, ch: Channel) -> None:
        """Take ``ch`` out of whatever it does (app, bridge) so an action can move it."""
        self._leave_app(ch, abandon=True)
        if ch.bridge is not None:
            bridge = ch.bridge
            self._leave_bridge(ch)
            self._bridge_remainder(bridge)

    # ------------------------------------------------------------ Local channel optimisation

    def _media_flows(self, source: Channel) -> None:
        """Voice frames from ``source`` come out of its Local partner, go through that
        one's bridge to the other members, and so on through Local pairs. The first
        pair on their way whose halves are both bridged is optimised away: Asterisk
        tries at every voice frame written to a Local half, and only then (recording 14:
        without media the desk pair stayed up for the whole call)."""
        if source.gone:
            if source in self.media_sources:
                self.media_sources.remove(source)
            return
        seen = {source}
        readers = deque([source.partner])
        while readers:
            reader = readers.popleft()
            if reader is None or reader.gone or reader.bridge is None:
                continue
            for written in list(reader.bridge.channels):
                if written is reader or written in seen or written.partner is None:
                    continue
                seen.add(written)
                if self._optimize(written):
                    return
                readers.append(written.partner)

    def _optimize(self, half: Channel) -> bool:
        """core_local's move-swap: the ;1 half's bridge keeps the call; the peer of the
        ;2 half in its (two-party) bridge takes the ;1's place there, and the pair hangs
        up. Only a ;2 side in a bridge that carries no call of its own (app_dial's) is
        optimised here: the lab recorded no other case."""
        one = half if half.half == 1 else half.partner
        two = one.partner if one is not None else None
        if one is None or two is None or one.gone or two.gone:
            return False
        dst, src = one.bridge, two.bridge
        if dst is None or src is None or dst is src or len(src.channels) != 2:
            return False
        if src.on_break is not None or src.transferers:
            return False
        (other,) = [c for c in src.channels if c is not two]
        self._optimize_out(one, two, other)
        return True

    def _optimize_out(self, one: Channel, two: Channel, source: Channel) -> None:
        """As recording 14 shows it: LocalOptimizationBegin (``DestUniqueId`` is always
        the ;2's Uniqueid), the source leaves its bridge, the ;1 leaves the other, the
        source enters it with ``SwapUniqueid``, LocalOptimizationEnd (``Success: No``
        although the swap worked), then the ;2 leaves and both halves hang up."""
        src, dst = two.bridge, one.bridge
        assert src is not None and dst is not None
        oid = str(next(self._optimization_ids))
        pair = [*self.block(one, "LocalOne"), *self.block(two, "LocalTwo")]
        self.emit(
            "LocalOptimizationBegin",
            "call,all",
            [*pair, *self.block(source, "Source"), ("DestUniqueId", two.uniqueid), ("Id", oid)],
        )
        self._step_out(source)
        self._step_out(one)
        self._enter_bridge(source, dst, swap=one)
        if one in dst.transferers:
            dst.transferers.discard(one)
            dst.transferers.add(source)
        if dst.on_swap is not None:
            dst.on_swap(one, source)
        pair = [*self.block(one, "LocalOne"), *self.block(two, "LocalTwo")]
        self.emit("LocalOptimizationEnd", "call,all", [*pair, ("Success", "No"), ("Id", oid)])
        self._step_out(two)
        self.emit_channel("SoftHangupRequest", "call,all", two, [("Cause", "16")])
        self.emit_channel("HangupRequest", "call,all", one, [("Cause", "16")])
        self._finish(two, 16)
        self._finish(one, 16)

    # ------------------------------------------------------------ AMI-driven operations

    def redirect(self, ch: Channel, context: str, exten: str, priority: int) -> None:
        shown = (ch.app, ch.app_data)
        self.leave_for(ch)
        self.start_dialplan(ch, context, exten, priority, shown=shown)

    def _bridge_action(self, one: Channel, two: Channel) -> None:
        """AMI ``Bridge``: both channels stop their apps; when the bridge ends each
        resumes its dialplan at the next priority. Asterisk moves each channel into the
        bridge as a copy (same name and Uniqueid) set to go on at the next priority: in
        the bridge it shows that priority, no application, and its creation time is the
        moment of the bridge (recording 13: ``Duration`` restarts)."""
        for ch in (one, two):
            self.leave_for(ch)
            self.stop_runner(ch)
        oldest = min((one, two), key=lambda c: c.created)
        for ch in (one, two):
            ch.linkedid = oldest.linkedid
            ch.after_bridge = "resume"
            ch.priority += 1
            ch.app = ch.app_data = ""
            ch.created = self.now
        self.bridge_channels([one, two]).by_action = True
        self.set_connected(one, two.cid_num, two.cid_name)

    def async_goto(self, ch: Channel, context: str, exten: str) -> None:
        """Point ``ch`` at ``context,exten,1`` while it is still busy: Asterisk announces
        the new place with the application it is leaving."""
        ch.context, ch.exten, ch.priority = context, exten, 1
        self.newexten(ch, ch.app, ch.app_data)

    def transfer_peer(self, transferer: Channel) -> Channel | None:
        """Who a transfer by ``transferer`` moves: its peer in a two-party bridge."""
        bridge = transferer.bridge
        peers = [c for c in bridge.channels if c is not transferer] if bridge else []
        return peers[0] if len(peers) == 1 and transferer.transfer is None else None

    def blind_transfer(
        self, transferer: Channel, context: str, exten: str, *, external: bool = True
    ) -> None:
        """A blind transfer of a bridged channel: its peer runs ``context,exten``, the
        transferer hangs up. ``external``: by the AMI action (06); else by the
        ``blindxfer`` DTMF feature (14: the caller transferred the agent)."""
        bridge, transferee = transferer.bridge, self.transfer_peer(transferer)
        assert bridge is not None and transferee is not None
        self.emit_channel("Unhold", "call,all", transferer)
        self.emit(
            "BlindTransfer",
            "call,all",
            [
                ("Result", "Success"),
                *self.block(transferer, "Transferer"),
                *self.block(transferee, "Transferee"),
                *bridge_block(bridge),
                ("IsExternal", "Yes" if external else "No"),
                ("Context", context),
                ("Extension", exten),
            ],
        )
        bridge.transferred = True
        on_break, bridge.on_break = bridge.on_break, None
        self._leave_bridge(transferer)
        self.moh_stop(transferee)
        self.async_goto(transferee, context, exten)
        self._leave_bridge(transferee)
        if on_break is not None:
            on_break(transferer)
        # A transferer in the dialplan (the caller in Queue()) is asked to hang up.
        self.hangup(transferer, 16, request=transferer.after_bridge in ("continue", "end"))
        self.start_dialplan(transferee, context, exten, 1, announced=True)

    # ------------------------------------------------------------ DTMF features

    def _feature_digit(self, ch: Channel, digit: str) -> bool:
        """A digit ``ch`` received in a bridge: features.conf's ``blindxfer`` for a party
        allowed to transfer, then the number. True if the feature took the digit."""
        if ch.xfer_number is not None:
            ch.xfer_number += digit
            self._xfer_keyed(ch)
            return True
        bridge = ch.bridge
        if bridge is None or ch not in bridge.transferers:
            return False
        code = self.settings.blindxfer_code
        keyed = ch.feature_digits + digit
        if keyed == code:
            ch.feature_digits = ""
            self._start_blind_xfer(ch)
            return True
        if code.startswith(keyed):
            ch.feature_digits = keyed
            return True
        ch.feature_digits = ""
        return False

    def _start_blind_xfer(self, ch: Channel) -> None:
        """The transferer is on hold (its peer hears music) while it keys the number."""
        peer = self.transfer_peer(ch)
        if peer is None:
            return
        self.emit_channel("Hold", "call,all", ch)
        self.moh_start(peer)
        ch.xfer_number = ""
        self._xfer_wait(ch)

    def _xfer_context(self, ch: Channel) -> str:
        return ch.variables.get("TRANSFER_CONTEXT") or ch.context

    def _xfer_wait(self, ch: Channel) -> None:
        if ch.xfer_timer is not None:
            ch.xfer_timer.cancel()
        ch.xfer_timer = self.clock.call_later(
            self.settings.transfer_digit_timeout, lambda: self._xfer_done(ch)
        )

    def _xfer_keyed(self, ch: Channel) -> None:
        """Done as soon as the number matches an extension and no longer one could."""
        number, context = ch.xfer_number or "", self._xfer_context(ch)
        extens = self.dialplan.get(context, {})
        if any(can_match_more(p, number) for p in extens):
            self._xfer_wait(ch)
        else:
            self._xfer_done(ch)

    def _xfer_done(self, ch: Channel) -> None:
        if ch.xfer_timer is not None:
            ch.xfer_timer.cancel()
        ch.xfer_timer = None
        number, ch.xfer_number = ch.xfer_number, None
        if ch.gone or number is None:
            return
        context = self._xfer_context(ch)
        peer = self.transfer_peer(ch)
        if peer is not None and number and find_extension(self.dialplan, context, number):
            self.blind_transfer(ch, context, number, external=False)
            return
        # No such extension: back to the call.
        self.emit_channel("Unhold", "call,all", ch)
        if peer is not None:
            self.moh_stop(peer)

    def attended_transfer(self, transferer: Channel, context: str, exten: str) -> None:
        """AMI ``Atxfer``: Asterisk keys the ``atxfer`` feature code and the digits into
        the transferer (DTMFEnd only, no duration), holds the transferee and dials
        ``exten@context`` into a consult bridge; hanging up the transferer completes it."""
        bridge, transferee = transferer.bridge, self.transfer_peer(transferer)
        assert bridge is not None and transferee is not None
        feature, digits = self.settings.atxfer_code, exten

        def key(digit: str) -> None:
            if not transferer.gone:
                self.emit_channel(
                    "DTMFEnd",
                    "dtmf,all",
                    transferer,
                    [("Digit", digit), ("DurationMs", "0"), ("Direction", "Received")],
                )

        def hold() -> None:
            if transferer.gone or transferer.bridge is not bridge:
                return
            self.emit_channel("Hold", "call,all", transferer)
            self.moh_start(transferee)

        # Feature code digits ~160 ms apart; the hold, then the number 60 ms apart.
        for i, digit in enumerate(feature):
            self.clock.call_later(0.16 * i, partial(key, digit))
        hold_at = 0.16 * len(feature) - 0.06
        self.clock.call_later(hold_at, hold)
        for i, digit in enumerate(digits):
            self.clock.call_later(hold_at + 0.06 * (i + 1), partial(key, digit))
        self.clock.call_later(
            hold_at + 0.06 * len(digits),
            lambda: self._consult(transferer, bridge, transferee, context, exten),
        )

    def _consult(
        self, transferer: Channel, original: Bridge, transferee: Channel, context: str, exten: str
    ) -> None:
        if transferer.gone or transferer.bridge is not original:
            return
        one, two = self.new_local_pair(exten, context, linkedid=transferer.linkedid)
        self.set_connected(one, transferee.cid_num, transferee.cid_name)
        consult = self.bridge_channels([])
        self.set_callerid(two, transferer.cid_num, transferer.cid_name)
        for ch in (one, two):
            for name in sorted(transferer.inherited):
                self.set_var(ch, f"__{name}", transferer.variables[name], event=False)
        self.local_bridge(one, two)
        one.dial = Dial(one, f"{exten}@{context}", None, self.now)
        two.after_bridge = "continue"
        self.start_dialplan(two, context, exten, 1)
        self._enter_bridge(one, consult)
        self._move(transferer, consult)
        transferer.transfer = Transfer(original, consult, transferee, one)

    def _complete_attended_transfer(self, transferer: Channel, xfer: Transfer) -> None:
        """The transferer hung up: the consult bridge merges into the original one."""
        transferer.transfer = None
        original, consult, target = xfer.original, xfer.consult, xfer.target
        if target.gone or target.bridge is not consult or xfer.transferee.bridge is not original:
            return
        self.emit(
            "BridgeMerge",
            "call,all",
            [*bridge_block(original, "To"), *bridge_block(consult, "From")],
        )
        self._move(target, original)
        self.moh_stop(xfer.transferee)
        self.emit(
            "AttendedTransfer",
            "call,all",
            [
                ("Result", "Success"),
                *self.block(transferer, "OrigTransferer"),
                *bridge_block(original, "Orig"),
                *self.block(transferer, "SecondTransferer"),
                *bridge_block(consult, "Second"),
                *self.block(xfer.transferee, "Transferee"),
                *self.block(target, "TransferTarget"),
                ("IsExternal", "No"),
                ("DestType", "Bridge"),
                ("DestBridgeUniqueid", original.uniqueid),
            ],
        )
        original.transferred = True
        on_break, original.on_break = original.on_break, None
        if on_break is not None:
            on_break(transferer)

    def agi_command(self, ch: Channel, command: str, command_id: str) -> bool:
        if ch.agi_commands is None:
            return False
        ch.agi_commands.append((command, command_id))
        self.wake(ch, "agi")
        return True

    # ------------------------------------------------------------ AsyncAGI

    def _app_agi(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        if data.startswith("agi://"):
            return (yield from self._fast_agi(ch, data))
        request, *args = data.split(",")
        if request != "agi:async":
            self.set_var(ch, "AGISTATUS", "FAILURE")  # only async and FastAGI exist here
            return None
        ch.agi_commands = deque()
        env = agi_environment(ch, "async", args=args)
        self.emit_channel("AsyncAGIStart", "agi,all", ch, [("Env", agi_quote(env))])
        while True:
            if not ch.agi_commands:
                yield Wait(None, "agi")
                continue
            yield Wait(0)  # the command runs on the channel's thread, after the response
            if ch.agi_commands is None or not ch.agi_commands:
                continue
            command, command_id = ch.agi_commands.popleft()
            result, hang = yield from self._agi_exec(ch, command)
            if ch.gone:
                return HANGUP
            self.emit_channel(
                "AsyncAGIExec",
                "agi,all",
                ch,
                [("Result", agi_quote(result + "\n")), ("CommandId", command_id)],
            )
            if hang:
                ch.agi_commands = None
                self.emit_channel("AsyncAGIEnd", "agi,all", ch)
                self.hangup(ch, 16, request=True)
                return HANGUP

    def _fast_agi(self, ch: Channel, url: str) -> Generator[Wait, Any, Any]:
        """FastAGI: connect to the script's server (through ``fastagi_connector``, the
        I/O layer's), send the environment, run its commands until it hangs up.
        AGISTATUS=FAILURE if it cannot be reached; the dialplan carries on either way."""
        host, port, script = parse_agi_url(url)
        if self.fastagi_connector is None:
            self.set_var(ch, "AGISTATUS", "FAILURE")
            return None
        call = FastAgiCall(self, ch, host, port, agi_environment(ch, url, script=script))
        ch.fastagi = call
        self.fastagi_connector(call)
        while call.state in ("connecting", "connected"):
            if not call.commands:
                yield Wait(None, "agi")
                continue
            result, hang = yield from self._agi_exec(ch, call.commands.popleft())
            if ch.gone:
                return HANGUP
            call.send(result)
            if hang:
                self.hangup(ch, 16, request=True)
                return HANGUP
        ch.fastagi = None
        self.set_var(ch, "AGISTATUS", "SUCCESS" if call.state == "closed" else "FAILURE")
        return None

    def _agi_exec(self, ch: Channel, command: str) -> Generator[Wait, Any, tuple[str, bool]]:
        """One AGI command between AGIExecStart/AGIExecEnd (with an internal CommandId)."""
        internal = str(self.rng.randrange(1, 2**31))
        self.emit_channel(
            "AGIExecStart", "agi,all", ch, [("CommandId", internal), ("Command", command)]
        )
        result, hang = yield from self._agi_run(ch, command)
        if not ch.gone:
            self.emit_channel(
                "AGIExecEnd",
                "agi,all",
                ch,
                [
                    ("CommandId", internal),
                    ("Command", command),
                    ("ResultCode", result[:3]),
                    ("Result", "Success"),
                ],
            )
        return result, hang

    def _agi_run(self, ch: Channel, command: str) -> Generator[Wait, Any, tuple[str, bool]]:
        words = _agi_words(command)
        verb = " ".join(words[:3]).upper()
        upper = [w.upper() for w in words]
        if upper[:1] == ["ANSWER"]:
            if ch.state != UP:
                self.answer(ch)
            return "200 result=0", False
        if upper[:1] == ["HANGUP"]:
            return "200 result=1", True
        if upper[:2] == ["GET", "VARIABLE"] and len(words) > 2:
            value = self.channel_vars(ch).get(words[2])
            return ("200 result=0" if value is None else f"200 result=1 ({value})"), False
        if verb == "GET FULL VARIABLE" and len(words) > 3:
            return f"200 result=1 ({expand(words[3], self.channel_vars(ch))})", False
        if upper[:2] == ["SET", "VARIABLE"] and len(words) > 3:
            self.set_var(ch, words[2], words[3])
            return "200 result=1", False
        if upper[:2] == ["STREAM", "FILE"] and len(words) > 2:
            escape = words[3] if len(words) > 3 else ""
            length = self.settings.prompt_lengths.get(words[2], self.settings.prompt_seconds)
            digit = yield from self._digit(ch, length) if escape else _nothing(length)
            if digit and digit in escape:
                return f"200 result={ord(digit)} endpos=6000", False
            return f"200 result=0 endpos={round(length * 8000)}", False  # 8 kHz samples
        if upper[:2] == ["SAY", "NUMBER"] and len(words) > 2 and words[2].lstrip("-").isdigit():
            # One prompt's length per number said; a key among the escape digits stops it.
            escape = words[3] if len(words) > 3 else ""
            length = self.settings.prompt_seconds
            digit = yield from self._digit(ch, length) if escape else _nothing(length)
            return f"200 result={ord(digit) if digit and digit in escape else 0}", False
        if upper[:1] == ["EXEC"] and len(words) > 1:
            # Asterisk runs the application on the channel: -2 when it does not exist.
            app = self._apps.get(words[1])
            if app is None:
                return "200 result=-2", False
            outcome = yield from app(ch, words[2] if len(words) > 2 else "")
            return ("200 result=-1" if outcome is HANGUP or ch.gone else "200 result=0"), False
        if upper[:3] == ["WAIT", "FOR", "DIGIT"]:
            timeout: float = (
                int(words[3]) if len(words) > 3 and words[3].lstrip("-").isdigit() else -1
            )
            digit = yield from self._digit(ch, None if timeout < 0 else timeout / 1000)
            return f"200 result={ord(digit) if digit else 0}", False
        if upper[:2] == ["GET", "DATA"]:
            timeout = int(words[3]) / 1000 if len(words) > 3 and words[3].isdigit() else 6.0
            max_digits = int(words[4]) if len(words) > 4 and words[4].isdigit() else 1024
            got = yield from self._collect(ch, self.settings.prompt_seconds, max_digits, timeout)
            return (f"200 result={got}" if got else "200 result= (timeout)"), False
        if upper[:1] == ["VERBOSE"] or upper[:1] == ["NOOP"]:
            return "200 result=1", False
        if upper[:2] == ["CHANNEL", "STATUS"]:
            return f"200 result={ch.state}", False
        return "510 Invalid or unknown command", False

    # ------------------------------------------------------------ app_queue

    def _app_queue(self, ch: Channel, data: str) -> Generator[Wait, Any, Any]:
        name, _, rest = data.partition(",")
        queue = self.queues.get(name)
        if queue is None:
            self.set_var(ch, "QUEUESTATUS", "UNKNOWN")
            return None
        for var in ("ANSWEREDTIME", "DIALEDTIME", "QUEUEWAIT"):
            self.set_var(ch, var, "")
        call = QueueCall(ch, queue, self.now, len(queue.calls) + 1, rest.partition(",")[0])
        queue.calls.append(call)
        ch.queue_call = call
        # app_queue's ``Queue:<q>`` device: RINGING while callers wait.
        self.publish_device_state(f"Queue:{queue.name}", "RINGING")
        self.emit_channel(
            "QueueCallerJoin",
            "agent,all",
            ch,
            [
                ("Queue", queue.name),
                ("Position", str(len(queue.calls))),
                ("Count", str(len(queue.calls))),
            ],
        )
        self.moh_start(ch)
        self._queue_turn(call)
        # Parked until the bridge with an agent ends (the dialplan then carries on).
        yield Wait(None)
        self.set_var(ch, "QUEUESTATUS", "CONTINUE")

    def _in_wrapup(self, queue: Queue, member: QueueMember) -> bool:
        """app_queue compares whole seconds: ``time(NULL) - wrapuptime < lastcall``."""
        wrapup = queue.settings.wrapuptime
        return bool(member.last_call and wrapup and int(self.now) - wrapup < member.last_call)

    def _member_available(self, queue: Queue, member: QueueMember) -> bool:
        """``is_member_available``: device not in use, not paused, wrap-up over."""
        return (
            not member.paused
            and self.member_status(member) == 1
            and not self._in_wrapup(queue, member)
        )

    def _callable(self, queue: Queue, member: QueueMember) -> bool:
        """``can_ring_entry``: available and not being rung for another caller."""
        return (
            self._member_available(queue, member)
            and not member.in_call
            and not any(d.leg.device == member.interface for c in queue.calls for d in c.rings)
        )

    def _is_our_turn(self, call: QueueCall) -> bool:
        """autofill: a caller may ring when fewer callers ahead of it (not counting those
        already ringing someone) than members are available; ringall counts one."""
        queue = call.queue
        available = sum(self._member_available(queue, m) for m in queue.members)
        if queue.settings.strategy == "ringall":
            available = min(available, 1)
        ahead = queue.calls[: queue.calls.index(call)]
        return sum(not c.rings for c in ahead) < available

    def _queue_turn(self, call: QueueCall) -> None:
        """app_queue's caller loop: ring when it is this caller's turn, else check again
        a second later (RECHECK); after a failed attempt wait ``retry`` seconds."""
        call.turn_timer = None
        if call not in call.queue.calls:
            return
        if not self._is_our_turn(call):
            call.turn_timer = self.clock.call_later(1.0, lambda: self._queue_turn(call))
            return
        members = self._pick(call.queue)
        for member in members:
            self._ring(call, member)
        if not members:
            self._wait_retry(call)

    def _wait_retry(self, call: QueueCall) -> None:
        call.turn_timer = self.clock.call_later(
            call.queue.settings.retry, lambda: self._queue_turn(call)
        )

    def _pick(self, queue: Queue) -> list[QueueMember]:
        free = [m for m in queue.members if self._callable(queue, m)]
        if not free:
            return []
        best = min(m.penalty for m in free)
        free = [m for m in free if m.penalty == best]
        if queue.settings.strategy == "ringall":
            return free
        order = queue.members
        n = len(order)
        for step in range(1, n + 1):
            member = order[(queue.last_member + step) % n]
            if member in free:
                queue.last_member = order.index(member)
                return [member]
        return []

    def _ring(self, call: QueueCall, member: QueueMember) -> None:
        caller, queue = call.caller, call.queue
        dial = self.dial_local(
            member.interface,
            caller=caller,
            linkedid=caller.linkedid,
            first_app="AppQueue",
            # The member channel's caller ID is the queue caller's connected line; with
            # none (a withheld caller), the number is the caller's extension (10: "sales").
            cid=(
                caller.conn_num if caller.conn_num != "<unknown>" else caller.exten,
                caller.conn_name,
            ),
            conn=(caller.cid_num, caller.cid_name),
            exten_after=queue.name,
        )
        one = dial.leg
        two = one.partner
        assert two is not None
        two.variables["AGENT_RING_SECS"] = _fmt(member.settings.ring_seconds)
        if self.handle_time is not None:
            two.variables["AGENT_TALK_SECS"] = _fmt(round(self.handle_time(), 1))
        member_fields = [
            ("Queue", queue.name),
            ("Interface", member.interface),
            ("MemberName", member.name),
        ]
        self.emit(
            "AgentCalled",
            "agent,all",
            [*self.block(caller), *self.block(one, "Dest"), *member_fields],
        )
        self.emit_dial("DialBegin", dial, [("DialString", member.interface)])
        call.rings.append(dial)
        dial.on_answer = lambda: self._agent_answered(call, member, dial)
        dial.timer = self.clock.call_later(
            queue.settings.timeout, lambda: self._ring_timeout(call, member, dial)
        )
        self.start_dialplan(two, two.context, two.exten, 1)

    def _ring_timeout(self, call: QueueCall, member: QueueMember, dial: Dial) -> None:
        if dial not in call.rings:
            return
        caller, queue = call.caller, call.queue
        ring_ms = round((self.now - dial.started) * 1000)
        self.emit(
            "AgentRingNoAnswer",
            "agent,all",
            [
                *self.block(caller),
                *self.block(dial.leg, "Dest"),
                ("Queue", queue.name),
                ("Interface", member.interface),
                ("MemberName", member.name),
                ("RingTime", str(ring_ms)),
            ],
        )
        call.rings.remove(dial)
        self.emit_dial("DialEnd", dial, [("DialStatus", "NOANSWER")])
        self.emit_dial("DialEnd", dial, [("DialStatus", "CANCEL")])
        self.fail_dial(dial, 0)
        if not call.rings:
            self._wait_retry(call)

    def _cancel_rings(self, call: QueueCall, keep: Dial | None = None) -> None:
        for dial in list(call.rings):
            if dial is keep:
                continue
            call.rings.remove(dial)
            if dial.timer is not None:
                dial.timer.cancel()
            self.emit_dial("DialEnd", dial, [("DialStatus", "CANCEL")])
            self.emit_dial("DialEnd", dial, [("DialStatus", "CANCEL")])
            self.fail_dial(dial, 0)
        if call.turn_timer is not None:
            call.turn_timer.cancel()
            call.turn_timer = None

    def _queue_leave(self, call: QueueCall, *, abandon: bool) -> None:
        caller, queue = call.caller, call.queue
        caller.queue_call = None
        position = queue.calls.index(call) + 1
        # Out of the queue first: cancelling rings frees devices, which re-offers callers.
        queue.calls.remove(call)
        self.moh_stop(caller)
        self._cancel_rings(call)
        if not queue.calls:
            self.publish_device_state(f"Queue:{queue.name}", "NOT_INUSE")
        if abandon:
            queue.abandoned += 1
            self.emit_channel(
                "QueueCallerAbandon",
                "agent,all",
                caller,
                [
                    ("Queue", queue.name),
                    ("Position", str(position)),
                    ("OriginalPosition", str(call.original_position)),
                    ("HoldTime", str(_seconds_between(call.joined, self.now))),
                ],
            )
        self.emit_channel(
            "QueueCallerLeave",
            "agent,all",
            caller,
            [("Queue", queue.name), ("Position", str(position)), ("Count", str(len(queue.calls)))],
        )

    def _agent_answered(self, call: QueueCall, member: QueueMember, dial: Dial) -> None:
        caller, queue, agent = call.caller, call.queue, dial.leg
        call.rings.remove(dial)
        self._queue_leave(call, abandon=False)
        hold = _seconds_between(call.joined, self.now)
        ring = round(self.now - dial.started)
        fields = [
            ("Queue", queue.name),
            ("Interface", member.interface),
            ("MemberName", member.name),
        ]
        self.emit(
            "AgentConnect",
            "agent,all",
            [
                *self.block(caller),
                *self.block(agent, "Dest"),
                *fields,
                ("HoldTime", str(hold)),
                ("RingTime", str(ring)),
            ],
        )
        member.in_call = True
        connected = self.now

        def swapped(old: Channel, new: Channel) -> None:
            # app_queue follows a Local pair optimised away (AgentComplete's DestChannel).
            nonlocal agent
            if agent is old:
                agent = new

        def complete(leaving: Channel) -> None:
            talk = _seconds_between(connected, self.now)
            self.member_done(member)
            queue.completed += 1
            queue.total_hold += hold
            queue.total_talk += talk
            reason = "caller" if leaving is caller else "agent"
            if bridge.transferred:
                reason = "transfer"
            self.emit(
                "AgentComplete",
                "agent,all",
                [
                    *self.block(caller),
                    *self.block(agent, "Dest"),
                    *fields,
                    ("HoldTime", str(hold)),
                    ("TalkTime", str(talk)),
                    ("Reason", reason),
                ],
            )

        caller.after_bridge = "continue"
        agent.after_bridge = "hangup"
        self.stop_runner(caller)
        bridge = self.bridge_channels([agent, caller], on_break=complete)
        bridge.on_swap = swapped
        bridge.transferers = {
            ch for ch, flag in ((caller, "T"), (agent, "t")) if flag in call.options
        }

    def member_done(self, member: QueueMember) -> None:
        """app_queue's ``update_queue``, once per call: the member's call is over (calls
        taken, last call, wrap-up from now). Also when its device goes idle while app_queue
        thinks it is on a call: recording 14's optimised desk line, whose member shows
        ``InCall: 0`` and ``CallsTaken`` +1 while the agent is still talking."""
        if member.in_call:
            member.in_call = False
            member.calls_taken += 1
            member.last_call = int(self.now)

    # ------------------------------------------------------------ queue administration

    def queue_summary(self, queue: Queue) -> Headers:
        members = queue.members
        available = [
            m for m in members if not m.paused and self.member_status(m) == 1 and not m.in_call
        ]
        longest = max((int(self.now - c.joined) for c in queue.calls), default=0)
        done = queue.completed or 1
        return [
            ("Queue", queue.name),
            ("LoggedIn", str(len(members))),
            ("Available", str(len(available))),
            ("Callers", str(len(queue.calls))),
            ("HoldTime", str(round(queue.total_hold / done))),
            ("TalkTime", str(round(queue.total_talk / done))),
            ("LongestHoldTime", str(longest)),
        ]

    def set_paused(self, queue: Queue, member: QueueMember, paused: bool, reason: str) -> None:
        member.paused = paused
        member.paused_reason = reason if paused else ""
        member.last_pause = int(self.now)
        self.publish_device_state(self._pause_device(queue, member), _paused_state(member))
        self.member_event("QueueMemberPause", queue, member)
        self.update_avail(queue)

    def add_member(
        self, queue: Queue, interface: str, name: str, penalty: int, paused: bool, reason: str
    ) -> QueueMember:
        exten, _, context = interface.removeprefix("Local/").partition("@")
        settings = Member(
            exten,
            name or interface,
            penalty,
            answers=context != "agents-noanswer",
            dialplan_context="" if context in ("agents", "agents-noanswer") else context,
        )
        member = QueueMember(
            settings,
            name or interface,
            interface,
            penalty,
            membership="dynamic",
            paused=paused,
            paused_reason=reason if paused else "",
            last_pause=int(self.now),
            login_time=int(self.now),
        )
        queue.members.append(member)
        self.publish_device_state(self._pause_device(queue, member), _paused_state(member))
        self.member_event("QueueMemberAdded", queue, member)
        return member

    def remove_member(self, queue: Queue, member: QueueMember) -> None:
        queue.members.remove(member)
        self.member_event("QueueMemberRemoved", queue, member)


def _paused_state(member: QueueMember) -> str:
    """``Queue:<q>_pause_<interface>``: INUSE while paused."""
    return "INUSE" if member.paused else "NOT_INUSE"


def _seconds(text: str) -> float:
    try:
        return max(0.0, float(text))
    except ValueError:
        return 0.0


def _seconds_between(start: float, end: float) -> int:
    """app_queue's HoldTime/TalkTime: a difference of ``time(NULL)`` values, whole
    seconds each (recording 14: connected at 881.73, transferred at 888.09 -> 7)."""
    return int(end) - int(start)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _nothing(seconds: float) -> Generator[Wait, Any, None]:
    yield Wait(seconds)
    return None


def _agi_words(command: str) -> list[str]:
    """AGI command words; double quotes group (``STREAM FILE lab-welcome ""``)."""
    words: list[str] = []
    current, quoted, started = "", False, False
    for ch in command:
        if ch == '"':
            quoted, started = not quoted, True
        elif ch == " " and not quoted:
            if started:
                words.append(current)
            current, started = "", False
        else:
            current, started = current + ch, True
    if started:
        words.append(current)
    return words


__all__ = ["Channel", "ChannelError", "Data", "FastAgiCall", "Pbx", "Scheduler"]
