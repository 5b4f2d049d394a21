"""ACD state benchmark: routing-decision latency of MemoryState and RedisState.

A center of 10,000 agents, each free in 3 of 20 queues, and 1,000 callers waiting (two PBXs
share every queue). A *decision* is one ``claim`` (best caller of a queue on a PBX + its best
free agent); a *cycle* is that claim plus ``set_available`` of the agent back into all its
queues. After each measured step a new caller joins (unmeasured), so the sizes stay put.
Redis runs on loopback, in its own namespace, which is deleted afterwards.

    python -m bench.acd_state [--redis-url redis://127.0.0.1:6379/0] [--iterations 5000]

Without ``--redis-url`` the ``CALLCENTER_TEST_REDIS_URL`` environment variable is used; with
neither, only MemoryState is measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=os.environ.get("CALLCENTER_TEST_REDIS_URL"))
    parser.add_argument("--iterations", type=int, default=5000)
    args = parser.parse_args(argv)

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
