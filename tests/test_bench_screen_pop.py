"""The screen-pop benchmark's code path (``bench/screen_pop.py``) at a tiny scale: the
simulator over TCP AMI, a whole backend with the ACD and the agent API, one pop WebSocket
per agent. Checked: every offered call's pop reached the agent offered, showing the caller's
customer. No timings here: the speed goals live in the benchmark."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred

from bench.screen_pop import (
    Load,
    draw_callers,
    numbers_by_owner,
    prepare,
    report,
    run_live,
    time_lookups,
)


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
    for offer in live.offers:
        assert offer.number in live.placed
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
