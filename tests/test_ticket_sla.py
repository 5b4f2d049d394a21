"""The SLA clock: deadlines in business hours across weekends, holidays, time zones and
pauses (hand-computed: local times in the comments, UTC instants checked), states, the next
event, and invariants over random histories."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.business_hours import BusinessHours
from tickets.sla import DEADLINES, SlaClock, SlaEvent, SlaPolicy, worst

HOUR = 3600.0
OFFICE = {day: ("08:00-18:00",) for day in ("mon", "tue", "wed", "thu", "fri")}
PARIS = BusinessHours(
    time_zone="Europe/Paris", weekly=OFFICE, holidays=(date(2026, 12, 25), date(2027, 1, 1))
)
#: A VIP complaint: answered within a business hour, solved within a business day (10 h).
VIP = SlaPolicy(first_response=HOUR, resolution=10 * HOUR, warn_fraction=0.2)
#: Ordinary: 8 business hours to answer, 5 business days (50 h) to solve.
ORDINARY = SlaPolicy(first_response=8 * HOUR, resolution=50 * HOUR, warn_seconds=2 * HOUR)


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def _paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo("Europe/Paris")).timestamp()


# -- hand-computed cases -----------------------------------------------------------------------


def test_a_vip_complaint_opened_on_friday_evening() -> None:
    # Friday 2026-11-20 17:30 Paris (UTC+1). First response: half an hour Friday, half an
    # hour Monday: due Monday 08:30 (07:30 UTC), warning 12 min (20%) earlier. Resolution:
    # 0.5 h Friday + 9.5 h Monday: due Monday 17:30 (16:30 UTC), warning 2 h earlier.
    opened = _paris(2026, 11, 20, 17, 30)
    clock = SlaClock(VIP, PARIS, opened)
    first, resolution = clock.first_response(opened), clock.resolution(opened)
    assert (first.due, first.warn_at) == (_utc(2026, 11, 23, 7, 30), _utc(2026, 11, 23, 7, 18))
    assert (resolution.due, resolution.warn_at) == (
        _utc(2026, 11, 23, 16, 30),
        _utc(2026, 11, 23, 14, 30),
    )
    assert first.state == resolution.state == "ok" and first.running
    assert first.remaining == HOUR
    # Saturday noon: nothing has counted.
    saturday = _utc(2026, 11, 21, 11)
    assert clock.first_response(saturday).remaining == pytest.approx(0.5 * HOUR)
    assert clock.state(saturday) == "ok"
    # Monday 08:20 Paris: the first response is in warning, the resolution still ok.
    assert clock.first_response(_utc(2026, 11, 23, 7, 20)).state == "warning"
    assert clock.state(_utc(2026, 11, 23, 7, 20)) == "warning"
    assert clock.state(_utc(2026, 11, 23, 7, 30)) == "breached"
    # The events, one timer at a time.
    events = []
    now = opened
    while (event := clock.next_event(now)) is not None:
        events.append(event)
        now = event.at
    assert events == [
        SlaEvent(_utc(2026, 11, 23, 7, 18), "first_response", "warning"),
        SlaEvent(_utc(2026, 11, 23, 7, 30), "first_response", "breached"),
        SlaEvent(_utc(2026, 11, 23, 14, 30), "resolution", "warning"),
        SlaEvent(_utc(2026, 11, 23, 16, 30), "resolution", "breached"),
    ]
    assert clock.events(opened) == events


def test_answered_in_time_is_met_and_stays_met() -> None:
    opened = _paris(2026, 11, 20, 17, 30)
    answered = _paris(2026, 11, 23, 8, 25)
    clock = SlaClock(VIP, PARIS, opened, [(opened + 60, "open")], first_response_at=answered)
    for now in (answered, _utc(2026, 11, 30), _utc(2027, 6, 1)):
        first = clock.first_response(now)
        assert (first.state, first.met_at, first.running) == ("met", answered, False)
        assert first.due == _utc(2026, 11, 23, 7, 30)
    # Only the resolution can still fire.
    assert clock.next_event(answered) == SlaEvent(
        _utc(2026, 11, 23, 14, 30), "resolution", "warning"
    )
    # Resolved Monday 18:00 Paris: half an hour late, breached for good.
    late = SlaClock(
        VIP,
        PARIS,
        opened,
        [(opened + 60, "open"), (_paris(2026, 11, 23, 18), "resolved")],
        first_response_at=answered,
    )
    assert late.resolution(_utc(2027, 1, 1)).state == "breached"
    assert late.state(_utc(2027, 1, 1)) == "breached"
    assert late.next_event(_paris(2026, 11, 23, 18)) is None


def test_on_the_dot_is_met() -> None:
    opened = _paris(2026, 11, 23, 8)
    clock = SlaClock(VIP, PARIS, opened, first_response_at=_paris(2026, 11, 23, 9))
    assert clock.first_response(_utc(2026, 12, 1)).state == "met"


def test_across_christmas_and_new_year() -> None:
    # Thursday 2026-12-24 17:00 Paris, Friday 25th and Friday 1 Jan closed. First response
    # (8 h): 1 h Thursday + 7 h Monday 28th = 15:00 (14:00 UTC). Resolution (50 h): 1 h
    # Thursday, 10 h each Monday 28th to Thursday 31st (41), 9 h Monday 4 Jan = 17:00
    # (16:00 UTC).
    opened = _paris(2026, 12, 24, 17)
    clock = SlaClock(ORDINARY, PARIS, opened)
    assert clock.first_response_due(opened) == _utc(2026, 12, 28, 14)
    assert clock.resolution_due(opened) == _utc(2027, 1, 4, 16)
    # Warnings two business hours ahead: Monday 13:00 and Monday 4 Jan 15:00 Paris.
    assert clock.first_response(opened).warn_at == _utc(2026, 12, 28, 12)
    assert clock.resolution(opened).warn_at == _utc(2027, 1, 4, 14)


def test_time_zones() -> None:
    # Friday 2026-11-20 23:00 UTC: Friday 18:00 in New York (closed), Saturday 08:00 in
    # Tokyo. 09:00-17:00 Mon-Fri; a business hour is due Monday 10:00 local.
    weekly = {day: ("09:00-17:00",) for day in ("mon", "tue", "wed", "thu", "fri")}
    opened = _utc(2026, 11, 20, 23)
    policy = SlaPolicy(first_response=HOUR, resolution=8 * HOUR)
    new_york = SlaClock(policy, BusinessHours(time_zone="America/New_York", weekly=weekly), opened)
    tokyo = SlaClock(policy, BusinessHours(time_zone="Asia/Tokyo", weekly=weekly), opened)
    assert new_york.first_response_due(opened) == _utc(2026, 11, 23, 15)
    assert tokyo.first_response_due(opened) == _utc(2026, 11, 23, 1)
    # A whole business day: Monday 17:00 local.
    assert new_york.resolution_due(opened) == _utc(2026, 11, 23, 22)
    assert tokyo.resolution_due(opened) == _utc(2026, 11, 23, 8)


def test_across_the_spring_forward_weekend() -> None:
    # Friday 2027-03-26 17:00 CET (16:00 UTC); Paris moves to CEST on Sunday. A VIP's first
    # response: 1 h Friday = due Friday 18:00; the resolution: 9 h left on Monday from
    # 08:00 CEST (06:00 UTC) = 17:00 CEST = 15:00 UTC.
    opened = _utc(2027, 3, 26, 16)
    clock = SlaClock(VIP, PARIS, opened)
    assert clock.first_response_due(opened) == _utc(2027, 3, 26, 17)
    assert clock.resolution_due(opened) == _utc(2027, 3, 29, 15)


def test_waiting_for_the_customer_pauses_the_clock() -> None:
    # Monday 2026-11-23 09:00 Paris, 8 business hours to solve, answered at 10:00. Waiting
    # for the customer from 11:00 (2 h used) until Tuesday 10:00: 6 h left from then, due
    # Tuesday 16:00 (15:00 UTC) instead of Monday 17:00.
    policy = SlaPolicy(first_response=HOUR, resolution=8 * HOUR, warn_seconds=HOUR)
    opened = _paris(2026, 11, 23, 9)
    answered = _paris(2026, 11, 23, 10)
    pause, resume = _paris(2026, 11, 23, 11), _paris(2026, 11, 24, 10)
    running = SlaClock(policy, PARIS, opened, [(opened, "open")], first_response_at=answered)
    assert running.resolution_due(opened) == _paris(2026, 11, 23, 17)
    history = [(opened, "open"), (pause, "pending_customer")]
    paused = SlaClock(policy, PARIS, opened, history, first_response_at=answered)
    # While it waits, the due instant is where it would be if work resumed now, and no
    # timer is needed: only a status change can start the clock again.
    at_three = _paris(2026, 11, 23, 15)
    waiting = paused.resolution(at_three)
    assert not waiting.running and waiting.state == "ok" and waiting.remaining == 6 * HOUR
    assert waiting.due == _paris(2026, 11, 24, 11)  # 15:00 + 3 h Monday + 3 h Tuesday
    assert paused.next_event(at_three) is None
    resumed = SlaClock(
        policy, PARIS, opened, [*history, (resume, "open")], first_response_at=answered
    )
    assert resumed.resolution_due(resume) == _utc(2026, 11, 24, 15)
    assert resumed.next_event(resume) == SlaEvent(_utc(2026, 11, 24, 14), "resolution", "warning")
    # The first response was met before the pause: untouched.
    assert resumed.first_response(resume).state == "met"


def test_a_pause_over_the_weekend_counts_no_open_time() -> None:
    # Opened Friday 2026-11-20 16:00 Paris, VIP. Waiting from 17:00 (1 h used) to Monday
    # 10:00: Monday 08:00-10:00 does not count; 9 h left from 10:00 = Monday 19:00 is past
    # closing: 8 h Monday, 1 h Tuesday: due Tuesday 09:00 (08:00 UTC).
    opened = _paris(2026, 11, 20, 16)
    history = [
        (opened, "open"),
        (_paris(2026, 11, 20, 17), "pending_customer"),
        (_paris(2026, 11, 23, 10), "open"),
    ]
    clock = SlaClock(VIP, PARIS, opened, history, first_response_at=opened + 600)
    assert clock.resolution_due(_paris(2026, 11, 23, 10)) == _utc(2026, 11, 24, 8)


def test_waiting_for_a_third_party_does_not_pause() -> None:
    # Monday 09:00 + 10 business hours: 9 h Monday, 1 h Tuesday, as if never waiting.
    opened = _paris(2026, 11, 23, 9)
    history = [(opened, "open"), (_paris(2026, 11, 23, 10), "pending_third_party")]
    clock = SlaClock(VIP, PARIS, opened, history, first_response_at=opened + 60)
    assert clock.resolution_due(_paris(2026, 11, 23, 12)) == _paris(2026, 11, 24, 9)
    assert clock.resolution(_paris(2026, 11, 23, 12)).running


def test_a_breach_before_a_pause_stays_a_breach() -> None:
    opened = _paris(2026, 11, 23, 9)
    history = [(opened, "open"), (_paris(2026, 11, 23, 11), "pending_customer")]
    clock = SlaClock(VIP, PARIS, opened, history)
    # No first response by 10:00: breached, though the clock is now stopped.
    first = clock.first_response(_paris(2026, 11, 23, 12))
    assert (first.state, first.due, first.running) == ("breached", _paris(2026, 11, 23, 10), False)
    assert first.remaining == 0
    # Answered later, while waiting: still breached.
    answered = SlaClock(VIP, PARIS, opened, history, first_response_at=_paris(2026, 11, 23, 13))
    assert answered.first_response(_paris(2026, 11, 24)).state == "breached"


def test_a_first_response_while_waiting_is_met_when_time_was_left() -> None:
    # 10 minutes used, paused, answered on Wednesday: the clock stood still, so it is met.
    opened = _paris(2026, 11, 23, 9)
    history = [(opened + 600, "pending_customer")]
    clock = SlaClock(VIP, PARIS, opened, history, first_response_at=_paris(2026, 11, 25, 12))
    first = clock.first_response(_paris(2026, 11, 26))
    assert first.state == "met"
    assert first.due == _paris(2026, 11, 25, 12, 50)


def test_a_reopened_ticket_runs_again_with_what_was_left() -> None:
    # Opened Monday 08:00, resolved 10:00 (2 h of 10 used), closed Tuesday, reopened
    # Wednesday 09:00: 8 h left, due Wednesday 17:00; the days resolved do not count.
    opened = _paris(2026, 11, 23, 8)
    history = [
        (opened, "open"),
        (_paris(2026, 11, 23, 10), "resolved"),
        (_paris(2026, 11, 24, 9), "closed"),
    ]
    done = SlaClock(VIP, PARIS, opened, history, first_response_at=opened + 60)
    assert done.resolution(_paris(2026, 11, 24, 12)).state == "met"
    assert done.resolution(_paris(2026, 11, 24, 12)).met_at == _paris(2026, 11, 23, 10)
    assert done.state(_paris(2026, 11, 30)) == "met"
    reopened = SlaClock(
        VIP,
        PARIS,
        opened,
        [*history, (_paris(2026, 11, 25, 9), "open")],
        first_response_at=opened + 60,
    )
    again = reopened.resolution(_paris(2026, 11, 25, 9))
    assert (again.state, again.met_at, again.running) == ("ok", None, True)
    assert again.due == _paris(2026, 11, 25, 17)
    assert reopened.first_response(_paris(2026, 11, 25, 9)).state == "met"


def test_a_merged_duplicate_needs_nothing_more() -> None:
    opened = _paris(2026, 11, 23, 8)
    merged_at = _paris(2026, 11, 23, 8, 30)
    clock = SlaClock(VIP, PARIS, opened, [(merged_at, "merged")])
    assert clock.first_response(merged_at).met_at == merged_at
    assert clock.state(_utc(2027, 1, 1)) == "met"
    assert clock.next_event(merged_at) is None


def test_always_open_counts_wall_clock_time() -> None:
    opened = _utc(2027, 3, 27, 12)  # across Paris's spring-forward night
    clock = SlaClock(VIP, BusinessHours.always_open("Europe/Paris"), opened)
    assert clock.first_response_due(opened) == opened + HOUR
    assert clock.resolution_due(opened) == opened + 10 * HOUR


def test_worst_and_bad_input() -> None:
    assert worst("met", "ok") == "ok"
    assert worst("warning", "breached", "ok") == "breached"
    assert worst("met", "met") == "met"
    with pytest.raises(ValueError, match="'archived' is no ticket status"):
        SlaClock(VIP, PARIS, 0.0, [(1.0, "archived")])
    with pytest.raises(ValueError, match=r"before the one at 5\.0: sort them"):
        SlaClock(VIP, PARIS, 0.0, [(5.0, "open"), (2.0, "resolved")])
    with pytest.raises(ValueError, match="before the ticket was opened"):
        SlaClock(VIP, PARIS, 10.0, first_response_at=5.0)
    with pytest.raises(ValueError, match="resolution must be 0 or more"):
        SlaPolicy(first_response=HOUR, resolution=-1)
    with pytest.raises(ValueError, match="warn_fraction must be"):
        SlaPolicy(first_response=HOUR, resolution=HOUR, warn_fraction=1.5)
    # The lead never exceeds the allowance.
    assert SlaPolicy(HOUR, 2 * HOUR, warn_seconds=3 * HOUR).warning_lead("first_response") == HOUR


# -- invariants over random histories ----------------------------------------------------------

CALENDARS = (
    PARIS,
    BusinessHours(time_zone="America/New_York", weekly=OFFICE),
    BusinessHours(time_zone="Australia/Lord_Howe", weekly={"sat": ("22:00-24:00",)}),
    BusinessHours.always_open("Asia/Kathmandu"),
)
ACTIVE_STATUSES = ("open", "pending_third_party", "pending_customer")
policies = st.builds(
    SlaPolicy,
    first_response=st.floats(60, 20 * HOUR),
    resolution=st.floats(60, 80 * HOUR),
    warn_fraction=st.floats(0, 0.9),
    warn_seconds=st.floats(0, 4 * HOUR),
)
stretches = st.lists(
    st.tuples(st.floats(0, 3 * 24 * HOUR), st.sampled_from(ACTIVE_STATUSES)), max_size=8
)
openings = st.floats(_utc(2026, 1, 1), _utc(2028, 1, 1))


def _history(opened: float, steps: list[tuple[float, str]]) -> list[tuple[float, str]]:
    history, at = [], opened
    for gap, status in steps:
        at += gap
        history.append((at, status))
    return history


@settings(max_examples=200, deadline=None)
@given(
    policies,
    st.sampled_from(CALENDARS),
    openings,
    stretches,
    st.data(),
    st.floats(0, 10 * 24 * HOUR),
)
def test_adding_a_pause_never_moves_a_deadline_earlier(
    policy: SlaPolicy,
    calendar: BusinessHours,
    opened: float,
    steps: list[tuple[float, str]],
    data: st.DataObject,
    later: float,
) -> None:
    # The same history with one stretch spent waiting for the customer instead.
    index = data.draw(st.integers(0, len(steps)))
    paused_steps = list(steps)
    if index < len(steps):
        paused_steps[index] = (steps[index][0], "pending_customer")
    else:
        paused_steps.append((data.draw(st.floats(0, 2 * 24 * HOUR)), "pending_customer"))
    plain = SlaClock(policy, calendar, opened, _history(opened, steps))
    paused = SlaClock(policy, calendar, opened, _history(opened, paused_steps))
    now = max(opened, *(at for at, _ in _history(opened, paused_steps))) + later
    for name in DEADLINES:
        before, after = plain.deadline(name, now), paused.deadline(name, now)
        assert after.due >= before.due
        assert after.warn_at >= before.warn_at
        assert after.remaining >= before.remaining


@settings(max_examples=200, deadline=None)
@given(policies, st.sampled_from(CALENDARS), openings, stretches, st.floats(0, 10 * 24 * HOUR))
def test_a_running_deadline_allows_exactly_its_business_seconds(
    policy: SlaPolicy,
    calendar: BusinessHours,
    opened: float,
    steps: list[tuple[float, str]],
    later: float,
) -> None:
    history = _history(opened, steps)
    now = (history[-1][0] if history else opened) + later
    clock = SlaClock(policy, calendar, opened, history)
    for name in DEADLINES:
        status = clock.deadline(name, now)
        # Open time while the clock ran (before the last change, and after it if running),
        # up to the due instant, is the allowance.
        changes = [(opened, "new"), *history]
        counted = 0.0
        for (start, status_then), (end, _) in zip(changes, [*changes[1:], (None, "")], strict=True):
            if status_then == "pending_customer":
                continue
            until = status.due if end is None else min(end, status.due)
            counted += calendar.business_seconds(start, until)
        if status.running or status.state == "breached":
            assert counted == pytest.approx(policy.allowance(name), abs=1e-4)
        else:  # stopped before it was due: the rest waits
            assert counted + status.remaining == pytest.approx(policy.allowance(name), abs=1e-4)
        assert status.warn_at <= status.due


@settings(max_examples=200, deadline=None)
@given(
    policies,
    st.sampled_from(CALENDARS),
    openings,
    stretches,
    st.floats(0, 5 * 24 * HOUR),
    st.booleans(),
    st.floats(0, 20 * 24 * HOUR),
    st.floats(0, 20 * 24 * HOUR),
)
def test_met_stays_met(
    policy: SlaPolicy,
    calendar: BusinessHours,
    opened: float,
    steps: list[tuple[float, str]],
    gap: float,
    closed: bool,
    first: float,
    second: float,
) -> None:
    history = _history(opened, steps)
    resolved_at = (history[-1][0] if history else opened) + gap
    history.append((resolved_at, "resolved"))
    if closed:
        history.append((resolved_at + HOUR, "closed"))
    clock = SlaClock(policy, calendar, opened, history, first_response_at=resolved_at)
    early = history[-1][0] + first
    late = early + second
    for name in DEADLINES:
        at_first, at_last = clock.deadline(name, early), clock.deadline(name, late)
        assert at_first.met_at == at_last.met_at == resolved_at
        assert at_first.due == at_last.due
        assert at_first.state in ("met", "breached")
        assert at_last.state == at_first.state
    assert clock.next_event(early) is None


@settings(max_examples=200, deadline=None)
@given(policies, st.sampled_from(CALENDARS), openings, stretches, st.floats(0, 10 * 24 * HOUR))
def test_the_next_event_is_the_next_change_of_state(
    policy: SlaPolicy,
    calendar: BusinessHours,
    opened: float,
    steps: list[tuple[float, str]],
    later: float,
) -> None:
    history = _history(opened, steps)
    now = (history[-1][0] if history else opened) + later
    clock = SlaClock(policy, calendar, opened, history)
    event = clock.next_event(now)
    states = {name: clock.deadline(name, now).state for name in DEADLINES}
    if event is None:
        far = now + 400 * 24 * HOUR
        assert {n: clock.deadline(n, far).state for n in states} == states
        return
    assert event.at > now
    assert clock.deadline(event.deadline, event.at).state == event.state
    assert states[event.deadline] != event.state
    # Nothing changes in between.
    middle = now + (event.at - now) / 2
    assert {n: clock.deadline(n, middle).state for n in states} == states
