"""ACD history: every caller and agent state change persisted, for reports and replays.

The table is created by the Alembic migrations; the recorder is the same spooled,
outage-proof, exactly-once writer as the call history's (``cti.history.EventRecorder``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Engine, Index, MetaData, String, select

from acd.events import AcdEvent
from acd.router import OpenCall
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


def open_acd_calls(engine: Engine, pbx: str, now: float, horizon: float) -> list[OpenCall]:
    """Callers of ``pbx`` the ACD history leaves waiting or connected (no abandon,
    overflow, callback or completion after their last join or connection) within
    ``horizon`` seconds of ``now``: what a previous run had not closed when it stopped."""
    t = acd_events.c
    query = (
        select(t.call_id, t.kind, t.queue, t.agent, t.at)
        .where(t.pbx == pbx, t.at >= now - horizon, t.kind.in_(_OPEN_KINDS))
        .order_by(t.id)
    )
    state: dict[str, OpenCall | None] = {}
    with engine.connect() as conn:
        for call_id, kind, queue, agent, at in conn.execute(query):
            if kind == "caller_joined":
                state[call_id] = OpenCall(call_id, queue, at)
            elif kind == "caller_connected":
                state[call_id] = OpenCall(call_id, queue, at, agent)
            else:
                state[call_id] = None
    # Callback requests are not calls on the line: nothing on the PBX ends them.
    return [c for c in state.values() if c is not None and not c.call_id.startswith("cb-")]


def latest_agent_queues(engine: Engine, pbx: str) -> dict[str, dict[str, int]]:
    """Each agent's latest move between queues through ``pbx``'s backend (its last
    ``agent_queues`` event): agent -> queue -> penalty; agents never moved are absent.
    Read once at start-up by a backend whose moves live in no shared store (one scan of
    the table's rows of that kind)."""
    t = acd_events.c
    query = (
        select(t.agent, t.payload)
        .where(t.pbx == pbx, t.kind == "agent_queues")
        .order_by(t.id)
    )
    latest: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for agent, payload in conn.execute(query):
            queues = payload.get("queues") if isinstance(payload, dict) else None
            if agent is not None and isinstance(queues, dict):
                latest[agent] = {str(q): int(p) for q, p in queues.items()}
    return latest


_OPEN_KINDS = (
    "caller_joined",
    "caller_connected",
    "caller_abandoned",
    "caller_overflowed",
    "callback_requested",
    "call_completed",
)
