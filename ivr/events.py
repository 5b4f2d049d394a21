"""What the IVR service publishes on its event stream (:attr:`ivr.service.IvrService.events`):
a session began, a session is over. Frozen, JSON-ready through :meth:`to_record`.

The call model already reports the call's ``ivr_entered`` and each key as ``digits``; these
add what only the IVR knows: the flow, the nodes walked, the inputs as the flow read them,
the outcome and where the caller went.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

__all__ = ["IvrEvent", "IvrFinished", "IvrStarted"]


@dataclass(frozen=True, slots=True)
class IvrStarted:
    """``channel`` (of call ``call_id``, None when the call model does not know it) entered
    ``flow`` over ``transport`` (``asyncagi`` or ``fastagi``). ``restored``: the channel was
    found waiting in AsyncAGI in the PBX's snapshot after a (re)connect (the backend that
    drove it is gone), and its flow starts again from the start."""

    kind: ClassVar[str] = "ivr_started"
    at: float
    call_id: str | None
    channel: str
    flow: str
    transport: str
    restored: bool = field(default=False, kw_only=True)

    def to_record(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True, slots=True)
class IvrFinished:
    """The session is over. ``outcome`` is the interpreter's (``queued``, ``callback``,
    ``voicemail``, ``transferred``, ``ended``, ``retries_exhausted``, ``hung_up``,
    ``channel_gone``, ``agi_error``, ``flow_loop``); ``path`` the nodes entered
    (``flow.node``); ``digits`` each input keyed; ``queue`` where a ``queued`` or
    ``callback`` caller went; ``variables`` what was set on the channel with the route."""

    kind: ClassVar[str] = "ivr_finished"
    at: float
    call_id: str | None
    channel: str
    flow: str
    transport: str
    outcome: str
    path: tuple[str, ...]
    digits: tuple[str, ...]
    queue: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        record = {"kind": self.kind, **asdict(self)}
        record["path"], record["digits"] = list(self.path), list(self.digits)
        record["variables"] = dict(self.variables)
        return record


IvrEvent = IvrStarted | IvrFinished
