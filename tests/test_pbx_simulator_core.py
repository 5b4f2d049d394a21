"""Deterministic tests of the simulator core (no sockets; time advanced by hand)."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from cti.ami.codec import Message
from pbx_simulator import Close, Hint, ManagerCore, Send, Settings
from pbx_simulator.engine import FastAgiCall
from pbx_simulator.traffic import TrafficGenerator, caller_originate, load_customers

T0 = 1_800_000_000.0


class Harness:
    def __init__(self, **kw: object) -> None:
        self.core = ManagerCore(Settings(**kw), now=T0)  # type: ignore[arg-type]
        self.sid = self.core.connect(T0)
        self.out: list = []
        self.now = T0

    def act(self, action: str, **fields: str) -> dict:
        before = len(self.out)
        headers = [("Action", action), ("ActionID", f"a{before}"), *fields.items()]
        self.out += self.core.receive(self.sid, Message(headers), self.now)
        return next(dict(o.headers) for o in self.out[before:] if o.headers[0][0] == "Response")

    def login(self) -> None:
        assert self.act("Login", Username="cti", Secret="ctilab-secret")["Response"] == "Success"

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while (due := self.core.next_deadline()) is not None and due <= end:
            self.out += self.core.advance(due)
        self.now = end
        self.out += self.core.advance(end)

    def events(self, name: str) -> list[dict]:
        return [
            dict(o.headers)
            for o in self.out
            if isinstance(o, Send) and o.headers[0] == ("Event", name)
        ]

    def call(self, did: str, exten: str = "hangup-after", **variables: str) -> None:
        extra = [("Variable", f"{k}={v}") for k, v in variables.items()]
        fields = caller_originate(did, '"Zoë Müller" <5551230001>', exten, extra)
        msg = Message([("Action", "Originate"), *fields])
        self.out += self.core.receive(self.sid, msg, self.now)


class ScriptedFastAgi:
    """A FastAGI server double: sends ``commands`` one per result, then hangs up; keeps
    the transcript (``<`` from Asterisk, ``>`` to it) as in ``09-fastagi.agi.txt``."""

    def __init__(self, commands: list[str]) -> None:
        self.commands = list(commands)
        self.transcript: list[str] = []
        self.calls: list[FastAgiCall] = []

    def __call__(self, call: FastAgiCall) -> None:
        self.calls.append(call)
        call.connected(lambda data: self._from_asterisk(call, data), lambda: None)

    def _from_asterisk(self, call: FastAgiCall, data: bytes) -> None:
        self.transcript += [f"< {line}" for line in data.decode().split("\n")[:-1]]
        if self.commands:
            command = self.commands.pop(0)
            self.transcript.append(f"> {command}")
            call.received(f"{command}\n".encode())
        else:
            call.closed()


def test_queue_call_answered_then_caller_hangs_up() -> None:
    h = Harness()
    h.login()
    h.call("5000", LAB_WAIT="5")
    h.advance(10)
    assert [e["Queue"] for e in h.events("QueueCallerJoin")] == ["sales"]
    connect = h.events("AgentConnect")[0]
    assert connect["MemberName"] == "Agent Alice" and connect["HoldTime"] == "1"
    assert h.events("AgentComplete")[0]["Reason"] == "caller"
    assert not h.core.pbx.channels
    first = h.events("Newchannel")[0]
    assert first["Uniqueid"] == f"{int(T0)}.0" and first["Linkedid"] == f"{int(T0)}.0"
    agent = h.events("Newchannel")[2]
    assert agent["Linkedid"] == first["Uniqueid"]  # queue agent legs inherit the Linkedid
    assert "ChanVariable" in agent


def test_queue_abandon_with_ring_no_answer() -> None:
    h = Harness()
    h.login()
    h.call("5005", LAB_WAIT="11")
    h.advance(15)
    assert [e["RingTime"] for e in h.events("AgentRingNoAnswer")] == ["4000", "4000"]
    assert [e["DialStatus"] for e in h.events("DialEnd")].count("NOANSWER") == 2
    abandon = h.events("QueueCallerAbandon")[0]
    # Joined at +0.5 s, gone at +11.5 s: app_queue subtracts whole seconds (02 says 11).
    assert abandon["Position"] == "1" and abandon["HoldTime"] == "11"
    assert h.events("QueueCallerLeave")


def test_ivr_digits_reach_the_queue_with_account() -> None:
    h = Harness()
    h.login()
    h.call(
        "5001",
        "dtmf",
        LAB_DELAY1="1.5",
        LAB_DTMF1="1",
        LAB_DELAY2="1.5",
        LAB_DTMF2="12345#",
        LAB_WAIT="5",
    )
    h.advance(20)
    digits = [e["Digit"] for e in h.events("DTMFEnd")]
    assert digits == list("112345#")
    assert all(
        e["Direction"] == "Received" and e["Channel"].endswith(";2") for e in h.events("DTMFBegin")
    )
    assert {"Variable": "ACCOUNT", "Value": "12345"}.items() <= next(
        e for e in h.events("VarSet") if e["Variable"] == "ACCOUNT"
    ).items()
    assert h.events("QueueCallerJoin")


def test_async_agi_commands_and_redirect() -> None:
    h = Harness()
    h.login()
    h.call("5002", "stay")
    h.advance(1)
    chan = h.events("AsyncAGIStart")[0]["Channel"]
    for cid, cmd in [
        ("c1", "ANSWER"),
        ("c2", "SET VARIABLE CTI_ROUTE support"),
        ("c3", 'GET FULL VARIABLE "${CALLERID(num)}"'),
        ("c4", "WAIT FOR DIGIT 500"),
    ]:
        resp = h.act("AGI", Channel=chan, Command=cmd, CommandID=cid)
        assert resp["Message"] == "Added AGI command to queue"
        h.advance(1)
    results = {e["CommandId"]: e["Result"] for e in h.events("AsyncAGIExec")}
    assert results == {
        "c1": "200%20result%3D0%0A",
        "c2": "200%20result%3D1%0A",
        "c3": "200%20result%3D1%20(%2B15551230001)%0A",
        "c4": "200%20result%3D0%0A",
    }
    assert (
        h.act("Redirect", Channel=chan, Context="queue-entry", Exten="support", Priority="1")[
            "Message"
        ]
        == "Redirect successful"
    )
    h.advance(1)
    assert h.events("AsyncAGIEnd") and h.events("QueueCallerJoin")[0]["Queue"] == "support"
    assert h.act("AGI", Channel=chan, Command="ANSWER")["Response"] == "Error"


def test_holding_originate_bridge_hangup() -> None:
    h = Harness()
    h.login()
    h.call("5006", "stay")
    h.advance(1)
    parked = h.events("UserEvent")[0]
    assert parked["UserEvent"] == "CtiParked" and parked["Queue"] == "external-moh"
    caller = parked["Channel"]
    h.act(
        "Originate",
        Channel="Local/6002@agents",
        Context="agent-standby",
        Exten="s",
        Priority="1",
        Async="true",
        CallerID="<+15551230001>",
        ChannelId="acd-1",
        OtherChannelId="acd-1-2",
    )
    h.advance(2)
    ok = h.events("OriginateResponse")[-1]
    assert ok["Response"] == "Success" and ok["Uniqueid"] == "acd-1"
    assert (
        h.act("Bridge", Channel1=caller, Channel2=ok["Channel"])["Message"]
        == "Channels have been bridged"
    )
    assert h.events("MusicOnHoldStop") and len(h.events("BridgeEnter")) == 2
    assert h.act("Hangup", Channel=ok["Channel"], Cause="16")["Message"] == "Channel Hungup"
    assert h.events("BridgeDestroy")
    assert caller in h.core.pbx.channels  # the caller goes back to holding
    h.advance(0.1)
    assert h.events("MusicOnHoldStart")[-1]["Channel"] == caller


def test_failures_as_in_capture_11() -> None:
    h = Harness()
    assert h.act("Ping")["Message"] == "Permission denied"
    h.login()
    bad = h.act("NoSuchAction")
    assert bad["Message"].startswith("Invalid/unknown command: NoSuchAction.")
    assert h.events("RequestBadFormat")
    assert h.act("Redirect", Channel="x")["Message"] == "Context not specified"
    assert h.act("Hangup", Channel="Local/1@x-1;1")["Message"] == "No such channel"
    assert (
        h.act("Bridge", Channel1="A;2", Channel2="B;1")["Message"] == "Channel1 does not exist: A;2"
    )
    assert h.act("Status", Channel="A;2")["Message"] == "No such channel"
    assert (
        h.act("QueuePause", Interface="Local/7777@agents", Paused="true")["Message"]
        == "Interface not found"
    )
    assert h.act("Originate", Channel="Local/6001@agents")["Message"] == (
        "Originate with 'Exten' requires 'Context' and 'Priority'"
    )
    h.act(
        "Originate",
        Channel="Local/6101@agents-noanswer",
        Context="agent-standby",
        Exten="s",
        Priority="1",
        Async="true",
        Timeout="4000",
    )
    h.advance(5)
    fail = h.events("OriginateResponse")[-1]
    assert (fail["Response"], fail["Reason"], fail["Channel"]) == (
        "Failure",
        "3",
        "Local/6101@agents-noanswer",
    )


def test_wrong_secret_refused_after_a_second_then_closed() -> None:
    h = Harness()
    h.out += h.core.receive(
        h.sid, Message([("Action", "Login"), ("Username", "cti"), ("Secret", "x")]), T0
    )
    assert not h.out
    h.advance(1.0)
    assert dict(h.out[0].headers)["Message"] == "Authentication failed"
    assert isinstance(h.out[1], Close)


def test_md5_login_and_event_mask() -> None:
    h = Harness()
    challenge = h.act("Challenge", AuthType="MD5")["Challenge"]
    key = hashlib.md5(f"{challenge}ctilab-secret".encode()).hexdigest()
    assert (
        h.act("Login", AuthType="MD5", Username="cti", Key=key, Events="agent")["Response"]
        == "Success"
    )
    h.call("5000", LAB_WAIT="3")
    h.advance(6)
    assert h.events("QueueCallerJoin") and not h.events("Newchannel")
    assert h.act("Events", EventMask="off")["Events"] == "Off"


def test_list_actions_framing() -> None:
    h = Harness()
    h.login()
    h.call("5000", "stay")
    h.advance(3)
    for action, complete in [
        ("CoreShowChannels", "CoreShowChannelsComplete"),
        ("QueueStatus", "QueueStatusComplete"),
        ("QueueSummary", "QueueSummaryComplete"),
        ("BridgeList", "BridgeListComplete"),
        ("Status", "StatusComplete"),
    ]:
        start = len(h.out)
        resp = h.act(action)
        assert resp["EventList"] == "start"
        frames = [dict(o.headers) for o in h.out[start + 1 :]]
        assert frames[-1]["Event"] == complete and frames[-1]["EventList"] == "Complete"
        assert int(frames[-1]["ListItems"]) == len(frames) - 1 >= 1
        assert all(f["ActionID"] == resp["ActionID"] for f in frames)


def test_traffic_generator_places_calls_with_customer_names() -> None:
    core = ManagerCore(Settings(), now=T0)
    sid = core.connect(T0)
    core.receive(
        sid, Message([("Action", "Login"), ("Username", "cti"), ("Secret", "ctilab-secret")]), T0
    )
    from pbx_simulator.settings import TrafficSettings

    gen = TrafficGenerator(
        core, TrafficSettings(enabled=True, calls_per_minute=30), random.Random(1)
    )
    gen.start()
    out = []
    t = T0
    while t < T0 + 120:
        t = min(core.next_deadline() or t + 1, T0 + 120)
        out += core.advance(t)
    assert gen.placed > 20
    names = {dict(o.headers).get("CallerIDName") for o in out if isinstance(o, Send)}
    assert {"Zoë Müller", "王小明"} & names
    events = [dict(o.headers).get("Event") for o in out if isinstance(o, Send)]
    assert "QueueCallerAbandon" in events
    assert "AgentComplete" in events
    assert any(c.number in ("", "<unknown>") for c in load_customers())


ACTIONS = st.sampled_from(
    [
        "Ping",
        "Originate",
        "Hangup",
        "Redirect",
        "Bridge",
        "AGI",
        "Status",
        "QueueStatus",
        "QueuePause",
        "QueueAdd",
        "QueueRemove",
        "CoreShowChannels",
        "Bogus",
        "Events",
        "BridgeInfo",
        "DeviceStateList",
        "ExtensionStateList",
    ]
)
FIELD = st.sampled_from(
    [
        "Channel",
        "Channel1",
        "Channel2",
        "Context",
        "Exten",
        "Priority",
        "Queue",
        "Interface",
        "Paused",
        "Command",
        "Async",
        "Timeout",
    ]
)
VALUE = st.one_of(
    st.sampled_from(
        [
            "Local/5000@inbound",
            "sales",
            "1",
            "true",
            "queue-entry",
            "Local/6001@agents",
            "ANSWER",
            "",
            "holding",
            "s",
        ]
    ),
    st.text(max_size=8).filter(lambda s: "\r" not in s and "\n" not in s),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(ACTIONS, st.lists(st.tuples(FIELD, VALUE), max_size=5), st.floats(0, 3)),
        max_size=15,
    )
)
def test_random_actions_get_exactly_one_response_each(steps) -> None:
    h = Harness()
    h.login()
    live = lambda: list(h.core.pbx.channels)  # noqa: E731
    for i, (action, fields, wait) in enumerate(steps):
        names = live()
        fields = [
            (k, names[i % len(names)] if k.startswith("Channel") and names and i % 2 else v)
            for k, v in fields
        ]
        start = len(h.out)
        h.out += h.core.receive(
            h.sid, Message([("Action", action), ("ActionID", f"id{i}"), *fields]), h.now
        )
        responses = [o for o in h.out[start:] if o.headers[0][0] == "Response"]
        assert len(responses) == 1 and dict(responses[0].headers)["ActionID"] == f"id{i}"
        h.advance(wait)
    h.advance(700)


def test_fastagi_script_routes_the_call() -> None:
    h = Harness()
    h.login()
    server = ScriptedFastAgi(["GET VARIABLE CTI_CALLID", "SET VARIABLE CTI_ROUTE support"])
    h.core.pbx.fastagi_connector = server
    h.call("5004", LAB_WAIT="3")
    h.advance(2)
    call = server.calls[0]
    assert (call.host, call.port) == ("127.0.0.1", 4573)
    assert "< agi_network_script: lab-route" in server.transcript
    uniqueid = h.events("AGIExecStart")[0]["Uniqueid"]
    assert server.transcript[-3:] == [
        f"< 200 result=1 ({uniqueid})",
        "> SET VARIABLE CTI_ROUTE support",
        "< 200 result=1",
    ]
    assert [e["Command"] for e in h.events("AGIExecEnd")] == [
        "GET VARIABLE CTI_CALLID",
        "SET VARIABLE CTI_ROUTE support",
    ]
    assert not h.events("AsyncAGIStart")
    status = next(e for e in h.events("VarSet") if e["Variable"] == "AGISTATUS")
    assert status["Value"] == "SUCCESS"
    assert h.events("QueueCallerJoin")[0]["Queue"] == "support"


def test_fastagi_unreachable_falls_through_to_the_queue() -> None:
    h = Harness()
    h.login()

    h.core.pbx.fastagi_connector = lambda call: call.failed()
    h.call("5004", LAB_WAIT="3")
    h.advance(2)
    status = next(e for e in h.events("VarSet") if e["Variable"] == "AGISTATUS")
    assert status["Value"] == "FAILURE" and not h.events("AGIExecStart")
    assert h.events("QueueCallerJoin")[0]["Queue"] == "sales"


def _answered_call(h: Harness) -> dict:
    """A sales call answered by Agent Alice; returns its AgentConnect."""
    h.login()
    h.call("5000", "stay")
    h.advance(3)
    return h.events("AgentConnect")[0]


def test_blind_transfer_dials_the_target_agent() -> None:
    h = Harness()
    agent = _answered_call(h)["DestChannel"]
    resp = h.act("BlindTransfer", Channel=agent, Context="xfer", Exten="6003")
    assert resp["Message"] == "Transfer succeeded"
    blind = h.events("BlindTransfer")[0]
    assert (blind["TransfererChannel"], blind["IsExternal"], blind["Extension"]) == (
        agent,
        "Yes",
        "6003",
    )
    assert h.events("AgentComplete")[0]["Reason"] == "transfer"
    assert agent not in h.core.pbx.channels
    h.advance(2)
    dial = h.events("DialBegin")[-1]
    assert dial["DialString"] == "6003@agents" and dial["Context"] == "xfer"
    assert h.events("DialEnd")[-1]["DialStatus"] == "ANSWER"
    assert len(h.core.pbx.bridges) == 1
    assert h.act("BlindTransfer", Channel=agent, Exten="6003")["Message"] == "No such channel"


def test_attended_transfer_merges_the_consult_bridge() -> None:
    h = Harness()
    connect = _answered_call(h)
    agent, caller = connect["DestChannel"], connect["Channel"]
    assert h.act("Atxfer", Channel=agent, Context="xfer", Exten="6003")["Response"] == "Success"
    h.advance(2)
    keyed = h.events("DTMFEnd")
    assert [e["Digit"] for e in keyed] == list("*26003")
    assert {(e["Channel"], e["DurationMs"]) for e in keyed} == {(agent, "0")}
    assert h.events("Hold")[0]["Channel"] == agent
    assert h.events("MusicOnHoldStart")[-1]["Channel"] == caller
    assert len(h.core.pbx.bridges) == 3  # original, consult, consult leg <-> agent 6003
    h.act("Hangup", Channel=agent)
    merge, xfer = h.events("BridgeMerge")[0], h.events("AttendedTransfer")[0]
    assert merge["ToBridgeUniqueid"] == xfer["DestBridgeUniqueid"] == xfer["OrigBridgeUniqueid"]
    assert (xfer["DestType"], xfer["TransfereeChannel"]) == ("Bridge", caller)
    assert xfer["TransferTargetChannel"].startswith("Local/6003@xfer-")
    assert h.events("AgentComplete")[0]["Reason"] == "transfer"
    assert h.events("MusicOnHoldStop")[-1]["Channel"] == caller
    hangup = next(e for e in h.events("Hangup") if e["Channel"] == agent)
    assert hangup["Cause"] == "16"  # bridged: normal clearing, whatever the action said


def test_wrapup_counts_whole_seconds_and_waiting_callers_poll() -> None:
    h = Harness()
    h.login()
    for name in ("Local/6002@agents", "Local/6003@agents"):
        h.act("QueuePause", Interface=name, Paused="true")
    h.call("5000", LAB_WAIT="3")
    h.advance(0.7)
    h.call("5000", LAB_WAIT="20")  # waits behind the first caller
    h.advance(5)
    complete = h.events("AgentComplete")[0]
    ended = float(complete["Timestamp"])
    h.advance(5)
    second = h.events("AgentCalled")[1]
    # Alice is free again once int(now) - 2 >= int(end); the caller notices on its next
    # one-second check, not at once.
    free_at = int(ended) + 2
    assert free_at <= float(second["Timestamp"]) < free_at + 1.01
    assert h.events("QueueCallerJoin")[1]["Position"] == "2"


def test_a_dropped_session_misses_events_and_a_new_one_resyncs() -> None:
    h = Harness()
    _answered_call(h)
    h.core.disconnect(h.sid)
    mark = len(h.out)
    # A call placed while nobody is connected (08: from the CLI); nobody is told.
    h.core.originate(
        Message(
            [
                ("Action", "Originate"),
                ("Channel", "Local/5005@inbound"),
                ("Context", "caller-script"),
                ("Exten", "stay"),
                ("Priority", "1"),
            ]
        )
    )
    h.advance(2)
    assert h.out[mark:] == []
    h.sid, h.out = h.core.connect(h.now), []
    h.login()
    assert [o.headers[0][1] for o in h.out] == [
        "Success",
        "FullyBooted",
        "SuccessfulAuth",
    ]
    h.act("CoreShowChannels")
    listed = {e["Channel"] for e in h.events("CoreShowChannel")}
    assert any(c.startswith("Local/5005@inbound-") for c in listed) and len(listed) == 8


def _hint_events(h: Harness) -> list[tuple[str, str, str]]:
    """Live ExtensionStatus events (ExtensionStateList items carry an ActionID)."""
    return [
        (e["Exten"], e["Status"], e["StatusText"])
        for e in h.events("ExtensionStatus")
        if "ActionID" not in e
    ]


def test_hints_follow_the_agents_devices() -> None:
    h = Harness()
    h.login()
    h.call("5000", LAB_WAIT="4")
    h.advance(1.2)  # Alice's leg is ringing: a Local device is in use, never "Ringing"
    assert _hint_events(h) == [("6001", "1", "InUse")]
    live = h.events("ExtensionStatus")[0]
    assert list(live) == [
        "Event",
        "Privilege",
        "Timestamp",
        "Exten",
        "Context",
        "Hint",
        "Status",
        "StatusText",
    ]
    assert (live["Context"], live["Hint"]) == ("agent-hints", "Local/6001@agents")
    h.advance(1)  # answered: no change
    assert len(_hint_events(h)) == 1
    start = len(h.out)
    resp = h.act("ExtensionStateList")
    assert (resp["EventList"], resp["Message"]) == ("start", "Extension Statuses will follow")
    frames = [dict(o.headers) for o in h.out[start + 1 :]]
    assert [(f["Exten"], f["Status"]) for f in frames[:-1]] == [
        ("6001", "1"),
        ("6002", "0"),
        ("6003", "0"),
        ("7001", "0"),
    ]
    assert list(frames[0])[:3] == ["Event", "ActionID", "Exten"]
    assert frames[-1] == {
        "Event": "ExtensionStateListComplete",
        "ActionID": resp["ActionID"],
        "EventList": "Complete",
        "ListItems": "4",
    }
    h.advance(5)
    assert _hint_events(h) == [("6001", "1", "InUse"), ("6001", "0", "Idle")]


def test_hints_are_settings() -> None:
    h = Harness(hints=(Hint("100", "Local/6002@agents", "blf"),))
    h.login()
    h.call("5000", LAB_WAIT="3")
    h.advance(6)
    assert _hint_events(h) == []  # Alice took the call
    start = len(h.out)
    h.act("ExtensionStateList")
    names = [o.headers[0][1] for o in h.out[start:]]
    assert names == ["Success", "ExtensionStatus", "ExtensionStateListComplete"]
    none = Harness(hints=())
    none.login()
    assert none.act("ExtensionStateList")["EventList"] == "start"
    assert dict(none.out[-1].headers)["ListItems"] == "0"


def _device_list(h: Harness) -> dict[str, str]:
    start = len(h.out)
    h.act("DeviceStateList")
    frames = [dict(o.headers) for o in h.out[start + 1 : -1]]
    return {f["Device"]: f["State"] for f in frames}


def test_device_state_list_shows_app_queue_pseudo_devices_only() -> None:
    h = Harness()
    h.login()
    # As after Asterisk loads queues.conf: no Queue:<q> yet, ``_avail`` INUSE.
    assert _device_list(h) == {
        "Queue:sales_pause_Local/6001@agents": "NOT_INUSE",
        "Queue:sales_pause_Local/6002@agents": "NOT_INUSE",
        "Queue:sales_pause_Local/6003@agents": "NOT_INUSE",
        "Queue:sales_avail": "INUSE",
        "Queue:support_pause_Local/6101@agents-noanswer": "NOT_INUSE",
        "Queue:support_avail": "INUSE",
    }
    h.act("QueuePause", Interface="Local/6002@agents", Paused="true")
    h.call("5000", "stay")
    h.advance(3)  # Alice talks, Bob paused, Carol free
    states = _device_list(h)
    assert not any(d.startswith("Local/") for d in states)
    assert states["Queue:sales_pause_Local/6002@agents"] == "INUSE"
    assert (states["Queue:sales"], states["Queue:sales_avail"]) == ("NOT_INUSE", "NOT_INUSE")
    h.act("QueuePause", Interface="Local/6003@agents", Paused="true")
    assert _device_list(h)["Queue:sales_avail"] == "INUSE"  # nobody left to take a call
    live = {(e["Device"], e["State"]) for e in h.events("DeviceStateChange") if "ActionID" not in e}
    assert {
        ("Queue:sales", "RINGING"),
        ("Queue:sales", "NOT_INUSE"),
        ("Local/6001@agents", "INUSE"),
        ("Queue:sales_avail", "INUSE"),
    } <= live


def test_ami_bridge_resync_shows_the_bridge_not_the_dialplan() -> None:
    h = Harness()
    h.login()
    h.call("5003", "stay")
    h.advance(5)
    caller = h.events("UserEvent")[0]["Channel"]
    h.act(
        "Originate",
        Channel="Local/6001@agents",
        Context="agent-standby",
        Exten="s",
        Priority="1",
        Async="true",
        ChannelId="acd-1",
        OtherChannelId="acd-1-2",
    )
    h.advance(2)
    agent = h.events("OriginateResponse")[-1]["Channel"]
    h.act("Bridge", Channel1=caller, Channel2=agent)
    h.advance(3)
    h.act("CoreShowChannels")
    shown = {e["Channel"]: e for e in h.events("CoreShowChannel")}
    row = shown[caller]
    # Priority after the bridge (the Wait was 4), no application, 3 s since the Bridge.
    assert (row["Context"], row["Exten"], row["Priority"]) == ("holding", "s", "5")
    assert (row["Application"], row["ApplicationData"], row["Duration"]) == ("", "", "00:00:03")
    assert (shown[agent]["Priority"], shown[agent]["Duration"]) == ("3", "00:00:03")
    assert shown[caller.replace(";2", ";1")]["Duration"] == "00:00:10"
    h.act("Status", AllVariables="true")
    status = {e["Channel"]: e for e in h.events("Status")}
    assert (status[caller]["Application"], status[caller]["Data"]) == ("(null)", "(null)")
    assert status[caller]["Seconds"] == "3"
    (agent_status,) = (
        o.headers
        for o in h.out
        if o.headers[:3] == [("Event", "Status"), ("Privilege", "Call"), ("Channel", agent)]
    )
    assert next(v for k, v in agent_status if k == "Variable") == f"BRIDGEPEER={caller}"
    h.act("Hangup", Channel=agent)
    h.advance(0.1)
    assert h.core.pbx.channels[caller].priority == 4  # Goto(loop) from 5: waiting again
