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
class AgentQueuesChanged(AcdEvent):
    """A supervisor changed the queues ``agent`` serves: ``queues`` maps each queue to the
    agent's penalty there (all of them, not a difference); ``by`` is the account."""

    kind: ClassVar[str] = "agent_queues"
    agent: str
    queues: dict[str, int]
    by: str


@dataclass(frozen=True, slots=True)
class CallDisposed(AcdEvent):
    """``agent`` wrapped up ``call_id`` of ``queue`` with a ``disposition`` (one of the
    configured ones) and an optional free-text ``note``."""

    kind: ClassVar[str] = "call_disposed"
    call_id: str
    queue: str
    agent: str
    disposition: str
    note: str | None = None


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


@dataclass(frozen=True, slots=True)
class CallbackDialling(AcdEvent):
    """``agent`` answered callback request ``call_id`` (the request id): the customer at
    ``number`` is being dialled, ``attempt`` counting from 1. The request is connected only
    when the customer answers (:class:`CallerConnected`), else :class:`CallbackFailed`."""

    kind: ClassVar[str] = "callback_dialling"
    call_id: str
    queue: str
    agent: str
    number: str
    attempt: int


@dataclass(frozen=True, slots=True)
class CallbackFailed(AcdEvent):
    """The customer of callback request ``call_id`` was not reached: ``reason`` is the
    dial's status (``BUSY``, ``NOANSWER``, ``CONGESTION``, ``CHANUNAVAIL``, ``CANCEL``) or
    what else ended the attempt. The agent is free again (no missed offer: it answered).
    ``retry_at``: when the request, with its place kept, is offered again; None when that
    was the queue's last attempt (:class:`CallbackGivenUp` follows)."""

    kind: ClassVar[str] = "callback_failed"
    call_id: str
    queue: str
    agent: str
    reason: str
    attempt: int
    retry_at: float | None


@dataclass(frozen=True, slots=True)
class CallbackGivenUp(AcdEvent):
    """Callback request ``call_id`` is dropped after ``attempts`` failed dials of ``number``
    (the last one's ``reason``): neither answered nor abandoned, counted apart."""

    kind: ClassVar[str] = "callback_given_up"
    call_id: str
    queue: str
    number: str
    attempts: int
    reason: str


@dataclass(frozen=True, slots=True)
class CallbackNotOffered(AcdEvent):
    """Caller ``call_id`` of ``queue`` was due to overflow to a callback (``reason``: why it
    overflowed) but has no number to call (withheld or unknown), so none is promised: it
    went to the overflow's ``fallback`` (a queue or mailbox), or, with none configured
    (``fallback`` None), it keeps waiting in its place."""

    kind: ClassVar[str] = "callback_not_offered"
    call_id: str
    queue: str
    reason: str
    fallback: str | None
