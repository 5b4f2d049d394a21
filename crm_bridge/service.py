"""The screen-pop bridge's one door: :class:`CrmBridgeService`.

The process builds it from :class:`~crm_bridge.config.CrmServiceSettings` and the shared
things it needs, passed in by constructor: the reactor (time, timers, the thread pool's
home), the SQL engine, a map from agent-side devices to agent names, and optionally an
external CRM (:class:`~crm_bridge.external.CustomerDirectory`). Then it subscribes
:meth:`~CrmBridgeService.on_call_event` to the call events and
:meth:`~CrmBridgeService.on_acd_event` to the ACD's events, hands :attr:`tiers` to the ACD
and :attr:`sessions` to the agents' WebSocket endpoint (``crm_bridge.http``).

Inside: the pure pop core (:class:`~crm_bridge.pop.PopDesk`) decides who gets which pop;
this shell looks callers up (database work on its own thread pool, never on the reactor),
asks the external CRM only for callers the customer tables do not know and never waits for
it (the pop goes out with what is known and is updated when the CRM answers), delivers
frames to the agents' open sessions, and keeps an audit row of every frame sent.

Tickets (another domain: this package imports nothing of it) reach the pop through
callables the process passes: ``open_tickets(customer_id)`` gives a customer's open tickets
(dicts with at least ``id``), read with the caller's look-up on this pool and shown on the
card (:func:`ticket_card`); ``complaint_calls(calls)`` says which calls are linked to a
complaint ticket. The process subscribes the tickets' events to :meth:`tickets_changed`
(a pop showing the customer is re-read and updated) and :meth:`complaints_changed` (the
calls' contacts are marked, their customers re-profiled by the incremental path).

Recovery: after a restart the call model's snapshot re-announces the calls in progress and
the ACD its connected callers, so the desk rebuilds each agent's pop; the customer an agent
picked for a call is read back from ``call_customers``. While the database is down, pops
still go out (the look-up says it failed) and audit rows wait in memory (bounded) until it
returns.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine, case, func, insert, select, tuple_, update
from sqlalchemy.exc import SQLAlchemyError
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from acd.events import AcdEvent
from crm_bridge import store
from crm_bridge.config import CrmServiceSettings, load_profile_rules
from crm_bridge.contacts import ComplaintCalls, fill_contacts
from crm_bridge.external import CrmUnavailable, CustomerDirectory, ExternalCustomer
from crm_bridge.pop import CallRecord, Identity, PopDesk, PopError, PopFrame
from crm_bridge.recompute import NoTierRun, recompute_changed
from crm_bridge.schema import contacts, customers, pops, tier_runs
from crm_bridge.tiers import TierIndex
from cti.calls.events import CallArrived, CallerChanged, PbxEvent
from ivr.events import IvrEvent, IvrFinished

__all__ = ["TICKET_FIELDS", "CrmBridgeService", "OpenTickets", "PopSessions", "card_of",
           "ticket_card"]  # fmt: skip

log = logging.getLogger(__name__)

#: What a tier reload found: nothing new, every number (a new run), or the numbers of the
#: customers profiled since the last reload.
TierChange = tuple[Literal["all", "some"], dict[str, str]] | None
#: Audit rows of pops kept in memory while the database is away; the oldest go first.
MAX_PENDING_AUDIT = 50_000
#: Seconds between writes of the pops' audit rows.
AUDIT_EVERY = 1.0
#: How far back the first contacts pass looks for ended calls (older ones: ``callcenter
#: tiers recompute`` fills them), and how far each later pass overlaps the one before.
FILL_LOOKBACK = 86_400.0
FILL_MARGIN = 3_600.0
#: The background pass works in small batches and rests after each: profiling is pure
#: Python, and the reactor thread (pops, AMI) must get the GIL back within milliseconds.
#: Resting three times as long as the batch took keeps the pass to a quarter of the time
#: (a fixed 5 ms let it hold the GIL most of a pass: pop p99 rose in the pass's seconds).
BACKGROUND_BATCH = 50
PAUSE = 0.005
REST = 3.0
#: Seconds the pop waits for nothing: the external CRM is asked in the background, and
#: given this long before the pop says it did not answer.
CRM_BUDGET = 2.0

Sender = Callable[[Mapping[str, Any]], None]
#: A customer's open tickets, newest first (blocking: called on this service's pool).
OpenTickets = Callable[[str], Sequence[Mapping[str, Any]]]
#: What a pop card shows of each open ticket: what it is, how urgent, where it stands, when
#: it is due and whether that promise is kept (``sla_state``: ok / warning / breached).
TICKET_FIELDS = ("id", "number", "subject", "category", "priority", "status",
                 "first_response_due", "first_response_at", "resolution_due", "sla_state",
                 "created_at")  # fmt: skip


class PopSessions:
    """The agents' open pop connections (several per agent: two tabs, a phone app). A
    connection is a function that queues a message for its socket; it must not block."""

    def __init__(self) -> None:
        self._by_agent: dict[str, list[Sender]] = {}

    def connect(self, agent: str, send: Sender) -> Callable[[], None]:
        """Deliver ``agent``'s pops to ``send`` from now on; returns the disconnect."""
        self._by_agent.setdefault(agent, []).append(send)

        def disconnect() -> None:
            senders = self._by_agent.get(agent, [])
            if send in senders:
                senders.remove(send)
            if not senders:
                self._by_agent.pop(agent, None)

        return disconnect

    def send(self, agent: str, message: Mapping[str, Any]) -> int:
        """Queue ``message`` on each of ``agent``'s connections; returns how many."""
        senders = list(self._by_agent.get(agent, ()))
        for send in senders:
            send(message)
        return len(senders)

    def connected(self, agent: str) -> int:
        """How many connections ``agent`` has open."""
        return len(self._by_agent.get(agent, ()))


def ticket_card(ticket: Mapping[str, Any]) -> dict[str, Any]:
    """An open ticket as the pop card shows it (:data:`TICKET_FIELDS`)."""
    return {name: ticket.get(name) for name in TICKET_FIELDS}


def card_of(
    record: store.CustomerRecord,
    last_contacts: list[dict[str, Any]],
    open_tickets: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A customer as the pop shows it: who, the stored profile (tier, loyalty, lifecycle,
    lifetime value, next step, each with its reason), the last contacts, open tickets."""
    return {
        "id": record.id,
        "source": "customers",
        "name": record.name,
        "email": record.email,
        "numbers": list(record.numbers),
        "tier": record.tier,
        "profile": record.profile,
        "profiled_at": record.profiled_at,
        "last_contacts": last_contacts,
        "open_tickets": [ticket_card(t) for t in open_tickets],
    }


def external_card(customer: ExternalCustomer) -> dict[str, Any]:
    """A customer the external CRM knows, as the pop shows it (no computed profile: the
    CRM's own tier, if it gave one)."""
    return {
        "id": f"crm:{customer.id}",
        "source": "crm",
        "name": customer.name,
        "email": None,
        "numbers": list(customer.numbers),
        "tier": customer.tier,
        "profile": None,
        "profiled_at": None,
        "last_contacts": [],
        "open_tickets": [],
        "notes": customer.notes,
        "url": customer.url,
        "crm_open_tickets": customer.open_tickets,
    }


@dataclass(frozen=True, slots=True)
class _Found:
    """What the database says of a caller's number."""

    cards: list[dict[str, Any]]
    chosen: str | None


class CrmBridgeService:
    """Customers, profiles and pops inside one backend."""

    def __init__(
        self,
        settings: CrmServiceSettings,
        *,
        reactor: Any,
        engine: Engine,
        agent_of: Callable[[str], str | None],
        directory: CustomerDirectory | None = None,
        open_tickets: OpenTickets | None = None,
        complaint_calls: ComplaintCalls | None = None,
    ) -> None:
        self.settings = settings
        #: The tickets domain's answers (None: no tickets, cards show none).
        self.open_tickets = open_tickets
        self.complaint_calls = complaint_calls
        self.reactor = reactor
        self.engine = engine
        #: The customer-profile rules (CrmConfigError at construction when the file is bad).
        self.rules = load_profile_rules(settings.profile_rules)
        self.directory = directory
        self.desk = PopDesk(agent_of)
        #: The agents' open pop connections.
        self.sessions = PopSessions()
        #: Computed tiers by number, for the ACD (from memory, on the routing path).
        self.tiers = TierIndex()
        self._pool = ThreadPool(minthreads=1, maxthreads=settings.threads, name="crm_bridge")
        self._audit: list[dict[str, Any]] = []
        #: What each (call, agent)'s audit rows showed in full last, and in which revision.
        self._audited: dict[tuple[str, str], tuple[tuple[Any, ...], Any]] = {}
        self._audit_down = False
        self._writing: Deferred[None] | None = None
        self._tier_mark: tuple[Any, ...] | None = None
        self._filled_until: float | None = None
        self._no_run_told = False
        self._filling: Deferred[None] | None = None
        # (timer, interval, run at once): the tier index is read at start already.
        self._loops = [
            self._loop(self._write_audit, AUDIT_EVERY, True),
            self._loop(self.refresh_tiers, settings.tier_refresh, False),
            self._loop(self._fill_contacts, settings.contacts_every, True),
        ]

    def _loop(
        self, step: Callable[[], object], interval: float, now: bool
    ) -> tuple[LoopingCall, float, bool]:
        loop = LoopingCall(step)
        loop.clock = self.reactor
        return loop, interval, now

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Load the tier index (before the AMI link starts, so callers the first snapshot
        restores rejoin with their tier), start the thread pool, the audit writer, the
        tier-index refresh and the contacts pass."""
        try:
            self._tiers_read(self._read_tiers(None))
        except SQLAlchemyError as exc:
            self._tiers_failed(Failure(exc))
        self._pool.start()
        for loop, interval, now in self._loops:
            loop.start(interval, now=now)

    def stop(self) -> Deferred[None]:
        """Stop the timers, write what audit rows the database takes, stop the pool."""
        for loop, _, _ in self._loops:
            if loop.running:
                loop.stop()
        d = self._write_audit()

        def done(_: object) -> None:
            if self._audit:
                log.warning("screen pop: %d audit rows not written at stop", len(self._audit))
            self._pool.stop()

        return d.addBoth(done)

    # -- inputs ---------------------------------------------------------------------------

    def on_call_event(self, event: PbxEvent) -> None:
        """A call-model event: caller arrivals start the look-up; the desk follows the call."""
        self._deliver(self.desk.on_call_event(event))
        if isinstance(event, CallArrived | CallerChanged):
            number = self.desk.number_of(event.call_id)
            if number is not None and number.startswith("+"):
                self._identify(event.call_id, number)
            elif number is not None:
                # Not an E.164 number (a SIP user name, an internal extension): no customer.
                self._deliver(self.desk.identified(event.call_id, Identity.of([]), event.at))

    def on_acd_event(self, event: AcdEvent) -> None:
        """An ACD event: offers, answers and missed offers move the pop."""
        self._deliver(self.desk.on_acd_event(event))

    def on_ivr_event(self, event: IvrEvent) -> None:
        """An IVR event: a finished flow adds its nodes, inputs and outcome to the pop's IVR
        path (the call model's events give only the AGI entry and the keys)."""
        if isinstance(event, IvrFinished) and event.call_id is not None:
            walk = {"flow": event.flow, "nodes": list(event.path), "keyed": list(event.digits),
                    "outcome": event.outcome, "queue": event.queue}  # fmt: skip
            self._deliver(self.desk.ivr_walked(event.call_id, event.at, walk))

    # -- the agent's requests (from the HTTP API, on the reactor thread) ------------------

    def current_pop(self, agent: str) -> Mapping[str, Any] | None:
        """``agent``'s pop of the call in progress (ringing or talking), or None."""
        frame = self.desk.current(agent, self.reactor.seconds())
        return frame.pop if frame is not None else None

    def pop_for(self, call_id: str, agent: str) -> Mapping[str, Any]:
        """The pop of ``call_id`` for ``agent``; :class:`PopError` when it is not theirs."""
        return self.desk.pop_for(call_id, agent, self.reactor.seconds()).pop

    def choose(self, call_id: str, agent: str, customer_id: str) -> Deferred[Mapping[str, Any]]:
        """``agent`` picked ``customer_id`` among the candidates: the pop is updated at once
        and the choice remembered for the call (a transfer or a restart keeps it)."""
        now = self.reactor.seconds()
        frames = self.desk.choose(call_id, agent, customer_id, now)
        self._deliver(frames)
        if not customer_id.startswith("crm:"):
            remembered = self._in_thread(self._remember, call_id, customer_id, agent, now)
            remembered.addErrback(self._log_failure, f"remembering the customer of call {call_id}")
        return succeed(self.desk.pop_for(call_id, agent, now).pop)

    def create_for_call(
        self, call_id: str, agent: str, name: str, email: str | None
    ) -> Deferred[Mapping[str, Any]]:
        """``agent`` creates a customer for the unknown caller of ``call_id`` (with the
        caller's number) and the pop shows it."""
        self.desk.pop_for(call_id, agent, self.reactor.seconds())  # PopError if not theirs
        number = self.desk.number_of(call_id)
        if number is None or not number.startswith("+"):
            raise PopError(409, "the caller's number is withheld or not a phone number")
        return self._in_thread(self._create, call_id, agent, name, email, number).addCallback(
            self._attached, call_id, agent
        )

    def attach_to_call(
        self, call_id: str, agent: str, customer_id: str
    ) -> Deferred[Mapping[str, Any]]:
        """``agent`` attaches the caller's number to the existing customer ``customer_id``."""
        self.desk.pop_for(call_id, agent, self.reactor.seconds())  # PopError if not theirs
        number = self.desk.number_of(call_id)
        if number is None or not number.startswith("+"):
            raise PopError(409, "the caller's number is withheld or not a phone number")
        return self._in_thread(self._attach, call_id, agent, customer_id, number).addCallback(
            self._attached, call_id, agent
        )

    def lookup(self, number: str) -> Deferred[list[dict[str, Any]]]:
        """The customers on ``number`` (E.164), as pop cards."""
        return self._in_thread(lambda: self._find(number, None).cards)

    def call_record(self, call_id: str) -> Deferred[CallRecord | None]:
        """What the pop knew of ``call_id`` and who talked to the caller: live or lately
        ended calls from the desk, older ones (or after a restart) from the pops' audit
        rows. None: no pop was ever shown for it."""
        record = self.desk.call_record(call_id)
        if record is not None:
            return succeed(record)
        return self._in_thread(self._audited_call, call_id)

    # -- what the tickets say (the process subscribes these to the tickets' events) ------

    def tickets_changed(self, customer_id: str | None, ticket_id: Any) -> Deferred[None]:
        """A ticket of ``customer_id`` (None: no customer) was created or changed: every
        live pop showing that customer, or showing the ticket (it may have moved to another
        customer, or closed), has the customer's open tickets read again and is updated.
        Nothing is read when no pop shows them."""
        if self.open_tickets is None:
            return succeed(None)
        shown = self.desk.customers_shown({customer_id} if customer_id else set(), ticket_id)
        if not shown:
            return succeed(None)

        def read() -> dict[str, list[dict[str, Any]]]:
            assert self.open_tickets is not None
            return {cid: [ticket_card(t) for t in self.open_tickets(cid)] for cid in shown}

        def show(found: dict[str, list[dict[str, Any]]]) -> None:
            now = self.reactor.seconds()
            for cid, tickets in sorted(found.items()):
                self._deliver(self.desk.tickets_changed(cid, tickets, now))

        d: Deferred[None] = self._in_thread(read).addCallback(show)
        d.addErrback(self._log_failure, f"reading the open tickets of {sorted(shown)}")
        return d

    def complaints_changed(self, calls: Sequence[tuple[str, str]]) -> Deferred[int]:
        """A complaint ticket was made, linked to ``calls`` or re-categorised: their
        contacts are marked (or unmarked) as ``complaint_calls`` now says, and the customers
        of those that changed get ``changed_at`` bumped, so the next background pass
        re-profiles them (satisfaction, quadrant, next step). Contacts not stored yet are
        marked when the contacts pass stores them. Answers how many contacts changed."""
        if self.complaint_calls is None or not calls:
            return succeed(0)
        d: Deferred[int] = self._in_thread(self._mark_complaints, list(dict.fromkeys(calls)))
        d.addErrback(self._log_failure, "marking complaints")
        return d

    def _mark_complaints(self, calls: list[tuple[str, str]]) -> int:
        assert self.complaint_calls is not None
        flagged = set(self.complaint_calls(calls))
        now = self.reactor.seconds()
        changed = 0
        c = contacts.c
        with self.engine.begin() as conn:
            for complaint in (True, False):
                chosen = [call for call in calls if (call in flagged) == complaint]
                if not chosen:
                    continue
                which = (tuple_(c.pbx, c.call_id).in_(chosen), c.complaint.is_not(complaint))
                touched = {
                    cid for (cid,) in conn.execute(select(c.customer_id).where(*which))
                    if cid is not None
                }  # fmt: skip
                changed += conn.execute(update(contacts).where(*which).values(
                    complaint=complaint)).rowcount  # fmt: skip
                if touched:
                    k = customers.c
                    conn.execute(
                        update(customers)
                        .where(k.id.in_(sorted(touched)))
                        .values(changed_at=case((k.changed_at < now, now), else_=k.changed_at))
                    )
        return changed

    # -- look-ups ------------------------------------------------------------------------

    def _identify(self, call_id: str, number: str) -> None:
        d = self._in_thread(self._find, number, call_id)
        d.addCallbacks(
            self._found,
            self._not_found,
            callbackArgs=(call_id, number),
            errbackArgs=(call_id,),
        )

    def _find(self, number: str, call_id: str | None) -> _Found:
        # Reads only, each consistent on its own: no transaction, so no BEGIN and ROLLBACK
        # round trips (half the look-up's time on PostgreSQL, bench/screen_pop.py).
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            records = store.candidates_for(conn, number)
            chosen = (
                store.chosen_customer(conn, self.settings.pbx, call_id)
                if call_id is not None and len(records) > 1
                else None
            )
            contacts_of = {
                r.id: store.last_contacts(conn, r.id, self.settings.last_contacts)
                for r in records
            }
        cards = [card_of(r, contacts_of[r.id], self._tickets_of(r.id)) for r in records]
        return _Found(cards, chosen)

    def _tickets_of(self, customer_id: str) -> Sequence[Mapping[str, Any]]:
        """The customer's open tickets; none when the tickets' answer fails (the pop goes
        out without them rather than not at all)."""
        if self.open_tickets is None:
            return ()
        try:
            return self.open_tickets(customer_id)
        except Exception as exc:  # another domain's failure must not cost the pop
            log.warning("screen pop: open tickets of %s unread: %s", customer_id, exc)
            return ()

    def _found(self, found: _Found, call_id: str, number: str) -> None:
        if found.cards or self.directory is None:
            identity = Identity.of(found.cards, chosen=found.chosen)
            self._deliver(self.desk.identified(call_id, identity, self.reactor.seconds()))
            return
        # Nobody here knows the number: the pop goes out now and the CRM may add to it.
        pending = Identity("unknown", note="asking the CRM")
        self._deliver(self.desk.identified(call_id, pending, self.reactor.seconds()))
        self._ask_crm(self.directory, call_id, number)

    def _not_found(self, failure: Failure, call_id: str) -> None:
        reason = _reason(failure)
        log.warning("screen pop: caller look-up of call %s failed: %s", call_id, reason)
        identity = Identity("unknown", note=f"customer look-up failed ({reason})")
        self._deliver(self.desk.identified(call_id, identity, self.reactor.seconds()))

    def _ask_crm(self, directory: CustomerDirectory, call_id: str, number: str) -> None:
        async def ask() -> Identity:
            try:
                answer = await asyncio.wait_for(directory.lookup(number), CRM_BUDGET)
            except CrmUnavailable as exc:
                return Identity("unknown", note=f"the CRM did not answer ({exc.reason})")
            except TimeoutError:
                return Identity("unknown", note="the CRM did not answer in time")
            except ValueError:  # a number the CRM client refuses (not E.164)
                return Identity("unknown")
            cards = [external_card(c) for c in answer.customers]
            return Identity.of(cards, note=f"from the CRM ({answer.source})")

        d: Deferred[Identity] = Deferred.fromFuture(asyncio.ensure_future(ask()))
        d.addCallback(
            lambda identity: self._deliver(
                self.desk.identified(call_id, identity, self.reactor.seconds())
            )
        )
        d.addErrback(self._log_failure, f"asking the CRM about call {call_id}")

    def _audited_call(self, call_id: str) -> CallRecord | None:
        """A call's record from the pops' audit rows (the desk forgot it: long ended, or
        the process restarted): the agents it was answered by, the last pop's customer,
        number, queue and IVR path."""
        p = pops.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(p.agent, p.kind, p.payload)
                .where(p.pbx == self.settings.pbx, p.call_id == call_id)
                .order_by(p.id)
            ).all()
            chosen = store.chosen_customer(conn, self.settings.pbx, call_id)
        if not rows:
            return None
        last = rows[-1].payload or {}
        customer = last.get("customer") or {}
        ivr = last.get("ivr") or {}
        return CallRecord(
            call_id, chosen or customer.get("id"), (last.get("caller") or {}).get("number"),
            last.get("queue"), tuple(ivr.get("path") or ()), ivr.get("digits") or "",
            frozenset(r.agent for r in rows if r.kind == "answered"), True,
        )  # fmt: skip

    # -- the agent's changes (in a thread) ------------------------------------------------

    def _remember(self, call_id: str, customer_id: str, agent: str, now: float) -> None:
        with self.engine.begin() as conn:
            store.remember_choice(conn, self.settings.pbx, call_id, customer_id, agent, now)

    def _create(
        self, call_id: str, agent: str, name: str, email: str | None, number: str
    ) -> dict[str, Any]:
        now = self.reactor.seconds()
        customer_id = f"A-{uuid.uuid4().hex[:12]}"  # A: created by an agent
        with self.engine.begin() as conn:
            store.add_customer(
                conn, customer_id, name, (number,), email=email, source="agent", now=now
            )
            store.remember_choice(conn, self.settings.pbx, call_id, customer_id, agent, now)
            record = store.customer(conn, customer_id)
        assert record is not None
        return card_of(record, [])

    def _attach(self, call_id: str, agent: str, customer_id: str, number: str) -> dict[str, Any]:
        now = self.reactor.seconds()
        with self.engine.begin() as conn:
            record = store.customer(conn, customer_id)
            if record is None:
                raise store.UnknownCustomer(customer_id)
            if number not in record.numbers:
                store.add_number(conn, customer_id, number)
            store.remember_choice(conn, self.settings.pbx, call_id, customer_id, agent, now)
            record = store.customer(conn, customer_id)
            contacts = store.last_contacts(conn, customer_id, self.settings.last_contacts)
        assert record is not None
        return card_of(record, contacts)

    def _attached(self, card: dict[str, Any], call_id: str, agent: str) -> Mapping[str, Any]:
        now = self.reactor.seconds()
        self._deliver(self.desk.attach(call_id, agent, card, now))
        return self.desk.pop_for(call_id, agent, now).pop

    # -- delivery and audit ---------------------------------------------------------------

    def _deliver(self, frames: list[PopFrame]) -> None:
        for frame in frames:
            self.sessions.send(frame.agent, frame.pop)
            self._audit.append(
                {
                    "pbx": self.settings.pbx,
                    "call_id": frame.call_id,
                    "agent": frame.agent,
                    "kind": frame.kind,
                    "at": frame.at,
                    "payload": self._audited_pop(frame),
                }
            )
        if len(self._audit) > MAX_PENDING_AUDIT:
            dropped = len(self._audit) - MAX_PENDING_AUDIT
            del self._audit[:dropped]
            log.error("screen pop: %d audit rows dropped (database away too long)", dropped)

    def _audited_pop(self, frame: PopFrame) -> dict[str, Any]:
        """The pop as the audit row keeps it: the customer's card in full the first time an
        agent is shown it on a call, then its id and the revision that had it in full (the
        same card repeated on every frame would be most of the audit's bytes)."""
        pop = dict(frame.pop)
        key = (frame.call_id, frame.agent)
        card = pop.get("customer")
        candidates = pop.get("candidates") or []
        shown = (
            pop.get("identity"),
            card and card.get("id"),
            card and card.get("profiled_at"),
            tuple(c.get("id") for c in candidates),
        )
        last = self._audited.get(key)
        if last is not None and last[0] == shown:
            if card:
                pop["customer"] = {"id": card.get("id"), "as_in_revision": last[1]}
            if candidates:
                pop["candidates"] = [
                    {"id": c.get("id"), "as_in_revision": last[1]} for c in candidates
                ]
        else:
            self._audited[key] = (shown, pop.get("revision"))
        if frame.kind in ("ended", "withdrawn", "transferred"):
            self._audited.pop(key, None)
        return pop

    def _write_audit(self) -> Deferred[None]:
        if self._writing is not None or not self._audit:
            return succeed(None) if self._writing is None else self._writing
        rows, self._audit = self._audit, []

        def write() -> None:
            with self.engine.begin() as conn:
                conn.execute(insert(pops), rows)

        def failed(failure: Failure) -> None:
            self._audit[:0] = rows  # kept, in order, for the next attempt
            if not self._audit_down:
                self._audit_down = True
                log.warning("screen pop: audit rows wait in memory: %s", _reason(failure))

        def written(_: object) -> None:
            if self._audit_down:
                self._audit_down = False
                log.info("screen pop: audit rows are written again")

        def idle(_: object) -> None:
            self._writing = None

        d = self._in_thread(write).addCallbacks(written, failed).addBoth(idle)
        self._writing = d
        return d

    # -- contacts and incremental profiles ------------------------------------------------

    def _fill_contacts(self) -> Deferred[None] | None:
        """Contacts for the calls that ended lately, then the profiles of their customers
        (one pass at a time; a pass the database refuses is tried again next time)."""
        if self._filling is not None:
            return None
        now = self.reactor.seconds()
        # Calls end hours after they start at most; events written late (a database
        # outage) keep their PBX time: look back a day on the first pass, a margin after.
        since = now - FILL_LOOKBACK if self._filled_until is None else (
            self._filled_until - FILL_MARGIN
        )
        d = self._in_thread(self._fill_and_profile, since, now)

        def filled(_: object) -> None:
            self._filled_until = now

        def idle(_: object) -> None:
            self._filling = None

        d.addCallbacks(filled, self._log_failure, errbackArgs=("filling contacts",))
        d.addBoth(idle)
        self._filling = d
        return d

    def _fill_and_profile(self, since: float, now: float) -> None:
        fill_contacts(
            self.engine, since=since, now=now, batch=BACKGROUND_BATCH, pause=PAUSE, rest=REST,
            complaints=self.complaint_calls,
        )  # fmt: skip
        # Everyone changed since the last pass: new contacts (just filled) and new orders
        # (an import, the CRM) alike bump ``changed_at``.
        changed_since = now - FILL_LOOKBACK if self._filled_until is None else self._filled_until
        try:
            recompute_changed(
                self.engine,
                now,
                self.rules,
                since=changed_since,
                batch=BACKGROUND_BATCH,
                pause=PAUSE,
                rest=REST,
            )
        except NoTierRun:
            if not self._no_run_told:
                self._no_run_told = True
                log.info(
                    "screen pop: no tier run yet: profiles wait for 'callcenter tiers recompute'"
                )

    # -- the ACD's tier index -------------------------------------------------------------

    def refresh_tiers(self) -> Deferred[None]:
        """Reload the tier index when a recompute or an incremental profile changed it."""
        d = self._in_thread(self._read_tiers, self._tier_mark)
        d.addCallbacks(self._tiers_read, self._tiers_failed)
        return d

    def _read_tiers(self, mark: tuple[Any, ...] | None) -> tuple[tuple[Any, ...], TierChange]:
        with self.engine.connect() as conn:
            # The latest run and the latest profile say whether anything changed: a new run
            # re-tiers everyone (read all), new profiles only their customers' numbers.
            now_mark = (
                conn.execute(select(func.max(tier_runs.c.id))).scalar(),
                conn.execute(select(func.max(customers.c.profiled_at))).scalar(),
            )
            if now_mark == mark:
                return now_mark, None
            if mark is None or mark[0] != now_mark[0] or mark[1] is None:
                return now_mark, ("all", store.tier_index(conn))
            # ``>=``: a pass still writing profiles stamped with the mark's time is re-read.
            return now_mark, ("some", store.tier_index(conn, profiled_since=mark[1]))

    def _tiers_read(self, result: tuple[tuple[Any, ...], TierChange]) -> None:
        mark, change = result
        if change is not None:
            scope, index = change
            if scope == "all":
                self.tiers.replace(index)
                log.info("screen pop: tier index loaded: %d numbers", len(index))
            else:
                self.tiers.update(index)
        self._tier_mark = mark

    def _tiers_failed(self, failure: Failure) -> None:
        log.warning(
            "screen pop: cannot reload the tier index (%s); the ACD keeps the %d tiers it has",
            _reason(failure),
            len(self.tiers),
        )

    # -- inside ---------------------------------------------------------------------------

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(self.reactor, self._pool, fn, *args)

    def _log_failure(self, failure: Failure, what: str) -> None:
        log.warning("screen pop: %s failed: %s", what, _reason(failure))


def _reason(failure: Failure) -> str:
    exc = failure.value
    if isinstance(exc, SQLAlchemyError):
        orig = getattr(exc, "orig", None) or exc
        return f"database: {str(orig).strip().splitlines()[0][:200]}"
    return f"{type(exc).__name__}: {exc}"[:300]

