"""Call history on real databases: the Alembic migrations, batched writes, outages."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

import migrations
from acd.history import metadata as acd_metadata
from cti.calls.events import Agent, CallAnswered, CallArrived, CallEnded, Caller
from cti.history import CallEventRecorder, load_call_events, metadata
from tests.conftest import sleep


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.sqlite3'}"
    return request.getfixturevalue("postgres_url")


def _events(call_id: str, n: int) -> list[Any]:
    caller = Caller(number="+302101234567", name="Ελένη Παππά", raw_number="+302101234567")
    agent = Agent(interface="Local/6002@agents", name="Agent Bob")
    out: list[Any] = [CallArrived(call_id, 100.0, caller=caller, dialled="5000", channel="c;2")]
    out += [CallAnswered(call_id, 100.0 + i, agent=agent, wait=float(i)) for i in range(n)]
    out.append(
        CallEnded(call_id, 200.0, cause=16, cause_text="Normal Clearing", ended_by="caller",
                  duration=100.0, talk_time=90.0, answered=True)
    )
    return out


def test_migrations_build_the_schema_the_code_describes(database_url: str) -> None:
    migrations.upgrade(database_url)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        assert compare_metadata(context, [metadata, acd_metadata]) == []
    assert {"call_events", "acd_events"} <= set(inspect(engine).get_table_names())
    migrations.downgrade(database_url, "base")
    assert not {"call_events", "acd_events"} & set(inspect(engine).get_table_names())
    migrations.upgrade(database_url)
    assert "call_events" in inspect(engine).get_table_names()
    engine.dispose()


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
    """The database refuses writes (locked) for a while; the recorder retries and keeps all."""
    path = tmp_path / "outage.sqlite3"
    url = f"sqlite:///{path}"
    migrations.upgrade(url)
    engine = create_engine(url, connect_args={"timeout": 0.05})
    recorder = CallEventRecorder(engine, reactor, batch_size=10, retry_min=0.05, retry_max=0.2)
    blocker = sqlite3.connect(path)
    blocker.execute("BEGIN EXCLUSIVE")
    events = _events("c1", 25)

    async def go() -> None:
        done = [recorder.record(e) for e in events]
        await sleep(0.6)
        assert recorder.failed_batches >= 2
        assert recorder.pending == len(events)
        blocker.rollback()  # the database is back
        for d in done:
            await d
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
        assert recorder.pending == len(events)  # in flight counts until committed
        await recorder.close()
        assert recorder.pending == 0
        assert all(d.called for d in done)

    run(go())
    assert load_call_events(engine) == [e.to_record() for e in events]
    engine.dispose()


def test_close_during_an_outage_fires_and_says_what_was_not_written(
    tmp_path: Path, reactor: Any, run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "down.sqlite3"
    url = f"sqlite:///{path}"
    migrations.upgrade(url)
    engine = create_engine(url, connect_args={"timeout": 0.05})
    recorder = CallEventRecorder(engine, reactor, batch_size=10, retry_min=0.05)
    blocker = sqlite3.connect(path)
    blocker.execute("BEGIN EXCLUSIVE")

    async def go() -> None:
        for e in _events("c3", 3):
            recorder.record(e)
        await sleep(0.2)
        await recorder.close()

    run(go(), timeout=10)
    blocker.close()
    assert "5 events could not be written at shutdown" in caplog.text
    engine.dispose()


def test_a_recorder_that_never_wrote_leaves_no_thread_behind(reactor: Any, run: Any) -> None:
    recorder = CallEventRecorder(create_engine("sqlite://"), reactor)
    run(recorder.close())
    assert not recorder._pool.started
