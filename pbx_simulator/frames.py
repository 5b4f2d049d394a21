"""Header blocks as Asterisk 22 writes them (field names and order from the captures)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from .engine import Bridge, Channel

Headers = list[tuple[str, str]]

STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}
CAUSE_TEXT = {
    0: "Unknown",
    16: "Normal Clearing",
    17: "User busy",
    19: "User alerting, no answer",
    21: "Call Rejected",
    127: "Interworking, unspecified",
}


def channel_block(ch: Channel, channelvars: tuple[str, ...], prefix: str = "") -> Headers:
    """The standard channel snapshot (``Channel`` ... ``ChanVariable``), optionally
    prefixed (``Dest``, ``LocalOne``, ``LocalTwo``)."""
    p = prefix
    out = [
        (f"{p}Channel", ch.name),
        (f"{p}ChannelState", str(ch.state)),
        (f"{p}ChannelStateDesc", STATE_DESC[ch.state]),
        (f"{p}CallerIDNum", ch.cid_num),
        (f"{p}CallerIDName", ch.cid_name),
        (f"{p}ConnectedLineNum", ch.conn_num),
        (f"{p}ConnectedLineName", ch.conn_name),
        (f"{p}Language", "en"),
        (f"{p}AccountCode", ""),
        (f"{p}Context", ch.context),
        (f"{p}Exten", ch.exten),
        (f"{p}Priority", str(ch.priority)),
        (f"{p}Uniqueid", ch.uniqueid),
        (f"{p}Linkedid", ch.linkedid),
    ]
    out += [(f"{p}ChanVariable", f"{v}={ch.variables.get(v, '')}") for v in channelvars]
    return out


def bridge_block(bridge: Bridge, prefix: str = "") -> Headers:
    p = prefix
    return [
        (f"{p}BridgeUniqueid", bridge.uniqueid),
        (f"{p}BridgeType", "basic"),
        (f"{p}BridgeTechnology", "simple_bridge"),
        (f"{p}BridgeCreator", "<unknown>"),
        (f"{p}BridgeName", "<unknown>"),
        (f"{p}BridgeNumChannels", str(len(bridge.channels))),
        (f"{p}BridgeVideoSourceMode", "none"),
    ]


def agi_quote(text: str) -> str:
    """URL-encoding as in AsyncAGI ``Env``/``Result`` (``200%20result%3D1%20(%2B1...)``)."""
    return quote(text, safe="()")


def timestamp(now: float) -> str:
    return f"{now:.6f}"
