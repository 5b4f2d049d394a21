"""The ACD report (``acd.report``): a worked day checked by hand, agents' times cut at the
range's ends, 15-minute intervals of the local day (DST days too), CSV without formula
injection, random days whose totals add up (hypothesis), and the same report read back
from the real history recorder on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.erlang import staffing_need
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
from acd.http import agent_routes, report_routes
from acd.report import (
    INTERVAL,
    AcdReport,
    acd_records,
    build_report,
    report_csv,
    report_range,
)
from tests.conftest import sleep
from tests.test_acd_http import Desk, acd_desk

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


def milliseconds(low: float, high: float) -> st.SearchStrategy[float]:
    """Seconds to the millisecond, as the PBX gives times (the report counts in µs)."""
    return st.integers(round(low * 1000), round(high * 1000)).map(lambda ms: ms / 1000)


calls = st.lists(
    st.tuples(
        st.sampled_from(["sales", "support"]),
        st.sampled_from(["vip", "key", "ordinary"]),
        milliseconds(-1800, 86_400 + 1800),  # join, around the day
        milliseconds(0, 200),  # wait
        st.sampled_from(["answer", "abandon", "overflow"]),
        milliseconds(1, 900),  # talk
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


# -- HTTP: dispositions, the report and staffing on a real AcdService and uvicorn ---------

HTTP_QUEUES = {
    "agent_interface": "Local/{agent}@agents",
    "timezone": "Europe/Paris",
    "dispositions": ["resolved", "callback_promised", "wrong_number"],
    "queues": {
        "sales": {"lanes": ["external"], "service_level": {"percent": 80, "seconds": 20}},
        "support": {"fallback_aht": 240},
    },
    "agents": {
        "6001": {"name": "Alice", "queues": {"sales": 0}},
        "6002": {"name": "Bob", "queues": {"sales": 0, "support": 0}},
    },
}


@pytest.fixture
def office(tmp_path: Path, reactor: Any, run: Any) -> Iterator[Desk]:
    routes = (agent_routes, report_routes)
    for served, _, _ in acd_desk(tmp_path, reactor, run, config=HTTP_QUEUES, routes=routes):
        yield served


def _written(desk: Desk) -> None:
    """Wait until the history has written what was published."""
    for _ in range(200):
        if desk.acd.history.pending == 0:
            return
        desk.run(sleep(0.02))
    raise AssertionError("the ACD history did not write its events")


def _problem(response: httpx.Response) -> tuple[int, str | None, str]:
    [error] = response.json()["errors"]
    return response.status_code, error["field"], error["problem"]


def test_an_agent_tags_its_own_calls_and_the_report_counts_them(office: Desk) -> None:
    acd, now = office.acd, office.acd.reactor.seconds()
    acd.events.publish(CallerJoined(now - 50, "c1", "sales", "vip", 1))
    acd.events.publish(CallerConnected(now - 40, "c1", "sales", "6001", 10))
    acd.events.publish(CallerJoined(now - 30, "c2", "sales", "key", 1))
    acd.events.publish(CallerConnected(now - 5, "c2", "sales", "6001", 25))  # alice's last
    acd.events.publish(CallerJoined(now - 30, "c3", "sales", "ordinary", 2))
    acd.events.publish(CallerConnected(now - 4, "c3", "sales", "6002", 26))
    _written(office)

    assert office.call("GET", "/api/v1/dispositions", "alice").json() == {
        "dispositions": ["resolved", "callback_promised", "wrong_number"]
    }
    tagged = office.call("POST", "/api/v1/agent/disposition", "alice",
                         json={"call_id": "c2", "disposition": "callback_promised",
                               "note": "  call back at 5 pm\nabout the invoice "})  # fmt: skip
    assert tagged.status_code == 200, tagged.text
    body = tagged.json()
    assert (body["call_id"], body["queue"], body["agent"]) == ("c2", "sales", "6001")
    assert body["note"] == "call back at 5 pm\nabout the invoice" and body["at"] >= now
    # An earlier call of alice's: found in the ACD history.
    earlier = office.call("POST", "/api/v1/agent/disposition", "alice",
                          json={"call_id": "c1", "disposition": "resolved"})  # fmt: skip
    assert earlier.status_code == 200, earlier.text

    not_hers = office.call("POST", "/api/v1/agent/disposition", "alice",
                           json={"call_id": "c3", "disposition": "resolved"})  # fmt: skip
    assert (
        _problem(not_hers)[:2] == (409, None)
        and "not answered by agent 6001" in (_problem(not_hers)[2])
    )
    unknown = office.call("POST", "/api/v1/agent/disposition", "alice",
                          json={"call_id": "c2", "disposition": "sold"})  # fmt: skip
    status, field, problem = _problem(unknown)
    assert (status, field) == (422, "body.disposition")
    assert "resolved, callback_promised, wrong_number" in problem
    bell = {"call_id": "c2", "disposition": "resolved", "note": "a\x07"}
    bad_note = office.call("POST", "/api/v1/agent/disposition", "alice", json=bell)
    assert _problem(bad_note)[:2] == (422, "body.note")
    by_supervisor = office.call("POST", "/api/v1/agent/disposition", "sam",
                                json={"call_id": "c2", "disposition": "resolved"})  # fmt: skip
    assert by_supervisor.status_code == 403
    _written(office)

    today = datetime.fromtimestamp(now, PARIS).date().isoformat()
    report = office.call("GET", f"/api/v1/reports/acd?from={today}&to={today}", "sam")
    assert report.status_code == 200, report.text
    data = report.json()
    assert (data["from"], data["to"], data["timezone"]) == (today, today, "Europe/Paris")
    assert set(data) == {"from", "to", "timezone", "start", "end", "queues", "agents",
                         "tiers", "intervals"}  # fmt: skip
    queues = {q["queue"]: q for q in data["queues"]}
    assert (queues["sales"]["offered"], queues["sales"]["answered"]) == (3, 3)
    assert queues["sales"]["service_level"] == pytest.approx(1 / 3)
    assert queues["support"]["offered"] == 0 and queues["support"]["service_level"] is None
    agents = {a["agent"]: a for a in data["agents"]}
    assert agents["6001"]["dispositions"] == {"callback_promised": 1, "resolved": 1}
    assert agents["6001"]["answered"] == 2 and agents["6002"]["dispositions"] == {}
    assert {i["queue"] for i in data["intervals"]} == {"sales"}
    assert sum(i["offered"] for i in data["intervals"]) == 3
    assert all(set(i) >= {"start", "queue", "offered", "answered", "abandoned",
                          "service_level"} for i in data["intervals"])  # fmt: skip

    as_csv = office.call(
        "GET", f"/api/v1/reports/acd?from={today}&to={today}&format=csv&by=agent", "root"
    )
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.headers["content-disposition"] == (
        f'attachment; filename="acd-agent-{today}-{today}.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["disposition_callback_promised"] for r in rows] == ["1", "0"]


def test_reports_refuse_agents_and_bad_ranges_naming_the_field(office: Desk) -> None:
    ok = "/api/v1/reports/acd?from=2026-01-01&to=2026-01-02"
    assert office.call("GET", ok, "sam").status_code == 200
    assert _problem(office.call("GET", ok, "alice"))[:2] == (403, None)
    assert office.call("GET", ok, None).status_code == 401
    backwards = office.call("GET", "/api/v1/reports/acd?from=2026-01-02&to=2026-01-01", "sam")
    assert _problem(backwards)[:2] == (422, "query.to")
    too_long = office.call("GET", "/api/v1/reports/acd?from=2026-01-01&to=2026-04-04", "sam")
    assert _problem(too_long)[:2] == (422, "query.to") and "92" in _problem(too_long)[2]
    not_a_day = office.call("GET", "/api/v1/reports/acd?from=2026-02-30&to=2026-03-01", "sam")
    assert not_a_day.status_code == 422
    assert not_a_day.json()["errors"][0]["field"] == "query.from"
    bad_table = office.call("GET", ok + "&format=csv&by=week", "sam")
    assert bad_table.status_code == 422 and bad_table.json()["errors"][0]["field"] == "query.by"
    empty = office.call("GET", ok + "&format=csv&by=interval", "sam")
    assert empty.status_code == 200 and empty.text.splitlines() == ["start,queue"]


def test_staffing_needs_per_interval_from_the_days_calls(office: Desk) -> None:
    acd = office.acd
    day = date(2026, 3, 29)  # Paris's 23-hour day
    nine = datetime(2026, 3, 29, 9, 0, tzinfo=PARIS).timestamp()
    # Bob (sales and support) staffed from 08:50 to 09:22:30, paused until 09:25, then out.
    acd.events.publish(AgentStateChanged(nine - 600, "6002", "available"))
    acd.events.publish(AgentStateChanged(nine + 1350, "6002", "paused", "break"))
    acd.events.publish(AgentStateChanged(nine + 1500, "6002", "logged_out"))
    for n in range(20):  # 20 calls of 180 s between 09:00 and 09:15
        at, call = nine + n * 40, f"s{n}"
        acd.events.publish(CallerJoined(at, call, "sales", "ordinary", 1))
        acd.events.publish(CallerConnected(at + 5, call, "sales", "6001", 5))
        acd.events.publish(CallCompleted(at + 185, call, "sales", "6001", 180))
    _written(office)
    answer = office.call("GET", "/api/v1/staffing?queue=sales&date=2026-03-29", "sam")
    assert answer.status_code == 200, answer.text
    plan = answer.json()
    assert (plan["queue"], plan["date"], plan["interval"]) == ("sales", "2026-03-29", 900)
    assert (plan["target"], plan["threshold"]) == (0.8, 20)
    intervals = plan["intervals"]
    assert len(intervals) == 23 * 4
    by_start = {datetime.fromtimestamp(i["start"], PARIS).strftime("%H:%M"): i for i in intervals}
    first = by_start["09:00"]
    assert first["offered"] == 20 and first["aht_source"] == "interval"
    assert first["traffic"] == pytest.approx(20 * 180 / 900)
    assert first["agents_needed"] == staffing_need(20, 180, 900, 20, 0.8).agents
    assert first["service_level"] >= 0.8
    # Alice's calls carry no state changes here: only Bob's time counts as staffed.
    staffed = {t: by_start[t]["agents_staffed"] for t in ("08:45", "09:00", "09:15", "09:30")}
    assert staffed == {"08:45": pytest.approx(10 / 15), "09:00": 1.0,
                       "09:15": pytest.approx(7.5 / 15), "09:30": 0.0}  # fmt: skip
    quiet = by_start["14:00"]  # nothing offered: the day's AHT, no agents needed
    assert (quiet["offered"], quiet["aht_source"], quiet["agents_needed"]) == (0, "day", 0)
    assert quiet["aht"] == pytest.approx(180)

    support = office.call("GET", f"/api/v1/staffing?queue=support&date={day}", "root").json()
    assert {(i["aht"], i["aht_source"]) for i in support["intervals"]} == {(240, "fallback")}
    unknown = office.call("GET", "/api/v1/staffing?queue=billing", "sam")
    status, field, problem = _problem(unknown)
    assert (status, field) == (422, "query.queue") and "sales, support" in problem
    assert office.call("GET", "/api/v1/staffing?queue=sales", "alice").status_code == 403
    today = office.call("GET", "/api/v1/staffing?queue=sales", "sam").json()
    assert today["date"] == datetime.fromtimestamp(acd.reactor.seconds(), PARIS).date().isoformat()
