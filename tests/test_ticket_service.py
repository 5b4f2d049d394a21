"""The tickets' service on the reactor: DB work on its pool, events published in order, SLA
timers at the instants the SLA reader names (no polling), rebuilt at start after a restart,
a breach escalated to the supervisors' group once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

import migrations
from tests.conftest import sleep
from tickets.events import SlaBreached, SlaWarning, TicketChanged, TicketCreated, TicketEscalated
from tickets.service import SlaAlarm, SlaReading, TicketService
from tickets.store import DEFAULT_CATEGORIES, DEFAULT_PRIORITIES, Deadlines, NewTicket, Ticket


class _Settings:
    categories = DEFAULT_CATEGORIES
    priorities = DEFAULT_PRIORITIES


def _deadlines(tier: str | None, priority: str, at: float) -> Deadlines:
    return Deadlines(first_response=at + 0.4, resolution=at + 0.8)


def _sla(ticket: Ticket, history: list[tuple[float, str]], now: float) -> SlaReading:
    """Warn 0.2 s before the first response is due, breach at it (a stand-in for SlaClock)."""
    due = ticket.first_response_due
    assert due is not None and history[0][1] == "new"
    if ticket.first_response_at is not None:
        return SlaReading("met")
    if now >= due:
        alarms = (SlaAlarm("first_response", "warning", due),
                  SlaAlarm("first_response", "breached", due))  # fmt: skip
        return SlaReading("breached", alarms)
    if now >= due - 0.2:
        return SlaReading("warning", (SlaAlarm("first_response", "warning", due),), due)
    return SlaReading("ok", (), due - 0.2)


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 't.sqlite3'}"
    migrations.upgrade(url)
    return url


def _service(url: str, reactor: Any) -> tuple[TicketService, list[Any]]:
    service = TicketService(_Settings(), engine=create_engine(url), reactor=reactor,
                            deadlines=_deadlines, sla=_sla, escalate_to="supervisors")  # fmt: skip
    seen: list[Any] = []
    service.events.subscribe(seen.append, name="test")
    return service, seen


def test_changes_publish_events_and_sla_timers_fire(url: str, reactor: Any, run: Any) -> None:
    service, seen = _service(url, reactor)
    run(service.start())
    try:
        ticket, created = run(service.create(NewTicket("Rechnung", "complaint"), by="alice"))
        assert created and isinstance(seen[0], TicketCreated) and seen[0].number == ticket.number
        run(service.transition(ticket.id, "open", by="alice", version=1))
        assert isinstance(seen[1], TicketChanged) and seen[1].status == "open"
        run(sleep(0.9))
        kinds = [type(e) for e in seen[2:]]
        assert kinds == [SlaWarning, SlaBreached, TicketEscalated], seen
        after = run(service.get(ticket.id))
        assert (after.sla_state, after.assignee_group) == ("breached", "supervisors")
        assert len(service._timers) == 0 or not any(t.active() for t in service._timers.values())
    finally:
        service.stop()


def test_timers_are_rebuilt_at_start(url: str, reactor: Any, run: Any) -> None:
    first, _ = _service(url, reactor)
    run(first.start())
    ticket, _ = run(first.create(NewTicket("Rückruf", "request"), by="alice"))
    first.stop()  # as if killed: no timer survives
    second, seen = _service(url, reactor)
    run(second.start())
    try:
        run(sleep(0.9))
        assert [type(e) for e in seen][:2] == [SlaWarning, SlaBreached]
        assert all(e.ticket_id == ticket.id for e in seen)
    finally:
        second.stop()


def test_refusals_come_back_as_failures(url: str, reactor: Any, run: Any) -> None:
    from tickets.store import TicketInputError, UnknownTicket

    service, seen = _service(url, reactor)
    run(service.start())
    try:
        with pytest.raises(UnknownTicket):
            run(service.get(12345))
        with pytest.raises(TicketInputError):
            run(service.create(NewTicket("x" * 201, "complaint"), by="alice"))
        assert seen == []
    finally:
        service.stop()




class _ShuttingDown:
    """A reactor's system-event triggers, fired by hand (the real one is the session's)."""

    def __init__(self) -> None:
        self.triggers: dict[int, Any] = {}

    def addSystemEventTrigger(self, phase: str, event: str, fn: Any) -> int:
        assert (phase, event) == ("during", "shutdown")
        self.triggers[len(self.triggers) + 1] = fn
        return len(self.triggers)

    def removeSystemEventTrigger(self, trigger: int) -> None:
        del self.triggers[trigger]


def test_a_service_never_stopped_stops_its_pool_with_the_reactor(url: str) -> None:
    # Its pool's threads are not daemons: left running, they keep the process from exiting.
    reactor = _ShuttingDown()
    service = TicketService(_Settings(), engine=create_engine(url), reactor=reactor)
    service.start()
    assert service._pool.started
    for fire in list(reactor.triggers.values()):
        fire()
    assert not service._pool.started

    stopped = TicketService(_Settings(), engine=create_engine(url), reactor=reactor)
    stopped.start()
    stopped.stop()  # stopped by its owner: the trigger goes with it
    assert not stopped._pool.started and len(reactor.triggers) == 1
