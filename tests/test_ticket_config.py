"""Tickets configuration: the example file, the defaults, the policy chosen per tier and
priority, and bad files rejected naming the file, the key and the fix."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from cti.business_hours import BusinessHours
from tickets.config import TicketSettings, load_ticket_settings, parse_ticket_settings
from tickets.errors import TicketConfigError, TicketStartupError
from tickets.sla import SlaPolicy

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "tickets.yaml"
HOUR = 3600.0


def _example() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _rejected(tmp_path: Path, data: object) -> str:
    path = tmp_path / "tickets.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(TicketConfigError) as info:
        load_ticket_settings(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_the_example_file() -> None:
    settings = load_ticket_settings(EXAMPLE)
    assert settings.categories == ("complaint", "inquiry", "request", "suggestion")
    assert settings.priorities == ("low", "normal", "high", "urgent")
    assert settings.priority_of("complaint") == "high"
    assert settings.priority_of("inquiry") == "normal"
    assert settings.groups["sales-desk"].agents == ("6001", "6002", "6003")
    assert settings.groups["supervisors"].accounts == ("supervisor",)
    assert settings.escalate_to == "supervisors"
    hours = settings.business_hours()
    assert hours.time_zone == "Europe/Paris"
    assert date(2026, 12, 25) in hours.holidays
    # A VIP complaint: one business hour to answer, one business day (10 h) to solve.
    assert settings.policy_for("vip", "high") == SlaPolicy(HOUR, 10 * HOUR, warn_fraction=0.2)
    # Ordinary, normal: a business day to answer, a business week to solve.
    assert settings.policy_for("ordinary", "normal") == SlaPolicy(
        8 * HOUR, 50 * HOUR, warn_fraction=0.2
    )
    # The chain: tier and priority, the tier's default, the section's default.
    assert settings.policy_for("vip", "low").first_response == 2 * HOUR
    assert settings.policy_for(None, "urgent").first_response == 2 * HOUR  # unknown
    assert settings.policy_for("small", "normal").resolution == 100 * HOUR
    del_unknown = _example()
    del del_unknown["sla"]["policies"]["unknown"]
    fallback = parse_ticket_settings(del_unknown, "inline")
    assert fallback.policy_for(None, "urgent") == SlaPolicy(8 * HOUR, 50 * HOUR, 0.2)


def test_no_file_or_an_empty_one_is_the_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "tickets.yaml"
    empty.write_text("# nothing yet\n", encoding="utf-8")
    for settings in (load_ticket_settings(None), load_ticket_settings(empty)):
        assert settings == TicketSettings()
        assert settings.categories == ("complaint", "inquiry", "request", "suggestion")
        assert settings.escalate_to in settings.groups
        # No calendar: deadlines count wall-clock time.
        assert settings.business_hours() == BusinessHours.always_open()
        assert settings.policy_for("vip", "urgent") == SlaPolicy(8 * HOUR, 50 * HOUR, 0.2)


def test_durations_and_warnings(tmp_path: Path) -> None:
    data: dict[str, Any] = {
        "sla": {
            "warn_before": "30m",
            "default": {"first_response": "1h", "resolution": "1h30m"},
            "policies": {
                "vip": {
                    "urgent": {"first_response": "45 m", "resolution": "90s", "warn_before": "10%"}
                }
            },
        }
    }
    with pytest.raises(
        TicketConfigError,
        match=r"key 'sla\.policies\.vip\.urgent': first_response is longer than resolution",
    ):
        parse_ticket_settings(data, "inline")
    data["sla"]["policies"]["vip"]["urgent"]["resolution"] = "2h"
    settings = parse_ticket_settings(data, "inline")
    # The section's warning is a duration, a policy's its own share.
    assert settings.policy_for("key", "low") == SlaPolicy(HOUR, 1.5 * HOUR, warn_seconds=1800)
    vip = settings.policy_for("vip", "urgent")
    assert (vip.first_response, vip.resolution, vip.warn_seconds) == (2700, 2 * HOUR, 0)
    assert vip.warn_fraction == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["sla"]["policies"]["vip"].__setitem__("high", {"first_response": "1d"}),
            r"key 'sla\.policies\.vip\.high\.first_response': '1d' is not a duration; write e\.g\. "
            r"30m, 1h, 1h30m or 90s \(write a business day in hours, e\.g\. 10h for 08:00-18:00\)",
        ),
        (
            lambda d: d["sla"]["policies"]["vip"].__setitem__("high", {"first_response": "1h"}),
            r"key 'sla\.policies\.vip\.high\.resolution' is missing; add it",
        ),
        (
            lambda d: d["sla"]["policies"]["vip"]["high"].__setitem__("first_response", "0m"),
            r"key 'sla\.policies\.vip\.high\.first_response': Input should be greater than 0",
        ),
        (
            lambda d: d["sla"]["default"].__setitem__("resolution", 50),
            r"key 'sla\.default\.resolution': 50 has no unit; write e\.g\. 50h or 50m",
        ),
        (
            lambda d: d["sla"].__setitem__("warn_before", "lots%"),
            r"key 'sla\.warn_before': 'lots%' is not a percentage; write e\.g\. 20%",
        ),
        (
            lambda d: d["sla"].__setitem__("warn_before", "150%"),
            r"key 'sla\.warn_before\.fraction': Input should be less than 1",
        ),
        (
            lambda d: d["sla"]["policies"].__setitem__("gold", {}),
            r"key 'sla\.policies': 'gold' is no customer tier; tiers are vip, key, ordinary, "
            r"small, unknown",
        ),
        (
            lambda d: d["sla"]["policies"]["vip"].__setitem__("critical", {}),
            r"key 'sla\.policies\.vip\.critical\.first_response' is missing",
        ),
        (
            lambda d: d["sla"]["policies"]["vip"].__setitem__(
                "critical", {"first_response": "1h", "resolution": "2h"}
            ),
            r"key 'sla\.policies\.vip\.critical': 'critical' is no configured name; use one of "
            r"low, normal, high, urgent",
        ),
        (
            lambda d: d.__setitem__("escalate_to", "bosses"),
            r"key 'escalate_to': 'bosses' is no configured group; use one of [a-z, -]+ or add "
            r"it under 'groups'",
        ),
        (
            lambda d: d.__setitem__("default_priority", "medium"),
            r"key 'default_priority': 'medium' is no configured name",
        ),
        (
            lambda d: d["category_priority"].__setitem__("praise", "low"),
            r"key 'category_priority\.praise': 'praise' is no configured name; use one of "
            r"complaint, inquiry",
        ),
        (
            lambda d: d["category_priority"].__setitem__("complaint", "asap"),
            r"key 'category_priority\.complaint': 'asap' is no configured name",
        ),
        (
            lambda d: d.__setitem__("categories", ["complaint", "Complaint!"]),
            r"key 'categories': 'Complaint!' is not a name: lower-case letters",
        ),
        (
            lambda d: d.__setitem__("priorities", ["low", "high", "low"]),
            r"key 'priorities': low given twice; keep one",
        ),
        (
            lambda d: d.__setitem__("priorities", []),
            r"key 'priorities': give at least one",
        ),
        (
            lambda d: d["groups"]["sales-desk"].__setitem__("members", ["6001"]),
            r"key 'groups\.sales-desk\.members' is not a setting; check its spelling",
        ),
        (
            lambda d: d["calendar"].__setitem__("time_zone", "Europe/Pariss"),
            r"key 'calendar\.time_zone': unknown time zone 'Europe/Pariss'; use an IANA name",
        ),
        (
            lambda d: d["calendar"]["weekly"].__setitem__("mon", ["18:00-08:00"]),
            r"key 'calendar\.weekly': mon: '18:00-08:00' is not a span 'HH:MM-HH:MM'",
        ),
        (
            lambda d: d.__setitem__("escalation", "supervisors"),
            r"key 'escalation' is not a setting; check its spelling",
        ),
    ],
)
def test_bad_settings_name_file_key_and_fix(tmp_path: Path, change: Any, expected: str) -> None:
    data = _example()
    change(data)
    message = _rejected(tmp_path, data)
    assert message.startswith("invalid tickets configuration:")
    assert re.search(expected, message), message


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    data = _example()
    data["escalate_to"] = "bosses"
    data["default_priority"] = "medium"
    message = _rejected(tmp_path, data)
    assert "key 'escalate_to'" in message and "key 'default_priority'" in message
    assert len(message.splitlines()) == 3


def test_agent_ids_may_be_numbers() -> None:
    data = _example()
    data["groups"]["sales-desk"]["agents"] = [6001, 6002]
    assert parse_ticket_settings(data, "x").groups["sales-desk"].agents == ("6001", "6002")


def test_files_that_cannot_be_used(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(
        TicketConfigError, match="cannot read the tickets configuration file"
    ) as info:
        load_ticket_settings(missing)
    assert info.value.setting == "tickets"
    assert isinstance(info.value, TicketStartupError)
    listed = tmp_path / "list.yaml"
    listed.write_text("- complaint\n", encoding="utf-8")
    with pytest.raises(TicketConfigError, match="the top level must be a mapping"):
        load_ticket_settings(listed)
    twice = tmp_path / "twice.yaml"
    twice.write_text("escalate_to: a\nescalate_to: b\n", encoding="utf-8")
    with pytest.raises(TicketConfigError, match=r"line 2.*duplicate key 'escalate_to'"):
        load_ticket_settings(twice)
