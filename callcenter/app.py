"""The backend process: AMI client -> call model -> call event stream -> consumers.

All wiring lives here, with explicit constructor injection (as Wazo's ``plugin.py``): the
cores (codec, call model) know nothing of sockets or SQL, and each consumer of call events
subscribes to one :class:`~cti.stream.EventStream`. When a consumer falls behind, the stream
pauses reading from Asterisk, so memory stays bounded and nothing is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import LoopingCall

import migrations
from acd.agents import AcdError
from acd.config import load_acd_config
from acd.driver import AcdDriver
from acd.events import AcdEvent, CallerJoined
from acd.figures import FigureRules, LiveFigures, QueueFigures
from acd.history import AcdEventRecorder, open_acd_calls
from acd.router import Router
from acd.state import AcdState, AcdStateUnavailable, MemoryState
from acd.store_health import GuardedState
from callcenter.settings import ConfigError, Settings, history_spool_dir
from crm_bridge.tiers import StaticTiers
from cti.ami.client import DEFAULT_RESYNC_ACTIONS, AmiClient, AmiClientSettings, LinkChange
from cti.ami.codec import Message
from cti.calls.events import CallEvent, PbxEvent
from cti.calls.model import CallModel
from cti.calls.numbers import NumberingPlan
from cti.history import OPEN_CALLS_HORIZON, CallEventRecorder, Closed, open_calls
from cti.stream import EventStream

log = logging.getLogger(__name__)

#: Seconds between polls for agents freed through other backends (shared ACD state).
SHARED_POLL_INTERVAL = 1.0

#: Call events a consumer may lag behind before AMI reading pauses.
MAX_PENDING_CALL_EVENTS = 5_000


def client_settings(settings: Settings) -> AmiClientSettings:
    """The AMI client's view of the configuration."""
    ami = settings.ami
    return AmiClientSettings(
        host=ami.host,
        port=ami.port,
        username=ami.username,
        secret=ami.secret.get_secret_value(),
        auth=ami.auth,
        events=ami.events,
        filters=ami.filters,
        ping_interval=ami.ping_interval,
        action_timeout=ami.action_timeout,
        reconnect_min_delay=ami.reconnect.min_delay,
        reconnect_max_delay=ami.reconnect.max_delay,
        reconnect_jitter=ami.reconnect.jitter,
        # Which agents' devices are busy: the only list that says so for Local-channel
        # agents (DeviceStateList never lists them, recording 13); empty without hints.
        resync_actions=(*DEFAULT_RESYNC_ACTIONS, ("ExtensionStateList", ())),
    )


def history_options(settings: Settings) -> dict[str, Any]:
    """The history recorders' view of the configuration (spool and retries)."""
    h = settings.history
    return {
        "spool_dir": history_spool_dir(settings),
        "spool_max_bytes": h.spool_max_bytes,
        "sync_interval": h.sync_interval,
        "retry_min": h.retry_min,
        "retry_max": h.retry_max,
        "close_grace": h.close_grace,
    }


def numbering_plan(settings: Settings) -> NumberingPlan:
    n = settings.numbering
    return NumberingPlan(
        country_code=n.country_code,
        national_length=n.national_length,
        international_prefixes=n.international_prefixes,
        trunk_prefix=n.trunk_prefix,
    )


def open_database(settings: Settings) -> Engine:
    """The SQL engine, schema migrated first when configured to."""
    url = settings.database.url.get_secret_value()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        if settings.database.migrate_on_start:
            log.info("database %s: applying migrations", settings.database.display_url())
            migrations.upgrade(url)
        engine = create_engine(url, pool_pre_ping=True)
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        raise ConfigError(
            f"database {settings.database.display_url()}: {reason}; check key 'database.url' "
            "(CALLCENTER_DATABASE__URL) and that the server is up"
        ) from None
    return engine


class Acd:
    """The product's ACD inside one backend: router, driver, live figures, history."""

    def __init__(
        self,
        settings: Settings,
        queues: Path,
        reactor: Any,
        ami: AmiClient,
        model: CallModel,
        engine: Engine,
    ) -> None:
        self.config = load_acd_config(queues)
        #: Where waiting callers and free agents live (with Redis: a GuardedState).
        self.state = acd_state(settings)
        self.router = Router(
            self.config,
            pbx=settings.pbx,
            tiers=StaticTiers(self.config.tiers),
            state=self.state,
        )
        #: ACD events (callers joined/offered/connected/abandoned, agent states), in order.
        self.events: EventStream[AcdEvent] = EventStream("acd events")
        self.driver = AcdDriver(
            self.router,
            ami,
            reactor,
            interfaces={agent: self.config.interface_of(agent) for agent in self.config.agents},
            caller_channel=lambda call_id: _channel_of(model, call_id),
            publish=self.events.publish,
        )
        self.history = AcdEventRecorder(
            engine, reactor, pbx=settings.pbx, **history_options(settings)
        )
        self.events.subscribe(
            self.history.record,
            max_pending=MAX_PENDING_CALL_EVENTS,
            window=MAX_PENDING_CALL_EVENTS,
            name="acd history",
        )
        # One figure keeper per queue, each with that queue's service-level threshold.
        self.figures = {
            name: LiveFigures(
                {name: [a for a, cfg in self.config.agents.items() if name in cfg.queues]},
                FigureRules(service_threshold=queue.service_level.seconds),
            )
            for name, queue in self.config.queues.items()
        }
        self.events.subscribe(self._count, name="live figures")
        #: With a shared store, agents freed through other backends are picked up by a poll.
        self.poll: LoopingCall | None = None
        if settings.acd.state == "redis":
            self.poll = LoopingCall(self._poll)
            self.poll.clock = reactor

    def _poll(self) -> None:
        """The shared store's poll: re-seed it if it came back or lost its state, then offer
        this PBX's callers the agents other backends freed."""
        if isinstance(self.state, GuardedState):
            self.state.recover(self.driver.reseed)
        self.driver.poll()

    def _count(self, event: AcdEvent) -> None:
        for figures in self.figures.values():
            figures.apply(event)
        if isinstance(event, CallerJoined):
            estimate = self.figures[event.queue].estimated_wait(
                event.queue, event.at, event.position
            )
            limit = self.config.queues[event.queue].max_estimated_wait
            if limit is not None and estimate.seconds is not None and estimate.seconds > limit:
                reason = f"estimated wait {estimate.seconds:.0f} s ({estimate.method})"
                self.driver.overflow(event.call_id, reason)
            else:
                # Position and estimated wait, for the holding dialplan to announce.
                self.driver.announce(event.call_id, event.position, estimate.seconds)

    def snapshot(self, now: float) -> list[QueueFigures]:
        """Every queue's live figures."""
        return [f.figures(name, now) for name, f in self.figures.items()]


def acd_state(settings: Settings) -> AcdState:
    """Where the ACD keeps waiting callers and free agents. With Redis, the server must
    answer now: :class:`ConfigError` names the setting otherwise."""
    if settings.acd.state == "memory":
        return MemoryState()
    from acd.redis_state import RedisState

    assert settings.redis.url is not None  # the settings validator requires it
    fix = "check key 'redis.url' (CALLCENTER_REDIS__URL)"
    try:
        # One namespace for every backend: that is what makes the agent pool shared.
        store = RedisState.from_url(settings.redis.url.get_secret_value(), namespace="acd")
    except ValueError as exc:
        raise ConfigError(f"redis: not a usable Redis URL ({exc}); {fix}") from None
    state = GuardedState(store)
    try:
        state.open()
    except AcdStateUnavailable as exc:
        state.close()
        cause = exc.__cause__ or exc
        raise ConfigError(
            f"redis at {store.where}: unreachable ({type(cause).__name__}: {cause}); {fix} "
            "and that redis-server is up (acd.state 'redis' needs it at start-up)"
        ) from None
    return state


def _channel_of(model: CallModel, call_id: str) -> str | None:
    call = model.calls.get(call_id)
    return call.channel if call is not None else None


class CallCenter:
    """One backend process attached to one PBX."""

    def __init__(
        self,
        settings: Settings,
        reactor: Any,
        *,
        engine: Engine | None = None,
        pbx_name: str | None = None,
    ) -> None:
        self.settings = settings
        self.reactor = reactor
        #: This PBX's name in history and shared state (``pbx`` in the settings).
        self.pbx = pbx_name or settings.pbx
        calls = settings.calls
        self.model = CallModel(
            plan=numbering_plan(settings),
            inbound_contexts=calls.inbound_contexts,
            parked_event=calls.parked_event,
            holding=calls.holding,
            variables=calls.variables,
        )
        #: Domain call events and agents' device states, in order; the ACD, pops and pages
        #: subscribe here.
        self.call_events: EventStream[PbxEvent] = EventStream("call events")
        self.engine = engine if engine is not None else open_database(settings)
        self.history = CallEventRecorder(
            self.engine, reactor, pbx=self.pbx, **history_options(settings)
        )
        #: What each history recorder kept or lost at ``stop`` (empty until it is done).
        self.history_closed: list[Closed] = []
        # A wide window: the history writer commits events in batches, not one by one.
        self.call_events.subscribe(
            self._record,
            max_pending=MAX_PENDING_CALL_EVENTS,
            window=MAX_PENDING_CALL_EVENTS,
            name="call history",
        )
        #: Agents are logged in once the first snapshot says whose phone is busy.
        self._login_pending = bool(settings.acd.login_agents)
        self.ami = AmiClient(client_settings(settings), self, reactor=reactor)
        self.call_events.register_producer(self.ami)
        self.link: LinkChange | None = None
        self.acd: Acd | None = None
        if settings.acd.queues is not None:
            self.acd = Acd(
                settings, settings.acd.queues, reactor, self.ami, self.model, self.engine
            )
            self.call_events.subscribe(
                self.acd.driver.on_call_event, max_pending=MAX_PENDING_CALL_EVENTS, name="acd"
            )
            self.ami.stream.subscribe(self.acd.driver.on_ami_message, name="acd originates")

    def start(self) -> None:
        log.info(
            "connecting to AMI %s:%d as %s (%s auth); call history in %s",
            self.settings.ami.host,
            self.settings.ami.port,
            self.settings.ami.username,
            self.settings.ami.auth,
            self.settings.database.display_url(),
        )
        self._restore_open()
        self.ami.start()
        if self.acd is not None and self.acd.poll is not None:
            self.acd.poll.start(SHARED_POLL_INTERVAL, now=False)

    def _restore_open(self) -> None:
        """Read what a previous run left open from history: the first snapshot ends the
        calls the PBX no longer has, and the ACD closes their records, once each."""
        now = self.reactor.seconds()
        try:
            calls = open_calls(self.engine, self.pbx, now)
            acd_calls = (
                open_acd_calls(self.engine, self.pbx, now, OPEN_CALLS_HORIZON)
                if self.acd is not None
                else []
            )
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
            log.warning(
                "history: cannot read the calls a previous run left open (%s); calls that "
                "ended while the backend was down get no end record",
                reason,
            )
            return
        self.model.expect_open(calls)
        if self.acd is not None:
            self.acd.router.restore_open(acd_calls)
        if calls or acd_calls:
            log.info(
                "history: %d calls and %d ACD callers left open by a previous run; the first "
                "snapshot closes those that are gone",
                len(calls),
                len(acd_calls),
            )

    def _login_agents(self) -> None:
        assert self.acd is not None
        for agent in self.acd.config.agents:
            try:
                self.acd.driver.login(agent)
            except AcdError as exc:
                # With shared state an earlier login's dispatch may already have handed this
                # agent a caller (and logged it in here); a restored call makes it on-call.
                log.info("ACD: agent %s not logged in at start: %s", agent, exc)

    def _record(self, event: PbxEvent) -> Deferred[None] | None:
        # Device states are the PBX's present, not history: the ACD records what follows.
        return self.history.record(event) if isinstance(event, CallEvent) else None

    def stop(self) -> Deferred[None]:
        """Close the AMI link, then the histories (both at once: each may spend its grace
        period on a down database); what they did not write stays in their spools, and
        ``history_closed`` says what was kept or lost."""
        d = self.ami.stop()
        recorders = [self.history]
        if self.acd is not None:
            acd = self.acd
            acd.driver.stop()
            if acd.poll is not None and acd.poll.running:
                acd.poll.stop()
            if isinstance(acd.state, GuardedState):
                acd.state.close()
            recorders.append(acd.history)
        d.addBoth(lambda _: gatherResults([r.close() for r in recorders]))
        d.addCallback(self.history_closed.extend)
        d.addBoth(lambda _: self.engine.dispose())
        return d

    def watch(
        self,
        consumer: Callable[[CallEvent], Deferred[Any] | None],
        name: str,
        max_pending: int = MAX_PENDING_CALL_EVENTS,
    ) -> None:
        """Subscribe another consumer to the call events; if it falls ``max_pending`` events
        behind, AMI reading pauses until it catches up."""
        self.call_events.subscribe(consumer, max_pending=max_pending, name=name)

    # -- AmiConsumer ----------------------------------------------------------------------

    def on_message(self, message: Message) -> None:
        for event in self.model.handle(message, self.reactor.seconds()):
            self.call_events.publish(event)

    def on_resync(self, results: dict[str, list[Message]], now: float) -> None:
        events = self.model.resync(results, now)
        log.info(
            "resync: %d live calls after reconnect, %d call events from the snapshot",
            len(self.model.calls),
            len(events),
        )
        for event in events:
            self.call_events.publish(event)
        if self._login_pending and self.acd is not None:
            self._login_pending = False
            self._login_agents()

    def on_link(self, change: LinkChange) -> None:
        self.link = change
