"""The tickets' tables, as the code reads and writes them.

Migration 0006 creates them (Alembic is the only source of the schema; a test checks the two
agree). Times are epoch seconds, like the call events'.

* ``tickets`` — one row per ticket. ``number`` is the ticket's name for people
  (``T-000123``, from its id). ``customer_tier`` is the customer's tier when the ticket was
  opened (its deadlines were set by it; a later re-tiering does not move them).
  ``queue`` is the queue of the call it came from: with ``assignee_group`` and
  ``assignee_agent`` it says which agents see the ticket. ``version`` grows by one with
  every change: an update names the version it read and loses if another came first
  (optimistic concurrency, no locks held while an agent types). ``sla_state`` is the worse
  of the two deadlines' states (ok / warning / breached / met), kept for search.
  ``merged_into`` points a duplicate at the ticket that survived it.
* ``ticket_calls`` — the calls a ticket came from or was linked to (one call may belong to
  several tickets).
* ``ticket_changes`` — the audit trail: who changed which field when, old and new values
  (JSON), written in the same transaction as the change.
* ``ticket_comments`` — internal notes and replies to the customer (``public``).
* ``ticket_attachments`` — metadata only; the file lives where ``url`` says.
* ``ticket_events`` — the tickets' event stream persisted (``tickets.history``), shaped
  like the call and ACD events' tables (``cti.history.event_table``), with the ticket id.
* ``ticket_idempotency`` — a create's ``Idempotency-Key`` per account, with the ticket it
  made and a hash of the request: a retry gets that ticket, a different request under the
  same key is refused.

Search by text: on PostgreSQL a trigram index (``pg_trgm``) over subject and description
serves ``ILIKE '%word%'``; SQLite scans with ``LIKE`` (same meaning, no index).
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
    Text,
    text,
)

from crm_bridge.schema import customers
from cti.history import event_table

__all__ = [
    "metadata",
    "ticket_attachments",
    "ticket_calls",
    "ticket_changes",
    "ticket_comments",
    "ticket_events",
    "ticket_idempotency",
    "tickets",
]

metadata = MetaData()

_ID = BigInteger().with_variant(Integer(), "sqlite")
_TIME = Float(precision=53)

#: Longest subject, description, tag and most tags a ticket takes (the API says so too).
MAX_SUBJECT = 200
MAX_DESCRIPTION = 20_000
MAX_TAGS = 20
MAX_TAG = 40


def _ticket_ref(*, primary_key: bool = False) -> Column[int]:
    """A ``ticket_id`` column referring to ``tickets.id`` (rows go with their ticket)."""
    return Column(
        "ticket_id",
        _ID,
        ForeignKey("tickets.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary_key,
    )


tickets = Table(
    "tickets",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("number", String(16), nullable=True, unique=True),
    Column(
        "customer_id",
        String(64),
        # The column itself, not "customers.id": that table is in the bridge's MetaData.
        ForeignKey(customers.c.id, ondelete="SET NULL"),
        nullable=True,
    ),
    Column("customer_tier", String(16), nullable=True),
    Column("category", String(32), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("status", String(24), nullable=False),
    Column("queue", String(64), nullable=True),
    Column("assignee_agent", String(64), nullable=True),
    Column("assignee_group", String(64), nullable=True),
    Column("subject", String(MAX_SUBJECT), nullable=False),
    Column("description", Text(), nullable=False),
    Column("tags", JSON(), nullable=False),
    Column("first_response_due", _TIME, nullable=True),
    Column("resolution_due", _TIME, nullable=True),
    Column("first_response_at", _TIME, nullable=True),
    Column("resolved_at", _TIME, nullable=True),
    Column("sla_state", String(16), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("merged_into", _ID, ForeignKey("tickets.id", ondelete="SET NULL"), nullable=True),
    Column("created_at", _TIME, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("updated_at", _TIME, nullable=False),
    Column("updated_by", String(64), nullable=False),
    Index("ix_tickets_customer", "customer_id", "id"),
    Index("ix_tickets_status", "status", "id"),
    Index("ix_tickets_assignee_agent", "assignee_agent", "id"),
    Index("ix_tickets_assignee_group", "assignee_group", "id"),
    Index("ix_tickets_queue", "queue", "id"),
    Index("ix_tickets_category", "category", "id"),
    Index("ix_tickets_sla_state", "sla_state", "id"),
)
# PostgreSQL's only: trigrams of subject and description, for ILIKE '%word%'.
# Written as the migration's SQL: Alembic compares it with what PostgreSQL reflects as equal
# (an expression built with SQLAlchemy's operators reflects with casts and compares unequal).
Index(
    "ix_tickets_text",
    text("(subject || ' ' || description) gin_trgm_ops"),
    _table=tickets,
    postgresql_using="gin",
).ddl_if(dialect="postgresql")

ticket_calls = Table(
    "ticket_calls",
    metadata,
    _ticket_ref(primary_key=True),
    Column("pbx", String(64), primary_key=True),
    Column("call_id", String(128), primary_key=True),
    Column("linked_at", _TIME, nullable=False),
    Column("linked_by", String(64), nullable=False),
    Index("ix_ticket_calls_call", "pbx", "call_id"),
)

ticket_changes = Table(
    "ticket_changes",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    _ticket_ref(),
    Column("at", _TIME, nullable=False),
    Column("by", String(64), nullable=False),
    Column("field", String(32), nullable=False),
    Column("old", JSON(), nullable=True),
    Column("new", JSON(), nullable=True),
    Index("ix_ticket_changes_ticket", "ticket_id", "id"),
)

ticket_comments = Table(
    "ticket_comments",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    _ticket_ref(),
    Column("at", _TIME, nullable=False),
    Column("author", String(64), nullable=False),
    Column("public", Boolean(), nullable=False),
    Column("body", Text(), nullable=False),
    Index("ix_ticket_comments_ticket", "ticket_id", "id"),
)

ticket_attachments = Table(
    "ticket_attachments",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    _ticket_ref(),
    Column("name", String(255), nullable=False),
    Column("size", BigInteger(), nullable=False),
    Column("content_type", String(128), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("added_at", _TIME, nullable=False),
    Column("added_by", String(64), nullable=False),
    Index("ix_ticket_attachments_ticket", "ticket_id"),
)

ticket_idempotency = Table(
    "ticket_idempotency",
    metadata,
    Column("account", String(64), primary_key=True),
    Column("key", String(200), primary_key=True),
    _ticket_ref(),
    Column("request_hash", String(64), nullable=False),
    Column("created_at", _TIME, nullable=False),
)

ticket_events = event_table(
    "ticket_events",
    metadata,
    Column("ticket_id", _ID, nullable=False),
    # event_table's fact index is per call; ticket events name none (no fact: NULL).
    Column("call_id", String(128), nullable=True),
    indexes=(Index("ix_ticket_events_ticket_at", "ticket_id", "at"),),
)
