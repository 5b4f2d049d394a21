"""The ACD's tier look-up: the static table overrides the computed tiers; both answer from
memory; a reload swaps the whole table."""

from __future__ import annotations

from crm_bridge.tiers import StaticTiers, TierIndex


def test_the_static_table_overrides_the_computed_tiers() -> None:
    computed = TierIndex()
    computed.replace({"+4930111": "vip", "+4930222": "key"})
    tiers = StaticTiers({"+4930222": "ordinary", "+4930333": "vip"}, fallback=computed)
    assert tiers.tier_of("+4930111") == "vip"  # computed
    assert tiers.tier_of("+4930222") == "ordinary"  # the override wins
    assert tiers.tier_of("+4930333") == "vip"  # only in the table
    assert tiers.tier_of("+4930444") == "ordinary"  # nobody knows it
    assert tiers.tier_of(None) == "ordinary"  # withheld


def test_without_computed_tiers_the_table_and_its_default_answer() -> None:
    tiers = StaticTiers({"+1555": "key"}, default="ordinary")
    assert tiers.tier_of("+1555") == "key"
    assert tiers.tier_of("+1666") == "ordinary"
    assert tiers.tier_of(None) == "ordinary"


def test_a_reload_replaces_the_whole_index() -> None:
    index = TierIndex()
    source = {"+1": "vip", "+2": "key"}
    index.replace(source)
    source["+3"] = "vip"  # the caller's dict is copied: later changes do not leak in
    assert len(index) == 2
    index.replace({"+2": "vip"})
    assert index.tier_of("+1") == "ordinary"
    assert index.tier_of("+2") == "vip"
    assert len(index) == 1


def test_an_update_changes_only_the_numbers_given() -> None:
    index = TierIndex()
    index.replace({"+1": "vip", "+2": "key"})
    index.update({"+2": "ordinary", "+3": "key"})
    assert [index.tier_of(n) for n in ("+1", "+2", "+3")] == ["vip", "ordinary", "key"]
    assert len(index) == 3
