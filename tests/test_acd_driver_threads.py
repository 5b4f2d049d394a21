"""The driver's threaded mode (issue 13): router steps run on a thread of their own, so a
store that answers slowly (Redis over the network) never stalls the reactor, and the
decisions still come back in order; the caller's tier is looked up before the join.

Real reactor (asyncio, as in the app), a fake AMI client, a real redis-server for the
comparison with the inline driver."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.internet.task import Clock, LoopingCall

from acd.agents import AcdError, UnknownAgent
from acd.config import parse_acd_config
from acd.driver import AcdDriver
from acd.events import AcdEvent, CallerConnected, CallerJoined
from acd.redis_state import RedisState
from acd.router import Router
from acd.state import AcdState, MemoryState
from acd.store_health import GuardedState
from crm_bridge.tiers import StaticTiers
from cti.calls.events import CallArrived, CallEnded, Caller, CallParked
from tests.conftest import sleep
from tests.test_acd_driver import CALLER_CHANNEL, FakeAmi, originate_outcome

AGENTS = ("6001", "6002", "6003")
VIP = "+15550000001"


def config(**sales: Any) -> Any:
    return parse_acd_config(
        {
            "agent_interface": "Local/{agent}@agents",
            "queues": {"sales": {"lanes": ["external"], "ring_timeout": 30, "wrap_up": 0, **sales}},
            "agents": {a: {"name": a, "queues": {"sales": 0}} for a in AGENTS},
        },
        "test",
    )


def make_driver(
    reactor: Any, state: AcdState, *, threaded: bool
) -> tuple[AcdDriver, Router, FakeAmi, list[AcdEvent]]:
    router = Router(config(), pbx="default", state=state)  # no tiers: the driver has them
    ami, published = FakeAmi(), list[AcdEvent]()
    driver = AcdDriver(
        router,
        ami,
        reactor,
        interfaces={a: f"Local/{a}@agents" for a in AGENTS},
        caller_channel=lambda call_id: CALLER_CHANNEL,
        publish=published.append,
        tiers=StaticTiers({VIP: "vip"}),
        threaded=threaded,
    )
    return driver, router, ami, published


def arrive_and_park(driver: AcdDriver, call_id: str, number: str | None = None) -> None:
    driver.on_call_event(CallArrived(call_id, 0.0, Caller(number, None), "5003", CALLER_CHANNEL))
    driver.on_call_event(CallParked(call_id, 0.0, "external", CALLER_CHANNEL))


def hang_up(driver: AcdDriver, call_id: str) -> None:
    driver.on_call_event(CallEnded(call_id, 0.0, 16, "Normal Clearing", "caller", 0.0))


class Lateness:
    """A LoopingCall every millisecond on the real reactor; ``worst`` is the longest it
    ran late (how long the reactor thread was kept from it)."""

    def __init__(self, reactor: Any, every: float = 0.001) -> None:
        self.every, self.worst, self.ticks = every, 0.0, 0
        self._last: float | None = None
        self._loop = LoopingCall(self._tick)
        self._loop.clock = reactor

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.worst = max(self.worst, now - self._last - self.every)
        self._last, self.ticks = now, self.ticks + 1

    def __enter__(self) -> Lateness:
        self._loop.start(self.every, now=True)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.stop()


class SlowState:
    """A store double: a MemoryState whose every operation takes 50 ms (a stuck network)."""

    DELAY = 0.05

    def __init__(self) -> None:
        self.inner = MemoryState()
        self.calls = 0

    def __getattr__(self, name: str) -> Callable[..., Any]:
        operation = getattr(self.inner, name)

        def slow(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            time.sleep(self.DELAY)
            return operation(*args, **kwargs)

        return slow


async def _flush(driver: AcdDriver) -> None:
    """Returns once the reports the driver defers to the next reactor turn (a failed
    offer) are in and every step queued so far has been carried out."""
    await sleep(0.01)
    await driver.call(lambda: None)


@pytest.mark.parametrize("threaded", [True, False])
def test_a_slow_store_does_not_stall_the_reactor_when_threaded(
    reactor: Any, run: Any, threaded: bool
) -> None:
    store: Any = SlowState()
    driver, router, ami, _ = make_driver(reactor, store, threaded=threaded)

    async def scenario() -> None:
        for agent in ("6001", "6002"):
            driver.login(agent)
        for n in range(3):
            arrive_and_park(driver, f"c{n}")
        await _flush(driver)

    started = time.perf_counter()
    with Lateness(reactor) as lateness:
        run(scenario(), timeout=30)
    took = time.perf_counter() - started
    driver.stop()

    # The routing happened, however slowly: two offers, the third caller waits.
    assert ami.names() == ["Originate", "Originate"]
    assert sorted(router.offers()) == ["c0", "c1"] and store.calls >= 10
    assert took >= store.calls * SlowState.DELAY
    if threaded:
        # Hundreds of loop turns meanwhile, none held up for a store round trip (how few
        # milliseconds exactly depends on the machine's load: bench/acd_state measures it).
        stall = f"reactor stalled {lateness.worst * 1e3:.1f} ms"
        assert lateness.worst < SlowState.DELAY / 2, stall
        assert lateness.ticks > took / 0.001 / 4
    else:
        # The control: inline, every store round trip blocks the reactor.
        assert lateness.worst >= SlowState.DELAY


def test_agent_commands_fail_their_deferred_when_threaded(reactor: Any, run: Any) -> None:
    driver, router, ami, _ = make_driver(reactor, MemoryState(), threaded=True)
    try:
        with pytest.raises(UnknownAgent):
            run(driver.login("6999"))
        run(driver.login("6001"))
        with pytest.raises(AcdError):
            run(driver.login("6001"))  # already logged in
        arrive_and_park(driver, "c1")
        with pytest.raises(AcdError, match="6001"):
            run(driver.pause("6001", "lunch"))  # it rings: refused, nothing changed
        assert run(driver.call(router.offers)) == {"c1": ("6001",)}
        assert ami.names() == ["Originate"]
    finally:
        driver.stop()
    # Stopped: nothing more is routed, commands are refused.
    with pytest.raises(AcdError, match="stopped"):
        run(driver.login("6002"))


def test_the_tier_is_looked_up_on_arrival_by_the_driver() -> None:
    driver, router, _, published = make_driver(Clock(), MemoryState(), threaded=False)
    arrive_and_park(driver, "c1")
    arrive_and_park(driver, "c2", VIP)
    arrive_and_park(driver, "c3", "+15559999999")
    assert [(c.call_id, c.tier) for c in router.waiting("sales")] == [
        ("c2", "vip"),
        ("c1", "ordinary"),
        ("c3", "ordinary"),
    ]
    joined = [e for e in published if isinstance(e, CallerJoined)]
    assert [(e.call_id, e.tier, e.position) for e in joined] == [
        ("c1", "ordinary", 1),
        ("c2", "vip", 1),
        ("c3", "ordinary", 3),
    ]


# --- threaded on Redis vs inline in memory: the same decisions, in the same order -------------


@pytest.fixture
def redis_store(redis_url: str) -> Iterator[GuardedState]:
    state = GuardedState(RedisState.from_url(redis_url, namespace=uuid.uuid4().hex))
    state.open()
    yield state
    state.close()


def _run_script(
    reactor: Any, run: Any, state: AcdState, *, threaded: bool
) -> tuple[list[tuple[str, dict[str, str]]], list[tuple[Any, ...]]]:
    """Traffic in bursts (inputs queued without waiting for the decisions), then outcomes
    of the offers; returns the AMI actions sent and the ACD events published, in order."""
    driver, _, ami, published = make_driver(reactor, state, threaded=threaded)

    async def go() -> None:
        for agent in AGENTS:
            driver.login(agent)
        for n in range(12):  # a burst: twelve callers, one of them a VIP
            arrive_and_park(driver, f"c{n:02d}", VIP if n == 7 else f"+1555111{n:04d}")
        await _flush(driver)
        # The first agent answers, the second does not, the third's caller hangs up.
        driver.on_call_event(originate_outcome(ami, 1, success=True))
        driver.on_call_event(originate_outcome(ami, 2, success=False))
        await _flush(driver)
        ringing = sorted(driver.router.offers())
        hang_up(driver, ringing[-1])
        for n in range(12, 20):  # another burst
            arrive_and_park(driver, f"c{n:02d}")
        await _flush(driver)
        connected = [e.call_id for e in published if isinstance(e, CallerConnected)]
        hang_up(driver, connected[0])  # the call ends: the agent takes the next caller
        try:
            refused = driver.pause("6003", "lunch")  # it rings: refused
        except AcdError:
            refused = None
        if refused is not None:
            refused.addErrback(lambda f: f.trap(AcdError))
        await _flush(driver)

    try:
        run(go(), timeout=30)
    finally:
        driver.stop()
    ids = ("ChannelId", "OtherChannelId")
    actions = [(name, {k: v for k, v in f.items() if k not in ids}) for name, f in ami.sent]
    facts = [
        (e.kind, getattr(e, "call_id", None), getattr(e, "agent", None), getattr(e, "tier", None))
        for e in published
    ]
    return actions, facts


@pytest.mark.redis
def test_threaded_on_redis_decides_and_carries_out_as_inline_in_memory(
    reactor: Any, run: Any, redis_store: GuardedState
) -> None:
    expected_actions, expected_facts = _run_script(reactor, run, MemoryState(), threaded=False)
    actions, facts = _run_script(reactor, run, redis_store, threaded=True)

    assert redis_store.healthy
    # The same AMI actions in the same order (offers to the same agents, the bridge, the
    # hang-ups), and the same ACD events in the same order.
    assert [a[0] for a in actions].count("Originate") >= 5
    assert actions == expected_actions
    assert facts == expected_facts
    kinds = [f[0] for f in facts]
    assert "caller_connected" in kinds and "offer_not_answered" in kinds
    assert ("caller_joined", "c07", None, "vip") in facts
