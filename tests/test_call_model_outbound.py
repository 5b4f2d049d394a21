"""The call model follows a callback's outbound call: the agent leg the ACD originates (with
``CTI_CALLBACK=<request id>``) answers, runs the ``outbound`` context and dials the customer.
The messages are those the PBX simulator sends for it (and Asterisk 22 for an Originate and
a Dial: recordings 06 and 12), cut to the headers the model reads."""

from __future__ import annotations

from typing import Any

import pytest

from cti.ami.codec import Message
from cti.calls.events import CallEvent
from cti.calls.model import CallModel

T0 = 1_800_000_000.0
CUSTOMER = "+4930123456"
AGENT_1 = "Local/6001@agents-00000000;1"  # the originated leg: runs [outbound]
AGENT_2 = "Local/6001@agents-00000000;2"  # the agent's phone side
CUST_1 = f"Local/{CUSTOMER}@customers-00000001;1"
CUST_2 = f"Local/{CUSTOMER}@customers-00000001;2"
LEGS = {
    AGENT_1: ("acd-000001", "agents", "6001"),
    AGENT_2: ("acd-000001-2", "agents", "6001"),
    CUST_1: ("1800000001.0", "customers", CUSTOMER),
    CUST_2: ("1800000001.1", "customers", CUSTOMER),
}


def ev(name: str, at: float, **headers: str) -> Message:
    return Message([("Event", name), ("Timestamp", f"{T0 + at:.6f}"), *headers.items()])


def block(channel: str, prefix: str = "", **overrides: str) -> dict[str, str]:
    uid, context, exten = LEGS.get(channel, ("?", "?", "?"))
    fields = {
        "Channel": channel,
        "CallerIDNum": CUSTOMER,
        "Context": context,
        "Exten": exten,
        "Uniqueid": uid,
        "Linkedid": "acd-000001",
    } | overrides
    return {f"{prefix}{k}": v for k, v in fields.items()}


def on_channel(name: str, at: float, channel: str, **extra: str) -> Message:
    return ev(name, at, **(block(channel) | extra))


def dial(name: str, at: float, source: str | None, dest: str, **extra: str) -> Message:
    src = block(source, Context="outbound", Exten=CUSTOMER) if source else {}
    return ev(name, at, **src, **block(dest, "Dest"), **extra)


def hangup(at: float, channel: str, cause: str = "16", text: str = "Normal Clearing") -> Message:
    return on_channel("Hangup", at, channel, Cause=cause, **{"Cause-txt": text})


def agent_answers(request: str = "cb-1.5") -> list[Message]:
    """Originate of the agent leg (ChannelId acd-000001) until the agent answered."""
    return [
        on_channel("Newchannel", 0.0, AGENT_1),
        on_channel("Newchannel", 0.0, AGENT_2),
        on_channel("VarSet", 0.0, AGENT_1, Variable="CTI_CALLBACK", Value=request),
        on_channel("VarSet", 0.0, AGENT_2, Variable="CTI_CALLBACK", Value=request),
        dial("DialBegin", 0.0, None, AGENT_1),
        dial("DialEnd", 1.0, None, AGENT_1, DialStatus="ANSWER"),
        ev("OriginateResponse", 1.0, Response="Success", Channel=AGENT_1, Uniqueid="acd-000001"),
    ]


def customer_dialled(at: float = 1.0) -> list[Message]:
    return [
        on_channel("Newchannel", at, CUST_1),
        on_channel("Newchannel", at, CUST_2),
        dial("DialBegin", at, AGENT_1, CUST_1, DialString=f"Local/{CUSTOMER}@customers"),
    ]


def feed(model: CallModel, messages: list[Message]) -> list[Any]:
    return [e for m in messages for e in model.handle(m) if isinstance(e, CallEvent)]


def test_a_busy_customer_is_an_outbound_call_that_failed() -> None:
    model = CallModel()
    assert feed(model, agent_answers()) == []  # ringing the agent is no call of its own
    arrived, failed, ended = feed(
        model,
        [
            *customer_dialled(),
            dial("DialEnd", 1.2, AGENT_1, CUST_1, DialStatus="BUSY"),
            hangup(1.2, CUST_1, "17", "User busy"),
            hangup(1.2, CUST_2, "17", "User busy"),
            hangup(1.3, AGENT_1),
            hangup(1.3, AGENT_2),
        ],
    )
    assert (arrived.kind, arrived.call_id, arrived.at) == ("arrived", "acd-000001", T0 + 1)
    assert (arrived.direction, arrived.callback) == ("outbound", "cb-1.5")
    assert (arrived.caller.number, arrived.dialled, arrived.channel) == (CUSTOMER, CUSTOMER, CUST_1)
    assert (failed.kind, failed.status) == ("failed", "BUSY")
    assert failed.agent.interface == "Local/6001@agents" and failed.agent.channel == AGENT_1
    assert (ended.kind, ended.answered, ended.talk_time) == ("ended", False, None)
    assert (ended.cause, ended.cause_text) == (17, "User busy")
    (call,) = model.recently_ended
    assert (call.direction, call.dial_status, call.variables["CTI_CALLBACK"]) == (
        "outbound",
        "BUSY",
        "cb-1.5",
    )
    assert model.calls == {}
    assert model.device_state("Local/6001@agents") == "idle"


def test_an_answering_customer_is_answered_and_ends_with_the_talk_time() -> None:
    model = CallModel()
    feed(model, agent_answers())
    bridge = {"BridgeUniqueid": "b-1"}
    events = feed(
        model,
        [
            *customer_dialled(),
            dial("DialEnd", 3.0, AGENT_1, CUST_1, DialStatus="ANSWER"),
            on_channel("BridgeEnter", 3.0, CUST_1, **bridge),
            on_channel("BridgeEnter", 3.0, AGENT_1, **bridge),
            on_channel("BridgeLeave", 63.0, CUST_1, **bridge),
            hangup(63.0, CUST_2),
            hangup(63.0, CUST_1),
            on_channel("BridgeLeave", 63.0, AGENT_1, **bridge),
            hangup(63.1, AGENT_1),
            hangup(63.1, AGENT_2),
        ],
    )
    assert [e.kind for e in events] == ["arrived", "answered", "ended"]
    answered, ended = events[1:]
    assert answered.agent.interface == "Local/6001@agents" and answered.wait == pytest.approx(2)
    assert ended.answered and ended.talk_time == pytest.approx(60)
    assert ended.ended_by == "caller" and ended.duration == pytest.approx(62)


def test_an_agent_hanging_up_first_ends_the_call_as_the_agent() -> None:
    model = CallModel()
    feed(model, agent_answers())
    events = feed(
        model,
        [
            *customer_dialled(),
            dial("DialEnd", 3.0, AGENT_1, CUST_1, DialStatus="ANSWER"),
            hangup(20.0, AGENT_2),
            hangup(20.0, AGENT_1),
            hangup(20.1, CUST_1),
            hangup(20.1, CUST_2),
        ],
    )
    ended = events[-1]
    assert (ended.ended_by, ended.talk_time) == ("agent", pytest.approx(17))


def test_the_agent_giving_up_while_the_customer_rings_is_a_cancel() -> None:
    model = CallModel()
    feed(model, agent_answers())
    events = feed(
        model,
        [
            *customer_dialled(),
            hangup(9.0, AGENT_2),
            dial("DialEnd", 9.0, AGENT_1, CUST_1, DialStatus="CANCEL"),
            hangup(9.0, CUST_1),
            hangup(9.0, CUST_2),
            hangup(9.0, AGENT_1),
        ],
    )
    assert [(e.kind, getattr(e, "status", None)) for e in events] == [
        ("arrived", None),
        ("failed", "CANCEL"),
        ("ended", None),
    ]
    assert not events[-1].answered


def test_customer_channels_are_no_agent_device() -> None:
    model = CallModel()
    feed(model, agent_answers())
    feed(model, customer_dialled())
    assert model.device_state(f"Local/{CUSTOMER}@customers") == "idle"
    assert model.device_state("Local/6001@agents") == "busy"


def test_a_single_channel_agent_dialling_a_trunk() -> None:
    """A PJSIP agent (no Local pair): the originated channel itself dials the trunk."""
    agent, trunk = "PJSIP/6001-00000005", "PJSIP/trunk-00000006"
    LEGS[agent] = ("acd-000001", "default", "s")
    LEGS[trunk] = ("1800000002.7", "from-trunk", "s")
    try:
        model = CallModel()
        events = feed(
            model,
            [
                on_channel("Newchannel", 0.0, agent),
                on_channel("VarSet", 0.0, agent, Variable="CTI_CALLBACK", Value="cb-7.1"),
                on_channel("Newchannel", 2.0, trunk),
                dial("DialBegin", 2.0, agent, trunk, DialString=f"PJSIP/{CUSTOMER}@trunk"),
                dial("DialEnd", 32.0, agent, trunk, DialStatus="NOANSWER"),
                hangup(32.0, trunk, "19", "User alerting, no answer"),
            ],
        )
    finally:
        del LEGS[agent], LEGS[trunk]
    assert [e.kind for e in events] == ["arrived", "failed", "ended"]
    assert events[0].callback == "cb-7.1" and events[0].channel == trunk
    assert events[1].status == "NOANSWER" and events[1].agent.interface == "PJSIP/6001"


def test_the_request_is_read_from_channelvars_without_a_varset() -> None:
    model = CallModel()
    messages = agent_answers()
    messages = [m for m in messages if m.name != "VarSet"]
    feed(model, messages)
    feed(model, customer_dialled()[:2])
    begin = dial("DialBegin", 1.0, AGENT_1, CUST_1, ChanVariable="CTI_CALLBACK=cb-1.5")
    (arrived,) = feed(model, [begin])
    assert (arrived.direction, arrived.callback) == ("outbound", "cb-1.5")


def test_the_callback_legs_own_rings_are_no_offer_to_a_parked_caller_with_that_number() -> None:
    """The agent leg presents the customer's number; if the customer is parked meanwhile
    (they called again), ringing the agent or its phone is not an offer to that caller."""
    model = CallModel()
    parked, phone = "PJSIP/trunk-00000009", "PJSIP/6001-0000000a"
    LEGS[parked] = ("1799999999.1", "inbound", "5003")
    LEGS[phone] = ("1800000003.2", "default", "s")
    try:
        feed(
            model,
            [
                on_channel("Newchannel", -5.0, parked, Linkedid="1799999999.1"),
                ev("UserEvent", -4.0, UserEvent="CtiParked", Queue="external",
                   **block(parked, Linkedid="1799999999.1")),
            ],
        )  # fmt: skip
        assert model.calls["1799999999.1"].state == "parked"
        events = feed(
            model,
            [
                *agent_answers()[:5],  # the originate's own DialBegin rings the agent leg
                on_channel("Newchannel", 0.1, phone),
                ev("DialBegin", 0.1, **block(AGENT_2), **block(phone, "Dest")),  # ;2 rings
            ],
        )
    finally:
        del LEGS[parked], LEGS[phone]
    assert [e.kind for e in events] == []


def test_a_dial_from_a_leg_without_a_callback_request_is_no_outbound_call() -> None:
    model = CallModel()
    messages = [m for m in agent_answers() if m.name != "VarSet"]
    assert feed(model, messages + customer_dialled()) == []
    assert model.calls == {}
