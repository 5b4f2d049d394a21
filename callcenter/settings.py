"""Typed configuration: one YAML file, overridden by ``CALLCENTER_*`` environment variables.

Start-up fails with :class:`ConfigError`, whose message names the file (or the environment
variable), the key and what to change. Secrets are :class:`pydantic.SecretStr` so they print
as ``**********`` in logs and reprs.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url

from crm_bridge.config import ExternalCrmSettings
from cti.yamlfile import YamlFileError, load_yaml
from ivr.config import IvrSettings

ENV_PREFIX = "CALLCENTER_"
#: CALLCENTER_* variables that are not settings (the rest must name a setting).
_NOT_SETTINGS = ("CALLCENTER_CONFIG", "CALLCENTER_CAPTURES", "CALLCENTER_TEST_")
#: The demo's AMI secret: fine on loopback, refused for a real PBX elsewhere.
DEMO_SECRET = "callcenter-demo"
#: Looked for in the working directory when neither ``--config`` nor $CALLCENTER_CONFIG is given.
DEFAULT_FILE = Path("config/callcenter.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReconnectSettings(_Section):
    """Backoff between AMI connection attempts: doubles from ``min_delay`` up to ``max_delay``."""

    min_delay: float = Field(0.5, gt=0, le=60)
    max_delay: float = Field(30.0, gt=0, le=3600)
    jitter: float = Field(0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectSettings:
        if self.min_delay > self.max_delay:
            raise ValueError(
                f"min_delay ({self.min_delay}) is above max_delay ({self.max_delay}); "
                "make min_delay the smaller"
            )
        return self


class AmiSettings(_Section):
    """Where the Asterisk Manager Interface is and how to log in (manager.conf)."""

    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str = Field("callcenter", min_length=1)
    secret: SecretStr = SecretStr(DEMO_SECRET)
    auth: Literal["md5", "plain"] = "md5"
    #: The Login ``Events:`` mask: the classes whose events the call model reads.
    events: str = "call,agent,user,dtmf,system,dialplan,agi"
    #: Per-session event filters (``Action: Filter``), e.g. ``"!Event: RTCP*"`` to drop RTCP
    #: reports; needs ``write = system`` for the manager user.
    filters: tuple[str, ...] = ()
    ping_interval: float = Field(20.0, gt=0, le=600)
    action_timeout: float = Field(10.0, gt=0, le=600)
    reconnect: ReconnectSettings = ReconnectSettings()


class DatabaseSettings(_Section):
    """SQL store of call events (SQLite file by default, PostgreSQL in production)."""

    url: SecretStr = SecretStr("sqlite:///var/callcenter.sqlite3")
    migrate_on_start: bool = True

    @field_validator("url")
    @classmethod
    def _parseable(cls, value: SecretStr) -> SecretStr:
        try:
            url = make_url(value.get_secret_value())
        except Exception as exc:
            raise ValueError(
                "not a database URL; use sqlite:///path.sqlite3 or "
                "postgresql+psycopg://user:password@host/dbname"
            ) from exc
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(
                f"backend {url.get_backend_name()!r} unsupported: use sqlite or postgresql"
            )
        return value

    def display_url(self) -> str:
        """The URL with its password hidden, for logs."""
        return make_url(self.url.get_secret_value()).render_as_string(hide_password=True)


#: URL schemes redis-py connects with.
REDIS_SCHEMES = ("redis", "rediss", "unix")


class HistorySettings(_Section):
    """The call and ACD history writers (``cti.history``): every event goes to a local spool
    on disk first, so a database outage never stops AMI reading; the spool drains to the
    database, in order and once each, when it is back."""

    #: Where the spools live (one subdirectory per history and PBX), relative to the working
    #: directory. Null: ``spool`` beside a SQLite database file, else ``var/spool``.
    spool_dir: Path | None = None
    #: Bound of each spool on disk; reaching it raises an ERROR alarm and pauses AMI reading.
    spool_max_bytes: int = Field(256 * 2**20, ge=2**20, le=2**40)
    #: Seconds between fdatasyncs of the spool: what a power failure may lose at most.
    sync_interval: float = Field(0.05, gt=0, le=10)
    #: Backoff between write attempts while the database is down; ``retry_max`` is also how
    #: soon writes resume after it is back.
    retry_min: float = Field(0.5, gt=0, le=60)
    retry_max: float = Field(5.0, gt=0, le=300)
    #: Seconds a stopping backend keeps writing the spool to the database; the rest stays
    #: in the spool for the next start.
    close_grace: float = Field(5.0, ge=0, le=600)

    @model_validator(mode="after")
    def _ordered(self) -> HistorySettings:
        if self.retry_min > self.retry_max:
            raise ValueError(
                f"retry_min ({self.retry_min}) is above retry_max ({self.retry_max}); "
                "make retry_min the smaller"
            )
        return self


class RedisSettings(_Section):
    """Shared state between several backend processes; ``url: null`` keeps it in-process."""

    url: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        scheme, found, _ = value.get_secret_value().partition("://")
        if not found or scheme.lower() not in REDIS_SCHEMES:
            # Only the scheme is shown: the rest may hold a password.
            what = f"scheme {scheme.lower()!r}" if found else "no scheme"
            raise ValueError(
                f"not a Redis URL ({what}); use redis://host:6379/0, "
                "rediss://host:6380/0 (TLS) or unix:///path/to/redis.sock"
            )
        return value


class HttpSettings(_Section):
    """The agent and supervisor API."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)  # 0: any free port (the log says which)
    token_hours: float = Field(12.0, gt=0, le=24 * 90)  # a log-in token is valid this long


class CrmSettings(_Section):
    """The screen-pop bridge: customers, profiles, pops."""

    # Customer-profile rules YAML (docs/customer-profile.md), relative to this file; None:
    # the built-in rules.
    rules: Path | None = None
    # Where numbers without a country code are from (ISO 3166 code, e.g. DE); None: the
    # region of numbering.country_code.
    default_region: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    external: ExternalCrmSettings = ExternalCrmSettings()


class NumberingSettings(_Section):
    """How caller numbers become E.164 (see ``cti.calls.numbers``)."""

    country_code: str = Field("1", pattern=r"^[1-9][0-9]{0,2}$")
    national_length: int = Field(10, ge=4, le=15)
    international_prefixes: tuple[str, ...] = ("011", "00")
    trunk_prefix: str | None = None


class TrafficSettings(_Section):
    """The simulator's generated callers."""

    enabled: bool = True
    calls_per_minute: float = Field(6.0, gt=0, le=6000)
    mean_patience: float = Field(30.0, gt=0, le=3600, description="seconds a caller waits")
    mean_handle_time: float = Field(20.0, gt=0, le=7200, description="seconds of talk")
    #: DIDs the callers dial, drawn uniformly (repeat one to weight it). The simulator's
    #: dialplan: 5000 queue sales, 5001 IVR menu, 5002 AsyncAGI, 5003/5006 holding for the
    #: product's ACD, 5005 queue support (its agent never answers).
    dids: tuple[str, ...] = Field(("5000", "5000", "5001"), min_length=1)
    seed: int | None = None
    #: ``name,number`` CSV of callers; relative to the configuration file. None: a built-in list.
    customers: Path | None = None


class CallSettings(_Section):
    """How the call model reads this PBX's dialplan (``cti.calls.model``)."""

    #: Contexts where inbound calls land (a new channel there starts a call); glob patterns
    #: such as ``from-*`` match one context per trunk.
    inbound_contexts: tuple[str, ...] = Field(("inbound",), min_length=1)
    #: The UserEvent by which the holding dialplan announces a parked caller.
    parked_event: str = Field("CtiParked", min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    #: The UserEvent by which the holding dialplan asks for a callback (a key press).
    callback_event: str = Field("CtiCallback", min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    #: Keep the caller ID a call had before the dialplan changed it (e.g. masked it for
    #: privacy) in its ``arrived`` record; off: only the PBX's current caller ID is kept.
    keep_original_caller_id: bool = False
    #: Where the holding dialplan parks callers: context -> extension -> lane. A snapshot
    #: taken after a restart carries no UserEvent: this is how it tells parked callers.
    holding: dict[str, dict[str, str]] = {"holding": {"s": "external", "moh": "external-moh"}}
    #: Channel variables copied onto each call (``__`` inheritance prefixes ignored).
    variables: tuple[str, ...] = ("CTI_ACCOUNT", "IVR_CHOICE", "CTI_ROUTE")


class SimulatorSettings(_Section):
    """The built-in PBX simulator (``callcenter pbx-sim`` and ``callcenter demo``)."""

    host: str = "127.0.0.1"
    port: int = Field(5038, ge=0, le=65535)
    #: Seconds an agent's phone rings before the simulated agent answers (long enough to
    #: see the pop ringing on the agent desktop).
    agent_ring_seconds: float = Field(3.0, gt=0, le=60)
    traffic: TrafficSettings = TrafficSettings()


class AcdSettings(_Section):
    """The product's own ACD: queues and agents (``queues``, relative to this file; none:
    no ACD) and where its waiting callers and free agents live."""

    queues: Path | None = None
    state: Literal["memory", "redis"] = "memory"
    #: Log every configured agent in at start-up (the simulator's agents need no desk).
    login_agents: bool = False

    @model_validator(mode="after")
    def _state_needs_queues(self) -> AcdSettings:
        if self.state == "redis" and self.queues is None:
            raise ValueError("state 'redis' needs 'queues' (the ACD configuration file)")
        return self


class Settings(_Section):
    """The whole configuration."""

    #: This PBX's name in history and shared state (one backend process per PBX).
    pbx: str = Field("default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    ami: AmiSettings = AmiSettings()
    acd: AcdSettings = AcdSettings()
    database: DatabaseSettings = DatabaseSettings()
    history: HistorySettings = HistorySettings()
    redis: RedisSettings = RedisSettings()
    http: HttpSettings = HttpSettings()
    crm: CrmSettings = CrmSettings()
    ivr: IvrSettings = IvrSettings()
    numbering: NumberingSettings = NumberingSettings()
    calls: CallSettings = CallSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    #: The tickets file (categories, groups, SLA policies: config/tickets.yaml), relative to
    #: this file. Left unset: ``tickets.yaml`` beside this file when there is one, else the
    #: built-in defaults; null: the built-in defaults.
    tickets: Path | None = Path("tickets.yaml")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    _tickets_named: bool = PrivateAttr(False)

    @property
    def tickets_named(self) -> bool:
        """Whether ``tickets`` was set (in the file or the environment) rather than left to
        its default: a named file's groups must match the ACD, or the start stops; the
        default file's mismatches are warnings (a lab's queues file beside the shipped
        tickets.yaml still starts)."""
        return self._tickets_named

    @model_validator(mode="after")
    def _redis_for_shared_state(self) -> Settings:
        if self.acd.state == "redis" and self.redis.url is None:
            raise ValueError(
                "acd.state 'redis' needs redis.url (CALLCENTER_REDIS__URL), "
                "e.g. redis://127.0.0.1:6379/0"
            )
        return self


def history_spool_dir(settings: Settings) -> Path | None:
    """The history spools' directory: ``history.spool_dir``, or when unset ``spool`` beside
    a SQLite database file (so each database has its own), ``var/spool`` for a database
    server, and None (spool in memory) for an in-memory SQLite, which dies with the process
    anyway."""
    if settings.history.spool_dir is not None:
        return settings.history.spool_dir
    url = make_url(settings.database.url.get_secret_value())
    if url.get_backend_name() != "sqlite":
        return Path("var/spool")
    if url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).parent / "spool"


def require_production_secrets(settings: Settings) -> None:
    """Refuse the demo AMI secret for a PBX that is not on this machine: a production
    start-up without ``CALLCENTER_AMI__SECRET`` must fail loudly, not loop on refused logins."""
    host = settings.ami.host
    if not is_loopback(host) and settings.ami.secret.get_secret_value() == DEMO_SECRET:
        raise ConfigError(
            f"key 'ami.secret' is the demo secret for AMI host {host}; set "
            "CALLCENTER_AMI__SECRET to the secret of the manager.conf user"
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine by its text alone: ``localhost`` or a loopback
    address (``127.0.0.0/8``, ``::1``, ``::ffff:127.x.x.x``). Nothing is resolved: any other
    name (``127.example.com`` too) counts as another machine."""
    name = host.strip().rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


class ConfigError(Exception):
    """Configuration that cannot be used; the message says where, what and how to fix it."""


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (or the default file if present), apply the environment, validate.

    Environment variables are ``CALLCENTER_<SECTION>__<KEY>`` (double underscore between
    levels), e.g. ``CALLCENTER_AMI__SECRET`` or ``CALLCENTER_DATABASE__URL``.
    """
    environ = os.environ if environ is None else environ
    if path is None and environ.get(ENV_PREFIX + "CONFIG"):
        path = Path(environ[ENV_PREFIX + "CONFIG"])
    elif path is None and DEFAULT_FILE.is_file():
        path = DEFAULT_FILE
    data: dict[str, Any] = {}
    origin = "built-in defaults"
    if path is not None:
        origin = str(path)
        data = read_yaml(path)
    sources: dict[tuple[str, ...], str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        if name.startswith(_NOT_SETTINGS):
            continue
        keys = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if keys[0] not in Settings.model_fields:
            sections = ", ".join(Settings.model_fields)
            raise ConfigError(
                f"environment variable {name}: {keys[0]!r} is not a section or setting "
                f"(sections: {sections}); check its spelling"
            )
        if not all(keys):
            raise ConfigError(
                f"environment variable {name}: empty key part; use single names joined by '__'"
            )
        _set_path(data, keys, value, name)
        sources[keys] = name
    _refuse_control_characters(data, (), origin, sources)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, origin, sources)) from None
    return _resolve_paths(settings, path.parent if path is not None else Path.cwd())


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    """Relative file names in the configuration are relative to the file itself."""

    def resolved(path: Path | None) -> Path | None:
        return base / path if path is not None and not path.is_absolute() else path

    traffic = settings.simulator.traffic.model_copy(
        update={"customers": resolved(settings.simulator.traffic.customers)}
    )
    simulator = settings.simulator.model_copy(update={"traffic": traffic})
    acd = settings.acd.model_copy(update={"queues": resolved(settings.acd.queues)})
    crm = settings.crm.model_copy(update={"rules": resolved(settings.crm.rules)})
    flows = tuple(base / f if not f.is_absolute() else f for f in settings.ivr.flows)
    ivr = settings.ivr.model_copy(update={"flows": flows})
    named = "tickets" in settings.model_fields_set
    tickets = resolved(settings.tickets)
    if not named and tickets is not None and not tickets.is_file():
        tickets = None  # no tickets.yaml beside this file: the built-in defaults
    resolved_settings = settings.model_copy(
        update={"simulator": simulator, "acd": acd, "crm": crm, "ivr": ivr, "tickets": tickets}
    )
    resolved_settings._tickets_named = named
    return resolved_settings


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; :class:`ConfigError` names the file, line and problem
    (also a file that is not UTF-8, or a key given twice: see :mod:`cti.yamlfile`)."""
    try:
        data = load_yaml(path, "configuration file")
    except YamlFileError as exc:
        raise ConfigError(str(exc)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections (ami:, database:, ...)"
        )
    return data


def _set_path(data: dict[str, Any], keys: tuple[str, ...], value: str, name: str) -> None:
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"environment variable {name}: {key!r} is not a section")
        node = child
    text = value.strip()
    if text.lower() in ("", "null", "none"):
        # "null"/"" from the environment mean "unset" for optional values such as redis.url.
        node[keys[-1]] = None
    elif text.startswith("["):
        # Lists (ami.filters, numbering.international_prefixes) are written as JSON.
        try:
            node[keys[-1]] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f'environment variable {name}: not a JSON list ({exc.msg}); e.g. ["00", "011"]'
            ) from None
    else:
        node[keys[-1]] = value


def _refuse_control_characters(
    node: Any, keys: tuple[str, ...], origin: str, sources: Mapping[tuple[str, ...], str]
) -> None:
    """No setting may hold a CR, LF or other control character (tab aside): the AMI
    credentials and filters would inject lines into the protocol, and any of them into the
    logs. Raises :class:`ConfigError` naming the key and where it was set."""
    if isinstance(node, dict):
        for key, value in node.items():
            _refuse_control_characters(key, keys, origin, sources)
            _refuse_control_characters(value, (*keys, str(key)), origin, sources)
    elif isinstance(node, list | tuple):
        for value in node:
            _refuse_control_characters(value, keys, origin, sources)
    elif isinstance(node, str) and not node.isprintable():
        bad = next((c for c in node if c != "\t" and (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0)),
                   None)
        if bad is None:
            return
        what = "a line break (CR or LF)" if bad in "\r\n" else f"a control character {bad!r}"
        where = " and ".join(
            f"environment variable {var}" for k, var in sources.items() if k == keys
        ) or origin
        dotted = ".".join(keys) or "(top level)"
        raise ConfigError(
            f"invalid configuration:\n  {where}: key {dotted!r}: contains {what}; "
            "a setting is one line of text, remove it"
        )


def _explain(exc: ValidationError, origin: str, sources: dict[tuple[str, ...], str]) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        dotted = ".".join(loc)
        # An error on a whole section (a cross-key check) names the variables inside it.
        names = [var for keys, var in sources.items() if keys[: len(loc)] == loc]
        where = " and ".join(f"environment variable {n}" for n in names) or origin
        if err["type"] == "extra_forbidden":
            fix = "remove it or check its spelling against config/callcenter.yaml"
            lines.append(f"{where}: key {dotted!r} is not a setting; {fix}")
        else:
            lines.append(f"{where}: key {dotted!r}: {err['msg']} (got {_show(err)})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _show(err: Mapping[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    if any(word in loc for word in ("secret", "url", "password")):
        return "a hidden value"
    return repr(err.get("input"))
