"""ACD configuration: the example file, and bad files rejected with file, key and reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from acd.config import load_acd_config, parse_acd_config
from acd.errors import AcdConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "queues.yaml"


def _epoch(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "queues.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _rejected(tmp_path: Path, data: dict[str, Any]) -> str:
    path = _write(tmp_path, data)
    with pytest.raises(AcdConfigError) as info:
        load_acd_config(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_example_matches_the_simulator_lab() -> None:
    config = load_acd_config(EXAMPLE)
    assert set(config.queues) == {"sales", "support"}
    assert config.queue_of_lane("external") == "sales"
    assert config.queue_of_lane("external-moh") == "support"
    assert config.queue_of_did("5003") == "sales"
    assert config.queue_of_did("5006") == "support"
    assert {a: c.name for a, c in config.agents.items()} == {
        "6001": "Alice",
        "6002": "Bob",
        "6003": "Carol",
    }
    assert config.agents["6003"].queues["sales"] == 1
    assert config.queues["sales"].service_level.percent == 80
    assert config.priority.weight("vip") > config.priority.weight("key") > 0


def test_unquoted_numbers_are_names() -> None:
    config = parse_acd_config(
        {"queues": {"q": {"dids": [5003]}}, "agents": {6001: {"name": "A", "queues": {"q": 0}}}},
        "inline",
    )
    assert config.queues["q"].dids == ("5003",)
    assert "6001" in config.agents


@pytest.mark.parametrize(
    ("queue", "key", "reason"),
    [
        ({"strategy": "random"}, "queues.sales.strategy", "longest_idle"),
        ({"ring_timeout": -1}, "queues.sales.ring_timeout", "greater than 0"),
        ({"wrap_up": -5}, "queues.sales.wrap_up", "greater than or equal to 0"),
        ({"max_wait": -1, "overflow": {"kind": "voicemail", "target": "1"}}, "max_wait", "0"),
        ({"max_wait": 60}, "queues.sales", "add an 'overflow' target"),
        ({"overflow": {"kind": "voicemail"}}, "queues.sales.overflow", "needs a 'target'"),
        ({"skills": {"english": 120}}, "queues.sales.skills", "0-100"),
        ({"colour": "red"}, "queues.sales.colour", "not a setting"),
        ({"hours": {"weekly": {"mon": ["18:00-08:00"]}}}, "weekly", "start before end"),
        ({"hours": {"time_zone": "Mars/Base", "weekly": {}}}, "time_zone", "unknown time zone"),
    ],
)
def test_bad_queue_values_name_file_key_and_reason(
    tmp_path: Path, queue: dict[str, Any], key: str, reason: str
) -> None:
    message = _rejected(tmp_path, {"queues": {"sales": queue}})
    assert key in message
    assert reason in message


def test_overflow_loop_between_queues_is_rejected(tmp_path: Path) -> None:
    message = _rejected(
        tmp_path,
        {
            "queues": {
                "a": {"max_wait": 30, "overflow": {"kind": "queue", "target": "b"}},
                "b": {"max_wait": 30, "overflow": {"kind": "queue", "target": "a"}},
                "c": {"max_wait": 30, "overflow": {"kind": "queue", "target": "a"}},
            }
        },
    )
    assert "overflow loop a -> b -> a" in message
    assert message.count("overflow loop") == 1  # c only leads into the loop


def test_overflow_to_itself_is_a_loop(tmp_path: Path) -> None:
    queues = {"a": {"max_length": 3, "overflow": {"kind": "queue", "target": "a"}}}
    assert "overflow loop a -> a" in _rejected(tmp_path, {"queues": queues})


def test_overflow_chain_that_ends_is_accepted() -> None:
    config = parse_acd_config(
        {
            "queues": {
                "a": {"max_wait": 30, "overflow": {"kind": "queue", "target": "b"}},
                "b": {"max_wait": 30, "overflow": {"kind": "callback", "target": "a"}},
            }
        },
        "inline",
    )
    assert config.queues["b"].overflow_target() == "a"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (
            {"queues": {"a": {"max_wait": 1, "overflow": {"kind": "queue", "target": "nowhere"}}}},
            "queues.a.overflow.target': unknown queue 'nowhere'",
        ),
        (
            {"queues": {"a": {}}, "agents": {"6001": {"name": "A", "queues": {"b": 0}}}},
            "agents.6001.queues.b': unknown queue 'b'",
        ),
        (
            {"queues": {"a": {"lanes": ["external"]}, "b": {"lanes": ["external"]}}},
            "queues.b.lanes': 'external' already feeds queue 'a'",
        ),
    ],
)
def test_unknown_references_are_rejected(tmp_path: Path, data: dict[str, Any], key: str) -> None:
    assert key in _rejected(tmp_path, data)


def test_not_yaml_is_rejected_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text("queues: {sales: [\n", encoding="utf-8")
    with pytest.raises(AcdConfigError, match="not valid YAML"):
        load_acd_config(path)


def test_priority_needs_every_tier(tmp_path: Path) -> None:
    message = _rejected(tmp_path, {"priority": {"weights": {"vip": 10}}, "queues": {"a": {}}})
    assert "priority.weights" in message
    assert "key" in message


PARIS_OFFICE_HOURS = {
    "time_zone": "Europe/Paris",
    "weekly": {
        "mon": ["08:00-12:30", "13:30-18:00"],
        "tue": ["08:00-18:00"],
        "wed": ["08:00-18:00"],
        "thu": ["08:00-18:00"],
        "fri": ["08:00-17:00"],
    },
    "holidays": ["2026-12-25", "2027-01-01"],
}


def test_business_hours_weekly_spans_holidays_and_time_zone() -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["queues"]["sales"]["hours"] = PARIS_OFFICE_HOURS
    hours = parse_acd_config(data, "test").queues["sales"].hours
    assert hours is not None
    # Monday 2026-11-23, Paris is UTC+1: 09:00 UTC is 10:00 there, open.
    assert hours.is_open(_epoch(2026, 11, 23, 9))
    assert not hours.is_open(_epoch(2026, 11, 23, 12))  # 13:00 local: lunch break
    assert hours.next_change(_epoch(2026, 11, 23, 12)) == _epoch(2026, 11, 23, 12, 30)
    assert not hours.is_open(_epoch(2026, 11, 28, 10))  # Saturday
    assert not hours.is_open(_epoch(2026, 12, 25, 10))  # a holiday (a Friday)
    assert hours.is_open(_epoch(2026, 12, 24, 10))
    # Summer time: 07:30 UTC on a July Monday is 09:30 in Paris.
    assert hours.is_open(_epoch(2026, 7, 6, 7, 30))
    assert not hours.is_open(_epoch(2026, 7, 6, 5, 30))


def test_open_until_midnight() -> None:
    config = parse_acd_config(
        {
            "queues": {
                "night": {
                    "hours": {"weekly": {"mon": ["20:00-24:00"]}},
                    "overflow": {"kind": "voicemail", "target": "9000@default"},
                }
            }
        },
        "inline",
    )
    hours = config.queues["night"].hours
    assert hours is not None
    assert hours.is_open(_epoch(2026, 11, 23, 23, 59))
    assert hours.next_change(_epoch(2026, 11, 23, 23)) == _epoch(2026, 11, 24)


def test_tiers_and_the_end_of_day_are_checked() -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert parse_acd_config(data, "x").tiers["+8613700137000"] == "vip"
    data["tiers"] = {"+15550000000": "gold"}
    with pytest.raises(AcdConfigError, match=r"key 'tiers\.\+15550000000'"):
        parse_acd_config(data, "x")
    del data["tiers"]
    data["queues"]["sales"]["hours"] = {"time_zone": "UTC", "weekly": {"mon": ["22:00-24:30"]}}
    with pytest.raises(AcdConfigError, match="not a span"):
        parse_acd_config(data, "x")
    data["queues"]["sales"]["hours"]["weekly"]["mon"] = ["22:00-24:00"]
    assert parse_acd_config(data, "x").queues["sales"].hours is not None


def test_an_estimated_wait_limit_needs_an_overflow_target() -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["queues"]["support"]["max_estimated_wait"] = 120
    assert parse_acd_config(data, "x").queues["support"].max_estimated_wait == 120
    del data["queues"]["support"]["overflow"], data["queues"]["support"]["max_wait"]
    with pytest.raises(AcdConfigError, match="max_estimated_wait set: add an 'overflow'"):
        parse_acd_config(data, "x")
