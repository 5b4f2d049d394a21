"""A small dialplan model: contexts of extensions, each a list of priorities, like
``extensions.conf``; ``lab_dialplan`` builds the lab's (shared/ami-captures/conf) from
the DID map. Application data is a template (``${VAR}``) or, where Asterisk evaluates an
expression, a function of the channel's variables that returns the expanded text."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .settings import Route, Settings

Data = str | Callable[[Mapping[str, str]], str]


@dataclass(frozen=True, slots=True)
class Step:
    app: str
    data: Data = ""
    label: str | None = None


Dialplan = dict[str, dict[str, list[Step]]]

_VAR = re.compile(r"\$\{([^${}]+)\}")


def expand(data: Data, variables: Mapping[str, str]) -> str:
    """Substitute ``${NAME}`` (innermost first); unknown names expand to empty."""
    text = data(variables) if callable(data) else data
    while True:
        new = _VAR.sub(lambda m: variables.get(m.group(1), ""), text)
        if new == text:
            return new
        text = new


def matches(pattern: str, exten: str) -> bool:
    """Asterisk extension patterns: ``_`` then X=[0-9], N=[2-9], Z=[1-9], ``.`` = rest."""
    if not pattern.startswith("_"):
        return pattern == exten
    classes = {"X": "0123456789", "N": "23456789", "Z": "123456789"}
    for i, p in enumerate(pattern[1:]):
        if p == ".":
            return i < len(exten)
        if i >= len(exten) or exten[i] not in classes.get(p, p):
            return False
    return len(exten) == len(pattern) - 1


def can_match_more(pattern: str, prefix: str) -> bool:
    """Whether a longer number starting with ``prefix`` could match ``pattern``
    (Asterisk's matchmore: a transfer keeps collecting digits while it is true)."""
    if not pattern.startswith("_"):
        return len(pattern) > len(prefix) and pattern.startswith(prefix)
    classes = {"X": "0123456789", "N": "23456789", "Z": "123456789"}
    for i, ch in enumerate(prefix):
        p = pattern[1 + i] if 1 + i < len(pattern) else ""
        if p == ".":
            return True
        if not p or ch not in classes.get(p, p):
            return False
    rest = pattern[1 + len(prefix) :]
    return bool(rest)


def find_extension(plan: Dialplan, context: str, exten: str) -> list[Step] | None:
    extens = plan.get(context, {})
    if exten in extens:
        return extens[exten]
    return next((steps for pat, steps in extens.items() if matches(pat, exten)), None)


def _wait_or(default: str) -> Data:
    return lambda v: v.get("LAB_WAIT") or default


def _route_steps(did: str, route: Route, entry: Mapping[str, str]) -> list[Step]:
    """``entry``: each queue's entry context (``queue-entry`` unless configured)."""
    if route.kind == "queue":
        return [Step("Goto", f"{entry.get(route.target, 'queue-entry')},{route.target},1")]
    if route.kind == "ivr":
        return [Step("Goto", "ivr-main,s,1")]
    if route.kind == "holding":
        return [Step("Goto", "holding,s,1")]
    if route.kind == "holding-moh":
        return [Step("Goto", "holding,moh,1")]
    if route.kind == "holding-callback":
        return [Step("Goto", "holding-callback,s,1")]
    if route.kind == "cid-mask":
        return [Step("Goto", "did-cid-mask,s,1")]
    agi, label = ("agi:async", "AsyncAGI") if route.kind == "agi" else (route.agi_url, "FastAGI")

    def queue(v: Mapping[str, str]) -> str:
        target = v.get("CTI_ROUTE") or route.target
        return f"{entry.get(target, 'queue-entry')},{target},1"

    def lost(v: Mapping[str, str]) -> str:
        return f"{int(v.get('AGISTATUS') in ('FAILURE', 'SUCCESS'))}?{route.fallback}"

    # As the product's generated IVR entry (ivr/dialplan.py): a caller still here after
    # FastAGI lost its backend (FAILURE: unreachable; SUCCESS: the connection closed, e.g.
    # dropped mid-flow) parks in the fallback holding spot.
    fallback = [Step("GotoIf", lost)] if route.kind == "fastagi" and route.fallback else []
    return [
        Step("Answer"),
        Step("AGI", agi),
        Step("NoOp", label + " returned AGISTATUS=${AGISTATUS} CTI_ROUTE=${CTI_ROUTE}"),
        *fallback,
        Step("Goto", queue),
    ]


def _cid_mask(settings: Settings, entry: Mapping[str, str]) -> dict[str, list[Step]]:
    """``[did-cid-mask]`` (lab DID 5007): the number, then the name (one NewCallerid
    each), then the queue of the (first) ``cid-mask`` route."""
    found = [(did, r) for did, r in settings.dids.items() if r.kind == "cid-mask"]
    if not found:
        return {}
    did, route = found[0]
    return {
        "s": [
            Step("NoOp", f"DID {did} masks caller ID ${{CALLERID(all)}}"),
            Step("Set", lambda v: f"CALLERID(num)={v.get('LAB_MASK_NUM') or '+31201234567'}"),
            Step("Set", lambda v: f"CALLERID(name)={v.get('LAB_MASK_NAME') or 'Masked Caller'}"),
            Step("Goto", f"{entry.get(route.target, 'queue-entry')},{route.target},1"),
        ]
    }


def _queue_entries(settings: Settings) -> dict[str, dict[str, list[Step]]]:
    contexts: dict[str, dict[str, list[Step]]] = {"queue-entry": {}}
    for q in settings.queues:
        contexts.setdefault(q.entry_context, {})[q.name] = [
            Step("NoOp", f"enter queue {q.name}"),
            Step("Answer"),
            Step("Queue", f"{q.name},tT,,,300"),
            Step("NoOp", "QUEUESTATUS=${QUEUESTATUS}"),
            Step("Hangup"),
        ]
    return contexts


def _ring_secs(default: float) -> Data:
    def ring(v: Mapping[str, str]) -> str:
        return v.get("LAB_AGENT_RING") or v.get("AGENT_RING_SECS", f"{default:g}")

    return ring


def _talk_secs(v: Mapping[str, str]) -> str:
    return v.get("AGENT_TALK_SECS") or "600"


def _cid_normalize(v: Mapping[str, str]) -> str:
    num = v.get("CALLERID(num)", "")
    ten = len(num) == 10 and num.isdigit()
    return f"{int(ten)}?Set(CALLERID(num)=+1{num})"


CUSTOMER_OUTCOMES = ("answer", "busy", "noanswer")


def _customer_outcomes(script: Mapping[str, tuple[str, ...]]) -> Data:
    """The label each dial of a customer goes to: the number's scripted outcomes in turn,
    the last one repeating (``answer`` for a number not in ``script``)."""
    for number, outcomes in script.items():
        wrong = [o for o in outcomes if o not in CUSTOMER_OUTCOMES] or ([] if outcomes else [""])
        if wrong:
            raise ValueError(
                f"customers[{number!r}]: {wrong[0]!r} is not an outcome; use one or more of "
                f"{', '.join(CUSTOMER_OUTCOMES)}"
            )
    dials: dict[str, int] = {}

    def outcome(variables: Mapping[str, str]) -> str:
        number = variables.get("EXTEN", "")
        outcomes = script.get(number) or ("answer",)
        done = dials.get(number, 0)
        dials[number] = done + 1
        return outcomes[min(done, len(outcomes) - 1)]

    return outcome


def lab_dialplan(settings: Settings) -> Dialplan:
    """The lab's extensions.conf, with ``[inbound]`` routes from ``settings.dids``."""
    entry = {q.name: q.entry_context for q in settings.queues}
    ring = _ring_secs(settings.agent_ring_seconds)
    plan: Dialplan = {
        "caller-script": {
            "hangup-after": [
                Step("NoOp", "caller script: hang up after ${LAB_WAIT}s"),
                Step("Wait", "${LAB_WAIT}"),
                Step("Hangup"),
            ],
            "dtmf": [
                Step("NoOp", "caller script: DTMF '${LAB_DTMF1}' then '${LAB_DTMF2}'"),
                Step("Wait", "${LAB_DELAY1}"),
                Step("SendDTMF", "${LAB_DTMF1},250,150"),
                Step("GotoIf", lambda v: f"{int(not v.get('LAB_DTMF2'))}?done"),
                Step("Wait", "${LAB_DELAY2}"),
                Step("SendDTMF", "${LAB_DTMF2},250,150"),
                Step("Wait", "${LAB_WAIT}", label="done"),
                Step("Hangup"),
            ],
            "stay": [
                Step("NoOp", "caller script: stay"),
                Step("Wait", _wait_or("600")),
                Step("Hangup"),
            ],
        },
        "cid-normalize": {
            "s": [Step("ExecIf", _cid_normalize), Step("Return")],
        },
        "inbound": {
            "_50XX": [
                Step("NoOp", "Inbound DID ${EXTEN} from ${CALLERID(all)}"),
                Step("Gosub", "cid-normalize,s,1"),
                Step("Set", "__CTI_CALLID=${UNIQUEID}"),
                Step("Goto", "did-${EXTEN},1"),
            ],
            **{
                f"did-{did}": _route_steps(did, route, entry)
                for did, route in settings.dids.items()
            },
        },
        "did-cid-mask": _cid_mask(settings, entry),
        **_queue_entries(settings),
        "ivr-main": {
            "s": [
                Step("NoOp", "IVR main menu"),
                Step("Answer"),
                Step("Set", "TIMEOUT(digit)=3"),
                Step("Set", "TIMEOUT(response)=6"),
                Step("BackGround", "lab-menu", label="menu"),
                Step("WaitExten", "6"),
            ],
            "1": [
                Step("NoOp", "IVR option 1: sales, collect account number"),
                Step("Set", "__IVR_CHOICE=sales"),
                Step("Read", "ACCOUNT,lab-beep,8,,1,6"),
                Step("Set", "__CTI_ACCOUNT=${ACCOUNT}"),
                Step("NoOp", "READSTATUS=${READSTATUS} ACCOUNT=${ACCOUNT}"),
                Step("Goto", "queue-entry,sales,1"),
            ],
            "2": [
                Step("NoOp", "IVR option 2: support"),
                Step("Set", "__IVR_CHOICE=support"),
                Step("Goto", "queue-entry,support,1"),
            ],
            "i": [Step("Playback", "lab-beep"), Step("Goto", "s,menu")],
            "t": [Step("Goto", "queue-entry,sales,1")],
        },
        "holding": {
            "s": [
                Step("NoOp", "parked for external ACD: ${CALLERID(num)}"),
                Step("Answer"),
                Step(
                    "UserEvent",
                    "CtiParked,Queue: external,CallerIDNum: ${CALLERID(num)},"
                    "CtiCallId: ${CTI_CALLID}",
                ),
                Step("Wait", "300", label="loop"),
                Step("Goto", "loop"),
            ],
            "moh": [
                Step("NoOp", "parked with MOH"),
                Step("Answer"),
                Step(
                    "UserEvent",
                    "CtiParked,Queue: external-moh,CallerIDNum: ${CALLERID(num)},"
                    "CtiCallId: ${CTI_CALLID}",
                ),
                Step("MusicOnHold", "default,300", label="loop"),
                Step("Goto", "loop"),
            ],
        },
        # The product's callback offer (README): parked, a key press leaves a request.
        "holding-callback": {
            "s": [
                Step("Answer"),
                Step(
                    "UserEvent",
                    "CtiParked,Queue: external,CallerIDNum: ${CALLERID(num)},"
                    "CtiCallId: ${CTI_CALLID}",
                ),
                Step("WaitExten", "300", label="loop"),
                Step("Goto", "loop"),
            ],
            "5": [
                Step(
                    "UserEvent",
                    "CtiCallback,CtiCallId: ${CTI_CALLID},Number: ${CALLERID(num)}",
                ),
                Step("Playback", "lab-beep"),
                Step("Hangup"),
            ],
        },
        # Callbacks: the agent's leg dials the customer (README: Dial of the trunk).
        "outbound": {
            "_.": [
                Step("NoOp", "callback to ${EXTEN}"),
                Step("Dial", "Local/${EXTEN}@customers,60"),
                Step("NoOp", "DIALSTATUS=${DIALSTATUS}"),
                Step("Hangup"),
            ],
        },
        # The customers a callback reaches: each dial meets the number's next scripted
        # outcome (settings.customers); one who answers talks a while, then hangs up.
        "customers": {
            "_.": [
                Step("NoOp", "customer ${EXTEN} is called"),
                Step("Goto", _customer_outcomes(settings.customers)),
                Step("Ringing", label="answer"),
                Step("Wait", "1"),
                Step("Answer"),
                Step("Wait", lambda v: v.get("CALLBACK_TALK_SECS") or "3"),
                Step("Hangup"),
                Step("Busy", label="busy"),
                Step("Ringing", label="noanswer"),
                Step("Wait", "600"),
                Step("Hangup"),
            ],
        },
        "agents": {
            "_6XXX": [
                Step("NoOp", "Agent ${EXTEN} alerted for CTI_CALLID=${CTI_CALLID}"),
                Step("Ringing"),
                Step("Wait", ring),
                Step("Answer"),
                Step("Wait", _talk_secs),
                Step("Hangup"),
            ],
        },
        # Recording 14: a queue member's desk line rings the agent's phone, itself a
        # Local channel (dialled without /n, so the desk's pair can be optimised away).
        "agent-desk": {
            "_7XXX": [
                Step("NoOp", "desk ${EXTEN} -> phone for CTI_CALLID=${CTI_CALLID}"),
                Step("Dial", "Local/${EXTEN}@agent-phone,20"),
                Step("Hangup"),
            ],
        },
        # The agent's phone: as [agents], but it sends audio once answered (a silent
        # tone): Asterisk optimises a Local pair only when voice frames pass through it.
        "agent-phone": {
            "_7XXX": [
                Step("NoOp", "phone ${EXTEN} alerted for CTI_CALLID=${CTI_CALLID}"),
                Step("Ringing"),
                Step("Wait", ring),
                Step("Answer"),
                Step("PlayTones", "0/1000"),
                Step("Wait", _talk_secs),
                Step("Hangup"),
            ],
        },
        "agents-noanswer": {
            "_6XXX": [
                Step("NoOp", "Agent ${EXTEN} rings but never answers"),
                Step("Ringing"),
                Step("Wait", "600"),
                Step("Hangup"),
            ],
        },
        "agent-standby": {
            "s": [Step("NoOp", "agent leg standing by"), Step("Wait", "600"), Step("Hangup")],
        },
        # Transfer targets: a blind transferee, or the consult channel of an attended one.
        "xfer": {
            "_6XXX": [
                Step("NoOp", "transfer to agent ${EXTEN}"),
                Step("Dial", "Local/${EXTEN}@agents,20"),
                Step("Hangup"),
            ],
        },
    }
    return plan
