"""The contacts table filled from the call and ACD histories the real recorders wrote, on
SQLite and PostgreSQL: one contact per ended call, once, with its customer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from acd.events import (
    AcdEvent,
    CallerAbandoned,
    CallerConnected,
    CallerJoined,
    CallerOverflowed,
)
from acd.history import AcdEventRecorder
from crm_bridge.contacts import contact_row, fill_contacts
from crm_bridge.schema import call_customers, contacts, customer_numbers, customers
from cti.calls.events import (
    Agent,
    CallAbandoned,
    CallAnswered,
    CallArrived,
    CallbackAsked,
    CallEnded,
    Caller,
    CallerChanged,
    CallEvent,
    CallFailed,
    DigitsReceived,
    IvrEntered,
)
from cti.history import CallEventRecorder

T0 = 1_780_000_000.0
STAMP = T0 + 3600

ALICE = "+4930111111"
SHARED = "+4930222222"


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    engine = migrated_engine
    with engine.begin() as conn:
        conn.execute(
            insert(customers),
            [
                {"id": cid, "name": name, "created_at": T0 - 9e6, "changed_at": T0 - 9e6,
                 "source": "test"}
                for cid, name in (("alice", "Alice Ångström"), ("bob", "Bob"), ("carol", "Carol"))
            ],
        )  # fmt: skip
        conn.execute(
            insert(customer_numbers),
            [
                {"customer_id": "alice", "number": ALICE},
                {"customer_id": "bob", "number": SHARED},
                {"customer_id": "carol", "number": SHARED},
            ],
        )
    return engine


def _end(call_id: str, at: float, *, talk: float | None = None) -> CallEnded:
    return CallEnded(
        call_id, at, cause=16, cause_text="Normal Clearing", ended_by="caller",
        duration=at - T0, talk_time=talk, answered=talk is not None,
    )  # fmt: skip


def _arrived(call_id: str, number: str | None, at: float = T0) -> CallArrived:
    return CallArrived(
        call_id,
        at,
        caller=Caller(number, "Someone", number),
        dialled="5000",
        channel=f"{call_id};2",
    )


AGENT = Agent("Local/6001@agents", "Agent Alice")


def _history(
    call: list[CallEvent],
    acd: list[AcdEvent],
    engine: Engine,
    reactor: Any,
    run: Callable[..., Any],
) -> None:
    """Write the events with the recorders the process uses."""
    calls = CallEventRecorder(engine, reactor, pbx="site-a")
    queue = AcdEventRecorder(engine, reactor, pbx="site-a")
    for event in call:
        calls.record(event)
    for acd_event in acd:
        queue.record(acd_event)
    assert run(calls.close()).all_kept and run(queue.close()).all_kept


def _contacts(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {row.call_id: row for row in conn.execute(select(contacts))}


def _changed(engine: Engine) -> dict[str, float]:
    with engine.connect() as conn:
        return dict(conn.execute(select(customers.c.id, customers.c.changed_at)).all())


def test_each_ended_call_becomes_one_contact_once(
    engine: Engine, reactor: Any, run: Callable[..., Any]
) -> None:
    call: list[CallEvent] = [
        # answered, through the IVR and the ACD, from Alice's number
        _arrived("c1", ALICE),
        IvrEntered("c1", T0 + 1, application="AGI", context="menu"),
        DigitsReceived("c1", T0 + 3, digits="2"),
        DigitsReceived("c1", T0 + 4, digits="1"),
        CallAnswered("c1", T0 + 20, agent=AGENT, wait=12.0),
        _end("c1", T0 + 110, talk=90.0),
        # abandoned while waiting, on a shared number; an agent had picked Carol
        _arrived("c2", SHARED, T0 + 5),
        CallAbandoned("c2", T0 + 40, wait=30.0, queue="sales"),
        _end("c2", T0 + 40),
        # the shared number again, nobody chosen: no customer
        _arrived("c3", SHARED, T0 + 6),
        CallAnswered("c3", T0 + 9, agent=AGENT, wait=3.0, queue="support"),
        _end("c3", T0 + 50, talk=41.0),
        # still going: no contact yet
        _arrived("c4", ALICE, T0 + 7),
        CallAnswered("c4", T0 + 8, agent=AGENT, wait=1.0, queue="support"),
        # asked for a callback, then hung up; its number changed by the dialplan to Alice's
        _arrived("c5", "+4930999999", T0 + 8),
        CallerChanged("c5", T0 + 8.5, caller=Caller(ALICE, "Alice", ALICE)),
        CallbackAsked("c5", T0 + 30, number=ALICE),
        _end("c5", T0 + 31),
    ]
    acd: list[AcdEvent] = [
        CallerJoined(T0 + 8, "c1", "sales", "vip", 1),
        CallerConnected(T0 + 20, "c1", "sales", "6001", 12.0),
        CallerJoined(T0 + 10, "c2", "sales", "ordinary", 2),
        CallerAbandoned(T0 + 40, "c2", "sales", 30.0, 2),
    ]
    _history(call, acd, engine, reactor, run)
    with engine.begin() as conn:
        conn.execute(
            insert(call_customers).values(
                pbx="site-a", call_id="c2", customer_id="carol", chosen_by="6001", at=T0 + 12
            )
        )

    first = fill_contacts(engine, batch=2, now=STAMP)
    assert first.added == 4
    assert first.customers == {"alice", "carol"}
    got = _contacts(engine)
    assert set(got) == {"c1", "c2", "c3", "c5"}
    c1 = got["c1"]
    assert (c1.pbx, c1.number, c1.at, c1.customer_id) == ("site-a", ALICE, T0, "alice")
    assert (c1.queue, c1.agent, c1.wait, c1.talk, c1.outcome) == (
        "sales",
        "6001",
        12.0,
        90.0,
        "answered",
    )
    assert c1.ivr_path == [
        {"kind": "ivr_entered", "at": T0 + 1, "application": "AGI"},
        {"kind": "digits", "at": T0 + 3, "digits": "2"},
        {"kind": "digits", "at": T0 + 4, "digits": "1"},
    ]
    assert c1.complaint is False
    c2 = got["c2"]
    assert (c2.outcome, c2.queue, c2.wait, c2.talk, c2.customer_id) == (
        "abandoned", "sales", 30.0, None, "carol"
    )  # fmt: skip
    c3 = got["c3"]
    assert (c3.customer_id, c3.number, c3.queue, c3.agent, c3.ivr_path) == (
        None, SHARED, "support", "Local/6001@agents", None
    )  # fmt: skip
    assert (got["c5"].outcome, got["c5"].number, got["c5"].customer_id) == (
        "callback", ALICE, "alice"
    )  # fmt: skip
    changed = _changed(engine)
    assert changed["alice"] == STAMP and changed["carol"] == STAMP
    assert changed["bob"] == T0 - 9e6

    again = fill_contacts(engine, now=STAMP + 60)
    assert (again.added, again.customers) == (0, frozenset())
    assert _changed(engine)["alice"] == STAMP
    assert len(_contacts(engine)) == 4

    # c4 ends: the next pass adds it alone (from the events at or after "since" too)
    _history([_end("c4", T0 + 500, talk=492.0)], [], engine, reactor, run)
    assert fill_contacts(engine, since=T0 + 1000, now=STAMP + 120).added == 0
    late = fill_contacts(engine, since=T0 + 400, now=STAMP + 120)
    assert (late.added, late.customers) == (1, frozenset({"alice"}))
    assert _contacts(engine)["c4"].talk == 492.0
    assert _changed(engine)["alice"] == STAMP + 120


def test_the_same_call_id_on_two_pbxs_is_two_contacts(
    engine: Engine, reactor: Any, run: Callable[..., Any]
) -> None:
    _history([_arrived("x", ALICE), _end("x", T0 + 9)], [], engine, reactor, run)
    other = CallEventRecorder(engine, reactor, pbx="site-b")
    other.record(_arrived("x", None, T0 + 1))
    other.record(_end("x", T0 + 2))
    assert run(other.close()).all_kept
    assert fill_contacts(engine, now=STAMP).added == 2
    with engine.connect() as conn:
        rows = {r.pbx: r for r in conn.execute(select(contacts))}
    assert rows["site-a"].customer_id == "alice"
    assert (rows["site-b"].number, rows["site-b"].customer_id) == (None, None)  # withheld
    assert rows["site-a"].outcome == rows["site-b"].outcome == "abandoned"


def test_outcomes_from_the_payloads() -> None:
    """The outcome rules on payloads as the recorders store them (``to_record()``)."""

    def outcome(call: list[CallEvent], acd: Sequence[AcdEvent] = ()) -> str:
        row = contact_row("p", "k", [e.to_record() for e in call], [e.to_record() for e in acd])
        assert row is not None
        return str(row["outcome"])

    arrived, ended = _arrived("k", ALICE), _end("k", T0 + 60)
    failed = CallFailed("k", T0 + 30, status="BUSY", agent=AGENT)
    assert outcome([arrived, failed, ended]) == "failed"
    overflow = CallerOverflowed(T0 + 50, "k", "sales", 45.0, "8000", "max-wait")
    joined = CallerJoined(T0 + 5, "k", "sales", "key", 1)
    assert outcome([arrived, ended], [joined, overflow]) == "voicemail"
    rejoined = CallerJoined(T0 + 51, "k", "overflow-q", "key", 1)
    assert outcome([arrived, ended], [joined, overflow, rejoined]) == "abandoned"
    assert outcome([arrived, _end("k", T0 + 60, talk=20.0)]) == "answered"
    assert contact_row("p", "k", [arrived.to_record()], []) is None  # not ended
