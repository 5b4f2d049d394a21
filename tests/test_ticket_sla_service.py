"""SLAs in the running product: the configured policies and calendar (``tickets.policies``)
drive the tickets service's timers on the reactor, with real (short) times: a VIP's
complaint warns, breaches and is escalated; a pause for the customer pushes the deadline;
after a restart (a new service on the same database) the breach fires once, the store
remembering what was told; the events reach the ticket history; and the start-up refuses
a tickets file whose groups name what the ACD does not have, naming file, key and fix."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, insert, select

import migrations
from acd.config import load_acd_config
from callcenter.app import ticket_settings
from callcenter.cli import describe_ticket
from callcenter.settings import ConfigError, load_settings
from crm_bridge.schema import customers
from tests.conftest import sleep
from tickets.config import TicketSettings, parse_ticket_settings
from tickets.events import SlaBreached, SlaWarning, TicketCreated, TicketEscalated
from tickets.history import TicketEventRecorder
from tickets.policies import SlaPolicies
from tickets.schema import ticket_changes, ticket_events
from tickets.service import TicketService
from tickets.store import NewTicket

# Seconds stand for the minutes and hours of a real policy; the calendar is always open.
TICKETS = {
    "groups": {"supervisors": {"accounts": ["supervisor"]}},
    "escalate_to": "supervisors",
    "sla": {
        "warn_before": "50%",
        "default": {"first_response": "20s", "resolution": "40s"},
        "policies": {"vip": {"high": {"first_response": "1s", "resolution": "3s"}}},
    },
}
#: No warnings, so only the breach's instant matters (the pause test).
NO_WARNING = {
    **TICKETS,
    "sla": {"warn_before": "0s", "default": {"first_response": "1s", "resolution": "5s"}},
}


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 't.sqlite3'}"
    migrations.upgrade(url)
    with create_engine(url).begin() as conn:
        conn.execute(insert(customers).values(
            id="c-vip", name="Ms Li", created_at=0.0, changed_at=0.0, source="test", tier="vip",
        ))  # fmt: skip
    return url


def _service(url: str, reactor: Any, config: dict[str, Any] = TICKETS) -> tuple[Any, list[Any]]:
    settings = parse_ticket_settings(config, "test tickets")
    policies = SlaPolicies(settings)
    service = TicketService(settings, engine=create_engine(url), reactor=reactor,
                            deadlines=policies.deadlines, sla=policies.read,
                            escalate_to=settings.escalate_to)  # fmt: skip
    seen: list[Any] = []
    service.events.subscribe(seen.append, name="test")
    return service, seen


def _complaint() -> NewTicket:
    return NewTicket("Double charge", "complaint", priority="high", customer_id="c-vip")


def _sla_rows(url: str, ticket_id: int, state: str) -> int:
    """Audit rows telling the first response's ``state`` (one per alarm told)."""
    with create_engine(url).connect() as conn:
        rows = conn.execute(select(ticket_changes.c.new).where(
            ticket_changes.c.ticket_id == ticket_id,
            ticket_changes.c.field == "sla.first_response",
        )).scalars()  # fmt: skip
        return sum(1 for new in rows if new == state)


def test_vip_complaint_warns_breaches_and_is_escalated(url: str, reactor: Any, run: Any) -> None:
    service, seen = _service(url, reactor)
    history = TicketEventRecorder(service.store.engine, reactor, pbx="test")
    service.events.subscribe(history.record, name="ticket history")
    run(service.start())
    try:
        ticket, _ = run(service.create(_complaint(), by="alice"))
        # The VIP/high policy, not the default: due 1 s and 3 s after the opening.
        assert ticket.customer_tier == "vip"
        assert ticket.first_response_due == pytest.approx(ticket.created_at + 1)
        assert ticket.resolution_due == pytest.approx(ticket.created_at + 3)
        run(sleep(0.75))
        assert [type(e) for e in seen] == [TicketCreated, SlaWarning]
        assert seen[1].deadline == "first_response" and seen[1].at >= ticket.created_at + 0.5
        run(sleep(0.5))
        kinds = [(type(e), getattr(e, "deadline", None)) for e in seen]
        assert kinds == [(TicketCreated, None), (SlaWarning, "first_response"),
                         (SlaBreached, "first_response"), (TicketEscalated, None)]  # fmt: skip
        breach, escalation = seen[2], seen[3]
        assert breach.at >= ticket.created_at + 1 and breach.due == ticket.first_response_due
        assert escalation.group == "supervisors" and "first response" in escalation.reason
        after = run(service.get(ticket.id))
        assert (after.sla_state, after.assignee_group) == ("breached", "supervisors")
        # The resolution deadline keeps its own timer: its warning comes at 1.5 s left.
        run(sleep(0.5))
        assert (type(seen[-1]), seen[-1].deadline) == (SlaWarning, "resolution")
        # The console shows them like the ACD's events.
        assert "ticket T-000001" in describe_ticket(breach)
        assert "sla_breached" in describe_ticket(breach)
        assert "deadline=first_response" in describe_ticket(breach)
    finally:
        service.stop()
        closed = run(history.close())
    assert closed.all_kept
    with service.store.engine.connect() as conn:
        rows = conn.execute(select(ticket_events.c.kind, ticket_events.c.at, ticket_events.c.pbx)
                            .order_by(ticket_events.c.id)).all()  # fmt: skip
    assert [r.kind for r in rows] == [e.kind for e in seen]
    assert [r.at for r in rows] == [e.at for e in seen] and {r.pbx for r in rows} == {"test"}


def test_waiting_for_the_customer_pushes_the_deadline(url: str, reactor: Any, run: Any) -> None:
    service, seen = _service(url, reactor, NO_WARNING)
    run(service.start())
    try:
        ticket, _ = run(service.create(NewTicket("Refund", "request"), by="alice"))
        due = ticket.first_response_due
        assert due == pytest.approx(ticket.created_at + 1)
        run(service.transition(ticket.id, "open", by="alice"))
        paused = run(service.transition(ticket.id, "wait_for_customer", by="alice"))
        left = due - paused.updated_at  # business seconds the clock still had
        run(sleep(due - reactor.seconds() + 0.4))  # well past the first due instant
        assert not [e for e in seen if isinstance(e, SlaBreached)]
        resumed = run(service.transition(ticket.id, "resume", by="alice"))
        pushed = resumed.updated_at + left
        run(sleep(pushed - reactor.seconds() + 0.3))
        breaches = [e for e in seen if isinstance(e, SlaBreached)]
        assert len(breaches) == 1 and breaches[0].deadline == "first_response"
        assert breaches[0].due == pytest.approx(pushed, abs=0.01)
        assert breaches[0].at >= pushed
        # The stored due instant moved too (search and the pop show it).
        stored = run(service.get(ticket.id))
        assert stored.first_response_due == pytest.approx(pushed, abs=0.01)
    finally:
        service.stop()


def test_after_a_restart_the_breach_fires_once(url: str, reactor: Any, run: Any) -> None:
    first, seen_first = _service(url, reactor)
    run(first.start())
    ticket, _ = run(first.create(_complaint(), by="alice"))
    run(sleep(0.7))
    assert [type(e) for e in seen_first] == [TicketCreated, SlaWarning]
    first.stop()  # as if killed before the breach: no timer survives
    run(sleep(0.5))  # the breach passes while no service runs

    second, seen_second = _service(url, reactor)
    run(second.start())
    try:
        run(sleep(0.3))
        # Told at start, the warning not again: the store knows it was told.
        told = [(type(e), getattr(e, "deadline", None)) for e in seen_second]
        assert told[:2] == [(SlaBreached, "first_response"), (TicketEscalated, None)]
        assert (SlaWarning, "first_response") not in told  # (the resolution's may come)
        assert seen_second[0].due == pytest.approx(ticket.created_at + 1)
    finally:
        second.stop()
    third, seen_third = _service(url, reactor)
    run(third.start())
    try:
        run(sleep(0.3))
        assert not [e for e in seen_third if isinstance(e, SlaBreached | TicketEscalated)]
    finally:
        third.stop()
    stored = first.store.get(ticket.id)
    assert stored.sla_state == "breached" and stored.assignee_group == "supervisors"
    assert first.store.sla_alarms(ticket.id) >= {("first_response", "warning"),
                                                 ("first_response", "breached")}  # fmt: skip
    assert _sla_rows(url, ticket.id, "breached") == 1 and _sla_rows(url, ticket.id, "warning") == 1


def test_two_services_on_one_database_tell_a_breach_once(url: str, reactor: Any, run: Any) -> None:
    """Two backends (two PBXs) share the tickets: each times every ticket, one tells."""
    one, seen_one = _service(url, reactor)
    two, seen_two = _service(url, reactor)
    run(one.start())
    try:
        ticket, _ = run(one.create(_complaint(), by="alice"))
        run(two.start())  # times the ticket from the database, as at any start
        run(sleep(1.3))
        breaches = [e for e in seen_one + seen_two if isinstance(e, SlaBreached)]
        escalations = [e for e in seen_one + seen_two if isinstance(e, TicketEscalated)]
        assert len(breaches) == 1 and len(escalations) == 1
    finally:
        one.stop()
        two.stop()
    assert _sla_rows(url, ticket.id, "breached") == 1


# -- start-up: the tickets file against the ACD --------------------------------------------


def _files(tmp_path: Path, tickets: dict[str, Any] | None, *, named: bool = True) -> Path:
    """A callcenter.yaml using the shipped queues, and a tickets.yaml beside it."""
    root = Path(__file__).resolve().parent.parent
    config = {"acd": {"queues": str(root / "config" / "queues.yaml")}}
    if named:
        config["tickets"] = "tickets.yaml"  # type: ignore[assignment]
    (tmp_path / "callcenter.yaml").write_text(yaml.safe_dump(config))
    if tickets is not None:
        (tmp_path / "tickets.yaml").write_text(yaml.safe_dump(tickets))
    return tmp_path / "callcenter.yaml"


def _start_up(path: Path, env: dict[str, str] | None = None) -> TicketSettings:
    settings = load_settings(path, env or {})
    assert settings.acd.queues is not None
    return ticket_settings(settings, load_acd_config(settings.acd.queues))


def test_shipped_tickets_file_matches_the_shipped_queues() -> None:
    root = Path(__file__).resolve().parent.parent
    loaded = _start_up(root / "config" / "callcenter.yaml")
    assert loaded.policy_for("vip", "high").first_response == 3600
    assert loaded.groups_of("6002") == ("sales-desk", "support-desk")


def test_a_group_naming_an_unknown_queue_or_agent_stops_the_start(tmp_path: Path) -> None:
    groups = {
        "desk": {"agents": ["6001", "6999"], "queues": ["sales", "billing"]},
        "supervisors": {"accounts": ["supervisor"]},
    }
    path = _files(tmp_path, {**TICKETS, "groups": groups})
    with pytest.raises(ConfigError) as refused:
        _start_up(path)
    text = str(refused.value)
    origin = tmp_path / "tickets.yaml"
    assert f"{origin}: key 'groups.desk.queues': 'billing' is no ACD queue" in text
    assert "key 'groups.desk.agents': '6999' is no ACD agent" in text
    assert "fix the name or remove it" in text and "sales, support" in text


def test_an_escalation_group_with_nobody_stops_the_start(tmp_path: Path) -> None:
    path = _files(tmp_path, {**TICKETS, "groups": {"supervisors": {}}})
    with pytest.raises(ConfigError, match=r"key 'escalate_to': group 'supervisors' has no "):
        _start_up(path)


def test_a_named_tickets_file_that_is_missing_or_wrong_stops_the_start(tmp_path: Path) -> None:
    path = _files(tmp_path, None)
    with pytest.raises(ConfigError, match=r"key 'tickets' \(CALLCENTER_TICKETS\)"):
        _start_up(path)
    bad = {**TICKETS, "sla": {"default": {"first_response": 8, "resolution": "50h"}}}
    path = _files(tmp_path, bad)
    with pytest.raises(ConfigError) as refused:
        _start_up(path)
    assert "key 'sla.default.first_response'" in str(refused.value)
    assert "write e.g. 8h or 8m" in str(refused.value)
    with pytest.raises(ConfigError, match="CALLCENTER_TICKETS"):
        _start_up(path, {"CALLCENTER_TICKETS": str(tmp_path / "nowhere.yaml")})


def test_the_default_tickets_file_only_warns_and_is_optional(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Left unset, ``tickets.yaml`` beside the file is read when there is one; its groups'
    mismatches are logged (a lab's queues beside the shipped file still start)."""
    groups = {"desk": {"queues": ["billing"]}, "supervisors": {"accounts": ["supervisor"]}}
    path = _files(tmp_path, {**TICKETS, "groups": groups}, named=False)
    with caplog.at_level(logging.WARNING, logger="callcenter.app"):
        loaded = _start_up(path)
    assert loaded.policy_for("vip", "high").first_response == 1
    assert "'billing' is no ACD queue" in caplog.text and "set key 'tickets'" in caplog.text
    (tmp_path / "tickets.yaml").unlink()
    assert _start_up(path) == TicketSettings()
    assert load_settings(path, {"CALLCENTER_TICKETS": "null"}).tickets is None
