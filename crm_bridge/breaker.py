"""A circuit breaker for a remote service (the external CRM): pure, fed the time.

Three states:

* ``closed`` — requests go out; each failure counts, a success resets the count. After
  ``failures_to_open`` failures in a row the breaker opens.
* ``open`` — no request goes out (the caller fails at once) for ``open_seconds``.
* ``half-open`` — reached lazily: the first :meth:`CircuitBreaker.allow` at or after
  ``opened_at + open_seconds`` lets exactly one trial request out; every other request is
  refused while it runs. The trial's success closes the breaker, its failure opens it again
  for another ``open_seconds``; a trial abandoned without an outcome (cancelled) lets the next
  request be the trial.

Each permission is a :class:`Permit` carrying the *epoch* it was given in (the epoch changes
with every transition). An outcome reported with a permit of an earlier epoch is ignored: a
request sent while the breaker was closed and answering after it opened neither re-opens nor
closes it, and only the trial decides a half-open breaker.

No clock is read here: every method takes ``now`` (seconds, any monotonic origin). Every
transition is handed to ``on_transition`` (for logs and figures) and returned to the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["BreakerState", "CircuitBreaker", "Permit", "Transition"]

BreakerState = Literal["closed", "open", "half-open"]


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave for one request: report its outcome with this permit. ``trial``: the one request
    of a half-open breaker."""

    epoch: int
    trial: bool


@dataclass(frozen=True, slots=True)
class Transition:
    """The breaker went from ``was`` to ``to`` at ``at``; ``reason`` says why in words."""

    at: float
    was: BreakerState
    to: BreakerState
    reason: str


class CircuitBreaker:
    """The state machine of the module's docstring.

    ``state``, ``failures`` (in a row, while closed), ``opened_at`` and ``epoch`` are
    readable at any time; :meth:`state_at` also tells when an open breaker is due for its
    trial.
    """

    def __init__(
        self,
        failures_to_open: int,
        open_seconds: float,
        *,
        on_transition: Callable[[Transition], None] | None = None,
    ) -> None:
        if failures_to_open < 1:
            raise ValueError(f"failures_to_open must be at least 1 (got {failures_to_open})")
        if not open_seconds > 0:
            raise ValueError(f"open_seconds must be more than 0 (got {open_seconds})")
        self.failures_to_open = failures_to_open
        self.open_seconds = open_seconds
        self._on_transition = on_transition
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_out = False
        self._epoch = 0

    @property
    def state(self) -> BreakerState:
        """The state as of the last call (an open breaker past its time is still ``open``
        until a request asks; see :meth:`state_at`)."""
        return self._state

    @property
    def failures(self) -> int:
        """Failures in a row counted while closed (0 in the other states)."""
        return self._failures

    @property
    def opened_at(self) -> float | None:
        """When the breaker last opened; None while closed."""
        return self._opened_at

    @property
    def epoch(self) -> int:
        """Increases by one with every transition."""
        return self._epoch

    def state_at(self, now: float) -> BreakerState:
        """The state a request at ``now`` would find: ``half-open`` for an open breaker whose
        ``open_seconds`` have passed. Changes nothing."""
        if self._state == "open" and self._due(now):
            return "half-open"
        return self._state

    def allow(self, now: float) -> Permit | None:
        """A permit for one request at ``now``, or None when the breaker refuses it (open, or
        half-open with its trial out)."""
        if self._state == "open":
            if not self._due(now):
                return None
            self._move(now, "half-open", f"{self.open_seconds:g} s open: one trial request")
        if self._state == "half-open":
            if self._trial_out:
                return None
            self._trial_out = True
            return Permit(self._epoch, trial=True)
        return Permit(self._epoch, trial=False)

    def succeeded(self, now: float, permit: Permit) -> Transition | None:
        """The request of ``permit`` succeeded: a closed breaker's count starts again, a
        half-open one closes. The transition, if any."""
        if permit.epoch != self._epoch:
            return None
        if self._state == "half-open":
            self._trial_out = False
            return self._move(now, "closed", "the trial request succeeded")
        self._failures = 0
        return None

    def failed(self, now: float, permit: Permit) -> Transition | None:
        """The request of ``permit`` failed: counted while closed (opening the breaker at
        ``failures_to_open``); a half-open breaker opens again. The transition, if any."""
        if permit.epoch != self._epoch:
            return None
        if self._state == "half-open":
            self._trial_out = False
            return self._move(now, "open", "the trial request failed")
        self._failures += 1
        if self._failures >= self.failures_to_open:
            in_a_row = "failure" if self._failures == 1 else f"{self._failures} failures in a row"
            return self._move(now, "open", in_a_row)
        return None

    def abandoned(self, permit: Permit) -> None:
        """The request of ``permit`` ended without an outcome (cancelled): a half-open
        breaker's next request becomes the trial. Nothing is counted."""
        if permit.epoch == self._epoch and permit.trial and self._state == "half-open":
            self._trial_out = False

    def _due(self, now: float) -> bool:
        assert self._opened_at is not None
        return now >= self._opened_at + self.open_seconds

    def _move(self, now: float, to: BreakerState, reason: str) -> Transition:
        transition = Transition(now, self._state, to, reason)
        self._state = to
        self._epoch += 1
        self._failures = 0
        if to == "open":
            self._opened_at = now
        elif to == "closed":
            self._opened_at = None
        if self._on_transition is not None:
            self._on_transition(transition)
        return transition
