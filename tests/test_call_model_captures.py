"""The call model replayed on every real Asterisk 22 capture (``tests/captures``).

Each scenario asserts the domain events it must produce, concretely; scenario 10 is checked
against ``10-busy-hour.expected.json`` (what app_queue itself counted), also when its bytes
arrive in random-sized reads.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti.ami.codec import Message
from cti.calls.events import (
    Agent,
    AgentChanged,
    CallAbandoned,
    CallAnswered,
    CallArrived,
    CallEnded,
    CallEvent,
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
)
from cti.calls.model import Call, CallModel
from cti.capture import RESYNC_ITEMS, captures_dir, read, read_jsonl, read_raw, replay
from tests.captures import call_events


def test_captures_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLCENTER_CAPTURES", "/somewhere/else")
    assert captures_dir() == Path("/somewhere/else")
    monkeypatch.delenv("CALLCENTER_CAPTURES")
    # Without it: the copy inside the repository, so a clone alone has the recordings.
    assert captures_dir() == Path(__file__).resolve().parent / "captures"
    assert (captures_dir() / "01-queue-answered.raw").is_file()


def capture(name: str) -> Path:
    path = captures_dir() / name
    if not path.exists():
        pytest.fail(f"capture {path} missing (set CALLCENTER_CAPTURES)")
    return path


def run(name: str) -> tuple[list[CallEvent], CallModel]:
    model = CallModel()
    return replay(capture(name), model), model


def by_call(events: list[CallEvent]) -> dict[str, list[Any]]:
    """Each call's events; a test checks their kinds() first, then reads each as its kind
    (as only() gives them)."""
    calls: dict[str, list[Any]] = defaultdict(list)
    for event in events:
        calls[event.call_id].append(event)
    return dict(calls)


def kinds(events: list[CallEvent]) -> list[str]:
    return [e.kind for e in events]


def only(events: list[CallEvent], kind: type[CallEvent]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def ended_call(model: CallModel, call_id: str) -> Call:
    return next(c for c in model.recently_ended if c.call_id == call_id)


# ---------------------------------------------------------------------------- 01


@pytest.mark.parametrize("name", ["01-queue-answered.jsonl", "01-queue-answered.raw"])
def test_01_queue_answered(name: str) -> None:
    events, model = run(name)
    calls = by_call(events)
    assert list(calls) == ["1795356693.0"]
    call = calls["1795356693.0"]
    assert kinds(call) == ["arrived", "queued", "offered", "answered", "ended"]
    arrived, queued, offered, answered, ended = call
    assert isinstance(arrived, CallArrived)
    assert arrived.caller.number == "+15551230001"
    assert arrived.caller.name == "Alice Example"
    # The PBX's caller ID once the inbound dialplan normalised it (NewCallerid).
    assert arrived.caller.raw_number == "+15551230001"
    assert arrived.dialled == "5000"
    assert arrived.channel == "Local/5000@inbound-00000000;2"
    assert arrived.at == pytest.approx(1795356693.259209)
    assert (queued.queue, queued.position) == ("sales", 1)
    assert offered.agent.interface == "Local/6001@agents"
    assert offered.agent.name == "Agent Alice"
    assert answered.agent == offered.agent
    assert answered.wait == 1.0  # app_queue's HoldTime
    assert answered.queue == "sales"
    assert isinstance(ended, CallEnded)
    assert ended.ended_by == "caller"
    assert (ended.cause, ended.cause_text) == (16, "Normal Clearing")
    assert ended.answered
    assert ended.talk_time == pytest.approx(2.0, abs=0.1)
    assert ended.duration == pytest.approx(3.5, abs=0.1)
    assert not model.calls
    assert ended_call(model, "1795356693.0").agent == answered.agent


# ---------------------------------------------------------------------------- 02


def test_02_queue_abandon_after_three_offers() -> None:
    events, _ = run("02-queue-abandon.jsonl")
    (call,) = by_call(events).values()
    assert kinds(call) == [
        "arrived", "queued",
        "offered", "offer_missed", "offered", "offer_missed", "offered", "offer_missed",
        "abandoned", "ended",
    ]  # fmt: skip
    assert {e.agent.interface for e in only(call, CallOffered)} == {"Local/6101@agents-noanswer"}
    missed = only(call, OfferMissed)
    assert [m.ring_time for m in missed[:2]] == [4.0, 4.0]  # RingTime was in ms
    # The third offer still rang when the caller hung up: it ends too, with that reason.
    assert [m.reason for m in missed] == ["no answer", "no answer", "caller hung up"]
    (abandoned,) = only(call, CallAbandoned)
    assert (abandoned.wait, abandoned.queue, abandoned.position) == (11.0, "support", 1)
    (ended,) = only(call, CallEnded)
    assert not ended.answered and ended.talk_time is None
    assert ended.ended_by == "caller"


# ---------------------------------------------------------------------------- 03


def test_03_ivr_digits_and_account() -> None:
    events, model = run("03-ivr-to-queue.jsonl")
    (call_id,) = by_call(events)
    call = by_call(events)[call_id]
    assert kinds(call)[:2] == ["arrived", "ivr_entered"]
    ivr = call[1]
    assert isinstance(ivr, IvrEntered)
    assert (ivr.application, ivr.context) == ("Background", "ivr-main")
    digits = only(call, DigitsReceived)
    # The menu choice "1", then the account number "12345#" into Read().
    assert "".join(d.digits for d in digits) == "112345#"
    assert digits[1].at - digits[0].at > 1.5
    assert call[0].caller.number == "+442071234567"
    assert call[0].dialled == "5001"
    assert kinds(call)[-4:] == ["queued", "offered", "answered", "ended"]
    assert only(call, CallAnswered)[0].agent.name == "Agent Bob"
    done = ended_call(model, call_id)
    assert done.variables["CTI_ACCOUNT"] == "12345"
    assert done.variables["IVR_CHOICE"] == "sales"
    assert done.digits == "112345#"


# ---------------------------------------------------------------------------- 04


def test_04_asyncagi() -> None:
    events, model = run("04-asyncagi.jsonl")
    (call_id, call), = by_call(events).items()  # fmt: skip
    ivr = only(call, IvrEntered)
    assert [(e.application, e.context) for e in ivr] == [("AsyncAGI", "inbound")]
    assert "".join(d.digits for d in only(call, DigitsReceived)) == "542#"
    assert kinds(call)[-4:] == ["queued", "offered", "answered", "ended"]
    assert ended_call(model, call_id).variables["CTI_ROUTE"] == "sales"


# ---------------------------------------------------------------------------- 05


def test_05_external_acd_bridge() -> None:
    events, _ = run("05-external-acd-bridge.jsonl")
    (call,) = by_call(events).values()
    assert kinds(call) == ["arrived", "parked", "offered", "answered", "agent_hung_up", "ended"]
    arrived, parked, offered, answered, hung_up, ended = call
    assert hung_up.agent == offered.agent  # the ACD must release the caller now
    assert arrived.caller.number == "+15557654321"
    assert isinstance(parked, CallParked)
    assert (parked.lane, parked.channel) == ("external", "Local/5003@inbound-0000000a;2")
    assert offered.agent.interface == "Local/6002@agents"
    assert offered.agent.channel == "Local/6002@agents-0000000b;1"
    assert offered.queue is None
    assert answered.agent == offered.agent
    assert answered.wait == pytest.approx(2.5, abs=0.05)  # parked -> bridged
    assert ended.ended_by == "agent"  # the agent leg was hung up first
    assert ended.talk_time == pytest.approx(2.5, abs=0.05)


# ---------------------------------------------------------------------------- 06


def assert_hold_pairs(call: list[CallEvent]) -> None:
    """Every ``unheld`` ends a ``held`` of the same channel; no channel is held twice."""
    held: set[str] = set()
    for event in call:
        if isinstance(event, CallHeld):
            assert event.channel not in held, event
            held.add(event.channel)
        elif isinstance(event, CallUnheld):
            assert event.channel in held, event
            held.remove(event.channel)


def test_06_blind_and_attended_transfer() -> None:
    events, model = run("06-transfers.jsonl")
    calls = by_call(events)
    assert list(calls) == ["1795356756.26", "1795356766.32"]
    blind_call, attended_call = calls["1795356756.26"], calls["1795356766.32"]
    bob = Agent("Local/6002@agents", "Agent Bob", "Local/6002@agents-0000000d;1")
    alice = Agent("Local/6001@agents", "Agent Alice", "Local/6001@agents-00000010;1")

    # A) Asterisk sends an Unhold for the blind transferer, who was never held: not reported.
    assert kinds(blind_call) == [
        "arrived", "queued", "offered", "answered", "transferred", "agent_changed", "ended",
    ]  # fmt: skip
    assert only(blind_call, CallAnswered)[0].agent == bob
    (blind,) = only(blind_call, CallTransferred)
    assert (blind.method, blind.by, blind.target) == ("blind", bob, "6003@xfer")
    assert blind.transferer == "agent"
    # The transferee reached the target: its agent leg is the call's agent now, and says so.
    carol = Agent("Local/6003@agents", None, "Local/6003@agents-0000000e;1")
    (changed,) = only(blind_call, AgentChanged)
    assert changed.agent == carol
    done = ended_call(model, "1795356756.26")
    assert done.agent == carol

    # B) The transferer is held while consulting, then hangs up: no Unhold comes for it.
    assert kinds(attended_call) == [
        "arrived", "queued", "offered", "answered", "held", "transferred", "ended",
    ]  # fmt: skip
    assert only(attended_call, CallAnswered)[0].agent == alice
    (held,) = only(attended_call, CallHeld)
    assert held.channel == alice.channel
    (attended,) = only(attended_call, CallTransferred)
    assert (attended.method, attended.by) == ("attended", alice)
    assert attended.target == "Local/6003@xfer-00000011;1"
    done = ended_call(model, "1795356766.32")
    assert done.agent == Agent("Local/6003@xfer", None, "Local/6003@xfer-00000011;1")

    for call in calls.values():
        assert_hold_pairs(call)
        (ended,) = only(call, CallEnded)
        assert ended.ended_by == "caller"  # the transferer's hang-up is not the end
        assert ended.answered
        assert kinds(call).count("answered") == 1
    assert not model.calls
    assert all(not c.held for c in model.recently_ended)


def test_06_the_attended_transfer_takes_the_call_off_hold() -> None:
    model = CallModel()
    held_after: list[tuple[str, set[str]]] = []
    for rec in read_jsonl(capture("06-transfers.jsonl")):
        for event in call_events(model.handle(rec.message, rec.received_at)):
            if event.call_id == "1795356766.32" and event.kind != "ended":
                held_after.append((event.kind, set(model.calls[event.call_id].held)))
    alice = "Local/6001@agents-00000010;1"
    assert held_after[-3:] == [("answered", set()), ("held", {alice}), ("transferred", set())]


# ---------------------------------------------------------------------------- 07


def test_07_pause_and_status_queries_create_no_phantom_calls() -> None:
    model = CallModel()
    events: list[CallEvent] = []
    lists: dict[str, list[Message]] = defaultdict(list)
    resyncs = 0
    for rec in read_jsonl(capture("07-pause-resync.jsonl")):
        msg = rec.message
        events.extend(call_events(model.handle(msg, rec.received_at)))
        if msg.name == "CoreShowChannel":
            lists["CoreShowChannels"].append(msg)
        elif msg.name in ("QueueEntry", "QueueMember", "QueueParams"):
            lists["QueueStatus"].append(msg)
        elif msg.name == "CoreShowChannelsComplete":
            live = dict(model.calls)
            # The same snapshot a reconnecting client would take changes nothing here.
            assert call_events(model.resync(lists, rec.received_at or 0.0)) == []
            assert dict(model.calls) == live
            lists.clear()
            resyncs += 1
        elif msg.name == "QueueStatusComplete":
            lists.pop("QueueStatus", None)
    assert resyncs == 3
    (call,) = by_call(events).values()
    assert kinds(call) == ["arrived", "queued", "offered", "answered", "ended"]
    assert only(call, CallAnswered)[0].wait == 4.0


# ---------------------------------------------------------------------------- 08


@pytest.mark.parametrize("name", ["08-reconnect.jsonl", "08-reconnect.raw"])
def test_08_reconnect_and_resync(name: str) -> None:
    events, model = run(name)
    calls = by_call(events)
    a, b = calls["1795356790.44"], calls["1795356793.48"]
    # A was answered on connection 1 and hung up on connection 2.
    assert kinds(a) == ["arrived", "queued", "offered", "answered", "ended"]
    (a_end,) = only(a, CallEnded)
    assert a_end.ended_by == "caller" and a_end.answered
    assert a_end.talk_time == pytest.approx(6.0, abs=0.1)
    # B happened while disconnected: the resync brings it in, its abandon is then seen live.
    assert kinds(b) == ["arrived", "queued", "offered", "offer_missed", "abandoned", "ended"]
    arrived, queued = b[0], b[1]
    assert arrived.caller.number is None  # withheld
    assert arrived.dialled == "5005"
    assert arrived.channel == "Local/5005@inbound-00000017;2"
    assert (queued.queue, queued.position) == ("support", 1)
    (abandoned,) = only(b, CallAbandoned)
    assert (abandoned.wait, abandoned.queue, abandoned.position) == (5.0, "support", 1)
    assert abandoned.at - queued.at == pytest.approx(5.0, abs=1.0)  # Wait=4 at the resync
    assert only(b, CallEnded)[0].ended_by == "caller"
    assert len(calls) == 2 and not model.calls


def test_08_calls_lost_during_the_disconnect_end_as_system() -> None:
    model = CallModel()
    records = []
    for rec in read_jsonl(capture("08-reconnect.jsonl")):
        if rec.connection == 2:
            break
        records.append(rec)
    replay(records, model)
    assert list(model.calls) == ["1795356790.44"]
    (ended,) = call_events(model.resync({"CoreShowChannels": []}, now=1795356800.0))
    assert isinstance(ended, CallEnded)
    assert (ended.call_id, ended.ended_by, ended.cause) == ("1795356790.44", "system", None)
    # Answered, but when the talk ended was never seen: the outage is not talk time.
    assert ended.answered and ended.talk_time is None
    assert not model.calls
    # A partial snapshot (no channel list) says nothing about which calls are alive.
    assert model.resync({"QueueStatus": []}, now=1795356801.0) == []


def test_08_snapshot_on_first_login_brings_in_both_calls() -> None:
    """A model starting with calls already up learns them from the resync alone."""
    lists: dict[str, list[Message]] = defaultdict(list)
    now = 0.0
    for rec in read_jsonl(capture("08-reconnect.jsonl")):
        action = RESYNC_ITEMS.get(rec.message.name)
        if rec.connection == 2 and action is not None:
            lists[action].append(rec.message)
            now = rec.received_at or now
    model = CallModel()
    calls = by_call(call_events(model.resync(lists, now)))
    a, b = calls["1795356790.44"], calls["1795356793.48"]
    assert kinds(a) == ["arrived", "answered"]
    assert a[0].caller.number == "+15558889999" and a[0].dialled == "5000"
    answered = a[1]
    assert answered.agent.interface == "Local/6001@agents"
    assert (answered.queue, answered.wait) == ("sales", 1.0)  # Status QUEUEWAIT
    assert kinds(b) == ["arrived", "queued", "offered"]
    assert b[2].agent.interface == "Local/6101@agents-noanswer"
    assert model.calls["1795356790.44"].state == "connected"
    assert model.calls["1795356793.48"].state == "queued"
    # Asking again changes nothing.
    assert call_events(model.resync(lists, now + 1)) == []


# ---------------------------------------------------------------------------- 09


def test_09_fastagi() -> None:
    events, _ = run("09-fastagi.jsonl")
    (call,) = by_call(events).values()
    assert kinds(call) == ["arrived", "ivr_entered", "queued", "offered", "answered", "ended"]
    assert (call[1].application, call[1].context) == ("FastAGI", "inbound")


# ---------------------------------------------------------------------------- 10


def busy_hour_outcomes(events: list[CallEvent]) -> dict[str, dict[str, Any]]:
    """Per call, the figures 10-busy-hour.expected.json lists."""
    out: dict[str, dict[str, Any]] = {}
    for call_id, call in by_call(events).items():
        arrived = call[0]
        assert isinstance(arrived, CallArrived)
        (queued,) = only(call, CallQueued)
        (ended,) = only(call, CallEnded)
        row: dict[str, Any] = {
            "linkedid": call_id,
            "digits": "".join(d.digits for d in only(call, DigitsReceived)),
            "did": arrived.dialled,
            "caller_name": arrived.caller.name,
            "caller_number": arrived.caller.number,
            "queue": queued.queue,
            "join_position": queued.position,
            "offers": len(only(call, CallOffered)),
        }
        answered = only(call, CallAnswered)
        if answered:
            row |= {
                "outcome": "answered",
                "agent": answered[0].agent.name,
                "agent_interface": answered[0].agent.interface,
                "hold_time_s": answered[0].wait,
                "talk_time_s": ended.talk_time,
                "ended_by": ended.ended_by,
            }
        else:
            (abandoned,) = only(call, CallAbandoned)
            row |= {
                "outcome": "abandoned",
                "hold_time_s": abandoned.wait,
                "abandon_position": abandoned.position,
            }
        out[call_id] = row
    return out


def assert_busy_hour(events: list[CallEvent]) -> None:
    expected = json.loads(capture("10-busy-hour.expected.json").read_text(encoding="utf-8"))
    got = busy_hour_outcomes(events)
    assert sorted(got) == sorted(c["linkedid"] for c in expected["calls"])
    for want in expected["calls"]:
        row = dict(got[want["linkedid"]])
        if "talk_time_s" in want:
            # app_queue counts whole seconds (truncated); the model measures the events.
            assert row.pop("talk_time_s") == pytest.approx(want["talk_time_s"], abs=1.0)
            want = {k: v for k, v in want.items() if k != "talk_time_s"}
        assert row == want, want["linkedid"]
    answered = [r for r in got.values() if r["outcome"] == "answered"]
    totals = expected["totals"]
    assert len(got) == totals["offered"]
    assert len(answered) == totals["answered"]
    assert len(got) - len(answered) == totals["abandoned"]
    asa = sum(r["hold_time_s"] for r in answered) / len(answered)
    assert asa == pytest.approx(totals["asa_s"])
    by_agent: dict[str, int] = defaultdict(int)
    for r in answered:
        by_agent[r["agent"]] += 1
    assert by_agent == totals["by_agent"]


@pytest.mark.parametrize("name", ["10-busy-hour.jsonl", "10-busy-hour.raw"])
def test_10_busy_hour_matches_app_queue(name: str) -> None:
    events, model = run(name)
    assert_busy_hour(events)
    assert not model.calls


_BUSY_HOUR_RAW: bytes | None = None


def busy_hour_raw() -> bytes:
    global _BUSY_HOUR_RAW
    if _BUSY_HOUR_RAW is None:
        _BUSY_HOUR_RAW = capture("10-busy-hour.raw").read_bytes()
    return _BUSY_HOUR_RAW


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=9000), min_size=1, max_size=400))
def test_10_busy_hour_in_random_reads(sizes: list[int]) -> None:
    model = CallModel()
    assert_busy_hour(replay(read_raw(busy_hour_raw(), sizes), model))


# ---------------------------------------------------------------------------- 11


def test_11_acd_failures() -> None:
    events, model = run("11-acd-failures.jsonl")
    calls = by_call(events)
    # The orphan agent leg originated after the caller left does not become a call.
    (call,) = calls.values()
    assert kinds(call) == ["arrived", "parked", "offered", "offer_missed", "abandoned", "ended"]
    offered, missed = only(call, CallOffered)[0], only(call, OfferMissed)[0]
    assert offered.agent.interface == "Local/6101@agents-noanswer"
    assert missed.agent == offered.agent
    assert missed.ring_time == pytest.approx(4.0, abs=0.05)  # Originate Timeout, Reason 3
    (abandoned,) = only(call, CallAbandoned)
    # Still parked after the failed offer: hanging up is an abandon from holding.
    assert abandoned.lane == "external" and abandoned.position is None
    assert abandoned.wait == pytest.approx(4.0, abs=0.05)
    assert only(call, CallEnded)[0].ended_by == "caller"
    assert not model.calls


def test_11_all_three_connections_replay_from_raw() -> None:
    events, _ = run("11-acd-failures.raw")
    assert kinds(events) == ["arrived", "parked", "offered", "offer_missed", "abandoned", "ended"]


# ---------------------------------------------------------------------------- 12


def test_12_external_acd_with_six_parked_callers() -> None:
    events, model = run("12-external-acd.jsonl")
    decisions = json.loads(capture("12-external-acd.acd.json").read_text(encoding="utf-8"))
    bridged = {d["caller"]: d["agent"] for d in decisions if d["what"] == "bridged"}
    failed = {d["caller"]: d["agent"] for d in decisions if d["what"] == "offer-failed"}
    gave_up = {d["channel"] for d in decisions if d["what"] == "abandoned-while-parked"}
    calls = by_call(events)
    assert len(calls) == 6
    assert len(only(events, CallParked)) == 6
    by_channel = {call[0].channel: call for call in calls.values()}
    assert set(by_channel) == set(bridged) | gave_up
    for channel, call in by_channel.items():
        (ended,) = only(call, CallEnded)
        assert ended.ended_by == "caller"
        if channel in gave_up:
            assert kinds(call) == ["arrived", "parked", "abandoned", "ended"]
            assert only(call, CallAbandoned)[0].lane == "external-moh"
            continue
        offers = [o.agent.interface for o in only(call, CallOffered)]
        missed = [m.agent.interface for m in only(call, OfferMissed)]
        assert offers == [*([failed[channel]] if channel in failed else []), bridged[channel]]
        assert missed == ([failed[channel]] if channel in failed else [])
        (answered,) = only(call, CallAnswered)
        assert answered.agent.interface == bridged[channel]
        assert ended.answered and not only(call, CallAbandoned)
    (retry,) = [c for c in calls.values() if only(c, OfferMissed)]
    assert retry[0].caller.name == "李娜"
    assert only(retry, OfferMissed)[0].ring_time == pytest.approx(3.0, abs=0.05)
    assert not model.calls


# ---------------------------------------------------------------------------- all


@pytest.mark.parametrize(
    "name", sorted(p.name for p in captures_dir().glob("*.jsonl")) or ["missing"]
)
def test_every_capture_leaves_no_live_call_and_pairs_arrivals_with_ends(name: str) -> None:
    events, model = run(name)
    calls = by_call(events)
    for call in calls.values():
        assert call[0].kind == "arrived"
        assert call[-1].kind == "ended"
        assert kinds(call).count("arrived") == kinds(call).count("ended") == 1
        assert [e.at for e in call] == sorted(e.at for e in call)
        assert_hold_pairs(call)
    assert not model.calls
    # The same bytes, parsed by the codec, tell the same story.
    from_raw = replay(read(capture(name).with_suffix(".raw")), CallModel())
    assert [(e.call_id, e.kind) for e in from_raw] == [(e.call_id, e.kind) for e in events]


# ---------------------------------------------------------------------------- 13


def _truth_13() -> dict[str, Any]:
    """The recorder's ground truth at connection 2's login (its ``note``)."""
    prefix = "WHO IS WHERE at conn2 login "
    with capture("13-acd-restart-resync.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("dir") == "note" and rec["text"].startswith(prefix):
                text = rec["text"]
                return json.loads(text[text.index("{") :])
    raise AssertionError("recording 13 has no ground-truth note")


@pytest.mark.parametrize("suffix", [".jsonl", ".raw"])
def test_13_a_backend_started_mid_traffic_replays_to_the_truth(suffix: str) -> None:
    """Connection 2 alone (a backend started while callers wait and talk) rebuilds who is
    where from its resync answers: parked callers with lanes and park times, the
    ACD-bridged caller and the app_queue caller with their agents and talk times."""
    truth = _truth_13()
    records = [r for r in read(capture("13-acd-restart-resync" + suffix)) if r.connection == 2]
    model = CallModel()
    events = replay(records, model, devices=True)
    calls = by_call(call_events(events))
    assert len(calls) == 4 and not model.calls

    for parked in truth["parked_waiting"]:
        call = calls[parked["linkedid"]]
        assert kinds(call) == ["arrived", "parked", "abandoned", "ended"]
        arrived, park = call[0], call[1]
        assert arrived.restored and park.restored
        assert arrived.caller.number == parked["callerid_num"]
        assert arrived.caller.name == parked["name"]
        assert arrived.dialled == parked["did"]
        assert (park.lane, park.channel) == (parked["lane"], parked["channel"])
        # The wait counts from parking, not from the login.
        assert park.at == pytest.approx(parked["parked_at"], abs=1.0)
        (abandoned,) = only(call, CallAbandoned)
        assert abandoned.lane == parked["lane"]
        assert abandoned.wait == pytest.approx(abandoned.at - parked["parked_at"], abs=1.0)

    bridge = truth["acd_bridge"]
    noor = calls[bridge["caller_linkedid"]]
    assert kinds(noor) == ["arrived", "answered", "ended"]
    answered = noor[1]
    assert answered.restored and answered.lane == bridge["lane_before_bridge"]
    assert answered.queue is None  # not an app_queue call
    assert answered.agent.interface == bridge["agent_interface"]
    assert answered.agent.channel == bridge["agent_channel"]
    assert answered.at == pytest.approx(bridge["bridged_at"], abs=1.0)
    (ended,) = only(noor, CallEnded)
    assert ended.ended_by == "caller" and ended.answered
    assert ended.talk_time == pytest.approx(ended.at - bridge["bridged_at"], abs=1.0)

    queued = truth["queue_call"]
    priya = calls[queued["linkedid"]]
    assert kinds(priya) == ["arrived", "answered", "ended"]
    answered = priya[1]
    assert (answered.queue, answered.agent.name) == ("sales", queued["agent_member"])
    assert answered.agent.interface == queued["agent_interface"]
    (ended,) = only(priya, CallEnded)
    assert ended.talk_time == pytest.approx(17.0, abs=1.0)  # app_queue's AgentComplete

    # Devices: the two agents on calls are busy from the snapshot on, until their calls end;
    # the idle one never shows as busy.
    devices = [e for e in events if isinstance(e, DeviceStateChanged)]
    busy = [(e.interface, e.state, e.restored) for e in devices[:2]]
    assert busy == [("Local/6001@agents", "busy", True), ("Local/6002@agents", "busy", True)]
    assert devices.index(devices[0]) < events.index(calls[bridge["caller_linkedid"]][0])
    assert {e.interface for e in devices} == {"Local/6001@agents", "Local/6002@agents"}
    assert [e.state for e in devices[2:]] == ["idle", "idle"]


def test_13_a_restarted_backend_ends_the_calls_it_left_open_once() -> None:
    """Calls a previous run left open that the PBX no longer has end as ``system``, with
    the time they were last seen; calls still up are restored, never ended twice."""
    records = [
        r for r in read(capture("13-acd-restart-resync.jsonl")) if r.connection == 2
    ]
    model = CallModel()
    model.expect_open(
        [
            ("gone.1", 1796059800.0, 1796059830.0, True),
            ("1796059845.148", 1796059845.3, 1796059847.0, True),  # Priya: still up
        ]
    )
    calls = by_call(replay(records, model))
    (ended,) = calls["gone.1"]
    assert isinstance(ended, CallEnded) and ended.restored
    assert (ended.ended_by, ended.answered, ended.talk_time) == ("system", True, None)
    assert ended.ended_after == 1796059830.0 and ended.at > ended.ended_after
    assert kinds(calls["1796059845.148"]) == ["arrived", "answered", "ended"]


# ---------------------------------------------------------------------------- 14

_LOCAL_OPT_RAW: bytes | None = None


def _assert_14(events: list[CallEvent]) -> None:
    """Recording 14: Local channel optimisation, a masked caller ID, a caller's transfer."""
    calls = by_call(events)
    assert len(calls) == 3
    ada, bruno, chidi = calls["1796059871.152"], calls["1796059875.158"], calls["1796059880.162"]

    # (a) The queue member's Local pair is optimised away: same agent, same call, talk time
    # to the caller's real hang-up (872.735 -> 878.729), ended by the caller.
    assert kinds(ada) == ["arrived", "queued", "offered", "answered", "ended"]
    (answered,) = only(ada, CallAnswered)
    assert (answered.agent.name, answered.queue) == ("Agent Dora", "desk")
    (ended,) = only(ada, CallEnded)
    assert ended.ended_by == "caller"
    assert ended.talk_time == pytest.approx(6.0, abs=0.05)

    # (b) The dialplan masked the number and then the name before anything was announced:
    # every event shows the masked identity, never the original.
    (arrived,) = only(bruno, CallArrived)
    assert (arrived.caller.number, arrived.caller.name) == ("+31201234567", "Masked Caller")
    assert arrived.original_caller is None  # not kept unless the settings allow it
    assert "5553217788" not in json.dumps([e.to_record() for e in bruno])
    assert only(bruno, CallEnded)[0].ended_by == "caller"

    # (c) The caller transferred the agent away with #1: the caller is the transferer and
    # the one who ended the call; talk time runs to the transfer (app_queue says 7).
    (transferred,) = only(chidi, CallTransferred)
    assert (transferred.transferer, transferred.by) == ("caller", None)
    assert transferred.target == "6004@xfer"
    (ended,) = only(chidi, CallEnded)
    assert ended.ended_by == "caller"
    assert ended.talk_time == pytest.approx(6.4, abs=0.6)


def test_14_local_optimisation_masked_caller_id_and_a_callers_transfer() -> None:
    events, model = run("14-local-optimization-callerid.jsonl")
    _assert_14(events)
    assert not model.calls


def test_14_keeps_the_original_caller_id_where_allowed() -> None:
    model = CallModel(keep_original_caller_id=True)
    events = replay(capture("14-local-optimization-callerid.jsonl"), model)
    (arrived,) = [e for e in only(events, CallArrived) if e.call_id == "1796059875.158"]
    assert arrived.caller.number == "+31201234567"
    assert arrived.original_caller is not None
    assert arrived.original_caller.name == "Bruno Castillo"


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=9000), min_size=1, max_size=300))
def test_14_in_random_reads(sizes: list[int]) -> None:
    global _LOCAL_OPT_RAW
    if _LOCAL_OPT_RAW is None:
        _LOCAL_OPT_RAW = capture("14-local-optimization-callerid.raw").read_bytes()
    _assert_14(replay(read_raw(_LOCAL_OPT_RAW, sizes), CallModel()))


def test_14_the_optimised_agent_stays_busy_until_the_real_hang_up() -> None:
    """app_queue's member device goes idle at the optimisation (README 14): the model keeps
    it busy while the channel that replaced it is up."""
    model = CallModel()
    events = replay(capture("14-local-optimization-callerid.jsonl"), model, devices=True)
    desk = [e for e in events if isinstance(e, DeviceStateChanged)
            and e.interface == "Local/7001@agent-desk"]  # fmt: skip
    assert [e.state for e in desk] == ["busy", "idle"]
    assert desk[-1].at == pytest.approx(1796059878.729, abs=0.05)
