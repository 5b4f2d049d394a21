"""Call history on real databases: the Alembic migrations, batched writes, outages kept in
the spool, one row per event and per fact."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text

import migrations
from acd.events import AgentStateChanged, CallerJoined, CallerOffered
from acd.history import AcdEventRecorder, acd_events
from acd.history import metadata as acd_metadata
from callcenter.settings import ConfigError, history_spool_dir, load_settings
from crm_bridge.schema import metadata as crm_metadata
from cti.calls.events import (
    Agent,
    CallAnswered,
    CallArrived,
    CallEnded,
    Caller,
    CallOffered,
    CallQueued,
    DigitsReceived,
)
from cti.history import (
    CallEventRecorder,
    Closed,
    EventRecorder,
    call_events,
    load_call_events,
    metadata,
)
from tests.conftest import sleep
from tickets.schema import metadata as tickets_metadata
from web.accounts import metadata as web_metadata


def _events(call_id: str, n: int) -> list[Any]:
    """``arrived``, ``n`` digits (a kind that may repeat), ``answered``, ``ended``."""
    caller = Caller(number="+302101234567", name="Ελένη Παππά", raw_number="+302101234567")
    agent = Agent(interface="Local/6002@agents", name="Agent Bob")
    out: list[Any] = [CallArrived(call_id, 100.0, caller=caller, dialled="5000", channel="c;2")]
    out += [DigitsReceived(call_id, 100.0 + i, digits=str(i % 10)) for i in range(n)]
    out.append(CallAnswered(call_id, 150.0, agent=agent, wait=50.0))
    out.append(
        CallEnded(call_id, 200.0, cause=16, cause_text="Normal Clearing", ended_by="caller",
                  duration=100.0, talk_time=90.0, answered=True)
    )
    return out


# Alembic cannot compare the tickets' trigram index (an expression): it says so, and skips it.
@pytest.mark.filterwarnings("ignore:.*'ix_tickets_text':UserWarning")
def test_migrations_build_the_schema_the_code_describes(database_url: str) -> None:
    migrations.upgrade(database_url)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        # alembic types one MetaData; AutogenContext takes a sequence of them too.
        every = [metadata, acd_metadata, crm_metadata, web_metadata, tickets_metadata]
        assert compare_metadata(context, every) == []  # type: ignore[arg-type]
    assert {"call_events", "acd_events", "tickets"} <= set(inspect(engine).get_table_names())
    migrations.downgrade(database_url, "0005")  # the tickets' tables go, the others stay
    names = set(inspect(engine).get_table_names())
    assert not {t.name for t in tickets_metadata.sorted_tables} & names
    assert {"call_events", "customers", "accounts"} <= names
    migrations.downgrade(database_url, "base")
    assert not {"call_events", "acd_events"} & set(inspect(engine).get_table_names())
    migrations.upgrade(database_url)
    assert {"call_events", "tickets"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_migration_0003_keeps_the_rows_up_and_down(
    database_url: str, tmp_path: Path, reactor: Any, run: Any
) -> None:
    """Rows from before 0003 (even a doubled ``answered``, the bug it fixes) survive the
    upgrade with no event id or fact, new rows get both, and the downgrade keeps them all."""
    migrations.upgrade(database_url, "0002")
    engine = create_engine(database_url)
    legacy = [
        {"pbx": "default", "call_id": "old", "kind": kind, "at": 1.0, "recorded_at": 2.0,
         "payload": {"kind": kind}}
        for kind in ("arrived", "answered", "answered")
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO call_events (pbx, call_id, kind, at, recorded_at, payload) "
            "VALUES (:pbx, :call_id, :kind, :at, :recorded_at, :payload)"
        ), [{**row, "payload": json.dumps(row["payload"])} for row in legacy])  # fmt: skip
    migrations.upgrade(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT kind, event_id, fact FROM call_events ORDER BY id"))
        assert [(kind, event_id, fact) for kind, event_id, fact in rows] == [
            ("arrived", None, None),
            ("answered", None, None),
            ("answered", None, None),
        ]
    recorder = CallEventRecorder(engine, reactor, spool_dir=tmp_path / "spool")
    events = _events("new", 1)
    for e in events:
        recorder.record(e)
    assert run(recorder.close()).all_kept
    assert len(load_call_events(engine)) == 3 + len(events)
    engine.dispose()
    migrations.downgrade(database_url, "0002")
    engine = create_engine(database_url)
    columns = {c["name"] for c in inspect(engine).get_columns("call_events")}
    assert not {"event_id", "fact"} & columns
    assert not {"event_id", "fact"} & {c["name"] for c in inspect(engine).get_columns("acd_events")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM call_events")).scalar() == 3 + len(events)
    engine.dispose()
    migrations.upgrade(database_url)


def test_recorder_persists_every_event_in_order(database_url: str, reactor: Any, run: Any) -> None:
    migrations.upgrade(database_url)
    engine = create_engine(database_url)
    recorder = CallEventRecorder(engine, reactor, pbx="site-a", batch_size=7)
    events = _events("1795434834.4", 40)

    async def go() -> None:
        done = [recorder.record(e) for e in events]
        for d in done:
            await d
        await recorder.close()

    run(go())
    stored = load_call_events(engine, "1795434834.4")
    assert stored == [e.to_record() for e in events]
    assert stored[0]["caller"]["name"] == "Ελένη Παππά"
    assert load_call_events(engine, "other") == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT DISTINCT pbx FROM call_events")).scalars().all() == [
            "site-a"
        ]
    engine.dispose()


def test_a_database_outage_loses_nothing(tmp_path: Path, reactor: Any, run: Any) -> None:
    """The database refuses writes (locked) for a while: every event is spooled at once
    (the producer never waits), retried with backoff and written in order once it is back."""
    path = tmp_path / "outage.sqlite3"
    url = f"sqlite:///{path}"
    migrations.upgrade(url)
    engine = create_engine(url, connect_args={"timeout": 0.05})
    recorder = CallEventRecorder(
        engine, reactor, spool_dir=tmp_path / "spool", batch_size=10, retry_min=0.05,
        retry_max=0.2,
    )  # fmt: skip
    blocker = sqlite3.connect(path)
    blocker.execute("BEGIN EXCLUSIVE")
    events = _events("c1", 25)

    async def go() -> None:
        done = [recorder.record(e) for e in events]
        assert all(d.called for d in done)  # in the spool: nothing waits for the database
        await sleep(0.6)
        assert recorder.failed_batches >= 2
        assert recorder.pending == recorder.spooled == len(events)
        blocker.rollback()  # the database is back
        while recorder.pending:
            await sleep(0.02)
        await recorder.close()

    run(go())
    blocker.close()
    assert load_call_events(engine) == [e.to_record() for e in events]
    engine.dispose()


def test_close_fires_while_a_batch_is_in_flight_and_writes_the_rest(
    tmp_path: Path, reactor: Any, run: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'close.sqlite3'}"
    migrations.upgrade(url)
    engine = create_engine(url)
    recorder = CallEventRecorder(engine, reactor, batch_size=5)
    events = _events("c2", 12)

    async def go() -> None:
        done = [recorder.record(e) for e in events]  # the first batch of 5 is in flight
        assert recorder.pending == len(events)  # not in the database until committed
        assert await recorder.close() == Closed(kept=0, lost=0)
        assert recorder.pending == 0
        assert all(d.called for d in done)

    run(go())
    assert load_call_events(engine) == [e.to_record() for e in events]
    engine.dispose()


def _locked(tmp_path: Path) -> tuple[Any, sqlite3.Connection]:
    """A migrated SQLite database and a connection holding it locked (an outage)."""
    path = tmp_path / "down.sqlite3"
    migrations.upgrade(f"sqlite:///{path}")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    blocker = sqlite3.connect(path)
    blocker.execute("BEGIN EXCLUSIVE")
    return engine, blocker


def test_close_during_an_outage_keeps_the_backlog_for_the_next_start(
    tmp_path: Path, reactor: Any, run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cti.history")
    engine, blocker = _locked(tmp_path)
    options: dict[str, Any] = {
        "spool_dir": tmp_path / "spool", "retry_min": 0.05, "close_grace": 0.3
    }
    recorder = CallEventRecorder(engine, reactor, **options)
    events = _events("c3", 3)

    async def go() -> Closed:
        for e in events:
            recorder.record(e)
        await sleep(0.2)
        return await recorder.close()

    assert run(go()) == Closed(kept=6, lost=0)
    assert "6 events kept in the spool" in caplog.text
    blocker.rollback()  # the database is back: the next start writes the backlog first
    later = CallEventRecorder(engine, reactor, **options)
    more = _events("c4", 1)

    async def restart() -> Closed:
        for e in more:
            later.record(e)
        return await later.close()

    assert run(restart()) == Closed(kept=0, lost=0)
    blocker.close()
    assert "6 events from a previous run are in the spool" in caplog.text
    assert load_call_events(engine) == [e.to_record() for e in events + more]
    assert not list((tmp_path / "spool" / "call_events.default").glob("*.seg"))
    engine.dispose()


def test_close_during_an_outage_without_a_spool_on_disk_says_what_was_lost(
    tmp_path: Path, reactor: Any, run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    engine, blocker = _locked(tmp_path)
    recorder = CallEventRecorder(engine, reactor, retry_min=0.05, close_grace=0.3)

    async def go() -> Closed:
        for e in _events("c3", 3):
            recorder.record(e)
        await sleep(0.2)
        return await recorder.close()

    closed = run(go())
    blocker.close()
    assert closed == Closed(kept=0, lost=6) and not closed.all_kept
    assert "6 events could not be kept" in caplog.text
    engine.dispose()


def test_a_recorder_that_never_wrote_leaves_no_thread_behind(reactor: Any, run: Any) -> None:
    recorder = CallEventRecorder(create_engine("sqlite://"), reactor)
    run(recorder.close())
    assert not recorder._pool.started


def test_a_repeated_fact_is_one_row_and_the_first_wins(
    database_url: str, tmp_path: Path, reactor: Any, run: Any
) -> None:
    """A resync after a restart re-emits ``arrived`` and ``answered`` (with another wait):
    the store keeps the first of each; kinds that may repeat (``offered``) all stay."""
    migrations.upgrade(database_url)
    engine = create_engine(database_url)
    calls = CallEventRecorder(engine, reactor, spool_dir=tmp_path / "spool")
    other_pbx = CallEventRecorder(engine, reactor, pbx="site-b")
    acd = AcdEventRecorder(engine, reactor, spool_dir=tmp_path / "spool")
    caller = Caller(number="+15551230001", name=None)
    agent = Agent(interface="Local/6001@agents")
    first = [
        CallArrived("k1", 1.0, caller=caller, dialled="5000", channel="c;2"),
        CallQueued("k1", 2.0, queue="sales", position=1),
        CallOffered("k1", 3.0, agent=agent, queue="sales"),
        CallOffered("k1", 4.0, agent=agent, queue="sales"),
        CallAnswered("k1", 5.0, agent=agent, wait=3.0, queue="sales"),
    ]
    again = [  # what the next run's resync says about the same call
        CallArrived("k1", 1.5, caller=caller, dialled="5000", channel="c;2", restored=True),
        CallQueued("k1", 2.0, queue="sales", position=1, restored=True),
        CallQueued("k1", 6.0, queue="support", position=1),
        CallAnswered("k1", 7.0, agent=agent, wait=9.0, queue="sales", restored=True),
    ]
    acd_events_in = [
        CallerJoined(1.0, call_id="k1", queue="sales", tier="ordinary", position=1),
        CallerOffered(2.0, call_id="k1", queue="sales", agents=("6001",)),
        CallerOffered(3.0, call_id="k1", queue="sales", agents=("6001",)),
        CallerJoined(4.0, call_id="k1", queue="sales", tier="ordinary", position=1),
        AgentStateChanged(5.0, agent="6001", state="available"),
        AgentStateChanged(6.0, agent="6001", state="available"),
    ]

    async def go() -> None:
        for e in first:
            calls.record(e)
        while calls.pending:  # stored, as by a previous run
            await sleep(0.02)
        for e in again:
            calls.record(e)
        other_pbx.record(first[0])  # another PBX's call with the same id is its own
        for a in acd_events_in:
            acd.record(a)
        for r in (calls, other_pbx, acd):
            assert (await r.close()).all_kept

    run(go())
    stored = load_call_events(engine, "k1")
    kept = [*first, again[2]]
    assert stored == [e.to_record() for e in kept] + [first[0].to_record()]
    assert [e["wait"] for e in stored if e["kind"] == "answered"] == [3.0]
    with engine.connect() as conn:
        facts = conn.execute(
            select(call_events.c.fact).where(call_events.c.pbx == "default")
            .order_by(call_events.c.id)
        ).scalars().all()  # fmt: skip
        acd_kinds = conn.execute(select(acd_events.c.kind).order_by(acd_events.c.id)).scalars()
        assert facts == ["arrived", "queued:sales", None, None, "answered", "queued:support"]
        assert list(acd_kinds) == ["caller_joined", *["caller_offered"] * 2, *["agent_state"] * 2]
    engine.dispose()


def test_a_replayed_spool_writes_each_event_once(tmp_path: Path, reactor: Any, run: Any) -> None:
    """A crash after a batch's commit and before its spool acknowledgement replays the
    batch at the next start: the copy of the spool taken before the ack is that state."""
    engine, blocker = _locked(tmp_path)
    spool = tmp_path / "spool"
    recorder = CallEventRecorder(engine, reactor, spool_dir=spool, retry_min=0.05)
    events = _events("r1", 30)

    async def go(recorder: CallEventRecorder) -> None:
        while recorder.pending:
            await sleep(0.02)
        assert (await recorder.close()).all_kept

    for e in events:
        recorder.record(e)
    run(sleep(0))  # the end of the reactor turn: the turn's records are written
    shutil.copytree(spool, tmp_path / "crashed", ignore=shutil.ignore_patterns("lock"))
    blocker.rollback()
    blocker.close()
    run(go(recorder))
    assert load_call_events(engine) == [e.to_record() for e in events]
    replay = CallEventRecorder(engine, reactor, spool_dir=tmp_path / "crashed")
    assert replay.pending == len(events)
    run(go(replay))
    assert replay.written == len(events)  # all sent again ...
    assert load_call_events(engine) == [e.to_record() for e in events]  # ... stored once
    engine.dispose()


def test_an_event_the_database_refuses_is_set_aside_not_retried_forever(
    tmp_path: Path, reactor: Any, run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'bad.sqlite3'}"
    migrations.upgrade(url)
    engine = create_engine(url)

    def row(event: Any) -> dict[str, Any]:  # a bug that breaks one event's row
        at = None if event.kind == "answered" else event.at
        return {"pbx": "p", "call_id": event.call_id, "kind": event.kind, "at": at,
                "payload": event.to_record()}  # fmt: skip

    recorder = EventRecorder(
        engine, reactor, call_events, row, name="test history", spool_dir=tmp_path / "spool"
    )
    events = _events("b1", 3)

    async def go() -> None:
        for e in events:
            recorder.record(e)
        assert (await recorder.close()).all_kept

    run(go())
    assert load_call_events(engine) == [e.to_record() for e in events if e.kind != "answered"]
    assert recorder.rejected == 1 and recorder.failed_batches == 0
    [rejected] = (tmp_path / "spool" / "rejected.jsonl").read_text().splitlines()
    assert '"kind":"answered"' in rejected
    assert "refused by the database (IntegrityError" in caplog.text
    engine.dispose()


def test_history_settings_say_where_the_spool_is_and_check_the_backoff() -> None:
    sqlite_file = {"CALLCENTER_DATABASE__URL": "sqlite:////srv/cc/history.sqlite3"}
    assert history_spool_dir(load_settings(None, sqlite_file)) == Path("/srv/cc/spool")
    server = {"CALLCENTER_DATABASE__URL": "postgresql+psycopg://cc@db/cc"}
    assert history_spool_dir(load_settings(None, server)) == Path("var/spool")
    memory = {"CALLCENTER_DATABASE__URL": "sqlite://"}
    assert history_spool_dir(load_settings(None, memory)) is None  # dies with the process
    chosen = {**server, "CALLCENTER_HISTORY__SPOOL_DIR": "/var/spool/cc"}
    assert history_spool_dir(load_settings(None, chosen)) == Path("/var/spool/cc")
    with pytest.raises(ConfigError, match=r"retry_min .* is above retry_max"):
        load_settings(None, {"CALLCENTER_HISTORY__RETRY_MIN": "10"})
    with pytest.raises(ConfigError, match=r"history\.spool_max_bytes"):
        load_settings(None, {"CALLCENTER_HISTORY__SPOOL_MAX_BYTES": "1000"})
