"""The router follows the PBX, not only its own bookkeeping: agents busy on calls it did not
make, callers answered elsewhere, and the state a restart brings back from the PBX's snapshot
(``restored`` events) and from history (calls a previous run left open)."""

from __future__ import annotations

from acd.agents import AgentState
from acd.events import AgentStateChanged, CallCompleted, CallerAbandoned, CallerConnected
from acd.router import OpenCall
from cti.calls.events import (
    Agent,
    CallAnswered,
    CallArrived,
    CallEnded,
    Caller,
    CallParked,
    DeviceStateChanged,
)

from .test_acd_router import events_of, hang_up, make_router, offers, park, waiting

ALICE, BOB, CAROL = "PJSIP/6001", "PJSIP/6002", "PJSIP/6003"  # the default interfaces


def device(interface: str, state: str, at: float, *, restored: bool = False) -> DeviceStateChanged:
    return DeviceStateChanged(at, interface, state, restored=restored)


def test_an_agent_busy_on_a_call_the_acd_did_not_make_is_not_offered() -> None:
    router = make_router()
    router.login("6001", 0.0)
    router.login("6003", 0.0)
    # Alice takes an app_queue call: her phone is busy, the ACD did not ring it.
    assert router.on_call_event(device(ALICE, "busy", 1.0)) == []
    assert router.available("sales") == ["6003"]
    assert offers(park(router, "c1", 2.0)) == [("c1", ("6003",))]
    park(router, "c2", 3.0)
    assert waiting(router) == ["c2"]
    # Her call ends: she is offered the caller who waits, at once.
    assert offers(router.on_call_event(device(ALICE, "idle", 9.0))) == [("c2", ("6001",))]


def test_logging_in_while_the_phone_is_busy_waits_for_it_to_be_idle() -> None:
    router = make_router()
    router.on_call_event(device(BOB, "busy", 0.0, restored=True))
    park(router, "c1", 1.0)
    assert router.login("6002", 2.0) == []
    assert router.agents.get("6002").state is AgentState.AVAILABLE
    assert offers(router.on_call_event(device(BOB, "idle", 5.0))) == [("c1", ("6002",))]


def test_the_acds_own_ring_does_not_undo_its_offer() -> None:
    router = make_router()
    router.login("6001", 0.0)
    assert offers(park(router, "c1", 1.0)) == [("c1", ("6001",))]
    # The agent leg the ACD originated rings and is answered: nothing changes.
    assert router.on_call_event(device(ALICE, "ringing", 1.1)) == []
    router.offer_answered("c1", "6001", 2.0)
    assert router.on_call_event(device(ALICE, "busy", 2.0)) == []
    hang_up(router, "c1", 10.0)
    # Wrap-up over, but the agent leg still up: not free until the phone is idle.
    router.tick(10.0 + 60)
    assert router.available("sales") == []
    router.on_call_event(device(ALICE, "idle", 71.0))
    assert router.available("sales") == ["6001"]


def test_a_caller_answered_elsewhere_waits_no_more() -> None:
    router = make_router()
    park(router, "c1", 1.0)
    answered = CallAnswered("c1", 5.0, Agent(BOB, "Agent Bob"), 4.0, "sales")
    assert router.on_call_event(answered) == []
    assert waiting(router) == []
    hang_up(router, "c1", 9.0)
    assert events_of(router, CallerAbandoned) == []  # answered, not abandoned


def test_restored_parked_callers_keep_their_park_time_and_are_routed_at_once() -> None:
    router = make_router()
    router.on_call_event(device(ALICE, "busy", 100.0, restored=True))
    router.login("6001", 100.0)
    router.login("6003", 100.0)
    for call_id, parked_at in (("lars", 80.0), ("mei", 90.0)):
        router.on_call_event(
            CallArrived(call_id, parked_at, Caller(None, None), "5003", "Local/x;2", restored=True),
            100.0,
        )
        decisions = router.on_call_event(
            CallParked(call_id, parked_at, "external", "Local/x;2", restored=True), 100.0
        )
        if call_id == "lars":
            # The longest-waiting caller goes to the only free agent (Alice is talking).
            assert offers(decisions) == [("lars", ("6003",))]
    assert [c.joined_at for c in router.waiting("sales")] == [90.0]


def test_a_restored_acd_bridge_makes_the_agent_on_call_until_the_call_ends() -> None:
    router = make_router({"wrap_up": 2})
    router.login("6001", 100.0)
    router.drain_events()
    router.on_call_event(
        CallArrived("noor", 80.0, Caller("+15552010001", "Noor"), "5003", "L;2", restored=True)
    )
    answered = CallAnswered(
        "noor", 95.0, Agent(ALICE, None, "PJSIP/6001-00000001"), 10.0, lane="external",
        restored=True,
    )
    router.on_call_event(answered, 100.0)
    assert router.agents.get("6001").state is AgentState.ON_CALL
    (connected,) = events_of(router, CallerConnected)
    assert (connected.call_id, connected.agent, connected.queue) == ("noor", "6001", "sales")
    park(router, "c2", 101.0)
    assert router.offers() == {}  # Alice talks
    router.on_call_event(
        CallEnded("noor", 120.0, 16, None, "caller", 40.0, 25.0, True), 120.0
    )
    completed = events_of(router, CallCompleted)
    assert [(c.call_id, c.talk_time) for c in completed] == [("noor", 25.0)]  # from 95
    assert router.agents.get("6001").state is AgentState.WRAP_UP
    assert offers(router.tick(122.0)) == [("c2", ("6001",))]


def test_an_app_queue_call_restored_does_not_make_the_acd_own_it() -> None:
    router = make_router()
    router.login("6002", 100.0)
    answered = CallAnswered("priya", 95.0, Agent(BOB, "Agent Bob"), 1.0, "sales", restored=True)
    router.on_call_event(answered, 100.0)
    assert router.agents.get("6002").state is AgentState.AVAILABLE
    assert events_of(router, CallerConnected) == []


def test_calls_a_previous_run_left_open_are_closed_when_found_gone() -> None:
    router = make_router()
    router.restore_open(
        [
            OpenCall("waited", "sales", since=50.0),
            OpenCall("talked", "sales", since=60.0, agent="6002"),
            OpenCall("still-parked", "sales", since=70.0),
        ]
    )
    for call_id in ("waited", "talked"):
        router.on_call_event(
            CallEnded(call_id, 100.0, None, None, "system", 50.0, None, call_id == "talked",
                      ended_after=80.0, restored=True),
            100.0,
        )
    # The one still parked comes back through the snapshot: it waits again, not abandoned.
    router.on_call_event(CallParked("still-parked", 70.0, "external", "L;2", restored=True), 100.0)
    events = router.drain_events()
    (abandoned,) = [e for e in events if isinstance(e, CallerAbandoned)]
    assert (abandoned.call_id, abandoned.queue, abandoned.wait) == ("waited", "sales", 30.0)
    (completed,) = [e for e in events if isinstance(e, CallCompleted)]
    assert (completed.call_id, completed.agent, completed.talk_time) == ("talked", "6002", 20.0)
    assert waiting(router) == ["still-parked"]
    hang_up(router, "still-parked", 110.0)
    assert [e.call_id for e in events_of(router, CallerAbandoned)] == ["still-parked"]
    assert not [e for e in router.drain_events() if isinstance(e, AgentStateChanged)]
