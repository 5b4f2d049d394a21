"""Call history: every domain call event persisted through SQLAlchemy, so figures can be
recomputed and a day replayed.

The table is created by the Alembic migrations (``migrations/``); this module only
describes it and writes to it. Writes happen in batches on one worker thread, never on the
reactor thread, and survive a database outage: a failed batch is kept and retried with
backoff, and because each event's Deferred fires only once it is committed, an event stream
with a bound on pending events pauses AMI reading instead of growing memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
)
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from cti.calls.events import CallEvent

log = logging.getLogger(__name__)

E = TypeVar("E")

metadata = MetaData()


def event_table(
    name: str, metadata: MetaData, *columns: Column[Any], indexes: tuple[Index, ...] = ()
) -> Table:
    """An append-only event table: ``id``, ``pbx``, then ``columns``, then ``kind``, ``at``
    (the event's time), ``recorded_at`` and the JSON ``payload``; then ``indexes``."""
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
        *indexes,
    )


call_events = event_table(
    "call_events",
    metadata,
    Column("call_id", String(128), nullable=False),
    indexes=(Index("ix_call_events_call_id", "call_id"), Index("ix_call_events_at", "at")),
)


class EventRecorder(Generic[E]):
    """Persists events into ``table`` in batches; ``record`` returns a Deferred fired on
    commit. ``row`` turns an event into the table's columns (``recorded_at`` is added)."""

    def __init__(
        self,
        engine: Engine,
        reactor: Any,
        table: Table,
        row: Callable[[E], dict[str, Any]],
        *,
        name: str,
        batch_size: int = 500,
        flush_delay: float = 0.05,
        retry_min: float = 0.5,
        retry_max: float = 30.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._reactor = reactor
        self._table = table
        self._row = row
        self._name = name
        self._batch_size = batch_size
        self._flush_delay = flush_delay
        self._retry_min = retry_min
        self._retry_max = retry_max
        self._retry_delay = retry_min
        self._wall_clock = wall_clock
        self._pending: list[tuple[dict[str, Any], Deferred[None]]] = []
        self._timer: IDelayedCall | None = None
        self._writing = False
        # Started on the first write, so a process that fails before writing anything has
        # no (non-daemon) worker thread keeping it alive.
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=name)
        self._in_flight: Deferred[None] | None = None
        self._in_flight_count = 0
        self._closing = False
        #: Batches that failed and were retried (for the supervisor view and tests).
        self.failed_batches = 0

    @property
    def pending(self) -> int:
        """Events accepted but not yet committed (queued, or in the batch being written)."""
        return len(self._pending) + self._in_flight_count

    def record(self, event: E) -> Deferred[None]:
        """Queue ``event`` for the next batch; the Deferred fires once it is committed."""
        row = self._row(event)
        row["recorded_at"] = self._wall_clock()
        done: Deferred[None] = Deferred()
        self._pending.append((row, done))
        if not self._writing:
            if len(self._pending) >= self._batch_size:
                self._flush_now()
            elif self._timer is None:
                self._timer = self._reactor.callLater(self._flush_delay, self._flush_now)
        return done

    def _flush_now(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._writing or not self._pending:
            return
        batch, self._pending = self._pending[: self._batch_size], self._pending[self._batch_size :]
        self._writing = True
        self._in_flight_count = len(batch)
        if not self._pool.started:
            self._pool.start()
        d = deferToThreadPool(self._reactor, self._pool, self._write, [row for row, _ in batch])
        d.addCallbacks(self._written, self._failed, callbackArgs=(batch,), errbackArgs=(batch,))
        self._in_flight = d

    def _write(self, rows: list[dict[str, Any]]) -> None:
        with self._engine.begin() as conn:
            conn.execute(insert(self._table), rows)

    def _written(self, _: None, batch: list[tuple[dict[str, Any], Deferred[None]]]) -> None:
        self._writing = False
        self._in_flight_count = 0
        self._retry_delay = self._retry_min
        for _row, done in batch:
            done.callback(None)
        if self._pending and not self._closing:
            self._flush_now()

    def _failed(self, failure: Failure, batch: list[tuple[dict[str, Any], Deferred[None]]]) -> None:
        self._writing = False
        self._in_flight_count = 0
        self.failed_batches += 1
        # Keep the batch, in order, ahead of what came since: nothing is lost in an outage.
        self._pending = batch + self._pending
        if self._closing:
            return  # close() makes the last attempt
        log.warning(
            "%s: database write failed (%s: %s); %d events kept, retry in %.1f s",
            self._name,
            failure.type.__name__,
            str(failure.value).splitlines()[0][:200] if str(failure.value) else "",
            len(self._pending),
            self._retry_delay,
        )
        self._timer = self._reactor.callLater(self._retry_delay, self._flush_now)
        self._retry_delay = min(self._retry_delay * 2, self._retry_max)

    def close(self) -> Deferred[None]:
        """Let the batch in flight finish, make one last attempt at what is pending, stop the
        worker thread. Fires in every case; events the database still refused are logged."""
        self._closing = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        final: Deferred[None] = Deferred()

        def stop(_: object = None) -> None:
            if self._pool.started:
                self._pool.stop()
            final.callback(None)

        def last_attempt(_: object = None) -> None:
            if not self._pending:
                stop()
                return
            batch, self._pending = self._pending, []
            if not self._pool.started:
                self._pool.start()
            d = deferToThreadPool(self._reactor, self._pool, self._write, [r for r, _ in batch])

            def written(_: None) -> None:
                for _row, done in batch:
                    done.callback(None)

            def refused(failure: Failure) -> None:
                log.error(
                    "%s: %d events could not be written at shutdown: %s",
                    self._name,
                    len(batch),
                    failure.getErrorMessage(),
                )

            d.addCallbacks(written, refused)
            d.addBoth(stop)

        if self._writing and self._in_flight is not None:
            self._in_flight.addBoth(last_attempt)
        else:
            last_attempt()
        return final


class CallEventRecorder(EventRecorder[CallEvent]):
    """Persists call events of the PBX named ``pbx`` into ``call_events``."""

    def __init__(self, engine: Engine, reactor: Any, *, pbx: str = "default", **options: Any):
        def row(event: CallEvent) -> dict[str, Any]:
            return {
                "pbx": pbx,
                "call_id": event.call_id,
                "kind": event.kind,
                "at": event.at,
                "payload": event.to_record(),
            }

        super().__init__(engine, reactor, call_events, row, name="call history", **options)


def load_call_events(engine: Engine, call_id: str | None = None) -> list[dict[str, Any]]:
    """Stored events (``payload`` records) in order of insertion, optionally of one call."""
    query = select(call_events.c.payload).order_by(call_events.c.id)
    if call_id is not None:
        query = query.where(call_events.c.call_id == call_id)
    with engine.connect() as conn:
        return [row.payload for row in conn.execute(query)]
