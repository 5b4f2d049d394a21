"""The tickets' HTTP routes under ``/api/v1/tickets`` (built from the service).

* ``POST /api/v1/tickets`` — create (201); an ``Idempotency-Key`` header makes a retry
  answer the ticket made the first time (200), the same key with another body 409.
* ``GET /api/v1/tickets`` — search: customer, number, status, assignee, group, category,
  sla_state, breached, done (resolved, closed or merged), text; newest first, ``before`` +
  ``limit`` pages.
* ``GET /api/v1/tickets/vocabulary`` — the configured categories and priorities (forms).
* ``GET /api/v1/tickets/{id}`` — the ticket with its calls, comments and attachments.
* ``PATCH /api/v1/tickets/{id}`` — change fields; the body names the ``version`` read (or
  an ``If-Match`` header does): 409 naming the current version when someone came first.
* ``POST /api/v1/tickets/{id}/transition | comments | assign | calls | merge``.
* ``POST | GET /api/v1/tickets/{id}/attachments``, ``DELETE .../attachments/{attachment_id}``
  — attachment metadata only (name, size, type, the http(s) URL or storage key where the
  file lives; no file is uploaded here). A merged duplicate's attachments are read, and
  removed, through the ticket it was merged into; a closed or merged ticket refuses (409).
* ``POST /api/v1/calls/{call_id}/ticket`` — a ticket made from a call, during it or in
  wrap-up, prefilled from what the pop knew (``call_of``, passed by the process): the
  customer (the one picked), the call linked, the queue, the caller's number and IVR path
  and digits in the description; the body may set or override any field.

A call is the agents': only an agent who talked to the caller (or a supervisor) may make a
ticket from it or link it to a ticket (403 otherwise), when the process passes ``call_of``.

Roles: supervisors and admins see and change every ticket; an agent those assigned to
them, of their queues (``queues_of(agent)``: the ACD configuration's queue memberships,
passed by the process) and of their groups (``groups_of(agent)``). Another's ticket is a
404, the same answer as an unknown id, so ids of tickets an agent may not see leak nothing.
Errors are ``{"errors": [{field, problem}]}`` (``web.api``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from twisted.internet.defer import Deferred

from tickets.errors import IllegalTransition
from tickets.schema import MAX_DESCRIPTION, MAX_SUBJECT, MAX_TAG, MAX_TAGS
from tickets.service import TicketService
from tickets.store import (
    MAX_ATTACHMENT_SIZE,
    Attachment,
    ConflictError,
    IdempotencyMismatch,
    NewTicket,
    Scope,
    Ticket,
    TicketInputError,
    TicketQuery,
    UnknownAttachment,
    UnknownTicket,
    visible_to,
)
from web.accounts import Account
from web.auth import require_role

__all__ = ["CallFacts", "CallTicketIn", "ticket_routes"]

T = TypeVar("T")

#: Roles that see and change every ticket.
SUPERVISING = ("supervisor", "admin")
staff = require_role("agent", "supervisor", "admin")
# Module-level: the routes' annotations are strings (PEP 563), resolved in this module.
Staff = Annotated[Account, Depends(staff)]

Tag = Annotated[str, Field(min_length=1, max_length=MAX_TAG)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CallIn(_Body):
    pbx: str | None = Field(
        None, min_length=1, max_length=64, description="the PBX of the call; default: this one"
    )
    call_id: str = Field(min_length=1, max_length=128)


class TicketIn(_Body):
    subject: str = Field(min_length=1, max_length=MAX_SUBJECT)
    category: str = Field(min_length=1, max_length=32)
    priority: str = Field("normal", min_length=1, max_length=16)
    description: str = Field("", max_length=MAX_DESCRIPTION)
    customer_id: str | None = Field(None, min_length=1, max_length=64)
    queue: str | None = Field(None, min_length=1, max_length=64)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    assignee_agent: str | None = Field(None, min_length=1, max_length=64)
    assignee_group: str | None = Field(None, min_length=1, max_length=64)
    calls: list[CallIn] = Field(default_factory=list, max_length=20)


class TicketPatch(_Body):
    version: int | None = Field(None, ge=1, description="the version read (or If-Match)")
    subject: str | None = Field(None, min_length=1, max_length=MAX_SUBJECT)
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)
    tags: list[Tag] | None = Field(None, max_length=MAX_TAGS)
    category: str | None = Field(None, min_length=1, max_length=32)
    priority: str | None = Field(None, min_length=1, max_length=16)
    customer_id: str | None = Field(None, min_length=1, max_length=64)
    queue: str | None = Field(None, min_length=1, max_length=64)


class TransitionIn(_Body):
    action: str = Field(min_length=1, max_length=32)
    version: int | None = Field(None, ge=1)


class CommentIn(_Body):
    body: str = Field(min_length=1, max_length=MAX_DESCRIPTION)
    visibility: Literal["internal", "public"] = "internal"


class AssignIn(_Body):
    agent: str | None = Field(None, min_length=1, max_length=64)
    group: str | None = Field(None, min_length=1, max_length=64)
    version: int | None = Field(None, ge=1)


class AttachmentIn(_Body):
    """A file's metadata; the file itself stays where ``url`` says."""

    name: str = Field(min_length=1, max_length=255, description="the file's name, no path")
    size: int = Field(ge=0, le=MAX_ATTACHMENT_SIZE, strict=True, description="in bytes")
    content_type: str = Field(min_length=3, max_length=128, description="type/subtype")
    url: str = Field(
        min_length=1, max_length=2000, description="an http(s) URL or a storage key"
    )


class MergeIn(_Body):
    into: int = Field(ge=1, description="the ticket that survives")


class CallTicketIn(_Body):
    """A ticket from a call: every field optional, the call's facts fill the rest."""

    subject: str | None = Field(None, min_length=1, max_length=MAX_SUBJECT)
    category: str = Field("inquiry", min_length=1, max_length=32)
    priority: str = Field("normal", min_length=1, max_length=16)
    description: str = Field("", max_length=MAX_DESCRIPTION)
    customer_id: str | None = Field(None, min_length=1, max_length=64)
    queue: str | None = Field(None, min_length=1, max_length=64)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    assignee_agent: str | None = Field(None, min_length=1, max_length=64)
    assignee_group: str | None = Field(None, min_length=1, max_length=64)


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the process knows of a call (the screen pop's record of it): the customer
    known or picked, the caller's number, the queue, the IVR steps and digits keyed, and
    the agents who talked to the caller."""

    call_id: str
    customer_id: str | None = None
    number: str | None = None
    queue: str | None = None
    ivr: Sequence[Mapping[str, Any]] = ()
    digits: str = ""
    agents: frozenset[str] = frozenset()


#: A call's facts (None: no such call known), answered on the reactor thread.
CallOf = Callable[[str], Deferred["CallFacts | None"]]


def call_context(facts: CallFacts) -> str:
    """The description's lines about the call a ticket came from."""
    lines = [f"From call {facts.call_id}" + (f" of {facts.number}" if facts.number else "")
             + (f" in queue {facts.queue}" if facts.queue else "") + "."]  # fmt: skip
    steps = []
    for step in facts.ivr:
        if step.get("flow"):
            nodes = " > ".join(str(n) for n in step.get("nodes") or ())
            steps.append(f"flow {step['flow']}" + (f": {nodes}" if nodes else "")
                         + (f" ({step['outcome']})" if step.get("outcome") else ""))  # fmt: skip
        elif step.get("application"):
            steps.append(f"{step['application']}" + (
                f" in {step['context']}" if step.get("context") else ""))  # fmt: skip
    if steps:
        lines.append("IVR: " + "; ".join(steps) + ".")
    if facts.digits:
        lines.append(f"Keyed: {facts.digits}")
    return "\n".join(lines)


def ticket_routes(
    service: TicketService,
    *,
    queues_of: Callable[[str], Collection[str]],
    groups_of: Callable[[str], Collection[str]] = lambda agent: (),
    pbx: str = "default",
    call_of: CallOf | None = None,
) -> APIRouter:
    """The routes on ``service``; ``queues_of``/``groups_of`` answer an agent's queues and
    ticket groups, ``call_of`` what the screen pop knew of a call (the process's wiring
    knows them; without ``call_of`` no ticket is made from a call and linking a call is
    not checked)."""
    router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])

    def scope(account: Account) -> Scope | None:
        if account.role in SUPERVISING:
            return None
        if account.agent is None:
            raise HTTPException(403, f"account {account.username!r} is no agent's")
        agent = account.agent
        return Scope(agent, frozenset(queues_of(agent)), frozenset(groups_of(agent)))

    async def call_facts(call_id: str, account: Account) -> CallFacts:
        """The call's facts when ``account`` may act on the call: 404 unknown, 403 an agent
        who did not talk to the caller."""
        assert call_of is not None
        facts = await _awaited(call_of(call_id))
        if facts is None:
            raise HTTPException(404, f"no call {call_id!r} is known")
        if account.role not in SUPERVISING and account.agent not in facts.agents:
            raise HTTPException(403, f"call {call_id!r} was not with agent {account.agent}")
        return facts

    async def visible(ticket_id: int, account: Account) -> Ticket:
        allowed = scope(account)
        ticket = await _awaited(service.get(ticket_id))
        if allowed is not None and not visible_to(ticket, allowed):
            raise UnknownTicket(ticket_id)  # the same answer as a ticket that is not there
        return ticket

    @router.post("", status_code=201, summary="create a ticket")
    async def create(
        body: TicketIn,
        account: Staff,
        response: Response,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> dict[str, Any]:
        with _refusals():
            allowed = scope(account)
            draft = NewTicket(
                subject=body.subject, category=body.category, priority=body.priority,
                description=body.description, customer_id=body.customer_id, queue=body.queue,
                tags=tuple(body.tags), assignee_agent=body.assignee_agent,
                assignee_group=body.assignee_group,
                calls=tuple((c.pbx or pbx, c.call_id) for c in body.calls),
            )  # fmt: skip
            if allowed is not None and draft.queue is not None and draft.queue not in (
                allowed.queues
            ):
                raise HTTPException(403, f"queue {draft.queue!r} is not one of your queues")
            ticket, created = await _awaited(
                service.create(draft, by=account.username, idempotency_key=idempotency_key)
            )
        if not created:
            response.status_code = status.HTTP_200_OK
        return ticket.to_dict()

    @router.get("", summary="search tickets, newest first")
    async def search(
        account: Staff,
        customer_id: Annotated[str | None, Query(max_length=64)] = None,
        number: Annotated[str | None, Query(max_length=32)] = None,
        status_: Annotated[str | None, Query(alias="status", max_length=24)] = None,
        assignee: Annotated[str | None, Query(max_length=64)] = None,
        group: Annotated[str | None, Query(max_length=64)] = None,
        category: Annotated[str | None, Query(max_length=32)] = None,
        sla_state: Annotated[str | None, Query(max_length=16)] = None,
        breached: bool | None = None,
        done: bool | None = None,
        text: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        before: Annotated[int | None, Query(ge=1)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        query = TicketQuery(
            customer_id=customer_id, number=number, status=status_, assignee_agent=assignee,
            assignee_group=group, category=category, sla_state=sla_state, breached=breached,
            done=done, text=text, before=before, limit=limit, scope=scope(account),
        )  # fmt: skip
        page = await _awaited(service.search(query))
        return {"tickets": [t.to_dict() for t in page.tickets], "next_before": page.next_before}

    @router.get("/vocabulary", summary="the categories and priorities tickets may have")
    async def vocabulary(account: Staff) -> dict[str, list[str]]:
        settings = service.settings
        return {"categories": list(settings.categories), "priorities": list(settings.priorities)}

    @router.get("/{ticket_id}", summary="a ticket, its calls, comments and attachments")
    async def read(ticket_id: int, account: Staff) -> dict[str, Any]:
        with _refusals():
            ticket = await visible(ticket_id, account)
            calls = await _awaited(service.calls(ticket_id))
            comments = await _awaited(service.comments(ticket_id))
            attachments = await _awaited(service.attachments(ticket_id))
        return ticket.to_dict() | {
            "attachments": [a.to_dict() for a in attachments],
            "calls": [{"pbx": p, "call_id": c} for p, c in calls],
            "comments": [
                {"id": c.id, "at": c.at, "author": c.author, "body": c.body,
                 "visibility": "public" if c.public else "internal"}
                for c in comments
            ],
        }  # fmt: skip

    @router.patch("/{ticket_id}", summary="change fields (optimistic: name the version read)")
    async def patch(
        ticket_id: int,
        body: TicketPatch,
        account: Staff,
        if_match: Annotated[str | None, Header(max_length=32)] = None,
    ) -> dict[str, Any]:
        version = body.version if body.version is not None else _version(if_match)
        if version is None:
            raise HTTPException(
                428, "body.version: say which version you read (or send If-Match)"
            )
        changes = body.model_dump(exclude_unset=True, exclude={"version"})
        with _refusals():
            await visible(ticket_id, account)
            ticket = await _awaited(
                service.update(ticket_id, version, changes, by=account.username)
            )
        return ticket.to_dict()

    @router.post("/{ticket_id}/transition", summary="a workflow action (open, resolve...)")
    async def transition(ticket_id: int, body: TransitionIn, account: Staff) -> dict[str, Any]:
        with _refusals():
            await visible(ticket_id, account)
            ticket = await _awaited(
                service.transition(
                    ticket_id, body.action, by=account.username, version=body.version
                )
            )
        return ticket.to_dict()

    @router.post("/{ticket_id}/comments", status_code=201, summary="an internal or public comment")
    async def comment(ticket_id: int, body: CommentIn, account: Staff) -> dict[str, Any]:
        with _refusals():
            await visible(ticket_id, account)
            ticket = await _awaited(
                service.comment(
                    ticket_id, body.body, public=body.visibility == "public", by=account.username
                )
            )
        return ticket.to_dict()

    @router.post("/{ticket_id}/assign", summary="give the ticket to an agent and/or a group")
    async def assign(ticket_id: int, body: AssignIn, account: Staff) -> dict[str, Any]:
        with _refusals():
            await visible(ticket_id, account)
            ticket = await _awaited(
                service.assign(ticket_id, agent=body.agent, group=body.group,
                               by=account.username, version=body.version)
            )  # fmt: skip
        return ticket.to_dict()

    @router.post("/{ticket_id}/calls", summary="link a call to the ticket")
    async def link_call(ticket_id: int, body: CallIn, account: Staff) -> dict[str, Any]:
        with _refusals():
            await visible(ticket_id, account)
            if call_of is not None:
                await call_facts(body.call_id, account)
            ticket = await _awaited(
                service.link_call(ticket_id, body.pbx or pbx, body.call_id, by=account.username)
            )
        return ticket.to_dict()

    @router.post("/{ticket_id}/merge", summary="merge this duplicate into another ticket")
    async def merge(ticket_id: int, body: MergeIn, account: Staff) -> dict[str, Any]:
        with _refusals():
            await visible(ticket_id, account)
            await visible(body.into, account)
            survivor = await _awaited(service.merge(ticket_id, body.into, by=account.username))
        return survivor.to_dict()

    @router.post(
        "/{ticket_id}/attachments",
        status_code=201,
        summary="record a file's metadata on the ticket (only the metadata is stored: the "
        "file stays at its URL or storage key)",
    )
    async def attach(ticket_id: int, body: AttachmentIn, account: Staff) -> dict[str, Any]:
        with _refusals():
            await visible(ticket_id, account)
            attachment: Attachment = await _awaited(
                service.attach(ticket_id, body.name, body.size, body.content_type, body.url,
                               by=account.username)
            )  # fmt: skip
        return attachment.to_dict()

    @router.get(
        "/{ticket_id}/attachments",
        summary="the ticket's attachment metadata, with its merged duplicates'",
    )
    async def attachments(ticket_id: int, account: Staff) -> dict[str, Any]:
        with _refusals():
            await visible(ticket_id, account)
            found = await _awaited(service.attachments(ticket_id))
        return {"attachments": [a.to_dict() for a in found]}

    @router.delete(
        "/{ticket_id}/attachments/{attachment_id}",
        status_code=204,
        summary="remove an attachment's metadata (the file at its URL or key is not touched)",
    )
    async def detach(ticket_id: int, attachment_id: int, account: Staff) -> Response:
        with _refusals():
            await visible(ticket_id, account)
            await _awaited(service.detach(ticket_id, attachment_id, by=account.username))
        return Response(status_code=204)

    calls = APIRouter(prefix="/api/v1/calls", tags=["tickets"])

    @calls.post("/{call_id}/ticket", status_code=201, summary="a ticket from a call")
    async def from_call(
        call_id: str,
        body: CallTicketIn,
        account: Staff,
        response: Response,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> dict[str, Any]:
        if call_of is None:
            raise HTTPException(404, "tickets from calls need the screen pop")
        with _refusals():
            allowed = scope(account)
            facts = await call_facts(call_id, account)
            queue = body.queue or facts.queue
            agent = body.assignee_agent
            if agent is None and allowed is not None and (queue not in allowed.queues):
                agent = allowed.agent  # else the agent could not see the ticket they made
            context = call_context(facts)
            described = f"{body.description}\n\n{context}" if body.description else context
            subject = body.subject or (
                f"{body.category.capitalize()} from a call of {facts.number or 'a withheld number'}"
            )
            draft = NewTicket(
                subject=subject[:MAX_SUBJECT], category=body.category, priority=body.priority,
                description=described[:MAX_DESCRIPTION],
                customer_id=body.customer_id or facts.customer_id, queue=queue,
                tags=tuple(body.tags), assignee_agent=agent,
                assignee_group=body.assignee_group, calls=((pbx, call_id),),
            )  # fmt: skip
            ticket, created = await _awaited(
                service.create(draft, by=account.username, idempotency_key=idempotency_key)
            )
        if not created:
            response.status_code = status.HTTP_200_OK
        return ticket.to_dict()

    both = APIRouter()
    both.include_router(router)
    both.include_router(calls)
    return both


def _version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise HTTPException(422, f"If-Match: {if_match!r} is no version number")
    return int(text)


@contextmanager
def _refusals() -> Iterator[None]:
    """The domain's refusals as HTTP errors naming the field where there is one."""
    try:
        yield
    except TicketInputError as exc:
        raise _field_error(exc.field, exc.problem) from None
    except (UnknownTicket, UnknownAttachment) as exc:
        raise HTTPException(404, str(exc)) from None
    except ConflictError as exc:
        raise HTTPException(409, str(exc), headers={"ETag": f'"{exc.current}"'}) from None
    except IdempotencyMismatch as exc:
        raise HTTPException(409, str(exc)) from None
    except IllegalTransition as exc:
        raise HTTPException(409, str(exc)) from None


def _field_error(field: str, problem: str) -> RequestValidationError:
    """A 422 naming the field, rendered by web.api like pydantic's own."""
    loc = ("header", field) if field == "Idempotency-Key" else ("body", *field.split("."))
    return RequestValidationError([{"loc": loc, "msg": problem, "type": "value_error"}])


async def _awaited(d: Deferred[T]) -> T:
    """The Deferred's result, awaited on the running loop (the reactor's)."""
    return await d.asFuture(asyncio.get_running_loop())
