"""The screen pop's core: the pop goes to the agent whose phone rings, and nobody else; it
follows the call through answer, transfer and hang-up; it is given again on reconnect."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.events import CallerConnected, CallerJoined, CallerOffered, OfferNotAnswered
from crm_bridge.pop import Identity, PopDesk, PopError, PopFrame
from cti.calls.events import (
    Agent,
    AgentChanged,
    CallAnswered,
    CallArrived,
    CallEnded,
    Caller,
    CallerChanged,
    CallOffered,
    CallParked,
    CallTransferred,
    DigitsReceived,
    IvrEntered,
    OfferMissed,
)

ALICE = {"id": "C1", "name": "Zoë Müller", "tier": {"tier": "vip", "reason": "top 1%"}}
BOB = {"id": "C2", "name": "Дмитрий Иванов", "tier": None}


def agent_of(interface: str) -> str | None:
    """Local/6001@agents and PJSIP/6001 are agent 6001; anything else is no agent."""
    for prefix in ("Local/", "PJSIP/"):
        if interface.startswith(prefix):
            return interface[len(prefix):].split("@")[0]
    return None


def arrive(desk: PopDesk, call_id: str = "c1", number: str | None = "+4930123456",
           at: float = 100.0) -> list[PopFrame]:
    caller = Caller(number, "Zoe" if number else None, number)
    return desk.on_call_event(CallArrived(call_id, at, caller=caller, dialled="5000",
                                          channel=f"PJSIP/trunk-{call_id}"))


def kinds(frames: list[PopFrame]) -> list[tuple[str, str]]:
    return [(f.agent, f.kind) for f in frames]


def test_the_pop_goes_to_the_rung_agent_only_before_answer() -> None:
    desk = PopDesk(agent_of)
    assert arrive(desk) == []
    desk.on_call_event(CallParked("c1", 101.0, lane="holding", channel="PJSIP/trunk-c1"))
    desk.on_acd_event(CallerJoined(101.0, "c1", "support", "vip", 1))
    desk.identified("c1", Identity.of([ALICE]), 101.1)
    frames = desk.on_acd_event(CallerOffered(104.0, "c1", "support", ("6001",)))
    assert kinds(frames) == [("6001", "ring")]
    pop = frames[0].pop
    assert pop["state"] == "ringing"
    assert pop["customer"] == ALICE
    assert pop["identity"] == "known"
    assert pop["queue"] == "support"
    assert pop["tier"] == "vip"
    assert pop["wait"] == 3.0
    assert pop["caller"] == {"number": "+4930123456", "name": "Zoe", "withheld": False}
    frames = desk.on_acd_event(CallerConnected(106.0, "c1", "support", "6001", 5.0))
    assert kinds(frames) == [("6001", "answered")]
    assert frames[0].pop["state"] == "talking"
    assert frames[0].pop["wait"] == 5.0
    frames = desk.on_call_event(
        CallEnded("c1", 200.0, cause=16, cause_text="Normal Clearing", ended_by="caller",
                  duration=100.0, talk_time=94.0, answered=True)
    )
    assert kinds(frames) == [("6001", "ended")]
    assert frames[0].pop["state"] == "ended"
    assert desk.current("6001", 201.0) is None
    assert desk.live_calls() == 0


def test_a_pop_sent_before_the_lookup_answers_is_updated_when_it_does() -> None:
    desk = PopDesk(agent_of)
    arrive(desk)
    ring = desk.on_acd_event(CallerOffered(101.0, "c1", "support", ("6001",)))
    assert ring[0].pop["identity"] == "pending"
    assert ring[0].pop["customer"] is None
    update = desk.identified("c1", Identity.of([ALICE]), 101.2)
    assert kinds(update) == [("6001", "update")]
    assert update[0].pop["customer"] == ALICE
    assert update[0].pop["revision"] > ring[0].pop["revision"]


def test_several_agents_rung_the_others_are_withdrawn_on_answer() -> None:
    desk = PopDesk(agent_of)
    arrive(desk)
    frames = desk.on_acd_event(CallerOffered(101.0, "c1", "support", ("6001", "6002")))
    assert kinds(frames) == [("6001", "ring"), ("6002", "ring")]
    frames = desk.on_acd_event(CallerConnected(103.0, "c1", "support", "6002", 2.0))
    assert kinds(frames) == [("6001", "withdrawn"), ("6002", "answered")]
    assert desk.current("6001", 104.0) is None
    current = desk.current("6002", 104.0)
    assert current is not None and current.kind == "answered"


def test_a_missed_offer_withdraws_the_pop_and_the_next_agent_gets_it() -> None:
    desk = PopDesk(agent_of)
    arrive(desk)
    desk.on_acd_event(CallerOffered(101.0, "c1", "support", ("6001",)))
    frames = desk.on_acd_event(OfferNotAnswered(116.0, "c1", "support", "6001", "no answer"))
    assert kinds(frames) == [("6001", "withdrawn")]
    frames = desk.on_acd_event(CallerOffered(117.0, "c1", "support", ("6002",)))
    assert kinds(frames) == [("6002", "ring")]
    # A second "not answered" for an agent no longer rung changes nothing.
    assert desk.on_acd_event(OfferNotAnswered(118.0, "c1", "support", "6001", "x")) == []


def test_app_queue_offers_pop_through_the_agent_interface() -> None:
    desk = PopDesk(agent_of)
    arrive(desk)
    agent = Agent("Local/6003@agents", "Agent Carol")
    frames = desk.on_call_event(CallOffered("c1", 101.0, agent=agent, queue="sales"))
    assert kinds(frames) == [("6003", "ring")]
    assert frames[0].pop["queue"] == "sales"
    frames = desk.on_call_event(OfferMissed("c1", 110.0, agent=agent, ring_time=9.0))
    assert kinds(frames) == [("6003", "withdrawn")]
    desk.on_call_event(CallOffered("c1", 111.0, agent=agent, queue="sales"))
    frames = desk.on_call_event(CallAnswered("c1", 113.0, agent=agent, wait=12.0))
    assert kinds(frames) == [("6003", "answered")]
    # A device that is no agent's (a trunk, a fax) gets no pop.
    assert desk.on_call_event(CallOffered("c1", 114.0, agent=Agent("DAHDI/1"))) == []


def test_the_pop_follows_a_transfer_with_the_customer_the_agent_picked() -> None:
    desk = PopDesk(agent_of)
    arrive(desk)
    desk.identified("c1", Identity.of([ALICE, BOB]), 100.5)
    desk.on_acd_event(CallerOffered(101.0, "c1", "support", ("6001",)))
    desk.on_acd_event(CallerConnected(102.0, "c1", "support", "6001", 1.0))
    frames = desk.choose("c1", "6001", "C2", 103.0)
    assert kinds(frames) == [("6001", "update")]
    assert frames[0].pop["customer"] == BOB
    assert [c["id"] for c in frames[0].pop["candidates"]] == ["C1", "C2"]
    by = Agent("Local/6001@agents", channel="Local/6001@agents-0001;1")
    transfer = CallTransferred("c1", 120.0, method="blind", by=by, target="6004")
    assert desk.on_call_event(transfer) == []
    frames = desk.on_call_event(AgentChanged("c1", 125.0, agent=Agent("PJSIP/6004")))
    assert kinds(frames) == [("6001", "transferred"), ("6004", "answered")]
    assert frames[1].pop["customer"] == BOB
    assert desk.current("6001", 126.0) is None
    now = desk.current("6004", 126.0)
    assert now is not None and now.pop["customer"] == BOB


def test_only_the_agent_with_the_pop_may_choose_and_only_a_candidate() -> None:
    desk = PopDesk(agent_of)
    arrive(desk)
    desk.identified("c1", Identity.of([ALICE, BOB]), 100.5)
    desk.on_acd_event(CallerOffered(101.0, "c1", "support", ("6001",)))
    with pytest.raises(PopError) as other_agent:
        desk.choose("c1", "6002", "C1", 102.0)
    assert other_agent.value.status == 403
    with pytest.raises(PopError) as not_candidate:
        desk.choose("c1", "6001", "C9", 102.0)
    assert not_candidate.value.status == 409
    with pytest.raises(PopError) as no_call:
        desk.choose("nope", "6001", "C1", 102.0)
    assert no_call.value.status == 404
    with pytest.raises(PopError):
        desk.pop_for("c1", "6002", 102.0)
    assert desk.pop_for("c1", "6001", 102.0).pop["identity"] == "several"


def test_a_late_lookup_keeps_the_agents_choice() -> None:
    desk = PopDesk(agent_of)
    arrive(desk)
    desk.identified("c1", Identity.of([ALICE, BOB]), 100.5)
    desk.on_acd_event(CallerOffered(101.0, "c1", "support", ("6001",)))
    desk.choose("c1", "6001", "C2", 102.0)
    frames = desk.identified("c1", Identity.of([ALICE, BOB], note="the CRM answered late"), 103.0)
    assert frames[0].pop["customer"] == BOB
    assert frames[0].pop["note"] == "the CRM answered late"


def test_withheld_and_unknown_callers_and_attaching_a_customer() -> None:
    desk = PopDesk(agent_of)
    arrive(desk, "c1", None)
    ring = desk.on_acd_event(CallerOffered(101.0, "c1", "support", ("6001",)))
    assert ring[0].pop["identity"] == "withheld"
    assert ring[0].pop["caller"]["withheld"] is True
    arrive(desk, "c2", "+4930999999")
    desk.identified("c2", Identity.of([]), 100.2)
    ring = desk.on_acd_event(CallerOffered(101.0, "c2", "support", ("6002",)))
    assert ring[0].pop["identity"] == "unknown"
    frames = desk.attach("c2", "6002", {"id": "C7", "name": "New"}, 102.0)
    assert frames[0].pop["identity"] == "known"
    assert frames[0].pop["customer"] == {"id": "C7", "name": "New"}


def test_caller_id_change_and_ivr_path_reach_the_pop() -> None:
    desk = PopDesk(agent_of)
    arrive(desk)
    desk.identified("c1", Identity.of([ALICE]), 100.1)
    desk.on_call_event(IvrEntered("c1", 100.5, application="AGI", context="ivr-main"))
    desk.on_call_event(DigitsReceived("c1", 101.0, digits="2"))
    desk.on_call_event(DigitsReceived("c1", 102.0, digits="7"))
    ring = desk.on_acd_event(CallerOffered(103.0, "c1", "support", ("6001",)))
    assert ring[0].pop["ivr"]["digits"] == "27"
    assert ring[0].pop["ivr"]["path"][0]["application"] == "AGI"
    changed = desk.on_call_event(CallerChanged("c1", 104.0, caller=Caller("+4930111", "Priv")))
    assert kinds(changed) == [("6001", "update")]
    # A new number is looked up again: the old customer no longer shows.
    assert changed[0].pop["identity"] == "pending"
    assert changed[0].pop["customer"] is None
    assert desk.number_of("c1") == "+4930111"


def test_events_of_unknown_calls_and_outbound_calls_make_no_frames() -> None:
    desk = PopDesk(agent_of)
    assert desk.on_acd_event(CallerOffered(1.0, "x", "q", ("6001",))) == []
    assert desk.identified("x", Identity.of([ALICE]), 1.0) == []
    out = CallArrived("o1", 1.0, caller=Caller("+155", None), dialled="+155", channel="c",
                      direction="outbound", callback="r1")
    assert desk.on_call_event(out) == []
    assert desk.live_calls() == 0


# -- any order of events: the pop is only ever with agents the call rang or reached --------

AGENTS = ("6001", "6002", "6003")


def _step(draw: Any, call_id: str, at: float) -> Any:
    agent = draw(st.sampled_from(AGENTS))
    return draw(st.sampled_from([
        CallerOffered(at, call_id, "q", (agent,)),
        CallerConnected(at, call_id, "q", agent, 1.0),
        OfferNotAnswered(at, call_id, "q", agent, "no answer"),
        AgentChanged(call_id, at, agent=Agent(f"PJSIP/{agent}")),
        CallOffered(call_id, at, agent=Agent(f"Local/{agent}@agents")),
        OfferMissed(call_id, at, agent=Agent(f"Local/{agent}@agents"), ring_time=1.0),
        DigitsReceived(call_id, at, digits="1"),
    ]))


@st.composite
def scenarios(draw: Any) -> list[Any]:
    events: list[Any] = []
    for i, call_id in enumerate(draw(st.lists(st.sampled_from(["a", "b"]), min_size=1,
                                              max_size=2, unique=True))):
        events.append(CallArrived(call_id, float(i), caller=Caller(f"+4930{i}", None),
                                  dialled="5000", channel=f"t-{call_id}"))
    for n in range(draw(st.integers(0, 25))):
        events.append(_step(draw, draw(st.sampled_from(["a", "b"])), 10.0 + n))
    for call_id in ("a", "b"):
        events.append(CallEnded(call_id, 100.0, cause=16, cause_text=None, ended_by="caller",
                                duration=1.0))
    return events


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_any_event_order_keeps_each_agents_pops_consistent(events: list[Any]) -> None:
    desk = PopDesk(agent_of)
    open_at: dict[str, set[str]] = {}  # agent -> calls whose pop it has
    for event in events:
        is_call = isinstance(event, CallArrived | CallEnded | AgentChanged | CallOffered
                             | OfferMissed | DigitsReceived)
        frames = desk.on_call_event(event) if is_call else desk.on_acd_event(event)
        for frame in frames:
            have = open_at.setdefault(frame.agent, set())
            if frame.kind in ("ring", "answered"):
                have.add(frame.call_id)
            elif frame.kind == "update":
                assert frame.call_id in have, "an update for a pop the agent does not have"
            else:  # withdrawn, transferred, ended: the pop closes at this agent
                assert frame.call_id in have, f"{frame.kind} of a pop never sent"
                have.discard(frame.call_id)
            assert frame.pop["agent"] == frame.agent
    # Every call ended: no agent keeps a pop, and reconnecting gives none.
    assert all(not calls for calls in open_at.values())
    assert all(desk.current(agent, 200.0) is None for agent in AGENTS)
    assert desk.live_calls() == 0
