"""The ACD report: a range of days recomputed from the persisted ACD events.

:func:`build_report` is pure: fed the events' records (``AcdEvent.to_record()``, as the
history keeps them in ``acd_events.payload``) in time order, it counts per queue, per
caller tier (the tier the caller joined with), per agent and per 15-minute interval of the
ACD's time zone. :func:`acd_records` is the one SQL read behind it; :func:`report_csv`
writes one of the report's tables as CSV.

Every count and ratio follows the live figures' rules (``acd.figures``: the same
:class:`~acd.figures.Tally`, outcome and service-level functions), so a report of today
and the wallboard's "today" agree:

* A call counts in the interval of its outcome (answer, abandon, overflow, completion);
  ``offered`` counts joins, in the interval of the join.
* Short abandons are counted apart and are in no ratio; overflowed callers too.
* A wrap-up counts, for the queue and tier of the agent's last call, when it ends.
* An agent's times are the time spent in each state within the range (cut at its ends and
  at ``now``): logged in (any state but logged out), paused, wrap-up, and occupancy =
  on a call or in wrap-up / available, ringing, on a call or in wrap-up.
* An agent's dispositions count each call once, with its last disposition.
* A queue's occupancy adds up the times of its ``members`` (as the live figures do).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select

from acd.figures import (
    OCCUPIED,
    STAFFED,
    PeriodFigures,
    ServiceLevelFormula,
    Tally,
    abandoned_outcome,
    answered_outcome,
    period_figures,
)
from acd.history import acd_events
from crm_bridge.tiers import TIERS

__all__ = [
    "INTERVAL",
    "MAX_DAYS",
    "REPORT_TABLES",
    "AcdReport",
    "AgentReport",
    "CountsReport",
    "acd_records",
    "build_report",
    "call_answered_by",
    "report_csv",
    "report_range",
    "staffed_agents",
]

#: Seconds in an interval of the report and of staffing.
INTERVAL = 900
#: The longest range of a report: ``last - first`` at most this many days.
MAX_DAYS = 92
#: The tier of a caller whose join is not in the records (it joined before the range).
UNKNOWN_TIER = "unknown"
#: The report's tables, as ``report_csv`` names them.
REPORT_TABLES = ("queue", "agent", "tier", "interval")

_US = 1_000_000


def _us(seconds: float) -> int:
    return round(seconds * _US)


def report_range(first: date, last: date, zone: tzinfo) -> tuple[float, float]:
    """[start, end) epoch seconds of the days ``first`` to ``last`` (both included) in
    ``zone``; ``ValueError`` naming ``from``/``to`` when last < first or the range is
    longer than :data:`MAX_DAYS`."""
    if last < first:
        raise ValueError(f"to ({last}) is before from ({first})")
    if (last - first).days > MAX_DAYS:
        raise ValueError(f"to - from is {(last - first).days} days; at most {MAX_DAYS}")
    return _midnight(first, zone), _midnight(last + timedelta(1), zone)


def _midnight(day: date, zone: tzinfo) -> float:
    # A midnight skipped by a DST change resolves (fold=0) to the day's first instant.
    return datetime.combine(day, time(), tzinfo=zone).timestamp()


@dataclass(slots=True)
class _Book:
    """What a queue, a tier or an interval counted: joins and outcomes."""

    offered: int = 0
    tally: Tally = field(default_factory=Tally)


@dataclass(frozen=True, slots=True)
class CountsReport:
    """A queue's, a tier's or an interval's counts and ratios (``figures.start`` is the
    range's or the interval's start). ``key``: the queue, the tier, or (interval start,
    queue)."""

    offered: int
    figures: PeriodFigures

    def to_record(self) -> dict[str, Any]:
        f = self.figures
        return {
            "offered": self.offered,
            "answered": f.answered,
            "answered_in_time": f.answered_in_time,
            "abandoned": f.abandoned,
            "abandoned_in_time": f.abandoned_in_time,
            "short_abandoned": f.short_abandoned,
            "overflowed": f.overflowed,
            "completed": f.completed,
            "callbacks_failed": f.callbacks_failed,
            "callbacks_given_up": f.callbacks_given_up,
            "service_level": f.service_level,
            "asa": f.asa,
            "aht": f.aht,
            "abandonment_rate": f.abandonment_rate,
            "occupancy": f.occupancy,
        }


@dataclass(frozen=True, slots=True)
class AgentReport:
    """One agent over the range; times in seconds."""

    agent: str
    answered: int
    completed: int
    talk_time: float
    wrap_up_time: float
    paused_time: float
    logged_in_time: float
    occupancy: float | None
    dispositions: dict[str, int]

    def to_record(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "answered": self.answered,
            "completed": self.completed,
            "talk_time": self.talk_time,
            "wrap_up_time": self.wrap_up_time,
            "paused_time": self.paused_time,
            "logged_in_time": self.logged_in_time,
            "occupancy": self.occupancy,
            "dispositions": dict(self.dispositions),
        }


@dataclass(frozen=True, slots=True)
class AcdReport:
    """The report of [``start``, ``end``) (epoch seconds). Intervals are listed only where
    something happened, by start then queue."""

    start: float
    end: float
    queues: dict[str, CountsReport]
    tiers: dict[str, CountsReport]
    agents: dict[str, AgentReport]
    intervals: dict[tuple[float, str], CountsReport]

    def table(self, by: str) -> list[dict[str, Any]]:
        """The rows of one table (``queue``, ``agent``, ``tier`` or ``interval``)."""
        if by == "queue":
            return [{"queue": q, **r.to_record()} for q, r in self.queues.items()]
        if by == "tier":
            rows = [{"tier": t, **r.to_record()} for t, r in self.tiers.items()]
            for row in rows:
                del row["occupancy"]  # a tier has no agents of its own
            return rows
        if by == "agent":
            return [r.to_record() for r in self.agents.values()]
        if by == "interval":
            rows = [
                {"start": s, "queue": q, **r.to_record()} for (s, q), r in self.intervals.items()
            ]
            for row in rows:
                del row["occupancy"]
            return rows
        raise ValueError(f"by must be one of {', '.join(REPORT_TABLES)}, not {by!r}")

    def to_record(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            **{f"{by}s": self.table(by) for by in REPORT_TABLES},
        }


@dataclass(slots=True)
class _AgentBook:
    state: str = "logged_out"
    since: int = 0
    answered: int = 0
    completed: int = 0
    talk: int = 0
    time_in: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    last_queue: str | None = None
    last_tier: str = UNKNOWN_TIER
    dispositions: dict[str, str] = field(default_factory=dict)  # call id -> disposition


class _Intervals:
    """Interval starts in µs: local midnight + k * ``INTERVAL``; remembers the last day."""

    def __init__(self, zone: tzinfo) -> None:
        self._zone = zone
        self._day: tuple[int, int] = (0, 0)  # [start, end) µs

    def start(self, at: int) -> int:
        begin, end = self._day
        if not begin <= at < end:
            day = datetime.fromtimestamp(at / _US, self._zone).date()
            begin = _us(_midnight(day, self._zone))
            end = _us(_midnight(day + timedelta(1), self._zone))
            self._day = (begin, end)
        return begin + (at - begin) // (INTERVAL * _US) * INTERVAL * _US


class _Report:
    def __init__(
        self,
        start: float,
        end: float,
        now: float,
        zone: tzinfo,
        thresholds: Mapping[str, float],
        default_threshold: float,
        short_abandon: float,
    ) -> None:
        self.start, self.end = _us(start), _us(end)
        self.stop = min(self.end, _us(now))  # agents' open states count until here
        self.intervals = _Intervals(zone)
        self.thresholds = {q: _us(t) for q, t in thresholds.items()}
        self.default_threshold = _us(default_threshold)
        self.short = _us(short_abandon)
        self.queues: dict[str, _Book] = defaultdict(_Book)
        self.tiers: dict[str, _Book] = defaultdict(_Book)
        self.interval_books: dict[tuple[int, str], _Book] = defaultdict(_Book)
        self.agents: dict[str, _AgentBook] = defaultdict(_AgentBook)
        self.call_tiers: dict[str, str] = {}

    def _books(self, queue: str, tier: str, at: int) -> tuple[_Book, _Book, _Book]:
        return (
            self.queues[queue],
            self.tiers[tier],
            self.interval_books[(self.intervals.start(at), queue)],
        )

    def _credit(self, queue: str, call_id: str | None, at: int, outcome: Tally) -> None:
        tier = self.call_tiers.get(call_id, UNKNOWN_TIER) if call_id else UNKNOWN_TIER
        self._credit_tier(queue, tier, at, outcome)

    def _credit_tier(self, queue: str, tier: str, at: int, outcome: Tally) -> None:
        if self.start <= at < self.end:
            for book in self._books(queue, tier, at):
                book.tally.add(outcome)

    def _threshold(self, queue: str) -> int:
        return self.thresholds.get(queue, self.default_threshold)

    def apply(self, r: Mapping[str, Any]) -> None:
        kind, at = r["kind"], _us(r["at"])
        inside = self.start <= at < self.end
        if kind == "caller_joined":
            self.call_tiers[r["call_id"]] = r.get("tier") or UNKNOWN_TIER
            if inside:
                for book in self._books(r["queue"], self.call_tiers[r["call_id"]], at):
                    book.offered += 1
        elif kind == "callback_requested":
            # The request waits on under its own id, with its caller's tier.
            self.call_tiers[r["request_id"]] = self.call_tiers.get(r["call_id"], UNKNOWN_TIER)
        elif kind == "caller_connected":
            agent = self.agents[r["agent"]]
            agent.last_queue = r["queue"]
            agent.last_tier = self.call_tiers.get(r["call_id"], UNKNOWN_TIER)
            agent.answered += inside
            outcome = answered_outcome(_us(r["wait"]), self._threshold(r["queue"]))
            self._credit(r["queue"], r["call_id"], at, outcome)
        elif kind == "caller_abandoned":
            threshold = self._threshold(r["queue"])
            outcome = abandoned_outcome(_us(r["wait"]), threshold, self.short)
            self._credit(r["queue"], r["call_id"], at, outcome)
        elif kind == "caller_overflowed":
            self._credit(r["queue"], r["call_id"], at, Tally(overflowed=1))
        elif kind == "callback_failed":
            self._credit(r["queue"], r["call_id"], at, Tally(callbacks_failed=1))
        elif kind == "callback_given_up":
            self._credit(r["queue"], r["call_id"], at, Tally(callbacks_given_up=1))
        elif kind == "call_completed":
            agent = self.agents[r["agent"]]
            agent.last_queue = r["queue"]
            talk = _us(r["talk_time"])
            if inside:
                agent.completed += 1
                agent.talk += talk
            self._credit(r["queue"], r["call_id"], at, Tally(completed=1, talk=talk))
        elif kind == "agent_state":
            self._agent_state(r["agent"], r["state"], at)
        elif kind == "call_disposed" and inside:
            self.agents[r["agent"]].dispositions[r["call_id"]] = r["disposition"]

    def _agent_state(self, name: str, state: str, at: int) -> None:
        agent = self.agents[name]
        if agent.state == "wrap_up" and agent.last_queue is not None:
            wrap_up = Tally(wrap_up=max(0, at - agent.since))
            self._credit_tier(agent.last_queue, agent.last_tier, at, wrap_up)
        self._close(agent, at)
        agent.state, agent.since = state, at

    def _close(self, agent: _AgentBook, at: int) -> None:
        """Count the agent's current state from its start to ``at``, within the range."""
        counted = min(at, self.stop) - max(agent.since, self.start)
        if counted > 0:
            agent.time_in[agent.state] += counted

    def finish(
        self,
        queues: Iterable[str],
        agents: Iterable[str],
        members: Mapping[str, Iterable[str]],
        formula: ServiceLevelFormula,
    ) -> AcdReport:
        for agent in self.agents.values():
            self._close(agent, self.stop)
            agent.since = self.stop
        agent_time = {name: self._staffed(a) for name, a in self.agents.items()}
        # Listed even when nothing happened.
        for name in queues:
            self.queues.setdefault(name, _Book())
        for tier in TIERS:
            self.tiers.setdefault(tier, _Book())
        for name in agents:
            self.agents.setdefault(name, _AgentBook())

        def counts(start: int, book: _Book, staffed: int = 0, occupied: int = 0) -> CountsReport:
            return CountsReport(
                book.offered, period_figures(start, book.tally, formula, staffed, occupied)
            )

        queue_reports = {}
        for name in sorted(self.queues):
            times = [agent_time.get(a, (0, 0)) for a in members.get(name, ())]
            staffed, occupied = sum(s for s, _ in times), sum(o for _, o in times)
            queue_reports[name] = counts(self.start, self.queues[name], staffed, occupied)
        return AcdReport(
            start=self.start / _US,
            end=self.end / _US,
            queues=queue_reports,
            tiers={t: counts(self.start, self.tiers[t]) for t in sorted(self.tiers)},
            agents={name: self._agent_report(name) for name in sorted(self.agents)},
            intervals={
                (s / _US, q): counts(s, self.interval_books[(s, q)])
                for s, q in sorted(self.interval_books)
            },
        )

    @staticmethod
    def _staffed(agent: _AgentBook) -> tuple[int, int]:
        staffed = sum(t for s, t in agent.time_in.items() if s in STAFFED)
        occupied = sum(t for s, t in agent.time_in.items() if s in OCCUPIED)
        return staffed, occupied

    def _agent_report(self, name: str) -> AgentReport:
        a = self.agents[name]
        staffed, occupied = self._staffed(a)
        dispositions: dict[str, int] = defaultdict(int)
        for disposition in a.dispositions.values():
            dispositions[disposition] += 1
        logged_in = sum(t for s, t in a.time_in.items() if s != "logged_out")
        return AgentReport(
            agent=name,
            answered=a.answered,
            completed=a.completed,
            talk_time=a.talk / _US,
            wrap_up_time=a.time_in.get("wrap_up", 0) / _US,
            paused_time=a.time_in.get("paused", 0) / _US,
            logged_in_time=logged_in / _US,
            occupancy=occupied / staffed if staffed else None,
            dispositions=dict(sorted(dispositions.items())),
        )


def build_report(
    records: Iterable[Mapping[str, Any]],
    *,
    start: float,
    end: float,
    now: float,
    zone: tzinfo,
    thresholds: Mapping[str, float] | None = None,
    default_threshold: float = 20.0,
    short_abandon: float = 5.0,
    formula: ServiceLevelFormula = ServiceLevelFormula.LATE_ABANDONS,
    queues: Iterable[str] = (),
    agents: Iterable[str] = (),
    members: Mapping[str, Iterable[str]] | None = None,
) -> AcdReport:
    """The report of [``start``, ``end``) from ACD event ``records`` in time order.

    Records before ``start`` only carry state in (each agent's state, callers' tiers);
    those at or after ``end`` are ignored. ``now`` ends the agents' open states when the
    range reaches the present. ``thresholds``: each queue's service-level threshold
    (seconds; ``default_threshold`` for others). ``queues``, ``agents`` are listed even
    when idle; ``members``: queue -> the agents whose time makes its occupancy.
    """
    report = _Report(start, end, now, zone, thresholds or {}, default_threshold, short_abandon)
    stop = _us(end)
    for record in records:
        if _us(record["at"]) >= stop:
            continue  # ids and times may interleave slightly across backends
        report.apply(record)
    return report.finish(queues, agents, members or {}, formula)


def staffed_agents(
    records: Iterable[Mapping[str, Any]],
    agents: Iterable[str],
    *,
    start: float,
    end: float,
    now: float,
    zone: tzinfo,
) -> dict[float, float]:
    """Interval start -> the average number of ``agents`` staffed in it (available,
    ringing, on a call or in wrap-up: the occupancy's denominator), from the agents' state
    changes among ``records`` (time order), over [``start``, ``end``) cut at ``now``.
    Intervals nobody staffed are left out."""
    wanted = frozenset(agents)
    first, stop = _us(start), min(_us(end), _us(now))
    intervals = _Intervals(zone)
    time_in: dict[int, int] = defaultdict(int)
    states: dict[str, tuple[str, int]] = {}

    def count(state: str, since: int, until: int) -> None:
        at, until = max(since, first), min(until, stop)
        while state in STAFFED and at < until:
            boundary = min(intervals.start(at) + INTERVAL * _US, until)
            time_in[intervals.start(at)] += boundary - at
            at = boundary

    for r in records:
        if r["kind"] != "agent_state" or r["agent"] not in wanted:
            continue
        at = _us(r["at"])
        if r["agent"] in states:
            count(*states[r["agent"]], at)
        states[r["agent"]] = (r["state"], at)
    for state, since in states.values():
        count(state, since, stop)
    return {s / _US: t / (INTERVAL * _US) for s, t in sorted(time_in.items())}


def acd_records(
    engine: Engine, start: float, end: float, *, pbx: str | None = None
) -> Iterator[dict[str, Any]]:
    """The ACD events' records of [``start``, ``end``) in the order they were written,
    preceded by what carries into the range: each agent's last state change before
    ``start`` (an agent logged in at midnight counts from midnight) and the joins, within
    :data:`CARRY_IN` seconds before it, of callers whose outcome is in the range (their
    tier). Streams: rows are read as they are consumed. ``pbx``: one backend's events only
    (default: all)."""
    t = acd_events.c
    mine = [t.pbx == pbx] if pbx is not None else []
    last_states = (
        select(func.max(t.id)).where(t.kind == "agent_state", t.at < start, *mine).group_by(t.agent)
    )
    ended_inside = select(t.call_id).where(t.at >= start, t.at < end, t.kind.in_(_OUTCOMES), *mine)
    joined_before = and_(
        t.kind.in_(("caller_joined", "callback_requested")),
        t.at >= start - CARRY_IN,
        t.at < start,
        t.call_id.in_(ended_inside),
        *mine,
    )
    before = select(t.payload).where(or_(t.id.in_(last_states), joined_before)).order_by(t.id)
    during = select(t.payload).where(t.at >= start, t.at < end, *mine).order_by(t.id)
    with engine.connect() as conn:
        for (payload,) in conn.execute(before):
            yield payload
        for (payload,) in conn.execution_options(yield_per=2000).execute(during):
            yield payload


def call_answered_by(engine: Engine, call_id: str, agent: str) -> str | None:
    """The queue of ``call_id`` when the ACD history says ``agent`` answered it, else
    None (an agent's desk may tag only its own calls, also after a restart)."""
    t = acd_events.c
    query = (
        select(t.queue)
        .where(t.call_id == call_id, t.agent == agent, t.kind == "caller_connected")
        .order_by(t.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        queue: str | None = conn.execute(query).scalar()
    return queue


#: How long before a range a caller answered in it may have joined and keep its tier.
CARRY_IN = 86_400.0
_OUTCOMES = ("caller_connected", "caller_abandoned", "caller_overflowed", "callback_requested",
             "callback_failed", "callback_given_up", "call_completed")  # fmt: skip


#: Characters that make a spreadsheet read a cell as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def report_csv(
    report: AcdReport, by: str, *, dispositions: Sequence[str] = (), zone: tzinfo | None = None
) -> str:
    """One table of ``report`` as CSV (``by``: queue, agent, tier or interval), a header
    row first. Agents get a column per disposition (``dispositions`` first, in order, then
    any other counted); intervals a ``start_local`` column in ``zone``. Cells that a
    spreadsheet would read as a formula (= + - @ first) are prefixed with '."""
    rows = report.table(by)
    if by == "agent":
        names = list(dispositions)
        names += sorted({d for r in rows for d in r["dispositions"]} - set(names))
        for row in rows:
            counted = row.pop("dispositions")
            row.update({f"disposition_{d}": counted.get(d, 0) for d in names})
    if by == "interval" and zone is not None:
        for row in rows:
            row["start_local"] = datetime.fromtimestamp(row["start"], zone).isoformat()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    header = list(rows[0]) if rows else _EMPTY_HEADERS[by]
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in header])
    return out.getvalue()


_EMPTY_HEADERS = {
    "queue": ["queue"],
    "tier": ["tier"],
    "agent": ["agent"],
    "interval": ["start", "queue"],
}
