"""Lifetime value: to date + annual margin x r / (1 + d - r), checked by hand on small
customers, with the cases that change the method (new customer, lost, margin, refunds)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from crm_bridge.config import LifetimeValueRules
from crm_bridge.customer import DAY, CustomerHistory, Order
from crm_bridge.lifetime import lifetime_value_of

NOW = 1_750_000_000.0
RULES = LifetimeValueRules()


def ago(days: float) -> float:
    return NOW - days * DAY


def history(*spec: tuple[float, int | str]) -> CustomerHistory:
    return CustomerHistory("c", tuple(Order(ago(d), Decimal(a), "shoes") for d, a in spec))


MONTHLY = history(*[(d, 100) for d in range(10, 1091, 30)])  # 37 orders of 100 in 3 years


def test_a_steady_customer_by_hand() -> None:
    got = lifetime_value_of(MONTHLY, NOW, RULES, lost=False)
    assert got.to_date == Decimal("3700.00")
    assert got.annual == Decimal("1200.00")  # 12 orders in the last 365 days
    assert got.orders_a_year == Decimal("12.0")
    assert got.average_order == Decimal("100.00")
    assert round(got.multiple, 6) == Decimal("2.142857")  # 0.75 / (1 + 0.10 - 0.75)
    assert got.ahead == Decimal("2571.43")
    assert got.total == Decimal("6271.43")
    assert got.reason == (
        "lifetime value 6,271: 3,700 so far and 2,571 ahead (1,200 a year: 12.0 orders of "
        "100 on average; times 2.14 for 75% yearly retention and 10% discount)"
    )


def test_a_new_customer_is_annualised_over_at_least_min_exposure_days() -> None:
    one_order = lifetime_value_of(history((10, 100)), NOW, RULES, lost=False)
    assert one_order.annual == Decimal("202.78")  # 100 * 365 / 180
    assert one_order.orders_a_year == Decimal("2.0")
    seven_months = lifetime_value_of(history((200, 100), (20, 100)), NOW, RULES, lost=False)
    assert seven_months.annual == Decimal("365.00")  # 200 * 365 / 200


def test_a_lost_customer_has_nothing_ahead() -> None:
    got = lifetime_value_of(MONTHLY, NOW, RULES, lost=True)
    assert (got.ahead, got.total) == (Decimal(0), Decimal("3700.00"))
    assert got.reason == "lifetime value 3,700: 3,700 so far; lost, nothing ahead counted"


def test_no_order_no_value() -> None:
    got = lifetime_value_of(CustomerHistory("c"), NOW, RULES, lost=False)
    assert (got.to_date, got.ahead, got.total, got.average_order) == (0, 0, 0, None)
    assert got.reason == "lifetime value 0: no order yet"


def test_the_margin_turns_revenue_into_value() -> None:
    got = lifetime_value_of(MONTHLY, NOW, LifetimeValueRules(margin=0.3), lost=False)
    assert got.to_date == Decimal("1110.00")
    assert got.annual == Decimal("360.00")
    assert "(360 a year at a 30% margin: 12.0 orders" in got.reason


def test_no_revenue_in_the_last_year_counts_nothing_ahead() -> None:
    old = history((400, 500), (800, 500))
    got = lifetime_value_of(old, NOW, RULES, lost=False)  # e.g. lost_after_days above a year
    assert got.ahead == 0
    assert got.reason == (
        "lifetime value 1,000: 1,000 so far; no revenue over the last year, nothing ahead counted"
    )
    refunded = lifetime_value_of(history((400, 500), (20, 80), (10, -100)), NOW, RULES, lost=False)
    assert refunded.ahead == 0
    assert refunded.to_date == Decimal("480.00")


def test_retention_and_discount_set_the_multiple() -> None:
    sure = LifetimeValueRules(retention=0.9, discount_rate=0.0)
    assert lifetime_value_of(MONTHLY, NOW, sure, lost=False).ahead == Decimal("10800.00")
    never = LifetimeValueRules(retention=0.0)
    assert lifetime_value_of(MONTHLY, NOW, never, lost=False).ahead == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 1500), st.integers(-200, 5_000)), max_size=30),
    st.floats(0, 0.95),
    st.floats(0, 0.95),
)
def test_the_parts_add_up_and_more_retention_is_worth_more(
    spec: list[tuple[float, int]], low: float, high: float
) -> None:
    low, high = sorted((low, high))
    h = history(*spec)
    a = lifetime_value_of(h, NOW, LifetimeValueRules(retention=low), lost=False)
    b = lifetime_value_of(h, NOW, LifetimeValueRules(retention=high), lost=False)
    for got in (a, b):
        assert got.total == got.to_date + got.ahead
        assert got.ahead >= 0
    assert b.ahead >= a.ahead
