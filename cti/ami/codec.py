"""Sans-I/O codec for the Asterisk Manager Interface (AMI).

Bytes go in, :class:`Message` objects come out; headers go in, bytes come out. No sockets,
no clocks. It copes with what a real Asterisk 22 sends (see ``shared/ami-captures``):

* a banner line (``Asterisk Call Manager/11.0.0``) that is *not* followed by a blank line,
  also in the middle of a stream when several connections are recorded back to back;
* duplicate keys (``ChanVariable``, ``Variable``) kept in wire order;
* keys whose case varies (``CommandID``/``CommandId``, ``BridgeId``/``BridgeID``): look-ups
  are case-insensitive;
* empty values (``AccountCode: ``) and ``<unknown>`` placeholders, kept verbatim;
* UTF-8 split across reads (frames are decoded only once complete);
* lines that are not ``Key: value`` and frames that never end: reported, never fatal.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import overload

BANNER_PREFIX = "Asterisk Call Manager/"
_TERMINATOR = b"\r\n\r\n"
_BANNER_PREFIX_B = BANNER_PREFIX.encode()

#: A frame larger than this without a terminator is discarded as garbage (a real AMI
#: frame is a few kilobytes; ``Status`` with ``AllVariables`` stays well under this).
DEFAULT_MAX_FRAME = 1 << 20


@dataclass(slots=True)
class Message:
    """One AMI frame: an event, a response, an action, or the connection banner.

    ``headers`` keeps every ``(key, value)`` pair in wire order, duplicates included.
    ``problems`` lists what was wrong with the frame (lines without a colon, bytes that
    were not UTF-8); such a frame is still delivered with everything that could be read.
    """

    headers: list[tuple[str, str]]
    banner: str | None = None
    # A tuple, so the common frame with no problems shares one empty value.
    problems: tuple[str, ...] = ()
    _index: dict[str, str] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def make_banner(cls, text: str) -> Message:
        """A banner pseudo-message (``Asterisk Call Manager/11.0.0``)."""
        return cls(headers=[], banner=text)

    @property
    def kind(self) -> str:
        """``banner``, ``event``, ``response``, ``action`` or ``unknown``."""
        if self.banner is not None:
            return "banner"
        if not self.headers:
            return "unknown"
        first = self.headers[0][0].lower()
        if first in ("event", "response", "action"):
            return first
        return "unknown"

    @property
    def name(self) -> str:
        """The value of the first header (``Event``, ``Response`` or ``Action``)."""
        if self.banner is not None:
            return self.banner
        return self.headers[0][1] if self.headers else ""

    def _lookup(self) -> dict[str, str]:
        index = self._index
        if index is None:
            index = {}
            for key, value in self.headers:
                index.setdefault(key.lower(), value)
            self._index = index
        return index

    @overload
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: str) -> str: ...
    @overload
    def get(self, key: str, default: str | None) -> str | None: ...

    def get(self, key: str, default: str | None = None) -> str | None:
        """First value of ``key`` (case-insensitive), or ``default``."""
        return self._lookup().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return self._lookup()[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._lookup()

    def get_all(self, key: str) -> list[str]:
        """Every value of ``key`` (case-insensitive), in wire order."""
        low = key.lower()
        return [v for k, v in self.headers if k.lower() == low]

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    def variables(self) -> dict[str, str]:
        """Channel variables carried by the frame, as ``NAME -> value``.

        Covers ``ChanVariable: NAME=value``, ``Variable: NAME=value`` (``Status`` with
        ``AllVariables``) and ``ChanVariable(<channel>): NAME=value`` (``OriginateResponse``).
        """
        out: dict[str, str] = {}
        for key, value in self.headers:
            low = key.lower()
            if low in ("chanvariable", "variable") or low.startswith("chanvariable("):
                name, sep, val = value.partition("=")
                if sep:
                    out[name] = val
        return out

    def to_bytes(self) -> bytes:
        """The frame as it goes on the wire."""
        if self.banner is not None:
            return self.banner.encode() + b"\r\n"
        return encode(self.headers)


# C0 controls, DEL, C1 controls (NEL and CSI among them) and the Unicode line and paragraph
# separators: what could end a log line or steer a terminal, shown as visible escapes.
_LOG_ESCAPES = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))},
    ord("\r"): "\\r",
    ord("\n"): "\\n",
    ord("\t"): "\\t",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def for_log(value: object) -> str:
    """``value`` as text that stays on one log line: CR, LF, ESC and the other control
    characters become visible escapes (``\\r``, ``\\n``, ``\\x1b``).

    Everything the PBX sends is untrusted: a bare LF inside an AMI value would otherwise
    start a forged line in the log, and an ESC sequence would steer the terminal showing it.
    Use it on every PBX-provided value (or frame excerpt) a log call prints with ``%s``.
    """
    text = value if isinstance(value, str) else str(value)
    if text.isascii() and text.isprintable():
        return text
    return text.translate(_LOG_ESCAPES)


class FrameError(ValueError):
    """Headers that cannot be sent: a CR or LF in a key or value would inject a frame."""


def encode(headers: Iterable[tuple[str, str]]) -> bytes:
    """Serialise headers into one AMI frame (CRLF lines, blank-line terminator)."""
    parts: list[str] = []
    for key, value in headers:
        value = str(value)
        if "\r" in key or "\n" in key or "\r" in value or "\n" in value or ":" in key:
            raise FrameError(f"header {key!r} cannot be sent: CR, LF or ':' in it")
        parts.append(f"{key}: {value}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode()


def encode_action(action: str, fields: Iterable[tuple[str, str]] = (), **kw: str) -> bytes:
    """``Action: <action>`` followed by ``fields`` then keyword fields."""
    return encode([("Action", action), *fields, *kw.items()])


class Parser:
    """Incremental AMI frame parser: ``feed(bytes)`` returns the messages completed.

    One parser per TCP connection. ``expect_banner`` is true at connection start (client
    side); a server-side parser reading actions passes ``False``.
    """

    __slots__ = ("_buf", "_expect_banner", "_max_frame", "_scanned", "_skipping", "dropped_bytes")

    def __init__(self, *, expect_banner: bool = True, max_frame: int = DEFAULT_MAX_FRAME):
        self._buf = bytearray()
        self._expect_banner = expect_banner
        self._max_frame = max_frame
        self._skipping = False
        # How far the buffer is known to hold no terminator: a frame that arrives a few
        # bytes at a time is then scanned once, not once per read.
        self._scanned = 0
        #: Bytes discarded because a frame exceeded ``max_frame``.
        self.dropped_bytes = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        """The messages that ``data`` completes, in order (often none)."""
        # The frames of one read are built from thousands of small acyclic objects; the
        # cyclic collector would run every few hundred of them and could find nothing to
        # free. Pausing it for the read (then letting it run as usual) saves a fifth of
        # the parser's time; the allocations still count towards the next collection.
        if gc.isenabled():
            gc.disable()
            try:
                return self._feed(data)
            finally:
                gc.enable()
        return self._feed(data)

    def _feed(self, data: bytes) -> list[Message]:
        buf = self._buf
        buf += data
        out: list[Message] = []
        if self._expect_banner:
            nl = buf.find(b"\r\n")
            if nl < 0:
                if len(buf) > 512:
                    # No banner after this many bytes: not an AMI server, parse anyway.
                    self._expect_banner = False
                else:
                    return out
            else:
                self._expect_banner = False
                banner = bytes(buf[:nl])
                if banner.startswith(_BANNER_PREFIX_B):
                    out.append(Message.make_banner(banner.decode("utf-8", "replace")))
                    del buf[: nl + 2]
        if buf.find(_TERMINATOR, max(0, self._scanned - 3)) < 0:
            self._scanned = len(buf)
            self._check_size(out)
            return out
        self._scanned = 0
        # bytearray.split hands out the frames and the unterminated rest without copying
        # the buffer first; the rest (a bytearray) becomes the new buffer.
        frames = buf.split(_TERMINATOR)
        self._buf = frames.pop()
        if self._skipping:
            # The tail of an oversized frame: drop it, resume at the next frame.
            self._skipping = False
            self.dropped_bytes += len(frames[0])
            frames[0] = bytearray()
        append = out.append
        for frame in frames:
            if not frame:
                continue
            # The fast path, for nearly every frame: decode each frame on its own (an
            # ASCII frame stays a cheap one-byte string even beside a UTF-8 caller name).
            # A banner glued to a frame has no ": " in its first line, so it too ends up
            # on the careful path.
            try:
                lines = frame.decode("utf-8").split("\r\n")
            except UnicodeDecodeError:
                out.extend(_parse_frame(bytes(frame)))
                continue
            headers: list[tuple[str, str]] = []
            add = headers.append
            for line in lines:
                key, sep, value = line.partition(": ")
                if not sep:
                    break
                add((key, value))
            else:
                append(Message(headers))
                continue
            # Bad UTF-8, a line that is not "Key: value", a banner: the careful path.
            out.extend(_parse_frame(bytes(frame)))
        self._check_size(out)
        return out

    def _check_size(self, out: list[Message]) -> None:
        if len(self._buf) > self._max_frame:
            # Keep the last three bytes: they may be the start of the terminator that ends
            # the oversized frame, whose rest arrives with the next read.
            dropped = len(self._buf) - 3
            self.dropped_bytes += dropped
            out.append(
                Message(
                    headers=[],
                    problems=(
                        f"frame larger than {self._max_frame} bytes without a blank-line "
                        f"terminator; {dropped} bytes discarded",
                    ),
                )
            )
            self._buf = self._buf[-3:]
            self._scanned = 0
            self._skipping = True

    def close(self) -> list[Message]:
        """End of stream: whatever is buffered is an incomplete frame, returned as such."""
        if not self._buf.strip():
            self._buf.clear()
            return []
        msgs = _parse_frame(bytes(self._buf))
        self._buf.clear()
        for m in msgs:
            if m.banner is None:
                m.problems += ("connection closed before the frame's blank-line terminator",)
        return msgs


def _parse_frame(chunk: bytes) -> list[Message]:
    """The careful path: banners glued to a frame, bad UTF-8, lines that are not
    ``Key: value``."""
    out: list[Message] = []
    try:
        text = chunk.decode("utf-8")
        problems: list[str] = []
    except UnicodeDecodeError as exc:
        # Keep every byte (latin-1 maps each byte to one code point) and say so.
        text = chunk.decode("latin-1")
        problems = [f"frame is not valid UTF-8 ({exc.reason} at byte {exc.start}); read as Latin-1"]
    lines = text.split("\r\n")
    if lines[0].startswith(BANNER_PREFIX) and ":" not in lines[0]:
        # A new connection's banner, glued to its first frame (recordings of several
        # connections, or a server that restarted on the same stream).
        out.append(Message.make_banner(lines.pop(0)))
        if not lines or lines == [""]:
            return out
    headers: list[tuple[str, str]] = []
    append = headers.append
    for line in lines:
        key, sep, value = line.partition(": ")
        if sep:
            append((key, value))
            continue
        if line.endswith(":"):
            append((line[:-1], ""))
        elif line:
            # Not "Key: value". Asterisk writes "Key:value" nowhere, but a proxy might.
            k2, sep2, v2 = line.partition(":")
            if sep2 and k2 and " " not in k2:
                append((k2, v2.lstrip()))
            else:
                problems.append(f"line without 'Key: value' kept as-is: {line[:120]!r}")
                append(("", line))
    out.append(Message(headers=headers, problems=tuple(problems)))
    return out
