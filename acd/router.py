"""The routing core: callers join queues, free agents are offered the best caller.

:class:`Router` is pure (no I/O, no clock): it is fed the call model's events
(:meth:`Router.on_call_event`), agent commands (:meth:`~Router.login`, :meth:`~Router.pause`...),
the outcomes of its offers (:meth:`~Router.offer_answered`, :meth:`~Router.offer_failed`),
callback requests and the time (:meth:`~Router.tick`, driven at :meth:`~Router.next_deadline`).
Every method returns the :data:`~acd.decisions.Decision` list the shell must carry out, and
appends what happened, as :mod:`acd.events`, to an outbox the shell empties with
:meth:`~Router.drain_events` (to persist and publish them).

A step waits on nothing but its store: the caller's value tier comes with its arrival (the
shell looked it up, ``on_call_event(..., tier=)``), and a position, a queue's head or its
length is one store operation (a rank, a first member, a count), never a read of the whole
queue. With a store over the network the shell runs the steps on a thread of their own
(``acd.driver``), one at a time, so the router needs no locks.

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
  :meth:`~Router.offer_answered`, then the call model's outbound call (``arrived`` with the
  request id as ``callback``) says the rest: the request is connected (``CallerConnected``)
  only when the customer answers; a busy, unanswered or failed dial is a ``CallbackFailed``
  (the agent is free, no miss counted) and the request goes back with its score after the
  queue's ``callback.spacing``, up to ``callback.attempts`` dials, then ``CallbackGivenUp``;
* a caller with no number is never promised a callback: a callback overflow sends it to
  its ``fallback`` or, without one, keeps it waiting (``CallbackNotOffered``);
* the router only claims callers of its own ``pbx`` (several routers may share one store);
* the PBX is the truth about agents' phones: an agent whose device is busy on a call the
  ACD did not make (an app_queue call, a direct call) is not offered until it is idle again;
* an agent who let a caller ring out is not offered that caller again for the queue's
  ``retry`` seconds, unless it goes to another agent first: the caller goes to the next
  free agent, the agent takes other callers meanwhile;
* after a restart, callers the PBX still has parked come back (``restored`` events) with
  their park time, so their place and waits hold; a caller the snapshot shows bridged to an
  agent makes that agent on-call with it; and what a previous run left open
  (:meth:`Router.restore_open`) is closed when the call is found gone.

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

Memberships (which queues an agent serves, at what penalty) start as the configuration's; a
supervisor moves an agent with :meth:`~Router.set_queues`. The move is written to the
store's :class:`~acd.state.MembershipStore` first (refused, changing nothing, if the store
does not answer), then the router's own map changes: a free agent leaves its old queues'
free lists and joins the new ones at once (the :meth:`~Router.poll` that follows offers it
their callers); an agent ringing, talking or wrapping up keeps its call and serves the new
queues when it is free again. Other routers on the same store follow the move at their
next :meth:`~Router.poll` (each publishes its own ``AgentQueuesChanged``); an agent the
store has no memberships for keeps the router's view (the configuration's, or a move a
restarted Redis lost, which :meth:`~Router.reseed` writes back).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from crm_bridge.tiers import DEFAULT_TIER, CallerTiers
from cti.calls.events import (
    CallAbandoned,
    CallAnswered,
    CallArrived,
    CallEnded,
    CallFailed,
    CallParked,
    CallTransferred,
    DeviceStateChanged,
    PbxEvent,
)

from .agents import (
    AcdError,
    AgentBusy,
    AgentRoster,
    AgentState,
    AgentStateChanged,
    IneligibleMembership,
    InvalidMembership,
)
from .config import AcdConfig, QueueConfig
from .decisions import CallBack, CancelOffer, Connect, Decision, Offer, Overflow
from .errors import AcdStateUnavailable, DuplicateCallback, UnknownCall, UnknownOffer
from .events import (
    AcdEvent,
    AgentQueuesChanged,
    CallbackDialling,
    CallbackFailed,
    CallbackGivenUp,
    CallbackNotOffered,
    CallbackRequested,
    CallCompleted,
    CallerAbandoned,
    CallerConnected,
    CallerJoined,
    CallerOffered,
    CallerOverflowed,
    OfferNotAnswered,
)
from .state import AcdState, Claim, MembershipStore, MemoryState, WaitingCaller, _serving_order
from .strategies import agent_score, eligible

#: The highest penalty a supervisor may give an agent in a queue (the configuration allows
#: up to ``acd.config.MAX_PENALTY``).
MAX_MOVE_PENALTY = 100


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


@dataclass(frozen=True, slots=True)
class OpenCall:
    """A caller a previous run of this backend left waiting (``agent`` None) or connected
    to ``agent`` in ``queue``, since ``since``, per its persisted ACD events."""

    call_id: str
    queue: str
    since: float
    agent: str | None = None


class Router:
    """Queues, agents and offers for one PBX; see the module doc for the rules."""

    def __init__(
        self,
        config: AcdConfig,
        *,
        pbx: str,
        tiers: CallerTiers | None = None,
        state: AcdState | None = None,
        memberships: MembershipStore | None = None,
    ) -> None:
        """``memberships``: where moves of agents between queues are kept; by default
        ``state`` when it keeps them (``MemoryState``), else a store of this router's own."""
        self.config = config
        self.pbx = pbx
        self.agents = AgentRoster((agent_id, a.name) for agent_id, a in config.agents.items())
        self._tiers = tiers
        self._state: AcdState = MemoryState() if state is None else state
        if memberships is None:
            own = self._state if isinstance(self._state, MembershipStore) else MemoryState()
            memberships = own
        self._moves: MembershipStore = memberships
        # agent -> queue -> penalty: the configuration's, then as supervisors move agents.
        self._members = {agent: dict(a.queues) for agent, a in config.agents.items()}
        self._arrivals: dict[str, CallArrived] = {}
        self._arrival_tiers: dict[str, str] = {}  # call -> tier the shell resolved on arrival
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
        self._agent_at = {config.interface_of(a): a for a in config.agents}
        self._device_busy: set[str] = set()  # agents whose phone is busy, whoever made the call
        self._shown_busy: set[str] = set()  # ... and published as such while available
        self._resting: dict[str, tuple[str, float]] = {}  # agent -> (caller it missed, until)
        self._open: dict[str, OpenCall] = {}  # left open by a previous run
        # Callbacks: requests whose agent answered and whose customer is being dialled; the
        # model's outbound calls -> their request; requests waiting to be dialled again
        # (request, when); failed dials so far per request.
        self._dialling: dict[str, _Connected] = {}
        self._outbound: dict[str, str | None] = {}  # None: that dial's outcome is known
        self._retrying: dict[str, tuple[WaitingCaller, float]] = {}
        self._attempts: dict[str, int] = {}

    # Inputs.

    def on_call_event(
        self, event: PbxEvent, now: float | None = None, tier: str | None = None
    ) -> list[Decision]:
        """Feed a call-model event: arrivals (who calls), parking (join), answers the ACD
        did not make, abandon and end, and agents' device states.

        ``now`` is the shell's clock, the one :meth:`tick` is driven by, so that waits and
        timers never mix two clocks; without it the event's PBX time ``at`` is used. A
        restored caller (rebuilt from the PBX's snapshot) joins at its park time instead.

        ``tier``, with an arrival: the caller's value tier, which the shell looked up before
        this step (``AcdDriver(tiers=...)``), so no look-up, which may one day ask a CRM
        over the network, ever runs inside a routing step; the caller joins with it. Without
        one the router's own ``tiers`` table answers (a pure, in-memory table: tests,
        benchmarks), else the caller is ``ordinary``.
        """
        at = event.at if now is None else now
        match event:
            case DeviceStateChanged():
                return self._device(event, at)
            case CallArrived() if event.callback is not None:
                return self._outbound_started(event, at)
            case CallAnswered() | CallFailed() | CallEnded() if event.call_id in self._outbound:
                return self._outbound_outcome(event, at)
            case CallArrived():
                self._arrivals[event.call_id] = event
                if tier is not None:
                    self._arrival_tiers[event.call_id] = tier
            case CallParked():
                return self._park(event, min(at, event.at) if event.restored else at)
            case CallAnswered() if event.call_id not in self._connected:
                return self._answered_elsewhere(event, at)
            case CallAbandoned():
                return self._caller_left(event.call_id, at)
            case CallTransferred() if event.call_id in self._connected:
                # The agent handed the caller on: the call is over for the agent.
                return self._complete(event.call_id, at)
            case CallEnded():
                self._arrivals.pop(event.call_id, None)
                self._arrival_tiers.pop(event.call_id, None)
                if event.call_id in self._connected:
                    return self._complete(event.call_id, at)
                if event.call_id in self._open and event.call_id not in self._waiting:
                    return self._close_open(self._open.pop(event.call_id), event, at)
                return self._caller_left(event.call_id, at)
        return []

    def restore_open(self, calls: Iterable[OpenCall]) -> None:
        """Callers a previous run of this backend left waiting or connected (from the ACD's
        history): if the PBX no longer has them, their end closes them (abandoned, or
        completed), so no caller stays joined and no connection open for ever."""
        for call in calls:
            self._open[call.call_id] = call

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
        """``agent`` answered the offer of ``call_id`` (a caller or a callback request).

        A callback request is not connected yet: the agent is on the phone while the
        customer is dialled, and the outbound call's events (``answered``, ``failed``,
        ``ended``, from the call model) connect it or report it failed."""
        dialling = self._dialling.get(call_id)
        if dialling is not None and dialling.agent == agent:
            return []  # the outbound call's start already told us
        ringing = self._offer_of(call_id, agent)
        del self._ringing[call_id]
        caller = ringing.caller
        self._events.append(self.agents.answer(agent, now))
        if caller.callback:
            self._dialling[call_id] = _Connected(caller.queue, agent, now, caller)
            attempt = self._attempts.get(call_id, 0) + 1
            self._events.append(
                CallbackDialling(now, call_id, caller.queue, agent, caller.callback, attempt)
            )
            return self._withdraw(call_id, ringing.agents - {agent}, now)
        self._connected[call_id] = _Connected(caller.queue, agent, now, caller)
        self._events.append(
            CallerConnected(now, call_id, caller.queue, agent, wait=now - caller.joined_at)
        )
        decisions: list[Decision] = [] if caller.callback else [Connect(call_id, agent)]
        return decisions + self._withdraw(call_id, ringing.agents - {agent}, now)

    def poll(self, now: float) -> list[Decision]:
        """Pair this PBX's waiting callers with free agents in every queue. With a store
        shared by several backends an agent may be freed through another one; the shell
        calls this every so often so such agents reach this PBX's callers promptly. It
        first follows the moves of agents between queues made through other backends."""
        self._follow_moves(now)
        return self._dispatch(sorted(self.config.queues), now)

    # Memberships.

    def queues_of(self, agent: str) -> dict[str, int]:
        """The queues ``agent`` serves now, queue -> penalty (``UnknownAgent``)."""
        self.agents.get(agent)
        return dict(self._members[agent])

    def check_queues(self, agent: str, queues: Mapping[str, int]) -> None:
        """Refuse memberships ``agent`` cannot have: :class:`~acd.agents.UnknownAgent`;
        :class:`~acd.agents.InvalidMembership` for no queue, an unknown queue or a penalty
        outside 0-:data:`MAX_MOVE_PENALTY`; :class:`~acd.agents.IneligibleMembership` for a
        queue whose required skills the agent lacks (naming the skill). Every problem of
        the kind is listed."""
        self.agents.get(agent)
        if not queues:
            raise InvalidMembership(agent, [("queues", "at least one queue is needed")])
        known = ", ".join(sorted(self.config.queues))
        problems: list[tuple[str, str]] = []
        for name, penalty in queues.items():
            if name not in self.config.queues:
                problems.append((f"queues.{name}", f"no queue {name!r} (queues: {known})"))
            elif isinstance(penalty, bool) or not isinstance(penalty, int):
                problems.append(
                    (f"queues.{name}", f"the penalty must be a whole number, not {penalty!r}")
                )
            elif not 0 <= penalty <= MAX_MOVE_PENALTY:
                problems.append(
                    (f"queues.{name}", f"the penalty must be 0-{MAX_MOVE_PENALTY}, not {penalty}")
                )
        if problems:
            raise InvalidMembership(agent, problems)
        skills = self.config.agents[agent].skills
        for name in queues:
            for skill, minimum in self.config.queues[name].skills.items():
                level = skills.get(skill)
                if level is None or level < minimum:
                    has = "lacks it" if level is None else f"has {level}"
                    problems.append(
                        (
                            f"queues.{name}",
                            f"queue {name!r} requires skill {skill!r} at {minimum} or more; "
                            f"agent {agent} {has}",
                        )
                    )
        if problems:
            raise IneligibleMembership(agent, problems)

    def set_queues(self, agent: str, queues: Mapping[str, int], by: str, now: float) -> None:
        """Move ``agent`` to ``queues`` (queue -> penalty, all of them), on the word of
        account ``by``: checked (:meth:`check_queues`), kept in the store (its
        ``AcdStateUnavailable`` changes nothing), then ``AgentQueuesChanged``. A free agent
        is free in the new queues at once; call :meth:`poll` next, in the same step, for
        it to be offered their waiting callers."""
        self.check_queues(agent, queues)
        queues = dict(queues)
        self._moves.set_memberships(agent, queues)
        self._events.append(AgentQueuesChanged(now, agent, dict(queues), by))
        self._serve(agent, queues, now)

    def restore_memberships(
        self, moves: Mapping[str, Mapping[str, int]], now: float
    ) -> dict[str, str]:
        """Moves made before this start (a store's, or the ACD history's latest per
        agent): each valid one is the agent's memberships again, kept in the store and
        told again (``AgentQueuesChanged`` by ``restored``, for figures and boards built
        from the configuration). Returns the agents whose move no longer fits the
        configuration (a queue gone, a skill changed) -> why: they serve the
        configuration's queues."""
        refused: dict[str, str] = {}
        for agent, queues in moves.items():
            try:
                self.check_queues(agent, queues)
            except AcdError as exc:
                refused[agent] = str(exc)
                continue
            self._moves.set_memberships(agent, queues)
            self._events.append(AgentQueuesChanged(now, agent, dict(queues), "restored"))
            self._serve(agent, dict(queues), now)
        return refused

    def _follow_moves(self, now: float) -> None:
        """Take the moves other backends kept in the store (a move this router's
        configuration refuses is left aside: it keeps its view)."""
        try:
            moves = self._moves.memberships()
        except AcdStateUnavailable:
            return  # the store is away: the router's own view stands until it is back
        for agent, queues in moves.items():
            if agent not in self._members or queues == self._members[agent]:
                continue
            try:
                self.check_queues(agent, queues)
            except AcdError:
                continue
            self._events.append(AgentQueuesChanged(now, agent, dict(queues), "another backend"))
            self._serve(agent, dict(queues), now)

    def _serve(self, agent: str, queues: dict[str, int], now: float) -> None:
        """``agent`` serves ``queues`` from now: a free one moves between free lists."""
        self._members[agent] = queues
        if self.agents.get(agent).state is AgentState.AVAILABLE:
            # if_idle: an agent another backend holds stays with it (it frees it there).
            self._make_free(agent, now, if_idle=True)

    def overflow(self, call_id: str, reason: str, now: float) -> list[Decision]:
        """Send a waiting caller to its queue's overflow target now (the shell's reason,
        e.g. an estimated wait beyond ``max_estimated_wait``)."""
        caller = self._waiting.get(call_id)
        if caller is None:
            raise UnknownCall(f"call {call_id} is not waiting in a queue: nothing to overflow")
        released = self._unqueue(call_id, now)
        return self._overflow(caller, reason, now) + released

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

    def offer_failed(
        self, call_id: str, agent: str, reason: str, now: float, missed: bool = True
    ) -> list[Decision]:
        """The offer to ``agent`` failed (busy, Originate refused...) or rang out
        (``timeout``): the caller keeps its place and goes to the next agent. ``missed``
        (the agent's phone rang in vain): the agent is not offered this caller again for
        the queue's ``retry`` seconds unless nobody else took it; not when an action
        failed (AMI link down), which is not the agent's doing."""
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
        if not missed:
            return decisions + self._free_agent(agent, now, held=True)
        return decisions + self._rest_after_miss(agent, caller, now)

    def _rest_after_miss(self, agent: str, caller: WaitingCaller, now: float) -> list[Decision]:
        """Free an agent who just let ``caller`` ring out, for anyone but that caller: it
        waits for another agent, up to the queue's ``retry`` seconds."""
        retry = self.config.queues[caller.queue].retry
        if caller.call_id not in self._waiting or retry <= 0:
            return self._free_agent(agent, now, held=True)
        # Out of the store for a moment, so the agent is offered the next caller if any.
        self._state.remove_caller(caller.call_id)
        try:
            decisions = self._free_agent(agent, now, held=True)
        finally:
            self._state.add_caller(caller)
        member = self.agents.get(agent)
        # Still free (nobody else waits): keep it off until the caller goes to someone else
        # or ``retry`` passes. ``if_idle``: another backend may have claimed it meanwhile.
        if (
            member.state is AgentState.AVAILABLE
            and member.call_id is None
            and self._state.set_unavailable(agent, if_idle=True)
        ):
            self._resting[agent] = (caller.call_id, now + retry)
            self._start_timer(now + retry, "rest", agent)
        return decisions

    def _release_rest(self, call_id: str, now: float) -> list[Decision]:
        """The caller agents were kept from went elsewhere: those agents are free again."""
        decisions: list[Decision] = []
        for agent in [a for a, (c, _) in self._resting.items() if c == call_id]:
            del self._resting[agent]
            # Not held: a resting agent is in no free list and reserved by nobody here.
            decisions += self._free_agent(agent, now)
        return decisions

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
            decisions += self._unqueue(call_id, now)
        return decisions + self._queue_callback(caller, caller.queue, number, now)

    def _callback_pending(self, queue: str, number: str) -> bool:
        """A request for ``number`` in ``queue`` waiting, ringing an agent, dialling the
        customer, waiting to be dialled again or in progress."""
        if self._state.find_callback(queue, number) is not None:
            return True
        live = [r.caller for r in self._ringing.values()] + [
            c.caller for c in (*self._connected.values(), *self._dialling.values())
        ]
        live += [request for request, _ in self._retrying.values()]
        return any(c.callback == number and c.queue == queue for c in live)

    def callback_leg_ended(self, request_id: str, reason: str, now: float) -> list[Decision]:
        """The shell saw the agent leg of callback request ``request_id`` hang up. If the
        call model never saw it dial the customer (no outbound call: nothing dialled, a
        number the dialplan refused), the attempt failed with ``reason``; otherwise the
        outbound call's own events decide and this changes nothing."""
        if request_id in self._dialling and request_id not in self._outbound.values():
            return self._callback_failed(request_id, reason, now)
        return []

    def _outbound_started(self, event: CallArrived, now: float) -> list[Decision]:
        """A callback's agent leg dials the customer (the call model's outbound call)."""
        request_id = event.callback
        assert request_id is not None
        ringing = self._ringing.get(request_id)
        if ringing is not None and len(ringing.agents) == 1:
            # Dialling before the shell reported the agent's answer: the agent answered.
            (agent,) = ringing.agents
            decisions = self.offer_answered(request_id, agent, now)
        elif request_id in self._dialling:
            decisions = []
        else:
            return []  # not a request of this router (another backend's, an earlier run's)
        self._outbound[event.call_id] = request_id
        return decisions

    def _outbound_outcome(
        self, event: CallAnswered | CallFailed | CallEnded, now: float
    ) -> list[Decision]:
        """The customer answered (the request is connected at last), the dial failed, or
        the outbound call ended (completed if connected, else failed)."""
        request_id = self._outbound[event.call_id]
        if request_id is None:
            # A dial that already failed: its end is no news (the request may be dialling
            # again by now, through another call).
            if isinstance(event, CallEnded):
                del self._outbound[event.call_id]
            return []
        if isinstance(event, CallEnded):
            del self._outbound[event.call_id]
            if request_id in self._connected:
                return self._complete(request_id, now)
            reason = "hung up" if event.cause_text is None else event.cause_text
            return self._callback_failed(request_id, f"ended unanswered ({reason})", now)
        if isinstance(event, CallFailed):
            self._outbound[event.call_id] = None
            return self._callback_failed(request_id, event.status, now)
        dialling = self._dialling.pop(request_id, None)
        if dialling is None:
            return []
        self._attempts.pop(request_id, None)
        request = dialling.caller
        self._connected[request_id] = _Connected(request.queue, dialling.agent, now, request)
        wait = now - request.joined_at
        self._events.append(CallerConnected(now, request_id, request.queue, dialling.agent, wait))
        return []

    def _callback_failed(self, request_id: str, reason: str, now: float) -> list[Decision]:
        """The customer was not reached: the agent, who did answer, is free with no miss
        counted; the request waits ``spacing`` seconds out of the queue, then goes back
        with its score (its place), until the queue's ``attempts`` are spent."""
        dialling = self._dialling.pop(request_id, None)
        if dialling is None:
            return []  # already failed, or connected meanwhile
        request, agent = dialling.caller, dialling.agent
        policy = self.config.queues[request.queue].callback
        attempt = self._attempts.pop(request_id, 0) + 1
        retry_at = now + policy.spacing if attempt < policy.attempts else None
        self._events.append(self.agents.hang_up(agent, now, 0))
        self._events.append(
            CallbackFailed(now, request_id, request.queue, agent, reason, attempt, retry_at)
        )
        if retry_at is None:
            number = request.callback or ""
            self._events.append(
                CallbackGivenUp(now, request_id, request.queue, number, attempt, reason)
            )
        else:
            self._attempts[request_id] = attempt
            self._retrying[request_id] = (request, retry_at)
            self._start_timer(retry_at, "callback", request_id)
        return self._free_agent(agent, now, held=True)

    def _callback_again(self, request_id: str, now: float) -> list[Decision]:
        """A failed request's spacing is over: back in its queue with its score."""
        request, _ = self._retrying.pop(request_id)
        if not self._state.add_caller(request):
            return []
        self._track(request)
        return self._dispatch([request.queue], now)

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
            elif kind == "rest":
                del self._resting[key]
                decisions += self._free_agent(key, now)
            elif kind == "callback":
                decisions += self._callback_again(key, now)
            else:
                caller = self._waiting[key]
                released = self._unqueue(key, now)
                decisions += self._overflow(caller, "max-wait", now) + released
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

    def resting(self) -> dict[str, str]:
        """Agents kept from the caller they just let ring out -> that caller."""
        return {agent: call_id for agent, (call_id, _) in self._resting.items()}

    def callbacks_out(self) -> dict[str, str]:
        """Callback requests out of their queue for now -> ``dialling`` (the agent answered,
        the customer's phone rings) or ``retrying`` (waiting out the spacing after a dial
        that failed)."""
        out = dict.fromkeys(self._dialling, "dialling")
        return out | dict.fromkeys(self._retrying, "retrying")

    def offers(self) -> dict[str, tuple[str, ...]]:
        """Calls (or callback requests) ringing now -> the agents they ring.

        Safe to call from another thread than the one routing (``AcdDriver(threaded=True)``):
        ``list(...)`` and ``sorted(...)`` copy the dict and each set in one step each."""
        ringing = list(self._ringing.items())
        return {call_id: tuple(sorted(r.agents)) for call_id, r in ringing}

    # Callers.

    def _park(self, event: CallParked, now: float) -> list[Decision]:
        if event.call_id in self._waiting or event.call_id in self._ringing:
            return []  # parked again while already queued: keep its place
        self._open.pop(event.call_id, None)  # still waiting: it is ours again
        queue = self._queue_for(event.call_id, event.lane)
        if queue is None:
            return []  # a lane no queue of ours is fed by
        number = self._number_of(event.call_id)
        return self._join(queue, event.call_id, self._tier_of(event.call_id), number, now)

    def _queue_for(self, call_id: str, lane: str | None) -> str | None:
        """The queue a caller's holding lane (or else the number it dialled) feeds."""
        arrival = self._arrivals.get(call_id)
        queue = self.config.queue_of_lane(lane) if lane else None
        if queue is None and arrival is not None and arrival.dialled:
            queue = self.config.queue_of_did(arrival.dialled)
        return queue

    def _number_of(self, call_id: str) -> str | None:
        arrival = self._arrivals.get(call_id)
        return arrival.caller.number if arrival is not None else None

    def _tier_of(self, call_id: str) -> str:
        """The tier the shell resolved on arrival, else the router's own table's."""
        tier = self._arrival_tiers.get(call_id)
        if tier is None and self._tiers is not None:
            tier = self._tiers.tier_of(self._number_of(call_id))
        return DEFAULT_TIER if tier is None else tier

    def _device(self, event: DeviceStateChanged, now: float) -> list[Decision]:
        """An agent's phone changed state: busy keeps the agent from offers, whatever its
        state here; idle lets an available agent be offered again."""
        agent = self._agent_at.get(event.interface)
        if agent is None:
            return []
        if event.state != "idle":
            self._device_busy.add(agent)
            if self.agents.get(agent).state is AgentState.AVAILABLE:
                # if_idle: this router's own offer or call is not undone by its own ringing.
                self._state.set_unavailable(agent, if_idle=True)
                self._show_busy(agent, now)
            return []
        if agent not in self._device_busy:
            return []
        self._device_busy.discard(agent)
        if agent in self._shown_busy:
            self._shown_busy.discard(agent)
            if self.agents.get(agent).state is AgentState.AVAILABLE:
                self._events.append(AgentStateChanged(now, agent, "available"))
        return self._free_agent(agent, now)

    def _answered_elsewhere(self, event: CallAnswered, now: float) -> list[Decision]:
        """A caller was answered without this router's offer: by app_queue, another ACD or
        a person, or, for a ``restored`` event, by this backend before it restarted. It
        waits no more; an agent of ours found on such a call of our lanes is on-call with
        it (wrap-up and the next offer follow its end)."""
        call_id = event.call_id
        decisions: list[Decision] = []
        if call_id in self._waiting:
            decisions += self._unqueue(call_id, now)
        elif (ringing := self._ringing.pop(call_id, None)) is not None:
            decisions += self._withdraw(call_id, ringing.agents, now)
        open_call = self._open.pop(call_id, None)
        agent = self._agent_at.get(event.agent.interface)
        # Calls not out of a holding lane (app_queue's) are the PBX's: the device state
        # covers them.
        if not event.restored or agent is None or event.lane is None:
            return decisions
        queue = self._queue_for(call_id, event.lane) or (open_call and open_call.queue)
        if not queue:
            return decisions
        try:
            self._events.append(self.agents.take_call(agent, call_id, event.at))
        except AcdError:
            return decisions  # ringing or talking here: this router's own view wins
        self._state.set_unavailable(agent)
        self._wrapping.pop(agent, None)
        number = self._number_of(call_id)
        joined_at = event.at - event.wait
        caller = WaitingCaller(
            call_id, queue, self.pbx, 0.0, joined_at, self._tier_of(call_id), number
        )
        self._connected[call_id] = _Connected(queue, agent, event.at, caller)
        self._events.append(CallerConnected(event.at, call_id, queue, agent, event.wait))
        return decisions

    def _close_open(self, call: OpenCall, ended: CallEnded, now: float) -> list[Decision]:
        """A call a previous run left open ended unseen (or was found gone): close its
        ACD record. When exactly it ended is uncertain: the times count up to
        ``ended_after`` when known (a lower bound)."""
        until = ended.ended_after if ended.ended_after is not None else ended.at
        if call.agent is None:
            self._events.append(
                CallerAbandoned(now, call.call_id, call.queue, max(0.0, until - call.since), None)
            )
        else:
            talk = max(0.0, until - call.since)
            self._events.append(CallCompleted(now, call.call_id, call.queue, call.agent, talk))
        # A caller a shared store still holds from before the restart goes too.
        self._state.remove_caller(call.call_id)
        return []

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
                return decisions + self._overflow(caller, "closed", now, joined=False)
        if queue.max_length is not None and self._state.length(queue_name) >= queue.max_length:
            return decisions + self._overflow(caller, "full", now, joined=False)
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

    def _overflow(
        self, caller: WaitingCaller, reason: str, now: float, *, joined: bool = True
    ) -> list[Decision]:
        """Send a caller (already out of the store) to its queue's overflow target;
        ``joined``: it was waiting in the queue (else it was joining it).

        A callback needs a number: a caller without one (withheld, unknown) is never
        promised one. It goes to the overflow's ``fallback`` (a queue or a mailbox) or,
        with none, stays in its queue in its place (no further max-wait overflow)."""
        queue = self.config.queues[caller.queue]
        assert queue.overflow is not None  # config validation: limits and hours need one
        kind, target = queue.overflow.kind, queue.overflow_target()
        if kind == "callback" and caller.number is None:
            fallback = queue.overflow.fallback
            self._events.append(
                CallbackNotOffered(
                    now, caller.call_id, caller.queue, reason,
                    fallback.target if fallback is not None else None,
                )
            )
            if fallback is None:
                return self._keep_waiting(caller, now, joined)
            kind, target = fallback.kind, fallback.target
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
            and not self._callback_pending(target, caller.number)
        ):
            decisions += self._queue_callback(caller, target, caller.number, now)
        return decisions

    def _keep_waiting(self, caller: WaitingCaller, now: float, joined: bool) -> list[Decision]:
        """A caller its queue cannot overflow (no number for a callback, no fallback): it
        joins, or stays in, the queue with its score, and is not overflowed for max-wait
        again."""
        if not joined:
            return self._enqueue(caller, now)
        if self._state.add_caller(caller):
            self._waiting[caller.call_id] = caller
        return self._dispatch([caller.queue], now)

    def _caller_left(self, call_id: str, now: float) -> list[Decision]:
        if call_id in self._waiting:
            caller = self._waiting[call_id]
            position = self._position(caller)
            released = self._unqueue(call_id, now)
            wait = now - caller.joined_at
            self._events.append(CallerAbandoned(now, call_id, caller.queue, wait, position))
            return released
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
        # Our own view, not the store's: a queue closing during a Redis outage still
        # overflows its callers.
        ours = [c for c in self._waiting.values() if c.queue == queue.name]
        for caller in sorted(ours, key=_serving_order):
            # A callback request is not on the line: it waits for an agent, open or not.
            # (One offered meanwhile, to an agent freed by a release here, is not waiting.)
            if caller.callback is None and caller.call_id in self._waiting:
                released = self._unqueue(caller.call_id, now)
                decisions += self._overflow(caller, "closed", now) + released
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
        if kind == "rest":
            return key in self._resting and self._resting[key][1] == when
        if kind == "callback":
            return key in self._retrying and self._retrying[key][1] == when
        caller = self._waiting.get(key)
        max_wait = self.config.queues[caller.queue].max_wait if caller else None
        return caller is not None and max_wait is not None and caller.joined_at + max_wait == when

    def _unqueue(self, call_id: str, now: float) -> list[Decision]:
        """Take one of our callers out of its queue; agents resting from it are free again
        (the decisions that follow)."""
        del self._waiting[call_id]
        self._state.remove_caller(call_id)
        return self._release_rest(call_id, now) if self._resting else []

    def _position(self, caller: WaitingCaller) -> int:
        """The caller's place in its queue: the store's rank (every PBX), not a read of
        the whole queue."""
        position = self._state.position(caller.call_id)
        if position is not None:
            return position
        # Redis down or restarted and not re-seeded yet: our own callers' order.
        ours = (c for c in self._waiting.values() if c.queue == caller.queue)
        return sorted(ours, key=_serving_order).index(caller) + 1

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
            if agent in self._device_busy:
                self._show_busy(agent, now)
            return []
        return self._dispatch(self._queues_of([agent]), now)

    def _show_busy(self, agent: str, now: float) -> None:
        """Tell supervisors and figures an available agent is on a call the ACD did not
        make (state ``busy``), once; ``available`` follows when the phone is idle."""
        if agent not in self._shown_busy:
            self._shown_busy.add(agent)
            self._events.append(AgentStateChanged(now, agent, "busy", "device busy"))

    def _make_free(self, agent_id: str, now: float, *, if_idle: bool = False) -> bool:
        if agent_id in self._device_busy or agent_id in self._resting:
            # Free in the roster, but its phone is busy or it rests from a missed caller.
            self._state.set_unavailable(agent_id, if_idle=if_idle)
            return False
        agent = self.agents.get(agent_id)
        skills = self.config.agents[agent_id].skills
        scores = {
            name: agent_score(agent, self.config.queues[name], penalty, skills)
            for name, penalty in self._members[agent_id].items()
            if eligible(skills, self.config.queues[name])
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
        return sorted({q for a in agents for q in self._members[a]})

    def _dispatch(self, queues: list[str], now: float) -> list[Decision]:
        """Pair waiting callers with free agents in ``queues``, best caller first."""
        decisions: list[Decision] = []
        if len(queues) > 1:
            queues = sorted(queues, key=self._head_score, reverse=True)
        for name in queues:
            queue = self.config.queues[name]
            while (claim := self._claim(queue)) is not None:
                decisions.append(self._offer(claim, queue, now))
                if self._resting:
                    decisions += self._release_rest(claim.caller.call_id, now)
        return decisions

    def _head_score(self, queue: str) -> float:
        head = self._state.head(queue)
        return head.score if head is not None else float("-inf")

    def _claim(self, queue: QueueConfig) -> Claim | None:
        if queue.strategy != "ring_all":
            return self._state.claim(queue.name, self.pbx)
        free = self._state.available(queue.name)
        if not free:
            return None
        # Ring every free member of the best penalty, as app_queue's ringall does.
        # (Another backend's move this router has not followed yet: no penalty, own group.)
        best = self._members.get(free[0], {}).get(queue.name)
        count = sum(1 for a in free if self._members.get(a, {}).get(queue.name) == best)
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
            return CallBack(
                caller.call_id, queue.name, agents[0], caller.callback, queue.ring_timeout
            )
        return Offer(
            caller.call_id, self.pbx, queue.name, agents, caller.number, queue.ring_timeout
        )

    def reseed(self, now: float, free_agents: bool = True) -> list[Decision]:
        """Put this router's share back into a store that lost it or missed writes (Redis
        restarted, or was unreachable; see ``acd.store_health``): its waiting callers (same
        score: same place), the agents ringing, talking or wrapping up through it (reserved
        again, so no other backend offers them) and, with ``free_agents``, its available
        agents (``if_idle``: a reservation by another backend is left alone); then it
        dispatches every queue. Idempotent: what the store still holds is left as it is.
        The agents' moves between queues the store lost are written back too."""
        self._reseed_moves()
        for caller in list(self._waiting.values()):
            self._state.add_caller(caller)
        busy = (AgentState.RINGING, AgentState.ON_CALL, AgentState.WRAP_UP)
        for agent in self.agents:
            if agent.state in busy:
                self._state.reserve(agent.id)
        if free_agents:
            for agent in self.agents:
                if agent.state is AgentState.AVAILABLE:
                    self._make_free(agent.id, now, if_idle=True)
        return self._dispatch(sorted(self.config.queues), now)

    def _reseed_moves(self) -> None:
        """Write back the moves of agents the store no longer has (a restarted Redis)."""
        moved = {a: q for a, q in self._members.items() if q != self.config.agents[a].queues}
        if not moved:
            return
        try:
            kept = self._moves.memberships()
            for agent, queues in moved.items():
                if agent not in kept:
                    self._moves.set_memberships(agent, queues)
        except AcdStateUnavailable:
            return  # away again: the next re-seeding writes them
