"""Properties of the call model on its own: robustness, order independence, small cases."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti.ami.codec import Message
from cti.calls.events import CallArrived, CallEvent, CallUnheld
from cti.calls.model import CallModel, CallState
from cti.capture import captures_dir, read_jsonl
from tests.captures import call_events

HANDLED = [
    "Newchannel", "NewCallerid", "Newstate", "Newexten", "VarSet", "DTMFEnd", "UserEvent",
    "AsyncAGIStart", "AsyncAGIEnd", "AGIExecStart", "QueueCallerJoin", "AgentCalled",
    "AgentRingNoAnswer", "AgentConnect", "QueueCallerAbandon", "DialBegin",
    "OriginateResponse", "BridgeEnter", "BridgeLeave", "BridgeDestroy", "BridgeMerge", "Hold",
    "Unhold", "BlindTransfer", "AttendedTransfer", "HangupRequest", "SoftHangupRequest",
    "Hangup", "DeviceStateChange", "CoreShowChannel",
]  # fmt: skip
KEYS = [
    "Timestamp", "Channel", "Uniqueid", "Linkedid", "Context", "Exten", "CallerIDNum",
    "CallerIDName", "Application", "AppData", "Variable", "Value", "Digit", "Direction",
    "UserEvent", "Queue", "Position", "HoldTime", "RingTime", "Interface", "MemberName",
    "DestChannel", "DestUniqueid", "DestCallerIDNum", "DestChanVariable", "Response",
    "BridgeUniqueid", "FromBridgeUniqueid", "ToBridgeUniqueid", "Result", "Extension",
    "TransfereeUniqueid", "TransferTargetChannel", "TransferTargetUniqueid", "Cause",
    "Cause-txt", "ChanVariable", "Duration", "Wait", "BridgeId",
]  # fmt: skip
# A few ids, so random events hit each other's channels, calls and bridges.
IDS = ["1.0", "1.1", "1.2", "x", "", "<unknown>"]
VALUES = st.one_of(
    st.sampled_from([*IDS, "inbound", "Local/5000@inbound-00000000;1", "Received", "Success",
                     "Failure", "CtiParked", "Background", "AGI", "agi:async", "1", "0", "-3",
                     "1e309", "nan", "00:00:0x", "CTI_CALLID=1.1", "__CTI_ACCOUNT"]),
    st.text(max_size=12),
)  # fmt: skip
HEADER = st.tuples(st.sampled_from(KEYS), VALUES)
EVENT = st.builds(
    lambda name, headers: Message(headers=[("Event", name), *headers]),
    st.sampled_from(HANDLED),
    st.lists(HEADER, max_size=12),
)


class _Errors(logging.Handler):
    """Collects the call model's error logs while in a ``with`` block."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> _Errors:
        logging.getLogger("cti.calls.model").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("cti.calls.model").removeHandler(self)


@settings(max_examples=300, deadline=None)
@given(st.lists(EVENT, max_size=40), st.none() | st.floats(allow_nan=False))
def test_any_events_with_random_or_missing_fields_never_raise(
    messages: list[Message], received_at: float | None
) -> None:
    with _Errors() as errors:
        model = CallModel()
        for msg in messages:
            assert isinstance(model.handle(msg, received_at), list)
        snapshot = {"CoreShowChannels": [m for m in messages if m.name == "CoreShowChannel"]}
        assert isinstance(model.resync(snapshot, 0.0), list)
    # Not merely caught: malformed input takes no exception path at all.
    assert errors.records == []


def test_a_failing_handler_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    model = CallModel()

    def broken(*_: object) -> None:
        raise ZeroDivisionError("division by zero")  # a bug in one handler

    model._handlers["Hangup"] = broken
    with caplog.at_level(logging.ERROR, logger="cti.calls.model"):
        assert model.handle(Message([("Event", "Hangup"), ("Uniqueid", "1.0")])) == []
    assert "Hangup" in caplog.text and "1.0" in caplog.text


def test_banner_responses_and_unknown_events_are_ignored() -> None:
    model = CallModel()
    assert model.handle(Message.make_banner("Asterisk Call Manager/11.0.0")) == []
    assert model.handle(Message([("Response", "Success"), ("Message", "ok")])) == []
    assert model.handle(Message([("Event", "DeviceStateChange"), ("Device", "x")])) == []
    assert model.handle(Message([])) == []


def test_time_falls_back_to_the_receive_time() -> None:
    model = CallModel()
    msg = Message([
        ("Event", "Newchannel"), ("Channel", "PJSIP/trunk-00000001"), ("Uniqueid", "9.1"),
        ("Linkedid", "9.1"), ("Context", "inbound"), ("Exten", "5000"),
        ("CallerIDNum", "5551230001"), ("CallerIDName", "Trunk Caller"),
    ])  # fmt: skip
    # Not announced yet: the dialplan may still change the caller ID before it answers.
    assert model.handle(msg, received_at=42.5) == []
    up = Message([
        ("Event", "Newstate"), ("Channel", "PJSIP/trunk-00000001"), ("ChannelStateDesc", "Up"),
        ("Uniqueid", "9.1"), ("Linkedid", "9.1"),
    ])  # fmt: skip
    (arrived,) = model.handle(up, received_at=43.0)
    assert isinstance(arrived, CallArrived)
    assert arrived.at == 42.5
    # A trunk channel is the caller's only leg: it is both the PBX side and the human.
    assert arrived.channel == "PJSIP/trunk-00000001"
    assert arrived.caller.number == "+15551230001"
    call = model.calls["9.1"]
    assert call.state is CallState.ARRIVED
    call.attributes["tier"] = "gold"  # later parts fill attributes in
    assert model.calls["9.1"].attributes == {"tier": "gold"}
    with pytest.raises(TypeError):
        model.calls["x"] = call  # type: ignore[index]


# ---------------------------------------------------------------------------- interleaving


def _events_of(name: str) -> list[Message]:
    path = captures_dir() / name
    return [r.message for r in read_jsonl(path) if r.message.kind == "event"]


_STREAMS: list[list[Message]] = []


def streams() -> list[list[Message]]:
    """Three single-call recordings: a queue call, an IVR call and a parked/bridged call."""
    if not _STREAMS:
        names = ["01-queue-answered.jsonl", "03-ivr-to-queue.jsonl", "05-external-acd-bridge.jsonl"]
        _STREAMS.extend(_events_of(n) for n in names)
    return _STREAMS


def per_call(events: list[CallEvent]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        out[e.call_id].append(e.to_record())
    return dict(out)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_independent_calls_interleaved_in_any_order_keep_their_outcome(data: st.DataObject) -> None:
    alone: dict[str, list[dict[str, Any]]] = {}
    for stream in streams():
        model = CallModel()
        alone |= per_call([e for m in stream for e in call_events(model.handle(m))])
    labels = [i for i, s in enumerate(streams()) for _ in s]
    order = data.draw(st.permutations(labels))
    cursors = [0] * len(streams())
    model = CallModel()
    events: list[CallEvent] = []
    for i in order:
        events.extend(call_events(model.handle(streams()[i][cursors[i]])))
        cursors[i] += 1
    assert per_call(events) == alone
    assert not model.calls


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_real_traffic_with_damaged_fields_never_raises(data: st.DataObject) -> None:
    messages = [m for s in streams() for m in s]
    damaged = data.draw(
        st.lists(st.tuples(st.integers(0, len(messages) - 1), st.integers(0, 30), VALUES),
                 max_size=60)
    )  # fmt: skip
    for index, header, value in damaged:
        headers = list(messages[index].headers)
        if header < len(headers) and header > 0:
            if value == "":
                del headers[header]  # a missing field
            else:
                headers[header] = (headers[header][0], value)  # a wrong one
        messages[index] = Message(headers)
    with _Errors() as errors:
        model = CallModel()
        for msg in messages:
            model.handle(msg)
    assert errors.records == []


def test_unknown_events_are_logged_once_per_name(caplog: pytest.LogCaptureFixture) -> None:
    model = CallModel()
    unknown = Message([("Event", "FancyNewEvent"), ("Uniqueid", "1.1"), ("Channel", "X/1")])
    with caplog.at_level("DEBUG", logger="cti.calls.model"):
        assert model.handle(unknown) == []
        assert model.handle(unknown) == []
    lines = [r.getMessage() for r in caplog.records if "FancyNewEvent" in r.getMessage()]
    assert lines == ["call model ignores FancyNewEvent events (first: Uniqueid=1.1 Channel=X/1)"]


# ---------------------------------------------------------------------------- hold

CALLER, AGENT = "PJSIP/trunk-00000001", "PJSIP/6001-00000002"


def _event(name: str, **headers: str) -> Message:
    return Message([("Event", name), *headers.items()])


HOLD = _event("Hold", Channel=AGENT, Uniqueid="9.2", Linkedid="9.1")
UNHOLD = _event("Unhold", Channel=AGENT, Uniqueid="9.2", Linkedid="9.1")


def _call_with_agent() -> CallModel:
    """A trunk caller (9.1) with an agent leg (9.2) in the same call."""
    model = CallModel()
    model.handle(_event(
        "Newchannel", Channel=CALLER, Uniqueid="9.1", Linkedid="9.1", Context="inbound",
        Exten="5000", CallerIDNum="5551230001",
    ))  # fmt: skip
    model.handle(_event("Newstate", Channel=CALLER, ChannelStateDesc="Up", Uniqueid="9.1"))
    model.handle(_event("Newchannel", Channel=AGENT, Uniqueid="9.2", Linkedid="9.1"))
    return model


def test_hold_is_reported_once_and_only_a_held_channel_is_unheld() -> None:
    model = _call_with_agent()
    # Asterisk sends an Unhold for a blind transferer that was never held.
    assert model.handle(UNHOLD) == []
    assert [e.kind for e in model.handle(HOLD)] == ["held"]
    assert model.handle(HOLD) == []  # a repeated Hold is the same hold
    assert model.calls["9.1"].held == {AGENT}
    (unheld,) = model.handle(UNHOLD)
    assert isinstance(unheld, CallUnheld) and unheld.channel == AGENT
    assert not model.calls["9.1"].held
    assert model.handle(UNHOLD) == []


@pytest.mark.parametrize(
    "leaving",
    [
        _event("Hangup", Channel=AGENT, Uniqueid="9.2", Linkedid="9.1", Cause="16"),
        _event(
            "BlindTransfer", Result="Success", TransfereeUniqueid="9.1",
            TransfererUniqueid="9.2", Extension="6003", Context="xfer",
        ),
        _event(
            "AttendedTransfer", Result="Success", TransfereeUniqueid="9.1",
            OrigTransfererUniqueid="9.2", TransferTargetChannel="PJSIP/6003-00000003",
        ),
    ],
    ids=["hangup", "blind", "attended"],
)  # fmt: skip
def test_the_held_party_leaving_takes_the_call_off_hold(leaving: Message) -> None:
    model = _call_with_agent()
    model.handle(HOLD)
    assert "unheld" not in [e.kind for e in model.handle(leaving)]
    assert not model.calls["9.1"].held
    assert model.handle(UNHOLD) == []  # a late Unhold has nothing to end


def test_a_resync_forgets_the_hold_of_a_channel_gone_meanwhile() -> None:
    model = _call_with_agent()
    model.handle(HOLD)
    # The held agent leg hung up while the AMI link was down.
    snapshot = [_event("CoreShowChannel", Channel=CALLER, Uniqueid="9.1", Linkedid="9.1")]
    assert call_events(model.resync({"CoreShowChannels": snapshot}, now=20.0)) == []
    assert not model.calls["9.1"].held


def test_an_ended_call_is_not_held() -> None:
    model = _call_with_agent()
    model.handle(HOLD)
    (ended,) = model.handle(_event("Hangup", Channel=CALLER, Uniqueid="9.1", Linkedid="9.1"))
    assert ended.kind == "ended"
    assert not model.recently_ended[-1].held
