"""The routing core: callers join queues, free agents are offered the best caller.

:class:`Router` is pure (no I/O, no clock): it is fed the call model's events
(:meth:`Router.on_call_event`), agent commands (:meth:`~Router.login`, :meth:`~Router.pause`...),
the outcomes of its offers (:meth:`~Router.offer_answered`, :meth:`~Router.offer_failed`),
callback requests and the time (:meth:`~Router.tick`, driven at :meth:`~Router.next_deadline`).
Every method returns the :data:`~acd.decisions.Decision` list the shell must carry out, and
appends what happened, as :mod:`acd.events`, to an outbox the shell empties with
:meth:`~Router.drain_events` (to persist and publish them).

Rules:

* a caller's score is fixed at join, ``weight[tier] - aging_rate * joined_at`` (see
  ``acd.state``); a caller whose offer fails or rings out goes back with the **same** score,
  so it keeps its place, and is offered to the next free agent: the agent who missed is
  made free again only after that, and is paused ``no-answer`` after the queue's
  ``auto_pause_after`` consecutive misses;
* ``ring_all`` rings every free member of the best penalty; the first answer wins and the
  others get :class:`~acd.decisions.CancelOffer`;
* a caller joining a full queue (``max_length``) or a closed one (business hours, holidays)
  overflows at once (reasons ``full``, ``closed``); one waiting longer than ``max_wait``
  overflows at the next tick (``max-wait``), and a queue that closes overflows its callers.
  An overflow to another queue is done here (the caller joins it afresh; the
  :class:`~acd.decisions.Overflow` decision is informative); to ``callback``, the caller's
  number becomes a callback request holding its place;
* a callback request waits with the caller's score; at the head it is offered to one agent
  as a :class:`~acd.decisions.CallBack`; the shell reports the agent's answer with
  :meth:`~Router.offer_answered` and the end of the outbound call as a ``CallEnded`` whose
  ``call_id`` is the request id;
* the router only claims callers of its own ``pbx`` (several routers may share one store).

Several routers, one agent pool: the **store is the truth** about who is free; a router's
roster (``agents``) is its own view, stale as soon as an agent also works through another
backend (every backend logs all agents in at start) or the router restarts. So:

* a router offers only the agents :meth:`~acd.state.AcdState.claim` hands it, and holds
  them (the store has them *reserved*) until it makes them free or takes them off again,
  after the offer, the call or the wrap-up; no other command touches a reservation;
* an agent the store hands out while the roster has it logged out or paused was logged in
  or unpaused through another backend (the store had it free): the router logs it in or
  unpauses it in its roster, then offers;
* log-in and unpause make the agent free only if no router holds it (``if_idle``); pause
  and log-out of an agent another router holds are refused (``AgentBusy``), as they are
  while it rings or talks here;
* a caller of this PBX an earlier run queued is still in the store: its hang-up removes it.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from crm_bridge.tiers import CallerTiers
from cti.calls.events import (
    CallAbandoned,
    CallArrived,
    CallEnded,
    CallEvent,
    CallParked,
    CallTransferred,
)

from .agents import AcdError, AgentBusy, AgentRoster, AgentState, AgentStateChanged
from .config import AcdConfig, QueueConfig
from .decisions import CallBack, CancelOffer, Connect, Decision, Offer, Overflow
from .events import (
    AcdEvent,
    CallbackRequested,
    CallCompleted,
    CallerAbandoned,
    CallerConnected,
    CallerJoined,
    CallerOffered,
    CallerOverflowed,
    OfferNotAnswered,
)
from .state import AcdState, Claim, MemoryState, WaitingCaller
from .strategies import agent_score, eligible


class UnknownCall(AcdError):
    """The call is not waiting in any queue of this router."""


class UnknownOffer(AcdError):
    """No such offer is ringing (it was answered elsewhere, cancelled or timed out)."""


class DuplicateCallback(AcdError):
    """A callback request for that number already waits in that queue."""


@dataclass(slots=True)
class _Ringing:
    caller: WaitingCaller
    agents: set[str]
    deadline: float


@dataclass(frozen=True, slots=True)
class _Connected:
    queue: str
    agent: str
    answered_at: float
    caller: WaitingCaller


class Router:
    """Queues, agents and offers for one PBX; see the module doc for the rules."""

    def __init__(
        self,
        config: AcdConfig,
        *,
        pbx: str,
        tiers: CallerTiers,
        state: AcdState | None = None,
    ) -> None:
        self.config = config
        self.pbx = pbx
        self.agents = AgentRoster((agent_id, a.name) for agent_id, a in config.agents.items())
        self._tiers = tiers
        self._state: AcdState = MemoryState() if state is None else state
        self._arrivals: dict[str, CallArrived] = {}
        self._waiting: dict[str, WaitingCaller] = {}  # this router's callers in the store
        self._ringing: dict[str, _Ringing] = {}
        self._connected: dict[str, _Connected] = {}
        self._wrapping: dict[str, float] = {}  # agent -> end of wrap-up
        # Timers, (when, seq, kind, key): a heap keeps tick and next_deadline cheap with
        # thousands of callers; an entry whose ring, wrap-up or wait has ended is skipped.
        self._timers: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count()
        self._hours_due: dict[str, float | None] = {}  # queue -> next opening or closing
        self._events: list[AcdEvent] = []

    # Inputs.

    def on_call_event(self, event: CallEvent, now: float | None = None) -> list[Decision]:
        """Feed a call-model event: arrivals (who calls), parking (join), abandon and end.

        ``now`` is the shell's clock, the one :meth:`tick` is driven by, so that waits and
        timers never mix two clocks; without it the event's PBX time ``at`` is used.
        """
        at = event.at if now is None else now
        match event:
            case CallArrived():
                self._arrivals[event.call_id] = event
            case CallParked():
                return self._park(event, at)
            case CallAbandoned():
                return self._caller_left(event.call_id, at)
            case CallTransferred() if event.call_id in self._connected:
                # The agent handed the caller on: the call is over for the agent.
                return self._complete(event.call_id, at)
            case CallEnded():
                self._arrivals.pop(event.call_id, None)
                if event.call_id in self._connected:
                    return self._complete(event.call_id, at)
                return self._caller_left(event.call_id, at)
        return []

    def login(self, agent: str, now: float) -> list[Decision]:
        """Log the agent in: available, and offered the best waiting caller at once."""
        self._events.append(self.agents.login(agent, now))
        return self._free_agent(agent, now)

    def logout(self, agent: str, now: float) -> list[Decision]:
        """Log the agent out; refused while ringing or on a call (``AgentBusy``)."""
        self._take_off(agent, lambda: self.agents.logout(agent, now))
        return []

    def pause(self, agent: str, reason: str, now: float) -> list[Decision]:
        """Pause with a reason code; refused while ringing or on a call (``AgentBusy``)."""
        self._take_off(agent, lambda: self.agents.pause(agent, reason, now))
        return []

    def unpause(self, agent: str, now: float) -> list[Decision]:
        """Back to available (the missed-offer count starts again)."""
        self._events.append(self.agents.unpause(agent, now))
        return self._free_agent(agent, now)

    def offer_answered(self, call_id: str, agent: str, now: float) -> list[Decision]:
        """``agent`` answered the offer of ``call_id`` (a caller or a callback request)."""
        ringing = self._offer_of(call_id, agent)
        del self._ringing[call_id]
        caller = ringing.caller
        self._events.append(self.agents.answer(agent, now))
        self._connected[call_id] = _Connected(caller.queue, agent, now, caller)
        self._events.append(
            CallerConnected(now, call_id, caller.queue, agent, wait=now - caller.joined_at)
        )
        decisions: list[Decision] = [] if caller.callback else [Connect(call_id, agent)]
        return decisions + self._withdraw(call_id, ringing.agents - {agent}, now)

    def poll(self, now: float) -> list[Decision]:
        """Pair this PBX's waiting callers with free agents in every queue. With a store
        shared by several backends an agent may be freed through another one; the shell
        calls this every so often so such agents reach this PBX's callers promptly."""
        return self._dispatch(sorted(self.config.queues), now)

    def overflow(self, call_id: str, reason: str, now: float) -> list[Decision]:
        """Send a waiting caller to its queue's overflow target now (the shell's reason,
        e.g. an estimated wait beyond ``max_estimated_wait``)."""
        caller = self._waiting.get(call_id)
        if caller is None:
            raise UnknownCall(f"call {call_id} is not waiting in a queue: nothing to overflow")
        self._unqueue(call_id)
        return self._overflow(caller, reason, now)

    def connect_failed(self, call_id: str, agent: str, now: float) -> list[Decision]:
        """The answered agent could not be connected (the Bridge failed): the agent is free
        again with no miss counted, and the caller, if still there, waits again with its
        score (its place kept)."""
        call = self._connected.pop(call_id, None)
        if call is None or call.agent != agent:
            raise UnknownOffer(f"{call_id} is not connected to {agent}")
        self._events.append(self.agents.hang_up(agent, now, 0))
        # Back in its place; if the caller has in fact gone, its end removes it again.
        if self._state.add_caller(call.caller):
            self._track(call.caller)
        return self._free_agent(agent, now, held=True)

    def _withdraw(self, call_id: str, agents: Iterable[str], now: float) -> list[Decision]:
        """Stop ringing ``agents`` for ``call_id``: each is free again, no miss counted."""
        agents = sorted(agents)
        decisions: list[Decision] = []
        for other in agents:
            decisions.append(CancelOffer(call_id, other))
            self._events.append(self.agents.release(other, now))
            self._make_free(other, now)
        return decisions + self._dispatch(self._queues_of(agents), now)

    def offer_failed(self, call_id: str, agent: str, reason: str, now: float) -> list[Decision]:
        """The offer to ``agent`` failed (busy, Originate refused...) or rang out
        (``timeout``): the caller keeps its place and goes to the next agent."""
        ringing = self._offer_of(call_id, agent)
        caller = ringing.caller
        ringing.agents.discard(agent)
        queue = self.config.queues[caller.queue]
        self._events.append(OfferNotAnswered(now, call_id, caller.queue, agent, reason))
        self._events.append(self.agents.miss(agent, now, queue.auto_pause_after))
        decisions = []
        if not ringing.agents:
            del self._ringing[call_id]
            self._state.add_caller(caller)
            self._track(caller)
            decisions = self._dispatch([caller.queue], now)
        # Only now, so that the caller has gone to another agent if there was one.
        return decisions + self._free_agent(agent, now, held=True)

    def request_callback(self, call_id: str, number: str, now: float) -> list[Decision]:
        """Turn a waiting caller into a callback request for ``number`` that keeps its place;
        returns the decisions (the request may be offered at once). The request's id is
        ``cb-<call_id>``."""
        ringing = self._ringing.get(call_id)
        caller = ringing.caller if ringing is not None else self._waiting.get(call_id)
        if caller is None:
            raise UnknownCall(f"call {call_id} is not waiting in a queue: no callback to take")
        if self._callback_pending(caller.queue, number):
            raise DuplicateCallback(
                f"a callback request for {number} already waits in queue {caller.queue}"
            )
        decisions: list[Decision] = []
        if ringing is not None:
            # The caller pressed the key while an agent's phone rang for them.
            del self._ringing[call_id]
            decisions += self._withdraw(call_id, ringing.agents, now)
        else:
            self._unqueue(call_id)
        return decisions + self._queue_callback(caller, caller.queue, number, now)

    def _callback_pending(self, queue: str, number: str) -> bool:
        """A request for ``number`` in ``queue`` waiting, ringing an agent or in progress."""
        if self._state.find_callback(queue, number) is not None:
            return True
        live = [r.caller for r in self._ringing.values()] + [
            c.caller for c in self._connected.values()
        ]
        return any(c.callback == number and c.queue == queue for c in live)

    def tick(self, now: float) -> list[Decision]:
        """Run the timers due at ``now``: ring timeouts, wrap-up ends, max wait, closing."""
        decisions: list[Decision] = []
        while self._timers and self._timers[0][0] <= now:
            when, _, kind, key = heapq.heappop(self._timers)
            if not self._live_timer(when, kind, key):
                continue
            if kind == "ring":
                for agent in sorted(self._ringing[key].agents):
                    decisions.append(CancelOffer(key, agent))
                    decisions += self.offer_failed(key, agent, "timeout", now)
            elif kind == "wrap":
                del self._wrapping[key]
                self._events.append(self.agents.end_wrap_up(key, now))
                decisions += self._free_agent(key, now, held=True)
            else:
                caller = self._waiting[key]
                self._unqueue(key)
                decisions += self._overflow(caller, "max-wait", now)
        for name, due in list(self._hours_due.items()):
            if due is not None and due <= now:
                decisions += self._check_hours(self.config.queues[name], now)
        return decisions

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (None: nothing pending)."""
        while self._timers:
            when, _, kind, key = self._timers[0]
            if self._live_timer(when, kind, key):
                break
            heapq.heappop(self._timers)
        deadlines = [due for due in self._hours_due.values() if due is not None]
        if self._timers:
            deadlines.append(self._timers[0][0])
        return min(deadlines, default=None)

    def drain_events(self) -> list[AcdEvent]:
        """The ACD events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def waiting(self, queue: str) -> list[WaitingCaller]:
        """The callers and callback requests of ``queue`` in serving order (every PBX)."""
        return self._state.waiting(queue)

    def available(self, queue: str) -> list[str]:
        """The free agents of ``queue``, best first."""
        return self._state.available(queue)

    def offers(self) -> dict[str, tuple[str, ...]]:
        """Calls (or callback requests) ringing now -> the agents they ring."""
        return {call_id: tuple(sorted(r.agents)) for call_id, r in self._ringing.items()}

    # Callers.

    def _park(self, event: CallParked, now: float) -> list[Decision]:
        if event.call_id in self._waiting or event.call_id in self._ringing:
            return []  # parked again while already queued: keep its place
        arrival = self._arrivals.get(event.call_id)
        queue = self.config.queue_of_lane(event.lane) if event.lane else None
        if queue is None and arrival is not None and arrival.dialled:
            queue = self.config.queue_of_did(arrival.dialled)
        if queue is None:
            return []  # a lane no queue of ours is fed by
        number = arrival.caller.number if arrival is not None else None
        return self._join(queue, event.call_id, self._tiers.tier_of(number), number, now)

    def _join(
        self, queue_name: str, call_id: str, tier: str, number: str | None, now: float
    ) -> list[Decision]:
        queue = self.config.queues[queue_name]
        priority = self.config.priority
        caller = WaitingCaller(
            call_id,
            queue_name,
            self.pbx,
            score=priority.weight(tier) - priority.aging_rate * now,
            joined_at=now,
            tier=tier,
            number=number,
        )
        decisions: list[Decision] = []
        if queue.hours is not None:
            due = self._hours_due.get(queue_name)
            if due is None or due <= now:  # a change no tick has seen yet
                decisions = self._check_hours(queue, now)
            if not queue.hours.is_open(now):
                return decisions + self._overflow(caller, "closed", now)
        if (
            queue.max_length is not None
            and len(self._state.waiting(queue_name)) >= queue.max_length
        ):
            return decisions + self._overflow(caller, "full", now)
        return decisions + self._enqueue(caller, now)

    def _enqueue(self, caller: WaitingCaller, now: float) -> list[Decision]:
        if not self._state.add_caller(caller):
            return []
        self._track(caller)
        position = self._position(caller)
        self._events.append(CallerJoined(now, caller.call_id, caller.queue, caller.tier, position))
        return self._dispatch([caller.queue], now)

    def _queue_callback(
        self, caller: WaitingCaller, queue: str, number: str, now: float
    ) -> list[Decision]:
        request_id = f"cb-{caller.call_id}"
        request = WaitingCaller(
            request_id,
            queue,
            caller.pbx,
            score=caller.score,
            joined_at=caller.joined_at,
            tier=caller.tier,
            number=number,
            callback=number,
        )
        self._events.append(CallbackRequested(now, caller.call_id, queue, request_id, number))
        return self._enqueue(request, now)

    def _overflow(self, caller: WaitingCaller, reason: str, now: float) -> list[Decision]:
        """Send a caller (already out of the store) to its queue's overflow target."""
        queue = self.config.queues[caller.queue]
        assert queue.overflow is not None  # config validation: limits and hours need one
        kind, target = queue.overflow.kind, queue.overflow_target()
        wait = now - caller.joined_at
        self._events.append(
            CallerOverflowed(now, caller.call_id, caller.queue, wait, target, reason)
        )
        decisions: list[Decision] = [Overflow(caller.call_id, caller.queue, kind, target, reason)]
        if kind == "queue":
            decisions += self._join(target, caller.call_id, caller.tier, caller.number, now)
        elif (
            kind == "callback"
            and caller.number is not None
            and self._state.find_callback(target, caller.number) is None
        ):
            decisions += self._queue_callback(caller, target, caller.number, now)
        return decisions

    def _caller_left(self, call_id: str, now: float) -> list[Decision]:
        if call_id in self._waiting:
            caller = self._waiting[call_id]
            position = self._position(caller)
            self._unqueue(call_id)
            wait = now - caller.joined_at
            self._events.append(CallerAbandoned(now, call_id, caller.queue, wait, position))
            return []
        ringing = self._ringing.pop(call_id, None)
        if ringing is None:
            # Maybe queued by an earlier run of this backend: the store outlives a restart.
            left = self._state.remove_caller(call_id)
            if left is not None:
                wait = now - left.joined_at
                self._events.append(CallerAbandoned(now, call_id, left.queue, wait, None))
            return []
        caller = ringing.caller
        self._events.append(
            CallerAbandoned(now, call_id, caller.queue, now - caller.joined_at, None)
        )
        return self._withdraw(call_id, ringing.agents, now)

    def _complete(self, call_id: str, now: float) -> list[Decision]:
        call = self._connected.pop(call_id)
        self._events.append(
            CallCompleted(now, call_id, call.queue, call.agent, now - call.answered_at)
        )
        wrap_up = self.config.queues[call.queue].wrap_up
        self._events.append(self.agents.hang_up(call.agent, now, wrap_up))
        if self.agents.get(call.agent).state is AgentState.WRAP_UP:
            self._wrapping[call.agent] = now + wrap_up
            self._start_timer(now + wrap_up, "wrap", call.agent)
            return []
        return self._free_agent(call.agent, now, held=True)

    def _track(self, caller: WaitingCaller) -> None:
        """Note a caller of ours now in the store, with its max-wait timer."""
        self._waiting[caller.call_id] = caller
        max_wait = self.config.queues[caller.queue].max_wait
        if caller.callback is None and max_wait is not None:
            self._start_timer(caller.joined_at + max_wait, "wait", caller.call_id)

    def _check_hours(self, queue: QueueConfig, now: float) -> list[Decision]:
        """The queue may have opened or closed: closing overflows its live callers."""
        assert queue.hours is not None
        self._hours_due[queue.name] = queue.hours.next_change(now)
        if queue.hours.is_open(now):
            return []
        decisions: list[Decision] = []
        for caller in self._state.waiting(queue.name):
            # A callback request is not on the line: it waits for an agent, open or not.
            if caller.call_id in self._waiting and caller.callback is None:
                self._unqueue(caller.call_id)
                decisions += self._overflow(caller, "closed", now)
        return decisions

    # Timers.

    def _start_timer(self, when: float, kind: str, key: str) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), kind, key))

    def _live_timer(self, when: float, kind: str, key: str) -> bool:
        if kind == "ring":
            ringing = self._ringing.get(key)
            return ringing is not None and ringing.deadline == when
        if kind == "wrap":
            return self._wrapping.get(key) == when
        caller = self._waiting.get(key)
        max_wait = self.config.queues[caller.queue].max_wait if caller else None
        return caller is not None and max_wait is not None and caller.joined_at + max_wait == when

    def _unqueue(self, call_id: str) -> None:
        del self._waiting[call_id]
        self._state.remove_caller(call_id)

    def _position(self, caller: WaitingCaller) -> int:
        return self._state.waiting(caller.queue).index(caller) + 1

    # Agents and offers.

    def _offer_of(self, call_id: str, agent: str) -> _Ringing:
        ringing = self._ringing.get(call_id)
        if ringing is None or agent not in ringing.agents:
            raise UnknownOffer(f"call {call_id} is not ringing agent {agent}")
        return ringing

    def _free_agent(self, agent: str, now: float, *, held: bool = False) -> list[Decision]:
        """Offer the agent, if available, the best caller of its queues.

        ``held``: after this router's offer or call, so it ends the agent's reservation
        whatever the agent's state; otherwise (log-in, unpause) an agent another router
        holds stays with it."""
        if self.agents.get(agent).state is not AgentState.AVAILABLE:
            if held:
                self._state.set_unavailable(agent)
            return []
        if not self._make_free(agent, now, if_idle=not held):
            return []
        return self._dispatch(self._queues_of([agent]), now)

    def _make_free(self, agent_id: str, now: float, *, if_idle: bool = False) -> bool:
        agent = self.agents.get(agent_id)
        member = self.config.agents[agent_id]
        scores = {
            name: agent_score(agent, self.config.queues[name], penalty, member.skills)
            for name, penalty in member.queues.items()
            if eligible(member.skills, self.config.queues[name])
        }
        return self._state.set_available(agent_id, scores, if_idle=if_idle)

    def _adopt(self, agent: str, now: float) -> None:
        """The store handed ``agent`` out, so it is free: a roster saying logged out or
        paused is stale (log-in or unpause through another backend)."""
        state = self.agents.get(agent).state
        if state is AgentState.LOGGED_OUT:
            self._events.append(self.agents.login(agent, now))
        elif state is AgentState.PAUSED:
            self._events.append(self.agents.unpause(agent, now))

    def _take_off(self, agent: str, command: Callable[[], AgentStateChanged]) -> None:
        """Pause or log out: refused, changing nothing, if another router holds the agent."""
        state = self.agents.get(agent).state
        held = state is AgentState.WRAP_UP  # our call's wrap-up: ours to end
        if state in (AgentState.AVAILABLE, AgentState.PAUSED) and self._state.reserved(agent):
            raise AgentBusy(
                f"agent {agent} rings or is on a call through another backend: cannot pause "
                "or log out until it is over"
            )
        self._events.append(command())
        # if_idle: a claim elsewhere since the check above keeps its agent.
        self._state.set_unavailable(agent, if_idle=not held)
        self._wrapping.pop(agent, None)

    def _queues_of(self, agents: Iterable[str]) -> list[str]:
        return sorted({q for a in agents for q in self.config.agents[a].queues})

    def _dispatch(self, queues: list[str], now: float) -> list[Decision]:
        """Pair waiting callers with free agents in ``queues``, best caller first."""
        decisions: list[Decision] = []
        if len(queues) > 1:
            queues = sorted(queues, key=self._head_score, reverse=True)
        for name in queues:
            queue = self.config.queues[name]
            while (claim := self._claim(queue)) is not None:
                decisions.append(self._offer(claim, queue, now))
        return decisions

    def _head_score(self, queue: str) -> float:
        waiting = self._state.waiting(queue)
        return waiting[0].score if waiting else float("-inf")

    def _claim(self, queue: QueueConfig) -> Claim | None:
        if queue.strategy != "ring_all":
            return self._state.claim(queue.name, self.pbx)
        free = self._state.available(queue.name)
        if not free:
            return None
        # Ring every free member of the best penalty, as app_queue's ringall does.
        best = self.config.agents[free[0]].queues[queue.name]
        count = sum(1 for a in free if self.config.agents[a].queues[queue.name] == best)
        return self._state.claim(queue.name, self.pbx, count)

    def _offer(self, claim: Claim, queue: QueueConfig, now: float) -> Decision:
        caller = claim.caller
        self._waiting.pop(caller.call_id, None)
        # One agent dials a callback; ring-all's other reserved members are freed again.
        agents = claim.agents[:1] if caller.callback else claim.agents
        for agent in claim.agents[len(agents) :]:
            self._make_free(agent, now)
        for agent in agents:
            self._adopt(agent, now)
            self._events.append(self.agents.ring(agent, caller.call_id, queue.name, now))
        self._ringing[caller.call_id] = _Ringing(caller, set(agents), now + queue.ring_timeout)
        self._start_timer(now + queue.ring_timeout, "ring", caller.call_id)
        self._events.append(CallerOffered(now, caller.call_id, queue.name, agents))
        if caller.callback:
            return CallBack(caller.call_id, queue.name, agents[0], caller.callback)
        return Offer(
            caller.call_id, self.pbx, queue.name, agents, caller.number, queue.ring_timeout
        )
