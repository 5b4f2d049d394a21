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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol


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

    def find_callback(self, queue: str, number: str) -> WaitingCaller | None:
        """A callback request for ``number`` already waiting in ``queue``, if any."""
        ...

    def set_available(self, agent: str, scores: Mapping[str, float]) -> None:
        """``agent`` is free for each queue of ``scores`` (queue -> score, lower first);
        replaces any earlier availability of that agent."""
        ...

    def set_unavailable(self, agent: str) -> bool:
        """``agent`` is no longer free anywhere; False if it was not available."""
        ...

    def available(self, queue: str) -> list[str]:
        """Free agents of ``queue``, best first."""
        ...

    def claim(self, queue: str, pbx: str, agents: int = 1) -> Claim | None:
        """Atomically take the best caller of ``queue`` on ``pbx`` and reserve the best
        ``agents`` free agents of ``queue`` (``agents=0``: all of them, for ring-all).

        Reserved agents are removed from every queue's free list. None, and nothing
        changed, when the queue has no caller on that PBX or no free agent.
        """
        ...


@dataclass(slots=True)
class MemoryState:
    """The in-process store (one backend, the embedded default)."""

    _callers: dict[str, WaitingCaller] = field(default_factory=dict)
    _free: dict[str, dict[str, float]] = field(default_factory=dict)  # queue -> agent -> score
    _agent_queues: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add_caller(self, caller: WaitingCaller) -> bool:
        if caller.call_id in self._callers:
            return False
        self._callers[caller.call_id] = caller
        return True

    def remove_caller(self, call_id: str) -> WaitingCaller | None:
        return self._callers.pop(call_id, None)

    def waiting(self, queue: str) -> list[WaitingCaller]:
        return _in_order(c for c in self._callers.values() if c.queue == queue)

    def find_callback(self, queue: str, number: str) -> WaitingCaller | None:
        for c in self._callers.values():
            if c.queue == queue and c.callback == number:
                return c
        return None

    def set_available(self, agent: str, scores: Mapping[str, float]) -> None:
        self.set_unavailable(agent)
        for queue, score in scores.items():
            self._free.setdefault(queue, {})[agent] = score
        self._agent_queues[agent] = tuple(scores)

    def set_unavailable(self, agent: str) -> bool:
        queues = self._agent_queues.pop(agent, ())
        for queue in queues:
            self._free.get(queue, {}).pop(agent, None)
        return bool(queues)

    def available(self, queue: str) -> list[str]:
        free = self._free.get(queue, {})
        return sorted(free, key=lambda a: (free[a], a))

    def claim(self, queue: str, pbx: str, agents: int = 1) -> Claim | None:
        callers = [c for c in self._callers.values() if c.queue == queue and c.pbx == pbx]
        free = self.available(queue)
        if not callers or not free:
            return None
        best = _in_order(callers)[0]
        chosen = tuple(free if agents == 0 else free[:agents])
        del self._callers[best.call_id]
        for agent in chosen:
            self.set_unavailable(agent)
        return Claim(best, chosen)


def _in_order(callers: Iterable[WaitingCaller]) -> list[WaitingCaller]:
    # Higher score first; equal scores in join order, then by id, so the order is total.
    return sorted(callers, key=lambda c: (-c.score, c.joined_at, c.call_id))
