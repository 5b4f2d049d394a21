"""The tickets' tables as the service reads and writes them (SQLAlchemy Core, synchronous:
the service runs these methods on its thread pool, never on the reactor).

Every change is one transaction with its audit rows (``ticket_changes``: who, when, field,
old, new): either both are written or neither. Changes to a ticket name the ``version``
they read; the update is a compare-and-set on it (``UPDATE ... WHERE version = :read``), so
of two agents editing one ticket exactly one wins and the other gets :class:`ConflictError`
with the version now current, and nothing of theirs is written. No row lock is held while
anyone types, and the same statement works on SQLite and PostgreSQL.

A create may carry an idempotency key (per account): the key row is inserted in the same
transaction as the ticket, under a primary key, so a retry (even a concurrent one) finds
the ticket made the first time and never makes a second; the same key with a different
request is :class:`IdempotencyMismatch`.

Bad input raises :class:`~tickets.errors.TicketInputError` naming the field before
anything is written. The store's errors live in :mod:`tickets.errors` (re-exported here);
each is a :class:`~tickets.errors.TicketError`, like the workflow's
:class:`~tickets.errors.IllegalTransition` (which a transition passes on unchanged).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from crm_bridge.schema import customer_numbers, customers
from tickets import workflow
from tickets.errors import (
    ConflictError,
    IdempotencyMismatch,
    IllegalTransition,
    TicketError,
    TicketInputError,
    UnknownTicket,
)
from tickets.schema import (
    MAX_DESCRIPTION,
    MAX_SUBJECT,
    MAX_TAG,
    MAX_TAGS,
    ticket_attachments,
    ticket_calls,
    ticket_changes,
    ticket_comments,
    ticket_idempotency,
    tickets,
)

__all__ = [
    "DEFAULT_CATEGORIES",
    "DEFAULT_PRIORITIES",
    "MAX_ATTACHMENT_SIZE",
    "Attachment",
    "Change",
    "Comment",
    "ConflictError",
    "Deadlines",
    "IdempotencyMismatch",
    "NewTicket",
    "Page",
    "Scope",
    "Ticket",
    "TicketInputError",
    "TicketQuery",
    "TicketStore",
    "UnknownAttachment",
    "UnknownTicket",
    "ticket_number",
    "visible_to",
]

DEFAULT_CATEGORIES: tuple[str, ...] = ("complaint", "inquiry", "request", "suggestion")
DEFAULT_PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
#: Fields an update may change (status, assignee, merge have their own operations).
EDITABLE = ("subject", "description", "tags", "category", "priority", "customer_id", "queue")
#: The audit field of an SLA alarm told, before its deadline's name (``sla.resolution``).
SLA_ALARM = "sla."
#: The most rows a search page holds.
MAX_PAGE = 200
#: The largest file an attachment may describe, in bytes (50 MiB; only its metadata is
#: stored here, but the store the reference points at need not take anything bigger).
MAX_ATTACHMENT_SIZE = 50 * 1024 * 1024
#: Longest attachment name and reference (the columns' widths).
MAX_ATTACHMENT_NAME = 255
MAX_ATTACHMENT_URL = 2000
#: ``type/subtype`` (RFC 6838 names), no parameters; the column holds 128 characters.
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]{0,62}/[A-Za-z0-9][\w!#$&^.+-]{0,62}", re.ASCII)
#: A reference starting with a scheme (``https:``, ``javascript:``) is a URL, else a key.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


# -- values ---------------------------------------------------------------------------------


def ticket_number(ticket_id: int) -> str:
    """The ticket's name for people: ``T-000123``."""
    return f"T-{ticket_id:06d}"


def _id_of_number(number: str) -> int | None:
    text = number.strip().upper()
    if text.startswith("T-") and text[2:].isdigit():
        return int(text[2:])
    return None


@dataclass(frozen=True, slots=True)
class Deadlines:
    """When the first response and the resolution are due (None: no deadline)."""

    first_response: float | None = None
    resolution: float | None = None


#: Computes a new ticket's deadlines from (customer tier or None, priority, opened at).
DeadlinePolicy = Callable[[str | None, str, float], Deadlines]


@dataclass(frozen=True, slots=True)
class NewTicket:
    """What a create asks for (calls as ``(pbx, call_id)``)."""

    subject: str
    category: str
    priority: str = "normal"
    description: str = ""
    customer_id: str | None = None
    queue: str | None = None
    tags: tuple[str, ...] = ()
    assignee_agent: str | None = None
    assignee_group: str | None = None
    calls: tuple[tuple[str, str], ...] = ()

    def fingerprint(self) -> str:
        """A hash of the request, to tell a retry from another request under one key."""
        body = {k: getattr(self, k) for k in self.__dataclass_fields__}
        text = json.dumps(body, sort_keys=True, default=list, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Ticket:
    """A ticket as stored."""

    id: int
    number: str
    customer_id: str | None
    customer_tier: str | None
    category: str
    priority: str
    status: str
    queue: str | None
    assignee_agent: str | None
    assignee_group: str | None
    subject: str
    description: str
    tags: tuple[str, ...]
    first_response_due: float | None
    resolution_due: float | None
    first_response_at: float | None
    resolved_at: float | None
    sla_state: str
    version: int
    merged_into: int | None
    created_at: float
    created_by: str
    updated_at: float
    updated_by: str

    @property
    def done(self) -> bool:
        """Resolved, closed or merged: no deadline runs."""
        return self.status in workflow.DONE

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {
            "tags": list(self.tags)
        }


@dataclass(frozen=True, slots=True)
class Change:
    """One audit row."""

    ticket_id: int
    at: float
    by: str
    field: str
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class Comment:
    id: int
    ticket_id: int
    at: float
    author: str
    public: bool
    body: str


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file's metadata (the file itself lives where ``url`` says: an http(s) URL or a
    storage key)."""

    id: int
    ticket_id: int
    name: str
    size: int
    content_type: str
    url: str
    added_at: float
    added_by: str

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class UnknownAttachment(TicketError, LookupError):
    """The ticket (with the tickets merged into it) has no attachment with this id."""

    def __init__(self, ticket_id: int, attachment_id: int) -> None:
        self.ticket_id = ticket_id
        self.attachment_id = attachment_id
        super().__init__(f"ticket {ticket_number(ticket_id)} has no attachment {attachment_id}")


@dataclass(frozen=True, slots=True)
class Scope:
    """What one agent may see: tickets assigned to them, of their queues, of their groups."""

    agent: str
    queues: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TicketQuery:
    """A search; every given criterion must hold. ``text`` matches subject or description
    (substring, case-insensitive); ``number`` is a customer's phone number (E.164);
    ``breached``: True for tickets past a deadline, False for the others; ``done``: True
    for resolved, closed or merged tickets, False for those still to work on. Pages go
    newest first: pass the last page's ``next_before`` as ``before``."""

    customer_id: str | None = None
    number: str | None = None
    status: str | None = None
    assignee_agent: str | None = None
    assignee_group: str | None = None
    category: str | None = None
    sla_state: str | None = None
    breached: bool | None = None
    done: bool | None = None
    text: str | None = None
    before: int | None = None
    limit: int = 50
    scope: Scope | None = None


@dataclass(frozen=True, slots=True)
class Page:
    tickets: list[Ticket]
    #: Pass as ``before`` for the next page; None on the last.
    next_before: int | None = None


@dataclass(slots=True)
class _Edit:
    """Changes to one ticket's row, with their audit rows, built before writing."""

    values: dict[str, Any] = field(default_factory=dict)
    audit: list[tuple[str, Any, Any]] = field(default_factory=list)

    def set(self, ticket: Ticket, name: str, new: Any) -> None:
        old = getattr(ticket, name)
        if name == "tags":
            old, new = list(old), list(new)
        if old != new:
            self.values[name] = new
            self.audit.append((name, old, new))


# -- the store ------------------------------------------------------------------------------


class TicketStore:
    """Tickets in the database at ``engine``. ``categories``/``priorities``: the values
    accepted; ``deadlines``: sets a ticket's due dates at creation and when its priority
    changes (None: no deadlines)."""

    def __init__(
        self,
        engine: Engine,
        *,
        categories: Collection[str] = DEFAULT_CATEGORIES,
        priorities: Collection[str] = DEFAULT_PRIORITIES,
        deadlines: DeadlinePolicy | None = None,
    ) -> None:
        self.engine = engine
        self.categories = tuple(categories)
        self.priorities = tuple(priorities)
        self.deadlines = deadlines

    # -- create and read ----------------------------------------------------------------

    def create(
        self,
        draft: NewTicket,
        *,
        by: str,
        at: float,
        idempotency_key: str | None = None,
    ) -> tuple[Ticket, bool]:
        """Store a new ticket (status ``new``); returns it and True, or, for an
        ``idempotency_key`` ``by`` used before with the same request, the ticket made then
        and False."""
        self._check_new(draft)
        fingerprint = draft.fingerprint()
        if idempotency_key is not None:
            _check_length("Idempotency-Key", idempotency_key, 200)
        try:
            with self.engine.begin() as conn:
                # The key looked up in the create's own transaction: a connection of its
                # own cost two more round trips (BEGIN, ROLLBACK) per create.
                if idempotency_key is not None:
                    earlier = self._earlier_on(conn, by, idempotency_key, fingerprint)
                    if earlier is not None:
                        return earlier, False
                ticket = self._insert(conn, draft, by, at)
                if idempotency_key is not None:
                    conn.execute(
                        insert(ticket_idempotency).values(
                            account=by, key=idempotency_key, ticket_id=ticket.id,
                            request_hash=fingerprint, created_at=at,
                        )
                    )  # fmt: skip
            return ticket, True
        except IntegrityError:
            # A concurrent create with the same key committed first (its key row blocked
            # ours): this one was rolled back whole; answer with that ticket.
            if idempotency_key is None:
                raise
            earlier = self._earlier(by, idempotency_key, fingerprint)
            if earlier is None:
                raise
            return earlier, False

    def _earlier(self, account: str, key: str, fingerprint: str) -> Ticket | None:
        with self.engine.connect() as conn:
            return self._earlier_on(conn, account, key, fingerprint)

    def _earlier_on(
        self, conn: Connection, account: str, key: str, fingerprint: str
    ) -> Ticket | None:
        row = conn.execute(
            select(ticket_idempotency.c.ticket_id, ticket_idempotency.c.request_hash).where(
                ticket_idempotency.c.account == account, ticket_idempotency.c.key == key
            )
        ).first()
        if row is None:
            return None
        if row.request_hash != fingerprint:
            raise IdempotencyMismatch(key, row.ticket_id)
        return self._read(conn, row.ticket_id)

    def _insert(self, conn: Connection, draft: NewTicket, by: str, at: float) -> Ticket:
        tier: str | None = None
        if draft.customer_id is not None:
            found = conn.execute(
                select(customers.c.tier).where(customers.c.id == draft.customer_id)
            ).first()
            if found is None:
                raise TicketInputError("customer_id", f"no customer {draft.customer_id!r}")
            tier = found[0]
        due = self.deadlines(tier, draft.priority, at) if self.deadlines else Deadlines()
        values = dict(
            customer_id=draft.customer_id, customer_tier=tier, category=draft.category,
            priority=draft.priority, status="new", queue=draft.queue,
            assignee_agent=draft.assignee_agent, assignee_group=draft.assignee_group,
            subject=draft.subject, description=draft.description, tags=list(draft.tags),
            first_response_due=due.first_response, resolution_due=due.resolution,
            sla_state="ok", version=1, created_at=at, created_by=by, updated_at=at,
            updated_by=by,
        )  # fmt: skip
        if conn.dialect.name == "postgresql":
            # The id first, so the row goes in with its number: an UPDATE adding it wrote
            # every index entry twice (number is indexed: no HOT update), the trigram
            # index's too, whose pending-list flushes stalled a create 120-210 ms
            # (bench.tickets).
            ticket_id = conn.execute(
                select(func.nextval(func.pg_get_serial_sequence("tickets", "id")))
            ).scalar_one()
            number = ticket_number(ticket_id)
            row = conn.execute(
                insert(tickets).values(id=ticket_id, number=number, **values)
                .returning(*tickets.c)
            ).one()  # fmt: skip
        else:
            ticket_id = conn.execute(
                insert(tickets).values(**values).returning(tickets.c.id)
            ).scalar_one()
            number = ticket_number(ticket_id)
            # The row as stored comes back with its number (links below do not change
            # it): no read of it again.
            row = conn.execute(
                update(tickets).where(tickets.c.id == ticket_id).values(number=number)
                .returning(*tickets.c)
            ).one()  # fmt: skip
        self._audit(conn, ticket_id, by, at, [("created", None, number)])
        for pbx, call_id in dict.fromkeys(draft.calls):
            self._link(conn, ticket_id, pbx, call_id, by, at)
        return _ticket(row._mapping)

    def get(self, ticket_id: int) -> Ticket:
        """The ticket (:class:`UnknownTicket` if there is none)."""
        with self.engine.connect() as conn:
            return self._read(conn, ticket_id)

    def by_number(self, number: str) -> Ticket:
        """The ticket named ``number`` (``T-000123``)."""
        ticket_id = _id_of_number(number)
        if ticket_id is None:
            raise UnknownTicket(number)
        return self.get(ticket_id)

    def _read(self, conn: Connection, ticket_id: int) -> Ticket:
        row = conn.execute(select(tickets).where(tickets.c.id == ticket_id)).first()
        if row is None:
            raise UnknownTicket(ticket_id)
        return _ticket(row._mapping)

    # -- changes --------------------------------------------------------------------------

    def update(
        self,
        ticket_id: int,
        version: int,
        changes: Mapping[str, Any],
        *,
        by: str,
        at: float,
    ) -> Ticket:
        """Change the :data:`EDITABLE` fields in ``changes`` of the ticket read at
        ``version``; :class:`ConflictError` if it is at another one."""
        for name in changes:
            if name not in EDITABLE:
                raise TicketInputError(name, f"cannot be changed here; editable: {EDITABLE}")
        self._check_fields(changes)

        def edit(conn: Connection, ticket: Ticket, edit: _Edit) -> None:
            if "customer_id" in changes and changes["customer_id"] is not None:
                found = conn.execute(
                    select(customers.c.id).where(customers.c.id == changes["customer_id"])
                ).first()
                if found is None:
                    raise TicketInputError(
                        "customer_id", f"no customer {changes['customer_id']!r}"
                    )
            for name, value in changes.items():
                edit.set(ticket, name, tuple(value) if name == "tags" else value)
            if "priority" in edit.values and self.deadlines is not None:
                due = self.deadlines(ticket.customer_tier, changes["priority"], ticket.created_at)
                edit.set(ticket, "first_response_due", due.first_response)
                edit.set(ticket, "resolution_due", due.resolution)

        return self._change(ticket_id, version, by, at, edit)

    def transition(
        self, ticket_id: int, action: str, *, by: str, at: float, version: int | None = None
    ) -> Ticket:
        """Apply the workflow's ``action`` (``workflow.transition``; an illegal one raises
        its error and nothing is written). ``version``: as read, or None for the current."""

        def edit(conn: Connection, ticket: Ticket, edit: _Edit) -> None:
            status = workflow.transition(ticket.status, action)
            edit.set(ticket, "status", status)
            if status == "resolved":
                edit.set(ticket, "resolved_at", at)
                if ticket.first_response_at is None:
                    edit.set(ticket, "first_response_at", at)
            elif ticket.status in ("resolved", "closed") and status not in workflow.DONE:
                edit.set(ticket, "resolved_at", None)  # reopened: the clock runs again

        return self._change(ticket_id, version, by, at, edit)

    def assign(
        self,
        ticket_id: int,
        *,
        agent: str | None,
        group: str | None,
        by: str,
        at: float,
        version: int | None = None,
    ) -> Ticket:
        """Give the ticket to an agent and/or a group (None clears it)."""
        _check_length("assignee_agent", agent, 64)
        _check_length("assignee_group", group, 64)

        def edit(conn: Connection, ticket: Ticket, edit: _Edit) -> None:
            edit.set(ticket, "assignee_agent", agent)
            edit.set(ticket, "assignee_group", group)

        return self._change(ticket_id, version, by, at, edit)

    def record_sla(
        self,
        ticket_id: int,
        state: str,
        *,
        by: str,
        at: float,
        version: int | None = None,
        alarms: Iterable[tuple[str, str]] = (),
        due: Deadlines | None = None,
        escalate_to: str | None = None,
    ) -> Ticket:
        """Keep the ticket's SLA as read at ``version`` (None: the current): its state (ok /
        warning / breached / met) for search, the ``alarms`` told now as ``(deadline,
        state)`` (audit rows ``sla.<deadline>``, so :meth:`sla_alarms` knows them after a
        restart), the ``due`` instants when a pause moved them, and, for a breach, the
        ticket given to ``escalate_to``. One transaction; :class:`ConflictError` when the
        ticket changed since ``version`` (read again: another reader may have told them)."""

        def edit(conn: Connection, ticket: Ticket, edit: _Edit) -> None:
            edit.set(ticket, "sla_state", state)
            if due is not None:
                edit.set(ticket, "first_response_due", due.first_response)
                edit.set(ticket, "resolution_due", due.resolution)
            if escalate_to is not None:
                edit.set(ticket, "assignee_group", escalate_to)
            for deadline, reached in alarms:
                edit.audit.append((f"{SLA_ALARM}{deadline}", None, reached))

        return self._change(ticket_id, version, by, at, edit)

    def sla_alarms(self, ticket_id: int) -> set[tuple[str, str]]:
        """The alarms told of the ticket, ``(deadline, state)`` (see :meth:`record_sla`)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ticket_changes.c.field, ticket_changes.c.new).where(
                    ticket_changes.c.ticket_id == ticket_id,
                    ticket_changes.c.field.startswith(SLA_ALARM),
                )
            )
            return {(r.field.removeprefix(SLA_ALARM), r.new) for r in rows}

    def comment(
        self, ticket_id: int, body: str, *, public: bool, by: str, at: float
    ) -> Comment:
        """Add a comment (``public``: to the customer; else internal). The first public one
        is the ticket's first response."""
        if not body.strip():
            raise TicketInputError("body", "empty: write the comment")
        _check_length("body", body, MAX_DESCRIPTION)
        with self.engine.begin() as conn:
            ticket = self._read(conn, ticket_id)
            comment_id = conn.execute(
                insert(ticket_comments)
                .values(ticket_id=ticket_id, at=at, author=by, public=public, body=body)
                .returning(ticket_comments.c.id)
            ).scalar_one()
            values: dict[str, Any] = {"updated_at": at, "updated_by": by}
            audit: list[tuple[str, Any, Any]] = [
                ("comment", None, {"id": comment_id, "public": public})
            ]
            if public and ticket.first_response_at is None:
                values["first_response_at"] = at
                audit.append(("first_response_at", None, at))
            conn.execute(
                update(tickets)
                .where(tickets.c.id == ticket_id)
                .values(version=tickets.c.version + 1, **values)
            )
            self._audit(conn, ticket_id, by, at, audit)
            return Comment(comment_id, ticket_id, at, by, public, body)

    def attach(
        self,
        ticket_id: int,
        name: str,
        size: int,
        content_type: str,
        url_or_key: str,
        *,
        by: str,
        at: float,
    ) -> Attachment:
        """Record a file's metadata on the ticket (the file is not stored here: ``url_or_key``
        says where it lives, an http(s) URL or a storage key). Bad input is a
        :class:`TicketInputError` naming ``name``, ``size``, ``content_type`` or ``url``; a
        merged or closed ticket refuses (:class:`IllegalTransition` saying why). One
        transaction with its audit row."""
        _check_attachment(name, size, content_type, url_or_key)
        with self.engine.begin() as conn:
            self._touch_open(conn, ticket_id, "attach to", by, at)
            attachment_id = conn.execute(
                insert(ticket_attachments).values(
                    ticket_id=ticket_id, name=name, size=size, content_type=content_type,
                    url=url_or_key, added_at=at, added_by=by,
                ).returning(ticket_attachments.c.id)
            ).scalar_one()  # fmt: skip
            attachment = Attachment(
                attachment_id, ticket_id, name, size, content_type, url_or_key, at, by
            )
            self._audit(conn, ticket_id, by, at, [("attachment", None, _audited(attachment))])
            return attachment

    def attachments(self, ticket_id: int) -> list[Attachment]:
        """The ticket's attachments and those of the tickets merged into it, oldest first."""
        with self.engine.connect() as conn:
            ids = self._family(conn, ticket_id)
            rows = conn.execute(
                select(ticket_attachments)
                .where(ticket_attachments.c.ticket_id.in_(ids))
                .order_by(ticket_attachments.c.added_at, ticket_attachments.c.id)
            )
            return [_attachment(r._mapping) for r in rows]

    def detach(self, ticket_id: int, attachment_id: int, *, by: str, at: float) -> Attachment:
        """Remove an attachment of the ticket (or of a ticket merged into it, as
        :meth:`attachments` lists them); answers what was removed. A merged or closed ticket
        refuses, as for :meth:`attach`; an attachment it does not list is
        :class:`UnknownAttachment`. Audit rows on the ticket and, for a merged duplicate's
        attachment, on the duplicate too; one transaction."""
        with self.engine.begin() as conn:
            ids = self._family(conn, ticket_id)
            row = conn.execute(
                select(ticket_attachments).where(
                    ticket_attachments.c.id == attachment_id,
                    ticket_attachments.c.ticket_id.in_(ids),
                )
            ).first()
            if row is None:
                raise UnknownAttachment(ticket_id, attachment_id)
            attachment = _attachment(row._mapping)
            self._touch_open(conn, ticket_id, "detach from", by, at)
            conn.execute(delete(ticket_attachments).where(ticket_attachments.c.id == attachment_id))
            removed = _audited(attachment)
            self._audit(conn, ticket_id, by, at, [("attachment", removed, None)])
            if attachment.ticket_id != ticket_id:
                self._audit(conn, attachment.ticket_id, by, at, [("attachment", removed, None)])
            return attachment

    def _touch_open(
        self, conn: Connection, ticket_id: int, action: str, by: str, at: float
    ) -> None:
        """Count a change to the ticket (version, updated at/by) unless it is closed or
        merged: then :class:`IllegalTransition` saying why (UnknownTicket if there is none).
        The status is checked by the UPDATE itself, so a close committed meanwhile is seen."""
        done = conn.execute(
            update(tickets)
            .where(tickets.c.id == ticket_id, tickets.c.status.not_in(_SEALED))
            .values(version=tickets.c.version + 1, updated_at=at, updated_by=by)
        )
        if done.rowcount == 1:
            return
        ticket = self._read(conn, ticket_id)
        if ticket.status == "merged":
            into = ticket_number(ticket.merged_into) if ticket.merged_into else "another ticket"
            reason = f"it was merged into {into}; work on that one"
        else:
            reason = "a closed ticket is history; reopen it first"
        raise IllegalTransition(
            ticket.status, action, reason, workflow.allowed_actions(ticket.status)
        )

    def link_call(self, ticket_id: int, pbx: str, call_id: str, *, by: str, at: float) -> bool:
        """Link a call to the ticket; False if it was linked already (nothing written)."""
        _check_length("call_id", call_id, 128)
        _check_length("pbx", pbx, 64)
        with self.engine.begin() as conn:
            self._read(conn, ticket_id)
            linked = conn.execute(
                select(ticket_calls.c.ticket_id).where(
                    ticket_calls.c.ticket_id == ticket_id,
                    ticket_calls.c.pbx == pbx,
                    ticket_calls.c.call_id == call_id,
                )
            ).first()
            if linked is not None:
                return False
            self._link(conn, ticket_id, pbx, call_id, by, at)
            conn.execute(
                update(tickets)
                .where(tickets.c.id == ticket_id)
                .values(version=tickets.c.version + 1, updated_at=at, updated_by=by)
            )
            return True

    def _link(
        self, conn: Connection, ticket_id: int, pbx: str, call_id: str, by: str, at: float
    ) -> None:
        conn.execute(
            insert(ticket_calls).values(
                ticket_id=ticket_id, pbx=pbx, call_id=call_id, linked_at=at, linked_by=by
            )
        )
        self._audit(conn, ticket_id, by, at, [("call", None, f"{pbx}/{call_id}")])

    def merge(
        self, duplicate_id: int, survivor_id: int, *, by: str, at: float
    ) -> tuple[Ticket, Ticket]:
        """Merge the duplicate into the survivor: the duplicate's status becomes the
        workflow's merged status and ``merged_into`` the survivor; its calls are linked to
        the survivor too and its comments and attachments read with the survivor's
        (:meth:`comments`, :meth:`attachments`).
        Audit rows on both. Returns (duplicate, survivor)."""
        if duplicate_id == survivor_id:
            raise TicketInputError("into", "a ticket cannot be merged into itself")
        with self.engine.begin() as conn:
            duplicate = self._read(conn, duplicate_id)
            survivor = self._read(conn, survivor_id)
            if survivor.merged_into is not None:
                raise TicketInputError(
                    "into", f"{survivor.number} was merged into another ticket: merge into that"
                )
            status = workflow.transition(duplicate.status, "merge")
            self._cas(conn, duplicate, {"status": status, "merged_into": survivor_id}, by, at)
            self._audit(conn, duplicate_id, by, at, [
                ("status", duplicate.status, status), ("merged_into", None, survivor.number),
            ])  # fmt: skip
            have = {
                (r.pbx, r.call_id)
                for r in conn.execute(
                    select(ticket_calls.c.pbx, ticket_calls.c.call_id).where(
                        ticket_calls.c.ticket_id == survivor_id
                    )
                )
            }
            for row in conn.execute(
                select(ticket_calls.c.pbx, ticket_calls.c.call_id).where(
                    ticket_calls.c.ticket_id == duplicate_id
                )
            ).all():
                if (row.pbx, row.call_id) not in have:
                    self._link(conn, survivor_id, row.pbx, row.call_id, by, at)
            self._cas(conn, survivor, {}, by, at)
            self._audit(conn, survivor_id, by, at, [("merged", None, duplicate.number)])
            return self._read(conn, duplicate_id), self._read(conn, survivor_id)

    def _change(
        self,
        ticket_id: int,
        version: int | None,
        by: str,
        at: float,
        build: Callable[[Connection, Ticket, _Edit], None],
    ) -> Ticket:
        """Read, build the edit, compare-and-set, audit: one transaction."""
        with self.engine.begin() as conn:
            ticket = self._read(conn, ticket_id)
            if version is not None and ticket.version != version:
                raise ConflictError(ticket_id, version, ticket.version)
            edit = _Edit()
            build(conn, ticket, edit)
            if not edit.values and not edit.audit:
                return ticket
            values = {k: list(v) if k == "tags" else v for k, v in edit.values.items()}
            self._cas(conn, ticket, values, by, at)
            self._audit(conn, ticket_id, by, at, edit.audit)
            return self._read(conn, ticket_id)

    def _cas(
        self, conn: Connection, ticket: Ticket, values: Mapping[str, Any], by: str, at: float
    ) -> None:
        """Write ``values`` if the row is still at ``ticket.version``; else ConflictError
        (the caller's transaction is rolled back: nothing written)."""
        done = conn.execute(
            update(tickets)
            .where(tickets.c.id == ticket.id, tickets.c.version == ticket.version)
            .values(version=ticket.version + 1, updated_at=at, updated_by=by, **values)
        )
        if done.rowcount != 1:
            current = conn.execute(
                select(tickets.c.version).where(tickets.c.id == ticket.id)
            ).scalar_one()
            raise ConflictError(ticket.id, ticket.version, current)

    def _audit(
        self,
        conn: Connection,
        ticket_id: int,
        by: str,
        at: float,
        rows: Iterable[tuple[str, Any, Any]],
    ) -> None:
        values = [
            {"ticket_id": ticket_id, "at": at, "by": by, "field": f, "old": old, "new": new}
            for f, old, new in rows
        ]
        if values:
            conn.execute(insert(ticket_changes), values)

    # -- reads ----------------------------------------------------------------------------

    def changes(self, ticket_id: int) -> list[Change]:
        """The ticket's audit trail, oldest first."""
        with self.engine.connect() as conn:
            self._read(conn, ticket_id)
            rows = conn.execute(
                select(ticket_changes)
                .where(ticket_changes.c.ticket_id == ticket_id)
                .order_by(ticket_changes.c.id)
            )
            return [
                Change(r.ticket_id, r.at, r.by, r.field, r.old, r.new) for r in rows
            ]

    def comments(self, ticket_id: int, *, public_only: bool = False) -> list[Comment]:
        """The ticket's comments and those of the tickets merged into it, oldest first."""
        with self.engine.connect() as conn:
            ids = self._family(conn, ticket_id)
            query = select(ticket_comments).where(ticket_comments.c.ticket_id.in_(ids))
            if public_only:
                query = query.where(ticket_comments.c.public)
            rows = conn.execute(query.order_by(ticket_comments.c.at, ticket_comments.c.id))
            return [Comment(r.id, r.ticket_id, r.at, r.author, r.public, r.body) for r in rows]

    def calls(self, ticket_id: int) -> list[tuple[str, str]]:
        """The calls linked to the ticket, as ``(pbx, call_id)``, in link order."""
        with self.engine.connect() as conn:
            self._read(conn, ticket_id)
            rows = conn.execute(
                select(ticket_calls.c.pbx, ticket_calls.c.call_id)
                .where(ticket_calls.c.ticket_id == ticket_id)
                .order_by(ticket_calls.c.linked_at)
            )
            return [(r.pbx, r.call_id) for r in rows]

    def _family(self, conn: Connection, ticket_id: int) -> list[int]:
        """The ticket and every ticket merged into it (through chains of merges)."""
        self._read(conn, ticket_id)
        family, frontier = [ticket_id], [ticket_id]
        while frontier:
            frontier = list(
                conn.execute(
                    select(tickets.c.id).where(tickets.c.merged_into.in_(frontier))
                ).scalars()
            )
            family += frontier
        return family

    def search(self, query: TicketQuery) -> Page:
        """Tickets matching ``query``, newest first, one page."""
        limit = max(1, min(query.limit, MAX_PAGE))
        with self.engine.connect() as conn:
            owners = None
            if query.number is not None:
                # The number's customers first, then ``customer_id IN (those)``: as a
                # sub-select PostgreSQL read and sorted every ticket of the customer (3,466
                # for the busiest in bench.tickets: 54 ms) instead of walking
                # ix_tickets_customer newest first (0.2 ms).
                owners = list(conn.execute(
                    select(customer_numbers.c.customer_id)
                    .where(customer_numbers.c.number == query.number)
                ).scalars())  # fmt: skip
            stmt = _filtered(select(tickets), query, owners)
            rows = conn.execute(stmt.order_by(tickets.c.id.desc()).limit(limit + 1)).all()
        found = [_ticket(r._mapping) for r in rows[:limit]]
        return Page(found, found[-1].id if len(rows) > limit else None)

    def open_for_customer(self, customer_id: str, limit: int = 10) -> list[Ticket]:
        """The customer's tickets not yet resolved, newest first (for the screen pop)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(tickets)
                .where(
                    tickets.c.customer_id == customer_id,
                    tickets.c.status.not_in(workflow.DONE),
                )
                .order_by(tickets.c.id.desc())
                .limit(limit)
            )
            return [_ticket(r._mapping) for r in rows]

    def running(self) -> list[Ticket]:
        """Tickets whose deadlines may still fire (not done, with a due date): the SLA
        timers are rebuilt from these at start."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(tickets).where(
                    tickets.c.status.not_in(workflow.DONE),
                    or_(
                        tickets.c.first_response_due.is_not(None),
                        tickets.c.resolution_due.is_not(None),
                    ),
                )
            )
            return [_ticket(r._mapping) for r in rows]

    def status_history(self, ticket_id: int) -> list[tuple[float, str]]:
        """``(at, status)`` for each status the ticket entered, from ``new`` at creation."""
        with self.engine.connect() as conn:
            ticket = self._read(conn, ticket_id)
            rows = conn.execute(
                select(ticket_changes.c.at, ticket_changes.c.new)
                .where(ticket_changes.c.ticket_id == ticket_id, ticket_changes.c.field == "status")
                .order_by(ticket_changes.c.id)
            )
            return [(ticket.created_at, "new"), *((r.at, r.new) for r in rows)]

    # -- validation -----------------------------------------------------------------------

    def _check_new(self, draft: NewTicket) -> None:
        if not draft.subject.strip():
            raise TicketInputError("subject", "empty: say in a few words what it is about")
        self._check_fields(
            {
                "subject": draft.subject, "description": draft.description,
                "tags": draft.tags, "category": draft.category, "priority": draft.priority,
                "customer_id": draft.customer_id, "queue": draft.queue,
            }
        )  # fmt: skip
        _check_length("assignee_agent", draft.assignee_agent, 64)
        _check_length("assignee_group", draft.assignee_group, 64)
        for i, (pbx, call_id) in enumerate(draft.calls):
            _check_length(f"calls.{i}.pbx", pbx, 64)
            _check_length(f"calls.{i}.call_id", call_id, 128)

    def _check_fields(self, values: Mapping[str, Any]) -> None:
        if "subject" in values:
            if not str(values["subject"]).strip():
                raise TicketInputError("subject", "empty: say in a few words what it is about")
            _check_length("subject", values["subject"], MAX_SUBJECT)
        if "description" in values:
            _check_length("description", values["description"], MAX_DESCRIPTION)
        if "tags" in values:
            tags = values["tags"]
            if len(tags) > MAX_TAGS:
                raise TicketInputError("tags", f"{len(tags)} tags: at most {MAX_TAGS}")
            for i, tag in enumerate(tags):
                if not tag.strip():
                    raise TicketInputError(f"tags.{i}", "empty tag")
                _check_length(f"tags.{i}", tag, MAX_TAG)
        if "category" in values and values["category"] not in self.categories:
            raise TicketInputError(
                "category", f"{values['category']!r} is none of {', '.join(self.categories)}"
            )
        if "priority" in values and values["priority"] not in self.priorities:
            raise TicketInputError(
                "priority", f"{values['priority']!r} is none of {', '.join(self.priorities)}"
            )
        for name in ("customer_id", "queue"):
            if name in values:
                _check_length(name, values[name], 64)


def _check_length(name: str, value: str | None, most: int) -> None:
    if value is not None and len(value) > most:
        raise TicketInputError(name, f"{len(value)} characters: at most {most}")


def _filtered(
    stmt: Select[Any], q: TicketQuery, owners: list[str] | None = None
) -> Select[Any]:
    """``stmt`` narrowed to ``q``; ``owners``: the customers on ``q.number`` (looked up by
    the caller; None: looked up here, in a sub-select)."""
    t = tickets
    if q.customer_id is not None:
        stmt = stmt.where(t.c.customer_id == q.customer_id)
    if q.number is not None:
        if owners is None:
            on_number: Any = select(customer_numbers.c.customer_id).where(
                customer_numbers.c.number == q.number
            )
        else:
            on_number = owners
        stmt = stmt.where(t.c.customer_id.in_(on_number))
    for name in ("status", "assignee_agent", "assignee_group", "category", "sla_state"):
        value = getattr(q, name)
        if value is not None:
            stmt = stmt.where(t.c[name] == value)
    if q.breached is not None:
        breached = t.c.sla_state == "breached"
        stmt = stmt.where(breached if q.breached else ~breached)
    if q.done is not None:
        finished = t.c.status.in_(workflow.DONE)
        stmt = stmt.where(finished if q.done else ~finished)
    if q.text:
        pattern = "%" + q.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        words = t.c.subject + " " + t.c.description
        stmt = stmt.where(words.ilike(pattern, escape="\\"))
    if q.before is not None:
        stmt = stmt.where(t.c.id < q.before)
    if q.scope is not None:
        stmt = stmt.where(_visible(q.scope))
    return stmt


def _visible(scope: Scope) -> Any:
    """Tickets ``scope``'s agent may see: theirs, their queues', their groups'."""
    seen = [tickets.c.assignee_agent == scope.agent]
    if scope.queues:
        seen.append(tickets.c.queue.in_(sorted(scope.queues)))
    if scope.groups:
        seen.append(tickets.c.assignee_group.in_(sorted(scope.groups)))
    return or_(*seen) if seen else false()


def visible_to(ticket: Ticket, scope: Scope) -> bool:
    """Whether ``scope``'s agent may see and change ``ticket`` (the same rule as search)."""
    return (
        ticket.assignee_agent == scope.agent
        or (ticket.queue is not None and ticket.queue in scope.queues)
        or (ticket.assignee_group is not None and ticket.assignee_group in scope.groups)
    )


def _ticket(row: Mapping[Any, Any]) -> Ticket:
    values = dict(row)
    values["tags"] = tuple(values["tags"] or ())
    return Ticket(**values)


#: Statuses whose attachments no longer change.
_SEALED = ("closed", "merged")


def _check_attachment(name: str, size: int, content_type: str, url: str) -> None:
    """Refuse an attachment's metadata that is not usable, naming the field."""
    if not name.strip():
        raise TicketInputError("name", "empty: give the file's name")
    _check_length("name", name, MAX_ATTACHMENT_NAME)
    if "/" in name or "\\" in name:
        raise TicketInputError("name", "a file name, not a path: no '/' or '\\'")
    if name in (".", ".."):
        raise TicketInputError("name", f"{name!r} is no file name")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise TicketInputError("name", "contains control characters")
    if isinstance(size, bool) or not isinstance(size, int):
        raise TicketInputError("size", f"{size!r} is no whole number of bytes")
    if size < 0:
        raise TicketInputError("size", f"{size} bytes: a size is 0 or more")
    if size > MAX_ATTACHMENT_SIZE:
        raise TicketInputError(
            "size", f"{size} bytes: at most {MAX_ATTACHMENT_SIZE} ({MAX_ATTACHMENT_SIZE >> 20} MiB)"
        )
    if not _CONTENT_TYPE.fullmatch(content_type):
        raise TicketInputError(
            "content_type", f"{content_type[:80]!r} is no media type: write type/subtype, "
            "e.g. application/pdf"
        )  # fmt: skip
    _check_reference(url)


def _check_reference(url: str) -> None:
    """An http(s) URL with a host, or a storage key: no spaces, no control characters."""
    if not url:
        raise TicketInputError("url", "empty: give the file's URL or storage key")
    _check_length("url", url, MAX_ATTACHMENT_URL)
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in url):
        raise TicketInputError("url", "contains spaces or control characters")
    if _SCHEME.match(url):
        # A scheme other than http(s) (javascript:, file:) is refused, not taken for a key:
        # clients show the reference as a link.
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https"):
            raise TicketInputError(
                "url", f"scheme {parts.scheme!r}: only http or https URLs, or a storage key "
                "(which starts with no scheme)"
            )  # fmt: skip
        if not parts.hostname:
            raise TicketInputError("url", "a URL names its host: https://host/path")


def _audited(attachment: Attachment) -> dict[str, Any]:
    # The reference is left out: a signed URL's token should not outlive its row.
    return {"id": attachment.id, "name": attachment.name, "size": attachment.size,
            "content_type": attachment.content_type}  # fmt: skip


def _attachment(row: Mapping[Any, Any]) -> Attachment:
    return Attachment(**dict(row))
