"""The routing core: strategies, priority with aging, ring timeouts, callbacks, overflow,
business hours, several PBXs; and, with hypothesis, its invariants under random traffic."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.agents import NO_ANSWER, AcdError, AgentBusy, AgentState, UnknownAgent
from acd.config import parse_acd_config
from acd.decisions import CallBack, CancelOffer, Connect, Decision, Offer, Overflow
from acd.events import (
    AgentStateChanged,
    CallbackDialling,
    CallbackFailed,
    CallbackGivenUp,
    CallbackRequested,
    CallCompleted,
    CallerAbandoned,
    CallerConnected,
    CallerJoined,
    CallerOverflowed,
)
from acd.router import DuplicateCallback, Router, UnknownCall, UnknownOffer
from acd.state import MemoryState
from crm_bridge.tiers import StaticTiers
from cti.calls.events import (
    Agent,
    CallAbandoned,
    CallAnswered,
    CallArrived,
    CallEnded,
    Caller,
    CallFailed,
    CallParked,
    CallTransferred,
)

AGENTS = {
    "6001": {"name": "Alice", "queues": {"sales": 0}},
    "6002": {"name": "Bob", "queues": {"sales": 0}},
    "6003": {"name": "Carol", "queues": {"sales": 1}},
}
VIP, KEY = "+15550000001", "+15550000002"
TIERS = StaticTiers({VIP: "vip", KEY: "key"})


def make_router(
    sales: dict[str, Any] | None = None,
    agents: dict[str, Any] | None = None,
    *,
    queues: dict[str, Any] | None = None,
    priority: dict[str, Any] | None = None,
    pbx: str = "lab",
    state: MemoryState | None = None,
) -> Router:
    queues = queues or {"sales": {"lanes": ["external"], **(sales or {})}}
    data: dict[str, Any] = {"queues": queues, "agents": agents or AGENTS}
    if priority is not None:
        data["priority"] = priority
    return Router(parse_acd_config(data, "test"), pbx=pbx, tiers=TIERS, state=state)


def park(
    router: Router, call_id: str, at: float, number: str | None = None, lane: str = "external"
) -> list[Decision]:
    router.on_call_event(CallArrived(call_id, at, Caller(number, None), None, "PJSIP/trunk-1"))
    return router.on_call_event(CallParked(call_id, at, lane, "PJSIP/trunk-1"))


def hang_up(router: Router, call_id: str, at: float) -> list[Decision]:
    return router.on_call_event(CallEnded(call_id, at, 16, "Normal Clearing", "caller", 0.0))


def offers(decisions: Iterable[Decision]) -> list[tuple[str, tuple[str, ...]]]:
    return [(d.call_id, d.agents) for d in decisions if isinstance(d, Offer)]


def serve(router: Router, call_id: str, agent: str, at: float) -> list[Decision]:
    """The agent answers and the call ends at once; the decisions that follow."""
    router.offer_answered(call_id, agent, at)
    return hang_up(router, call_id, at)


def waiting(router: Router, queue: str = "sales") -> list[str]:
    return [c.call_id for c in router.waiting(queue)]


def events_of(router: Router, kind: type) -> list[Any]:
    return [e for e in router.drain_events() if isinstance(e, kind)]


def _epoch(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


# Strategies.


def test_lower_penalty_is_preferred_whatever_the_strategy() -> None:
    router = make_router()
    router.login("6003", 0.0)  # Carol has been idle longest, but her penalty is 1
    router.login("6001", 5.0)
    router.login("6002", 6.0)
    assert offers(park(router, "c1", 10.0)) == [("c1", ("6001",))]
    assert offers(park(router, "c2", 11.0)) == [("c2", ("6002",))]
    assert offers(park(router, "c3", 12.0)) == [("c3", ("6003",))]


@pytest.mark.parametrize(
    ("strategy", "agent"), [("longest_idle", "6001"), ("fewest_calls", "6002")]
)
def test_longest_idle_and_fewest_calls(strategy: str, agent: str) -> None:
    router = make_router({"strategy": strategy})
    router.login("6001", 0.0)
    assert offers(park(router, "c1", 1.0)) == [("c1", ("6001",))]
    serve(router, "c1", "6001", 10.0)  # Alice: one call, idle since 10
    router.login("6002", 100.0)  # Bob: no call, idle since 100
    assert offers(park(router, "c2", 101.0)) == [("c2", (agent,))]


def test_round_robin_remembers_who_was_offered_last() -> None:
    router = make_router({"strategy": "round_robin"}, {a: AGENTS["6001"] for a in "ABC"})
    for agent in "ABC":
        router.login(agent, 0.0)
    assert offers(park(router, "c1", 1.0)) == [("c1", ("A",))]
    assert offers(router.offer_failed("c1", "A", "busy", 2.0)) == [("c1", ("B",))]
    serve(router, "c1", "B", 3.0)
    # A was idle longest, but C is the one not offered a call for longest.
    assert offers(park(router, "c2", 4.0)) == [("c2", ("C",))]
    serve(router, "c2", "C", 5.0)
    assert offers(park(router, "c3", 6.0)) == [("c3", ("A",))]


def test_ring_all_rings_the_best_penalty_and_the_first_answer_wins() -> None:
    router = make_router({"strategy": "ring_all"})
    for agent in ("6001", "6002", "6003"):
        router.login(agent, 0.0)
    assert offers(park(router, "c1", 1.0)) == [("c1", ("6001", "6002"))]
    assert router.offers() == {"c1": ("6001", "6002")}
    assert router.offer_answered("c1", "6002", 3.0) == [
        Connect("c1", "6002"),
        CancelOffer("c1", "6001"),
    ]
    assert router.agents.get("6001").state is AgentState.AVAILABLE
    assert router.agents.get("6001").missed_offers == 0
    with pytest.raises(UnknownOffer):
        router.offer_answered("c1", "6001", 3.5)
    # With Alice alone free at penalty 0, the next call rings Alice only.
    assert offers(park(router, "c2", 4.0)) == [("c2", ("6001",))]


def test_ring_all_offer_goes_on_while_one_agent_still_rings() -> None:
    router = make_router({"strategy": "ring_all"})
    router.login("6001", 0.0)
    router.login("6002", 0.0)
    park(router, "c1", 1.0)
    assert router.offer_failed("c1", "6001", "busy", 2.0) == []
    assert router.offers() == {"c1": ("6002",)}
    assert router.offer_answered("c1", "6002", 3.0) == [Connect("c1", "6002")]


def test_skills_weighted_prefers_proficiency_and_skips_the_unskilled() -> None:
    agents = {
        "6001": {"name": "Alice", "skills": {"english": 60}, "queues": {"sales": 0}},
        "6002": {"name": "Bob", "skills": {"english": 90}, "queues": {"sales": 0}},
        "6003": {"name": "Carol", "skills": {"spanish": 90}, "queues": {"sales": 0}},
        "6004": {"name": "Dan", "skills": {"english": 40}, "queues": {"sales": 0}},
    }
    router = make_router({"strategy": "skills_weighted", "skills": {"english": 50}}, agents)
    for agent in agents:
        router.login(agent, 0.0)
    assert offers(park(router, "c1", 1.0)) == [("c1", ("6002",))]
    assert offers(park(router, "c2", 2.0)) == [("c2", ("6001",))]
    assert park(router, "c3", 3.0) == []  # Carol lacks English, Dan is below the minimum
    assert waiting(router) == ["c3"]


# Priority and aging.


def test_vip_overtakes_but_not_a_caller_who_waited_longer_than_the_head_start() -> None:
    router = make_router()  # weights: vip 120, key 60, ordinary 0; aging 1 per second
    park(router, "old", 0.0)
    park(router, "recent", 100.0)
    park(router, "vip", 150.0, VIP)  # 120 s head start: ahead of "recent", behind "old"
    park(router, "key", 155.0, KEY)  # 60 s: ahead of "recent" (55 s earlier) only
    assert waiting(router) == ["old", "vip", "key", "recent"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([None, VIP, KEY]), st.integers(0, 600)), min_size=1, max_size=25
    )
)
def test_callers_are_offered_in_priority_order(callers: list[tuple[str | None, int]]) -> None:
    router = make_router({"auto_pause_after": 0})
    weight = {VIP: 120.0, KEY: 60.0, None: 0.0}
    for i, (number, at) in sorted(enumerate(callers), key=lambda c: c[1][1]):
        park(router, f"c{i}", float(at), number)
    router.login("6001", 1000.0)
    order = []
    while head := router.offers():
        (call_id,) = head
        order.append(call_id)
        serve(router, call_id, "6001", 1000.0)
    expected = sorted(
        range(len(callers)),
        key=lambda i: (-(weight[callers[i][0]] - callers[i][1]), callers[i][1], f"c{i}"),
    )
    assert order == [f"c{i}" for i in expected]
    # VIPs overtake: a VIP who came less than 120 s after an ordinary caller goes first.
    for v, (v_number, v_at) in enumerate(callers):
        for o, (o_number, o_at) in enumerate(callers):
            if v_number == VIP and o_number is None and o_at < v_at < o_at + 120:
                assert order.index(f"c{v}") < order.index(f"c{o}")


@settings(max_examples=40, deadline=None)
@given(
    head_start=st.floats(0, 200),
    aging_rate=st.floats(0.5, 5),
    gap=st.floats(2, 10),
    load=st.floats(1.1, 3),
    offset=st.floats(0.01, 0.99),
)
def test_an_ordinary_callers_wait_is_bounded_under_sustained_vip_load(
    head_start: float, aging_rate: float, gap: float, load: float, offset: float
) -> None:
    """A VIP arrives every ``gap`` seconds, forever; each call lasts ``load * gap`` (> gap),
    so VIPs alone overload the one agent. An ordinary caller joining at ``t`` still gets
    through: a VIP joining at ``u`` is ahead of it only while
    ``head_start - a*u > -a*t``, i.e. ``u < t + head_start / a``. So at most
    ``N = (t + head_start/a) / gap + 1`` VIPs are ever served first, and the ordinary caller
    waits at most ``N * handle``: the bound comes from the weights and the aging rate."""
    weights = {"vip": head_start, "key": head_start / 2, "ordinary": 0.0}
    router = make_router(priority={"weights": weights, "aging_rate": aging_rate})
    router.login("6001", 0.0)
    handle, ordinary_at = load * gap, offset * gap
    ahead_at_most = (ordinary_at + head_start / aging_rate) / gap + 1
    vip, call_ends, parked, vips_served = 0, None, False, 0
    while True:
        arrivals = [vip * gap] + ([] if parked else [ordinary_at])
        now = min(arrivals) if call_ends is None else min(call_ends, *arrivals)
        if now == call_ends:
            decisions = hang_up(router, router.agents.get("6001").call_id or "", now)
            call_ends = None
        elif not parked and now == ordinary_at:
            decisions, parked = park(router, "ordinary", now), True
        else:
            decisions, vip = park(router, f"vip{vip}", now, VIP), vip + 1
        for call_id, (agent,) in offers(decisions):
            router.offer_answered(call_id, agent, now)
            call_ends = now + handle
            if call_id == "ordinary":
                assert vips_served <= ahead_at_most
                assert now - ordinary_at <= ahead_at_most * handle + 1e-6
                return
            vips_served += 1


# Ring timeout, failed offers, auto-pause.


def test_a_missed_offer_goes_to_the_next_agent_and_keeps_the_callers_place() -> None:
    router = make_router({"ring_timeout": 10})
    router.login("6001", 0.0)
    park(router, "c1", 1.0)
    park(router, "c2", 2.0)
    assert router.next_deadline() == 11.0
    assert router.tick(10.9) == []
    # Alice let c1 ring out: she takes the caller behind, c1 waits for someone else.
    assert router.tick(11.0) == [
        CancelOffer("c1", "6001"),
        Offer("c2", "lab", "sales", ("6001",), None, 10),
    ]
    router.login("6002", 12.0)  # Bob takes c1, still first in line
    assert router.offers() == {"c2": ("6001",), "c1": ("6002",)}
    # Alice's Originate fails: c2 goes to the next free agent, Carol (penalty 1).
    router.login("6003", 13.0)
    assert offers(router.offer_failed("c2", "6001", "Originate failed", 14.0)) == [
        ("c2", ("6003",))
    ]
    assert router.agents.get("6001").missed_offers == 2


def test_an_agent_who_missed_the_only_caller_gets_it_again_only_after_retry() -> None:
    router = make_router({"ring_timeout": 10, "retry": 5})
    router.login("6001", 0.0)
    park(router, "c1", 1.0)
    assert router.tick(11.0) == [CancelOffer("c1", "6001")]
    assert waiting(router) == ["c1"] and router.available("sales") == []
    assert router.next_deadline() == 16.0
    assert offers(router.tick(16.0)) == [("c1", ("6001",))]


def test_a_missed_caller_goes_to_the_next_agent_freed_and_the_resting_agent_is_free_again() -> None:
    router = make_router({"ring_timeout": 10, "retry": 30})
    router.login("6001", 0.0)
    park(router, "c1", 1.0)
    router.tick(11.0)
    # Bob logs in during Alice's rest: c1 goes to him, and Alice is free at once.
    assert offers(router.login("6002", 12.0)) == [("c1", ("6002",))]
    assert router.available("sales") == ["6001"]
    park(router, "c2", 13.0)
    assert router.offers() == {"c1": ("6002",), "c2": ("6001",)}


def test_the_agent_is_auto_paused_after_n_missed_offers() -> None:
    router = make_router({"ring_timeout": 5, "auto_pause_after": 2, "retry": 0})
    router.login("6001", 0.0)
    park(router, "c1", 0.0)
    router.tick(5.0)
    router.drain_events()
    assert router.tick(10.0) == [CancelOffer("c1", "6001")]
    paused = events_of(router, AgentStateChanged)[-1]
    assert (paused.agent, paused.state, paused.reason) == ("6001", "paused", NO_ANSWER)
    assert waiting(router) == ["c1"]
    assert router.offers() == {}
    assert offers(router.unpause("6001", 11.0)) == [("c1", ("6001",))]


def test_a_caller_leaving_while_ringing_cancels_the_offer() -> None:
    router = make_router()
    router.login("6001", 0.0)
    park(router, "c1", 1.0)
    router.drain_events()
    assert router.on_call_event(CallAbandoned("c1", 4.0, 3.0, "external")) == [
        CancelOffer("c1", "6001")
    ]
    assert hang_up(router, "c1", 4.1) == []  # the end that follows changes nothing
    (abandoned,) = events_of(router, CallerAbandoned)
    assert (abandoned.call_id, abandoned.wait, abandoned.position) == ("c1", 3.0, None)
    assert router.agents.get("6001").state is AgentState.AVAILABLE
    assert router.agents.get("6001").missed_offers == 0


def test_a_caller_hanging_up_in_queue_is_abandoned_with_its_position() -> None:
    router = make_router()
    park(router, "c1", 1.0)
    park(router, "c2", 2.0)
    router.drain_events()
    hang_up(router, "c2", 12.0)
    (abandoned,) = events_of(router, CallerAbandoned)
    assert (abandoned.call_id, abandoned.wait, abandoned.position) == ("c2", 10.0, 2)
    assert waiting(router) == ["c1"]


def test_connected_call_completes_then_wrap_up() -> None:
    router = make_router({"wrap_up": 5})
    router.login("6001", 0.0)
    park(router, "c1", 1.0)
    park(router, "c2", 2.0)
    assert router.offer_answered("c1", "6001", 3.0) == [Connect("c1", "6001")]
    assert hang_up(router, "c1", 33.0) == []
    assert router.agents.get("6001").state is AgentState.WRAP_UP
    assert router.next_deadline() == 38.0
    assert offers(router.tick(38.0)) == [("c2", ("6001",))]
    events = router.drain_events()
    connected = next(e for e in events if isinstance(e, CallerConnected))
    completed = next(e for e in events if isinstance(e, CallCompleted))
    assert (connected.wait, completed.talk_time, completed.agent) == (2.0, 30.0, "6001")


# Callbacks.


def test_callback_keeps_the_place_is_not_duplicated_and_reaches_an_agent() -> None:
    router = make_router()
    for n in range(3):
        park(router, f"c{n}", float(n))
    assert router.request_callback("c1", KEY, 5.0) == []
    assert waiting(router) == ["c0", "cb-c1", "c2"]
    with pytest.raises(DuplicateCallback, match=re.escape(KEY)):
        router.request_callback("c2", KEY, 6.0)
    assert waiting(router) == ["c0", "cb-c1", "c2"]
    hang_up(router, "c1", 7.0)  # the caller who left the request hangs up: no abandon
    assert events_of(router, CallerAbandoned) == []
    router.login("6001", 10.0)
    assert serve(router, "c0", "6001", 11.0) == [CallBack("cb-c1", "sales", "6001", KEY, 15.0)]
    router.drain_events()
    assert router.offer_answered("cb-c1", "6001", 12.0) == []  # CallBack was the offer
    # The call model's outbound call: the agent leg dials the customer, who answers.
    customer = Caller(KEY, None)
    arrived = CallArrived("acd-1", 12.5, customer, KEY, "PJSIP/trunk-2", callback="cb-c1")
    assert router.on_call_event(arrived) == []
    agent = Agent("Local/6001@agents", None, "Local/6001@agents-00000001;1")
    assert router.on_call_event(CallAnswered("acd-1", 14.0, agent, 1.5)) == []
    assert router.on_call_event(CallEnded("acd-1", 70.0, 16, None, "agent", 57.5, 56.0, True)) == [
        Offer("c2", "lab", "sales", ("6001",), None, 15.0)
    ]
    events = [e for e in router.drain_events() if not isinstance(e, AgentStateChanged)]
    assert [type(e) for e in events[:3]] == [CallbackDialling, CallerConnected, CallCompleted]
    completed = events[2]
    assert isinstance(completed, CallCompleted)
    assert completed.talk_time == 56.0  # from the customer's answer


def test_callback_at_the_head_is_a_callback_decision() -> None:
    router = make_router({"strategy": "ring_all"})
    park(router, "c1", 0.0, VIP)
    router.request_callback("c1", VIP, 1.0)
    (requested,) = events_of(router, CallbackRequested)
    assert (requested.call_id, requested.request_id, requested.number) == ("c1", "cb-c1", VIP)
    router.login("6001", 2.0)
    decisions = router.login("6002", 2.0)
    assert decisions == []  # one agent dials a callback, even in a ring-all queue
    assert router.offers() == {"cb-c1": ("6001",)}
    assert router.agents.get("6002").state is AgentState.AVAILABLE


def test_callback_request_for_an_unknown_call_is_refused() -> None:
    router = make_router()
    with pytest.raises(UnknownCall):
        router.request_callback("nope", KEY, 0.0)


# Overflow and business hours.


def test_a_full_queue_overflows_at_once() -> None:
    router = make_router({"max_length": 2, "overflow": {"kind": "voicemail", "target": "9000"}})
    park(router, "c1", 0.0)
    park(router, "c2", 1.0)
    assert park(router, "c3", 2.0) == [Overflow("c3", "sales", "voicemail", "9000", "full")]
    assert waiting(router) == ["c1", "c2"]
    assert [e.call_id for e in events_of(router, CallerJoined)] == ["c1", "c2"]


def test_max_wait_overflows_to_another_queue() -> None:
    queues = {
        "sales": {
            "lanes": ["external"],
            "max_wait": 60,
            "overflow": {"kind": "queue", "target": "support"},
        },
        "support": {},
    }
    router = make_router(queues=queues)
    park(router, "c1", 0.0, VIP)
    assert router.next_deadline() == 60.0
    assert router.tick(59.9) == []
    assert router.tick(60.0) == [Overflow("c1", "sales", "queue", "support", "max-wait")]
    assert waiting(router, "support") == ["c1"]
    overflowed = events_of(router, CallerOverflowed)[0]
    assert (overflowed.wait, overflowed.target) == (60.0, "support")
    assert router.waiting("support")[0].tier == "vip"


def test_max_wait_overflow_to_callback_keeps_the_place() -> None:
    router = make_router({"max_wait": 30, "overflow": {"kind": "callback"}})
    park(router, "c1", 0.0, KEY)
    park(router, "c2", 10.0)  # withheld number: cannot be called back
    score = router.waiting("sales")[0].score
    router.tick(30.0)
    # No number, no promise (tests/test_acd_callbacks.py): c2 keeps waiting, no Overflow.
    assert router.tick(40.0) == []
    request, withheld = router.waiting("sales")
    assert (request.call_id, request.score, request.callback) == ("cb-c1", score, KEY)
    assert withheld.call_id == "c2"
    assert router.next_deadline() is None  # a request waits without a limit


MON_8_TO_18 = {"weekly": {"mon": ["08:00-18:00"]}}


def test_a_closed_queue_overflows_with_reason_closed() -> None:
    router = make_router(
        {"hours": MON_8_TO_18, "overflow": {"kind": "voicemail", "target": "9000"}}
    )
    sunday = _epoch(2026, 11, 22, 12)
    assert park(router, "c1", sunday) == [Overflow("c1", "sales", "voicemail", "9000", "closed")]
    park(router, "c2", _epoch(2026, 11, 23, 17, 59))
    assert router.next_deadline() == _epoch(2026, 11, 23, 18)
    assert router.tick(_epoch(2026, 11, 23, 18)) == [
        Overflow("c2", "sales", "voicemail", "9000", "closed")
    ]
    assert waiting(router) == []


# Several PBXs, bad input.


def test_a_router_claims_only_callers_of_its_own_pbx() -> None:
    shared = MemoryState()
    east, west = make_router(pbx="east", state=shared), make_router(pbx="west", state=shared)
    park(west, "w1", 0.0, VIP)
    assert east.login("6001", 1.0) == []  # the west caller is ahead, but not on east's PBX
    assert offers(park(east, "e1", 2.0)) == [("e1", ("6001",))]
    assert [c.call_id for c in shared.waiting("sales")] == ["w1"]


def test_refused_commands_change_nothing() -> None:
    router = make_router()
    router.login("6001", 0.0)
    park(router, "c1", 1.0)
    before = (router.offers(), copy.deepcopy(list(router.agents)), router.next_deadline())
    with pytest.raises(UnknownAgent):
        router.login("9999", 2.0)
    with pytest.raises(AgentBusy):
        router.pause("6001", "lunch", 2.0)
    with pytest.raises(AgentBusy):
        router.logout("6001", 2.0)
    with pytest.raises(UnknownOffer):
        router.offer_answered("c1", "6002", 2.0)
    with pytest.raises(UnknownOffer):
        router.offer_failed("c9", "6001", "busy", 2.0)
    assert (router.offers(), list(router.agents), router.next_deadline()) == before


def test_a_lane_no_queue_is_fed_by_is_ignored() -> None:
    router = make_router()
    assert park(router, "c1", 0.0, lane="elsewhere") == []
    assert router.drain_events() == []


def test_the_shells_clock_times_call_events_when_given() -> None:
    router = make_router()
    router.on_call_event(CallParked("c1", 5.0, "external", "PJSIP/trunk-1"), now=100.0)
    assert router.waiting("sales")[0].joined_at == 100.0


def test_dids_feed_queues_when_the_lane_is_not_mapped() -> None:
    router = make_router({"dids": ["5003"]})
    router.on_call_event(CallArrived("c1", 0.0, Caller(None, None), "5003", "PJSIP/trunk-1"))
    router.on_call_event(CallParked("c1", 0.0, None, "PJSIP/trunk-1"))
    assert waiting(router) == ["c1"]


# Invariants under random traffic, commands and outcomes.

TRAFFIC_QUEUES = {
    "sales": {
        "lanes": ["external"],
        "max_length": 3,
        "overflow": {"kind": "queue", "target": "support"},
        "ring_timeout": 10,
        "auto_pause_after": 2,
        "wrap_up": 2,
    },
    "support": {
        "lanes": ["external-moh"],
        "strategy": "ring_all",
        "max_wait": 30,
        "overflow": {"kind": "callback"},
        "ring_timeout": 5,
    },
}
TRAFFIC_AGENTS = {
    "6001": {"name": "Alice", "queues": {"sales": 0, "support": 0}},
    "6002": {"name": "Bob", "queues": {"sales": 0, "support": 0}},
    "6003": {"name": "Carol", "queues": {"sales": 1, "support": 0}},
    "6004": {"name": "Dan", "queues": {"support": 1}},
}
STEP = st.tuples(
    st.sampled_from(
        ["arrive", "hang_up", "abandon", "login", "logout", "pause", "unpause"]
        + ["answer", "fail", "callback", "end"] * 2
        + ["customer"]
    ),
    st.integers(0, 50),
    st.integers(0, 50),
    st.sampled_from([0.0, 0.5, 3.0, 7.0, 40.0]),
)


def _snapshot(router: Router) -> Any:
    return (
        router.offers(),
        {q: router.waiting(q) for q in TRAFFIC_QUEUES},
        {q: router.available(q) for q in TRAFFIC_QUEUES},
        copy.deepcopy(list(router.agents)),
        router.next_deadline(),
    )


def _run_step(router: Router, step: tuple[str, int, int, float], calls: list[str], now: float):
    op, i, j, _ = step
    agent = sorted(TRAFFIC_AGENTS)[i % len(TRAFFIC_AGENTS)]
    call = calls[i % len(calls)] if calls else "none"
    ringing = sorted(router.offers().items())
    offer = ringing[i % len(ringing)] if ringing else ("none", ("6001",))
    offered_agent = offer[1][j % len(offer[1])]
    dialable = [VIP, KEY, "+15550000003"]
    numbers = [*dialable, None]
    match op:
        case "arrive":
            calls.append(f"c{len(calls)}")
            lane = ["external", "external-moh", "elsewhere"][j % 3]
            return park(router, calls[-1], now, numbers[i % 4], lane)
        case "hang_up":
            return hang_up(router, call, now)
        case "abandon":
            return router.on_call_event(CallAbandoned(call, now, 1.0, "external"))
        case "login" | "logout" | "unpause":
            return getattr(router, op)(agent, now)
        case "pause":
            return router.pause(agent, "break", now)
        case "answer":
            return router.offer_answered(offer[0], offered_agent, now)
        case "fail":
            return router.offer_failed(offer[0], offered_agent, "busy", now)
        case "callback":
            return router.request_callback(call, dialable[j % 3], now)
        case "end":
            on_call = sorted(a.call_id or "" for a in router.agents if a.state == "on_call")
            return hang_up(router, on_call[i % len(on_call)] if on_call else call, now)
        case "customer":
            # A callback's outbound call (call model): answered, busy, or ended unanswered.
            dialling = sorted(r for r, how in router.callbacks_out().items() if how == "dialling")
            if not dialling:
                return []
            request = dialling[i % len(dialling)]
            out = f"out-{request}-{now}"
            customer = Caller(numbers[0], None)
            arrived = CallArrived(out, now, customer, None, "PJSIP/trunk-9", callback=request)
            decisions = router.on_call_event(arrived)
            phone = Agent("PJSIP/6001")
            if j % 3 == 0:
                return decisions + router.on_call_event(CallAnswered(out, now, phone, 0.0))
            if j % 3 == 1:
                decisions += router.on_call_event(CallFailed(out, now, "BUSY", phone))
            return decisions + hang_up(router, out, now)
    raise AssertionError(op)


def _check(router: Router, status: dict[str, str], queue_of: dict[str, str]) -> None:
    offered = router.offers()
    ringing_agents = [a for agents in offered.values() for a in agents]
    # An agent is never offered two calls at once.
    assert len(ringing_agents) == len(set(ringing_agents))
    for call_id, agents in offered.items():
        # A call rings one agent, except ring-all's simultaneous ring of a live caller.
        if call_id.startswith("cb-") or TRAFFIC_QUEUES[queue_of[call_id]].get("strategy") is None:
            assert len(agents) == 1
        for agent_id in agents:
            assert router.agents.get(agent_id).call_id == call_id
    free = {a for q in TRAFFIC_QUEUES for a in router.available(q)}
    resting = router.resting()
    for agent in router.agents:
        assert (agent.state is AgentState.RINGING) == (agent.id in ringing_agents)
        # Free unless resting from a caller it missed, who then still waits.
        expected = agent.state is AgentState.AVAILABLE and agent.id not in resting
        assert expected == (agent.id in free)
    waiting_now = {c.call_id for q in TRAFFIC_QUEUES for c in router.waiting(q)}
    assert all(call_id in waiting_now for call_id in resting.values())
    waiting_ids = {c.call_id for q in TRAFFIC_QUEUES for c in router.waiting(q)}
    on_call = {a.call_id for a in router.agents if a.state is AgentState.ON_CALL}
    assert not waiting_ids & offered.keys()
    out = router.callbacks_out()
    retrying = {r for r, how in out.items() if how == "retrying"}
    assert not retrying & (waiting_ids | offered.keys())
    # No caller is lost: queued (waiting, ringing, or a callback waiting for its retry),
    # connected (a callback: dialling the customer, then connected), or finished.
    for call_id, where in status.items():
        queued = call_id in waiting_ids or call_id in offered or call_id in retrying
        assert queued == (where == "queued"), call_id
        assert (call_id in on_call) == (where in ("connected", "dialling")), call_id
        assert (out.get(call_id) == "dialling") == (where == "dialling"), call_id
    assert waiting_ids | offered.keys() | on_call <= status.keys()


@settings(max_examples=150, deadline=None)
@given(st.lists(STEP, max_size=80))
def test_invariants_hold_under_random_traffic(steps: list[tuple[str, int, int, float]]) -> None:
    router = make_router(queues=TRAFFIC_QUEUES, agents=TRAFFIC_AGENTS)
    calls: list[str] = []
    status: dict[str, str] = {}  # caller or request -> queued, connected or a final state
    queue_of: dict[str, str] = {}
    now = 0.0
    for step in steps:
        now += step[3]
        router.tick(now)
        before = _snapshot(router)
        try:
            _run_step(router, step, calls, now)
        except AcdError:
            assert _snapshot(router) == before  # a refused command changes nothing
        for event in router.drain_events():
            match event:
                case CallerJoined():
                    status[event.call_id], queue_of[event.call_id] = "queued", event.queue
                case CallerConnected():
                    status[event.call_id] = "connected"
                case CallCompleted():
                    status[event.call_id] = "completed"
                case CallerAbandoned() | CallerOverflowed():
                    status[event.call_id] = event.kind
                case CallbackRequested():
                    status[event.call_id] = "callback requested"
                case CallbackDialling():
                    status[event.call_id] = "dialling"
                case CallbackFailed():
                    status[event.call_id] = "queued" if event.retry_at else "given up"
                case CallbackGivenUp():
                    assert status[event.call_id] == "given up"
        _check(router, status, queue_of)


def test_max_wait_still_applies_after_a_missed_offer() -> None:
    router = make_router(
        {
            "max_wait": 20,
            "ring_timeout": 15,
            "retry": 0,
            "overflow": {"kind": "voicemail", "target": "9000"},
        }
    )
    router.login("6001", 0.0)
    park(router, "c1", 0.0)
    router.tick(15.0)  # rang out; Alice is rung again (no retry pause) until 30
    assert router.offer_failed("c1", "6001", "busy", 16.0) == [
        Offer("c1", "lab", "sales", ("6001",), None, 15)
    ]
    assert router.tick(20.0) == []  # ringing: a caller is not taken from an agent's phone
    router.offer_failed("c1", "6001", "busy", 21.0)  # third miss: Alice paused, c1 waits
    assert Overflow("c1", "sales", "voicemail", "9000", "max-wait") in router.tick(21.0)


def test_a_closing_no_tick_saw_is_applied_when_the_next_caller_joins() -> None:
    router = make_router(
        {"hours": MON_8_TO_18, "overflow": {"kind": "voicemail", "target": "9000"}}
    )
    park(router, "c1", _epoch(2026, 11, 23, 17))
    decisions = park(router, "c2", _epoch(2026, 11, 23, 19))
    assert [type(d) for d in decisions] == [Overflow, Overflow]
    overflows = [d for d in decisions if isinstance(d, Overflow)]
    assert [(d.call_id, d.reason) for d in overflows] == [("c1", "closed"), ("c2", "closed")]


# One agent pool, several routers: the store is the truth about who is free.


def test_an_agent_logged_in_through_another_router_is_logged_in_here_when_handed_out() -> None:
    shared = MemoryState()
    east, west = make_router(pbx="east", state=shared), make_router(pbx="west", state=shared)
    west.login("6001", 0.0)
    assert offers(park(east, "e1", 1.0)) == [("e1", ("6001",))]
    assert [e.state for e in east.drain_events() if isinstance(e, AgentStateChanged)] == [
        "available",
        "ringing",
    ]


def test_a_stale_router_neither_frees_nor_pauses_an_agent_another_router_holds() -> None:
    shared = MemoryState()
    east, west = make_router(pbx="east", state=shared), make_router(pbx="west", state=shared)
    east.login("6001", 0.0)
    west.login("6001", 0.0)
    park(east, "e1", 1.0)  # Alice rings through east; west still has her available
    restarted = make_router(pbx="west", state=shared)
    assert restarted.login("6001", 2.0) == []
    assert shared.available("sales") == [] and shared.reserved("6001")
    with pytest.raises(AgentBusy):
        west.pause("6001", "lunch", 2.0)
    assert west.agents.get("6001").state is AgentState.AVAILABLE  # refused: nothing changed
    assert offers(park(west, "w1", 3.0)) == []
    assert offers(serve(east, "e1", "6001", 4.0)) == []  # east freed her; w1 is west's
    assert offers(west.poll(4.5)) == [("w1", ("6001",))]  # west's poll finds her
    assert west.poll(4.6) == []


def test_a_pause_in_wrap_up_ends_the_reservation_and_unpause_frees_the_agent() -> None:
    shared = MemoryState()
    east = make_router({"wrap_up": 30}, pbx="east", state=shared)
    west = make_router({"wrap_up": 30}, pbx="west", state=shared)
    east.login("6001", 0.0)
    park(east, "e1", 1.0)
    serve(east, "e1", "6001", 2.0)
    east.pause("6001", "lunch", 3.0)
    assert not shared.reserved("6001")
    west.login("6001", 4.0)  # the agent moves to the other backend
    assert offers(park(west, "w1", 5.0)) == [("w1", ("6001",))]
    assert east.tick(40.0) == []  # the wrap-up timer ended with the pause


def test_a_restarted_router_removes_a_caller_its_earlier_run_queued_when_it_hangs_up() -> None:
    shared = MemoryState()
    make_router(pbx="east", state=shared).on_call_event(
        CallParked("e1", 0.0, "external", "PJSIP/trunk-1")
    )
    restarted = make_router(pbx="east", state=shared)
    hang_up(restarted, "e1", 5.0)
    assert shared.waiting("sales") == []
    assert restarted.drain_events() == [CallerAbandoned(5.0, "e1", "sales", 5.0, None)]


def test_a_failed_bridge_frees_the_agent_without_a_miss_and_the_caller_keeps_its_place() -> None:
    router = make_router()
    router.login("6001", 0.0)
    park(router, "c1", 1.0)
    park(router, "c2", 2.0)
    router.offer_answered("c1", "6001", 3.0)
    decisions = router.connect_failed("c1", "6001", 3.5)
    # c1 is back ahead of c2 (same score) and is offered again to the free agent.
    assert offers(decisions) == [("c1", ("6001",))]
    assert router.agents.get("6001").missed_offers == 0
    with pytest.raises(UnknownOffer):
        router.connect_failed("c1", "6001", 3.6)


def test_a_failed_bridge_for_a_caller_already_gone_just_frees_the_agent() -> None:
    router = make_router()
    router.login("6001", 0.0)
    park(router, "c1", 1.0)
    router.offer_answered("c1", "6001", 3.0)
    hang_up(router, "c1", 3.2)  # the caller's end arrives first: the call completes
    router.drain_events()
    with pytest.raises(UnknownOffer):
        router.connect_failed("c1", "6001", 3.5)
    assert waiting(router) == []


def test_a_transfer_ends_the_call_for_the_agent() -> None:
    router = make_router({"wrap_up": 0})
    router.login("6001", 0.0)
    park(router, "c1", 1.0)
    router.offer_answered("c1", "6001", 2.0)
    router.on_call_event(CallTransferred("c1", 10.0, "blind", None, "6003@xfer"))
    assert router.agents.get("6001").state is AgentState.AVAILABLE
    (completed,) = events_of(router, CallCompleted)
    assert (completed.agent, completed.talk_time) == ("6001", 8.0)
    assert hang_up(router, "c1", 30.0) == []  # the transferred call's end is not ours


def test_a_callback_key_pressed_while_an_agent_rings_keeps_the_place() -> None:
    router = make_router()
    router.login("6001", 0.0)
    park(router, "c1", 1.0, number="+33612345678")
    decisions = router.request_callback("c1", "+33612345678", 2.0)
    assert CancelOffer("c1", "6001") in decisions
    # The request is offered at once to the agent just freed.
    assert any(isinstance(d, CallBack) and d.request_id == "cb-c1" for d in decisions)
    park(router, "c2", 3.0, number="+33612345678")
    with pytest.raises(DuplicateCallback):  # the request is ringing: still a duplicate
        router.request_callback("c2", "+33612345678", 3.0)


def test_the_shell_can_overflow_a_waiting_caller_on_its_estimated_wait() -> None:
    router = make_router(
        {"max_estimated_wait": 60, "overflow": {"kind": "voicemail", "target": "600"}}
    )
    park(router, "c1", 1.0)
    router.drain_events()
    decisions = router.overflow("c1", "estimated wait 300 s (position)", 2.0)
    assert decisions == [
        Overflow("c1", "sales", "voicemail", "600", "estimated wait 300 s (position)")
    ]
    (overflowed,) = events_of(router, CallerOverflowed)
    assert overflowed.reason.startswith("estimated wait") and waiting(router) == []
    with pytest.raises(UnknownCall):
        router.overflow("c1", "again", 3.0)
