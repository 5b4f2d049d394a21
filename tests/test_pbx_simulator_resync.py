"""Recording 13 (a CTI backend restarting in the middle of ACD and queue traffic) against
the simulator, in the style of ``test_pbx_simulator_conformance``.

Connection 1's actions are replayed at their recorded times: three callers parked in
``[holding]`` (``caller-script hangup-after``), the ACD's agent leg (``ChannelId
acd13-0001``) bridged by AMI ``Bridge`` with the first caller, and a caller that app_queue
gives to Agent Bob. Connection 1 is then dropped without Logoff; a second session logs in
and sends connection 2's resync actions. Compared with the recording:

* per channel (by role), the sequence of events and key fields, as for the other
  recordings, including the resync items each channel appears in and the hang-ups;
* the resync answers item by item: field names and their order, the channel's role,
  state, caller ID, dialplan position, application, whether it is bridged (and to whom),
  how long it has been up, which channels share a bridge, queue members' ``InCall`` and
  ``Status``, the ``Queue:*`` device states, each hint's ``ExtensionStatus``;
* the live events after the resync: ``ExtensionStatus`` to Idle, ``QueueMemberStatus``,
  ``BridgeLeave`` x2 and ``BridgeDestroy`` per bridge, ``AgentComplete Reason=caller``;
* and, for the same device state cache, recording 08's DeviceStateList.

Left out, and why:

* Queue ``desk`` (recording 14's queue, whose member is optimised away as a Local pair) is
  not configured in the simulator: its QueueParams, QueueMember and ``Queue:desk*``
  devices are dropped from the recording's answers.
* Counters that hold the lab's history (its Asterisk had taken other calls since it
  started): QueueParams ``Holdtime``/``TalkTime``/``Completed``/``Abandoned`` and
  QueueMember ``CallsTaken``/``LastCall``/``LastPause``/``LoginTime``.
* Item order within a list: Asterisk walks hash containers, so it varies run to run.
* Uniqueids and Linkedids are compared by the role of the channel they name (the numeric
  counter differs); ChannelId-given ones (``acd13-0001``) are the same. So is the agent
  leg's ``CTI_CALLID``, which the replayed driver copies from the recording.
* Status ``AllVariables``: only ``BRIDGEPEER`` (first, naming the peer) and the variables
  the dialplan and Originate set; app_queue's ~25 ``QUEUE*``/``MEMBER*`` variables,
  ``DIALEDPEERNUMBER`` and the like are Asterisk internals (see ``NOISE`` in the
  conformance test for VarSet).
* ``Duration``/``Seconds``: whole seconds, so they may differ by one.
* Live ``DeviceStateChange`` for Local devices: Asterisk never caches them and announces
  the device's state again at each channel change of each call on it (28 live ones in
  this recording, many repeating an unchanged state); the simulator announces the
  changes only. The devices and their final states are compared.
* As for recording 05 (``BRIDGED_CALLER_QUIRK``): the NewCallerid Asterisk re-publishes on
  the bridged caller's ``;1`` just before it hangs up.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest

from cti.ami.codec import Message
from cti.capture import captures_dir

from .test_pbx_simulator_conformance import (
    BRIDGED_CALLER_QUIRK,
    Replay,
    RoleMap,
    _drop_then_cli_caller,
    originate_outcomes,
    per_channel,
    replay,
)

NAME = "13-acd-restart-resync"
#: Answers for what the simulator does not have (module docstring).
NOT_SIMULATED_QUEUES = {"desk"}
#: Counters carrying the lab's history (module docstring).
HISTORY = {
    "Holdtime",
    "TalkTime",
    "Completed",
    "Abandoned",
    "CallsTaken",
    "LastCall",
    "LastPause",
    "LoginTime",
}

Headers = list[tuple[str, str]]


def _drop_controller(run: Replay) -> None:
    # Connection 1 (the backend before its crash) closed its socket without Logoff.
    run.drop_session(run.sessions[1])


@cache
def _recording(name: str = NAME) -> list[dict]:
    path = captures_dir() / f"{name}.jsonl"
    if not path.exists():
        pytest.fail(f"capture {path} missing (set CALLCENTER_CAPTURES)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@dataclass
class Side:
    """One side's events with what it takes to compare them: channel roles (as in the
    conformance test), Uniqueid -> role, the resync items by ActionID."""

    events: list[Headers]
    responses: dict[str, Headers]
    roles: RoleMap = field(default_factory=RoleMap)
    uids: dict[str, str] = field(default_factory=dict)
    #: Unique IDs this side got from the other: the replayed driver sends the recording's
    #: (the agent leg's ``CTI_CALLID`` is the recorded caller's Uniqueid).
    foreign: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        per_channel(self.events, self.roles)
        for headers in self.events:
            m = Message(headers)
            if m.get("Event") == "Newchannel":
                self.uids[m["Uniqueid"]] = self.roles.role(m["Channel"])

    def role(self, channel: str | None) -> str | None:
        return None if channel is None else self.roles.role(channel)

    def uid(self, uniqueid: str | None) -> str | None:
        key = uniqueid or ""
        return self.uids.get(key) or self.foreign.get(key, uniqueid)

    def var(self, assignment: str) -> str:
        """``NAME=value`` with a unique ID value by role (``CTI_CALLID``)."""
        name, _, value = assignment.partition("=")
        return f"{name}={self.uid(value) if value else value}"

    def items(self, action_id: str) -> list[Message]:
        return [
            Message(h)
            for h in self.events
            if h[0][0] == "Event" and Message(h).get("ActionID") == action_id
        ]

    def live(self) -> list[Message]:
        """What came after the last resync answer."""
        names = [h[0][1] for h in self.events]
        last = len(names) - 1 - names[::-1].index("ExtensionStateListComplete")
        return [Message(h) for h in self.events[last + 1 :]]


@dataclass
class Run:
    recorded: Side
    simulated: Side
    #: The resync actions of connection 2: ActionID -> action (and its fields).
    actions: dict[str, Message]


@pytest.fixture(scope="module")
def run13() -> Run:
    records = _recording()
    captured, simulated, responses = replay(
        NAME, interludes=(("conn1 (controller/backend) dies", _drop_controller),)
    )
    recorded_responses = {
        dict(r["headers"]).get("ActionID", ""): [tuple(kv) for kv in r["headers"]]
        for r in records
        if r.get("kind") == "response"
    }
    simulated_responses = {r.get("ActionID", ""): list(r.items()) for r in responses}
    actions = {
        Message(r["headers"]).action_id or "": Message([tuple(kv) for kv in r["headers"]])
        for r in records
        if r["dir"] == "out" and r["conn"] == 2 and r["name"] not in ("Login", "Logoff")
    }
    recorded = Side([[tuple(kv) for kv in h] for h in captured], recorded_responses)
    return Run(recorded, Side(simulated, simulated_responses, foreign=recorded.uids), actions)


def _action_ids(run: Run, action: str) -> list[str]:
    return [aid for aid, m in run.actions.items() if m["Action"] == action]


def _keys(m: Message) -> list[str]:
    """Field names in order, a repeated field (ChanVariable, Variable) once."""
    out: list[str] = []
    for key, _ in m.headers:
        if not out or out[-1] != key:
            out.append(key)
    return out


def _not_simulated(m: Message) -> bool:
    queue = m.get("Queue") or ""
    device = m.get("Device") or ""
    return queue in NOT_SIMULATED_QUEUES or any(
        device == f"Queue:{q}" or device.startswith(f"Queue:{q}_") for q in NOT_SIMULATED_QUEUES
    )


def _channel(side: Side, m: Message) -> tuple[Any, ...]:
    """The standard channel block, with channels and unique IDs by role."""
    return (
        side.role(m["Channel"]),
        m["ChannelState"],
        m["ChannelStateDesc"],
        m["CallerIDNum"],
        m["CallerIDName"],
        m["ConnectedLineNum"],
        m["ConnectedLineName"],
        m["Context"],
        m["Exten"],
        m["Priority"],
        side.uid(m["Uniqueid"]),
        side.uid(m["Linkedid"]),
        tuple(side.var(v) for v in m.get_all("ChanVariable")),
    )


def _seconds(hhmmss: str) -> int:
    h, mi, s = (int(x) for x in hhmmss.split(":"))
    return h * 3600 + mi * 60 + s


def _assert_close(got: dict[str, int], want: dict[str, int], what: str) -> None:
    assert got.keys() == want.keys(), what
    for role, secs in want.items():
        assert abs(got[role] - secs) <= 1, (what, role, got[role], secs)


# ---------------------------------------------------------------------------- per channel


def test_per_channel_event_sequences(run13: Run) -> None:
    want = per_channel(run13.recorded.events, RoleMap())
    got = per_channel(run13.simulated.events, RoleMap())
    for role in want:
        drop = set().union(*(v for k, v in BRIDGED_CALLER_QUIRK.items() if role.endswith(k)))
        w = [e for e in want[role] if e[0] not in drop]
        g = [e for e in got.get(role, []) if e[0] not in drop]
        assert g == w, f"{NAME}: channel {role} differs"
    assert set(got) == set(want)
    assert originate_outcomes(run13.simulated.events) == originate_outcomes(run13.recorded.events)


def test_responses_and_list_framing(run13: Run) -> None:
    for aid in run13.actions:
        want, got = run13.recorded.responses[aid], run13.simulated.responses[aid]
        assert [k for k, _ in got] == [k for k, _ in want], aid
        assert dict(got) == dict(want), aid
    for aid in run13.actions:
        want_items, got_items = run13.recorded.items(aid), run13.simulated.items(aid)
        want_done, got_done = want_items.pop(), got_items.pop()
        assert _keys(got_done) == _keys(want_done), aid
        kept = [m for m in want_items if not _not_simulated(m)]
        assert got_done["ListItems"] == str(len(kept)) == str(len(got_items)), aid
        for name in {m.name for m in want_items}:
            shapes = {tuple(_keys(m)) for m in want_items if m.name == name}
            got_shapes = {tuple(_keys(m)) for m in got_items if m.name == name}
            if name == "Status":  # up to the variables (AllVariables: see the docstring)
                shapes = {s[: s.index("Variable")] + s[-1:] for s in shapes}
                got_shapes = {s[: s.index("Variable")] + s[-1:] for s in got_shapes}
            assert got_shapes == shapes, (aid, name)
        assert "QueueEntry" not in {m.name for m in got_items}  # the parked are in no queue


# ---------------------------------------------------------------------------- channels


def _core_show_channels(run: Run, side: Side) -> tuple[dict, dict[str, int]]:
    (aid,) = _action_ids(run, "CoreShowChannels")
    rows, durations = {}, {}
    for m in side.items(aid)[:-1]:
        block = _channel(side, m)
        rows[block[0]] = (
            *block,
            m["Application"],
            m["ApplicationData"],
            bool(m["BridgeId"]),
        )
        durations[block[0]] = _seconds(m["Duration"])
    return rows, durations


def test_core_show_channels(run13: Run) -> None:
    want, want_secs = _core_show_channels(run13, run13.recorded)
    got, got_secs = _core_show_channels(run13, run13.simulated)
    assert got == want
    # Parked: since creation. Bridged by AMI: since the Bridge (Noor's ;2 7 s, her ;1 12 s).
    _assert_close(got_secs, want_secs, "Duration")
    noor = want["Local/5003@inbound#0;2"]
    assert noor[7:10] == ("holding", "s", "5") and noor[-3:] == ("", "", True)
    lars = want["Local/5006@inbound#0;2"]
    assert lars[7:9] == ("holding", "moh") and lars[-3:] == ("MusicOnHold", "default,300", False)
    agent = want["Local/6002@agents#0;1"]
    assert agent[-3:] == ("AppQueue", "(Outgoing Line)", True)


def _status(run: Run, side: Side) -> tuple[dict, dict[str, int]]:
    (aid,) = _action_ids(run, "Status")
    rows, seconds = {}, {}
    for m in side.items(aid)[:-1]:
        block = _channel(side, m)
        variables = m.get_all("Variable")
        peer = variables[0].removeprefix("BRIDGEPEER=") if variables else ""
        rows[block[0]] = (
            *block,
            m["Type"],
            m["EffectiveConnectedLineNum"],
            m["EffectiveConnectedLineName"],
            m["Application"],
            m["Data"],
            bool(m["BridgeID"]),
            side.role(peer) if variables and variables[0].startswith("BRIDGEPEER=") else None,
            # what the dialplan and Originate set (app_queue's own: see the docstring)
            sorted(side.var(v) for v in variables if v.startswith(("LAB_", "CTI_"))),
        )
        seconds[block[0]] = int(m["Seconds"])
    return rows, seconds


def test_status_all_variables(run13: Run) -> None:
    want, want_secs = _status(run13, run13.recorded)
    got, got_secs = _status(run13, run13.simulated)
    assert got == want
    _assert_close(got_secs, want_secs, "Seconds")
    noor = want["Local/5003@inbound#0;2"]
    assert noor[16:19] == ("(null)", "(null)", True)
    assert noor[19] == "Local/6001@agents#0;1"


def _bridges(run: Run, side: Side) -> tuple[list, set, dict]:
    """BridgeListItem bodies; which channels share each bridge (CoreShowChannel's
    BridgeId); per BridgeInfo: its channels and its Complete's bridge block."""
    (listing,) = _action_ids(run, "BridgeList")
    items = [m for m in side.items(listing)[:-1]]
    bodies = sorted(
        tuple((k, v) for k, v in m.headers if k not in ("ActionID", "BridgeUniqueid"))
        for m in items
    )
    (shows,) = _action_ids(run, "CoreShowChannels")
    members: dict[str, set[str | None]] = defaultdict(set)
    for m in side.items(shows)[:-1]:
        if m["BridgeId"]:
            members[m["BridgeId"]].add(side.role(m["Channel"]))
    assert set(members) == {m["BridgeUniqueid"] for m in items}
    info = {}
    for aid in _action_ids(run, "BridgeInfo"):
        *channels, done = side.items(aid)
        bridge = done["BridgeUniqueid"]
        roles = frozenset(side.role(c["Channel"]) for c in channels)
        assert roles == members[bridge]
        info[roles] = (
            sorted(_channel(side, c) for c in channels),
            tuple((k, v) for k, v in done.headers if k not in ("ActionID", "BridgeUniqueid")),
        )
    return bodies, {frozenset(v) for v in members.values()}, info


def test_bridge_list_and_info(run13: Run) -> None:
    assert _bridges(run13, run13.simulated) == _bridges(run13, run13.recorded)


# ---------------------------------------------------------------------------- queues, devices


def _queue_status(run: Run, side: Side) -> dict:
    (aid,) = _action_ids(run, "QueueStatus")
    out = {}
    for m in side.items(aid)[:-1]:
        if _not_simulated(m):
            continue
        key = (m.name, m["Queue"], m.get("Name"))
        out[key] = tuple((k, v) for k, v in m.headers if k not in HISTORY and k != "ActionID")
    return out


def test_queue_status_members_in_call(run13: Run) -> None:
    want = _queue_status(run13, run13.recorded)
    assert _queue_status(run13, run13.simulated) == want
    member = {name: dict(v) for (_, _, name), v in want.items() if name}
    # Bob talks on an app_queue call; Alice's device is busy on the ACD's bridge.
    assert (member["Agent Bob"]["InCall"], member["Agent Bob"]["Status"]) == ("1", "2")
    assert (member["Agent Alice"]["InCall"], member["Agent Alice"]["Status"]) == ("0", "2")
    assert member["Agent Carol"]["Status"] == "1"


def _device_states(run: Run, side: Side) -> dict[str, str]:
    (aid,) = _action_ids(run, "DeviceStateList")
    return {m["Device"]: m["State"] for m in side.items(aid)[:-1] if not _not_simulated(m)}


def test_device_state_list_has_only_queue_pseudo_devices(run13: Run) -> None:
    want = _device_states(run13, run13.recorded)
    assert _device_states(run13, run13.simulated) == want
    assert all(d.startswith("Queue:") for d in want)


def test_device_state_list_of_recording_08() -> None:
    # The same cache after 08's reconnect: a caller waits in support (Queue:support
    # RINGING) while its only member rings (support_avail INUSE). Left out: the dynamic
    # member Local/6004@agents that recording 07 added and removed (the cache keeps it).
    name = "08-reconnect"
    captured, simulated, _ = replay(
        name, interludes=(("conn1 closed abruptly", _drop_then_cli_caller),)
    )
    aid = next(
        Message(r["headers"]).action_id
        for r in _recording(name)
        if r["dir"] == "out" and r["name"] == "DeviceStateList"
    )

    def listed(events: list) -> dict[str, str]:
        items = [Message(h) for h in events if Message(h).get("ActionID") == aid]
        return {m["Device"]: m["State"] for m in items if m.get("Event") == "DeviceStateChange"}

    want = listed(captured)
    del want["Queue:sales_pause_Local/6004@agents"]
    assert listed(simulated) == want
    assert want["Queue:support"] == "RINGING" and want["Queue:support_avail"] == "INUSE"


def _hints(run: Run, side: Side) -> set[tuple[str, ...]]:
    (aid,) = _action_ids(run, "ExtensionStateList")
    return {
        (m["Exten"], m["Context"], m["Hint"], m["Status"], m["StatusText"])
        for m in side.items(aid)[:-1]
    }


def test_extension_state_list(run13: Run) -> None:
    want = _hints(run13, run13.recorded)
    assert _hints(run13, run13.simulated) == want
    assert {(h[0], h[4]) for h in want} == {
        ("6001", "InUse"),
        ("6002", "InUse"),
        ("6003", "Idle"),
        ("7001", "Idle"),
    }


# ---------------------------------------------------------------------------- after


def _live(side: Side) -> dict[str, Any]:
    live = side.live()

    def of(name: str) -> Iterable[Message]:
        return (m for m in live if m.get("Event") == name)

    bridges: dict[str, list[tuple[str | None, ...]]] = defaultdict(list)
    for m in live:
        if m.get("Event") in ("BridgeLeave", "BridgeDestroy"):
            bridges[m["BridgeUniqueid"]].append(
                (m["Event"], side.role(m.get("Channel")), m["BridgeNumChannels"])
            )
    complete = [
        (
            side.role(m["Channel"]),
            side.role(m["DestChannel"]),
            m["Queue"],
            m["MemberName"],
            m["Reason"],
            m["HoldTime"],
        )
        for m in of("AgentComplete")
    ]
    final: dict[str, str] = {}
    for m in of("DeviceStateChange"):
        final[m["Device"]] = m["State"]
    return {
        "hints": [
            (m["Exten"], m["Status"], m["StatusText"], _keys(m)) for m in of("ExtensionStatus")
        ],
        "members": [(m["MemberName"], m["Status"], m["InCall"]) for m in of("QueueMemberStatus")],
        "bridges": sorted(bridges.values()),
        "complete": complete,
        "talk": [int(m["TalkTime"]) for m in of("AgentComplete")],
        "devices": final,
        "queue": [m["Event"] for m in live if m.get("Event", "").startswith("QueueCaller")],
    }


def test_live_events_after_the_resync(run13: Run) -> None:
    want, got = _live(run13.recorded), _live(run13.simulated)
    talk_want, talk_got = want.pop("talk"), got.pop("talk")
    assert got == want
    assert len(talk_got) == len(talk_want) == 1 and abs(talk_got[0] - talk_want[0]) <= 1
    assert [h[:3] for h in want["hints"]] == [("6001", "0", "Idle"), ("6002", "0", "Idle")]
    assert want["complete"][0][4] == "caller" and want["queue"] == []
