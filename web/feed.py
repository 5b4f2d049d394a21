"""A WebSocket feed's plumbing, shared by the screen pop's and the wallboard's sockets.

A feed socket sends ``{"token": "..."}`` first (a token in the URL would end up in access
logs): :func:`hello` answers the account, or closes with 4401 (no valid token within
:data:`HELLO_TIMEOUT` seconds). :func:`serve_feed` then sends the opening messages and
everything the domain publishes to the socket, through one queue per socket, until the
client leaves; a client more than ``max_queued`` messages behind is closed with 1013 (the
page reconnects and gets a fresh opening, so nothing it needs is lost).

Messages are mappings (sent as JSON) or text already encoded, so a domain that sends one
frame to many sockets encodes it once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from web.accounts import Account, Unauthenticated
from web.auth import account_for_token, accounts_of

__all__ = [
    "HELLO_TIMEOUT", "MAX_QUEUED", "RECHECK", "Message", "close_quietly", "hello", "serve_feed",
]  # fmt: skip

log = logging.getLogger(__name__)

#: Seconds a new feed socket has to send its token.
HELLO_TIMEOUT = 10.0
#: Messages queued for one slow socket before it is closed.
MAX_QUEUED = 256
#: Seconds between two checks that a feed's token still stands: a socket outlives neither
#: its token's expiry nor a log-out by more than this (closed with 4401).
RECHECK = 60.0

#: One frame: a mapping sent as JSON, or JSON text already encoded.
Message = Mapping[str, Any] | str


class _Signal:
    """What a feed's queue carries besides messages."""

    def __init__(self, name: str) -> None:
        self.name = name


#: The client left; the client fell too far behind; the token expired or was revoked.
_GONE, _BEHIND, _ENDED = _Signal("gone"), _Signal("behind"), _Signal("ended")


async def hello(socket: WebSocket) -> Account | None:
    """The account of the accepted socket's first message ``{"token": ...}``, or None once
    the socket is closed with 4401."""
    try:
        first = await asyncio.wait_for(socket.receive_json(), HELLO_TIMEOUT)
    except TimeoutError:
        await close_quietly(socket, 4401, 'send {"token": ...} first')
        return None
    except (WebSocketDisconnect, ValueError):
        await close_quietly(socket, 4401, 'the first message must be {"token": ...}')
        return None
    token = first.get("token") if isinstance(first, dict) else None
    if not isinstance(token, str) or not token:
        await close_quietly(socket, 4401, 'the first message must be {"token": ...}')
        return None
    try:
        account = await account_for_token(token, accounts_of(socket))
    except Unauthenticated:
        await close_quietly(socket, 4401, "invalid or expired token: log in again")
        return None
    socket.state.token = token  # for serve_feed's later checks
    return account


async def serve_feed(
    socket: WebSocket,
    *,
    connect: Callable[[Callable[[Message], None]], Callable[[], None]],
    opening: Callable[[], Iterable[Message]],
    what: str,
    max_queued: int = MAX_QUEUED,
) -> None:
    """Feed ``socket`` until it closes or falls behind.

    ``connect(send)`` subscribes ``send`` (called on the loop's thread for each message)
    and returns the unsubscribe; ``opening()`` is called in the same loop turn, so no
    message falls between it and the subscription. ``what`` names the socket in logs.
    """
    # One queue for everything the feed waits on, so a message costs one loop turn from
    # the publish to the socket write (a per-frame ``asyncio.wait`` on two futures took three).
    queue: asyncio.Queue[Message | _Signal] = asyncio.Queue()

    def send(message: Message) -> None:
        if queue.qsize() >= max_queued:
            queue.put_nowait(_BEHIND)  # too far behind: close; the client reconnects
            return
        queue.put_nowait(message)

    disconnect = connect(send)
    reader = asyncio.ensure_future(_drain(socket, queue))
    checker = asyncio.ensure_future(_still_valid(socket, queue, what))
    try:
        for message in opening():
            await _send(socket, message)
        while True:
            item = await queue.get()
            if item is _GONE:
                return
            if item is _BEHIND:
                log.warning("%s: the socket fell behind; closed it", what)
                await close_quietly(socket, 1013, "too far behind: reconnect")
                return
            if item is _ENDED:
                await close_quietly(socket, 4401, "the session ended: log in again")
                return
            assert not isinstance(item, _Signal)
            await _send(socket, item)
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        disconnect()
        reader.cancel()
        checker.cancel()


async def _still_valid(
    socket: WebSocket, queue: asyncio.Queue[Message | _Signal], what: str
) -> None:
    """Every :data:`RECHECK` seconds, end the feed once its token no longer stands."""
    token = getattr(socket.state, "token", None)
    if token is None:
        return
    while True:
        await asyncio.sleep(RECHECK)
        try:
            await account_for_token(token, accounts_of(socket))
        except Unauthenticated:
            queue.put_nowait(_ENDED)
            return
        except Exception as exc:  # the database is away: keep the feed, check again later
            log.warning("%s: could not check the token (%s); checking again later", what, exc)


async def _send(socket: WebSocket, message: Message) -> None:
    if isinstance(message, str):
        await socket.send_text(message)
    else:
        await socket.send_json(message)


async def _drain(socket: WebSocket, queue: asyncio.Queue[Message | _Signal]) -> None:
    """Read (and ignore) what the client sends; tell the feed when it disconnects."""
    try:
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        queue.put_nowait(_GONE)


async def close_quietly(socket: WebSocket, code: int, reason: str) -> None:
    """Close ``socket``; a client already gone is no error."""
    with suppress(RuntimeError, WebSocketDisconnect):
        await socket.close(code, reason)
