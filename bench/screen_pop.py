"""Screen-pop benchmark: from the AMI event that rings an agent to the pop on the agent's
WebSocket, at 50 offers a second, with 100,000 customers and 1,000,000 orders in PostgreSQL
(issue 14; goals: pop p99 < 50 ms, caller look-up p99 < 5 ms).

    python -m bench.screen_pop --database-url postgresql+psycopg://user:pass@host/db \\
        [--customers 100000 --orders 1000000] [--rate 50] [--seconds 60] [--reuse]

Without ``--database-url`` the ``CALLCENTER_BENCH_POSTGRES_URL`` environment variable is
used. Without ``--reuse`` the database's ``public`` schema is DROPPED and re-created, then
migrated, filled by :func:`crm_bridge.generator.generate` and profiled
(:func:`crm_bridge.recompute.recompute_all`); with ``--reuse`` that is skipped when the
customers are there and profiled already (the tier recompute has its own benchmark,
``bench.tier_recompute``).

Two processes, so that the system under test runs alone as in production (where Asterisk
and the agents' browsers are other machines):

* this one, the backend under test, on Twisted's asyncio reactor as ``callcenter run`` does:
  an unmodified :class:`~callcenter.app.CallCenter` logged in over TCP AMI to the child's
  simulator (call model, ACD in memory, screen-pop bridge, history writers, the agent API
  on a free port), instrumented to note when the AMI read that led to each offer came and
  which agents each call was offered to;
* a child, ``python -m bench.screen_pop_world`` (:mod:`bench.screen_pop_world`, same
  interpreter), the world around it: the PBX simulator on a free loopback port, the callers
  it places, one ``websockets`` client per agent logged in to ``WS /api/v1/pops`` (no
  compression); it notes when each call's frames arrive and hands its records back as
  JSON when done.

Callers are customers drawn at random (numbers only one customer has, so the pop has one
customer to show), placed by the simulator on the ACD's holding DID at ``--rate`` a second
for ``--seconds``; ``--agents`` agents answer after the simulator's 1 s ring and the caller
hangs up ``--talk`` seconds after being parked. Both processes stamp with ``time.time()``:
the same host, so one clock. The child's own event-loop lag while placing is printed too:
a frame is stamped when that loop gets to it, so a lagging world inflates the figures.

What is timed, per offer (``time.time()``, in the process named):

* **start** (backend): the AMI read that carried the event whose handling made the ACD
  offer the call (``AmiProtocol.dataReceived`` entered; the event is found by noting, while
  ``CallCenter.on_message`` runs, which read it came from, and reading that note when the
  ACD publishes ``caller_offered`` — routing runs inline there, in memory). For a caller
  parked while an agent is free that is the ``UserEvent CtiParked``; when every agent is
  busy it is the event that freed one. Timing from the read rather than from
  ``on_message`` counts the parse and the frames ahead in the same read; both are printed.
* **ring** (world): the agent's client received the ``ring`` frame of that call;
* **customer** (world): the agent's client received the first frame of that call whose
  pop shows the customer (``pop["customer"]`` set: the ring itself when the look-up,
  started when the call arrived, was done by then, else the ``update`` after it).

Errors: an offered call whose ring did not reach the agent offered, a pop that never showed
the customer, a wrong customer, a pop frame at an agent the call was never offered to.

Then the caller look-up alone: :meth:`CrmBridgeService._find` (the pop's look-up: customers
on the number, the remembered choice when several, each one's last contacts) on
``--lookups`` numbers — known, shared by several customers, and unknown — timed one by one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, create_engine, func, select, text

import migrations
from bench.acd_hour import queues_yaml
from bench.screen_pop_world import (
    AMI_SECRET,
    AMI_USERNAME,
    DRAIN,
    Caller,
    Load,
    WorldRecords,
    write_spec,
)
from crm_bridge import store
from crm_bridge.config import CrmServiceSettings, ProfileRules
from crm_bridge.generator import generate
from crm_bridge.recompute import recompute_all
from crm_bridge.schema import customer_numbers, customers, tier_runs

#: The generated data's "now" (as ``bench.tier_recompute``): histories end here.
NOW = 1_780_000_000.0
SEED = 1
REGION = "DE"
#: The agents' accounts' password (agents are 6001, 6002, ...: bench.acd_hour.queues_yaml).
PASSWORD = "bench-pop-secret"


# -- the data ------------------------------------------------------------------------------


def prepare(
    url: str,
    customers_wanted: int,
    orders_wanted: int,
    *,
    reuse: bool,
    fresh: bool = True,
    say: Callable[[str], None] = print,
) -> Engine:
    """The database at ``url`` migrated, with the generated customers and a tier run.
    ``reuse``: keep what is there when it has at least ``customers_wanted`` customers and a
    tier run. Otherwise (on PostgreSQL with ``fresh``) the ``public`` schema is dropped
    first."""
    engine = create_engine(url)
    if reuse:
        migrations.upgrade(url)
        with engine.connect() as conn:
            have = store.count_customers(conn)
            runs = conn.execute(select(func.count()).select_from(tier_runs)).scalar_one()
        if have >= customers_wanted and runs:
            say(f"data: reusing {have:,} customers and the latest of {runs} tier runs")
            return engine
        say(f"data: {have:,} customers and {runs} tier runs there: generating afresh")
    if fresh and engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    migrations.upgrade(url)
    made = generate(engine, customers_wanted, orders_wanted, seed=SEED, now=NOW, region=REGION)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    say(f"data: {made}")
    summary = recompute_all(engine, NOW, ProfileRules())
    say(f"data: tier recompute of {summary.customers:,} customers in {summary.seconds:.1f} s")
    return engine


def numbers_by_owner(engine: Engine) -> dict[str, list[str]]:
    """Every number -> the ids of the customers who have it."""
    owners: dict[str, list[str]] = defaultdict(list)
    query = select(customer_numbers.c.number, customer_numbers.c.customer_id)
    with engine.connect() as conn:
        for number, customer_id in conn.execute(query):
            owners[number].append(customer_id)
    return owners


def draw_callers(
    engine: Engine, owners: dict[str, list[str]], count: int, rng: random.Random
) -> list[Caller]:
    """``count`` callers (with repetition when there are fewer customers), each a random
    customer's number that nobody else has."""
    single = sorted(n for n, ids in owners.items() if len(ids) == 1)
    picked = [single[rng.randrange(len(single))] for _ in range(count)]
    ids = sorted({owners[n][0] for n in picked})
    names: dict[str, str] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), store.CHUNK):
            chunk = ids[start : start + store.CHUNK]
            query = select(customers.c.id, customers.c.name).where(customers.c.id.in_(chunk))
            names.update((cid, name) for cid, name in conn.execute(query))
    return [Caller(n, owners[n][0], names[owners[n][0]]) for n in picked]


# -- figures -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))]


@dataclass(frozen=True, slots=True)
class Spread:
    """Count, median, p95, p99, max of some latencies, in milliseconds."""

    count: int
    median: float
    p95: float
    p99: float
    max: float

    @staticmethod
    def of(seconds: Sequence[float]) -> Spread:
        if not seconds:
            return Spread(0, float("nan"), float("nan"), float("nan"), float("nan"))
        ms = [1000 * s for s in seconds]
        return Spread(
            len(ms), statistics.median(ms), percentile(ms, 0.95), percentile(ms, 0.99), max(ms)
        )

    def row(self, what: str) -> str:
        return (
            f"{what:<34}{self.count:>7,}{self.median:>10.2f}{self.p95:>10.2f}"
            f"{self.p99:>10.2f}{self.max:>10.2f}"
        )


HEADER = f"{'':<34}{'n':>7}{'median':>10}{'p95':>10}{'p99':>10}{'max':>10}  (ms)"
#: Seconds per slice of the run in the p99-over-time line.
SLICE = 10.0


# -- the live run --------------------------------------------------------------------------


@dataclass(slots=True)
class Offer:
    """The ACD offered ``call_id`` to ``agent``: ``read_at`` the AMI read whose event made
    it, ``handled_at`` when ``on_message`` took that event (None: not during an AMI event);
    then what that agent's client saw (from the world's records). Times are ``time.time()``
    of this host, in both processes."""

    call_id: str
    agent: str
    read_at: float | None
    handled_at: float | None
    offered_at: float
    ring_at: float | None = None
    customer_at: float | None = None
    customer: str | None = None
    number: str | None = None


@dataclass(slots=True)
class LiveResult:
    """What the live run saw: the offers (one per call and agent rung), the callers placed
    by number, and what went wrong (each a sentence); ``world_lag_p99``/``_max``: the world
    process's event-loop lag while placing (ms), which delays its frame stamps."""

    load: Load
    placed: Counter[str]
    offers: list[Offer]
    errors: list[str]
    wall: float
    frames: int = 0
    connected: int = 0
    not_from_ami: int = 0
    world_lag_p99: float = 0.0
    world_lag_max: float = 0.0

    def spreads(self) -> dict[str, Spread]:
        from_ami = [o for o in self.offers if o.read_at is not None and o.handled_at is not None]
        ring = [o for o in from_ami if o.ring_at is not None]
        shown = [o for o in from_ami if o.customer_at is not None]
        return {
            "ring frame (from AMI read)": Spread.of([o.ring_at - o.read_at for o in ring]),  # type: ignore[operator]
            "customer shown (from AMI read)": Spread.of(
                [o.customer_at - o.read_at for o in shown]  # type: ignore[operator]
            ),
            "ring frame (from on_message)": Spread.of(
                [o.ring_at - o.handled_at for o in ring]  # type: ignore[operator]
            ),
            "customer shown (from on_message)": Spread.of(
                [o.customer_at - o.handled_at for o in shown]  # type: ignore[operator]
            ),
        }

    def p99_by_slice(self, seconds: float = SLICE) -> list[float]:
        """The ring frame's p99 (ms, from the AMI read) in each ``seconds`` of the run, by
        when the read came: rising slices are a backlog, one bad slice a stall."""
        timed = [o for o in self.offers if o.read_at is not None and o.ring_at is not None]
        if not timed:
            return []
        first = min(o.read_at for o in timed)  # type: ignore[type-var]
        slices: defaultdict[int, list[float]] = defaultdict(list)
        for o in timed:
            slices[int((o.read_at - first) // seconds)].append(o.ring_at - o.read_at)  # type: ignore[operator]
        return [1000 * percentile(slices[i], 0.99) for i in range(max(slices) + 1)]

    def merge(self, world: WorldRecords, owners: dict[str, list[str]], total: int) -> None:
        """Join the world's pops to the offers made here and check them: every caller placed
        offered, every offer's ring at its agent, showing the caller's only customer; no
        pop at an agent the call was never offered to."""
        self.placed, self.frames, self.wall = world.placed, world.frames, world.wall
        self.world_lag_p99, self.world_lag_max = world.lag_p99, world.lag_max
        self.errors.extend(world.errors)
        by_key = {(o.call_id, o.agent): o for o in self.offers}
        for pop in world.pops:
            offer = by_key.get((pop.call_id, pop.agent))
            if offer is None:
                self.errors.append(f"agent {pop.agent} got a pop of call {pop.call_id}, "
                                   "never offered to them")  # fmt: skip
                continue
            offer.number, offer.ring_at = pop.number, pop.ring_at
            offer.customer_at, offer.customer = pop.customer_at, pop.customer
        offered_calls = {o.call_id for o in self.offers}
        if len(offered_calls) < total:
            self.errors.append(f"{total - len(offered_calls)} of {total} callers placed were "
                               "never offered to an agent")  # fmt: skip
        for o in self.offers:
            if o.ring_at is None:
                self.errors.append(f"call {o.call_id}: no ring pop reached agent {o.agent}")
            if o.number is not None and o.number not in self.placed:
                self.errors.append(f"call {o.call_id}: the pop shows number {o.number}, "
                                   "which no caller placed had")  # fmt: skip
            expected = owners.get(o.number or "", [])
            if o.customer_at is None:
                self.errors.append(f"call {o.call_id}: the pop at agent {o.agent} never "
                                   f"showed customer {expected}")  # fmt: skip
            elif [o.customer] != expected:
                self.errors.append(f"call {o.call_id}: the pop showed customer {o.customer}, "
                                   f"not {expected}")  # fmt: skip


class World:
    """The child process ``python -m bench.screen_pop_world`` (same interpreter, this
    checkout), spoken to one JSON line at a time (its module docstring has the steps)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @staticmethod
    async def start(spec: Path) -> World:
        root = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.screen_pop_world", str(spec),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            cwd=root, env=env, limit=2**24,
        )  # fmt: skip
        return World(process)

    async def hear(self, what: str, timeout: float) -> Any:
        """The value of ``what`` in the world's next line."""
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            code = await self.process.wait()
            raise RuntimeError(f"the world process ended (exit {code}) before saying {what!r}")
        return json.loads(line)[what]

    def tell(self, **message: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")

    async def stop(self) -> None:
        """Close its stdin (it stops) and wait for it; killed after 30 s."""
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def run_live(
    reactor: Any,
    database_url: str,
    callers: Sequence[Caller],
    owners: dict[str, list[str]],
    load: Load,
    workdir: Path,
    say: Callable[[str], None] = print,
) -> LiveResult:
    """The backend here, the world (simulator, callers, one pop client per agent) in a child
    process; ``callers`` placed in turn at ``load.rate`` a second for ``load.seconds``
    (``owners``: number -> customer ids, the right answer)."""
    from callcenter.app import CallCenter, freeze_start_up
    from callcenter.settings import Settings
    from cti.ami.client import AmiProtocol
    from cti.ami.codec import Message
    from web.accounts import Account

    if load.agents > 999:
        raise ValueError("--agents: the simulator's agents are extensions 6001-6999")
    total = min(len(callers), round(load.rate * load.seconds))
    spec, records = workdir / "world.json", workdir / "world-records.json"
    write_spec(spec, list(callers[:total]), load, records)
    world = await World.start(spec)
    app: CallCenter | None = None
    data_received = AmiProtocol.dataReceived
    result = LiveResult(load, Counter(), [], [], 0.0)
    offers: dict[tuple[str, str], Offer] = {}
    try:
        port = await world.hear("port", 60)
        queues = workdir / "queues.yaml"
        queues.write_text(yaml.safe_dump(queues_yaml(load.agents)))
        settings = Settings.model_validate({
            "ami": {"port": port, "username": AMI_USERNAME, "secret": AMI_SECRET},
            "acd": {"queues": str(queues), "login_agents": True},
            "database": {"url": database_url, "migrate_on_start": False},
            "history": {"spool_dir": str(workdir / "spool")},
            "crm": {"default_region": REGION},
            "http": {"port": 0},
            "pbx": "pop-bench",
            "log_level": "WARNING",
        })  # fmt: skip
        app = CallCenter(settings, reactor)
        assert app.acd is not None and app.api is not None

        # -- where each event came from: the AMI read, then on_message ----------------------
        read_at: float | None = None
        stamped: dict[int, float] = {}
        now_handling: tuple[float, float] | None = None

        def timed_read(protocol: Any, data: bytes) -> None:
            nonlocal read_at
            read_at = time.time()
            try:
                data_received(protocol, data)
            finally:
                read_at = None

        publish = app.ami.stream.publish

        def stamp(item: Any) -> None:
            stamped[id(item)] = read_at if read_at is not None else time.time()
            publish(item)

        on_message, on_resync = app.on_message, app.on_resync

        def timed_message(message: Message) -> None:
            nonlocal now_handling
            handled = time.time()
            now_handling = (stamped.pop(id(message), handled), handled)
            try:
                on_message(message)
            finally:
                now_handling = None

        def resync(results: Any, now: float) -> None:
            stamped.clear()  # the snapshot's id must not be mistaken for a later message's
            on_resync(results, now)

        def offered(event: Any) -> None:
            if event.kind != "caller_offered":
                return
            at = time.time()
            read, handled = now_handling or (None, None)
            result.not_from_ami += now_handling is None
            for agent in event.agents:
                if (event.call_id, agent) not in offers:
                    offers[(event.call_id, agent)] = Offer(event.call_id, agent, read, handled, at)

        AmiProtocol.dataReceived = timed_read  # type: ignore[method-assign,assignment]
        app.ami.stream.publish = stamp  # type: ignore[method-assign]
        app.on_message = timed_message  # type: ignore[method-assign]
        app.on_resync = resync  # type: ignore[method-assign]
        app.acd.events.subscribe(offered, name="bench")

        # -- accounts, start, the world's pop clients ---------------------------------------
        tokens = {}
        have = {a.username for a in app.accounts.list()}  # from an earlier run: kept
        for agent in app.acd.config.agents:
            username = f"pop{agent}"
            if username not in have:
                app.accounts.add(username, PASSWORD, "agent", agent=agent)
            tokens[agent] = app.accounts.issue_token(Account(username, "agent", agent)).token
        app.start()
        freeze_start_up()  # as callcenter run does
        await app.ami.when_ready().asFuture(asyncio.get_running_loop())
        while not len(app.crm.tiers):  # the tier index, loaded at start in the background
            await asyncio.sleep(0.1)
        world.tell(url=f"ws://127.0.0.1:{app.api.port}/api/v1/pops", tokens=tokens)
        await world.hear("connected", 60)
        result.connected = sum(app.crm.sessions.connected(a) for a in app.acd.config.agents)
        say(f"live: {len(tokens)} agents connected, tier index {len(app.crm.tiers):,} numbers; "
            f"placing {load.rate:g} callers/s for {load.seconds:g} s (world pid "
            f"{world.process.pid}, backend pid {os.getpid()})")  # fmt: skip
        await world.hear("done", load.seconds + DRAIN + 60)
    finally:
        AmiProtocol.dataReceived = data_received  # type: ignore[method-assign]
        if app is not None:
            await app.stop().asFuture(asyncio.get_running_loop())
        await world.stop()

    result.offers = list(offers.values())
    world_records = WorldRecords.from_json(json.loads(records.read_text(encoding="utf-8")))
    result.merge(world_records, owners, total)
    return result


# -- the caller look-up alone --------------------------------------------------------------


def time_lookups(
    reactor: Any, engine: Engine, owners: dict[str, list[str]], count: int, rng: random.Random
) -> tuple[dict[str, Spread], list[str]]:
    """The pop's look-up (:meth:`CrmBridgeService._find`, on this thread) of ``count``
    numbers: 80% known (one customer), 10% shared (several: the remembered choice is read
    too), 10% unknown. Returns the spreads per kind and the wrong answers."""
    from crm_bridge.service import CrmBridgeService

    service = CrmBridgeService(
        CrmServiceSettings(pbx="pop-bench", default_region=REGION),
        reactor=reactor,
        engine=engine,
        agent_of=lambda interface: None,
    )
    single = sorted(n for n, ids in owners.items() if len(ids) == 1)
    shared = sorted(n for n, ids in owners.items() if len(ids) > 1)
    numbers: list[tuple[str, str]] = []
    for _ in range(count):
        draw = rng.random()
        if draw < 0.1 and shared:
            numbers.append(("shared", shared[rng.randrange(len(shared))]))
        elif draw < 0.2:
            unknown = f"+4930{rng.randrange(10**8):08d}"
            while unknown in owners:
                unknown = f"+4930{rng.randrange(10**8):08d}"
            numbers.append(("unknown", unknown))
        else:
            numbers.append(("known", single[rng.randrange(len(single))]))
    for _, number in numbers[:200]:  # warm up the connection pool and the server's caches
        service._find(number, None)
    timed: dict[str, list[float]] = defaultdict(list)
    wrong: list[str] = []
    for i, (kind, number) in enumerate(numbers):
        started = time.perf_counter()
        found = service._find(number, f"lookup-{i}")
        timed[kind].append(time.perf_counter() - started)
        ids = sorted(card["id"] for card in found.cards)
        if ids != sorted(owners.get(number, [])):
            wrong.append(f"look-up of {number} found {ids}, not {sorted(owners.get(number, []))}")
    spreads = {kind: Spread.of(timed[kind]) for kind in ("known", "shared", "unknown")}
    spreads["all"] = Spread.of([s for kind in timed for s in timed[kind]])
    return spreads, wrong


# -- the command ---------------------------------------------------------------------------


def machine() -> str:
    """``nproc`` and ``lscpu``'s model name, the system and Python."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            (line.split(":", 1)[1].strip() for line in lscpu.splitlines()
             if line.startswith("Model name")),
            platform.processor() or platform.machine(),
        )  # fmt: skip
    except OSError:
        model = platform.processor() or platform.machine()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"machine: nproc {cpus}, {model}, {platform.system()} {platform.release()}, "
            f"{platform.python_implementation()} {platform.python_version()}")  # fmt: skip


def report(live: LiveResult, lookups: dict[str, Spread], wrong_lookups: list[str]) -> str:
    load = live.load
    placed = sum(live.placed.values())
    calls = len({o.call_id for o in live.offers})
    spreads = live.spreads()
    shown = spreads["customer shown (from AMI read)"]
    rung = spreads["ring frame (from AMI read)"]
    lines = [
        f"live: {placed:,} callers placed at {load.rate:g}/s over {load.seconds:g} s "
        f"({load.agents} agents, {live.connected} pop sockets, talk {load.talk:g} s); "
        f"{calls:,} calls offered, {len(live.offers):,} offers, {live.frames:,} pop frames "
        f"received in {live.wall:.1f} s; {live.not_from_ami} offers made outside an AMI "
        "event (not timed); the world process's loop lag while placing (stamps late by "
        f"up to that): p99 {live.world_lag_p99:.1f} ms, max {live.world_lag_max:.1f} ms",
        "",
        HEADER,
        *(spread.row(what) for what, spread in spreads.items()),
        "",
        f"ring frame p99 per {SLICE:g} s of the run (ms): "
        + ", ".join(f"{p:.0f}" for p in live.p99_by_slice()),
        "",
        f"errors: {len(live.errors)}",
        *(f"  {e}" for e in live.errors[:10]),
        f"goal: ring frame p99 < 50 ms: {'met' if rung.p99 < 50 else 'MISSED'}; "
        f"customer shown p99 < 50 ms: {'met' if shown.p99 < 50 else 'MISSED'}",
        "",
        "caller look-up (CrmBridgeService._find, one thread, one at a time)",
        HEADER,
        *(spread.row(kind) for kind, spread in lookups.items()),
        f"wrong answers: {len(wrong_lookups)}",
        *(f"  {w}" for w in wrong_lookups[:10]),
        f"goal: look-up p99 < 5 ms: {'met' if lookups['all'].p99 < 5 else 'MISSED'}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("CALLCENTER_BENCH_POSTGRES_URL"))
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the customers already there (no generation, no recompute)",
    )
    parser.add_argument("--rate", type=float, default=50.0, help="offers (callers) a second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument(
        "--talk", type=float, default=2.5, help="seconds a caller stays after being parked"
    )
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1, help="which callers are drawn")
    args = parser.parse_args(argv)  # fmt: skip
    if not args.database_url:
        parser.error("give --database-url or set CALLCENTER_BENCH_POSTGRES_URL (without "
                     "--reuse its public schema is dropped)")  # fmt: skip
    if args.rate <= 0 or args.seconds <= 0 or args.agents < 1:
        parser.error("--rate, --seconds and --agents must be positive")

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)
    from twisted.internet import reactor

    reactor.startRunning(installSignalHandlers=False)  # type: ignore[attr-defined]
    print(machine(), flush=True)
    engine = prepare(args.database_url, args.customers, args.orders, reuse=args.reuse)
    owners = numbers_by_owner(engine)
    rng = random.Random(args.seed)
    callers = draw_callers(engine, owners, round(args.rate * args.seconds), rng)
    load = Load(args.rate, args.seconds, args.agents, args.talk)
    with tempfile.TemporaryDirectory(prefix="screen-pop-") as workdir:
        live = loop.run_until_complete(
            run_live(reactor, args.database_url, callers, owners, load, Path(workdir))
        )
    lookups, wrong = time_lookups(reactor, engine, owners, args.lookups, rng)
    engine.dispose()
    reactor.fireSystemEvent("shutdown")
    print(report(live, lookups, wrong))
    return 0 if not live.errors and not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
