"""The customer-profile rules: every threshold, window and share of the value tier, loyalty
class, satisfaction, lifecycle stage and lifetime value (``docs/customer-profile.md``).

:class:`ProfileRules` holds them with defaults for a retail contact center, so an empty or
absent file is a working configuration. :func:`load_profile_rules` reads a YAML file through
the product's one loader (:func:`cti.yamlfile.load_yaml`) and raises
:class:`~crm_bridge.errors.CrmConfigError` naming the file, the key and the fix.
:func:`parse_profile_rules` validates already-parsed data (e.g. a section of another file).

Every window is a whole number of days counted back from the moment of the computation:
"the last 365 days" is ``now - 365 days < at <= now``, so an order exactly 365 days old is
outside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from crm_bridge.errors import CrmConfigError
from cti.yamlfile import YamlFileError, load_yaml

__all__ = [
    "CrmServiceSettings",
    "ExternalCrmSettings",
    "LifecycleRules",
    "LifetimeValueRules",
    "LoyaltyRules",
    "ProfileRules",
    "PyramidRules",
    "SatisfactionRules",
    "load_profile_rules",
    "parse_profile_rules",
]

#: The longest window any rule may use (ten years of days).
MAX_DAYS = 3650


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _KeyProblem(ValueError):
    """A section's rule broken by one of its keys: the message names that key."""

    def __init__(self, key: str, value: object, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.value = value


class PyramidRules(_Section):
    """The value tier (customer pyramid): revenue over the last ``window_days``.

    ``method: rank`` (default): the top ``vip_percent`` of all customers are VIP and the next
    ``key_percent`` key, cut-offs recomputed by each bulk run; customers tied at a cut-off
    all stay in the lower tier, so a tier never holds more than its share.
    ``method: threshold``: VIP from ``vip_from``, key from ``key_from`` (amounts).
    Either way a customer below ``small_below`` (when set) who is not VIP or key is small.
    """

    method: Literal["rank", "threshold"] = "rank"
    window_days: int = Field(365, ge=1, le=MAX_DAYS)
    vip_percent: float = Field(1.0, gt=0, lt=100)
    key_percent: float = Field(4.0, ge=0, lt=100)
    vip_from: Decimal | None = Field(None, gt=0)
    key_from: Decimal | None = Field(None, gt=0)
    small_below: Decimal | None = None

    @model_validator(mode="after")
    def _method_fits(self) -> PyramidRules:
        if self.method == "rank":
            for key in ("vip_from", "key_from"):
                if getattr(self, key) is not None:
                    raise _KeyProblem(
                        key,
                        getattr(self, key),
                        "an amount for 'method: threshold'; with method 'rank' the tiers come "
                        "from vip_percent and key_percent: set 'method: threshold' or remove it",
                    )
            if self.vip_percent + self.key_percent > 100:
                raise _KeyProblem(
                    "key_percent",
                    self.key_percent,
                    f"vip_percent + key_percent is {self.vip_percent + self.key_percent:g}%, "
                    "more than every customer: lower them",
                )
            return self
        for key in ("vip_percent", "key_percent"):
            if key in self.model_fields_set:
                raise _KeyProblem(
                    key,
                    getattr(self, key),
                    "a share for 'method: rank'; with method 'threshold' the tiers come from "
                    "vip_from and key_from: set 'method: rank' or remove it",
                )
        for key in ("vip_from", "key_from"):
            if getattr(self, key) is None:
                raise _KeyProblem(
                    key,
                    None,
                    "method 'threshold' needs vip_from and key_from (revenue amounts over "
                    "window_days), e.g. vip_from: 10000 and key_from: 2000",
                )
        assert self.vip_from is not None and self.key_from is not None
        if self.key_from > self.vip_from:
            raise _KeyProblem(
                "key_from",
                self.key_from,
                f"above vip_from ({self.vip_from}): the key tier starts below the VIP tier, "
                "lower key_from or raise vip_from",
            )
        if self.small_below is not None and self.small_below > self.key_from:
            raise _KeyProblem(
                "small_below",
                self.small_below,
                f"above key_from ({self.key_from}): small is the layer under ordinary, lower it",
            )
        return self


class LoyaltyRules(_Section):
    """The loyalty class (none / latent / inertial / true) from two readings of behaviour.

    *Buys regularly* (repeat purchase at a frequency, recently): at least ``frequent_orders``
    orders in the last ``window_days`` and the last one within the last ``recent_days``.
    *Buys broadly* (the attitude, read from behaviour): orders in at least
    ``cross_categories`` categories in the last ``breadth_days`` and a customer for at least
    ``tenure_days``.
    """

    window_days: int = Field(365, ge=1, le=MAX_DAYS)
    frequent_orders: int = Field(4, ge=2, le=10_000)
    recent_days: int = Field(120, ge=1, le=MAX_DAYS)
    breadth_days: int = Field(730, ge=1, le=MAX_DAYS)
    cross_categories: int = Field(2, ge=2, le=1000)
    tenure_days: int = Field(365, ge=0, le=MAX_DAYS)


class SatisfactionRules(_Section):
    """Satisfied unless the customer's contacts of the last ``window_days`` hold more than
    ``max_complaints`` complaints or more than ``max_abandoned`` abandoned calls. No contact
    at all counts as satisfied (no signal of the contrary)."""

    window_days: int = Field(365, ge=1, le=MAX_DAYS)
    max_complaints: int = Field(0, ge=0, le=1000)
    max_abandoned: int = Field(2, ge=0, le=1000)


class LifecycleRules(_Section):
    """The lifecycle stage: the last ``recent_days`` against the customer's own past.

    The measure (``revenue`` or ``orders``) of the last ``recent_days`` is compared with the
    customer's own rate over the ``baseline_days`` before them, scaled to the same length
    (a younger customer's baseline is the time since the first order). ``growth_at`` times
    that rate or more is growth, ``decline_at`` times or less is decline, between is mature.
    Before ``development_days`` since the first order: development (no own past yet); no order
    in the last ``lost_after_days``: lost; no order at all: potential.
    """

    measure: Literal["revenue", "orders"] = "revenue"
    recent_days: int = Field(180, ge=1, le=MAX_DAYS)
    baseline_days: int = Field(365, ge=1, le=MAX_DAYS)
    development_days: int = Field(270, ge=2, le=MAX_DAYS)
    lost_after_days: int = Field(365, ge=1, le=MAX_DAYS)
    growth_at: float = Field(1.25, gt=1, le=100)
    decline_at: float = Field(0.6, ge=0, lt=1)

    @model_validator(mode="after")
    def _own_past_exists(self) -> LifecycleRules:
        if self.development_days <= self.recent_days:
            raise _KeyProblem(
                "development_days",
                self.development_days,
                f"must exceed recent_days ({self.recent_days}), so a customer past development "
                "has some own past to compare with: raise development_days or lower recent_days",
            )
        return self


class LifetimeValueRules(_Section):
    """Lifetime value: margin so far plus the margin expected ahead.

    Ahead: the customer's annual margin (revenue of the last year, or of the time since the
    first order when shorter but at least ``min_exposure_days``, scaled to a year, times
    ``margin``) times ``retention / (1 + discount_rate - retention)``, the expected
    discounted number of further years with a yearly ``retention`` probability. Lost
    customers have nothing ahead.
    """

    margin: float = Field(1.0, gt=0, le=1)
    retention: float = Field(0.75, ge=0, lt=1)
    discount_rate: float = Field(0.10, ge=0, le=1)
    min_exposure_days: int = Field(180, ge=1, le=365)


class ProfileRules(_Section):
    """Every rule of the customer profile, each section with its defaults."""

    pyramid: PyramidRules = PyramidRules()
    loyalty: LoyaltyRules = LoyaltyRules()
    satisfaction: SatisfactionRules = SatisfactionRules()
    lifecycle: LifecycleRules = LifecycleRules()
    lifetime_value: LifetimeValueRules = LifetimeValueRules()


def load_profile_rules(path: Path | None) -> ProfileRules:
    """The rules in the YAML file ``path``; the defaults when ``path`` is None or the file is
    empty. :class:`CrmConfigError` names the file, the key and the fix."""
    if path is None:
        return ProfileRules()
    try:
        data = load_yaml(path, "customer-profile rules file")
    except YamlFileError as exc:
        setting = "profile_rules" if exc.unreadable else None
        raise CrmConfigError(str(exc), setting=setting) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CrmConfigError(
            f"{path}: the top level must be a mapping (pyramid:, loyalty:, satisfaction:, "
            "lifecycle:, lifetime_value:)"
        )
    return parse_profile_rules(data, str(path))


def parse_profile_rules(data: Mapping[str, Any], origin: str) -> ProfileRules:
    """Validate already-parsed rules; ``origin`` names their source in error messages."""
    try:
        return ProfileRules.model_validate(data)
    except ValidationError as exc:
        raise CrmConfigError(_explain(exc, origin)) from None


def _explain(exc: ValidationError, origin: str) -> str:
    lines = []
    for err in exc.errors():
        loc = err["loc"]
        value = err["input"]
        msg = err["msg"].removeprefix("Value error, ")
        problem = err.get("ctx", {}).get("error")
        if isinstance(problem, _KeyProblem):
            loc, value = (*loc, problem.key), problem.value
        key = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            known = ", ".join(_known_keys(loc[:-1]))
            lines.append(
                f"{origin}: key {key!r} is not a setting; check its spelling (settings here: "
                f"{known})"
            )
        elif err["type"] == "model_type":
            known = ", ".join(_known_keys(loc))
            lines.append(
                f"{origin}: key {key!r} must be a mapping of settings ({known}), got {value!r}"
            )
        else:
            lines.append(f"{origin}: key {key!r}: {msg} ({_shown(value)})")
    return "invalid customer-profile rules:\n  " + "\n  ".join(lines)


def _shown(value: object) -> str:
    if value is None:
        return "missing or empty"
    if isinstance(value, Decimal):
        return f"got {value}"
    return f"got {value!r}"


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] = ProfileRules
    for part in loc:
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


class ExternalCrmSettings(_Section):
    """An external CRM asked over HTTP for callers the customer tables do not know."""

    url: str | None = None  # e.g. https://crm.example.com/api; None: no external CRM
    token: SecretStr | None = None  # sent as "Authorization: Bearer ..."
    timeout: float = Field(0.5, gt=0, le=30)  # seconds one request may take
    cache_seconds: float = Field(300.0, ge=0, le=86_400)  # answers kept this long
    failures_to_open: int = Field(5, ge=1, le=1000)  # failures in a row that open the breaker
    open_seconds: float = Field(30.0, gt=0, le=3600)  # the breaker stays open this long


class CrmServiceSettings(_Section):
    """What :class:`crm_bridge.service.CrmBridgeService` is built from (the process fills it
    in from its own configuration, e.g. ``callcenter.yaml``'s ``crm`` section)."""

    #: This PBX's name in history (contacts, pops and choices are kept per PBX and call).
    pbx: str = Field("default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    #: The customer-profile rules file (None: the built-in rules).
    profile_rules: Path | None = None
    #: Where numbers without a country code are from (ISO 3166, e.g. ``DE``).
    default_region: str = Field("US", pattern=r"^[A-Z]{2}$")
    #: The last contacts a pop shows.
    last_contacts: int = Field(5, ge=0, le=50)
    #: Seconds between checks for a new tier run (the ACD's tier index is reloaded then).
    tier_refresh: float = Field(30.0, gt=0, le=3600)
    #: Seconds between fills of the contacts table from the call history (and the
    #: incremental profile of the customers those contacts belong to).
    contacts_every: float = Field(10.0, gt=0, le=3600)
    external: ExternalCrmSettings = ExternalCrmSettings()
    #: Threads for customer look-ups and writes (database work never runs on the reactor).
    threads: int = Field(4, ge=1, le=64)
