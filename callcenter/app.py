"""The backend process: AMI client -> call model -> call event stream -> consumers.

All wiring lives here, with explicit constructor injection (as Wazo's ``plugin.py``): the
cores (codec, call model) know nothing of sockets or SQL, and each consumer of call events
subscribes to one :class:`~cti.stream.EventStream`. When a consumer falls behind, the stream
pauses reading from Asterisk, so memory stays bounded and nothing is dropped.

Each domain is one service built here from its own settings object (filled in from
:class:`~callcenter.settings.Settings`) and the shared things it needs; today the ACD
(:class:`acd.service.AcdService`). A domain's start-up errors are its own; they become a
:class:`ConfigError` here, naming this process's keys (see ``docs/architecture.md``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from twisted.internet.defer import Deferred, gatherResults, succeed

import migrations
from acd.config import AcdConfig, AcdHistorySettings, AcdServiceSettings
from acd.dialplan import DialplanOptions
from acd.driver import Dialplan as AcdTargets
from acd.errors import AcdStartupError
from acd.http import agent_routes, report_routes, wallboard_routes
from acd.service import AcdService
from callcenter.settings import ConfigError, Settings, history_spool_dir
from crm_bridge.config import CrmServiceSettings
from crm_bridge.errors import CrmStartupError
from crm_bridge.external import HttpCrm
from crm_bridge.external import from_settings as external_crm
from crm_bridge.http import pop_routes
from crm_bridge.numbers import region_for_country_code
from crm_bridge.pop import CallRecord
from crm_bridge.service import CrmBridgeService
from cti.ami.client import DEFAULT_RESYNC_ACTIONS, AmiClient, AmiClientSettings, LinkChange
from cti.ami.codec import Message
from cti.calls.events import CallEvent, PbxEvent
from cti.calls.model import CallModel
from cti.calls.numbers import NumberingPlan, normalise
from cti.history import CallEventRecorder, Closed, open_calls
from cti.stream import EventStream
from ivr.dialplan import queue_holding
from ivr.errors import IvrStartupError
from ivr.interpreter import CallerFound, CallerUnknown, WaitFigures
from ivr.service import HoldingLane, IvrService, IvrTargets
from tickets.config import TicketSettings, load_ticket_settings
from tickets.errors import TicketStartupError
from tickets.events import TicketChanged, TicketCreated, TicketEvent
from tickets.history import TicketEventRecorder
from tickets.http import CallFacts, ticket_routes
from tickets.policies import SlaPolicies
from tickets.service import TicketService
from web.accounts import Accounts
from web.api import build_api
from web.auth import current_account
from web.server import ApiServer, ListenError

log = logging.getLogger(__name__)

T = TypeVar("T")

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


#: The keys of this process's configuration behind the ACD service's settings, for its
#: start-up errors.
ACD_SETTING_KEYS = {
    "queues": "key 'acd.queues' (CALLCENTER_ACD__QUEUES)",
    "state": "key 'acd.state' (CALLCENTER_ACD__STATE)",
    "redis_url": "key 'redis.url' (CALLCENTER_REDIS__URL)",
    "pbx": "key 'pbx' (CALLCENTER_PBX)",
    "login_agents": "key 'acd.login_agents' (CALLCENTER_ACD__LOGIN_AGENTS)",
}


def acd_settings(settings: Settings, pbx: str | None = None) -> AcdServiceSettings:
    """The ACD service's view of the configuration (``acd.queues`` must be set)."""
    assert settings.acd.queues is not None
    return AcdServiceSettings(
        queues=settings.acd.queues,
        state=settings.acd.state,
        redis_url=settings.redis.url,
        pbx=pbx or settings.pbx,
        login_agents=settings.acd.login_agents,
        history=AcdHistorySettings(**history_options(settings)),
    )


def acd_config_error(exc: AcdStartupError) -> ConfigError:
    """The ACD's start-up error as this process's, naming its key and variable."""
    if exc.setting is None:
        return ConfigError(str(exc))
    key = ACD_SETTING_KEYS.get(exc.setting, f"the ACD setting {exc.setting!r}")
    return ConfigError(exc.message(key))


#: The keys of this process's configuration behind the screen-pop bridge's settings.
CRM_SETTING_KEYS = {
    "profile_rules": "key 'crm.rules' (CALLCENTER_CRM__RULES)",
    "external.url": "key 'crm.external.url' (CALLCENTER_CRM__EXTERNAL__URL)",
}


def crm_settings(settings: Settings, pbx: str | None = None) -> CrmServiceSettings:
    """The screen-pop bridge's view of the configuration."""
    crm = settings.crm
    return CrmServiceSettings(
        pbx=pbx or settings.pbx,
        profile_rules=crm.rules,
        default_region=crm.default_region
        or region_for_country_code(settings.numbering.country_code),
        external=crm.external,
    )


def crm_config_error(exc: CrmStartupError) -> ConfigError:
    """The bridge's start-up error as this process's, naming its key and variable."""
    if exc.setting is None:
        return ConfigError(str(exc))
    key = CRM_SETTING_KEYS.get(exc.setting, f"the screen-pop setting {exc.setting!r}")
    return ConfigError(exc.message(key))


#: The keys of this process's configuration behind the IVR's settings.
IVR_SETTING_KEYS = {
    "flows": "key 'ivr.flows' (CALLCENTER_IVR__FLOWS)",
    "entries": "key 'ivr.entries' (CALLCENTER_IVR__ENTRIES)",
    "fastagi_port": "key 'ivr.fastagi_port' (CALLCENTER_IVR__FASTAGI_PORT)",
}


def ivr_config_error(exc: IvrStartupError) -> ConfigError:
    """The IVR's start-up error as this process's, naming its key and variable."""
    if exc.setting is None:
        return ConfigError(str(exc))
    return ConfigError(exc.message(IVR_SETTING_KEYS.get(exc.setting, f"ivr.{exc.setting}")))


def ivr_targets(settings: Settings, config: AcdConfig | None) -> IvrTargets:
    """Where the IVR sends callers: each queue's plain holding spot for its first lane (as
    ``callcenter asterisk dialplan`` writes them), the ACD's voicemail and outbound
    contexts, the UserEvents the call model reads."""
    calls, acd = settings.calls, AcdTargets()
    holding: dict[str, HoldingLane] = {}
    if config is not None:
        options = DialplanOptions(
            parked_event=calls.parked_event, callback_event=calls.callback_event,
            holding=calls.holding,
        )  # fmt: skip
        for queue, spot in queue_holding(config, options).items():
            holding[queue] = HoldingLane(spot.context, spot.exten, spot.lane)
    return IvrTargets(
        holding,
        voicemail_context=acd.overflow_contexts["voicemail"],
        transfer_context=acd.callback_context,
        parked_event=calls.parked_event,
        callback_event=calls.callback_event,
    )


def ivr_caller(cards: list[dict[str, Any]]) -> CallerFound | CallerUnknown:
    """The screen pop's cards of a number as the IVR's caller: one customer, or several
    who share a tier (the name then unknown); none: unknown."""
    if not cards:
        return CallerUnknown()
    tiers = {card.get("tier") for card in cards}
    tier = tiers.pop() if len(tiers) == 1 else None
    name = cards[0].get("name") if len(cards) == 1 else None
    tickets = len(cards[0].get("open_tickets") or ()) if len(cards) == 1 else 0
    return CallerFound(name, tier, tickets)


def device_agent(interface: str) -> str | None:
    """An agent-side device's agent when no ACD configuration says: the device's own name
    (``PJSIP/6001`` and ``Local/6001@agents`` are agent 6001)."""
    if "/" not in interface:
        return None
    name = interface.split("/", 1)[1].split("@", 1)[0].split("-", 1)[0]
    return name or None


def _channel_of(model: CallModel, call_id: str) -> str | None:
    call = model.calls.get(call_id)
    return call.channel if call is not None else None


#: The keys of this process's configuration behind the tickets' settings.
TICKET_SETTING_KEYS = {"tickets": "key 'tickets' (CALLCENTER_TICKETS)"}


def ticket_config_error(exc: TicketStartupError) -> ConfigError:
    """The tickets' start-up error as this process's, naming its key and variable."""
    if exc.setting is None:
        return ConfigError(str(exc))
    key = TICKET_SETTING_KEYS.get(exc.setting, f"the tickets setting {exc.setting!r}")
    return ConfigError(exc.message(key))


def ticket_settings(settings: Settings, acd: AcdConfig | None) -> TicketSettings:
    """The tickets file's settings (``tickets``), their groups checked against the ACD's
    queues and agents: a named file's mismatch stops the start, the default file's is
    logged (see :attr:`Settings.tickets_named`)."""
    path = settings.tickets
    if path is not None and not settings.tickets_named and not path.is_file():
        path = None  # no tickets.yaml where the default looks: the built-in defaults
    try:
        loaded = load_ticket_settings(path)
    except TicketStartupError as exc:
        raise ticket_config_error(exc) from None
    problems = loaded.unknown_members(
        acd.queues if acd is not None else None,
        acd.agents if acd is not None else None,
        str(path) if path is not None else "built-in tickets settings",
    )
    if problems and settings.tickets_named:
        raise ConfigError("invalid tickets configuration:\n  " + "\n  ".join(problems))
    for problem in problems:
        log.warning("tickets: %s (set key 'tickets' to make this stop the start)", problem)
    return loaded


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
            callback_event=calls.callback_event,
            holding=calls.holding,
            variables=calls.variables,
            keep_original_caller_id=calls.keep_original_caller_id,
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
        self.ami = AmiClient(client_settings(settings), self, reactor=reactor)
        self.call_events.register_producer(self.ami)
        #: The screen-pop bridge: customers, profiles, pops, the ACD's tiers.
        try:
            self.external_crm: HttpCrm | None = external_crm(
                settings.crm.external, reactor.seconds
            )
            self.crm = CrmBridgeService(
                crm_settings(settings, self.pbx),
                reactor=reactor,
                engine=self.engine,
                agent_of=self._agent_of,
                directory=self.external_crm,
                open_tickets=self._open_tickets,
                complaint_calls=self._complaint_calls,
            )
        except CrmStartupError as exc:
            raise crm_config_error(exc) from None
        self.call_events.subscribe(
            self.crm.on_call_event, max_pending=MAX_PENDING_CALL_EVENTS, name="screen pop"
        )
        self.link: LinkChange | None = None
        #: The ACD service, when ``acd.queues`` is set.
        self.acd: AcdService | None = None
        if settings.acd.queues is not None:
            try:
                self.acd = AcdService(
                    acd_settings(settings, self.pbx),
                    reactor=reactor,
                    ami=self.ami,
                    caller_channel=lambda call_id: _channel_of(self.model, call_id),
                    engine=self.engine,
                    tiers=self.crm.tiers,
                )
            except AcdStartupError as exc:
                raise acd_config_error(exc) from None
            self.call_events.subscribe(
                self.acd.on_call_event, max_pending=MAX_PENDING_CALL_EVENTS, name="acd"
            )
            self.acd.events.subscribe(self.crm.on_acd_event, name="screen pop")
        acd_config = self.acd.config if self.acd is not None else None
        self._agents_at = (
            {acd_config.interface_of(a): a for a in acd_config.agents} if acd_config else {}
        )
        #: The IVR (``ivr.flows``): flows over AsyncAGI (these call events) and FastAGI.
        self.ivr: IvrService | None = None
        if settings.ivr.enabled:
            try:
                self.ivr = IvrService(
                    settings.ivr,
                    reactor=reactor,
                    actions=self.ami,
                    queues=acd_config.queues if acd_config is not None else (),
                    targets=ivr_targets(settings, acd_config),
                    call_of=self._call_on,
                    lookup_caller=self._ivr_lookup,
                    wait_figures=self._ivr_wait if self.acd is not None else None,
                )
            except IvrStartupError as exc:
                raise ivr_config_error(exc) from None
            self.call_events.subscribe(
                self.ivr.on_call_event, max_pending=MAX_PENDING_CALL_EVENTS, name="ivr"
            )
            # The pop shows the flow walked, its inputs and outcome, not only the keys.
            self.ivr.events.subscribe(self.crm.on_ivr_event, name="screen pop")

        #: Tickets: complaints and requests, their deadlines and audit trail.
        self.ticket_settings = ticket_settings(settings, acd_config)
        policies = SlaPolicies(self.ticket_settings)
        self.tickets = TicketService(
            self.ticket_settings, engine=self.engine, reactor=reactor,
            deadlines=policies.deadlines, sla=policies.read,
            escalate_to=self.ticket_settings.escalate_to,
        )  # fmt: skip
        self.ticket_history = TicketEventRecorder(
            self.engine, reactor, pbx=self.pbx, **history_options(settings)
        )
        self.tickets.events.subscribe(
            self.ticket_history.record,
            max_pending=MAX_PENDING_CALL_EVENTS,
            window=MAX_PENDING_CALL_EVENTS,
            name="ticket history",
        )
        # The pop shows a customer's open tickets as they change; complaints count in the
        # customer's satisfaction (neither domain imports the other: this wiring joins them).
        self.tickets.events.subscribe(self._ticket_to_pop, name="screen pop")

        # -- the agent API (web/): accounts, log-in, each domain's routes ---------------------
        #: The HTTP API (``http.enabled``); served from :meth:`start`, see :meth:`add_router`.
        self.api: ApiServer | None = None
        if settings.http.enabled:
            self.accounts = Accounts(self.engine, token_hours=settings.http.token_hours)
            routers = [agent_routes(self.acd, account=current_account)] if self.acd else []
            if self.acd is not None:  # dispositions, reports, staffing
                routers.append(report_routes(self.acd, account=current_account))
            if self.acd is not None:
                routers.append(wallboard_routes(self.acd, account=current_account))
            routers.append(pop_routes(self.crm, self.crm.settings.default_region))
            routers.append(ticket_routes(self.tickets, queues_of=self._queues_of, pbx=self.pbx,
                                         groups_of=self.ticket_settings.groups_of,
                                         call_of=self._call_facts))  # fmt: skip
            app = build_api(accounts=self.accounts, routers=routers, title="callcenter")
            self.api = ApiServer(app, reactor=reactor)
        # -- end of the agent API -------------------------------------------------------------

    def start(self) -> None:
        log.info(
            "connecting to AMI %s:%d as %s (%s auth); call history in %s",
            self.settings.ami.host,
            self.settings.ami.port,
            self.settings.ami.username,
            self.settings.ami.auth,
            self.settings.database.display_url(),
        )
        self._start_api()  # first: a port already taken stops the start here
        if self.ivr is not None:
            try:
                self.ivr.start()
            except IvrStartupError as exc:
                raise ivr_config_error(exc) from None
        self._restore_open()
        self.crm.start()
        self.tickets.start()
        self.ami.start()
        if self.acd is not None:
            self.acd.start()

    def _restore_open(self) -> None:
        """Read what a previous run left open from history: the first snapshot ends the
        calls the PBX no longer has, and the ACD closes their records, once each."""
        now = self.reactor.seconds()
        try:
            calls = open_calls(self.engine, self.pbx, now)
            acd_calls = self.acd.restore_open(now) if self.acd is not None else 0
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
            log.warning(
                "history: cannot read the calls a previous run left open (%s); calls that "
                "ended while the backend was down get no end record",
                reason,
            )
            return
        self.model.expect_open(calls)
        if calls or acd_calls:
            log.info(
                "history: %d calls and %d ACD callers left open by a previous run; the first "
                "snapshot closes those that are gone",
                len(calls),
                acd_calls,
            )

    def _record(self, event: PbxEvent) -> Deferred[None] | None:
        # Device states are the PBX's present, not history: the ACD records what follows.
        return self.history.record(event) if isinstance(event, CallEvent) else None

    def stop(self) -> Deferred[None]:
        """Close the AMI link, then the histories (both at once: each may spend its grace
        period on a down database) and the screen-pop bridge; what the histories did not
        write stays in their spools, and ``history_closed`` says what was kept or lost."""
        if self.ivr is not None:  # first: its AsyncAGI sessions are handed back over AMI
            self.ivr.stop().addErrback(lambda f: log.warning("IVR: stop: %s", f.value))
        d = self.ami.stop()
        if self.api is not None:  # the agent API: no more requests, open ones finish
            d.addBoth(self._stop_api)
        self.tickets.stop()  # no ticket event after its history closes
        closers = [self.history.close, self.ticket_history.close]
        if self.acd is not None:
            self.acd.stop()
            closers.append(self.acd.close)
        return (
            d.addBoth(lambda _: gatherResults([close() for close in closers]))
            .addCallback(self.history_closed.extend)
            .addBoth(lambda _: self._stop_bridge())
            .addBoth(lambda _: self.engine.dispose())
        )

    # -- the agent API ----------------------------------------------------------------------

    def add_router(self, router: APIRouter) -> None:
        """Serve a domain's HTTP routes too (before :meth:`start`; without ``http.enabled``,
        nothing)."""
        if self.api is not None:
            self.api.app.include_router(router)

    def _start_api(self) -> None:
        if self.api is None:
            return
        http = self.settings.http
        try:
            serving = self.api.start(http.host, http.port)
        except ListenError as exc:
            raise ConfigError(
                f"{exc}; check key 'http.port' (CALLCENTER_HTTP__PORT): another backend may "
                "be using it, 0 picks any free port"
            ) from None
        serving.addErrback(lambda f: log.error("API: cannot serve: %s", f.getTraceback()))

    def _stop_api(self, result: T) -> Deferred[T]:
        assert self.api is not None
        return self.api.stop().addBoth(lambda _: result)

    # -- end of the agent API ---------------------------------------------------------------

    def watch(
        self,
        consumer: Callable[[PbxEvent], Deferred[Any] | None],
        name: str,
        max_pending: int = MAX_PENDING_CALL_EVENTS,
    ) -> None:
        """Subscribe another consumer to the call events; if it falls ``max_pending`` events
        behind, AMI reading pauses until it catches up."""
        self.call_events.subscribe(consumer, max_pending=max_pending, name=name)

    def _stop_bridge(self) -> Deferred[Any]:
        self.tickets.stop()
        stopping = [self.crm.stop()]
        if self.external_crm is not None:
            closing = asyncio.ensure_future(self.external_crm.aclose())
            stopping.append(Deferred.fromFuture(closing))
        return gatherResults(stopping)

    # -- what the IVR asks ------------------------------------------------------------------

    def _call_on(self, channel: str) -> str | None:
        """The call whose caller leg is ``channel`` (an AGI session's channel)."""
        return next((c.call_id for c in self.model.calls.values() if c.channel == channel), None)

    def _ivr_lookup(self, number: str) -> Deferred[CallerFound | CallerUnknown]:
        e164 = normalise(number, numbering_plan(self.settings))
        if e164 is None or not e164.startswith("+"):
            return succeed(CallerUnknown())
        return self.crm.lookup(e164).addCallback(ivr_caller)

    def _ivr_wait(self, queue: str) -> WaitFigures:
        assert self.acd is not None
        for figures in self.acd.snapshot(self.reactor.seconds()):
            if figures.queue == queue:
                return WaitFigures(figures.calls_waiting + 1, figures.estimated_wait.seconds)
        return WaitFigures(None, None)

    def _queues_of(self, agent: str) -> tuple[str, ...]:
        """The queues an agent is a member of (the ACD configuration's), for the tickets
        they see; none without an ACD."""
        config = self.acd.config if self.acd is not None else None
        member = config.agents.get(agent) if config is not None else None
        return tuple(member.queues) if member is not None else ()

    # -- what the tickets and the screen pop tell each other -------------------------------

    def _open_tickets(self, customer_id: str) -> list[dict[str, Any]]:
        """A customer's open tickets for the pop card (on the pop's look-up thread)."""
        return [t.to_dict() for t in self.tickets.store.open_for_customer(customer_id)]

    def _complaint_calls(self, calls: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Of these calls, those linked to a complaint ticket (on the contacts' thread)."""
        return self.tickets.calls_in_category(calls, "complaint")

    def _ticket_to_pop(self, event: TicketEvent) -> None:
        """A ticket event: pops showing its customer (or it) are updated; a complaint's
        calls are marked complained on. Other events than a creation name no customer: the
        ticket is read for it."""
        if isinstance(event, TicketCreated):
            self.crm.tickets_changed(event.customer_id, event.ticket_id)
            if event.category == "complaint":
                self._recheck_complaints(event.ticket_id)
            return
        d = self.tickets.get(event.ticket_id)
        d.addCallback(lambda t: self.crm.tickets_changed(t.customer_id, t.id))
        d.addErrback(lambda f: log.warning("screen pop: ticket %s unread: %s",
                                           event.number, f.getErrorMessage()))  # fmt: skip
        if isinstance(event, TicketChanged) and {"call", "category"} & set(event.fields):
            self._recheck_complaints(event.ticket_id)

    def _recheck_complaints(self, ticket_id: int) -> None:
        d = self.tickets.calls(ticket_id).addCallback(self.crm.complaints_changed)
        d.addErrback(lambda f: log.warning("screen pop: calls of ticket %s unread: %s",
                                           ticket_id, f.getErrorMessage()))  # fmt: skip

    def _call_facts(self, call_id: str) -> Deferred[CallFacts | None]:
        """What the pop knew of a call, for a ticket made from it."""

        def facts(record: CallRecord | None) -> CallFacts | None:
            if record is None:
                return None
            customer = record.customer_id
            if customer is not None and customer.startswith("crm:"):
                customer = None  # the external CRM's customer has no row to link to
            return CallFacts(call_id, customer, record.number, record.queue, record.ivr,
                             record.digits, record.agents)  # fmt: skip

        return self.crm.call_record(call_id).addCallback(facts)

    def _agent_of(self, interface: str) -> str | None:
        """The agent at an agent-side device: the ACD's configuration, else its name."""
        return self._agents_at.get(interface) or device_agent(interface)

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
        if self.acd is not None:
            # Agents are logged in once the first snapshot says whose phone is busy.
            self.acd.on_resync()

    def on_link(self, change: LinkChange) -> None:
        self.link = change


def freeze_start_up() -> None:
    """Once the process has started (modules, settings, SQLAlchemy's metadata, the app, the
    tier index): collect, then take everything alive out of the cyclic collector's full
    passes. Those objects live as long as the process, and walking them stalled the reactor
    150-180 ms at a time under load (bench.screen_pop, measured with ``gc.callbacks``;
    20-60 ms after this). Called by the process entry points, not by :class:`CallCenter`:
    a test process starts many of them, and frozen garbage is never freed."""
    gc.collect()
    gc.freeze()

