"""The IVR's entry points in the dialplan: one extension per entry (a DID or an internal
extension), which answers and hands the channel to a flow over AsyncAGI
(``AGI(agi:async,<flow>)``: the flow's name arrives as ``agi_arg_1``) or FastAGI
(``AGI(agi://host:port/<flow>)``: as ``agi_network_script``).

The IVR routes a caller to a queue with an AMI Redirect to the queue's holding lane, so an
AGI that returns means the flow is over (hang-up, message left, or nothing to route): the
entry hangs up. :func:`ivr_entry_dialplan` takes the entries as a list so the process can
pass them from its IVR settings; no entries, no IVR context. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from acd.dialplan import Context, Destination, DialplanError, Step

__all__ = ["IVR_ENTRY_CONTEXT", "IvrEntry", "ivr_entry_dialplan"]

#: The context of the IVR's entry extensions.
IVR_ENTRY_CONTEXT = "ivr-entry"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_EXTEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+*#._-]*$")

Transport = Literal["asyncagi", "fastagi"]


@dataclass(frozen=True, slots=True)
class IvrEntry:
    """``entry`` (a DID of the inbound context, or an extension) runs ``flow`` over
    ``transport``."""

    entry: str
    flow: str
    transport: Transport


def ivr_entry_dialplan(
    entries: Sequence[IvrEntry],
    *,
    fastagi_host: str = "127.0.0.1",
    fastagi_port: int = 4573,
    context: str = IVR_ENTRY_CONTEXT,
) -> tuple[list[Context], dict[str, Destination]]:
    """The entry context (none without entries) and the inbound routes (DID -> entry)."""
    if not entries:
        return [], {}
    ivr = Context(
        context,
        "IVR entry points: the flow runs over AGI; it Redirects callers to "
        "the ACD's holding lanes, so an AGI that returns ends the call",
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
        ivr.extensions[item.entry] = [
            Step("NoOp", f"IVR flow {item.flow} over {how}"),
            Step("Answer"),
            Step("AGI", agi),
            Step("NoOp", f"IVR flow {item.flow} ended: AGISTATUS=${{AGISTATUS}}"),
            Step("Hangup"),
        ]
        routes[item.entry] = Destination(context, item.entry)
    return [ivr], routes
