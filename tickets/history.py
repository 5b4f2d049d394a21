"""Ticket history: every ticket event (created, changed, SLA warnings and breaches,
escalations) persisted with its time, as the call and ACD events are, for reports and
replays beside them.

The table (``tickets.schema.ticket_events``) is created by migration 0007; the recorder is
the same spooled, outage-proof writer as the call and ACD histories'
(``cti.history.EventRecorder``): a database outage never holds up the service. The audit
trail (``ticket_changes``) stays the record of each change itself, written in the change's
transaction; this table is the event stream's own, in the shape every history consumer
already reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from cti.history import EventRecorder, spool_subdir
from tickets.events import TicketEvent
from tickets.schema import ticket_events

__all__ = ["TicketEventRecorder", "ticket_events"]


class TicketEventRecorder(EventRecorder[TicketEvent]):
    """Persists the ticket events of one backend (``pbx``) into ``ticket_events``."""

    def __init__(
        self,
        engine: Engine,
        reactor: Any,
        *,
        pbx: str = "default",
        spool_dir: Path | None = None,
        **options: Any,
    ):
        def row(event: TicketEvent) -> dict[str, Any]:
            return {
                "pbx": pbx,
                "kind": event.kind,
                "ticket_id": event.ticket_id,
                "call_id": None,
                "at": event.at,
                "payload": event.to_record(),
            }

        super().__init__(
            engine,
            reactor,
            ticket_events,
            row,
            name="ticket history",
            spool_dir=spool_subdir(spool_dir, ticket_events, pbx),
            **options,
        )
