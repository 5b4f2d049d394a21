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
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from acd.agents import AcdError
from acd.decisions import CallBack, CancelOffer, Connect, Decision, Offer, Overflow
from acd.events import AcdEvent
from acd.state import AcdStateUnavailable
from cti.ami.client import AmiClient
from cti.ami.codec import Message
from cti.calls.events import CallAnswered, CallEnded, CallTransferred, PbxEvent

log = logging.getLogger(__name__)

_EARLY_KEPT = 256

#: Seconds before a caller whose offer failed at the AMI level (not the agent's doing) is
#: offered again, so an AMI outage does not spin.
ACTION_RETRY_DELAY = 1.0

#: The ``UserEvent`` by which the holding dialplan asks for a callback (README).
CALLBACK_EVENT = "CtiCallback"

#: OriginateResponse ``Reason`` codes (Asterisk's AST_CONTROL_* numbers) in words.
ORIGINATE_REASONS = {
    "0": "failed",
    "1": "hung up",
    "3": "no answer",
    "4": "answered",
    "5": "busy",
    "8": "congestion",
}


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


class AcdDriver:
    """Runs one router against one PBX through its AMI client."""

    def __init__(
        self,
        router: Any,
        ami: AmiClient,
        reactor: Any,
        *,
        interfaces: Mapping[str, str],
        caller_channel: Callable[[str], str | None],
        publish: Callable[[AcdEvent], None],
        dialplan: Dialplan = Dialplan(),
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
        self._rings: dict[str, _Ring] = {}  # ActionID -> ring
        self._by_call_agent: dict[tuple[str, str], _Ring] = {}
        self._early: dict[str, Message] = {}  # OriginateResponses ahead of their response
        self._callbacks: dict[str, str] = {}  # answered callback agent leg -> request id
        self._talking: dict[str, str] = {}  # bridged agent leg -> call_id
        self._timer: IDelayedCall | None = None

    # -- agent commands (they raise AcdError with the reason: unknown agent, busy...) -----

    def login(self, agent: str) -> None:
        self._apply(self.router.login(agent, self.reactor.seconds()))

    def logout(self, agent: str) -> None:
        self._apply(self.router.logout(agent, self.reactor.seconds()))

    def pause(self, agent: str, reason: str) -> None:
        self._apply(self.router.pause(agent, reason, self.reactor.seconds()))

    def unpause(self, agent: str) -> None:
        self._apply(self.router.unpause(agent, self.reactor.seconds()))

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

    def announce(self, call_id: str, position: int, wait: float | None) -> None:
        """Tell the holding dialplan the caller's position and estimated wait (seconds), as
        channel variables ``CTI_POSITION`` and ``CTI_EWT`` it can announce (README)."""
        channel = self._caller_channel(call_id)
        if channel is None:
            return
        values = [("CTI_POSITION", str(position))]
        if wait is not None:
            values.append(("CTI_EWT", str(round(wait))))
        for name, value in values:
            d = self.ami.send_action(
                "Setvar", [("Channel", channel), ("Variable", name), ("Value", value)]
            )
            d.addErrback(
                lambda f, name=name: log.info(
                    "ACD: could not tell %s its %s: %s", call_id, name, f.getErrorMessage()
                )
            )

    # -- inputs ---------------------------------------------------------------------------

    def on_call_event(self, event: PbxEvent) -> None:
        """A call event from the call model (parked, abandoned, ended...) or an agent's
        device state."""
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
        self._route(self.router.on_call_event, event, self.reactor.seconds())

    def on_ami_message(self, message: object) -> None:
        """Every item of the AMI client's stream: the driver reads the outcome of its own
        originates and the hang-up of its own legs (a callback's agent leg that never
        dialled the customer; the call model has the callback's outbound call); resync
        snapshots and everything else pass by."""
        if not isinstance(message, Message) or message.kind != "event":
            return
        if message.name == "Hangup":
            if self._callbacks:
                self._callback_ended(message)
            if self._talking:
                self._agent_hung_up(message)
            return
        if message.name == "Newchannel" and (message.get("Uniqueid") or "").startswith("acd-"):
            self._leg_created(message)
            return
        if message.name == "UserEvent" and message.get("UserEvent") == CALLBACK_EVENT:
            self._callback_requested(message)
            return
        if message.name != "OriginateResponse":
            return
        action_id = message.action_id or ""
        ring = self._rings.pop(action_id, None)
        if ring is None:
            # Ours before its own response was read, or another AMI user's originate (they
            # are broadcast): keep a few, the oldest go first.
            self._early[action_id] = message
            while len(self._early) > _EARLY_KEPT:
                del self._early[next(iter(self._early))]
            return
        self._originated(ring, message)

    # -- decisions ------------------------------------------------------------------------

    def _apply(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            try:
                self._execute(decision)
            except Exception:
                log.exception("ACD: could not carry out %r", decision)
        try:
            for event in self.router.drain_events():
                self._publish(event)
        finally:
            self._reschedule()

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
        )

    def _originate_agent(
        self,
        call_id: str,
        agent: str,
        ring_timeout: float,
        number: str | None,
        target: tuple[str, str],
        variable: tuple[str, str],
        *,
        callback: bool = False,
    ) -> None:
        """Ring ``agent``'s phone for ``call_id``; when answered, the leg goes to ``target``
        (context, extension). A ChannelId names the leg from the start, so it can be hung
        up while it still rings."""
        interface = self._interfaces.get(agent)
        if interface is None:
            log.error("ACD: agent %s has no interface configured; %s fails", agent, call_id)
            self._report_failed(call_id, agent, "no interface", missed=False)
            return
        channel_id = f"acd-{next(self._numbers)}"
        ring = _Ring(call_id, agent, channel_id, callback=callback)
        self._by_call_agent[(call_id, agent)] = ring
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
        ]
        d = self.ami.send_action("Originate", fields)
        d.addCallbacks(
            self._queued, self._action_failed, callbackArgs=(ring,), errbackArgs=("Originate", ring)
        )

    def _callback_requested(self, message: Message) -> None:
        # The holding dialplan's key press (README): the caller leaves a callback request
        # that keeps their place, then hangs up. The call is named by its Linkedid, as in
        # the call model.
        call_id, number = message.get("Linkedid"), message.get("Number")
        if not call_id or not number:
            log.warning(
                "ACD: %s without Linkedid or Number ignored: %s",
                CALLBACK_EVENT,
                message.headers[:6],
            )
            return
        self._route(self.router.request_callback, call_id, number, self.reactor.seconds())

    def _leg_created(self, message: Message) -> None:
        # Learn the agent leg's name while it rings (its Uniqueid is our ChannelId), so a
        # cancelled offer stops the agent's phone at once instead of at the ring timeout.
        uniqueid = message.get("Uniqueid")
        for ring in self._by_call_agent.values():
            if ring.channel_id == uniqueid:
                ring.channel = message.get("Channel")
                return

    def _queued(self, response: Message, ring: _Ring) -> None:
        action_id = response.action_id or ""
        early = self._early.pop(action_id, None)
        if early is not None:
            self._originated(ring, early)
        else:
            self._rings[action_id] = ring

    def _originated(self, ring: _Ring, message: Message) -> None:
        # Identity, not the key: after a ring timeout the same caller is often offered to
        # the same agent again, and the first Originate's late answer must not touch it.
        if self._by_call_agent.get((ring.call_id, ring.agent)) is not ring:
            # The offer was cancelled while ringing (caller gone, another agent answered).
            if message.get("Response") == "Success":
                self._hangup(message.get("Channel"), "offer already withdrawn")
            return
        if message.get("Response") == "Success":
            ring.channel = message.get("Channel")
            if ring.callback:
                # A callback's agent answered: the dialplan dials the customer. The call
                # model follows that outbound call (answered, failed, ended) for the
                # router; the leg's Hangup only matters if it never dialled.
                self._by_call_agent.pop((ring.call_id, ring.agent), None)
                self._callbacks[ring.channel or ""] = ring.call_id
            self._route(
                self.router.offer_answered, ring.call_id, ring.agent, self.reactor.seconds()
            )
        else:
            ring.channel = None  # a failed originate leaves no leg to hang up
            reason = ORIGINATE_REASONS.get(message.get("Reason") or "", "failed")
            self._failed(ring.call_id, ring.agent, reason)

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

    def _agent_hung_up(self, message: Message) -> None:
        # After an AMI Bridge, a caller whose agent hangs up falls back into the holding
        # dialplan (recording 05) and would hear hold music for good: the conversation is
        # over, so the caller is hung up too. A transferred call is no longer in _talking.
        call_id = self._talking.pop(message.get("Channel") or "", None)
        caller = self._caller_channel(call_id) if call_id is not None else None
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
            callback=True,
        )

    def _callback_ended(self, message: Message) -> None:
        # The answered agent leg of a callback is gone. The call model's outbound call says
        # how the customer's dial went; a leg that never dialled (no outbound call, e.g. a
        # number the dialplan refused) is a failed attempt.
        request_id = self._callbacks.pop(message.get("Channel") or "", None)
        if request_id is None:
            return
        reason = f"not dialled: agent leg hung up ({message.get('Cause-txt') or 'no cause'})"
        self._route(self.router.callback_leg_ended, request_id, reason, self.reactor.seconds())

    # -- failures and timers --------------------------------------------------------------

    def _action_failed(self, failure: Failure, action: str, ring: _Ring) -> None:
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
        outage), and routing goes on: events are published and the timer re-armed."""
        try:
            decisions = step(*args)
        except AcdError as exc:
            log.info("ACD: %s%r refused: %s", step.__name__, args[:3], exc)
            decisions = []
        except AcdStateUnavailable as exc:
            # One line, no traceback: the message says what and where (acd.store_health
            # keeps a shared store's outage to one WARNING and re-seeds it when it is back).
            log.warning("ACD: %s%r failed: %s", step.__name__, args[:3], exc)
            decisions = []
        except Exception:
            log.exception("ACD: %s%r failed", step.__name__, args[:3])
            decisions = []
        self._apply(decisions)

    def _reschedule(self) -> None:
        due = self.router.next_deadline()
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
        """Cancel the router's timer (the app is shutting down)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
