"""The screen-pop benchmark's code path (``bench/screen_pop.py``) at a tiny scale: a whole
backend with the ACD and the agent API in this process, the world (``bench.screen_pop_world``:
the simulator over TCP AMI, the callers, one pop WebSocket per agent) in a child process.
Checked: every offered call's pop reached the agent offered, showing the caller's
customer. No timings here: the speed goals live in the benchmark."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred

from bench.screen_pop import (
    LiveResult,
    Load,
    Offer,
    draw_callers,
    numbers_by_owner,
    prepare,
    report,
    run_live,
    time_lookups,
)
from bench.screen_pop_world import SeenPop, WorldRecords


def test_every_offered_call_pops_at_its_agent_with_its_customer(
    reactor: Any, run: Any, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'pop.sqlite3'}"
    said: list[str] = []
    engine = prepare(url, 300, 1500, reuse=False, say=said.append)
    owners = numbers_by_owner(engine)
    rng = random.Random(3)
    callers = draw_callers(engine, owners, 15, rng)
    load = Load(rate=5, seconds=3, agents=20, talk=2.0)
    live = run(
        Deferred.fromFuture(asyncio.ensure_future(
            run_live(reactor, url, callers, owners, load, tmp_path, say=said.append)
        )),
        timeout=60,
    )  # fmt: skip

    assert live.errors == []
    assert sum(live.placed.values()) == 15 and live.connected == 20
    assert len({o.call_id for o in live.offers}) == 15
    assert live.frames >= len(live.offers)
    agents = {str(6001 + n) for n in range(20)}
    for offer in live.offers:
        # The world's records joined to the backend's offers: the agent offered saw it.
        assert offer.number in live.placed and offer.agent in agents
        assert offer.ring_at is not None and offer.customer_at is not None
        assert [offer.customer] == owners[offer.number]
        # Every agent was free: each offer came from the AMI event that parked its caller.
        assert offer.read_at is not None and offer.handled_at is not None
    spreads = live.spreads()
    assert {s.count for s in spreads.values()} == {len(live.offers)}

    lookups, wrong = time_lookups(reactor, engine, owners, 300, rng)
    engine.dispose()
    assert wrong == []
    assert lookups["all"].count == 300
    assert sum(lookups[k].count for k in ("known", "shared", "unknown")) == 300
    assert "errors: 0" in report(live, lookups, wrong)


def test_a_reused_database_is_not_generated_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pop.sqlite3'}"
    said: list[str] = []
    prepare(url, 50, 100, reuse=False, say=said.append).dispose()
    prepare(url, 50, 100, reuse=True, say=said.append).dispose()
    assert said[-1] == "data: reusing 50 customers and the latest of 1 tier runs"


def test_the_merge_of_the_worlds_records_names_what_went_wrong() -> None:
    owners = {"+4930111": ["c1"], "+4930222": ["c2"], "+4930333": ["c3"]}
    live = LiveResult(Load(), Counter(), [], [], 0.0)
    live.offers = [
        Offer("call-1", "6001", 1.0, 1.0, 1.0),  # right customer
        Offer("call-2", "6002", 2.0, 2.0, 2.0),  # wrong customer shown
        Offer("call-3", "6003", 3.0, 3.0, 3.0),  # never reached its agent
    ]
    world = WorldRecords(
        placed=Counter({"+4930111": 1, "+4930222": 1, "+4930333": 1}),
        pops=[
            SeenPop("call-1", "6001", "+4930111", 1.01, 1.01, "c1"),
            SeenPop("call-2", "6002", "+4930222", 2.01, 2.02, "c9"),
            SeenPop("call-3", "6004", "+4930333", 3.01, 3.01, "c3"),
        ],
        frames=4,
        errors=["agent 6001's socket got agent 6002's pop"],
        wall=3.5,
    )

    live.merge(world, owners, total=4)

    assert live.frames == 4 and live.wall == 3.5
    assert live.offers[0].ring_at == 1.01 and live.offers[0].customer == "c1"
    assert live.errors == [
        "agent 6001's socket got agent 6002's pop",
        "agent 6004 got a pop of call call-3, never offered to them",
        "1 of 4 callers placed were never offered to an agent",
        "call call-2: the pop showed customer c9, not ['c2']",
        "call call-3: no ring pop reached agent 6003",
        "call call-3: the pop at agent 6003 never showed customer []",
    ]
