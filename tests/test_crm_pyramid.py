"""The value tier (customer pyramid): hand-made populations whose tiers are known, the
boundaries (a value at a cut-off, ties, the window's edge, empty history), and properties on
random populations (shares respected, equal values equal tiers, more revenue never a lower
tier, the incremental path against a bulk recompute)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_bridge.config import ProfileRules, PyramidRules
from crm_bridge.customer import DAY, CustomerHistory, Order
from crm_bridge.profile import profile_customer, profile_population
from crm_bridge.pyramid import (
    PYRAMID,
    Line,
    Tier,
    TierCutoffs,
    cutoffs_for,
    describe,
    rank_cutoffs,
    ranked_tier,
    threshold_cutoffs,
    tier_of,
    window_value,
)

NOW = 1_750_000_000.0
RANK = PyramidRules()
THRESHOLD = PyramidRules(method="threshold", vip_from=Decimal(10_000), key_from=Decimal(2_000))


def ago(days: float) -> float:
    return NOW - days * DAY


def buyer(cid: str, *amounts: int | str, days_ago: float = 30) -> CustomerHistory:
    """A customer with one order per amount, all ``days_ago`` days ago."""
    return CustomerHistory(cid, tuple(Order(ago(days_ago), Decimal(a), "shoes") for a in amounts))


def population(values: list[int]) -> list[CustomerHistory]:
    return [buyer(f"c{i}", v) for i, v in enumerate(values)]


def tiers(values: list[int], rules: PyramidRules = RANK) -> list[str]:
    run = profile_population(population(values), NOW, ProfileRules(pyramid=rules))
    return [run.profiles[f"c{i}"].tier.tier for i in range(len(values))]


# -- a hand-made pyramid -------------------------------------------------------------------


def pyramid_of_200() -> list[CustomerHistory]:
    """200 customers: 2 VIPs (1%), 8 key (the next 4%), 180 ordinary, 10 without revenue."""
    vips = [buyer("ana", 48_200), buyer("ben", 31_000)]
    keys = [buyer(f"key{i}", 5_000 + 100 * i) for i in range(8)]
    ordinary = [buyer(f"ord{i}", 100 + i) for i in range(180)]
    idle = [CustomerHistory(f"idle{i}") for i in range(10)]
    return vips + keys + ordinary + idle


def test_each_tier_of_a_hand_made_pyramid_with_its_reason() -> None:
    run = profile_population(pyramid_of_200(), NOW, ProfileRules())
    got = {cid: p.tier for cid, p in run.profiles.items()}
    assert got["ana"].tier == "vip"
    assert got["ana"].reason == (
        "VIP: top 1% by 12-month revenue, 48,200 (the best outside the top 1% has 5,700)"
    )
    assert got["ben"].tier == "vip"
    assert {got[f"key{i}"].tier for i in range(8)} == {"key"}
    assert got["key0"].reason == (
        "key: next 4% by 12-month revenue, 5,000 (the best outside the top 5% has 279)"
    )
    assert {got[f"ord{i}"].tier for i in range(180)} == {"ordinary"}
    assert got["ord0"].reason == (
        "ordinary: 12-month revenue 100, key needs more than 5,000 (the top 5%)"
    )
    assert got["idle0"].tier == "ordinary"
    assert got["idle0"].value == 0
    cutoffs = run.cutoffs
    assert (cutoffs.population, cutoffs.vip_places, cutoffs.top_places) == (200, 2, 10)
    assert cutoffs.vip == Line(stay=Decimal(5_700), entry=Decimal(31_000))
    assert cutoffs.key == Line(stay=Decimal(279), entry=Decimal(5_000))
    assert describe(cutoffs) == (
        "200 customers ranked by 12-month revenue: VIP (top 1%, 2 places) above 5,700, "
        "key (next 4%, 8 places) above 279"
    )


def test_a_newcomer_gets_in_by_passing_the_last_place() -> None:
    """A customer outside a tier at the run needs more than the tier's last place; one of
    the tier keeps it while above the best customer left out."""
    cutoffs = profile_population(pyramid_of_200(), NOW, ProfileRules()).cutoffs
    rising = tier_of(Decimal("31000.5"), cutoffs, was="key")
    assert rising.tier == "vip"
    assert rising.reason == (
        "VIP: top 1% by 12-month revenue, 31,000.50 (passes the last VIP place, 31,000)"
    )
    assert tier_of(Decimal(31_000), cutoffs, was="key").tier == "key"  # a tie: both out
    assert tier_of(Decimal(6_000), cutoffs, was="vip").tier == "vip"  # ben, after a refund
    assert tier_of(Decimal(5_700), cutoffs, was="vip").tier == "key"
    assert tier_of(Decimal(300), cutoffs, was="key").reason == (
        "key: next 4% by 12-month revenue, 300 (the best outside the top 5% has 279)"
    )
    assert tier_of(Decimal(200), cutoffs, was="key").reason == (
        "ordinary: 12-month revenue 200, key needs more than 279 (the top 5%)"
    )
    assert tier_of(Decimal(300), cutoffs, was=None).reason == (
        "ordinary: 12-month revenue 300, key needs more than 5,000 (the top 5%)"
    )


def test_small_is_the_layer_under_ordinary_when_configured() -> None:
    rules = ProfileRules(pyramid=PyramidRules(small_below=Decimal(50)))
    customers = [*pyramid_of_200(), buyer("tiny", 49), buyer("fifty", 50)]
    run = profile_population(customers, NOW, rules)
    assert run.profiles["tiny"].tier.tier == "small"
    assert run.profiles["tiny"].tier.reason == "small: 12-month revenue 49, below 50"
    assert run.profiles["idle0"].tier.tier == "small"
    assert run.profiles["fifty"].tier.tier == "ordinary"  # at the threshold: not below it
    assert run.profiles["ana"].tier.tier == "vip"


def test_the_threshold_method_tiers_by_amount() -> None:
    cutoffs = threshold_cutoffs(THRESHOLD, NOW)
    assert tier_of(Decimal(48_200), cutoffs, was=None).reason == (
        "VIP: 12-month revenue 48,200, at least 10,000"
    )
    assert tier_of(Decimal(10_000), cutoffs, was=None).tier == "vip"  # exactly at the cut-off
    assert tier_of(Decimal("9999.99"), cutoffs, was=None).tier == "key"
    assert tier_of(Decimal("9999.99"), cutoffs, was=None).reason == (
        "key: 12-month revenue 9,999.99, at least 2,000 (VIP from 10,000)"
    )
    assert tier_of(Decimal(2_000), cutoffs, was="vip").tier == "key"
    assert tier_of(Decimal(1_999), cutoffs, was="key").reason == (
        "ordinary: 12-month revenue 1,999, below 2,000 for key"
    )
    assert tier_of(Decimal(0), cutoffs, was=None).tier == "ordinary"
    # the threshold method does not need the population
    assert cutoffs_for([], THRESHOLD, NOW) == cutoffs
    assert describe(cutoffs) == "by 12-month revenue: VIP from 10,000, key from 2,000"


def test_threshold_with_small() -> None:
    rules = THRESHOLD.model_copy(update={"small_below": Decimal(100)})
    cutoffs = threshold_cutoffs(rules, NOW)
    small = tier_of(Decimal("99.50"), cutoffs, was=None)
    assert small.reason == "small: 12-month revenue 99.50, below 100"
    assert tier_of(Decimal(100), cutoffs, was=None).tier == "ordinary"


# -- the window ----------------------------------------------------------------------------


def test_the_window_is_the_last_365_days_and_nothing_after_now() -> None:
    history = CustomerHistory(
        "c",
        (
            Order(ago(365), Decimal(1_000), "shoes"),  # exactly a year old: outside
            Order(ago(364.99), Decimal(200), "shoes"),
            Order(NOW, Decimal(30), "shoes"),  # at now: inside
            Order(NOW + 1, Decimal(4_000), "shoes"),  # after now: not counted
            Order(ago(10), Decimal(-50), "shoes"),  # a refund subtracts
        ),
    )
    assert window_value(history, NOW, 365) == Decimal(180)
    assert window_value(history, NOW, 366) == Decimal(1_180)
    assert window_value(CustomerHistory("empty"), NOW, 365) == 0


def test_orders_outside_the_window_do_not_make_a_vip() -> None:
    old = buyer("old", 1_000_000, days_ago=400)
    customers = [*population([100] * 98), old, buyer("new", 500)]
    run = profile_population(customers, NOW, ProfileRules(pyramid=PyramidRules(key_percent=0)))
    assert run.profiles["old"].tier.tier == "ordinary"
    assert run.profiles["old"].tier.value == 0
    assert run.profiles["new"].tier.tier == "vip"  # 1 place in 100: the best value in window


def test_a_longer_window_counts_older_orders() -> None:
    customers = [*population([100] * 99), buyer("old", 1_000_000, days_ago=400)]
    rules = ProfileRules(pyramid=PyramidRules(window_days=730, key_percent=0))
    run = profile_population(customers, NOW, rules)
    assert run.profiles["old"].tier.reason == (
        "VIP: top 1% by 24-month revenue, 1,000,000 (the best outside the top 1% has 100)"
    )


# -- cut-offs: boundaries and ties -----------------------------------------------------------


def test_at_a_rank_line_is_outside_above_it_inside() -> None:
    values = [500, 400, *([100] * 98)]
    cutoffs = rank_cutoffs([Decimal(v) for v in values], RANK, NOW)
    assert cutoffs.vip == Line(stay=Decimal(400), entry=Decimal(500))
    assert ranked_tier(Decimal(500), cutoffs).tier == "vip"
    assert tier_of(Decimal(400), cutoffs, was="vip").tier != "vip"  # at the line: out
    assert tier_of(Decimal("400.01"), cutoffs, was="vip").tier == "vip"
    assert tier_of(Decimal(500), cutoffs, was=None).tier != "vip"  # ties the last place
    assert tier_of(Decimal("500.01"), cutoffs, was=None).tier == "vip"


def test_ties_across_the_last_place_all_stay_out() -> None:
    # 100 customers: 1 VIP place, 5 VIP-or-key places. Two tied at the top: one place
    # cannot split them, so neither is VIP; both are key. Four tied at 300 for the three
    # key places left: none of them is key.
    values = [600, 600, 300, 300, 300, 300, *([100] * 94)]
    got = tiers(values)
    assert got[:2] == ["key", "key"]
    assert got[2:6] == ["ordinary"] * 4
    run = profile_population(population(values), NOW, ProfileRules())
    assert run.profiles["c2"].tier.reason == (
        "ordinary: 12-month revenue 300, tied at the last place of the top 5% with more "
        "customers than it holds"
    )
    assert run.profiles["c0"].tier.reason == (
        "key: next 4% by 12-month revenue, 600 (the best outside the top 5% has 300)"
    )
    assert run.cutoffs.vip == Line(stay=Decimal(600), entry=Decimal(600))


def test_a_tie_at_the_very_top_leaves_the_tiers_empty_and_says_why() -> None:
    values = [1_000] * 100
    assert set(tiers(values)) == {"ordinary"}
    run = profile_population(population(values), NOW, ProfileRules())
    assert run.profiles["c0"].tier.reason == (
        "ordinary: 12-month revenue 1,000, tied at the last place of the top 5% with more "
        "customers than it holds"
    )


def test_too_few_customers_for_a_share() -> None:
    run = profile_population(population([900, 10]), NOW, ProfileRules())
    assert run.profiles["c0"].tier.tier == "ordinary"
    assert run.profiles["c0"].tier.reason == (
        "ordinary: 12-month revenue 900; 2 customers are too few for the top 5%"
    )
    assert run.cutoffs.vip is None and run.cutoffs.key is None
    assert describe(run.cutoffs) == (
        "2 customers ranked by 12-month revenue: VIP (top 1%, 0 places) nobody (too few "
        "customers), key (next 4%, 0 places) nobody (too few customers)"
    )
    # 20 customers: one place for VIP-or-key (5%), none for VIP (1%)
    got = tiers([900, *([10] * 19)])
    assert got[0] == "key"


def test_no_revenue_no_tier() -> None:
    customers = [CustomerHistory(f"c{i}") for i in range(200)]
    run = profile_population(customers, NOW, ProfileRules())
    assert {p.tier.tier for p in run.profiles.values()} == {"ordinary"}
    assert run.profiles["c0"].tier.reason == (
        "ordinary: 12-month revenue 0, key needs more than 0 (the top 5%)"
    )


def test_only_positive_values_are_ranked_and_free_places_are_said_so() -> None:
    # 100 customers, 5 places; only 3 bought: they are the whole top, the rest stay ordinary
    values = [700, 200, 50, *([0] * 97)]
    assert tiers(values)[:4] == ["vip", "key", "key", "ordinary"]
    run = profile_population(population(values), NOW, ProfileRules())
    assert run.profiles["c2"].tier.reason == (
        "key: next 4% by 12-month revenue, 50 (nobody outside the top 5% has revenue)"
    )
    newcomer = tier_of(Decimal(1), run.cutoffs, was=None)
    assert newcomer.reason == "key: next 4% by 12-month revenue, 1 (a key place was free)"


def test_an_empty_population() -> None:
    run = profile_population([], NOW, ProfileRules())
    assert run.profiles == {}
    assert run.cutoffs.population == 0
    assert run.cutoffs.vip is None


def test_the_same_customer_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="'c0' is given twice"):
        profile_population([buyer("c0", 1), buyer("c0", 2)], NOW, ProfileRules())


def test_shares_are_exact_decimals() -> None:
    # 29% of 100 is 29 places, not 28 (0.29 * 100 is 28.999... in binary floating point)
    rules = PyramidRules(vip_percent=1, key_percent=28)
    cutoffs = rank_cutoffs([Decimal(v) for v in range(1, 101)], rules, NOW)
    assert cutoffs.top_places == 29
    assert cutoffs.key == Line(stay=Decimal(71), entry=Decimal(72))


def test_the_stored_cut_offs_keep_their_window() -> None:
    """A later incremental evaluation uses the window the cut-offs were computed with."""
    cutoffs = TierCutoffs(
        at=NOW,
        method="threshold",
        window_days=30,
        vip=Line(Decimal(100), Decimal(100)),
        key=Line(Decimal(50), Decimal(50)),
    )
    history = buyer("c", 500, days_ago=40)
    profile = profile_customer(history, cutoffs, NOW, ProfileRules(), was=None)
    assert profile.tier.value == 0
    assert profile.tier.reason == "ordinary: 1-month revenue 0, below 50 for key"


# -- properties ----------------------------------------------------------------------------

# Small integers force ties; a few large ones a steep pyramid.
values_st = st.lists(
    st.one_of(st.integers(0, 30), st.integers(0, 1_000_000)), min_size=0, max_size=300
)
shares_st = st.tuples(
    st.sampled_from([0.5, 1.0, 2.5, 5.0, 10.0]), st.sampled_from([0.0, 4.0, 10.0, 20.0])
)


def _rules(shares: tuple[float, float]) -> PyramidRules:
    return PyramidRules(vip_percent=shares[0], key_percent=shares[1])


@settings(max_examples=300, deadline=None)
@given(values_st, shares_st)
def test_shares_are_ceilings_and_filled_as_far_as_ties_allow(
    values: list[int], shares: tuple[float, float]
) -> None:
    rules = _rules(shares)
    decimals = [Decimal(v) for v in values]
    cutoffs = rank_cutoffs(decimals, rules, NOW)
    got = [ranked_tier(v, cutoffs).tier for v in decimals]
    n = len(values)
    vip_places = int(n * Decimal(str(shares[0])) / 100)
    top_places = int(n * (Decimal(str(shares[0])) + Decimal(str(shares[1]))) / 100)
    vips = got.count("vip")
    tops = vips + got.count("key")
    assert vips <= vip_places
    assert tops <= top_places
    # Not under-filled: the best customer left out has revenue and a tie that would
    # overflow the places.
    for places, members in ((vip_places, {"vip"}), (top_places, {"vip", "key"})):
        left_out = [v for v, t in zip(decimals, got, strict=True) if t not in members]
        best = max(left_out, default=None)
        if best is not None and best > 0:
            assert sum(1 for v in decimals if v >= best) > places


@settings(max_examples=200, deadline=None)
@given(values_st, shares_st, st.sampled_from(["vip", "key", "ordinary", None]))
def test_equal_values_get_equal_tiers_and_higher_values_no_lower_tier(
    values: list[int], shares: tuple[float, float], was: Tier | None
) -> None:
    cutoffs = rank_cutoffs([Decimal(v) for v in values], _rules(shares), NOW)
    for judge in (lambda v: ranked_tier(v, cutoffs), lambda v: tier_of(v, cutoffs, was=was)):
        by_value = {v: judge(Decimal(v)).tier for v in [*values, 0, 10**7]}
        ranks = [PYRAMID.index(by_value[v]) for v in sorted(by_value)]
        assert ranks == sorted(ranks, reverse=True)  # ascending value: never a worse tier


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 5_000), min_size=1, max_size=150),
    st.data(),
    st.integers(1, 20_000),
    shares_st,
)
def test_more_revenue_never_lowers_the_tier_in_a_bulk_recompute(
    values: list[int], data: st.DataObject, extra: int, shares: tuple[float, float]
) -> None:
    i = data.draw(st.integers(0, len(values) - 1))
    rules = ProfileRules(pyramid=_rules(shares))
    before = profile_population(population(values), NOW, rules).profiles[f"c{i}"].tier
    richer = population(values)
    richer[i] = buyer(f"c{i}", values[i], extra)
    after = profile_population(richer, NOW, rules).profiles[f"c{i}"].tier
    assert PYRAMID.index(after.tier) <= PYRAMID.index(before.tier)


@settings(max_examples=100, deadline=None)
@given(values_st, shares_st)
def test_the_incremental_path_agrees_with_the_bulk_run_on_the_same_data(
    values: list[int], shares: tuple[float, float]
) -> None:
    rules = ProfileRules(pyramid=_rules(shares))
    customers = population(values)
    run = profile_population(customers, NOW, rules)
    for history in customers:
        was = run.profiles[history.customer_id].tier.tier
        again = profile_customer(history, run.cutoffs, NOW, rules, was=was)
        assert again == run.profiles[history.customer_id]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.integers(0, 30), st.integers(0, 5_000)), min_size=1, max_size=150),
    st.data(),
    st.one_of(st.integers(-5_000, -1), st.integers(1, 20_000)),
    shares_st,
)
def test_a_change_to_one_customer_incrementally_equals_a_bulk_recompute(
    values: list[int], data: st.DataObject, change: int, shares: tuple[float, float]
) -> None:
    """A new order (or a refund) for one customer, evaluated against the stored cut-offs
    and the customer's tier in that run, gives the tier a full recompute gives."""
    i = data.draw(st.integers(0, len(values) - 1))
    rules = ProfileRules(pyramid=_rules(shares))
    run = profile_population(population(values), NOW, rules)
    customers = population(values)
    customers[i] = buyer(f"c{i}", values[i], change)
    was = run.profiles[f"c{i}"].tier.tier
    incremental = profile_customer(customers[i], run.cutoffs, NOW, rules, was=was)
    recomputed = profile_population(customers, NOW, rules).profiles[f"c{i}"]
    assert incremental.tier.tier == recomputed.tier.tier
    assert incremental.tier.value == recomputed.tier.value


def test_the_threshold_method_incremental_and_bulk_agree() -> None:
    rules = ProfileRules(pyramid=THRESHOLD)
    customers = [buyer("a", 12_000), buyer("b", 2_000), buyer("c", 1_999)]
    run = profile_population(customers, NOW, rules)
    assert [run.profiles[c].tier.tier for c in "abc"] == ["vip", "key", "ordinary"]
    for history in customers:
        again = profile_customer(history, run.cutoffs, NOW, rules, was=None)
        assert again == run.profiles[history.customer_id]
