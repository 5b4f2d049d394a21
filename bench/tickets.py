"""Tickets benchmark: create, transition and search through :class:`tickets.store.TicketStore`
with 1,000,000 tickets of 100,000 customers in PostgreSQL (issue 16; goals: search by
customer or by number p99 < 20 ms, create p99 < 20 ms).

    python -m bench.tickets --database-url postgresql+psycopg://user:pass@host/db \\
        [--tickets 1000000] [--customers 100000] [--ops 2000] [--reuse]

Without ``--database-url`` the ``CALLCENTER_BENCH_POSTGRES_URL`` environment variable is
used. Without ``--reuse`` the database's ``public`` schema is DROPPED and re-created, then
migrated. Customers come from :func:`crm_bridge.generator.generate` (``callcenter customers
generate``) when the customers table is empty; with ``--reuse`` the tickets already there
count towards ``--tickets`` and only the missing ones are filled.

**Filling** (timed, printed): ``--tickets`` tickets over the three years before the data's
"now", ids in creation order, as ``bench`` would find them after years of use: mostly closed,
the last month's still new, open or pending; categories and priorities as
``config/tickets.yaml`` starts them; subjects and descriptions in nine languages (non-ASCII),
each description with an order reference of its own (the rare word text search looks for);
tickets per customer long-tailed (5 % with no known customer); agents ``6001``...,
groups by queue; 70 % with a call linked, 10 % with two; the audit trail of each (created,
assigned, every status). Rows go in by COPY (:func:`crm_bridge.store.bulk_insert`) in one
transaction that first drops the three tables' secondary indexes and foreign keys and
re-creates them, from the definitions PostgreSQL reports, after the rows (building an index
once is much faster than maintaining it per row; interrupted, the transaction leaves the
database as it was). Due dates are the ``config/tickets.yaml`` policy's for the ticket's
tier and priority, counted in its calendar from the same hour of the week (holidays ignored).

**Timed** (one client, one operation at a time, ``time.perf_counter`` around each store
call; throughput is operations over the time spent in them):

* create: ``--ops`` tickets, each with a customer, an ``Idempotency-Key`` and a call, as an
  agent's wrap-up makes them, deadlines by the same policy;
* transition: each of those new -> open, then open -> resolved (rows just written); and
  ``--ops`` filled open tickets open -> resolved (rows from disk or cache);
* search (``TicketStore.search``, first page of 50): by customer (customers drawn by their
  share of tickets, as callers are), by number (one of those customers' numbers, through
  ``customer_numbers``), by status and assignee (an agent's open tickets; an agent's closed
  ones), by text (a common word; an order reference found in one ticket); and the screen
  pop's :meth:`TicketStore.open_for_customer`.
"""

# Greek, Cyrillic and Chinese words below are meant: their letters are not look-alikes.
# ruff: noqa: RUF001

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, func, select, text

import migrations
from bench.screen_pop import HEADER, Spread, machine
from crm_bridge.generator import generate
from crm_bridge.schema import customer_numbers, customers
from crm_bridge.store import bulk_insert
from tickets.config import TicketSettings, load_ticket_settings
from tickets.schema import ticket_calls, ticket_changes, tickets
from tickets.store import DeadlinePolicy, Deadlines, NewTicket, TicketQuery, TicketStore

#: The data's "now" (as the other benchmarks): the filled tickets end here.
NOW = 1_780_000_000.0
SEED = 1
REGION = "DE"
DAY = 86_400.0
#: Rows per COPY.
BATCH = 20_000
#: The policy and calendar the deadlines come from.
SETTINGS = Path(__file__).resolve().parent.parent / "config" / "tickets.yaml"
#: The tables the fill writes, whose secondary indexes and foreign keys it rebuilds.
FILLED = ("tickets", "ticket_calls", "ticket_changes")
QUEUES = {"sales": "sales-desk", "support": "support-desk", "billing": "billing-desk"}

# Subjects per category, in the languages of the generated customers.
_SUBJECTS: dict[str, tuple[str, ...]] = {
    "complaint": (
        "Lieferung verspätet", "Rechnung doppelt abgebucht", "Paket beschädigt",
        "Colis endommagé", "Facture erronée", "Pedido incompleto", "Cobro duplicado",
        "Zamówienie nie dotarło", "Заказ не доставлен", "Η παραγγελία καθυστερεί",
        "订单未送达", "الطلب متأخر", "Wrong item delivered", "Rückerstattung fehlt",
    ),
    "inquiry": (
        "Frage zur Garantie", "Question sur la livraison", "¿Dónde está mi pedido?",
        "Pytanie o zwrot", "Вопрос о возврате", "Ερώτηση για την εγγύηση",
        "关于退款的问题", "استفسار عن الفاتورة", "Opening hours over the holidays",
    ),
    "request": (
        "Adresse ändern", "Changement d'adresse", "Cambio de dirección", "Zmiana adresu",
        "Смена адреса доставки", "Αλλαγή διεύθυνσης", "更改送货地址", "تغيير العنوان",
        "Callback requested", "Kündigung des Newsletters",
    ),
    "suggestion": (
        "Vorschlag: Lieferung am Samstag", "Suggestion : paiement en trois fois",
        "Sugerencia: más tallas", "Propozycja: aplikacja mobilna", "Предложение: самовывоз",
        "Πρόταση: πληρωμή με δόσεις", "建议：周末送货", "اقتراح: الدفع عند الاستلام",
        "Suggestion: gift wrapping",
    ),
}  # fmt: skip
_SENTENCES = (
    "Der Kunde wartet seit zwei Wochen auf die Rückerstattung.",
    "Le client a été débité deux fois pour la même commande.",
    "La cliente pide que la llamen por la mañana.",
    "Klient prosi o kontakt mailowy, nie telefoniczny.",
    "Клиент недоволен задержкой доставки.",
    "Ο πελάτης ζητά επιστροφή χρημάτων.",
    "客户要求尽快退款。",
    "العميل يطلب استرداد المبلغ.",
    "Customer says the courier left the parcel at a neighbour's.",
    "Zusage: Rückruf durch die Fachabteilung bis Freitag.",
    "Pièce de rechange commandée chez le fournisseur.",
)
_TAGS = ("rückerstattung", "livraison", "vip-call", "garantía", "доставка", "repeat", "billing")
#: The common word text search looks for (in about one description in five).
COMMON_WORD = "Rückerstattung"
_CATEGORIES = (("complaint", 0.35), ("inquiry", 0.35), ("request", 0.22), ("suggestion", 0.08))
# Final status by age: (status, weight) for tickets older and younger than 30 days.
_OLD = (("closed", 0.93), ("merged", 0.02), ("resolved", 0.01), ("open", 0.02),
        ("pending_customer", 0.01), ("pending_third_party", 0.01))  # fmt: skip
_RECENT = (("new", 0.10), ("open", 0.30), ("pending_customer", 0.10),
           ("pending_third_party", 0.05), ("resolved", 0.25), ("closed", 0.18),
           ("merged", 0.02))  # fmt: skip
# The statuses a ticket went through to its final one (after ``new``).
_PATHS = {
    "new": (), "open": ("open",), "pending_customer": ("open", "pending_customer"),
    "pending_third_party": ("open", "pending_third_party"), "resolved": ("open", "resolved"),
    "closed": ("open", "resolved", "closed"), "merged": ("merged",),
}  # fmt: skip


def reference(ticket_id: int) -> str:
    """The order reference in ticket ``ticket_id``'s description (in no other)."""
    return f"A{(ticket_id * 2_654_435_761) % 1_000_000_007:010d}"


def _pick(rng: random.Random, weighted: Sequence[tuple[str, float]]) -> str:
    x = rng.random() * sum(w for _, w in weighted)
    for value, weight in weighted:
        x -= weight
        if x < 0:
            return value
    return weighted[-1][0]


def deadline_policy(settings: TicketSettings) -> DeadlinePolicy:
    """The store's deadlines from ``settings``: its policy for the tier and priority, in
    business seconds of its calendar."""
    calendar = settings.business_hours()

    def deadlines(tier: str | None, priority: str, at: float) -> Deadlines:
        policy = settings.policy_for(tier, priority)
        return Deadlines(
            calendar.add_business_seconds(at, policy.first_response),
            calendar.add_business_seconds(at, policy.resolution),
        )

    return deadlines


class _FillDeadlines:
    """The policy's due dates for a million filled tickets: the offsets computed once per
    tier, priority and hour of the week (exact there, holidays ignored elsewhere)."""

    def __init__(self, policy: DeadlinePolicy) -> None:
        self.policy = policy
        self.offsets: dict[tuple[str | None, str, int], tuple[float, float]] = {}

    def __call__(self, tier: str | None, priority: str, at: float) -> tuple[float, float]:
        key = (tier, priority, int(at // 3600) % 168)
        offsets = self.offsets.get(key)
        if offsets is None:
            due = self.policy(tier, priority, at)
            offsets = ((due.first_response or at) - at, (due.resolution or at) - at)
            self.offsets[key] = offsets
        return at + offsets[0], at + offsets[1]


# -- the data ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filled:
    """What :func:`prepare` found and wrote; ``seconds``: the fill's time (COPY, indexes,
    ANALYZE), 0 when nothing was filled."""

    customers: int
    tickets: int
    written: int
    calls: int
    changes: int
    seconds: float
    customer_seconds: float = 0.0

    def __str__(self) -> str:
        made = (
            f"filled {self.written:,} tickets ({self.calls:,} call links, {self.changes:,} "
            f"audit rows) in {self.seconds:.1f} s ({self.written / self.seconds:,.0f} "
            "tickets/s, indexes and ANALYZE included)"
            if self.written
            else "no tickets to fill"
        )
        customers_made = (
            f", customers generated in {self.customer_seconds:.1f} s"
            if self.customer_seconds
            else ""
        )
        return (
            f"data: {self.customers:,} customers, {self.tickets:,} tickets; {made}{customers_made}"
        )


def prepare(
    url: str,
    customers_wanted: int,
    tickets_wanted: int,
    *,
    reuse: bool,
    orders: int = 0,
    say: Callable[[str], None] = print,
) -> tuple[Engine, Filled]:
    """The database at ``url`` migrated, with customers (generated when there are none) and
    at least ``tickets_wanted`` tickets. Without ``reuse`` the ``public`` schema is dropped
    first."""
    engine = create_engine(url)
    if engine.dialect.name != "postgresql":
        raise SystemExit(f"--database-url: PostgreSQL expected, got {engine.dialect.name}")
    if not reuse:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    migrations.upgrade(url)
    customer_seconds = 0.0
    with engine.connect() as conn:
        have = conn.execute(select(func.count()).select_from(customers)).scalar_one()
    if not have:
        made = generate(
            engine, customers_wanted, orders, seed=SEED, now=NOW, region=REGION
        )  # fmt: skip
        customer_seconds = made.seconds
        say(f"data: {made}")
    with engine.connect() as conn:
        people = [
            (r.id, r.tier)
            for r in conn.execute(select(customers.c.id, customers.c.tier).order_by(customers.c.id))
        ]
        there = conn.execute(select(func.count()).select_from(tickets)).scalar_one()
    missing = max(0, tickets_wanted - there)
    if missing:
        say(f"data: {there:,} tickets there, filling {missing:,}")
        written = fill(engine, people, missing, say=say)
    else:
        say(f"data: reusing {there:,} tickets")
        written = Filled(len(people), there, 0, 0, 0, 0.0)
    return engine, Filled(
        len(people), there + written.written, written.written, written.calls,
        written.changes, written.seconds, customer_seconds,
    )  # fmt: skip


def fill(
    engine: Engine,
    people: Sequence[tuple[str, str | None]],
    count: int,
    *,
    seed: int = SEED,
    say: Callable[[str], None] = print,
) -> Filled:
    """Write ``count`` tickets of ``people`` (id, tier) after the ones there, in one
    transaction (see the module's docstring)."""
    started = time.monotonic()
    rng = random.Random(seed * 1_000_003 + count)
    due = _FillDeadlines(deadline_policy(load_ticket_settings(SETTINGS)))
    written = {"tickets": 0, "calls": 0, "changes": 0}
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
        first = (conn.execute(select(func.max(tickets.c.id))).scalar_one() or 0) + 1
        rebuild = _drop_secondary(conn)
        rows: dict[str, list[tuple[Any, ...]]] = {"tickets": [], "calls": [], "changes": []}

        def flush() -> None:
            bulk_insert(conn, tickets, _TICKET_COLUMNS, rows["tickets"])
            bulk_insert(conn, ticket_calls, _CALL_COLUMNS, rows["calls"])
            bulk_insert(conn, ticket_changes, _CHANGE_COLUMNS, rows["changes"])
            for what, batch in rows.items():
                written[what] += len(batch)
                batch.clear()

        for ticket, links, audit in _tickets(rng, people, first, count, due):
            rows["tickets"].append(ticket)
            rows["calls"] += links
            rows["changes"] += audit
            if len(rows["tickets"]) >= BATCH:
                flush()
                if written["tickets"] % 200_000 == 0:
                    say(f"  {written['tickets']:,} tickets in {time.monotonic() - started:.0f} s")
        flush()
        copied = time.monotonic() - started
        conn.execute(
            text("SELECT setval(pg_get_serial_sequence('tickets', 'id'), :last)"),
            {"last": first + count - 1},
        )
        for statement in rebuild:
            conn.execute(text(statement))
        say(f"  rows copied in {copied:.1f} s, indexes and keys rebuilt in "
            f"{time.monotonic() - started - copied:.1f} s")  # fmt: skip
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE " + ", ".join(FILLED)))
    return Filled(
        len(people), count, count, written["calls"], written["changes"],
        time.monotonic() - started,
    )  # fmt: skip


def _drop_secondary(conn: Connection) -> list[str]:
    """Drop the filled tables' foreign keys and secondary indexes (not primary keys or unique
    constraints); returns the statements that re-create them as they were."""
    names = ", ".join(f"'{t}'" for t in FILLED)
    keys = conn.execute(text(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        f"WHERE contype = 'f' AND conrelid::regclass::text IN ({names})"
    )).all()  # fmt: skip
    indexes = conn.execute(text(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        f"AND tablename IN ({names}) AND indexname NOT IN (SELECT conname FROM pg_constraint)"
    )).all()  # fmt: skip
    for table, name, _ in keys:
        conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
    for name, _ in indexes:
        conn.execute(text(f'DROP INDEX "{name}"'))
    return [definition for _, definition in indexes] + [
        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
        for table, name, definition in keys
    ]


_TICKET_COLUMNS = (
    "id", "number", "customer_id", "customer_tier", "category", "priority", "status", "queue",
    "assignee_agent", "assignee_group", "subject", "description", "tags",
    "first_response_due", "resolution_due", "first_response_at", "resolved_at", "sla_state",
    "version", "merged_into", "created_at", "created_by", "updated_at", "updated_by",
)  # fmt: skip
_CALL_COLUMNS = ("ticket_id", "pbx", "call_id", "linked_at", "linked_by")
_CHANGE_COLUMNS = ("ticket_id", "at", "by", "field", "old", "new")
#: Agents the filled tickets are assigned to (6001...).
AGENTS = 200


def agent(n: int) -> str:
    return str(6001 + n)


def _tickets(
    rng: random.Random,
    people: Sequence[tuple[str, str | None]],
    first: int,
    count: int,
    due: _FillDeadlines,
) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """The rows of ``count`` tickets from id ``first``: (ticket, call links, audit rows)."""
    # Tickets per customer long-tailed: a few customers call about everything.
    weights = [rng.paretovariate(1.6) for _ in people]
    cumulative: list[float] = []
    total = 0.0
    for w in weights:
        total += w
        cumulative.append(total)
    start = NOW - 3 * 365 * DAY
    times = sorted(rng.uniform(start, NOW) for _ in range(count))
    last_of: dict[str, int] = {}
    for k, at in enumerate(times):
        ticket_id = first + k
        number = f"T-{ticket_id:06d}"
        person: tuple[str, str | None] | None = None
        if people and rng.random() >= 0.05:
            x = rng.random() * total
            lo, hi = 0, len(cumulative) - 1
            while lo < hi:  # bisect by hand: cumulative is a plain list of floats
                mid = (lo + hi) // 2
                if cumulative[mid] < x:
                    lo = mid + 1
                else:
                    hi = mid
            person = people[lo]
        customer_id, tier = person if person else (None, None)
        category = _pick(rng, _CATEGORIES)
        priority = (
            "urgent" if rng.random() < 0.05
            else "high" if category == "complaint" or rng.random() < 0.1
            else "low" if rng.random() < 0.15 else "normal"
        )  # fmt: skip
        status = _pick(rng, _RECENT if NOW - at < 30 * DAY else _OLD)
        merged_into = last_of.get(customer_id) if customer_id else None
        if status == "merged" and merged_into is None:
            status = "closed"  # nothing of theirs to be a duplicate of
        queue = rng.choice(tuple(QUEUES))
        worker = None if status == "new" else agent(rng.randrange(AGENTS))
        subject = rng.choice(_SUBJECTS[category])
        said = [rng.choice(_SENTENCES) for _ in range(rng.randint(1, 3))]
        description = f"{subject}. {' '.join(said)} Bestellung {reference(ticket_id)}."
        tags = rng.sample(_TAGS, rng.choice((0, 0, 1, 1, 2)))
        first_due, resolution_due = due(tier, priority, at)
        path = _PATHS[status]
        steps = sorted(rng.uniform(at, min(NOW, resolution_due + DAY)) for _ in path)
        answered = steps[0] if steps and status != "merged" else None
        resolved_at = steps[path.index("resolved")] if "resolved" in path else None
        done = status in ("resolved", "closed", "merged")
        if done:
            sla = "breached" if rng.random() < 0.1 else "met"
        else:
            sla = _pick(rng, (("ok", 0.7), ("warning", 0.1), ("breached", 0.2)))
        creator = agent(rng.randrange(AGENTS))
        audit: list[tuple[Any, ...]] = [(ticket_id, at, creator, "created", None, number)]
        if worker is not None:
            audit.append((ticket_id, at, worker, "assignee_agent", None, worker))
        before = "new"
        for step_at, step in zip(steps, path, strict=True):
            audit.append((ticket_id, step_at, worker or creator, "status", before, step))
            before = step
        links = [
            (ticket_id, "bench", f"{number}-{n}", at, worker or "ivr")
            for n in range(rng.choice((0, 0, 0, 1, 1, 1, 1, 1, 1, 2)))
        ]
        updated = steps[-1] if steps else at
        yield (
            (ticket_id, number, customer_id, tier, category, priority, status, queue,
             worker, QUEUES[queue], subject, description, tags, first_due, resolution_due,
             answered, resolved_at, sla, len(audit), merged_into if status == "merged" else None,
             at, creator, updated, worker or creator),
            links,
            audit,
        )  # fmt: skip
        if customer_id is not None:
            last_of[customer_id] = ticket_id


# -- the timed part ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timed:
    """One operation's latencies, and how many rows the searches found."""

    what: str
    seconds: list[float]
    rows: int = 0

    @property
    def spread(self) -> Spread:
        return Spread.of(self.seconds)

    @property
    def throughput(self) -> float:
        spent = sum(self.seconds)
        return len(self.seconds) / spent if spent else float("nan")

    def row(self) -> str:
        found = f"{self.rows / len(self.seconds):>8.1f}" if self.seconds and self.rows else ""
        return f"{self.spread.row(self.what)}{self.throughput:>9,.0f}{found}"


def _timed(what: str, calls: Sequence[Callable[[], Any]], count_rows: bool = False) -> Timed:
    seconds: list[float] = []
    rows = 0
    for call in calls:
        began = time.perf_counter()
        answer = call()
        seconds.append(time.perf_counter() - began)
        if count_rows:
            rows += len(answer.tickets if hasattr(answer, "tickets") else answer)
    return Timed(what, seconds, rows)


def measure(engine: Engine, ops: int, *, seed: int = SEED) -> list[Timed]:
    """Time creates, transitions and searches through the store, ``ops`` of each."""
    settings = load_ticket_settings(SETTINGS)
    store = TicketStore(
        engine,
        categories=settings.categories,
        priorities=settings.priorities,
        deadlines=deadline_policy(settings),
    )
    rng = random.Random(seed)
    with engine.connect() as conn:
        # Customers by their share of tickets (a sample of tickets' customers), their numbers.
        top = conn.execute(select(func.max(tickets.c.id))).scalar_one() or 0
        sample_ids = [rng.randint(1, top) for _ in range(ops * 3)] if top else []
        owners = [
            cid
            for cid in conn.execute(
                select(tickets.c.customer_id).where(
                    tickets.c.id.in_(sample_ids), tickets.c.customer_id.is_not(None)
                )
            ).scalars()
        ]
        if not owners:
            owners = list(conn.execute(select(customers.c.id).limit(ops)).scalars())
        drawn = [rng.choice(owners) for _ in range(ops)]
        numbers_of: dict[str, list[str]] = {}
        for cid, number in conn.execute(
            select(customer_numbers.c.customer_id, customer_numbers.c.number).where(
                customer_numbers.c.customer_id.in_(sorted(set(drawn)))
            )
        ):
            numbers_of.setdefault(cid, []).append(number)
        open_ids = list(
            conn.execute(
                select(tickets.c.id)
                .where(tickets.c.status == "open")
                .order_by(func.random())
                .limit(ops)
            ).scalars()
        )
        refs = [reference(rng.randint(1, top)) for _ in range(ops // 2)] if top else []
    numbers = [rng.choice(numbers_of[c]) for c in drawn if c in numbers_of]
    workers = [agent(rng.randrange(AGENTS)) for _ in range(ops)]
    words = [COMMON_WORD] * (ops - len(refs))

    run = time.time_ns()
    made: list[int] = []

    def create(i: int) -> Callable[[], Any]:
        category = _pick(rng, _CATEGORIES)
        subject = rng.choice(_SUBJECTS[category])
        draft = NewTicket(
            subject=subject,
            category=category,
            priority=settings.priority_of(category),
            description=f"{subject}. {rng.choice(_SENTENCES)}",
            customer_id=drawn[i % len(drawn)],
            queue="support",
            tags=("bench",),
            assignee_group="support-desk",
            calls=(("bench", f"create-{run}-{i}"),),
        )

        def call() -> None:
            ticket, _ = store.create(
                draft, by="6001", at=time.time(), idempotency_key=f"bench-{run}-{i}"
            )
            made.append(ticket.id)

        return call

    def step(ticket_id: int, action: str) -> Callable[[], Any]:
        return lambda: store.transition(ticket_id, action, by="6001", at=time.time())

    def find(**criteria: Any) -> Callable[[], Any]:
        return lambda: store.search(TicketQuery(**criteria))

    def pop(customer_id: str) -> Callable[[], Any]:
        return lambda: store.open_for_customer(customer_id)

    results = [_timed("create (key, call, deadlines)", [create(i) for i in range(ops)])]
    results.append(_timed("transition new->open (fresh)", [step(t, "open") for t in made]))
    results.append(_timed("transition open->resolved (fresh)", [step(t, "resolve") for t in made]))
    results.append(
        _timed("transition open->resolved (filled)", [step(t, "resolve") for t in open_ids])
    )
    searches: list[tuple[str, list[Callable[[], Any]]]] = [
        ("search by customer", [find(customer_id=c) for c in drawn]),
        ("search by number", [find(number=n) for n in numbers]),
        ("search status open + agent", [find(status="open", assignee_agent=a) for a in workers]),
        ("search status closed + agent", [find(status="closed", assignee_agent=a) for a in workers]),  # noqa: E501
        (f"search text {COMMON_WORD!r}", [find(text=w) for w in words]),
        ("search text order reference", [find(text=r) for r in refs]),
        ("open tickets of customer (pop)", [pop(c) for c in drawn]),
    ]  # fmt: skip
    for what, calls in searches:
        results.append(_timed(what, calls, count_rows=True))
    return results


#: The goals: operation -> p99 in ms.
GOALS = {
    "create (key, call, deadlines)": 20.0,
    "search by customer": 20.0,
    "search by number": 20.0,
}


def report(filled: Filled, results: Sequence[Timed], server: str) -> str:
    by_name = {r.what: r for r in results}
    lines = [
        f"PostgreSQL {server}",
        str(filled),
        "",
        f"{HEADER}{'ops/s':>9}{'rows':>8}",
        *(r.row() for r in results),
        "",
    ]
    for what, limit in GOALS.items():
        p99 = by_name[what].spread.p99
        verdict = "met" if p99 < limit else "MISSED"
        lines.append(f"goal: {what} p99 < {limit:g} ms: {verdict} ({p99:.2f} ms)")
    return "\n".join(lines)


def server_version(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SHOW server_version")).scalar_one())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("CALLCENTER_BENCH_POSTGRES_URL"))
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument(
        "--orders", type=int, default=0,
        help="orders generated with the customers (tickets do not read them)",
    )  # fmt: skip
    parser.add_argument("--ops", type=int, default=2000, help="timed operations of each kind")
    parser.add_argument(
        "--reuse", action="store_true",
        help="keep the data there (fill only the tickets missing)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("give --database-url or set CALLCENTER_BENCH_POSTGRES_URL (without "
                     "--reuse its public schema is dropped)")  # fmt: skip
    if args.tickets < 0 or args.customers < 1 or args.ops < 1:
        parser.error("--tickets must be 0 or more, --customers and --ops 1 or more")
    print(machine(), flush=True)
    engine, filled = prepare(
        args.database_url, args.customers, args.tickets, reuse=args.reuse, orders=args.orders
    )
    results = measure(engine, args.ops)
    print(report(filled, results, server_version(engine)))
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
