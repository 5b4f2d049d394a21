"""Loyalty, measured from behaviour: the loyalty class and the satisfaction quadrant.

Satisfaction is an attitude, loyalty is behaviour (90% of lost customers had said they were
satisfied), so both classes are read from what the customer did.

**Loyalty class** (attitude x behaviour: none, latent, inertial, true). Two readings:

* *buys regularly* — the behaviour, repeat purchase at a frequency, still going on: at least
  ``frequent_orders`` orders (at least 2: a repeat purchase) in the last ``window_days``
  and the last order within the last ``recent_days``;
* *buys broadly* — the attitude ("likes us"), which order data shows only through what the
  customer chooses us for and for how long: orders in at least ``cross_categories``
  categories in the last ``breadth_days`` (cross purchase) and a customer for at least
  ``tenure_days`` (tenure).

=============  =================  =================
               buys broadly       not broadly
=============  =================  =================
regularly      **true**           **inertial** (habit)
not regularly  **latent**         **none**
=============  =================  =================

**Quadrant** (satisfaction x loyalty): *loyal* is "buys regularly" (true or inertial);
*satisfied* is "no more than ``max_complaints`` complaints and ``max_abandoned`` abandoned
calls in the last ``window_days``" of contacts (no contact: satisfied, nothing says
otherwise). Satisfied and loyal: **apostle**; satisfied, not loyal: **mercenary**; loyal, not
satisfied: **hostage** (stuck); neither: **defector** (the "terrorist" who talks us down).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from crm_bridge.config import LoyaltyRules, SatisfactionRules
from crm_bridge.customer import DAY, CustomerHistory, within
from crm_bridge.wording import ago, count, duration, period

__all__ = [
    "LOYALTY_CLASSES",
    "QUADRANTS",
    "LoyaltyClass",
    "LoyaltyResult",
    "Quadrant",
    "QuadrantResult",
    "loyalty_of",
    "quadrant_of",
]

LoyaltyClass = Literal["none", "latent", "inertial", "true"]
#: Weakest first.
LOYALTY_CLASSES: tuple[LoyaltyClass, ...] = ("none", "latent", "inertial", "true")
Quadrant = Literal["apostle", "mercenary", "hostage", "defector"]
QUADRANTS: tuple[Quadrant, ...] = ("apostle", "mercenary", "hostage", "defector")


@dataclass(frozen=True, slots=True)
class LoyaltyResult:
    """The loyalty class, the two readings it comes from, their figures and the reason."""

    loyalty: LoyaltyClass
    regular: bool
    broad: bool
    #: Orders in the last ``window_days``; categories in the last ``breadth_days``.
    orders: int
    categories: int
    #: Days since the last order and since the relationship began (None: no order / unknown).
    days_since_last: float | None
    tenure_days: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class QuadrantResult:
    """Satisfaction x loyalty, the signals counted and the reason."""

    quadrant: Quadrant
    satisfied: bool
    loyal: bool
    complaints: int
    abandoned: int
    reason: str


def loyalty_of(history: CustomerHistory, now: float, rules: LoyaltyRules) -> LoyaltyResult:
    """The loyalty class of ``history`` at ``now``."""
    since = history.customer_since(now)
    tenure = None if since is None else (now - since) / DAY
    orders = history.purchases_until(now)
    if not orders:
        known = f" (known for {duration(tenure)})" if tenure is not None else ""
        return LoyaltyResult("none", False, False, 0, 0, None, tenure, f"none: no order yet{known}")
    assert tenure is not None  # there is an order, so a start
    in_window = len(within(orders, now, rules.window_days))
    categories = len({o.category for o in within(orders, now, rules.breadth_days)})
    since_last = (now - orders[-1].at) / DAY
    frequent = in_window >= rules.frequent_orders
    recent = since_last < rules.recent_days
    regular = frequent and recent
    wide = categories >= rules.cross_categories
    long = tenure >= rules.tenure_days
    broad = wide and long

    orders_text = f"{count(in_window, 'order')} in the last {period(rules.window_days)}"
    categories_text = (
        f"{count(categories, 'category', 'categories')} in the last {period(rules.breadth_days)}"
    )
    if regular:
        behaviour = f"regularly ({orders_text}, the last one {ago(since_last)})"
    elif not frequent:
        behaviour = f"rarely ({orders_text}; regular from {rules.frequent_orders})"
    else:
        behaviour = (
            f"not lately (the last order {ago(since_last)}; regular means one in the last "
            f"{period(rules.recent_days)})"
        )
    if broad:
        attitude = f"broadly ({categories_text}, a customer for {duration(tenure)})"
    elif not wide:
        attitude = f"narrowly ({categories_text}; broad from {rules.cross_categories})"
    else:
        attitude = (
            f"only recently (a customer for {duration(tenure)}; broad from "
            f"{period(rules.tenure_days)})"
        )

    loyalty: LoyaltyClass
    if regular and broad:
        loyalty, reason = "true", f"true: buys {behaviour} and {attitude}"
    elif regular:
        loyalty, reason = "inertial", f"inertial: buys {behaviour} but {attitude}"
    elif broad:
        loyalty, reason = "latent", f"latent: buys {attitude} but {behaviour}"
    else:
        loyalty, reason = "none", f"none: buys {behaviour} and {attitude}"
    return LoyaltyResult(loyalty, regular, broad, in_window, categories, since_last, tenure, reason)


def quadrant_of(
    history: CustomerHistory, loyalty: LoyaltyResult, now: float, rules: SatisfactionRules
) -> QuadrantResult:
    """Satisfaction (from ``history``'s contacts) x loyalty (``loyalty.regular``) at ``now``."""
    contacts = within(history.contacts, now, rules.window_days)
    complaints = sum(1 for c in contacts if c.complaint)
    abandoned = sum(1 for c in contacts if c.outcome == "abandoned")
    satisfied = complaints <= rules.max_complaints and abandoned <= rules.max_abandoned
    signals = (
        f"{count(complaints, 'complaint', zero='no complaint')} and "
        f"{count(abandoned, 'abandoned call', zero='no abandoned call')} "
        f"in the last {period(rules.window_days)}"
    )
    if satisfied:
        feeling = f"satisfied ({signals})"
    else:
        feeling = (
            f"not satisfied ({signals}; satisfied means at most "
            f"{count(rules.max_complaints, 'complaint')} and "
            f"{count(rules.max_abandoned, 'abandoned call')})"
        )
    loyal = loyalty.regular
    quadrant: Quadrant
    loyal_text, disloyal_text = "loyal (buys regularly)", "not loyal (does not buy regularly)"
    if satisfied and loyal:
        quadrant, reason = "apostle", f"apostle: {feeling} and {loyal_text}"
    elif satisfied:
        quadrant, reason = "mercenary", f"mercenary: {feeling} but {disloyal_text}"
    elif loyal:
        quadrant, reason = "hostage", f"hostage: {loyal_text} but {feeling}"
    else:
        quadrant, reason = "defector", f"defector: {feeling} and {disloyal_text}"
    return QuadrantResult(quadrant, satisfied, loyal, complaints, abandoned, reason)
