"""A simulated hour of ACD traffic checked against Erlang C.

The PBX simulator (Poisson callers on DID 5003, parked for the product's ACD) and a whole
backend (:class:`callcenter.app.CallCenter`: AMI client, call model, router, driver) run on
one deterministic :class:`~twisted.internet.testing.MemoryReactorClock` and talk over an
in-memory TCP pair (``twisted.test.iosim``), so every AMI byte goes through the codec both
ways. Simulated time jumps from one timer to the next: an hour takes seconds.

The figures are the product's own (:class:`acd.figures.LiveFigures`, its window set to the
measured hour, after a warm-up from an empty centre). They are compared with Erlang C for
the same N, λ and handle time. Two details of the simulated call enter the model: an
agent's phone rings ``RING`` seconds before answering, which is part of the agent's handle
time and of the caller's wait as the ACD measures it (connect - join); and talk times are
``max(2, Exp(mean))`` as the simulator draws them.

Tolerance: one hour is a small sample of a strongly autocorrelated queue, so it comes from
Monte Carlo replications of the exact model (FCFS M/G/N, same arrivals, ring, talk and
patience, same warm-up and hour): ``3·sd`` of the one-hour figure across replications plus
the replications' mean bias against steady-state Erlang C. Erlang C ignores abandonment, so
with short patience (``--patience 60``) the figures are checked against the replications
alone (an M/M/N+M reference, in the spirit of Erlang A).

    python -m bench.acd_hour [--calls 1000] [--agents 50] [--seed 1] [--patience 600]
"""

from __future__ import annotations

import argparse
import heapq
import math
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import StaticPool
from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import ConnectionCompleter, IOPump

import pbx_simulator
from acd.estimate import average_speed_of_answer, service_level
from acd.events import AcdEvent
from acd.figures import FigureRules, LiveFigures, PeriodFigures
from acd.history import metadata as acd_metadata
from callcenter.app import CallCenter
from callcenter.settings import Settings
from cti.calls.events import CallEvent, PbxEvent
from cti.history import metadata as call_metadata
from pbx_simulator.server import AmiServerFactory

#: Simulated start: a Monday 08:00 UTC, so the whole run is within one "today".
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC).timestamp()
#: Seconds an agent's phone rings before the agent answers (the simulator's default).
RING = 1.0
#: The simulator's shortest talk (``TrafficGenerator``: ``max(2, Exp(mean))``).
MIN_TALK = 2.0
QUEUE = "sales"
USER, SECRET = "acd-bench", "acd-bench-secret"
FIGURES = ("service_level", "asa", "occupancy", "abandonment_rate")
#: Mean patience (s) from which callers count as waiting for ever: Erlang C is the check.
#: Below it, abandonment shortens the queue beyond what Erlang C knows (60 s patience moves
#: the service level by about 12 pp at 88 % load), so the replications are the reference.
ERLANG_C_PATIENCE = 300.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """One run: ``calls`` expected arrivals in ``hour`` seconds to ``agents`` agents whose
    offered load A = λ·AHT (ring + talk) is ``occupancy``·N."""

    calls: int = 1000
    agents: int = 50
    seed: int = 1
    patience: float = 600.0
    occupancy: float = 0.88
    hour: float = 3600.0
    warmup: float = 900.0
    threshold: float = 20.0
    replications: int = 300

    @property
    def arrival_rate(self) -> float:
        return self.calls / self.hour

    @property
    def aht(self) -> float:
        """Agent time per call, ring included."""
        return self.occupancy * self.agents / self.arrival_rate

    @property
    def mean_talk(self) -> float:
        """The simulator's talk parameter m such that RING + E[max(2, Exp(m))] = AHT."""
        target = m = self.aht - RING
        for _ in range(50):  # expected_talk(m) - m is small and flat in m: fixed point
            m += target - expected_talk(m)
        return m


def expected_talk(mean: float) -> float:
    """E[max(2, Exp(mean))]."""
    return MIN_TALK + mean * math.exp(-MIN_TALK / mean)


# -- the simulated centre ---------------------------------------------------------------


class SimulatedReactor(MemoryReactorClock):
    """A clock and in-memory TCP; thread results come back as immediate timers."""

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.callLater(0, f, *args, **kwargs)


class InlinePool:
    """A stand-in for the history writers', the screen pop's and the tickets' thread pools
    (real ones would outlive a run that never stops the reactor) that runs each
    job at once: the SQL still runs, but no thread timing can change the simulated run."""

    def __init__(self, **_: Any) -> None:
        self.started = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def callInThreadWithCallback(
        self, on_result: Callable[[bool, Any], None], f: Callable[..., Any], *a: Any, **kw: Any
    ) -> None:
        try:
            result = f(*a, **kw)
        except Exception as exc:  # handed to the Deferred, as the thread pool does
            on_result(False, exc)
        else:
            on_result(True, result)


def queues_yaml(agents: int) -> dict[str, Any]:
    """One queue fed by the holding lane, ``agents`` agents who all answer."""
    return {
        "agent_interface": "Local/{agent}@agents",
        "queues": {
            QUEUE: {
                "lanes": ["external"],
                "strategy": "longest_idle",
                "ring_timeout": 15,
                "wrap_up": 0,
            },
        },
        "agents": {str(6001 + n): {"name": f"Agent {n + 1}", "queues": {QUEUE: 0}}
                   for n in range(agents)},
    }


def memory_database() -> Engine:
    """SQLite in memory, shared by every connection, with the history tables."""
    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    call_metadata.create_all(engine)
    acd_metadata.create_all(engine)
    return engine


@dataclass(frozen=True, slots=True)
class Measured:
    """What the product counted: the hour's figures and the whole run's caller outcomes."""

    hour: PeriodFigures
    arrived_in_hour: int
    placed: int
    #: Callers who hung up before the holding context announced them (never in the ACD).
    gone_before_parking: int
    outcomes: Counter[str]
    still_waiting: int
    wall_seconds: float


def run_centre(s: Scenario) -> Measured:
    """Simulator + backend on one simulated clock for warm-up + hour."""
    wall = time.perf_counter()
    reactor = SimulatedReactor()
    reactor.advance(START)
    simulator = AmiServerFactory(reactor, pbx_simulator.Settings(
        port=5038, username=USER, secret=SECRET, seed=s.seed,
        traffic=pbx_simulator.TrafficSettings(
            enabled=True, calls_per_minute=s.arrival_rate * 60, mean_patience=s.patience,
            mean_handle_time=s.mean_talk, dids=("5003",),
        ),
    ))
    reactor.listenTCP(5038, simulator, interface="127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        queues = Path(tmp) / "queues.yaml"
        queues.write_text(yaml.safe_dump(queues_yaml(s.agents)))
        settings = Settings.model_validate({
            "ami": {"port": 5038, "username": USER, "secret": SECRET},
            "acd": {"queues": str(queues), "login_agents": True},
            "database": {"url": "sqlite://", "migrate_on_start": False},
            "http": {"enabled": False},  # no agents' pages in simulated time
            "log_level": "WARNING",
        })
        with (
            mock.patch("cti.history.ThreadPool", InlinePool),
            mock.patch("crm_bridge.service.ThreadPool", InlinePool),
            mock.patch("tickets.service.ThreadPool", InlinePool),
        ):
            app = CallCenter(settings, reactor, engine=memory_database())
    assert app.acd is not None
    figures = LiveFigures({QUEUE: list(app.acd.config.agents)},
                          FigureRules(service_threshold=s.threshold, window=s.hour))
    outcomes: Counter[str] = Counter()
    joins: list[float] = []

    def count(event: AcdEvent) -> None:
        figures.apply(event)
        outcomes[event.kind] += 1
        if event.kind == "caller_joined":
            joins.append(event.at)

    app.acd.events.subscribe(count, name="bench")
    parked: set[str] = set()
    unparked_ends = 0

    def watch_calls(event: PbxEvent) -> None:
        nonlocal unparked_ends
        if not isinstance(event, CallEvent):  # a device state on the same stream
            return
        if event.kind == "parked":
            parked.add(event.call_id)
        elif event.kind == "ended" and event.call_id not in parked:
            unparked_ends += 1

    app.watch(watch_calls, "bench")
    app.start()
    pumps: list[IOPump] = []
    completer = ConnectionCompleter(reactor)
    end = START + s.warmup + s.hour
    while True:
        # Connect what dialled, move bytes until both sides are quiet, then jump in time.
        while (pump := completer.succeedOnce()) is not None:
            pumps.append(pump)
        while sum(pump.pump() for pump in pumps):
            reactor.advance(0)
        due = min((c.getTime() for c in reactor.getDelayedCalls()), default=end)
        if due > end:
            break
        reactor.advance(max(0.0, due - reactor.seconds()))
    reactor.advance(end - reactor.seconds())
    router = app.acd.router
    still = len(router.waiting(QUEUE)) + len(router.offers())
    traffic = simulator.traffic
    assert traffic is not None
    return Measured(
        hour=figures.figures(QUEUE, end).window,
        arrived_in_hour=sum(1 for at in joins if at > end - s.hour),
        placed=traffic.placed,
        gone_before_parking=unparked_ends,
        outcomes=outcomes,
        still_waiting=still,
        wall_seconds=time.perf_counter() - wall,
    )


# -- the model ----------------------------------------------------------------------------


def erlang_c_figures(s: Scenario) -> dict[str, float]:
    """Steady-state Erlang C for the scenario, in the ACD's terms (ring in the wait)."""
    aht = RING + expected_talk(s.mean_talk)
    return {
        "service_level": service_level(s.agents, s.arrival_rate, aht, s.threshold - RING),
        "asa": average_speed_of_answer(s.agents, s.arrival_rate, aht) + RING,
        # The ACD counts talking agents as occupied, ringing ones not.
        "occupancy": s.arrival_rate * expected_talk(s.mean_talk) / s.agents,
        "abandonment_rate": 0.0,
    }


def replicate_hour(s: Scenario, rng: random.Random) -> dict[str, float]:
    """One FCFS hour of the model with the product's figure definitions (short abandons
    under 5 s left out, late abandons failing the service level)."""
    free = [0.0] * s.agents  # when each agent is next free (a heap)
    start, end = s.warmup, s.warmup + s.hour
    answered = in_time = abandoned = late = 0
    waited = talked = 0.0
    t = rng.expovariate(s.arrival_rate)
    while t < end:
        give_up = rng.expovariate(1 / s.patience)
        talk = max(MIN_TALK, rng.expovariate(1 / s.mean_talk))
        seized = max(t, free[0])
        wait = seized - t + RING
        if wait <= give_up:
            heapq.heapreplace(free, seized + RING + talk)
            if start < t + wait <= end:
                answered += 1
                in_time += wait <= s.threshold
                waited += wait
            talked += max(0.0, min(end, seized + RING + talk) - max(start, seized + RING))
        else:
            if seized - t < give_up:  # gave up while an agent's phone rang: agent freed then
                heapq.heapreplace(free, t + give_up)
            if start < t + give_up <= end and give_up >= 5.0:
                abandoned += 1
                late += give_up > s.threshold
        t += rng.expovariate(s.arrival_rate)
    return {
        "service_level": in_time / max(1, answered + late),
        "asa": waited / max(1, answered),
        "occupancy": talked / (s.agents * s.hour),
        "abandonment_rate": abandoned / max(1, answered + abandoned),
    }


@dataclass(frozen=True, slots=True)
class Check:
    """One figure: simulated vs ``centre`` (Erlang C or the replications' mean)."""

    figure: str
    simulated: float
    erlang_c: float
    reference: float
    tolerance: float
    centre: float

    @property
    def passed(self) -> bool:
        return abs(self.simulated - self.centre) <= self.tolerance


def checks(s: Scenario, measured: Measured) -> list[Check]:
    """Each figure against Erlang C when callers are patient (it has no abandonment),
    else against the replications' mean (an M/M/N+M reference)."""
    rng = random.Random(s.seed + 1000)
    reps = [replicate_hour(s, rng) for _ in range(s.replications)]
    erlang_c_applies = s.patience >= ERLANG_C_PATIENCE
    erlang = erlang_c_figures(s)
    out = []
    for figure in FIGURES:
        values = [r[figure] for r in reps]
        mean, tolerance = statistics.fmean(values), 3 * statistics.stdev(values)
        value = getattr(measured.hour, figure)
        simulated = 0.0 if value is None else value
        if erlang_c_applies:
            centre = erlang[figure]
            out.append(Check(figure, simulated, centre, mean, tolerance + abs(mean - centre),
                             centre))
        else:
            out.append(Check(figure, simulated, erlang[figure], mean, tolerance, mean))
    return out


# -- report -------------------------------------------------------------------------------


def _show(figure: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f} s" if figure == "asa" else f"{100 * value:.1f} %"


def report(s: Scenario, measured: Measured, results: list[Check]) -> str:
    h = measured.hour
    o = measured.outcomes
    lines = [
        f"ACD hour: {s.agents} agents, λ = {s.arrival_rate * 3600:.0f} calls/h, "
        f"AHT {s.aht:.1f} s (ring {RING:g} s + talk, mean talk param {s.mean_talk:.1f} s), "
        f"A = {s.arrival_rate * s.aht:.1f} Erl, patience mean {s.patience:g} s, "
        f"seed {s.seed}",
        f"measured hour after {s.warmup:g} s warm-up; service level threshold "
        f"{s.threshold:g} s; tolerance = 3 sd of {s.replications} replicated hours"
        + (" + their bias vs Erlang C; checked against Erlang C"
           if s.patience >= ERLANG_C_PATIENCE else
           "; Erlang C has no abandonment (shown for information): checked against the "
           "replications"),
        "",
        f"{'figure':<18}{'simulated':>11}{'Erlang C':>11}{'replicas':>11}{'tolerance':>11}"
        "  verdict",
    ]
    for c in results:
        tol = f"±{c.tolerance:.1f} s" if c.figure == "asa" else f"±{100 * c.tolerance:.1f} pp"
        lines.append(
            f"{c.figure:<18}{_show(c.figure, c.simulated):>11}{_show(c.figure, c.erlang_c):>11}"
            f"{_show(c.figure, c.reference):>11}{tol:>11}  {'PASS' if c.passed else 'FAIL'}"
        )
    lines += [
        "",
        f"hour: {measured.arrived_in_hour} joined, {h.answered} answered "
        f"({h.answered_in_time} in time), {h.abandoned} abandoned "
        f"(+{h.short_abandoned} short), {h.overflowed} overflowed, AHT {_show('asa', h.aht)}",
        f"run:  {measured.placed} calls placed = {o['caller_connected']} answered + "
        f"{o['caller_abandoned']} abandoned + {o['caller_overflowed']} overflowed + "
        f"{measured.still_waiting} still waiting + {measured.gone_before_parking} gone "
        f"before parking ({'balanced' if balanced(measured) else 'UNBALANCED'}; "
        f"{o['caller_joined']} joined the queue)",
        f"wall time {measured.wall_seconds:.1f} s on {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()} ({platform.node()})",
    ]
    return "\n".join(lines)


def balanced(m: Measured) -> bool:
    """Every call placed is accounted for: it joined the queue (and was answered, abandoned,
    overflowed or still waits) or hung up before it was parked."""
    o = m.outcomes
    settled = o["caller_connected"] + o["caller_abandoned"] + o["caller_overflowed"]
    return m.placed - m.gone_before_parking == o["caller_joined"] == settled + m.still_waiting


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="expected arrivals per hour")
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--patience", type=float, default=600.0, help="mean patience, s")
    parser.add_argument("--occupancy", type=float, default=0.88, help="offered load A/N")
    parser.add_argument("--warmup", type=float, default=900.0, help="seconds before the hour")
    args = parser.parse_args(argv)
    s = Scenario(calls=args.calls, agents=args.agents, seed=args.seed, patience=args.patience,
                 occupancy=args.occupancy, warmup=args.warmup)
    measured = run_centre(s)
    results = checks(s, measured)
    print(report(s, measured, results))
    return 0 if all(c.passed for c in results) and balanced(measured) else 1


if __name__ == "__main__":
    sys.exit(main())
