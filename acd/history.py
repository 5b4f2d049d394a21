"""ACD history: every caller and agent state change persisted, for reports and replays.

The table is created by the Alembic migrations; the recorder is the same spooled,
outage-proof, exactly-once writer as the call history's (``cti.history.EventRecorder``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Engine, Index, MetaData, String

from acd.events import AcdEvent
from cti.history import EventRecorder, event_table, spool_subdir

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

#: ACD event kinds that state a fact at most once per call, and the fact (formatted with
#: the event's record); other kinds (offers, agent states ...) may repeat.
ACD_FACTS: Mapping[str, str] = {
    "caller_joined": "joined:{queue}",
    "caller_connected": "connected",
    "call_completed": "completed",
    "caller_abandoned": "abandoned",
    "caller_overflowed": "overflowed:{queue}",
    "callback_requested": "callback:{request_id}",
}


class AcdEventRecorder(EventRecorder[AcdEvent]):
    """Persists the ACD events of one backend (``pbx``) into ``acd_events``."""

    def __init__(
        self,
        engine: Engine,
        reactor: Any,
        *,
        pbx: str = "default",
        spool_dir: Path | None = None,
        **options: Any,
    ):
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

        super().__init__(
            engine,
            reactor,
            acd_events,
            row,
            name="acd history",
            facts=ACD_FACTS,
            spool_dir=spool_subdir(spool_dir, acd_events, pbx),
            **options,
        )

