"""Recording 14 (Local channel optimisation, a caller ID masked by the dialplan, a caller's
blind transfer with ``#1``) against the simulator, in the style of
``test_pbx_simulator_conformance``: the recording's actions are replayed at their recorded
relative times against the simulator with the lab config of the recording
(``Settings().with_lab_additions()``: DID 5007 masks the caller ID, DID 5008 goes to queue
``desk``), then compared with the recording. Compared:

* per channel, mapped by role (the n-th ``Local/<exten>@<context>`` pair of the recording
  is the n-th of the simulator's), the sequence of event names and key fields, as for the
  other recordings; the OriginateResponse outcomes and the BlindTransfer fields;
* per channel, the caller ID and connected line of every event (part b: where the masked
  identity shows and where the original one stays) and each channel's Linkedid by role
  (the transferred agent leg's Dial keeps the caller's);
* part a: LocalOptimizationBegin/End (which channels are LocalOne, LocalTwo and Source,
  ``DestUniqueId`` = LocalTwo's Uniqueid, the same ``Id``, ``Success: No``, the field
  names), the swap itself in order (BridgeLeave of the phone leg from the Dial bridge, of
  the desk ;1 from the queue bridge, BridgeEnter of the phone leg with ``SwapUniqueid`` =
  the desk ;1's, End, BridgeLeave of the desk ;2, BridgeDestroy of the Dial bridge), then
  the hang-up of the desk pair;
* app_queue's view: AgentComplete per call (caller, agent leg, queue, member, Reason,
  HoldTime, TalkTime), every QueueMemberStatus (member, Status, InCall, calls taken
  since the first, LastCall), every ExtensionStatus in order;
* and that the call model, fed the simulator's output, reaches the recording's outcomes.

Left out, and why (besides ``NOISE`` of the conformance test: VarSet, DeviceStateChange,
NewConnectedLine, OriginateResponse order):

* Nothing per channel: every role's sequence matches the recording as it is.
* The order within the desk pair's hang-up (SoftHangupRequest/HangupRequest/Hangup of
  both halves and the member's QueueMemberStatus): it varied between lab runs (README);
  those events are compared as a set.
* History the lab's Asterisk had before the recording: members' CallsTaken (compared as
  the increase since each member's first event) and LastCall values older than the
  recording.
* Uniqueids, Linkedids and bridge ids are compared by role (bridges by creation order).
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Iterable
from functools import cache
from typing import Any

import pytest

from cti.ami.codec import Message
from cti.calls.events import (
    CallAnswered,
    CallArrived,
    CallEnded,
    CallTransferred,
    DeviceStateChanged,
)
from cti.calls.model import CallModel
from cti.capture import Received, captures_dir
from cti.capture import replay as model_replay
from pbx_simulator import Settings
from pbx_simulator.dialplan import Step

from .test_pbx_simulator_conformance import (
    _BASE,
    NOISE,
    RoleMap,
    compare,
    per_channel,
    replay,
)
from .test_pbx_simulator_core import Harness

NAME = "14-local-optimization-callerid"
SETTINGS = Settings().with_lab_additions()

Headers = list[tuple[str, str]]


@cache
def _run() -> tuple[list[Headers], list[Headers]]:
    captured, simulated, _ = replay(NAME, settings=SETTINGS)
    return [[tuple(kv) for kv in h] for h in captured], simulated


class Side:
    """One side's events, with channels, unique IDs and bridges by role."""

    def __init__(self, events: list[Headers]) -> None:
        self.events = [Message(h) for h in events]
        self.roles = RoleMap()
        per_channel(events, self.roles)  # roles in order of appearance, as compared
        self.uids: dict[str, str] = {}
        self.bridges: dict[str, str] = {}
        for m in self.events:
            if m.get("Event") == "Newchannel":
                self.uids[m["Uniqueid"]] = self.roles.role(m["Channel"])
            elif m.get("Event") == "BridgeCreate":
                self.bridges[m["BridgeUniqueid"]] = f"bridge#{len(self.bridges)}"
        self.start = float(next(m["Timestamp"] for m in self.events if m.get("Timestamp")))

    def role(self, channel: str | None) -> str | None:
        return None if channel is None else self.roles.role(channel)

    def uid(self, uniqueid: str | None) -> str | None:
        return self.uids.get(uniqueid or "", uniqueid)

    def named(self, name: str) -> list[Message]:
        return [m for m in self.events if m.get("Event") == name]


@pytest.fixture(scope="module")
def sides() -> tuple[Side, Side]:
    captured, simulated = _run()
    return Side(captured), Side(simulated)


# ---------------------------------------------------------------------------- per channel


def test_per_channel_event_sequences() -> None:
    """As for the other recordings; also OriginateResponse outcomes and BlindTransfer's
    Result, IsExternal (No: the DTMF feature), Context xfer and Extension 6004."""
    compare(NAME, settings=SETTINGS)


def _identities(side: Side) -> dict[str, list[tuple[str | None, ...]]]:
    out: dict[str, list[tuple[str | None, ...]]] = defaultdict(list)
    for m in side.events:
        name, channel = m.get("Event"), m.get("Channel")
        if name in NOISE or not channel or not _BASE.fullmatch(channel):
            continue
        out[side.role(channel) or ""].append(
            (
                name,
                m.get("CallerIDNum"),
                m.get("CallerIDName"),
                m.get("ConnectedLineNum"),
                m.get("ConnectedLineName"),
                side.uid(m.get("Linkedid")),
            )
        )
    return out


def test_caller_ids_and_linkedids_on_every_channel_event(sides: tuple[Side, Side]) -> None:
    recorded, simulated = sides
    want, got = _identities(recorded), _identities(simulated)
    assert got.keys() == want.keys()
    for role in want:
        assert got[role] == want[role], role
    # (c) the agent leg's Dial after the transfer keeps the caller's Linkedid.
    assert {e[5] for e in want["Local/6004@agents#0;1"]} == {"Local/5000@inbound#0;1"}


def test_masked_caller_id(sides: tuple[Side, Side]) -> None:
    """(b) Three NewCallerid on the caller's ;2; the queue events carry the masked
    identity; the ;1 leg and the agent leg's caller ID keep the original."""
    for side in sides:
        bruno = "Local/5007@inbound#0;2"
        changes = [
            (m["CallerIDNum"], m["CallerIDName"], m["Context"], m["Priority"])
            for m in side.named("NewCallerid")
            if side.role(m["Channel"]) == bruno
        ]
        assert changes == [
            ("5553217788", "Bruno Castillo", "inbound", "1"),
            ("+15553217788", "Bruno Castillo", "cid-normalize", "1"),
            ("+31201234567", "Bruno Castillo", "did-cid-mask", "2"),
            ("+31201234567", "Masked Caller", "did-cid-mask", "3"),
        ]
        queue_events = ("QueueCallerJoin", "AgentCalled", "AgentConnect", "AgentComplete")
        for m in side.events:
            if m.get("Event") in queue_events and side.role(m["Channel"]) == bruno:
                assert (m["CallerIDNum"], m["CallerIDName"]) == ("+31201234567", "Masked Caller")
        alice = "Local/6001@agents#0;1"
        agent = [
            m
            for m in side.events
            if m.get("Event") == "BridgeEnter" and side.role(m["Channel"]) == alice
        ]
        assert [(m["CallerIDNum"], m["ConnectedLineNum"]) for m in agent] == [
            ("5553217788", "+31201234567")
        ]


# ---------------------------------------------------------------------------- (a) optimisation


def _optimisation(side: Side) -> dict[str, Any]:
    begin, end = side.named("LocalOptimizationBegin"), side.named("LocalOptimizationEnd")
    assert len(begin) == len(end) == 1
    b, e = begin[0], end[0]
    i, j = side.events.index(b), side.events.index(e)
    pair = {b["LocalOneChannel"], b["LocalTwoChannel"]}
    # Up to the pair's last Hangup and the member's QueueMemberStatus, whichever is later.
    last = max(
        k
        for k, m in enumerate(side.events)
        if (m.get("Event") == "Hangup" and m["Channel"] in pair)
        or (k > j and m.get("Event") == "QueueMemberStatus" and m["MemberName"] == "Agent Dora")
    )

    def step(m: Message) -> tuple[str | None, ...]:
        return (
            m.get("Event"),
            side.role(m.get("Channel")),
            side.bridges.get(m.get("BridgeUniqueid") or ""),
            m.get("BridgeNumChannels"),
            side.uid(m.get("SwapUniqueid")),
        )

    swap = [step(m) for m in side.events[i : j + 1] if m.get("Event") not in NOISE]
    after = [m for m in side.events[j + 1 : last + 1] if m.get("Event") not in NOISE]
    leaving = [step(m) for m in after if m.get("Event") in ("BridgeLeave", "BridgeDestroy")]
    ending = sorted(
        (
            m["Event"],
            side.role(m.get("Channel")),
            m.get("Cause"),
            m.get("MemberName"),
            m.get("Status"),
            m.get("InCall"),
        )
        for m in after
        if m.get("Event") not in ("BridgeLeave", "BridgeDestroy")
    )
    return {
        "begin": (
            side.role(b["LocalOneChannel"]),
            side.role(b["LocalTwoChannel"]),
            side.role(b["SourceChannel"]),
            side.uid(b["DestUniqueId"]),
        ),
        "end": (side.role(e["LocalOneChannel"]), side.role(e["LocalTwoChannel"]), e["Success"]),
        "same_id": b["Id"] == e["Id"],
        "fields": ([k for k, _ in b.headers], [k for k, _ in e.headers]),
        "swap": swap,
        "leaving": leaving,
        "ending": ending,
    }


def test_local_optimisation(sides: tuple[Side, Side]) -> None:
    recorded, simulated = sides
    want = _optimisation(recorded)
    assert _optimisation(simulated) == want
    desk1, desk2 = "Local/7001@agent-desk#0;1", "Local/7001@agent-desk#0;2"
    phone1 = "Local/7001@agent-phone#0;1"
    # DestUniqueId is LocalTwo's even though LocalOne was swapped out (README).
    assert want["begin"] == (desk1, desk2, phone1, desk2)
    assert want["end"] == (desk1, desk2, "No") and want["same_id"]
    dial_bridge, queue_bridge = "bridge#0", "bridge#1"
    assert want["swap"] == [
        ("LocalOptimizationBegin", None, None, None, None),
        ("BridgeLeave", phone1, dial_bridge, "1", None),
        ("BridgeLeave", desk1, queue_bridge, "1", None),
        ("BridgeEnter", phone1, queue_bridge, "2", desk1),
        ("LocalOptimizationEnd", None, None, None, None),
    ]
    assert want["leaving"] == [
        ("BridgeLeave", desk2, dial_bridge, "0", None),
        ("BridgeDestroy", None, dial_bridge, "0", None),
    ]


def test_agent_complete_follows_the_swap(sides: tuple[Side, Side]) -> None:
    def completes(side: Side) -> list[tuple[str | None, ...]]:
        return [
            (
                side.role(m["Channel"]),
                side.role(m["DestChannel"]),
                m["Queue"],
                m["Interface"],
                m["MemberName"],
                m["Reason"],
                m["HoldTime"],
                m["TalkTime"],
            )
            for m in side.named("AgentComplete")
        ]

    recorded, simulated = sides
    want = completes(recorded)
    assert completes(simulated) == want
    assert want == [
        (
            "Local/5008@inbound#0;2",
            "Local/7001@agent-phone#0;1",  # the channel that replaced the desk line
            "desk",
            "Local/7001@agent-desk",
            "Agent Dora",
            "caller",
            "1",
            "6",
        ),
        (
            "Local/5007@inbound#0;2",
            "Local/6001@agents#0;1",
            "sales",
            "Local/6001@agents",
            "Agent Alice",
            "caller",
            "1",
            "6",
        ),
        (
            "Local/5000@inbound#0;2",
            "Local/6002@agents#0;1",
            "sales",
            "Local/6002@agents",
            "Agent Bob",
            "transfer",
            "1",
            "7",
        ),
    ]


def _members(side: Side) -> list[tuple[str, ...]]:
    first: dict[str, int] = {}
    out: list[tuple[str, ...]] = []
    for m in side.named("QueueMemberStatus"):
        calls = int(m["CallsTaken"])
        base = first.setdefault(m["MemberName"], calls)
        last = int(m["LastCall"])
        out.append(
            (
                m["MemberName"],
                m["Status"],
                m["InCall"],
                str(calls - base),
                str(last) if last >= int(side.start) else "before",
            )
        )
    return out


def test_queue_member_status(sides: tuple[Side, Side]) -> None:
    """Dora's device goes idle at the optimisation and app_queue counts her call done
    then (InCall 0, a call more, LastCall the optimisation's second), while she talks."""
    recorded, simulated = sides
    want = _members(recorded)
    assert _members(simulated) == want
    optimised = int(float(recorded.named("LocalOptimizationBegin")[0]["Timestamp"]))
    assert [w for w in want if w[0] == "Agent Dora"] == [
        ("Agent Dora", "2", "0", "0", "before"),
        ("Agent Dora", "1", "0", "1", str(optimised)),
    ]


def _hints(side: Side) -> list[tuple[str, ...]]:
    return [(m["Exten"], m["Status"], m["StatusText"]) for m in side.named("ExtensionStatus")]


def test_extension_status(sides: tuple[Side, Side]) -> None:
    """Hint 7001 (the agent's phone) stays InUse through the optimisation and goes Idle
    only when the caller hangs up."""
    recorded, simulated = sides
    assert _hints(simulated) == _hints(recorded)
    for side in sides:
        idle = next(
            i
            for i, m in enumerate(side.events)
            if m.get("Event") == "ExtensionStatus" and (m["Exten"], m["Status"]) == ("7001", "0")
        )
        ada_done = side.events.index(side.named("AgentComplete")[0])
        assert idle > ada_done > side.events.index(side.named("LocalOptimizationEnd")[0])


# ---------------------------------------------------------------------------- behaviour


def _desk_call(h: Harness, wait: str = "8") -> None:
    h.call("5008", LAB_WAIT=wait)


def test_without_media_the_desk_pair_stays_up() -> None:
    """A phone that sends no audio (the lab's first run, and every [agents] leg): no
    optimisation, the desk line stays in the call until the caller hangs up."""
    h = Harness(**_fields(SETTINGS))
    steps = h.core.pbx.dialplan["agent-phone"]["_7XXX"]
    h.core.pbx.dialplan["agent-phone"]["_7XXX"] = [s for s in steps if s.app != "PlayTones"]
    h.login()
    _desk_call(h)
    h.advance(12)
    assert not h.events("LocalOptimizationBegin") and not h.events("LocalOptimizationEnd")
    (complete,) = h.events("AgentComplete")
    assert complete["DestChannel"].startswith("Local/7001@agent-desk-")
    assert complete["Reason"] == "caller"
    dora = [(e["Status"], e["InCall"]) for e in h.events("QueueMemberStatus")]
    assert dora == [("2", "0"), ("1", "0")]
    assert not h.core.pbx.channels


def test_after_the_optimisation_dora_may_be_offered_the_next_desk_caller() -> None:
    """app_queue thinks Dora is free once her desk line is gone (ringinuse=no does not
    help: her member device is idle): a second desk caller is offered to her while she
    still talks to the first, after the 1 s wrap-up (README 14)."""
    h = Harness(**_fields(SETTINGS))
    h.login()
    _desk_call(h, "20")
    h.advance(4)
    assert h.events("LocalOptimizationEnd")
    _desk_call(h, "5")
    h.advance(2)
    called = h.events("AgentCalled")
    assert [e["MemberName"] for e in called] == ["Agent Dora", "Agent Dora"]
    assert len({e["Linkedid"] for e in called}) == 2
    first_phone = [c for c in h.core.pbx.channels if c.startswith("Local/7001@agent-phone-")]
    assert first_phone  # the first call is still up on her phone


def test_a_transfer_to_no_extension_goes_back_to_the_call() -> None:
    """``#1`` then a number [xfer] has no extension for: Unhold, the agent's music stops,
    the call goes on and ends as any other."""
    h = Harness(**_fields(SETTINGS))
    h.login()
    h.call(
        "5000",
        "dtmf",
        LAB_DELAY1="3",
        LAB_DTMF1="#1",
        LAB_DELAY2="0.5",
        LAB_DTMF2="99",
        LAB_WAIT="3",
        TRANSFER_CONTEXT="xfer",
    )
    h.advance(15)
    assert not h.events("BlindTransfer")
    assert [e["Event"] for e in _events(h, "Hold", "Unhold")] == ["Hold", "Unhold"]
    moh = [e["Event"] for e in _events(h, "MusicOnHoldStart", "MusicOnHoldStop")]
    assert moh[-2:] == ["MusicOnHoldStart", "MusicOnHoldStop"]  # the agent's, after the queue's
    (complete,) = h.events("AgentComplete")
    assert complete["Reason"] == "caller"
    assert not h.core.pbx.channels


def test_feature_digits_need_the_queue_option() -> None:
    """Without ``T`` in the Queue options the caller's ``#1`` is only DTMF."""
    h = Harness(**_fields(SETTINGS))
    steps = h.core.pbx.dialplan["queue-entry"]["sales"]
    h.core.pbx.dialplan["queue-entry"]["sales"] = [
        Step("Queue", "sales,t,,,300") if s.app == "Queue" else s for s in steps
    ]
    h.login()
    h.call(
        "5000", "dtmf", LAB_DELAY1="3", LAB_DTMF1="#1", LAB_WAIT="2", TRANSFER_CONTEXT="xfer"
    )
    h.advance(10)
    assert [e["Digit"] for e in h.events("DTMFEnd")] == ["#", "1"]
    assert not h.events("Hold") and not h.events("BlindTransfer")


def _fields(settings: Settings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


def _events(h: Harness, *names: str) -> list[dict]:
    return [dict(o.headers) for o in h.out if o.headers[0] in {("Event", n) for n in names}]


# ---------------------------------------------------------------------------- call model


def _model_events(events: Iterable[Headers]) -> list[Any]:
    """The call model fed ``events`` as the live client would, with their timestamps."""
    records = []
    for headers in events:
        stamp = Message(headers).get("Timestamp")
        records.append(Received(Message(headers), float(stamp) if stamp else None, 1))
    return model_replay(records, CallModel(), devices=True)


def _outcomes(events: list[Any]) -> dict[str, Any]:
    """Per caller (by name as first announced): what the model made of the call."""
    calls: dict[str, list[Any]] = defaultdict(list)
    for e in events:
        if hasattr(e, "call_id"):
            calls[e.call_id].append(e)
    out: dict[str, Any] = {}
    for call in calls.values():
        (arrived,) = [e for e in call if isinstance(e, CallArrived)]
        answered = [e for e in call if isinstance(e, CallAnswered)]
        (ended,) = [e for e in call if isinstance(e, CallEnded)]
        transfers = [
            (t.method, t.by, t.target, t.transferer)
            for t in call
            if isinstance(t, CallTransferred)
        ]
        out[arrived.caller.name or ""] = {
            "kinds": [e.kind for e in call],
            "caller": (arrived.caller.number, arrived.caller.name, arrived.dialled),
            "original_caller": arrived.original_caller,
            "agent": [(a.agent.name, a.agent.interface, a.queue, a.wait) for a in answered],
            "transfers": transfers,
            "ended": (ended.ended_by, ended.answered, ended.cause),
            "talk": ended.talk_time,
            "record": json.dumps([e.to_record() for e in call]),
        }
    return out


def _devices(events: list[Any]) -> list[tuple[str, str]]:
    return [(e.interface, e.state) for e in events if isinstance(e, DeviceStateChanged)]


def test_the_call_model_reads_the_simulator_as_the_recording() -> None:
    _, simulated = _run()
    recorded_events = model_replay(captures_dir() / f"{NAME}.jsonl", CallModel(), devices=True)
    want, got = _outcomes(recorded_events), _outcomes(_model_events(simulated))
    assert got.keys() == want.keys() == {"Ada Lindqvist", "Masked Caller", "Chidi Okafor"}
    for name in want:
        w, g = dict(want[name]), dict(got[name])
        w.pop("record"), g.pop("record")
        talk_w, talk_g = w.pop("talk"), g.pop("talk")
        assert g == w, name
        assert talk_g == pytest.approx(talk_w, abs=0.05), name  # timer jitter of the lab
    assert _devices(_model_events(simulated)) == _devices(recorded_events)

    ada, bruno, chidi = got["Ada Lindqvist"], got["Masked Caller"], got["Chidi Okafor"]
    # (a) one call, Agent Dora in desk throughout, ended by the caller after ~6 s of talk.
    assert ada["kinds"] == ["arrived", "queued", "offered", "answered", "ended"]
    assert ada["agent"][0][:3] == ("Agent Dora", "Local/7001@agent-desk", "desk")
    assert ada["ended"][0] == "caller" and ada["talk"] == pytest.approx(6.0, abs=0.05)
    # (b) the masked identity everywhere, the original nowhere.
    assert bruno["caller"][:2] == ("+31201234567", "Masked Caller")
    assert bruno["original_caller"] is None and "5553217788" not in bruno["record"]
    assert bruno["ended"][0] == "caller"
    # (c) the caller transferred the agent with #1 and so ended the call.
    assert chidi["transfers"] == [("blind", None, "6004@xfer", "caller")]
    assert chidi["ended"][0] == "caller"
