"""The tickets' store on SQLite and a real PostgreSQL: creates with idempotency keys,
optimistic concurrency (two writers, one wins), transitions through the workflow, comments,
calls, merges, search, and the audit row of every change; bad input names its field and
writes nothing."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, insert, inspect, select

import migrations
from crm_bridge.schema import customer_numbers, customers
from tickets.schema import ticket_changes, tickets
from tickets.store import (
    ConflictError,
    Deadlines,
    IdempotencyMismatch,
    NewTicket,
    Scope,
    TicketInputError,
    TicketQuery,
    TicketStore,
    UnknownTicket,
    visible_to,
)
from tickets.workflow import IllegalTransition


def _customer(engine: Engine, cid: str, tier: str | None, *numbers: str) -> None:
    with engine.begin() as conn:
        conn.execute(insert(customers).values(
            id=cid, name=f"Kunde {cid}", created_at=1.0, changed_at=1.0, source="test", tier=tier
        ))  # fmt: skip
        for n in numbers:
            conn.execute(insert(customer_numbers).values(customer_id=cid, number=n))


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _deadlines(tier: str | None, priority: str, at: float) -> Deadlines:
    hours = {"vip": 1.0, None: 8.0}.get(tier, 4.0)
    return Deadlines(at + hours * 3600, at + hours * 3600 * 5)


@pytest.fixture
def store(migrated_engine: Engine) -> TicketStore:
    return TicketStore(migrated_engine, deadlines=_deadlines)


def _draft(**over: Any) -> NewTicket:
    values: dict[str, Any] = {"subject": "Lieferung beschädigt", "category": "complaint"}
    return NewTicket(**(values | over))


def test_create_reads_back_with_number_tier_deadlines_calls_and_audit(
    store: TicketStore,
) -> None:
    _customer(store.engine, "c1", "vip", "+4930123456")
    draft = _draft(customer_id="c1", queue="support", tags=("parcel",),
                   calls=(("default", "call-1"), ("default", "call-1")))  # fmt: skip
    ticket, created = store.create(draft, by="alice", at=1000.0)
    assert created
    assert ticket.number == f"T-{ticket.id:06d}" and store.by_number(ticket.number) == ticket
    assert (ticket.status, ticket.version, ticket.customer_tier) == ("new", 1, "vip")
    assert (ticket.first_response_due, ticket.resolution_due) == (4600.0, 1000.0 + 5 * 3600)
    assert ticket.tags == ("parcel",)
    assert store.calls(ticket.id) == [("default", "call-1")]
    audit = [(c.field, c.by, c.new) for c in store.changes(ticket.id)]
    assert audit == [("created", "alice", ticket.number), ("call", "alice", "default/call-1")]


def test_idempotent_create_same_key_same_ticket_other_body_refused(store: TicketStore) -> None:
    first, created = store.create(_draft(), by="alice", at=1.0, idempotency_key="k-1")
    again, created_again = store.create(_draft(), by="alice", at=2.0, idempotency_key="k-1")
    assert created and not created_again and again == first
    # Another account's key is its own.
    other, created_other = store.create(_draft(), by="bob", at=3.0, idempotency_key="k-1")
    assert created_other and other.id != first.id
    with pytest.raises(IdempotencyMismatch, match=r"k-1.*another request") as refused:
        store.create(_draft(subject="Etwas anderes"), by="alice", at=4.0, idempotency_key="k-1")
    assert refused.value.ticket_id == first.id
    assert _count(store.engine, tickets) == 2


def test_concurrent_creates_under_one_key_make_one_ticket(store: TicketStore) -> None:
    barrier = threading.Barrier(4)
    made: list[int] = []

    def create() -> None:
        barrier.wait()
        made.append(store.create(_draft(), by="alice", at=1.0, idempotency_key="same")[0].id)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 4 and len(set(made)) == 1
    assert _count(store.engine, tickets) == 1


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"subject": "x" * 201}, "subject"),
        ({"subject": "   "}, "subject"),
        ({"description": "y" * 20_001}, "description"),
        ({"tags": tuple(f"t{i}" for i in range(21))}, "tags"),
        ({"tags": ("ok", "z" * 41)}, "tags.1"),
        ({"category": "gossip"}, "category"),
        ({"priority": "whenever"}, "priority"),
        ({"customer_id": "nobody"}, "customer_id"),
        ({"calls": (("default", "c" * 129),)}, "calls.0.call_id"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(
    store: TicketStore, over: dict[str, Any], field: str
) -> None:
    with pytest.raises(TicketInputError) as refused:
        store.create(_draft(**over), by="alice", at=1.0, idempotency_key="k")
    assert refused.value.field == field
    assert _count(store.engine, tickets) == 0 and _count(store.engine, ticket_changes) == 0


def test_limits_are_inclusive(store: TicketStore) -> None:
    draft = _draft(subject="s" * 200, description="d" * 20_000,
                   tags=tuple("t" * 39 + chr(65 + i) for i in range(20)))  # fmt: skip
    ticket, _ = store.create(draft, by="alice", at=1.0)
    assert len(ticket.subject) == 200 and len(ticket.tags) == 20


def test_update_audits_each_field_and_bumps_the_version(store: TicketStore) -> None:
    ticket, _ = store.create(_draft(priority="normal"), by="alice", at=1.0)
    changed = store.update(
        ticket.id, 1, {"subject": "Neu", "priority": "urgent", "tags": ["a", "b"]},
        by="bob", at=50.0,
    )  # fmt: skip
    assert (changed.subject, changed.priority, changed.tags, changed.version) == (
        "Neu", "urgent", ("a", "b"), 2,
    )  # fmt: skip
    assert (changed.updated_by, changed.updated_at) == ("bob", 50.0)
    rows = {c.field: (c.old, c.new) for c in store.changes(ticket.id) if c.by == "bob"}
    assert rows["subject"] == ("Lieferung beschädigt", "Neu")
    assert rows["priority"] == ("normal", "urgent")
    assert rows["tags"] == ([], ["a", "b"])
    with pytest.raises(TicketInputError, match="status"):
        store.update(ticket.id, 2, {"status": "closed"}, by="bob", at=51.0)


def test_stale_version_conflicts_with_the_current_version_and_writes_nothing(
    store: TicketStore,
) -> None:
    ticket, _ = store.create(_draft(), by="alice", at=1.0)
    store.update(ticket.id, 1, {"subject": "Erste"}, by="alice", at=2.0)
    before = store.changes(ticket.id)
    with pytest.raises(ConflictError) as conflict:
        store.update(ticket.id, 1, {"subject": "Zweite"}, by="bob", at=3.0)
    assert (conflict.value.expected, conflict.value.current) == (1, 2)
    assert "version 2" in str(conflict.value)
    assert store.get(ticket.id).subject == "Erste" and store.changes(ticket.id) == before


def test_two_concurrent_updates_exactly_one_wins(database_url: str) -> None:
    """Two writers on their own connections, both having read version 1, release together
    (many rounds, so the race is real): one commits, the other gets ConflictError."""
    migrations.upgrade(database_url)
    engines = [create_engine(database_url) for _ in range(2)]
    stores = [TicketStore(e) for e in engines]
    try:
        for round_ in range(15):
            ticket, _ = stores[0].create(_draft(), by="alice", at=float(round_))
            barrier = threading.Barrier(2)
            outcome: dict[str, Any] = {}

            def write(
                i: int,
                ticket_id: int = ticket.id,
                barrier: threading.Barrier = barrier,
                outcome: dict[str, Any] = outcome,
            ) -> None:
                barrier.wait()
                try:
                    stores[i].update(ticket_id, 1, {"subject": f"writer {i}"}, by=f"w{i}", at=9.0)
                    outcome[f"w{i}"] = "won"
                except ConflictError as exc:
                    outcome[f"w{i}"] = exc.current

            threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(map(str, outcome.values())) == ["2", "won"], outcome
            winner = next(w for w, o in outcome.items() if o == "won")
            final = stores[1].get(ticket.id)
            assert final.version == 2 and final.subject == f"writer {winner[1]}"
            assert [c.by for c in stores[1].changes(ticket.id) if c.field == "subject"] == [winner]
    finally:
        for e in engines:
            e.dispose()


def test_transitions_follow_the_workflow_and_illegal_ones_write_nothing(
    store: TicketStore,
) -> None:
    ticket, _ = store.create(_draft(), by="alice", at=1.0)
    before = store.changes(ticket.id)
    with pytest.raises(IllegalTransition):
        store.transition(ticket.id, "close", by="alice", at=2.0)
    assert store.get(ticket.id).version == 1 and store.changes(ticket.id) == before
    opened = store.transition(ticket.id, "open", by="alice", at=3.0, version=1)
    assert (opened.status, opened.version) == ("open", 2)
    with pytest.raises(ConflictError):
        store.transition(ticket.id, "resolve", by="bob", at=4.0, version=1)
    resolved = store.transition(ticket.id, "resolve", by="alice", at=5.0)
    assert (resolved.status, resolved.resolved_at, resolved.first_response_at) == (
        "resolved", 5.0, 5.0,
    )  # fmt: skip
    assert store.status_history(ticket.id) == [(1.0, "new"), (3.0, "open"), (5.0, "resolved")]
    reopened = store.transition(ticket.id, "reopen", by="alice", at=6.0)
    assert (reopened.status, reopened.resolved_at) == ("open", None)


def test_comments_internal_and_public_first_response(store: TicketStore) -> None:
    ticket, _ = store.create(_draft(), by="alice", at=1.0)
    store.comment(ticket.id, "intern: Lager fragen", public=False, by="alice", at=2.0)
    assert store.get(ticket.id).first_response_at is None
    store.comment(ticket.id, "Wir kümmern uns", public=True, by="alice", at=3.0)
    store.comment(ticket.id, "Noch etwas", public=True, by="alice", at=4.0)
    after = store.get(ticket.id)
    assert after.first_response_at == 3.0 and after.version == 4
    assert [c.public for c in store.comments(ticket.id)] == [False, True, True]
    assert [c.body for c in store.comments(ticket.id, public_only=True)] == [
        "Wir kümmern uns", "Noch etwas",
    ]  # fmt: skip
    with pytest.raises(TicketInputError, match="body"):
        store.comment(ticket.id, "x" * 20_001, public=True, by="alice", at=5.0)
    with pytest.raises(UnknownTicket):
        store.comment(999_999, "hallo", public=True, by="alice", at=5.0)


def test_assign_and_link_call_are_audited(store: TicketStore) -> None:
    ticket, _ = store.create(_draft(), by="alice", at=1.0)
    assigned = store.assign(ticket.id, agent="6001", group="billing", by="sup", at=2.0)
    assert (assigned.assignee_agent, assigned.assignee_group) == ("6001", "billing")
    assert store.link_call(ticket.id, "default", "call-9", by="6001", at=3.0)
    assert not store.link_call(ticket.id, "default", "call-9", by="6001", at=4.0)
    fields = [c.field for c in store.changes(ticket.id)]
    assert fields == ["created", "assignee_agent", "assignee_group", "call"]


def test_merge_moves_calls_and_comments_to_the_survivor(store: TicketStore) -> None:
    survivor, _ = store.create(_draft(calls=(("default", "a"),)), by="alice", at=1.0)
    duplicate, _ = store.create(_draft(calls=(("default", "a"), ("default", "b"))),
                                by="bob", at=2.0)  # fmt: skip
    store.comment(duplicate.id, "vom Duplikat", public=False, by="bob", at=3.0)
    merged, kept = store.merge(duplicate.id, survivor.id, by="sup", at=4.0)
    assert merged.merged_into == survivor.id and merged.done
    assert store.calls(survivor.id) == [("default", "a"), ("default", "b")]
    assert [c.body for c in store.comments(survivor.id)] == ["vom Duplikat"]
    assert any(c.field == "merged" and c.new == duplicate.number for c in store.changes(kept.id))
    assert any(c.field == "merged_into" for c in store.changes(duplicate.id))
    with pytest.raises(TicketInputError, match="itself"):
        store.merge(survivor.id, survivor.id, by="sup", at=5.0)
    with pytest.raises(IllegalTransition):  # merged already: no second merge
        store.merge(duplicate.id, survivor.id, by="sup", at=5.0)


def test_search_filters_pages_newest_first_and_scopes(store: TicketStore) -> None:
    _customer(store.engine, "c1", "key", "+4930111")
    _customer(store.engine, "c2", None, "+4930222")
    made = []
    for i in range(7):
        draft = _draft(
            subject=f"Ticket {i} {'Rechnung_falsch' if i % 2 else 'Paket'}",
            customer_id="c1" if i < 4 else "c2",
            category="complaint" if i % 3 else "inquiry",
            queue="sales" if i < 5 else "support",
        )
        made.append(store.create(draft, by="alice", at=float(i))[0])
    store.record_sla(made[2].id, "breached", by="sla", at=10.0)
    ids = lambda page: [t.id for t in page.tickets]  # noqa: E731
    assert ids(store.search(TicketQuery(customer_id="c1"))) == [m.id for m in made[3::-1]]
    assert ids(store.search(TicketQuery(number="+4930222"))) == [m.id for m in made[:3:-1]]
    assert ids(store.search(TicketQuery(text="rechnung_"))) == [made[5].id, made[3].id, made[1].id]
    assert ids(store.search(TicketQuery(text="%"))) == []  # a wildcard is a character
    assert ids(store.search(TicketQuery(breached=True))) == [made[2].id]
    assert len(store.search(TicketQuery(breached=False)).tickets) == 6
    store.transition(made[1].id, "open", by="bob", at=11.0)
    store.transition(made[1].id, "resolve", by="bob", at=12.0)
    assert ids(store.search(TicketQuery(done=True))) == [made[1].id]
    assert made[1].id not in ids(store.search(TicketQuery(done=False)))
    assert len(store.search(TicketQuery(done=False)).tickets) == 6
    inquiries = store.search(TicketQuery(category="inquiry"))
    assert ids(inquiries) == [made[6].id, made[3].id, made[0].id]
    first = store.search(TicketQuery(limit=3))
    assert ids(first) == [made[6].id, made[5].id, made[4].id] and first.next_before == made[4].id
    last = store.search(TicketQuery(limit=4, before=first.next_before))
    assert ids(last) == [m.id for m in made[3::-1]] and last.next_before is None
    scope = Scope("6001", queues=frozenset({"support"}))
    assert ids(store.search(TicketQuery(scope=scope))) == [made[6].id, made[5].id]
    assert visible_to(made[6], scope) and not visible_to(made[0], scope)
    assert [t.id for t in store.open_for_customer("c2")] == [m.id for m in made[:3:-1]]


def test_unknown_tickets(store: TicketStore) -> None:
    for act in (
        lambda: store.get(42),
        lambda: store.by_number("T-000042"),
        lambda: store.by_number("nonsense"),
        lambda: store.update(42, 1, {"subject": "x"}, by="a", at=1.0),
        lambda: store.transition(42, "open", by="a", at=1.0),
        lambda: store.changes(42),
    ):
        with pytest.raises(UnknownTicket):
            act()


def test_migration_0006_up_down_up_keeps_the_others(database_url: str) -> None:
    migrations.upgrade(database_url)
    engine = create_engine(database_url)
    store = TicketStore(engine)
    store.create(_draft(), by="alice", at=1.0)
    migrations.downgrade(database_url, "0005")
    names = set(inspect(engine).get_table_names())
    assert not {n for n in names if n.startswith("ticket")} and "accounts" in names
    migrations.upgrade(database_url)
    assert _count(engine, tickets) == 0
    assert store.create(_draft(), by="alice", at=2.0)[0].number == "T-000001"
    engine.dispose()
