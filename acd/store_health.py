"""Routing through a Redis outage or restart: each backend goes on with what it knows, and
puts that back into Redis when Redis is back (empty or not).

:class:`GuardedState` wraps the shared store (``acd.redis_state.RedisState``) of one backend's
router:

* **Outage.** The first failed operation logs one WARNING and opens a circuit: until Redis
  answers again no operation touches the network (a stuck Redis would cost a timeout per
  operation), and each answers what cannot do harm: no pair to claim, nobody free or
  reserved, nobody waiting (no position, no head, length 0), no callback pending. A write
  is taken as done, so the router's own view (``Router._waiting``, its roster) goes on:
  callers join, agents are freed or paused. What that view cannot put back later is
  remembered: callers removed, each agent's last availability change. Per-operation
  messages are DEBUG.
* **Return.** :meth:`GuardedState.recover`, run by the shared poll every second, probes Redis
  (``RedisState.generation``: the server's run id and the one the state was seeded under).

  - Same server run (a network outage): the remembered removals and agent changes are
    replayed, then the router re-adds its waiting callers and re-reserves the agents it
    holds (``Router.reseed(free_agents=False)``, idempotent) and routes.
  - A restarted server (empty, or an old copy from disk): the first backend to notice drops
    the namespace and marks it seeded (``RedisState.claim_generation``); every backend at once
    re-adds its waiting callers (same score, same place) and re-reserves the agents ringing,
    talking or wrapping up through it, and frees its available agents only ``settle``
    seconds later. The restart erased every reservation; a backend whose roster still shows
    an agent available (it logged in there, then took calls through another backend) would
    otherwise free an agent on a call elsewhere before that backend re-reserved it.

  One INFO then says Redis is back, after how long, and what was re-seeded.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Protocol, TypeVar

from acd.state import AcdState, AcdStateUnavailable, Claim, WaitingCaller

__all__ = ["SETTLE", "GuardedState", "SharedStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds from re-reserving the agents on calls after a restart to freeing the idle ones:
#: more than the shared poll's period (1 s), so every backend has re-reserved its own first.
SETTLE = 1.5

#: Caller removals remembered during one outage at most. Most are calls that never waited
#: (the router cannot tell an earlier run's caller from any other call's end).
MAX_REMOVALS = 10_000


class SharedStore(AcdState, Protocol):
    """What :class:`GuardedState` needs beyond :class:`~acd.state.AcdState` (``RedisState``)."""

    @property
    def where(self) -> str: ...

    def generation(self) -> tuple[str, str | None]: ...

    def claim_generation(self, run_id: str) -> bool: ...


class GuardedState:
    """An :class:`~acd.state.AcdState` that keeps answering while ``store`` is unreachable
    and re-seeds it through :meth:`recover` (see the module doc)."""

    def __init__(
        self,
        store: SharedStore,
        *,
        settle: float = SETTLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._settle = settle
        self._clock = clock
        self._run_id: str | None = None  # the server run whose state we seeded
        self._down_since: float | None = None  # circuit open (Redis unreachable) since
        self._outage_start: float | None = None  # kept until the INFO line of the recovery
        self._back_at = 0.0  # when Redis answered again
        self._removals: dict[str, None] = {}  # call ids, oldest first
        self._changes: dict[str, tuple[str, Callable[[], Any]]] = {}  # agent -> last change
        self._free_at: float | None = None  # after a restart: when to free idle agents
        self._how = ""  # what the INFO line says happened
        self._tally: Counter[str] = Counter()  # what the current recovery re-seeded
        self._counting = False
        self._announced = False  # this incident's WARNING is out (one per incident)
        #: Outages (WARNING lines) and completed recoveries (INFO lines) so far.
        self.outages = 0
        self.recoveries = 0

    @property
    def healthy(self) -> bool:
        """Redis answered the last operation and no re-seeding is pending."""
        return self._down_since is None and self._free_at is None

    def open(self) -> None:
        """At start-up: raise :class:`~acd.state.AcdStateUnavailable` if Redis does not
        answer; a state seeded under an earlier server run (or none) is dropped."""
        run_id, marker = self.store.generation()
        if marker != run_id:
            self.store.claim_generation(run_id)
        self._run_id = run_id

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    # -- recovery --------------------------------------------------------------------------

    def recover(self, reseed: Callable[[bool], object]) -> None:
        """Probe Redis and re-seed it if it came back or lost its state; call every second.

        ``reseed(free_agents)`` re-seeds the router's share and routes (the driver's
        ``reseed``, i.e. ``Router.reseed``); it may run twice after a restart."""
        try:
            run_id, marker = self.store.generation()
        except AcdStateUnavailable as exc:
            if self._down_since is None:
                self._went_down(exc)
            else:
                log.debug("ACD state: Redis at %s still unavailable: %s", self.store.where, exc)
            return
        now = self._clock()
        if marker != run_id or run_id != self._run_id:
            self._restarted(run_id, marker, reseed, now)
        elif self._down_since is not None:
            self._reconnected(reseed)
        elif self._free_at is not None and now >= self._free_at:
            self._reseed(reseed, free_agents=True)
            if self._down_since is None:
                self._free_at = None
                self._recovered()

    def _restarted(
        self, run_id: str, marker: str | None, reseed: Callable[[bool], object], now: float
    ) -> None:
        if self._outage_start is None:
            self._outage_start = self._down_since
        self._back_at = now
        if not self._announced:
            self._announced = True
            self.outages += 1
            log.warning(
                "ACD state: Redis at %s was restarted and lost the shared callers and agents; "
                "re-seeding it from this backend",
                self.store.where,
            )
        if marker != run_id:
            try:
                dropped = self.store.claim_generation(run_id)
            except AcdStateUnavailable as exc:
                self._went_down(exc)
                return
            old = "empty" if marker is None else "an old copy of the state, dropped"
            self._how = f"restarted, {old}" if dropped else "restarted"
        else:
            self._how = "restarted"
        self._run_id = run_id
        # The store was emptied: the router's view is the whole truth now.
        self._removals.clear()
        self._changes.clear()
        self._down_since = None
        self._free_at = now + self._settle
        self._tally.clear()
        self._reseed(reseed, free_agents=False)
        if self._settle <= 0:
            self.recover(reseed)

    def _reconnected(self, reseed: Callable[[bool], object]) -> None:
        try:
            while self._removals:
                call_id = next(iter(self._removals))
                self.store.remove_caller(call_id)
                del self._removals[call_id]
            while self._changes:
                agent, (kind, change) = next(iter(self._changes.items()))
                if change() and kind == "free":
                    self._tally["free"] += 1
                del self._changes[agent]
        except AcdStateUnavailable as exc:
            log.debug("ACD state: Redis at %s still unavailable: %s", self.store.where, exc)
            return
        if self._outage_start is None:
            self._outage_start = self._down_since
            self._how = "its state kept"
        self._back_at = self._clock()
        self._down_since = None
        self._reseed(reseed, free_agents=False)
        if self._down_since is None and self._free_at is None:
            self._recovered()

    def _reseed(self, reseed: Callable[[bool], object], *, free_agents: bool) -> None:
        self._counting = True
        try:
            reseed(free_agents)
        finally:
            self._counting = False

    def _recovered(self) -> None:
        self.recoveries += 1
        tally, start = self._tally, self._outage_start
        after = "" if start is None else f" after {self._back_at - start:.1f} s"
        log.info(
            "ACD state: Redis at %s back%s (%s); re-seeded %d waiting callers, %d agents on "
            "calls, %d free agents",
            self.store.where,
            after,
            self._how,
            tally["callers"],
            tally["held"],
            tally["free"],
        )
        self._tally = Counter()
        self._outage_start = None
        self._announced = False

    def _went_down(self, exc: AcdStateUnavailable) -> None:
        self._down_since = self._clock()
        cause = exc.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
        if self._announced:  # down again while re-seeding: the same incident
            log.debug("ACD state: Redis at %s unavailable again (%s)", self.store.where, reason)
            return
        self._announced = True
        self.outages += 1
        log.warning(
            "ACD state: Redis at %s unavailable (%s); routing this backend's callers and agents "
            "from memory until it is back, then re-seeding it",
            self.store.where,
            reason,
        )

    def _call(
        self,
        what: str,
        operation: Callable[[], T],
        fallback: T,
        defer: Callable[[], None] | None = None,
    ) -> T:
        if self._down_since is None:
            try:
                return operation()
            except AcdStateUnavailable as exc:
                self._went_down(exc)
        log.debug("ACD state unavailable: %s answered from memory", what)
        if defer is not None:
            defer()
        return fallback

    def _count(self, kind: str, done: object) -> None:
        if self._counting and done and self._down_since is None:
            self._tally[kind] += 1

    # -- AcdState --------------------------------------------------------------------------

    def add_caller(self, caller: WaitingCaller) -> bool:
        # Not remembered: the router keeps it in its view, and reseed adds it.
        added = self._call(
            f"add_caller({caller.call_id!r})", partial(self.store.add_caller, caller), True
        )
        self._count("callers", added)
        return added

    def remove_caller(self, call_id: str) -> WaitingCaller | None:
        def defer() -> None:
            self._removals[call_id] = None
            if len(self._removals) > MAX_REMOVALS:
                del self._removals[next(iter(self._removals))]

        return self._call(
            f"remove_caller({call_id!r})", partial(self.store.remove_caller, call_id), None, defer
        )

    def waiting(self, queue: str) -> list[WaitingCaller]:
        return self._call(f"waiting({queue!r})", partial(self.store.waiting, queue), [])

    def position(self, call_id: str) -> int | None:
        # None while down, as waiting() is empty: the router counts its own callers.
        return self._call(f"position({call_id!r})", partial(self.store.position, call_id), None)

    def head(self, queue: str) -> WaitingCaller | None:
        return self._call(f"head({queue!r})", partial(self.store.head, queue), None)

    def length(self, queue: str) -> int:
        return self._call(f"length({queue!r})", partial(self.store.length, queue), 0)

    def find_callback(self, queue: str, number: str) -> WaitingCaller | None:
        # None while down: a duplicate request is less harm than a caller left on hold.
        find = partial(self.store.find_callback, queue, number)
        return self._call(f"find_callback({queue!r})", find, None)

    def set_available(
        self, agent: str, scores: Mapping[str, float], *, if_idle: bool = False
    ) -> bool:
        change = partial(self.store.set_available, agent, dict(scores), if_idle=if_idle)
        done = self._call(
            f"set_available({agent!r})", change, True, partial(self._defer, agent, "free", change)
        )
        self._count("free", done)
        return done

    def set_unavailable(self, agent: str, *, if_idle: bool = False) -> bool:
        change = partial(self.store.set_unavailable, agent, if_idle=if_idle)
        return self._call(
            f"set_unavailable({agent!r})", change, False, partial(self._defer, agent, "off", change)
        )

    def reserved(self, agent: str) -> bool:
        return self._call(f"reserved({agent!r})", partial(self.store.reserved, agent), False)

    def available(self, queue: str) -> list[str]:
        return self._call(f"available({queue!r})", partial(self.store.available, queue), [])

    def reserve(self, agent: str) -> None:
        change = partial(self.store.reserve, agent)
        self._call(f"reserve({agent!r})", change, None, partial(self._defer, agent, "hold", change))
        self._count("held", True)

    def claim(self, queue: str, pbx: str, agents: int = 1) -> Claim | None:
        claim = partial(self.store.claim, queue, pbx, agents)
        return self._call(f"claim({queue!r}, {pbx!r})", claim, None)

    def _defer(self, agent: str, kind: str, change: Callable[[], Any]) -> None:
        # Only the last change counts: it is the agent's state in the router's view now.
        self._changes.pop(agent, None)
        self._changes[agent] = (kind, change)
