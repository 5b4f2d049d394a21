"""IVR benchmark (issue 15): ``--sessions`` concurrent IVR sessions through the PBX
simulator, over AsyncAGI and FastAGI: the time the backend's IVR adds per step (median,
p99), the backend's CPU, and the sessions that did not end as expected. Goals: p99 < 20 ms
per step, no errors.

    python -m bench.ivr [--sessions 1000] [--transport fastagi|asyncagi|both] [--ramp 5]
        [--prompt-seconds 1.0] [--seed 1] [--deadline 120]

Two processes, so that the system under test runs alone as in production (where Asterisk
is another machine), one run per transport, each with a fresh pair:

* this one, the backend under test, on Twisted's asyncio reactor as ``callcenter run``
  (``freeze_start_up`` after start): an unmodified :class:`~callcenter.app.CallCenter`
  logged in over TCP AMI to the child's simulator: call model, ACD in memory (queues
  ``sales`` and ``support``, no agent logged in: callers routed there stay parked), call
  history on SQLite, and the IVR with the shipped flows (``config/ivr``), entered over
  AsyncAGI on DID 5002 (``AGI(agi:async)``) or FastAGI on DID 5004 (the backend's own
  FastAGI server on a free port, which the child's simulator dials:
  ``AGI(agi://127.0.0.1:<port>/lab-route)``);
* a child, ``python -m bench.ivr_world`` (:mod:`bench.ivr_world`, same interpreter): the
  PBX simulator on a free loopback port and the callers it places (its collector off
  during the run: its heap grows with every call, and its stalls would be measured here).
  It hangs every channel up when told the run is over and hands back its CPU and loop lag
  as JSON.

Callers are placed by the simulator itself (no AMI action), evenly over ``--ramp``
seconds; prompts play ``--prompt-seconds`` each. Every caller presses 2 (the account
choice) between 0.5 s and 2 s past the menu's prompts (0.5-9 s with 1 s prompts) after
the IVR answers — during the welcome, the menu's prompts or its wait, so barge-in and
``WAIT FOR DIGIT`` both happen — then a Luhn-valid account number ended by ``#`` 0.5-2 s
later. The flow: welcome (barge-in), hours branch, menu, the
``account_number`` sub-flow (``GET DATA``, Luhn check, ``set`` ACCOUNT_STATUS, thanks),
the ``support`` queue node (the ACD's estimate, position and wait announced, ``SET
VARIABLE`` of IVR_PATH, IVR_DIGITS, ACCOUNT...), then the AMI ``Redirect`` to support's
holding lane. Expected of every caller: one session, ended ``queued`` in ``support`` over
the transport run, keys ``2`` and the account, ACCOUNT_STATUS ``verified``, the path
ending at ``main.support``. Errors: anything else, a caller who never reached the IVR, a
session not over ``--deadline`` seconds after the last caller was placed, a ``Redirect``
the AMI refused.

What is timed, in the backend's process (``time.perf_counter``; the bench wraps methods,
the product is unchanged):

* **from**: the read that carried an AGI result. FastAGI: ``FastAgiSession.dataReceived``
  entered while a command is in flight (the reply line; one connection per call).
  AsyncAGI: ``AmiProtocol.dataReceived`` entered for the read holding the AsyncAGIExec
  event (the reply; the AMI link is shared, so the frames ahead of it in that read, parsed
  and run through the call model first, count). AsyncAGI also from the IVR's own
  hand-over: ``AsyncAgi.on_call_event`` entered with the call model's AsyncAgiReplied.
* **to**: the next command handed to the transport: FastAGI, the line written
  (``FastAgiSession._write_next``); AsyncAGI, the AMI ``AGI`` action written
  (``AmiClient.send_action`` returned); both, the AMI ``Redirect`` that ends a route.

A step is a result followed by a command; a result after which the session ends is none.
The first command after the session starts (the FastAGI environment read, or the
AsyncAGIStart's read) is shown apart and not in the goal. CPU is ``time.process_time()``
over the run divided by its wall time, per process: the backend's (its history writer's
thread included) and the simulator's. The backend reactor's lag (a 10 ms
``LoopingCall``'s lateness), its garbage collector's pauses, and the simulator's loop lag
are printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import logging
import os
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.ivr_world import (
    ACCOUNT,
    AMI_SECRET,
    AMI_USERNAME,
    DIDS,
    FASTAGI_SCRIPT,
    TRANSPORTS,
    Load,
    WorldRecords,
    write_spec,
)
from bench.screen_pop import HEADER, Spread, machine, percentile

ROOT = Path(__file__).resolve().parents[1]
GOAL_P99_MS = 20.0
#: The ACD's queues: the flows route to sales and support; no agent is logged in, so
#: callers routed there stay parked (the bench hangs them up at the end).
QUEUES = {
    "agent_interface": "Local/{agent}@agents",
    "queues": {
        "sales": {"lanes": ["external"], "ring_timeout": 5, "wrap_up": 1},
        "support": {"lanes": ["external-moh"], "ring_timeout": 5, "wrap_up": 1},
    },
    "agents": {"6001": {"name": "Alice", "queues": {"sales": 0, "support": 0}}},
}
#: Seconds between the reactor-lag probe's ticks.
LAG_TICK = 0.01
#: The attribute a bench stamp is kept in on an AGI channel object.
_STAMP = "_bench_ivr_stamp"


@dataclass(slots=True)
class StepTimer:
    """The stamps: a result read is kept on its AGI channel object (FastAgiSession or
    AsyncAgiSession) until the next command of that channel goes out."""

    #: perf_counter of the AMI read being handled now (None between reads).
    read_at: float | None = None
    #: (seconds from the read, seconds from the IVR's hand-over, the next command's verb).
    steps: list[tuple[float, float, str]] = field(default_factory=list)
    #: Seconds from a session's start (environment read) to its first command.
    firsts: list[float] = field(default_factory=list)
    #: AsyncAGI sessions starting: channel -> (read, hand-over), until their first command.
    starting: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: AsyncAGI events handed to the IVR outside an AMI read (timed from the hand-over).
    outside_reads: int = 0
    #: Times the AMI link stopped reading (a subscriber over its high-water mark), the
    #: seconds it spent so, and the AMI connections lost.
    pauses: int = 0
    paused_for: float = 0.0
    links_lost: int = 0
    #: The garbage collector's pauses: (generation, seconds).
    gc_pauses: list[tuple[int, float]] = field(default_factory=list)
    #: Redirects the AMI refused or failed: channel -> why.
    refused: dict[str, str] = field(default_factory=dict)

    def result(self, agi: object, kind: str, read: float, handed: float) -> None:
        setattr(agi, _STAMP, (kind, read, handed))

    def command(self, agi: object, verb: str) -> None:
        stamp = getattr(agi, _STAMP, None)
        if stamp is None:
            return
        sent = time.perf_counter()
        setattr(agi, _STAMP, None)
        kind, read, handed = stamp
        if kind == "start":
            self.firsts.append(sent - read)
        else:
            self.steps.append((sent - read, sent - handed, verb))


def _verb(command: str) -> str:
    """``STREAM FILE welcome "0123"`` -> ``STREAM FILE``."""
    words = command.split()
    return " ".join(words[:3] if words[:1] == ["WAIT"] else words[:2])


@contextlib.contextmanager
def instrumented(app: Any, timer: StepTimer) -> Iterator[None]:
    """Wrap the transports' reads and writes of ``app`` (a CallCenter with its IVR) so
    that ``timer`` sees each result read and the command that follows it."""
    from cti.ami.client import AmiProtocol
    from cti.calls.events import AsyncAgiReplied, AsyncAgiStarted
    from ivr.fastagi import FastAgiSession

    ivr = app.ivr
    ami_read = AmiProtocol.dataReceived
    ami_lost = AmiProtocol.connectionLost
    pause, resume = app.ami.pauseProducing, app.ami.resumeProducing
    paused_at: list[float] = []
    fast_read = FastAgiSession.dataReceived
    fast_write = FastAgiSession._write_next
    send_action = app.ami.send_action
    on_asyncagi = ivr.asyncagi.on_call_event

    def timed_ami_read(protocol: Any, data: bytes) -> None:
        timer.read_at = time.perf_counter()
        try:
            ami_read(protocol, data)
        finally:
            timer.read_at = None

    def lost(protocol: Any, reason: Any = None) -> None:
        timer.links_lost += 1
        ami_lost(protocol, reason)

    def timed_pause() -> None:
        if not app.ami.paused:
            timer.pauses += 1
            paused_at.append(time.perf_counter())
        pause()

    def timed_resume() -> None:
        resume()
        if not app.ami.paused and paused_at:
            timer.paused_for += time.perf_counter() - paused_at.pop()

    def refused(failure: Any, channel: str) -> Any:
        timer.refused[channel] = str(failure.value)
        return failure

    def timed_fast_read(session: Any, data: bytes) -> None:
        at = time.perf_counter()
        if session._env is None:
            timer.result(session, "start", at, at)
        elif session._current is not None:
            timer.result(session, "reply", at, at)
        fast_read(session, data)

    def timed_fast_write(session: Any) -> None:
        before = session._current
        fast_write(session)
        current = session._current
        if current is not None and current is not before:
            timer.command(session, _verb(current[0]))

    def timed_event(event: Any) -> None:
        handed = time.perf_counter()
        read = timer.read_at
        if read is None:
            timer.outside_reads += 1
            read = handed
        if isinstance(event, AsyncAgiReplied):
            session = ivr.asyncagi.sessions.get(event.channel)
            if session is not None:
                timer.result(session, "reply", read, handed)
        elif isinstance(event, AsyncAgiStarted):
            timer.starting[event.channel] = (read, handed)
        on_asyncagi(event)

    def timed_send(name: str, fields: Any = (), *, timeout: float | None = None) -> Any:
        d = send_action(name, fields, timeout=timeout)
        if name in ("AGI", "Redirect"):
            values = dict(fields)
            channel = values.get("Channel", "")
            if name == "Redirect":
                d.addErrback(refused, channel)
            run = ivr.sessions.get(channel)
            agi = run.channel if run is not None else ivr.asyncagi.sessions.get(channel)
            if agi is not None:
                start = timer.starting.pop(channel, None)
                if start is not None:
                    timer.result(agi, "start", *start)
                timer.command(agi, "Redirect" if name == "Redirect" else _verb(values["Command"]))
        return d

    # Class methods (the AMI and FastAGI protocols) are put back as they were; the instance
    # wrappers (the AMI client, the AsyncAGI transport) removed.
    on_classes: list[tuple[type, str, Any]] = [
        (AmiProtocol, "dataReceived", timed_ami_read),
        (AmiProtocol, "connectionLost", lost),
        (FastAgiSession, "dataReceived", timed_fast_read),
        (FastAgiSession, "_write_next", timed_fast_write),
    ]
    on_objects: list[tuple[object, str, Any]] = [
        (app.ami, "send_action", timed_send),
        (app.ami, "pauseProducing", timed_pause),
        (app.ami, "resumeProducing", timed_resume),
        (ivr.asyncagi, "on_call_event", timed_event),
    ]
    collecting: list[float] = []

    def collected(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting.append(time.perf_counter())
        elif collecting:
            timer.gc_pauses.append((info["generation"], time.perf_counter() - collecting.pop()))

    gc.callbacks.append(collected)
    originals = [(owner, name, owner.__dict__[name]) for owner, name, _ in on_classes]
    for owner, name, wrapper in [*on_classes, *on_objects]:
        setattr(owner, name, wrapper)
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
        for target, name, _ in on_objects:
            delattr(target, name)
        gc.callbacks.remove(collected)


# -- one run -------------------------------------------------------------------------------


@dataclass(slots=True)
class IvrRun:
    """What one transport's run saw: the steps timed, the sessions' ends, what went wrong
    (each a sentence), the backend process's CPU seconds over ``wall`` seconds, the most
    sessions live at once, the backend reactor's lateness (ms) while the callers were in
    the IVR, and what the simulator's process reported (its CPU and loop lag)."""

    transport: str
    load: Load
    timer: StepTimer
    placed: int = 0
    started: int = 0
    finished: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    cpu: float = 0.0
    wall: float = 0.0
    peak: int = 0
    lag_ms: list[float] = field(default_factory=list)
    #: The most items each subscriber of the AMI and call-event streams had waiting.
    backlogs: dict[str, int] = field(default_factory=dict)
    simulator: WorldRecords = field(default_factory=WorldRecords)

    def spreads(self) -> dict[str, Spread]:
        steps = self.timer.steps
        rows = {"per step, from the result's read": Spread.of([s[0] for s in steps])}
        if self.transport == "asyncagi":
            rows["per step, from the IVR's event"] = Spread.of([s[1] for s in steps])
        rows["first command, from the start"] = Spread.of(self.timer.firsts)
        return rows

    def by_verb(self) -> list[tuple[str, int, float]]:
        """Per next command: how many steps, their p99 (ms, from the read)."""
        verbs: dict[str, list[float]] = {}
        for seconds, _, verb in self.timer.steps:
            verbs.setdefault(verb, []).append(1000 * seconds)
        return [(v, len(ms), percentile(ms, 0.99)) for v, ms in sorted(verbs.items())]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorldProcess:
    """The child process ``python -m bench.ivr_world`` (same interpreter, this checkout),
    spoken to one JSON line at a time (its module docstring has the steps)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @staticmethod
    async def start(spec: Path) -> WorldProcess:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.ivr_world", str(spec),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT, env=env,
        )  # fmt: skip
        return WorldProcess(process)

    async def hear(self, what: str, timeout: float) -> Any:
        """The value of ``what`` in the world's next line."""
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            code = await self.process.wait()
            raise RuntimeError(f"the simulator's process ended (exit {code}) before saying "
                               f"{what!r}")  # fmt: skip
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


def _check(event: Any, transport: str) -> str | None:
    """What is wrong with a session's end (None: as expected)."""
    if event.outcome != "queued" or event.queue != "support":
        return f"outcome {event.outcome} (queue {event.queue}) after {'>'.join(event.path)}"
    if event.transport != transport:
        return f"over {event.transport}, not {transport}"
    if tuple(event.digits) != ("2", ACCOUNT):
        return f"keys {list(event.digits)}, not ['2', {ACCOUNT!r}]"
    if event.variables.get("ACCOUNT_STATUS") != "verified":
        return f"ACCOUNT_STATUS {event.variables.get('ACCOUNT_STATUS')!r}"
    if not event.path or event.path[-1] != "main.support":
        return f"path ends at {event.path[-1:]}"
    return None


async def run_transport(
    reactor: Any, transport: str, load: Load, workdir: Path, say: Callable[[str], None] = print
) -> IvrRun:
    """``load.sessions`` callers through the IVR over ``transport`` (``asyncagi`` or
    ``fastagi``): the backend on ``reactor``, the simulator and its callers in a child
    process; files in ``workdir``."""
    from twisted.internet.task import LoopingCall

    from callcenter.app import CallCenter, freeze_start_up
    from callcenter.settings import Settings
    from ivr.events import IvrFinished, IvrStarted

    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
    loop = asyncio.get_running_loop()
    agi_port = _free_port()
    spec, records = workdir / f"world-{transport}.json", workdir / f"world-{transport}-out.json"
    write_spec(spec, load, transport, agi_port, records)
    world = await WorldProcess.start(spec)
    app: CallCenter | None = None
    result = IvrRun(transport, load, StepTimer())
    live: set[str] = set()
    done: dict[str, Any] = {}

    def seen(event: Any) -> None:
        if isinstance(event, IvrStarted):
            result.started += 1
            live.add(event.channel)
            result.peak = max(result.peak, len(live))
        elif isinstance(event, IvrFinished):
            result.finished += 1
            live.discard(event.channel)
            if event.channel in done:
                result.errors.append(f"{event.channel}: a second end ({event.outcome})")
            done[event.channel] = event

    ticks: list[float] = []
    probe = LoopingCall(lambda: ticks.append(time.perf_counter()))
    try:
        port = await world.hear("port", 60)
        queues = workdir / f"queues-{transport}.yaml"
        queues.write_text(yaml.safe_dump(QUEUES))
        settings = Settings.model_validate({
            "ami": {"port": port, "username": AMI_USERNAME, "secret": AMI_SECRET},
            "acd": {"queues": str(queues)},
            "database": {"url": f"sqlite:///{workdir / f'ivr-{transport}.sqlite3'}"},
            "history": {"spool_dir": str(workdir / f"spool-{transport}")},
            "http": {"enabled": False},
            "ivr": {
                "flows": [str(ROOT / "config" / "ivr")],
                "entries": [{"entry": DIDS["asyncagi"], "flow": "main", "transport": "asyncagi"},
                            {"entry": FASTAGI_SCRIPT, "flow": "main", "transport": "fastagi"}],
                "fastagi_port": agi_port,
            },
            "pbx": f"ivr-bench-{transport}",
            "log_level": "WARNING",
        })  # fmt: skip
        app = CallCenter(settings, reactor)
        assert app.ivr is not None
        app.ivr.events.subscribe(seen, name="bench")
        app.start()
        freeze_start_up()  # as callcenter run does
        await app.ami.when_ready().asFuture(loop)

        with instrumented(app, result.timer):
            say(f"{transport}: placing {load.sessions:,} callers over {load.ramp:g} s "
                f"(prompts {load.prompt_seconds:g} s; simulator pid {world.process.pid}, "
                f"backend pid {os.getpid()})")  # fmt: skip
            cpu0, wall0 = time.process_time(), time.perf_counter()
            probe.start(LAG_TICK, now=True)
            world.tell(place=True)
            placing = asyncio.ensure_future(world.hear("placed", load.ramp + load.deadline + 60))
            give_up = wall0 + load.ramp + load.deadline
            while not placing.done() or result.finished < result.placed or live:
                if placing.done():
                    result.placed = placing.result()
                if time.perf_counter() > give_up:
                    break
                await asyncio.sleep(0.05)
            result.placed = await placing
            result.cpu = time.process_time() - cpu0
            result.wall = time.perf_counter() - wall0
            probe.stop()
        streams = (app.ami.stream, app.call_events)
        result.backlogs = {
            f"{stream.name}: {sub.name}": sub.peak_pending
            for stream in streams
            for sub in stream.subscriptions
        }
        result.lag_ms = [1000 * max(0.0, b - a - LAG_TICK) for a, b in itertools.pairwise(ticks)]
        # The parked callers (and any left in the IVR) hang up; the backend sees them go.
        world.tell(end=True)
        await world.hear("done", 60)
        result.simulator = WorldRecords.from_json(json.loads(records.read_text("utf-8")))
        await asyncio.sleep(0.5)
    finally:
        if probe.running:
            probe.stop()
        if app is not None:
            await app.stop().asFuture(loop)
        await world.stop()

    for event in done.values():
        wrong = _check(event, transport)
        if wrong is not None:
            result.errors.append(f"{event.channel}: {wrong}")
    result.outcomes.update(e.outcome for e in done.values())
    for channel, why in sorted(result.timer.refused.items()):
        result.errors.append(f"{channel}: Redirect to the queue failed: {why}")
    if result.started < result.placed:
        result.errors.append(f"{result.placed - result.started} of {result.placed} callers "
                             "never reached the IVR")  # fmt: skip
    if live:
        result.errors.append(f"{len(live)} sessions not over {load.deadline:g} s after the "
                             "last caller was placed")  # fmt: skip
    return result


# -- the command ---------------------------------------------------------------------------


def report(runs: Sequence[IvrRun]) -> str:
    lines: list[str] = []
    for run in runs:
        load = run.load
        lag = Spread.of([ms / 1000 for ms in run.lag_ms])
        rows = run.spreads()
        step = rows["per step, from the result's read"]
        sim = run.simulator
        full = [seconds for generation, seconds in run.timer.gc_pauses if generation == 2]
        lines += [
            f"{run.transport}: {run.placed:,} callers placed over {load.ramp:g} s, prompts "
            f"{load.prompt_seconds:g} s; {run.started:,} sessions started, {run.finished:,} "
            f"ended ({', '.join(f'{k} {v:,}' for k, v in run.outcomes.most_common())}); "
            f"at most {run.peak:,} at once; {run.wall:.1f} s",
            HEADER,
            *(spread.row(what) for what, spread in rows.items()),
            "p99 by next command (ms): "
            + ", ".join(f"{verb} {p99:.1f} (n {n:,})" for verb, n, p99 in run.by_verb()),
            f"CPU: the backend {run.cpu:.1f} s over {run.wall:.1f} s = "
            f"{run.cpu / run.wall:.0%} of one core (its history thread included); the "
            f"simulator's process {sim.cpu:.1f} s over {sim.wall:.1f} s = "
            f"{sim.cpu / sim.wall if sim.wall else 0.0:.0%}",
            f"backend reactor lag p99 {lag.p99:.1f} ms, max {lag.max:.1f} ms; simulator loop "
            f"lag p99 {sim.lag_p99:.1f} ms, max {sim.lag_max:.1f} ms; AsyncAGI events "
            f"outside an AMI read: {run.timer.outside_reads}",
            f"backend's garbage collector: {len(full)} full collections, longest "
            f"{1000 * max(full, default=0.0):.0f} ms, {1000 * sum(full):.0f} ms in all; "
            f"{len(run.timer.gc_pauses) - len(full)} younger ones, "
            f"{1000 * (sum(p for _, p in run.timer.gc_pauses) - sum(full)):.0f} ms in all",
            f"AMI link: stopped reading {run.timer.pauses} times for {run.timer.paused_for:.1f} "
            f"s in all, lost {run.timer.links_lost} times; most waiting: "
            + ", ".join(f"{name} {n:,}" for name, n in run.backlogs.items()),
            "the simulator dropped it (its writetimeout): "
            + (
                ", ".join(
                    f"at {d.at:.1f} s ({d.held / 1e6:.1f} MB the kernel did not take; "
                    f"{d.unsent / 1e6:.1f} MB unsent in the kernel)"
                    for d in sim.drops
                )
                or "never"
            ),
            f"errors: {len(run.errors)}",
            *(f"  {e}" for e in run.errors[:10]),
            f"goal ({run.transport}): per step p99 < {GOAL_P99_MS:g} ms: "
            f"{'met' if step.p99 < GOAL_P99_MS else 'MISSED'}; no errors: "
            f"{'met' if not run.errors else 'MISSED'}",
            "",
        ]
    return "\n".join(lines).rstrip()


def summary(runs: Sequence[IvrRun]) -> list[dict[str, Any]]:
    """The figures as JSON-ready records (``--json``)."""
    out = []
    for run in runs:
        rows = {what: vars_of(s) for what, s in run.spreads().items()}
        out.append({"transport": run.transport, "sessions": run.load.sessions,
                    "placed": run.placed, "started": run.started, "finished": run.finished,
                    "outcomes": dict(run.outcomes), "errors": run.errors, "cpu": run.cpu,
                    "wall": run.wall, "peak": run.peak, "spreads": rows,
                    "simulator": run.simulator.to_json()})  # fmt: skip
    return out


def vars_of(spread: Spread) -> dict[str, float]:
    return {"count": spread.count, "median": spread.median, "p95": spread.p95,
            "p99": spread.p99, "max": spread.max}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000, help="callers, all in the IVR")
    parser.add_argument("--transport", choices=[*TRANSPORTS, "both"], default="both")
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds to place them over")
    parser.add_argument("--prompt-seconds", type=float, default=1.0, help="each prompt's length")
    parser.add_argument("--seed", type=int, default=1, help="the callers' key delays")
    parser.add_argument(
        "--deadline",
        type=float,
        default=120.0,
        help="seconds after the last caller for every session to end",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)  # fmt: skip
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")
    if args.ramp < 0 or args.prompt_seconds <= 0 or args.deadline <= 0:
        parser.error("--ramp must be >= 0, --prompt-seconds and --deadline > 0")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)
    from twisted.internet import reactor

    reactor.startRunning(installSignalHandlers=False)  # type: ignore[attr-defined]
    print(machine(), flush=True)
    load = Load(args.sessions, args.ramp, args.prompt_seconds, args.seed, args.deadline)
    transports = TRANSPORTS if args.transport == "both" else (args.transport,)
    runs = []
    with tempfile.TemporaryDirectory(prefix="ivr-bench-") as workdir:
        for transport in transports:
            runs.append(loop.run_until_complete(
                run_transport(reactor, transport, load, Path(workdir))
            ))  # fmt: skip
    reactor.fireSystemEvent("shutdown")
    print(report(runs))
    if args.json is not None:
        args.json.write_text(json.dumps(summary(runs), indent=2), encoding="utf-8")
    return 0 if all(not run.errors for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
