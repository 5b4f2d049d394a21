"""The ACD's HTTP routes: an agent's own desk, and supervisors acting on any agent.

* ``GET /api/v1/agent`` — the agent's state, since when, pause reason and current call;
* ``POST /api/v1/agent/login | available | pause {reason} | logout`` — each answers the
  new status;
* ``WS /api/v1/agent/feed`` — the agent's own row, live (``{"type": "agent", "at",
  "agent": AgentRow}`` at once and at every change of state or queues): the desk sees a
  supervisor's pause, a ring, a wrap-up without asking. First message ``{"token"}``; 4401
  for a bad token, 4403 for an account that is no ACD agent's;
* ``GET /api/v1/agents/{agent}``, ``POST /api/v1/agents/{agent}/pause | logout`` — the same
  for supervisors and admins, on any agent;
* ``PUT /api/v1/agents/{agent}/queues {"queues": {queue: penalty}}`` — supervisors and
  admins move an agent between queues (422 for an unknown queue or a penalty out of 0-100,
  naming ``body.queues.<queue>``; 409 when the agent lacks a skill a queue requires).

Every status answer carries the agent's ``queues`` (queue -> penalty) as they are now.

* ``POST /api/v1/agent/disposition {call_id, disposition, note?}`` — the agent tags a call
  it answered (409 for another's call, 422 for a disposition not configured);
* ``GET /api/v1/dispositions``, ``GET /api/v1/reports/acd``, ``GET /api/v1/staffing`` —
  :func:`report_routes`.

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
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Depends, HTTPException, Query, Response, WebSocket, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, StrictInt, StringConstraints
from twisted.internet.defer import Deferred

from web.feed import close_quietly, hello, serve_feed

from .agent_status import AgentStatus
from .agents import IneligibleMembership, InvalidMembership
from .config import ServiceLevel
from .erlang import staffing_need
from .errors import AcdError, AcdStateUnavailable, AgentStateError, UnknownAgent
from .report import (
    INTERVAL,
    AcdReport,
    acd_records,
    build_report,
    report_csv,
    report_range,
    staffed_agents,
)
from .service import AcdService

__all__ = [
    "AgentStatusOut",
    "CurrentCallOut",
    "DispositionIn",
    "DispositionOut",
    "PauseIn",
    "agent_routes",
    "report_routes",
    "staffing_plan",
    "wallboard_routes",
]

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


class QueuesIn(BaseModel):
    queues: dict[str, StrictInt] = Field(
        description="every queue the agent is to serve -> its penalty there (0-100, lower "
        "is offered first)"
    )


#: Free text, lines allowed; other control characters are not.
NoteText = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, max_length=2000, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$"
    ),
]


class DispositionIn(BaseModel):
    call_id: Annotated[
        str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
    ] = Field(description="the call the agent answered")
    disposition: str = Field(description="one of GET /api/v1/dispositions")
    note: NoteText | None = Field(None, description="a note on the call (2,000 characters)")


class DispositionOut(BaseModel):
    call_id: str
    queue: str
    agent: str
    disposition: str
    note: str | None
    at: float = Field(description="when it was tagged, epoch seconds")


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
    queues: dict[str, int] = Field(description="the queues the agent serves -> its penalty")

    @classmethod
    def of(cls, s: AgentStatus, queues: dict[str, int]) -> "AgentStatusOut":
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
        return cls(
            agent=s.agent, state=s.state, reason=s.reason, since=since, call=call, queues=queues
        )


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

    def status_of(agent: str) -> AgentStatusOut:
        return AgentStatusOut.of(acd.agent_status(agent), acd.agent_queues(agent))

    async def carried_out(agent: str, command: Callable[[], Deferred[None]]) -> AgentStatusOut:
        try:
            await command().asFuture(asyncio.get_running_loop())
        except UnknownAgent as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        except InvalidMembership as exc:
            # The common 422: one entry per problem, naming body.queues.<queue>.
            problems = [
                {"loc": ("body", *field.split(".", 1)), "msg": problem, "type": "value_error"}
                for field, problem in exc.problems
            ]
            raise RequestValidationError(problems) from None
        except (AgentStateError, IneligibleMembership) as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        except (AcdError, AcdStateUnavailable) as exc:  # stopped, or the store is away
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, f"the ACD cannot do it now: {exc}"
            ) from None
        return status_of(agent)

    busy = {**_error(403), **_error(404), **_error(409), **_error(503)}

    @router.get("/agent", responses={**_error(403), **_error(404)}, summary="my state and call")
    async def my_status(caller: Caller) -> AgentStatusOut:
        return status_of(own_agent(caller))

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

    @router.websocket("/agent/feed")
    async def agent_feed(socket: WebSocket) -> None:
        await socket.accept()
        who = await hello(socket)
        if who is None:
            return
        if who.role != "agent" or who.agent not in acd.config.agents:
            await close_quietly(socket, 4403, "this account is no ACD agent's: see /api/v1/agent")
            return
        agent, feed = who.agent, acd.wallboard
        await serve_feed(
            socket,
            connect=lambda send: feed.connect_agent(agent, send),
            opening=lambda: [feed.agent_message(agent)],
            what=f"agent desk {agent}",
        )

    @router.post("/agent/disposition", responses={**busy, **_error(422)}, summary="tag my call")
    async def dispose(body: DispositionIn, caller: Caller) -> DispositionOut:
        """Tag a call the agent answered (its last, or an earlier one) with a disposition
        and an optional note; a later disposition of the same call replaces it in reports."""
        agent = own_agent(caller)
        if body.disposition not in acd.config.dispositions:
            allowed = ", ".join(acd.config.dispositions)
            raise RequestValidationError(
                [{"loc": ("body", "disposition"), "type": "value_error",
                  "msg": f"unknown disposition {body.disposition!r}; one of {allowed}"}]
            )  # fmt: skip
        done = acd.dispose_call(agent, body.call_id, body.disposition, body.note)
        try:
            event = await done.asFuture(asyncio.get_running_loop())
        except UnknownAgent as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        except AgentStateError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        return DispositionOut(
            call_id=event.call_id, queue=event.queue, agent=event.agent,
            disposition=event.disposition, note=event.note, at=event.at,
        )  # fmt: skip

    @router.get("/agents/{agent}", responses={**_error(403), **_error(404)})
    async def agent_status(agent: str, caller: Caller) -> AgentStatusOut:
        """An agent's state and call (supervisors, admins)."""
        return status_of(supervised(caller, agent))

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

    @router.put("/agents/{agent}/queues", responses={**busy, **_error(422)})
    async def move_agent(agent: str, body: QueuesIn, caller: Caller) -> AgentStatusOut:
        """Set the queues an agent serves, each with its penalty (supervisors, admins): a
        free agent moves at once, one on a call keeps it and serves the new queues after."""
        agent = supervised(caller, agent)
        by = str(getattr(caller, "username", None) or caller.role)
        return await carried_out(agent, lambda: acd.set_agent_queues(agent, body.queues, by))

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


def report_routes(acd: AcdService, *, account: Callable[..., Any]) -> APIRouter:
    """The dispositions, the ACD report and staffing, from the ACD's history:

    * ``GET /api/v1/dispositions`` (any role) — ``{"dispositions": [names]}``;
    * ``GET /api/v1/reports/acd?from=YYYY-MM-DD&to=YYYY-MM-DD`` (supervisors, admins) — the
      days ``from`` to ``to`` (included, at most 92 days apart) in the ACD's time zone:
      ``{"from", "to", "timezone", "start", "end", "queues", "agents", "tiers",
      "intervals"}`` (``acd.report``); ``&format=csv&by=queue|agent|tier|interval`` gives
      one table as ``text/csv``;
    * ``GET /api/v1/staffing?queue=Q&date=YYYY-MM-DD`` (supervisors, admins) — each
      15-minute interval of the day (default today): calls offered, the AHT used, the
      agents Erlang C says the queue's service-level target needs and those staffed.

    The report and staffing read SQL: sync endpoints, on FastAPI's thread pool.
    """
    router = APIRouter(prefix="/api/v1", tags=["reports"])
    Caller = Annotated[Requester, Depends(account)]
    config = acd.config
    thresholds = {name: q.service_level.seconds for name, q in config.queues.items()}
    members = {q: [a for a, c in config.agents.items() if q in c.queues] for q in config.queues}

    def supervising(caller: Requester) -> None:
        if caller.role not in SUPERVISING_ROLES:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"reports need the role supervisor or admin, not {caller.role}",
            )

    def days(first: date, last: date) -> tuple[float, float]:
        try:
            return report_range(first, last, config.zone)
        except ValueError as exc:
            raise RequestValidationError(
                [{"loc": ("query", "to"), "msg": str(exc), "type": "value_error"}]
            ) from None

    def report_of(start: float, end: float, records: Iterable[dict[str, Any]]) -> AcdReport:
        return build_report(
            records,
            start=start,
            end=end,
            now=acd.reactor.seconds(),  # the wall clock: any thread
            zone=config.zone,
            thresholds=thresholds,
            queues=config.queues,
            agents=config.agents,
            members=members,
        )

    @router.get("/dispositions", summary="what agents may tag their calls with")
    def dispositions(caller: Caller) -> dict[str, list[str]]:
        return {"dispositions": list(config.dispositions)}

    @router.get(
        "/reports/acd",
        responses={**_error(403), **_error(422), 200: {"content": {"text/csv": {}}}},
        summary="queues, agents, tiers and intervals over days",
    )
    def acd_report(
        caller: Caller,
        first: Annotated[date, Query(alias="from", description="first day, YYYY-MM-DD")],
        last: Annotated[date, Query(alias="to", description="last day (included)")],
        format: Literal["json", "csv"] = "json",
        by: Literal["queue", "agent", "tier", "interval"] = "queue",
    ) -> Any:
        supervising(caller)
        start, end = days(first, last)
        report = report_of(start, end, acd_records(acd.engine, start, end))
        if format == "csv":
            text = report_csv(report, by, dispositions=config.dispositions, zone=config.zone)
            name = f"acd-{by}-{first.isoformat()}-{last.isoformat()}.csv"
            return Response(
                text,
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )
        return {
            "from": first.isoformat(),
            "to": last.isoformat(),
            "timezone": config.timezone,
            **report.to_record(),
        }

    @router.get(
        "/staffing",
        responses={**_error(403), **_error(422)},
        summary="agents needed per 15 minutes (Erlang C)",
    )
    def staffing(
        caller: Caller,
        queue: Annotated[str, Query(description="an ACD queue")],
        day: Annotated[date | None, Query(alias="date", description="default today")] = None,
    ) -> dict[str, Any]:
        supervising(caller)
        if queue not in config.queues:
            known = ", ".join(config.queues)
            raise RequestValidationError(
                [{"loc": ("query", "queue"), "msg": f"unknown queue {queue!r}; one of {known}",
                  "type": "value_error"}]
            )  # fmt: skip
        if day is None:
            day = datetime.fromtimestamp(acd.reactor.seconds(), config.zone).date()
        start, end = days(day, day)
        records = list(acd_records(acd.engine, start, end))  # one day: read once, used twice
        report = report_of(start, end, records)
        now = acd.reactor.seconds()
        staffed = staffed_agents(
            records, members[queue], start=start, end=end, now=now, zone=config.zone
        )
        cfg = config.queues[queue]
        return {
            "queue": queue,
            "date": day.isoformat(),
            "timezone": config.timezone,
            "interval": INTERVAL,
            "target": cfg.service_level.percent / 100,
            "threshold": cfg.service_level.seconds,
            "intervals": staffing_plan(report, queue, cfg.service_level, cfg.fallback_aht, staffed),
        }

    return router


def staffing_plan(
    report: AcdReport,
    queue: str,
    target: ServiceLevel,
    fallback_aht: float | None,
    staffed: Mapping[float, float] | None = None,
) -> list[dict[str, Any]]:
    """Each interval of ``report``'s range for ``queue``: ``start``, ``offered``, ``aht``
    and its ``aht_source`` (the interval's, else the day's, else the queue's fallback; null
    with none), then Erlang C's ``traffic``, ``agents_needed``, and with that many agents
    the ``service_level``, ``asa`` and ``probability_of_waiting`` (null without an AHT, or
    for a 100 % target, which no finite staff meets); ``agents_staffed``: the average
    number of the queue's agents staffed in the interval (``staffed``, else 0)."""
    day = report.queues[queue].figures.aht
    rows = []
    at = report.start
    while at < report.end:
        counts = report.intervals.get((at, queue))
        offered = counts.offered if counts is not None else 0
        aht, source = counts.figures.aht if counts is not None else None, "interval"
        if aht is None:
            aht, source = (day, "day") if day is not None else (fallback_aht, "fallback")
        row: dict[str, Any] = {"start": at, "offered": offered, "aht": aht,
                               "aht_source": source if aht is not None else None}  # fmt: skip
        need = None
        if aht is not None and target.percent < 100:
            need = staffing_need(offered, aht, INTERVAL, target.seconds, target.percent / 100)
        row.update(
            traffic=need.traffic if need else None,
            agents_needed=need.agents if need else None,
            service_level=need.service_level if need else None,
            asa=need.asa if need else None,
            probability_of_waiting=need.probability_of_waiting if need else None,
            agents_staffed=(staffed or {}).get(at, 0.0),
        )
        rows.append(row)
        at += INTERVAL
    return rows
