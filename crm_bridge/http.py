"""The screen pop's HTTP and WebSocket routes (built from the bridge's service).

* ``WS /api/v1/pops`` — an agent's pop feed. The client sends ``{"token": "..."}`` first
  (a token in the URL would end up in access logs); the server answers
  ``{"type": "hello", "agent": "6001"}``, then the pop of the call in progress if there is
  one (a reconnect), then every pop frame for this agent and nobody else:
  ``{"type": "pop", "pop": {...}}``. Refusals close the socket with 4401 (no valid token
  within 10 seconds) or 4403 (the account is no agent's).
* ``GET /api/v1/pops/current`` — the same pop over HTTP (null when there is none).
* ``GET /api/v1/calls/{call_id}/pop`` — a call's pop, for the agent it rings or talks to.
* ``POST /api/v1/calls/{call_id}/customer`` — pick one of several candidates.
* ``POST /api/v1/calls/{call_id}/customer/new`` — create a customer for an unknown caller.
* ``POST /api/v1/calls/{call_id}/customer/attach`` — add the caller's number to a customer.
* ``GET /api/v1/customers?number=...`` — who has this number (agents and supervisors).

An agent acting on a call that is not theirs gets 403 and learns nothing of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field
from twisted.internet.defer import Deferred

from crm_bridge.errors import UnknownCustomer
from crm_bridge.numbers import NumberError, to_e164
from crm_bridge.pop import PopError
from crm_bridge.service import CrmBridgeService
from web.accounts import Account, Unauthenticated
from web.auth import account_for_token, accounts_of, require_role

__all__ = ["Choice", "NewCustomer", "pop_routes"]

log = logging.getLogger(__name__)

#: Seconds a new pop socket has to send its token.
HELLO_TIMEOUT = 10.0
#: Messages queued for one slow socket before it is closed (it reconnects and gets the
#: current pop again: nothing an agent needs is lost).
MAX_QUEUED = 256

T = TypeVar("T")

# Module-level: the routes' annotations are strings (PEP 563), resolved in this module.
agent_only = require_role("agent")
staff = require_role("agent", "supervisor", "admin")


class Choice(BaseModel):
    """A customer picked for the call."""

    customer_id: str = Field(min_length=1, max_length=64)


class NewCustomer(BaseModel):
    """A customer created for an unknown caller (the caller's number is added)."""

    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")


def pop_routes(service: CrmBridgeService, default_region: str) -> APIRouter:
    """The pop routes of ``service``; ``default_region`` reads numbers given without a
    country code in look-ups."""
    router = APIRouter(prefix="/api/v1", tags=["screen pop"])

    def agent_of(account: Account) -> str:
        if account.agent is None:
            raise HTTPException(403, f"account {account.username!r} is no agent's")
        return account.agent

    @router.get("/pops/current")
    async def current_pop(
        account: Annotated[Account, Depends(agent_only)],
    ) -> Mapping[str, Any] | None:
        """The pop of the agent's call in progress (ringing or talking), or null."""
        return service.current_pop(agent_of(account))

    @router.get("/calls/{call_id}/pop")
    async def call_pop(
        call_id: str, account: Annotated[Account, Depends(agent_only)]
    ) -> Mapping[str, Any]:
        """A call's pop, for the agent it rings or talks to."""
        return _refusing(lambda: service.pop_for(call_id, agent_of(account)))

    @router.post("/calls/{call_id}/customer")
    async def choose(
        call_id: str, body: Choice, account: Annotated[Account, Depends(agent_only)]
    ) -> Mapping[str, Any]:
        """Pick the customer among the call's candidates; the pop is updated."""
        return await _awaited(
            lambda: service.choose(call_id, agent_of(account), body.customer_id)
        )

    @router.post("/calls/{call_id}/customer/new", status_code=201)
    async def create(
        call_id: str, body: NewCustomer, account: Annotated[Account, Depends(agent_only)]
    ) -> Mapping[str, Any]:
        """Create a customer with the caller's number; the pop shows it."""
        return await _awaited(
            lambda: service.create_for_call(call_id, agent_of(account), body.name, body.email)
        )

    @router.post("/calls/{call_id}/customer/attach")
    async def attach(
        call_id: str, body: Choice, account: Annotated[Account, Depends(agent_only)]
    ) -> Mapping[str, Any]:
        """Add the caller's number to an existing customer; the pop shows that customer."""
        return await _awaited(
            lambda: service.attach_to_call(call_id, agent_of(account), body.customer_id)
        )

    @router.get("/customers")
    async def customers_on(
        number: Annotated[str, Query(min_length=2, max_length=32)],
        account: Annotated[Account, Depends(staff)],
    ) -> list[dict[str, Any]]:
        """The customers on a phone number (any usual notation; E.164 is safest)."""
        try:
            e164 = to_e164(number, default_region)
        except NumberError as exc:
            raise HTTPException(422, f"query.number: {exc}") from None
        return await _awaited(lambda: service.lookup(e164))

    @router.websocket("/pops")
    async def pop_feed(socket: WebSocket) -> None:
        await socket.accept()
        account = await _hello(socket)
        if account is None:
            return
        if account.role != "agent" or account.agent is None:
            await socket.close(4403, "this account is no agent's: pops go to agents")
            return
        await _feed(socket, service, account.agent)

    return router


async def _hello(socket: WebSocket) -> Account | None:
    """The account of the socket's first message ``{"token": ...}``, or None (closed)."""
    try:
        first = await asyncio.wait_for(socket.receive_json(), HELLO_TIMEOUT)
    except TimeoutError:
        await socket.close(4401, "send {\"token\": ...} first")
        return None
    except (WebSocketDisconnect, ValueError):
        await _close_quietly(socket, 4401, "the first message must be {\"token\": ...}")
        return None
    token = first.get("token") if isinstance(first, dict) else None
    if not isinstance(token, str) or not token:
        await socket.close(4401, "the first message must be {\"token\": ...}")
        return None
    try:
        return await account_for_token(token, accounts_of(socket))
    except Unauthenticated:
        await socket.close(4401, "invalid or expired token: log in again")
        return None


async def _feed(socket: WebSocket, service: CrmBridgeService, agent: str) -> None:
    """Send ``agent``'s pops until the socket closes (or falls too far behind)."""
    # One queue for everything the feed waits on, so a pop costs one loop turn from the
    # reactor's publish to the socket write: a per-frame ``asyncio.wait`` on two futures
    # took three, each behind whatever AMI read the loop was busy with.
    queue: asyncio.Queue[Mapping[str, Any] | str] = asyncio.Queue()

    def send(pop: Mapping[str, Any]) -> None:
        if queue.qsize() >= MAX_QUEUED:
            queue.put_nowait(_BEHIND)  # too far behind: close; the client reconnects
            return
        queue.put_nowait(pop)

    disconnect = service.sessions.connect(agent, send)
    reader = asyncio.ensure_future(_drain(socket, queue))
    try:
        await socket.send_json({"type": "hello", "agent": agent})
        current = service.current_pop(agent)
        if current is not None:
            await socket.send_json({"type": "pop", "pop": current})
        while True:
            pop = await queue.get()
            if pop == _GONE:
                return
            if pop == _BEHIND:
                log.warning("screen pop: agent %s's socket fell behind; closed it", agent)
                await socket.close(1013, "too far behind: reconnect")
                return
            await socket.send_json({"type": "pop", "pop": pop})
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        disconnect()
        reader.cancel()


#: What the feed's queue carries besides pops: the client left; the client fell behind.
_GONE, _BEHIND = "gone", "behind"


async def _drain(socket: WebSocket, queue: asyncio.Queue[Mapping[str, Any] | str]) -> None:
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


async def _close_quietly(socket: WebSocket, code: int, reason: str) -> None:
    with suppress(RuntimeError, WebSocketDisconnect):  # the client is gone already
        await socket.close(code, reason)


@contextmanager
def _refusals() -> Iterator[None]:
    """The pop core's and the store's refusals, as HTTP errors."""
    try:
        yield
    except PopError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except UnknownCustomer as exc:
        raise HTTPException(404, str(exc)) from None


def _refusing(act: Callable[[], T]) -> T:
    with _refusals():
        return act()


async def _awaited(act: Callable[[], Deferred[T]]) -> T:
    """The result of the Deferred ``act()`` returns, awaited on the running loop (the
    reactor's: Twisted runs on asyncio)."""
    with _refusals():
        return await act().asFuture(asyncio.get_running_loop())
