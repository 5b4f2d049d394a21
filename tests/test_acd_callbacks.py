"""Callbacks in the routing core (pure): a request is connected only when the customer
answers its outbound call; a busy, unanswered or failed dial is reported, retried by the
queue's policy with the request's place kept, and given up after the last attempt; a caller
without a number is never promised a callback. Also the policy's validation and how the
figures count failed callbacks."""

from __future__ import annotations

from typing import Any

import pytest

from acd.agents import AgentState
from acd.config import parse_acd_config
from acd.decisions import CallBack, Decision, Offer, Overflow
from acd.errors import AcdConfigError
from acd.events import (
    AgentStateChanged,
    CallbackDialling,
    CallbackFailed,
    CallbackGivenUp,
    CallbackNotOffered,
    CallbackRequested,
    CallCompleted,
    CallerConnected,
    CallerJoined,
    CallerOverflowed,
    OfferNotAnswered,
)
from acd.figures import FigureRules, LiveFigures
from acd.router import DuplicateCallback, Router
from crm_bridge.tiers import StaticTiers
from cti.calls.events import (
    Agent,
    CallAnswered,
    CallArrived,
    CallEnded,
    Caller,
    CallFailed,
    CallParked,
)

CUSTOMER, OTHER = "+15550000002", "+15550000003"
AGENT = Agent("Local/6001@agents", None, "Local/6001@agents-00000001;1")
AGENTS = {
    "6001": {"name": "Alice", "queues": {"sales": 0}},
    "6002": {"name": "Bob", "queues": {"sales": 0}},
}


def make_router(sales: dict[str, Any] | None = None, **queues: dict[str, Any]) -> Router:
    data = {
        "queues": {
            "sales": {"lanes": ["external"], "callback": {"attempts": 2, "spacing": 60}}
            | (sales or {}),
            **queues,
        },
        "agents": AGENTS,
    }
    return Router(parse_acd_config(data, "test"), pbx="lab", tiers=StaticTiers({}))


def park(router: Router, call_id: str, at: float, number: str | None = None) -> list[Decision]:
    router.on_call_event(CallArrived(call_id, at, Caller(number, None), None, "PJSIP/trunk-1"))
    return router.on_call_event(CallParked(call_id, at, "external", "PJSIP/trunk-1"))


def events(router: Router, kind: type | None = None) -> list[Any]:
    drained = [e for e in router.drain_events() if not isinstance(e, AgentStateChanged)]
    return drained if kind is None else [e for e in drained if isinstance(e, kind)]


def waiting(router: Router) -> list[str]:
    return [c.call_id for c in router.waiting("sales")]


def outbound(router: Router, call_id: str, at: float, request: str = "cb-c1") -> list[Decision]:
    """The call model's start of the outbound call: the agent leg dials the customer."""
    arrived = CallArrived(
        call_id,
        at,
        Caller(CUSTOMER, None),
        CUSTOMER,
        "Local/+15550000002@customers-00000002;1",
        direction="outbound",
        callback=request,
    )
    return router.on_call_event(arrived)


def ended(call_id: str, at: float, answered: bool, talk: float | None = None) -> CallEnded:
    return CallEnded(call_id, at, 16, "Normal Clearing", "caller", 0.0, talk, answered)


def a_request_ringing_6001(sales: dict[str, Any] | None = None) -> Router:
    """c1 (waiting since 0) left a callback request at 5; 6001 logs in at 10 and is rung."""
    router = make_router(sales)
    park(router, "c1", 0.0, CUSTOMER)
    router.request_callback("c1", CUSTOMER, 5.0)
    router.on_call_event(ended("c1", 6.0, False))
    assert router.login("6001", 10.0) == [CallBack("cb-c1", "sales", "6001", CUSTOMER, 15.0)]
    router.drain_events()
    return router


def test_a_callback_is_connected_only_when_the_customer_answers() -> None:
    router = a_request_ringing_6001()
    assert router.offer_answered("cb-c1", "6001", 11.0) == []
    (dialling,) = events(router)
    assert dialling == CallbackDialling(11.0, "cb-c1", "sales", "6001", CUSTOMER, 1)
    assert router.agents.get("6001").state is AgentState.ON_CALL  # busy dialling
    assert outbound(router, "acd-1", 11.5) == []
    assert events(router) == []  # the customer's phone rings: nobody is connected yet
    router.on_call_event(CallAnswered("acd-1", 15.0, AGENT, 3.5))
    (connected,) = events(router)
    assert connected == CallerConnected(15.0, "cb-c1", "sales", "6001", 15.0)
    assert router.on_call_event(ended("acd-1", 75.0, True, 60.0)) == []
    (completed,) = events(router, CallCompleted)
    assert (completed.call_id, completed.talk_time) == ("cb-c1", 60.0)  # from the answer
    assert router.agents.get("6001").state is AgentState.AVAILABLE


@pytest.mark.parametrize("status", ["BUSY", "NOANSWER", "CONGESTION", "CHANUNAVAIL", "CANCEL"])
def test_a_failed_dial_is_reported_frees_the_agent_and_is_retried_in_its_place(
    status: str,
) -> None:
    router = a_request_ringing_6001()
    router.offer_answered("cb-c1", "6001", 11.0)
    outbound(router, "acd-1", 11.5)
    park(router, "c2", 20.0, OTHER)  # joined after c1: behind its request
    router.drain_events()
    decisions = router.on_call_event(CallFailed("acd-1", 30.0, status, AGENT))
    # The agent answered: no miss; free again, and offered the next caller meanwhile.
    assert decisions == [Offer("c2", "lab", "sales", ("6001",), OTHER, 15.0)]
    drained = events(router)
    assert drained[0] == CallbackFailed(30.0, "cb-c1", "sales", "6001", status, 1, 90.0)
    assert not any(isinstance(e, OfferNotAnswered | CallerConnected) for e in drained)
    assert router.agents.get("6001").missed_offers == 0
    assert "cb-c1" not in waiting(router) and router.next_deadline() == 45.0  # c2's ring
    # The outbound call's end adds nothing; the request waits out its spacing.
    assert router.on_call_event(ended("acd-1", 31.0, False)) == []
    assert events(router) == []
    router.offer_answered("c2", "6001", 32.0)
    park(router, "c3", 50.0, "+15550000004")
    router.drain_events()
    assert router.next_deadline() == 90.0
    assert router.tick(89.0) == [] and waiting(router) == ["c3"]
    router.tick(90.0)
    # Back with its original score: ahead of c3, who joined after c1.
    assert waiting(router) == ["cb-c1", "c3"]
    assert router.waiting("sales")[0].score == -0.0
    assert events(router, CallerJoined) == []  # the same request, still waiting in figures
    decisions = router.login("6002", 91.0)
    assert decisions == [CallBack("cb-c1", "sales", "6002", CUSTOMER, 15.0)]


def test_a_callback_is_given_up_after_the_last_attempt() -> None:
    router = a_request_ringing_6001()
    for attempt, at in enumerate([11.0, 82.0], 1):
        if attempt == 2:
            # The spacing is over: back in the queue, and to the free agent at once.
            assert router.tick(80.9) == []
            assert router.tick(81.0) == [CallBack("cb-c1", "sales", "6001", CUSTOMER, 15.0)]
        router.offer_answered("cb-c1", "6001", at)
        outbound(router, f"acd-{attempt}", at + 0.5)
        router.on_call_event(CallFailed(f"acd-{attempt}", at + 10, "NOANSWER", AGENT))
        drained = events(router)
        (failed,) = [e for e in drained if isinstance(e, CallbackFailed)]
        assert (failed.attempt, failed.reason) == (attempt, "NOANSWER")
    assert failed.retry_at is None
    assert drained[-1] == CallbackGivenUp(92.0, "cb-c1", "sales", CUSTOMER, 2, "NOANSWER")
    router.on_call_event(ended("acd-2", 95.0, False))
    assert waiting(router) == [] and router.next_deadline() is None
    assert router.offers() == {}
    # A new request for the number is accepted again.
    router.pause("6001", "lunch", 99.0)
    park(router, "c9", 100.0, CUSTOMER)
    router.request_callback("c9", CUSTOMER, 101.0)
    assert waiting(router) == ["cb-c9"]


def test_the_given_up_event_names_the_number_and_the_attempts() -> None:
    router = a_request_ringing_6001({"callback": {"attempts": 1}})
    router.offer_answered("cb-c1", "6001", 11.0)
    outbound(router, "acd-1", 11.5)
    router.drain_events()
    router.on_call_event(CallFailed("acd-1", 20.0, "BUSY", AGENT))
    failed, given_up = events(router)
    assert failed == CallbackFailed(20.0, "cb-c1", "sales", "6001", "BUSY", 1, None)
    assert given_up == CallbackGivenUp(20.0, "cb-c1", "sales", CUSTOMER, 1, "BUSY")


def test_the_late_end_of_a_failed_dial_does_not_touch_the_next_attempt() -> None:
    router = a_request_ringing_6001({"callback": {"attempts": 3, "spacing": 0}})
    router.offer_answered("cb-c1", "6001", 11.0)
    outbound(router, "acd-1", 11.5)
    router.on_call_event(CallFailed("acd-1", 20.0, "BUSY", AGENT))
    assert router.tick(20.0) == [CallBack("cb-c1", "sales", "6001", CUSTOMER, 15.0)]
    router.offer_answered("cb-c1", "6001", 21.0)
    router.drain_events()
    assert router.on_call_event(ended("acd-1", 21.5, False)) == []  # the first dial's end
    assert events(router) == [] and router.callbacks_out() == {"cb-c1": "dialling"}
    outbound(router, "acd-2", 22.0)
    router.on_call_event(CallAnswered("acd-2", 25.0, AGENT, 3.0))
    assert [type(e) for e in events(router)] == [CallerConnected]


def test_an_outbound_call_ending_unanswered_without_a_status_is_a_failed_attempt() -> None:
    router = a_request_ringing_6001()
    router.offer_answered("cb-c1", "6001", 11.0)
    outbound(router, "acd-1", 11.5)
    router.on_call_event(CallEnded("acd-1", 20.0, 17, "User busy", "system", 8.5))
    (failed,) = events(router, CallbackFailed)
    assert failed.reason == "ended unanswered (User busy)" and failed.retry_at == 80.0


def test_the_customer_dialled_before_the_agents_answer_is_reported_counts_as_answered() -> None:
    """The outbound call may start before the shell reads the OriginateResponse."""
    router = a_request_ringing_6001()
    assert outbound(router, "acd-1", 11.0) == []
    assert [type(e) for e in events(router)] == [CallbackDialling]
    assert router.offers() == {} and router.agents.get("6001").state is AgentState.ON_CALL
    assert router.offer_answered("cb-c1", "6001", 11.2) == []  # the late report: no-op
    assert events(router) == []
    router.on_call_event(CallAnswered("acd-1", 14.0, AGENT, 3.0))
    assert [type(e) for e in events(router)] == [CallerConnected]


def test_an_agent_leg_that_never_dialled_the_customer_is_a_failed_attempt() -> None:
    router = a_request_ringing_6001()
    router.offer_answered("cb-c1", "6001", 11.0)
    router.callback_leg_ended("cb-c1", "not dialled: agent leg hung up (Normal Clearing)", 12.0)
    (failed,) = events(router, CallbackFailed)
    assert failed.reason.startswith("not dialled") and failed.attempt == 1
    # Once the model has the outbound call, the leg's hang-up leaves the decision to it.
    router.tick(72.0)
    router.drain_events()
    router.offer_answered("cb-c1", "6001", 73.0)
    outbound(router, "acd-2", 73.5)
    router.on_call_event(CallAnswered("acd-2", 75.0, AGENT, 1.5))
    assert router.callback_leg_ended("cb-c1", "agent leg hung up", 80.0) == []
    assert [type(e) for e in events(router)] == [CallbackDialling, CallerConnected]


def test_a_request_waiting_for_its_retry_still_blocks_a_duplicate() -> None:
    router = a_request_ringing_6001()
    router.offer_answered("cb-c1", "6001", 11.0)
    outbound(router, "acd-1", 11.5)
    router.on_call_event(CallFailed("acd-1", 20.0, "BUSY", AGENT))
    router.pause("6001", "lunch", 21.0)
    park(router, "c2", 22.0, CUSTOMER)
    with pytest.raises(DuplicateCallback):
        router.request_callback("c2", CUSTOMER, 23.0)


def test_an_outbound_call_of_an_unknown_request_is_ignored() -> None:
    router = make_router()
    assert outbound(router, "acd-7", 1.0, request="cb-elsewhere") == []
    assert router.on_call_event(CallAnswered("acd-7", 2.0, AGENT, 1.0)) == []
    assert router.on_call_event(ended("acd-7", 3.0, True, 1.0)) == []
    assert events(router) == []


# A caller without a number.


def test_a_withheld_caller_is_not_promised_a_callback_and_keeps_waiting() -> None:
    router = make_router({"max_wait": 30, "overflow": {"kind": "callback"}})
    park(router, "c1", 0.0)  # withheld
    park(router, "c2", 10.0, CUSTOMER)
    router.drain_events()
    assert router.tick(30.0) == []  # no Overflow: no redirect to the confirmation
    (not_offered,) = events(router)
    assert not_offered == CallbackNotOffered(30.0, "c1", "sales", "max-wait", None)
    assert waiting(router) == ["c1", "c2"]  # in its place
    assert router.next_deadline() == 40.0  # c2's max wait; none again for c1
    assert router.tick(40.0) == [Overflow("c2", "sales", "callback", "sales", "max-wait")]
    assert waiting(router) == ["c1", "cb-c2"]
    assert [type(e) for e in events(router)] == [
        CallerOverflowed, CallbackRequested, CallerJoined
    ]  # fmt: skip
    assert router.login("6001", 50.0)[0] == Offer("c1", "lab", "sales", ("6001",), None, 15.0)


def test_a_withheld_caller_joining_a_full_queue_joins_anyway() -> None:
    router = make_router({"max_length": 1, "overflow": {"kind": "callback"}})
    park(router, "c1", 0.0, CUSTOMER)
    router.drain_events()
    assert park(router, "c2", 1.0) == []
    not_offered, joined = events(router)
    assert not_offered == CallbackNotOffered(1.0, "c2", "sales", "full", None)
    assert (joined.call_id, joined.position) == ("c2", 2)


def test_a_withheld_caller_goes_to_the_fallback_voicemail() -> None:
    fallback = {"kind": "voicemail", "target": "5003@default"}
    router = make_router({"max_wait": 30, "overflow": {"kind": "callback", "fallback": fallback}})
    park(router, "c1", 0.0)
    router.drain_events()
    assert router.tick(30.0) == [Overflow("c1", "sales", "voicemail", "5003@default", "max-wait")]
    not_offered, overflowed = events(router)
    assert not_offered.fallback == "5003@default"
    assert (overflowed.target, overflowed.wait) == ("5003@default", 30.0)
    assert waiting(router) == []


def test_a_withheld_caller_goes_to_the_fallback_queue() -> None:
    router = make_router(
        {
            "max_wait": 30,
            "overflow": {"kind": "callback", "fallback": {"kind": "queue", "target": "support"}},
        },
        support={},
    )
    park(router, "c1", 0.0)
    router.drain_events()
    assert router.tick(30.0) == [Overflow("c1", "sales", "queue", "support", "max-wait")]
    assert [c.call_id for c in router.waiting("support")] == ["c1"]
    assert [type(e) for e in events(router)] == [CallbackNotOffered, CallerOverflowed, CallerJoined]


# Configuration.


def _config(sales: dict[str, Any], **queues: dict[str, Any]) -> Any:
    return parse_acd_config({"queues": {"sales": sales, **queues}}, "queues.yaml")


def test_the_callback_policy_defaults_and_is_validated() -> None:
    policy = _config({}).queues["sales"].callback
    assert (policy.attempts, policy.spacing) == (3, 120.0)
    with pytest.raises(AcdConfigError) as err:
        _config({"callback": {"attempts": 0, "spacing": -5, "gap": 1}})
    text = str(err.value)
    assert "queues.yaml: key 'queues.sales.callback.attempts'" in text
    assert "key 'queues.sales.callback.spacing'" in text
    assert "key 'queues.sales.callback.gap' is not a setting" in text


@pytest.mark.parametrize(
    ("sales", "others", "message"),
    [
        (
            {"overflow": {"kind": "voicemail", "target": "1", "fallback": {
                "kind": "queue", "target": "sales"}}},
            {},
            "'fallback' is for callers a callback overflow cannot call back",
        ),
        (
            {"overflow": {"kind": "callback", "fallback": {"kind": "callback"}}},
            {},
            "key 'queues.sales.overflow.fallback.kind'",
        ),
        (
            {"overflow": {"kind": "callback", "fallback": {"kind": "queue", "target": "nope"}}},
            {},
            "key 'queues.sales.overflow.fallback.target': unknown queue 'nope'",
        ),
        (
            {"overflow": {"kind": "callback", "fallback": {"kind": "queue", "target": "b"}}},
            {"b": {"overflow": {"kind": "queue", "target": "sales"}}},
            "overflow loop",
        ),
    ],
    ids=["not-callback", "fallback-callback", "unknown-queue", "loop"],
)  # fmt: skip
def test_a_fallback_is_validated(sales: Any, others: Any, message: str) -> None:
    with pytest.raises(AcdConfigError, match=message):
        _config(sales, **others)


# Figures.


def test_failed_callbacks_are_not_answered_and_are_counted_apart() -> None:
    live = LiveFigures({"sales": ["6001"]}, FigureRules())
    live.apply(CallerJoined(0.0, "cb-c1", "sales", "ordinary", 1))
    live.apply(CallbackFailed(30.0, "cb-c1", "sales", "6001", "BUSY", 1, 90.0))
    figures = live.figures("sales", 31.0)
    assert (figures.today.answered, figures.today.callbacks_failed) == (0, 1)
    assert figures.calls_waiting == 1  # the request waits for its retry
    live.apply(CallbackFailed(100.0, "cb-c1", "sales", "6001", "NOANSWER", 2, None))
    live.apply(CallbackGivenUp(100.0, "cb-c1", "sales", CUSTOMER, 2, "NOANSWER"))
    figures = live.figures("sales", 101.0)
    assert figures.calls_waiting == 0
    today = figures.today
    assert (today.answered, today.abandoned, today.overflowed) == (0, 0, 0)
    assert (today.callbacks_failed, today.callbacks_given_up) == (2, 1)
    assert today.service_level is None and today.abandonment_rate is None
