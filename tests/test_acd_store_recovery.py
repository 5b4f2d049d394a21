"""Routing through a shared-store outage or restart (``acd.store_health``), at the router
level: a store double that goes down and comes back (its state kept, or restarted empty), and
routers that keep their callers and agents meanwhile and re-seed it afterwards."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import pytest
from twisted.internet.task import Clock

from acd.config import parse_acd_config
from acd.decisions import Decision, Offer
from acd.driver import AcdDriver
from acd.router import Router
from acd.state import AcdStateUnavailable, Claim, MemoryState, WaitingCaller
from acd.store_health import GuardedState
from crm_bridge.tiers import StaticTiers
from cti.calls.events import CallAbandoned, CallEnded, CallParked

AGENTS = ("6001", "6002")


class FlakyStore:
    """A shared store double: a :class:`MemoryState` that can be down (every operation
    raises as ``RedisState`` does) and can restart empty, with a new run id."""

    where = "flaky:6379"

    def __init__(self) -> None:
        self.inner = MemoryState()
        self.run = 1
        self.marker: str | None = None
        self.down = False
        self.calls_while_down = 0

    def stop(self) -> None:
        self.down = True

    def start(self, *, empty: bool = True, copy_of: MemoryState | None = None) -> None:
        """Back: ``empty`` (a restart), with its state (a network outage), or a restart
        from an old copy (``copy_of``, with the seed marker it had)."""
        self.down = False
        if copy_of is not None:
            self.inner, self.run = copy_of, self.run + 1
        elif empty:
            self.inner, self.marker, self.run = MemoryState(), None, self.run + 1

    def _check(self, what: str) -> None:
        if self.down:
            self.calls_while_down += 1
            raise AcdStateUnavailable(f"ACD state: {what} failed") from ConnectionError(
                "Error 111 connecting to flaky:6379. Connection refused."
            )

    def generation(self) -> tuple[str, str | None]:
        self._check("generation()")
        return str(self.run), self.marker

    def claim_generation(self, run_id: str) -> bool:
        self._check("claim_generation()")
        if self.marker == run_id:
            return False
        self.inner, self.marker = MemoryState(), run_id
        return True

    def add_caller(self, caller: WaitingCaller) -> bool:
        self._check("add_caller")
        return self.inner.add_caller(caller)

    def remove_caller(self, call_id: str) -> WaitingCaller | None:
        self._check("remove_caller")
        return self.inner.remove_caller(call_id)

    def waiting(self, queue: str) -> list[WaitingCaller]:
        self._check("waiting")
        return self.inner.waiting(queue)

    def position(self, call_id: str) -> int | None:
        self._check("position")
        return self.inner.position(call_id)

    def head(self, queue: str) -> WaitingCaller | None:
        self._check("head")
        return self.inner.head(queue)

    def length(self, queue: str) -> int:
        self._check("length")
        return self.inner.length(queue)

    def find_callback(self, queue: str, number: str) -> WaitingCaller | None:
        self._check("find_callback")
        return self.inner.find_callback(queue, number)

    def set_available(
        self, agent: str, scores: Mapping[str, float], *, if_idle: bool = False
    ) -> bool:
        self._check("set_available")
        return self.inner.set_available(agent, scores, if_idle=if_idle)

    def set_unavailable(self, agent: str, *, if_idle: bool = False) -> bool:
        self._check("set_unavailable")
        return self.inner.set_unavailable(agent, if_idle=if_idle)

    def reserved(self, agent: str) -> bool:
        self._check("reserved")
        return self.inner.reserved(agent)

    def available(self, queue: str) -> list[str]:
        self._check("available")
        return self.inner.available(queue)

    def reserve(self, agent: str) -> None:
        self._check("reserve")
        self.inner.reserve(agent)

    def claim(self, queue: str, pbx: str, agents: int = 1) -> Claim | None:
        self._check("claim")
        return self.inner.claim(queue, pbx, agents)


class Backend:
    """One PBX's router on its own guard over the shared store double, with a clock."""

    def __init__(self, store: FlakyStore, pbx: str, clock: list[float]) -> None:
        self.clock = clock
        self.state = GuardedState(store, settle=1.5, clock=lambda: clock[0])
        self.state.open()
        config = parse_acd_config(
            {
                "queues": {"sales": {"lanes": ["external"], "wrap_up": 0}},
                "agents": {a: {"name": a, "queues": {"sales": 0}} for a in AGENTS},
            },
            "test",
        )
        self.router = Router(config, pbx=pbx, tiers=StaticTiers(), state=self.state)
        self.decisions: list[Decision] = []

    def do(self, decisions: list[Decision]) -> list[Decision]:
        self.decisions += decisions
        self.router.drain_events()
        return decisions

    def reseed(self, free_agents: bool) -> None:
        self.do(self.router.reseed(self.clock[0], free_agents))

    def recover(self) -> list[Decision]:
        before = len(self.decisions)
        self.state.recover(self.reseed)
        return self.decisions[before:]

    def park(self, call_id: str) -> list[Decision]:
        parked = CallParked(call_id, self.clock[0], "external", "ch")
        return self.do(self.router.on_call_event(parked, self.clock[0]))

    def answer(self, offer: Decision) -> None:
        assert isinstance(offer, Offer)
        self.do(self.router.offer_answered(offer.call_id, offer.agents[0], self.clock[0]))

    def hang_up(self, call_id: str) -> list[Decision]:
        ended = CallEnded(call_id, self.clock[0], 16, "Normal Clearing", "caller", 1.0)
        return self.do(self.router.on_call_event(ended, self.clock[0]))


def offers(decisions: list[Decision]) -> list[tuple[str, tuple[str, ...]]]:
    return [(d.call_id, d.agents) for d in decisions if isinstance(d, Offer)]


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "acd.store_health" and r.levelno == level]


@pytest.fixture
def clock() -> list[float]:
    return [100.0]


def test_callers_and_agents_of_an_outage_are_routed_when_redis_is_back(
    clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "acd.store_health")
    store = FlakyStore()
    a = Backend(store, "pbx-a", clock)
    a.do(a.router.login("6001", clock[0]))
    [first] = a.park("c1")
    a.answer(first)  # 6001 talks to c1

    store.stop()
    assert a.park("c2") == [] and a.park("c3") == []  # they join: no agent can be claimed
    assert a.hang_up("c1") == []  # 6001 is free again, in this backend's view only
    a.do(a.router.login("6002", clock[0]))
    a.do(a.router.on_call_event(CallAbandoned("c3", clock[0], 1.0, "external"), clock[0]))
    for _ in range(3):
        assert a.recover() == []  # still down: probed once a second, quietly
    # The circuit: after the first failure no operation went to the store, only the probes.
    assert store.calls_while_down == 1 + 3

    clock[0] += 7.0
    store.start(empty=False)  # back with its state (a network outage)
    assert sorted(offers(a.recover())) == [("c2", ("6001",))]  # c3 hung up meanwhile
    assert a.state.healthy and store.inner.waiting("sales") == []
    assert store.inner.available("sales") == ["6002"]

    [warning] = records(caplog, logging.WARNING)
    assert "Redis at flaky:6379 unavailable (ConnectionError: Error 111" in warning.message
    [info] = records(caplog, logging.INFO)
    assert "back after 7.0 s (its state kept)" in info.message
    assert all(r.exc_info is None for r in caplog.records)  # no traceback anywhere
    assert len(records(caplog, logging.DEBUG)) >= 5  # the operations of the outage


def test_an_agent_paused_and_a_caller_gone_during_the_outage_stay_so(
    clock: list[float],
) -> None:
    store = FlakyStore()
    a = Backend(store, "pbx-a", clock)
    a.do(a.router.login("6001", clock[0]))
    a.do(a.router.login("6002", clock[0]))
    a.do(a.router.pause("6002", "lunch", clock[0]))
    store.stop()
    a.do(a.router.pause("6001", "lunch", clock[0]))  # still free in the store: must not stay
    a.do(a.router.unpause("6002", clock[0]))
    a.park("c1")
    store.start(empty=False)
    assert offers(a.recover()) == [("c1", ("6002",))]
    assert store.inner.available("sales") == []


def test_a_caller_who_left_during_the_outage_is_taken_out_of_the_kept_state(
    clock: list[float],
) -> None:
    store = FlakyStore()
    a = Backend(store, "pbx-a", clock)
    a.park("c1")  # waits in the store: nobody is logged in
    store.stop()
    a.do(a.router.on_call_event(CallAbandoned("c1", clock[0], 1.0, "external"), clock[0]))
    store.start(empty=False)
    a.do(a.router.login("6001", clock[0]))  # before the poll notices: no claim yet
    a.recover()
    assert store.inner.waiting("sales") == [] and "6001" in store.inner.available("sales")
    assert a.router.offers() == {}


@pytest.mark.parametrize("first", ["pbx-a", "pbx-b"])
def test_a_restart_empty_reseeds_places_and_never_frees_an_agent_on_a_call_elsewhere(
    clock: list[float], caplog: pytest.LogCaptureFixture, first: str
) -> None:
    caplog.set_level(logging.INFO, "acd.store_health")
    store = FlakyStore()
    a, b = Backend(store, "pbx-a", clock), Backend(store, "pbx-b", clock)
    for agent in AGENTS:  # every backend logs every agent in (a shared pool)
        a.do(a.router.login(agent, clock[0]))
        b.do(b.router.login(agent, clock[0]))
    [offer] = a.park("a1")
    a.answer(offer)  # a1 talks to 6001 through pbx-a; pbx-b's roster still says available
    [offer] = b.park("b1")
    b.answer(offer)  # b1 talks to 6002 through pbx-b
    clock[0] += 1
    b.park("b2")  # an earlier, better place than b3's
    clock[0] += 1
    b.park("b3")
    store.stop()
    clock[0] += 2
    assert a.park("a2") == []
    store.start()  # empty, a new server run
    order = [a, b] if first == "pbx-a" else [b, a]

    for backend in order:  # each re-adds its callers and re-reserves its agents on calls
        assert offers(backend.recover()) == []
    assert [c.call_id for c in store.inner.waiting("sales")] == ["b2", "b3", "a2"]
    assert store.inner.reserved("6001") and store.inner.reserved("6002")
    clock[0] += 1.6  # settled: idle agents may be freed, 6001 and 6002 are not idle
    for backend in order:
        assert offers(backend.recover()) == []
    assert store.inner.available("sales") == []

    # 6001's call ends through pbx-a: it is free, and takes the best waiting caller of the
    # PBX that claims it.
    a.hang_up("a1")
    assert offers(a.decisions[-1:]) == [("a2", ("6001",))]
    b.hang_up("b1")
    assert offers(b.decisions[-1:]) == [("b2", ("6002",))]
    for backend in (a, b):
        assert backend.state.outages == backend.state.recoveries == 1
    assert len(records(caplog, logging.WARNING)) == 2  # one per backend
    infos = [r.message for r in records(caplog, logging.INFO)]
    assert len(infos) == 2 and all("restarted" in m for m in infos)


def test_a_restart_noticed_without_any_failure_frees_idle_agents_after_settling(
    clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "acd.store_health")
    store = FlakyStore()
    a = Backend(store, "pbx-a", clock)
    a.do(a.router.login("6001", clock[0]))
    store.stop()
    store.start()  # between two polls: no operation failed
    a.park("c1")  # joins the empty store: claimable once 6001 is free again
    assert a.recover() == []
    clock[0] += 1.0
    assert a.recover() == []
    clock[0] += 0.6
    assert offers(a.recover()) == [("c1", ("6001",))]
    [warning] = records(caplog, logging.WARNING)
    assert "was restarted" in warning.message
    [info] = records(caplog, logging.INFO)
    assert "(restarted, empty); re-seeded 1 waiting callers, 0 agents on calls, 1 free" in (
        info.message
    )


def test_a_restart_from_an_old_copy_drops_it_so_no_gone_caller_is_offered(
    clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "acd.store_health")
    store = FlakyStore()
    a = Backend(store, "pbx-a", clock)
    a.park("c0")  # nobody logged in: c0 waits
    old = copy.deepcopy(store.inner)  # what Redis last saved to disk
    a.do(a.router.on_call_event(CallAbandoned("c0", clock[0], 1.0, "external"), clock[0]))
    store.stop()
    a.do(a.router.login("6001", clock[0]))
    store.start(copy_of=old)  # c0 is back in it: gone from the PBX long ago
    a.recover()
    clock[0] += 2
    assert offers(a.recover()) == []
    assert store.inner.waiting("sales") == [] and store.inner.available("sales") == ["6001"]
    [info] = records(caplog, logging.INFO)
    assert "(restarted, an old copy of the state, dropped)" in info.message


def test_reseed_is_idempotent_on_a_store_that_holds_everything(clock: list[float]) -> None:
    store = MemoryState()
    router = Router(
        parse_acd_config(
            {
                "queues": {"sales": {"lanes": ["external"]}},
                "agents": {a: {"name": a, "queues": {"sales": 0}} for a in AGENTS},
            },
            "test",
        ),
        pbx="pbx-a",
        tiers=StaticTiers(),
        state=store,
    )
    router.login("6001", 0)
    [offer] = router.on_call_event(CallParked("c1", 0, "external", "ch"), 0)
    router.on_call_event(CallParked("c2", 1, "external", "ch"), 1)
    before = (store.waiting("sales"), store.available("sales"), store.reserved("6001"))
    assert router.reseed(2) == [] and router.reseed(3, False) == []
    assert (store.waiting("sales"), store.available("sales"), store.reserved("6001")) == before
    assert router.offers() == {"c1": ("6001",)} and isinstance(offer, Offer)


def test_the_driver_logs_a_store_outage_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    class Failing:
        def poll(self, now: float) -> list[Decision]:
            raise AcdStateUnavailable("ACD state: claim('sales', 'default') failed, Redis down")

        def drain_events(self) -> list[Any]:
            return []

        def next_deadline(self) -> None:
            return None

    driver = AcdDriver(  # no AMI client: the store fails before any action
        Failing(), None, Clock(), interfaces={}, caller_channel=lambda c: None, publish=print  # type: ignore[arg-type]
    )
    for _ in range(3):
        driver.poll()
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 3
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in caplog.records)
    assert "Redis down" in caplog.records[0].getMessage()
