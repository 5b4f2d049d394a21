"""The customer tables as the bridge reads and writes them: plain functions over a SQLAlchemy
:class:`~sqlalchemy.engine.Connection` (synchronous: the process runs them in a thread, never
on the reactor). The caller owns the transaction (``engine.begin()``).

Every look-up the pop makes is one indexed query: by number (``ix_customer_numbers_number``),
by id (primary keys), a customer's contacts newest first (``ix_contacts_customer_at``); a
bulk history reads orders and contacts by ``customer_id`` in chunks, so it stays linear on
100,000 customers. Numbers are E.164 (normalise with :mod:`crm_bridge.numbers` first); money
is :class:`~decimal.Decimal`, stored in cents.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)

from crm_bridge.customer import Contact, CustomerHistory, Order
from crm_bridge.errors import DuplicateCustomer, NumberError, UnknownCustomer
from crm_bridge.schema import call_customers, contacts, customer_numbers, customers, orders

__all__ = [
    "TIER_RANK",
    "CustomerRecord",
    "add_customer",
    "add_number",
    "add_order",
    "bulk_insert",
    "candidates_for",
    "cents",
    "chosen_customer",
    "count_customers",
    "customer",
    "history_of",
    "last_contacts",
    "remember_choice",
    "tier_index",
]

#: Tiers from the most valuable: a number shared by customers of several tiers gets the first.
TIER_RANK: tuple[str, ...] = ("vip", "key", "ordinary", "small")

#: Ids per ``IN (...)`` of a bulk read: under SQLite's bound-parameter limit, few round trips.
CHUNK = 900

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    """A customer as the pop shows it: the stored profile (``profile``, computed at
    ``profiled_at``; None until the first computation) and every number, sorted."""

    id: str
    name: str
    email: str | None
    numbers: tuple[str, ...]
    tier: str | None
    profile: dict[str, Any] | None
    profiled_at: float | None


_RECORD_COLUMNS = (
    customers.c.id,
    customers.c.name,
    customers.c.email,
    customers.c.tier,
    customers.c.profile,
    customers.c.profiled_at,
)


def _records(rows: Iterable[Any]) -> list[CustomerRecord]:
    """Records from (customer columns..., number) rows, one row per number, in row order."""
    numbers: dict[str, list[str]] = {}
    first: dict[str, Any] = {}
    for row in rows:
        if row.id not in first:
            first[row.id] = row
            numbers[row.id] = []
        if row.number is not None:
            numbers[row.id].append(row.number)
    return [
        CustomerRecord(
            row.id,
            row.name,
            row.email,
            tuple(sorted(numbers[cid])),
            row.tier,
            row.profile,
            row.profiled_at,
        )
        for cid, row in first.items()
    ]


_matched = customer_numbers.alias("matched")
_held = customer_numbers.alias("held")
# Built once: making the two aliases' columns cost about as much as the query's round trip
# (0.5 ms) on every pop (bench/screen_pop.py).
_CANDIDATES = (
    select(*_RECORD_COLUMNS, _held.c.number)
    .select_from(_matched)
    .join(customers, customers.c.id == _matched.c.customer_id)
    .join(_held, _held.c.customer_id == customers.c.id)
    .where(_matched.c.number == bindparam("number"))
    .order_by(customers.c.id)
)


def candidates_for(conn: Connection, number: str) -> list[CustomerRecord]:
    """Every customer on the E.164 ``number`` (several on a shared line), by id; one query."""
    return _records(conn.execute(_CANDIDATES, {"number": number}))


def customer(conn: Connection, customer_id: str) -> CustomerRecord | None:
    """The customer with this id, or None."""
    query = (
        select(*_RECORD_COLUMNS, customer_numbers.c.number)
        .select_from(customers)
        .outerjoin(customer_numbers, customer_numbers.c.customer_id == customers.c.id)
        .where(customers.c.id == customer_id)
    )
    found = _records(conn.execute(query))
    return found[0] if found else None


def last_contacts(conn: Connection, customer_id: str, limit: int = 5) -> list[dict[str, Any]]:
    """The customer's ``limit`` latest contacts, newest first: ``at``, ``queue``, ``agent``,
    ``wait``, ``talk``, ``outcome``, ``ivr_path``, ``complaint``. :class:`UnknownCustomer`
    for an id no customer has."""
    c = contacts.c
    query = (
        select(c.at, c.queue, c.agent, c.wait, c.talk, c.outcome, c.ivr_path, c.complaint)
        .where(c.customer_id == customer_id)
        .order_by(c.at.desc())
        .limit(limit)
    )
    found = [dict(row._mapping) for row in conn.execute(query)]
    if not found:  # only then is the id worth checking: the common case stays one query
        _require(conn, customer_id)
    return found


def history_of(conn: Connection, customer_ids: Iterable[str]) -> dict[str, CustomerHistory]:
    """Each customer's history for the profile (orders, contacts, first seen), in the order
    of ``customer_ids``. :class:`UnknownCustomer` names the first id no customer has."""
    wanted = list(dict.fromkeys(customer_ids))
    out: dict[str, CustomerHistory] = {}
    for chunk in _chunks(wanted):
        first_seen = dict(
            conn.execute(
                select(customers.c.id, customers.c.first_seen).where(customers.c.id.in_(chunk))
            ).all()
        )
        missing = [cid for cid in chunk if cid not in first_seen]
        if missing:
            raise UnknownCustomer(missing[0])
        bought: dict[str, list[Order]] = defaultdict(list)
        o = orders.c
        for cid, at, amount, category in conn.execute(
            select(o.customer_id, o.at, o.amount_cents, o.category)
            .where(o.customer_id.in_(chunk))
            .order_by(o.customer_id, o.at, o.id)
        ):
            bought[cid].append(Order(at, Decimal(amount).scaleb(-2), category))
        called: dict[str, list[Contact]] = defaultdict(list)
        c = contacts.c
        for cid, at, outcome, complaint in conn.execute(
            select(c.customer_id, c.at, c.outcome, c.complaint)
            .where(c.customer_id.in_(chunk))
            .order_by(c.customer_id, c.at)
        ):
            called[cid].append(Contact(at, outcome, bool(complaint)))
        for cid in chunk:
            out[cid] = CustomerHistory(cid, tuple(bought[cid]), tuple(called[cid]), first_seen[cid])
    return out


def add_customer(
    conn: Connection,
    id: str,
    name: str,
    numbers: Sequence[str],
    *,
    email: str | None = None,
    first_seen: float | None = None,
    source: str,
    now: float,
) -> None:
    """A new customer with its E.164 ``numbers`` (``source`` says where it came from:
    ``import``, ``agent``, ``generated``...). :class:`DuplicateCustomer` if the id is taken."""
    if not name.strip():
        raise ValueError(f"customer {id!r}: the name must not be empty")
    checked = list(dict.fromkeys(_e164(n) for n in numbers))
    if conn.execute(select(customers.c.id).where(customers.c.id == id)).first() is not None:
        raise DuplicateCustomer(id)
    conn.execute(
        insert(customers).values(
            id=id,
            name=name,
            email=email,
            first_seen=first_seen,
            created_at=now,
            changed_at=now,
            source=source,
        )
    )
    if checked:
        conn.execute(insert(customer_numbers), [{"customer_id": id, "number": n} for n in checked])


def add_number(conn: Connection, customer_id: str, number: str, label: str | None = None) -> bool:
    """Give the customer the E.164 ``number`` (``label``: e.g. mobile, office); False when the
    customer has it already (nothing changes)."""
    _e164(number)
    _require(conn, customer_id)
    held = select(customer_numbers.c.number).where(
        customer_numbers.c.customer_id == customer_id, customer_numbers.c.number == number
    )
    if conn.execute(held).first() is not None:
        return False
    conn.execute(
        insert(customer_numbers).values(customer_id=customer_id, number=number, label=label)
    )
    return True


def add_order(
    conn: Connection,
    customer_id: str,
    at: float,
    amount: Decimal,
    category: str,
    ref: str | None = None,
    *,
    now: float,
) -> bool:
    """Record an order (a negative ``amount`` is a refund) and mark the customer changed at
    ``now`` for the next recompute. With a ``ref`` the customer already has, nothing is added
    and the result is False (a source sending an order twice)."""
    Order(at, amount, category)  # the profile core's contract, checked before anything is written
    amount_cents = cents(amount)
    if ref is not None:
        known = select(orders.c.id).where(
            and_(orders.c.customer_id == customer_id, orders.c.ref == ref)
        )
        if conn.execute(known).first() is not None:
            return False
    bumped = conn.execute(
        update(customers).where(customers.c.id == customer_id).values(changed_at=now)
    )
    if bumped.rowcount == 0:
        raise UnknownCustomer(customer_id)
    conn.execute(
        insert(orders).values(
            customer_id=customer_id, ref=ref, at=at, amount_cents=amount_cents, category=category
        )
    )
    return True


def remember_choice(
    conn: Connection, pbx: str, call_id: str, customer_id: str, agent: str | None, now: float
) -> None:
    """Who call ``call_id`` of ``pbx`` is from (the only candidate, or the one ``agent``
    picked); choosing again replaces the choice."""
    _require(conn, customer_id)
    key = (call_customers.c.pbx == pbx) & (call_customers.c.call_id == call_id)
    conn.execute(delete(call_customers).where(key))
    conn.execute(
        insert(call_customers).values(
            pbx=pbx, call_id=call_id, customer_id=customer_id, chosen_by=agent, at=now
        )
    )


def chosen_customer(conn: Connection, pbx: str, call_id: str) -> str | None:
    """The customer remembered for the call, or None."""
    query = select(call_customers.c.customer_id).where(
        call_customers.c.pbx == pbx, call_customers.c.call_id == call_id
    )
    return conn.execute(query).scalar_one_or_none()


def tier_index(conn: Connection, *, profiled_since: float | None = None) -> dict[str, str]:
    """E.164 number -> the stored tier of its customer; a number shared by several customers
    gets the most valuable of their tiers (:data:`TIER_RANK`). Customers without a tier are
    left out. With ``profiled_since``, only the numbers of customers profiled at or after
    it (each still judged against every customer on it): the changes since a reload."""
    rank = {tier: i for i, tier in enumerate(TIER_RANK)}
    query = (
        select(customer_numbers.c.number, customers.c.tier)
        .join(customers, customers.c.id == customer_numbers.c.customer_id)
        .where(customers.c.tier.is_not(None))
    )
    if profiled_since is not None:
        changed = (
            select(customer_numbers.c.number)
            .join(customers, customers.c.id == customer_numbers.c.customer_id)
            .where(customers.c.profiled_at >= profiled_since)
        )
        query = query.where(customer_numbers.c.number.in_(changed))
    index: dict[str, str] = {}
    for number, tier in conn.execute(query):
        held = index.get(number)
        if held is None or rank.get(tier, len(rank)) < rank.get(held, len(rank)):
            index[number] = tier
    return index


def bulk_insert(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert ``rows`` (tuples in the order of ``columns``) into ``table``, fast: COPY on
    PostgreSQL with psycopg (about twice executemany's rate with the indexes in place), a Core
    executemany elsewhere. Part of the caller's transaction like any other statement."""
    if not rows:
        return
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        as_json = [i for i, name in enumerate(columns) if isinstance(table.c[name].type, JSON)]
        copy = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(copy) as out:
            for row in rows:
                if as_json:  # COPY takes JSON as its text
                    row = list(row)
                    for i in as_json:
                        row[i] = None if row[i] is None else json.dumps(row[i])
                out.write_row(row)
        return
    conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])


def count_customers(conn: Connection) -> int:
    """How many customers the table holds."""
    return int(conn.execute(select(func.count()).select_from(customers)).scalar_one())


def cents(amount: Decimal) -> int:
    """``amount`` in whole cents; :class:`ValueError` for a fraction of a cent."""
    if not amount.is_finite():
        raise ValueError(f"amount {amount}: not a finite number")
    scaled = amount.scaleb(2)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"amount {amount}: more than 2 decimals (cents are the smallest unit)")
    return int(scaled)


def _e164(number: str) -> str:
    if not _E164.match(number):
        raise NumberError(
            f"phone number {number!r}: not E.164 (+, country code, number, digits only); "
            "normalise it with crm_bridge.numbers.to_e164 first"
        )
    return number


def _require(conn: Connection, customer_id: str) -> None:
    found = conn.execute(select(customers.c.id).where(customers.c.id == customer_id)).first()
    if found is None:
        raise UnknownCustomer(customer_id)


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]
