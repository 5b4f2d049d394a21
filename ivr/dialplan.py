"""The IVR's entry points in the dialplan: one extension per entry (a DID or an internal
extension), which answers and hands the channel to a flow over AsyncAGI
(``AGI(agi:async,<flow>)``: the flow's name arrives as ``agi_arg_1``) or FastAGI
(``AGI(agi://host:port/<flow>)``: as ``agi_network_script``).

The IVR ends every flow with an AMI Redirect (to a queue's holding lane, voicemail, a
transfer) or a ``HANGUP``, so an AGI that returns with the caller still there means the
backend failed the caller: its FastAGI server could not be reached (``AGISTATUS=FAILURE``),
its connection dropped mid-flow (Asterisk reports a closed FastAGI connection as
``SUCCESS``), or it gave the channel back (an error, a shutdown). An entry with a
``fallback_queue`` then sends the caller to that queue's holding spot (the one the IVR
redirects to), so nobody is lost; without one the entry hangs up. An AsyncAGI channel never
returns by itself when the backend dies: the restarted backend finds it in the AMI snapshot
and runs its flow again (cti.calls.model, ivr.asyncagi).

:func:`ivr_entry_dialplan` takes the entries as a list so the process can pass them from its
IVR settings; :func:`queue_holding` gives each queue's holding spot. No entries, no IVR
context. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from acd.config import AcdConfig
from acd.dialplan import (
    Context,
    Destination,
    DialplanError,
    DialplanOptions,
    HoldingSpot,
    Step,
    holding_spots,
)

__all__ = ["IVR_ENTRY_CONTEXT", "IvrEntry", "ivr_entry_dialplan", "queue_holding"]

#: The context of the IVR's entry extensions.
IVR_ENTRY_CONTEXT = "ivr-entry"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_EXTEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+*#._-]*$")

Transport = Literal["asyncagi", "fastagi"]


@dataclass(frozen=True, slots=True)
class IvrEntry:
    """``entry`` (a DID of the inbound context, or an extension) runs ``flow`` over
    ``transport``; a caller the backend fails goes to ``fallback_queue`` (None: hangs up)."""

    entry: str
    flow: str
    transport: Transport
    fallback_queue: str | None = None


def queue_holding(config: AcdConfig, options: DialplanOptions) -> dict[str, HoldingSpot]:
    """Each queue's plain holding spot of its first lane (``dialled`` for a queue without
    lanes): where the IVR redirects the queue's callers, and where a fallback sends them."""
    spots = holding_spots(config, options)
    holding: dict[str, HoldingSpot] = {}
    for queue in config.queues.values():
        lane = queue.lanes[0] if queue.lanes else "dialled"
        holding[queue.name] = next(s for s in spots if s.lane == lane and not s.callback_offer)
    return holding


def ivr_entry_dialplan(
    entries: Sequence[IvrEntry],
    *,
    fastagi_host: str = "127.0.0.1",
    fastagi_port: int = 4573,
    context: str = IVR_ENTRY_CONTEXT,
    holding: Mapping[str, HoldingSpot] | None = None,
) -> tuple[list[Context], dict[str, Destination]]:
    """The entry context (none without entries) and the inbound routes (DID -> entry).
    ``holding``: each queue's holding spot (:func:`queue_holding`), for the entries'
    ``fallback_queue``; :class:`~acd.dialplan.DialplanError` for a fallback without one."""
    if not entries:
        return [], {}
    holding = holding or {}
    ivr = Context(
        context,
        "IVR entry points: the flow runs over AGI and ends by a Redirect (to the ACD's "
        "holding lanes) or a HANGUP, so a caller still here after AGI lost the backend: "
        "to the entry's fallback queue, else hung up",
    )
    routes: dict[str, Destination] = {}
    for item in entries:
        if not _EXTEN.match(item.entry):
            raise DialplanError(
                f"IVR entry {item.entry!r} (flow {item.flow!r}): not an extension name "
                "(letters, digits, + * # . -; not starting with _)"
            )
        if not _NAME.match(item.flow):
            raise DialplanError(
                f"IVR entry {item.entry}: flow name {item.flow!r} must be letters, digits, "
                "'_', '.', '-' (it goes into the AGI URL)"
            )
        if item.entry in ivr.extensions:
            raise DialplanError(f"IVR entry {item.entry} given twice: keep one flow per entry")
        if item.transport == "asyncagi":
            agi, how = f"agi:async,{item.flow}", "AsyncAGI"
        elif item.transport == "fastagi":
            agi, how = f"agi://{fastagi_host}:{fastagi_port}/{item.flow}", "FastAGI"
        else:
            raise DialplanError(
                f"IVR entry {item.entry}: transport {item.transport!r}; use asyncagi or fastagi"
            )
        fallback: list[Step] = []
        if item.fallback_queue is not None:
            spot = holding.get(item.fallback_queue)
            if spot is None:
                known = ", ".join(sorted(holding)) or "none"
                raise DialplanError(
                    f"IVR entry {item.entry}: fallback_queue {item.fallback_queue!r} is not a "
                    f"queue with a holding spot (queues: {known}); name one of them"
                )
            # FAILURE: the FastAGI server is unreachable. SUCCESS with the caller still
            # here: the connection dropped mid-flow, or the IVR gave the channel back.
            lost = '$["${AGISTATUS}" = "FAILURE" | "${AGISTATUS}" = "SUCCESS"]'
            fallback = [Step("GotoIf", f"{lost}?{spot.target()}")]
        ivr.extensions[item.entry] = [
            Step("NoOp", f"IVR flow {item.flow} over {how}"),
            Step("Answer"),
            Step("AGI", agi),
            Step("NoOp", f"IVR flow {item.flow} ended: AGISTATUS=${{AGISTATUS}}"),
            *fallback,
            Step("Hangup"),
        ]
        routes[item.entry] = Destination(context, item.entry)
    return [ivr], routes
