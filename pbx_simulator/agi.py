"""The AGI wire format, sans I/O: the ``agi_*`` environment Asterisk opens with, and the
FastAGI client side of a connection (environment out, command lines in, results out)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .engine import Channel

FASTAGI_PORT = 4573


def agi_environment(
    ch: Channel, request: str, *, script: str | None = None, args: Sequence[str] = ()
) -> str:
    """The ``agi_*`` block ending in a blank line; FastAGI adds the ``agi_network`` lines,
    the application's arguments (``AGI(agi:async,a,b)``) come last as ``agi_arg_N``."""
    network = f"agi_network: yes\nagi_network_script: {script}\n" if script is not None else ""
    arguments = "".join(f"agi_arg_{n}: {arg}\n" for n, arg in enumerate(args, 1))
    return (
        f"{network}agi_request: {request}\nagi_channel: {ch.name}\nagi_language: en\n"
        f"agi_type: Local\nagi_uniqueid: {ch.uniqueid}\nagi_version: 22.10.1\n"
        f"agi_callerid: {ch.cid_num}\nagi_calleridname: {ch.cid_name}\nagi_callingpres: 0\n"
        f"agi_callingani2: 0\nagi_callington: 0\nagi_callingtns: 0\nagi_dnid: unknown\n"
        f"agi_rdnis: unknown\nagi_context: {ch.context}\nagi_extension: {ch.exten}\n"
        f"agi_priority: {ch.priority}\nagi_enhanced: 0.0\nagi_accountcode: \n"
        f"agi_threadid: 1\n{arguments}\n"
    )


def parse_agi_url(url: str) -> tuple[str, int, str]:
    """``agi://host[:port]/script`` -> (host, port, script)."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or FASTAGI_PORT, parts.path.lstrip("/")


@dataclass(eq=False)
class FastAgiSession:
    """One FastAGI connection as Asterisk (the client) sees it: bytes from the server
    become command lines; results go back as ``200 result=...`` lines."""

    _buffer: bytes = b""

    def feed(self, data: bytes) -> list[str]:
        """Complete command lines received so far (CR LF or LF terminated)."""
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        text = [line.rstrip(b"\r").decode("utf-8", "replace") for line in lines]
        return [line for line in text if line.strip()]

    @staticmethod
    def reply(result: str) -> bytes:
        return f"{result}\n".encode()
