"""The screen pop's core: who should see which caller's card, and when.

A pure state machine (the shape of ``acd.router``): fed the call model's events, the ACD's
events, the outcome of customer look-ups and agents' choices, it returns :class:`PopFrame`
values — "send this pop to agent 6001". It reads no clock, no database, no socket; the
service (``crm_bridge.service``) looks customers up and delivers the frames.

The pop follows the call:

* ``ring`` — an agent's phone rings for the call (the ACD's ``caller_offered``, or the PBX's
  own ``offered`` for app_queue and direct calls): the pop goes to that agent only, before
  answer. Several agents rung at once each get it.
* ``answered`` — the agent answered (the others rung are sent ``withdrawn``).
* ``withdrawn`` — the offer ended without this agent answering.
* ``transferred`` — the call left this agent (a transfer): the new agent gets ``ring`` or
  ``answered`` with the same customer, the one the first agent picked included.
* ``update`` — what is known changed while the pop is up: the look-up answered, an agent
  picked a candidate, the caller ID changed, the external CRM answered late, a customer's
  open tickets changed (:meth:`PopDesk.tickets_changed`).
* ``ended`` — the caller hung up; the pop is closed.

:meth:`PopDesk.current` gives an agent's pop of the call in progress again (a reconnect).
:meth:`PopDesk.call_record` tells what the pop knew of a call, live or ended lately (the
last :data:`KEEP_ENDED`), and who talked to the caller: a ticket made in wrap-up is
prefilled from it, and only those agents may make it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from acd.events import (
    AcdEvent,
    CallerConnected,
    CallerJoined,
    CallerOffered,
    OfferNotAnswered,
)
from cti.calls.events import (
    AgentChanged,
    CallAnswered,
    CallArrived,
    CallEnded,
    CallerChanged,
    CallOffered,
    CallParked,
    CallQueued,
    CallTransferred,
    DigitsReceived,
    IvrEntered,
    OfferMissed,
    PbxEvent,
)

__all__ = [
    "KEEP_ENDED",
    "CallRecord",
    "FrameKind",
    "Identity",
    "PopDesk",
    "PopError",
    "PopFrame",
]

FrameKind = Literal["ring", "answered", "withdrawn", "transferred", "update", "ended"]

#: How far the caller is identified: ``pending`` (looking up), ``known`` (one customer),
#: ``several`` (candidates: the agent picks), ``unknown`` (no customer has the number),
#: ``withheld`` (no number to look up).
IdentityState = Literal["pending", "known", "several", "unknown", "withheld"]

#: Ended calls the desk remembers (newest kept) for the agents' wrap-up: a ticket made from
#: a call just hung up is prefilled from its pop. Older ones: the pops' audit rows.
KEEP_ENDED = 5_000


class PopError(Exception):
    """An agent's request about a pop cannot be done: ``status`` is the HTTP-like status
    (403: not this agent's pop, 404: no such call, 409: not a candidate)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the caller is, as far as known: ``cards`` are the candidates' pop cards (JSON-
    ready dicts with at least ``id``), ``chosen`` the id picked when there are several;
    ``note`` tells the agent what is uncertain (the external CRM was late or down, the
    look-up failed; None: nothing)."""

    state: IdentityState
    cards: tuple[Mapping[str, Any], ...] = ()
    chosen: str | None = None
    note: str | None = None

    @staticmethod
    def of(
        cards: Sequence[Mapping[str, Any]], *, chosen: str | None = None, note: str | None = None
    ) -> Identity:
        """The identity ``cards`` give: one card is known, several are candidates."""
        if not cards:
            return Identity("unknown", note=note)
        if len(cards) == 1:
            return Identity("known", tuple(cards), str(cards[0]["id"]), note)
        ids = {str(c["id"]) for c in cards}
        return Identity("several", tuple(cards), chosen if chosen in ids else None, note)

    @property
    def customer(self) -> Mapping[str, Any] | None:
        """The one customer's card, once known or chosen."""
        return next((c for c in self.cards if str(c["id"]) == self.chosen), None)


@dataclass(frozen=True, slots=True)
class PopFrame:
    """Send ``pop`` to ``agent``: ``kind`` says why (see the module's list)."""

    agent: str
    kind: FrameKind
    call_id: str
    at: float
    pop: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CallRecord:
    """What the pop knew of a call: the customer (known or picked), the caller's number,
    the queue, the IVR path and digits, the agents who talked to the caller (``agents``) and
    whether it ``ended``."""

    call_id: str
    customer_id: str | None
    number: str | None
    queue: str | None
    ivr: tuple[Mapping[str, Any], ...]
    digits: str
    agents: frozenset[str]
    ended: bool


@dataclass(slots=True)
class _Call:
    call_id: str
    arrived_at: float
    number: str | None
    name: str | None
    dialled: str | None
    identity: Identity
    queue: str | None = None
    joined_at: float | None = None
    tier: str | None = None
    ivr: list[dict[str, Any]] = field(default_factory=list)
    digits: str = ""
    ringing: set[str] = field(default_factory=set)
    agent: str | None = None  # the agent talking to the caller
    answered_at: float | None = None
    had: set[str] = field(default_factory=set)  # every agent who talked to the caller
    revision: int = 0


class PopDesk:
    """Every live call's pop and the agents it is with. ``agent_of`` maps an agent-side
    interface or device (``Local/6001@agents``, ``PJSIP/6001``) to the agent's name, None for
    a device that is no agent's."""

    def __init__(self, agent_of: Callable[[str], str | None]) -> None:
        self._agent_of = agent_of
        self._calls: dict[str, _Call] = {}
        #: The call each agent's pop shows (ringing or talking).
        self._with: dict[str, str] = {}
        #: Calls ended lately, oldest first (at most KEEP_ENDED).
        self._ended: OrderedDict[str, _Call] = OrderedDict()

    # -- inputs ---------------------------------------------------------------------------

    def on_call_event(self, event: PbxEvent) -> list[PopFrame]:
        """A call-model event; returns the frames to send."""
        match event:
            case CallArrived(direction="inbound"):
                number = event.caller.number
                self._calls[event.call_id] = _Call(
                    event.call_id,
                    event.at,
                    number,
                    event.caller.name,
                    event.dialled,
                    Identity("pending" if number else "withheld"),
                )
                return []
            case CallerChanged():
                call = self._calls.get(event.call_id)
                if call is None:
                    return []
                call.number, call.name = event.caller.number, event.caller.name
                call.identity = Identity("pending" if call.number else "withheld")
                return self._update(call, event.at)
            case IvrEntered():
                return self._ivr(event.call_id, event.at, {"application": event.application,
                                                            "context": event.context})
            case DigitsReceived():
                call = self._calls.get(event.call_id)
                if call is not None:
                    call.digits += event.digits
                return self._ivr(event.call_id, event.at, {"digits": event.digits})
            case CallQueued():
                return self._queued(event.call_id, event.queue, event.at)
            case CallParked():
                call = self._calls.get(event.call_id)
                if call is not None and call.joined_at is None:
                    call.joined_at = event.at
                return []
            case CallOffered():
                agent = self._agent_of(event.agent.interface)
                if agent is None:
                    return []
                if event.queue is not None:
                    self._queued(event.call_id, event.queue, event.at)
                return self._ring(event.call_id, (agent,), event.at)
            case OfferMissed():
                agent = self._agent_of(event.agent.interface)
                return [] if agent is None else self._withdraw(event.call_id, agent, event.at)
            case CallAnswered():
                agent = self._agent_of(event.agent.interface)
                return [] if agent is None else self._answer(event.call_id, agent, event.at)
            case AgentChanged():
                agent = self._agent_of(event.agent.interface)
                return [] if agent is None else self._move(event.call_id, agent, event.at)
            case CallTransferred(transferer="caller"):
                return []
            case CallTransferred():
                # The new agent is known when the target answers (agent_changed); until
                # then the pop stays with the agent who transferred.
                return []
            case CallEnded():
                return self._end(event.call_id, event.at)
        return []

    def on_acd_event(self, event: AcdEvent) -> list[PopFrame]:
        """An ACD event (callers joined, offered, connected...); returns the frames to send."""
        match event:
            case CallerJoined():
                call = self._calls.get(event.call_id)
                if call is not None:
                    call.tier = event.tier
                return self._queued(event.call_id, event.queue, event.at)
            case CallerOffered():
                return self._ring(event.call_id, event.agents, event.at)
            case OfferNotAnswered():
                return self._withdraw(event.call_id, event.agent, event.at)
            case CallerConnected():
                return self._answer(event.call_id, event.agent, event.at)
        return []

    def ivr_walked(self, call_id: str, at: float, walk: Mapping[str, Any]) -> list[PopFrame]:
        """The IVR's own account of the call's flow (``flow``, ``nodes`` walked, ``keyed``
        inputs, ``outcome``, ``queue``): one more step of the pop's IVR path."""
        return self._ivr(call_id, at, dict(walk))

    def identified(self, call_id: str, identity: Identity, at: float) -> list[PopFrame]:
        """The look-up of the caller finished (or the external CRM answered late). A choice
        an agent already made among candidates stands when it is still one of them."""
        call = self._calls.get(call_id)
        if call is None:
            return []
        previous = call.identity.chosen
        if identity.state == "several" and identity.chosen is None and previous is not None:
            identity = Identity.of(identity.cards, chosen=previous, note=identity.note)
        call.identity = identity
        return self._update(call, at)

    def choose(self, call_id: str, agent: str, customer_id: str, at: float) -> list[PopFrame]:
        """``agent`` picked ``customer_id`` among the call's candidates. Only the agent the
        pop is with may choose: :class:`PopError` otherwise (403), for a call that is not
        live (404) or a customer that is no candidate (409)."""
        call = self._own_call(call_id, agent)
        ids = [str(c["id"]) for c in call.identity.cards]
        if customer_id not in ids:
            raise PopError(409, f"customer {customer_id!r} is not a candidate for this caller")
        call.identity = replace(call.identity, chosen=customer_id)
        return self._update(call, at)

    def attach(
        self, call_id: str, agent: str, card: Mapping[str, Any], at: float
    ) -> list[PopFrame]:
        """``agent`` created a customer for an unknown caller, or attached the caller's
        number to an existing customer: the pop shows ``card`` from now on."""
        call = self._own_call(call_id, agent)
        cards = tuple(c for c in call.identity.cards if str(c["id"]) != str(card["id"]))
        call.identity = Identity(
            "known" if not cards else "several",
            (*cards, card),
            str(card["id"]),
            call.identity.note,
        )
        return self._update(call, at)

    # -- read side ------------------------------------------------------------------------

    def current(self, agent: str, at: float) -> PopFrame | None:
        """The pop of the call ``agent`` has now (ringing or talking), to send again."""
        call_id = self._with.get(agent)
        call = self._calls.get(call_id) if call_id is not None else None
        if call is None:
            return None
        kind: FrameKind = "answered" if call.agent == agent else "ring"
        return self._frame(call, agent, kind, at)

    def pop_for(self, call_id: str, agent: str, at: float) -> PopFrame:
        """The pop of ``call_id`` as ``agent`` may see it (:class:`PopError` when the call
        is not live, or not ringing or talking at this agent)."""
        call = self._own_call(call_id, agent)
        return self._frame(call, agent, "answered" if call.agent == agent else "ring", at)

    def number_of(self, call_id: str) -> str | None:
        """The caller's number now (None: withheld, or no such call)."""
        call = self._calls.get(call_id)
        return call.number if call is not None else None

    def chosen_of(self, call_id: str) -> str | None:
        """The customer the call is from, once known or chosen."""
        call = self._calls.get(call_id)
        return call.identity.chosen if call is not None else None

    def live_calls(self) -> int:
        """How many calls the desk follows."""
        return len(self._calls)

    def call_record(self, call_id: str) -> CallRecord | None:
        """What the pop knew of ``call_id``, live or among the last :data:`KEEP_ENDED`
        ended (None: neither)."""
        call = self._calls.get(call_id)
        ended = call is None
        if call is None:
            call = self._ended.get(call_id)
        if call is None:
            return None
        return CallRecord(
            call.call_id, call.identity.chosen, call.number, call.queue,
            tuple(dict(step) for step in call.ivr), call.digits, frozenset(call.had), ended,
        )  # fmt: skip

    def customers_shown(self, customer_ids: Collection[str | None], ticket_id: Any) -> set[str]:
        """Of the customers on live calls' pops (the one known or candidates), those in
        ``customer_ids`` and those whose open tickets show ``ticket_id``: whose tickets to
        read again when a ticket changes."""
        shown: set[str] = set()
        for call in self._calls.values():
            for card in call.identity.cards:
                cid = str(card["id"])
                if cid in customer_ids or any(
                    t.get("id") == ticket_id for t in card.get("open_tickets") or ()
                ):
                    shown.add(cid)
        return shown

    def tickets_changed(
        self, customer_id: str, tickets: Sequence[Mapping[str, Any]], at: float
    ) -> list[PopFrame]:
        """``customer_id``'s open tickets are now ``tickets``: every live call showing that
        customer (known or a candidate) has its card updated, and the agents with it an
        ``update``."""
        frames: list[PopFrame] = []
        for call in self._calls.values():
            cards = call.identity.cards
            if not any(str(c["id"]) == customer_id for c in cards):
                continue
            new = tuple(
                {**c, "open_tickets": list(tickets)} if str(c["id"]) == customer_id else c
                for c in cards
            )
            if new == cards:
                continue
            call.identity = replace(call.identity, cards=new)
            frames += self._update(call, at)
        return frames

    # -- inside ---------------------------------------------------------------------------

    def _own_call(self, call_id: str, agent: str) -> _Call:
        call = self._calls.get(call_id)
        if call is None:
            raise PopError(404, f"no live call {call_id!r}")
        if agent != call.agent and agent not in call.ringing:
            raise PopError(403, f"call {call_id!r} is not ringing or talking at agent {agent}")
        return call

    def _ivr(self, call_id: str, at: float, step: dict[str, Any]) -> list[PopFrame]:
        call = self._calls.get(call_id)
        if call is None:
            return []
        call.ivr.append({"at": at, **step})
        # IVR steps happen before any agent has the pop; no frame needed.
        return self._update(call, at) if call.agent or call.ringing else []

    def _queued(self, call_id: str, queue: str, at: float) -> list[PopFrame]:
        call = self._calls.get(call_id)
        if call is not None:
            call.queue = queue
            if call.joined_at is None:
                call.joined_at = at
        return []

    def _ring(self, call_id: str, agents: Sequence[str], at: float) -> list[PopFrame]:
        call = self._calls.get(call_id)
        if call is None:
            return []
        frames = []
        for agent in agents:
            if agent in call.ringing or agent == call.agent:
                continue
            call.ringing.add(agent)
            self._with[agent] = call_id
            frames.append(self._frame(call, agent, "ring", at))
        return frames

    def _withdraw(self, call_id: str, agent: str, at: float) -> list[PopFrame]:
        call = self._calls.get(call_id)
        if call is None or agent not in call.ringing:
            return []
        call.ringing.discard(agent)
        self._release(agent, call_id)
        return [self._frame(call, agent, "withdrawn", at)]

    def _answer(self, call_id: str, agent: str, at: float) -> list[PopFrame]:
        call = self._calls.get(call_id)
        if call is None or call.agent == agent:
            return []
        frames = []
        others = sorted(call.ringing - {agent})
        call.ringing.clear()
        for other in others:
            self._release(other, call_id)
            frames.append(self._frame(call, other, "withdrawn", at))
        previous = call.agent
        call.agent, call.answered_at = agent, at
        call.had.add(agent)
        self._with[agent] = call_id
        if previous is not None:
            self._release(previous, call_id)
            frames.append(self._frame(call, previous, "transferred", at))
        frames.append(self._frame(call, agent, "answered", at))
        return frames

    def _move(self, call_id: str, agent: str, at: float) -> list[PopFrame]:
        """The call is with ``agent`` now (a transfer's target answered)."""
        return self._answer(call_id, agent, at)

    def _end(self, call_id: str, at: float) -> list[PopFrame]:
        call = self._calls.pop(call_id, None)
        if call is None:
            return []
        self._ended[call_id] = call
        while len(self._ended) > KEEP_ENDED:
            self._ended.popitem(last=False)
        agents = sorted(call.ringing | ({call.agent} if call.agent else set()))
        frames = []
        for agent in agents:
            self._release(agent, call_id)
            frames.append(self._frame(call, agent, "ended", at))
        return frames

    def _update(self, call: _Call, at: float) -> list[PopFrame]:
        agents = sorted(call.ringing | ({call.agent} if call.agent else set()))
        return [self._frame(call, agent, "update", at) for agent in agents]

    def _release(self, agent: str, call_id: str) -> None:
        if self._with.get(agent) == call_id:
            del self._with[agent]

    def _frame(self, call: _Call, agent: str, kind: FrameKind, at: float) -> PopFrame:
        call.revision += 1
        return PopFrame(agent, kind, call.call_id, at, _pop(call, agent, kind, at))


def _pop(call: _Call, agent: str, kind: FrameKind, at: float) -> dict[str, Any]:
    """The pop as the agent's page shows it (JSON-ready)."""
    identity = call.identity
    waiting_since = call.joined_at if call.joined_at is not None else call.arrived_at
    wait_until = call.answered_at if call.answered_at is not None else at
    state = (
        "ended" if kind == "ended"
        else "talking" if call.agent == agent and kind != "transferred"
        else "ringing" if agent in call.ringing
        else "gone"
    )
    return {
        "call_id": call.call_id,
        "kind": kind,
        "at": at,
        "revision": call.revision,
        "agent": agent,
        "state": state,
        "caller": {"number": call.number, "name": call.name, "withheld": call.number is None},
        "dialled": call.dialled,
        "queue": call.queue,
        "tier": call.tier,
        "wait": round(max(0.0, wait_until - waiting_since), 1),
        "ivr": {"path": list(call.ivr), "digits": call.digits},
        "identity": identity.state,
        "customer": identity.customer,
        "candidates": list(identity.cards) if identity.state == "several" else [],
        "note": identity.note,
    }
