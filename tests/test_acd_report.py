"""The ACD report (``acd.report``): a worked day checked by hand, agents' times cut at the
range's ends, 15-minute intervals of the local day (DST days too), CSV without formula
injection, random days whose totals add up (hypothesis), and the same report read back
from the real history recorder on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.events import (
    AcdEvent,
    AgentStateChanged,
    CallCompleted,
    CallDisposed,
    CallerAbandoned,
    CallerConnected,
    CallerJoined,
    CallerOverflowed,
)
from acd.figures import FigureRules, LiveFigures
from acd.history import AcdEventRecorder
from acd.report import (
    INTERVAL,
    AcdReport,
    acd_records,
    build_report,
    report_csv,
    report_range,
)

PARIS = ZoneInfo("Europe/Paris")
DAY = date(2026, 6, 2)
START, END = report_range(DAY, DAY, PARIS)
T0 = START + 9 * 3600  # 09:00 in Paris


def morning() -> list[AcdEvent]:
    """docs/queue-figures.md's morning on sales, with tiers, agents and dispositions."""
    return [
        AgentStateChanged(START - 600, "a1", "available"),  # logged in before midnight
        CallerJoined(T0, "c1", "sales", "vip", 1),
        CallerConnected(T0 + 4, "c1", "sales", "a1", 4),
        AgentStateChanged(T0 + 4, "a1", "on_call"),
        CallerJoined(T0 + 10, "c2", "sales", "ordinary", 1),
        CallerJoined(T0 + 20, "c3", "sales", "ordinary", 2),
        CallerAbandoned(T0 + 23, "c3", "sales", 3, 2),
        CallerConnected(T0 + 40, "c2", "sales", "a2", 30),
        AgentStateChanged(T0 + 40, "a2", "on_call"),
        CallCompleted(T0 + 64, "c1", "sales", "a1", 60),
        AgentStateChanged(T0 + 64, "a1", "wrap_up"),
        CallDisposed(T0 + 70, "c1", "sales", "a1", "follow_up"),
        CallDisposed(T0 + 80, "c1", "sales", "a1", "resolved"),  # corrected: counts once
        AgentStateChanged(T0 + 84, "a1", "available"),
        CallerJoined(T0 + 100, "c4", "sales", "key", 1),
        CallerAbandoned(T0 + 130, "c4", "sales", 30, 1),
        CallCompleted(T0 + 120, "c2", "sales", "a2", 80),
        AgentStateChanged(T0 + 120, "a2", "wrap_up"),
        AgentStateChanged(T0 + 130, "a2", "paused", "lunch"),
        CallerJoined(T0 + 1000, "c5", "sales", "ordinary", 1),
        CallerConnected(T0 + 1010, "c5", "sales", "a1", 10),
        CallerJoined(T0 + 1020, "c6", "sales", "ordinary", 2),
        CallerAbandoned(T0 + 1028, "c6", "sales", 8, 1),
        CallerJoined(T0 + 1030, "c7", "sales", "ordinary", 1),
        CallerOverflowed(T0 + 1040, "c7", "sales", 10, "support", "max_wait"),
        CallerJoined(T0 + 1040, "c7", "support", "ordinary", 1),
    ]


def report_of(events: Sequence[AcdEvent], now: float = END, **options: Any) -> AcdReport:
    return build_report(
        [e.to_record() for e in sorted(events, key=lambda e: e.at)],
        start=START,
        end=END,
        now=now,
        zone=PARIS,
        thresholds={"sales": 20.0},
        **options,
    )


def test_a_worked_morning_counts_as_the_figures_document_says() -> None:
    report = report_of(
        morning(), queues=["sales", "support", "billing"], members={"sales": ["a1", "a2"]}
    )
    sales = report.queues["sales"].to_record()
    assert {k: sales[k] for k in ("offered", "answered", "answered_in_time", "abandoned")} == {
        "offered": 7, "answered": 3, "answered_in_time": 2, "abandoned": 2
    }  # fmt: skip
    assert (sales["short_abandoned"], sales["overflowed"], sales["completed"]) == (1, 1, 2)
    assert sales["service_level"] == pytest.approx(0.5)
    assert sales["abandonment_rate"] == pytest.approx(0.4)
    assert sales["asa"] == pytest.approx(44 / 3)
    # c7 joined sales, then support: offered in both.
    # c1 60 s + 20 s wrap-up; c2 80 s + its 10 s wrap-up ended by the pause.
    assert sales["aht"] == pytest.approx((60 + 20 + 80 + 10) / 2)
    assert report.queues["support"].offered == 1 and report.queues["billing"].offered == 0
    assert set(report.queues) == {"billing", "sales", "support"}

    tiers = {t: r.to_record() for t, r in report.tiers.items()}
    assert (tiers["vip"]["answered"], tiers["vip"]["service_level"]) == (1, 1.0)
    assert (tiers["key"]["abandoned"], tiers["key"]["service_level"]) == (1, 0.0)
    assert tiers["ordinary"]["offered"] == 6 and tiers["vip"]["aht"] == pytest.approx(80)

    a1, a2 = report.agents["a1"], report.agents["a2"]
    assert (a1.answered, a1.completed, a1.talk_time, a1.wrap_up_time) == (2, 1, 60, 20)
    assert a1.dispositions == {"resolved": 1}
    # a1: logged in since before midnight, counted from midnight to the end of the day.
    assert a1.logged_in_time == pytest.approx(END - START)
    on_call = (64 - 4) + (END - (T0 + 1010))  # c5 is still on (no state after connect)
    assert a1.occupancy is not None
    assert a1.occupancy == pytest.approx((on_call - (END - (T0 + 1010)) + 20) / (END - START))
    assert (a2.paused_time, a2.wrap_up_time) == (pytest.approx(END - (T0 + 130)), 10)
    assert a2.occupancy == pytest.approx(1.0)  # on a call or in wrap-up while staffed


def test_the_report_of_today_agrees_with_the_live_figures() -> None:
    events = sorted(morning(), key=lambda e: e.at)
    live = LiveFigures({"sales": ["a1", "a2"]}, FigureRules(timezone=PARIS))
    for event in events:
        live.apply(event)
    now = T0 + 2000
    today = live.figures("sales", now).today
    queue = report_of(events, now=now, members={"sales": ["a1", "a2"]}).queues["sales"].figures
    for name in ("answered", "abandoned", "short_abandoned", "overflowed", "completed"):
        assert getattr(queue, name) == getattr(today, name), name
    for name in ("service_level", "asa", "aht", "abandonment_rate", "occupancy"):
        assert getattr(queue, name) == pytest.approx(getattr(today, name)), name


def test_agents_states_stop_at_now_and_at_the_ranges_ends() -> None:
    events = [
        AgentStateChanged(START - 3600, "a1", "paused", "training"),
        AgentStateChanged(START + 3600, "a1", "available"),
        AgentStateChanged(END + 60, "a1", "logged_out"),  # after the range: ignored
    ]
    report = report_of(events, now=START + 7200)
    a1 = report.agents["a1"]
    assert (a1.paused_time, a1.logged_in_time) == (3600, 7200)
    assert a1.occupancy == 0.0
    assert report.agents["a1"].to_record()["dispositions"] == {}


def test_intervals_follow_the_local_day_even_on_a_dst_day() -> None:
    spring = date(2026, 3, 29)  # Paris skips 02:00-03:00: a 23-hour day
    start, end = report_range(spring, spring, PARIS)
    assert end - start == 23 * 3600
    at = datetime(2026, 3, 29, 3, 20, tzinfo=PARIS).timestamp()
    events = [
        CallerJoined(at, "c1", "sales", "vip", 1),
        CallerConnected(at + 5, "c1", "sales", "a1", 5),
    ]
    report = build_report(
        [e.to_record() for e in events], start=start, end=end, now=end, zone=PARIS
    )
    [(interval_start, queue)] = report.intervals
    assert datetime.fromtimestamp(interval_start, PARIS).time().isoformat() == "03:15:00"
    assert (interval_start - start) % INTERVAL == 0 and queue == "sales"


@pytest.mark.parametrize(
    ("first", "last", "problem"),
    [
        (date(2026, 6, 2), date(2026, 6, 1), "before from"),
        (date(2026, 1, 1), date(2026, 4, 4), "at most 92"),
    ],
)
def test_a_range_backwards_or_too_long_is_refused(first: date, last: date, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        report_range(first, last, UTC)
    assert report_range(date(2026, 1, 1), date(2026, 4, 3), UTC)  # 92 days: fine


def test_csv_tables_keep_spreadsheets_from_running_formulas() -> None:
    events = [
        *morning(),
        CallerJoined(T0 + 3000, "c9", "=HYPERLINK(1)", "ordinary", 1),
        CallDisposed(T0 + 3010, "c5", "sales", "@a3", "other"),
    ]
    report = report_of(events)
    rows = list(csv.reader(io.StringIO(report_csv(report, "queue"))))
    assert rows[0][:3] == ["queue", "offered", "answered"]
    assert rows[1][:2] == ["'=HYPERLINK(1)", "1"]
    agents = list(
        csv.DictReader(
            io.StringIO(report_csv(report, "agent", dispositions=["resolved", "follow_up"]))
        )
    )
    by_agent = {r["agent"]: r for r in agents}
    assert by_agent["'@a3"]["disposition_other"] == "1"
    assert (
        by_agent["a1"]["disposition_resolved"] == "1"
        and by_agent["a1"]["disposition_follow_up"] == "0"
    )
    intervals = list(csv.DictReader(io.StringIO(report_csv(report, "interval", zone=PARIS))))
    assert intervals[0]["start_local"] == "2026-06-02T09:00:00+02:00"
    assert "occupancy" not in intervals[0]
    with pytest.raises(ValueError, match="by must be one of"):
        report_csv(report, "day")


# -- random days (hypothesis) -------------------------------------------------------------

calls = st.lists(
    st.tuples(
        st.sampled_from(["sales", "support"]),
        st.sampled_from(["vip", "key", "ordinary"]),
        st.floats(min_value=-1800, max_value=86_400 + 1800),  # join, around the day
        st.floats(min_value=0, max_value=200),  # wait
        st.sampled_from(["answer", "abandon", "overflow"]),
        st.floats(min_value=1, max_value=900),  # talk
        st.sampled_from(["a1", "a2", "a3"]),
    ),
    max_size=40,
)


def _day_of(script: list[tuple[str, str, float, float, str, float, str]]) -> list[AcdEvent]:
    events: list[AcdEvent] = []
    for n, (queue, tier, join, wait, outcome, talk, agent) in enumerate(script):
        call, at = f"c{n}", START + join
        events.append(CallerJoined(at, call, queue, tier, 1))
        if outcome == "answer":
            events += [
                CallerConnected(at + wait, call, queue, agent, wait),
                AgentStateChanged(at + wait, agent, "on_call"),
                CallCompleted(at + wait + talk, call, queue, agent, talk),
                AgentStateChanged(at + wait + talk, agent, "wrap_up"),
                AgentStateChanged(at + wait + talk + 30, agent, "available"),
            ]
        elif outcome == "abandon":
            events.append(CallerAbandoned(at + wait, call, queue, wait, 1))
        else:
            events.append(CallerOverflowed(at + wait, call, queue, wait, "voicemail", "max_wait"))
    return sorted(events, key=lambda e: e.at)


COUNTS = ("offered", "answered", "answered_in_time", "abandoned", "short_abandoned",
          "overflowed", "completed")  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(script=calls)
def test_a_random_days_totals_add_up(script: list[Any]) -> None:
    events = _day_of(script)
    report = report_of(events, queues=["sales", "support"])
    record = report.to_record()
    for name in COUNTS:
        total = sum(q[name] for q in record["queues"])
        assert total == sum(t[name] for t in record["tiers"]), name
        assert total == sum(i[name] for i in record["intervals"]), name
        for queue in record["queues"]:
            in_queue = [i[name] for i in record["intervals"] if i["queue"] == queue["queue"]]
            assert queue[name] == sum(in_queue), (name, queue["queue"])
    inside = [e for e in events if START <= e.at < END]
    assert sum(q["offered"] for q in record["queues"]) == sum(
        isinstance(e, CallerJoined) for e in inside
    )
    answered = sum(isinstance(e, CallerConnected) for e in inside)
    assert sum(q["answered"] for q in record["queues"]) == answered
    assert sum(a["answered"] for a in record["agents"]) == answered
    for row in record["queues"] + record["tiers"] + record["intervals"]:
        for ratio in ("service_level", "abandonment_rate"):
            assert row[ratio] is None or 0 <= row[ratio] <= 1
        assert row["answered_in_time"] <= row["answered"]
    for start, _ in report.intervals:
        assert START <= start < END and (start - START) % INTERVAL == 0
    for agent in record["agents"]:
        assert 0 <= agent["logged_in_time"] <= END - START
        assert agent["occupancy"] is None or 0 <= agent["occupancy"] <= 1


# -- through the real history (SQLite and PostgreSQL) -------------------------------------


def test_the_report_reads_back_what_the_recorder_wrote(
    migrated_engine: Any, reactor: Any, run: Any, tmp_path: Path
) -> None:
    events = sorted(
        [
            *morning(),
            CallerJoined(START - 60, "old", "sales", "vip", 1),  # the day before
            CallerConnected(START + 30, "old", "sales", "a2", 90),  # ... answered after midnight
            CallerJoined(END + 5, "late", "sales", "vip", 1),  # the next day
        ],
        key=lambda e: e.at,
    )
    recorder = AcdEventRecorder(
        migrated_engine, reactor, pbx="lab", spool_dir=tmp_path / "spool", sync_interval=None
    )
    for event in events:
        recorder.record(event)
    run(recorder.close())
    records = list(acd_records(migrated_engine, START, END))
    # What carries in from before midnight comes first (a1's state, the old caller's join),
    # then the day's events, nothing after.
    assert [(r["kind"], r.get("call_id")) for r in records[:2]] == [
        ("agent_state", None), ("caller_joined", "old")
    ]  # fmt: skip
    assert all(START <= r["at"] < END for r in records[2:]) and len(records) == 2 + len(
        [e for e in events if START <= e.at < END]
    )
    options: dict[str, Any] = {"queues": ["sales"], "members": {"sales": ["a1", "a2"]}}
    from_sql = build_report(
        records, start=START, end=END, now=END, zone=PARIS, thresholds={"sales": 20}, **options
    )
    assert from_sql.to_record() == report_of(events, **options).to_record()
    # The caller who joined the day before and was answered today keeps its tier.
    assert from_sql.tiers["vip"].figures.answered == 2
    assert next(r["call_id"] for r in records if r["kind"] == "caller_joined") == "old"
    assert list(acd_records(migrated_engine, START, END, pbx="other")) == []
