"""Call history: every domain call event persisted through SQLAlchemy, so figures can be
recomputed and a day replayed.

The table is created by the Alembic migrations (``migrations/``); this module only
describes it and writes to it.

A database outage must never cost the AMI link, so :class:`EventRecorder` first appends
every event to a durable local spool (:mod:`cti.spool`) and ``record`` returns as soon as
it is there; a writer drains the spool to the database in order, in batches, on one worker
thread. Only a full spool (its byte bound reached) makes ``record`` wait, and with it AMI
reading.

Exactly once: each event gets a unique ``event_id`` before it is spooled, the tables have
a UNIQUE index on it and rows go in with INSERT ... ON CONFLICT DO NOTHING; a batch's spool
position is acknowledged only after its transaction commits. A crash between the commit
and the acknowledgement replays the batch at the next start, and the database ignores it.
Facts: events that state something at most once per call (``arrived``, ``answered`` ...,
see ``CALL_FACTS``) carry a ``fact`` with a UNIQUE index on (pbx, call_id, fact), so a
fact re-emitted by a resync after a restart can never make a second row: the first wins.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    case,
    func,
    select,
)
from sqlalchemy.exc import DataError, IntegrityError
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from cti.calls.events import CallEvent
from cti.spool import FileSpool, MemorySpool, SpoolFull

log = logging.getLogger(__name__)

E = TypeVar("E")

metadata = MetaData()

#: Default bound of one recorder's spool on disk.
SPOOL_MAX_BYTES = 256 * 2**20
#: Seconds between attempts to move events waiting in memory into a spool that refused
#: them (full, or a disk error).
ADMIT_RETRY = 1.0


def event_table(
    name: str, metadata: MetaData, *columns: Column[Any], indexes: tuple[Index, ...] = ()
) -> Table:
    """An append-only event table: ``id``, ``pbx``, then ``columns`` (which must include
    ``call_id``), then ``kind``, ``at`` (the event's time), ``recorded_at``, the JSON
    ``payload``, ``event_id`` (unique) and ``fact`` (unique per pbx and call); then
    ``indexes``. ``event_id`` is NULL only on rows written before migration 0003."""
    return Table(
        name,
        metadata,
        Column(
            "id",
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("pbx", String(64), nullable=False),
        *columns,
        Column("kind", String(32), nullable=False),
        Column("at", Float(precision=53), nullable=False),
        Column("recorded_at", Float(precision=53), nullable=False),
        Column("payload", JSON(), nullable=False),
        Column("event_id", String(32), nullable=True),
        Column("fact", String(200), nullable=True),
        *indexes,
        Index(f"uq_{name}_event_id", "event_id", unique=True),
        Index(f"uq_{name}_fact", "pbx", "call_id", "fact", unique=True),
    )


call_events = event_table(
    "call_events",
    metadata,
    Column("call_id", String(128), nullable=False),
    indexes=(Index("ix_call_events_call_id", "call_id"), Index("ix_call_events_at", "at")),
)

#: Call event kinds that state a fact at most once per call, and the fact (formatted with
#: the event's record); other kinds may repeat (``fact`` NULL).
CALL_FACTS: Mapping[str, str] = {
    "arrived": "arrived",
    "answered": "answered",
    "ended": "ended",
    "abandoned": "abandoned",
    "parked": "parked",
    "queued": "queued:{queue}",
}


def spool_subdir(spool_dir: Path | None, table: Table, pbx: str) -> Path | None:
    """One recorder's own spool directory under ``spool_dir`` (None: a memory spool)."""
    return None if spool_dir is None else Path(spool_dir) / f"{table.name}.{pbx}"


class Database(Protocol):
    """What a recorder uses of its SQLAlchemy :class:`Engine`: one transaction at a time."""

    def begin(self) -> AbstractContextManager[Connection]: ...


@dataclass(frozen=True, slots=True)
class Closed:
    """What :meth:`EventRecorder.close` left behind: ``kept`` events in the durable spool
    for the next start, ``lost`` events neither in the database nor kept."""

    kept: int
    lost: int

    @property
    def all_kept(self) -> bool:
        return self.lost == 0


class RecorderClosed(Exception):
    """``record`` after ``close``, or an event still waiting for spool room at close."""


class EventRecorder(Generic[E]):
    """Spools events, then writes them into ``table`` in batches; ``record`` returns a
    Deferred fired once the event is in the spool (at once unless the spool is full).

    ``row`` turns an event into the table's columns (``recorded_at``, ``event_id`` and
    ``fact`` are added; ``facts`` maps kinds to fact templates), or None to skip it.
    ``spool_dir`` None keeps the spool in memory (an in-memory database, tests): bounded
    the same, but lost at exit.
    A failed batch is retried by one timer, backing off from ``retry_min`` to ``retry_max``
    seconds (jittered by +/- ``retry_jitter``); ``retry_max`` is how soon writes resume
    after the database is back.
    """

    def __init__(
        self,
        engine: Database,
        reactor: Any,
        table: Table,
        row: Callable[[E], dict[str, Any] | None],
        *,
        name: str,
        facts: Mapping[str, str] | None = None,
        spool_dir: Path | None = None,
        spool_max_bytes: int = SPOOL_MAX_BYTES,
        sync_interval: float | None = 0.05,
        batch_size: int = 500,
        flush_delay: float = 0.05,
        retry_min: float = 0.5,
        retry_max: float = 5.0,
        retry_jitter: float = 0.2,
        close_grace: float = 5.0,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._engine = engine
        self._reactor = reactor
        self._table = table
        self._row = row
        self._name = name
        self._facts = dict(facts or {})
        self._batch_size = batch_size
        self._flush_delay = flush_delay
        self._retry_min = retry_min
        self._retry_max = retry_max
        self._retry_jitter = retry_jitter
        self._retry_delay = retry_min
        self._close_grace = close_grace
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        # Event ids: this recorder's random 64-bit prefix and a counter. Unique across
        # restarts and processes like a uuid4, without reading the system's random source
        # for every event (slow on some VMs: ~0.2 ms a read).
        self._ids = itertools.count()
        self._id_prefix = secrets.token_hex(8)
        self._spool: FileSpool | MemorySpool
        if spool_dir is None:
            self._spool = MemorySpool(spool_max_bytes)
        else:
            self._spool = FileSpool(
                spool_dir, reactor, max_bytes=spool_max_bytes, sync_interval=sync_interval
            )
        self._low_water = spool_max_bytes * 3 // 4
        # Events the spool refused (full, or a disk error), in order; their Deferreds wait.
        self._waiting: deque[tuple[bytes, Deferred[None]]] = deque()
        self._spool_broken = False
        # Started on the first write, so a process that fails before writing anything has
        # no (non-daemon) worker thread keeping it alive.
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=name)
        self._insert: Any = None
        self._writing = False
        self._flush_timer: IDelayedCall | None = None
        self._retry_timer: IDelayedCall | None = None
        self._admit_timer: IDelayedCall | None = None
        # "up", "down" (writes fail), "catching_up" (writes work, the outage's backlog not
        # yet written): one WARNING going down, one INFO once caught up.
        self._state = "up"
        self._down_since = 0.0
        self._resumed_at = 0.0
        self._caught_from = 0
        self._caught_to = 0
        self._closing = False
        self._finishing = False
        self._finished: Closed | None = None
        self._closers: list[Deferred[Closed]] = []
        self._deadline = 0.0
        #: Batches that failed and were retried (for the supervisor view and tests).
        self.failed_batches = 0
        #: Events written to the database (or found there already) by this recorder.
        self.written = 0
        #: Events the database refused for good (set aside, see ``FileSpool.reject``).
        self.rejected = 0
        #: Events neither written nor kept (only at close: memory spool, or spool errors).
        self.lost = 0
        #: True from the spool reaching its bound until it is back under 3/4 of it.
        self.spool_full = False
        if self._spool.spooled:
            log.info(
                "%s: %d events from a previous run are in the spool %s; writing them first",
                name,
                self._spool.spooled,
                spool_dir,
            )
            self._flush_timer = reactor.callLater(0, self._flush)

    @property
    def pending(self) -> int:
        """Events accepted but not yet in the database (spooled, or waiting for spool room)."""
        return self._spool.spooled + len(self._waiting)

    @property
    def spooled(self) -> int:
        """Events in the spool and not yet in the database."""
        return self._spool.spooled

    # -- accepting events (reactor thread) ------------------------------------------------

    def record(self, event: E) -> Deferred[None]:
        """Spool ``event``; the Deferred fires once it is there (it waits only while the
        spool is full or failing, which is when AMI reading should pause)."""
        if self._closing:
            return fail(RecorderClosed(f"{self._name} is closed"))
        row = self._row(event)
        if row is None:
            return succeed(None)  # not for this history
        row["recorded_at"] = self._wall_clock()
        row["event_id"] = f"{self._id_prefix}{next(self._ids):016x}"
        row["fact"] = self._fact(row)
        record = json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode()
        if self._waiting:
            return self._wait(record)
        try:
            self._spool.append(record)
        except SpoolFull:
            return self._wait(record)
        except OSError as exc:
            return self._wait(record, exc)
        self._kick()
        return succeed(None)

    def _fact(self, row: dict[str, Any]) -> str | None:
        template = self._facts.get(row["kind"])
        if template is None or row.get("call_id") is None:
            return None
        return template.format_map(row["payload"])

    def _wait(self, record: bytes, error: OSError | None = None) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        self._waiting.append((record, done))
        if error is not None and not self._spool_broken:
            self._spool_broken = True
            log.error(
                "%s: ALARM cannot write to the spool (%s); events wait in memory and AMI "
                "reading will pause",
                self._name,
                error,
            )
        elif error is None and not self.spool_full:
            self.spool_full = True
            log.error(
                "%s: ALARM spool full: %d events (%s, the bound is %s) are not in the "
                "database%s; new events wait in memory and AMI reading will pause",
                self._name,
                self._spool.spooled,
                _size(self._spool.size),
                _size(self._spool.max_bytes),
                self._outage(),
            )
        if self._admit_timer is None:
            self._admit_timer = self._reactor.callLater(ADMIT_RETRY, self._admit)
        return done

    def _outage(self) -> str:
        if self._state != "down":
            return ""
        return f", database unreachable for {self._reactor.seconds() - self._down_since:.0f} s"

    def _admit(self) -> None:
        """Move waiting events into the spool while it takes them, in order."""
        if self._admit_timer is not None and self._admit_timer.active():
            self._admit_timer.cancel()
        self._admit_timer = None
        while self._waiting:
            record, done = self._waiting[0]
            try:
                self._spool.append(record)
            except SpoolFull:
                break
            except OSError as exc:
                log.debug("%s: spool still failing: %s", self._name, exc)
                break
            self._waiting.popleft()
            if self._spool_broken:
                self._spool_broken = False
                log.info("%s: the spool takes events again", self._name)
            done.callback(None)
        if self._waiting and not self._finishing:
            self._admit_timer = self._reactor.callLater(ADMIT_RETRY, self._admit)
        if self.spool_full and not self._waiting and self._spool.size <= self._low_water:
            self.spool_full = False
            log.info(
                "%s: spool alarm cleared: %d events (%s) spooled",
                self._name,
                self._spool.spooled,
                _size(self._spool.size),
            )
        if not self._closing:
            self._kick()

    # -- writing (a batch at a time on the worker thread) ---------------------------------

    def _kick(self) -> None:
        """New events in the spool: write now if a batch is full, else soon. Never while
        a batch is in flight or a retry is scheduled (the retry timer decides)."""
        if self._writing or self._retry_timer is not None or not self._spool.spooled:
            return
        if self._spool.spooled >= self._batch_size:
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = self._reactor.callLater(self._flush_delay, self._flush)

    def _flush(self) -> None:
        if self._flush_timer is not None and self._flush_timer.active():
            self._flush_timer.cancel()
        self._flush_timer = None
        if self._writing or self._retry_timer is not None or not self._spool.spooled:
            return
        self._writing = True
        if not self._pool.started:
            self._pool.start()
        d = deferToThreadPool(self._reactor, self._pool, self._write_batch)
        d.addCallbacks(self._written, self._failed)

    def _write_batch(self) -> int:
        """Worker thread: the spool's head into the database, then acknowledge it."""
        records, position = self._spool.read(self._batch_size)
        rows: list[dict[str, Any]] = []
        kept: list[bytes] = []
        for record in records:
            try:
                rows.append(json.loads(record))
                kept.append(record)
            except ValueError as exc:
                self._reject(record, exc)
        if rows:
            try:
                self._execute(rows)
            except (DataError, IntegrityError):
                # Bad data, not an outage: find the rows the database refuses and set them
                # aside, or one bad event would stop the history for good.
                for record, row in zip(kept, rows, strict=True):
                    try:
                        self._execute([row])
                    except (DataError, IntegrityError) as exc:
                        self._reject(record, exc)
        self._spool.ack(position)
        return len(rows)

    def _execute(self, rows: list[dict[str, Any]]) -> None:
        with self._engine.begin() as conn:
            if self._insert is None:
                self._insert = _insert_ignoring_duplicates(self._table, conn.dialect.name)
            conn.execute(self._insert, rows)

    def _reject(self, record: bytes, exc: Exception) -> None:
        self.rejected += 1
        self._spool.reject(record, _reason(exc))

    def _written(self, count: int) -> None:
        self._writing = False
        self.written += count
        self._retry_delay = self._retry_min
        now = self._reactor.seconds()
        if self._state == "down":
            self._state = "catching_up"
            self._resumed_at = now
            self._caught_from = self.written - count
            self._caught_to = self.written + self._spool.spooled
            log.debug("%s: database writes work again", self._name)
        if self._state == "catching_up" and self.written >= self._caught_to:
            self._state = "up"
            log.info(
                "%s: database writes resumed after an outage of %.1f s; %d spooled events "
                "caught up in %.1f s",
                self._name,
                self._resumed_at - self._down_since,
                self.written - self._caught_from,
                now - self._resumed_at,
            )
        self._admit()
        if self._closing:
            self._continue_closing()

    def _failed(self, failure: Failure) -> None:
        self._writing = False
        self.failed_batches += 1
        now = self._reactor.seconds()
        reason = _reason(failure.value)
        if self._state == "up":
            self._state = "down"
            self._down_since = now
            log.warning(
                "%s: database unreachable (%s); events are kept in the spool (%d now), "
                "retrying every %.1f s at most",
                self._name,
                reason,
                self._spool.spooled,
                self._retry_max * (1 + self._retry_jitter),
            )
        else:
            self._state = "down"
            log.debug("%s: database write failed again (%s)", self._name, reason)
        jitter = self._rng.uniform(1 - self._retry_jitter, 1 + self._retry_jitter)
        delay = self._retry_delay * jitter
        self._retry_delay = min(self._retry_delay * 2, self._retry_max)
        if self._closing:
            # Closing: retry within the grace period only, the last attempt at its end.
            if now >= self._deadline:
                self._finish()
                return
            delay = min(delay, self._deadline - now)
        self._retry_timer = self._reactor.callLater(delay, self._retry)

    def _retry(self) -> None:
        self._retry_timer = None
        self._flush()

    # -- closing --------------------------------------------------------------------------

    def close(self) -> Deferred[Closed]:
        """Stop accepting events and write what is spooled for up to ``close_grace``
        seconds; what the database did not take stays in the spool for the next start.
        Fires with :class:`Closed` in every case."""
        if self._finished is not None:
            return succeed(self._finished)
        done: Deferred[Closed] = Deferred()
        self._closers.append(done)
        if self._closing:
            return done
        self._closing = True
        self._deadline = self._reactor.seconds() + self._close_grace
        # A retry waiting out its backoff would eat the grace period: try at once.
        self._retry_delay = self._retry_min
        for timer in (self._retry_timer, self._flush_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._retry_timer = self._flush_timer = None
        self._continue_closing()
        return done

    def _continue_closing(self) -> None:
        if self._finishing or self._writing:
            return  # the batch in flight comes back here
        if not self.pending or self._reactor.seconds() >= self._deadline:
            self._finish()
        elif self._spool.spooled:
            self._flush()

    def _finish(self) -> None:
        if self._finishing:
            return
        for timer in (self._retry_timer, self._flush_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._retry_timer = self._flush_timer = None
        self._finishing = True  # no more timers, no more batches
        self._admit()  # a last chance for events waiting for room
        waiting, self._waiting = list(self._waiting), deque()
        durable = self._spool.durable
        kept = self._spool.spooled if durable else 0
        lost = len(waiting) + (0 if durable else self._spool.spooled)
        if self._pool.started:
            self._pool.stop()
        d = self._spool.close()

        def report(result: object) -> None:
            nonlocal kept, lost
            if isinstance(result, Failure):
                log.error("%s: closing the spool failed: %s", self._name, result.value)
                kept, lost = 0, lost + kept
            if kept:
                log.warning(
                    "%s: %d events kept in the spool %s for the next start",
                    self._name,
                    kept,
                    getattr(self._spool, "directory", ""),
                )
            if lost:
                log.error(
                    "%s: %d events could not be kept: they are neither in the database nor "
                    "in a durable spool",
                    self._name,
                    lost,
                )
            self.lost += lost
            self._finished = Closed(kept=kept, lost=lost)
            closers, self._closers = self._closers, []
            for closer in closers:
                closer.callback(self._finished)
            for _record, event_done in waiting:
                event_done.errback(RecorderClosed(f"{self._name}: closed before spooling"))

        d.addBoth(report)


def _insert_ignoring_duplicates(table: Table, dialect: str) -> Any:
    """INSERT that skips rows whose ``event_id`` or fact is already stored."""
    # Each dialect's insert() builds its own Insert class: two names, two types.
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"history on {dialect}: use sqlite or postgresql")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def _reason(exc: BaseException | None) -> str:
    """The first line of an error (the driver's own for SQLAlchemy errors), for logs."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()[0][:200] if str(inner).strip() else ""
    return f"{type(inner).__name__}: {text}" if text else type(inner).__name__


class CallEventRecorder(EventRecorder[CallEvent]):
    """Persists call events of the PBX named ``pbx`` into ``call_events``."""

    def __init__(
        self,
        engine: Database,
        reactor: Any,
        *,
        pbx: str = "default",
        spool_dir: Path | None = None,
        **options: Any,
    ):
        def row(event: CallEvent) -> dict[str, Any] | None:
            if not isinstance(event, CallEvent):
                return None  # a device state on the same stream: not a call's history
            return {
                "pbx": pbx,
                "call_id": event.call_id,
                "kind": event.kind,
                "at": event.at,
                "payload": event.to_record(),
            }

        super().__init__(
            engine,
            reactor,
            call_events,
            row,
            name="call history",
            facts=CALL_FACTS,
            spool_dir=spool_subdir(spool_dir, call_events, pbx),
            **options,
        )


def load_call_events(engine: Engine, call_id: str | None = None) -> list[dict[str, Any]]:
    """Stored events (``payload`` records) in order of insertion, optionally of one call."""
    query = select(call_events.c.payload).order_by(call_events.c.id)
    if call_id is not None:
        query = query.where(call_events.c.call_id == call_id)
    with engine.connect() as conn:
        return [row.payload for row in conn.execute(query)]


#: How far back a starting backend looks for calls its previous run left open.
OPEN_CALLS_HORIZON = 86_400.0


def open_calls(
    engine: Engine, pbx: str, now: float, horizon: float = OPEN_CALLS_HORIZON
) -> list[tuple[str, float, float, bool]]:
    """Calls of ``pbx`` that arrived within ``horizon`` seconds of ``now`` and have no
    ``ended`` row: ``(call_id, arrived_at, last_seen, answered)`` each, for
    :meth:`cti.calls.model.CallModel.expect_open` (a previous run stopped before their end)."""
    kind, at = call_events.c.kind, call_events.c.at
    arrived_at = func.min(case((kind == "arrived", at)))
    answered = func.max(case((kind == "answered", 1), else_=0))
    ended = func.max(case((kind == "ended", 1), else_=0))
    query = (
        select(call_events.c.call_id, arrived_at, func.max(at), answered)
        .where(call_events.c.pbx == pbx, at >= now - horizon)
        .group_by(call_events.c.call_id)
        .having(ended == 0, arrived_at.is_not(None))
    )
    with engine.connect() as conn:
        return [(r[0], float(r[1]), float(r[2]), bool(r[3])) for r in conn.execute(query)]
