"""The product's ACD against the PBX simulator over real TCP: callers parked in the holding
context are offered to agents, bridged, and accounted for, with failures on the way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text

from acd.events import AcdEvent
from cti.ami.codec import Message
from cti.calls.events import CallAbandoned
from tests.e2e import caller, start_backend, start_simulator, until

QUEUES = {
    "agent_interface": "Local/{agent}@agents",
    "queues": {
        "sales": {
            "lanes": ["external"],
            "strategy": "longest_idle",
            "ring_timeout": 2,
            "wrap_up": 1,
            "auto_pause_after": 1,
        },
    },
    "agents": {
        # Penalty 0: tried first while free. Its phone rings and is never answered.
        "6101": {
            "name": "Nobody",
            "interface": "Local/6101@agents-noanswer",
            "queues": {"sales": 0},
        },
        "6001": {"name": "Alice", "queues": {"sales": 1}},
    },
}


@pytest.fixture
def acd_app(reactor: Any, run: Any, tmp_path: Path) -> Any:
    yield from _acd_backend(reactor, run, tmp_path, {})


@pytest.fixture
def acd_app_on_redis(reactor: Any, run: Any, tmp_path: Path, redis_url: str) -> Any:
    env = {"CALLCENTER_ACD__STATE": "redis", "CALLCENTER_REDIS__URL": redis_url}
    yield from _acd_backend(reactor, run, tmp_path, env)


def _acd_backend(reactor: Any, run: Any, tmp_path: Path, env: dict[str, str]) -> Any:
    queues = tmp_path / "queues.yaml"
    queues.write_text(yaml.safe_dump(QUEUES))
    simulator = start_simulator(reactor)
    app = start_backend(
        reactor,
        run,
        simulator,
        tmp_path,
        {
            "CALLCENTER_ACD__QUEUES": str(queues),
            "CALLCENTER_ACD__LOGIN_AGENTS": "true",
            **env,
        },
    )
    # On Redis the driver routes on a thread of its own: let the start-up log-ins be carried
    # out (and published) before the test subscribes.
    assert app.acd is not None
    run(app.acd.driver.call(lambda: None))
    app.acd_seen = []
    app.acd.events.subscribe(app.acd_seen.append, name="test")
    yield app
    run(app.stop())
    simulator.stopListening()


def _acd(events: list[AcdEvent], kind: str) -> list[Any]:
    return [e for e in events if e.kind == kind]


def test_with_redis_state_a_parked_caller_is_bridged_the_same_way(
    acd_app_on_redis: Any, run: Any
) -> None:
    _a_parked_caller_skips_an_agent_who_does_not_answer_and_is_bridged(acd_app_on_redis, run)


def test_a_parked_caller_skips_an_agent_who_does_not_answer_and_is_bridged(
    acd_app: Any, run: Any
) -> None:
    _a_parked_caller_skips_an_agent_who_does_not_answer_and_is_bridged(acd_app, run)


def _a_parked_caller_skips_an_agent_who_does_not_answer_and_is_bridged(app: Any, run: Any) -> None:

    async def go() -> None:
        await app.ami.send_action("Originate", caller("+302101234567", "Ελένη", "5003", 9))
        await until(lambda: any(e.kind == "ended" for e in app.seen), timeout=25)
        await until(lambda: bool(_acd(app.acd_seen, "call_completed")), timeout=5)

    run(go(), timeout=40)
    call_id = app.seen[0].call_id
    kinds = [e.kind for e in app.seen if e.call_id == call_id]
    assert kinds[:2] == ["arrived", "parked"] and kinds[-2:] == ["answered", "ended"]
    answered = next(e for e in app.seen if e.kind == "answered")
    assert answered.agent.interface == "Local/6001@agents"
    assert next(e for e in app.seen if e.kind == "ended").ended_by == "caller"

    offers = [e.agents for e in _acd(app.acd_seen, "caller_offered")]
    assert offers == [("6101",), ("6001",)]  # penalty first; the miss moves the call on
    paused = [e for e in _acd(app.acd_seen, "agent_state") if e.state == "paused"]
    assert [(e.agent, e.reason) for e in paused] == [("6101", "no-answer")]
    [connected] = _acd(app.acd_seen, "caller_connected")
    assert connected.agent == "6001" and 2 <= connected.wait <= 6
    [completed] = _acd(app.acd_seen, "call_completed")
    assert completed.agent == "6001" and completed.talk_time > 1

    async def persisted() -> None:
        await until(lambda: app.acd.history.pending == 0)

    run(persisted())
    engine = create_engine(app.settings.database.url.get_secret_value())
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT kind FROM acd_events ORDER BY id")).scalars().all()
    engine.dispose()
    # The agents' log-ins at start-up came before this test subscribed.
    assert stored == ["agent_state", "agent_state", *(e.kind for e in app.acd_seen)]


def test_a_caller_who_hangs_up_while_the_agent_rings_is_an_abandon_and_frees_the_agent(
    acd_app: Any, run: Any
) -> None:
    app = acd_app
    app.acd.driver.pause("6001", "lunch")  # only the agent who never answers is free

    async def go() -> None:
        await app.ami.send_action("Originate", caller("+4930123456", "Zoë", "5003", 1.2))
        await until(lambda: any(e.kind == "ended" for e in app.seen), timeout=15)
        await until(lambda: bool(_acd(app.acd_seen, "caller_abandoned")), timeout=5)

    run(go(), timeout=30)
    [abandoned] = _acd(app.acd_seen, "caller_abandoned")
    assert abandoned.queue == "sales" and abandoned.wait < 2
    assert app.acd.router.waiting("sales") == [] and app.acd.router.offers() == {}
    assert "6101" in app.acd.router.available("sales")


def test_agent_commands_refuse_what_cannot_be_done(acd_app: Any) -> None:
    from acd.agents import AcdError

    driver = acd_app.acd.driver
    with pytest.raises(AcdError, match="6999"):
        driver.login("6999")
    with pytest.raises(AcdError):
        driver.login("6001")  # logged in at start already
    with pytest.raises(AcdError):
        driver.unpause("6001")  # not paused
    driver.pause("6001", "training")
    assert "6001" not in acd_app.acd.router.available("sales")
    driver.unpause("6001")
    assert "6001" in acd_app.acd.router.available("sales")


def test_a_callback_request_keeps_the_place_and_calls_the_customer_back(
    acd_app: Any, run: Any
) -> None:
    """DID 5007 parks with a callback offer: key 5 leaves a request (UserEvent CtiCallback)
    and the caller hangs up; when an agent is free the agent is rung, then the customer."""
    app = acd_app
    driver = app.acd.driver
    driver.pause("6001", "meeting")
    driver.pause("6101", "meeting")

    async def go() -> None:
        for _ in range(2):  # the same number twice: one request only
            fields = caller("+4930123456", "Zoë", "5007", 6, keys=("5",))
            await app.ami.send_action("Originate", fields)
        await until(lambda: sum(e.kind == "ended" for e in app.seen) == 2, timeout=15)
        assert app.acd.router.waiting("sales")[0].callback == "+4930123456"
        driver.unpause("6001")
        await until(lambda: bool(_acd(app.acd_seen, "call_completed")), timeout=20)

    run(go(), timeout=40)
    [requested] = _acd(app.acd_seen, "callback_requested")
    assert requested.number == "+4930123456" and requested.queue == "sales"
    [connected] = _acd(app.acd_seen, "caller_connected")
    [completed] = _acd(app.acd_seen, "call_completed")
    assert connected.call_id == completed.call_id == requested.request_id
    assert connected.agent == completed.agent == "6001"
    # The second caller's request was refused as a duplicate and it stayed a caller.
    abandoned = _acd(app.acd_seen, "caller_abandoned")
    assert len(abandoned) == 1 and abandoned[0].call_id != requested.call_id


def test_a_parked_caller_is_told_its_position_for_the_announcement(acd_app: Any, run: Any) -> None:
    app = acd_app
    app.acd.driver.pause("6001", "meeting")
    app.acd.driver.pause("6101", "meeting")
    told: dict[str, str] = {}

    def varset(message: object) -> None:
        if isinstance(message, Message) and message.name == "VarSet":
            name = message.get("Variable") or ""
            if name.startswith("CTI_") and name != "CTI_CALLID":
                told[name] = message.get("Value") or ""

    app.ami.stream.subscribe(varset, name="test varset")

    async def go() -> None:
        await app.ami.send_action("Originate", caller("+81312345678", "Ōta", "5003", 4))
        await until(lambda: "CTI_QUEUE" in told, timeout=10)

    run(go(), timeout=20)
    # Nobody staffed: the position (and queue) is told, no estimate is made up.
    assert told == {"CTI_POSITION": "1", "CTI_QUEUE": "sales"}


def test_when_the_agent_hangs_up_first_the_caller_is_released_and_the_agent_freed(
    acd_app: Any, run: Any
) -> None:
    """After an AMI Bridge the caller would fall back into the holding loop (recording 05);
    the driver hangs the caller up instead, and the agent goes through wrap-up."""
    app = acd_app
    app.acd.driver.pause("6101", "meeting")

    async def go() -> None:
        await app.ami.send_action("Originate", caller("+302101234567", "Ελένη", "5003", 60))
        await until(lambda: any(e.kind == "answered" for e in app.seen), timeout=15)
        answered = next(e for e in app.seen if e.kind == "answered")
        await app.ami.send_action("Hangup", [("Channel", answered.agent.channel), ("Cause", "16")])
        await until(lambda: any(e.kind == "ended" for e in app.seen), timeout=5)
        await until(lambda: "6001" in app.acd.router.available("sales"), timeout=5)

    run(go(), timeout=30)
    ended = next(e for e in app.seen if e.kind == "ended")
    assert ended.ended_by == "agent" and ended.answered and ended.duration < 30
    [completed] = _acd(app.acd_seen, "call_completed")
    assert completed.agent == "6001"
    states = [e.state for e in _acd(app.acd_seen, "agent_state") if e.agent == "6001"]
    assert states[-3:] == ["on_call", "wrap_up", "available"]


def test_acd_calls_speak_the_same_vocabulary_as_queue_calls(acd_app: Any, run: Any) -> None:
    """Offers, answers and missed offers of the product's ACD carry the queue and the
    agent's name, as app_queue's do; an abandon names the queue, the position and the lane."""

    async def go() -> None:
        await acd_app.ami.send_action("Originate", caller("+15557770001", "Vera", "5003", 8))
        await until(lambda: any(e.kind == "ended" for e in acd_app.seen), timeout=20)

    run(go(), timeout=30)
    by_kind: dict[str, list[Any]] = {}
    for event in acd_app.seen:
        by_kind.setdefault(event.kind, []).append(event)
    offered = by_kind["offered"]
    assert {(e.queue, e.agent.name) for e in offered} <= {("sales", "Nobody"), ("sales", "Alice")}
    (missed,) = by_kind["offer_missed"]  # Nobody never answers
    assert (missed.queue, missed.agent.name, missed.reason) == ("sales", "Nobody", "no answer")
    (answered,) = by_kind["answered"]
    assert (answered.queue, answered.agent.name, answered.lane) == ("sales", "Alice", "external")


def test_an_acd_abandon_names_queue_position_and_lane(
    reactor: Any, run: Any, tmp_path: Path
) -> None:
    queues = tmp_path / "queues.yaml"
    queues.write_text(yaml.safe_dump({**QUEUES, "agents": {}}))
    simulator = start_simulator(reactor)
    app = start_backend(reactor, run, simulator, tmp_path, {"CALLCENTER_ACD__QUEUES": str(queues)})
    try:

        async def go() -> None:
            await app.ami.send_action("Originate", caller("+15557770002", "Wim", "5003", 3))
            await until(lambda: any(e.kind == "ended" for e in app.seen), timeout=20)

        run(go(), timeout=30)
    finally:
        run(app.stop())
        simulator.stopListening()
    (abandoned,) = [e for e in app.seen if isinstance(e, CallAbandoned)]
    assert (abandoned.queue, abandoned.position, abandoned.lane) == ("sales", 1, "external")
