"""The ACD's telephony shell: router decisions become AMI actions, AMI outcomes become router
input. Asterisk's app_queue is not the router: callers wait in a holding context
(``UserEvent CtiParked``, see README) and this driver rings agents and bridges them, exactly
as the external-ACD recordings (``shared/ami-captures`` 05 and 12) show:

* ``Offer`` -> ``Originate Channel=<agent interface> Context=agent-standby Exten=s Async=true
  Timeout=<ring timeout> CallerID=<caller's number> ChannelId=acd-<run>-<n>`` per agent
  (``<run>`` is drawn at start: a restarted backend's agent legs never take the Uniqueid of
  one still up from before);
* ``OriginateResponse Success`` (the agent answered) -> the router's ``offer_answered``, whose
  ``Connect`` -> ``Bridge Channel1=<caller> Channel2=<agent leg> Tone=no``;
* ``OriginateResponse Failure`` (no answer, busy, congestion) or a failed action ->
  ``offer_failed``: the caller keeps its place and the router offers it to the next agent;
* ``CancelOffer`` -> ``Hangup`` of the agent leg; ``Overflow`` -> ``Redirect`` of the caller;
* ``CallBack`` -> ``Originate`` of the agent leg into the callback context (extension = the
  customer's number, variable ``CTI_CALLBACK=<request id>``); once the agent answered, the
  call model follows the dial to the customer as an outbound call and the router acts on
  its ``answered`` / ``failed`` / ``ended``.

Every failure of an action is logged with the call and the agent and reported to the router,
so no caller is left parked and no agent stays reserved.

Threads (``threaded``, chosen by the service from the store: on with Redis). A router step
makes one to a dozen store operations, each a network round trip with Redis (0.2-0.5 ms on
loopback, up to the client's timeout when Redis is stuck), and the reactor thread must never
wait for them. So every step (the router's method, then its ``drain_events`` and
``next_deadline``) runs on one dedicated thread, a
:class:`~twisted.python.threadpool.ThreadPool` of exactly one thread: steps run one at a
time, in the order they were queued, and the router, a plain object, needs no lock. The
inputs (the time, the event, the tier) are taken on the reactor thread when the step is
queued. Each step's decisions and events come back to the reactor thread, which carries
them out (AMI actions, publishing, the timer) in that same order: a step's decisions are
always carried out before the next step's, whatever the thread pool does (results are
numbered and held until their turn). The router thread holds the GIL only between round
trips, and the switch interval is lowered to :data:`SWITCH_INTERVAL`, so the reactor thread
never waits long for it.

Agent commands (:meth:`AcdDriver.login`...) then return a Deferred that fails with the
router's :class:`~acd.agents.AcdError`; :meth:`AcdDriver.call` runs anything else that
touches the router or its store (``GuardedState.recover``, a read of ``router.waiting``) on
that thread. From the reactor thread only :meth:`Router.offers` (it copies in one step) and
the immutable ``router.config`` may be read directly; ``router.waiting``,
``router.available`` and the roster (``router.agents``) belong to the router thread (tests
read them when the driver is idle).

Without ``threaded`` (the in-process :class:`~acd.state.MemoryState`: a step costs tens of
microseconds, and tests that drive a fake clock) every step runs inline, at once, and agent
commands raise :class:`~acd.agents.AcdError` at once.

The caller's value tier is looked up here (``tiers``), from the arrival, before the router
step that will make the caller join: a look-up that one day asks a CRM never runs inside a
routing step.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from acd.agents import AcdError
from acd.decisions import CallBack, CancelOffer, Connect, Decision, Offer, Overflow
from acd.events import AcdEvent
from acd.state import AcdStateUnavailable
from crm_bridge.tiers import CallerTiers
from cti.ami.codec import Message
from cti.calls.events import (
    AgentHungUp,
    CallAnswered,
    CallArrived,
    CallbackAsked,
    CallbackLegEnded,
    CallEnded,
    CallOffered,
    CallTransferred,
    OriginateOutcome,
    PbxEvent,
)

if TYPE_CHECKING:  # acd.service imports this module
    from acd.service import ActionSender

log = logging.getLogger(__name__)

#: Seconds before a caller whose offer failed at the AMI level (not the agent's doing) is
#: offered again, so an AMI outage does not spin.
ACTION_RETRY_DELAY = 1.0

#: Threaded, the interpreter's switch interval is lowered to this (seconds; Python's default
#: is 5 ms): how long the reactor thread may wait for the GIL while the router thread runs
#: Python code. Without it, the reactor thread woken by a timer or a socket can miss the GIL
#: each time the router thread briefly releases it for a Redis round trip, until a whole
#: interval has passed: 4-7 ms stalls (``bench.acd_state --stall``).
SWITCH_INTERVAL = 0.001


@dataclass(frozen=True, slots=True)
class Dialplan:
    """Where the driver sends channels: the agent standby context (agent legs wait there
    for the bridge), the callback context, and the overflow destinations (``kind`` ->
    context, ``target`` is the extension)."""

    standby_context: str = "agent-standby"
    standby_exten: str = "s"
    #: Where a callback's agent leg goes to dial the customer (extension = the number).
    callback_context: str = "outbound"
    overflow_contexts: Mapping[str, str] = field(
        default_factory=lambda: {"voicemail": "voicemail", "callback": "callback-confirm"}
    )


@dataclass(slots=True)
class _Ring:
    """One agent leg being originated for a call."""

    call_id: str
    agent: str
    channel_id: str
    callback: bool = False  # a callback request's outbound call, not a parked caller
    channel: str | None = None  # the agent leg, once Asterisk names it


@dataclass(slots=True)
class _Outcome:
    """What one step on the router thread produced, for the reactor thread to carry out."""

    decisions: list[Decision] = field(default_factory=list)
    events: list[AcdEvent] = field(default_factory=list)
    due: float | None = None  # the router's next deadline after the step
    result: Any = None  # what a :meth:`AcdDriver.call` function returned
    failure: Failure | None = None  # what a command or a call raised


# What a queued step is: a routing step (errors logged), an agent command (errors go to
# the caller's Deferred), or any function run by :meth:`AcdDriver.call`.
_ROUTE, _COMMAND, _CALL = "route", "command", "call"


class AcdDriver:
    """Runs one router against one PBX through its AMI client; ``threaded``: the router's
    steps run on a thread of their own (see the module doc)."""

    def __init__(
        self,
        router: Any,
        ami: ActionSender,
        reactor: Any,
        *,
        interfaces: Mapping[str, str],
        caller_channel: Callable[[str], str | None],
        publish: Callable[[AcdEvent], None],
        dialplan: Dialplan = Dialplan(),
        tiers: CallerTiers | None = None,
        threaded: bool = False,
    ) -> None:
        self.router = router
        self.ami = ami
        self.reactor = reactor
        self._interfaces = interfaces
        self._publish = publish
        self._caller_channel = caller_channel
        self._dialplan = dialplan
        run = secrets.token_hex(4)
        self._numbers = (f"{run}-{n:06d}" for n in itertools.count(1))
        self._legs: dict[str, _Ring] = {}  # ChannelId (the leg's Uniqueid) -> ring
        self._by_call_agent: dict[tuple[str, str], _Ring] = {}
        self._agent_of = {interface: agent for agent, interface in interfaces.items()}
        self._callbacks: dict[str, str] = {}  # answered callback request id -> agent leg
        self._talking: dict[str, str] = {}  # bridged agent leg -> call_id
        self._timer: IDelayedCall | None = None
        self._tiers = tiers
        # Threaded mode: the router's thread, the steps queued so far, the results that came
        # back ahead of their turn, and the next one to carry out.
        self._pool: ThreadPool | None = None
        self._local = threading.local()  # on the router thread: the step's decisions
        self._turns = itertools.count()
        self._returned: dict[int, tuple[_Outcome | Failure, Deferred[Any]]] = {}
        self._next_applied = 0
        self._stopped = False
        self._shutdown: Any = None  # the reactor's shutdown trigger that stops the thread
        if threaded:
            if sys.getswitchinterval() > SWITCH_INTERVAL:  # process-wide; never raised
                sys.setswitchinterval(SWITCH_INTERVAL)
            self._pool = ThreadPool(minthreads=1, maxthreads=1, name="acd-router")
            self._pool.start()
            if hasattr(reactor, "addSystemEventTrigger"):
                # Never keep the process alive: a driver not stopped stops with the reactor.
                self._shutdown = reactor.addSystemEventTrigger(
                    "during", "shutdown", self._stop_pool
                )

    # -- agent commands (they raise AcdError with the reason: unknown agent, busy...) -----
    # Threaded, they return a Deferred instead, which fails with that AcdError.

    def login(self, agent: str) -> Deferred[None] | None:
        return self._command(self.router.login, agent, self.reactor.seconds())

    def logout(self, agent: str) -> Deferred[None] | None:
        return self._command(self.router.logout, agent, self.reactor.seconds())

    def pause(self, agent: str, reason: str) -> Deferred[None] | None:
        return self._command(self.router.pause, agent, reason, self.reactor.seconds())

    def unpause(self, agent: str) -> Deferred[None] | None:
        return self._command(self.router.unpause, agent, self.reactor.seconds())

    def poll(self) -> None:
        """Offer this PBX's callers the agents other backends freed (shared state)."""
        self._route(self.router.poll, self.reactor.seconds())

    def reseed(self, free_agents: bool = True) -> None:
        """Put this backend's callers and agents back into a store that lost them and route
        (see ``Router.reseed`` and ``acd.store_health``)."""
        self._route(self.router.reseed, self.reactor.seconds(), free_agents)

    def overflow(self, call_id: str, reason: str) -> None:
        """Overflow a waiting caller now (see ``Router.overflow``)."""
        self._route(self.router.overflow, call_id, reason, self.reactor.seconds())

    def announce(
        self, call_id: str, position: int, wait: float | None, queue: str | None = None
    ) -> None:
        """Tell the holding dialplan the caller's position and estimated wait (seconds), as
        channel variables ``CTI_POSITION`` and ``CTI_EWT`` it can announce (README), and
        its ``CTI_QUEUE`` (so the call model names the queue if the caller abandons)."""
        channel = self._caller_channel(call_id)
        if channel is None:
            return
        values = [("CTI_POSITION", str(position))]
        if queue is not None:
            values.append(("CTI_QUEUE", queue))
        if wait is not None:
            values.append(("CTI_EWT", str(round(wait))))

        def not_told(f: Failure, name: str) -> None:
            log.info("ACD: could not tell %s its %s: %s", call_id, name, f.getErrorMessage())

        for name, value in values:
            d = self.ami.send_action(
                "Setvar", [("Channel", channel), ("Variable", name), ("Value", value)]
            )
            d.addErrback(not_told, name)

    # -- inputs ---------------------------------------------------------------------------

    def on_call_event(self, event: PbxEvent) -> None:
        """Everything the call model publishes: call events (parked, abandoned, ended...),
        agents' device states, and what became of the driver's own actions (its legs'
        ``originate_outcome``, ``agent_hung_up``, ``callback_leg_ended``). The driver reads
        no AMI itself: the call model is the one interpreter of the PBX's events."""
        if isinstance(event, OriginateOutcome):
            self._leg_outcome(event)
            return
        if isinstance(event, CallbackLegEnded):
            self._callback_ended(event)
            return
        if isinstance(event, CallOffered):
            self._leg_named(event)
        elif isinstance(event, AgentHungUp):
            self._agent_hung_up(event)
        elif isinstance(event, CallbackAsked):
            # The holding dialplan's key press: the caller's place becomes a callback
            # request that keeps it (the caller then hangs up).
            self._route(
                self.router.request_callback, event.call_id, event.number, self.reactor.seconds()
            )
            return
        if isinstance(event, CallTransferred | CallEnded):
            # The agent leg no longer speaks for the caller.
            for leg in [leg for leg, cid in self._talking.items() if cid == event.call_id]:
                del self._talking[leg]
        elif (
            isinstance(event, CallAnswered)
            and event.restored
            and event.lane is not None
            and event.agent.channel
        ):
            # A bridge of ours found in the snapshot after a restart: when its agent hangs
            # up, the caller must not fall back into the holding lane.
            self._talking[event.agent.channel] = event.call_id
        self._route(self.router.on_call_event, event, self.reactor.seconds(), self._tier(event))

    # -- decisions ------------------------------------------------------------------------

    def _apply(self, decisions: list[Decision], outcome: _Outcome | None = None) -> None:
        """Carry out a step's decisions, publish its events and re-arm the timer. Inline the
        events and the deadline are read from the router now; threaded the router thread
        read them after the step (``outcome``): this thread never touches the router."""
        for decision in decisions:
            try:
                self._execute(decision)
            except Exception:
                log.exception("ACD: could not carry out %r", decision)
        try:
            for event in self.router.drain_events() if outcome is None else outcome.events:
                self._publish(event)
        finally:
            self._reschedule(self.router.next_deadline() if outcome is None else outcome.due)

    def _execute(self, decision: Decision) -> None:
        if isinstance(decision, Offer):
            for agent in decision.agents:
                self._ring(decision, agent)
        elif isinstance(decision, Connect):
            self._connect(decision)
        elif isinstance(decision, CancelOffer):
            self._cancel(decision.call_id, decision.agent)
        elif isinstance(decision, Overflow):
            self._overflow(decision)
        elif isinstance(decision, CallBack):
            self._call_back(decision)

    def _ring(self, offer: Offer, agent: str) -> None:
        self._originate_agent(
            offer.call_id,
            agent,
            offer.ring_timeout,
            offer.caller_number,
            (self._dialplan.standby_context, self._dialplan.standby_exten),
            ("CTI_CALLID", offer.call_id),
            offer.queue,
        )

    def _originate_agent(
        self,
        call_id: str,
        agent: str,
        ring_timeout: float,
        number: str | None,
        target: tuple[str, str],
        variable: tuple[str, str],
        queue: str,
        *,
        callback: bool = False,
    ) -> None:
        """Ring ``agent``'s phone for ``call_id``; when answered, the leg goes to ``target``
        (context, extension). A ChannelId names the leg from the start, so it can be hung
        up while it still rings; ``CTI_QUEUE`` and ``CTI_AGENT`` on the leg tell the call
        model (so every screen and report) which queue and agent the offer is for."""
        interface = self._interfaces.get(agent)
        if interface is None:
            log.error("ACD: agent %s has no interface configured; %s fails", agent, call_id)
            self._report_failed(call_id, agent, "no interface", missed=False)
            return
        channel_id = f"acd-{next(self._numbers)}"
        ring = _Ring(call_id, agent, channel_id, callback=callback)
        self._by_call_agent[(call_id, agent)] = ring
        self._legs[channel_id] = ring
        fields = [
            ("Channel", interface),
            ("Context", target[0]),
            ("Exten", target[1]),
            ("Priority", "1"),
            ("Async", "true"),
            ("Timeout", str(int(ring_timeout * 1000))),
            ("CallerID", f"<{number or ''}>"),
            ("ChannelId", channel_id),
            ("OtherChannelId", f"{channel_id}-2"),
            ("Variable", f"{variable[0]}={variable[1]}"),
            ("Variable", f"CTI_QUEUE={queue}"),
            ("Variable", f"CTI_AGENT={_agent_name(self.router, agent)}"),
        ]
        d = self.ami.send_action("Originate", fields)
        # Its outcome comes as the call model's originate_outcome; only a refused action
        # (link down, bad request) is handled here.
        d.addErrback(self._action_failed, "Originate", ring)

    def _leg_named(self, offered: CallOffered) -> None:
        # Learn an agent leg's name while it rings, so a cancelled offer stops the agent's
        # phone at once instead of at the ring timeout.
        agent = self._agent_of.get(offered.agent.interface)
        ring = self._by_call_agent.get((offered.call_id, agent or ""))
        if ring is not None and ring.channel is None:
            ring.channel = offered.agent.channel

    def _leg_outcome(self, outcome: OriginateOutcome) -> None:
        """An originated leg answered or failed; ours are known by their ChannelId (which
        names the leg even when it failed), whatever order the AMI answers came in."""
        ring = self._legs.pop(outcome.leg_id, None)
        if ring is None:
            return  # another AMI user's originate (they are broadcast), or one we dropped
        # Identity, not the key: after a ring timeout the same caller is often offered to
        # the same agent again, and the first Originate's late answer must not touch it.
        if self._by_call_agent.get((ring.call_id, ring.agent)) is not ring:
            # The offer was cancelled while ringing (caller gone, another agent answered).
            if outcome.answered:
                self._hangup(outcome.channel, "offer already withdrawn")
            return
        if outcome.answered:
            ring.channel = outcome.channel
            if ring.callback:
                # A callback's agent answered: the dialplan dials the customer. The call
                # model follows that outbound call (answered, failed, ended) for the
                # router; the leg's end only matters if it never dialled.
                self._by_call_agent.pop((ring.call_id, ring.agent), None)
                self._callbacks[ring.call_id] = ring.channel or ""
            self._route(
                self.router.offer_answered, ring.call_id, ring.agent, self.reactor.seconds()
            )
        else:
            ring.channel = None  # a failed originate leaves no leg to hang up
            self._failed(ring.call_id, ring.agent, outcome.reason)

    def _connect(self, decision: Connect) -> None:
        ring = self._by_call_agent.get((decision.call_id, decision.agent))
        caller = self._caller_channel(decision.call_id)
        if ring is None or ring.channel is None or caller is None:
            log.error(
                "ACD: cannot bridge %s with %s: caller channel %s, agent leg %s",
                decision.call_id,
                decision.agent,
                caller,
                ring and ring.channel,
            )
            self._connect_failed(decision.call_id, decision.agent)
            return
        fields = [("Channel1", caller), ("Channel2", ring.channel), ("Tone", "no")]
        d = self.ami.send_action("Bridge", fields)
        d.addCallbacks(
            self._bridged, self._bridge_failed, callbackArgs=(ring,), errbackArgs=(ring,)
        )

    def _bridge_failed(self, failure: Failure, ring: _Ring) -> None:
        # Typically "Channel1 does not exist": the caller hung up as the agent answered
        # (recording 11). The agent is not to blame: no miss; the caller, if still there,
        # waits again in its place.
        log.warning(
            "ACD: Bridge of %s with agent %s failed: %s",
            ring.call_id,
            ring.agent,
            failure.getErrorMessage(),
        )
        self._connect_failed(ring.call_id, ring.agent)

    def _connect_failed(self, call_id: str, agent: str) -> None:
        ring = self._by_call_agent.pop((call_id, agent), None)
        if ring is not None and ring.channel is not None:
            self._hangup(ring.channel, f"bridge of {call_id} failed: orphan agent leg")
        self.reactor.callLater(
            0,
            lambda: self._route(self.router.connect_failed, call_id, agent, self.reactor.seconds()),
        )

    def _bridged(self, _: Message, ring: _Ring) -> None:
        self._by_call_agent.pop((ring.call_id, ring.agent), None)
        if ring.channel is not None:
            self._talking[ring.channel] = ring.call_id

    def _agent_hung_up(self, event: AgentHungUp) -> None:
        # After an AMI Bridge, a caller whose agent hangs up falls back into the holding
        # dialplan (recording 05) and would hear hold music for good: the conversation is
        # over, so the caller is hung up too. A transferred call is no longer in _talking.
        if event.agent.channel is None or event.agent.channel not in self._talking:
            return
        call_id = self._talking.pop(event.agent.channel)
        caller = self._caller_channel(call_id)
        if caller is not None:
            self._hangup(caller, f"agent of {call_id} hung up")

    def _cancel(self, call_id: str, agent: str) -> None:
        ring = self._by_call_agent.pop((call_id, agent), None)
        if ring is not None and ring.channel is not None:
            self._hangup(ring.channel, f"offer of {call_id} to {agent} cancelled")

    def _hangup(self, channel: str | None, why: str) -> None:
        if not channel:
            return
        d = self.ami.send_action("Hangup", [("Channel", channel), ("Cause", "16")])

        def failed(failure: Failure) -> None:
            # "No such channel": it hung up by itself meanwhile (ring timeout, caller gone).
            gone = "No such channel" in failure.getErrorMessage()
            log.log(
                logging.DEBUG if gone else logging.WARNING,
                "ACD: Hangup of %s (%s) failed: %s",
                channel,
                why,
                failure.getErrorMessage(),
            )

        d.addErrback(failed)

    def _overflow(self, decision: Overflow) -> None:
        if decision.kind == "queue":
            return  # the router moved the caller to the other queue; the caller stays put
        caller = self._caller_channel(decision.call_id)
        context = self._dialplan.overflow_contexts.get(decision.kind)
        if caller is None or context is None:
            log.error(
                "ACD: cannot overflow %s to %s %s (caller channel %s, context %s)",
                decision.call_id,
                decision.kind,
                decision.target,
                caller,
                context,
            )
            return
        # Voicemail: the mailbox is the extension. Callback: the request is already queued,
        # the caller only hears the confirmation.
        exten = decision.target if decision.kind == "voicemail" else "s"
        fields = [("Channel", caller), ("Context", context), ("Exten", exten), ("Priority", "1")]
        d = self.ami.send_action("Redirect", fields)

        def failed(failure: Failure) -> None:
            # The router has let the caller go; leaving them on hold for ever is worse.
            log.error(
                "ACD: Redirect of %s to %s failed (%s); hanging up the caller",
                decision.call_id,
                decision.target,
                failure.getErrorMessage(),
            )
            self._hangup(caller, f"overflow of {decision.call_id} failed")

        d.addErrback(failed)

    def _call_back(self, decision: CallBack) -> None:
        # The agent's phone rings first; once the agent answers, the dialplan's callback
        # context dials the customer and connects the two (README: dialplan snippets).
        self._originate_agent(
            decision.request_id,
            decision.agent,
            decision.ring_timeout,
            decision.number,
            (self._dialplan.callback_context, decision.number),
            ("CTI_CALLBACK", decision.request_id),
            decision.queue,
            callback=True,
        )

    def _callback_ended(self, event: CallbackLegEnded) -> None:
        # The answered agent leg of a callback is gone without dialling the customer (no
        # outbound call, e.g. a number the dialplan refused): a failed attempt. Once it
        # dialled, the call model's outbound call tells the router how the dial went.
        if self._callbacks.pop(event.request_id, None) is None:
            return
        reason = f"not dialled: agent leg hung up ({event.cause_text or 'no cause'})"
        self._route(
            self.router.callback_leg_ended, event.request_id, reason, self.reactor.seconds()
        )

    # -- failures and timers --------------------------------------------------------------

    def _action_failed(self, failure: Failure, action: str, ring: _Ring) -> None:
        self._legs.pop(ring.channel_id, None)  # no originate_outcome follows a refusal
        log.warning(
            "ACD: %s for %s / agent %s failed: %s",
            action,
            ring.call_id,
            ring.agent,
            failure.getErrorMessage(),
        )
        self._failed(
            ring.call_id, ring.agent, f"{action} failed", ACTION_RETRY_DELAY, missed=False
        )

    def _failed(
        self, call_id: str, agent: str, reason: str, delay: float = 0.0, *, missed: bool = True
    ) -> None:
        ring = self._by_call_agent.pop((call_id, agent), None)
        if ring is not None and ring.channel is not None:
            self._hangup(ring.channel, f"{reason}: orphan agent leg")
        self._report_failed(call_id, agent, reason, delay, missed=missed)

    def _report_failed(
        self, call_id: str, agent: str, reason: str, delay: float = 0.0, *, missed: bool = True
    ) -> None:
        """``missed``: the agent's phone was rung and not answered (busy, no answer), so the
        caller goes to other agents first; not when an action failed (AMI link down)."""
        # Never inline: an action that fails at once (AMI link down) would re-offer, fail
        # and recurse; ``delay`` spaces such retries out.
        def report() -> None:
            self._route(
                self.router.offer_failed, call_id, agent, reason, self.reactor.seconds(), missed
            )

        self.reactor.callLater(delay, report)

    def _route(self, step: Callable[..., list[Decision]], *args: Any) -> None:
        """Feed the router and carry out its decisions. A refusal (an offer the router
        already dropped because the caller left) is logged; any other error too (a Redis
        outage), and routing goes on: events are published and the timer re-armed.

        Threaded, the step is queued for the router thread and its decisions carried out
        when it is done, in order (see the module doc). Called on the router thread itself
        (a :meth:`call` function re-seeding or polling), the step runs at once and its
        decisions are carried out with that function's."""
        nested = self._nested()
        if nested is not None:
            nested += self._decide(step, args)
        elif self._pool is None:
            self._apply(self._decide(step, args))
        else:
            self._submit(_ROUTE, step, args)

    def _decide(self, step: Callable[..., list[Decision]], args: tuple[Any, ...]) -> list[Decision]:
        """Run a routing step where the router runs; its errors are logged, never raised."""
        try:
            return step(*args)
        except AcdError as exc:
            log.info("ACD: %s%r refused: %s", step.__name__, args[:3], exc)
        except AcdStateUnavailable as exc:
            # One line, no traceback: the message says what and where (acd.store_health
            # keeps a shared store's outage to one WARNING and re-seeds it when it is back).
            log.warning("ACD: %s%r failed: %s", step.__name__, args[:3], exc)
        except Exception:
            log.exception("ACD: %s%r failed", step.__name__, args[:3])
        return []

    def call(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run ``fn(*args)`` where the router runs, after every step queued before it, and
        fire with what it returned (or its error) once the decisions of those steps and its
        own are carried out. Inline, it runs now.

        This is the way, from the reactor thread, to anything that touches the router or
        its store in threaded mode: the shared poll (``GuardedState.recover`` then
        :meth:`poll`), a read of ``router.waiting`` or of the roster. Driver steps ``fn``
        starts (:meth:`reseed`, :meth:`poll`) run at once, within it.
        ``call(lambda: None)`` fires when everything queued so far is done."""
        if self._pool is None or self._nested() is not None:
            return maybeDeferred(fn, *args)
        return self._submit(_CALL, fn, args)

    def _command(self, step: Callable[..., list[Decision]], *args: Any) -> Deferred[None] | None:
        """An agent command: inline it raises the router's AcdError at once; threaded the
        Deferred fails with it (nothing changed), after the earlier steps."""
        nested = self._nested()
        if nested is not None:
            nested += step(*args)
            return None
        if self._pool is None:
            self._apply(step(*args))
            return None
        return self._submit(_COMMAND, step, args)

    def _nested(self) -> list[Decision] | None:
        """On the router thread, within a step: the list that step's decisions go to."""
        return getattr(self._local, "decisions", None)

    def _submit(self, kind: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Deferred[Any]:
        assert self._pool is not None
        done: Deferred[Any] = Deferred()
        if self._stopped:  # an AMI message or a timer after stop(): nothing more is routed
            if kind != _ROUTE:
                done.errback(AcdError("the ACD is stopped"))
            return done
        turn = next(self._turns)
        work = deferToThreadPool(self.reactor, self._pool, self._run_step, kind, fn, args)
        work.addBoth(self._returned_from_thread, turn, done)
        return done

    def _run_step(self, kind: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> _Outcome:
        """On the router thread: the step, then the events and the next deadline it left.
        Never raises: the outcome carries the error."""
        outcome = _Outcome()
        if self._stopped:  # queued before stop(): skipped, so stopping waits for one step
            if kind != _ROUTE:  # nobody waits for a routing step's Deferred
                outcome.failure = Failure(AcdError("the ACD is stopped"))
            return outcome
        self._local.decisions = outcome.decisions  # what nested _route calls decide
        try:
            if kind == _ROUTE:
                outcome.decisions += self._decide(fn, args)
            elif kind == _COMMAND:
                outcome.decisions += fn(*args)
            else:
                outcome.result = fn(*args)
        except Exception:
            outcome.failure = Failure()
        finally:
            del self._local.decisions
        try:
            outcome.events = self.router.drain_events()
            outcome.due = self.router.next_deadline()
        except Exception:
            log.exception("ACD: reading the router's events and deadline failed")
        return outcome

    def _returned_from_thread(
        self, outcome: _Outcome | Failure, turn: int, done: Deferred[Any]
    ) -> None:
        """On the reactor thread: carry out the outcomes whose turn has come, in order."""
        self._returned[turn] = (outcome, done)
        while self._next_applied in self._returned:
            outcome, done = self._returned.pop(self._next_applied)
            self._next_applied += 1
            if isinstance(outcome, Failure):  # the pool itself failed: nothing was decided
                done.errback(outcome)
                continue
            if not self._stopped:
                try:
                    self._apply(outcome.decisions, outcome)
                except Exception:
                    log.exception("ACD: carrying out %d decisions failed", len(outcome.decisions))
            if outcome.failure is not None:
                done.errback(outcome.failure)
            else:
                done.callback(outcome.result)

    def _tier(self, event: PbxEvent) -> str | None:
        """An inbound arrival's value tier, for the router to join the caller with."""
        if self._tiers is None or not isinstance(event, CallArrived) or event.callback:
            return None
        return self._tiers.tier_of(event.caller.number)

    def _reschedule(self, due: float | None) -> None:
        if self._timer is not None and self._timer.active():
            if due is not None and abs(self._timer.getTime() - due) < 1e-3:
                return
            self._timer.cancel()
        self._timer = None
        if due is not None:
            self._timer = self.reactor.callLater(max(0.0, due - self.reactor.seconds()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._route(self.router.tick, self.reactor.seconds())

    def stop(self) -> None:
        """Cancel the router's timer (the app is shutting down); threaded, wait for the
        step in progress and stop the router thread: steps still queued are skipped (their
        commands and calls fail), what comes back is not carried out."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._shutdown is not None:
            self.reactor.removeSystemEventTrigger(self._shutdown)
            self._shutdown = None
        self._stop_pool()

    def _stop_pool(self) -> None:
        self._stopped = True
        if self._pool is not None and self._pool.started:
            self._pool.stop()


def _agent_name(router: Any, agent: str) -> str:
    """The agent's display name from the ACD configuration (its id when unnamed)."""
    member = router.config.agents.get(agent)
    name = getattr(member, "name", None) or agent
    # A value in an Originate Variable header must not break the header.
    return "".join(c for c in name if c.isprintable() and c not in ",\r\n")
