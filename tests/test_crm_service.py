"""The screen-pop bridge's service on a real reactor, thread pool and database: callers are
looked up at arrival, the pop reaches the rung agent with the customer, an agent's choice is
remembered, a CRM that is slow or down never holds a pop back, a database outage still pops,
the ACD's tier index comes from the stored profiles, every frame sent is audited."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, insert, select, update

from acd.events import CallerConnected, CallerOffered
from crm_bridge import store
from crm_bridge.config import CrmServiceSettings, ProfileRules
from crm_bridge.external import CrmAnswer, CrmUnavailable, ExternalCustomer
from crm_bridge.pop import PopError
from crm_bridge.recompute import recompute_all
from crm_bridge.schema import call_customers, contacts, customers, pops, tier_runs
from crm_bridge.service import CrmBridgeService
from cti.calls.events import Agent, CallAnswered, CallArrived, CallEnded, Caller
from cti.history import call_events
from tests.conftest import sleep

NOW = 1_780_000_000.0
PROFILE = {
    "tier": {"tier": "vip", "reason": "VIP: top 1% by 365-day revenue, 48,200.00"},
    "next_step": {"code": "retention_offer", "step": "Retention offer", "reason": "…"},
}


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    engine = migrated_engine
    with engine.begin() as conn:
        store.add_customer(conn, "c1", "Zoë Müller", ["+4930123456"], source="test", now=NOW)
        store.add_customer(conn, "c2", "Jürgen Groß", ["+4930777777"], source="test", now=NOW)
        store.add_customer(conn, "c3", "Ελένη Παππά", ["+4930777777"], source="test", now=NOW)
        conn.execute(
            update(customers).where(customers.c.id == "c1")
            .values(tier="vip", profile=PROFILE, profiled_at=NOW)
        )  # fmt: skip
        conn.execute(insert(tier_runs).values(at=NOW, finished_at=NOW, customers=3, cutoffs={}))
        conn.execute(insert(contacts).values(
            pbx="default", call_id="old-1", customer_id="c1", number="+4930123456",
            at=NOW - 86400, queue="support", agent="6002", wait=30.0, talk=200.0,
            outcome="answered", ivr_path=[], complaint=True,
        ))  # fmt: skip
    return engine


class Agents:
    """What each agent's open pop connection received."""

    def __init__(self, service: CrmBridgeService, *agents: str) -> None:
        self.got: dict[str, list[Mapping[str, Any]]] = {a: [] for a in agents}
        for agent in agents:
            service.sessions.connect(agent, self.got[agent].append)

    def kinds(self, agent: str) -> list[str]:
        return [p["kind"] for p in self.got[agent]]


def agent_of(interface: str) -> str | None:
    return interface.removeprefix("PJSIP/") if interface.startswith("PJSIP/") else None


def started(
    engine: Engine, reactor: Any, run: Callable[..., Any], *, profiled: bool = False, **kw: Any
) -> CrmBridgeService:
    """A started service, quick to refresh tiers and fill contacts; ``profiled``: after a
    bulk tier recompute of the customers as they are."""
    if profiled:
        recompute_all(engine, NOW, ProfileRules())
    service = CrmBridgeService(
        CrmServiceSettings(tier_refresh=0.2, contacts_every=0.2), reactor=reactor,
        engine=engine, agent_of=agent_of, **kw,
    )  # fmt: skip
    service.start()
    return service


def profiled_after(engine: Engine, customer_id: str) -> dict[str, Any] | None:
    """The customer's profile if it was computed again after the bulk run at NOW."""
    with engine.connect() as conn:
        row = conn.execute(
            select(customers.c.profile, customers.c.profiled_at)
            .where(customers.c.id == customer_id)
        ).one()  # fmt: skip
    return row.profile if row.profiled_at is not None and row.profiled_at > NOW else None


def arrive(service: CrmBridgeService, call_id: str, number: str | None, at: float) -> None:
    caller = Caller(number, None, number)
    service.on_call_event(
        CallArrived(call_id, at, caller=caller, dialled="5000", channel=f"t/{call_id}")
    )


def until(run: Callable[..., Any], condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async def wait() -> None:
        while not condition():
            await sleep(0.01)

    run(wait(), timeout=timeout)


def test_a_known_caller_pops_with_profile_and_last_contacts_at_the_rung_agent_only(
    engine: Engine, reactor: Any, run: Callable[..., Any]
) -> None:
    service = started(engine, reactor, run)
    agents = Agents(service, "6001", "6002")
    try:
        # The tier index is loaded from the stored profiles at start, before the AMI link
        # (restored callers rejoin with their tier): the ACD reads it from memory.
        assert service.tiers.tier_of("+4930123456") == "vip"
        assert service.tiers.tier_of("+4930777777") == "ordinary"
        now = reactor.seconds()
        arrive(service, "k1", "+4930123456", now)
        until(run, lambda: service.desk.chosen_of("k1") == "c1")
        service.on_acd_event(CallerOffered(now + 1, "k1", "support", ("6001",)))
        assert agents.kinds("6001") == ["ring"] and agents.kinds("6002") == []
        pop = agents.got["6001"][0]
        card = pop["customer"]
        assert card["name"] == "Zoë Müller"
        assert card["profile"]["tier"]["reason"].startswith("VIP: top 1%")
        assert card["profile"]["next_step"]["code"] == "retention_offer"
        assert card["last_contacts"][0]["queue"] == "support"
        assert card["last_contacts"][0]["complaint"] is True
        assert card["open_tickets"] == []
        service.on_acd_event(CallerConnected(now + 3, "k1", "support", "6001", 2.0))
        service.on_call_event(CallEnded("k1", now + 60, cause=16, cause_text=None,
                                        ended_by="caller", duration=60.0))  # fmt: skip
        assert agents.kinds("6001") == ["ring", "answered", "ended"]
        run(service._write_audit())
        with engine.connect() as conn:
            audit = conn.execute(
                select(pops.c.agent, pops.c.kind, pops.c.payload)
                .where(pops.c.call_id == "k1").order_by(pops.c.id)
            ).all()  # fmt: skip
        assert [(r.agent, r.kind) for r in audit] == [("6001", "ring"), ("6001", "answered"),
                                                       ("6001", "ended")]  # fmt: skip
        # The card in full once; later frames that show the same card point back to it.
        first, *later = [r.payload for r in audit]
        assert first["customer"] == card
        for payload in later:
            assert payload["customer"] == {"id": "c1", "as_in_revision": first["revision"]}
            assert payload["caller"] == first["caller"]
    finally:
        run(service.stop())


def test_a_shared_line_lists_candidates_and_the_agents_choice_is_remembered(
    engine: Engine, reactor: Any, run: Callable[..., Any]
) -> None:
    service = started(engine, reactor, run)
    agents = Agents(service, "6001")
    try:
        now = reactor.seconds()
        arrive(service, "s1", "+4930777777", now)
        service.on_acd_event(CallerOffered(now, "s1", "support", ("6001",)))
        until(run, lambda: len(agents.got["6001"]) == 2)  # ring, then update with candidates
        assert agents.got["6001"][0]["identity"] == "pending"
        update_ = agents.got["6001"][1]
        assert update_["identity"] == "several"
        assert [c["id"] for c in update_["candidates"]] == ["c2", "c3"]
        with pytest.raises(PopError):
            service.choose("s1", "6002", "c2")  # not this agent's pop
        pop = run(service.choose("s1", "6001", "c3"))
        assert pop["customer"]["name"] == "Ελένη Παππά"

        def remembered() -> bool:
            with engine.connect() as conn:
                return conn.execute(select(call_customers.c.customer_id)).scalar() == "c3"

        until(run, remembered)
        # After a restart the same call is looked up again and the choice stands.
        run(service.stop())
        service = started(engine, reactor, run)
        again = Agents(service, "6001")
        arrive(service, "s1", "+4930777777", now)
        service.on_acd_event(CallerConnected(now + 5, "s1", "support", "6001", 5.0))
        until(run, lambda: service.desk.chosen_of("s1") == "c3")
        assert again.got["6001"][-1]["customer"]["id"] == "c3"
    finally:
        run(service.stop())


def test_an_unknown_caller_can_be_created_or_attached_by_the_agent(
    engine: Engine, reactor: Any, run: Callable[..., Any]
) -> None:
    service = started(engine, reactor, run)
    Agents(service, "6001")
    try:
        now = reactor.seconds()
        arrive(service, "u1", "+4930555000", now)
        service.on_acd_event(CallerOffered(now, "u1", "support", ("6001",)))
        until(run, lambda: service.pop_for("u1", "6001")["identity"] == "unknown")
        created = run(service.create_for_call("u1", "6001", "Marta Núñez", "marta@example.es"))
        assert created["identity"] == "known"
        assert created["customer"]["numbers"] == ["+4930555000"]
        with engine.connect() as conn:
            found = store.candidates_for(conn, "+4930555000")
        assert [c.name for c in found] == ["Marta Núñez"]
        arrive(service, "u2", "+4930555111", now)
        service.on_acd_event(CallerOffered(now, "u2", "support", ("6001",)))
        attached = run(service.attach_to_call("u2", "6001", "c2"))
        assert attached["customer"]["id"] == "c2"
        assert "+4930555111" in attached["customer"]["numbers"]
        with pytest.raises(PopError) as refused:
            service.attach_to_call("u2", "6003", "c2")
        assert refused.value.status == 403
    finally:
        run(service.stop())


class SlowCrm:
    """An external CRM that answers after ``delay`` seconds, or fails."""

    def __init__(self, delay: float, fail: bool = False) -> None:
        self.delay, self.fail, self.asked = delay, fail, 0

    async def lookup(self, number: str) -> CrmAnswer:
        self.asked += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise CrmUnavailable("HTTP 503")
        found = ExternalCustomer("X9", "Ana Lima", (number,), tier="key", url=None)
        return CrmAnswer((found,), "crm", 0.0)


def test_a_slow_crm_never_holds_the_pop_back_and_updates_it_when_it_answers(
    engine: Engine, reactor: Any, run: Callable[..., Any]
) -> None:
    crm = SlowCrm(0.5)
    service = started(engine, reactor, run, directory=crm)
    agents = Agents(service, "6001")
    try:
        now = reactor.seconds()
        arrive(service, "x1", "+4930999000", now)
        service.on_acd_event(CallerOffered(now, "x1", "support", ("6001",)))
        assert agents.kinds("6001") == ["ring"]  # at once: nothing waits for the CRM
        until(run, lambda: any(p["customer"] for p in agents.got["6001"]))
        last = agents.got["6001"][-1]
        assert last["customer"]["source"] == "crm"
        assert last["customer"]["name"] == "Ana Lima"
        assert last["note"] == "from the CRM (crm)"
        # A known caller never asks the CRM.
        arrive(service, "x2", "+4930123456", now)
        until(run, lambda: service.desk.chosen_of("x2") == "c1")
        assert crm.asked == 1
    finally:
        run(service.stop())


def test_a_crm_that_fails_leaves_a_note_on_the_pop(
    engine: Engine, reactor: Any, run: Callable[..., Any]
) -> None:
    service = started(engine, reactor, run, directory=SlowCrm(0.0, fail=True))
    agents = Agents(service, "6001")
    try:
        now = reactor.seconds()
        arrive(service, "f1", "+4930999001", now)
        service.on_acd_event(CallerOffered(now, "f1", "support", ("6001",)))
        until(run, lambda: "HTTP 503" in (agents.got["6001"][-1]["note"] or ""))
        assert agents.got["6001"][-1]["identity"] == "unknown"
    finally:
        run(service.stop())


def test_with_the_database_down_the_pop_still_goes_out_and_says_so(
    reactor: Any, run: Callable[..., Any], tmp_path: Path
) -> None:
    # A database that cannot be opened: the look-up fails, the pop does not.
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'no.sqlite3'}")
    service = started(engine, reactor, run)
    agents = Agents(service, "6001")
    try:
        now = reactor.seconds()
        arrive(service, "d1", "+4930123456", now)
        service.on_acd_event(CallerOffered(now, "d1", "support", ("6001",)))
        until(run, lambda: "look-up failed" in (agents.got["6001"][-1]["note"] or ""))
        assert agents.kinds("6001")[0] == "ring"
        run(service._write_audit())
        assert service._audit, "audit rows wait in memory while the database is away"
    finally:
        run(service.stop())
        engine.dispose()


def test_withheld_and_non_phone_callers_are_not_looked_up(
    engine: Engine, reactor: Any, run: Callable[..., Any]
) -> None:
    service = started(engine, reactor, run)
    agents = Agents(service, "6001")
    try:
        now = reactor.seconds()
        arrive(service, "w1", None, now)
        arrive(service, "w2", "alice", now)  # a SIP user name
        service.on_acd_event(CallerOffered(now, "w1", "support", ("6001",)))
        assert agents.got["6001"][0]["identity"] == "withheld"
        service.on_acd_event(CallerOffered(now, "w2", "support", ("6001",)))
        assert agents.got["6001"][1]["identity"] == "unknown"  # no look-up for "alice"
        assert agents.got["6001"][1]["caller"]["number"] == "alice"
    finally:
        run(service.stop())


def test_ended_calls_become_contacts_and_profile_their_customer_again(
    engine: Engine, reactor: Any, run: Callable[..., Any]
) -> None:
    now = reactor.seconds()
    caller = Caller("+4930123456", "Zoë", "+4930123456")
    agent = Agent("Local/6001@agents")
    events = [
        CallArrived("h1", now - 60, caller=caller, dialled="5000", channel="t/h1"),
        CallAnswered("h1", now - 50, agent=agent, wait=10.0, queue="support"),
        CallEnded("h1", now - 5, cause=16, cause_text=None, ended_by="caller", duration=55.0,
                  talk_time=45.0, answered=True),
    ]
    with engine.begin() as conn:
        conn.execute(insert(call_events), [
            {"pbx": "default", "call_id": "h1", "kind": e.kind, "at": e.at, "recorded_at": e.at,
             "payload": e.to_record(), "event_id": f"h1-{i}", "fact": e.kind}
            for i, e in enumerate(events)
        ])  # fmt: skip
    service = started(engine, reactor, run, profiled=True)
    try:
        until(run, lambda: profiled_after(engine, "c1") is not None)
        with engine.connect() as conn:
            row = conn.execute(select(contacts).where(contacts.c.call_id == "h1")).one()
        assert row.customer_id == "c1"
        assert row.outcome == "answered"
        assert row.talk == 45.0
    finally:
        run(service.stop())


def test_a_new_order_profiles_its_customer_again(
    engine: Engine, reactor: Any, run: Callable[..., Any]
) -> None:
    service = started(engine, reactor, run, profiled=True)
    try:
        run(sleep(0.3))  # the first pass
        with engine.begin() as conn:
            now = reactor.seconds()
            store.add_order(conn, "c2", now - 10, Decimal("99.00"), "books", now=now)

        until(run, lambda: profiled_after(engine, "c2") is not None)
        assert (profiled_after(engine, "c2") or {})["lifecycle"]["stage"] == "development"
    finally:
        run(service.stop())


def test_new_profiles_reach_the_tier_index_without_a_full_reload(
    engine: Engine, reactor: Any, run: Callable[..., Any]
) -> None:
    service = started(engine, reactor, run)
    try:
        assert service.tiers.tier_of("+4930777777") == "ordinary"  # c2, c3: no tier yet
        service.tiers.update({"+4930999999": "key"})  # stands for a number a reload skips
        with engine.begin() as conn:  # what an incremental profile writes
            conn.execute(
                update(customers).where(customers.c.id == "c3")
                .values(tier="key", profile=PROFILE, profiled_at=NOW + 60)
            )  # fmt: skip
        until(run, lambda: service.tiers.tier_of("+4930777777") == "key")
        assert service.tiers.tier_of("+4930123456") == "vip"
        assert service.tiers.tier_of("+4930999999") == "key"  # only c3's numbers were read
        with engine.begin() as conn:  # a new bulk run: everyone is read again
            conn.execute(insert(tier_runs).values(at=NOW, finished_at=NOW, customers=3, cutoffs={}))
        until(run, lambda: service.tiers.tier_of("+4930999999") == "ordinary")
        assert service.tiers.tier_of("+4930777777") == "key"
    finally:
        run(service.stop())
