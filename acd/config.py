"""Queues and agents of the ACD, from YAML (``config/queues.yaml``).

:func:`load_acd_config` validates the file at start-up and raises
:class:`~acd.errors.AcdConfigError` naming the file, the key and the reason: unknown
strategy, negative timeouts, an overflow to or a membership in an unknown queue, overflow
loops between queues (``a -> b -> a``), a lane or DID feeding two queues.

:class:`AcdServiceSettings` is what the ACD service (``acd.service``) is built from: the
queues file, where its state lives, this PBX's name, the history spool. The process fills
it from its own settings; nothing here reads the process's configuration.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from acd.errors import AcdConfigError
from crm_bridge.tiers import TIERS

# The calendar is shared with the tickets' service levels; imported here so queue hours and
# ``acd.config.BusinessHours`` keep working where they are.
from cti.business_hours import BusinessHours
from cti.yamlfile import YamlFileError, explain_invalid, load_yaml

Strategy = Literal["longest_idle", "fewest_calls", "round_robin", "ring_all", "skills_weighted"]
#: Penalties are bounded so that ``penalty * PENALTY_STEP`` stays exact in a float score.
MAX_PENALTY = 1000
#: What an agent may tag a call with after it, unless the queues file lists its own.
DEFAULT_DISPOSITIONS = ("resolved", "follow_up", "escalated", "wrong_number", "other")
_DISPOSITION = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _proficiencies(value: dict[str, int]) -> dict[str, int]:
    for skill, level in value.items():
        if not 0 <= level <= 100:
            raise ValueError(f"skill {skill!r}: proficiency must be 0-100, got {level}")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _texts(value: Any) -> Any:
    # YAML reads unquoted 5003 or 6001 as numbers; they are names here.
    if isinstance(value, list | tuple):
        return [str(v) if isinstance(v, int) else v for v in value]
    if isinstance(value, dict):
        return {str(k) if isinstance(k, int) else k: v for k, v in value.items()}
    return value


class ServiceLevel(_Section):
    """The target: ``percent`` of calls answered within ``seconds`` (80% in 20 s)."""

    percent: float = Field(80.0, gt=0, le=100)
    seconds: float = Field(20.0, gt=0)


class OverflowFallback(_Section):
    """Where a ``callback`` overflow sends a caller it cannot call back (no number: withheld
    or unknown): another ACD queue (``target`` its name) or a mailbox."""

    kind: Literal["queue", "voicemail"]
    target: str


class OverflowTarget(_Section):
    """Where callers go when the queue is full, waited too long or is closed.

    ``queue``: another ACD queue (``target`` its name); ``voicemail``: a mailbox
    (``target`` e.g. ``5003@default``); ``callback``: the caller's number becomes a callback
    request in ``target`` (default: the same queue) that keeps the caller's place. A caller
    without a number is never promised a callback: it goes to ``fallback`` (callback only),
    or, without one, keeps waiting in its place.
    """

    kind: Literal["queue", "voicemail", "callback"]
    target: str | None = None
    fallback: OverflowFallback | None = None

    @model_validator(mode="after")
    def _target_given(self) -> OverflowTarget:
        if self.target is None and self.kind != "callback":
            raise ValueError(f"an overflow of kind {self.kind!r} needs a 'target'")
        if self.fallback is not None and self.kind != "callback":
            raise ValueError(
                "'fallback' is for callers a callback overflow cannot call back; an overflow "
                f"of kind {self.kind!r} takes every caller: remove it"
            )
        return self


class CallbackPolicy(_Section):
    """How a callback request whose customer is not reached (busy, no answer, a failed
    dial) is retried: ``attempts`` dials in all, ``spacing`` seconds apart; meanwhile the
    request keeps its place. After the last one the request is given up."""

    attempts: int = Field(3, ge=1, le=20)
    spacing: float = Field(120.0, ge=0, description="seconds between two dials")


class WallboardAlerts(_Section):
    """When the wallboard colours a queue's longest wait: amber from ``amber`` seconds, red
    from ``red``; unset, amber is the queue's service-level threshold and red twice it."""

    amber: float | None = Field(None, gt=0)
    red: float | None = Field(None, gt=0)


class QueueConfig(_Section):
    """One ACD queue; ``name`` is its key under ``queues:``."""

    name: str
    #: Holding lanes (the ``Queue`` header of the ``CtiParked`` user event) feeding the queue.
    lanes: tuple[str, ...] = ()
    #: DIDs feeding the queue, for parked callers whose lane is not mapped.
    dids: tuple[str, ...] = ()
    strategy: Strategy = "longest_idle"
    #: Required skills: skill -> minimum proficiency (0-100) an agent needs to be offered calls.
    skills: dict[str, int] = {}
    service_level: ServiceLevel = ServiceLevel()
    max_wait: float | None = Field(None, gt=0, description="seconds before overflow")
    max_length: int | None = Field(None, ge=1, description="waiting callers before overflow")
    #: Overflow at once a caller whose estimated wait on joining exceeds this (seconds),
    #: instead of letting them wait max_wait for nothing.
    max_estimated_wait: float | None = Field(None, gt=0)
    overflow: OverflowTarget | None = None
    wrap_up: float = Field(0.0, ge=0, description="seconds after a call before the next")
    ring_timeout: float = Field(15.0, gt=0, description="seconds an agent's phone rings")
    #: Consecutive missed offers after which an agent is paused (reason ``no-answer``); 0: never.
    auto_pause_after: int = Field(3, ge=0)
    #: Seconds an agent who let a caller ring out is not offered that caller again, so the
    #: caller goes to another agent first (app_queue's ``retry``); others may be offered.
    retry: float = Field(5.0, ge=0, description="seconds before a missed caller returns")
    hours: BusinessHours | None = None
    #: Retries of this queue's callback requests whose customer was not reached.
    callback: CallbackPolicy = CallbackPolicy()
    #: Handle time (seconds) for wait estimates and staffing until one is observed.
    fallback_aht: float | None = Field(None, gt=0)
    #: The wallboard's alert thresholds on the longest wait.
    wallboard: WallboardAlerts = WallboardAlerts()

    @field_validator("lanes", "dids", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        return _texts(value)

    @field_validator("skills")
    @classmethod
    def _proficiency(cls, value: dict[str, int]) -> dict[str, int]:
        return _proficiencies(value)

    @model_validator(mode="after")
    def _overflow_needed(self) -> QueueConfig:
        limits = [
            k
            for k in ("max_wait", "max_length", "max_estimated_wait", "hours")
            if getattr(self, k) is not None
        ]
        if limits and self.overflow is None:
            raise ValueError(f"{', '.join(limits)} set: add an 'overflow' target for those callers")
        return self

    @model_validator(mode="after")
    def _alerts_in_order(self) -> QueueConfig:
        amber, red = self.wallboard_alerts()
        if red < amber:
            raise ValueError(
                f"wallboard.red ({red:g} s) comes before wallboard.amber ({amber:g} s): "
                "red must be at least amber"
            )
        return self

    def wallboard_alerts(self) -> tuple[float, float]:
        """(amber, red) seconds of longest wait, defaults applied."""
        threshold = self.service_level.seconds
        amber = self.wallboard.amber if self.wallboard.amber is not None else threshold
        red = self.wallboard.red if self.wallboard.red is not None else 2 * threshold
        return amber, red

    def overflow_target(self) -> str:
        """The overflow target's name (a callback overflow defaults to this queue)."""
        assert self.overflow is not None
        return self.overflow.target or self.name


class AgentConfig(_Section):
    """An agent: skills (proficiency 0-100) and queue memberships (queue -> penalty)."""

    name: str
    #: The dial string that rings the agent's phone (``PJSIP/6001``); default: the
    #: configuration's ``agent_interface`` template with the agent's id.
    interface: str | None = None
    skills: dict[str, int] = {}
    queues: dict[str, int] = {}

    @field_validator("skills")
    @classmethod
    def _proficiency(cls, value: dict[str, int]) -> dict[str, int]:
        return _proficiencies(value)

    @field_validator("queues")
    @classmethod
    def _penalties(cls, value: dict[str, int]) -> dict[str, int]:
        for queue, penalty in value.items():
            if not 0 <= penalty <= MAX_PENALTY:
                raise ValueError(f"queue {queue!r}: penalty must be 0-{MAX_PENALTY}")
        return value


class Priority(_Section):
    """Caller priority: ``weights[tier] + aging_rate * seconds waited``, higher first.

    With ``aging_rate`` 1, a weight is a head start in seconds: a VIP (120) goes ahead of an
    ordinary caller (0) who has waited less than two minutes longer, never of one who has
    waited more, so no caller starves.
    """

    weights: dict[str, float] = {"vip": 120.0, "key": 60.0, "ordinary": 0.0}
    aging_rate: float = Field(1.0, gt=0)

    @field_validator("weights")
    @classmethod
    def _all_tiers(cls, value: dict[str, float]) -> dict[str, float]:
        missing = [t for t in TIERS if t not in value]
        if missing:
            raise ValueError(f"missing weights for tiers {missing}")
        return value

    def weight(self, tier: str) -> float:
        """A tier's weight; a tier not configured counts as ``ordinary``."""
        return self.weights.get(tier, self.weights["ordinary"])


class AcdConfig(_Section):
    """The whole ACD configuration."""

    priority: Priority = Priority()
    #: How to ring an agent without an ``interface`` of its own; ``{agent}`` is its id.
    agent_interface: str = Field("PJSIP/{agent}", pattern=r"\{agent\}")
    queues: dict[str, QueueConfig]
    agents: dict[str, AgentConfig] = {}
    #: Known callers' value tiers by E.164 number, until the screen pop computes them.
    tiers: dict[str, Literal["vip", "key", "ordinary"]] = {}
    #: What agents tag their calls with once done (``CallDisposed``), in display order.
    dispositions: tuple[str, ...] = DEFAULT_DISPOSITIONS
    #: The IANA time zone of the ACD's calendar: "today", report days and intervals.
    timezone: str = "UTC"

    @field_validator("dispositions")
    @classmethod
    def _disposition_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not _DISPOSITION.match(v)]
        if bad:
            raise ValueError(
                f"disposition names are 1-32 of a-z, 0-9 and _, starting with a letter: {bad}"
            )
        if not value:
            raise ValueError("list at least one disposition")
        if len(set(value)) != len(value):
            raise ValueError("a disposition is listed twice")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not an IANA time zone, e.g. Europe/Paris: {value!r}") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        """:attr:`timezone` as a tzinfo."""
        return ZoneInfo(self.timezone)

    @field_validator("queues", mode="before")
    @classmethod
    def _named(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {k: {"name": k, **v} if isinstance(v, dict) else v for k, v in value.items()}

    @field_validator("agents", mode="before")
    @classmethod
    def _agent_ids(cls, value: Any) -> Any:
        return _texts(value)

    def interface_of(self, agent: str) -> str:
        """The dial string of ``agent``."""
        own = self.agents[agent].interface
        return own or self.agent_interface.format(agent=agent)

    def queue_of_lane(self, lane: str) -> str | None:
        """The queue a holding lane feeds, if any."""
        return next((q.name for q in self.queues.values() if lane in q.lanes), None)

    def queue_of_did(self, did: str) -> str | None:
        """The queue a dialled number feeds, if any."""
        return next((q.name for q in self.queues.values() if did in q.dids), None)


class AcdHistorySettings(_Section):
    """The ACD history's local spool and database retries (``cti.history.EventRecorder``):
    every ACD event is spooled on disk first and written to the database once."""

    #: The spools' directory (a subdirectory per table and PBX); None keeps it in memory.
    spool_dir: Path | None = None
    spool_max_bytes: int = Field(256 * 2**20, ge=2**20)
    #: Seconds between fdatasyncs of the spool (None: never; tests only).
    sync_interval: float | None = Field(0.05, gt=0)
    retry_min: float = Field(0.5, gt=0)
    retry_max: float = Field(5.0, gt=0)
    #: Seconds a stopping service keeps writing the spool to the database.
    close_grace: float = Field(5.0, ge=0)


class AcdServiceSettings(_Section):
    """What :class:`acd.service.AcdService` is built from (the process fills it in from its
    own configuration, e.g. ``callcenter.yaml``'s ``acd``, ``redis``, ``history``)."""

    #: The queues and agents file (``config/queues.yaml``).
    queues: Path
    #: Where waiting callers and free agents live: this process, or Redis shared with the
    #: backends of other PBXs.
    state: Literal["memory", "redis"] = "memory"
    #: The Redis server of ``state: redis`` (``redis://``, ``rediss://`` or ``unix://``).
    redis_url: SecretStr | None = None
    #: Key prefix in Redis: backends sharing one agent pool share it.
    redis_namespace: str = Field("acd", min_length=1)
    #: This PBX's name in the shared state and in history (one backend per PBX).
    pbx: str = Field("default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    #: Log every configured agent in once the first PBX snapshot is in.
    login_agents: bool = False
    #: Seconds between polls of a shared store (agents other backends freed, recovery).
    shared_poll_interval: float = Field(1.0, gt=0)
    history: AcdHistorySettings = AcdHistorySettings()

    @model_validator(mode="after")
    def _redis_needs_url(self) -> AcdServiceSettings:
        if self.state == "redis" and self.redis_url is None:
            raise ValueError("state 'redis' needs redis_url, e.g. redis://127.0.0.1:6379/0")
        return self


def load_acd_config(path: Path) -> AcdConfig:
    """Read and validate the ACD file; :class:`AcdConfigError` says file, key and reason."""
    return parse_acd_config(read_yaml(path), str(path))


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; :class:`AcdConfigError` names the file, line and problem."""
    try:
        # The one YAML loader (cti.yamlfile): also refuses non-UTF-8 and duplicate keys.
        data = load_yaml(path, "ACD configuration file")
    except YamlFileError as exc:
        raise AcdConfigError(str(exc), setting="queues" if exc.unreadable else None) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AcdConfigError(f"{path}: the top level must be a mapping (queues:, agents:, ...)")
    return data


def parse_acd_config(data: Mapping[str, Any], origin: str) -> AcdConfig:
    """Validate already-parsed YAML; ``origin`` names the source in error messages."""
    try:
        config = AcdConfig.model_validate(data)
    except ValidationError as exc:
        raise AcdConfigError(explain_invalid(exc, origin, "ACD configuration")) from None
    _check_references(config, origin)
    return config


def _check_references(config: AcdConfig, origin: str) -> None:
    errors = []
    fed_by: dict[tuple[str, str], str] = {}
    for name, queue in config.queues.items():
        if queue.name != name:
            errors.append(f"key 'queues.{name}.name': {queue.name!r} differs from the key")
        for kind, values in (("lanes", queue.lanes), ("dids", queue.dids)):
            for value in values:
                other = fed_by.setdefault((kind, value), name)
                if other != name:
                    errors.append(
                        f"key 'queues.{name}.{kind}': {value!r} already feeds queue {other!r}"
                    )
        target = queue.overflow.target if queue.overflow else None
        if (
            target is not None
            and queue.overflow is not None
            and queue.overflow.kind != "voicemail"
            and target not in config.queues
        ):
            errors.append(f"key 'queues.{name}.overflow.target': unknown queue {target!r}")
        fallback = queue.overflow.fallback if queue.overflow else None
        unknown = fallback is not None and fallback.target not in config.queues
        if fallback is not None and fallback.kind == "queue" and unknown:
            errors.append(
                f"key 'queues.{name}.overflow.fallback.target': unknown queue {fallback.target!r}"
            )
    for agent_id, agent in config.agents.items():
        errors += [
            f"key 'agents.{agent_id}.queues.{q}': unknown queue {q!r}"
            for q in agent.queues
            if q not in config.queues
        ]
    if not errors:
        errors += _overflow_loops(config)
    if errors:
        raise AcdConfigError(
            "invalid ACD configuration:\n  " + "\n  ".join(f"{origin}: {e}" for e in errors)
        )


def _overflow_loops(config: AcdConfig) -> list[str]:
    """Queue-to-queue overflow chains must end (at voicemail, a callback or a queue without
    overflow); a loop would bounce callers forever."""
    errors = []
    reported: set[frozenset[str]] = set()
    for start in config.queues:
        chain = [start]
        while (nxt := _overflow_queue(config, chain[-1])) is not None:
            if nxt in chain:
                loop = chain[chain.index(nxt) :]
                if frozenset(loop) not in reported:
                    reported.add(frozenset(loop))
                    path = " -> ".join([*loop, nxt])
                    key = "fallback.target" if _overflow_fallback(config, loop[-1]) else "target"
                    errors.append(
                        f"key 'queues.{loop[-1]}.overflow.{key}': overflow loop {path}; "
                        "end the chain at voicemail, a callback or a queue without overflow"
                    )
                break
            chain.append(nxt)
    return errors


def _overflow_queue(config: AcdConfig, name: str) -> str | None:
    overflow = config.queues[name].overflow
    if overflow is not None and overflow.kind == "queue":
        return overflow.target
    # Callers without a number follow a callback overflow's fallback queue.
    return _overflow_fallback(config, name)


def _overflow_fallback(config: AcdConfig, name: str) -> str | None:
    overflow = config.queues[name].overflow
    fallback = overflow.fallback if overflow is not None else None
    return fallback.target if fallback is not None and fallback.kind == "queue" else None
