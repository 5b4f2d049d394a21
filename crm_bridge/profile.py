"""The customer profile the screen pop shows: tier, loyalty, quadrant, lifecycle stage,
lifetime value and a suggested next step, each with its reason in words.

A pure core: fed customers' histories, the rules and the time, it returns profiles; it reads
no clock, no file, no database. Two paths, one answer:

* **bulk** (:func:`profile_population`): every customer at once. The value tier ranks
  customers against each other, so it needs them all: the run computes the pyramid's
  cut-offs (:class:`~crm_bridge.pyramid.TierCutoffs`, to be stored) and every profile.
* **incremental** (:func:`profile_customer`): one customer, when an order or a contact
  arrives, against the stored cut-offs of the last bulk run and the customer's tier in that
  run. On unchanged data it gives the bulk run's profile; after a change to this customer
  alone, the profile a bulk recompute would give (see :mod:`crm_bridge.pyramid`).

The next step is the first rule of :data:`NEXT_STEPS` that applies (``docs/customer-
profile.md`` has the table). Complaints come first (listen and resolve before selling), then
the relationship's stage, then the loyalty class; the quadrants cover every customer, so
some rule always applies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from crm_bridge.config import ProfileRules
from crm_bridge.customer import CustomerHistory
from crm_bridge.lifecycle import LifecycleResult, lifecycle_of
from crm_bridge.lifetime import LifetimeValue, lifetime_value_of
from crm_bridge.loyalty import LoyaltyResult, QuadrantResult, loyalty_of, quadrant_of
from crm_bridge.pyramid import (
    Tier,
    TierCutoffs,
    TierResult,
    cutoffs_for,
    ranked_tier,
    tier_of,
    window_value,
)

__all__ = [
    "NEXT_STEPS",
    "NextStep",
    "NextStepRule",
    "Population",
    "Profile",
    "next_step",
    "profile_customer",
    "profile_population",
]


@dataclass(frozen=True, slots=True)
class NextStep:
    """What the agent could do with this caller: a stable ``code`` (for pages and reports),
    the ``step`` in words and why (the rule that applied and the facts it read)."""

    code: str
    step: str
    reason: str


@dataclass(frozen=True, slots=True)
class NextStepRule:
    """One row of the next-step table: ``applies`` reads the computed classes; ``when`` says
    the same in words."""

    code: str
    when: str
    step: str
    applies: Callable[[TierResult, LoyaltyResult, QuadrantResult, LifecycleResult], bool]


#: The next-step table, first matching rule wins.
NEXT_STEPS: tuple[NextStepRule, ...] = (
    NextStepRule(
        "resolve_complaint",
        "loyal but not satisfied (hostage)",
        "Resolve the complaint first: a loyal customer who is unhappy stays only until "
        "someone else frees him",
        lambda t, loy, q, c: q.quadrant == "hostage",
    ),
    NextStepRule(
        "service_recovery",
        "neither satisfied nor loyal (defector)",
        "Service recovery: listen, apologise, fix the problem and follow up",
        lambda t, loy, q, c: q.quadrant == "defector",
    ),
    NextStepRule(
        "retention_offer",
        "a VIP or key customer in decline",
        "Retention offer",
        lambda t, loy, q, c: t.tier in ("vip", "key") and c.stage == "decline",
    ),
    NextStepRule(
        "win_back",
        "a lost customer",
        "Win-back offer: ask why they stopped buying",
        lambda t, loy, q, c: c.stage == "lost",
    ),
    NextStepRule(
        "ask_what_changed",
        "in decline",
        "Ask what changed; a retention offer if their needs did not drop",
        lambda t, loy, q, c: c.stage == "decline",
    ),
    NextStepRule(
        "first_purchase",
        "no order yet (potential)",
        "Help to a first purchase",
        lambda t, loy, q, c: c.stage == "potential",
    ),
    NextStepRule(
        "welcome",
        "a new customer (development)",
        "Welcome them; suggest a second purchase",
        lambda t, loy, q, c: c.stage == "development",
    ),
    NextStepRule(
        "invite",
        "buys broadly but rarely (latent loyalty)",
        "Give a reason to come more often: a reminder, a bundle, an easier way to order",
        lambda t, loy, q, c: loy.loyalty == "latent",
    ),
    NextStepRule(
        "price_match",
        "satisfied but not loyal (mercenary)",
        "Price-match offer",
        lambda t, loy, q, c: q.quadrant == "mercenary",
    ),
    NextStepRule(
        "cross_sell",
        "buys regularly but narrowly (inertial loyalty)",
        "Cross-sell another category",
        lambda t, loy, q, c: loy.loyalty == "inertial",
    ),
    NextStepRule(
        "referral",
        "satisfied and truly loyal (apostle)",
        "Thank them; ask for a referral",
        lambda t, loy, q, c: q.quadrant == "apostle",
    ),
)

_TIER_NAME = {"vip": "VIP", "key": "key", "ordinary": "ordinary", "small": "small"}


def next_step(
    tier: TierResult, loyalty: LoyaltyResult, quadrant: QuadrantResult, stage: LifecycleResult
) -> NextStep:
    """The first rule of :data:`NEXT_STEPS` that applies."""
    loyal = "no" if loyalty.loyalty == "none" else loyalty.loyalty
    facts = f"{_TIER_NAME[tier.tier]}, {stage.stage}, {loyal} loyalty, {quadrant.quadrant}"
    for rule in NEXT_STEPS:
        if rule.applies(tier, loyalty, quadrant, stage):
            return NextStep(rule.code, rule.step, f"{rule.when}: {facts}")
    # The quadrant rules (hostage, defector, mercenary, apostle) cover every customer.
    raise AssertionError(f"no next-step rule applies to {facts}")


@dataclass(frozen=True, slots=True)
class Profile:
    """Everything the pop shows of a customer's value and loyalty, as of ``at``."""

    customer_id: str
    at: float
    tier: TierResult
    loyalty: LoyaltyResult
    quadrant: QuadrantResult
    lifecycle: LifecycleResult
    value: LifetimeValue
    next_step: NextStep

    @property
    def retention(self) -> bool:
        """The retention flag: the customer is in decline."""
        return self.lifecycle.retention

    def reasons(self) -> dict[str, str]:
        """Every reason, by what it explains."""
        return {
            "tier": self.tier.reason,
            "loyalty": self.loyalty.reason,
            "quadrant": self.quadrant.reason,
            "lifecycle": self.lifecycle.reason,
            "lifetime_value": self.value.reason,
            "next_step": self.next_step.reason,
        }


@dataclass(frozen=True, slots=True)
class Population:
    """A bulk run: the cut-offs to store and every customer's profile by id."""

    cutoffs: TierCutoffs
    profiles: dict[str, Profile]


def profile_customer(
    history: CustomerHistory,
    cutoffs: TierCutoffs,
    now: float,
    rules: ProfileRules,
    *,
    was: Tier | None,
) -> Profile:
    """One customer's profile at ``now`` (the incremental path), tiered against ``cutoffs``
    of the last bulk run. ``was`` is the customer's tier in that run (None: the run did not
    include the customer), as the run returned it; with it, the tier is the one a bulk
    recompute would give when only this customer changed. The run's window and small
    threshold are used, so a changed pyramid configuration takes effect at the next run."""
    value = window_value(history, now, cutoffs.window_days)
    return _profile(history, tier_of(value, cutoffs, was=was), now, rules)


def profile_population(
    histories: Iterable[CustomerHistory], now: float, rules: ProfileRules
) -> Population:
    """Every customer's profile at ``now`` and the cut-offs of this run (the bulk path).
    ``histories`` is the whole population (the rank shares are shares of it); a customer
    id given twice is a :class:`ValueError`."""
    customers: dict[str, CustomerHistory] = {}
    for history in histories:
        if history.customer_id in customers:
            raise ValueError(f"customer {history.customer_id!r} is given twice")
        customers[history.customer_id] = history
    window = rules.pyramid.window_days
    values = {cid: window_value(h, now, window) for cid, h in customers.items()}
    cutoffs = cutoffs_for(values.values(), rules.pyramid, now)
    return Population(
        cutoffs,
        {
            cid: _profile(h, ranked_tier(values[cid], cutoffs), now, rules)
            for cid, h in customers.items()
        },
    )


def _profile(
    history: CustomerHistory, tier: TierResult, now: float, rules: ProfileRules
) -> Profile:
    loyalty = loyalty_of(history, now, rules.loyalty)
    quadrant = quadrant_of(history, loyalty, now, rules.satisfaction)
    stage = lifecycle_of(history, now, rules.lifecycle)
    value = lifetime_value_of(history, now, rules.lifetime_value, lost=stage.stage == "lost")
    return Profile(
        history.customer_id,
        now,
        tier,
        loyalty,
        quadrant,
        stage,
        value,
        next_step(tier, loyalty, quadrant, stage),
    )
