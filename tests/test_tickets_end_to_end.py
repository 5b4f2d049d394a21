"""Tickets end to end through the PBX simulator (real AMI over TCP, the product's ACD, the
agent's authenticated WebSocket and the HTTP API of one `callcenter` backend): a known
customer calls and the agent's pop shows the open ticket with its due date; after hang-up
the agent makes a complaint ticket from the call (wrap-up), prefilled from the pop; the
customer's next call pops with both open tickets; another agent may not make one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import create_engine
from twisted.internet.defer import Deferred

import migrations
from crm_bridge import store
from tests.e2e import PopClient, caller, start_backend, start_simulator, until
from tickets.store import Deadlines, NewTicket, TicketStore

QUEUES = {
    "agent_interface": "Local/{agent}@agents",
    "queues": {"sales": {"lanes": ["external"], "ring_timeout": 3, "wrap_up": 1}},
    "agents": {"6001": {"name": "Alice", "queues": {"sales": 1}}},
}
NUMBER = "+302101234567"
PASSWORD = "ticket-e2e-password"


def deadlines(tier: str | None, priority: str, at: float) -> Deadlines:
    return Deadlines(at + 3600.0, at + 86400.0)


@pytest.fixture
def center(reactor: Any, run: Any, tmp_path: Path) -> Any:
    queues = tmp_path / "queues.yaml"
    queues.write_text(yaml.safe_dump(QUEUES))
    url = f"sqlite:///{tmp_path / 'cc.sqlite3'}"  # the database start_backend uses
    migrations.upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        store.add_customer(conn, "k1", "Ελένη Παππά", [NUMBER], source="test", now=0.0)
    # A ticket the customer has open from before, with its deadlines.
    TicketStore(engine, deadlines=deadlines).create(
        NewTicket("Invoice twice", "inquiry", customer_id="k1", queue="sales"),
        by="sup", at=time.time(),
    )
    engine.dispose()
    simulator = start_simulator(reactor)
    app = start_backend(reactor, run, simulator, tmp_path, {
        "CALLCENTER_ACD__QUEUES": str(queues), "CALLCENTER_ACD__LOGIN_AGENTS": "true",
    })  # fmt: skip
    app.accounts.add("6001", PASSWORD, "agent", agent="6001")
    app.accounts.add("6002", PASSWORD, "agent", agent="6002")
    yield app
    run(app.stop())
    simulator.stopListening()


def token(app: Any, username: str) -> str:
    return str(app.accounts.issue_token(app.accounts.authenticate(username, PASSWORD)).token)


def post(app: Any, run: Any, who: str, path: str, body: dict[str, Any]) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.api.port}") as http:
            return await http.post(path, json=body,
                                   headers={"Authorization": f"Bearer {token(app, who)}"})

    response: httpx.Response = run(Deferred.fromFuture(asyncio.ensure_future(go())), timeout=20)
    return response


def answered_pop(client: PopClient, call_id: str | None = None) -> dict[str, Any]:
    return next(p for p in client.pops if p["kind"] == "answered"
                and (call_id is None or p["call_id"] == call_id))  # fmt: skip


def test_the_pop_shows_open_tickets_and_a_complaint_made_in_wrap_up_pops_next_time(
    center: Any, run: Any
) -> None:
    app = center
    alice = PopClient(f"ws://127.0.0.1:{app.api.port}/api/v1/pops", token(app, "6001"))
    try:
        run(until(lambda: bool(alice.messages)))
        run(app.ami.send_action("Originate", caller(NUMBER, "Eleni", "5003", 2)))
        run(until(lambda: "ended" in alice.kinds(), timeout=25), timeout=30)
        first = answered_pop(alice)
        call_id = first["call_id"]
        shown = first["customer"]["open_tickets"]
        assert first["customer"]["id"] == "k1"
        assert [(t["subject"], t["status"], t["sla_state"]) for t in shown] == [
            ("Invoice twice", "new", "ok")]
        # Its due dates (the SLA the process runs may have set them by its own policy).
        assert shown[0]["first_response_due"] > shown[0]["created_at"]
        assert shown[0]["resolution_due"] > shown[0]["first_response_due"]

        # Wrap-up: the call has ended; the agent who had it makes a complaint from it.
        path = f"/api/v1/calls/{call_id}/ticket"
        assert post(app, run, "6002", path, {"category": "complaint"}).status_code == 403
        made = post(app, run, "6001", path, {"category": "complaint", "priority": "high",
                                             "description": "Charged twice, wants it back"})
        assert made.status_code == 201, made.text
        ticket = made.json()
        assert (ticket["customer_id"], ticket["queue"], ticket["created_by"]) == (
            "k1", "sales", "6001")
        assert f"From call {call_id} of {NUMBER} in queue sales." in ticket["description"]

        # The customer calls again: the pop shows both open tickets, the complaint first.
        seen = len(alice.pops)
        run(app.ami.send_action("Originate", caller(NUMBER, "Eleni", "5003", 2)))
        run(until(lambda: "ended" in alice.kinds()[seen:], timeout=25), timeout=30)
        second = answered_pop(alice, next(p["call_id"] for p in alice.pops[seen:]))
        tickets = second["customer"]["open_tickets"]
        assert [(t["number"], t["category"]) for t in tickets] == [
            (ticket["number"], "complaint"), (shown[0]["number"], "inquiry")]
        # The IVR's caller look-up counts them too.
        found = run(app._ivr_lookup(NUMBER))
        assert found.open_tickets == 2
    finally:
        alice.stop()
