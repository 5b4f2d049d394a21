"""The customer-profile rules: defaults, the documented file, and bad files refused with the
file, the key and the fix; and docs/customer-profile.md kept true to the code."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from crm_bridge.config import ProfileRules, load_profile_rules, parse_profile_rules
from crm_bridge.errors import CrmConfigError, CrmStartupError
from crm_bridge.profile import NEXT_STEPS, profile_population

DOC = Path(__file__).resolve().parent.parent / "docs" / "customer-profile.md"


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _rejected(data: Any) -> str:
    with pytest.raises(CrmConfigError) as info:
        parse_profile_rules(data, "rules.yaml")
    return str(info.value)


def test_no_file_and_an_empty_file_are_the_defaults(tmp_path: Path) -> None:
    assert load_profile_rules(None) == ProfileRules()
    empty = tmp_path / "rules.yaml"
    empty.write_text("", encoding="utf-8")
    assert load_profile_rules(empty) == ProfileRules()


def test_the_defaults() -> None:
    rules = ProfileRules()
    assert (rules.pyramid.method, rules.pyramid.vip_percent, rules.pyramid.key_percent) == (
        "rank",
        1.0,
        4.0,
    )
    assert rules.pyramid.window_days == 365
    assert rules.loyalty.frequent_orders == 4
    assert rules.lifecycle.development_days > rules.lifecycle.recent_days


def test_the_documented_file_is_the_defaults(tmp_path: Path) -> None:
    block = re.search(r"```yaml\n(.*?)```", _doc(), re.S)
    assert block is not None
    path = tmp_path / "rules.yaml"
    path.write_text(block.group(1), encoding="utf-8")
    assert load_profile_rules(path) == ProfileRules()


def test_a_file_changes_only_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "pyramid:\n  method: threshold\n  vip_from: 10000\n  key_from: 2000.50\n"
        "  small_below: 20\nlifecycle:\n  measure: orders\n",
        encoding="utf-8",
    )
    rules = load_profile_rules(path)
    assert rules.pyramid.key_from == Decimal("2000.5")
    assert rules.pyramid.small_below == Decimal(20)
    assert rules.lifecycle.measure == "orders"
    assert rules.loyalty == ProfileRules().loyalty


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"pyramid": {"vip_percent": 120}},
            "rules.yaml: key 'pyramid.vip_percent': Input should be less than 100 (got 120)",
        ),
        (
            {"pyramid": {"vip_percent": 60, "key_percent": 50}},
            "rules.yaml: key 'pyramid.key_percent': vip_percent + key_percent is 110%, more "
            "than every customer: lower them (got 50.0)",
        ),
        (
            {"pyramid": {"vip_from": 5000}},
            "rules.yaml: key 'pyramid.vip_from': an amount for 'method: threshold'; with "
            "method 'rank' the tiers come from vip_percent and key_percent: set 'method: "
            "threshold' or remove it (got 5000)",
        ),
        (
            {"pyramid": {"method": "threshold", "vip_from": 10_000}},
            "rules.yaml: key 'pyramid.key_from': method 'threshold' needs vip_from and "
            "key_from (revenue amounts over window_days), e.g. vip_from: 10000 and key_from: "
            "2000 (missing or empty)",
        ),
        (
            {"pyramid": {"method": "threshold", "vip_from": 100, "key_from": 200}},
            "rules.yaml: key 'pyramid.key_from': above vip_from (100): the key tier starts "
            "below the VIP tier, lower key_from or raise vip_from (got 200)",
        ),
        (
            {
                "pyramid": {
                    "method": "threshold",
                    "vip_from": 300,
                    "key_from": 200,
                    "key_percent": 2,
                }
            },
            "rules.yaml: key 'pyramid.key_percent': a share for 'method: rank'; with method "
            "'threshold' the tiers come from vip_from and key_from: set 'method: rank' or "
            "remove it (got 2.0)",
        ),
        (
            {
                "pyramid": {
                    "method": "threshold",
                    "vip_from": 1000,
                    "key_from": 200,
                    "small_below": 300,
                }
            },
            "rules.yaml: key 'pyramid.small_below': above key_from (200): small is the layer "
            "under ordinary, lower it (got 300)",
        ),
        (
            {"pyramid": {"method": "tiers"}},
            "rules.yaml: key 'pyramid.method': Input should be 'rank' or 'threshold' (got 'tiers')",
        ),
        (
            {"loyalty": {"frequent_orders": 1}},
            "rules.yaml: key 'loyalty.frequent_orders': Input should be greater than or equal "
            "to 2 (got 1)",
        ),
        (
            {"loyalty": {"frequent_order": 3}},
            "rules.yaml: key 'loyalty.frequent_order' is not a setting; check its spelling "
            "(settings here: window_days, frequent_orders, recent_days, breadth_days, "
            "cross_categories, tenure_days)",
        ),
        (
            {"loyality": {}},
            "rules.yaml: key 'loyality' is not a setting; check its spelling (settings here: "
            "pyramid, loyalty, satisfaction, lifecycle, lifetime_value)",
        ),
        (
            {"satisfaction": 5},
            "rules.yaml: key 'satisfaction' must be a mapping of settings (window_days, "
            "max_complaints, max_abandoned), got 5",
        ),
        (
            {"lifecycle": {"recent_days": 300}},
            "rules.yaml: key 'lifecycle.development_days': must exceed recent_days (300), so "
            "a customer past development has some own past to compare with: raise "
            "development_days or lower recent_days (got 270)",
        ),
        (
            {"lifecycle": {"decline_at": 1}},
            "rules.yaml: key 'lifecycle.decline_at': Input should be less than 1 (got 1)",
        ),
        (
            {"lifecycle": {"growth_at": 1}},
            "rules.yaml: key 'lifecycle.growth_at': Input should be greater than 1 (got 1)",
        ),
        (
            {"lifetime_value": {"retention": 1}},
            "rules.yaml: key 'lifetime_value.retention': Input should be less than 1 (got 1)",
        ),
        (
            {"pyramid": {"window_days": "a year"}},
            "rules.yaml: key 'pyramid.window_days': Input should be a valid integer, unable "
            "to parse string as an integer (got 'a year')",
        ),
    ],
)
def test_bad_rules_name_the_key_and_the_fix(data: dict[str, Any], expected: str) -> None:
    message = _rejected(data)
    assert message.startswith("invalid customer-profile rules:\n  ")
    assert expected in message, message


def test_every_problem_is_listed_at_once() -> None:
    message = _rejected({"pyramid": {"vip_percent": 0}, "loyalty": {"recent_days": 0}})
    assert "'pyramid.vip_percent'" in message
    assert "'loyalty.recent_days'" in message


def test_bad_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(CrmConfigError) as info:
        load_profile_rules(missing)
    assert info.value.setting == "profile_rules"
    assert str(missing) in str(info.value)
    assert isinstance(info.value, CrmStartupError)

    listed = tmp_path / "list.yaml"
    listed.write_text("- pyramid\n", encoding="utf-8")
    with pytest.raises(CrmConfigError, match="the top level must be a mapping"):
        load_profile_rules(listed)

    twice = tmp_path / "twice.yaml"
    twice.write_text("loyalty:\n  recent_days: 90\n  recent_days: 60\n", encoding="utf-8")
    with pytest.raises(CrmConfigError, match="duplicate key 'recent_days'") as info:
        load_profile_rules(twice)
    assert info.value.setting is None

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"pyramid": {"vip_percent": -1}}), encoding="utf-8")
    with pytest.raises(CrmConfigError, match=re.escape(f"{bad}: key 'pyramid.vip_percent'")):
        load_profile_rules(bad)


def test_the_rules_are_frozen() -> None:
    rules = ProfileRules()
    with pytest.raises(ValueError, match="frozen"):
        rules.pyramid.window_days = 30  # type: ignore[misc]


# -- the document says what the code does ----------------------------------------------------


def test_the_documented_next_step_table_is_the_code() -> None:
    doc = _doc()
    for n, rule in enumerate(NEXT_STEPS, 1):
        assert f"| {n} | `{rule.code}` | {rule.when} | {rule.step} |" in doc


def test_the_documented_whole_profile_is_what_the_code_says() -> None:
    from tests.test_crm_profile import CUSTOMERS, NOW, RULES

    history = CUSTOMERS["retention_offer"]
    profile = profile_population([history], NOW, RULES).profiles[history.customer_id]
    doc = _doc()
    for reason in profile.reasons().values():
        assert f"`{reason}`" in doc, reason
