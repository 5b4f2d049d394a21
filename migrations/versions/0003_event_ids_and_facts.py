"""event_id and fact on both event tables: a replayed event or a repeated fact is one row

Every event gets a unique ``event_id`` before it is spooled, so a batch written again after
a crash (committed, not yet acknowledged in the spool) is ignored. ``fact`` names what an
event states at most once per call (``answered``, ``queued:sales`` ...), unique per pbx and
call, so a resync that re-emits a call's facts after a restart adds nothing. Both are NULL
on rows written before this revision (NULLs never collide in a unique index).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("call_events", "acd_events")


def upgrade() -> None:
    for table in TABLES:
        # Plain ADD COLUMN (nullable, no default): instant on PostgreSQL, no rewrite.
        op.add_column(table, sa.Column("event_id", sa.String(32), nullable=True))
        op.add_column(table, sa.Column("fact", sa.String(200), nullable=True))
        op.create_index(f"uq_{table}_event_id", table, ["event_id"], unique=True)
        op.create_index(f"uq_{table}_fact", table, ["pbx", "call_id", "fact"], unique=True)


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"uq_{table}_fact", table_name=table)
        op.drop_index(f"uq_{table}_event_id", table_name=table)
        # Batch mode: SQLite rebuilds the table where it cannot drop a column in place.
        with op.batch_alter_table(table) as batch:
            batch.drop_column("fact")
            batch.drop_column("event_id")
