"""The whole customer profile: every next-step rule reached by a hand-made customer, the
table's order and totality, the bulk and incremental paths, and the core's purity (no clock,
no file, nothing of the process imported)."""

from __future__ import annotations

import builtins
import itertools
import subprocess
import sys
import time
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_bridge.config import ProfileRules, PyramidRules
from crm_bridge.customer import DAY, Contact, CustomerHistory, Order
from crm_bridge.lifecycle import STAGES, LifecycleResult
from crm_bridge.loyalty import LOYALTY_CLASSES, QUADRANTS, LoyaltyResult, QuadrantResult
from crm_bridge.profile import (
    NEXT_STEPS,
    Profile,
    next_step,
    profile_customer,
    profile_population,
)
from crm_bridge.pyramid import PYRAMID, TierResult

NOW = 1_750_000_000.0
RULES = ProfileRules(
    pyramid=PyramidRules(method="threshold", vip_from=Decimal(10_000), key_from=Decimal(2_000))
)


def ago(days: float) -> float:
    return NOW - days * DAY


def orders(
    spec: list[tuple[float, int]], categories: tuple[str, ...] = ("shoes",)
) -> tuple[Order, ...]:
    return tuple(
        Order(ago(d), Decimal(a), categories[i % len(categories)]) for i, (d, a) in enumerate(spec)
    )


def monthly(amount: int, first: float, last: float) -> list[tuple[float, int]]:
    return [(d, amount) for d in range(int(first), int(last) + 1, 30)]


def complaint(days: float) -> Contact:
    return Contact(ago(days), "answered", complaint=True)


def declining(amount: int) -> list[tuple[float, int]]:
    """Two orders in the last six months after a monthly order for the years before."""
    return [(10, amount), (100, amount), *monthly(amount, 190, 1000)]


#: One customer per next-step rule, by the rule's code.
CUSTOMERS = {
    "resolve_complaint": CustomerHistory(
        "hostage", orders(monthly(100, 10, 1000)), (complaint(5),)
    ),
    "service_recovery": CustomerHistory("defector", orders([(30, 100)]), (complaint(5),)),
    "retention_offer": CustomerHistory("vip-in-decline", orders(declining(2_500))),
    "win_back": CustomerHistory("lost", orders(monthly(100, 400, 1000))),
    "ask_what_changed": CustomerHistory("ordinary-in-decline", orders(declining(10))),
    "first_purchase": CustomerHistory("potential", first_seen=ago(20)),
    "welcome": CustomerHistory("new", orders([(30, 100)])),
    "invite": CustomerHistory(
        "latent",
        orders([(d, 50) for d in range(30, 1031, 200)], ("shoes", "bags", "coats")),
    ),
    "price_match": CustomerHistory("mercenary", orders([(300, 50), (10, 50)])),
    "cross_sell": CustomerHistory("inertial", orders(monthly(100, 10, 1000))),
    "referral": CustomerHistory("apostle", orders(monthly(100, 10, 1000), ("shoes", "bags"))),
}


@pytest.fixture(scope="module")
def run() -> dict[str, Profile]:
    return profile_population(CUSTOMERS.values(), NOW, RULES).profiles


@pytest.mark.parametrize("code", list(CUSTOMERS))
def test_every_next_step_rule_is_reached_by_its_customer(
    run: dict[str, Profile], code: str
) -> None:
    profile = run[CUSTOMERS[code].customer_id]
    assert profile.next_step.code == code, profile.reasons()


def test_the_rule_table_is_the_one_documented() -> None:
    assert [rule.code for rule in NEXT_STEPS] == list(CUSTOMERS)


def test_a_vip_in_decline_gets_a_retention_offer_and_says_why(run: dict[str, Profile]) -> None:
    profile = run["vip-in-decline"]
    assert profile.tier.tier == "vip"
    assert profile.lifecycle.stage == "decline"
    assert profile.retention
    assert profile.next_step.step == "Retention offer"
    assert profile.next_step.reason == (
        "a VIP or key customer in decline: VIP, decline, inertial loyalty, apostle"
    )


def test_a_complaint_comes_before_the_offer() -> None:
    """A VIP in decline who complained: resolve the complaint first."""
    unhappy = CustomerHistory("c", orders(declining(2_500)), (complaint(3),))
    profile = profile_population([unhappy], NOW, RULES).profiles["c"]
    assert profile.tier.tier == "vip" and profile.lifecycle.stage == "decline"
    assert profile.next_step.code == "resolve_complaint"


def test_the_mercenary_gets_a_price_match(run: dict[str, Profile]) -> None:
    profile = run["mercenary"]
    assert profile.quadrant.quadrant == "mercenary"
    assert profile.next_step.step == "Price-match offer"
    assert profile.next_step.reason == (
        "satisfied but not loyal (mercenary): ordinary, mature, no loyalty, mercenary"
    )


def test_a_profile_has_every_reason(run: dict[str, Profile]) -> None:
    reasons = run["apostle"].reasons()
    assert list(reasons) == [
        "tier",
        "loyalty",
        "quadrant",
        "lifecycle",
        "lifetime_value",
        "next_step",
    ]
    assert reasons["tier"] == "ordinary: 12-month revenue 1,200, below 2,000 for key"
    assert reasons["loyalty"].startswith("true: buys regularly")
    assert reasons["quadrant"].startswith("apostle: ")
    assert reasons["lifecycle"].startswith("mature: ")
    assert reasons["lifetime_value"].startswith("lifetime value 5,971: ")
    assert reasons["next_step"] == (
        "satisfied and truly loyal (apostle): ordinary, mature, true loyalty, apostle"
    )


def test_some_rule_applies_to_every_combination() -> None:
    """Even to combinations the core never produces (an apostle without loyalty)."""
    for tier, loyalty, quadrant, stage in itertools.product(
        PYRAMID, LOYALTY_CLASSES, QUADRANTS, STAGES
    ):
        step = next_step(
            TierResult(tier, Decimal(0), ""),
            LoyaltyResult(loyalty, False, False, 0, 0, None, None, ""),
            QuadrantResult(quadrant, True, True, 0, 0, ""),
            LifecycleResult(stage, stage == "decline", None, None, ""),
        )
        assert step.code in {rule.code for rule in NEXT_STEPS}


# -- bulk and incremental ------------------------------------------------------------------


def test_the_incremental_path_gives_the_bulk_profile(run: dict[str, Profile]) -> None:
    cutoffs = profile_population(CUSTOMERS.values(), NOW, RULES).cutoffs
    for history in CUSTOMERS.values():
        profile = run[history.customer_id]
        again = profile_customer(history, cutoffs, NOW, RULES, was=profile.tier.tier)
        assert again == profile


def test_a_new_order_moves_a_customer_up_the_pyramid_incrementally() -> None:
    rules = ProfileRules()  # rank: 100 customers, 1 VIP place, 5 VIP-or-key places
    customers = [CustomerHistory(f"c{i}", orders([(30, 100 + i)])) for i in range(100)]
    bulk = profile_population(customers, NOW, rules)
    assert bulk.profiles["c0"].tier.tier == "ordinary"
    richer = CustomerHistory("c0", (*customers[0].orders, Order(NOW, Decimal(500), "bags")))
    again = profile_customer(richer, bulk.cutoffs, NOW, rules, was="ordinary")
    assert again.tier.tier == "vip"
    assert again.tier.reason == (
        "VIP: top 1% by 12-month revenue, 600 (passes the last VIP place, 199)"
    )
    recomputed = profile_population([richer, *customers[1:]], NOW, rules).profiles["c0"]
    # the same profile; the tier's reason cites the line that decided (the recompute's
    # line is the best customer left out)
    assert replace(again, tier=recomputed.tier) == recomputed
    assert recomputed.tier.reason == (
        "VIP: top 1% by 12-month revenue, 600 (the best outside the top 1% has 199)"
    )


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.floats(0, 1200), st.integers(-100, 3_000)), max_size=8),
        max_size=40,
    ),
    st.integers(-(10**8), 10**8),
)
def test_only_elapsed_time_matters(spec: list[list[tuple[float, int]]], shift: int) -> None:
    customers = [CustomerHistory(f"c{i}", orders(o)) for i, o in enumerate(spec)]
    moved = [
        CustomerHistory(
            h.customer_id, tuple(Order(o.at + shift, o.amount, o.category) for o in h.orders)
        )
        for h in customers
    ]
    a = profile_population(customers, NOW, ProfileRules()).profiles
    b = profile_population(moved, NOW + shift, ProfileRules()).profiles
    for cid, profile in a.items():
        assert profile.reasons() == b[cid].reasons()


# -- purity --------------------------------------------------------------------------------


def test_the_core_reads_no_clock_and_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the profile core must not read the clock or a file")

    for name in ("time", "monotonic", "perf_counter", "localtime", "gmtime"):
        monkeypatch.setattr(time, name, refuse)
    monkeypatch.setattr(builtins, "open", refuse)
    result = profile_population(CUSTOMERS.values(), NOW, RULES)
    assert len(result.profiles) == len(CUSTOMERS)


def test_the_core_imports_nothing_of_the_process_or_other_domains() -> None:
    code = (
        "import sys\n"
        "import crm_bridge.config, crm_bridge.profile\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'callcenter', 'acd', 'ivr', 'tickets', 'twisted', 'sqlalchemy', 'redis'})\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
