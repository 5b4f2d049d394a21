"""ticket_events: the tickets' event stream persisted (created, changed, SLA, escalations)

Shaped like call_events and acd_events (cti.history.event_table), with the ticket's id;
tickets/history.py describes it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "ticket_events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("pbx", sa.String(64), nullable=False),
        sa.Column("ticket_id", _ID, nullable=False),
        sa.Column("call_id", sa.String(128), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("recorded_at", _TIME, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("event_id", sa.String(32), nullable=True),
        sa.Column("fact", sa.String(200), nullable=True),
    )
    op.create_index("ix_ticket_events_ticket_at", "ticket_events", ["ticket_id", "at"])
    op.create_index("uq_ticket_events_event_id", "ticket_events", ["event_id"], unique=True)
    op.create_index(
        "uq_ticket_events_fact", "ticket_events", ["pbx", "call_id", "fact"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_ticket_events_fact", table_name="ticket_events")
    op.drop_index("uq_ticket_events_event_id", table_name="ticket_events")
    op.drop_index("ix_ticket_events_ticket_at", table_name="ticket_events")
    op.drop_table("ticket_events")
