"""The world around the IVR benchmark's backend (:mod:`bench.ivr`), in a process of its
own as Asterisk is another machine in production: the PBX simulator and the callers it
places.

    python -m bench.ivr_world SPEC.json

The parent (the backend under test) starts it and they talk one JSON object a line:

1. the world reads ``SPEC.json`` (the load, the transport, the backend's FastAGI port,
   where to write its records), starts the simulator on a free loopback port (its FastAGI
   DID dials ``agi://127.0.0.1:<that port>/lab-route``) and prints ``{"port": N}``;
2. it reads ``{"place": true}`` (the backend is logged in), turns its own collector off,
   places the callers evenly over ``ramp`` seconds and prints ``{"placed": n}`` once the
   last one is placed;
3. it reads ``{"end": true}`` (the backend saw every session end, or gave up): notes its
   CPU and wall time since the first caller, hangs every channel up (the parked callers),
   writes its records (:class:`WorldRecords` as JSON) and prints ``{"done": path}``;
4. it stops when stdin closes (the parent has stopped its backend by then, so the AMI link
   is not dropped under a running backend).

The simulator drops an AMI client only when the kernel refuses 4 MB more (it writes as
Asterisk does); each drop is recorded (:class:`LinkDrop`) with where the bytes were, so a
drop says which side held the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import json
import random
import struct
import sys
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.world import run_world

#: A Luhn-valid account number (the account sub-flow checks it).
ACCOUNT = "79927398713"
#: The simulator's AMI account, which the parent's backend logs in with.
AMI_USERNAME, AMI_SECRET = "bench", "bench-ivr-secret"
#: The simulator's DIDs: 5002 runs ``AGI(agi:async)``, 5004 the FastAGI script.
DIDS = {"asyncagi": "5002", "fastagi": "5004"}
FASTAGI_SCRIPT = "lab-route"
TRANSPORTS = ("asyncagi", "fastagi")
#: How often the world's loop lag is probed, in seconds.
LAG_PERIOD = 0.01
#: Channels hung up per loop turn at the end (all at once, their events are one burst).
HANGUP_BATCH = 50


@dataclass(frozen=True, slots=True)
class Load:
    """``sessions`` callers placed evenly over ``ramp`` seconds, prompts of
    ``prompt_seconds``, key delays drawn with ``seed``; sessions not over ``deadline``
    seconds after the last caller was placed are errors."""

    sessions: int = 1000
    ramp: float = 5.0
    prompt_seconds: float = 1.0
    seed: int = 1
    deadline: float = 120.0


@dataclass(slots=True)
class WorldRecords:
    """What the world saw: callers placed, channels hung up at the end, its process's CPU
    seconds over ``wall`` seconds (first caller to the end), its loop's lag (p99 and max,
    ms) over the same span, and each time the simulator dropped the backend's AMI link
    (:class:`LinkDrop`)."""

    placed: int = 0
    hung_up: int = 0
    cpu: float = 0.0
    wall: float = 0.0
    lag_p99: float = 0.0
    lag_max: float = 0.0
    drops: list[LinkDrop] = field(default_factory=list)
    lags: list[float] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"placed": self.placed, "hung_up": self.hung_up, "cpu": self.cpu,
                "wall": self.wall, "lag_p99": self.lag_p99, "lag_max": self.lag_max,
                "drops": [asdict(d) for d in self.drops]}  # fmt: skip

    @staticmethod
    def from_json(data: dict[str, Any]) -> WorldRecords:
        return WorldRecords(data["placed"], data["hung_up"], data["cpu"], data["wall"],
                            data["lag_p99"], data["lag_max"],
                            [LinkDrop(**d) for d in data["drops"]])  # fmt: skip


@dataclass(frozen=True, slots=True)
class LinkDrop:
    """The simulator dropped the AMI link (``writetimeout``) ``at`` seconds into the run:
    ``held`` bytes written that the kernel had not taken, ``unsent`` the bytes in the
    kernel's send queue (not yet in the backend's socket's receive buffer: it is full when
    the backend does not read)."""

    at: float
    held: int
    unsent: int


def write_spec(path: Path, load: Load, transport: str, agi_port: int, records: Path) -> None:
    """The world's ``SPEC.json``: what to place, over which transport, the backend's
    FastAGI port, where to write the records."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
    spec = {"load": asdict(load), "transport": transport, "agi_port": agi_port,
            "records": str(records)}  # fmt: skip
    path.write_text(json.dumps(spec), encoding="utf-8")


def callers(load: Load, did: str) -> list[list[tuple[str, str]]]:
    """Each caller's Originate fields (the simulator's caller script ``dtmf``): 2 pressed
    0.5 s to 2 s past the menu's prompts, then the account and ``#`` 0.5-2 s later."""
    from pbx_simulator.traffic import caller_originate

    rng = random.Random(load.seed)
    # The welcome's 2 prompts and the menu's 5, then 2 s of the menu's wait for a key.
    last_key = 7 * load.prompt_seconds + 2.0
    placed = []
    for n in range(load.sessions):
        variables = [
            ("Variable", f"LAB_DELAY1={rng.uniform(0.5, last_key):.2f}"),
            ("Variable", "LAB_DTMF1=2"),
            ("Variable", f"LAB_DELAY2={rng.uniform(0.5, 2.0):.2f}"),
            ("Variable", f"LAB_DTMF2={ACCOUNT}#"),
            ("Variable", "LAB_WAIT=600"),  # stays parked; hung up at the end
        ]
        number = f"+1555{n:07d}"
        placed.append(caller_originate(did, f'"Caller {n}" <{number}>', "dtmf", variables))
    return placed


def _unsent(transport: Any) -> int:
    """Bytes in the kernel's send queue of ``transport``'s socket (-1: unknown)."""
    try:
        raw = fcntl.ioctl(transport.socket.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, AttributeError):
        return -1
    return int(struct.unpack("i", raw)[0])


def say(**message: Any) -> None:
    """One line to the parent."""
    print(json.dumps(message), flush=True)


async def probe_lag(lags: list[float]) -> None:
    """Append how late each :data:`LAG_PERIOD` sleep woke up (s), until cancelled."""
    while True:
        due = time.perf_counter() + LAG_PERIOD
        await asyncio.sleep(LAG_PERIOD)
        lags.append(time.perf_counter() - due)


async def heard(stdin: asyncio.StreamReader, what: str) -> Any:
    """The value of ``what`` in the parent's next line."""
    line = await stdin.readline()
    if not line:
        raise SystemExit(f"ivr_world: stdin closed before {what!r}")
    return json.loads(line)[what]


@contextlib.contextmanager
def noting_drops(records: WorldRecords, clock: Callable[[], float]) -> Iterator[None]:
    """While open, each time the simulator drops an AMI client for not reading (it writes
    as Asterisk does: see :meth:`pbx_simulator.server.AmiServerProtocol.send`) a
    :class:`LinkDrop` is appended to ``records.drops``, ``at`` = ``clock()``."""
    from pbx_simulator.server import AmiServerProtocol, unread

    send = AmiServerProtocol.send

    def noting(protocol: Any, frame: bytes) -> None:
        dropped = protocol.dropped
        send(protocol, frame)
        if protocol.dropped and not dropped:
            transport = protocol.transport
            held = unread(transport)
            records.drops.append(LinkDrop(round(clock(), 3), held, _unsent(transport)))

    AmiServerProtocol.send = noting  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        AmiServerProtocol.send = send  # type: ignore[method-assign]


async def live(reactor: Any, spec: dict[str, Any]) -> None:
    """Steps 1-4 of the module's protocol."""
    import pbx_simulator
    from cti.ami.codec import Message
    from pbx_simulator.settings import Route

    load, transport = Load(**spec["load"]), spec["transport"]
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    url = f"agi://127.0.0.1:{spec['agi_port']}/{FASTAGI_SCRIPT}"
    dids = {**pbx_simulator.Settings().dids, DIDS["fastagi"]: Route("fastagi", "sales", url)}
    simulator: Any = pbx_simulator.serve(reactor, pbx_simulator.Settings(
        port=0, username=AMI_USERNAME, secret=AMI_SECRET, seed=load.seed, dids=dids,
        prompt_seconds=load.prompt_seconds,
    ))  # fmt: skip
    records = WorldRecords()
    prober: asyncio.Future[None] | None = None
    started = [time.perf_counter()]

    def clock() -> float:
        return time.perf_counter() - started[0]

    with noting_drops(records, clock):
        say(port=simulator.getHost().port)
        try:
            await heard(stdin, "place")
            # The instrument must not stall: full collections of a heap that grows with every
            # call stop this loop, and the backend would be measured waiting for them. A run is
            # well under a minute; the memory is given back when the process ends.
            gc.collect()
            gc.freeze()
            gc.disable()
            core = simulator.factory.core
            pbx = core.pbx
            fields_of = callers(load, DIDS[transport])
            gap = load.ramp / len(fields_of) if fields_of else 0.0

            def place(fields: list[tuple[str, str]]) -> None:
                simulator.factory.inside(
                    lambda: core.originate(Message([("Action", "Originate"), *fields]))
                )
                records.placed += 1

            prober = asyncio.ensure_future(probe_lag(records.lags))
            cpu0, wall0 = time.process_time(), time.perf_counter()
            started[0] = wall0
            for n, fields in enumerate(fields_of):
                reactor.callLater(n * gap, place, fields)
            while records.placed < len(fields_of):
                await asyncio.sleep(0.05)
            say(placed=records.placed)

            await heard(stdin, "end")
            records.cpu = time.process_time() - cpu0
            records.wall = time.perf_counter() - wall0
            prober.cancel()
            if records.lags:
                ms = sorted(1000 * lag for lag in records.lags)
                records.lag_p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
                records.lag_max = ms[-1]
            channels = list(pbx.channels.values())
            records.hung_up = len(channels)
            for first in range(0, len(channels), HANGUP_BATCH):
                batch = channels[first : first + HANGUP_BATCH]
                simulator.factory.inside(
                    lambda b=batch: [pbx.hangup(c, 16, request=True) for c in b]
                )
                await asyncio.sleep(0.01)  # a loop turn: the batch's events are written out
            Path(spec["records"]).write_text(json.dumps(records.to_json()), encoding="utf-8")
            say(done=spec["records"])

            while await stdin.readline():  # until the parent has stopped its backend
                pass
        finally:
            if prober is not None:
                prober.cancel()
            stopped = simulator.stopListening()
            if stopped is not None:
                await stopped.asFuture(loop)


def main(argv: list[str] | None = None) -> int:
    return run_world(live, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
