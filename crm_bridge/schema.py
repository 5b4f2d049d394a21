"""The screen-pop bridge's tables, as the code reads and writes them.

Migration 0004 creates them (Alembic is the only source of the schema; a test checks the two
agree). Money is kept in cents (``amount_cents``): exact, and as fast on SQLite as on
PostgreSQL. Times are epoch seconds, like the call events'. Numbers are E.164 (``+4930...``).

* ``customers`` — one row per customer; ``tier``/``profile``/``profiled_at`` hold the last
  computed profile (the pop reads it, the ACD's tier index is built from it); ``run_tier`` is
  the customer's tier in the last bulk run (the incremental path's ``was``); ``changed_at`` is
  bumped whenever an order or a contact of the customer arrives, so a recompute knows whom
  to redo.
* ``customer_numbers`` — several numbers per customer, one number possibly on several
  customers (a shared landline): the look-up returns every candidate.
* ``orders`` — purchases (positive) and refunds (negative); ``ref`` is the source's order
  id, unique per customer when given (an import run twice adds nothing).
* ``contacts`` — every call with the center, one row per (pbx, call): queue, agent, wait,
  talk, outcome, IVR path; filled from the persisted call and ACD events.
* ``tier_runs`` — each bulk recompute: when, how many customers, the pyramid's cut-offs
  (the incremental path tiers new data against the latest run).
* ``call_customers`` — who a call is from, once known: the only candidate, or the one an
  agent picked among several (remembered for the call, so a transfer or a reconnect pops the
  same customer).
* ``pops`` — every pop frame sent to an agent, for audit.

Tickets (``tickets/``) will link to ``customers.id``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

__all__ = [
    "call_customers",
    "contacts",
    "customer_numbers",
    "customers",
    "metadata",
    "orders",
    "pops",
    "tier_runs",
]

metadata = MetaData()

_ID = BigInteger().with_variant(Integer(), "sqlite")


def _customer_ref(
    ondelete: str, *, nullable: bool = False, primary_key: bool = False
) -> Column[str]:
    """A ``customer_id`` column referring to ``customers.id``."""
    return Column(
        "customer_id",
        String(64),
        ForeignKey("customers.id", ondelete=ondelete),
        nullable=nullable,
        primary_key=primary_key,
    )

customers = Table(
    "customers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(254), nullable=True),
    Column("first_seen", Float(precision=53), nullable=True),
    Column("created_at", Float(precision=53), nullable=False),
    Column("changed_at", Float(precision=53), nullable=False),
    Column("source", String(16), nullable=False),
    Column("tier", String(16), nullable=True),
    Column("run_tier", String(16), nullable=True),
    Column("profile", JSON(), nullable=True),
    Column("profiled_at", Float(precision=53), nullable=True),
    Index("ix_customers_changed_at", "changed_at"),
)

customer_numbers = Table(
    "customer_numbers",
    metadata,
    _customer_ref("CASCADE", primary_key=True),
    Column("number", String(32), primary_key=True),
    Column("label", String(32), nullable=True),
    Index("ix_customer_numbers_number", "number"),
)

orders = Table(
    "orders",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    _customer_ref("CASCADE"),
    Column("ref", String(64), nullable=True),
    Column("at", Float(precision=53), nullable=False),
    Column("amount_cents", BigInteger(), nullable=False),
    Column("category", String(64), nullable=False),
    Index("ix_orders_customer_at", "customer_id", "at"),
    Index("uq_orders_customer_ref", "customer_id", "ref", unique=True),
)

contacts = Table(
    "contacts",
    metadata,
    Column("pbx", String(64), primary_key=True),
    Column("call_id", String(128), primary_key=True),
    _customer_ref("SET NULL", nullable=True),
    Column("number", String(32), nullable=True),
    Column("at", Float(precision=53), nullable=False),
    Column("queue", String(64), nullable=True),
    Column("agent", String(64), nullable=True),
    Column("wait", Float(precision=53), nullable=True),
    Column("talk", Float(precision=53), nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("ivr_path", JSON(), nullable=True),
    Column("complaint", Boolean(), nullable=False, default=False),
    Index("ix_contacts_customer_at", "customer_id", "at"),
    Index("ix_contacts_number_at", "number", "at"),
)

tier_runs = Table(
    "tier_runs",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("at", Float(precision=53), nullable=False),
    Column("finished_at", Float(precision=53), nullable=False),
    Column("customers", Integer(), nullable=False),
    Column("cutoffs", JSON(), nullable=False),
)

call_customers = Table(
    "call_customers",
    metadata,
    Column("pbx", String(64), primary_key=True),
    Column("call_id", String(128), primary_key=True),
    _customer_ref("CASCADE"),
    Column("chosen_by", String(64), nullable=True),
    Column("at", Float(precision=53), nullable=False),
)

pops = Table(
    "pops",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("pbx", String(64), nullable=False),
    Column("call_id", String(128), nullable=False),
    Column("agent", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("at", Float(precision=53), nullable=False),
    Column("payload", JSON(), nullable=False),
    Index("ix_pops_call", "pbx", "call_id"),
)
