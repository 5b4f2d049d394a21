"""The customer lifecycle stage, from recent activity against the customer's own past.

Potential → development → growth → mature → decline (→ lost). The rule, in order:

1. **potential**: no order yet.
2. **lost**: no order in the last ``lost_after_days``: used to buy and stopped.
3. **development**: the first order is less than ``development_days`` old, too new to have
   an own past to compare with.
4. Otherwise compare the measure (revenue, or the number of orders with ``measure:
   orders``) of the last ``recent_days`` with the customer's own *earlier rate*: the
   measure of the ``baseline_days`` before those (or of the time since the first order,
   when that is shorter), scaled to ``recent_days``. With ratio = recent / earlier rate:
   **growth** when ratio >= ``growth_at``, **decline** when ratio <= ``decline_at``,
   **mature** in between. (No earlier business at all: growth if there is recent business.)

Recency, tenure and the number of orders count purchases; revenue nets refunds out.

A decline raises the retention flag: the customer's business with us dropped against their
own past, the moment to invest in retention (or to decide to let go). Comparing with the
customer's own past, not with other customers, is what separates "a small customer" from
"a customer who is leaving".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from crm_bridge.config import LifecycleRules
from crm_bridge.customer import DAY, CustomerHistory, Order, within
from crm_bridge.wording import ago, count, duration, money, period, ratio, rounded

__all__ = ["STAGES", "LifecycleResult", "Stage", "lifecycle_of"]

Stage = Literal["potential", "development", "growth", "mature", "decline", "lost"]
#: In the order a relationship goes through them.
STAGES: tuple[Stage, ...] = ("potential", "development", "growth", "mature", "decline", "lost")


@dataclass(frozen=True, slots=True)
class LifecycleResult:
    """The stage, the retention flag, the two figures compared (None when the stage did not
    need them) and the reason."""

    stage: Stage
    retention: bool
    #: The measure over the last ``recent_days``.
    recent: Decimal | None
    #: The customer's own earlier rate, per ``recent_days``.
    expected: Decimal | None
    reason: str


def lifecycle_of(history: CustomerHistory, now: float, rules: LifecycleRules) -> LifecycleResult:
    """The lifecycle stage of ``history`` at ``now``."""
    purchases = history.purchases_until(now)
    if not purchases:
        return LifecycleResult("potential", False, None, None, "potential: no order yet")
    since_last = (now - purchases[-1].at) / DAY
    if since_last >= rules.lost_after_days:
        return LifecycleResult(
            "lost",
            False,
            None,
            None,
            f"lost: no order in the last {period(rules.lost_after_days)} "
            f"(the last {ago(since_last)})",
        )
    tenure = (now - purchases[0].at) / DAY
    if tenure < rules.development_days:
        return LifecycleResult(
            "development",
            False,
            None,
            None,
            f"development: first order {ago(tenure)}, too new to compare with its own past "
            f"(compared from {period(rules.development_days)} on)",
        )
    recent_days = rules.recent_days
    orders = history.orders_until(now)  # revenue nets refunds out
    span = min(float(rules.baseline_days), tenure - recent_days)
    recent = _measure(within(orders, now, recent_days), rules)
    earlier = _measure(within(orders, now - recent_days * DAY, rules.baseline_days), rules)
    expected = earlier * recent_days / Decimal(span)
    what = _text(recent, rules)
    past = (
        f"its own rate in the {period(rules.baseline_days)} before: "
        if span == rules.baseline_days
        else f"its own rate in the {duration(span)} from its first order: "
    ) + f"{_text(expected, rules, estimate=True)} per {period(recent_days)}"
    head = f"{what} in the last {period(recent_days)}"
    if expected <= 0:  # nothing (or refunds only) before
        if recent > 0:
            return LifecycleResult(
                "growth", False, recent, expected, f"growth: {head}, none before ({past})"
            )
        return LifecycleResult(
            "mature", False, recent, expected, f"mature: {head}, no less than before ({past})"
        )
    share = recent / expected
    if share >= Decimal(str(rules.growth_at)):
        return LifecycleResult(
            "growth", False, recent, expected, f"growth: {head}, up {ratio(share - 1)} on {past}"
        )
    if share <= Decimal(str(rules.decline_at)):
        return LifecycleResult(
            "decline",
            True,
            recent,
            expected,
            f"decline: {head}, down {ratio(1 - share)} on {past}; retention flag",
        )
    return LifecycleResult(
        "mature", False, recent, expected, f"mature: {head}, {ratio(share)} of {past}"
    )


def _measure(orders: Sequence[Order], rules: LifecycleRules) -> Decimal:
    if rules.measure == "orders":
        return Decimal(sum(1 for o in orders if o.amount > 0))
    return sum((o.amount for o in orders), Decimal(0))


def _text(value: Decimal, rules: LifecycleRules, *, estimate: bool = False) -> str:
    if rules.measure == "orders":
        if value == value.to_integral_value():
            return count(int(value), "order")
        return f"{value:,.1f} orders"
    return f"revenue {rounded(value) if estimate else money(value)}"
