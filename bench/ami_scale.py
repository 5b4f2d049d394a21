"""Scale benchmark: the call model's cost per event against the number of live calls.

``python -m bench.ami_ingest --scale`` keeps N calls alive at once (N = 10, 100, 1,000,
10,000) in a synthetic but real-shaped AMI stream, and measures events/s through codec +
call model and through the call model alone on windows of the same size at each N. The cost
per event must not grow with N (issue 13, item 7): the table gives each rate as a ratio to
N = 10.

The traffic is made of the real Asterisk 22.10.1 recordings in ``tests/captures``, frame by
frame (every header Asterisk wrote, in its order), with each call's identifiers renamed —
channel names, Uniqueids/Linkedids, ChannelIds, bridge ids, caller numbers and names, agent
extensions — and a fresh ``Timestamp``. Three kinds of calls:

* **acd** (the product's external ACD, recordings 12 and 11): a caller parks in ``[holding]``
  (``UserEvent: CtiParked``); the ACD originates agent legs (``ChannelId``, caller ID = the
  caller's number, no ``CTI_CALLID``) — 0 to 3 that nobody answers (``OriginateResponse:
  Failure``, recording 11) then one that answers and is bridged; the caller hangs up.
  Each agent leg's ``DialBegin`` is that of an unattached originated channel carrying the
  caller's number: the one that used to scan every live call (``_parked_call_for``).
* **queue** (recording 01): a caller waits in app_queue ``sales``, an agent answers.
* **callback** (an ACD callback, shapes of recordings 12, 05 and 01): an agent leg is
  originated with ``CTI_CALLBACK``, answers, and its ``;1`` half dials the customer's Local
  channel: an outbound call (``_outbound_dial``).

Each call is cut into the bursts Asterisk sends at once (a silence of more than 0.3 s in the
recording ends a burst). N slots each hold one call; the stream is a seeded random walk over
the slots (one burst of one slot at a time), and a slot whose call ends starts the next one
in the same burst, so N calls stay alive. Before the measured windows, each slot's first call
is played up to a uniformly drawn burst (untimed; longer calls drawn proportionally more
often, as the walk finds them), so every N sees calls at every stage in the same mix.

The stream is generated (and, for "model alone", parsed) before each timed window; only
``Parser.feed`` and ``CallModel.handle`` are timed. Each N has its own model, warmed up
first; the windows then go round-robin over the Ns (codec + model for each N, model alone
for each N, ``repeat`` times, after one untimed window of each), so the live calls carry on
across a model's windows and a slow patch of a shared machine hits every N alike; the
median of the runs is reported. In the "model alone" windows each agent-leg and callback
DialBegin is also timed on its own (µs per dial: the cost that used to grow, whatever its
share of the stream).
"""

from __future__ import annotations

import gc
import json
import os
import platform
import random
import re
import statistics
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from itertools import count, islice
from pathlib import Path
from typing import Any

from cti.ami.codec import Parser
from cti.calls.model import CallModel
from cti.capture import captures_dir

READ_SIZE = 65536
#: A silence longer than this in a recording ends one burst of events.
BURST_GAP = 0.3
#: Shares of the call kinds, and how many unanswered offers an ACD caller gets before one
#: is answered (drawn uniformly from this tuple).
DEFAULT_MIX = {"acd": 0.6, "queue": 0.2, "callback": 0.2}
MISSED_OFFERS = (0, 1, 2, 3)
#: A flat table: every rate within this fraction of its N = 10 rate.
FLAT_TOLERANCE = 0.15
EPOCH = 1_800_000_000
DID_NAMES = (
    "李娜", "Дмитрий Иванов", "Ōta Hanako", "Kim Park", "Zoë Müller", "王芳", "Alice Example"
)

Headers = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Frame:
    """One AMI frame as it goes on the wire, identifiers as ``{placeholders}``; ``dial`` is
    ``offer`` for the DialBegin of an ACD agent leg (unattached, with the caller's number),
    ``outbound`` for a callback's dial to the customer, else empty."""

    text: str
    name: str
    dial: str = ""


Burst = tuple[Frame, ...]


def _records(capture: str) -> list[dict[str, Any]]:
    path = captures_dir() / f"{capture}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _headers(record: dict[str, Any]) -> Headers:
    return [(k, v) for k, v in record["headers"]]


def _first(records: list[dict[str, Any]], pred: Callable[[dict[str, Any]], bool]) -> int:
    return next(i for i, r in enumerate(records) if pred(r))


def _is_event(record: dict[str, Any], name: str | None = None, **values: str) -> bool:
    if record.get("dir") != "in" or record.get("kind") != "event":
        return False
    if name is not None and record["name"] != name:
        return False
    found = dict(record["headers"])
    return all(found.get(k) == v for k, v in values.items())


def _mentions(record: dict[str, Any], keys: tuple[str, ...]) -> bool:
    return any(key in value for _, value in record.get("headers", ()) for key in keys)


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


class _Rewriter:
    """Turns recorded headers into a frame template: each identifier of the recording
    (``tokens``: literal -> placeholder) becomes ``{placeholder}``, ``Timestamp`` becomes
    ``{ts}``; ``fields`` replaces whole ``(key, value)`` pairs, ``linked`` the values of
    ``*Linkedid`` keys (for a channel whose Uniqueid and Linkedid play different roles)."""

    def __init__(
        self,
        tokens: dict[str, str],
        *,
        fields: dict[tuple[str, str], str] | None = None,
        linked: dict[str, str] | None = None,
    ) -> None:
        self._tokens = tokens
        self._fields = fields or {}
        self._linked = linked or {}
        # Longest first, and never inside a longer number (…27.94 is not …27.941).
        alternatives = "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True))
        self._re = re.compile(rf"(?<![0-9A-Za-z.])({alternatives})(?![0-9])")

    def _sub(self, text: str) -> str:
        out, pos = [], 0
        for m in self._re.finditer(text):
            out.append(_escape(text[pos : m.start()]))
            out.append(f"{{{self._tokens[m.group(1)]}}}")
            pos = m.end()
        out.append(_escape(text[pos:]))
        return "".join(out)

    def _value(self, key: str, value: str) -> str:
        if key == "Timestamp":
            return "{ts}"
        if key.endswith("Linkedid") and value in self._linked:
            return f"{{{self._linked[value]}}}"
        override = self._fields.get((key, value))
        if override is not None:
            return override
        return self._sub(value)

    def frame(self, headers: Headers, dial: str = "") -> Frame:
        lines = [f"{self._sub(k)}: {self._value(k, v)}\r\n" for k, v in headers]
        return Frame("".join(lines) + "\r\n", headers[0][1], dial)


def _bursts(
    events: list[Headers], rewrite: _Rewriter, dial: Callable[[Headers], str]
) -> list[Burst]:
    """``events`` (in recorded order) as templates, cut where the recording fell silent."""
    bursts: list[Burst] = []
    current: list[Frame] = []
    last = None
    for headers in events:
        at = float(dict(headers)["Timestamp"])
        if current and last is not None and at - last > BURST_GAP:
            bursts.append(tuple(current))
            current = []
        current.append(rewrite.frame(headers, dial(headers)))
        last = at
    if current:
        bursts.append(tuple(current))
    return bursts


def _dial_to(uid: str, kind: str) -> Callable[[Headers], str]:
    def dial(headers: Headers) -> str:
        dest = dict(headers).get("DestUniqueid")
        return kind if headers[0][1] == "DialBegin" and dest == uid else ""

    return dial


def _no_dial(headers: Headers) -> str:
    return ""


# ---------------------------------------------------------------------- the recordings

# Recording 12, first caller: 李娜 <+8613700137000> on Local/5006@inbound-0000002f (parked
# with music on hold); her answered agent leg is ChannelId acd-0001 on Local/6001@agents.
_R12_CALLER = "Local/5006@inbound-0000002f"
_R12_UIDS = ("1795435227.94", "1795435227.95")
_R12_NUMBER, _R12_NAME = "+8613700137000", "李娜"
_R12_LEG, _R12_ACD = "Local/6001@agents-00000036", "acd-0001"
_AGENT_TOKENS = {"Local/6001@agents": "device", "6001@agents": "dialstring", "6001": "ext"}


@dataclass(frozen=True)
class Templates:
    acd_arrival: list[Burst]
    acd_missed_offer: list[Burst]
    acd_answered: list[Burst]
    queue: list[Burst]
    callback: list[Burst]


def _acd_templates() -> tuple[list[Burst], list[Burst], list[Burst]]:
    r12 = _records("12-external-acd")
    caller_tokens = {
        _R12_CALLER: "caller",
        _R12_UIDS[0]: "uid1",
        _R12_UIDS[1]: "uid2",
        _R12_NUMBER: "number",
        _R12_NAME: "name",
    }
    # Arrival until parked: nothing of another call comes in between in the recording.
    start = _first(r12, lambda r: _is_event(r, "Newchannel", Channel=f"{_R12_CALLER};1"))
    end = _first(r12, lambda r: _is_event(r, "MusicOnHoldStart", Channel=f"{_R12_CALLER};2"))
    arrival = [_headers(r) for r in r12[start : end + 1] if _is_event(r)]
    arrival_bursts = _bursts(arrival, _Rewriter(caller_tokens), _no_dial)

    # The answered offer, the bridge, the hang-ups: every frame naming the caller, the
    # agent leg or their bridge, and the agent's device states while the leg lives.
    bridge = next(
        dict(r["headers"])["BridgeUniqueid"]
        for r in r12
        if _is_event(r, "BridgeEnter", Channel=f"{_R12_CALLER};2")
    )
    keys = (_R12_CALLER, *_R12_UIDS, _R12_LEG, _R12_ACD, bridge)
    leg_span = [i for i, r in enumerate(r12) if _mentions(r, (_R12_LEG, _R12_ACD))]
    answered = []
    for i, r in enumerate(r12[end + 1 :], end + 1):
        if not _is_event(r):
            continue
        device = dict(r["headers"]).get("Device") or dict(r["headers"]).get("Interface")
        if _mentions(r, keys) or (
            device == "Local/6001@agents" and leg_span[0] <= i <= leg_span[-1]
        ):
            answered.append(_headers(r))
    answered_rewrite = _Rewriter(
        {**caller_tokens, _R12_LEG: "leg", _R12_ACD: "acd", bridge: "bridge", **_AGENT_TOKENS}
    )
    answered_bursts = _bursts(answered, answered_rewrite, _dial_to(_R12_ACD, "offer"))

    # Recording 11 (B): an agent leg with a ChannelId that nobody answers (Timeout):
    # OriginateResponse Failure names the leg's Uniqueid.
    r11 = _records("11-acd-failures")
    leg11, acd11 = "Local/6101@agents-noanswer-0000002d", "extacd-agent-0002"
    start = _first(r11, lambda r: _is_event(r, "Newchannel", Channel=f"{leg11};1"))
    end = _first(r11, lambda r: r.get("dir") == "note" and r["text"].startswith("C)"))
    missed = [
        _headers(r)
        for r in r11[start:end]
        if _is_event(r) and not _mentions(r, ("Local/5003@inbound",))
    ]
    missed_rewrite = _Rewriter(
        {
            leg11: "leg",
            acd11: "acd",
            "Local/6101@agents-noanswer": "device",
            "6101@agents-noanswer": "dialstring",
            "6101": "ext",
            "+15552220000": "number",
            "Kai Failure": "name",
        }
    )
    missed_bursts = _bursts(missed, missed_rewrite, _dial_to(acd11, "offer"))
    return arrival_bursts, missed_bursts, answered_bursts


def _queue_template() -> list[Burst]:
    r01 = _records("01-queue-answered")
    caller = "Local/5000@inbound-00000000"
    start = _first(r01, lambda r: _is_event(r, "Newchannel", Channel=f"{caller};1"))
    events = [_headers(r) for r in r01[start:] if _is_event(r)]
    bridge = next(dict(h)["BridgeUniqueid"] for h in events if h[0][1] == "BridgeCreate")
    rewrite = _Rewriter(
        {
            caller: "caller",
            "1795356693.0": "uid1",
            "1795356693.1": "uid2",
            "1795356693.2": "uid3",
            "1795356693.3": "uid4",
            "Local/6001@agents-00000001": "leg",
            "+15551230001": "number",
            "5551230001": "raw",
            "Alice Example": "name",
            bridge: "bridge",
            **_AGENT_TOKENS,
        }
    )
    return _bursts(events, rewrite, _no_dial)


def _callback_template() -> list[Burst]:
    """An ACD callback: the agent leg is originated as in recording 12 (acd-0001) with the
    ``CTI_CALLBACK`` VarSets Asterisk writes for an Originate variable (recording 05's
    ``CTI_CALLID``); once answered, its ;1 half dials the customer's Local channel, which
    is recording 01's queue dial to an agent with the roles moved: 01's caller pair is the
    agent leg (its ;2, the dialling side, becomes the leg's ;1), 01's agent pair the
    customer; app_queue's own events and variables are left out."""
    r12 = _records("12-external-acd")
    first = _first(r12, lambda r: _is_event(r) and _mentions(r, (_R12_LEG, _R12_ACD)))
    last = _first(r12, lambda r: _is_event(r, "OriginateResponse", Uniqueid=_R12_ACD))
    leg = [
        _headers(r)
        for i, r in enumerate(r12[first : last + 1], first)
        if _is_event(r)
        and (
            _mentions(r, (_R12_LEG, _R12_ACD))
            or dict(r["headers"]).get("Device") == "Local/6001@agents"
        )
    ]
    # The Originate's CTI_CALLBACK variable, set on both halves before the leg dials.
    r05 = _records("05-external-acd-bridge")
    varsets = []
    for r in r05:
        if _is_event(r, "VarSet", Variable="CTI_CALLID"):
            headers = [
                (k, {"Variable": "CTI_CALLBACK", "Value": "cb-0000"}.get(k, v))
                for k, v in _headers(r)
            ]
            # Not the caller's leg: CTI_CALLID (a channelvar in the lab) stays empty.
            varsets.append(
                [(k, "CTI_CALLID=" if v.startswith("CTI_CALLID=") else v) for k, v in headers]
            )
    at = next(i for i, h in enumerate(leg) if h[0][1] == "Newexten") + 1
    for h in varsets:
        h[2] = ("Timestamp", dict(leg[at - 1])["Timestamp"])
    leg[at:at] = varsets
    leg_rewrite = _Rewriter(
        {
            _R12_LEG: "leg",
            _R12_ACD: "acd",
            "Local/6002@agents-0000000b": "leg",
            "extacd-agent-0001": "acd",
            "Local/6002@agents": "device",
            "6002": "ext",
            "cb-0000": "request",
            _R12_NUMBER: "number",
            **_AGENT_TOKENS,
        }
    )
    bursts = _bursts(leg, leg_rewrite, _dial_to(_R12_ACD, "agent-leg"))

    r01 = _records("01-queue-answered")
    caller, agent = "Local/5000@inbound-00000000", "Local/6001@agents-00000001"
    start = _first(r01, lambda r: _is_event(r, "Newchannel", Channel=f"{agent};1"))
    kept = {
        "Newchannel", "Newexten", "NewCallerid", "NewConnectedLine", "LocalBridge",
        "DialBegin", "DialState", "DialEnd", "Newstate", "BridgeCreate", "BridgeEnter",
        "BridgeLeave", "BridgeDestroy", "VarSet", "HangupRequest", "SoftHangupRequest",
        "Hangup", "DeviceStateChange",
    }  # fmt: skip
    dial = []
    for r in r01[start:]:
        if not _is_event(r) or r["name"] not in kept:
            continue
        fields = dict(r["headers"])
        if r["name"] == "VarSet" and fields.get("Variable") != "BRIDGEPEER":
            continue
        if r["name"] == "DeviceStateChange" and fields.get("Device") not in (
            "Local/6001@agents",
            "Local/5000@inbound",
        ):
            continue
        dial.append(_headers(r))
    bridge = next(dict(h)["BridgeUniqueid"] for h in dial if h[0][1] == "BridgeCreate")
    dial_rewrite = _Rewriter(
        {
            f"{caller};2": "leg1",
            f"{caller};1": "leg2",
            "1795356693.1": "acd",
            "1795356693.0": "acd2",
            agent: "customer",
            "1795356693.2": "cuid1",
            "1795356693.3": "cuid2",
            "Local/6001@agents": "customer_device",
            "Local/5000@inbound": "device",
            "+15551230001": "number",
            "5551230001": "number",
            "Alice Example": "name",
            bridge: "bridge",
        },
        linked={"1795356693.0": "acd"},
        fields={
            ("Context", "queue-entry"): "outbound",
            ("Exten", "sales"): "{number}",
            ("DestContext", "agents"): "customers",
            ("DestExten", "sales"): "{number}",
            ("Context", "agents"): "customers",
            ("Exten", "6001"): "{number}",
            ("Context", "caller-script"): "agents",
            ("Exten", "hangup-after"): "{ext}",
            ("ChanVariable", "CTI_CALLID=1795356693.1"): "CTI_CALLID=",
            ("DestChanVariable", "CTI_CALLID=1795356693.1"): "CTI_CALLID=",
        },
    )
    return bursts + _bursts(dial, dial_rewrite, _dial_to("1795356693.2", "outbound"))


@cache
def templates() -> Templates:
    arrival, missed, answered = _acd_templates()
    return Templates(arrival, missed, answered, _queue_template(), _callback_template())


# ---------------------------------------------------------------------- the traffic


class Traffic:
    """A seeded AMI stream that keeps ``calls`` calls alive (see the module docstring)."""

    def __init__(
        self,
        calls: int,
        *,
        seed: int = 13,
        mix: dict[str, float] | None = None,
        missed_offers: tuple[int, ...] = MISSED_OFFERS,
    ) -> None:
        self.calls = calls
        self.rng = random.Random(seed)
        self._t = templates()
        mix = mix or DEFAULT_MIX
        self._kinds = list(mix)
        self._weights = [mix[k] for k in self._kinds]
        self._missed = missed_offers
        self._seq = count(1)
        self._at = float(EPOCH)
        self._agents = max(3, calls // 2)
        self._slots: list[deque[tuple[Burst, dict[str, str]]]] = []
        self._stream: Iterator[tuple[str, Frame]] | None = None
        #: Calls started after the warm-up, by kind.
        self.started: Counter[str] = Counter()

    # -- identities

    def _uid(self) -> str:
        return f"{EPOCH}.{next(self._seq)}"

    def _suffix(self) -> str:
        return f"{next(self._seq):08x}"

    def _agent(self) -> dict[str, str]:
        ext = str(6001 + self.rng.randrange(self._agents))
        acd = f"acd-{next(self._seq):06d}"
        return {"ext": ext, "acd": acd, "acd2": f"{acd}-2", "dialstring": f"{ext}@agents"}

    def _caller(self, did: str) -> dict[str, str]:
        digits = f"555{self.rng.randrange(10**7):07d}"
        return {
            "caller": f"Local/{did}@inbound-{self._suffix()}",
            "uid1": self._uid(),
            "uid2": self._uid(),
            "number": f"+1{digits}",
            "raw": digits,
            "name": self.rng.choice(DID_NAMES),
        }

    def _bridge(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # -- calls

    def _call(self) -> deque[tuple[Burst, dict[str, str]]]:
        kind = self.rng.choices(self._kinds, self._weights)[0]
        self.started[kind] += 1
        t = self._t
        out: deque[tuple[Burst, dict[str, str]]] = deque()
        if kind == "acd":
            caller = self._caller("5006")
            out.extend((b, caller) for b in t.acd_arrival)
            for _ in range(self.rng.choice(self._missed)):
                agent = self._agent()
                missed = {
                    **caller,
                    **agent,
                    "leg": f"Local/{agent['ext']}@agents-noanswer-{self._suffix()}",
                    "device": f"Local/{agent['ext']}@agents-noanswer",
                    "dialstring": f"{agent['ext']}@agents-noanswer",
                }
                out.extend((b, missed) for b in t.acd_missed_offer)
            agent = self._agent()
            answered = {
                **caller,
                **agent,
                "leg": f"Local/{agent['ext']}@agents-{self._suffix()}",
                "device": f"Local/{agent['ext']}@agents",
                "bridge": self._bridge(),
            }
            out.extend((b, answered) for b in t.acd_answered)
        elif kind == "queue":
            caller = self._caller("5000")
            agent = self._agent()
            values = {
                **caller,
                **agent,
                "uid3": self._uid(),
                "uid4": self._uid(),
                "leg": f"Local/{agent['ext']}@agents-{self._suffix()}",
                "device": f"Local/{agent['ext']}@agents",
                "bridge": self._bridge(),
            }
            out.extend((b, values) for b in t.queue)
        else:
            customer = self._caller("0")  # a number and a name; no inbound channel
            agent = self._agent()
            leg = f"Local/{agent['ext']}@agents-{self._suffix()}"
            values = {
                **customer,
                **agent,
                "leg": leg,
                "leg1": f"{leg};1",
                "leg2": f"{leg};2",
                "device": f"Local/{agent['ext']}@agents",
                "request": f"cb-{next(self._seq)}",
                "customer": f"Local/{customer['number']}@customers-{self._suffix()}",
                "customer_device": f"Local/{customer['number']}@customers",
                "cuid1": self._uid(),
                "cuid2": self._uid(),
                "bridge": self._bridge(),
            }
            out.extend((b, values) for b in t.callback)
        return out

    def _render(self, burst: Burst, values: dict[str, str]) -> Iterator[tuple[str, Frame]]:
        for frame in burst:
            self._at += 0.001
            values["ts"] = f"{self._at:.6f}"
            yield frame.text.format_map(values), frame

    def _longest(self) -> int:
        t = self._t
        acd = len(t.acd_arrival) + max(self._missed) * len(t.acd_missed_offer)
        return max(acd + len(t.acd_answered), len(t.queue), len(t.callback))

    def warm_up(self) -> Iterator[tuple[str, Frame]]:
        """Starts every slot's first call and plays it up to a uniformly drawn burst. As in
        the walk's steady state, a call with more bursts is proportionally more likely to
        be found in a slot (length-biased draw), so small and large N see the same mix."""
        longest = self._longest()
        for _ in range(self.calls):
            while True:
                call = self._call()
                if self.rng.random() * (longest - 1) < len(call) - 1:
                    break
            played = self.rng.randrange(1, len(call))
            for _ in range(played):
                yield from self._render(*call.popleft())
            self._slots.append(call)
        self.started.clear()

    def _walk(self) -> Iterator[tuple[str, Frame]]:
        slots, randrange = self._slots, self.rng.randrange
        while True:
            i = randrange(len(slots))
            yield from self._render(*slots[i].popleft())
            if not slots[i]:
                # The call ended: the next one in this slot arrives at once.
                slots[i] = self._call()
                yield from self._render(*slots[i].popleft())

    def frames(self) -> Iterator[tuple[str, Frame]]:
        """The stream after :meth:`warm_up`, frame by frame (wire text, template)."""
        if self._stream is None:
            self._stream = self._walk()
        return self._stream

    def window(self, events: int) -> tuple[bytes, list[str]]:
        """The next ``events`` frames of the stream as bytes, and each frame's ``dial``."""
        texts: list[str] = []
        dials: list[str] = []
        for text, frame in islice(self.frames(), events):
            texts.append(text)
            dials.append(frame.dial)
        return "".join(texts).encode(), dials


# ---------------------------------------------------------------------- measuring

#: The DialBegins timed one by one: an ACD agent leg's (by the caller's number), and a
#: callback's dial to the customer.
TIMED_DIALS = ("offer", "outbound")


def parse_range(text: str) -> tuple[int, ...]:
    """``0-3`` -> (0, 1, 2, 3); ``2`` -> (2,)."""
    low, _, high = text.partition("-")
    values = tuple(range(int(low), int(high or low) + 1))
    if not values or values[0] < 0:
        raise ValueError(f"not a range of counts: {text!r}")
    return values


def parse_mix(text: str) -> dict[str, float]:
    """``acd=0.6,queue=0.2,callback=0.2`` -> shares (kinds: acd, queue, callback)."""
    mix = {}
    for part in text.split(","):
        kind, _, share = part.partition("=")
        if kind.strip() not in DEFAULT_MIX:
            raise ValueError(f"unknown call kind {kind!r} (acd, queue, callback)")
        mix[kind.strip()] = float(share)
    if not any(mix.values()):
        raise ValueError("the mix needs one kind with a share above 0")
    return mix


def _reads(data: bytes) -> list[bytes]:
    return [data[i : i + READ_SIZE] for i in range(0, len(data), READ_SIZE)]


def _feed(model: CallModel, frames: Iterator[tuple[str, Frame]], chunk: int = 20_000) -> int:
    """Untimed: ``frames`` through codec + model, ``chunk`` frames at a time."""
    n = 0
    parser = Parser(expect_banner=False)
    while True:
        texts = [text for text, _ in islice(frames, chunk)]
        if not texts:
            return n
        for message in parser.feed("".join(texts).encode()):
            model.handle(message)
            n += 1


def _codec_and_model(model: CallModel, data: bytes, dials: list[str]) -> dict[str, Any]:
    reads = _reads(data)
    parser = Parser(expect_banner=False)
    handle = model.handle
    n = 0
    gc.collect()
    start = time.perf_counter()
    for chunk in reads:
        for message in parser.feed(chunk):
            handle(message)
            n += 1
    return {"events": n, "seconds": time.perf_counter() - start}


def _model_alone(model: CallModel, data: bytes, dials: list[str]) -> dict[str, Any]:
    """The model on frames parsed beforehand; the DialBegins of :data:`TIMED_DIALS` are
    also timed one by one (their own cost, whatever their share of the stream)."""
    parser = Parser(expect_banner=False)
    messages = [m for chunk in _reads(data) for m in parser.feed(chunk)]
    if len(messages) != len(dials):
        raise RuntimeError(f"{len(dials)} frames generated, {len(messages)} parsed")
    handle = model.handle
    clock = time.perf_counter
    spent = dict.fromkeys(TIMED_DIALS, 0.0)
    gc.collect()
    start = clock()
    for message, dial in zip(messages, dials, strict=True):
        if dial in spent:
            t0 = clock()
            handle(message)
            spent[dial] += clock() - t0
        else:
            handle(message)
    seconds = clock() - start
    return {"events": len(messages), "seconds": seconds, "dial_seconds": spent}


_MODES: dict[str, Callable[[CallModel, bytes, list[str]], dict[str, Any]]] = {
    "codec+model": _codec_and_model,
    "model": _model_alone,
}


class _Point:
    """One N: its traffic, its model (warmed up to N live calls), and its runs."""

    def __init__(
        self, calls: int, window: int, seed: int, mix: dict[str, float] | None,
        missed_offers: tuple[int, ...],
    ) -> None:  # fmt: skip
        self.calls, self.window = calls, window
        self.traffic = Traffic(calls, seed=seed, mix=mix, missed_offers=missed_offers)
        self.model = CallModel()
        t0 = time.perf_counter()
        self.warm_up_events = _feed(self.model, self.traffic.warm_up())
        self.warm_up_s = time.perf_counter() - t0
        # One untimed window of each kind first: the allocator and the caches settle.
        for timed in _MODES.values():
            timed(self.model, *self.traffic.window(window))
        self.live = [len(self.model.calls)]
        self.runs: dict[str, list[float]] = {mode: [] for mode in _MODES}
        self.dial_us: dict[str, list[float]] = {d: [] for d in TIMED_DIALS}
        self.dials: Counter[str] = Counter()
        self.events = 0

    def time(self, mode: str) -> None:
        data, dials = self.traffic.window(self.window)
        result = _MODES[mode](self.model, data, dials)
        self.runs[mode].append(result["events"] / result["seconds"])
        self.events += result["events"]
        self.live.append(len(self.model.calls))
        seen = Counter(dials)
        self.dials.update({d: seen[d] for d in TIMED_DIALS})
        for d, seconds in result.get("dial_seconds", {}).items():
            if seen[d]:
                self.dial_us[d].append(seconds / seen[d] * 1e6)

    def result(self) -> dict[str, Any]:
        runs, us = self.runs, self.dial_us
        return {
            "calls": self.calls,
            "window": self.window,
            "warm_up_events": self.warm_up_events,
            "warm_up_s": round(self.warm_up_s, 1),
            "live_min": min(self.live),
            "live_max": max(self.live),
            "measured_events": self.events,
            "dials": dict(self.dials),
            "codec_model_per_s": round(statistics.median(runs["codec+model"])),
            "model_per_s": round(statistics.median(runs["model"])),
            "codec_model_runs": [round(r) for r in runs["codec+model"]],
            "model_runs": [round(r) for r in runs["model"]],
            "dial_us": {d: round(statistics.median(v), 1) if v else None for d, v in us.items()},
            "calls_started": dict(self.traffic.started),
        }


def run(
    calls: list[int],
    *,
    window: int,
    repeat: int,
    seed: int,
    mix: dict[str, float] | None = None,
    missed_offers: tuple[int, ...] = MISSED_OFFERS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Warm a model up to each N first; then time the windows round-robin (every N's codec +
    model window, every N's model-alone window, ``repeat`` times), so that a slow patch of
    a shared machine weighs on every N alike."""
    points = []
    for n in calls:
        points.append(_Point(n, window, seed, mix, missed_offers))
        if progress is not None:
            p = points[-1]
            progress(f"  N={n:,}: warm-up {p.warm_up_events:,} events, {p.warm_up_s:.1f} s")
    for _ in range(repeat):
        for mode in _MODES:
            for point in points:
                point.time(mode)
    rows = [p.result() for p in points]
    if progress is not None:
        for r in rows:
            progress(
                f"  N={r['calls']:,}: codec+model/s {r['codec_model_runs']}; "
                f"model/s {r['model_runs']}"
            )
    base = rows[0]
    for r in rows:
        r["ratio_codec_model"] = round(r["codec_model_per_s"] / base["codec_model_per_s"], 3)
        r["ratio_model"] = round(r["model_per_s"] / base["model_per_s"], 3)
    flat = all(
        abs(r[k] - 1) <= FLAT_TOLERANCE for r in rows for k in ("ratio_codec_model", "ratio_model")
    )
    return {
        "machine": machine(),
        "mix": mix or DEFAULT_MIX,
        "missed_offers": list(missed_offers),
        "seed": seed,
        "repeat": repeat,
        "window": window,
        "rows": rows,
        "flat": flat,
    }


def machine() -> str:
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(result: dict[str, Any]) -> str:
    rows = result["rows"]
    mix = ", ".join(f"{k} {v:g}" for k, v in result["mix"].items())
    missed = result["missed_offers"]
    header = (
        f"{'N':>7}{'live calls':>15}{'events':>8}{'dials':>7}{'codec+model/s':>15}"
        f"{'model/s':>9}{'ratio c+m':>11}{'ratio model':>13}{'offer µs':>10}{'outbound µs':>13}"
    )
    lines = [
        f"machine: {result['machine']}",
        f"scale: mix {mix}; {min(missed)}-{max(missed)} unanswered offers an ACD caller; "
        f"seed {result['seed']}; {result['window']:,} events a window; "
        f"median of {result['repeat']} windows a column",
        "",
        header,
        "-" * len(header),
    ]
    for r in rows:
        timed = sum(r["dials"].values())
        share = 100 * timed / r["measured_events"]
        live = f"{r['live_min']:,}-{r['live_max']:,}"
        offer, outbound = (r["dial_us"][d] for d in TIMED_DIALS)
        lines.append(
            f"{r['calls']:>7,}{live:>15}{r['window']:>8,}"
            f"{share:>6.1f}%{r['codec_model_per_s']:>15,}{r['model_per_s']:>9,}"
            f"{r['ratio_codec_model']:>11.2f}{r['ratio_model']:>13.2f}"
            f"{_us(offer):>10}{_us(outbound):>13}"
        )
    lines.append("")
    verdict = "flat" if result["flat"] else "NOT flat"
    lines.append(
        f"cost per event against N = {rows[0]['calls']:,}: {verdict} "
        f"(goal: every ratio within 1 ± {FLAT_TOLERANCE:g})"
    )
    return "\n".join(lines)


def main(
    calls: list[int],
    *,
    window: int,
    repeat: int,
    seed: int,
    mix: dict[str, float] | None = None,
    missed_offers: tuple[int, ...] = MISSED_OFFERS,
    json_path: Path | None = None,
    check: bool = False,
) -> int:
    """``python -m bench.ami_ingest --scale``: print the table (exit 1 with ``check`` when it
    is not flat)."""
    print(f"scale: warming up and timing N = {', '.join(f'{n:,}' for n in calls)} ...", flush=True)
    result = run(
        calls,
        window=window,
        repeat=repeat,
        seed=seed,
        mix=mix,
        missed_offers=missed_offers,
        progress=lambda line: print(line, flush=True),
    )
    print()
    print(report(result))
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    return 1 if check and not result["flat"] else 0
