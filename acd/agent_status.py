"""Each agent's state and current call as the agent's desk shows them, kept from the ACD's
events and the call events (who calls), on the thread that publishes them (the reactor's).

Pure: fed events, answers :meth:`AgentBoard.status`. It never reads the router, whose
roster belongs to the router's thread when the store is Redis (``acd.driver``), so reading
an agent's status costs a dictionary look-up and waits for no routing step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cti.calls.events import CallArrived, CallEnded, Caller, PbxEvent

from .events import AcdEvent, AgentStateChanged, CallerConnected, CallerOffered

__all__ = ["AgentBoard", "AgentStatus", "CurrentCall"]

#: The states in which an agent has a call: ringing, talking, or wrapping it up (the desk
#: files the disposition and the ticket of that call, also after a reload).
_WITH_CALL = ("ringing", "on_call", "wrap_up")


@dataclass(frozen=True, slots=True)
class CurrentCall:
    """The call ringing at the agent, connected to it or being wrapped up, since when (epoch
    seconds: the offer, then the answer)."""

    call_id: str
    queue: str
    since: float
    caller_number: str | None = None
    caller_name: str | None = None


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """``state``: available, ringing, on_call, wrap_up, paused, logged_out; ``reason`` the
    pause reason; ``since`` when the agent entered the state (None: not since this start)."""

    agent: str
    state: str
    reason: str | None
    since: float | None
    call: CurrentCall | None


class AgentBoard:
    """The configured ``agents``' statuses; every agent starts logged out."""

    def __init__(self, agents: Iterable[str]) -> None:
        self._states: dict[str, AgentStateChanged] = {}
        self._calls: dict[str, CurrentCall] = {}
        self._agents = frozenset(agents)
        self._callers: dict[str, Caller] = {}  # live calls' callers

    def __contains__(self, agent: object) -> bool:
        return agent in self._agents

    def on_acd_event(self, event: AcdEvent) -> None:
        if isinstance(event, AgentStateChanged):
            self._states[event.agent] = event
            if event.state not in _WITH_CALL:
                self._calls.pop(event.agent, None)
        elif isinstance(event, CallerOffered):
            for agent in event.agents:
                self._calls[agent] = self._call(event.call_id, event.queue, event.at)
        elif isinstance(event, CallerConnected):
            self._calls[event.agent] = self._call(event.call_id, event.queue, event.at)

    def on_call_event(self, event: PbxEvent) -> None:
        if isinstance(event, CallArrived):
            self._callers[event.call_id] = event.caller
        elif isinstance(event, CallEnded):
            self._callers.pop(event.call_id, None)

    def status(self, agent: str) -> AgentStatus:
        """``agent``'s status; ``KeyError`` when it is not a configured agent."""
        if agent not in self._agents:
            raise KeyError(agent)
        changed = self._states.get(agent)
        if changed is None:
            return AgentStatus(agent, "logged_out", None, None, None)
        call = self._calls.get(agent) if changed.state in _WITH_CALL else None
        return AgentStatus(agent, changed.state, changed.reason, changed.at, call)

    def _call(self, call_id: str, queue: str, since: float) -> CurrentCall:
        caller = self._callers.get(call_id)
        if caller is None:  # a callback request, or a call from before this start
            return CurrentCall(call_id, queue, since)
        return CurrentCall(call_id, queue, since, caller.number, caller.name)
