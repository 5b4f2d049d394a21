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
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, WebSocket
from pydantic import BaseModel, Field
from twisted.internet.defer import Deferred

from crm_bridge.errors import UnknownCustomer
from crm_bridge.numbers import NumberError, to_e164
from crm_bridge.pop import PopError
from crm_bridge.service import CrmBridgeService
from web.accounts import Account
from web.auth import require_role
from web.feed import Message, close_quietly, hello, serve_feed

__all__ = ["Choice", "NewCustomer", "pop_routes"]

log = logging.getLogger(__name__)

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
        account = await hello(socket)
        if account is None:
            return
        if account.role != "agent" or account.agent is None:
            await close_quietly(socket, 4403, "this account is no agent's: pops go to agents")
            return
        await _feed(socket, service, account.agent)

    return router


async def _feed(socket: WebSocket, service: CrmBridgeService, agent: str) -> None:
    """Send ``agent``'s pops until the socket closes (or falls too far behind)."""

    def opening() -> list[Message]:
        current = service.current_pop(agent)  # a reconnect gets the call in progress
        hello = {"type": "hello", "agent": agent}
        return [hello] if current is None else [hello, {"type": "pop", "pop": current}]

    def connect(send: Callable[[Message], None]) -> Callable[[], None]:
        return service.sessions.connect(agent, lambda pop: send({"type": "pop", "pop": pop}))

    await serve_feed(socket, connect=connect, opening=opening, what=f"screen pop: agent {agent}")


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
