"""ACD state benchmark: routing-decision latency of MemoryState and RedisState.

A center of 10,000 agents, each free in 3 of 20 queues, and 1,000 callers waiting (two PBXs
share every queue). A *decision* is one ``claim`` (best caller of a queue on a PBX + its best
free agent); a *cycle* is that claim plus ``set_available`` of the agent back into all its
queues. After each measured step a new caller joins (unmeasured), so the sizes stay put.
Redis runs on loopback, in its own namespace, which is deleted afterwards.

    python -m bench.acd_state [--redis-url redis://127.0.0.1:6379/0] [--iterations 5000]

Without ``--redis-url`` the ``CALLCENTER_TEST_REDIS_URL`` environment variable is used; with
neither, only MemoryState is measured.

``--stall`` measures instead how long the reactor thread is kept from its loop while the
whole ACD (router, driver, GuardedState on RedisState) routes ``--rate`` decisions per second
(issue 13; goal: longest stall < 5 ms). It starts its own redis-server on a free port (the
``redis-server`` on the PATH, or ``CALLCENTER_TEST_REDIS_SERVER``) and stops it afterwards:

    python -m bench.acd_state --stall [--rate 200] [--seconds 10] [--no-inline]

A fake AMI client answers every action at once; each offer's agent answers after 20 ms (the
call model's ``originate_outcome``), each call lasts 1 s. A ``LoopingCall`` every millisecond
on the asyncio reactor (as in ``callcenter run``) records how late it runs: the stall. First
with nothing else running (the machine's own noise: other processes, the OS), then the
driver threaded, as the service runs it on Redis, then (unless ``--no-inline``) inline,
every store round trip on the reactor thread, for comparison.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from acd.redis_state import RedisState
from acd.state import AcdState, MemoryState, WaitingCaller

AGENTS = 10_000
QUEUES = 20
QUEUES_PER_AGENT = 3
CALLERS = 1_000
PBXS = ("pbx1", "pbx2")
WARMUP = 200
GOALS_P99_MS = {"MemoryState": 1.0, "RedisState": 2.0}


def pbx_of(step: int) -> str:
    # Round-robin over queues, and over PBXs once per round, so each queue holds both.
    return PBXS[(step // QUEUES) % len(PBXS)]


class Center:
    """The same agents and callers, drawn once from a fixed seed, for every store."""

    def __init__(self, seed: int = 1) -> None:
        rng = random.Random(seed)
        self.queues = [f"queue{i:02d}" for i in range(QUEUES)]
        self.agents = {
            f"agent{i:05d}": {q: float(rng.randrange(100)) for q in rng.sample(self.queues, 3)}
            for i in range(AGENTS)
        }
        self._rng = rng
        self._next_call = 0
        self._now = 0.0

    def caller(self, queue: str, pbx: str) -> WaitingCaller:
        self._next_call += 1
        self._now += 0.25
        score = self._rng.choice([0.0, 100.0, 1000.0]) - 0.1 * self._now  # tier minus aging
        return WaitingCaller(f"call{self._next_call}", queue, pbx, score, self._now)

    def fill(self, state: AcdState) -> None:
        for agent, scores in self.agents.items():
            state.set_available(agent, scores)
        for i in range(CALLERS):
            state.add_caller(self.caller(self.queues[i % QUEUES], pbx_of(i)))


def measure(state: AcdState, center: Center, iterations: int) -> dict[str, list[float]]:
    """Claim latencies and claim + set_available latencies, in seconds."""
    decisions: list[float] = []
    cycles: list[float] = []
    clock = time.perf_counter
    for i in range(WARMUP + iterations):
        queue, pbx = center.queues[i % QUEUES], pbx_of(i)
        start = clock()
        claim = state.claim(queue, pbx)
        decided = clock()
        if claim is None:
            raise RuntimeError(f"nothing to claim in {queue} on {pbx}: the setup is wrong")
        for agent in claim.agents:
            state.set_available(agent, center.agents[agent])
        done = clock()
        state.add_caller(center.caller(queue, pbx))
        if i >= WARMUP:
            decisions.append(decided - start)
            cycles.append(done - start)
    return {"claim": decisions, "claim + set_available": cycles}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def machine(redis_client: redis.Redis | None) -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    text = (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, redis-py {redis.__version__}"
    )
    if redis_client is not None:
        text += f", redis-server {redis_client.info('server')['redis_version']} (loopback)"
    return text


def run_store(name: str, make: Callable[[], AcdState], iterations: int) -> list[str]:
    center = Center()
    state = make()
    started = time.perf_counter()
    center.fill(state)
    setup = time.perf_counter() - started
    rows = []
    for what, values in measure(state, center, iterations).items():
        median, p99 = statistics.median(values) * 1e3, percentile(values, 0.99) * 1e3
        goal = GOALS_P99_MS[name]
        verdict = "" if what != "claim" else ("ok" if p99 < goal else "MISSED")
        rows.append(
            f"{name:<12} {what:<22} {len(values):>6} {median:>10.3f} {p99:>10.3f} "
            f"{f'< {goal:g}' if what == 'claim' else '':>8} {verdict:>6}"
        )
    print(f"{name}: filled in {setup:.1f} s")
    return rows


# --- the reactor's longest stall while routing (--stall) --------------------------------------

STALL_AGENTS = 300  # each in 2 of 4 queues; 1 s calls at 200/s keep ~205 of them busy
STALL_QUEUES = 4
STALL_BACKGROUND = 1_000  # callers of another PBX waiting ahead in those queues
STALL_RING = 0.02  # seconds until the agent answers an offer
STALL_HOLD = 1.0  # seconds a call lasts once bridged
STALL_WARMUP = 2.0
STALL_GOAL_MS = 5.0


@contextmanager
def redis_server() -> Iterator[str]:
    """A private redis-server on a free loopback port, no persistence; its URL."""
    binary = os.environ.get("CALLCENTER_TEST_REDIS_SERVER") or shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: install it or set CALLCENTER_TEST_REDIS_SERVER")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="acd-bench-redis-") as directory:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", directory, "--save", ""]
        args += ["--appendonly", "no", "--logfile", os.path.join(directory, "redis.log")]
        process = subprocess.Popen([binary, *args], stdin=subprocess.DEVNULL)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            client = redis.Redis.from_url(url)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise SystemExit(f"redis-server did not start on port {port}") from None
                    time.sleep(0.05)
            client.close()
            yield url
        finally:
            process.terminate()
            process.wait(10)


class Counted:
    """A store that counts its operations (one Redis round trip each)."""

    def __init__(self, store: Any) -> None:
        self.store, self.operations = store, 0

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.store, name)
        if not callable(value):
            return value

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.operations += 1
            return value(*args, **kwargs)

        return counted


class StallRun:
    """One run: the ACD on a fake AMI client, callers arriving at ``rate`` per second, and
    the reactor's lateness sampled every millisecond."""

    def __init__(self, reactor: Any, url: str, *, threaded: bool, rate: float) -> None:
        from acd.config import parse_acd_config
        from acd.driver import AcdDriver
        from acd.router import Router
        from acd.store_health import GuardedState
        from crm_bridge.tiers import StaticTiers

        self.reactor, self.rate, self.threaded = reactor, rate, threaded
        self.queues = [f"q{i}" for i in range(STALL_QUEUES)]
        agents = {
            str(7000 + i): {
                "name": f"Agent {i}",
                "queues": {self.queues[i % STALL_QUEUES]: 0, self.queues[(i + 1) % 4]: 1},
            }
            for i in range(STALL_AGENTS)
        }
        queues = {
            q: {"lanes": [f"lane-{q}"], "ring_timeout": 20, "wrap_up": 0, "auto_pause_after": 0}
            for q in self.queues
        }
        config = parse_acd_config(
            {"agent_interface": "Local/{agent}@agents", "queues": queues, "agents": agents},
            "bench",
        )
        self.namespace = f"acd-bench-{uuid.uuid4().hex}"
        self.store = RedisState.from_url(url, namespace=self.namespace)
        for n in range(STALL_BACKGROUND):  # older and VIP: always ahead of ours
            queue = self.queues[n % STALL_QUEUES]
            self.store.add_caller(WaitingCaller(f"bg{n}", queue, "other-pbx", 1e6, float(n)))
        self.counted = Counted(self.store)
        self.state = GuardedState(self.counted)
        self.state.open()
        self.router = Router(config, pbx="bench", state=self.state)
        self._interfaces = {a: config.interface_of(a) for a in config.agents}
        self._agent_at = {i: a for a, i in self._interfaces.items()}
        self.driver = AcdDriver(
            self.router,
            self,  # the AMI client: send_action below
            reactor,
            interfaces=self._interfaces,
            caller_channel=lambda call_id: f"PJSIP/trunk-{call_id}",
            publish=self._published,
            tiers=StaticTiers(),
            threaded=threaded,
        )
        self._ids = itertools.count(1)
        self._calls = itertools.count(1)
        self.actions: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.late: list[float] = []
        self.measuring = False
        self._started, self._made = 0.0, 0
        self._last: float | None = None

    # The fake AMI client.
    def send_action(self, name: str, fields: Any = (), **_: Any) -> Any:
        from twisted.internet.defer import succeed

        from cti.ami.codec import Message
        from cti.calls.events import OriginateOutcome

        n = next(self._ids)
        if self.measuring:
            self.actions[name] += 1
        values = dict(fields)
        if name == "Originate":
            # What the call model publishes for the leg's OriginateResponse: answered.
            leg = f"{values['Channel']}-{n:08x};1"
            answered = OriginateOutcome(0.0, values["ChannelId"], leg, True, "answered")
            self.reactor.callLater(STALL_RING, self.driver.on_call_event, answered)
        elif name == "Bridge":
            call_id = values["Channel1"].removeprefix("PJSIP/trunk-")
            self.reactor.callLater(STALL_HOLD, self._hang_up, call_id)
        return succeed(Message([("Response", "Success"), ("ActionID", f"a{n}")]))

    def _published(self, event: Any) -> None:
        if self.measuring:
            self.events[event.kind] += 1

    def _hang_up(self, call_id: str) -> None:
        from cti.calls.events import CallEnded

        now = self.reactor.seconds()
        self.driver.on_call_event(CallEnded(call_id, now, 16, "Normal Clearing", "caller", 1.0))

    def _arrive(self) -> None:
        from cti.calls.events import CallArrived, Caller, CallParked

        now = self.reactor.seconds()
        while self._made < (now - self._started) * self.rate:
            self._made += 1
            call_id = f"call{next(self._calls)}"
            queue = self.queues[self._made % STALL_QUEUES]
            channel = f"PJSIP/trunk-{call_id}"
            number = f"+1555{self._made:07d}"
            arrived = CallArrived(call_id, now, Caller(number, None), None, channel)
            self.driver.on_call_event(arrived)
            self.driver.on_call_event(CallParked(call_id, now, f"lane-{queue}", channel))

    def _sample(self) -> None:
        now = time.perf_counter()
        if self.measuring and self._last is not None:
            self.late.append(max(0.0, now - self._last - 0.001))
        self._last = now

    def _poll(self) -> None:
        # The service's shared poll (acd.service): probe Redis, then route freed agents.
        def poll() -> None:
            self.state.recover(self.driver.reseed)
            self.driver.poll()

        self.driver.call(poll)

    async def run(self, seconds: float) -> dict[str, Any]:
        from twisted.internet.defer import gatherResults
        from twisted.internet.task import LoopingCall, deferLater

        logins = [self.driver.login(agent) for agent in self._interfaces]
        await gatherResults([d for d in logins if d is not None])
        self._started, self._made, self._last = self.reactor.seconds(), 0, None
        loops = [(LoopingCall(self._arrive), 0.005), (LoopingCall(self._sample), 0.001)]
        loops.append((LoopingCall(self._poll), 1.0))
        for loop, interval in loops:
            loop.clock = self.reactor
            loop.start(interval, now=False)
        await deferLater(self.reactor, STALL_WARMUP, lambda: None)
        operations = self.counted.operations
        self.measuring, begun = True, time.perf_counter()
        await deferLater(self.reactor, seconds, lambda: None)
        self.measuring, took = False, time.perf_counter() - begun
        operations = self.counted.operations - operations
        for loop, _ in loops:
            loop.stop()
        await self.driver.call(lambda: None)
        self.driver.stop()
        self.state.close()
        return {
            "decisions": self.actions["Originate"] / took,
            "joined": self.events["caller_joined"] / took,
            "operations": operations / took,
            "late": self.late,
        }


async def idle_lateness(reactor: Any, seconds: float) -> list[float]:
    """The same LoopingCall with nothing else running: the machine's own noise."""
    from twisted.internet.task import LoopingCall, deferLater

    late: list[float] = []
    last: list[float] = []

    def sample() -> None:
        now = time.perf_counter()
        if last:
            late.append(max(0.0, now - last[0] - 0.001))
        last[:] = [now]

    loop = LoopingCall(sample)
    loop.clock = reactor
    loop.start(0.001, now=False)
    await deferLater(reactor, seconds, lambda: None)
    loop.stop()
    return late


def stall_main(args: argparse.Namespace) -> int:
    import asyncio

    from twisted.internet import asyncioreactor

    if "twisted.internet.reactor" not in sys.modules:
        asyncioreactor.install(asyncio.new_event_loop())
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    modes = [True] if args.no_inline else [True, False]
    results: dict[bool | None, dict[str, Any]] = {}
    with redis_server() as url:
        client = redis.Redis.from_url(url)
        print(f"machine: {machine(client)}")
        client.close()
        print(
            f"stall: {STALL_AGENTS} agents in 2 of {STALL_QUEUES} queues, {STALL_BACKGROUND} "
            f"callers of another PBX waiting ahead, {args.rate:g} callers/s, ring "
            f"{STALL_RING * 1e3:g} ms, calls {STALL_HOLD:g} s; {args.seconds:g} s measured after "
            f"{STALL_WARMUP:g} s warm-up; a LoopingCall every 1 ms on the asyncio reactor"
        )

        async def everything() -> None:
            results[None] = {"late": await idle_lateness(reactor, args.seconds)}
            for threaded in modes:
                run = StallRun(reactor, url, threaded=threaded, rate=args.rate)
                results[threaded] = await run.run(args.seconds)

        def done(result: Any) -> Any:
            reactor.stop()
            return result

        d = ensureDeferred(everything())
        d.addBoth(done)
        failures: list[Any] = []
        d.addErrback(failures.append)
        reactor.run(installSignalHandlers=False)  # type: ignore[call-arg]
        if failures:
            failures[0].raiseException()

    print(
        f"{'driver':<9} {'decisions/s':>11} {'joins/s':>8} {'store ops/s':>11} "
        f"{'stall p50 ms':>12} {'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>7} {'> 5 ms':>6} "
        f"{'goal max':>8}"
    )
    missed = False
    for threaded, r in results.items():
        late = r["late"]
        worst = max(late) * 1e3
        verdict = ""
        if threaded:
            missed = worst >= STALL_GOAL_MS
            verdict = f"< {STALL_GOAL_MS:g} " + ("MISSED" if missed else "ok")
        name = {None: "no ACD", True: "threaded", False: "inline"}[threaded]
        rates = (
            f"{'-':>11} {'-':>8} {'-':>11}"
            if threaded is None
            else f"{r['decisions']:>11.1f} {r['joined']:>8.1f} {r['operations']:>11,.0f}"
        )
        over = sum(1 for x in late if x * 1e3 >= STALL_GOAL_MS)
        print(
            f"{name:<9} {rates} {statistics.median(late) * 1e3:>12.2f} "
            f"{percentile(late, 0.99) * 1e3:>7.2f} {percentile(late, 0.999) * 1e3:>8.2f} "
            f"{worst:>7.2f} {over:>6} {verdict:>8}"
        )
    return 1 if missed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=os.environ.get("CALLCENTER_TEST_REDIS_URL"))
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument(
        "--stall", action="store_true", help="the reactor's longest stall while routing"
    )
    parser.add_argument("--rate", type=float, default=200.0, help="--stall: callers per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="--stall: measured time")
    parser.add_argument("--no-inline", action="store_true", help="--stall: threaded only")
    args = parser.parse_args(argv)
    if args.stall:
        return stall_main(args)

    client = redis.Redis.from_url(args.redis_url) if args.redis_url else None
    namespace = f"acd-bench-{uuid.uuid4().hex}"
    print(f"machine: {machine(client)}")
    print(
        f"center: {AGENTS} agents in {QUEUES_PER_AGENT} of {QUEUES} queues each, "
        f"{CALLERS} waiting callers on {len(PBXS)} PBXs; {args.iterations} steps after "
        f"{WARMUP} warm-up"
    )
    header = f"{'store':<12} {'operation':<22} {'n':>6} {'median ms':>10} {'p99 ms':>10}"
    rows = run_store("MemoryState", MemoryState, args.iterations)
    if client is not None:
        try:
            rows += run_store(
                "RedisState",
                lambda: RedisState.from_url(args.redis_url, namespace=namespace),
                args.iterations,
            )
        finally:
            keys = list(client.scan_iter(match="{" + namespace + "}:*", count=1000))
            for i in range(0, len(keys), 1000):
                client.delete(*keys[i : i + 1000])
    else:
        print("(no --redis-url and no CALLCENTER_TEST_REDIS_URL: RedisState not measured)")
    print(f"{header} {'goal p99':>8} {'':>6}")
    print("\n".join(rows))
    return 0 if all("MISSED" not in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
