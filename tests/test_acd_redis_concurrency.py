"""RedisState under real concurrency and real outages.

Several OS processes, each the backend of its own PBX, share one agent pool in one
redis-server and claim as fast as they can; no agent may ever be held twice at once and no
call may be served twice. Then Redis goes away (or stalls) mid-operation: the store raises
AcdStateUnavailable and its state is exactly before or exactly after the operation.
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
import socket
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import NamedTuple

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from acd.redis_state import AcdStateUnavailable, RedisState
from acd.state import AcdState, MemoryState, WaitingCaller

QUEUES = ["sales", "support", "billing"]
# Six agents, each in two of the three queues: every claim competes for agents of others.
AGENTS = {
    f"agent{i}": {QUEUES[i % 3]: float(i % 2), QUEUES[(i + 1) % 3]: float(i)} for i in range(6)
}
PBXS = ["pbx-a", "pbx-b", "pbx-c"]
CALLS_PER_BACKEND = 120
RUN_LIMIT = 15.0  # seconds a backend may take before it gives up (it needs ~1 s)


class Hold(NamedTuple):
    """One claim as a backend saw it: ``[claimed, freed)`` in the shared Redis sequence."""

    pbx: str
    call_id: str
    agents: tuple[str, ...]
    claimed: int
    freed: int


def backend(url: str, namespace: str, pbx: str, seed: int) -> list[Hold]:
    """One PBX's backend (run in its own process): queue callers, claim, hold, free."""
    rng = random.Random(seed)
    state = RedisState.from_url(url, namespace=namespace)
    clock = redis.Redis.from_url(url)
    seq = f"test:{namespace}:seq"
    clock.incr(f"test:{namespace}:ready")
    while not clock.exists(f"test:{namespace}:go"):  # start together, for maximal contention
        time.sleep(0.001)
    holds: list[Hold] = []
    added = 0
    deadline = time.monotonic() + RUN_LIMIT
    while len(holds) < CALLS_PER_BACKEND and time.monotonic() < deadline:
        if added < CALLS_PER_BACKEND:
            call = WaitingCaller(f"{pbx}-{added}", rng.choice(QUEUES), pbx, rng.random(), 0.0)
            assert state.add_caller(call)
            added += 1
        claim = state.claim(rng.choice(QUEUES), pbx, agents=rng.choice([1, 1, 1, 2, 0]))
        if claim is None:
            time.sleep(0.0002)
            continue
        # Taken after the claim and before the release: a subset of the true hold, so
        # correct holds never appear to overlap, while double bookings (which the other
        # process holds for up to 2 ms) show as overlaps.
        claimed = clock.incr(seq)
        time.sleep(rng.uniform(0, 0.002))
        freed = clock.incr(seq)
        for agent in claim.agents:
            state.set_available(agent, AGENTS[agent])
        holds.append(Hold(pbx, claim.caller.call_id, claim.agents, claimed, freed))
    state.close()
    clock.close()
    return holds


def double_bookings(holds: list[Hold]) -> list[tuple[str, Hold, Hold]]:
    """Pairs of holds of one agent whose intervals overlap."""
    by_agent: dict[str, list[Hold]] = defaultdict(list)
    for hold in holds:
        for agent in hold.agents:
            by_agent[agent].append(hold)
    found = []
    for agent, agent_holds in by_agent.items():
        agent_holds.sort(key=lambda h: h.claimed)
        found += [(agent, a, b) for a, b in itertools.pairwise(agent_holds) if b.claimed < a.freed]
    return found


def test_double_bookings_finds_overlapping_holds() -> None:
    holds = [
        Hold("pbx-a", "c1", ("amy", "bob"), 1, 4),
        Hold("pbx-b", "c2", ("bob",), 3, 6),  # bob while pbx-a still holds him
        Hold("pbx-b", "c3", ("amy",), 4, 5),  # amy right after she was freed: fine
    ]
    assert double_bookings(holds) == [("bob", holds[0], holds[1])]


@pytest.mark.redis
def test_backends_of_several_pbxs_never_share_an_agent_or_a_call(redis_url: str) -> None:
    namespace = uuid.uuid4().hex
    state = RedisState.from_url(redis_url, namespace=namespace)
    clock = redis.Redis.from_url(redis_url)
    for agent, scores in AGENTS.items():
        state.set_available(agent, scores)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(PBXS)) as pool:
        running = pool.starmap_async(
            backend, [(redis_url, namespace, pbx, seed) for seed, pbx in enumerate(PBXS)]
        )
        deadline = time.monotonic() + 20
        while int(clock.get(f"test:{namespace}:ready") or 0) < len(PBXS):
            assert time.monotonic() < deadline, "backends did not start"
            time.sleep(0.01)
        clock.set(f"test:{namespace}:go", 1)
        holds = [hold for per_backend in running.get(timeout=30) for hold in per_backend]

    assert double_bookings(holds) == []
    served = [h.call_id for h in holds]
    assert len(served) == len(set(served)) == CALLS_PER_BACKEND * len(PBXS)
    assert all(h.call_id.startswith(h.pbx + "-") for h in holds)  # each its own PBX's calls
    # The backends really ran at once: holds of different PBXs overlapped in time.
    assert any(
        a.pbx != b.pbx and a.claimed < b.freed and b.claimed < a.freed for a in holds for b in holds
    )
    for queue in QUEUES:  # everyone was set free again, every caller served
        assert sorted(state.available(queue)) == sorted(a for a in AGENTS if queue in AGENTS[a])
        assert state.waiting(queue) == []
    state.close()
    clock.close()


# --- outages -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_redis_raises_unavailable_with_context() -> None:
    port = _free_port()  # nobody listens there any more
    state = RedisState.from_url(f"redis://127.0.0.1:{port}/0", timeout=0.5)
    caller = WaitingCaller("c1", "sales", "pbx1", 1.0, 0.0)
    calls = [
        ("add_caller", lambda: state.add_caller(caller)),
        ("remove_caller", lambda: state.remove_caller("c1")),
        ("waiting", lambda: state.waiting("sales")),
        ("find_callback", lambda: state.find_callback("sales", "555")),
        ("set_available", lambda: state.set_available("amy", {"sales": 0.0})),
        ("set_unavailable", lambda: state.set_unavailable("amy")),
        ("available", lambda: state.available("sales")),
        ("claim", lambda: state.claim("sales", "pbx1")),
    ]
    for name, call in calls:
        with pytest.raises(AcdStateUnavailable, match=rf"{name}\(.*127\.0\.0\.1:{port}") as err:
            call()
        assert isinstance(err.value.__cause__, redis.ConnectionError)


@pytest.fixture
def throwaway_redis(redis_url: str) -> Iterator[int]:
    """A redis-server of this test's own (it is stalled and stopped), on a free port.
    Needs what ``redis_url`` needs, so it skips or fails the same way."""
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--enable-debug-command", "local"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    admin = redis.Redis(port=port)
    try:
        for _ in range(100):
            try:
                admin.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        yield port
    finally:
        admin.close()
        server.terminate()
        server.wait(timeout=10)


def _snapshot(state: AcdState) -> tuple[object, ...]:
    return tuple((state.waiting(q), state.available(q)) for q in QUEUES)


def _populate(state: AcdState) -> None:
    state.add_caller(WaitingCaller("c1", "sales", "pbx1", 5.0, 0.0, callback="555"))
    state.add_caller(WaitingCaller("c2", "sales", "pbx1", 1.0, 0.0))
    state.set_available("amy", {"sales": 0.0, "support": 0.0})
    state.set_available("bob", {"sales": 1.0, "billing": 0.0})


@pytest.mark.redis
def test_claim_cut_off_by_an_outage_is_all_or_nothing(throwaway_redis: int) -> None:
    port = throwaway_redis
    state = RedisState.from_url(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    expected = MemoryState()  # the reference says what "all" is
    _populate(state)
    _populate(expected)
    before = _snapshot(expected)
    expected.claim("sales", "pbx1", agents=0)
    after = _snapshot(expected)
    assert _snapshot(state) == before

    # The server stalls for longer than the client waits: the claim is sent, then times out.
    admin = redis.Redis(port=port, retry=Retry(NoBackoff(), 0))
    stall = threading.Thread(target=admin.execute_command, args=("DEBUG", "SLEEP", "0.6"))
    stall.start()
    time.sleep(0.1)
    with pytest.raises(AcdStateUnavailable, match=r"claim\('sales', 'pbx1', agents=0\)") as err:
        state.claim("sales", "pbx1", agents=0)
    assert isinstance(err.value.__cause__, redis.TimeoutError)
    stall.join()
    assert _snapshot(state) in (before, after)  # whichever it was, never a half claim

    admin.shutdown(nosave=True)  # the server is gone for good
    with pytest.raises(AcdStateUnavailable, match="claim"):
        state.claim("sales", "pbx1")
    state.close()
