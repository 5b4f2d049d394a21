"""Typed settings of the PBX simulator; the defaults reproduce the Asterisk lab of
``shared/ami-captures`` (DIDs, queues, members, manager user)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

RouteKind = Literal[
    "queue", "ivr", "agi", "fastagi", "holding", "holding-moh", "holding-callback", "cid-mask"
]


@dataclass(frozen=True, slots=True)
class Route:
    """Where an inbound DID goes: a queue (``target`` = queue name), the IVR menu (digit 1
    -> account number -> ``target`` queue), AsyncAGI (then ``target`` queue unless the
    controller set ``CTI_ROUTE``), FastAGI (the script at ``agi_url``, then likewise),
    or the holding context for an external ACD; ``cid-mask`` is the lab's DID 5007 of
    recordings 13 and 14: ``[did-cid-mask]`` sets ``CALLERID(num)`` and then
    ``CALLERID(name)`` (``LAB_MASK_NUM``/``LAB_MASK_NAME``, else ``+31201234567`` /
    ``Masked Caller``), then queue ``target``. ``fallback`` (``context,exten,priority``,
    e.g. ``holding,s,1``, the spot of lane ``external``) is where a FastAGI caller goes
    when AGI returns (the script's server unreachable: AGISTATUS=FAILURE; the connection
    closed, e.g. dropped mid-flow: SUCCESS), as the product's generated IVR entry does
    (ivr/dialplan.py); empty: none, the lab as recorded (recording 09)."""

    kind: RouteKind
    target: str = "sales"
    agi_url: str = "agi://127.0.0.1:4573/lab-route"
    fallback: str = ""


@dataclass(frozen=True, slots=True)
class Member:
    """A static queue member ``Local/<exten>@<context>``; agents ring ``ring_seconds``
    then answer and talk for a drawn handle time, unless ``answers`` is false.

    ``dialplan_context`` names another context for the member's line: ``agent-desk`` is
    the lab's desk line of recording 14, which Dials the agent's phone
    ``Local/<exten>@agent-phone``; the phone plays a (silent) tone once answered, so
    Asterisk optimises the desk's Local pair away (``LocalOptimizationBegin``...)."""

    exten: str
    name: str
    penalty: int = 0
    answers: bool = True
    ring_seconds: float = 1.0
    dialplan_context: str = ""

    @property
    def context(self) -> str:
        if self.dialplan_context:
            return self.dialplan_context
        return "agents" if self.answers else "agents-noanswer"

    @property
    def interface(self) -> str:
        return f"Local/{self.exten}@{self.context}"


@dataclass(frozen=True, slots=True)
class QueueSettings:
    name: str
    strategy: Literal["rrmemory", "ringall"] = "rrmemory"
    timeout: float = 10.0
    retry: float = 2.0
    wrapuptime: float = 0.0
    members: tuple[Member, ...] = ()
    #: The context whose extension ``<name>`` answers and runs ``Queue(<name>,tT,,,300)``
    #: (the lab's queue ``desk`` has its own, ``queue-entry-desk``).
    entry_context: str = "queue-entry"


@dataclass(frozen=True, slots=True)
class Hint:
    """``exten => <exten>,hint,<device>`` in ``context``: the extension's state follows
    the device (``ExtensionStatus`` events, the ``ExtensionStateList`` action). A device
    is a channel name without its ``-XXXXXXXX;n`` suffix (``Local/6001@agents``)."""

    exten: str
    device: str
    context: str = "agent-hints"


@dataclass(frozen=True, slots=True)
class TrafficSettings:
    """Simulated callers: Poisson arrivals, exponential patience, agents' handle time."""

    enabled: bool = False
    calls_per_minute: float = 6.0
    mean_patience: float = 30.0
    mean_handle_time: float = 20.0
    #: DIDs callers dial, drawn uniformly.
    dids: tuple[str, ...] = ("5000", "5001", "5003", "5006")
    #: ``name,number`` CSV; None = the built-in demo list.
    customers_csv: Path | None = None


def _lab_queues() -> tuple[QueueSettings, ...]:
    return (
        QueueSettings(
            "sales",
            strategy="rrmemory",
            timeout=10,
            retry=2,
            wrapuptime=2,
            members=(
                Member("6001", "Agent Alice"),
                Member("6002", "Agent Bob"),
                Member("6003", "Agent Carol", penalty=1),
            ),
        ),
        QueueSettings(
            "support",
            strategy="ringall",
            timeout=4,
            retry=1,
            members=(Member("6101", "Agent NoAnswer", answers=False),),
        ),
    )


def _lab_dids() -> dict[str, Route]:
    return {
        "5000": Route("queue", "sales"),
        "5001": Route("ivr", "sales"),
        "5002": Route("agi", "sales"),
        "5003": Route("holding"),
        "5004": Route("fastagi", "sales"),
        "5005": Route("queue", "support"),
        "5006": Route("holding-moh"),
        "5007": Route("holding-callback"),
    }


def _lab_hints() -> tuple[Hint, ...]:
    """The lab's ``[agent-hints]`` (recordings 13 and 14)."""
    return (
        Hint("6001", "Local/6001@agents"),
        Hint("6002", "Local/6002@agents"),
        Hint("6003", "Local/6003@agents"),
        Hint("7001", "Local/7001@agent-phone"),
    )


def lab_desk_queue() -> QueueSettings:
    """Recording 14's queue ``desk``: ringall, one static member, Agent Dora, whose line
    ``Local/7001@agent-desk`` Dials her phone ``Local/7001@agent-phone``."""
    return QueueSettings(
        "desk",
        strategy="ringall",
        timeout=10,
        retry=2,
        wrapuptime=1,
        members=(Member("7001", "Agent Dora", dialplan_context="agent-desk"),),
        entry_context="queue-entry-desk",
    )


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 5038  # 0 = ephemeral
    username: str = "cti"
    secret: str = "ctilab-secret"
    #: ``manager.conf channelvars``: echoed as ``ChanVariable: NAME=value``.
    channelvars: tuple[str, ...] = ("LAB_SCENARIO", "CTI_CALLID")
    seed: int = 0
    dids: dict[str, Route] = field(default_factory=_lab_dids)
    queues: tuple[QueueSettings, ...] = field(default_factory=_lab_queues)
    #: BLF hints on the agents' devices; () = none (ExtensionStateList is then empty).
    hints: tuple[Hint, ...] = field(default_factory=_lab_hints)
    traffic: TrafficSettings = field(default_factory=TrafficSettings)
    #: Asterisk's ``writetimeout``: a client that leaves this much unread is dropped.
    max_write_buffer: int = 4 << 20
    #: Seconds a prompt (Background, STREAM FILE, Playback) plays.
    prompt_seconds: float = 1.5
    #: How long an agent's phone (``Local/<agent>@agents``) rings before the agent answers,
    #: unless the call says otherwise (``AGENT_RING_SECS``): pages need a ring they can see.
    agent_ring_seconds: float = 1.0
    #: Prompts of another length (STREAM FILE reports it as ``endpos``, 8 kHz samples).
    prompt_lengths: dict[str, float] = field(default_factory=lambda: {"lab-beep": 0.3})
    #: ``features.conf`` ``atxfer``: keyed into the transferer by the ``Atxfer`` action.
    atxfer_code: str = "*2"
    #: Customers the ``[outbound]`` callback context dials, by number as dialled: what each
    #: dial of that number meets, in turn (``answer``, ``busy``, ``noanswer``), the last
    #: one repeating. A number not listed answers after a second's ring.
    customers: dict[str, tuple[str, ...]] = field(default_factory=dict)

    #: ``features.conf`` ``blindxfer``: keyed by a bridged party the Queue options let
    #: transfer (``T`` the caller, ``t`` the agent), then the number.
    blindxfer_code: str = "#1"
    #: ``features.conf`` ``transferdigittimeout``: seconds to key the transfer number.
    transfer_digit_timeout: float = 3.0

    def with_lab_additions(self) -> Settings:
        """These settings with the lab config of recordings 13 and 14 (the end of
        ``conf/extensions.conf`` and ``conf/queues.conf``): DID 5007 masks the caller ID
        (instead of the product's callback offer), DID 5008 goes to queue ``desk``."""
        dids = {**self.dids, "5007": Route("cid-mask", "sales"), "5008": Route("queue", "desk")}
        queues = (*(q for q in self.queues if q.name != "desk"), lab_desk_queue())
        return replace(self, dids=dids, queues=queues)

    def __repr__(self) -> str:  # keep the secret out of logs
        return f"Settings(host={self.host!r}, port={self.port}, username={self.username!r}, ...)"
