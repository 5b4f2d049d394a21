"""The tickets' one door: :class:`TicketService`.

The process builds it from its settings (anything with ``categories``, ``priorities`` and
``threads``, e.g. ``tickets.config.TicketSettings``), the SQL engine and the reactor. Every
operation runs the store (:mod:`tickets.store`) on the service's own thread pool, never on
the reactor, and answers a Deferred that fires on the reactor thread; each change is then
published on :attr:`TicketService.events` (ticket_created, ticket_changed, and from the SLA
timers sla_warning, sla_breached, ticket_escalated).

SLA: ``deadlines`` sets a new ticket's due dates (tier, priority, opened at); ``sla`` reads
a ticket's deadlines against its status history at a moment and says the state and the
next instant a warning or breach happens (``tickets.sla.SlaClock`` does this; the process
adapts it). The service keeps one timer per running ticket at that instant, never polls,
and rebuilds the timers from the open tickets at :meth:`start`: a SIGKILL loses no
deadline, a breach that passed while the process was down is published at start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import Engine, select, tuple_
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from cti.stream import EventStream
from tickets.events import (
    SlaBreached,
    SlaWarning,
    TicketChanged,
    TicketCreated,
    TicketEscalated,
    TicketEvent,
)
from tickets.schema import ticket_calls, tickets
from tickets.store import (
    Attachment,
    Change,
    Comment,
    ConflictError,
    DeadlinePolicy,
    Deadlines,
    NewTicket,
    Page,
    Ticket,
    TicketQuery,
    TicketStore,
)

__all__ = ["SlaAlarm", "SlaReading", "TicketService", "TicketServiceSettings"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Reads of a ticket's SLA before giving up when people keep changing it meanwhile.
_SLA_ATTEMPTS = 5


class TicketServiceSettings(Protocol):
    """What the service reads of its settings."""

    @property
    def categories(self) -> Sequence[str]: ...

    @property
    def priorities(self) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class SlaAlarm:
    """A deadline reaching ``state`` (``warning`` or ``breached``) at ``at``."""

    deadline: str
    state: str
    due: float


@dataclass(frozen=True, slots=True)
class SlaReading:
    """A ticket's SLA at a moment: its overall ``state`` (ok / warning / breached / met),
    the alarms that have happened by now, the next instant one will (None: no more) and
    the due instants as of now (None: leave the stored ones)."""

    state: str
    alarms: tuple[SlaAlarm, ...] = ()
    next_at: float | None = None
    due: Deadlines | None = None


@dataclass(frozen=True, slots=True)
class _SlaRecorded:
    """What one SLA read wrote: the ticket after it, the alarms told for the first time,
    whether it escalated the ticket, and the reading."""

    ticket: Ticket
    told: tuple[SlaAlarm, ...]
    escalated: bool
    reading: SlaReading


#: (ticket, its status history ``[(at, status)]``, now) -> the SLA then.
SlaReader = Callable[[Ticket, list[tuple[float, str]], float], SlaReading]


class TicketService:
    """Tickets inside one backend."""

    def __init__(
        self,
        settings: TicketServiceSettings,
        *,
        engine: Engine,
        reactor: Any,
        deadlines: DeadlinePolicy | None = None,
        sla: SlaReader | None = None,
        escalate_to: str | None = None,
        threads: int = 4,
    ) -> None:
        self.settings = settings
        self.reactor = reactor
        self.store = TicketStore(
            engine,
            categories=settings.categories,
            priorities=settings.priorities,
            deadlines=deadlines,
        )
        self.sla = sla
        #: The supervisors' group a breached ticket is given to (None: nobody).
        self.escalate_to = escalate_to
        #: Every ticket event, in order.
        self.events: EventStream[TicketEvent] = EventStream("ticket events")
        self._pool = ThreadPool(minthreads=1, maxthreads=threads, name="tickets")
        self._timers: dict[int, IDelayedCall] = {}
        self._running = False
        self._shutdown: Any = None  # the reactor's shutdown trigger that stops the pool

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> Deferred[None]:
        """Start the pool and rebuild the SLA timers from the running tickets."""
        self._pool.start()
        self._running = True
        if hasattr(self.reactor, "addSystemEventTrigger"):
            # Never keep the process alive: a service not stopped stops with the reactor
            # (its pool's threads are not daemons).
            self._shutdown = self.reactor.addSystemEventTrigger(
                "during", "shutdown", self._reactor_stopping
            )
        if self.sla is None:
            return succeed(None)

        def watch(found: list[Ticket]) -> None:
            for ticket in found:
                self._watch(ticket.id)

        d = self._in_thread(self.store.running).addCallback(watch)
        return d.addErrback(self._log_failure, "rebuilding the SLA timers")

    def stop(self) -> None:
        """Cancel the timers and stop the pool (work queued on it finishes first); again:
        nothing."""
        if not self._running:
            return
        self._running = False
        if self._shutdown is not None:
            self.reactor.removeSystemEventTrigger(self._shutdown)
            self._shutdown = None
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        self._pool.stop()

    def _reactor_stopping(self) -> None:
        self._shutdown = None  # firing: it is the reactor's to forget
        self.stop()

    # -- operations (from the HTTP API, on the reactor thread) ----------------------------

    def create(
        self, draft: NewTicket, *, by: str, idempotency_key: str | None = None
    ) -> Deferred[tuple[Ticket, bool]]:
        """Store a new ticket; (ticket, True), or for a retried idempotency key the ticket
        made the first time and False (nothing published again)."""
        at = self.reactor.seconds()
        d = self._in_thread(self.store.create, draft, by=by, at=at, idempotency_key=idempotency_key)

        def created(result: tuple[Ticket, bool]) -> tuple[Ticket, bool]:
            ticket, new = result
            if new:
                self.events.publish(
                    TicketCreated(at, ticket.id, ticket.number, by=by,
                                  customer_id=ticket.customer_id, category=ticket.category,
                                  priority=ticket.priority, queue=ticket.queue)
                )  # fmt: skip
                self._watch(ticket.id)
            return result

        return d.addCallback(created)

    def get(self, ticket_id: int) -> Deferred[Ticket]:
        return self._in_thread(self.store.get, ticket_id)

    def update(
        self, ticket_id: int, version: int, changes: Mapping[str, Any], *, by: str
    ) -> Deferred[Ticket]:
        at = self.reactor.seconds()
        return self._changed(
            self._in_thread(self.store.update, ticket_id, version, changes, by=by, at=at),
            by, tuple(changes),
        )  # fmt: skip

    def transition(
        self, ticket_id: int, action: str, *, by: str, version: int | None = None
    ) -> Deferred[Ticket]:
        at = self.reactor.seconds()
        d = self._in_thread(
            self.store.transition, ticket_id, action, by=by, at=at, version=version
        )
        return self._changed(d, by, ("status",))

    def assign(
        self,
        ticket_id: int,
        *,
        agent: str | None,
        group: str | None,
        by: str,
        version: int | None = None,
    ) -> Deferred[Ticket]:
        at = self.reactor.seconds()
        d = self._in_thread(
            self.store.assign, ticket_id, agent=agent, group=group, by=by, at=at, version=version
        )
        return self._changed(d, by, ("assignee_agent", "assignee_group"))

    def comment(self, ticket_id: int, body: str, *, public: bool, by: str) -> Deferred[Ticket]:
        """Add a comment; answers the ticket after it."""
        at = self.reactor.seconds()

        def add() -> Ticket:
            self.store.comment(ticket_id, body, public=public, by=by, at=at)
            return self.store.get(ticket_id)

        return self._changed(self._in_thread(add), by, ("comment",))

    def link_call(self, ticket_id: int, pbx: str, call_id: str, *, by: str) -> Deferred[Ticket]:
        at = self.reactor.seconds()

        def link() -> Ticket:
            self.store.link_call(ticket_id, pbx, call_id, by=by, at=at)
            return self.store.get(ticket_id)

        return self._changed(self._in_thread(link), by, ("call",))

    def merge(self, duplicate_id: int, survivor_id: int, *, by: str) -> Deferred[Ticket]:
        """Merge the duplicate into the survivor; answers the survivor."""
        at = self.reactor.seconds()
        d = self._in_thread(self.store.merge, duplicate_id, survivor_id, by=by, at=at)

        def merged(pair: tuple[Ticket, Ticket]) -> Ticket:
            duplicate, survivor = pair
            self._publish_change(duplicate, by, ("status", "merged_into"))
            self._publish_change(survivor, by, ("merged",))
            return survivor

        return d.addCallback(merged)

    def attach(
        self, ticket_id: int, name: str, size: int, content_type: str, url_or_key: str, *, by: str
    ) -> Deferred[Attachment]:
        """Record a file's metadata on the ticket (the file stays where ``url_or_key``
        says); answers the attachment and publishes the ticket's change."""
        at = self.reactor.seconds()

        def add() -> tuple[Attachment, Ticket]:
            attachment = self.store.attach(
                ticket_id, name, size, content_type, url_or_key, by=by, at=at
            )
            return attachment, self.store.get(ticket_id)

        return self._in_thread(add).addCallback(self._attachment_changed, by)

    def detach(self, ticket_id: int, attachment_id: int, *, by: str) -> Deferred[Attachment]:
        """Remove an attachment (the ticket's or a merged duplicate's); answers what was
        removed and publishes the ticket's change."""
        at = self.reactor.seconds()

        def remove() -> tuple[Attachment, Ticket]:
            attachment = self.store.detach(ticket_id, attachment_id, by=by, at=at)
            return attachment, self.store.get(ticket_id)

        return self._in_thread(remove).addCallback(self._attachment_changed, by)

    def _attachment_changed(self, done: tuple[Attachment, Ticket], by: str) -> Attachment:
        attachment, ticket = done
        self._publish_change(ticket, by, ("attachments",))
        return attachment

    def attachments(self, ticket_id: int) -> Deferred[list[Attachment]]:
        """The ticket's attachments, with those of the tickets merged into it."""
        return self._in_thread(self.store.attachments, ticket_id)

    def calls(self, ticket_id: int) -> Deferred[list[tuple[str, str]]]:
        """The calls linked to the ticket, ``(pbx, call_id)``."""
        return self._in_thread(self.store.calls, ticket_id)

    def comments(self, ticket_id: int) -> Deferred[list[Comment]]:
        """The ticket's comments, with those of the tickets merged into it."""
        return self._in_thread(self.store.comments, ticket_id)

    def changes(self, ticket_id: int) -> Deferred[list[Change]]:
        """The ticket's audit trail, oldest first."""
        return self._in_thread(self.store.changes, ticket_id)

    def search(self, query: TicketQuery) -> Deferred[Page]:
        return self._in_thread(self.store.search, query)

    def open_for_customer(self, customer_id: str, limit: int = 10) -> Deferred[list[Ticket]]:
        """The customer's open tickets, newest first (the screen pop shows them)."""
        return self._in_thread(self.store.open_for_customer, customer_id, limit)

    def calls_in_category(
        self, calls: Sequence[tuple[str, str]], category: str
    ) -> set[tuple[str, str]]:
        """Of ``calls`` ``(pbx, call_id)``, those linked to a ticket of ``category`` (the
        screen pop's contacts: which calls were complained on). Blocking, one query: for
        another domain's worker thread, never the reactor."""
        wanted = list(dict.fromkeys(calls))
        if not wanted:
            return set()
        c, t = ticket_calls.c, tickets.c
        query = (
            select(c.pbx, c.call_id)
            .join(tickets, t.id == c.ticket_id)
            .where(tuple_(c.pbx, c.call_id).in_(wanted), t.category == category)
        )
        with self.store.engine.connect() as conn:
            return {(pbx, call_id) for pbx, call_id in conn.execute(query)}

    # -- the SLA timers -------------------------------------------------------------------

    def _changed(self, d: Deferred[Ticket], by: str, fields: tuple[str, ...]) -> Deferred[Ticket]:
        def publish(ticket: Ticket) -> Ticket:
            self._publish_change(ticket, by, fields)
            return ticket

        return d.addCallback(publish)

    def _publish_change(self, ticket: Ticket, by: str, fields: tuple[str, ...]) -> None:
        self.events.publish(
            TicketChanged(ticket.updated_at, ticket.id, ticket.number, by=by, fields=fields,
                          status=ticket.status, version=ticket.version)
        )  # fmt: skip
        self._watch(ticket.id)

    def _watch(self, ticket_id: int) -> None:
        """Read the ticket's SLA now: publish what happened, set its one timer."""
        if self.sla is None or not self._running:
            return
        d = self._in_thread(self._read_sla, ticket_id, self.reactor.seconds())
        d.addCallback(self._sla_read)
        d.addErrback(self._log_failure, f"reading the SLA of ticket {ticket_id}")

    def _read_sla(self, ticket_id: int, now: float) -> _SlaRecorded:
        """Read the ticket's SLA and record what is new in one compare-and-set: the alarms
        told are in the store, so each is published once, after a restart too, and of two
        readers at once (a change and a timer, or two processes) one tells it."""
        assert self.sla is not None
        for _ in range(_SLA_ATTEMPTS):
            ticket = self.store.get(ticket_id)
            reading = self.sla(ticket, self.store.status_history(ticket_id), now)
            told = self.store.sla_alarms(ticket_id)
            new = tuple(a for a in reading.alarms if (a.deadline, a.state) not in told)
            escalate = (
                self.escalate_to
                if any(a.state == "breached" for a in new)
                and self.escalate_to is not None
                and ticket.assignee_group != self.escalate_to
                else None
            )
            due = reading.due
            if due is not None and due == Deadlines(
                ticket.first_response_due, ticket.resolution_due
            ):
                due = None
            if not new and escalate is None and due is None and reading.state == ticket.sla_state:
                return _SlaRecorded(ticket, (), False, reading)
            try:
                ticket = self.store.record_sla(
                    ticket_id, reading.state, by="sla", at=now, version=ticket.version,
                    alarms=[(a.deadline, a.state) for a in new], due=due,
                    escalate_to=escalate,
                )  # fmt: skip
            except ConflictError:
                continue  # changed meanwhile: read it again
            return _SlaRecorded(ticket, new, escalate is not None, reading)
        raise ConflictError(ticket_id, ticket.version, self.store.get(ticket_id).version)

    def _sla_read(self, recorded: _SlaRecorded) -> None:
        ticket, reading = recorded.ticket, recorded.reading
        now = self.reactor.seconds()
        for alarm in recorded.told:
            kind = SlaWarning if alarm.state == "warning" else SlaBreached
            self.events.publish(kind(now, ticket.id, ticket.number, alarm.deadline, alarm.due))
        if recorded.escalated:
            breached = next(a for a in recorded.told if a.state == "breached")
            reason = f"{breached.deadline.replace('_', ' ')} deadline breached"
            group = ticket.assignee_group
            assert group is not None
            self.events.publish(
                TicketEscalated(now, ticket.id, ticket.number, group=group, reason=reason)
            )
        old = self._timers.pop(ticket.id, None)
        if old is not None and old.active():
            old.cancel()
        if reading.next_at is not None and not ticket.done and self._running:
            delay = max(0.0, reading.next_at - now)
            self._timers[ticket.id] = self.reactor.callLater(delay, self._watch, ticket.id)

    # -- plumbing -------------------------------------------------------------------------

    def _in_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        return deferToThreadPool(self.reactor, self._pool, fn, *args, **kwargs)

    @staticmethod
    def _log_failure(failure: Failure, what: str) -> None:
        log.warning("tickets: %s failed: %s", what, failure.getErrorMessage())
