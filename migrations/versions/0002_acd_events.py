"""acd_events: callers joining, offered, connected, abandoned; agent states

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acd_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("pbx", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("queue", sa.String(64), nullable=True),
        sa.Column("agent", sa.String(64), nullable=True),
        sa.Column("call_id", sa.String(128), nullable=True),
        sa.Column("at", sa.Float(precision=53), nullable=False),
        sa.Column("recorded_at", sa.Float(precision=53), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
    )
    op.create_index("ix_acd_events_queue_at", "acd_events", ["queue", "at"])
    op.create_index("ix_acd_events_agent_at", "acd_events", ["agent", "at"])


def downgrade() -> None:
    op.drop_index("ix_acd_events_agent_at", table_name="acd_events")
    op.drop_index("ix_acd_events_queue_at", table_name="acd_events")
    op.drop_table("acd_events")
