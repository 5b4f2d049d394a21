"""Live queue figures for supervisors, fed by the ACD's events (``acd.events``).

:class:`LiveFigures` takes every ACD event with :meth:`LiveFigures.apply` and answers
:meth:`LiveFigures.figures` for a queue at a given time with a :class:`QueueFigures`: calls
waiting, longest current wait, agent counts, and for today (the calendar day in the
configured time zone) and for a sliding window (default the last 15 minutes) the service
level, ASA, AHT, abandonment rate and occupancy. Pure: no I/O, time comes from the events
and the caller. Each event costs O(1) amortised (running totals, deques for the window);
a snapshot costs O(agents of the queue).

Definitions (``docs/queue-figures.md`` has them for supervisors):

* A call counts in the period in which its outcome happened (answer, abandon, overflow,
  completion), not the one in which it joined. The window is (now - window, now].
* **Short abandons**: callers who hang up after waiting less than ``short_abandon`` seconds
  are left out of every figure except their own count (misdials, impatient redials).
* **Overflowed** callers left this queue for another target: neither answered nor abandoned
  here, so they are counted apart and are in no ratio.
* **Callbacks**: a callback request counts as answered only when the customer answers. A
  dial that does not reach the customer (busy, no answer, failed) is counted apart
  (``callbacks_failed``, one per dial) and the request keeps waiting for its retry; a
  request dropped after its last attempt is counted apart too (``callbacks_given_up``)
  and waits no more. Neither is in any ratio.
* **Service level** (in time = waited ≤ ``service_threshold``), by
  :class:`ServiceLevelFormula`, default answered in time / (answered + abandoned after the
  threshold).
* **ASA** = total wait of answered calls / answered calls.
* **AHT** = (talk time + wrap-up time) / completed calls, as QueueMetrics does. Talk time
  counts when the call completes; an agent's wrap-up counts for the queue of the agent's
  last call when the wrap-up ends.
* **Abandonment rate** = abandoned / (answered + abandoned), short abandons excluded.
* **Occupancy** = time on a call or in wrap-up / time logged in and not paused (available,
  ringing, on a call, wrap-up), summed over the queue's member agents. An agent counts in
  every queue they are a member of, whichever queue their calls came from.

Events are expected in time order, as the ACD emits them; snapshots at or after the last
event. Times are kept as integer microseconds so running sums never drift.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any

from acd.estimate import WaitEstimate, estimated_wait
from acd.events import (
    AcdEvent,
    AgentStateChanged,
    CallbackFailed,
    CallbackGivenUp,
    CallbackRequested,
    CallCompleted,
    CallerAbandoned,
    CallerConnected,
    CallerJoined,
    CallerOverflowed,
)

STAFFED = frozenset({"available", "ringing", "on_call", "wrap_up"})
"""Agent states that count as logged in and not paused (occupancy's denominator)."""
OCCUPIED = frozenset({"on_call", "wrap_up"})
"""Agent states that count as handling a call (occupancy's numerator)."""
#: ``busy``: available to the ACD but on a call it did not make (app_queue, a direct call).
BUSY = frozenset({"ringing", "on_call", "wrap_up", "busy"})
"""Agent states in which an agent cannot take a new call, though not paused."""

_US = 1_000_000


def _us(seconds: float) -> int:
    return round(seconds * _US)


class ServiceLevelFormula(StrEnum):
    """Which calls a service level counts. "In time" = waited at most the threshold."""

    LATE_ABANDONS = "answered_and_late_abandons"
    """Answered in time / (answered + abandoned after the threshold): a caller who gave up
    before the threshold is neither a success nor a failure. The common default."""
    ALL_ABANDONS = "answered_and_abandoned"
    """Answered in time / (answered + abandoned): every abandon is a failure."""
    ANSWERED_ONLY = "answered_only"
    """Answered in time / answered: abandons ignored (flatters a queue that loses callers)."""
    ABANDONS_IN_TIME_MET = "abandons_in_time_met"
    """(Answered in time + abandoned in time) / (answered + abandoned): an early abandon
    counts as met."""


@dataclass(frozen=True, slots=True)
class FigureRules:
    """How figures are counted. ``fallback_aht`` (seconds) serves wait estimates until a
    handle time has been observed."""

    service_threshold: float = 20.0
    short_abandon: float = 5.0
    window: float = 900.0
    service_level_formula: ServiceLevelFormula = ServiceLevelFormula.LATE_ABANDONS
    timezone: tzinfo = UTC
    fallback_aht: float | None = None


@dataclass(frozen=True, slots=True)
class PeriodFigures:
    """Counts and ratios over one period (today, or the sliding window) starting at ``start``
    (epoch seconds). A ratio with nothing to count is None, never 0 or 1."""

    start: float
    answered: int
    answered_in_time: int
    abandoned: int
    abandoned_in_time: int
    short_abandoned: int
    overflowed: int
    completed: int
    service_level: float | None
    asa: float | None
    aht: float | None
    abandonment_rate: float | None
    occupancy: float | None
    #: Callback dials that did not reach the customer, and requests given up after them.
    callbacks_failed: int = 0
    callbacks_given_up: int = 0


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """A queue at instant ``at``: JSON-ready through :meth:`to_record` (seconds as floats).

    ``estimated_wait`` is for a caller joining now, at position ``calls_waiting + 1``.
    """

    queue: str
    at: float
    service_threshold: float
    calls_waiting: int
    longest_wait: float
    agents_logged_in: int
    agents_available: int
    agents_busy: int
    agents_paused: int
    today: PeriodFigures
    window: PeriodFigures
    estimated_wait: WaitEstimate

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Tally:
    """Additive counters of call outcomes; durations in microseconds. The live figures and
    the reports (``acd.report``) count with it, so both follow the same rules."""

    answered: int = 0
    answered_in_time: int = 0
    answer_wait: int = 0
    abandoned: int = 0
    abandoned_in_time: int = 0
    short_abandoned: int = 0
    overflowed: int = 0
    completed: int = 0
    talk: int = 0
    wrap_up: int = 0
    callbacks_failed: int = 0
    callbacks_given_up: int = 0

    def add(self, other: Tally, sign: int = 1) -> None:
        for name in _TALLY_FIELDS:
            setattr(self, name, getattr(self, name) + sign * getattr(other, name))


_TALLY_FIELDS = tuple(f.name for f in fields(Tally))


def answered_outcome(wait: int, threshold: int) -> Tally:
    """An answered call that waited ``wait`` µs; in time when ``wait <= threshold`` µs."""
    return Tally(answered=1, answered_in_time=int(wait <= threshold), answer_wait=wait)


def abandoned_outcome(wait: int, threshold: int, short_abandon: int) -> Tally:
    """A caller who hung up after ``wait`` µs: a short abandon under ``short_abandon`` µs."""
    if wait < short_abandon:
        return Tally(short_abandoned=1)
    return Tally(abandoned=1, abandoned_in_time=int(wait <= threshold))


def period_figures(
    start: int, tally: Tally, formula: ServiceLevelFormula, staffed: int, occupied: int
) -> PeriodFigures:
    """The counts and ratios of ``tally`` over a period starting at ``start`` µs, with the
    agents' ``staffed`` and ``occupied`` µs in it (occupancy)."""
    handled = tally.answered + tally.abandoned
    return PeriodFigures(
        start=start / _US,
        answered=tally.answered,
        answered_in_time=tally.answered_in_time,
        abandoned=tally.abandoned,
        abandoned_in_time=tally.abandoned_in_time,
        short_abandoned=tally.short_abandoned,
        overflowed=tally.overflowed,
        completed=tally.completed,
        service_level=service_level_of(tally, formula),
        asa=_ratio(tally.answer_wait / _US, tally.answered),
        aht=_aht(tally),
        abandonment_rate=_ratio(tally.abandoned, handled),
        occupancy=_ratio(occupied, staffed),
        callbacks_failed=tally.callbacks_failed,
        callbacks_given_up=tally.callbacks_given_up,
    )


def service_level_of(t: Tally, formula: ServiceLevelFormula) -> float | None:
    """The service level of ``t`` by ``formula``; None with nothing to count."""
    match formula:
        case ServiceLevelFormula.LATE_ABANDONS:
            return _ratio(t.answered_in_time, t.answered + t.abandoned - t.abandoned_in_time)
        case ServiceLevelFormula.ALL_ABANDONS:
            return _ratio(t.answered_in_time, t.answered + t.abandoned)
        case ServiceLevelFormula.ANSWERED_ONLY:
            return _ratio(t.answered_in_time, t.answered)
        case ServiceLevelFormula.ABANDONS_IN_TIME_MET:
            return _ratio(t.answered_in_time + t.abandoned_in_time, t.answered + t.abandoned)


@dataclass(frozen=True, slots=True)
class _Day:
    day: date
    start: int
    end: int


class _Calendar:
    """Local calendar days as [start, end) in microseconds; remembers the last day asked,
    since nearly every lookup falls in it."""

    def __init__(self, timezone: tzinfo) -> None:
        self._tz = timezone
        self._last = _Day(date.min, 0, 0)

    def day(self, at: int) -> _Day:
        if not self._last.start <= at < self._last.end:
            today = datetime.fromtimestamp(at / _US, self._tz).date()
            self._last = _Day(today, self._midnight(today), self._midnight(today + timedelta(1)))
        return self._last

    def _midnight(self, day: date) -> int:
        # A midnight skipped by a DST change resolves (fold=0) to the day's first instant.
        return _us(datetime.combine(day, time(), tzinfo=self._tz).timestamp())


@dataclass(slots=True)
class _Agent:
    """One agent's state and staffed time: closed segments for the window, totals for the
    day. Only staffed segments are kept; paused and logged-out time counts nowhere."""

    state: str = "logged_out"
    since: int = 0
    last_queue: str | None = None
    segments: deque[tuple[int, int, bool]] = field(default_factory=deque)  # start, end, occupied
    window_staffed: int = 0
    window_occupied: int = 0
    day: date = date.min
    day_staffed: int = 0
    day_occupied: int = 0

    def change(self, state: str, at: int, calendar: _Calendar, window: int) -> None:
        if self.state in STAFFED and at > self.since:
            occupied = self.state in OCCUPIED
            self.segments.append((self.since, at, occupied))
            self.window_staffed += at - self.since
            self.window_occupied += (at - self.since) * occupied
            self._evict(at - window)
            today = calendar.day(at)
            if today.day != self.day:
                self.day, self.day_staffed, self.day_occupied = today.day, 0, 0
            counted = at - max(self.since, today.start)
            self.day_staffed += counted
            self.day_occupied += counted * occupied
        self.state, self.since = state, at

    def _evict(self, start: int) -> None:
        while self.segments and self.segments[0][1] <= start:
            begin, end, occupied = self.segments.popleft()
            self.window_staffed -= end - begin
            self.window_occupied -= (end - begin) * occupied

    def window_time(self, start: int, now: int) -> tuple[int, int]:
        """(staffed, occupied) microseconds within (start, now]."""
        self._evict(start)
        staffed, occupied = self.window_staffed, self.window_occupied
        if self.segments and self.segments[0][0] < start:
            # Only the oldest segment can straddle the window's start: segments never overlap.
            begin, _, was_occupied = self.segments[0]
            staffed -= start - begin
            occupied -= (start - begin) * was_occupied
        return self._with_open(staffed, occupied, start, now)

    def day_time(self, today: _Day, now: int) -> tuple[int, int]:
        """(staffed, occupied) microseconds from the start of ``today`` to ``now``."""
        if today.day == self.day:
            return self._with_open(self.day_staffed, self.day_occupied, today.start, now)
        return self._with_open(0, 0, today.start, now)

    def _with_open(self, staffed: int, occupied: int, start: int, now: int) -> tuple[int, int]:
        if self.state in STAFFED:
            current = max(0, now - max(self.since, start))
            staffed += current
            occupied += current * (self.state in OCCUPIED)
        return staffed, occupied


@dataclass(slots=True)
class _Queue:
    waiting: dict[str, int] = field(default_factory=dict)  # call id -> joined at
    # Join order with lazy deletion: the head is dropped once its caller no longer waits.
    joins: deque[tuple[int, str]] = field(default_factory=deque)
    outcomes: deque[tuple[int, Tally]] = field(default_factory=deque)
    window: Tally = field(default_factory=Tally)
    day: date = date.min
    today: Tally = field(default_factory=Tally)

    def evict(self, start: int) -> None:
        while self.outcomes and self.outcomes[0][0] <= start:
            self.window.add(self.outcomes.popleft()[1], -1)

    def longest_wait(self, now: int) -> int:
        while self.joins and self.waiting.get(self.joins[0][1]) != self.joins[0][0]:
            self.joins.popleft()
        return max(0, now - self.joins[0][0]) if self.joins else 0


class LiveFigures:
    """Running figures of every queue. ``members``: queue -> the agents who serve it."""

    def __init__(
        self, members: Mapping[str, Iterable[str]], rules: FigureRules | None = None
    ) -> None:
        self.rules = rules or FigureRules()
        self._members = {queue: frozenset(agents) for queue, agents in members.items()}
        self._queues: dict[str, _Queue] = {}
        self._agents: dict[str, _Agent] = {}
        self._calendar = _Calendar(self.rules.timezone)
        self._window = _us(self.rules.window)
        self._threshold = _us(self.rules.service_threshold)
        self._short = _us(self.rules.short_abandon)

    def set_members(self, queue: str, agents: Iterable[str]) -> None:
        """Replace who serves ``queue``; agent counts and occupancy follow at once."""
        self._members[queue] = frozenset(agents)

    def apply(self, event: AcdEvent) -> None:
        """Take one ACD event into the figures (events the figures do not use are ignored)."""
        at = _us(event.at)
        match event:
            case CallerJoined():
                queue = self._queue(event.queue)
                queue.waiting[event.call_id] = at
                queue.joins.append((at, event.call_id))
            case CallerConnected():
                self._agent(event.agent).last_queue = event.queue
                outcome = answered_outcome(_us(event.wait), self._threshold)
                self._record(event.queue, event.call_id, at, outcome)
            case CallerAbandoned():
                outcome = abandoned_outcome(_us(event.wait), self._threshold, self._short)
                self._record(event.queue, event.call_id, at, outcome)
            case CallerOverflowed():
                self._record(event.queue, event.call_id, at, Tally(overflowed=1))
            case CallbackRequested():
                # The caller hung up leaving a request, which waits on under its own id:
                # the call itself no longer waits, and is no outcome of the queue.
                self._queue(event.queue).waiting.pop(event.call_id, None)
            case CallbackFailed():
                # Not answered: the request waits on for its retry (or is given up next).
                self._record(event.queue, None, at, Tally(callbacks_failed=1))
            case CallbackGivenUp():
                self._record(event.queue, event.call_id, at, Tally(callbacks_given_up=1))
            case CallCompleted():
                self._agent(event.agent).last_queue = event.queue
                self._record(event.queue, None, at, Tally(completed=1, talk=_us(event.talk_time)))
            case AgentStateChanged():
                agent = self._agent(event.agent)
                if agent.state == "wrap_up" and agent.last_queue is not None:
                    wrap_up = Tally(wrap_up=max(0, at - agent.since))
                    self._record(agent.last_queue, None, at, wrap_up)
                agent.change(event.state, at, self._calendar, self._window)

    def figures(self, queue: str, now: float) -> QueueFigures:
        """The figures of ``queue`` at ``now`` (epoch seconds)."""
        at = _us(now)
        book = self._queues.get(queue) or _Queue()
        book.evict(at - self._window)
        today = self._calendar.day(at)
        day_tally = book.today if book.day == today.day else Tally()
        members = [self._agents.get(a) or _Agent() for a in self._members.get(queue, ())]
        states = [m.state for m in members]
        available = states.count("available")
        busy = sum(s in BUSY for s in states)
        window_start = at - self._window
        window = self._period(
            window_start, book.window, [m.window_time(window_start, at) for m in members]
        )
        day = self._period(today.start, day_tally, [m.day_time(today, at) for m in members])
        return QueueFigures(
            queue=queue,
            at=now,
            service_threshold=self.rules.service_threshold,
            calls_waiting=len(book.waiting),
            longest_wait=book.longest_wait(at) / _US,
            agents_logged_in=available + busy + states.count("paused"),
            agents_available=available,
            agents_busy=busy,
            agents_paused=states.count("paused"),
            today=day,
            window=window,
            estimated_wait=self._estimate(
                len(book.waiting) + 1, available + busy, available, window.aht, day.aht
            ),
        )

    def estimated_wait(self, queue: str, now: float, position: int) -> WaitEstimate:
        """Expected remaining wait of the caller at ``position`` (1 = next) of ``queue``, by
        the position method of :func:`acd.estimate.estimated_wait` with the observed AHT
        (window, else today, else ``rules.fallback_aht``)."""
        # On every caller's arrival: only what the estimate reads (agents' states and the
        # handle times), not every agent's occupancy as :meth:`figures` computes it.
        at = _us(now)
        book = self._queues.get(queue) or _Queue()
        book.evict(at - self._window)
        today = self._calendar.day(at)
        day_tally = book.today if book.day == today.day else Tally()
        states = [
            (self._agents.get(a) or _Agent()).state for a in self._members.get(queue, ())
        ]
        available = states.count("available")
        staffed = available + sum(s in BUSY for s in states)
        return self._estimate(position, staffed, available, _aht(book.window), _aht(day_tally))

    def _estimate(
        self,
        position: int,
        staffed: int,
        available: int,
        window_aht: float | None,
        today_aht: float | None,
    ) -> WaitEstimate:
        aht = window_aht if window_aht is not None else today_aht
        return estimated_wait(
            position, staffed, aht, agents_available=available, fallback_aht=self.rules.fallback_aht
        )

    def _queue(self, name: str) -> _Queue:
        return self._queues.setdefault(name, _Queue())

    def _agent(self, name: str) -> _Agent:
        return self._agents.setdefault(name, _Agent())

    def _record(self, name: str, call_id: str | None, at: int, outcome: Tally) -> None:
        queue = self._queue(name)
        if call_id is not None:
            queue.waiting.pop(call_id, None)
        queue.evict(at - self._window)
        queue.outcomes.append((at, outcome))
        queue.window.add(outcome)
        day = self._calendar.day(at).day
        if day > queue.day:
            queue.day, queue.today = day, Tally()
        if day == queue.day:  # an outcome from an earlier day no longer changes today
            queue.today.add(outcome)

    def _period(self, start: int, tally: Tally, agent_time: list[tuple[int, int]]) -> PeriodFigures:
        staffed = sum(s for s, _ in agent_time)
        occupied = sum(o for _, o in agent_time)
        return period_figures(start, tally, self.rules.service_level_formula, staffed, occupied)


def _aht(tally: Tally) -> float | None:
    """Average handle time (talk and wrap-up per completed call), seconds."""
    return _ratio((tally.talk + tally.wrap_up) / _US, tally.completed)


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None
