"""Where the ACD keeps who waits and who is free.

The router (``acd.router``) decides *scores*; a state store only keeps things in score order
and hands out pairs atomically. That split lets the same router run on one process with
:class:`MemoryState` (the embedded default) or on several processes sharing one agent pool
through ``acd.redis_state.RedisState`` (sorted sets + a Lua script), without ever offering one
agent two calls or one call to two agents.

Scores:

* a waiting caller's ``score``: **higher goes first**. The router sets it once, at join, to
  ``tier_weight - aging_rate * joined_at``; since every waiting caller ages at the same rate,
  this static number orders callers exactly as ``tier_weight + aging_rate * wait`` would at
  any instant, which is what lets a sorted set do priority with aging.
* an available agent's ``score`` per queue: **lower goes first** (penalty first, then the
  queue's strategy: idle since, calls taken, last offer, proficiency).

Presence: an agent is *free* (in the free lists), *reserved* (handed out by :meth:`claim`
and not yet made free or taken off again by the backend holding it) or neither (paused,
logged out, wrapping up elsewhere...). Several backends share the pool, and one may hold a
stale view of an agent (it logged in there, then took calls through another backend; or it
just restarted). So commands from such a view pass ``if_idle=True``: they never touch a
reservation, which only the holder ends. That is what keeps an agent from two calls.

Memberships: which queues each agent serves, and at what penalty, start as the
configuration's; a supervisor may move an agent (``Router.set_queues``). The moves are kept
in the store too (:class:`MembershipStore`), so with several backends on one store every
router learns them and routes alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sortedcontainers import SortedList

from acd.errors import AcdStateUnavailable

__all__ = [
    "AcdState",
    "AcdStateUnavailable",
    "Claim",
    "MembershipStore",
    "MemoryState",
    "WaitingCaller",
]


@dataclass(frozen=True, slots=True)
class WaitingCaller:
    """A caller (or a callback request holding a caller's place) waiting in a queue.

    ``pbx`` names the Asterisk the call is on: only a backend attached to that PBX can
    bridge it. ``callback`` is the number to call back when this entry is a callback
    request rather than a caller on the line.
    """

    call_id: str
    queue: str
    pbx: str
    score: float
    joined_at: float
    tier: str = "ordinary"
    number: str | None = None
    callback: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """The best caller of a queue together with the agent(s) reserved for it."""

    caller: WaitingCaller
    agents: tuple[str, ...]


class AcdState(Protocol):
    """What the router needs of a store. Every method is atomic on its own."""

    def add_caller(self, caller: WaitingCaller) -> bool:
        """Queue ``caller``; False if its ``call_id`` is already waiting (nothing changes)."""
        ...

    def remove_caller(self, call_id: str) -> WaitingCaller | None:
        """Take a caller out of its queue (hung up, overflowed); None if not waiting."""
        ...

    def waiting(self, queue: str) -> list[WaitingCaller]:
        """The callers of ``queue`` in the order they will be served."""
        ...

    def position(self, call_id: str) -> int | None:
        """The caller's place in its queue's serving order, every PBX (1: served next);
        None if it is not waiting. Logarithmic: the queue is not read."""
        ...

    def head(self, queue: str) -> WaitingCaller | None:
        """The caller ``queue`` serves next, whatever its PBX; None if nobody waits."""
        ...

    def length(self, queue: str) -> int:
        """How many callers (and callback requests) wait in ``queue``, every PBX."""
        ...

    def find_callback(self, queue: str, number: str) -> WaitingCaller | None:
        """A callback request for ``number`` already waiting in ``queue``, if any."""
        ...

    def set_available(
        self, agent: str, scores: Mapping[str, float], *, if_idle: bool = False
    ) -> bool:
        """``agent`` is free for each queue of ``scores`` (queue -> score, lower first);
        replaces any earlier availability of that agent and ends its reservation.

        With ``if_idle`` (log-in, unpause: a view that may be stale) a reserved agent stays
        reserved: False, and nothing changes. True otherwise."""
        ...

    def set_unavailable(self, agent: str, *, if_idle: bool = False) -> bool:
        """``agent`` is no longer free anywhere and its reservation ends (``if_idle``: a
        reservation is left alone); False if it was not available."""
        ...

    def reserved(self, agent: str) -> bool:
        """Whether ``agent`` was handed out by :meth:`claim` and not made free or taken off
        since (it rings, talks or wraps up through the backend that claimed it)."""
        ...

    def available(self, queue: str) -> list[str]:
        """Free agents of ``queue``, best first."""
        ...

    def reserve(self, agent: str) -> None:
        """Mark ``agent`` reserved and free nowhere, as :meth:`claim` would: a backend whose
        agent rings, talks or wraps up puts that back into a store that lost it (restart)."""
        ...

    def claim(self, queue: str, pbx: str, agents: int = 1) -> Claim | None:
        """Atomically take the best caller of ``queue`` on ``pbx`` and reserve the best
        ``agents`` free agents of ``queue`` (``agents=0``: all of them, for ring-all).

        Reserved agents are removed from every queue's free list and marked
        :meth:`reserved`. None, and nothing
        changed, when the queue has no caller on that PBX or no free agent.
        """
        ...


@runtime_checkable
class MembershipStore(Protocol):
    """Where the agents' queue memberships changed at run time are kept (shared, with
    Redis); an agent it has nothing for serves the queues of the configuration."""

    def memberships(self) -> dict[str, dict[str, int]]:
        """Agent -> its queues (queue -> penalty), for every agent moved so far."""
        ...

    def set_memberships(self, agent: str, queues: Mapping[str, int]) -> None:
        """Keep ``queues`` (queue -> penalty, all of them) as ``agent``'s memberships."""
        ...


class MemoryState:
    """The in-process store (one backend, the embedded default).

    Sorted lists per queue keep every operation logarithmic (or linear only in what it
    returns), so a routing decision stays well under a millisecond with 10,000 agents and
    1,000 waiting callers.
    """

    __slots__ = (
        "_agent_scores",
        "_callbacks",
        "_callers",
        "_free",
        "_memberships",
        "_queues",
        "_reserved",
    )

    def __init__(self) -> None:
        self._callers: dict[str, WaitingCaller] = {}
        self._queues: dict[str, SortedList] = {}  # queue -> callers in serving order
        # (queue, number) -> requests by id, in the order they were added
        self._callbacks: dict[tuple[str, str], dict[str, WaitingCaller]] = {}
        self._free: dict[str, SortedList] = {}  # queue -> (score, agent), best first
        self._agent_scores: dict[str, dict[str, float]] = {}  # agent -> queue -> score
        self._reserved: set[str] = set()
        self._memberships: dict[str, dict[str, int]] = {}

    def memberships(self) -> dict[str, dict[str, int]]:
        return {agent: dict(queues) for agent, queues in self._memberships.items()}

    def set_memberships(self, agent: str, queues: Mapping[str, int]) -> None:
        self._memberships[agent] = dict(queues)

    def add_caller(self, caller: WaitingCaller) -> bool:
        if caller.call_id in self._callers:
            return False
        self._callers[caller.call_id] = caller
        self._queues.setdefault(caller.queue, SortedList(key=_serving_order)).add(caller)
        if caller.callback is not None:
            self._callbacks.setdefault((caller.queue, caller.callback), {})[caller.call_id] = caller
        return True

    def remove_caller(self, call_id: str) -> WaitingCaller | None:
        caller = self._callers.pop(call_id, None)
        if caller is not None:
            self._queues[caller.queue].remove(caller)
            if caller.callback is not None:
                requests = self._callbacks[caller.queue, caller.callback]
                del requests[call_id]
                if not requests:
                    del self._callbacks[caller.queue, caller.callback]
        return caller

    def waiting(self, queue: str) -> list[WaitingCaller]:
        return list(self._queues.get(queue, ()))

    def position(self, call_id: str) -> int | None:
        caller = self._callers.get(call_id)
        if caller is None:
            return None
        return self._queues[caller.queue].index(caller) + 1

    def head(self, queue: str) -> WaitingCaller | None:
        callers = self._queues.get(queue)
        return callers[0] if callers else None

    def length(self, queue: str) -> int:
        return len(self._queues.get(queue, ()))

    def find_callback(self, queue: str, number: str) -> WaitingCaller | None:
        return next(iter(self._callbacks.get((queue, number), {}).values()), None)

    def set_available(
        self, agent: str, scores: Mapping[str, float], *, if_idle: bool = False
    ) -> bool:
        if if_idle and agent in self._reserved:
            return False
        self.set_unavailable(agent)
        for queue, score in scores.items():
            self._free.setdefault(queue, SortedList()).add((score, agent))
        self._agent_scores[agent] = dict(scores)
        return True

    def set_unavailable(self, agent: str, *, if_idle: bool = False) -> bool:
        if not if_idle:
            self._reserved.discard(agent)
        scores = self._agent_scores.pop(agent, None)
        for queue, score in (scores or {}).items():
            self._free[queue].remove((score, agent))
        return bool(scores)

    def reserved(self, agent: str) -> bool:
        return agent in self._reserved

    def available(self, queue: str) -> list[str]:
        return [agent for _, agent in self._free.get(queue, ())]

    def reserve(self, agent: str) -> None:
        self.set_unavailable(agent)
        self._reserved.add(agent)

    def claim(self, queue: str, pbx: str, agents: int = 1) -> Claim | None:
        free = self._free.get(queue)
        if not free:
            return None
        # Usually the head is on this PBX; a shared queue may make us skip a few.
        best = next((c for c in self._queues.get(queue, ()) if c.pbx == pbx), None)
        if best is None:
            return None
        chosen = tuple(agent for _, agent in (free if agents == 0 else free.islice(0, agents)))
        self.remove_caller(best.call_id)
        for agent in chosen:
            self.set_unavailable(agent)
        self._reserved.update(chosen)
        return Claim(best, chosen)


def _serving_order(caller: WaitingCaller) -> tuple[float, float, str]:
    # Higher score first; equal scores in join order, then by id, so the order is total.
    return (-caller.score, caller.joined_at, caller.call_id)
