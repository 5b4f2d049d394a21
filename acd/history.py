"""ACD history: every caller and agent state change persisted, for reports and replays.

The table is created by the Alembic migrations; the recorder is the same batched,
outage-proof writer as the call history's (``cti.history.EventRecorder``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Engine, Index, MetaData, String

from acd.events import AcdEvent
from cti.history import EventRecorder, event_table

metadata = MetaData()

acd_events = event_table(
    "acd_events",
    metadata,
    Column("queue", String(64), nullable=True),
    Column("agent", String(64), nullable=True),
    Column("call_id", String(128), nullable=True),
    indexes=(
        Index("ix_acd_events_queue_at", "queue", "at"),
        Index("ix_acd_events_agent_at", "agent", "at"),
    ),
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
