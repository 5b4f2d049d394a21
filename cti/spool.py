"""A durable local spool: events wait here, on disk, until the database has them.

The history writers (:mod:`cti.history`) append every event to a spool before anything
else, and drain the spool to the database in order; a database outage therefore costs
disk space, never the AMI link.

Format (:class:`FileSpool`): a directory of append-only *segments* (``<n>.seg``), one
record per line: ``<crc32 as 8 hex digits> <JSON>\\n``, and an ``ack`` file saying up to
where (segment, byte offset) the records are in the database. Plain files rather than a
SQLite file because the only operations are append, read in order and forget the head:
appends are ``write(2)`` on the reactor thread (microseconds, no lock against the
reader thread's transactions), forgetting is deleting whole segments (no free pages to
vacuum), and a torn or damaged record is found by its CRC and newline.

Durability: the records appended in one reactor turn (the events of one AMI read) are
written to the kernel together at the end of that turn, one ``write(2)`` instead of one
per event; a process killed (SIGKILL, OOM, crash) in the middle of a turn loses that
turn's records, as it loses the rest of the AMI read being handled: the next start's
snapshot and open-call check cover both. ``fdatasync`` runs on
a thread at most ``sync_interval`` seconds after an append, so a power failure or kernel
crash loses at most the last ``sync_interval`` (default 50 ms) of events plus one sync's
duration. The ``ack`` file is not synced: a lost ack only replays records the database
already has, and the writer inserts them with ON CONFLICT DO NOTHING on their ``event_id``.

Threads: :meth:`append` runs on the reactor thread; :meth:`read` and :meth:`ack` on the
one writer thread; a lock guards what they share (segment sizes, the ack position).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import zlib
from collections import deque
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

log = logging.getLogger(__name__)

#: Largest segment; a spool bound below 8 of these uses smaller ones (see ``segment_bytes``).
SEGMENT_BYTES = 16 * 2**20


class SpoolFull(Exception):
    """The spool holds ``max_bytes``: the record was not appended."""


class SpoolLocked(Exception):
    """Another process uses this spool directory."""


#: Where a read stopped: (segment, byte offset, records read) for the file spool, or the
#: number of records for the memory spool; handed back to ``ack`` once they are stored.
Position = Any


class MemorySpool:
    """The same interface without a disk: for an in-memory database (whose content dies
    with the process anyway) and tests. Bounded like the file spool; ``durable`` is False."""

    durable = False

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: deque[bytes] = deque()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def spooled(self) -> int:
        """Records appended and not yet acknowledged."""
        return len(self._items)

    @property
    def size(self) -> int:
        return self._bytes

    def append(self, record: bytes) -> None:
        if self._bytes + len(record) > self.max_bytes and self._items:
            raise SpoolFull
        with self._lock:
            self._items.append(record)
            self._bytes += len(record)

    def read(self, limit: int) -> tuple[list[bytes], Position]:
        with self._lock:
            records = [self._items[i] for i in range(min(limit, len(self._items)))]
        return records, len(records)

    def ack(self, position: Position) -> None:
        with self._lock:
            for _ in range(position):
                self._bytes -= len(self._items.popleft())

    def reject(self, record: bytes, reason: str) -> None:
        log.error("record refused by the database (%s), dropped: %s", reason, record[:500])

    def close(self) -> Deferred[None]:
        return succeed(None)


class FileSpool:
    """Segments in ``directory`` (created if missing, locked against a second process).

    ``max_bytes`` bounds the segment files on disk (acknowledged records still count until
    their segment is deleted, at most one segment's worth); ``sync_interval`` None never
    calls fdatasync (tests, or a tmpfs).
    """

    durable = True

    def __init__(
        self,
        directory: Path,
        reactor: Any,
        *,
        max_bytes: int,
        sync_interval: float | None = 0.05,
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._reactor = reactor
        self._sync_interval = sync_interval
        self._segment_bytes = max(4096, min(SEGMENT_BYTES, max_bytes // 8))
        self._lock = threading.Lock()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock_directory(self.directory)
        #: Records that failed their CRC check and were skipped (damaged on disk).
        self.corrupt = 0
        try:
            self._open()
        except BaseException:
            os.close(self._lock_fd)
            raise
        # The write side (reactor thread).
        self._fd: int | None = None
        self._retired: list[int] = []  # rolled-over segments' fds, synced then closed
        self._new_file = False
        self._sync_timer: Any = None
        self._dirty = False
        self._syncing: Deferred[None] | None = None
        self._closed = False
        # Records taken this reactor turn (or refused by the disk), not yet written.
        self._queued: list[bytes] = []
        self._queued_bytes = 0
        self._refused = False
        self._turn_end: Any = None
        # The read side (writer thread): one open segment at a time.
        self._reader: tuple[int, Any] | None = None

    # -- opening -------------------------------------------------------------------------

    def _open(self) -> None:
        """Read the ack, forget acknowledged segments, count what is left, cut a torn
        tail (a record half-written when the machine stopped)."""
        ack_seg, ack_off = 0, 0
        try:
            ack_seg, ack_off = (int(x) for x in (self.directory / "ack").read_text().split())
        except FileNotFoundError:
            pass
        except ValueError:
            log.error("spool %s: unreadable ack file, replaying every segment", self.directory)
        sizes: dict[int, int] = {}
        for path in self.directory.glob("*.seg"):
            try:
                seg = int(path.stem)
            except ValueError:
                continue
            if seg < ack_seg:
                path.unlink()
                continue
            sizes[seg] = path.stat().st_size
        count = 0
        for seg in sorted(sizes):
            path = self._path(seg)
            start = min(ack_off, sizes[seg]) if seg == ack_seg else 0
            lines, good_end = _count_lines(path, start)
            if good_end < sizes[seg]:
                log.warning(
                    "spool %s: cutting a torn record at the end of %s (%d bytes)",
                    self.directory,
                    path.name,
                    sizes[seg] - good_end,
                )
                os.truncate(path, good_end)
                sizes[seg] = good_end
            count += lines
        self._sizes = sizes
        self._bytes = sum(sizes.values())
        self._ack = (ack_seg, ack_off)
        self._write_seg = max([ack_seg, *sizes]) + 1
        self._spooled = count
        #: Records found at opening: what a previous run left.
        self.recovered = count

    # -- counters ------------------------------------------------------------------------

    @property
    def spooled(self) -> int:
        """Records appended (now or by a previous run) and not yet acknowledged."""
        return self._spooled

    @property
    def size(self) -> int:
        """Bytes of segment files on disk."""
        return self._bytes

    # -- reactor thread ------------------------------------------------------------------

    def append(self, record: bytes) -> None:
        """Take one record; raises :class:`SpoolFull`, or OSError while the disk refuses
        writes (the records taken before stay queued here and are written first once it
        takes them again). The records of one reactor turn go to the kernel together, in
        one ``write(2)`` at the end of the turn (at once without a reactor)."""
        if self._closed:
            raise OSError(errno.EBADF, "spool closed")
        data = b"%08x " % zlib.crc32(record) + record + b"\n"
        if self._bytes + self._queued_bytes + len(data) > self.max_bytes and self._spooled:
            raise SpoolFull
        if self._refused:
            self._write_queued()  # still refused: OSError, and the caller keeps the record
        self._queued.append(data)
        self._queued_bytes += len(data)
        with self._lock:
            self._spooled += 1
        if self._reactor is None:
            self._write_queued()
        elif self._turn_end is None:
            self._turn_end = self._reactor.callLater(0, self._end_of_turn)

    def _end_of_turn(self) -> None:
        self._turn_end = None
        try:
            self._write_queued()
        except OSError as exc:
            log.error(
                "spool %s: cannot write %d records (%s); they wait in memory",
                self.directory,
                len(self._queued),
                exc,
            )

    def _write_queued(self) -> None:
        """Write the queued records, one ``write(2)`` per segment they fill; on OSError the
        segment is cut back to its previous end and the unwritten records stay queued."""
        while self._queued:
            with self._lock:
                size = self._sizes.get(self._write_seg, 0)
            if self._fd is None or (
                size > 0 and size + len(self._queued[0]) > self._segment_bytes
            ):
                self._roll()
                size = 0
            assert self._fd is not None
            take, length = 0, 0
            for record in self._queued:  # as many as fit, at least one
                if take and size + length + len(record) > self._segment_bytes:
                    break
                take, length = take + 1, length + len(record)
            try:
                view = memoryview(b"".join(self._queued[:take]))
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError:
                self._refused = True
                try:
                    os.ftruncate(self._fd, size)
                except OSError:
                    self._retire()  # cannot cut it back: continue in a fresh segment
                raise
            del self._queued[:take]
            self._queued_bytes -= length
            with self._lock:
                self._sizes[self._write_seg] = size + length
                self._bytes += length
            self._schedule_sync()
        self._refused = False

    def _roll(self) -> None:
        """Seal the current segment (the reader may then pass its end) and open the next."""
        self._retire()
        with self._lock:
            self._sizes.setdefault(self._write_seg, 0)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self._path(self._write_seg), flags, 0o600)
        self._new_file = True

    def _retire(self) -> None:
        if self._fd is not None:
            self._retired.append(self._fd)
            self._fd = None
            with self._lock:
                self._write_seg += 1
            self._schedule_sync()

    def _schedule_sync(self) -> None:
        self._dirty = True
        if self._sync_interval is None:
            # Nothing to make durable beyond write(2): retired segments close at once.
            for fd in self._retired:
                os.close(fd)
            self._retired.clear()
            return
        if self._sync_timer is None and self._syncing is None and not self._closed:
            self._sync_timer = self._reactor.callLater(self._sync_interval, self._sync)

    def _sync(self) -> None:
        """fdatasync what was written since the last sync, on a reactor pool thread."""
        self._sync_timer = None
        self._dirty = False
        fds, self._retired = self._retired, []
        new_file, self._new_file = self._new_file, False
        directory = str(self.directory) if new_file else None
        d = deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), _sync_files, self._fd, fds, directory
        )

        def done(result: object) -> None:
            self._syncing = None
            if isinstance(result, Failure):
                log.error("spool %s: fdatasync failed: %s", self.directory, result.value)
            if self._dirty:
                self._schedule_sync()

        self._syncing = d
        d.addBoth(done)

    # -- writer thread -------------------------------------------------------------------

    def read(self, limit: int) -> tuple[list[bytes], Position]:
        """Up to ``limit`` records from the head (not consumed until :meth:`ack`)."""
        records: list[bytes] = []
        with self._lock:
            seg, off = self._ack
            sizes = dict(self._sizes)
            write_seg = self._write_seg
        count = 0
        while len(records) < limit:
            if seg not in sizes or off >= sizes[seg]:
                later = [s for s in sizes if s > seg]
                if (seg in sizes and seg >= write_seg) or not later:
                    break  # the segment being written: what is there is all there is
                seg, off = min(later), 0
                continue
            f = self._segment(seg)
            f.seek(off)
            end = sizes[seg]
            while len(records) < limit and off < end:
                line = f.readline(end - off)
                if not line:  # shorter than it was: cut by someone else
                    log.error("spool %s: segment %d shrank to %d bytes", self.directory, seg, off)
                    sizes[seg] = off
                    break
                off += len(line)
                count += 1
                record = self._check(line, seg, off)
                if record is not None:
                    records.append(record)
        return records, (seg, off, count)

    def _segment(self, seg: int) -> Any:
        if self._reader is None or self._reader[0] != seg:
            if self._reader is not None:
                self._reader[1].close()
            self._reader = (seg, open(self._path(seg), "rb"))  # noqa: SIM115 (kept open)
        return self._reader[1]

    def _check(self, line: bytes, seg: int, off: int) -> bytes | None:
        body = line[9:-1]
        if (
            len(line) >= 10
            and line.endswith(b"\n")
            and line[8:9] == b" "
            and line[:8] == b"%08x" % zlib.crc32(body)
        ):
            return body
        self.corrupt += 1
        log.error(
            "spool %s: damaged record skipped (segment %d, ending at byte %d)",
            self.directory,
            seg,
            off,
        )
        return None

    def ack(self, position: Position) -> None:
        """The records up to ``position`` are in the database: persist that, delete the
        segments wholly behind it."""
        seg, off, count = position
        if not count:
            # Nothing was read (the records counted are still queued for the end of the
            # reactor turn): no progress to record.
            return
        with self._lock:
            self._ack = (seg, off)
            self._spooled -= count
            gone = [s for s in self._sizes if s < seg]
            if seg < self._write_seg and off >= self._sizes.get(seg, 0):
                gone.append(seg)  # sealed and fully read
                self._ack = (seg + 1, 0)
            for s in gone:
                self._bytes -= self._sizes.pop(s)
            ack_seg, ack_off = self._ack
        try:
            tmp = self.directory / "ack.tmp"
            tmp.write_text(f"{ack_seg} {ack_off}\n")
            tmp.replace(self.directory / "ack")
            for s in gone:
                if self._reader is not None and self._reader[0] == s:
                    self._reader[1].close()
                    self._reader = None
                self._path(s).unlink(missing_ok=True)
        except OSError as exc:
            # The records are stored; a stale ack only replays them (ignored as duplicates).
            log.error("spool %s: cannot record progress: %s", self.directory, exc)

    def reject(self, record: bytes, reason: str) -> None:
        """Set aside a record the database refuses for good (``rejected.jsonl``)."""
        log.error(
            "spool %s: record refused by the database (%s), moved to rejected.jsonl",
            self.directory,
            reason,
        )
        with open(self.directory / "rejected.jsonl", "ab") as f:
            f.write(record + b"\n")

    # -- closing -------------------------------------------------------------------------

    def close(self) -> Deferred[None]:
        """Sync and close; with nothing left, leave an empty directory for the next start."""
        if self._turn_end is not None and self._turn_end.active():
            self._turn_end.cancel()
        self._end_of_turn()
        self._closed = True
        if self._sync_timer is not None and self._sync_timer.active():
            self._sync_timer.cancel()
        self._sync_timer = None
        waiting = self._syncing if self._syncing is not None else succeed(None)
        final: Deferred[None] = Deferred()

        def finish(_: object) -> None:
            fds = [*self._retired, *([self._fd] if self._fd is not None else [])]
            self._retired, self._fd = [], None
            try:
                _sync_files(None, fds, str(self.directory) if self._new_file else None,
                            sync=self._sync_interval is not None)  # fmt: skip
                if self._reader is not None:
                    self._reader[1].close()
                    self._reader = None
                if self._spooled == 0:
                    for seg in list(self._sizes):
                        self._path(seg).unlink(missing_ok=True)
                    (self.directory / "ack").unlink(missing_ok=True)
            finally:
                os.close(self._lock_fd)
            final.callback(None)

        waiting.addBoth(finish)
        return final

    def _path(self, seg: int) -> Path:
        return self.directory / f"{seg:020d}.seg"


def _lock_directory(directory: Path) -> int:
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise SpoolLocked(
            f"spool {directory} is in use by another process (pid {owner}); give each "
            "backend its own history.spool_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _count_lines(path: Path, start: int) -> tuple[int, int]:
    """Complete lines from ``start``, and the byte offset just after the last one."""
    count, end, pos = 0, start, start
    with open(path, "rb") as f:
        f.seek(start)
        while chunk := f.read(2**20):
            newlines = chunk.count(b"\n")
            if newlines:
                count += newlines
                end = pos + chunk.rfind(b"\n") + 1
            pos += len(chunk)
    return count, end


def _sync_files(current: int | None, fds: list[int], directory: str | None, *,
                sync: bool = True) -> None:  # fmt: skip
    """fdatasync ``current`` and ``fds``, close ``fds``; sync ``directory`` (new files)."""
    try:
        if sync:
            for fd in [*fds, *([current] if current is not None else [])]:
                os.fdatasync(fd)
            if directory is not None:
                dirfd = os.open(directory, os.O_RDONLY)
                try:
                    os.fsync(dirfd)
                finally:
                    os.close(dirfd)
    finally:
        for fd in fds:
            os.close(fd)
