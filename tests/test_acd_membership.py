"""Moving agents between queues (issue 17): the router's runtime memberships (pure, and with
hypothesis: a moved agent is offered only its new queues' callers, and no caller waits in a
queue where a member is free), their refusals, several routers on one store following a
move, recovery (from the store, from the ACD history), the service on memory and on a real
Redis, and ``PUT /api/v1/agents/{agent}/queues``."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, select

import tests.test_acd_http as acd_http
from acd.agents import (
    AgentState,
    IneligibleMembership,
    InvalidMembership,
    MembershipRefused,
    UnknownAgent,
)
from acd.config import AcdHistorySettings, AcdServiceSettings, parse_acd_config
from acd.decisions import Decision, Offer
from acd.events import AgentQueuesChanged
from acd.history import acd_events, latest_agent_queues
from acd.history import metadata as acd_metadata
from acd.router import Router
from acd.service import AcdService
from acd.state import MemoryState
from cti.calls.events import CallArrived, CallEnded, Caller, CallParked
from tests.test_acd_service import FakeAmi

QUEUES: dict[str, Any] = {
    "agent_interface": "Local/{agent}@agents",
    "queues": {
        "sales": {"lanes": ["external"]},
        "support": {"lanes": ["support"], "skills": {"english": 50}},
        "billing": {"lanes": ["billing"]},
    },
    "agents": {
        "6001": {"name": "Alice", "queues": {"sales": 0}, "skills": {"english": 80}},
        "6002": {"name": "Bob", "queues": {"sales": 0}},
        "6003": {"name": "Carol", "queues": {"support": 0}, "skills": {"english": 60}},
    },
}
LANES = {"sales": "external", "support": "support", "billing": "billing"}
AGENTS = sorted(QUEUES["agents"])
NAMES = sorted(QUEUES["queues"])


def make_router(state: MemoryState | None = None, pbx: str = "lab") -> Router:
    return Router(parse_acd_config(QUEUES, "test"), pbx=pbx, state=state)


def park(router: Router, call_id: str, queue: str, at: float) -> list[Decision]:
    channel = "PJSIP/trunk-1"
    router.on_call_event(CallArrived(call_id, at, Caller("+15550001", None), None, channel))
    return router.on_call_event(CallParked(call_id, at, LANES[queue], channel))


def hang_up(router: Router, call_id: str, at: float) -> list[Decision]:
    return router.on_call_event(CallEnded(call_id, at, 16, "Normal Clearing", "caller", 0.0))


def offers(decisions: list[Decision]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(d.call_id, d.queue, d.agents) for d in decisions if isinstance(d, Offer)]


def moves(router: Router) -> list[AgentQueuesChanged]:
    return [e for e in router.drain_events() if isinstance(e, AgentQueuesChanged)]


# -- the router -------------------------------------------------------------------------------


def test_a_free_agent_moves_at_once_and_is_offered_only_its_new_queues_callers() -> None:
    router = make_router()
    router.login("6001", 0.0)
    assert park(router, "c1", "support", 1.0) == []  # Carol, its member, is logged out
    router.drain_events()

    router.set_queues("6001", {"support": 0, "billing": 3}, "sam", 2.0)
    assert router.queues_of("6001") == {"support": 0, "billing": 3}
    assert router.available("sales") == []
    assert router.available("support") == ["6001"] and router.available("billing") == ["6001"]
    assert moves(router) == [AgentQueuesChanged(2.0, "6001", {"support": 0, "billing": 3}, "sam")]
    assert offers(router.poll(2.0)) == [("c1", "support", ("6001",))]

    router.offer_answered("c1", "6001", 3.0)
    assert offers(park(router, "c2", "sales", 4.0)) == []  # not a sales member any more
    assert offers(hang_up(router, "c1", 5.0)) == []  # free again, in support and billing only
    assert router.available("support") == ["6001"] and router.available("sales") == []
    assert offers(park(router, "c3", "billing", 6.0)) == [("c3", "billing", ("6001",))]


def test_an_agent_on_a_call_keeps_it_and_serves_its_new_queues_after() -> None:
    router = make_router()
    router.login("6001", 0.0)
    assert offers(park(router, "c1", "sales", 1.0)) == [("c1", "sales", ("6001",))]
    router.set_queues("6001", {"billing": 0}, "sam", 2.0)
    assert offers(router.poll(2.0)) == []
    assert router.offers() == {"c1": ("6001",)}  # still ringing with its caller
    router.offer_answered("c1", "6001", 3.0)
    assert router.agents.get("6001").state is AgentState.ON_CALL
    park(router, "c2", "sales", 4.0)
    park(router, "c3", "billing", 5.0)
    # The call ends (no wrap-up): the agent takes its new queue's caller, not sales'.
    assert offers(hang_up(router, "c1", 6.0)) == [("c3", "billing", ("6001",))]
    assert [c.call_id for c in router.waiting("sales")] == ["c2"]


def test_a_paused_agent_moved_joins_its_new_queues_when_available() -> None:
    router = make_router()
    router.login("6001", 0.0)
    router.pause("6001", "lunch", 1.0)
    park(router, "c1", "billing", 2.0)
    router.set_queues("6001", {"billing": 0}, "sam", 3.0)
    assert offers(router.poll(3.0)) == [] and router.available("billing") == []
    assert offers(router.unpause("6001", 4.0)) == [("c1", "billing", ("6001",))]


def test_penalties_of_a_move_order_the_free_agents() -> None:
    router = make_router()
    router.login("6001", 0.0)  # idle longest
    router.login("6002", 1.0)
    router.set_queues("6001", {"sales": 7}, "sam", 2.0)
    assert router.available("sales") == ["6002", "6001"]
    assert offers(park(router, "c1", "sales", 3.0)) == [("c1", "sales", ("6002",))]


@pytest.mark.parametrize(
    ("agent", "queues", "error", "fields", "words"),
    [
        ("6001", {}, InvalidMembership, ["queues"], "at least one queue"),
        ("6001", {"nope": 0, "sales": 0}, InvalidMembership, ["queues.nope"], "billing, sales"),
        (
            "6001",
            {"sales": 101, "billing": -1},
            InvalidMembership,
            ["queues.sales", "queues.billing"],
            "0-100",
        ),
        ("6001", {"sales": True}, InvalidMembership, ["queues.sales"], "whole number"),
        ("6002", {"support": 0}, IneligibleMembership, ["queues.support"], "'english' at 50"),
    ],
)
def test_a_move_the_configuration_cannot_have_is_refused_and_changes_nothing(
    agent: str, queues: dict[str, Any], error: type[MembershipRefused], fields: list[str],
    words: str,
) -> None:  # fmt: skip
    state = MemoryState()
    router = make_router(state)
    router.login(agent, 0.0)
    router.drain_events()
    with pytest.raises(error, match=words) as refused:
        router.set_queues(agent, queues, "sam", 1.0)
    assert [field for field, _ in refused.value.problems] == fields
    assert router.queues_of(agent) == QUEUES["agents"][agent]["queues"]
    assert router.available("sales") == [agent] and router.drain_events() == []
    assert state.memberships() == {}


def test_a_skill_too_low_is_named_with_the_level_the_agent_has() -> None:
    data = copy.deepcopy(QUEUES)
    data["agents"]["6002"]["skills"] = {"english": 20}
    router = Router(parse_acd_config(data, "test"), pbx="lab")
    with pytest.raises(IneligibleMembership, match="requires skill 'english' at 50 or more; "
                       "agent 6002 has 20"):  # fmt: skip
        router.set_queues("6002", {"support": 0}, "sam", 1.0)


def test_an_unknown_agent_cannot_be_moved() -> None:
    with pytest.raises(UnknownAgent):
        make_router().set_queues("6009", {"sales": 0}, "sam", 1.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("join"), st.sampled_from(NAMES)),
            st.tuples(
                st.just("move"),
                st.sampled_from(AGENTS),
                st.dictionaries(st.sampled_from(NAMES), st.integers(0, 3), min_size=1),
            ),
            st.tuples(st.just("answer")),
            st.tuples(st.just("end")),
        ),
        max_size=40,
    )
)
def test_moved_agents_are_offered_only_their_queues_callers_and_no_caller_waits_by_a_free_member(
    steps: list[tuple[Any, ...]],
) -> None:
    router = make_router()
    for agent in AGENTS:
        router.login(agent, 0.0)
    calls, talking = 0, []
    for at, step in enumerate(steps, start=1):
        decisions: list[Decision] = []
        if step[0] == "join":
            calls += 1
            decisions = park(router, f"c{calls}", step[1], float(at))
        elif step[0] == "move":
            try:
                router.set_queues(step[1], step[2], "sam", float(at))
            except IneligibleMembership:
                assert step[1] == "6002" and "support" in step[2]
                continue
            decisions = router.poll(float(at))
        elif step[0] == "answer" and router.offers():
            call_id, ringing = next(iter(router.offers().items()))
            router.offer_answered(call_id, ringing[0], float(at))
            talking.append(call_id)
        elif step[0] == "end" and talking:
            decisions = hang_up(router, talking.pop(0), float(at))
        for _, queue, agents in offers(decisions):
            assert all(queue in router.queues_of(a) for a in agents)
        for queue in NAMES:
            free = router.available(queue)
            assert all(queue in router.queues_of(a) for a in free)
            assert not (free and router.waiting(queue))
        for agent in router.agents:
            if agent.state is AgentState.AVAILABLE:
                serving = {q for q in NAMES if agent.id in router.available(q)}
                assert serving == set(router.queues_of(agent.id))


def test_another_router_on_the_same_store_follows_a_move_at_its_poll() -> None:
    state = MemoryState()
    here, there = make_router(state, "lab"), make_router(state, "lab2")
    here.set_queues("6001", {"billing": 2}, "sam", 1.0)
    assert there.queues_of("6001") == {"sales": 0}
    there.login("6001", 2.0)  # frees it with its (stale) view: sales
    assert state.available("sales") == ["6001"]
    park(there, "c1", "billing", 3.0)
    assert offers(there.poll(4.0)) == [("c1", "billing", ("6001",))]
    assert there.queues_of("6001") == {"billing": 2}
    followed = moves(there)
    assert followed == [AgentQueuesChanged(4.0, "6001", {"billing": 2}, "another backend")]
    there.poll(5.0)
    assert moves(there) == []  # followed once


def test_moves_come_back_from_an_earlier_run_unless_the_configuration_refuses_them() -> None:
    state = MemoryState()
    router = make_router(state)
    refused = router.restore_memberships(
        {
            "6001": {"support": 1},
            "6002": {"support": 0},  # Bob lacks english
            "6003": {"gone": 0},  # a queue removed from the configuration since
            "6009": {"sales": 0},  # an agent removed
        },
        10.0,
    )
    assert sorted(refused) == ["6002", "6003", "6009"] and "english" in refused["6002"]
    assert router.queues_of("6001") == {"support": 1}
    assert router.queues_of("6003") == {"support": 0}  # the configuration's
    assert moves(router) == [AgentQueuesChanged(10.0, "6001", {"support": 1}, "restored")]
    assert state.memberships() == {"6001": {"support": 1}}


def test_a_store_that_lost_the_moves_keeps_the_routers_view_and_gets_them_back() -> None:
    state = MemoryState()
    router = make_router(state)
    router.set_queues("6001", {"billing": 0}, "sam", 1.0)
    state.__init__()  # type: ignore[misc]  # emptied, as a restarted Redis is
    router.poll(2.0)
    assert router.queues_of("6001") == {"billing": 0}  # not reverted to the configuration
    router.reseed(3.0)
    assert state.memberships() == {"6001": {"billing": 0}}


# -- the service ------------------------------------------------------------------------------

T0 = 1_700_000_000.0


def _settings(tmp_path: Path, **overrides: Any) -> AcdServiceSettings:
    queues = tmp_path / "queues.yaml"
    queues.write_text(yaml.safe_dump(QUEUES), encoding="utf-8")
    return AcdServiceSettings(
        queues=queues,
        login_agents=False,
        history=AcdHistorySettings(spool_dir=tmp_path / "spool", sync_interval=None),
        **overrides,
    )


CHANNELS = {f"c{i}": f"Local/5003@inbound-0000000{i};2" for i in range(1, 5)}


def _service(tmp_path: Path, reactor: Any, engine: Any, **settings: Any) -> AcdService:
    return AcdService(
        _settings(tmp_path, **settings),
        reactor=reactor,
        ami=FakeAmi(),
        caller_channel=CHANNELS.get,
        engine=engine,
    )


def _rung(acd: AcdService) -> list[str]:
    ami = acd.driver.ami
    assert isinstance(ami, FakeAmi)
    return [fields["Channel"] for name, fields in ami.sent if name == "Originate"]


def test_the_service_moves_an_agent_follows_it_in_figures_and_restores_it_from_history(
    tmp_path: Path, reactor: Any, run: Any
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'acd.sqlite3'}")
    acd_metadata.create_all(engine)
    acd = _service(tmp_path, reactor, engine, pbx="lab")
    seen: list[Any] = []
    acd.events.subscribe(seen.append, name="test")
    acd.start()
    assert acd.restore_open(T0) == 0
    run(acd.agent_login("6001"))
    acd.on_call_event(CallParked("c1", T0, "billing", CHANNELS["c1"]))
    assert _rung(acd) == []

    run(acd.set_agent_queues("6001", {"billing": 0, "sales": 2}, "sam"))
    assert _rung(acd) == ["Local/6001@agents"]  # offered its new queue's caller
    assert acd.agent_queues("6001") == {"billing": 0, "sales": 2}
    [moved] = [e for e in seen if isinstance(e, AgentQueuesChanged)]
    assert (moved.agent, moved.queues, moved.by) == ("6001", {"billing": 0, "sales": 2}, "sam")
    figures = {f.queue: f for f in acd.snapshot(reactor.seconds())}
    assert figures["billing"].agents_logged_in == 1 and figures["support"].agents_logged_in == 0
    with pytest.raises(IneligibleMembership):
        run(acd.set_agent_queues("6002", {"support": 0}, "sam"))
    assert acd.agent_queues("6002") == {"sales": 0}
    with pytest.raises(KeyError):
        acd.agent_queues("6009")

    acd.stop()
    assert run(acd.close()).all_kept
    assert latest_agent_queues(engine, "lab") == {"6001": {"billing": 0, "sales": 2}}
    assert latest_agent_queues(engine, "elsewhere") == {}

    # A restart: the move comes back from the ACD history (memory state: nothing shared).
    again = _service(tmp_path, reactor, engine, pbx="lab")
    again.restore_open(T0 + 60)
    assert again.agent_queues("6001") == {"billing": 0, "sales": 2}
    assert run(again.driver.call(again.router.queues_of, "6001")) == {"billing": 0, "sales": 2}
    run(again.agent_login("6001"))
    figures = {f.queue: f for f in again.snapshot(reactor.seconds())}
    assert figures["billing"].agents_available == 1 and figures["sales"].agents_available == 1
    again.stop()
    run(again.close())
    with engine.connect() as conn:
        rows = conn.execute(
            select(acd_events.c.agent, acd_events.c.payload).where(
                acd_events.c.kind == "agent_queues"
            )
        ).all()
    assert [(r.agent, r.payload["by"]) for r in rows] == [("6001", "sam"), ("6001", "restored")]
    engine.dispose()


@pytest.mark.redis
def test_with_redis_every_backend_routes_with_a_move_and_a_restart_gets_it_from_the_store(
    tmp_path: Path, reactor: Any, run: Any, redis_url: str
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'acd.sqlite3'}")
    acd_metadata.create_all(engine)

    def backend(pbx: str) -> AcdService:
        return _service(tmp_path, reactor, engine, pbx=pbx, state="redis", redis_url=redis_url)

    one, two = backend("lab"), backend("lab2")
    try:
        for acd in (one, two):
            acd.restore_open(T0)
        run(one.agent_login("6001"))
        run(one.set_agent_queues("6001", {"billing": 1}, "sam"))
        assert run(one.driver.call(one.router.available, "billing")) == ["6001"]
        assert run(one.driver.call(one.router.available, "sales")) == []
        # The other backend follows at its shared poll: its own caller reaches the agent.
        two.on_call_event(CallParked("c2", T0, "billing", CHANNELS["c2"]))
        run(two.driver.call(two.driver.poll))
        assert two.agent_queues("6001") == {"billing": 1}
        assert _rung(two) == ["Local/6001@agents"]
    finally:
        for acd in (one, two):
            acd.stop()
            run(acd.close())

    # A restarted backend takes the moves from the store, not the configuration.
    three = backend("lab")
    try:
        three.restore_open(T0 + 60)
        run(three.driver.call(lambda: None))
        assert three.agent_queues("6001") == {"billing": 1}
        assert run(three.driver.call(three.router.queues_of, "6001")) == {"billing": 1}
    finally:
        three.stop()
        run(three.close())
        engine.dispose()


@pytest.mark.redis
def test_redis_keeps_memberships_for_every_client(redis_url: str) -> None:
    from acd.redis_state import RedisState

    one, two = RedisState.from_url(redis_url), RedisState.from_url(redis_url)
    other = RedisState.from_url(redis_url, namespace="elsewhere")
    try:
        assert one.memberships() == {}
        one.set_memberships("6001", {"sales": 0, "support": 5})
        one.set_memberships("6002", {"billing": 1})
        one.set_memberships("6001", {"support": 2})  # replaces the whole set
        assert two.memberships() == {"6001": {"support": 2}, "6002": {"billing": 1}}
        assert other.memberships() == {}
    finally:
        for store in (one, two, other):
            store.close()


# -- HTTP -------------------------------------------------------------------------------------


@pytest.fixture
def desk(tmp_path: Path, reactor: Any, run: Any) -> Iterator[acd_http.Desk]:
    for d, _, _ in acd_http.acd_desk(tmp_path, reactor, run, config=QUEUES):
        yield d


def test_a_supervisor_moves_an_agent_and_every_status_answer_shows_its_queues(
    desk: acd_http.Desk,
) -> None:
    assert desk.call("GET", "/api/v1/agent", "alice").json()["queues"] == {"sales": 0}
    moved = desk.call("PUT", "/api/v1/agents/6001/queues", "sam",
                      json={"queues": {"support": 5, "billing": 0}})  # fmt: skip
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert (body["agent"], body["state"], body["queues"]) == (
        "6001", "logged_out", {"support": 5, "billing": 0}
    )  # fmt: skip
    assert desk.call("GET", "/api/v1/agent", "alice").json()["queues"] == body["queues"]
    assert desk.call("GET", "/api/v1/agents/6001", "root").json()["queues"] == body["queues"]
    logged_in = desk.call("POST", "/api/v1/agent/login", "alice").json()
    assert logged_in["queues"] == body["queues"]
    assert desk.free() == []  # sales no more
    free = desk.run(desk.acd.driver.call(desk.acd.router.available, "support"))
    assert free == ["6001"]
    by_admin = desk.call("PUT", "/api/v1/agents/6001/queues", "root",
                         json={"queues": {"sales": 0}})  # fmt: skip
    assert by_admin.status_code == 200 and desk.free() == ["6001"]


@pytest.mark.parametrize(
    ("who", "agent", "body", "code", "fields", "words"),
    [
        ("alice", "6001", {"queues": {"sales": 1}}, 403, [None], "supervisor or admin"),
        ("sam", "6009", {"queues": {"sales": 1}}, 404, [None], "'6009'"),
        (
            "sam",
            "6001",
            {"queues": {"nope": 0, "sales": 500}},
            422,
            ["body.queues.nope", "body.queues.sales"],
            "no queue 'nope'",
        ),
        ("sam", "6001", {"queues": {}}, 422, ["body.queues"], "at least one queue"),
        ("sam", "6001", {"queues": {"sales": "x"}}, 422, ["body.queues.sales"], "integer"),
        ("sam", "6001", {"queue": {"sales": 0}}, 422, ["body.queues"], "required"),
        ("sam", "6002", {"queues": {"support": 0}}, 409, [None], "skill 'english'"),
    ],
)
def test_a_move_refused_says_why_and_changes_nothing(
    desk: acd_http.Desk, who: str, agent: str, body: dict[str, Any], code: int,
    fields: list[str | None], words: str,
) -> None:  # fmt: skip
    answer = desk.call("PUT", f"/api/v1/agents/{agent}/queues", who, json=body)
    assert answer.status_code == code, answer.text
    errors = answer.json()["errors"]
    assert [e["field"] for e in errors] == fields
    assert words in errors[0]["problem"]
    assert desk.acd.agent_queues("6001") == {"sales": 0}
    assert desk.acd.agent_queues("6002") == {"sales": 0}
