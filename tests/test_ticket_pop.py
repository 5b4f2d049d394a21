"""Tickets meet the call and the customer: the pop card's open tickets (read with the
look-up, updated while the pop is up), the desk's record of a call for a ticket made in
wrap-up, a complaint counting in the customer's satisfaction (pure profile), and with a real
database (SQLite and PostgreSQL) the tickets and pop services joined as the process joins
them: a ticket from a call over the API (prefilled, 403 for another agent), the pop updated,
complaint contacts marked and their customers due for re-profiling."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator, Mapping
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import Engine, insert, select
from twisted.internet.defer import Deferred

from acd.events import CallerConnected, CallerJoined, CallerOffered
from crm_bridge import store
from crm_bridge.config import CrmServiceSettings, ProfileRules
from crm_bridge.contacts import fill_contacts
from crm_bridge.customer import DAY, Contact, CustomerHistory, Order
from crm_bridge.pop import KEEP_ENDED, Identity, PopDesk
from crm_bridge.profile import profile_customer, profile_population
from crm_bridge.schema import contacts, customers
from crm_bridge.service import CrmBridgeService, ticket_card
from cti.calls.events import CallArrived, CallEnded, Caller, DigitsReceived
from cti.history import call_events
from tickets.events import TicketChanged, TicketCreated, TicketEvent
from tickets.http import CallFacts, call_context, ticket_routes
from tickets.service import TicketService
from tickets.store import DEFAULT_CATEGORIES, DEFAULT_PRIORITIES, NewTicket
from web.accounts import Account, Accounts
from web.api import build_api
from web.server import ApiServer

T = TypeVar("T")
NOW = 1_780_000_000.0
NUMBER = "+4930123456"
PASSWORD = "s3cret-pass"


# -- the pure pop core --------------------------------------------------------------------


def ticket(n: int, **kw: Any) -> dict[str, Any]:
    return ticket_card({"id": n, "number": f"T-{n:06d}", "subject": f"subject {n}",
                        "category": "inquiry", "priority": "normal", "status": "new",
                        "first_response_due": NOW + 3600, "resolution_due": NOW + 86400,
                        "sla_state": "ok", "created_at": NOW, "description": "not shown",
                        **kw})  # fmt: skip


def card(cid: str, *tickets: dict[str, Any]) -> dict[str, Any]:
    return {"id": cid, "name": cid, "open_tickets": list(tickets)}


def desk_with_call(*cards: dict[str, Any]) -> PopDesk:
    desk = PopDesk(lambda interface: None)
    desk.on_call_event(CallArrived("k1", NOW, caller=Caller(NUMBER, "Zoë"), dialled="5000",
                                   channel="t/k1"))  # fmt: skip
    desk.on_call_event(DigitsReceived("k1", NOW + 1, digits="2"))
    desk.identified("k1", Identity.of(cards), NOW + 1)
    desk.on_acd_event(CallerJoined(NOW + 1, "k1", "support", "ordinary", 1))
    desk.on_acd_event(CallerOffered(NOW + 2, "k1", "support", ("6002", "6001")))
    return desk


def test_a_customers_changed_tickets_update_every_pop_showing_them() -> None:
    desk = desk_with_call(card("c1", ticket(1)))
    frames = desk.tickets_changed("c1", [ticket(2), ticket(1)], NOW + 3)
    # Both agents rung get the update, with the card's tickets replaced, newest first.
    assert [(f.agent, f.kind) for f in frames] == [("6001", "update"), ("6002", "update")]
    shown = frames[0].pop["customer"]["open_tickets"]
    assert [t["number"] for t in shown] == ["T-000002", "T-000001"]
    assert shown[0]["resolution_due"] == NOW + 86400 and shown[0]["sla_state"] == "ok"
    assert "description" not in shown[0]  # the card shows what the agent needs at a glance
    # Nothing changed, another customer: no frame.
    assert desk.tickets_changed("c1", [ticket(2), ticket(1)], NOW + 4) == []
    assert desk.tickets_changed("c9", [ticket(7)], NOW + 4) == []


def test_whose_tickets_to_read_again_by_customer_or_by_a_ticket_shown() -> None:
    desk = desk_with_call(card("c1", ticket(1)), card("c2"))  # two candidates
    assert desk.customers_shown({"c2"}, 99) == {"c2"}
    # A ticket moved away from c1 (its customer changed) or closed: c1's pop shows it.
    assert desk.customers_shown({"c9"}, 1) == {"c1"}
    assert desk.customers_shown({None}, 5) == set()
    # A candidate's card is updated too (the agent may pick it).
    frames = desk.tickets_changed("c2", [ticket(3)], NOW + 3)
    assert frames and frames[0].pop["candidates"][1]["open_tickets"][0]["id"] == 3


def test_the_desk_records_a_call_and_who_talked_to_the_caller_after_it_ended() -> None:
    desk = desk_with_call(card("c1"))
    record = desk.call_record("k1")
    assert record is not None and record.agents == frozenset() and not record.ended
    desk.on_acd_event(CallerConnected(NOW + 5, "k1", "support", "6001", 3.0))
    desk.on_call_event(CallEnded("k1", NOW + 60, cause=16, cause_text=None, ended_by="caller",
                                 duration=60.0))  # fmt: skip
    record = desk.call_record("k1")
    assert record is not None and record.ended
    # 6002 was rung only: not among those who had the call.
    assert record.agents == {"6001"}
    assert (record.customer_id, record.number, record.queue, record.digits) == (
        "c1", NUMBER, "support", "2")
    assert desk.call_record("nope") is None


def test_the_desk_forgets_the_oldest_ended_calls_beyond_its_bound() -> None:
    desk = PopDesk(lambda interface: None)
    for n in range(KEEP_ENDED + 1):
        desk.on_call_event(CallArrived(f"k{n}", NOW, caller=Caller(None, None), dialled="5000",
                                       channel=f"t/{n}"))  # fmt: skip
        desk.on_call_event(CallEnded(f"k{n}", NOW + 1, cause=16, cause_text=None,
                                     ended_by="caller", duration=1.0))  # fmt: skip
    assert desk.call_record("k0") is None
    assert desk.call_record("k1") is not None and desk.call_record(f"k{KEEP_ENDED}") is not None


def test_the_call_context_a_ticket_description_gets() -> None:
    facts = CallFacts(
        "k1", "c1", NUMBER, "support",
        ({"at": 1.0, "application": "AGI", "context": "ivr"}, {"at": 2.0, "digits": "2"},
         {"flow": "support", "nodes": ["menu", "account"], "outcome": "queued"}),
        "2123#", frozenset({"6001"}),
    )  # fmt: skip
    assert call_context(facts) == (
        f"From call k1 of {NUMBER} in queue support.\n"
        "IVR: AGI in ivr; flow support: menu > account (queued).\n"
        "Keyed: 2123#"
    )
    assert call_context(CallFacts("k2")) == "From call k2."


# -- a complaint in the customer's profile (pure) -----------------------------------------


def ago(days: float) -> float:
    return NOW - days * DAY


def monthly_buyer(contacts_: tuple[Contact, ...] = ()) -> CustomerHistory:
    """Orders every month for three years in three categories: truly loyal."""
    orders = tuple(
        Order(ago(d), Decimal(120), ("shoes", "bags", "coats")[i % 3])
        for i, d in enumerate(range(5, 1100, 30))
    )
    return CustomerHistory("h1", orders, contacts_, first_seen=ago(1200))


def rare_buyer(contacts_: tuple[Contact, ...] = ()) -> CustomerHistory:
    return CustomerHistory("r1", (Order(ago(200), Decimal(80), "shoes"),), contacts_)


def test_complaints_turn_an_apostle_into_a_hostage_and_a_mercenary_into_a_defector() -> None:
    rules = ProfileRules()
    quiet = (Contact(ago(40), "answered"), Contact(ago(10), "answered"))
    run = profile_population([monthly_buyer(quiet), rare_buyer(quiet)], NOW, rules)
    loyal, rare = run.profiles["h1"], run.profiles["r1"]
    assert (loyal.quadrant.quadrant, loyal.next_step.code) == ("apostle", "referral")
    assert rare.quadrant.quadrant == "mercenary"
    # The customer complained on the last call (its contact is marked: a complaint ticket
    # is linked to it): the incremental path re-profiles against the run's cut-offs.
    complained = (Contact(ago(40), "answered"), Contact(ago(10), "answered", complaint=True))
    after = profile_customer(monthly_buyer(complained), run.cutoffs, NOW, rules,
                             was=loyal.tier.tier)  # fmt: skip
    assert after.quadrant.quadrant == "hostage" and after.quadrant.complaints == 1
    assert after.next_step.code == "resolve_complaint"
    assert "1 complaint" in after.quadrant.reason
    assert after.loyalty.loyalty == loyal.loyalty.loyalty  # behaviour unchanged
    gone = profile_customer(rare_buyer(complained), run.cutoffs, NOW, rules, was=rare.tier.tier)
    assert gone.quadrant.quadrant == "defector"
    assert gone.next_step.code == "service_recovery"
    # A complaint older than the satisfaction window no longer counts.
    old = (Contact(ago(rules.satisfaction.window_days + 5), "answered", complaint=True),)
    assert profile_customer(monthly_buyer(old), run.cutoffs, NOW, rules,
                            was=loyal.tier.tier).quadrant.quadrant == "apostle"  # fmt: skip


# -- the services joined, with a real database --------------------------------------------


class Joined:
    """A TicketService and a CrmBridgeService joined as callcenter/app.py joins them, the
    tickets' routes with ``call_of`` over TCP, and what each agent's pop received."""

    def __init__(self, engine: Engine, reactor: Any, run: Callable[..., Any]) -> None:
        self.engine, self.reactor, self.run = engine, reactor, run
        self.tickets = TicketService(_Settings(), engine=engine, reactor=reactor)
        self.crm = CrmBridgeService(
            CrmServiceSettings(contacts_every=3600.0), reactor=reactor, engine=engine,
            agent_of=lambda i: i.removeprefix("PJSIP/"),
            open_tickets=lambda cid: [t.to_dict() for t in
                                      self.tickets.store.open_for_customer(cid)],
            complaint_calls=lambda calls: self.tickets.calls_in_category(calls, "complaint"),
        )  # fmt: skip
        self.tickets.events.subscribe(self.on_ticket)
        self.got: dict[str, list[Mapping[str, Any]]] = {"6001": [], "6002": []}
        for agent, got in self.got.items():
            self.crm.sessions.connect(agent, got.append)
        self.crm.start()
        run(self.tickets.start())
        accounts = Accounts(engine)
        accounts.add("alice", PASSWORD, "agent", "6001")
        accounts.add("bob", PASSWORD, "agent", "6002")
        accounts.add("sam", PASSWORD, "supervisor")
        self.tokens = {a.username: accounts.issue_token(Account(a.username, a.role, a.agent))
                       .token for a in accounts.list()}  # fmt: skip
        routes = ticket_routes(self.tickets, queues_of=lambda a: ("support",) if a == "6001"
                               else (), call_of=self.call_of)  # fmt: skip
        self.server = ApiServer(build_api(accounts=accounts, routers=[routes]), reactor=reactor)
        self.url = f"http://127.0.0.1:{run(self.server.start('127.0.0.1', 0))}"

    def on_ticket(self, event: TicketEvent) -> None:
        if isinstance(event, TicketCreated):
            self.crm.tickets_changed(event.customer_id, event.ticket_id)
            if event.category == "complaint":
                self.tickets.calls(event.ticket_id).addCallback(self.crm.complaints_changed)
            return
        self.tickets.get(event.ticket_id).addCallback(
            lambda t: self.crm.tickets_changed(t.customer_id, t.id))
        if isinstance(event, TicketChanged) and {"call", "category"} & set(event.fields):
            self.tickets.calls(event.ticket_id).addCallback(self.crm.complaints_changed)

    def call_of(self, call_id: str) -> Deferred[CallFacts | None]:
        return self.crm.call_record(call_id).addCallback(
            lambda r: None if r is None else CallFacts(
                call_id, r.customer_id, r.number, r.queue, r.ivr, r.digits, r.agents))

    def http(self, method: str, path: str, who: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(base_url=self.url) as client:
                return await client.request(
                    method, path, headers={"Authorization": f"Bearer {self.tokens[who]}"}, **kw)

        return _in_loop(self.run, go())

    def stop(self) -> None:
        self.run(self.server.stop())
        self.tickets.stop()
        self.run(self.crm.stop())


class _Settings:
    categories = DEFAULT_CATEGORIES
    priorities = DEFAULT_PRIORITIES


def _in_loop(run: Any, coro: Coroutine[Any, Any, T]) -> T:
    result: T = run(Deferred.fromFuture(asyncio.ensure_future(coro)), 20)
    return result


def until(run: Callable[..., Any], condition: Callable[[], bool], timeout: float = 10.0) -> None:
    from tests.conftest import sleep

    async def wait() -> None:
        while not condition():
            await sleep(0.01)

    run(wait(), timeout=timeout)


@pytest.fixture
def joined(migrated_engine: Engine, reactor: Any, run: Callable[..., Any]) -> Iterator[Joined]:
    with migrated_engine.begin() as conn:
        store.add_customer(conn, "c1", "Zoë Müller", [NUMBER], source="test", now=NOW)
    world = Joined(migrated_engine, reactor, run)
    try:
        yield world
    finally:
        world.stop()


def test_tickets_from_a_call_show_in_its_pop_and_complaints_mark_the_contact(
    joined: Joined, run: Callable[..., Any]
) -> None:
    w = joined
    first, _ = run(w.tickets.create(NewTicket("Late delivery", "inquiry", customer_id="c1",
                                              queue="support"), by="sam"))  # fmt: skip
    now = w.reactor.seconds()
    w.crm.on_call_event(CallArrived("k1", now, caller=Caller(NUMBER, None), dialled="5000",
                                    channel="t/k1"))  # fmt: skip
    w.crm.on_call_event(DigitsReceived("k1", now, digits="2"))
    until(run, lambda: w.crm.desk.chosen_of("k1") == "c1")
    w.crm.on_acd_event(CallerJoined(now, "k1", "support", "ordinary", 1))
    w.crm.on_acd_event(CallerOffered(now + 1, "k1", "support", ("6001",)))
    ring = w.got["6001"][0]
    assert ring["kind"] == "ring"
    assert [t["number"] for t in ring["customer"]["open_tickets"]] == [first.number]
    # The ring shows the ticket's number, subject, status and deadlines.
    assert ring["customer"]["open_tickets"][0]["subject"] == "Late delivery"
    assert set(ring["customer"]["open_tickets"][0]) == set(ticket(1))

    # Rung but not talking yet: nobody may make a ticket of the call.
    assert w.http("POST", "/api/v1/calls/k1/ticket", "alice", json={}).status_code == 403
    w.crm.on_acd_event(CallerConnected(now + 2, "k1", "support", "6001", 1.0))
    made = w.http("POST", "/api/v1/calls/k1/ticket", "alice",
                  json={"category": "complaint", "description": "Box arrived broken"})
    assert made.status_code == 201, made.text
    complaint = made.json()
    assert (complaint["customer_id"], complaint["queue"], complaint["category"]) == (
        "c1", "support", "complaint")
    assert complaint["description"].startswith("Box arrived broken\n\nFrom call k1 of "
                                               f"{NUMBER} in queue support.")
    assert complaint["description"].endswith("Keyed: 2")
    assert run(w.tickets.calls(complaint["id"])) == [("default", "k1")]
    # The pop was updated while up: two open tickets, the newest first.
    until(run, lambda: len(w.got["6001"][-1]["customer"]["open_tickets"]) == 2)
    assert w.got["6001"][-1]["kind"] == "update"
    assert w.got["6001"][-1]["customer"]["open_tickets"][0]["category"] == "complaint"
    assert w.got["6002"] == []

    # Another agent: 403, nothing written; an unknown call: 404; a supervisor may.
    assert w.http("POST", "/api/v1/calls/k1/ticket", "bob", json={}).status_code == 403
    assert w.http("POST", "/api/v1/calls/zz/ticket", "alice", json={}).status_code == 404
    bobs, _ = run(w.tickets.create(NewTicket("Bob's", "request", assignee_agent="6002"),
                                   by="sam"))  # fmt: skip
    linked = w.http("POST", f"/api/v1/tickets/{bobs.id}/calls", "bob", json={"call_id": "k1"})
    assert linked.status_code == 403 and run(w.tickets.calls(bobs.id)) == []
    assert len(run(w.tickets.open_for_customer("c1"))) == 2
    assert w.http("POST", f"/api/v1/tickets/{first.id}/calls", "alice",
                  json={"call_id": "k1"}).status_code == 200  # fmt: skip
    # Resolving a ticket takes it off the pop.
    run(w.tickets.transition(first.id, "open", by="alice"))
    run(w.tickets.transition(first.id, "resolve", by="alice"))
    until(run, lambda: [t["id"] for t in w.got["6001"][-1]["customer"]["open_tickets"]]
          == [complaint["id"]])  # fmt: skip

    # After hang-up (wrap-up) the agent still may; the call's contact is the complaint.
    w.crm.on_call_event(CallEnded("k1", now + 60, cause=16, cause_text=None,
                                  ended_by="caller", duration=60.0))  # fmt: skip
    after = w.http("POST", "/api/v1/calls/k1/ticket", "alice", json={"subject": "Refund"})
    assert after.status_code == 201 and after.json()["subject"] == "Refund"
    with w.engine.begin() as conn:
        conn.execute(insert(call_events).values(
            pbx="default", call_id="k1", kind="ended", at=now + 60, recorded_at=now, payload={
                "kind": "ended", "at": now + 60, "answered": True, "talk_time": 58.0}))
        conn.execute(insert(call_events).values(
            pbx="default", call_id="k1", kind="arrived", at=now, recorded_at=now, payload={
                "kind": "arrived", "at": now, "caller": {"number": NUMBER}}))
    fill_contacts(w.engine, since=now - 10, now=now + 61, complaints=w.crm.complaint_calls)
    assert _contact(w.engine, "k1") == ("c1", True)


def test_a_complaint_made_after_the_contact_marks_it_and_bumps_the_customer(
    joined: Joined, run: Callable[..., Any]
) -> None:
    w = joined
    with w.engine.begin() as conn:
        conn.execute(insert(contacts).values(
            pbx="default", call_id="old-1", customer_id="c1", number=NUMBER, at=NOW,
            queue="support", agent="6001", wait=3.0, talk=60.0, outcome="answered",
            ivr_path=None, complaint=False))  # fmt: skip
    before = _changed_at(w.engine)
    made, _ = run(w.tickets.create(NewTicket("Rude answer", "inquiry", customer_id="c1",
                                             calls=(("default", "old-1"),)), by="sam"))  # fmt: skip
    run(w.crm.complaints_changed([("default", "old-1")]))
    assert _contact(w.engine, "old-1") == ("c1", False)  # an inquiry is no complaint
    # Re-categorised as a complaint: the wiring re-checks its calls from the event.
    run(w.tickets.update(made.id, made.version, {"category": "complaint"}, by="sam"))
    until(run, lambda: _contact(w.engine, "old-1") == ("c1", True))
    assert _changed_at(w.engine) > before  # the incremental pass re-profiles the customer
    assert run(w.crm.complaints_changed([("default", "old-1")])) == 0  # already marked


def _contact(engine: Engine, call_id: str) -> tuple[str | None, bool] | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(contacts.c.customer_id, contacts.c.complaint).where(
                contacts.c.call_id == call_id)).first()  # fmt: skip
    return None if row is None else (row.customer_id, bool(row.complaint))


def _changed_at(engine: Engine) -> float:
    with engine.connect() as conn:
        return float(conn.execute(
            select(customers.c.changed_at).where(customers.c.id == "c1")).scalar_one())
