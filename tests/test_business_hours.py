"""The shared business calendar: open or closed, and the SLA arithmetic (open seconds added
and measured) across weekends, holidays, daylight-saving changes and time zones.

The hand-computed cases give local times and check UTC instants worked out by hand (the
offsets are in the comments), so a wrong zone or a DST slip shows as a wrong hour.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cti.business_hours import WEEKDAYS, BusinessHours

HOUR = 3600.0
OFFICE = {day: ("08:00-18:00",) for day in ("mon", "tue", "wed", "thu", "fri")}
PARIS = BusinessHours(time_zone="Europe/Paris", weekly=OFFICE)


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def _local(zone: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone)).timestamp()


# -- hand-computed cases -----------------------------------------------------------------------


def test_friday_evening_plus_one_hour_is_monday_morning() -> None:
    # Friday 2026-11-20 17:30 in Paris (UTC+1) is 16:30 UTC; half an hour is left that day,
    # the other half is Monday 08:00-08:30 Paris = 07:30 UTC.
    start = _utc(2026, 11, 20, 16, 30)
    due = PARIS.add_business_seconds(start, HOUR)
    assert due == _utc(2026, 11, 23, 7, 30)
    assert PARIS.business_seconds(start, due) == HOUR


def test_a_deadline_that_uses_up_the_day_falls_on_its_close() -> None:
    # Friday 08:00 + ten business hours = Friday 18:00 (not Monday 08:00).
    start = _local("Europe/Paris", 2026, 11, 20, 8)
    assert PARIS.add_business_seconds(start, 10 * HOUR) == _local("Europe/Paris", 2026, 11, 20, 18)
    # One more second is Monday 08:00:01.
    monday = _local("Europe/Paris", 2026, 11, 23, 8)
    assert PARIS.add_business_seconds(start, 10 * HOUR + 1) == monday + 1


def test_a_start_at_night_counts_from_the_next_opening() -> None:
    # Tuesday 02:00 + 1 h = Tuesday 09:00, whatever the night.
    start = _local("Europe/Paris", 2026, 11, 24, 2)
    assert PARIS.add_business_seconds(start, HOUR) == _local("Europe/Paris", 2026, 11, 24, 9)
    assert PARIS.add_business_seconds(start, 0) == start


def test_a_holiday_is_skipped() -> None:
    # Christmas 2026 is a Friday: Thursday 24th 17:00 + 2 h = 1 h that day, then Monday 28th
    # 08:00-09:00 (Paris is UTC+1: 08:00 UTC).
    hours = BusinessHours(time_zone="Europe/Paris", weekly=OFFICE, holidays=(date(2026, 12, 25),))
    start = _local("Europe/Paris", 2026, 12, 24, 17)
    assert hours.add_business_seconds(start, 2 * HOUR) == _utc(2026, 12, 28, 8)
    # Without the holiday the same deadline is Friday 09:00.
    assert PARIS.add_business_seconds(start, 2 * HOUR) == _utc(2026, 12, 25, 8)
    # The whole holiday weekend holds one open hour of Thursday and one of Monday.
    assert hours.business_seconds(start, _utc(2026, 12, 28, 8)) == 2 * HOUR


def test_a_long_run_of_holidays() -> None:
    # Three weeks of holidays from Monday 2026-12-14: one business day after Friday 11th
    # 08:00 is Friday 18:00; two are Monday 2027-01-04 18:00 (UTC+1: 17:00 UTC).
    closed = tuple(date(2026, 12, 14) + timedelta(days=n) for n in range(21))
    hours = BusinessHours(time_zone="Europe/Paris", weekly=OFFICE, holidays=closed)
    start = _local("Europe/Paris", 2026, 12, 11, 8)
    assert hours.add_business_seconds(start, 20 * HOUR) == _utc(2027, 1, 4, 17)


def test_spring_forward_weekend() -> None:
    # Paris leaves UTC+1 for UTC+2 on Sunday 2027-03-28. Friday 26th 17:00 (16:00 UTC) + 2
    # business hours = Monday 29th 09:00 CEST = 07:00 UTC: 63 real hours later, not 64.
    start = _utc(2027, 3, 26, 16)
    due = PARIS.add_business_seconds(start, 2 * HOUR)
    assert due == _utc(2027, 3, 29, 7)
    assert due - start == 63 * HOUR


def test_a_span_across_the_spring_forward_night_is_an_hour_shorter() -> None:
    # 00:00-06:00 every day; on 2027-03-28 02:00 CET becomes 03:00 CEST: five real hours,
    # from 23:00 UTC (Saturday) to 04:00 UTC.
    nights = BusinessHours(
        time_zone="Europe/Paris", weekly={day: ("00:00-06:00",) for day in WEEKDAYS}
    )
    sunday = _local("Europe/Paris", 2027, 3, 28)
    assert sunday == _utc(2027, 3, 27, 23)
    assert nights.business_seconds(sunday, sunday + 12 * HOUR) == 5 * HOUR
    # Saturday 05:00 CET + 2 h: Saturday 05:00-06:00, then Sunday 00:00-01:00 CET.
    saturday = _local("Europe/Paris", 2027, 3, 27, 5)
    assert nights.add_business_seconds(saturday, 2 * HOUR) == _utc(2027, 3, 28, 0)
    # 4.5 h into Sunday's night is 05:30 CEST = 03:30 UTC.
    assert nights.add_business_seconds(sunday, 4.5 * HOUR) == _utc(2027, 3, 28, 3, 30)


def test_a_span_across_the_fall_back_night_is_an_hour_longer() -> None:
    # Paris returns to UTC+1 on Sunday 2026-10-25 at 03:00 CEST: 00:00-06:00 that day runs
    # from 22:00 UTC (Saturday) to 05:00 UTC, seven real hours.
    nights = BusinessHours(
        time_zone="Europe/Paris", weekly={day: ("00:00-06:00",) for day in WEEKDAYS}
    )
    sunday = _local("Europe/Paris", 2026, 10, 25)
    assert sunday == _utc(2026, 10, 24, 22)
    assert nights.business_seconds(sunday, sunday + 12 * HOUR) == 7 * HOUR
    assert nights.add_business_seconds(sunday, 7 * HOUR) == _utc(2026, 10, 25, 5)


def test_the_same_hours_in_other_time_zones() -> None:
    # Friday 2026-11-20 23:00 UTC: Friday 18:00 in New York (UTC-5, closed), Saturday 08:00
    # in Tokyo (UTC+9). With 09:00-17:00 Mon-Fri, one business hour later is Monday 10:00
    # local: 15:00 UTC in New York, 01:00 UTC in Tokyo.
    weekly = {day: ("09:00-17:00",) for day in ("mon", "tue", "wed", "thu", "fri")}
    start = _utc(2026, 11, 20, 23)
    new_york = BusinessHours(time_zone="America/New_York", weekly=weekly)
    tokyo = BusinessHours(time_zone="Asia/Tokyo", weekly=weekly)
    assert new_york.add_business_seconds(start, HOUR) == _utc(2026, 11, 23, 15)
    assert tokyo.add_business_seconds(start, HOUR) == _utc(2026, 11, 23, 1)
    # Kathmandu is UTC+5:45: Monday 09:00 there is 03:15 UTC.
    kathmandu = BusinessHours(time_zone="Asia/Kathmandu", weekly=weekly)
    assert kathmandu.add_business_seconds(start, HOUR) == _utc(2026, 11, 23, 4, 15)


def test_a_lunch_break_and_spans_that_meet_at_midnight() -> None:
    # Monday 08:00-12:30 and 13:30-18:00: 12:00 + 1 h = 14:00 (UTC+1: 13:00 UTC).
    split = BusinessHours(time_zone="Europe/Paris", weekly={"mon": ("08:00-12:30", "13:30-18:00")})
    assert split.add_business_seconds(_utc(2026, 11, 23, 11), HOUR) == _utc(2026, 11, 23, 13)
    # Monday 20:00-24:00 and Tuesday 00:00-06:00 make one open night: 23:00 + 2 h = 01:00.
    night = BusinessHours(weekly={"mon": ("20:00-24:00",), "tue": ("00:00-06:00",)})
    monday = _utc(2026, 11, 23)
    assert night.add_business_seconds(monday + 23 * HOUR, 2 * HOUR) == _utc(2026, 11, 24, 1)
    spans = night.open_spans(monday + 21 * HOUR)
    assert next(spans) == (_utc(2026, 11, 23, 21), _utc(2026, 11, 24))
    assert next(spans) == (_utc(2026, 11, 24), _utc(2026, 11, 24, 6))
    assert next(spans) == (_utc(2026, 11, 30, 20), _utc(2026, 12, 1))


def test_overlapping_spans_count_once() -> None:
    hours = BusinessHours(weekly={"mon": ("08:00-12:00", "10:00-14:00", "09:00-10:00")})
    monday = _utc(2026, 11, 23)
    assert hours.business_seconds(monday, monday + 24 * HOUR) == 6 * HOUR
    assert hours.add_business_seconds(monday, 5 * HOUR) == _utc(2026, 11, 23, 13)


def test_always_open_is_wall_clock_time_even_across_dst() -> None:
    always = BusinessHours.always_open("Europe/Paris")
    start = _utc(2027, 3, 27, 12)  # the day before spring-forward
    assert always.add_business_seconds(start, 48 * HOUR) == start + 48 * HOUR
    assert always.business_seconds(start, start + 48 * HOUR) == 48 * HOUR
    assert always.is_open(start)
    assert BusinessHours.always_open().add_business_seconds(start, 90.5) == start + 90.5


def test_closed_time_counts_nothing() -> None:
    # Saturday and Sunday, and a span given backwards.
    saturday = _local("Europe/Paris", 2026, 11, 21)
    assert PARIS.business_seconds(saturday, saturday + 48 * HOUR) == 0
    assert PARIS.business_seconds(saturday + 48 * HOUR, saturday) == 0
    # Inside the day only the part after 08:00 counts.
    monday = saturday + 48 * HOUR
    assert PARIS.business_seconds(saturday, monday + 9 * HOUR) == HOUR


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        PARIS.add_business_seconds(0.0, -1)
    never = BusinessHours(weekly={})
    with pytest.raises(ValueError, match="never open"):
        never.add_business_seconds(0.0, 60)
    with pytest.raises(ValueError, match="never open"):
        never.business_seconds(0.0, 60)
    assert not never.is_open(0.0)
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        BusinessHours(time_zone="Mars/Olympus", weekly=OFFICE)
    with pytest.raises(ValidationError, match="not a span"):
        BusinessHours(weekly={"mon": ("18:00-08:00",)})


def test_the_acd_still_reads_its_calendar_from_acd_config() -> None:
    from acd.config import BusinessHours as AcdBusinessHours
    from acd.config import QueueConfig

    assert AcdBusinessHours is BusinessHours
    assert QueueConfig.model_fields["hours"].annotation == BusinessHours | None


# -- properties --------------------------------------------------------------------------------

ZONES = (
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Asia/Kathmandu",  # +05:45
    "Australia/Lord_Howe",  # a 30-minute DST change
    "America/Santiago",  # DST changes at midnight
)
EPOCH_2026 = _utc(2026, 1, 1)
EPOCH_2029 = _utc(2029, 1, 1)


@st.composite
def _spans(draw: st.DrawFn) -> tuple[str, ...]:
    edges = draw(st.lists(st.integers(0, 24 * 4), min_size=0, max_size=4, unique=True))
    edges.sort()
    spans = []
    for a, b in zip(edges[::2], edges[1::2], strict=False):
        spans.append(f"{a // 4:02d}:{a % 4 * 15:02d}-{b // 4:02d}:{b % 4 * 15:02d}")
    return tuple(spans)


@st.composite
def calendars(draw: st.DrawFn) -> BusinessHours:
    weekly = {day: draw(_spans()) for day in WEEKDAYS if draw(st.booleans())}
    assume(any(weekly.values()))
    holidays = draw(
        st.lists(st.dates(date(2025, 12, 1), date(2029, 2, 1)), max_size=30, unique=True)
    )
    return BusinessHours(
        time_zone=draw(st.sampled_from(ZONES)), weekly=weekly, holidays=tuple(holidays)
    )


instants = st.floats(EPOCH_2026, EPOCH_2029, allow_nan=False)
durations = st.floats(0, 10 * 24 * HOUR, allow_nan=False)
# Epoch seconds near 2027 are ~1.8e9: a float's step there is ~2.4e-7 s.
TOLERANCE = 1e-5


@settings(max_examples=300, deadline=None)
@given(calendars(), instants, durations)
def test_adding_then_measuring_gives_the_seconds_back(
    hours: BusinessHours, start: float, seconds: float
) -> None:
    due = hours.add_business_seconds(start, seconds)
    assert due >= start
    assert hours.business_seconds(start, due) == pytest.approx(seconds, abs=TOLERANCE)


@settings(max_examples=300, deadline=None)
@given(calendars(), instants, durations, durations, st.floats(0, 10 * 24 * HOUR))
def test_adding_is_monotonic(
    hours: BusinessHours, start: float, a: float, b: float, later: float
) -> None:
    low, high = sorted((a, b))
    assert hours.add_business_seconds(start, low) <= hours.add_business_seconds(start, high)
    assert hours.add_business_seconds(start, low) <= hours.add_business_seconds(start + later, low)


@settings(max_examples=300, deadline=None)
@given(calendars(), instants, st.floats(0, 20 * 24 * HOUR), st.floats(0, 20 * 24 * HOUR))
def test_measuring_is_additive_and_bounded(
    hours: BusinessHours, start: float, first: float, second: float
) -> None:
    middle, end = start + first, start + first + second
    whole = hours.business_seconds(start, end)
    assert 0 <= whole <= end - start + TOLERANCE
    parts = hours.business_seconds(start, middle) + hours.business_seconds(middle, end)
    assert whole == pytest.approx(parts, abs=TOLERANCE)


@settings(max_examples=300, deadline=None)
@given(calendars(), instants)
def test_a_closed_stretch_counts_nothing(hours: BusinessHours, now: float) -> None:
    opens, closes = next(hours.open_spans(now))
    assert now <= opens < closes
    # Open exactly when the next open span has begun; until it does, nothing counts.
    assert hours.is_open(now) == (opens == now)
    assert hours.business_seconds(now, opens) == 0
    assert hours.business_seconds(opens, closes) == pytest.approx(closes - opens)
