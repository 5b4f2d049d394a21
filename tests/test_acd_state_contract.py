"""One contract for every ACD state store: each test runs on MemoryState and on RedisState
(a real redis-server), and a random-operation test checks both give identical answers."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acd.redis_state import RedisState
from acd.state import AcdState, Claim, MemoryState, WaitingCaller

T = TypeVar("T")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest) -> Iterator[AcdState]:
    if request.param == "memory":
        yield MemoryState()
        return
    state = RedisState.from_url(request.getfixturevalue("redis_url"))
    yield state
    state.close()


def caller(call_id: str, score: float = 0.0, joined_at: float = 0.0, **kw: Any) -> WaitingCaller:
    kw.setdefault("queue", "sales")
    kw.setdefault("pbx", "pbx1")
    return WaitingCaller(call_id=call_id, score=score, joined_at=joined_at, **kw)


def present(found: T | None) -> T:
    """What a lookup found (the test fails here if it found nothing)."""
    assert found is not None
    return found


def ids(callers: list[WaitingCaller]) -> list[str]:
    return [c.call_id for c in callers]


def test_callers_wait_higher_score_first_then_joined_at_then_id(store: AcdState) -> None:
    for c in [
        caller("low", score=-5.0),
        caller("late", score=3.0, joined_at=20.0),
        caller("b", score=3.0, joined_at=10.0),
        caller("a", score=3.0, joined_at=10.0),
        caller("é", score=3.0, joined_at=10.0),  # non-ASCII sorts after ASCII, as in Python
        caller("ab", score=3.0, joined_at=10.0),
        caller("early", score=3.0, joined_at=-1.5),
        caller("top", score=1e300),
        caller("zero", score=0.0, joined_at=1.0),
        caller("negzero", score=-0.0, joined_at=2.0),  # -0.0 == 0.0: ties go by joined_at
        caller("other-pbx", score=2.0, pbx="pbx2"),
        caller("other-queue", score=99.0, queue="support"),
    ]:
        assert store.add_caller(c)
    assert ids(store.waiting("sales")) == [
        "top", "early", "a", "ab", "b", "é", "late", "other-pbx", "zero", "negzero", "low",
    ]  # fmt: skip
    assert ids(store.waiting("support")) == ["other-queue"]
    assert store.waiting("nobody") == []


def test_position_head_and_length_follow_the_serving_order_of_every_pbx(
    store: AcdState,
) -> None:
    assert store.position("c1") is None
    assert store.head("sales") is None and store.length("sales") == 0
    top = caller("top", score=9.0, pbx="pbx2")  # another PBX's caller counts too
    for c in [
        caller("c1", score=1.0, joined_at=5.0),
        caller("c2", score=1.0, joined_at=4.0),  # same score, joined earlier: ahead of c1
        top,
        caller("cb", score=-1.0, callback="555"),
        caller("elsewhere", score=99.0, queue="support"),
    ]:
        store.add_caller(c)
    order = ids(store.waiting("sales"))
    assert order == ["top", "c2", "c1", "cb"]
    assert [store.position(call_id) for call_id in order] == [1, 2, 3, 4]
    assert store.position("elsewhere") == 1 and store.position("nobody") is None
    assert store.head("sales") == top and store.length("sales") == 4
    assert present(store.head("support")).call_id == "elsewhere" and store.length("support") == 1
    store.remove_caller("c2")
    assert store.position("c1") == 2 and store.position("c2") is None
    store.set_available("amy", {"sales": 0.0})
    store.claim("sales", "pbx2")  # the head goes: everyone moves up
    assert present(store.head("sales")).call_id == "c1" and store.position("cb") == 2
    assert store.length("sales") == 2 and store.head("nobody") is None


def test_caller_round_trips_every_field(store: AcdState) -> None:
    full = caller(
        "c1", 0.1 + 0.2, 1700000000.123456, tier="gold", number="+33123", callback="+33999"
    )
    store.add_caller(full)
    assert store.waiting("sales") == [full] and store.head("sales") == full
    assert store.remove_caller("c1") == full


def test_names_with_colons_do_not_collide(store: AcdState) -> None:
    store.add_caller(caller("c1", queue="a:b", pbx="c", callback="1:2"))
    c2 = caller("c2", queue="a", pbx="b:c", callback="2")
    store.add_caller(c2)
    store.set_available("x:y", {"a": 0.0, "a:b": 0.0})
    assert present(store.find_callback("a:b", "1:2")).call_id == "c1"
    assert store.find_callback("a:b:1", "2") is None
    assert store.claim("a", "b:c") == Claim(c2, ("x:y",))
    assert ids(store.waiting("a:b")) == ["c1"]


def test_duplicate_call_id_is_refused_and_changes_nothing(store: AcdState) -> None:
    first = caller("c1", score=1.0)
    assert store.add_caller(first)
    assert not store.add_caller(caller("c1", score=9.0, queue="support", callback="555"))
    assert store.waiting("sales") == [first]
    assert store.waiting("support") == []
    assert store.find_callback("support", "555") is None


def test_remove_caller(store: AcdState) -> None:
    c = caller("c1", callback="555")
    store.add_caller(c)
    store.add_caller(caller("c2"))
    assert store.remove_caller("c1") == c
    assert store.remove_caller("c1") is None
    assert ids(store.waiting("sales")) == ["c2"]
    assert store.find_callback("sales", "555") is None
    assert store.add_caller(c)  # its id is free again


def test_find_callback_returns_the_earliest_request_for_that_number(store: AcdState) -> None:
    store.add_caller(caller("live", number="555"))  # a caller on the line is no callback
    assert store.find_callback("sales", "555") is None
    store.add_caller(caller("cb1", score=1.0, callback="555"))
    store.add_caller(caller("cb2", score=9.0, callback="555"))
    store.add_caller(caller("cb3", callback="666", queue="support"))
    assert present(store.find_callback("sales", "555")).call_id == "cb1"
    assert store.find_callback("sales", "666") is None
    assert present(store.find_callback("support", "666")).call_id == "cb3"
    store.remove_caller("cb1")
    assert present(store.find_callback("sales", "555")).call_id == "cb2"


def test_agents_free_lower_score_first_then_id(store: AcdState) -> None:
    store.set_available("bob", {"sales": 2.0})
    store.set_available("amy", {"sales": 2.0})
    store.set_available("zed", {"sales": -1.0})
    store.set_available("cat", {"sales": 0.0})
    store.set_available("dan", {"sales": -0.0})  # equal to 0.0: after "cat" by id
    assert store.available("sales") == ["zed", "cat", "dan", "amy", "bob"]
    assert store.available("nobody") == []


def test_set_available_replaces_earlier_availability(store: AcdState) -> None:
    store.set_available("amy", {"sales": 1.0, "support": 1.0})
    store.set_available("bob", {"sales": 2.0})
    store.set_available("amy", {"support": 5.0, "billing": 0.0})
    assert store.available("sales") == ["bob"]
    assert store.available("billing") == ["amy"]
    store.set_available("bob", {"sales": 0.0})
    store.set_available("amy", {"sales": 0.5})
    assert store.available("sales") == ["bob", "amy"]
    assert store.set_unavailable("amy")
    assert not store.set_unavailable("amy")
    assert store.available("support") == store.available("billing") == []
    store.set_available("cat", {})
    assert not store.set_unavailable("cat")


@pytest.mark.parametrize(
    ("agents", "expected"),
    [(1, ("a1",)), (2, ("a1", "a2")), (5, ("a1", "a2", "a3")), (0, ("a1", "a2", "a3"))],
)
def test_claim_takes_best_caller_and_best_agents(
    store: AcdState, agents: int, expected: tuple[str, ...]
) -> None:
    best = caller("best", score=5.0)
    store.add_caller(caller("next", score=1.0))
    store.add_caller(best)
    for agent, score in [("a3", 2.0), ("a1", 0.0), ("a2", 1.0)]:  # not in score order
        store.set_available(agent, {"sales": score})
    assert store.claim("sales", "pbx1", agents=agents) == Claim(best, expected)
    assert ids(store.waiting("sales")) == ["next"]
    assert store.available("sales") == [a for a in ["a1", "a2", "a3"] if a not in expected]


def test_claim_takes_only_callers_of_its_pbx(store: AcdState) -> None:
    store.add_caller(caller("p2-best", score=9.0, pbx="pbx2"))
    store.add_caller(caller("p1", score=1.0))
    store.add_caller(caller("p1-other-queue", score=9.0, queue="support"))
    store.set_available("amy", {"sales": 0.0})
    store.set_available("bob", {"sales": 1.0})
    assert present(store.claim("sales", "pbx1")).caller.call_id == "p1"
    assert present(store.claim("sales", "pbx2")).caller.call_id == "p2-best"
    assert store.claim("sales", "pbx1") is None  # free agents remain, no pbx1 caller


def test_claim_reserves_agent_in_every_queue(store: AcdState) -> None:
    store.add_caller(caller("c1"))
    store.set_available("amy", {"sales": 0.0, "support": 0.0, "billing": 3.0})
    store.set_available("bob", {"support": 1.0})
    assert present(store.claim("sales", "pbx1")).agents == ("amy",)
    assert store.available("sales") == store.available("billing") == []
    assert store.available("support") == ["bob"]
    assert not store.set_unavailable("amy")


def test_claim_that_finds_nothing_changes_nothing(store: AcdState) -> None:
    store.set_available("amy", {"sales": 0.0})
    assert store.claim("sales", "pbx1") is None  # no caller
    store.add_caller(caller("c1", pbx="pbx2"))
    assert store.claim("sales", "pbx1") is None  # a caller, but of another PBX
    store.set_unavailable("amy")
    store.set_available("bob", {"support": 0.0})
    store.add_caller(caller("c2"))
    assert store.claim("sales", "pbx1") is None  # no free agent in that queue
    assert ids(store.waiting("sales")) == ["c1", "c2"]
    assert store.available("support") == ["bob"]
    assert store.available("sales") == []


def test_claimed_agents_are_reserved_until_their_holder_frees_or_takes_them_off(
    store: AcdState,
) -> None:
    store.set_available("amy", {"sales": 0.0})
    assert not store.reserved("amy")
    store.add_caller(caller("c1"))
    store.claim("sales", "pbx1")
    assert store.reserved("amy")
    # A log-in or unpause from a stale view (another backend, a restart) changes nothing.
    assert not store.set_available("amy", {"sales": 0.0}, if_idle=True)
    assert not store.set_unavailable("amy", if_idle=True)
    assert store.reserved("amy") and store.available("sales") == []
    # The holder, after the call: free again, the reservation over.
    assert store.set_available("amy", {"sales": 1.0})
    assert not store.reserved("amy") and store.available("sales") == ["amy"]
    assert store.set_available("amy", {"sales": 0.0}, if_idle=True)  # free: no reservation
    store.add_caller(caller("c2"))
    store.claim("sales", "pbx1")
    assert not store.set_unavailable("amy")  # the holder pauses it in wrap-up
    assert not store.reserved("amy") and store.available("sales") == []
    assert store.set_available("amy", {"sales": 0.0}, if_idle=True)


def test_only_the_claimed_agents_are_reserved(store: AcdState) -> None:
    store.add_caller(caller("c1"))
    for agent, score in [("amy", 0.0), ("bob", 1.0)]:
        store.set_available(agent, {"sales": score})
    store.claim("sales", "pbx1")
    assert store.set_unavailable("bob", if_idle=True)
    assert [store.reserved(a) for a in ("amy", "bob", "nobody")] == [True, False, False]


# --- random operations: both stores must answer identically ---------------------------------

QUEUES = ["q1", "q:2"]
PBXS = ["p1", "p2"]
CALLS = ["c0", "c1", "c2", "c3", "c:4", "c5"]
AGENTS = ["a0", "a1", "a2", "é"]
NUMBERS = ["555"]
FLOATS = st.sampled_from([0.0, -0.0, 1.0, 1.5, -2.0, 1e-9, math.inf, -math.inf])

callers = st.builds(
    WaitingCaller,
    call_id=st.sampled_from(CALLS),
    queue=st.sampled_from(QUEUES),
    pbx=st.sampled_from(PBXS),
    score=FLOATS,
    joined_at=FLOATS,
    number=st.sampled_from([None, "555"]),
    callback=st.sampled_from([None, *NUMBERS]),
)
queue = st.sampled_from(QUEUES)
agent = st.sampled_from(AGENTS)
if_idle = st.fixed_dictionaries({"if_idle": st.booleans()})


def op(name: str, args: Any, kwargs: Any = None) -> Any:
    """(method name, positional arguments, keyword arguments)."""
    return st.tuples(st.just(name), args, st.just({}) if kwargs is None else kwargs)


adds = op("add_caller", st.tuples(callers))
operations = st.one_of(
    adds,
    adds,  # twice as likely: the store needs callers to do anything interesting
    op("remove_caller", st.tuples(st.sampled_from(CALLS))),
    op("waiting", st.tuples(queue)),
    op("position", st.tuples(st.sampled_from(CALLS))),
    op("head", st.tuples(queue)),
    op("length", st.tuples(queue)),
    op("find_callback", st.tuples(queue, st.sampled_from(NUMBERS))),
    op("set_available", st.tuples(agent, st.dictionaries(queue, FLOATS, max_size=3)), if_idle),
    op("set_unavailable", st.tuples(agent), if_idle),
    op("reserved", st.tuples(agent)),
    op("available", st.tuples(queue)),
    op("claim", st.tuples(queue, st.sampled_from(PBXS), st.integers(min_value=0, max_value=2))),
)


@pytest.mark.redis
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(operations, min_size=10, max_size=60))
def test_memory_and_redis_answer_alike(
    redis_url: str, steps: list[tuple[str, tuple, dict[str, Any]]]
) -> None:
    memory = MemoryState()
    redis_state = RedisState.from_url(redis_url, namespace=uuid.uuid4().hex)  # fresh per example
    try:
        for name, args, kwargs in steps:
            expected = getattr(memory, name)(*args, **kwargs)
            assert getattr(redis_state, name)(*args, **kwargs) == expected, (name, args, kwargs)
        for q in QUEUES:
            assert redis_state.waiting(q) == memory.waiting(q)
            assert redis_state.head(q) == memory.head(q)
            assert redis_state.length(q) == memory.length(q)
            assert redis_state.available(q) == memory.available(q)
        assert [redis_state.position(c) for c in CALLS] == [memory.position(c) for c in CALLS]
        assert [redis_state.reserved(a) for a in AGENTS] == [memory.reserved(a) for a in AGENTS]
    finally:
        redis_state.close()


# --- RedisState only ------------------------------------------------------------------------


@pytest.mark.redis
def test_redis_refuses_what_it_cannot_order_before_writing(redis_url: str) -> None:
    state = RedisState.from_url(redis_url)
    with pytest.raises(ValueError, match="NaN"):
        state.add_caller(caller("c1", score=math.nan))
    with pytest.raises(ValueError, match="NaN"):
        state.set_available("amy", {"sales": 0.0, "support": math.nan})
    with pytest.raises(ValueError, match="agents"):
        state.claim("sales", "pbx1", agents=-1)
    assert state.waiting("sales") == [] and state.available("sales") == []
    state.close()
