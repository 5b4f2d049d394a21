"""Lifecycle stage (potential, development, growth, mature, decline, lost) against the
customer's own past, with the retention flag: a hand-made customer for each stage, the
boundaries of every threshold, and properties (constant activity is mature; scale and time
do not matter)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from crm_bridge.config import LifecycleRules
from crm_bridge.customer import DAY, CustomerHistory, Order
from crm_bridge.lifecycle import lifecycle_of

NOW = 1_750_000_000.0
RULES = LifecycleRules()
#: A baseline of exactly twice the recent period: the earlier rate is half the baseline.
HALF = LifecycleRules(recent_days=180, baseline_days=360, development_days=270)


def ago(days: float) -> float:
    return NOW - days * DAY


def history(*spec: tuple[float, int | str]) -> CustomerHistory:
    """Orders as (days ago, amount)."""
    return CustomerHistory("c", tuple(Order(ago(d), Decimal(a), "shoes") for d, a in spec))


def monthly(amount: int, first: float, last: float) -> list[tuple[float, int]]:
    """An order of ``amount`` every 30 days from ``first`` days ago back to ``last``."""
    return [(d, amount) for d in range(int(first), int(last) + 1, 30)]


def test_potential_no_order_yet() -> None:
    got = lifecycle_of(CustomerHistory("c", first_seen=ago(10)), NOW, RULES)
    assert (got.stage, got.retention, got.reason) == ("potential", False, "potential: no order yet")


def test_development_a_new_customer() -> None:
    got = lifecycle_of(history((100, 50), (20, 70)), NOW, RULES)
    assert got.stage == "development"
    assert got.reason == (
        "development: first order 3 months ago, too new to compare with its own past "
        "(compared from 9 months on)"
    )


def test_mature_steady_against_its_own_past() -> None:
    got = lifecycle_of(history(*monthly(100, 10, 1000)), NOW, RULES)
    assert got.stage == "mature"
    assert not got.retention
    assert got.recent == Decimal(600)
    assert got.reason == (
        "mature: revenue 600 in the last 6 months, 101% of its own rate in the 12 months "
        "before: revenue 592 per 6 months"
    )


def test_growth_twice_its_own_past() -> None:
    spec = monthly(200, 10, 170) + monthly(100, 190, 1000)
    got = lifecycle_of(history(*spec), NOW, RULES)
    assert got.stage == "growth"
    assert got.reason == (
        "growth: revenue 1,200 in the last 6 months, up 103% on its own rate in the 12 months "
        "before: revenue 592 per 6 months"
    )


def test_decline_raises_the_retention_flag() -> None:
    spec = [(10, 100), (100, 100), *monthly(100, 190, 1000)]
    got = lifecycle_of(history(*spec), NOW, RULES)
    assert got.stage == "decline"
    assert got.retention
    assert got.reason == (
        "decline: revenue 200 in the last 6 months, down 66% on its own rate in the 12 months "
        "before: revenue 592 per 6 months; retention flag"
    )


def test_a_big_spender_who_halves_is_in_decline_while_a_small_steady_one_is_mature() -> None:
    """The comparison is with the customer's own past, not with other customers."""
    big = history(*monthly(1_000, 10, 170), *monthly(2_500, 190, 1000))
    small = history(*monthly(20, 10, 1000))
    assert lifecycle_of(big, NOW, RULES).stage == "decline"
    assert lifecycle_of(small, NOW, RULES).stage == "mature"


def test_lost_no_order_for_a_year() -> None:
    got = lifecycle_of(history(*monthly(100, 400, 1000)), NOW, RULES)
    assert got.stage == "lost"
    assert not got.retention
    assert got.reason == "lost: no order in the last 12 months (the last 13 months ago)"


def test_lost_is_checked_before_development() -> None:
    got = lifecycle_of(history((380, 100)), NOW, LifecycleRules(development_days=400))
    assert got.stage == "lost"


# -- boundaries ----------------------------------------------------------------------------


def test_lost_exactly_at_the_threshold() -> None:
    assert lifecycle_of(history((365, 100), (700, 100)), NOW, RULES).stage == "lost"
    assert lifecycle_of(history((364.99, 100), (700, 100)), NOW, RULES).stage != "lost"


def test_development_ends_exactly_at_development_days() -> None:
    assert lifecycle_of(history((269.99, 100), (10, 50)), NOW, RULES).stage == "development"
    assert lifecycle_of(history((270, 100), (10, 50)), NOW, RULES).stage != "development"


def test_growth_and_decline_exactly_at_their_ratios() -> None:
    # baseline: 800 in the 360 days before the last 180, so an earlier rate of 400 per 180
    base = [(600, 50), (300, 400), (400, 400)]
    assert lifecycle_of(history(*base, (10, 500)), NOW, HALF).stage == "growth"  # 1.25
    assert lifecycle_of(history(*base, (10, "499.99")), NOW, HALF).stage == "mature"
    assert lifecycle_of(history(*base, (10, 240)), NOW, HALF).stage == "decline"  # 0.6
    assert lifecycle_of(history(*base, (10, "240.01")), NOW, HALF).stage == "mature"


def test_an_order_exactly_recent_days_old_is_in_the_baseline() -> None:
    base = [(600, 50), (300, 400), (400, 400)]
    got = lifecycle_of(history(*base, (180, 500), (10, 400)), NOW, HALF)
    assert got.recent == Decimal(400)
    assert got.expected == Decimal(650)  # (400 + 400 + 500) / 2


def test_a_younger_customer_is_compared_with_the_time_since_its_first_order() -> None:
    # first order 300 days ago: the baseline is the 120 days from it to 180 days ago
    got = lifecycle_of(history((300, 400), (10, 600)), NOW, RULES)
    assert got.expected == Decimal(600)  # 400 per 120 days, scaled to 180
    assert got.stage == "mature"
    assert got.reason == (
        "mature: revenue 600 in the last 6 months, 100% of its own rate in the 4 months from "
        "its first order: revenue 600 per 6 months"
    )


def test_no_earlier_business_then_buying_again_is_growth() -> None:
    got = lifecycle_of(history((700, 100), (10, 100)), NOW, RULES)
    assert got.stage == "growth"
    assert got.reason == (
        "growth: revenue 100 in the last 6 months, none before (its own rate in the 12 "
        "months before: revenue 0 per 6 months)"
    )


def test_measure_orders_counts_orders_not_revenue() -> None:
    # the same number of orders, much smaller baskets: revenue says decline, orders mature
    spec = monthly(10, 10, 170) + monthly(100, 190, 1000)
    assert lifecycle_of(history(*spec), NOW, RULES).stage == "decline"
    got = lifecycle_of(history(*spec), NOW, LifecycleRules(measure="orders"))
    assert got.stage == "mature"
    assert got.reason == (
        "mature: 6 orders in the last 6 months, 101% of its own rate in the 12 months before: "
        "5.9 orders per 6 months"
    )


def test_a_refund_is_no_purchase() -> None:
    # the last purchase is 700 days old: a refund last week does not make the customer active
    assert lifecycle_of(history((700, 100), (10, -20)), NOW, RULES).stage == "lost"
    # refunds only before, a purchase now: growth
    got = lifecycle_of(history((700, 100), (300, -100), (10, 50)), NOW, RULES)
    assert got.stage == "growth"
    # a refund in the last months nets out of the revenue compared
    refunded = [(10, -550), *monthly(100, 10, 1000)]
    assert lifecycle_of(history(*refunded), NOW, RULES).stage == "decline"


def test_nothing_before_and_nothing_net_now_is_no_decline() -> None:
    got = lifecycle_of(history((700, 100), (10, 50), (9, -50)), NOW, RULES)
    assert got.stage == "mature"
    assert got.reason == (
        "mature: revenue 0 in the last 6 months, no less than before (its own rate in the 12 "
        "months before: revenue 0 per 6 months)"
    )


def test_orders_after_now_do_not_count() -> None:
    assert lifecycle_of(history((-10, 100)), NOW, RULES).stage == "potential"


# -- properties ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 30),
    st.integers(1, 10_000),
    st.floats(0, 1, exclude_max=True),
    st.integers(0, 2_000),
)
def test_constant_activity_is_mature(period: int, amount: int, phase: float, extra: int) -> None:
    """An order of the same amount every ``period`` days (up to monthly) since long ago."""
    first = phase * period
    oldest = RULES.recent_days + RULES.baseline_days + period + extra
    count = int((oldest - first) // period) + 1
    spec = [(first + k * period, amount) for k in range(count)]
    got = lifecycle_of(history(*spec), NOW, RULES)
    assert got.stage == "mature", got.reason
    assert not got.retention


spec_st = st.lists(st.tuples(st.floats(0, 1200), st.integers(1, 5_000)), min_size=0, max_size=40)


@settings(max_examples=300, deadline=None)
@given(spec_st, st.integers(2, 1000))
def test_the_scale_of_spending_does_not_matter(spec: list[tuple[float, int]], factor: int) -> None:
    a = lifecycle_of(history(*spec), NOW, RULES)
    b = lifecycle_of(history(*[(d, amount * factor) for d, amount in spec]), NOW, RULES)
    assert a.stage == b.stage


@settings(max_examples=300, deadline=None)
@given(spec_st, st.integers(-(10**8), 10**8))
def test_only_elapsed_time_matters_and_the_flag_is_decline(
    spec: list[tuple[float, int]], shift: int
) -> None:
    a = history(*spec)
    moved = CustomerHistory("c", tuple(Order(o.at + shift, o.amount, o.category) for o in a.orders))
    got, again = lifecycle_of(a, NOW, RULES), lifecycle_of(moved, NOW + shift, RULES)
    assert got.stage == again.stage
    assert got.retention == (got.stage == "decline")
