"""A ticket's service-level clock: when its first response and its resolution are due, and
whether each is ok, near (warning), past (breached) or kept (met). Pure: the policy, the
calendar, the ticket's opening time, its status history and ``now`` are passed in.

Each deadline allows a number of *business* seconds (:class:`SlaPolicy`) counted in the
calendar (:class:`~cti.business_hours.BusinessHours`: weekends, holidays, the time zone's
daylight-saving changes), and only while the clock runs:

* it runs while the ticket is ``new``, ``open`` or ``pending_third_party`` (the center owes
  the next step, even when it waits for a supplier);
* it stops while ``pending_customer`` (:data:`tickets.workflow.PAUSED`): that time does not
  count, so resuming pushes the due instant later by the open time spent waiting. Both
  deadlines pause: a ticket waits on the customer once someone has asked them something;
* it stops when the deadline is met: the first response at ``first_response_at`` (or when
  the ticket is first resolved, closed or merged without one), the resolution when the
  ticket becomes resolved, closed or merged. A reopened ticket's resolution clock runs again
  from the reopening with what was left; the days it spent resolved do not count.

A deadline is **met** when it was met by its due instant (on the dot counts), **breached**
once the due instant passed first (and stays so, even when met later), **warning** from
``warn_before`` ahead of the due instant (business time), otherwise **ok**. While the clock
is stopped the due instant shown is the one it would have if the clock ran again now.

:meth:`SlaClock.next_event` is the next instant a warning or breach happens by time alone,
so the service schedules one timer per ticket and never polls; any status change builds a
new clock (and a new timer).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from cti.business_hours import BusinessHours
from tickets.workflow import DONE, PAUSED, STATUSES

__all__ = [
    "DEADLINES",
    "DeadlineName",
    "DeadlineStatus",
    "SlaClock",
    "SlaEvent",
    "SlaPolicy",
    "SlaState",
    "worst",
]

DeadlineName = Literal["first_response", "resolution"]
SlaState = Literal["ok", "warning", "breached", "met"]
DEADLINES: tuple[DeadlineName, ...] = ("first_response", "resolution")
#: Which state of two is the worse, for a ticket's one ``sla_state`` (met is the best).
_SEVERITY: dict[SlaState, int] = {"met": 0, "ok": 1, "warning": 2, "breached": 3}


def worst(*states: SlaState) -> SlaState:
    """The worst of ``states`` (breached > warning > ok > met)."""
    return max(states, key=_SEVERITY.__getitem__)


@dataclass(frozen=True)
class SlaPolicy:
    """The promise for one customer tier and priority, in business seconds.

    The warning comes ``warn_fraction`` of a deadline's allowance ahead of it, or
    ``warn_seconds`` ahead, whichever is earlier (never before the clock starts).
    """

    first_response: float
    resolution: float
    warn_fraction: float = 0.0
    warn_seconds: float = 0.0

    def __post_init__(self) -> None:
        for name in ("first_response", "resolution", "warn_seconds"):
            if not getattr(self, name) >= 0:  # also refuses NaN
                raise ValueError(f"{name} must be 0 or more seconds, got {getattr(self, name)}")
        if not 0 <= self.warn_fraction < 1:
            raise ValueError(
                f"warn_fraction must be at least 0 and below 1, got {self.warn_fraction}"
            )

    def allowance(self, deadline: DeadlineName) -> float:
        """The business seconds ``deadline`` allows."""
        return self.first_response if deadline == "first_response" else self.resolution

    def warning_lead(self, deadline: DeadlineName) -> float:
        """How many business seconds before ``deadline`` is due the warning comes."""
        allowance = self.allowance(deadline)
        return min(allowance, max(self.warn_fraction * allowance, self.warn_seconds))


@dataclass(frozen=True)
class DeadlineStatus:
    """One deadline at an instant: ``due`` and ``warn_at`` (epoch seconds), ``state``,
    ``met_at`` when it was met, ``running`` whether its clock runs, ``remaining`` the business
    seconds left (0 once due)."""

    name: DeadlineName
    due: float
    warn_at: float
    state: SlaState
    met_at: float | None
    running: bool
    remaining: float


@dataclass(frozen=True)
class SlaEvent:
    """A deadline reaching ``state`` (``warning`` or ``breached``) at ``at``."""

    at: float
    deadline: DeadlineName
    state: Literal["warning", "breached"]


@dataclass(frozen=True)
class _Run:
    """The clock of one deadline: the stretches it runs, and when (if) it was met."""

    spans: tuple[tuple[float, float | None], ...]  # [start, end); end None: running now
    met_at: float | None


class SlaClock:
    """The two deadlines of one ticket.

    ``history``: the ticket's status changes after it was opened, as ``(at, status)`` in time
    order (it starts ``new`` at ``opened_at``); ``first_response_at``: when someone first
    answered the customer, if anyone has. Instants passed to the queries are expected to be
    no earlier than the last change. ValueError for an unknown status or changes out of order.
    """

    def __init__(
        self,
        policy: SlaPolicy,
        calendar: BusinessHours,
        opened_at: float,
        history: Iterable[tuple[float, str]] = (),
        *,
        first_response_at: float | None = None,
    ) -> None:
        self.policy = policy
        self.calendar = calendar
        self.opened_at = opened_at
        self.history = tuple(history)
        last = opened_at
        for at, status in self.history:
            if status not in STATUSES:
                raise ValueError(f"{status!r} is no ticket status; statuses are {STATUSES}")
            if at < last:
                raise ValueError(f"status change at {at} is before the one at {last}: sort them")
            last = at
        if first_response_at is not None and first_response_at < opened_at:
            raise ValueError("first_response_at is before the ticket was opened")
        done_at = self._first_done()
        if first_response_at is None or (done_at is not None and done_at < first_response_at):
            first_response_at = done_at
        self.first_response_at = first_response_at
        self._runs: dict[DeadlineName, _Run] = {
            "first_response": self._run(stop_at=first_response_at, stop_when_done=False),
            "resolution": self._run(stop_at=None, stop_when_done=True),
        }

    # -- queries ---------------------------------------------------------------------------

    def deadline(self, name: DeadlineName, now: float) -> DeadlineStatus:
        """``name``'s due instant, warning instant and state at ``now``."""
        run = self._runs[name]
        allowance = self.policy.allowance(name)
        due, left = self._reach(run, allowance, now)
        warn_at, _ = self._reach(run, allowance - self.policy.warning_lead(name), now)
        state: SlaState
        if run.met_at is not None:
            state = "met" if run.met_at <= due else "breached"
        elif now >= due:
            state = "breached"
        elif now >= warn_at and warn_at < due:
            state = "warning"
        else:
            state = "ok"
        running = run.spans[-1][1] is None if run.spans else False
        return DeadlineStatus(name, due, warn_at, state, run.met_at, running, max(left, 0.0))

    def first_response(self, now: float) -> DeadlineStatus:
        """The first-response deadline at ``now``."""
        return self.deadline("first_response", now)

    def resolution(self, now: float) -> DeadlineStatus:
        """The resolution deadline at ``now``."""
        return self.deadline("resolution", now)

    def first_response_due(self, now: float) -> float:
        """When the first response is due (as of ``now``: a pause pushes it)."""
        return self.first_response(now).due

    def resolution_due(self, now: float) -> float:
        """When the resolution is due (as of ``now``: a pause pushes it)."""
        return self.resolution(now).due

    def state(self, now: float) -> SlaState:
        """The ticket's one SLA state: the worse of its two deadlines'."""
        return worst(*(self.deadline(name, now).state for name in DEADLINES))

    def events(self, now: float) -> list[SlaEvent]:
        """Every warning and breach still to happen after ``now`` by time alone (a running,
        unmet clock), earliest first; none while the clocks are stopped."""
        found = []
        for name in DEADLINES:
            status = self.deadline(name, now)
            if not status.running or status.met_at is not None:
                continue
            if now < status.warn_at < status.due:
                found.append(SlaEvent(status.warn_at, name, "warning"))
            if now < status.due:
                found.append(SlaEvent(status.due, name, "breached"))
        return sorted(found, key=lambda e: (e.at, DEADLINES.index(e.deadline)))

    def next_event(self, now: float) -> SlaEvent | None:
        """The next warning or breach strictly after ``now``, or None when nothing will
        happen unless the ticket changes. Two at one instant: the first response's first;
        ask again with that instant for the next (read both states then)."""
        upcoming = self.events(now)
        return upcoming[0] if upcoming else None

    # -- the clocks ------------------------------------------------------------------------

    def _first_done(self) -> float | None:
        return next((at for at, status in self.history if status in DONE), None)

    def _run(self, *, stop_at: float | None, stop_when_done: bool) -> _Run:
        # The stretches the clock runs: from the opening, stopped by a pause or (resolution)
        # a done status, until ``stop_at`` (first response: when it was given).
        spans: list[tuple[float, float | None]] = []
        running_since: float | None = self.opened_at
        done_since: float | None = None
        for at, status in self.history:
            if stop_at is not None and at >= stop_at:
                break
            runs = status not in PAUSED and status not in DONE
            if running_since is not None and not runs:
                spans.append((running_since, at))
                running_since = None
            elif running_since is None and runs:
                running_since = at
            # Resolved then closed: met at the resolution; reopened: not met any more.
            if status not in DONE:
                done_since = None
            elif done_since is None:
                done_since = at
        if running_since is not None:
            spans.append((running_since, stop_at))
        met_at = done_since if stop_when_done else stop_at
        return _Run(tuple(spans), met_at)

    def _reach(self, run: _Run, allowance: float, now: float) -> tuple[float, float]:
        """The instant ``allowance`` business seconds of running time are used up, and the
        business seconds left at ``now`` (negative once past). A stopped clock's instant is
        where it would be if it ran again from now (or from when it stopped, if later)."""
        used = 0.0
        hours = self.calendar
        for start, end in run.spans:
            reach = hours.add_business_seconds(start, max(allowance - used, 0.0))
            if end is None:
                return reach, allowance - used - hours.business_seconds(start, now)
            if reach <= end:
                return reach, allowance - used - hours.business_seconds(start, min(end, now))
            used += hours.business_seconds(start, end)
        stopped = run.spans[-1][1] if run.spans else self.opened_at
        assert stopped is not None
        # Met: fixed where it stood when met (a pause then did not count); not met: as if
        # the clock ran again now.
        restart = max(now if run.met_at is None else run.met_at, stopped)
        return hours.add_business_seconds(restart, allowance - used), allowance - used
