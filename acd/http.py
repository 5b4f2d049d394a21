"""The ACD's HTTP routes: an agent's own desk, and supervisors acting on any agent.

* ``GET /api/v1/agent`` — the agent's state, since when, pause reason and current call;
* ``POST /api/v1/agent/login | available | pause {reason} | logout`` — each answers the
  new status;
* ``GET /api/v1/agents/{agent}``, ``POST /api/v1/agents/{agent}/pause | logout`` — the same
  for supervisors and admins, on any agent.

Only accounts with the role ``agent`` and an ACD agent use the desk (403 otherwise); an
agent the ACD configuration does not have is a 404 naming it; a command that does not fit
the agent's state (pausing on a call, logging in twice) a 409 saying why.

Threads: the endpoints are ``async``, so they run on the event loop, which is the reactor's
thread (``asyncioreactor``): the ACD is commanded where it must be. The account dependency
reads the database and is sync, so FastAPI runs it on its thread pool first. A command
returns a Deferred (with Redis it runs on the router's thread); the endpoint awaits it as
an asyncio future, and the loop serves other requests and calls meanwhile.

This module knows nothing of accounts: the process passes the dependency that answers who
the request is from (``web.auth.current_account``), anything with ``role`` and ``agent``.
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations, and
# those name the dependency passed to agent_routes, a local it could not resolve from text.

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, WebSocket, status
from pydantic import BaseModel, Field, StringConstraints
from twisted.internet.defer import Deferred

from web.feed import close_quietly, hello, serve_feed

from .agent_status import AgentStatus
from .errors import AcdError, AcdStateUnavailable, AgentStateError, UnknownAgent
from .service import AcdService

__all__ = ["AgentStatusOut", "CurrentCallOut", "PauseIn", "agent_routes", "wallboard_routes"]

#: Roles that may act on any agent.
SUPERVISING_ROLES = ("supervisor", "admin")


class Requester(Protocol):
    """Who a request is from, as the process's authentication dependency answers."""

    @property
    def role(self) -> str: ...

    @property
    def agent(self) -> str | None: ...


class PauseIn(BaseModel):
    # Printable text only: the reason goes into events, history and supervisors' pages.
    reason: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$"
        ),
    ] = Field(description="why the agent pauses, e.g. lunch, training (1 to 64 characters)")


class CurrentCallOut(BaseModel):
    call_id: str
    queue: str
    caller_number: str | None
    caller_name: str | None
    since: datetime


class AgentStatusOut(BaseModel):
    agent: str
    state: str = Field(description="available, ringing, on_call, wrap_up, paused or logged_out")
    reason: str | None = Field(description="the pause reason, when paused")
    since: datetime | None = Field(description="when the agent entered the state")
    call: CurrentCallOut | None

    @classmethod
    def of(cls, s: AgentStatus) -> "AgentStatusOut":
        call = None
        if s.call is not None:
            call = CurrentCallOut(
                call_id=s.call.call_id,
                queue=s.call.queue,
                caller_number=s.call.caller_number,
                caller_name=s.call.caller_name,
                since=_time(s.call.since),
            )
        since = _time(s.since) if s.since is not None else None
        return cls(agent=s.agent, state=s.state, reason=s.reason, since=since, call=call)


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _error(code: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"description": "errors: [{field, problem}]"}}


def agent_routes(acd: AcdService, *, account: Callable[..., Any]) -> APIRouter:
    """The routes on ``acd``; ``account`` is the dependency that answers who the request is
    from (401 when nobody)."""
    router = APIRouter(prefix="/api/v1", tags=["agents"])
    Caller = Annotated[Requester, Depends(account)]

    def own_agent(caller: Requester) -> str:
        if caller.role != "agent" or not caller.agent:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this is an agent's own desk: the account (role {caller.role}) acts as no "
                "ACD agent; supervisors use /api/v1/agents/{agent}",
            )
        return _known(caller.agent)

    def supervised(caller: Requester, agent: str) -> str:
        if caller.role not in SUPERVISING_ROLES:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"acting on another agent needs the role supervisor or admin, not {caller.role}",
            )
        return _known(agent)

    def _known(agent: str) -> str:
        if agent not in acd.config.agents:  # the configuration is immutable: any thread
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"agent {agent!r} is not in the ACD configuration (its queues file)",
            )
        return agent

    async def carried_out(agent: str, command: Callable[[], Deferred[None]]) -> AgentStatusOut:
        try:
            await command().asFuture(asyncio.get_running_loop())
        except UnknownAgent as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        except AgentStateError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        except (AcdError, AcdStateUnavailable) as exc:  # stopped, or the store is away
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, f"the ACD cannot do it now: {exc}"
            ) from None
        return AgentStatusOut.of(acd.agent_status(agent))

    busy = {**_error(403), **_error(404), **_error(409), **_error(503)}

    @router.get("/agent", responses={**_error(403), **_error(404)}, summary="my state and call")
    async def my_status(caller: Caller) -> AgentStatusOut:
        return AgentStatusOut.of(acd.agent_status(own_agent(caller)))

    @router.post("/agent/login", responses=busy, summary="log in to the ACD")
    async def log_in(caller: Caller) -> AgentStatusOut:
        agent = own_agent(caller)
        return await carried_out(agent, lambda: acd.agent_login(agent))

    @router.post("/agent/available", responses=busy, summary="available for calls")
    async def available(caller: Caller) -> AgentStatusOut:
        agent = own_agent(caller)
        return await carried_out(agent, lambda: acd.agent_available(agent))

    @router.post("/agent/pause", responses=busy, summary="pause, with a reason")
    async def pause(body: PauseIn, caller: Caller) -> AgentStatusOut:
        agent = own_agent(caller)
        return await carried_out(agent, lambda: acd.agent_pause(agent, body.reason))

    @router.post("/agent/logout", responses=busy, summary="log out of the ACD")
    async def log_out(caller: Caller) -> AgentStatusOut:
        agent = own_agent(caller)
        return await carried_out(agent, lambda: acd.agent_logout(agent))

    @router.get("/agents/{agent}", responses={**_error(403), **_error(404)})
    async def agent_status(agent: str, caller: Caller) -> AgentStatusOut:
        """An agent's state and call (supervisors, admins)."""
        return AgentStatusOut.of(acd.agent_status(supervised(caller, agent)))

    @router.post("/agents/{agent}/pause", responses=busy)
    async def pause_agent(agent: str, body: PauseIn, caller: Caller) -> AgentStatusOut:
        """Pause an agent (supervisors, admins)."""
        agent = supervised(caller, agent)
        return await carried_out(agent, lambda: acd.agent_pause(agent, body.reason))

    @router.post("/agents/{agent}/logout", responses=busy)
    async def logout_agent(agent: str, caller: Caller) -> AgentStatusOut:
        """Log an agent out (supervisors, admins)."""
        agent = supervised(caller, agent)
        return await carried_out(agent, lambda: acd.agent_logout(agent))

    return router


def wallboard_routes(acd: AcdService, *, account: Callable[..., Any]) -> APIRouter:
    """The supervisors' wallboard (``acd.wallboard`` has the JSON shapes):

    * ``GET /api/v1/wallboard`` — ``{"type": "snapshot", "at", "queues", "agents"}``;
    * ``WS /api/v1/wallboard/feed`` — first message ``{"token": ...}`` (4401 without a valid
      one, 4403 for a role other than supervisor or admin), then the snapshot, then
      ``{"type": "agent", ...}`` at each agent's change and ``{"type": "queues", ...}``
      with the queues whose figures changed; a socket too far behind is closed with 1013.
    """
    router = APIRouter(prefix="/api/v1", tags=["wallboard"])
    Caller = Annotated[Requester, Depends(account)]

    @router.get("/wallboard", responses=_error(403), summary="every queue and agent now")
    async def wallboard(caller: Caller) -> dict[str, Any]:
        # On the loop (the reactor's thread), where the figures and the board are kept.
        if caller.role not in SUPERVISING_ROLES:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"the wallboard needs the role supervisor or admin, not {caller.role}",
            )
        return acd.wallboard.wallboard.snapshot(acd.reactor.seconds())

    @router.websocket("/wallboard/feed")
    async def wallboard_feed(socket: WebSocket) -> None:
        await socket.accept()
        who = await hello(socket)
        if who is None:
            return
        if who.role not in SUPERVISING_ROLES:
            await close_quietly(
                socket, 4403, f"the wallboard needs the role supervisor or admin, not {who.role}"
            )
            return
        feed = acd.wallboard
        await serve_feed(
            socket,
            connect=feed.connect,
            opening=lambda: [feed.snapshot()],
            what=f"wallboard ({who.username})",
        )

    return router
