"""Loyalty class (none / latent / inertial / true) and the satisfaction quadrant (apostle /
mercenary / hostage / defector): a hand-made customer for each, with its reason, the
boundaries of every threshold, and properties."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from crm_bridge.config import LoyaltyRules, SatisfactionRules
from crm_bridge.customer import DAY, Contact, CustomerHistory, Order, Outcome
from crm_bridge.loyalty import loyalty_of, quadrant_of

NOW = 1_750_000_000.0
RULES = LoyaltyRules()
SATISFACTION = SatisfactionRules()


def ago(days: float) -> float:
    return NOW - days * DAY


def orders(days_ago: list[float], categories: list[str] | None = None) -> tuple[Order, ...]:
    cats = categories or ["shoes"]
    return tuple(Order(ago(d), Decimal(50), cats[i % len(cats)]) for i, d in enumerate(days_ago))


def every(days: int, count: int, first: float = 10) -> list[float]:
    """``count`` orders ``days`` apart, the most recent ``first`` days ago."""
    return [first + days * k for k in range(count)]


def customer(
    days_ago: list[float],
    categories: list[str] | None = None,
    contacts: tuple[Contact, ...] = (),
    first_seen: float | None = None,
) -> CustomerHistory:
    return CustomerHistory("c", orders(days_ago, categories), contacts, first_seen)


def calls(*spec: tuple[float, Outcome, bool]) -> tuple[Contact, ...]:
    return tuple(Contact(ago(d), outcome, complaint) for d, outcome, complaint in spec)


# -- one customer per class ----------------------------------------------------------------


def test_true_loyalty_buys_regularly_and_broadly() -> None:
    got = loyalty_of(customer(every(60, 12), ["shoes", "bags"]), NOW, RULES)
    assert got.loyalty == "true"
    assert (got.regular, got.broad, got.orders, got.categories) == (True, True, 6, 2)
    assert got.reason == (
        "true: buys regularly (6 orders in the last 12 months, the last one 10 days ago) and "
        "broadly (2 categories in the last 24 months, a customer for 22 months)"
    )


def test_inertial_loyalty_buys_regularly_in_one_category() -> None:
    got = loyalty_of(customer(every(60, 12)), NOW, RULES)
    assert got.loyalty == "inertial"
    assert got.reason == (
        "inertial: buys regularly (6 orders in the last 12 months, the last one 10 days ago) "
        "but narrowly (1 category in the last 24 months; broad from 2)"
    )


def test_a_new_regular_buyer_is_inertial_until_the_tenure_shows_a_preference() -> None:
    got = loyalty_of(customer(every(25, 4), ["shoes", "bags"]), NOW, RULES)
    assert got.loyalty == "inertial"
    assert got.reason.endswith("but only recently (a customer for 2 months; broad from 12 months)")


def test_latent_loyalty_buys_broadly_but_rarely() -> None:
    got = loyalty_of(customer(every(200, 6, first=30), ["shoes", "bags", "coats"]), NOW, RULES)
    assert got.loyalty == "latent"
    assert got.reason == (
        "latent: buys broadly (3 categories in the last 24 months, a customer for 2.8 years) "
        "but rarely (2 orders in the last 12 months; regular from 4)"
    )


def test_latent_loyalty_also_when_regular_buying_stopped_lately() -> None:
    got = loyalty_of(customer(every(40, 10, first=150), ["shoes", "bags"]), NOW, RULES)
    assert got.loyalty == "latent"
    assert got.reason.endswith(
        "but not lately (the last order 5 months ago; regular means one in the last 4 months)"
    )


def test_no_loyalty_one_order() -> None:
    got = loyalty_of(customer([30]), NOW, RULES)
    assert got.loyalty == "none"
    assert got.reason == (
        "none: buys rarely (1 order in the last 12 months; regular from 4) and narrowly "
        "(1 category in the last 24 months; broad from 2)"
    )


def test_no_loyalty_without_orders() -> None:
    assert loyalty_of(CustomerHistory("c"), NOW, RULES).reason == "none: no order yet"
    known = loyalty_of(CustomerHistory("c", first_seen=ago(70)), NOW, RULES)
    assert known.loyalty == "none"
    assert known.reason == "none: no order yet (known for 2 months)"
    assert known.tenure_days == 70


# -- boundaries ----------------------------------------------------------------------------


def test_frequency_exactly_at_the_threshold() -> None:
    assert loyalty_of(customer(every(30, 4)), NOW, RULES).regular
    assert not loyalty_of(customer(every(30, 3)), NOW, RULES).regular


def test_recency_an_order_exactly_recent_days_old_is_not_recent() -> None:
    assert not loyalty_of(customer(every(20, 4, first=120)), NOW, RULES).regular
    assert loyalty_of(customer(every(20, 4, first=119.99)), NOW, RULES).regular


def test_frequency_counts_only_the_window() -> None:
    # 3 orders in the last year, 5 more just before it: rarely
    history = customer([10, 100, 200, 365, 370, 380, 390, 400])
    got = loyalty_of(history, NOW, RULES)
    assert got.orders == 3
    assert not got.regular


def test_tenure_exactly_at_the_threshold_is_enough() -> None:
    two = ["shoes", "bags"]
    assert loyalty_of(customer([10, 40, 70, 365], two), NOW, RULES).broad
    assert not loyalty_of(customer([10, 40, 70, 364.99], two), NOW, RULES).broad


def test_first_seen_counts_in_the_tenure() -> None:
    history = customer(every(20, 4), ["shoes", "bags"], first_seen=ago(800))
    got = loyalty_of(history, NOW, RULES)
    assert got.loyalty == "true"
    assert got.tenure_days == 800


def test_categories_outside_the_breadth_window_do_not_count() -> None:
    history = customer([10, 40, 70, 100, 730], ["shoes", "shoes", "shoes", "shoes", "bags"])
    got = loyalty_of(history, NOW, RULES)
    assert got.categories == 1
    assert got.loyalty == "inertial"


def test_orders_after_now_are_not_counted() -> None:
    history = customer([-5, -1, 10, 400])
    got = loyalty_of(history, NOW, RULES)
    assert got.orders == 1
    assert got.days_since_last == 10


def test_a_refund_is_no_purchase() -> None:
    refunds = CustomerHistory(
        "c",
        (
            *orders(every(60, 4, first=200), ["shoes", "bags"]),
            Order(ago(3), Decimal(-50), "coats"),
            Order(ago(2), Decimal(-50), "hats"),
        ),
    )
    got = loyalty_of(refunds, NOW, RULES)
    assert (got.orders, got.categories, got.days_since_last) == (3, 2, 200)
    assert got.loyalty == "latent"


def test_the_thresholds_come_from_the_rules() -> None:
    history = customer(every(60, 12))
    strict = LoyaltyRules(frequent_orders=7)
    assert loyalty_of(history, NOW, strict).loyalty == "none"
    lenient = LoyaltyRules(cross_categories=2, tenure_days=0, frequent_orders=2)
    assert loyalty_of(customer([1, 2], ["a", "b"]), NOW, lenient).loyalty == "true"


# -- the quadrant --------------------------------------------------------------------------

REGULAR = every(60, 12)
RARE: list[float] = [30]


def quadrant(days_ago: list[float], contacts: tuple[Contact, ...] = ()) -> tuple[str, str]:
    history = customer(days_ago, contacts=contacts)
    got = quadrant_of(history, loyalty_of(history, NOW, RULES), NOW, SATISFACTION)
    return got.quadrant, got.reason


def test_apostle_satisfied_and_loyal() -> None:
    assert quadrant(REGULAR, calls((5, "answered", False))) == (
        "apostle",
        "apostle: satisfied (no complaint and no abandoned call in the last 12 months) and "
        "loyal (buys regularly)",
    )


def test_mercenary_satisfied_not_loyal() -> None:
    assert quadrant(RARE) == (
        "mercenary",
        "mercenary: satisfied (no complaint and no abandoned call in the last 12 months) but "
        "not loyal (does not buy regularly)",
    )


def test_hostage_loyal_not_satisfied() -> None:
    assert quadrant(REGULAR, calls((5, "answered", True))) == (
        "hostage",
        "hostage: loyal (buys regularly) but not satisfied (1 complaint and no abandoned call "
        "in the last 12 months; satisfied means at most 0 complaints and 2 abandoned calls)",
    )


def test_defector_neither() -> None:
    contacts = calls((5, "abandoned", False), (6, "abandoned", False), (7, "abandoned", False))
    assert quadrant(RARE, contacts) == (
        "defector",
        "defector: not satisfied (no complaint and 3 abandoned calls in the last 12 months; "
        "satisfied means at most 0 complaints and 2 abandoned calls) and not loyal (does not "
        "buy regularly)",
    )


def test_abandoned_calls_at_the_limit_are_still_satisfied() -> None:
    contacts = calls((5, "abandoned", False), (6, "abandoned", False), (7, "callback", False))
    assert quadrant(REGULAR, contacts)[0] == "apostle"


def test_signals_outside_the_window_do_not_count() -> None:
    contacts = calls((365, "answered", True), (400, "abandoned", True), (-1, "answered", True))
    assert quadrant(REGULAR, contacts)[0] == "apostle"
    assert quadrant(REGULAR, calls((364.99, "answered", True)))[0] == "hostage"


def test_a_complaint_on_an_abandoned_call_counts_once_in_each() -> None:
    history = customer(REGULAR, contacts=calls((5, "abandoned", True)))
    got = quadrant_of(history, loyalty_of(history, NOW, RULES), NOW, SATISFACTION)
    assert (got.complaints, got.abandoned) == (1, 1)


def test_a_tolerant_satisfaction_rule() -> None:
    history = customer(REGULAR, contacts=calls((5, "answered", True)))
    got = quadrant_of(
        history, loyalty_of(history, NOW, RULES), NOW, SatisfactionRules(max_complaints=1)
    )
    assert got.quadrant == "apostle"


# -- properties ----------------------------------------------------------------------------

history_st = st.builds(
    lambda days, cats, seen: CustomerHistory(
        "c",
        tuple(Order(ago(d), Decimal(10), c) for d, c in zip(days, cats, strict=False)),
        first_seen=None if seen is None else ago(seen),
    ),
    st.lists(st.floats(0, 1500), max_size=30),
    st.lists(st.sampled_from(["a", "b", "c"]), min_size=30, max_size=30),
    st.one_of(st.none(), st.floats(0, 2000)),
)


@settings(max_examples=300, deadline=None)
@given(history_st, st.sampled_from(["a", "b", "d"]))
def test_an_order_now_never_takes_a_reading_away(history: CustomerHistory, cat: str) -> None:
    before = loyalty_of(history, NOW, RULES)
    more = CustomerHistory(
        "c", (*history.orders, Order(NOW, Decimal(10), cat)), first_seen=history.first_seen
    )
    after = loyalty_of(more, NOW, RULES)
    assert after.regular >= before.regular
    assert after.broad >= before.broad or before.tenure_days is None


@settings(max_examples=200, deadline=None)
@given(history_st, st.floats(-1e8, 1e8))
def test_only_elapsed_time_matters(history: CustomerHistory, shift: float) -> None:
    shift = round(shift)  # whole seconds keep the float arithmetic exact
    moved = CustomerHistory(
        "c",
        tuple(Order(o.at + shift, o.amount, o.category) for o in history.orders),
        first_seen=None if history.first_seen is None else history.first_seen + shift,
    )
    a, b = loyalty_of(history, NOW, RULES), loyalty_of(moved, NOW + shift, RULES)
    assert (a.loyalty, a.orders, a.categories) == (b.loyalty, b.orders, b.categories)
