"""Callbacks through the PBX simulator over real TCP: a callback counts as answered only when
the customer answers (a busy line is retried, keeping the request's place), the call model
follows the outbound call like any call, and a caller without a number is never promised a
callback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text

from acd.events import AcdEvent
from cti.ami.codec import Message
from tests.e2e import caller, start_backend, start_simulator, until

CUSTOMER = "+4930123456"


def _backend(
    reactor: Any, run: Any, tmp_path: Path, queues: dict[str, Any], **simulator: Any
) -> Any:
    path = tmp_path / "queues.yaml"
    path.write_text(yaml.safe_dump(queues))
    sim = start_simulator(reactor, **simulator)
    app = start_backend(
        reactor,
        run,
        sim,
        tmp_path,
        {"CALLCENTER_ACD__QUEUES": str(path), "CALLCENTER_ACD__LOGIN_AGENTS": "true"},
    )
    app.acd_seen = []
    assert app.acd is not None
    app.acd.events.subscribe(app.acd_seen.append, name="test")
    app.contexts = set()

    def newexten(message: object) -> None:
        if isinstance(message, Message) and message.name == "Newexten":
            app.contexts.add(message.get("Context"))

    app.ami.stream.subscribe(newexten, name="test contexts")
    return app, sim


def _acd(events: list[AcdEvent], kind: str) -> list[Any]:
    return [e for e in events if e.kind == kind]


@pytest.fixture
def busy_customer(reactor: Any, run: Any, tmp_path: Path) -> Any:
    queues = {
        "agent_interface": "Local/{agent}@agents",
        "queues": {
            "sales": {
                "lanes": ["external"],
                "ring_timeout": 5,
                "wrap_up": 1,
                "callback": {"attempts": 3, "spacing": 2},
            },
        },
        "agents": {"6001": {"name": "Alice", "queues": {"sales": 0}}},
    }
    app, sim = _backend(reactor, run, tmp_path, queues, customers={CUSTOMER: ("busy", "answer")})
    yield app
    run(app.stop())
    sim.stopListening()


def test_a_busy_customer_is_retried_and_counted_answered_only_when_reached(
    busy_customer: Any, run: Any
) -> None:
    app = busy_customer
    driver = app.acd.driver
    driver.pause("6001", "meeting")

    async def go() -> None:
        await app.ami.send_action("Originate", caller(CUSTOMER, "Zoë", "5007", 6, keys=("5",)))
        await until(lambda: any(e.kind == "ended" for e in app.seen), timeout=15)
        driver.unpause("6001")
        await until(lambda: bool(_acd(app.acd_seen, "call_completed")), timeout=30)
        await until(lambda: app.acd.history.pending == 0 and app.history.pending == 0)

    run(go(), timeout=60)
    [requested] = _acd(app.acd_seen, "callback_requested")
    request_id = requested.request_id

    # First dial: busy. Reported with the reason, the agent freed with no miss, a retry due.
    [failed] = _acd(app.acd_seen, "callback_failed")
    assert (failed.call_id, failed.reason, failed.attempt) == (request_id, "BUSY", 1)
    assert failed.agent == "6001" and failed.retry_at == pytest.approx(failed.at + 2)
    assert _acd(app.acd_seen, "offer_not_answered") == []
    assert _acd(app.acd_seen, "callback_given_up") == []
    dialling = _acd(app.acd_seen, "callback_dialling")
    assert [(d.call_id, d.attempt, d.number) for d in dialling] == [
        (request_id, 1, CUSTOMER),
        (request_id, 2, CUSTOMER),
    ]
    assert dialling[1].at >= failed.retry_at  # the spacing was kept

    # Second dial: answered. Connected only now, once; completed with the customer's talk.
    [connected] = _acd(app.acd_seen, "caller_connected")
    [completed] = _acd(app.acd_seen, "call_completed")
    assert connected.call_id == completed.call_id == request_id
    assert connected.at > dialling[1].at and connected.agent == "6001"
    assert 2.5 <= completed.talk_time <= 6
    kinds = [e.kind for e in app.acd_seen if e.kind != "agent_state"]
    assert kinds.index("callback_failed") < kinds.index("caller_connected")

    # The call model has both dials as outbound calls of the request.
    outbound = [e for e in app.seen if e.kind == "arrived" and e.direction == "outbound"]
    assert [(e.callback, e.caller.number, e.dialled) for e in outbound] == [
        (request_id, CUSTOMER, CUSTOMER)
    ] * 2
    first, second = (e.call_id for e in outbound)
    per_call = {
        c: [e for e in app.seen if getattr(e, "call_id", None) == c] for c in (first, second)
    }
    assert [e.kind for e in per_call[first]] == ["arrived", "failed", "ended"]
    assert per_call[first][1].status == "BUSY"
    assert per_call[first][1].agent.interface == "Local/6001@agents"
    assert not per_call[first][2].answered
    assert [e.kind for e in per_call[second]] == ["arrived", "answered", "ended"]
    answered, ended = per_call[second][1:]
    assert answered.agent.interface == "Local/6001@agents" and 0.5 < answered.wait < 2.5
    assert ended.answered and 2.5 <= ended.talk_time <= 6

    # Figures: one answered (the reached customer), one failed dial counted apart.
    [sales] = [f for f in app.acd.snapshot(app.reactor.seconds()) if f.queue == "sales"]
    assert (sales.today.answered, sales.today.callbacks_failed) == (1, 1)
    assert (sales.today.completed, sales.today.callbacks_given_up, sales.calls_waiting) == (1, 0, 0)

    # History has the outbound calls and the failure.
    engine = create_engine(app.settings.database.url.get_secret_value())
    with engine.connect() as conn:
        calls = conn.execute(
            text("SELECT call_id, kind FROM call_events WHERE call_id IN (:a, :b) ORDER BY id"),
            {"a": first, "b": second},
        ).all()
        acd = (
            conn.execute(
                text("SELECT kind FROM acd_events WHERE call_id = :r ORDER BY id"),
                {"r": request_id},
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert [tuple(r) for r in calls] == [
        (first, "arrived"), (first, "failed"), (first, "ended"),
        (second, "arrived"), (second, "answered"), (second, "ended"),
    ]  # fmt: skip
    assert acd == [
        "caller_joined", "caller_offered", "callback_dialling", "callback_failed",
        "caller_offered", "callback_dialling", "caller_connected", "call_completed",
    ]  # fmt: skip


def _withheld_queues(fallback: dict[str, str] | None) -> dict[str, Any]:
    overflow: dict[str, Any] = {"kind": "callback"}
    if fallback is not None:
        overflow["fallback"] = fallback
    return {
        "agent_interface": "Local/{agent}@agents",
        "queues": {
            "sales": {"lanes": ["external"], "max_wait": 2, "overflow": overflow},
            "support": {"lanes": ["external-moh"]},
        },
        "agents": {
            "6001": {"name": "Alice", "queues": {"sales": 0}},
            "6002": {"name": "Bob", "queues": {"support": 0}},
        },
    }


@pytest.mark.parametrize("fallback", [None, "support"], ids=["keeps-waiting", "fallback-queue"])
def test_a_withheld_caller_is_never_promised_a_callback(
    reactor: Any, run: Any, tmp_path: Path, fallback: str | None
) -> None:
    queues = _withheld_queues(None if fallback is None else {"kind": "queue", "target": fallback})
    app, sim = _backend(reactor, run, tmp_path, queues)
    try:
        app.acd.driver.pause("6001", "meeting")  # nobody serves sales: the caller overflows

        async def go() -> None:
            await app.ami.send_action("Originate", caller("anonymous", "Anonymous", "5003", 9))
            await until(lambda: bool(_acd(app.acd_seen, "callback_not_offered")), timeout=15)
            if fallback is None:
                app.acd.driver.unpause("6001")  # still waiting in sales: served there
            await until(lambda: any(e.kind == "ended" for e in app.seen), timeout=20)
            await until(lambda: bool(_acd(app.acd_seen, "call_completed")), timeout=5)

        run(go(), timeout=45)
    finally:
        run(app.stop())
        sim.stopListening()
    call_id = next(e.call_id for e in app.seen if e.kind == "arrived")
    assert next(e for e in app.seen if e.kind == "arrived").caller.number is None
    [not_offered] = _acd(app.acd_seen, "callback_not_offered")
    assert (not_offered.call_id, not_offered.queue, not_offered.reason) == (
        call_id,
        "sales",
        "max-wait",
    )
    assert not_offered.fallback == fallback
    # No request, no promise: never sent to the callback confirmation.
    assert _acd(app.acd_seen, "callback_requested") == []
    assert "callback-confirm" not in app.contexts
    [connected] = _acd(app.acd_seen, "caller_connected")
    if fallback is None:
        assert _acd(app.acd_seen, "caller_overflowed") == []
        assert (connected.queue, connected.agent) == ("sales", "6001")
    else:
        [overflowed] = _acd(app.acd_seen, "caller_overflowed")
        assert (overflowed.target, overflowed.reason) == ("support", "max-wait")
        assert (connected.queue, connected.agent) == ("support", "6002")
    ended = next(e for e in app.seen if e.kind == "ended")
    assert ended.answered and ended.ended_by == "caller"
