"""tickets, their calls, audit trail, comments, attachments and idempotency keys

The tickets' tables (tickets/schema.py describes them). On PostgreSQL a trigram index
(``pg_trgm``) over subject and description serves the text search's ``ILIKE``; the
extension is created if missing and left in place on downgrade (others may use it).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.Float(precision=53)


def _ticket_ref(*, primary_key: bool = False) -> sa.Column[int]:
    return sa.Column(
        "ticket_id",
        _ID,
        sa.ForeignKey("tickets.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary_key,
    )


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("number", sa.String(16), nullable=True, unique=True),
        sa.Column(
            "customer_id",
            sa.String(64),
            sa.ForeignKey("customers.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("customer_tier", sa.String(16), nullable=True),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("queue", sa.String(64), nullable=True),
        sa.Column("assignee_agent", sa.String(64), nullable=True),
        sa.Column("assignee_group", sa.String(64), nullable=True),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("first_response_due", _TIME, nullable=True),
        sa.Column("resolution_due", _TIME, nullable=True),
        sa.Column("first_response_at", _TIME, nullable=True),
        sa.Column("resolved_at", _TIME, nullable=True),
        sa.Column("sla_state", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "merged_into", _ID, sa.ForeignKey("tickets.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
    )
    for name, column in _TICKET_INDEXES:
        op.create_index(name, "tickets", [column, "id"])
    op.create_table(
        "ticket_calls",
        _ticket_ref(primary_key=True),
        sa.Column("pbx", sa.String(64), primary_key=True),
        sa.Column("call_id", sa.String(128), primary_key=True),
        sa.Column("linked_at", _TIME, nullable=False),
        sa.Column("linked_by", sa.String(64), nullable=False),
    )
    op.create_index("ix_ticket_calls_call", "ticket_calls", ["pbx", "call_id"])
    op.create_table(
        "ticket_changes",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        _ticket_ref(),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
        sa.Column("field", sa.String(32), nullable=False),
        sa.Column("old", sa.JSON(), nullable=True),
        sa.Column("new", sa.JSON(), nullable=True),
    )
    op.create_index("ix_ticket_changes_ticket", "ticket_changes", ["ticket_id", "id"])
    op.create_table(
        "ticket_comments",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        _ticket_ref(),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
    )
    op.create_index("ix_ticket_comments_ticket", "ticket_comments", ["ticket_id", "id"])
    op.create_table(
        "ticket_attachments",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        _ticket_ref(),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(128), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("added_at", _TIME, nullable=False),
        sa.Column("added_by", sa.String(64), nullable=False),
    )
    op.create_index("ix_ticket_attachments_ticket", "ticket_attachments", ["ticket_id"])
    op.create_table(
        "ticket_idempotency",
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        _ticket_ref(),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE INDEX ix_tickets_text ON tickets USING gin "
            "((subject || ' ' || description) gin_trgm_ops)"
        )


_TICKET_INDEXES = (
    ("ix_tickets_customer", "customer_id"),
    ("ix_tickets_status", "status"),
    ("ix_tickets_assignee_agent", "assignee_agent"),
    ("ix_tickets_assignee_group", "assignee_group"),
    ("ix_tickets_queue", "queue"),
    ("ix_tickets_category", "category"),
    ("ix_tickets_sla_state", "sla_state"),
)


def downgrade() -> None:
    op.drop_table("ticket_idempotency")
    op.drop_index("ix_ticket_attachments_ticket", table_name="ticket_attachments")
    op.drop_table("ticket_attachments")
    op.drop_index("ix_ticket_comments_ticket", table_name="ticket_comments")
    op.drop_table("ticket_comments")
    op.drop_index("ix_ticket_changes_ticket", table_name="ticket_changes")
    op.drop_table("ticket_changes")
    op.drop_index("ix_ticket_calls_call", table_name="ticket_calls")
    op.drop_table("ticket_calls")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_tickets_text")
    for name, _ in _TICKET_INDEXES:
        op.drop_index(name, table_name="tickets")
    op.drop_table("tickets")
