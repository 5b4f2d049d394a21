"""The world around the screen-pop benchmark's backend (:mod:`bench.screen_pop`), in a
process of its own as Asterisk and the agents' browsers are other machines in production:
the PBX simulator, the callers it places, and one pop WebSocket client per agent.

    python -m bench.screen_pop_world SPEC.json

The parent (the backend under test) starts it and they talk one JSON object a line:

1. the world reads ``SPEC.json`` (the load, the callers, where to write its records),
   starts the simulator on a free loopback port and prints ``{"port": N}``;
2. it reads ``{"url": ..., "tokens": {agent: token}}`` on stdin (the parent's agent API,
   known once the backend has started), connects one client per agent and prints
   ``{"connected": n}``;
3. it places the callers at ``rate`` a second for ``seconds``, waits until every call's
   ring and customer frames arrived (at most :data:`DRAIN` s after the last caller),
   writes its records (:class:`WorldRecords` as JSON) and prints ``{"done": path}``;
4. it stops when stdin closes (the parent has stopped its backend by then, so the AMI link
   is not dropped under a running backend).

Frame times are ``time.time()``: the parent stamps its AMI reads with the same clock, on
the same host. The world's own event-loop lag is recorded too: a frame is stamped when this
loop gets to it, so a lagging world adds to the latency measured.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.world import run_world

#: The simulator's AMI account, which the parent's backend logs in with.
AMI_USERNAME = "pop-bench"
AMI_SECRET = "pop-bench-s3cret"
#: The ACD's holding DID the callers dial.
HOLDING_DID = "5003"
#: Seconds after the last caller for the last pops to arrive.
DRAIN = 5.0
#: Seconds without a frame after which the last pops are taken to have arrived.
QUIET = 1.0
#: How often the world's loop lag is probed, in seconds.
LAG_PERIOD = 0.01


@dataclass(frozen=True, slots=True)
class Caller:
    """A customer who calls from a number only they have."""

    number: str
    customer_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Load:
    """The traffic: ``rate`` callers a second for ``seconds``, ``agents`` agents; a caller
    hangs up ``talk`` seconds after being parked (an agent rings 1 s, then talks)."""

    rate: float = 50.0
    seconds: float = 60.0
    agents: int = 200
    talk: float = 2.5


@dataclass(slots=True)
class SeenPop:
    """What ``agent``'s client saw of call ``call_id``: when the ``ring`` frame came, when
    the first frame showing a customer came and which customer, the caller's number."""

    call_id: str
    agent: str
    number: str | None = None
    ring_at: float | None = None
    customer_at: float | None = None
    customer: str | None = None


@dataclass(slots=True)
class WorldRecords:
    """What the world saw: callers placed by number, each (call, agent)'s pop, frames
    received, wrong sockets (each a sentence), seconds from the first caller to the last
    pop (or the deadline), its loop's lag while placing (p99 and max, ms)."""

    placed: Counter[str] = field(default_factory=Counter)
    pops: list[SeenPop] = field(default_factory=list)
    frames: int = 0
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0
    lag_p99: float = 0.0
    lag_max: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "placed": dict(self.placed),
            "pops": [asdict(p) for p in self.pops],
            "frames": self.frames,
            "errors": self.errors,
            "wall": self.wall,
            "lag_p99": self.lag_p99,
            "lag_max": self.lag_max,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> WorldRecords:
        return WorldRecords(
            Counter(data["placed"]),
            [SeenPop(**p) for p in data["pops"]],
            data["frames"],
            data["errors"],
            data["wall"],
            data["lag_p99"],
            data["lag_max"],
        )


def write_spec(path: Path, callers: list[Caller], load: Load, records: Path) -> None:
    """The world's ``SPEC.json``: what to place and where to write the records."""
    spec = {"load": asdict(load), "callers": [asdict(c) for c in callers],
            "records": str(records)}  # fmt: skip
    path.write_text(json.dumps(spec), encoding="utf-8")


class PopClient:
    """One agent's pop feed (``websockets``, no compression, as the agents' browsers are
    served), noting when each call's frames arrive."""

    def __init__(self, url: str, token: str, agent: str, frames: Callable[..., None]) -> None:
        self.url, self.token, self.agent = url, token, agent
        self._frame = frames
        self.hello = asyncio.get_running_loop().create_future()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        import websockets

        try:
            async with websockets.connect(self.url, max_queue=None, compression=None) as socket:
                await socket.send(json.dumps({"token": self.token}))
                self.hello.set_result(json.loads(await socket.recv()))
                try:
                    async for raw in socket:
                        at = time.time()
                        message = json.loads(raw)
                        if message.get("type") == "pop":
                            self._frame(self.agent, at, message["pop"])
                except websockets.ConnectionClosed:
                    pass
        except Exception as error:
            if not self.hello.done():
                self.hello.set_exception(error)
            raise

    def stop(self) -> None:
        self.task.cancel()


def say(**message: Any) -> None:
    """One line to the parent."""
    print(json.dumps(message), flush=True)


async def probe_lag(lags: list[float]) -> None:
    """Append how late each :data:`LAG_PERIOD` sleep woke up (s), until cancelled."""
    while True:
        due = time.perf_counter() + LAG_PERIOD
        await asyncio.sleep(LAG_PERIOD)
        lags.append(time.perf_counter() - due)


async def live(reactor: Any, spec: dict[str, Any]) -> None:
    """Steps 1-4 of the module's protocol."""
    import pbx_simulator
    from cti.ami.codec import Message
    from pbx_simulator.traffic import caller_originate

    load = Load(**spec["load"])
    callers = [Caller(**c) for c in spec["callers"]]
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    simulator: Any = pbx_simulator.serve(
        reactor, pbx_simulator.Settings(port=0, username=AMI_USERNAME, secret=AMI_SECRET)
    )
    say(port=simulator.getHost().port)

    records = WorldRecords()
    seen: dict[tuple[str, str], SeenPop] = {}
    complete: set[str] = set()  # calls whose ring and customer frames both arrived

    def frame(agent: str, at: float, pop: dict[str, Any]) -> None:
        records.frames += 1
        key = (pop["call_id"], agent)
        if key not in seen:
            seen[key] = SeenPop(pop["call_id"], agent)
        got = seen[key]
        if pop["agent"] != agent:
            records.errors.append(f"agent {agent}'s socket got agent {pop['agent']}'s pop")
        got.number = got.number or pop["caller"]["number"]
        if pop["kind"] == "ring" and got.ring_at is None:
            got.ring_at = at
        customer = pop.get("customer")
        if customer is not None and got.customer_at is None:
            got.customer_at, got.customer = at, str(customer["id"])
        if got.ring_at is not None and got.customer_at is not None:
            complete.add(got.call_id)

    line = await stdin.readline()
    if not line:
        raise SystemExit("screen_pop_world: stdin closed before the API's url and tokens")
    api = json.loads(line)
    clients = [PopClient(api["url"], token, agent, frame) for agent, token in api["tokens"].items()]
    lags: list[float] = []
    prober = asyncio.ensure_future(probe_lag(lags))
    try:
        await asyncio.wait_for(asyncio.gather(*(c.hello for c in clients)), 30)
        say(connected=len(clients))
        # The instrument must not stall: its own full collections (the simulator's heap
        # grows with every call) stopped this loop 150-310 ms at a time, stamps late by as
        # much. A run is a minute long; the memory is given back when the process ends.
        gc.collect()
        gc.freeze()
        gc.disable()

        core = simulator.factory.core
        total = min(len(callers), round(load.rate * load.seconds))

        def place(caller: Caller) -> None:
            fields = caller_originate(
                HOLDING_DID, f"{caller.name} <{caller.number}>", "hangup-after",
                [("Variable", f"LAB_WAIT={load.talk}")],
            )  # fmt: skip
            records.placed[caller.number] += 1
            simulator.factory.inside(
                lambda: core.originate(Message([("Action", "Originate"), *fields]))
            )

        started = time.perf_counter()
        del lags[:]
        for i, caller in enumerate(callers[:total]):
            reactor.callLater(i / load.rate, place, caller)
        deadline = started + load.seconds + DRAIN
        while time.perf_counter() < deadline and (
            sum(records.placed.values()) < total or len(complete) < total
        ):
            await asyncio.sleep(0.1)
        # A call offered again (its first agent did not answer in time) is complete at its
        # first agent already: wait until the frames stop, or its second ring is missed.
        frames = -1
        while time.perf_counter() < deadline and frames != records.frames:
            frames = records.frames
            await asyncio.sleep(QUIET)
        records.wall = time.perf_counter() - started
        if lags:
            ms = sorted(1000 * lag for lag in lags)
            records.lag_p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
            records.lag_max = ms[-1]
        records.pops = list(seen.values())
        Path(spec["records"]).write_text(json.dumps(records.to_json()), encoding="utf-8")
        say(done=spec["records"])

        while await stdin.readline():  # until the parent has stopped its backend
            pass
    finally:
        prober.cancel()
        for client in clients:
            client.stop()
        await asyncio.gather(*(c.task for c in clients), return_exceptions=True)
        stopped = simulator.stopListening()
        if stopped is not None:
            await stopped.asFuture(loop)


def main(argv: list[str] | None = None) -> int:
    return run_world(live, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
