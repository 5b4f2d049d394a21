"""ACD history: every caller and agent state change persisted, for reports and replays.

The table is created by the Alembic migrations; the recorder is the same batched,
outage-proof writer as the call history's (``cti.history.EventRecorder``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

from acd.events import AcdEvent
from cti.history import EventRecorder

metadata = MetaData()

acd_events = Table(
    "acd_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("pbx", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("queue", String(64), nullable=True),
    Column("agent", String(64), nullable=True),
    Column("call_id", String(128), nullable=True),
    Column("at", Float(precision=53), nullable=False),
    Column("recorded_at", Float(precision=53), nullable=False),
    Column("payload", JSON(), nullable=False),
    Index("ix_acd_events_queue_at", "queue", "at"),
    Index("ix_acd_events_agent_at", "agent", "at"),
)


class AcdEventRecorder(EventRecorder[AcdEvent]):
    """Persists the ACD events of one backend (``pbx``) into ``acd_events``."""

    def __init__(self, engine: Engine, reactor: Any, *, pbx: str = "default", **options: Any):
        def row(event: AcdEvent) -> dict[str, Any]:
            record = event.to_record()
            return {
                "pbx": pbx,
                "kind": event.kind,
                "queue": record.get("queue"),
                "agent": record.get("agent"),
                "call_id": record.get("call_id"),
                "at": event.at,
                "payload": record,
            }

        super().__init__(engine, reactor, acd_events, row, name="acd history", **options)
