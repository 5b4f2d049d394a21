"""The call model: AMI events in, the contact center's call events out.

A pure state machine (no sockets, no clock): :meth:`CallModel.handle` takes one AMI
:class:`~cti.ami.codec.Message` and returns the domain events (:mod:`cti.calls.events`) it
implies; :meth:`CallModel.resync` rebuilds live state from the snapshot a client takes after
each (re)connect. The same object runs on a live connection and on a recording
(:mod:`cti.capture`).

How Asterisk 22 shows a call (``shared/ami-captures/README.md``):

* A call is every channel sharing the caller's ``Linkedid``; ``call_id`` is that Linkedid.
  A Local channel pair (``…;1``/``…;2``) is one party: for the caller, ``;2`` is the leg the
  PBX runs (IVR, queue, holding) and ``;1`` is the human side; a single (SIP) channel is both.
* Queue calls are told by app_queue's events (QueueCallerJoin, AgentCalled, AgentConnect,
  QueueCallerAbandon). Callers parked for the product's own ACD announce themselves with a
  ``UserEvent`` (``CtiParked``); that ACD offers them by originating an agent leg that carries
  the caller's number and answers them by bridging the two, so offer and answer are read from
  DialBegin / OriginateResponse / BridgeEnter of such legs.
* Everything is correlated by Uniqueid, Linkedid and BridgeUniqueid, never by arrival order.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from types import MappingProxyType
from urllib.parse import unquote

from cti.ami.codec import Message
from cti.calls.events import (
    Agent,
    AgentChanged,
    AgentHungUp,
    AsyncAgiEnded,
    AsyncAgiReplied,
    AsyncAgiStarted,
    CallAbandoned,
    CallAnswered,
    CallArrived,
    CallbackAsked,
    CallbackLegEnded,
    CallEnded,
    Caller,
    CallerChanged,
    CallEvent,
    CallFailed,
    CallHeld,
    CallOffered,
    CallParked,
    CallQueued,
    CallTransferred,
    CallUnheld,
    DeviceStateChanged,
    DigitsReceived,
    IvrEntered,
    OfferMissed,
    OriginateOutcome,
    PbxEvent,
)
from cti.calls.numbers import DEFAULT_PLAN, WITHHELD, NumberingPlan, normalise

log = logging.getLogger(__name__)


class CallState(StrEnum):
    """Where a live call is: arrived (routing), in self-service, parked for the product's ACD,
    in a PBX queue, talking to an agent, between agents in a blind transfer, abandoned (until
    its last leg hangs up) or ended."""

    ARRIVED = "arrived"
    IVR = "ivr"
    PARKED = "parked"
    QUEUED = "queued"
    CONNECTED = "connected"
    TRANSFERRING = "transferring"
    ABANDONED = "abandoned"
    ENDED = "ended"


#: States in which a caller is still waiting for an agent.
_WAITING = (CallState.ARRIVED, CallState.IVR, CallState.PARKED)

#: Dialplan applications that mean "the caller is in a menu" (Newexten ``Application``,
#: compared in lower case: Asterisk reports ``BackGround``).
_MENU_APPS = {"background": "Background", "waitexten": "WaitExten", "read": "Read"}

_HEX = frozenset("0123456789abcdefABCDEF")

#: How many hung-up channel ids are remembered (late events about them are ignored).
_GONE_KEPT = 4096

#: ExtensionStatus ``Status`` (Asterisk's AST_EXTENSION_* bits) -> device state; any other
#: non-negative value (in use, busy, on hold, combinations) is ``busy``; negative ones mean
#: the hint was removed.
_HINT_STATES = {0: "idle", 4: "unavailable", 8: "ringing"}

#: OriginateResponse ``Reason`` codes (Asterisk's AST_CONTROL_* numbers) in words.
ORIGINATE_REASONS = {
    "0": "failed",
    "1": "hung up",
    "3": "no answer",
    "4": "answered",
    "5": "busy",
    "8": "congestion",
}

#: Channel variables by which the product's ACD tells the PBX (and so this model) an agent
#: leg's queue and agent, and a waiting caller's queue and position.
_ACD_VARIABLES = frozenset({"CTI_QUEUE", "CTI_AGENT", "CTI_POSITION"})

#: Where the lab's holding dialplan parks callers: context -> extension -> lane.
DEFAULT_HOLDING = MappingProxyType(
    {"holding": MappingProxyType({"s": "external", "moh": "external-moh"})}
)


@dataclass(slots=True, eq=False)
class Call:
    """One live call, as far as the model knows it. Read it; the model owns it.

    ``variables`` holds the channel variables of interest (``CTI_ACCOUNT``, ``IVR_CHOICE``,
    inheritance underscores removed); ``attributes`` is for what later parts learn about the
    call (customer ids, value tier, callback request) and is never touched by the model.
    ``held`` names the channels that have the call on hold (Asterisk's ``Hold`` names the
    party that asked; the other one hears music); empty when nobody does.
    """

    call_id: str
    caller: Caller
    dialled: str | None
    channel: str
    arrived_at: float
    state: CallState = CallState.ARRIVED
    queue: str | None = None
    lane: str | None = None
    position: int | None = None
    waiting_since: float | None = None
    agent: Agent | None = None
    answered_at: float | None = None
    wait: float | None = None
    digits: str = ""
    held: set[str] = field(default_factory=set)
    variables: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    ended_at: float | None = None
    ended_by: str | None = None
    #: The caller ID before the dialplan changed it, kept only where the settings allow.
    original_caller: Caller | None = None
    #: ``inbound``, or ``outbound`` for a callback's call to the customer (``caller`` is then
    #: the customer, ``channel`` the customer's leg, ``agent`` the agent leg that dialled,
    #: ``variables["CTI_CALLBACK"]`` the ACD's request id).
    direction: str = "inbound"
    #: An outbound call's dial outcome (``DialEnd`` ``DialStatus``: ANSWER, BUSY...).
    dial_status: str | None = None
    # Book-keeping of the model (not part of the read API).
    _announced: bool = field(default=False, repr=False)
    _legs: set[str] = field(default_factory=set, repr=False)
    _agent_base: str | None = field(default=None, repr=False)
    _agent_left_at: float | None = field(default=None, repr=False)
    _caller_left_at: float | None = field(default=None, repr=False)
    _caller_left_human: bool = field(default=True, repr=False)
    _cause: int | None = field(default=None, repr=False)
    _cause_text: str | None = field(default=None, repr=False)
    # Offers ringing: the product's ACD's by agent leg Uniqueid, app_queue's by agent leg
    # (agent, since, queue).
    _offers: dict[str, tuple[Agent, float, str | None]] = field(default_factory=dict, repr=False)
    _rings: dict[str, tuple[Agent, float, str | None]] = field(default_factory=dict, repr=False)
    # The product's ACD's queue and the position it last announced (CTI_QUEUE, CTI_POSITION).
    _acd_queue: str | None = field(default=None, repr=False)
    _acd_position: int | None = field(default=None, repr=False)
    _agi_kind: str | None = field(default=None, repr=False)
    _caller_transferred: bool = field(default=False, repr=False)


@dataclass(slots=True)
class _Channel:
    uniqueid: str
    name: str
    call_id: str | None  # None: not (yet) part of any call, e.g. an originated agent leg
    is_caller: bool
    number: str | None = None
    #: The callback request an ACD-originated agent leg works for (its CTI_CALLBACK).
    callback: str | None = None
    #: An ACD-originated agent leg's queue and agent name (its CTI_QUEUE and CTI_AGENT).
    queue: str | None = None
    agent_name: str | None = None
    #: The device of a Local channel this one replaced (Local channel optimisation): the
    #: agent is still on that device's call, so it stays busy until this channel hangs up.
    replaces: str | None = None


def _base(name: str) -> str:
    """The party a channel belongs to: a Local pair's name without ``;1``/``;2``."""
    head, sep, _ = name.rpartition(";")
    return head if sep else name


def _interface(name: str) -> str:
    """``Local/6001@agents-00000001;1`` -> ``Local/6001@agents`` (the device, as queues name it).

    Asterisk appends ``-`` and an 8-digit hex sequence to every channel name.
    """
    base = _base(name)
    head, sep, tail = base.rpartition("-")
    if sep and head and len(tail) == 8 and all(c in _HEX for c in tail):
        return head
    return base


def _header_at(msg: Message, key: str, index: int) -> str | None:
    """``msg.get(key)`` for a header Asterisk writes at ``index`` (negative: from the end).

    VarSet and Newexten are most of the traffic; reading their headers in place spares
    building the message's header index for events that are then dropped.
    """
    headers = msg.headers
    if -len(headers) <= index < len(headers):
        name, value = headers[index]
        if name == key:
            return value
    return msg.get(key)


def _agi_environment(env: str) -> dict[str, str]:
    """AsyncAGIStart's URL-encoded ``Env`` (``agi_channel: ...`` lines, a blank line ending
    them) as a dict; lines that are not ``name: value`` are skipped."""
    out: dict[str, str] = {}
    for line in unquote(env).split("\n"):
        if not line:
            break
        name, sep, value = line.partition(": ")
        if not sep:
            name, sep, value = line.partition(":")  # ``agi_accountcode:`` may lose its space
        if sep and name:
            out[name] = value
    return out


def _text(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() in WITHHELD else value


def _float(value: str | None) -> float | None:
    """A finite number, or ``None`` (absent, garbage, ``nan``, ``inf``)."""
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _is_pattern(context: str) -> bool:
    return any(c in context for c in "*?[")


def _created_at(leg: Message, now: float) -> float:
    """When a snapshot's channel was created (so, for a parked caller, about when it parked).

    ``Duration`` counts whole seconds up to ``now`` and the Uniqueid's epoch part is the
    whole second of creation; together they bound it to well under a second.
    """
    seconds = _float(leg.get("Seconds"))
    if seconds is None:
        seconds = _seconds(leg.get("Duration"))
    latest = now - seconds
    earliest = latest - 1.0
    epoch = _float((leg.get("Uniqueid") or "").partition(".")[0])
    if epoch is not None and earliest - 1.0 <= epoch <= latest:
        earliest, latest = max(earliest, epoch), min(latest, epoch + 1.0)
    return (earliest + latest) / 2


def _seconds(duration: str | None) -> float:
    """CoreShowChannel ``Duration`` (``HH:MM:SS``) in seconds; 0 when unreadable."""
    total = 0.0
    for part in (duration or "").split(":"):
        value = _float(part)
        if value is None:
            return 0.0
        total = total * 60 + value
    return total


def _callback_of(ch: _Channel, msg: Message, prefix: str, variable: str) -> str | None:
    """The callback request a channel works for: learnt from its VarSet, or from the
    ``<prefix>ChanVariable`` headers when ``manager.conf`` lists the variable."""
    if ch.callback is not None:
        return ch.callback
    for value in msg.get_all(f"{prefix}ChanVariable"):
        name, _, request = value.partition("=")
        if name == variable and request:
            return request
    return None


Handler = Callable[[Message, float, list[PbxEvent]], None]


def _context(msg: Message) -> str:
    """The identifying headers of an event, for logs."""
    keys = ("Uniqueid", "Linkedid", "Channel", "Timestamp")
    return " ".join(f"{k}={msg.get(k)}" for k in keys if msg.get(k) is not None) or "no ids"


class CallModel:
    """Channels -> calls. Feed every AMI message to :meth:`handle`; after each login, feed the
    snapshot to :meth:`resync`. Both return the domain events to publish, in order.

    ``inbound_contexts``: dialplan contexts where inbound calls land (a new channel there
    with ``Uniqueid == Linkedid`` starts a call). ``parked_event``: the ``UserEvent`` name by
    which the holding dialplan announces a parked caller, ``callback_event`` the one by which
    it asks for a callback (``callback_asked``). ``holding``: where that dialplan
    parks callers (context -> extension -> lane), so that a snapshot, which carries no
    UserEvent, still tells parked callers and their lanes. ``variables``: channel variables
    copied onto :attr:`Call.variables`. ``keep_ended``: how many finished calls stay in
    :attr:`recently_ended`. ``callback_variable``: the variable the ACD sets on the agent
    leg it originates for a callback (its request id); when that leg (the originated
    channel itself, ``Uniqueid == Linkedid``) dials the customer, the dial is an outbound
    call (``arrived`` with ``direction="outbound"``, then ``answered`` or ``failed``, and
    ``ended``).

    Besides call events the model publishes :class:`DeviceStateChanged` for every device
    that agent-side channels use (a channel that is not a caller's leg), so that routing
    can follow calls it did not make.
    """

    def __init__(
        self,
        *,
        plan: NumberingPlan = DEFAULT_PLAN,
        inbound_contexts: Iterable[str] = ("inbound",),
        parked_event: str = "CtiParked",
        callback_event: str = "CtiCallback",
        holding: Mapping[str, Mapping[str, str]] = DEFAULT_HOLDING,
        variables: Iterable[str] = ("CTI_ACCOUNT", "IVR_CHOICE", "CTI_ROUTE"),
        keep_ended: int = 100,
        callback_variable: str = "CTI_CALLBACK",
        keep_original_caller_id: bool = False,
    ) -> None:
        self._plan = plan
        self._callback_var = callback_variable
        # Exact names, and glob patterns (``from-*``) for PBXs with one context per trunk.
        contexts = list(inbound_contexts)
        self._inbound = frozenset(c for c in contexts if not _is_pattern(c))
        self._inbound_patterns = tuple(c for c in contexts if _is_pattern(c))
        self._keep_original = keep_original_caller_id
        self._parked_event = parked_event
        self._callback_event = callback_event
        self._holding = {context: dict(lanes) for context, lanes in holding.items()}
        self._tracked = frozenset(variables)
        self._calls: dict[str, Call] = {}
        self._channels: dict[str, _Channel] = {}
        self._bridges: dict[str, set[str]] = {}
        # Originated agent legs offered to a parked caller: leg Uniqueid -> call_id.
        self._offered_legs: dict[str, str] = {}
        # Channels hung up lately: Asterisk sends a few events after a channel's Hangup
        # (NewCallerid, Newstate), which must not bring it back.
        self._gone: dict[str, None] = {}
        self._last_at = 0.0
        self._ignored: set[str] = set()
        # Devices: live agent-side channels per interface, hint states, and the state last
        # published for each (so only changes are published).
        self._device_channels: dict[str, int] = {}
        self._hint_states: dict[str, str] = {}
        self._device_states: dict[str, str] = {}
        self._dirty: set[str] = set()
        # Local channels being optimised away (Uniqueid -> the channel replacing them): their
        # hang-up is not a party leaving.
        self._optimised: dict[str, str] = {}
        self._by_name: dict[str, str] = {}  # live channel name -> Uniqueid
        # Live calls by caller number (insertion-ordered sets), to match an agent leg the
        # ACD originated with the caller's number without scanning every call.
        self._by_number: dict[str, dict[str, None]] = {}
        # Calls a previous run left open (call_id -> last seen alive): the first snapshot
        # closes those that are gone.
        self._expected: dict[str, tuple[float, float, bool]] = {}
        #: Live calls by call_id (a read-only view).
        self.calls: Mapping[str, Call] = MappingProxyType(self._calls)
        #: The last ``keep_ended`` finished calls, oldest first.
        self.recently_ended: deque[Call] = deque(maxlen=keep_ended)
        self._handlers: dict[str, Handler] = {
            "Newchannel": self._on_newchannel,
            "NewCallerid": self._on_newcallerid,
            "Newstate": self._on_newstate,
            "Newexten": self._on_newexten,
            "VarSet": self._on_varset,
            "DTMFEnd": self._on_dtmf,
            "UserEvent": self._on_userevent,
            "AsyncAGIStart": self._on_asyncagi_start,
            "AsyncAGIExec": self._on_asyncagi_exec,
            "AsyncAGIEnd": self._on_asyncagi_end,
            "AGIExecStart": self._on_agi_exec,
            "QueueCallerJoin": self._on_queue_join,
            "AgentCalled": self._on_agent_called,
            "AgentRingNoAnswer": self._on_ring_no_answer,
            "AgentConnect": self._on_agent_connect,
            "QueueCallerAbandon": self._on_queue_abandon,
            "DialBegin": self._on_dial_begin,
            "DialEnd": self._on_dial_end,
            "OriginateResponse": self._on_originate_response,
            "BridgeEnter": self._on_bridge_enter,
            "BridgeLeave": self._on_bridge_leave,
            "BridgeDestroy": self._on_bridge_destroy,
            "BridgeMerge": self._on_bridge_merge,
            "Hold": self._on_hold,
            "Unhold": self._on_unhold,
            "BlindTransfer": self._on_blind_transfer,
            "AttendedTransfer": self._on_attended_transfer,
            "HangupRequest": self._on_hangup_request,
            "SoftHangupRequest": self._on_hangup_request,
            "Hangup": self._on_hangup,
            "ExtensionStatus": self._on_extension_status,
            "LocalOptimizationBegin": self._on_local_optimization,
        }

    # ------------------------------------------------------------------ public API

    def handle(self, message: Message, received_at: float | None = None) -> list[PbxEvent]:
        """The domain events ``message`` implies (usually none).

        Time is the event's ``Timestamp``; ``received_at`` (epoch seconds) when it has none.
        Never raises: a message the model cannot use is logged and skipped.
        """
        headers = message.headers
        if not headers:
            return []
        # Dispatch on the event name first: most traffic (VarSet aside) is dropped right here.
        name = headers[0][1]
        handler = self._handlers.get(name)
        if handler is None or headers[0][0].lower() != "event":
            if name not in self._ignored and headers[0][0].lower() == "event":
                # Once per name: the log says what the model ignores without flooding.
                self._ignored.add(name)
                log.debug("call model ignores %s events (first: %s)", name, _context(message))
            return []
        out: list[PbxEvent] = []
        at = self._time(message, received_at)
        try:
            handler(message, at, out)
        except Exception:
            log.exception("call model skipped %s (%s)", name, _context(message))
        if self._dirty:
            self._flush_devices(at, out)
        return out

    def expect_open(self, calls: Iterable[tuple[str, float, float, bool]]) -> None:
        """Calls a previous run of the backend left open in history, as ``(call_id,
        arrived_at, last_seen, answered)``: the next :meth:`resync` ends those the PBX no
        longer has (``ended_by="system"``, ``ended_after=last_seen``), once each."""
        for call_id, arrived_at, last_seen, answered in calls:
            if call_id not in self._calls:
                self._expected[call_id] = (arrived_at, last_seen, answered)

    def device_state(self, interface: str) -> str:
        """What the model knows of a device: idle, busy, ringing or unavailable."""
        channels = self._device_channels.get(interface, 0)
        hint = self._hint_states.get(interface)
        if channels:
            return "ringing" if hint == "ringing" else "busy"
        return hint or "idle"

    def resync(self, results: Mapping[str, Sequence[Message]], now: float) -> list[PbxEvent]:
        """Rebuild live state from a fresh snapshot; return what changed unseen.

        ``results`` maps action names (``CoreShowChannels``, ``BridgeList``,
        ``QueueStatus``, ``Status``) to the items of their event lists. Calls whose caller
        is gone ended while the events were lost (``ended_by="system"``, cause and talk time
        unknown); unknown inbound calls arrive (queued, offered or answered as the snapshot
        shows, times estimated from ``Wait``/``Duration``); calls still alive keep their state
        (holds of channels gone meanwhile are dropped).
        """
        out: list[PbxEvent] = []
        if "CoreShowChannels" not in results:
            # Without the channel list nothing can be said about which calls are alive.
            log.warning("resync without CoreShowChannels ignored (got %s)", sorted(results))
            return out
        try:
            self._resync(results, now, out)
        except Exception:
            log.exception("call model could not complete a resync")
        self._last_at = max(self._last_at, now)
        return out

    # ------------------------------------------------------------------ plumbing

    def _time(self, msg: Message, received_at: float | None) -> float:
        at = _float(_header_at(msg, "Timestamp", 2))  # Event, Privilege, Timestamp
        if at is None:
            at = received_at if received_at is not None else self._last_at
        self._last_at = at
        return at

    def _emit(self, call: Call, event: CallEvent, out: list[PbxEvent]) -> None:
        self._announce(call, out)
        out.append(event)

    def _announce(self, call: Call, out: list[PbxEvent], *, restored: bool = False) -> None:
        if not call._announced:
            call._announced = True
            out.append(
                CallArrived(
                    call.call_id,
                    call.arrived_at,
                    call.caller,
                    call.dialled,
                    call.channel,
                    restored=restored,
                    original_caller=call.original_caller,
                )
            )

    # ------------------------------------------------------------------ devices

    def _count(self, ch: _Channel, delta: int) -> None:
        """Count an agent-side channel on its device (callers' own legs are not devices
        agents use)."""
        if ch.is_caller:
            return
        for interface in (_interface(ch.name), ch.replaces):
            if interface is None:
                continue
            count = self._device_channels.get(interface, 0) + delta
            if count > 0:
                self._device_channels[interface] = count
            else:
                self._device_channels.pop(interface, None)
            self._dirty.add(interface)

    def _apply_hint(self, msg: Message) -> None:
        # "PJSIP/6001&Custom:DND,CustomPresence:..." combines devices: only a hint on one
        # device says that device's state.
        devices = [d for d in (msg.get("Hint") or "").split(",")[0].split("&") if d]
        status = _int(msg.get("Status"))
        if len(devices) != 1 or status is None:
            return
        if status < 0:
            self._hint_states.pop(devices[0], None)
        else:
            self._hint_states[devices[0]] = _HINT_STATES.get(status, "busy")
        self._dirty.add(devices[0])

    def _on_extension_status(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        self._apply_hint(msg)

    def _flush_devices(self, at: float, out: list[PbxEvent], *, restored: bool = False) -> None:
        for interface in sorted(self._dirty):
            state = self.device_state(interface)
            if self._device_states.get(interface, "idle") == state:
                continue
            if state == "idle":
                del self._device_states[interface]
            else:
                self._device_states[interface] = state
            out.append(DeviceStateChanged(at, interface, state, restored=restored))
        self._dirty.clear()

    def _add_call(self, call: Call) -> None:
        self._calls[call.call_id] = call
        self._index_number(call, call.caller.number, new=True)

    def _index_number(self, call: Call, number: str | None, *, new: bool = False) -> None:
        """Keep ``_by_number`` (caller number -> live call ids) up to date as ``call``'s
        number becomes ``number`` (None: the call is gone or has no number)."""
        old = None if new else call.caller.number
        if old == number and not new:
            return
        if old is not None and (ids := self._by_number.get(old)) is not None:
            ids.pop(call.call_id, None)
            if not ids:
                del self._by_number[old]
        if number is not None:
            self._by_number.setdefault(number, {})[call.call_id] = None

    def _caller(self, number: str | None, name: str | None) -> Caller:
        raw = _text(number)
        return Caller(number=normalise(raw, self._plan), name=_text(name), raw_number=raw)

    def _join(self, call: Call, uid: str, name: str) -> _Channel:
        is_caller = _base(name) == _base(call.channel)
        ch = _Channel(uid, name, call.call_id, is_caller)
        self._channels[uid] = ch
        self._by_name[ch.name] = uid
        self._count(ch, 1)
        if is_caller:
            call._legs.add(uid)
        return ch

    def _channel(self, msg: Message, uid_key: str = "Uniqueid") -> _Channel | None:
        """The channel ``msg`` is about; one first seen now joins its call by Linkedid."""
        uid = msg.get(uid_key)
        if uid is None:
            return None
        ch = self._channels.get(uid)
        if ch is None:
            call = self._calls.get(msg.get("Linkedid") or "")
            if call is None or uid in self._gone:
                return None
            ch = self._join(call, uid, msg.get("Channel") or "")
        return ch

    def _call_of(self, ch: _Channel | None) -> Call | None:
        if ch is None or ch.call_id is None:
            return None
        return self._calls.get(ch.call_id)

    def _caller_leg(self, msg: Message, uid_key: str = "Uniqueid") -> Call | None:
        """The call whose PBX-side caller leg ``msg`` is about (IVR, DTMF, queue, parking)."""
        ch = self._channel(msg, uid_key)
        call = self._call_of(ch)
        if call is None or ch is None or not ch.is_caller or ch.name != call.channel:
            return None
        return call

    def _absorb_variables(self, call: Call, msg: Message) -> None:
        for name, value in msg.variables().items():
            name = name.lstrip("_")
            if value and name in self._tracked:
                call.variables[name] = value

    # ------------------------------------------------------------------ channels

    def _on_newchannel(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        uid = msg.get("Uniqueid")
        name = msg.get("Channel")
        if not uid or not name or uid in self._channels:
            return
        linkedid = msg.get("Linkedid") or uid
        call = self._calls.get(linkedid)
        if call is not None:
            self._join(call, uid, name)
            return
        if uid == linkedid and self._is_inbound(msg.get("Context")):
            # The PBX runs the ;2 half of a Local pair; a real trunk channel is both halves.
            leg = f"{_base(name)};2" if name.endswith(";1") else name
            call = Call(
                call_id=uid,
                caller=self._caller(msg.get("CallerIDNum"), msg.get("CallerIDName")),
                dialled=_text(msg.get("Exten")),
                channel=leg,
                arrived_at=at,
            )
            self._add_call(call)
            self._join(call, uid, name)
            # Not announced yet: the inbound dialplan may still change the caller ID (a
            # privacy mask); the call is announced with its first event or when answered.
            return
        number = normalise(_text(msg.get("CallerIDNum")), self._plan)
        ch = _Channel(uid, name, None, False, number)
        self._channels[uid] = ch
        self._by_name[ch.name] = uid
        self._count(ch, 1)

    def _on_newcallerid(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        ch = self._channel(msg)
        if ch is None:
            return
        caller = self._caller(msg.get("CallerIDNum"), msg.get("CallerIDName"))
        if ch.call_id is None:
            ch.number = caller.number
            return
        call = self._calls.get(ch.call_id)
        # Only the PBX's own leg of the caller carries the identity the dialplan set (the
        # human ;1 half and agent legs keep the original, recording 14).
        if call is None or ch.name != call.channel or caller == call.caller:
            return
        known = call.caller.number is not None or call.caller.name is not None
        if call.original_caller is None and self._keep_original and known:
            call.original_caller = call.caller
        self._index_number(call, caller.number)
        call.caller = caller
        if call._announced:
            self._emit(call, CallerChanged(call.call_id, at, caller), out)

    def _on_newstate(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        ch = self._channel(msg)
        call = self._call_of(ch)
        # Answered by the dialplan: the caller ID it set before is the one to show.
        if (
            call is not None
            and ch is not None
            and ch.name == call.channel
            and msg.get("ChannelStateDesc") == "Up"
        ):
            self._announce(call, out)

    def _on_varset(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        variable = _header_at(msg, "Variable", -2)
        if not variable:
            return
        name = variable.lstrip("_")
        if name == self._callback_var:
            # The Originate of a callback's agent leg: remember the request on the leg.
            leg = self._channels.get(msg.get("Uniqueid") or "")
            if leg is not None and leg.call_id is None:
                leg.callback = msg.get("Value") or None
            return
        if name in _ACD_VARIABLES:
            self._acd_variable(msg, name)
        if name not in self._tracked:
            return
        ch = self._channel(msg)
        call = self._call_of(ch)
        if call is not None and ch is not None and ch.is_caller:
            call.variables[name] = msg.get("Value") or ""

    def _acd_variable(self, msg: Message, name: str) -> None:
        """What the product's ACD tells the PBX in channel variables: an agent leg's queue
        and agent (set by its Originate), a waiting caller's queue and position."""
        value = msg.get("Value") or None
        ch = self._channels.get(msg.get("Uniqueid") or "")
        if ch is None:
            return
        if ch.call_id is None:
            if name == "CTI_QUEUE":
                ch.queue = value
            elif name == "CTI_AGENT":
                ch.agent_name = value
            return
        call = self._call_of(ch)
        if call is None or ch.name != call.channel:
            return
        if name == "CTI_QUEUE":
            call._acd_queue = value
        elif name == "CTI_POSITION":
            call._acd_position = _int(value)

    # ------------------------------------------------------------------ self-service

    def _enter_ivr(
        self, call: Call, at: float, app: str, ctx: str | None, out: list[PbxEvent]
    ) -> None:
        if call.state is CallState.IVR:
            return
        call.state = CallState.IVR
        self._emit(call, IvrEntered(call.call_id, at, app, ctx), out)

    def _on_newexten(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        app = _header_at(msg, "Application", -2)
        if not app:
            return
        low = app.lower()
        if low == "agi":
            call = self._caller_leg(msg)
            if call is not None:
                data = msg.get("AppData") or ""
                call._agi_kind = (
                    "AsyncAGI"
                    if data.startswith("agi:async")
                    else "FastAGI"
                    if data.startswith(("agi://", "hagi://"))
                    else "AGI"
                )
            return
        menu = _MENU_APPS.get(low)
        if menu is None:
            return
        call = self._caller_leg(msg)
        if call is not None:
            self._enter_ivr(call, at, menu, msg.get("Context"), out)

    def _on_asyncagi_start(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        call = self._caller_leg(msg)
        if call is not None:
            self._enter_ivr(call, at, "AsyncAGI", msg.get("Context"), out)
        # Any channel may run AsyncAGI (an agent leg too): the IVR decides what to drive.
        channel = msg.get("Channel")
        if channel:
            env = _agi_environment(msg.get("Env") or "")
            out.append(AsyncAgiStarted(at, channel, self._call_id_of(msg), env))

    def _on_asyncagi_exec(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        channel, command_id = msg.get("Channel"), msg.get("CommandId")
        if channel and command_id is not None:
            reply = unquote(msg.get("Result") or "").removesuffix("\n")
            out.append(AsyncAgiReplied(at, channel, self._call_id_of(msg), command_id, reply))

    def _on_asyncagi_end(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        call = self._caller_leg(msg)
        if call is not None and call.state is CallState.IVR:
            call.state = CallState.ARRIVED
        channel = msg.get("Channel")
        if channel:
            out.append(AsyncAgiEnded(at, channel, self._call_id_of(msg)))

    def _call_id_of(self, msg: Message) -> str | None:
        ch = self._channel(msg)
        return ch.call_id if ch is not None else None

    def _on_agi_exec(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        call = self._caller_leg(msg)
        if call is not None and call.state is not CallState.IVR and call.answered_at is None:
            self._enter_ivr(call, at, call._agi_kind or "AGI", msg.get("Context"), out)

    def _on_dtmf(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        # Only digits the PBX received on the caller's own leg: agent legs see the digits the
        # Atxfer action injects, and the human half sees what agents press.
        if msg.get("Direction") != "Received":
            return
        digit = msg.get("Digit")
        call = self._caller_leg(msg)
        if call is None or not digit:
            return
        call.digits += digit
        self._emit(call, DigitsReceived(call.call_id, at, digit), out)

    def _on_userevent(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        if msg.get("UserEvent") == self._callback_event:
            # The holding dialplan's key press: the caller asks to be called back.
            asked = self._calls.get(msg.get("Linkedid") or "")
            number = _text(msg.get("Number"))
            if asked is not None and number:
                self._emit(asked, CallbackAsked(asked.call_id, at, number), out)
            else:
                log.warning(
                    "call model: %s without a live call or a Number ignored (%s)",
                    self._callback_event,
                    _context(msg),
                )
            return
        if msg.get("UserEvent") != self._parked_event:
            return
        call = self._caller_leg(msg)
        if call is None:
            return
        call.state = CallState.PARKED
        call.lane = msg.get("Queue")
        call.waiting_since = at
        self._absorb_variables(call, msg)
        self._emit(call, CallParked(call.call_id, at, call.lane, call.channel), out)

    # ------------------------------------------------------------------ queues

    def _queue_agent(self, msg: Message) -> Agent:
        dest = msg.get("DestChannel")
        interface = msg.get("Interface") or (_interface(dest) if dest else "")
        return Agent(interface, _text(msg.get("MemberName")), dest)

    def _on_queue_join(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        call = self._caller_leg(msg)
        queue = msg.get("Queue")
        if call is None or not queue:
            return
        call.state = CallState.QUEUED
        call.queue = queue
        call.position = _int(msg.get("Position"))
        call.waiting_since = at
        self._absorb_variables(call, msg)
        self._emit(call, CallQueued(call.call_id, at, queue, call.position or 0), out)

    def _on_agent_called(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        call = self._caller_leg(msg)
        if call is not None:
            agent = self._queue_agent(msg)
            queue = msg.get("Queue")
            call._rings[agent.channel or agent.interface] = (agent, at, queue)
            self._emit(call, CallOffered(call.call_id, at, agent, queue), out)

    def _on_ring_no_answer(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        call = self._caller_leg(msg)
        if call is None:
            return
        ring_ms = _float(msg.get("RingTime")) or 0.0  # milliseconds here, seconds elsewhere
        agent = self._queue_agent(msg)
        call._rings.pop(agent.channel or agent.interface, None)
        event = OfferMissed(call.call_id, at, agent, ring_ms / 1000.0, msg.get("Queue"))
        self._emit(call, event, out)

    def _on_agent_connect(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        call = self._caller_leg(msg)
        if call is None:
            return
        agent = self._queue_agent(msg)
        hold = _float(msg.get("HoldTime"))
        # app_queue's own HoldTime, so figures match the PBX's queue statistics.
        wait = hold if hold is not None else at - (call.waiting_since or call.arrived_at)
        call._rings.pop(agent.channel or agent.interface, None)
        self._end_offers(call, at, "answered elsewhere", out)  # ringall's other members
        self._connect(call, agent, at, wait)
        self._emit(call, CallAnswered(call.call_id, at, agent, wait, msg.get("Queue")), out)

    def _connect(self, call: Call, agent: Agent, at: float, wait: float) -> None:
        call.state = CallState.CONNECTED
        call.agent = agent
        call.answered_at = at
        call.wait = wait
        call._agent_base = _base(agent.channel) if agent.channel else None

    def _on_queue_abandon(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        call = self._caller_leg(msg)
        if call is None:
            return
        hold = _float(msg.get("HoldTime"))
        wait = hold if hold is not None else at - (call.waiting_since or call.arrived_at)
        call.state = CallState.ABANDONED
        call.position = _int(msg.get("Position"))
        self._end_offers(call, at, "caller hung up", out)
        event = CallAbandoned(call.call_id, at, wait, msg.get("Queue") or call.queue, call.position)
        self._emit(call, event, out)

    # ------------------------------------------------------------------ external ACD

    def _on_dial_begin(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        """An agent leg, not part of any call, starts ringing for a parked caller; or a
        callback's agent leg dials the customer (an outbound call)."""
        leg_uid = msg.get("DestUniqueid")
        leg = self._channels.get(leg_uid or "")
        if leg is None or leg.call_id is not None or leg_uid in self._offered_legs:
            return
        source = self._channels.get(msg.get("Uniqueid") or "")
        request = None if source is None else _callback_of(source, msg, "", self._callback_var)
        if source is not None and request is not None:
            # The originated leg itself (Uniqueid == Linkedid) dials the customer; a dial by
            # a Local agent's ;2 half rings the agent's own phone, nobody's offer.
            if source.call_id is None and source.uniqueid == msg.get("Linkedid"):
                self._outbound_dial(msg, at, source, leg, request, out)
            return
        if _callback_of(leg, msg, "Dest", self._callback_var) is not None:
            return  # a callback's agent leg rings: not an offer to a parked caller
        call = self._parked_call_for(msg, leg)
        if call is None:
            return
        agent = Agent(_interface(leg.name), leg.agent_name, leg.name)
        call._offers[leg.uniqueid] = (agent, at, leg.queue)
        self._offered_legs[leg.uniqueid] = call.call_id
        self._emit(call, CallOffered(call.call_id, at, agent, leg.queue), out)

    def _outbound_dial(
        self,
        msg: Message,
        at: float,
        source: _Channel,
        dest: _Channel,
        request: str,
        out: list[PbxEvent],
    ) -> None:
        """A callback's agent leg dials the customer (the ``outbound`` context, extension =
        the number): an outbound call keyed by the leg's Linkedid. The customer's channels
        are the call's caller side (no agent's device); the agent leg stays the agent's
        device and speaks for the agent (it ended the call if it hangs up first)."""
        call_id = source.uniqueid
        if call_id in self._calls:
            return  # the same leg dials again while its first dial is still on
        raw = _text(msg.get("Exten"))
        agent = Agent(_interface(source.name), None, source.name)
        call = Call(
            call_id=call_id,
            caller=Caller(normalise(raw, self._plan), None, raw),
            dialled=raw,
            channel=dest.name,
            arrived_at=at,
            direction="outbound",
            agent=agent,
        )
        call.waiting_since = at
        call.variables[self._callback_var] = request
        call._agent_base = _base(source.name)
        self._add_call(call)
        base = _base(dest.name)
        # Both halves of a Local customer pair were created before the dial began; found by
        # name, so the cost does not grow with the live channels.
        names = (f"{base};1", f"{base};2") if base != dest.name else (dest.name,)
        halves = (self._channels.get(self._by_name.get(n, "")) for n in names)
        for ch in [c for c in halves if c is not None and c.call_id is None]:
            self._count(ch, -1)  # counted as a device until now: it is the customer's line
            ch.call_id, ch.is_caller = call_id, True
            call._legs.add(ch.uniqueid)
        source.call_id = call_id
        call._announced = True
        arrived = CallArrived(
            call_id, at, call.caller, raw, dest.name, direction="outbound", callback=request
        )
        out.append(arrived)

    def _on_dial_end(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        """How an outbound call's dial to the customer ended: answered, or failed with
        Asterisk's DialStatus (inbound calls are told by queue events and bridges)."""
        ch = self._channels.get(msg.get("DestUniqueid") or "")
        if ch is None or not ch.is_caller:
            return
        call = self._call_of(ch)
        if (
            call is None
            or call.direction != "outbound"
            or call.dial_status is not None
            or call.answered_at is not None
            or call.agent is None
        ):
            return
        status = msg.get("DialStatus") or "UNKNOWN"
        call.dial_status = status
        agent = call.agent
        if status == "ANSWER":
            wait = at - (call.waiting_since or call.arrived_at)
            self._connect(call, agent, at, wait)
            self._emit(call, CallAnswered(call.call_id, at, agent, wait), out)
        else:
            self._emit(call, CallFailed(call.call_id, at, status, agent), out)

    def _parked_call_for(self, msg: Message, leg: _Channel) -> Call | None:
        # A CTI_CALLID variable naming the caller's leg is proof; else the caller's number
        # (the ACD originates the agent leg with it), longest-waiting caller first.
        for value in msg.get_all("DestChanVariable"):
            name, _, callid = value.partition("=")
            if name == "CTI_CALLID" and callid:
                call = self._call_of(self._channels.get(callid))
                if call is not None and call.state is CallState.PARKED:
                    return call
        number = normalise(_text(msg.get("DestCallerIDNum")), self._plan) or leg.number
        if number is None:
            return None
        # By number through the index: the cost does not grow with the live calls.
        candidates = [
            c
            for c in (self._calls[i] for i in self._by_number.get(number, ()))
            if c.state is CallState.PARKED
        ]
        if not candidates:
            return None
        return min(candidates, key=lambda c: (bool(c._offers), c.waiting_since or c.arrived_at))

    def _on_originate_response(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        leg_id = msg.get("Uniqueid")
        if leg_id:
            answered = msg.get("Response") == "Success"
            reason = ORIGINATE_REASONS.get(msg.get("Reason") or "", "failed")
            out.append(OriginateOutcome(at, leg_id, msg.get("Channel"), answered, reason))
        if msg.get("Response") != "Failure" or not self._offered_legs:
            return
        uid = msg.get("Uniqueid") or ""
        if uid not in self._offered_legs:
            # Without ChannelId the failure names no Uniqueid: match device and number.
            interface = msg.get("Channel")
            number = normalise(_text(msg.get("CallerIDNum")), self._plan)
            uid = ""
            for leg_uid, call_id in self._offered_legs.items():
                call = self._calls[call_id]
                agent = call._offers[leg_uid][0]
                if agent.interface == interface and number in (None, call.caller.number):
                    uid = leg_uid
                    break
        if uid:
            self._miss_offer(uid, at, out)

    def _miss_offer(self, leg_uid: str, at: float, out: list[PbxEvent]) -> None:
        call = self._calls.get(self._offered_legs.pop(leg_uid, ""))
        if call is None:
            return
        agent, offered_at, queue = call._offers.pop(leg_uid)
        self._emit(call, OfferMissed(call.call_id, at, agent, at - offered_at, queue), out)

    def _end_offers(self, call: Call, at: float, reason: str, out: list[PbxEvent]) -> None:
        """Close every offer still ringing for ``call`` (the caller left, or another agent
        answered), so each ``offered`` has its end."""
        for leg_uid, (agent, since, queue) in list(call._offers.items()):
            self._offered_legs.pop(leg_uid, None)
            missed = OfferMissed(call.call_id, at, agent, at - since, queue, reason)
            self._emit(call, missed, out)
        for agent, since, queue in call._rings.values():
            missed = OfferMissed(call.call_id, at, agent, at - since, queue, reason)
            self._emit(call, missed, out)
        call._offers.clear()
        call._rings.clear()

    # ------------------------------------------------------------------ bridges

    def _on_local_optimization(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        # Asterisk removes a Local pair from the path (recording 14); which channel replaced
        # which is told by the BridgeEnter with SwapUniqueid, not by DestUniqueId.
        source = msg.get("SourceUniqueid") or ""
        for key in ("LocalOneUniqueid", "LocalTwoUniqueid"):
            uid = msg.get(key)
            if uid and uid in self._channels:
                self._optimised[uid] = source

    def _swap(self, old_uid: str, new: _Channel) -> None:
        """``new`` took ``old``'s place in a bridge: if ``old`` was a call's agent leg, the
        same agent goes on talking through ``new`` (same call, same talk time)."""
        old = self._channels.get(old_uid)
        call = self._call_of(old)
        if old is None or call is None or old.is_caller:
            return
        if new.call_id is None:
            new.call_id = call.call_id
        if call._agent_base is not None and _base(old.name) == call._agent_base:
            agent = call.agent
            call.agent = Agent(
                agent.interface if agent else _interface(old.name),
                agent.name if agent else None,
                new.name,
            )
            call._agent_base = _base(new.name)
            call._agent_left_at = None
        if new.replaces is None:
            new.replaces = old.replaces or _interface(old.name)
            self._device_channels[new.replaces] = self._device_channels.get(new.replaces, 0) + 1
            self._dirty.add(new.replaces)

    def _on_bridge_enter(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        bridge = msg.get("BridgeUniqueid")
        ch = self._channel(msg)
        if not bridge or ch is None:
            return
        swapped = msg.get("SwapUniqueid")
        if swapped:
            self._swap(swapped, ch)
        members = self._bridges.setdefault(bridge, set())
        members.add(ch.uniqueid)
        caller = other = None
        for uid in members:
            member = self._channels.get(uid)
            if member is None:
                continue
            if member.is_caller:
                caller = member
            else:
                other = member
        call = self._call_of(caller)
        if call is None or other is None or other.call_id not in (None, call.call_id):
            return
        other.call_id = call.call_id
        if call.state is CallState.TRANSFERRING:
            # The transferee reached the blind-transfer target: the new agent.
            call.state = CallState.CONNECTED
            call.agent = Agent(_interface(other.name), None, other.name)
            call._agent_base = _base(other.name)
            self._emit(call, AgentChanged(call.call_id, at, call.agent), out)
        elif call.state in _WAITING and call.answered_at is None:
            # Not a PBX queue (AgentConnect tells those): a parked caller bridged to an agent.
            offer = call._offers.pop(other.uniqueid, None)
            self._offered_legs.pop(other.uniqueid, None)
            agent = offer[0] if offer else Agent(_interface(other.name), None, other.name)
            queue = offer[2] if offer else call._acd_queue
            wait = at - (call.waiting_since or call.arrived_at)
            self._connect(call, agent, at, wait)
            self._end_offers(call, at, "answered elsewhere", out)
            answered = CallAnswered(call.call_id, at, agent, wait, queue, call.lane)
            self._emit(call, answered, out)

    def _on_bridge_leave(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        members = self._bridges.get(msg.get("BridgeUniqueid") or "")
        if members is not None:
            members.discard(msg.get("Uniqueid") or "")

    def _on_bridge_destroy(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        self._bridges.pop(msg.get("BridgeUniqueid") or "", None)

    def _on_bridge_merge(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        moved = self._bridges.pop(msg.get("FromBridgeUniqueid") or "", set())
        to = msg.get("ToBridgeUniqueid")
        if to:
            self._bridges.setdefault(to, set()).update(moved)

    # ------------------------------------------------------------------ hold, transfer

    def _on_hold(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        ch = self._channel(msg)
        call = self._call_of(ch)
        # A repeated Hold (a phone re-sending its hold offer) is the same hold.
        if call is None or ch is None or ch.name in call.held:
            return
        call.held.add(ch.name)
        self._emit(call, CallHeld(call.call_id, at, ch.name), out)

    def _on_unhold(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        ch = self._channel(msg)
        call = self._call_of(ch)
        # Asterisk also sends Unhold for a blind transferer that was never held (06).
        if call is None or ch is None or ch.name not in call.held:
            return
        call.held.discard(ch.name)
        self._emit(call, CallUnheld(call.call_id, at, ch.name), out)

    def _transferred_call(self, msg: Message, *uid_keys: str) -> Call | None:
        if msg.get("Result") != "Success":
            return None
        for key in uid_keys:
            call = self._call_of(self._channels.get(msg.get(key) or ""))
            if call is not None:
                return call
        return None

    def _on_blind_transfer(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        call = self._transferred_call(msg, "TransfereeUniqueid", "TransfererUniqueid")
        if call is None:
            return
        exten, context = msg.get("Extension"), msg.get("Context")
        target = f"{exten}@{context}" if exten and context else exten
        transferer = self._channels.get(msg.get("TransfererUniqueid") or "")
        if transferer is not None and transferer.is_caller:
            # The caller sent the agent on (recording 14): the customer is the one leaving.
            call._caller_transferred = True
            event = CallTransferred(call.call_id, at, "blind", None, target, "caller")
            self._emit(call, event, out)
            return
        by = call.agent
        call.state = CallState.TRANSFERRING
        # The transferer leaves the call; an Unhold for it may come before this or not at all.
        call.held.clear()
        call.agent = None
        call._agent_base = None
        call._agent_left_at = None
        self._emit(call, CallTransferred(call.call_id, at, "blind", by, target), out)

    def _on_attended_transfer(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        call = self._transferred_call(
            msg, "TransfereeUniqueid", "OrigTransfererUniqueid", "SecondTransfererUniqueid"
        )
        if call is None:
            return
        target = msg.get("TransferTargetChannel")
        by = call.agent
        # The transferer's hang-up completes the transfer; it is not the agent ending the call.
        call._agent_left_at = None
        # The held transferer leaves without an Unhold: the merged bridge is talking again.
        call.held.clear()
        if target:
            call.state = CallState.CONNECTED
            call.agent = Agent(_interface(target), None, target)
            call._agent_base = _base(target)
            leg = self._channels.get(msg.get("TransferTargetUniqueid") or "")
            if leg is not None and not leg.is_caller:
                leg.call_id = call.call_id
        else:
            # Completed while the target still rings: the departed agent has the call no
            # more; whoever the caller is bridged to next is (``agent_changed``).
            call.state = CallState.TRANSFERRING
            call.agent = None
            call._agent_base = None
        self._emit(call, CallTransferred(call.call_id, at, "attended", by, target), out)

    # ------------------------------------------------------------------ hang-up

    def _note_leaving(self, ch: _Channel, call: Call, at: float, out: list[PbxEvent]) -> None:
        """Remember who left first: that decides ``ended_by``; the agent leaving first is
        published (``agent_hung_up``)."""
        if ch.uniqueid in self._optimised:
            return  # a Local pair optimised out of the path: nobody left
        if ch.is_caller:
            if call._caller_left_at is None:
                call._caller_left_at = at
                # The human half of a Local pair (or a single trunk channel) hung up.
                call._caller_left_human = ch.name != call.channel or _base(ch.name) == ch.name
        elif (
            call._agent_base is not None
            and call._agent_left_at is None
            and call._caller_left_at is None
            and _base(ch.name) == call._agent_base
        ):
            call._agent_left_at = at
            if call.agent is not None:
                self._emit(call, AgentHungUp(call.call_id, at, call.agent), out)

    def _on_hangup_request(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        ch = self._channel(msg)
        call = self._call_of(ch)
        if call is not None and ch is not None:
            self._note_leaving(ch, call, at, out)

    def _on_hangup(self, msg: Message, at: float, out: list[PbxEvent]) -> None:
        ch = self._channel(msg)
        if ch is None:
            return
        del self._channels[ch.uniqueid]
        if self._by_name.get(ch.name) == ch.uniqueid:
            del self._by_name[ch.name]
        self._count(ch, -1)
        self._gone[ch.uniqueid] = None
        optimised = self._optimised.pop(ch.uniqueid, None) is not None
        if ch.callback is not None and ch.call_id is None:
            # A callback's agent leg gone without dialling the customer (no outbound call).
            out.append(CallbackLegEnded(at, ch.callback, ch.name, msg.get("Cause-txt")))
        if len(self._gone) > _GONE_KEPT:
            del self._gone[next(iter(self._gone))]
        if ch.uniqueid in self._offered_legs:
            # An offered agent leg gone unanswered (if OriginateResponse did not say so first).
            self._miss_offer(ch.uniqueid, at, out)
        call = self._call_of(ch)
        if call is None:
            return
        call.held.discard(ch.name)  # no Unhold follows a hang-up
        if not optimised:
            self._note_leaving(ch, call, at, out)
        if not ch.is_caller:
            return
        cause = _int(msg.get("Cause"))
        if cause is not None and (call._cause is None or (call._cause == 0 and cause != 0)):
            call._cause, call._cause_text = cause, msg.get("Cause-txt")
        call._legs.discard(ch.uniqueid)
        if not call._legs:
            self._finish(call, at, out)

    def _finish(self, call: Call, at: float, out: list[PbxEvent]) -> None:
        self._end_offers(call, at, "caller hung up", out)
        if call.state is CallState.PARKED:
            # Hung up while parked for the ACD: an abandon, though no PBX queue counted it.
            call.state = CallState.ABANDONED
            wait = at - (call.waiting_since or call.arrived_at)
            abandoned = CallAbandoned(
                call.call_id, at, wait, call._acd_queue, call._acd_position, call.lane
            )
            self._emit(call, abandoned, out)
        if call._agent_left_at is not None:
            ended_by = "agent"
        elif call._caller_left_human or call._caller_transferred:
            ended_by = "caller"
        else:
            ended_by = "system"
        talk = None
        if call.answered_at is not None:
            talk_end = call._agent_left_at or call._caller_left_at or at
            talk = max(0.0, talk_end - call.answered_at)
        event = CallEnded(
            call.call_id,
            at,
            cause=call._cause,
            cause_text=call._cause_text,
            ended_by=ended_by,
            duration=at - call.arrived_at,
            talk_time=talk,
            answered=call.answered_at is not None,
        )
        self._emit(call, event, out)
        self._close(call, at, ended_by)

    def _close(self, call: Call, at: float, ended_by: str) -> None:
        for leg_uid in call._offers:
            self._offered_legs.pop(leg_uid, None)
        call._offers.clear()
        call.held.clear()
        call.state = CallState.ENDED
        call.ended_at = at
        call.ended_by = ended_by
        del self._calls[call.call_id]
        self._index_number(call, None)
        self.recently_ended.append(call)

    # ------------------------------------------------------------------ resync

    def _resync(
        self, results: Mapping[str, Sequence[Message]], now: float, out: list[PbxEvent]
    ) -> None:
        snapshot: dict[str, Message] = {}
        for msg in results.get("CoreShowChannels", ()):
            uid = msg.get("Uniqueid")
            if msg.name == "CoreShowChannel" and uid and msg.get("Channel"):
                snapshot[uid] = msg
        entries = {
            m.get("Uniqueid") or "": m
            for m in results.get("QueueStatus", ())
            if m.name == "QueueEntry"
        }
        status = {
            m.get("Uniqueid") or "": m for m in results.get("Status", ()) if m.name == "Status"
        }
        # Queue member names by interface ("Local/6002@agents" -> "Agent Bob").
        members_of = {
            m.get("Location") or "": m.get("Name") or ""
            for m in results.get("QueueStatus", ())
            if m.name == "QueueMember" and m.get("Location") and _text(m.get("Name"))
        }
        groups: dict[str, list[Message]] = {}
        for uid, msg in snapshot.items():
            groups.setdefault(msg.get("Linkedid") or uid, []).append(msg)
        for msg in results.get("ExtensionStateList", ()):
            if msg.name == "ExtensionStatus":
                self._apply_hint(msg)

        # Calls whose caller is gone ended while their events were lost: when exactly is
        # unknown, only that it was after they were last seen.
        last_seen = self._last_at
        call: Call | None  # below, a call of the snapshot may be unknown
        for call in list(self._calls.values()):
            alive = (
                any(uid in snapshot for uid in call._legs)
                if call._legs
                else (call.call_id in groups)
            )
            if not alive:
                event = self._ended_unseen(
                    call.call_id, call.arrived_at, last_seen, call.answered_at is not None, now
                )
                self._emit(call, event, out)
                self._close(call, now, "system")
        # And those a previous run of the backend left open.
        expected, self._expected = self._expected, {}
        for call_id, (arrived_at, seen, answered) in expected.items():
            if call_id not in groups and call_id not in self._calls:
                out.append(self._ended_unseen(call_id, arrived_at, seen, answered, now))

        # Channels and bridges are rebuilt from the snapshot.
        self._channels = {u: c for u, c in self._channels.items() if u in snapshot}
        self._by_name = {c.name: u for u, c in self._channels.items()}
        self._dirty.update(self._device_channels)
        self._device_channels = {}
        for ch in self._channels.values():
            self._count(ch, 1)
        names = {msg.get("Channel") for msg in snapshot.values()}
        for call in self._calls.values():
            call._legs &= snapshot.keys()
            call.held.intersection_update(names)
        for leg_uid in [u for u in self._offered_legs if u not in snapshot]:
            self._miss_offer(leg_uid, now, out)
        self._bridges = {}
        for uid, msg in snapshot.items():
            bridge = msg.get("BridgeId") or msg.get("BridgeID")
            if bridge:
                self._bridges.setdefault(bridge, set()).add(uid)

        # Register every channel first: a bridge can join channels of different groups.
        touched: list[tuple[Call, list[Message], bool]] = []
        for linkedid, members in groups.items():
            call = self._calls.get(linkedid)
            created = call is None
            if call is None:
                call = self._call_from_snapshot(linkedid, members, entries, now)
            if call is None:
                for msg in members:
                    uid = msg.get("Uniqueid") or ""
                    if uid not in self._channels:
                        number = normalise(_text(msg.get("CallerIDNum")), self._plan)
                        ch = _Channel(uid, msg.get("Channel") or "", None, False, number)
                        self._channels[uid] = ch
                        self._by_name[ch.name] = uid
                        self._count(ch, 1)
                continue
            for msg in members:
                uid = msg.get("Uniqueid") or ""
                if uid not in self._channels:
                    self._join(call, uid, msg.get("Channel") or "")
                if uid in status:
                    self._absorb_variables(call, status[uid])
            touched.append((call, members, created))
        # Devices first: routing must know who is busy before a restored caller is offered.
        self._flush_devices(now, out, restored=True)
        for call, members, created in touched:
            self._reconcile(
                call, members, snapshot, entries, status, members_of, now, created, out
            )
        for msg in snapshot.values():
            self._restore_asyncagi(msg, now, out)

    def _restore_asyncagi(self, msg: Message, now: float, out: list[PbxEvent]) -> None:
        """A snapshot's channel sitting in ``AGI(agi:async[,args])``: its AsyncAGIStart went
        to a connection that is gone, and Asterisk keeps it waiting for commands for ever
        (the caller hears silence). Reported as :class:`AsyncAgiStarted` (restored) with
        the environment the snapshot tells (channel, uniqueid, caller, language, context,
        extension, priority, the arguments as ``agi_arg_N``), so the IVR can drive it
        again; the caller's call is in the IVR."""
        data = msg.get("ApplicationData") or ""
        if (msg.get("Application") or "").lower() != "agi" or not (
            data == "agi:async" or data.startswith("agi:async,")
        ):
            return
        uid, name = msg.get("Uniqueid") or "", msg.get("Channel") or ""
        ch = self._channels.get(uid)
        call = self._call_of(ch)
        if call is not None and ch is not None and ch.is_caller and ch.name == call.channel:
            call._agi_kind = "AsyncAGI"
            if call.state is CallState.ARRIVED:
                call.state = CallState.IVR
                entered = IvrEntered(
                    call.call_id, now, "AsyncAGI", msg.get("Context"), restored=True
                )
                self._emit(call, entered, out)
        env = {
            "agi_request": "async",
            "agi_channel": name,
            "agi_language": msg.get("Language") or "en",
            "agi_uniqueid": uid,
            "agi_callerid": msg.get("CallerIDNum") or "unknown",
            "agi_calleridname": msg.get("CallerIDName") or "unknown",
            "agi_context": msg.get("Context") or "",
            "agi_extension": msg.get("Exten") or "",
            "agi_priority": msg.get("Priority") or "",
            "agi_accountcode": msg.get("AccountCode") or "",
        }
        args = data.split(",")[1:]
        env.update({f"agi_arg_{n}": arg for n, arg in enumerate(args, 1)})
        call_id = ch.call_id if ch is not None else None
        out.append(AsyncAgiStarted(now, name, call_id, env, restored=True))

    @staticmethod
    def _ended_unseen(
        call_id: str, arrived_at: float, last_seen: float, answered: bool, now: float
    ) -> CallEnded:
        return CallEnded(
            call_id,
            now,
            cause=None,
            cause_text=None,
            ended_by="system",
            duration=now - arrived_at,
            # When the talk ended was not seen: counting up to now would add the outage.
            talk_time=None,
            answered=answered,
            ended_after=min(max(last_seen, arrived_at), now),
            restored=True,
        )

    def _is_inbound(self, context: str | None) -> bool:
        if not context:
            return False
        return context in self._inbound or any(
            fnmatchcase(context, pattern) for pattern in self._inbound_patterns
        )

    def _lane_of(self, leg: Message | None) -> str | None:
        """The holding lane a snapshot's caller leg is in (by context and extension)."""
        if leg is None:
            return None
        return self._holding.get(leg.get("Context") or "", {}).get(leg.get("Exten") or "")

    def _call_from_snapshot(
        self, linkedid: str, members: list[Message], entries: Mapping[str, Message], now: float
    ) -> Call | None:
        """A call the model never saw: an inbound caller (in a queue or on an inbound DID)."""
        first = next((m for m in members if m.get("Uniqueid") == linkedid), members[0])
        name = first.get("Channel") or ""
        # ``Local/5005@inbound-00000017;1``: the DID and the context the call came in on.
        exten, _, rest = name.partition("/")[2].partition("@")
        local_context = rest.rpartition("-")[0]
        queued = any(m.get("Uniqueid") in entries for m in members)
        if (
            not queued
            and not self._is_inbound(local_context)
            and not self._is_inbound(first.get("Context"))
        ):
            return None
        leg = f"{_base(name)};2" if name.endswith(";1") else name
        pbx = next((m for m in members if m.get("Channel") == leg), first)
        dialled = exten if self._is_inbound(local_context) else _text(first.get("Exten"))
        call = Call(
            call_id=linkedid,
            caller=self._caller(pbx.get("CallerIDNum"), pbx.get("CallerIDName")),
            dialled=dialled,
            channel=leg,
            # A channel moved into a bridge by AMI reports its age since then: the oldest
            # leg tells when the call came in.
            arrived_at=min(_created_at(m, now) for m in members),
        )
        self._add_call(call)
        return call

    @staticmethod
    def _member(channel: str, members_of: Mapping[str, str]) -> Agent:
        interface = _interface(channel)
        return Agent(interface, members_of.get(interface), channel)

    def _reconcile(
        self,
        call: Call,
        members: list[Message],
        snapshot: Mapping[str, Message],
        entries: Mapping[str, Message],
        status: Mapping[str, Message],
        members_of: Mapping[str, str],
        now: float,
        created: bool,
        out: list[PbxEvent],
    ) -> None:
        """Bring a call's state in line with the snapshot, emitting what was missed (marked
        ``restored``)."""
        self._announce(call, out, restored=created)
        caller_uids = call._legs
        entry = next((entries[u] for u in caller_uids if u in entries), None)
        if entry is not None and call.state is not CallState.QUEUED:
            queue = entry.get("Queue") or ""
            wait = _float(entry.get("Wait")) or 0.0
            call.state = CallState.QUEUED
            call.queue = queue
            call.position = _int(entry.get("Position"))
            call.waiting_since = now - wait
            queued = CallQueued(
                call.call_id, now - wait, queue, call.position or 0, restored=True
            )
            self._emit(call, queued, out)
            if created:
                for msg in members:
                    ch = self._channels.get(msg.get("Uniqueid") or "")
                    ringing = msg.get("Application") == "AppQueue" and not msg.get("BridgeId")
                    # A Local agent's ;2 half is the phone side of the leg app_queue dials.
                    if ch is None or ch.is_caller or ch.name.endswith(";2") or not ringing:
                        continue
                    agent = self._member(ch.name, members_of)
                    offered = CallOffered(call.call_id, now, agent, queue, restored=True)
                    self._emit(call, offered, out)
        if call.answered_at is not None:
            return
        leg: Message | None  # below, the caller's leg may not be in the snapshot
        for uid in caller_uids:
            bridge = snapshot[uid].get("BridgeId") if uid in snapshot else None
            others = [u for u in self._bridges.get(bridge or "", ()) if u not in caller_uids]
            if not others:
                continue
            other = self._channels.get(others[0])
            if other is None or other.call_id not in (None, call.call_id):
                continue
            other.call_id = call.call_id
            agent = self._member(other.name, members_of)
            leg = snapshot[uid]
            if leg.get("Application") == "Queue":  # ApplicationData: "sales,tT,,,300"
                call.queue = (leg.get("ApplicationData") or "").split(",")[0] or call.queue
            # Bridged by the product's ACD out of a holding lane (recording 13: the caller's
            # leg stays in the holding context, with no application).
            call.lane = self._lane_of(leg) or call.lane
            # The agent leg's age (since it entered the bridge, for an AMI Bridge) bounds the
            # conversation; before it the caller was waiting, unless Status carries
            # app_queue's own hold time.
            answered_at = max(_created_at(snapshot[other.uniqueid], now), call.arrived_at)
            hold = _float(status[uid].variables().get("QUEUEWAIT")) if uid in status else None
            if hold is None:
                hold = max(0.0, answered_at - (call.waiting_since or call.arrived_at))
            self._connect(call, agent, answered_at, hold)
            answered = CallAnswered(
                call.call_id, answered_at, agent, hold, call.queue, call.lane, restored=True
            )
            self._emit(call, answered, out)
            return
        if entry is None and call.state in (CallState.ARRIVED, CallState.IVR):
            # Parked in a holding lane: the UserEvent that said so is gone with the old
            # connection; the lane is told by where the caller's leg waits.
            leg = next((snapshot[u] for u in caller_uids if u in snapshot and
                        snapshot[u].get("Channel") == call.channel), None)
            lane = self._lane_of(leg)
            if leg is not None and lane is not None:
                call.state = CallState.PARKED
                call.lane = lane
                call.waiting_since = _created_at(leg, now)
                parked = CallParked(
                    call.call_id, call.waiting_since, lane, call.channel, restored=True
                )
                self._emit(call, parked, out)

