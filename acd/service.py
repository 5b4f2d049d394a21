"""The ACD's one door: :class:`AcdService`.

The process builds it from :class:`~acd.config.AcdServiceSettings` (the ACD's own typed
settings) and the few shared things it needs, passed in by constructor: the reactor (time
and timers), the AMI action sender, a look-up of a call's caller channel (the call model's
read view), the SQL engine (history). Then it subscribes :meth:`AcdService.on_call_event`
to the call-event stream (call events, device states and the outcome of the ACD's own
originates: the ACD reads no AMI), and calls :meth:`~AcdService.start`,
:meth:`~AcdService.on_resync` after each PBX snapshot, :meth:`~AcdService.stop` and
:meth:`~AcdService.close` at the end. Nothing here imports the process (``callcenter``).

Inside: the pure router (``acd.router``) on a state store (``acd.state``, or Redis through
``acd.store_health``), the driver that carries its decisions out over AMI
(``acd.driver``), the ACD event stream (:attr:`AcdService.events`) with the history
recorder and one live-figure keeper per queue subscribed to it, and the join policy: a
caller whose estimated wait on joining exceeds the queue's ``max_estimated_wait``
overflows at once, any other is told its position and estimated wait.

Errors: start-up raises :class:`~acd.errors.AcdStartupError` (the queues file:
:class:`~acd.errors.AcdConfigError`; Redis: :class:`~acd.errors.StateStoreError`), whose
``setting`` names the :class:`~acd.config.AcdServiceSettings` field to fix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import Engine
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from acd.agent_status import AgentBoard, AgentStatus
from acd.agents import AgentState
from acd.config import AcdServiceSettings, load_acd_config
from acd.driver import AcdDriver, Dialplan
from acd.errors import (
    AcdError,
    AcdStateUnavailable,
    AgentStateError,
    StateStoreError,
    UnknownAgent,
)
from acd.events import AcdEvent, AgentQueuesChanged, CallDisposed, CallerConnected, CallerJoined
from acd.figures import FigureRules, LiveFigures, QueueFigures
from acd.history import AcdEventRecorder, latest_agent_queues, open_acd_calls
from acd.report import call_answered_by
from acd.router import Router
from acd.state import AcdState, MembershipStore, MemoryState
from acd.store_health import GuardedState
from acd.wallboard import WALLBOARD_WINDOW, Wallboard, WallboardFeed
from crm_bridge.tiers import CallerTiers, StaticTiers
from cti.ami.codec import Message
from cti.calls.events import PbxEvent
from cti.history import OPEN_CALLS_HORIZON, Closed
from cti.stream import EventStream

__all__ = ["MAX_PENDING_ACD_EVENTS", "AcdService", "ActionSender", "open_state"]

log = logging.getLogger(__name__)

#: ACD events the history may lag behind (it writes in batches) before the stream pushes back.
MAX_PENDING_ACD_EVENTS = 5_000


class ActionSender(Protocol):
    """What the ACD needs of the AMI client: send an action, get its response."""

    def send_action(
        self, name: str, fields: Sequence[tuple[str, str]] = (), *, timeout: float | None = None
    ) -> Deferred[Message]: ...


def open_state(settings: AcdServiceSettings) -> AcdState:
    """Where the ACD keeps waiting callers and free agents. With Redis, the server must
    answer now: :class:`~acd.errors.StateStoreError` (``setting`` ``redis_url``) otherwise."""
    if settings.state == "memory":
        return MemoryState()
    from acd.redis_state import RedisState

    assert settings.redis_url is not None  # the settings validator requires it
    try:
        # One namespace for every backend: that is what makes the agent pool shared.
        store = RedisState.from_url(
            settings.redis_url.get_secret_value(), namespace=settings.redis_namespace
        )
    except ValueError as exc:
        raise StateStoreError(
            f"redis: not a usable Redis URL ({exc})", setting="redis_url"
        ) from None
    state = GuardedState(store)
    try:
        state.open()
    except AcdStateUnavailable as exc:
        state.close()
        cause = exc.__cause__ or exc
        raise StateStoreError(
            f"redis at {store.where}: unreachable ({type(cause).__name__}: {cause})",
            setting="redis_url",
            also="and that redis-server is up (the ACD's shared state needs it at start-up)",
        ) from None
    return state


class AcdService:
    """The product's ACD inside one backend: router, driver, live figures, history.

    ``state`` replaces the store :func:`open_state` would open from ``settings`` (tests,
    or a store shared with something else); whoever passes it closes it. ``tiers`` are the
    callers' computed value tiers (the screen-pop bridge's); the configuration's static
    table overrides them.
    """

    def __init__(
        self,
        settings: AcdServiceSettings,
        *,
        reactor: Any,
        ami: ActionSender,
        caller_channel: Callable[[str], str | None],
        engine: Engine,
        tiers: CallerTiers | None = None,
        state: AcdState | None = None,
        dialplan: Dialplan | None = None,
    ) -> None:
        self.settings = settings
        self.reactor = reactor
        self.engine = engine
        self.config = load_acd_config(settings.queues)
        self._owns_state = state is None
        #: Where waiting callers and free agents live (with Redis: a GuardedState).
        self.state = state if state is not None else open_state(settings)
        try:
            self._build(reactor, ami, caller_channel, engine, tiers, dialplan)
        except BaseException:
            self._close_state()
            raise
        self._login_pending = settings.login_agents

    def _build(
        self,
        reactor: Any,
        ami: ActionSender,
        caller_channel: Callable[[str], str | None],
        engine: Engine,
        tiers: CallerTiers | None,
        dialplan: Dialplan | None,
    ) -> None:
        settings, config = self.settings, self.config
        # No tiers in the router: the driver looks the caller's tier up on arrival, before
        # the step that makes it join (a CRM look-up must never run inside a step).
        # Moves of agents between queues live in the store itself (not its guard): shared
        # with Redis; a move while Redis is away is refused rather than kept here alone.
        store = self.state.store if isinstance(self.state, GuardedState) else self.state
        self._moves = store if isinstance(store, MembershipStore) else None
        self.router = Router(config, pbx=settings.pbx, state=self.state, memberships=self._moves)
        # agent -> queue -> penalty, on this thread (the router's map is the router thread's):
        # the configuration's, then each AgentQueuesChanged's.
        self._members = {agent: dict(a.queues) for agent, a in config.agents.items()}
        #: ACD events (callers joined/offered/connected/abandoned, agent states), in order.
        self.events: EventStream[AcdEvent] = EventStream("acd events")
        self.driver = AcdDriver(
            self.router,
            ami,  # the driver only sends actions (typed AmiClient)
            reactor,
            interfaces={agent: config.interface_of(agent) for agent in config.agents},
            caller_channel=caller_channel,
            publish=self.events.publish,
            dialplan=dialplan if dialplan is not None else Dialplan(),
            tiers=StaticTiers(config.tiers, fallback=tiers),
            # Redis: each step's store round trips run on the router's own thread, never
            # on the reactor's; in memory a step costs microseconds and runs inline.
            threaded=settings.state == "redis",
        )
        self.history = AcdEventRecorder(
            engine, reactor, pbx=settings.pbx, **settings.history.model_dump()
        )
        self.events.subscribe(
            self.history.record,
            max_pending=MAX_PENDING_ACD_EVENTS,
            window=MAX_PENDING_ACD_EVENTS,
            name="acd history",
        )
        # One figure keeper per queue, each with that queue's service-level threshold.
        self.figures = {
            name: LiveFigures(
                {name: [a for a, cfg in config.agents.items() if name in cfg.queues]},
                # The window is the wallboard's "last 30 minutes".
                FigureRules(
                    service_threshold=queue.service_level.seconds,
                    window=WALLBOARD_WINDOW,
                    timezone=config.zone,
                    fallback_aht=queue.fallback_aht,
                ),
            )
            for name, queue in config.queues.items()
        }
        self.events.subscribe(self._count, name="live figures")
        #: Each agent's state and current call, for the agents' desks (``acd.http``).
        self.board = AgentBoard(config.agents)
        self.events.subscribe(self.board.on_acd_event, name="agent board")
        #: Each agent's last answered call (call id, queue): the call its desk may dispose.
        self._answered: dict[str, tuple[str, str]] = {}
        self.events.subscribe(self._note_answer, name="answered calls")
        #: The supervisors' wallboard and its sockets' feed (after the figures and the board,
        #: whose state its rows read).
        self.wallboard = WallboardFeed(Wallboard(config, self.figures, self.board), reactor)
        self.events.subscribe(self.wallboard.on_acd_event, name="wallboard")
        #: With a shared store, agents freed through other backends are picked up by a poll.
        self.poll: LoopingCall | None = None
        self._polling: Deferred[None] | None = None
        if settings.state == "redis":
            self.poll = LoopingCall(self._poll)
            self.poll.clock = reactor

    # -- inputs (the process subscribes these) ------------------------------------------

    def on_call_event(self, event: PbxEvent) -> None:
        """A call event (parked, answered, abandoned, ended...), an agent's device state or
        the outcome of one of the ACD's own legs."""
        self.board.on_call_event(event)  # first: an arrival's caller, for its offer
        self.driver.on_call_event(event)

    # -- life cycle ---------------------------------------------------------------------

    def restore_open(self, now: float) -> int:
        """Before the first snapshot: read the callers a previous run of this PBX left
        waiting or connected in the ACD history, for the snapshot to close those that are
        gone (once each). Returns how many; raises ``SQLAlchemyError`` when the database
        cannot be read (nothing is restored then)."""
        self.restore_moves(now)
        calls = open_acd_calls(self.engine, self.settings.pbx, now, OPEN_CALLS_HORIZON)
        self.driver.call(self.router.restore_open, calls)  # where (and before) routing runs
        return len(calls)

    def restore_moves(self, now: float) -> Deferred[None]:
        """Before routing (:meth:`restore_open` calls it): the agents' moves between queues
        made before this start come back, from the shared store with Redis, else from the
        ACD history (each agent's latest ``agent_queues`` event of this PBX, read now:
        ``SQLAlchemyError`` when it cannot be). Each is published again
        (``AgentQueuesChanged`` by ``restored``); a move the configuration no longer allows
        is logged and the agent serves its configured queues."""
        shared = self.settings.state == "redis"
        moves = None if shared else latest_agent_queues(self.engine, self.settings.pbx)

        def restore() -> None:
            found = moves
            if found is None:
                assert self._moves is not None  # RedisState keeps moves
                found = self._moves.memberships()  # on the router's thread: a round trip
            refused = self.router.restore_memberships(found, now)
            for agent, why in sorted(refused.items()):
                log.warning("ACD: agent %s's earlier move between queues not restored: %s",
                            agent, why)  # fmt: skip
            self.driver.poll()  # publishes the events (inline), offers callers

        done = self.driver.call(restore)
        done.addErrback(lambda f: log.error("ACD: restoring agents' queues failed: %s", f.value))
        return done

    def start(self) -> None:
        """Start the shared store's poll (with ``state: redis``)."""
        if self.poll is not None and not self.poll.running:
            self.poll.start(self.settings.shared_poll_interval, now=False)

    def on_resync(self) -> None:
        """The PBX's snapshot is in (its events published): the first time, with
        ``login_agents``, log every configured agent in, knowing whose phone is busy."""
        if self._login_pending:
            self._login_pending = False
            self.login_all()

    def login_all(self) -> None:
        """Log every configured agent in; one already in (through another backend, or
        on a restored call) stays as it is."""
        for agent in self.config.agents:
            try:
                done = self.driver.login(agent)
            except AcdError as exc:
                _not_logged_in(exc, agent)
            else:
                if done is not None:  # threaded (Redis): queued; the Deferred says how it went
                    done.addErrback(_login_refused, agent)

    def stop(self) -> None:
        """Stop routing: the router's timer, the shared poll, the store this service opened."""
        self.driver.stop()
        if self.poll is not None and self.poll.running:
            self.poll.stop()
        self._close_state()

    def close(self) -> Deferred[Closed]:
        """After :meth:`stop`: write the history's spool to the database for its grace
        period; what is left stays in the spool for the next start."""
        return self.history.close()

    def _close_state(self) -> None:
        if self._owns_state and isinstance(self.state, GuardedState):
            self.state.close()

    # -- agents' desks (the agent API): call on the reactor thread -----------------------
    # Each runs where routing runs (the router's thread with Redis, after the steps queued
    # before it) and fires once done, or fails with the router's AcdError (UnknownAgent,
    # AgentStateError...): nothing changed then.

    def agent_login(self, agent: str) -> Deferred[None]:
        return self.driver.call(self.driver.login, agent)

    def agent_available(self, agent: str) -> Deferred[None]:
        """Make the agent available: log it in, or unpause it; one available stays so."""

        def make_available() -> None:
            state = self.router.agents.get(agent).state  # the roster, on its own thread
            if state is AgentState.LOGGED_OUT:
                self.driver.login(agent)
            elif state is AgentState.PAUSED:
                self.driver.unpause(agent)
            elif state is not AgentState.AVAILABLE:
                raise AgentStateError(
                    f"agent {agent} is {state}: available again once the call or wrap-up is over"
                )

        return self.driver.call(make_available)

    def agent_pause(self, agent: str, reason: str) -> Deferred[None]:
        return self.driver.call(self.driver.pause, agent, reason)

    def agent_logout(self, agent: str) -> Deferred[None]:
        return self.driver.call(self.driver.logout, agent)

    def agent_queues(self, agent: str) -> dict[str, int]:
        """The queues ``agent`` serves now, queue -> penalty; ``KeyError`` for an agent the
        configuration does not have."""
        return dict(self._members[agent])

    def set_agent_queues(self, agent: str, queues: dict[str, int], by: str) -> Deferred[None]:
        """Move ``agent`` to ``queues`` (queue -> penalty, all of them) on the word of
        account ``by`` (``Router.set_queues``): a free agent moves at once and is offered
        its new queues' waiting callers; one on a call keeps it. Fails with
        ``UnknownAgent``, ``InvalidMembership`` (no queue, unknown queue, penalty out of
        0-100), ``IneligibleMembership`` (a required skill missing) or
        ``AcdStateUnavailable`` (Redis away): nothing changed then."""
        now = self.reactor.seconds()
        moved = dict(queues)

        def move() -> None:
            self.router.set_queues(agent, moved, by, now)
            self.driver.poll()  # the moved agent meets its new queues' callers; events out

        return self.driver.call(move)

    def dispose_call(
        self, agent: str, call_id: str, disposition: str, note: str | None = None
    ) -> Deferred[CallDisposed]:
        """``agent`` tags its call ``call_id`` with ``disposition`` (one of the
        configuration's) and an optional ``note``: publishes :class:`CallDisposed` on
        :attr:`events` (so the history keeps it) and fires with it. The call must be one the
        agent answered: its last (the AgentBoard's), else one the ACD history says it
        answered (read on the reactor's thread pool). Fails with ``ValueError`` (unknown
        disposition), ``UnknownAgent`` or ``AgentStateError`` (not the agent's call)."""
        if disposition not in self.config.dispositions:
            allowed = ", ".join(self.config.dispositions)
            return fail(ValueError(f"unknown disposition {disposition!r}; one of {allowed}"))
        if agent not in self.config.agents:
            return fail(UnknownAgent(f"agent {agent!r} is not in the ACD configuration"))
        last = self._answered.get(agent)
        if last is not None and last[0] == call_id:
            found: Deferred[str | None] = succeed(last[1])
        else:
            pool = self.reactor.getThreadPool()
            found = deferToThreadPool(
                self.reactor, pool, call_answered_by, self.engine, call_id, agent
            )

        def publish(queue: str | None) -> CallDisposed:
            if queue is None:
                raise AgentStateError(
                    f"call {call_id!r} was not answered by agent {agent}: an agent tags only "
                    "its own calls"
                )
            event = CallDisposed(self.reactor.seconds(), call_id, queue, agent, disposition, note)
            self.events.publish(event)
            return event

        return found.addCallback(publish)

    def _note_answer(self, event: AcdEvent) -> None:
        if isinstance(event, CallerConnected):
            self._answered[event.agent] = (event.call_id, event.queue)

    def agent_status(self, agent: str) -> AgentStatus:
        """The agent's state, since when, and its call; ``KeyError`` for an agent the
        configuration does not have."""
        return self.board.status(agent)

    # -- read side ----------------------------------------------------------------------

    def snapshot(self, now: float) -> list[QueueFigures]:
        """Every queue's live figures."""
        return [f.figures(name, now) for name, f in self.figures.items()]

    # -- inside -------------------------------------------------------------------------

    def _poll(self) -> None:
        """The shared store's poll: re-seed it if it came back or lost its state, then offer
        this PBX's callers the agents other backends freed."""
        # On the router's thread (threaded driver): the probe and the re-seeding touch
        # Redis. A poll still queued or running (a stuck Redis) is not queued twice.
        if self._polling is None:
            self._polling = self.driver.call(self._poll_store)
            self._polling.addErrback(
                lambda f: log.error("ACD: shared poll failed: %s", f.getTraceback())
            )
            self._polling.addBoth(self._polled)

    def _poll_store(self) -> None:
        if isinstance(self.state, GuardedState):
            self.state.recover(self.driver.reseed)
        self.driver.poll()

    def _polled(self, _: object) -> None:
        self._polling = None

    def _count(self, event: AcdEvent) -> None:
        """Live figures, and the join policy: overflow on the estimated wait, or announce
        the position and the estimate."""
        for figures in self.figures.values():
            figures.apply(event)
        if isinstance(event, AgentQueuesChanged):
            self._follow_move(event)
        elif isinstance(event, CallerJoined):
            estimate = self.figures[event.queue].estimated_wait(
                event.queue, event.at, event.position
            )
            limit = self.config.queues[event.queue].max_estimated_wait
            if limit is not None and estimate.seconds is not None and estimate.seconds > limit:
                reason = f"estimated wait {estimate.seconds:.0f} s ({estimate.method})"
                self.driver.overflow(event.call_id, reason)
            else:
                # Position and estimated wait, for the holding dialplan to announce.
                self.driver.announce(
                    event.call_id, event.position, estimate.seconds, event.queue
                )


    def _follow_move(self, event: AgentQueuesChanged) -> None:
        """The agent's queues changed: this thread's map and the queues' members follow."""
        before = self._members.get(event.agent, {})
        self._members[event.agent] = dict(event.queues)
        for queue in sorted(set(before) | set(event.queues)):
            if queue in self.figures:
                members = [a for a, queues in self._members.items() if queue in queues]
                self.figures[queue].set_members(queue, members)


def _login_refused(failure: Failure, agent: str) -> None:
    failure.trap(AcdError)
    _not_logged_in(failure.getErrorMessage(), agent)


def _not_logged_in(why: object, agent: str) -> None:
    # With shared state an earlier login's dispatch may already have handed this agent a
    # caller (and logged it in here); a restored call makes it on-call.
    log.info("ACD: agent %s not logged in at start: %s", agent, why)
