"""The history's spool and retry loop on a deterministic clock: backoff while the database is
down, one log line per state change, prompt resumption, the spool's bound and alarm, and
the spool files themselves (torn tails, damaged records, a second process, SIGKILL)."""

from __future__ import annotations

import logging
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import OperationalError
from twisted.internet.task import Clock

import migrations
from bench.acd_hour import InlinePool
from cti.calls.events import DigitsReceived
from cti.history import CallEventRecorder, Closed, RecorderClosed, load_call_events
from cti.spool import FileSpool, SpoolLocked
from cti.stream import EventStream

ROOT = Path(__file__).resolve().parent.parent


class ClockReactor(Clock):
    """A clock whose thread results come back as immediate timers."""

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.callLater(0, f, *args, **kwargs)


class Flaky:
    """An engine whose connections are refused while ``down``: a database outage."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.down = False
        self.attempts = 0

    def begin(self) -> Any:
        self.attempts += 1
        if self.down:
            refused = ConnectionRefusedError(111, "Connection refused")
            raise OperationalError("INSERT INTO call_events ...", {}, refused)
        return self.engine.begin()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ClockReactor:
    monkeypatch.setattr("cti.history.ThreadPool", InlinePool)
    return ClockReactor()


@pytest.fixture
def database(tmp_path: Path) -> Flaky:
    url = f"sqlite:///{tmp_path / 'history.sqlite3'}"
    migrations.upgrade(url)
    return Flaky(create_engine(url))


def _event(n: int) -> DigitsReceived:
    return DigitsReceived(f"call-{n // 4}", float(n), digits=str(n % 10))


def _advance_until(clock: Clock, done: Callable[[], bool], limit: float = 60.0) -> float:
    """Advance in 0.1 s steps until ``done()``; the simulated seconds it took."""
    start = clock.seconds()
    while not done():
        assert clock.seconds() - start < limit, "not done in time"
        clock.advance(0.1)
    return clock.seconds() - start


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_retries_back_off_log_once_and_resume_within_the_cap(
    clock: ClockReactor, database: Flaky, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """45 s down at 40 events/s: about a dozen attempts (not one per event), one timer at a
    time, one WARNING; back, the backlog is written within ``retry_max`` and one INFO."""
    caplog.set_level(logging.INFO, "cti.history")
    recorder = CallEventRecorder(
        database, clock, spool_dir=tmp_path / "spool", sync_interval=None, retry_min=0.5,
        retry_max=5.0, rng=random.Random(7),
    )  # fmt: skip
    database.down = True
    events = [_event(n) for n in range(1800)]
    for n, event in enumerate(events):
        assert recorder.record(event).called  # never waits for the database
        if n % 4 == 3:
            clock.advance(0.1)
            assert len(clock.getDelayedCalls()) <= 1  # one retry timer, never cancelled
    # 0.5 + 1 + 2 + 4 s, then every 5 s +/- 20%: about 12 attempts in 45 s.
    assert 8 <= database.attempts == recorder.failed_batches <= 16
    [warning] = _messages(caplog, logging.WARNING)
    assert "database unreachable (ConnectionRefusedError" in warning
    assert recorder.spooled == len(events)

    database.down = False
    assert _advance_until(clock, lambda: not recorder.pending) <= 5.0 * 1.2 + 0.2
    [info] = _messages(caplog, logging.INFO)
    assert "resumed after an outage of 4" in info  # 4x s: 45 s minus the first retry delay
    assert "1800 spooled events caught up" in info
    assert load_call_events(database.engine) == [e.to_record() for e in events]
    assert _messages(caplog, logging.WARNING) == [warning]


def test_a_full_spool_raises_one_alarm_and_only_then_holds_the_producer(
    clock: ClockReactor, database: Flaky, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The producer (AMI reading) is never paused by an outage while the spool has room;
    a full spool holds new events in memory, pauses it, raises one ERROR; both clear."""
    caplog.set_level(logging.INFO, "cti.history")
    spool = tmp_path / "spool"
    recorder = CallEventRecorder(
        database, clock, spool_dir=spool, spool_max_bytes=20_000, sync_interval=None,
        retry_max=2.0,
    )  # fmt: skip
    stream: EventStream[Any] = EventStream("call events")
    stream.subscribe(recorder.record, max_pending=50, window=50, name="call history")
    pauses: list[str] = []

    class Producer:
        def pauseProducing(self) -> None:
            pauses.append("pause")

        def resumeProducing(self) -> None:
            pauses.append("resume")

    stream.register_producer(Producer())  # type: ignore[arg-type]
    database.down = True
    events = [_event(n) for n in range(200)]
    for event in events[:30]:
        stream.publish(event)
        clock.advance(0.05)
    assert pauses == [] and not recorder.spool_full  # an outage alone pauses nothing
    for event in events[30:]:
        stream.publish(event)
        clock.advance(0.05)
        assert sum(f.stat().st_size for f in spool.rglob("*.seg")) <= 20_000
    assert recorder.spool_full and pauses == ["pause"]
    # In memory: the stream's window in the recorder, the rest in the stream (paused).
    assert 30 < recorder.spooled < 100 and recorder.pending - recorder.spooled == 50
    [alarm] = _messages(caplog, logging.ERROR)
    assert "ALARM spool full" in alarm and "database unreachable for" in alarm

    database.down = False
    _advance_until(clock, lambda: not recorder.pending)
    assert pauses == ["pause", "resume"] and not recorder.spool_full
    assert any("spool alarm cleared" in m for m in _messages(caplog, logging.INFO))
    assert _messages(caplog, logging.ERROR) == [alarm]
    assert load_call_events(database.engine) == [e.to_record() for e in events]


def test_close_keeps_what_it_could_not_write_within_the_grace_period(
    clock: ClockReactor, database: Flaky, tmp_path: Path
) -> None:
    recorder = CallEventRecorder(
        database, clock, spool_dir=tmp_path / "spool", sync_interval=None, close_grace=3.0
    )
    database.down = True
    for n in range(10):
        recorder.record(_event(n))
    clock.advance(20)
    attempts = database.attempts
    closing = recorder.close()
    assert database.attempts == attempts + 1  # at once, not after the pending backoff
    refused = recorder.record(_event(99))
    assert refused.called  # failed at once, not queued
    refused.addErrback(lambda f: f.trap(RecorderClosed))
    assert _advance_until(clock, lambda: closing.called) == pytest.approx(3.0, abs=0.11)
    closed = closing.result
    assert isinstance(closed, Closed) and closed.kept == 10 and closed.all_kept
    # Backing off from retry_min again, the last attempt at the end of the grace period.
    assert database.attempts == attempts + 4


def test_a_torn_tail_is_cut_and_a_damaged_record_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = FileSpool(tmp_path, None, max_bytes=2**20, sync_interval=None)
    for n in range(5):
        spool.append(b'{"n":%d}' % n)
    assert spool.close().called
    [segment] = tmp_path.glob("*.seg")
    data = segment.read_bytes().replace(b'{"n":2}', b'{"n":7}')  # a bit flipped on disk
    segment.write_bytes(data + b'0badc0de {"n":5')  # a write cut short by a power failure
    spool = FileSpool(tmp_path, None, max_bytes=2**20, sync_interval=None)
    assert "cutting a torn record" in caplog.text
    assert spool.spooled == spool.recovered == 5
    records, position = spool.read(100)
    assert records == [b'{"n":0}', b'{"n":1}', b'{"n":3}', b'{"n":4}'] and spool.corrupt == 1
    assert "damaged record skipped" in caplog.text
    spool.ack(position)
    assert spool.spooled == 0
    spool.close()
    assert not list(tmp_path.glob("*.seg"))  # nothing left: an empty directory


def test_a_spool_belongs_to_one_process(tmp_path: Path) -> None:
    first = FileSpool(tmp_path, None, max_bytes=2**20, sync_interval=None)
    with pytest.raises(SpoolLocked, match="in use by another process"):
        FileSpool(tmp_path, None, max_bytes=2**20, sync_interval=None)
    first.close()
    FileSpool(tmp_path, None, max_bytes=2**20, sync_interval=None).close()


def test_segments_roll_and_are_deleted_once_written(
    clock: ClockReactor, database: Flaky, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    recorder = CallEventRecorder(
        database, clock, spool_dir=spool, spool_max_bytes=64_000, sync_interval=None
    )
    database.down = True
    events = [_event(n) for n in range(100)]
    for event in events:
        recorder.record(event)
    clock.advance(0)  # the end of the reactor turn: its records are written together
    assert len(list(spool.rglob("*.seg"))) > 3  # 8 KB segments
    database.down = False
    _advance_until(clock, lambda: not recorder.pending)
    assert len(list(spool.rglob("*.seg"))) <= 1  # only the one being written
    recorder.close()
    clock.advance(1)
    assert load_call_events(database.engine) == [e.to_record() for e in events]


#: A process that spools events its database never takes, then is killed outright.
CHILD = """
import os, signal, sys
from pathlib import Path
from sqlalchemy import create_engine
from twisted.internet.task import Clock
from cti.calls.events import DigitsReceived
from cti.history import CallEventRecorder
recorder = CallEventRecorder(
    create_engine("sqlite:////nonexistent/history.sqlite3"), Clock(),
    spool_dir=Path(sys.argv[1]), sync_interval=None,
)
clock = recorder._reactor
for n in range(int(sys.argv[2])):
    recorder.record(DigitsReceived(f"call-{n // 4}", float(n), digits=str(n % 10)))
    if n % 7 == 6:
        clock.advance(0)  # a reactor turn ends: the records of that turn are on disk
clock.advance(0)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_events_spooled_before_a_sigkill_are_written_at_the_next_start(
    clock: ClockReactor, database: Flaky, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(spool), "300"], cwd=ROOT, capture_output=True,
        timeout=60,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    recorder = CallEventRecorder(database, clock, spool_dir=spool, sync_interval=None)
    assert recorder.pending == 300
    _advance_until(clock, lambda: not recorder.pending)
    assert load_call_events(database.engine) == [_event(n).to_record() for n in range(300)]


def test_records_queued_for_the_end_of_the_turn_are_read_after_it(tmp_path: Path) -> None:
    clock = Clock()
    spool = FileSpool(tmp_path, clock, max_bytes=2**20, sync_interval=None)
    spool.append(b'{"n":1}')
    spool.append(b'{"n":2}')
    assert spool.spooled == 2
    # The writer thread may look before the turn ends: it finds nothing, acknowledges nothing.
    records, position = spool.read(10)
    assert records == []
    spool.ack(position)
    clock.advance(0)  # the end of the turn: one write for both
    records, position = spool.read(10)
    assert records == [b'{"n":1}', b'{"n":2}']
    spool.ack(position)
    assert spool.spooled == 0
    spool.close()
