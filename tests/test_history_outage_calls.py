"""Fault test, end to end: the PBX simulator places calls at 1,500 a minute through a real
backend (AMI over TCP) writing to a real PostgreSQL, and PostgreSQL is stopped for a minute
in the middle. The AMI link must never be paused or dropped, and afterwards every call the
simulator placed must be in the database with the outcome the call model saw live (never a
``system`` end), once."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread

from cti.history import load_call_events
from tests.conftest import sleep
from tests.e2e import caller, originate_inside, start_backend, start_simulator, until

#: Calls a minute, as issue 12 measured, and how long PostgreSQL is down.
CALLS_PER_MINUTE = 1_500
OUTAGE = 60.0
#: Calls placed before the outage and after the database is back.
LEAD, TAIL = 3.0, 3.0


def test_postgres_down_a_minute_at_1500_calls_a_minute_loses_no_call(
    postgres_server: Any, reactor: Any, run: Any, tmp_path: Path
) -> None:
    simulator = start_simulator(reactor)
    app = start_backend(
        reactor,
        run,
        simulator,
        tmp_path,
        {
            "CALLCENTER_DATABASE__URL": postgres_server.url,
            "CALLCENTER_HISTORY__SPOOL_DIR": str(tmp_path / "spool"),
            "CALLCENTER_HISTORY__RETRY_MAX": "2",
        },
    )
    rng = random.Random(12)
    placed: list[str] = []
    paused: list[bool] = []
    states: set[str] = set()

    def place() -> None:
        n = len(placed)
        number = f"555{n:07d}"
        placed.append(f"+1{number}")
        # Patience 1-6 s into app_queue's three agents: some answered, most abandon.
        talk = round(rng.uniform(1.0, 6.0), 1)
        originate_inside(simulator, caller(number, f"Caller {n}", "5000", talk))
        paused.append(app.call_events.paused or app.ami.paused)
        states.add(app.ami.state.value)

    placer = LoopingCall(place)
    placer.clock = reactor

    async def go() -> float:
        placer.start(60.0 / CALLS_PER_MINUTE)
        await sleep(LEAD)
        await deferToThread(postgres_server.stop)
        await sleep(OUTAGE)
        spooled = app.history.spooled
        await deferToThread(postgres_server.start)
        await sleep(TAIL)
        placer.stop()
        # Every call ends by its caller's patience; then the spool drains.
        await until(lambda: not app.model.calls, timeout=30)
        await until(lambda: app.history.pending == 0, timeout=30)
        return spooled

    try:
        spooled = run(go(), timeout=LEAD + OUTAGE + TAIL + 90)
    finally:
        run(app.stop())
        simulator.stopListening()

    engine = create_engine(postgres_server.url)
    stored = load_call_events(engine)
    engine.dispose()
    live = [e.to_record() for e in app.seen]
    by_call: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in stored:
        by_call[record["call_id"]].append(record)
    numbers = {
        r["caller"]["number"] for rows in by_call.values() for r in rows if r["kind"] == "arrived"
    }
    outcomes = Counter(
        "answered" if r["answered"] else "abandoned"
        for rows in by_call.values()
        for r in rows
        if r["kind"] == "ended"
    )
    matches = sum(
        1
        for rows in by_call.values()
        if [r for r in rows if r["kind"] == "ended"]
        == [r for r in live if r["kind"] == "ended" and r["call_id"] == rows[0]["call_id"]]
    )
    print(
        f"\nPostgreSQL down {OUTAGE:.0f} s at {CALLS_PER_MINUTE} calls/min: placed {len(placed)}, "
        f"stored {len(numbers)} calls ({len(stored)} events, {spooled} spooled at the end of "
        f"the outage), outcome matches {matches} ({dict(outcomes)}), ended by system "
        f"{sum(r['kind'] == 'ended' and r['ended_by'] == 'system' for r in stored)}, "
        f"AMI paused {sum(paused)} times, link states {sorted(states)}"
    )
    assert spooled > 0  # the outage really held events back
    assert numbers == set(placed)  # every call placed is in the database
    assert stored == live  # with every event the model saw live, once, in order
    assert matches == len(placed)
    assert not any(r["kind"] == "ended" and r["ended_by"] == "system" for r in stored)
    assert not any(paused) and states == {"ready"}
