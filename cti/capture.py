"""Reading recorded AMI traffic, so the live call model also runs on recordings.

One handler, two runners (as in cacofonisk): the AMI client feeds a :class:`CallModel` from
a socket; :func:`replay` feeds the same model from a ``.jsonl`` or ``.raw`` capture (the
real Asterisk recordings are in ``tests/captures``), including the resync a client performs
after a reconnect.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cti.ami.codec import Message, Parser
from cti.calls.events import CallEvent, PbxEvent
from cti.calls.model import CallModel

#: Event-list items a reconnecting client collects, by the action that asked for them.
RESYNC_ITEMS = {
    "CoreShowChannel": "CoreShowChannels",
    "BridgeListItem": "BridgeList",
    "QueueParams": "QueueStatus",
    "QueueMember": "QueueStatus",
    "QueueEntry": "QueueStatus",
    "Status": "Status",
    "ExtensionStatus": "ExtensionStateList",
}
_RESYNC_DONE = {
    "CoreShowChannelsComplete",
    "BridgeListComplete",
    "QueueStatusComplete",
    "StatusComplete",
}
#: What Asterisk sends on its own right after a login, before any answer to a resync.
_LOGIN_EVENTS = {"FullyBooted", "SuccessfulAuth", "ChallengeSent"}


@dataclass(frozen=True, slots=True)
class Received:
    """One message as it arrived: receive time (``None`` if unknown) and connection (1, 2…)."""

    message: Message
    received_at: float | None
    connection: int


def captures_dir() -> Path:
    """Where the recordings are: ``$CALLCENTER_CAPTURES``, else the repository's own copy in
    ``tests/captures`` (the one definition every test and bench reads)."""
    env = os.environ.get("CALLCENTER_CAPTURES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "tests" / "captures"


class CaptureError(ValueError):
    """A file that is not a capture; the message names the file and the line."""


#: What a capture is, for error messages.
_WHAT_A_CAPTURE_IS = (
    "a capture is a .jsonl file of recorded AMI records or a .raw file of AMI bytes "
    "(see tests/captures)"
)


def read_jsonl(path: Path) -> Iterator[Received]:
    """The received records of a ``.jsonl`` capture (actions and notes are skipped).
    A line that is not a capture record raises :class:`CaptureError` naming the line."""
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            received = _jsonl_record(path, number, line)
            if received is not None:
                yield received


def _jsonl_record(path: Path, number: int, line: bytes) -> Received | None:
    def refuse(problem: str) -> CaptureError:
        return CaptureError(f"{path}: line {number}: {problem}; {_WHAT_A_CAPTURE_IS}")

    try:
        rec = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise refuse("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise refuse(f"not a JSON record ({exc.msg})") from None
    if not isinstance(rec, dict):
        raise refuse(f"a JSON {type(rec).__name__}, not a capture record (an object)")
    if rec.get("dir") != "in":
        return None
    ts, conn = rec.get("ts"), rec.get("conn")
    if not (ts is None or isinstance(ts, int | float)) or not (
        conn is None or isinstance(conn, int)
    ):
        raise refuse("'ts' must be a number and 'conn' an integer")
    if rec.get("kind") == "banner":
        return Received(Message.make_banner(str(rec.get("text", ""))), ts, conn or 1)
    headers = rec.get("headers", [])
    if not isinstance(headers, list) or not all(
        isinstance(h, list) and len(h) == 2 and all(isinstance(x, str) for x in h)
        for h in headers
    ):
        raise refuse("'headers' is not a list of [key, value] pairs of strings")
    return Received(Message(headers=[(k, v) for k, v in headers]), ts, conn or 1)


def read_raw(data: bytes, chunk_sizes: Iterable[int] = ()) -> Iterator[Received]:
    """Parse the bytes of a ``.raw`` capture, read in ``chunk_sizes`` pieces (one read if
    none; the rest in one read when the sizes run out). Each banner starts a connection."""
    parser = Parser()
    connection = 0
    pos = 0
    sizes = iter(chunk_sizes)
    while pos < len(data):
        size = max(1, next(sizes, len(data)))
        for msg in parser.feed(data[pos : pos + size]):
            if msg.banner is not None:
                connection += 1
            yield Received(msg, None, max(connection, 1))
        pos += size
    for msg in parser.close():
        yield Received(msg, None, max(connection, 1))


def read(path: Path) -> Iterator[Received]:
    """A ``.jsonl`` or ``.raw`` capture, by its suffix."""
    if path.suffix == ".raw":
        return read_raw(path.read_bytes())
    return read_jsonl(path)


def replay(
    records: Path | Iterable[Received], model: CallModel, *, devices: bool = False
) -> list[Any]:
    """Feed a recording to ``model`` the way the live client does; return every call event
    (and device state change, with ``devices``).

    Every connection starts as a login does: the resync lists that answer it
    (``CoreShowChannel``, ``QueueEntry``…) are collected and handed to
    :meth:`CallModel.resync` once all four are complete, or when the connection ends;
    events arriving meanwhile are handled after the resync. A connection whose first live
    event comes before any resync list made none (a recording of a session's own
    actions), and its events are handled as they come. So a connection recorded from a
    backend started mid-traffic replays on its own to the calls the PBX had then.
    """
    if isinstance(records, Path):
        records = read(records)
    events: list[PbxEvent] = []
    collecting: dict[str, list[Message]] | None = None
    done: set[str] = set()
    held: list[Received] = []
    now = 0.0

    def finish_resync() -> None:
        nonlocal collecting
        if collecting is not None and done:
            events.extend(model.resync(collecting, now))
        elif collecting:  # live events that looked like list items, and no resync came
            for msg in (m for items in collecting.values() for m in items):
                events.extend(model.handle(msg))
        collecting = None
        for rec in held:
            events.extend(model.handle(rec.message, rec.received_at))
        held.clear()

    for rec in records:
        msg = rec.message
        if rec.received_at is not None:
            now = rec.received_at
        elif (stamp := msg.get("Timestamp")) is not None:
            with contextlib.suppress(ValueError):
                now = float(stamp)
        if msg.banner is not None:
            finish_resync()
            collecting, done = {}, set()
            continue
        if collecting is None or msg.kind != "event" or msg.name in _LOGIN_EVENTS:
            events.extend(model.handle(msg, rec.received_at))
            continue
        action = RESYNC_ITEMS.get(msg.name)
        if action is not None:
            collecting.setdefault(action, []).append(msg)
        elif msg.name in _RESYNC_DONE:
            done.add(msg.name)
            if done == _RESYNC_DONE:
                finish_resync()
        elif not collecting and not done:
            # Live traffic before any resync answer: this connection made no resync.
            collecting = None
            events.extend(model.handle(msg, rec.received_at))
        else:
            held.append(rec)
    finish_resync()
    return events if devices else [e for e in events if isinstance(e, CallEvent)]
