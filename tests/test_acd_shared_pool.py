"""Two backends, one agent pool: the proof at the router level, with a real redis-server.

Two OS processes (``multiprocessing`` spawn), ``pbx-a`` and ``pbx-b``, each run a
:class:`acd.router.Router` on its own PBX's callers and its own Redis connections, sharing one
:class:`acd.redis_state.RedisState` namespace and one agent configuration. Both log every agent
in at start; callers join on both PBXs, offers are answered or fail at random, calls end after
random short times, agents pause and unpause at random through either backend, and ``pbx-a``
restarts mid-run (a new Router on the same store logs everyone in again).

Each process records, from its router's decisions and events, when it offered an agent a call
and when it let the agent go (free, paused or logged out after the offer, call or wrap-up).
Times are ``time.monotonic()``, one clock for every process on the host; an offer is stamped
*after* the router call that made it and a release *before* the one that made it, so a
correct store can never show an overlap, while two routers holding one agent at once would.
"""

from __future__ import annotations

import math
import multiprocessing
import random
import time
import traceback
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

import pytest

from acd.agents import AcdError
from acd.config import AcdConfig, parse_acd_config
from acd.decisions import Decision, Offer
from acd.events import (
    AgentStateChanged,
    CallCompleted,
    CallerAbandoned,
    CallerConnected,
    CallerJoined,
)
from acd.redis_state import RedisState
from acd.router import Router
from crm_bridge.tiers import StaticTiers
from cti.calls.events import CallAbandoned, CallArrived, CallEnded, Caller, CallParked

pytestmark = pytest.mark.redis

AGENTS = [f"60{i:02d}" for i in range(8)]
RUN_SECONDS = 3.0
#: Stamps for a held agent never let go (still busy at the end, or lost in the restart).
FOREVER = math.inf


def config() -> AcdConfig:
    return parse_acd_config(
        {
            "queues": {
                "sales": {
                    "lanes": ["external"],
                    "ring_timeout": 0.2,
                    "wrap_up": 0.01,
                    "auto_pause_after": 2,
                }
            },
            "agents": {a: {"name": f"Agent {a}", "queues": {"sales": 0}} for a in AGENTS},
        },
        "shared pool test",
    )


@dataclass
class Record:
    """What one backend saw: agent holds (agent, call, offered, released), callers' fates."""

    holds: list[tuple[str, str, float, float]] = field(default_factory=list)
    status: dict[str, str] = field(default_factory=dict)  # call -> waiting/connected/...
    connects: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    refused: int = 0  # commands the router refused (AcdError)


class Backend:
    """One backend's shell: feeds its router and records what the router decided."""

    def __init__(self, pbx: str, url: str, namespace: str, seed: int) -> None:
        self.pbx = pbx
        self.rng = random.Random(seed)
        self.state = RedisState.from_url(url, namespace=namespace)
        self.record = Record()
        self.open: dict[str, tuple[str, float]] = {}  # agent -> (call, offered)
        self.ends: dict[str, float] = {}  # connected call -> when the caller hangs up
        self.calls = 0
        self.start()

    def start(self) -> None:
        """A fresh router (at start, or a restart) logging every agent in."""
        self.router = Router(config(), pbx=self.pbx, tiers=StaticTiers(), state=self.state)
        for agent in AGENTS:
            # Refusable: a login earlier in this loop may already have had the store hand
            # this agent to a waiting caller, the router taking it over (AlreadyLoggedIn).
            self.apply(
                lambda agent=agent: self.router.login(agent, time.monotonic()), refusable=True
            )

    def apply(self, command: Any, *, refusable: bool = False) -> None:
        """Run a router call; only agent commands may be refused (AcdError), as a stale
        view or a hold elsewhere makes them; anything else refused is a failure."""
        before = time.monotonic()
        try:
            decisions: list[Decision] = command()
        except AcdError:
            if not refusable:
                raise
            self.record.refused += 1
            decisions = []
        after = time.monotonic()
        for event in self.router.drain_events():
            self.note(event, before)
        for decision in decisions:
            if isinstance(decision, Offer):
                assert decision.pbx == self.pbx and len(decision.agents) == 1, decision
                self.open[decision.agents[0]] = (decision.call_id, after)

    def note(self, event: Any, before: float) -> None:
        match event:
            case AgentStateChanged(state="available" | "paused" | "logged_out"):
                if event.agent in self.open:  # let go after our offer, call or wrap-up
                    call, offered = self.open.pop(event.agent)
                    self.record.holds.append((event.agent, call, offered, before))
            case CallerJoined():
                self.record.status[event.call_id] = "waiting"
            case CallerConnected():
                self.record.status[event.call_id] = "connected"
                self.record.connects[event.call_id] += 1
                self.ends[event.call_id] = time.monotonic() + self.rng.uniform(0.005, 0.06)
            case CallCompleted():
                self.record.status[event.call_id] = "completed"
            case CallerAbandoned():
                self.record.status[event.call_id] = "abandoned"

    def step(self) -> None:
        rng, router, now = self.rng, self.router, time.monotonic()
        self.apply(lambda: router.tick(now))
        for call in [c for c, end in self.ends.items() if end <= now]:
            del self.ends[call]
            ended = CallEnded(call, now, 16, "Normal Clearing", "caller", 0.0)
            self.apply(lambda ended=ended: router.on_call_event(ended, now))
        ringing = sorted(router.offers().items())
        agent = rng.choice(AGENTS)
        match rng.choices(["arrive", "answer", "fail", "abandon", "pause", "unpause"],
                          [2, 4, 1, 1, 1, 1])[0]:  # fmt: skip
            case "arrive":
                self.calls += 1
                call = f"{self.pbx}-{self.calls}"
                arrived = CallArrived(call, now, Caller(None, None), None, "PJSIP/trunk")
                router.on_call_event(arrived, now)
                parked = CallParked(call, now, "external", "PJSIP/trunk")
                self.apply(lambda: router.on_call_event(parked, now))
            case "answer" if ringing:
                call, (agent, *_) = rng.choice(ringing)
                self.apply(lambda: router.offer_answered(call, agent, now))
            case "fail" if ringing:
                call, (agent, *_) = rng.choice(ringing)
                self.apply(lambda: router.offer_failed(call, agent, "busy", now))
            case "abandon":
                mine = [c.call_id for c in router.waiting("sales") if c.pbx == self.pbx]
                if mine:
                    gone = CallAbandoned(rng.choice(mine), now, 1.0, "external")
                    self.apply(lambda: router.on_call_event(gone, now))
            case "pause":
                self.apply(lambda: router.pause(agent, "break", now), refusable=True)
            case "unpause":
                self.apply(lambda: router.unpause(agent, now), refusable=True)

    def restart(self) -> None:
        """Crash and come back: the old router's holds stay reserved in the store (their
        calls went on without it), so they are never let go; its waiting callers stay."""
        for agent, (call, offered) in self.open.items():
            self.record.holds.append((agent, call, offered, FOREVER))
        self.open.clear()
        self.ends.clear()  # those hang-ups reach a router that never knew the calls
        self.record.restarts += 1
        self.start()

    def finish(self) -> Record:
        for agent, (call, offered) in self.open.items():
            self.record.holds.append((agent, call, offered, FOREVER))
        waiting = {c.call_id for c in self.router.waiting("sales")} | self.router.offers().keys()
        for call, status in self.record.status.items():
            # Still waiting means in the store, waiting or ringing: no caller is lost.
            assert (status == "waiting") == (call in waiting), (call, status)
        self.state.close()
        return self.record


def run_backend(
    pbx: str, url: str, namespace: str, seed: int, restart: bool, barrier: Any, out: Any
) -> None:
    """A backend process: run for RUN_SECONDS, restarting once halfway if ``restart``."""
    try:
        backend = Backend(pbx, url, namespace, seed)
        barrier.wait(timeout=10)
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < RUN_SECONDS:
            backend.step()
            # Restart with no offer ringing, so that every caller's fate stays known.
            if restart and elapsed > RUN_SECONDS / 2 and not backend.router.offers():
                backend.restart()
                restart = False
            time.sleep(backend.rng.uniform(0, 0.002))
        out.put((pbx, backend.finish(), None))
    except BaseException:
        out.put((pbx, None, traceback.format_exc()))


def overlaps(holds: list[tuple[str, str, float, float]], key: Literal[0, 1]) -> list[Any]:
    """Pairs of holds with the same agent (key 0) or call (key 1) that overlap in time."""
    by_key: dict[str, list[tuple[str, str, float, float]]] = defaultdict(list)
    for hold in holds:
        by_key[hold[key]].append(hold)
    found = []
    for group in by_key.values():
        group.sort(key=lambda h: h[2])
        found += [(a, b) for a, b in pairwise(group) if b[2] < a[3]]
    return found


def test_two_backends_never_double_book_an_agent_or_a_call(redis_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    namespace, seed = uuid.uuid4().hex, random.randrange(2**32)
    processes = [
        ctx.Process(
            target=run_backend,
            args=(pbx, redis_url, namespace, seed + i, pbx == "pbx-a", barrier, out),
        )
        for i, pbx in enumerate(["pbx-a", "pbx-b"])
    ]
    for process in processes:
        process.start()
    try:
        results = [out.get(timeout=12) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
    errors = [error for _, _, error in results if error]
    assert not errors, f"seed {seed}:\n" + "\n".join(errors)
    records = {pbx: record for pbx, record, _ in results}
    holds = [hold for record in records.values() for hold in record.holds]

    assert overlaps(holds, 0) == [], f"an agent held twice at once (seed {seed})"
    assert overlaps(holds, 1) == [], f"a call offered to two agents at once (seed {seed})"
    connects: Counter[str] = sum((record.connects for record in records.values()), Counter())
    assert max(connects.values()) == 1, f"a call connected twice (seed {seed})"
    for pbx, record in records.items():
        assert all(call.startswith(pbx) for _, call, _, _ in record.holds)
        assert set(record.status.values()) <= {"waiting", "connected", "completed", "abandoned"}
    # The run did exercise a shared pool: agents served both PBXs, and pbx-a restarted.
    shared = {a for a, c, _, _ in holds if c.startswith("pbx-a")} & {
        a for a, c, _, _ in holds if c.startswith("pbx-b")
    }
    assert len(holds) > 50 and shared, (len(holds), shared)
    assert records["pbx-a"].restarts == 1
