"""Live queue figures from ACD events: a hand-counted morning, the sliding window, the local
calendar day, and properties against a recomputation from scratch."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.estimate import WaitEstimate
from acd.events import (
    AcdEvent,
    AgentStateChanged,
    CallbackRequested,
    CallCompleted,
    CallerAbandoned,
    CallerConnected,
    CallerJoined,
    CallerOffered,
    CallerOverflowed,
)
from acd.figures import FigureRules, LiveFigures, ServiceLevelFormula

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2025, 3, 10, 9, 0, tzinfo=PARIS).timestamp()  # a Monday, 09:00 in Paris
RULES = FigureRules(service_threshold=20, short_abandon=5, window=900, timezone=PARIS)


def joined(t: float, call: str, queue: str = "sales") -> CallerJoined:
    return CallerJoined(T0 + t, call, queue, "ordinary", 1)


def connected(t: float, call: str, agent: str, wait: float) -> CallerConnected:
    return CallerConnected(T0 + t, call, "sales", agent, wait)


def abandoned(t: float, call: str, wait: float) -> CallerAbandoned:
    return CallerAbandoned(T0 + t, call, "sales", wait, 1)


def completed(t: float, call: str, agent: str, talk: float) -> CallCompleted:
    return CallCompleted(T0 + t, call, "sales", agent, talk)


def state(t: float, agent: str, new: str) -> AgentStateChanged:
    return AgentStateChanged(T0 + t, agent, new)


# Seconds after 09:00. alice: ready, rings, takes c1 (60 s talk, 20 s wrap-up), takes c5.
# bob: takes c2 after 30 s (80 s talk, 10 s wrap-up), then pauses. c3 is a short abandon,
# c4 gives up after the threshold, c6 before it, c7 overflows, c8 is still waiting.
MORNING: list[AcdEvent] = [
    state(0, "alice", "available"),
    state(0, "bob", "available"),
    joined(0, "c1"),
    CallerOffered(T0 + 2, "c1", "sales", ("alice",)),
    state(2, "alice", "ringing"),
    connected(4, "c1", "alice", 4),
    state(4, "alice", "on_call"),
    joined(10, "c2"),
    joined(12, "c3"),
    abandoned(15, "c3", 3),
    connected(40, "c2", "bob", 30),
    state(40, "bob", "on_call"),
    joined(50, "c4"),
    completed(64, "c1", "alice", 60),
    state(64, "alice", "wrap_up"),
    abandoned(80, "c4", 30),
    state(84, "alice", "available"),
    joined(90, "c5"),
    connected(100, "c5", "alice", 10),
    state(100, "alice", "on_call"),
    joined(100, "c6"),
    abandoned(108, "c6", 8),
    completed(120, "c2", "bob", 80),
    state(120, "bob", "wrap_up"),
    state(130, "bob", "paused"),
    joined(140, "c7"),
    CallerOverflowed(T0 + 150, "c7", "sales", 10, "support", "max_wait"),
    joined(160, "c8"),
]


def morning(rules: FigureRules = RULES) -> LiveFigures:
    live = LiveFigures({"sales": ["alice", "bob"], "support": ["bob"]}, rules)
    for event in MORNING:
        live.apply(event)
    return live


def test_a_morning_counted_by_hand() -> None:
    figures = morning().figures("sales", T0 + 200)
    assert figures.calls_waiting == 1
    assert figures.longest_wait == 40.0  # c8 since 160
    assert (figures.agents_logged_in, figures.agents_available) == (2, 0)
    assert (figures.agents_busy, figures.agents_paused) == (1, 1)
    today = figures.today
    assert today.start == datetime(2025, 3, 10, tzinfo=PARIS).timestamp()
    assert (today.answered, today.answered_in_time) == (3, 2)  # c1 4 s, c5 10 s; c2 30 s
    assert (today.abandoned, today.abandoned_in_time) == (2, 1)  # c4 30 s, c6 8 s
    assert (today.short_abandoned, today.overflowed, today.completed) == (1, 1, 2)
    assert today.service_level == 2 / (3 + 2 - 1)  # c6 gave up within 20 s: left out
    assert today.asa == pytest.approx((4 + 30 + 10) / 3)
    assert today.aht == (60 + 80 + 20 + 10) / 2  # talk + wrap-up per completed call
    assert today.abandonment_rate == 2 / 5  # the short abandon is in neither count
    # alice staffed 200 s, 60 + 20 + 100 s handling; bob staffed 130 s (then paused), 80 + 10.
    assert today.occupancy == pytest.approx((180 + 90) / (200 + 130))
    # The window holds the whole morning: the same counts, from 15 minutes ago.
    assert figures.window.start == T0 + 200 - 900
    assert figures.window.answered == 3
    assert figures.window.service_level == today.service_level
    assert figures.window.occupancy == today.occupancy
    # A caller joining now is second in line; only alice is not paused, AHT 85 s.
    assert figures.estimated_wait == WaitEstimate(170.0, "position", None, 85.0, "observed")


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        (ServiceLevelFormula.LATE_ABANDONS, 2 / 4),
        (ServiceLevelFormula.ALL_ABANDONS, 2 / 5),
        (ServiceLevelFormula.ANSWERED_ONLY, 2 / 3),
        (ServiceLevelFormula.ABANDONS_IN_TIME_MET, 3 / 5),
    ],
)
def test_service_level_formulas(formula: ServiceLevelFormula, expected: float) -> None:
    rules = FigureRules(timezone=PARIS, service_level_formula=formula)
    assert morning(rules).figures("sales", T0 + 200).today.service_level == expected


def test_short_abandon_threshold_is_configurable() -> None:
    rules = FigureRules(short_abandon=10, window=900, timezone=PARIS)
    today = morning(rules).figures("sales", T0 + 200).today
    assert (today.abandoned, today.short_abandoned) == (1, 2)  # c6 (8 s) is now short too
    assert today.abandonment_rate == 1 / 4


def test_the_window_slides() -> None:
    live = morning()
    # At 964 the window is (64, 964]: c1's answer and completion have left it.
    figures = live.figures("sales", T0 + 964)
    window = figures.window
    assert (window.answered, window.answered_in_time, window.asa) == (1, 1, 10.0)
    assert (window.abandoned, window.abandoned_in_time, window.short_abandoned) == (2, 1, 0)
    assert (window.overflowed, window.completed) == (1, 1)
    assert window.service_level == 1 / (1 + 2 - 1)
    assert window.abandonment_rate == 2 / 3
    assert window.aht == (80 + 20 + 10) / 1  # both wrap-ups ended inside the window
    # alice: wrap-up 64-84, free 84-100, on c5 since 100; bob: on c2 64-120, wrap-up 120-130.
    assert window.occupancy == pytest.approx((20 + 864 + 56 + 10) / (900 + 66))
    assert figures.today.answered == 3  # the day keeps everything
    assert figures.today.occupancy == pytest.approx((944 + 90) / (964 + 130))
    assert figures.longest_wait == 964 - 160
    # Long after, the window is empty: no ratio to show, occupancy only from alice's call.
    later = live.figures("sales", T0 + 3600).window
    assert (later.answered, later.service_level, later.asa, later.aht) == (0, None, None, None)
    assert later.abandonment_rate is None
    assert later.occupancy == 1.0


def test_estimated_wait_of_a_caller_in_line() -> None:
    live = morning()
    assert live.estimated_wait("sales", T0 + 200, 1).seconds == 85.0
    live.apply(state(200, "bob", "available"))
    # Bob is free and takes the first caller; the third waits for one of two agents.
    assert live.estimated_wait("sales", T0 + 200, 1).seconds == 0.0
    assert live.estimated_wait("sales", T0 + 200, 3).seconds == 2 * 85.0 / 2


def test_estimate_falls_back_before_any_call_is_handled() -> None:
    rules = FigureRules(timezone=PARIS, fallback_aht=300)
    live = LiveFigures({"sales": ["alice"]}, rules)
    live.apply(state(0, "alice", "on_call"))
    live.apply(joined(1, "c1"))
    estimate = live.figures("sales", T0 + 5).estimated_wait
    assert estimate == WaitEstimate(600.0, "position", None, 300, "fallback")
    nobody = LiveFigures({"sales": []}).figures("sales", T0).estimated_wait
    assert nobody.unknown == "no_agents"


def test_queue_membership_decides_agent_counts() -> None:
    live = morning()
    support = live.figures("support", T0 + 200)
    assert (support.agents_logged_in, support.agents_paused, support.calls_waiting) == (1, 1, 0)
    # bob's time counts for support although his call came from sales.
    assert support.today.occupancy == pytest.approx(90 / 130)
    assert support.today.answered == 0
    live.set_members("support", ["alice", "bob"])
    assert live.figures("support", T0 + 200).agents_busy == 1
    assert live.figures("nowhere", T0 + 200).agents_logged_in == 0


def test_figures_are_json_ready() -> None:
    record = morning().figures("sales", T0 + 200).to_record()
    assert json.loads(json.dumps(record)) == record
    assert record["today"]["service_level"] == 0.5
    assert record["estimated_wait"]["method"] == "position"


def test_today_is_the_local_calendar_day() -> None:
    live = LiveFigures({"sales": ["alice"]}, RULES)
    midnight = datetime(2025, 3, 11, tzinfo=PARIS).timestamp()  # 23:00 UTC on the 10th
    live.apply(AgentStateChanged(midnight - 3600, "alice", "available"))
    live.apply(CallerJoined(midnight - 310, "c1", "sales", "ordinary", 1))
    live.apply(CallerConnected(midnight - 300, "c1", "sales", "alice", 10))
    live.apply(AgentStateChanged(midnight - 300, "alice", "on_call"))
    before = live.figures("sales", midnight - 1)
    assert (before.today.answered, before.today.start) == (1, midnight - 86400)
    after = live.figures("sales", midnight + 300)
    assert (after.today.start, after.today.answered, after.today.asa) == (midnight, 0, None)
    assert after.today.occupancy == 1.0  # alice on a call all of today so far
    # The window, 23:50 to 00:05, crosses midnight: c1 is in it.
    assert (after.window.answered, after.window.asa) == (1, 10.0)
    assert after.window.occupancy == pytest.approx(600 / 900)
    live.apply(CallerJoined(midnight + 1800, "c2", "sales", "ordinary", 1))  # 23:30 UTC
    live.apply(CallerConnected(midnight + 1810, "c2", "sales", "bob", 30))
    figures = live.figures("sales", midnight + 3000)  # 00:50 in Paris, still the 10th in UTC
    assert (figures.today.answered, figures.today.asa) == (1, 30.0)


@pytest.mark.parametrize(
    ("zone", "when", "start", "hours"),
    [
        ("Europe/Paris", datetime(2025, 3, 30, 12), datetime(2025, 3, 29, 23), 23),
        ("Europe/Paris", datetime(2025, 10, 26, 12), datetime(2025, 10, 25, 22), 25),
        ("America/Santiago", datetime(2024, 9, 8, 12), datetime(2024, 9, 8, 4), 23),  # no 00:00
        ("UTC", datetime(2025, 1, 1, 0), datetime(2025, 1, 1, 0), 24),
    ],
)
def test_day_boundaries_across_daylight_saving(
    zone: str, when: datetime, start: datetime, hours: int
) -> None:
    tz = ZoneInfo(zone)
    live = LiveFigures({"q": []}, FigureRules(timezone=tz))
    now = when.replace(tzinfo=tz).timestamp()
    day_start = start.replace(tzinfo=UTC).timestamp()
    assert live.figures("q", now).today.start == day_start
    live.apply(CallerConnected(day_start + hours * 3600 - 1, "c1", "q", "a", 1))
    assert live.figures("q", day_start + hours * 3600 - 1).today.answered == 1
    assert live.figures("q", day_start + hours * 3600).today.answered == 0


# Properties: random calls and agent changes on one queue, with integer times so the
# reference sums below are exact.

AGENTS = ("a1", "a2", "a3")
STATES = ("available", "ringing", "on_call", "wrap_up", "paused", "logged_out")

calls = st.lists(
    st.tuples(
        st.integers(0, 3000),  # joined at
        st.sampled_from(("answered", "abandoned", "overflowed", "waiting")),
        st.integers(0, 120),  # wait
        st.integers(1, 600),  # talk
        st.sampled_from(AGENTS),
    ),
    max_size=25,
)
changes = st.lists(
    st.tuples(st.integers(0, 4000), st.sampled_from(AGENTS), st.sampled_from(STATES)),
    max_size=25,
)


def stream(call_specs: list, agent_changes: list) -> list[AcdEvent]:
    events: list[AcdEvent] = []
    for n, (start, outcome, wait, talk, agent) in enumerate(call_specs):
        call = f"c{n}"
        events.append(CallerJoined(T0 + start, call, "q", "ordinary", 1))
        end = T0 + start + wait
        if outcome == "answered":
            events.append(CallerConnected(end, call, "q", agent, wait))
            events.append(CallCompleted(end + talk, call, "q", agent, talk))
        elif outcome == "abandoned":
            events.append(CallerAbandoned(end, call, "q", wait, None))
        elif outcome == "overflowed":
            events.append(CallerOverflowed(end, call, "q", wait, "other", "max_wait"))
    events += [AgentStateChanged(T0 + t, agent, new) for t, agent, new in agent_changes]
    return sorted(events, key=lambda e: e.at)  # stable: a call's join stays before its end


def agent_time(events: list[AcdEvent], start: float, now: float) -> tuple[float, float]:
    """(staffed, occupied) seconds in (start, now], integrated state by state."""
    staffed = occupied = 0.0
    for agent in AGENTS:
        moves = [e for e in events if isinstance(e, AgentStateChanged) and e.agent == agent]
        for move, after in zip(moves, [*moves[1:], None], strict=False):
            end = now if after is None else after.at
            overlap = max(0.0, min(end, now) - max(move.at, start))
            staffed += overlap * (move.state in ("available", "ringing", "on_call", "wrap_up"))
            occupied += overlap * (move.state in ("on_call", "wrap_up"))
    return staffed, occupied


@settings(max_examples=60, deadline=None)
@given(calls, changes, st.integers(0, 5000))
def test_window_equals_a_recount_from_scratch(
    call_specs: list, agent_changes: list, later: int
) -> None:
    events = stream(call_specs, agent_changes)
    live = LiveFigures({"q": AGENTS}, RULES)
    for event in events:
        live.apply(event)
    now = (events[-1].at if events else T0) + later
    figures = live.figures("q", now)
    start = now - RULES.window
    inside = [e for e in events if start < e.at <= now]
    waits = [e.wait for e in inside if isinstance(e, CallerConnected)]
    gave_up = [e.wait for e in inside if isinstance(e, CallerAbandoned) and e.wait >= 5]
    window = figures.window
    assert window.answered == len(waits)
    assert window.answered_in_time == sum(w <= 20 for w in waits)
    assert window.abandoned == len(gave_up)
    assert window.abandoned_in_time == sum(w <= 20 for w in gave_up)
    assert window.overflowed == sum(isinstance(e, CallerOverflowed) for e in inside)
    assert window.asa == (pytest.approx(sum(waits) / len(waits)) if waits else None)
    staffed, occupied = agent_time(events, start, now)
    assert window.occupancy == (pytest.approx(occupied / staffed) if staffed else None)
    # Every event falls on the same morning, so today is all of them.
    today = figures.today
    assert today.answered == sum(isinstance(e, CallerConnected) for e in events)
    assert today.completed == sum(isinstance(e, CallCompleted) for e in events)
    staffed, occupied = agent_time(events, today.start, now)
    assert today.occupancy == (pytest.approx(occupied / staffed) if staffed else None)
    assert figures.calls_waiting == sum(spec[1] == "waiting" for spec in call_specs)


@settings(max_examples=60, deadline=None)
@given(calls, changes, st.integers(0, 5000))
def test_figures_stay_in_range(call_specs: list, agent_changes: list, later: int) -> None:
    live = LiveFigures({"q": AGENTS}, RULES)
    events = stream(call_specs, agent_changes)
    for event in events:
        live.apply(event)
    figures = live.figures("q", (events[-1].at if events else T0) + later)
    for period in (figures.today, figures.window):
        for ratio in (period.service_level, period.abandonment_rate, period.occupancy):
            assert ratio is None or 0.0 <= ratio <= 1.0
        assert period.asa is None or 0 <= period.asa <= 120
        assert period.aht is None or period.aht >= 0
        assert period.answered_in_time <= period.answered
        assert period.abandoned_in_time <= period.abandoned
    assert figures.longest_wait >= 0
    assert figures.agents_available + figures.agents_busy + figures.agents_paused == (
        figures.agents_logged_in
    )
    assert figures.estimated_wait.seconds is None or figures.estimated_wait.seconds >= 0
    # The arriving caller's estimate (read on every join, without the occupancy) is the
    # figures' estimate for the next place in line.
    place = figures.calls_waiting + 1
    assert live.estimated_wait("q", figures.at, place) == figures.estimated_wait


@settings(max_examples=60, deadline=None)
@given(calls, st.randoms(use_true_random=False))
def test_sums_do_not_depend_on_event_order(call_specs: list, random) -> None:
    # Outcomes of different calls within one window and one day, fed in any order.
    events = [e for e in stream(call_specs, []) if not isinstance(e, CallerJoined)]
    shuffled = list(events)
    random.shuffle(shuffled)
    now = T0 + 3800
    rules = FigureRules(window=7200, timezone=PARIS)
    in_order, any_order = LiveFigures({"q": []}, rules), LiveFigures({"q": []}, rules)
    for event in events:
        in_order.apply(event)
    for event in shuffled:
        any_order.apply(event)
    expected, actual = in_order.figures("q", now), any_order.figures("q", now)
    assert actual.today == expected.today
    assert actual.window == expected.window


def test_a_callback_request_replaces_its_caller_in_the_waiting_count() -> None:
    live = LiveFigures({"sales": ["alice"]}, RULES)
    live.apply(CallerJoined(T0, "c1", "sales", "ordinary", 1))
    live.apply(CallbackRequested(T0 + 30, "c1", "sales", "cb-c1", "+33612345678"))
    live.apply(CallerJoined(T0 + 30, "cb-c1", "sales", "ordinary", 1))
    assert live.figures("sales", T0 + 40).calls_waiting == 1
    live.apply(CallerConnected(T0 + 50, "cb-c1", "sales", "alice", 20.0))
    after = live.figures("sales", T0 + 60)
    assert after.calls_waiting == 0 and after.longest_wait == 0
    assert after.today.answered == 1 and after.today.abandoned == 0
