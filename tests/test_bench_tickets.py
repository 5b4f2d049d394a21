"""The tickets benchmark (``bench/tickets.py``) at a tiny size on the test PostgreSQL: the
fill writes consistent tickets and leaves the schema as the migrations made it, and every
timed operation ran through the store and shows in the report. No timings here: the speed
goals live in the benchmark."""

from __future__ import annotations

from sqlalchemy import Engine, func, select, text

from bench.tickets import GOALS, measure, prepare, reference, report, server_version
from tickets.schema import ticket_calls, ticket_changes, tickets
from tickets.store import TicketQuery, TicketStore, ticket_number


def _schema(engine: Engine) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """The tickets tables' index definitions and foreign keys, as PostgreSQL reports them."""
    with engine.connect() as conn:
        indexes = conn.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename LIKE 'ticket%'"
        )).all()  # fmt: skip
        keys = conn.execute(text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE contype = 'f' AND conrelid::regclass::text LIKE 'ticket%'"
        )).all()  # fmt: skip
    return {(r[0], r[1]) for r in indexes}, {(r[0], r[1]) for r in keys}


def test_the_fill_and_every_timed_operation_at_a_tiny_size(postgres_url: str) -> None:
    said: list[str] = []
    engine, filled = prepare(postgres_url, 60, 0, reuse=False, say=said.append)
    before = _schema(engine)
    assert filled.customers == 60 and filled.tickets == 0

    engine.dispose()
    engine, filled = prepare(postgres_url, 60, 3000, reuse=True, say=said.append)

    assert (filled.tickets, filled.written) == (3000, 3000)
    assert filled.calls > 0 and filled.changes > filled.written
    assert _schema(engine) == before  # indexes and foreign keys re-created as they were
    with engine.connect() as conn:
        rows = conn.execute(select(tickets.c.id, tickets.c.number, tickets.c.status)).all()
        statuses = {r.status for r in rows}
        assert all(r.number == ticket_number(r.id) for r in rows)
        assert {"closed", "open", "new", "resolved"} <= statuses
        created = conn.execute(
            select(func.count())
            .select_from(ticket_changes)
            .where(ticket_changes.c.field == "created")
        ).scalar_one()
        assert created == 3000
        linked = conn.execute(select(func.count()).select_from(ticket_calls)).scalar_one()
        assert linked == filled.calls
    # Every description carries its own order reference: text search finds that one ticket.
    store = TicketStore(engine)
    found = store.search(TicketQuery(text=reference(1234)))
    assert [t.id for t in found.tickets] == [1234]

    results = measure(engine, 20)

    by_name = {r.what: r for r in results}
    assert set(GOALS) <= set(by_name)
    assert all(len(r.seconds) == 20 for r in results if "text" not in r.what)
    assert len(by_name["search text order reference"].seconds) == 10
    # Each order reference drawn is in exactly one ticket: ten searches, ten rows.
    assert by_name["search text order reference"].rows == 10
    with engine.connect() as conn:
        fresh = conn.execute(
            select(tickets.c.id, tickets.c.status).where(tickets.c.id > 3000)
        ).all()
    # The sequence went on after the copied ids; the fresh tickets went new -> open -> resolved.
    assert len(fresh) == 20 and {r.status for r in fresh} == {"resolved"}
    assert by_name["search by customer"].rows > 0

    text_report = report(filled, results, server_version(engine))
    engine.dispose()
    assert "filled 3,000 tickets" in text_report
    for what in GOALS:
        assert f"goal: {what} p99 < 20 ms: " in text_report
    for r in results:
        assert r.what in text_report


def test_a_reused_database_is_not_filled_again(postgres_url: str) -> None:
    said: list[str] = []
    engine, _ = prepare(postgres_url, 30, 500, reuse=False, say=said.append)
    engine.dispose()
    engine, filled = prepare(postgres_url, 30, 500, reuse=True, say=said.append)
    engine.dispose()
    assert said[-1] == "data: reusing 500 tickets"
    assert (filled.tickets, filled.written) == (500, 0)
