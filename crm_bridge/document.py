"""A profile as the JSON document stored in ``customers.profile`` and shown by the screen pop.

Every class comes with its reason and the figures the reason quotes, so a supervisor can
check it by hand against ``docs/customer-profile.md`` ("Stored document" lists the keys).
Money is a decimal string with two decimals (``"48200.00"``): JSON numbers are floats, and
a float would not give back the exact amount a cut-off was compared with.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from crm_bridge.profile import Profile
from crm_bridge.pyramid import TierCutoffs

__all__ = ["profile_document"]

_CENT = Decimal("0.01")


def profile_document(profile: Profile, cutoffs: TierCutoffs | None = None) -> dict[str, Any]:
    """``profile`` as JSON-ready data. With ``cutoffs`` (the run the tier was decided
    against) the tier also says which run, by which method and over which window."""
    tier: dict[str, Any] = {
        "tier": profile.tier.tier,
        "reason": profile.tier.reason,
        "window_value": _money(profile.tier.value),
    }
    if cutoffs is not None:
        tier.update(
            run_at=cutoffs.at,
            method=cutoffs.method,
            window_days=cutoffs.window_days,
        )
    loyalty = profile.loyalty
    quadrant = profile.quadrant
    stage = profile.lifecycle
    value = profile.value
    step = profile.next_step
    return {
        "tier": tier,
        "loyalty": {
            "class": loyalty.loyalty,
            "reason": loyalty.reason,
            "regular": loyalty.regular,
            "broad": loyalty.broad,
            "orders": loyalty.orders,
            "categories": loyalty.categories,
            "days_since_last": _days(loyalty.days_since_last),
            "tenure_days": _days(loyalty.tenure_days),
        },
        "quadrant": {
            "quadrant": quadrant.quadrant,
            "reason": quadrant.reason,
            "satisfied": quadrant.satisfied,
            "loyal": quadrant.loyal,
            "complaints": quadrant.complaints,
            "abandoned": quadrant.abandoned,
        },
        "lifecycle": {
            "stage": stage.stage,
            "retention": stage.retention,
            "reason": stage.reason,
            "recent": _optional_money(stage.recent),
            "expected": _optional_money(stage.expected),
        },
        "lifetime_value": {
            "amount": _money(value.total),
            "reason": value.reason,
            "to_date": _money(value.to_date),
            "ahead": _money(value.ahead),
            "annual": _money(value.annual),
            "orders_a_year": str(value.orders_a_year),
            "average_order": _optional_money(value.average_order),
            "multiple": str(value.multiple.quantize(Decimal("0.0001"))),
        },
        "next_step": {"code": step.code, "step": step.step, "reason": step.reason},
        "at": profile.at,
    }


def _money(amount: Decimal) -> str:
    return str(amount.quantize(_CENT))


def _optional_money(amount: Decimal | None) -> str | None:
    return None if amount is None else _money(amount)


def _days(days: float | None) -> float | None:
    return None if days is None else round(days, 2)
