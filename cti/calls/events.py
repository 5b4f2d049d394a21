"""The call model's domain events: what happened to a call, in the contact center's words.

Consumers (the ACD, screen pops, tickets, statistics, pages) subscribe to these and never
read raw AMI. Every event names its call by ``call_id`` (the caller leg's Linkedid, stable
for the life of the call) and carries ``at``, the PBX's own time of the event in epoch
seconds (the AMI ``Timestamp`` header; the receive time when Asterisk sends none).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as the PBX presented it.

    ``number`` is normalised to E.164 where the rules allow (``+15551230012``), ``None``
    when withheld or unknown; ``raw_number`` is what the PBX sent.
    """

    number: str | None
    name: str | None
    raw_number: str | None = None


@dataclass(frozen=True, slots=True)
class Agent:
    """The agent side of an offer or a conversation.

    ``interface`` is the device or queue member (``Local/6001@agents``), ``name`` the member
    name when Asterisk gave one (``Agent Alice``), ``channel`` the agent leg's channel.
    """

    interface: str
    name: str | None = None
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class CallEvent:
    """Base of every domain event.

    ``restored`` marks an event rebuilt from the PBX's snapshot after a (re)connect rather
    than seen live: its fact may already be on record from before a restart, and its ``at``
    is estimated from the snapshot (e.g. a parked caller's park time).
    """

    kind: ClassVar[str] = "call"
    call_id: str
    at: float
    restored: bool = field(default=False, kw_only=True)

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (``kind`` first), for persistence and publication."""
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True, slots=True)
class CallArrived(CallEvent):
    """A new call: an inbound call reached the PBX (``dialled`` is the DID), or, with
    ``direction="outbound"``, the agent leg of a callback dials the customer.

    For an outbound callback call, ``call_id`` is the agent leg's Linkedid, ``caller`` and
    ``dialled`` are the customer and the number dialled, ``channel`` is the customer's leg,
    and ``callback`` is the ACD's callback request id (the agent leg's ``CTI_CALLBACK``
    variable). ``answered`` (the customer answered), ``failed`` (busy, no answer...) and
    ``ended`` follow as for any call.
    """

    kind: ClassVar[str] = "arrived"
    caller: Caller
    dialled: str | None
    channel: str
    direction: str = "inbound"
    callback: str | None = None
    #: The caller ID the call first had, when the dialplan changed it before the call was
    #: announced and the settings allow keeping it (``calls.keep_original_caller_id``).
    original_caller: Caller | None = None


@dataclass(frozen=True, slots=True)
class CallerChanged(CallEvent):
    """The PBX changed the caller's identity after the call was announced (a dialplan
    ``Set(CALLERID(...))``, e.g. a number masked for privacy): ``caller`` is the current
    one, which screens and history show from now on."""

    kind: ClassVar[str] = "caller_changed"
    caller: Caller


@dataclass(frozen=True, slots=True)
class IvrEntered(CallEvent):
    """The caller entered self-service (a menu, AsyncAGI or FastAGI)."""

    kind: ClassVar[str] = "ivr_entered"
    application: str
    context: str | None = None


@dataclass(frozen=True, slots=True)
class DigitsReceived(CallEvent):
    """The caller pressed a key (one DTMF digit received by the PBX)."""

    kind: ClassVar[str] = "digits"
    digits: str


@dataclass(frozen=True, slots=True)
class CallParked(CallEvent):
    """The caller waits in a holding context for the product's own ACD to pick an agent."""

    kind: ClassVar[str] = "parked"
    lane: str | None
    channel: str


@dataclass(frozen=True, slots=True)
class CallQueued(CallEvent):
    """The caller joined a PBX queue at ``position``."""

    kind: ClassVar[str] = "queued"
    queue: str
    position: int


@dataclass(frozen=True, slots=True)
class CallOffered(CallEvent):
    """An agent's phone rings for this call."""

    kind: ClassVar[str] = "offered"
    agent: Agent
    queue: str | None = None


@dataclass(frozen=True, slots=True)
class OfferMissed(CallEvent):
    """An offer ended without the agent answering; ``reason``: ``no answer`` (rang out or
    refused), ``caller hung up``, or ``answered elsewhere`` (another agent took it)."""

    kind: ClassVar[str] = "offer_missed"
    agent: Agent
    ring_time: float
    queue: str | None = None
    reason: str = "no answer"


@dataclass(frozen=True, slots=True)
class CallAnswered(CallEvent):
    """An agent answered; ``wait`` is the caller's time in queue or holding (seconds).

    For PBX queues ``wait`` is app_queue's own ``HoldTime`` (whole seconds), so figures
    match the PBX's queue statistics; for parked callers it is measured from the events.
    """

    kind: ClassVar[str] = "answered"
    agent: Agent
    wait: float
    queue: str | None = None
    #: The holding lane the caller was parked in, for callers the product's ACD bridged.
    lane: str | None = None


@dataclass(frozen=True, slots=True)
class CallHeld(CallEvent):
    kind: ClassVar[str] = "held"
    channel: str


@dataclass(frozen=True, slots=True)
class CallUnheld(CallEvent):
    kind: ClassVar[str] = "unheld"
    channel: str


@dataclass(frozen=True, slots=True)
class CallTransferred(CallEvent):
    """The call moved to another party: ``method`` is ``blind`` or ``attended``.

    ``transferer`` says who transferred (Asterisk's TransfererChannel): ``agent`` (then
    ``by`` is that agent) or ``caller`` (a caller may transfer too, e.g. with the ``#1``
    feature: the caller leaves, the agent goes on to the target). ``target`` is the
    extension (blind) or the channel now talking to the caller (attended).
    """

    kind: ClassVar[str] = "transferred"
    method: str
    by: Agent | None
    target: str | None
    transferer: str = "agent"


@dataclass(frozen=True, slots=True)
class AgentChanged(CallEvent):
    """The call is with another agent now: the target of a blind transfer answered."""

    kind: ClassVar[str] = "agent_changed"
    agent: Agent


@dataclass(frozen=True, slots=True)
class CallAbandoned(CallEvent):
    """The caller hung up while waiting, after ``wait`` seconds.

    In a PBX queue ``queue`` and ``position`` are app_queue's. A caller parked for the
    product's own ACD has its holding ``lane``, and the ACD's queue and last announced
    position when the ACD told the PBX (channel variables ``CTI_QUEUE``, ``CTI_POSITION``).
    """

    kind: ClassVar[str] = "abandoned"
    wait: float
    queue: str | None = None
    position: int | None = None
    lane: str | None = None


@dataclass(frozen=True, slots=True)
class CallFailed(CallEvent):
    """An outbound call did not reach the customer: ``status`` is the dial's outcome as
    Asterisk's ``DialEnd`` gives it (``BUSY``, ``NOANSWER``, ``CONGESTION``, ``CHANUNAVAIL``,
    ``CANCEL`` when the agent leg gave up first...); ``agent`` is the agent whose leg
    dialled. The call's ``ended`` follows when its channels are gone."""

    kind: ClassVar[str] = "failed"
    status: str
    agent: Agent | None = None


@dataclass(frozen=True, slots=True)
class CallEnded(CallEvent):
    """The call is over: the caller's channels are gone (agent legs may linger a moment).

    ``ended_by`` is ``caller``, ``agent`` or ``system``; ``duration`` from arrival to end,
    ``talk_time`` from answer to end, ``None`` if never answered or unknown: a call that
    ended while the AMI link was down or the backend was not running (``ended_by="system"``)
    keeps ``answered`` but has no measured talk time, and ``ended_after`` says since when
    it may have ended (the last time it was seen alive): it ended between then and ``at``.
    """

    kind: ClassVar[str] = "ended"
    cause: int | None
    cause_text: str | None
    ended_by: str
    duration: float
    talk_time: float | None = None
    answered: bool = False
    ended_after: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceStateChanged:
    """A device (a phone, or the interface a queue member is rung at) became ``idle``,
    ``busy`` (a call on it, whoever made it), ``ringing`` or ``unavailable`` (not
    registered).

    Read from the device's live channels and, where the dialplan has a hint for it, from
    ``ExtensionStatus``: Asterisk's DeviceStateList never lists Local-channel devices
    (recording 13), so it is not used. ``interface`` is the device as queues name it
    (``Local/6001@agents``, ``PJSIP/6001``).
    """

    kind: ClassVar[str] = "device_state"
    at: float
    interface: str
    state: str
    restored: bool = field(default=False, kw_only=True)

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (``kind`` first)."""
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True, slots=True)
class AgentHungUp(CallEvent):
    """The agent's leg hung up while the caller was still on the line (the agent ended the
    conversation; for a caller the product's ACD bridged, the caller must be released)."""

    kind: ClassVar[str] = "agent_hung_up"
    agent: Agent


@dataclass(frozen=True, slots=True)
class CallbackAsked(CallEvent):
    """The waiting caller asked to be called back at ``number`` (the holding dialplan's
    ``UserEvent CtiCallback``, sent on a key press)."""

    kind: ClassVar[str] = "callback_asked"
    number: str


@dataclass(frozen=True, slots=True)
class OriginateOutcome:
    """How an originated leg ended up (``OriginateResponse``): ``answered``, or not with
    ``reason`` (no answer, busy, congestion, failed, hung up). ``leg_id`` is its Uniqueid:
    the ``ChannelId`` the originator chose, which names the leg even when it failed."""

    kind: ClassVar[str] = "originate_outcome"
    at: float
    leg_id: str
    channel: str | None
    answered: bool
    reason: str
    restored: bool = field(default=False, kw_only=True)

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (``kind`` first)."""
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True, slots=True)
class CallbackLegEnded:
    """The agent leg of a callback request hung up without ever dialling the customer (no
    outbound call exists for it): the attempt did not happen."""

    kind: ClassVar[str] = "callback_leg_ended"
    at: float
    request_id: str
    channel: str
    cause_text: str | None
    restored: bool = field(default=False, kw_only=True)

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (``kind`` first)."""
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True, slots=True)
class AsyncAgiStarted:
    """A channel entered ``AGI(agi:async)``: the IVR may now drive it with AMI ``AGI``
    actions. ``env`` is the ``agi_*`` environment of AsyncAGIStart's ``Env`` header,
    URL-decoded (``{"agi_channel": ..., "agi_callerid": ...}``); ``call_id`` is the call the
    channel belongs to, None for a channel the model does not know."""

    kind: ClassVar[str] = "asyncagi_started"
    at: float
    channel: str
    call_id: str | None
    env: dict[str, str]
    restored: bool = field(default=False, kw_only=True)

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (``kind`` first)."""
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True, slots=True)
class AsyncAgiReplied:
    """The reply to an AsyncAGI command (AsyncAGIExec): ``command_id`` is the CommandID the
    ``AGI`` action gave, ``reply`` the reply text URL-decoded, without its final newline
    (``200 result=53``; a ``520-`` usage block keeps its inner newlines)."""

    kind: ClassVar[str] = "asyncagi_replied"
    at: float
    channel: str
    call_id: str | None
    command_id: str
    reply: str
    restored: bool = field(default=False, kw_only=True)

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (``kind`` first)."""
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True, slots=True)
class AsyncAgiEnded:
    """The channel left AsyncAGI (AsyncAGIEnd): redirected elsewhere, or hung up."""

    kind: ClassVar[str] = "asyncagi_ended"
    at: float
    channel: str
    call_id: str | None
    restored: bool = field(default=False, kw_only=True)

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (``kind`` first)."""
        return {"kind": self.kind, **asdict(self)}


#: The AsyncAGI conversation of a channel, for the IVR that drives it: transport, not history
#: (the call's IVR facts are ``ivr_entered``, ``digits`` and what the IVR records itself).
AsyncAgiEvent = AsyncAgiStarted | AsyncAgiReplied | AsyncAgiEnded

#: What the call model publishes: call events, the state of the devices agents use, the
#: outcome of the legs the ACD originates, and AsyncAGI sessions (all but call events are
#: the PBX's present, not history).
PbxEvent = CallEvent | DeviceStateChanged | OriginateOutcome | CallbackLegEnded | AsyncAgiEvent


ALL_EVENTS: tuple[type[CallEvent], ...] = (
    CallArrived,
    IvrEntered,
    DigitsReceived,
    CallParked,
    CallQueued,
    CallOffered,
    OfferMissed,
    CallAnswered,
    CallHeld,
    CallUnheld,
    CallTransferred,
    CallAbandoned,
    CallFailed,
    CallEnded,
    CallerChanged,
    AgentChanged,
    AgentHungUp,
    CallbackAsked,
)
