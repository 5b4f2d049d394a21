"""What tickets are made of and the promises they carry, from YAML (``config/tickets.yaml``).

:class:`TicketSettings` holds the categories, priorities, groups (who works which tickets,
and the supervisor group breaches escalate to), the service-level policies per customer tier
and priority, and the business calendar those count in. Every key has a default, so an empty
or absent file is a working configuration (an always-open calendar, one policy for all).

:func:`load_ticket_settings` reads a file through the product's one YAML loader
(:func:`cti.yamlfile.load_yaml`); :func:`parse_ticket_settings` validates already-parsed
data (e.g. a ``tickets:`` section of another file). Both raise
:class:`~tickets.errors.TicketConfigError` naming the file, the key and the fix.

Durations are business time with a unit: ``30m``, ``1h``, ``1h30m``, ``90s``. A
"business day" is written in hours (``10h`` for an 08:00-18:00 day), since a day's length
is the calendar's. ``warn_before`` is a share of each deadline (``20%``) or a duration.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from cti.business_hours import BusinessHours
from cti.yamlfile import YamlFileError, explain_invalid, load_yaml
from tickets.errors import TicketConfigError
from tickets.sla import SlaPolicy

__all__ = [
    "TIER_KEYS",
    "Group",
    "PolicyConfig",
    "SlaConfig",
    "TicketSettings",
    "WarnBefore",
    "load_ticket_settings",
    "parse_ticket_settings",
]

#: The customer tiers a policy may be given for: crm_bridge's pyramid, and ``unknown`` for
#: tickets without a known customer.
TIER_KEYS = ("vip", "key", "ordinary", "small", "unknown")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([hms])")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0}


def _business_seconds(value: Any) -> Any:
    """``1h30m`` / ``45m`` / ``90s`` -> seconds; anything else left to pydantic to refuse."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        # A bare 8 could be hours or seconds: a deadline off by 3600 times is worse than a
        # start-up error.
        raise ValueError(f"{value!r} has no unit; write e.g. {value}h or {value}m")
    if not isinstance(value, str):
        return value
    text = value.strip().lower().replace(" ", "")
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        hint = " (write a business day in hours, e.g. 10h for 08:00-18:00)" if "d" in text else ""
        raise ValueError(f"{value!r} is not a duration; write e.g. 30m, 1h, 1h30m or 90s{hint}")
    return sum(float(n) * _UNIT[u] for n, u in parts)


BusinessSeconds = Annotated[float, BeforeValidator(_business_seconds), Field(gt=0)]


def _names(value: Any) -> Any:
    # YAML reads unquoted 6001 as a number; agent ids and queue names are text.
    if isinstance(value, list | tuple):
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


Names = Annotated[tuple[str, ...], BeforeValidator(_names)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WarnBefore(_Section):
    """How early a deadline warns: a share of its allowance, or business seconds ahead."""

    fraction: float = Field(0.0, ge=0, lt=1)
    seconds: float = Field(0.0, ge=0)

    @classmethod
    def parse(cls, value: Any) -> Any:
        """``20%`` -> a fraction, a duration -> seconds; a mapping is taken as it is."""
        if isinstance(value, str) and value.strip().endswith("%"):
            number = value.strip().removesuffix("%").strip()
            try:
                return {"fraction": float(number) / 100}
            except ValueError:
                raise ValueError(f"{value!r} is not a percentage; write e.g. 20%") from None
        if isinstance(value, dict | WarnBefore):
            return value
        return {"seconds": _business_seconds(value)}


WarnSetting = Annotated[WarnBefore, BeforeValidator(WarnBefore.parse)]


class PolicyConfig(_Section):
    """One promise: first response and resolution in business time; ``warn_before`` (when
    given) overrides the section's."""

    first_response: BusinessSeconds
    resolution: BusinessSeconds
    warn_before: WarnSetting | None = None

    @model_validator(mode="after")
    def _response_first(self) -> PolicyConfig:
        if self.first_response > self.resolution:
            raise ValueError(
                "first_response is longer than resolution: a ticket would be due solved "
                "before it is due answered; shorten first_response"
            )
        return self


class SlaConfig(_Section):
    """The service-level policies: ``policies[tier][priority]``, else ``default``."""

    warn_before: WarnSetting = WarnBefore(fraction=0.2)
    default: PolicyConfig = PolicyConfig.model_validate(
        {"first_response": "8h", "resolution": "50h"}
    )
    policies: dict[str, dict[str, PolicyConfig]] = {}

    @field_validator("policies")
    @classmethod
    def _tiers(
        cls, value: dict[str, dict[str, PolicyConfig]]
    ) -> dict[str, dict[str, PolicyConfig]]:
        for tier in value:
            if tier not in TIER_KEYS:
                raise ValueError(f"{tier!r} is no customer tier; tiers are {', '.join(TIER_KEYS)}")
        return value


class Group(_Section):
    """People who work tickets together: ACD agents (by id), API accounts (by user name, e.g.
    supervisors who take no calls) and the ACD queues whose tickets are theirs."""

    agents: Names = ()
    accounts: Names = ()
    queues: Names = ()


class TicketSettings(_Section):
    """The whole tickets configuration."""

    categories: tuple[str, ...] = ("complaint", "inquiry", "request", "suggestion")
    priorities: tuple[str, ...] = ("low", "normal", "high", "urgent")
    #: The priority a new ticket of a category gets unless the agent picks one.
    category_priority: dict[str, str] = {"complaint": "high"}
    default_priority: str = "normal"
    groups: dict[str, Group] = {"supervisors": Group(accounts=("supervisor",))}
    #: The group breached tickets are escalated to.
    escalate_to: str = "supervisors"
    #: The calendar deadlines count in; none: always open (wall-clock time).
    calendar: BusinessHours | None = None
    sla: SlaConfig = SlaConfig()

    @field_validator("categories", "priorities")
    @classmethod
    def _unique_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("give at least one")
        for name in value:
            if not _NAME.match(name):
                raise ValueError(
                    f"{name!r} is not a name: lower-case letters, digits, - and _, "
                    "starting with a letter, at most 32"
                )
        doubles = sorted({n for n in value if value.count(n) > 1})
        if doubles:
            raise ValueError(f"{', '.join(doubles)} given twice; keep one")
        return value

    @model_validator(mode="after")
    def _references(self) -> TicketSettings:
        problems = []
        if self.default_priority not in self.priorities:
            problems.append(_Unknown("default_priority", self.default_priority, self.priorities))
        for category, priority in self.category_priority.items():
            if category not in self.categories:
                problems.append(
                    _Unknown(f"category_priority.{category}", category, self.categories)
                )
            elif priority not in self.priorities:
                problems.append(
                    _Unknown(f"category_priority.{category}", priority, self.priorities)
                )
        if self.escalate_to not in self.groups:
            problems.append(_Unknown("escalate_to", self.escalate_to, tuple(self.groups), "group"))
        for tier, by_priority in self.sla.policies.items():
            for priority in by_priority:
                if priority not in self.priorities and priority != "default":
                    problems.append(
                        _Unknown(f"sla.policies.{tier}.{priority}", priority, self.priorities)
                    )
        if problems:
            raise _Problems(problems)
        return self

    def business_hours(self) -> BusinessHours:
        """The calendar the deadlines count in (always open when none is configured)."""
        return self.calendar or BusinessHours.always_open()

    def priority_of(self, category: str) -> str:
        """The priority a new ticket of ``category`` gets unless someone picks one."""
        return self.category_priority.get(category, self.default_priority)

    def policy_for(self, tier: str | None, priority: str) -> SlaPolicy:
        """The promise for a customer of ``tier`` (None: no known customer, ``unknown``) at
        ``priority``: ``policies[tier][priority]``, else ``policies[tier].default``, else the
        section's ``default``."""
        by_priority = self.sla.policies.get(tier or "unknown", {})
        chosen = by_priority.get(priority) or by_priority.get("default") or self.sla.default
        warn = chosen.warn_before or self.sla.warn_before
        return SlaPolicy(
            first_response=chosen.first_response,
            resolution=chosen.resolution,
            warn_fraction=warn.fraction,
            warn_seconds=warn.seconds,
        )

    def groups_of(self, agent: str) -> tuple[str, ...]:
        """The groups ACD agent ``agent`` works in (the tickets they see beside their
        queues')."""
        return tuple(name for name, group in self.groups.items() if agent in group.agents)

    def unknown_members(
        self, queues: Collection[str] | None, agents: Collection[str] | None, origin: str
    ) -> list[str]:
        """What the groups name that the ACD does not have (``queues``/``agents``: the ACD's;
        None: no ACD), and an ``escalate_to`` group with nobody in it: one line each,
        naming ``origin``, the key and the fix. Empty when all is well."""
        problems = []
        for name, group in self.groups.items():
            for key, names, known, what in (
                ("queues", group.queues, queues, "queue"),
                ("agents", group.agents, agents, "agent"),
            ):
                for member in names:
                    if known is None:
                        problems.append(
                            f"{origin}: key 'groups.{name}.{key}': {member!r} is no ACD "
                            f"{what}: no ACD is configured; configure one or remove it"
                        )
                    elif member not in known:
                        choices = ", ".join(sorted(known)) or "none"
                        problems.append(
                            f"{origin}: key 'groups.{name}.{key}': {member!r} is no ACD "
                            f"{what} (the ACD's: {choices}); fix the name or remove it"
                        )
        supervisors = self.groups[self.escalate_to]
        if not supervisors.agents and not supervisors.accounts:
            problems.append(
                f"{origin}: key 'escalate_to': group {self.escalate_to!r} has no agents or "
                "accounts, so a breached ticket would be escalated to nobody; add its "
                f"supervisors under 'groups.{self.escalate_to}.accounts'"
            )
        return problems


class _Unknown:
    """A reference to a name that is not configured (a key naming a missing priority)."""

    def __init__(self, key: str, value: str, known: tuple[str, ...], what: str = "") -> None:
        self.key = key
        self.text = (
            f"{value!r} is no configured {what or 'name'}; use one of {', '.join(known)}"
            + ("" if what != "group" else " or add it under 'groups'")
        )


class _Problems(ValueError):
    """Several broken references, each with its key (``_explain`` lists them one a line)."""

    def __init__(self, problems: list[_Unknown]) -> None:
        super().__init__("; ".join(p.text for p in problems))
        self.problems = problems


def load_ticket_settings(path: Path | None) -> TicketSettings:
    """The settings in the YAML file ``path``; the defaults when ``path`` is None or the file
    is empty. :class:`TicketConfigError` names the file, the key and the fix."""
    if path is None:
        return TicketSettings()
    try:
        data = load_yaml(path, "tickets configuration file")
    except YamlFileError as exc:
        raise TicketConfigError(str(exc), setting="tickets" if exc.unreadable else None) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TicketConfigError(
            f"{path}: the top level must be a mapping (categories:, priorities:, groups:, "
            "escalate_to:, calendar:, sla:)"
        )
    return parse_ticket_settings(data, str(path))


def parse_ticket_settings(data: Mapping[str, Any], origin: str) -> TicketSettings:
    """Validate already-parsed settings; ``origin`` names their source in error messages."""
    try:
        return TicketSettings.model_validate(data)
    except ValidationError as exc:
        raise TicketConfigError(explain_invalid(
            exc, origin, "tickets configuration", lambda err: _problem_lines(err, origin)
        )) from None  # fmt: skip


def _problem_lines(err: ErrorDetails, origin: str) -> list[str] | None:
    """The lines of a check that found several problems at once (their own keys)."""
    problem = err.get("ctx", {}).get("error")
    if isinstance(problem, _Problems):
        return [f"{origin}: key {p.key!r}: {p.text}" for p in problem.problems]
    return None
