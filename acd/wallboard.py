"""The supervisors' wallboard: every queue's row and every agent's row, kept from the ACD's
events, and the feed that sends their changes to the wallboard's sockets.

:class:`Wallboard` is pure: fed each ACD event after the live figures and the agent board
(``AcdService`` subscribes it after them), it keeps each agent's queues and answers which
agents' rows and which queues' rows the event changed; rows are built on demand from the
ACD's :class:`~acd.figures.LiveFigures` (no figure is defined twice) and its
:class:`~acd.agent_status.AgentBoard`.

:class:`WallboardFeed` is the shell around it, on the reactor's thread: it sends an agent's
row to every socket at once, the changed queues' rows coalesced (at most every
``coalesce`` seconds) and all queues every ``refresh`` seconds (longest waits, occupancy and
the sliding window move with time alone). Each message is encoded to JSON once, whatever
the number of sockets.

JSON shapes (the wallboard page reads them; times are epoch seconds):

* QueueRow ``{"queue", "waiting", "oldest_since", "longest_wait", "alert": {"amber", "red"},
  "service_level_target", "service_threshold", "agents": {"logged_in", "available", "busy",
  "paused"}, "today": Period, "last_30_min": Period}``; ``oldest_since`` is when the longest
  waiting caller joined (null when nobody waits), so the page ticks the wait itself.
* Period ``{"offered", "answered", "abandoned", "service_level", "asa", "aht",
  "abandonment_rate", "occupancy"}``: ratios are null when there is nothing to count.
* AgentRow ``{"agent", "state", "reason", "since", "queues", "call": {"call_id", "queue",
  "caller_number", "caller_name"} | null}``.
* Messages: ``{"type": "snapshot", "at", "queues", "agents"}``, ``{"type": "agent",
  "agent": AgentRow}``, ``{"type": "queues", "at", "queues": [QueueRow...]}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall

from acd.agent_status import AgentBoard
from acd.config import AcdConfig
from acd.events import (
    AcdEvent,
    AgentQueuesChanged,
    AgentStateChanged,
    CallCompleted,
    CallerConnected,
    CallerOffered,
)
from acd.figures import BUSY, LiveFigures, PeriodFigures

__all__ = [
    "WALLBOARD_WINDOW",
    "Wallboard",
    "WallboardChange",
    "WallboardFeed",
    "agent_counts",
    "offered",
    "period_row",
]

#: The sliding window of the wallboard's ``last_30_min``: the ACD's live figures use it.
WALLBOARD_WINDOW = 1800.0


@dataclass(frozen=True, slots=True)
class WallboardChange:
    """What one event changed: agents whose rows to send now, queues whose rows to send."""

    agents: tuple[str, ...] = ()
    queues: frozenset[str] = frozenset()


def offered(period: PeriodFigures) -> int:
    """Calls the queue dealt with in the period, counted by outcome as every figure is:
    answered, abandoned (short abandons too), overflowed, callback requests given up."""
    return (
        period.answered
        + period.abandoned
        + period.short_abandoned
        + period.overflowed
        + period.callbacks_given_up
    )


def period_row(period: PeriodFigures) -> dict[str, Any]:
    """A Period of the wallboard's JSON (``abandoned`` leaves short abandons out, as the
    abandonment rate does)."""
    return {
        "offered": offered(period),
        "answered": period.answered,
        "abandoned": period.abandoned,
        "service_level": period.service_level,
        "asa": period.asa,
        "aht": period.aht,
        "abandonment_rate": period.abandonment_rate,
        "occupancy": period.occupancy,
    }


def agent_counts(states: list[str]) -> dict[str, int]:
    """The ``agents`` of a QueueRow from its member agents' states (as the live figures
    count them: busy = ringing, on a call, in wrap-up or on a call the ACD did not make)."""
    available = states.count("available")
    busy = sum(s in BUSY for s in states)
    paused = states.count("paused")
    return {
        "logged_in": available + busy + paused,
        "available": available,
        "busy": busy,
        "paused": paused,
    }


class Wallboard:
    """Queue and agent rows of the ACD ``config``, read from ``figures`` (queue -> its live
    figures) and ``board``, which must have taken each event before :meth:`apply` does."""

    def __init__(
        self, config: AcdConfig, figures: Mapping[str, LiveFigures], board: AgentBoard
    ) -> None:
        self._config = config
        self._figures = figures
        self._board = board
        #: agent -> queue -> penalty: the configuration's, then each AgentQueuesChanged's.
        self._queues: dict[str, dict[str, int]] = {
            agent: dict(cfg.queues) for agent, cfg in config.agents.items()
        }
        #: queue -> its member agents, in the configuration's order (a queue row's counts).
        self._members: dict[str, dict[str, None]] = {q: {} for q in config.queues}
        for agent, queues in self._queues.items():
            for queue in queues:
                self._members[queue][agent] = None
        #: agent -> the queue of its last call: its wrap-up counts there.
        self._last_queue: dict[str, str] = {}

    def apply(self, event: AcdEvent) -> WallboardChange:
        """Take one ACD event; answer whose rows it changed."""
        queue = getattr(event, "queue", None)
        queues = {queue} if isinstance(queue, str) and queue in self._config.queues else set()
        agents: tuple[str, ...] = ()
        match event:
            case AgentStateChanged():
                agents = (event.agent,)
                queues |= self._queues.get(event.agent, {}).keys()
                if event.agent in self._last_queue:
                    queues.add(self._last_queue[event.agent])
            case AgentQueuesChanged():
                agents = (event.agent,)
                old = self._queues.get(event.agent, {})
                known = {q: p for q, p in event.queues.items() if q in self._config.queues}
                queues |= old.keys() | known.keys()
                if event.agent in self._config.agents:
                    self._move(event.agent, old, known)
            case CallerOffered():
                agents = event.agents  # their rows now show the call ringing
            case CallerConnected() | CallCompleted():
                agents = (event.agent,) if isinstance(event, CallerConnected) else ()
                self._last_queue[event.agent] = event.queue
        return WallboardChange(
            tuple(a for a in agents if a in self._config.agents), frozenset(queues)
        )

    def _move(self, agent: str, old: Mapping[str, int], new: dict[str, int]) -> None:
        for queue in old.keys() - new.keys():
            self._members[queue].pop(agent, None)
        for queue in new.keys() - old.keys():
            self._members[queue][agent] = None
        self._queues[agent] = new

    def queues_of(self, agent: str) -> dict[str, int]:
        """The queues ``agent`` serves now (queue -> penalty)."""
        return dict(self._queues.get(agent, {}))

    def agent_row(self, agent: str) -> dict[str, Any]:
        """An AgentRow; ``KeyError`` for an agent the configuration does not have."""
        status = self._board.status(agent)
        call = status.call
        queues = self._queues.get(agent, {})
        return {
            "agent": agent,
            "state": status.state,
            "reason": status.reason,
            "since": status.since,
            "queues": sorted(queues, key=lambda q: (queues[q], q)),
            "call": None
            if call is None
            else {
                "call_id": call.call_id,
                "queue": call.queue,
                "caller_number": call.caller_number,
                "caller_name": call.caller_name,
            },
        }

    def queue_row(self, queue: str, now: float) -> dict[str, Any]:
        """A QueueRow at ``now``; ``KeyError`` for a queue the configuration does not have."""
        config = self._config.queues[queue]
        figures = self._figures[queue].figures(queue, now)
        amber, red = config.wallboard_alerts()
        # Counted from the rows the page shows, with the memberships as they are now.
        states = [self._board.status(a).state for a in self._members[queue]]
        waiting = figures.calls_waiting
        return {
            "queue": queue,
            "waiting": waiting,
            "oldest_since": figures.at - figures.longest_wait if waiting else None,
            "longest_wait": figures.longest_wait,
            "alert": {"amber": amber, "red": red},
            "service_level_target": config.service_level.percent / 100,
            "service_threshold": config.service_level.seconds,
            "agents": agent_counts(states),
            "today": period_row(figures.today),
            "last_30_min": period_row(figures.window),
        }

    def queue_rows(self, now: float, queues: frozenset[str] | None = None) -> list[dict[str, Any]]:
        """QueueRows of ``queues`` (default all), in the configuration's order."""
        names = [q for q in self._config.queues if queues is None or q in queues]
        return [self.queue_row(q, now) for q in names]

    def agent_rows(self) -> list[dict[str, Any]]:
        """Every configured agent's row, in the configuration's order."""
        return [self.agent_row(a) for a in self._config.agents]

    def snapshot(self, now: float) -> dict[str, Any]:
        """The snapshot message: every queue and every agent at ``now``."""
        return {
            "type": "snapshot",
            "at": now,
            "queues": self.queue_rows(now),
            "agents": self.agent_rows(),
        }


#: A socket's subscription: called with each message's JSON text.
Send = Callable[[str], None]


class WallboardFeed:
    """Sends the wallboard's changes to the subscribed sockets, on the reactor's thread.

    ``clock`` is the reactor (``seconds``, ``callLater``). Timers run only while a socket
    is subscribed.
    """

    def __init__(
        self,
        wallboard: Wallboard,
        clock: Any,
        *,
        coalesce: float = 0.25,
        refresh: float = 10.0,
    ) -> None:
        self.wallboard = wallboard
        self.clock = clock
        self.coalesce = coalesce
        self.refresh = refresh
        self._sockets: dict[int, Send] = {}
        #: Agents' own desks: agent -> its sockets (the desk follows its state live).
        self._desks: dict[str, dict[int, Send]] = {}
        self._next_id = 0
        self._dirty: set[str] = set()
        self._flush: IDelayedCall | None = None
        self._last_flush = float("-inf")
        self._refresher = LoopingCall(self._refresh_all)
        self._refresher.clock = clock

    @property
    def sockets(self) -> int:
        """How many sockets are subscribed."""
        return len(self._sockets)

    def on_acd_event(self, event: AcdEvent) -> None:
        """The ACD event stream's consumer: after the live figures and the agent board."""
        change = self.wallboard.apply(event)
        for agent in change.agents:
            desks = self._desks.get(agent)
            if desks:
                text = self.agent_message(agent)
                for send in list(desks.values()):
                    send(text)
        if not self._sockets:
            return
        for agent in change.agents:
            self._send({"type": "agent", "agent": self.wallboard.agent_row(agent)})
        if change.queues:
            self._dirty |= change.queues
            self._schedule()

    def connect(self, send: Send) -> Callable[[], None]:
        """Subscribe ``send`` to every message from now on; returns the unsubscribe."""
        key, self._next_id = self._next_id, self._next_id + 1
        self._sockets[key] = send
        if not self._refresher.running:
            self._refresher.start(self.refresh, now=False)

        def disconnect() -> None:
            self._sockets.pop(key, None)
            if not self._sockets:
                self._stop()

        return disconnect

    def connect_agent(self, agent: str, send: Send) -> Callable[[], None]:
        """Subscribe an agent's own desk to that agent's row messages (``agent_message``)
        from now on; returns the unsubscribe."""
        key, self._next_id = self._next_id, self._next_id + 1
        self._desks.setdefault(agent, {})[key] = send

        def disconnect() -> None:
            desks = self._desks.get(agent, {})
            desks.pop(key, None)
            if not desks:
                self._desks.pop(agent, None)

        return disconnect

    def agent_message(self, agent: str) -> str:
        """``{"type": "agent", "at", "agent": AgentRow}``'s JSON, now (a desk's frame)."""
        row = self.wallboard.agent_row(agent)
        return _encode({"type": "agent", "at": self.clock.seconds(), "agent": row})

    def snapshot(self) -> str:
        """The snapshot message's JSON, now."""
        return _encode(self.wallboard.snapshot(self.clock.seconds()))

    def _schedule(self) -> None:
        if self._flush is None:
            wait = max(0.0, self._last_flush + self.coalesce - self.clock.seconds())
            self._flush = self.clock.callLater(wait, self._send_dirty)

    def _send_dirty(self) -> None:
        self._flush = None
        dirty, self._dirty = frozenset(self._dirty), set()
        if dirty and self._sockets:
            self._send_queues(dirty)

    def _refresh_all(self) -> None:
        # Everything is sent: what was dirty goes with it.
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
        self._flush = None
        self._dirty.clear()
        self._send_queues(None)

    def _send_queues(self, queues: frozenset[str] | None) -> None:
        now = self.clock.seconds()
        self._last_flush = now
        rows = self.wallboard.queue_rows(now, queues)
        self._send({"type": "queues", "at": now, "queues": rows})

    def _send(self, message: dict[str, Any]) -> None:
        text = _encode(message)
        for send in list(self._sockets.values()):
            send(text)

    def _stop(self) -> None:
        if self._refresher.running:
            self._refresher.stop()
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
        self._flush = None
        self._dirty.clear()


def _encode(message: Mapping[str, Any]) -> str:
    # allow_nan off: a NaN would be invalid JSON for the page; figures never make one.
    return json.dumps(message, separators=(",", ":"), allow_nan=False)
