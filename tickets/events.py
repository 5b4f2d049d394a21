"""The tickets' events, published on :attr:`tickets.service.TicketService.events` (an
:class:`~cti.stream.EventStream`, like the ACD's): what happened to which ticket, when, by
whom. Supervisors' pages and the history read them; ``at`` is epoch seconds."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

__all__ = [
    "SlaBreached",
    "SlaWarning",
    "TicketChanged",
    "TicketCreated",
    "TicketEscalated",
    "TicketEvent",
]


@dataclass(frozen=True, slots=True)
class TicketEvent:
    """Base: the ticket (id and number for people) and when."""

    kind: ClassVar[str] = "ticket"
    at: float
    ticket_id: int
    number: str

    def to_record(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True, slots=True)
class TicketCreated(TicketEvent):
    kind: ClassVar[str] = "ticket_created"
    by: str
    customer_id: str | None
    category: str
    priority: str
    queue: str | None


@dataclass(frozen=True, slots=True)
class TicketChanged(TicketEvent):
    """Fields changed (``status``, ``subject``, ``comment``, ``call``, ``merged_into`` ...);
    ``status`` and ``version`` are the ticket's after the change."""

    kind: ClassVar[str] = "ticket_changed"
    by: str
    fields: tuple[str, ...]
    status: str
    version: int


@dataclass(frozen=True, slots=True)
class SlaWarning(TicketEvent):
    """A deadline (``first_response`` or ``resolution``) is near: due at ``due``."""

    kind: ClassVar[str] = "sla_warning"
    deadline: str
    due: float


@dataclass(frozen=True, slots=True)
class SlaBreached(TicketEvent):
    """A deadline passed unmet."""

    kind: ClassVar[str] = "sla_breached"
    deadline: str
    due: float


@dataclass(frozen=True, slots=True)
class TicketEscalated(TicketEvent):
    """Given to ``group`` (the supervisors') because of ``reason``."""

    kind: ClassVar[str] = "ticket_escalated"
    group: str
    reason: str
