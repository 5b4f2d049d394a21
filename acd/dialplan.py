"""The ``extensions.conf`` contexts the product's ACD needs, generated from its configuration.

:func:`acd_dialplan` builds them from the queues file (:class:`~acd.config.AcdConfig`) and
:class:`DialplanOptions` (what the process's settings say about the dialplan: the inbound
context, the UserEvent names, ``calls.holding``) and the ACD driver's own targets
(:class:`acd.driver.Dialplan`: where it originates agent legs and callbacks, where it
redirects overflowing callers), so the documented dialplan and the running configuration
cannot drift apart. :func:`render` writes them as ``extensions.conf`` text. Pure.

The contexts, as the lab of ``shared/ami-captures`` (and the PBX simulator) has them:

* the inbound context: every DID normalised (caller ID to E.164, ``__CTI_CALLID``), then
  ``did-<DID>``: the queues' DIDs go to their queue's holding lane, other entries (the IVR's)
  where the caller passes them;
* holding lanes: ``Answer``, ``UserEvent CtiParked`` with the lane as ``Queue`` header (what
  the ACD reads), then a wait loop with music on hold, or silent (``Wait``);
* the callback offer (a key press sends ``UserEvent CtiCallback``), the callback
  confirmation and the voicemail the ACD redirects overflowing callers to;
* the outbound context a callback's agent leg dials the customer from, the agent standby
  context, and the contexts of ``Local/<agent>@<context>`` agent interfaces.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from acd.config import AcdConfig
from acd.driver import Dialplan as AcdTargets

__all__ = [
    "Context",
    "Destination",
    "DialplanError",
    "DialplanOptions",
    "HoldingSpot",
    "Step",
    "acd_dialplan",
    "holding_spots",
    "render",
]

#: An extension name the generator writes (no pattern: ``_`` starts one).
_EXTEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@+*#._-]*$")
#: Seconds of each wait in a holding loop (the lab's 300).
HOLD_SECONDS = 300


class DialplanError(ValueError):
    """The configuration cannot be written as a dialplan; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Step:
    """One priority: ``App(data)``, with an optional label (``n(loop)``)."""

    app: str
    data: str = ""
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Destination:
    """A ``Goto`` target: context and extension (priority 1)."""

    context: str
    exten: str

    def target(self) -> str:
        """``context,exten,1``: the argument of ``Goto``."""
        return f"{self.context},{self.exten},1"


@dataclass(slots=True)
class Context:
    """A ``[name]`` context: extensions in order, each a list of priorities."""

    name: str
    comment: str = ""
    extensions: dict[str, list[Step]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HoldingSpot:
    """Where callers park for the ACD: ``exten`` in ``context`` announces ``lane``."""

    context: str
    exten: str
    lane: str
    #: Music-on-hold class while waiting; None: silence (``Wait``).
    music: str | None
    #: Whether a key press there asks for a callback.
    callback_offer: bool

    def target(self) -> str:
        """``context,exten,1``: the argument of ``Goto``."""
        return Destination(self.context, self.exten).target()


@dataclass(frozen=True, slots=True)
class DialplanOptions:
    """What the dialplan must agree on with the rest of the process (``calls`` settings)
    and the site's choices (devices, trunk, prompts)."""

    inbound_context: str = "inbound"
    parked_event: str = "CtiParked"
    callback_event: str = "CtiCallback"
    #: ``calls.holding``: context -> extension -> lane, as the call model reads them.
    holding: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {"holding": {"s": "external", "moh": "external-moh"}}
    )
    #: Lanes whose callers wait in silence (the lab's ``external``); others hear music.
    silent_lanes: frozenset[str] = frozenset()
    music_class: str = "default"
    #: The context of the callback offer, and the key that asks for the callback.
    callback_offer_context: str = "holding-callback"
    callback_key: str = "5"
    callback_offer_prompt: str = "press-5-for-callback"
    callback_confirm_prompt: str = "we-will-call-you-back"
    #: How the callback context dials a customer (``${EXTEN}`` is the number).
    outbound_dial: str = "PJSIP/${EXTEN}@trunk"
    #: The device a ``Local/<agent>@<context>`` agent interface rings (``{agent}``: its id).
    agent_device: str = "PJSIP/{agent}"
    #: National numbers of this length get ``+<country_code>`` (None: no normalisation).
    country_code: str | None = "1"
    national_length: int = 10
    targets: AcdTargets = field(default_factory=AcdTargets)


def holding_spots(config: AcdConfig, options: DialplanOptions) -> list[HoldingSpot]:
    """Every holding spot: those of ``calls.holding`` (its callback-offer context's offer a
    callback), then a plain and a callback-offer spot ``<lane>`` for each queue lane that
    has none, and ``dialled`` for queues fed by DIDs only (a lane no queue reads, so the
    ACD goes by the number dialled)."""
    offer = options.callback_offer_context
    spots: list[HoldingSpot] = []

    def add(context: str, exten: str, lane: str) -> None:
        _check_exten(exten, f"holding extension of lane {lane!r}")
        if context == offer and exten in (options.callback_key, "t", "i"):
            raise DialplanError(
                f"lane {lane!r}: extension {exten!r} of {offer} is taken by the callback key "
                "or a timeout/invalid handler; give it another extension in calls.holding"
            )
        music = None if lane in options.silent_lanes else options.music_class
        spots.append(HoldingSpot(context, exten, lane, music, context == offer))

    for context, extens in options.holding.items():
        for exten, lane in extens.items():
            add(context, exten, lane)
    for queue in config.queues.values():
        lanes = queue.lanes or (("dialled",) if queue.dids else ())
        for lane in lanes:
            for context in ("holding", offer):
                taken = any(
                    s.lane == lane and (s.context == offer) == (context == offer) for s in spots
                )
                if not taken and not any(s.context == context and s.exten == lane for s in spots):
                    add(context, lane, lane)
    return spots


def acd_dialplan(
    config: AcdConfig,
    options: DialplanOptions,
    *,
    routes: Mapping[str, Destination] | None = None,
    contexts: Sequence[Context] = (),
) -> list[Context]:
    """The product's contexts. ``routes`` (DID -> destination) and ``contexts`` are other
    parts' (the IVR's entry points): their DIDs join the inbound context's."""
    targets = options.targets
    spots = holding_spots(config, options)
    did_routes = _queue_routes(config, spots)
    for did, destination in (routes or {}).items():
        if did in did_routes:
            raise DialplanError(
                f"DID {did} is both a queue's (queues file) and goes to "
                f"{destination.context},{destination.exten}: give it to one of them"
            )
        did_routes[did] = destination
    plan = [
        _inbound(options, did_routes),
        *([_cid_normalize(options)] if options.country_code else []),
        *_holding(spots, options),
        _callback_confirm(options),
        *_voicemail(config, targets),
        _outbound(options),
        Context(
            targets.standby_context,
            "agent legs the ACD originates wait here until it bridges them to the caller",
            {
                targets.standby_exten: [
                    Step("NoOp", "agent leg standing by"),
                    Step("Wait", "600"),
                    Step("Hangup"),
                ]
            },
        ),
        *_agent_contexts(config, options),
        *contexts,
    ]
    names = [c.name for c in plan]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DialplanError(f"context(s) {', '.join(twice)} generated twice: rename one")
    return plan


def _check_exten(exten: str, what: str) -> None:
    if not _EXTEN.match(exten):
        raise DialplanError(
            f"{what}: {exten!r} cannot be an extension name (letters, digits, + * # . - @; "
            "not starting with _)"
        )


def _queue_routes(config: AcdConfig, spots: Sequence[HoldingSpot]) -> dict[str, Destination]:
    """Each queue DID to the plain holding spot of its queue's first lane."""
    routes: dict[str, Destination] = {}
    for queue in config.queues.values():
        lane = queue.lanes[0] if queue.lanes else "dialled"
        spot = next(s for s in spots if s.lane == lane and not s.callback_offer)
        for did in queue.dids:
            _check_exten(did, f"queue {queue.name!r} DID")
            routes[did] = Destination(spot.context, spot.exten)
    return routes


def _inbound(options: DialplanOptions, routes: Mapping[str, Destination]) -> Context:
    entry = [
        Step("NoOp", "Inbound DID ${EXTEN} from ${CALLERID(all)}"),
        *([Step("Gosub", "cid-normalize,s,1")] if options.country_code else []),
        Step("Set", "__CTI_CALLID=${UNIQUEID}"),  # agent legs inherit the call's id
        Step("Goto", "did-${EXTEN},1"),
    ]
    extensions = {"_X.": entry, "_+X.": list(entry)}
    extensions |= {f"did-{did}": [Step("Goto", d.target())] for did, d in routes.items()}
    return Context(
        options.inbound_context,
        "inbound calls: the call model starts a call here (calls.inbound_contexts)",
        extensions,
    )


def _cid_normalize(options: DialplanOptions) -> Context:
    n, cc = options.national_length, options.country_code
    return Context(
        "cid-normalize",
        f"{n}-digit national caller ID -> E.164 +{cc} (numbering settings)",
        {
            "s": [
                Step(
                    "ExecIf",
                    f"$[${{LEN(${{CALLERID(num)}})}} = {n}]?"
                    f"Set(CALLERID(num)=+{cc}${{CALLERID(num)}})",
                ),
                Step("Return"),
            ]
        },
    )


def _parked(spot: HoldingSpot, options: DialplanOptions) -> Step:
    return Step(
        "UserEvent",
        f"{options.parked_event},Queue: {spot.lane},CallerIDNum: ${{CALLERID(num)}},"
        "CtiCallId: ${CTI_CALLID}",
    )


def _holding(spots: Sequence[HoldingSpot], options: DialplanOptions) -> list[Context]:
    contexts: dict[str, Context] = {}
    for spot in spots:
        if spot.callback_offer:
            continue
        context = contexts.setdefault(
            spot.context,
            Context(
                spot.context, "callers parked for the ACD: the lane is the CtiParked Queue header"
            ),
        )
        wait = (
            Step("MusicOnHold", f"{spot.music},{HOLD_SECONDS}", label="loop")
            if spot.music
            else Step("Wait", str(HOLD_SECONDS), label="loop")
        )
        context.extensions[spot.exten] = [
            Step("NoOp", f"parked in lane {spot.lane}: ${{CALLERID(num)}}"),
            Step("Answer"),
            _parked(spot, options),
            wait,
            Step("Goto", "loop"),
        ]
    offers = [s for s in spots if s.callback_offer]
    if offers:
        contexts[options.callback_offer_context] = _callback_offer(offers, options)
    return list(contexts.values())


def _callback_offer(spots: Sequence[HoldingSpot], options: DialplanOptions) -> Context:
    context = Context(
        options.callback_offer_context,
        f"holding with the callback offer: key {options.callback_key} asks the ACD to call "
        "back, keeping the caller's place",
    )
    for spot in spots:
        music = f",m({spot.music})" if spot.music else ""
        context.extensions[spot.exten] = [
            Step("NoOp", f"parked in lane {spot.lane} with a callback offer: ${{CALLERID(num)}}"),
            Step("Answer"),
            Step("Set", "CTI_HOLDING=${EXTEN}"),  # where t and i bring the caller back
            _parked(spot, options),
            Step("Background", options.callback_offer_prompt, label="loop"),
            Step("WaitExten", f"30{music}"),
            Step("Goto", "loop"),
        ]
    context.extensions[options.callback_key] = [
        Step(
            "UserEvent",
            f"{options.callback_event},CtiCallId: ${{CTI_CALLID}},Number: ${{CALLERID(num)}}",
        ),
        Step("Playback", options.callback_confirm_prompt),
        Step("Hangup"),
    ]
    back = [Step("Goto", "${CTI_HOLDING},loop")]
    context.extensions["t"] = back
    context.extensions["i"] = list(back)
    return context


def _callback_confirm(options: DialplanOptions) -> Context:
    name = options.targets.overflow_contexts["callback"]
    return Context(
        name,
        "the ACD redirects here a caller its callback overflow made a request of",
        {
            "s": [
                Step("NoOp", "callback requested for ${CALLERID(num)}"),
                Step("Playback", options.callback_confirm_prompt),
                Step("Hangup"),
            ]
        },
    )


def voicemail_targets(config: AcdConfig) -> list[str]:
    """The mailboxes the ACD may redirect callers to (overflows and their fallbacks)."""
    boxes: list[str] = []
    for queue in config.queues.values():
        overflow = queue.overflow
        if overflow is None:
            continue
        if overflow.kind == "voicemail" and overflow.target:
            boxes.append(overflow.target)
        if overflow.fallback is not None and overflow.fallback.kind == "voicemail":
            boxes.append(overflow.fallback.target)
    return list(dict.fromkeys(boxes))


def _voicemail(config: AcdConfig, targets: AcdTargets) -> list[Context]:
    boxes = voicemail_targets(config)
    if not boxes:
        return []
    context = Context(
        targets.overflow_contexts["voicemail"],
        "the ACD redirects overflowing callers here, the mailbox as extension",
    )
    for box in boxes:
        _check_exten(box, "voicemail target")
        context.extensions[box] = [Step("VoiceMail", "${EXTEN},u"), Step("Hangup")]
    return [context]


def _outbound(options: DialplanOptions) -> Context:
    def dial() -> list[Step]:
        return [
            Step("NoOp", "callback to ${EXTEN} (request ${CTI_CALLBACK})"),
            Step("Dial", f"{options.outbound_dial},60"),
            Step("NoOp", "DIALSTATUS=${DIALSTATUS}"),
            Step("Hangup"),
        ]

    return Context(
        options.targets.callback_context,
        "a callback's agent leg dials the customer from here: the call model reads the "
        "dial from that leg, so dial from the originated channel itself",
        {"_X.": dial(), "_+X.": dial()},
    )


def _agent_contexts(config: AcdConfig, options: DialplanOptions) -> list[Context]:
    """A context per ``Local/<exten>@<context>`` agent interface, ringing the device."""
    contexts: dict[str, Context] = {}
    for agent in config.agents:
        interface = config.interface_of(agent)
        m = re.match(r"^Local/([^@/]+)@([^/]+?)(?:/n)?$", interface)
        if m is None:
            continue
        exten, name = m[1], m[2]
        _check_exten(exten, f"agent {agent!r} interface {interface}")
        context = contexts.setdefault(
            name,
            Context(
                name, "agents' Local interfaces (agent_interface): each rings the agent's device"
            ),
        )
        device = options.agent_device.format(agent=agent)
        context.extensions[exten] = [
            Step("NoOp", f"agent {agent} rung for CTI_CALLID=${{CTI_CALLID}}"),
            Step("Dial", device),
            Step("Hangup"),
        ]
    return list(contexts.values())


def render(contexts: Iterable[Context], header: Sequence[str] = ()) -> str:
    """``extensions.conf`` text: ``exten => x,1,App(data)`` then ``same => n,...``."""
    lines = [f"; {h}" if h else ";" for h in header]
    for context in contexts:
        if lines:
            lines.append("")
        lines.append(f"[{context.name}]")
        if context.comment:
            lines.append(f"; {context.comment}")
        for exten, steps in context.extensions.items():
            for i, step in enumerate(steps):
                label = f"({step.label})" if step.label else ""
                app = f"{step.app}({step.data.replace(';', chr(92) + ';')})"
                head = f"exten => {exten},1" if i == 0 else " same => n"
                lines.append(f"{head}{label},{app}")
    return "\n".join(lines) + "\n"
