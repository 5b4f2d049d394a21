"""customers, their numbers, orders and contacts; tier runs; who each call is from; pops sent

The screen-pop bridge's tables (crm_bridge/schema.py describes them). Money is in cents.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("first_seen", sa.Float(precision=53), nullable=True),
        sa.Column("created_at", sa.Float(precision=53), nullable=False),
        sa.Column("changed_at", sa.Float(precision=53), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("tier", sa.String(16), nullable=True),
        sa.Column("run_tier", sa.String(16), nullable=True),
        sa.Column("profile", sa.JSON(), nullable=True),
        sa.Column("profiled_at", sa.Float(precision=53), nullable=True),
    )
    op.create_index("ix_customers_changed_at", "customers", ["changed_at"])
    op.create_table(
        "customer_numbers",
        sa.Column(
            "customer_id",
            sa.String(64),
            sa.ForeignKey("customers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("number", sa.String(32), primary_key=True),
        sa.Column("label", sa.String(32), nullable=True),
    )
    op.create_index("ix_customer_numbers_number", "customer_numbers", ["number"])
    op.create_table(
        "orders",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column(
            "customer_id",
            sa.String(64),
            sa.ForeignKey("customers.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("ref", sa.String(64), nullable=True),
        sa.Column("at", sa.Float(precision=53), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
    )
    op.create_index("ix_orders_customer_at", "orders", ["customer_id", "at"])
    op.create_index("uq_orders_customer_ref", "orders", ["customer_id", "ref"], unique=True)
    op.create_table(
        "contacts",
        sa.Column("pbx", sa.String(64), primary_key=True),
        sa.Column("call_id", sa.String(128), primary_key=True),
        sa.Column(
            "customer_id",
            sa.String(64),
            sa.ForeignKey("customers.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("number", sa.String(32), nullable=True),
        sa.Column("at", sa.Float(precision=53), nullable=False),
        sa.Column("queue", sa.String(64), nullable=True),
        sa.Column("agent", sa.String(64), nullable=True),
        sa.Column("wait", sa.Float(precision=53), nullable=True),
        sa.Column("talk", sa.Float(precision=53), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("ivr_path", sa.JSON(), nullable=True),
        sa.Column("complaint", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_contacts_customer_at", "contacts", ["customer_id", "at"])
    op.create_index("ix_contacts_number_at", "contacts", ["number", "at"])
    op.create_table(
        "tier_runs",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float(precision=53), nullable=False),
        sa.Column("finished_at", sa.Float(precision=53), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("cutoffs", sa.JSON(), nullable=False),
    )
    op.create_table(
        "call_customers",
        sa.Column("pbx", sa.String(64), primary_key=True),
        sa.Column("call_id", sa.String(128), primary_key=True),
        sa.Column(
            "customer_id",
            sa.String(64),
            sa.ForeignKey("customers.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("chosen_by", sa.String(64), nullable=True),
        sa.Column("at", sa.Float(precision=53), nullable=False),
    )
    op.create_table(
        "pops",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("pbx", sa.String(64), nullable=False),
        sa.Column("call_id", sa.String(128), nullable=False),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", sa.Float(precision=53), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
    )
    op.create_index("ix_pops_call", "pops", ["pbx", "call_id"])


def downgrade() -> None:
    op.drop_index("ix_pops_call", table_name="pops")
    op.drop_table("pops")
    op.drop_table("call_customers")
    op.drop_table("tier_runs")
    op.drop_index("ix_contacts_number_at", table_name="contacts")
    op.drop_index("ix_contacts_customer_at", table_name="contacts")
    op.drop_table("contacts")
    op.drop_index("uq_orders_customer_ref", table_name="orders")
    op.drop_index("ix_orders_customer_at", table_name="orders")
    op.drop_table("orders")
    op.drop_index("ix_customer_numbers_number", table_name="customer_numbers")
    op.drop_table("customer_numbers")
    op.drop_index("ix_customers_changed_at", table_name="customers")
    op.drop_table("customers")
