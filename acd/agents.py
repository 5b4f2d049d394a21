"""Agents and their states: the state machine the router drives and agents command.

::

    logged_out --login--> available --offer--> ringing --answer--> on_call --hang-up--> wrap_up
                          ^   |  ^               |  (miss: back, or paused "no-answer")    |
                          |  pause  `------------'                                         |
                          `-unpause- paused <--pause-- wrap_up ---(wrap-up time over)------'

Commands that do not fit the agent's state raise an :class:`AcdError` subclass and change
nothing. Pausing an agent who is ringing or on a call is **refused** (:class:`AgentBusy`)
rather than deferred as app_queue does: the agent pauses during wrap-up instead, which ends
the wrap-up at once, so the agent is never offered the next call.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from .errors import (
    AcdError,
    AgentBusy,
    AgentStateError,
    AlreadyLoggedIn,
    NotLoggedIn,
    NotPaused,
    UnknownAgent,
)
from .events import AgentStateChanged

__all__ = [
    "NO_ANSWER",
    "AcdError",
    "Agent",
    "AgentBusy",
    "AgentRoster",
    "AgentState",
    "AgentStateChanged",
    "AgentStateError",
    "AlreadyLoggedIn",
    "IneligibleMembership",
    "InvalidMembership",
    "MembershipRefused",
    "NotLoggedIn",
    "NotPaused",
    "UnknownAgent",
]

#: The pause reason of an agent paused by the ACD after too many missed offers.
NO_ANSWER = "no-answer"


class MembershipRefused(AcdError):
    """A change of an agent's queues the ACD refuses; nothing was changed. ``problems``:
    (field, problem) pairs, the field being ``queues`` or ``queues.<queue>``."""

    def __init__(self, agent: str, problems: list[tuple[str, str]]) -> None:
        self.agent = agent
        self.problems = problems
        super().__init__(
            f"agent {agent}: " + "; ".join(f"{field}: {problem}" for field, problem in problems)
        )


class InvalidMembership(MembershipRefused):
    """No queue at all, a queue the configuration does not have, or a penalty out of range."""


class IneligibleMembership(MembershipRefused):
    """The agent lacks a skill (or its level) a queue requires."""


class AgentState(StrEnum):
    AVAILABLE = "available"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"
    LOGGED_OUT = "logged_out"


@dataclass(slots=True)
class Agent:
    """One agent's live state (read it; change it only through :class:`AgentRoster`)."""

    id: str
    name: str
    state: AgentState = AgentState.LOGGED_OUT
    pause_reason: str | None = None
    #: When the agent last became free after a call (or logged in): longest-idle order.
    idle_since: float = 0.0
    calls_taken: int = 0
    #: Consecutive offers not answered; reset by an answer or an unpause.
    missed_offers: int = 0
    #: The call (or callback request) ringing or connected; None otherwise.
    call_id: str | None = None
    #: When the wrap-up ends, while in ``wrap_up``.
    wrap_up_until: float | None = None
    #: queue -> when this agent was last offered one of its calls: round robin's memory.
    last_offered: dict[str, float] = field(default_factory=dict)


class AgentRoster:
    """All configured agents; every transition returns its :class:`AgentStateChanged`."""

    def __init__(self, agents: Iterable[tuple[str, str]]) -> None:
        """``agents``: (id, name) pairs."""
        self._agents = {agent_id: Agent(agent_id, name) for agent_id, name in agents}

    def __iter__(self) -> Iterator[Agent]:
        return iter(self._agents.values())

    def get(self, agent_id: str) -> Agent:
        """The agent, or :class:`UnknownAgent`."""
        try:
            return self._agents[agent_id]
        except KeyError:
            raise UnknownAgent(
                f"unknown agent {agent_id!r}: not in the ACD configuration"
            ) from None

    # Agent commands.

    def login(self, agent_id: str, now: float) -> AgentStateChanged:
        agent = self.get(agent_id)
        if agent.state is not AgentState.LOGGED_OUT:
            raise AlreadyLoggedIn(f"agent {agent_id} is already logged in ({agent.state})")
        agent.idle_since = now
        agent.missed_offers = 0
        return _move(agent, AgentState.AVAILABLE, now)

    def logout(self, agent_id: str, now: float) -> AgentStateChanged:
        agent = self.get(agent_id)
        _refuse_busy(agent, "log out")
        if agent.state is AgentState.LOGGED_OUT:
            raise NotLoggedIn(f"agent {agent_id} is not logged in")
        return _move(agent, AgentState.LOGGED_OUT, now)

    def pause(self, agent_id: str, reason: str, now: float) -> AgentStateChanged:
        """Pause (or change the pause reason); allowed when available, wrapping up or paused."""
        agent = self.get(agent_id)
        _refuse_busy(agent, "pause")
        if agent.state is AgentState.LOGGED_OUT:
            raise NotLoggedIn(f"agent {agent_id} is not logged in: log in before pausing")
        return _move(agent, AgentState.PAUSED, now, reason)

    def unpause(self, agent_id: str, now: float) -> AgentStateChanged:
        agent = self.get(agent_id)
        if agent.state is not AgentState.PAUSED:
            raise NotPaused(f"agent {agent_id} is not paused ({agent.state})")
        agent.missed_offers = 0
        return _move(agent, AgentState.AVAILABLE, now)

    # Transitions the router makes.

    def ring(self, agent_id: str, call_id: str, queue: str, now: float) -> AgentStateChanged:
        """Offer ``call_id`` of ``queue`` to an available agent."""
        agent = self._expect(agent_id, AgentState.AVAILABLE)
        agent.call_id = call_id
        agent.last_offered[queue] = now
        return _move(agent, AgentState.RINGING, now)

    def answer(self, agent_id: str, now: float) -> AgentStateChanged:
        agent = self._expect(agent_id, AgentState.RINGING)
        agent.calls_taken += 1
        agent.missed_offers = 0
        return _move(agent, AgentState.ON_CALL, now)

    def release(self, agent_id: str, now: float) -> AgentStateChanged:
        """Stop ringing without counting a miss (the caller left, or another agent answered)."""
        agent = self._expect(agent_id, AgentState.RINGING)
        agent.call_id = None
        return _move(agent, AgentState.AVAILABLE, now)

    def miss(self, agent_id: str, now: float, auto_pause_after: int) -> AgentStateChanged:
        """The agent let the offer ring out or it failed: available again, or paused
        ``no-answer`` after ``auto_pause_after`` consecutive misses (0: never)."""
        agent = self._expect(agent_id, AgentState.RINGING)
        agent.call_id = None
        agent.missed_offers += 1
        if auto_pause_after and agent.missed_offers >= auto_pause_after:
            return _move(agent, AgentState.PAUSED, now, NO_ANSWER)
        return _move(agent, AgentState.AVAILABLE, now)

    def take_call(self, agent_id: str, call_id: str, now: float) -> AgentStateChanged:
        """The agent is on a call of the ACD's that it did not see begin (found connected
        in the PBX's snapshot after a restart); refused while ringing or on another call."""
        agent = self.get(agent_id)
        _refuse_busy(agent, "take another call")
        agent.call_id = call_id
        return _move(agent, AgentState.ON_CALL, now)

    def hang_up(self, agent_id: str, now: float, wrap_up: float) -> AgentStateChanged:
        """The call is over: wrap up for ``wrap_up`` seconds, or be available at once."""
        agent = self._expect(agent_id, AgentState.ON_CALL)
        agent.call_id = None
        agent.idle_since = now
        if wrap_up > 0:
            agent.wrap_up_until = now + wrap_up
            return _move(agent, AgentState.WRAP_UP, now)
        return _move(agent, AgentState.AVAILABLE, now)

    def end_wrap_up(self, agent_id: str, now: float) -> AgentStateChanged:
        self._expect(agent_id, AgentState.WRAP_UP)
        return _move(self.get(agent_id), AgentState.AVAILABLE, now)

    def _expect(self, agent_id: str, state: AgentState) -> Agent:
        agent = self.get(agent_id)
        if agent.state is not state:
            raise AgentStateError(f"agent {agent_id} is {agent.state}, not {state}")
        return agent


def _refuse_busy(agent: Agent, action: str) -> None:
    if agent.state in (AgentState.RINGING, AgentState.ON_CALL):
        raise AgentBusy(
            f"agent {agent.id} is {agent.state} with call {agent.call_id}: cannot {action} "
            "until the call is over (pausing in wrap-up is allowed)"
        )


def _move(
    agent: Agent, state: AgentState, now: float, reason: str | None = None
) -> AgentStateChanged:
    agent.state = state
    agent.pause_reason = reason if state is AgentState.PAUSED else None
    if state is not AgentState.WRAP_UP:
        agent.wrap_up_until = None
    return AgentStateChanged(at=now, agent=agent.id, state=str(state), reason=reason)
