"""The ACD's events: every state change of a caller in a queue and of an agent, with its
time, for live figures, history and supervisors. The call model's events (``cti.calls``)
say what happened on the PBX; these say what the ACD did about it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class AcdEvent:
    """Base: ``at`` is epoch seconds (the PBX's time where the cause was a PBX event)."""

    kind: ClassVar[str] = "acd"
    at: float

    def to_record(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True, slots=True)
class CallerJoined(AcdEvent):
    kind: ClassVar[str] = "caller_joined"
    call_id: str
    queue: str
    tier: str
    position: int


@dataclass(frozen=True, slots=True)
class CallerOffered(AcdEvent):
    kind: ClassVar[str] = "caller_offered"
    call_id: str
    queue: str
    agents: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CallerConnected(AcdEvent):
    """An agent answered; ``wait`` from join to answer (seconds)."""

    kind: ClassVar[str] = "caller_connected"
    call_id: str
    queue: str
    agent: str
    wait: float


@dataclass(frozen=True, slots=True)
class CallerAbandoned(AcdEvent):
    kind: ClassVar[str] = "caller_abandoned"
    call_id: str
    queue: str
    wait: float
    position: int | None


@dataclass(frozen=True, slots=True)
class CallerOverflowed(AcdEvent):
    kind: ClassVar[str] = "caller_overflowed"
    call_id: str
    queue: str
    wait: float
    target: str
    reason: str


@dataclass(frozen=True, slots=True)
class CallCompleted(AcdEvent):
    """A connected call ended; ``talk_time`` from answer to hang-up (seconds)."""

    kind: ClassVar[str] = "call_completed"
    call_id: str
    queue: str
    agent: str
    talk_time: float


@dataclass(frozen=True, slots=True)
class AgentStateChanged(AcdEvent):
    """``state``: available, ringing, on_call, wrap_up, paused, logged_out."""

    kind: ClassVar[str] = "agent_state"
    agent: str
    state: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OfferNotAnswered(AcdEvent):
    """``agent`` did not take the offer of ``call_id``: ``reason`` is ``timeout`` (rang out)
    or what the PBX reported (busy, Originate failed...). The caller keeps its place."""

    kind: ClassVar[str] = "offer_not_answered"
    call_id: str
    queue: str
    agent: str
    reason: str


@dataclass(frozen=True, slots=True)
class CallbackRequested(AcdEvent):
    """The caller ``call_id`` left a callback request ``request_id`` for ``number`` in
    ``queue``; the request holds the caller's place and score."""

    kind: ClassVar[str] = "callback_requested"
    call_id: str
    queue: str
    request_id: str
    number: str
