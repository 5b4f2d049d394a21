"""``callcenter customers import``: customers, and optionally their orders, from CSV files.

Two files, UTF-8 (a BOM is fine), comma-separated with a header line, columns in any order:

* customers: ``id,name,numbers,email,first_seen`` — ``numbers`` separated by ``;`` (any
  written form; made E.164 with the default region), ``email`` and ``first_seen`` may be
  empty (and their columns absent);
* orders: ``customer_id,ref,at,amount,category`` — ``ref`` (the source's order id) may be
  empty or absent; ``amount`` with a dot for decimals, at most two, negative for a refund.

Times (``first_seen``, ``at``) are ISO 8601 dates or date-times (``2024-05-31``,
``2024-05-31T14:05:00+02:00``); without a zone they are UTC.

All or nothing: every row of both files is checked first, against each other and against the
database (a customer id already taken, an order for a customer neither file nor database
holds); any problem rejects the import with every problem and its line
(:class:`~crm_bridge.errors.ImportRejected`), nothing written. A phone number on several
customers is allowed (a shared landline) and reported as a note. An order whose ``ref`` the
customer already has in the database is skipped, so orders can be imported twice. Then one
transaction writes everything, in batches (COPY on PostgreSQL).
"""

from __future__ import annotations

import csv
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Connection, Engine, Table, select, update
from sqlalchemy.exc import SQLAlchemyError

from crm_bridge.errors import ImportRejected, NumberError
from crm_bridge.numbers import to_e164
from crm_bridge.schema import customer_numbers, customers, orders
from crm_bridge.store import CHUNK, bulk_insert

__all__ = [
    "CUSTOMER_COLUMNS",
    "ORDER_COLUMNS",
    "ImportSummary",
    "Progress",
    "ProgressBar",
    "import_files",
]

#: ``progress(what, done, total)``: how far a phase (e.g. "checking orders.csv") is.
Progress = Callable[[str, int, int], None]

#: The customers file's columns, and whether each is required.
CUSTOMER_COLUMNS = {"id": True, "name": True, "numbers": True, "email": False, "first_seen": False}
#: The orders file's columns, and whether each is required.
ORDER_COLUMNS = {"customer_id": True, "ref": False, "at": True, "amount": True, "category": True}

#: Rows per write batch.
BATCH = 5000

_AMOUNT = re.compile(r"^-?[0-9]+(\.[0-9]{1,2})?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LIMITS = {"id": 64, "name": 200, "email": 254, "customer_id": 64, "ref": 64, "category": 64}


@dataclass
class ImportSummary:
    """What an import wrote (``skipped_orders``: refs the customers had already), its notes
    (shared numbers) and how long it took."""

    customers: int = 0
    numbers: int = 0
    orders: int = 0
    skipped_orders: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        skipped = (
            f", {self.skipped_orders} orders skipped (already imported)"
            if self.skipped_orders
            else ""
        )
        return (
            f"imported {self.customers} customers ({self.numbers} numbers), {self.orders} "
            f"orders{skipped} in {self.seconds:.1f} s"
        )


@dataclass(slots=True)
class _Customer:
    line: int
    id: str
    name: str
    numbers: list[str]
    email: str | None
    first_seen: float | None


def import_files(
    engine: Engine,
    customers_csv: Path,
    orders_csv: Path | None = None,
    *,
    region: str,
    now: float,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import the customers file (and the orders file) in one transaction; numbers without a
    country code are of ``region``. :class:`ImportRejected` lists every problem, nothing
    written."""
    started = time.monotonic()
    report = progress or (lambda what, done, total: None)
    summary = ImportSummary()
    problems: list[str] = []
    try:
        with engine.begin() as conn:
            people, listed = _read_customers(
                conn, customers_csv, region, now, problems, summary, report
            )
            bought: list[tuple[str, str | None, float, int, str]] = []
            if orders_csv is not None:
                bought = _read_orders(
                    conn, orders_csv, people, listed, now, problems, summary, report
                )
            if problems:
                raise ImportRejected(problems)
            _write(conn, people, bought, now, summary, report)
    except SQLAlchemyError as exc:
        # Validated rows can still collide with what another writer added meanwhile.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        raise ImportRejected(
            [f"{customers_csv}: the database refused the import ({reason}); nothing was "
             "imported: check the data and run it again"]
        ) from None  # fmt: skip
    summary.seconds = time.monotonic() - started
    return summary


def _rows(
    path: Path, columns: dict[str, bool], problems: list[str], report: Progress
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, {column: stripped value}) per data row; problems with the file or its header
    are added to ``problems`` (and no row is given)."""
    try:
        total = _count_lines(path)
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        problems.append(f"{path}: cannot read it ({exc.strerror})")
        return
    what = f"checking {path.name}"
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                problems.append(
                    f"{path}: empty; the first line names the columns: {_cols(columns)}"
                )
                return
            names = [h.strip().lower() for h in header]
            bad = [f"unknown column {n!r}" for n in names if n not in columns]
            bad += [f"column {n!r} twice" for n in set(names) if names.count(n) > 1]
            bad += [f"column {n!r} missing" for n, req in columns.items() if req and n not in names]
            if bad:
                problems.append(f"{path} line 1: {'; '.join(bad)} (columns: {_cols(columns)})")
                return
            line = 1
            for fields in reader:
                start, line = line + 1, reader.line_num
                if start % 10_000 == 0:
                    report(what, line, total)
                if not any(f.strip() for f in fields):
                    continue  # a blank line
                if len(fields) != len(names):
                    problems.append(
                        f"{path} line {start}: {len(fields)} fields, the header has "
                        f"{len(names)} ({', '.join(names)})"
                    )
                    continue
                yield start, {n: f.strip() for n, f in zip(names, fields, strict=True)}
            report(what, total, total)
        except UnicodeDecodeError as exc:
            problems.append(
                f"{path}: not UTF-8 text (byte {exc.start} of a block near line "
                f"{reader.line_num + 1}): save it as UTF-8"
            )
        except csv.Error as exc:
            problems.append(f"{path} line {reader.line_num}: {exc}")


def _read_customers(
    conn: Connection,
    path: Path,
    region: str,
    now: float,
    problems: list[str],
    summary: ImportSummary,
    report: Progress,
) -> tuple[dict[str, _Customer], dict[str, int]]:
    """The valid customers of the file by id, and every id the file lists (valid or not)."""
    people: dict[str, _Customer] = {}
    listed: dict[str, int] = {}  # every id of the file (valid row or not) -> its first line
    holders: dict[str, str] = {}  # number -> the first customer of the file on it
    for line, row in _rows(path, CUSTOMER_COLUMNS, problems, report):
        bad: list[str] = []
        cid, name = row["id"], row["name"]
        email, first_seen = row.get("email") or None, row.get("first_seen") or None
        _text(row, ("id", "name", "email"), bad)
        if listed.setdefault(cid, line) != line:
            bad.append(f"customer id {cid!r} is already on line {listed[cid]}")
        numbers: list[str] = []
        for raw in row["numbers"].split(";"):
            if not raw.strip():
                continue
            try:
                number = to_e164(raw, region)
            except NumberError as exc:
                bad.append(f"numbers: {exc}")
                continue
            if number not in numbers:
                numbers.append(number)
        if email is not None and not _EMAIL.match(email):
            bad.append(f"email {email!r}: not an address (name@domain)")
        seen = _time(first_seen, "first_seen", now, bad) if first_seen else None
        if bad:
            problems += [f"{path} line {line}: {b}" for b in bad]
            continue
        people[cid] = _Customer(line, cid, name, numbers, email, seen)
        for number in numbers:
            other = holders.setdefault(number, cid)
            if other != cid:
                summary.notes.append(
                    f"{path} line {line}: number {number} is also that of customer {other!r} "
                    "(a shared line: a call from it lists both)"
                )
    ids = list(people)
    for chunk in _chunks(ids):
        taken = conn.execute(select(customers.c.id).where(customers.c.id.in_(chunk))).scalars()
        for cid in taken:
            problems.append(
                f"{path} line {people[cid].line}: customer id {cid!r} exists already in the "
                "database"
            )
    numbers = list(holders)
    for chunk in _chunks(numbers):
        query = select(customer_numbers.c.number, customer_numbers.c.customer_id).where(
            customer_numbers.c.number.in_(chunk)
        )
        for number, other in conn.execute(query):
            cid = holders[number]
            summary.notes.append(
                f"{path} line {people[cid].line}: number {number} is also that of customer "
                f"{other!r} in the database (a shared line: a call from it lists both)"
            )
    problems.sort(key=_line_of)
    return people, listed


def _read_orders(
    conn: Connection,
    path: Path,
    people: dict[str, _Customer],
    listed: dict[str, int],
    now: float,
    problems: list[str],
    summary: ImportSummary,
    report: Progress,
) -> list[tuple[str, str | None, float, int, str]]:
    """The orders to write; those whose ref the customer has in the database are skipped."""
    rows: list[tuple[str, str | None, float, int, str]] = []
    lines: list[int] = []
    refs: dict[tuple[str, str], int] = {}
    same: dict[str, str] = {}  # one string object per customer id and category: less memory
    first = len(problems)
    for line, row in _rows(path, ORDER_COLUMNS, problems, report):
        bad: list[str] = []
        _text(row, ("customer_id", "category", "ref"), bad)
        cid, ref = same.setdefault(row["customer_id"], row["customer_id"]), row.get("ref") or None
        at = _time(row["at"], "at", now, bad)
        amount = row["amount"]
        cents = 0
        if not _AMOUNT.match(amount):
            bad.append(
                f"amount {amount!r}: a number with a dot and at most 2 decimals, e.g. 19.99 "
                "(negative for a refund)"
            )
        else:
            cents = int(Decimal(amount).scaleb(2))
            if cents == 0:
                bad.append("amount 0: an order has an amount (negative for a refund)")
        if ref is not None and cid:
            earlier = refs.setdefault((cid, ref), line)
            if earlier != line:
                bad.append(f"order ref {ref!r} of customer {cid!r} is already on line {earlier}")
        if bad:
            problems += [f"{path} line {line}: {b}" for b in bad]
            continue
        assert at is not None
        category = row["category"]
        rows.append((cid, ref, at, cents, same.setdefault(category, category)))
        lines.append(line)
    # Orders for customers of the database (not of the file): they must exist.
    elsewhere = [cid for cid in same if cid and cid not in listed]
    known: set[str] = set()
    for chunk in _chunks(elsewhere):
        query = select(customers.c.id).where(customers.c.id.in_(chunk))
        known.update(conn.execute(query).scalars())
    unknown = set(elsewhere) - known
    # Refs the database's customers have already: those orders are skipped.
    held: set[tuple[str, str]] = set()
    for chunk in _chunks(sorted(known)):
        query = select(orders.c.customer_id, orders.c.ref).where(
            orders.c.customer_id.in_(chunk), orders.c.ref.is_not(None)
        )
        held.update((cid, ref) for cid, ref in conn.execute(query))
    kept = []
    for line, order in zip(lines, rows, strict=True):
        cid, ref = order[0], order[1]
        if cid in listed and cid not in people:
            continue  # its customer's row is bad: reported there
        if cid in unknown:
            problems.append(
                f"{path} line {line}: customer {cid!r} is neither in the customers file nor "
                "in the database"
            )
        elif ref is not None and (cid, ref) in held:
            summary.skipped_orders += 1
        else:
            kept.append(order)
    problems[first:] = sorted(problems[first:], key=_line_of)
    return kept


def _write(
    conn: Connection,
    people: dict[str, _Customer],
    bought: list[tuple[str, str | None, float, int, str]],
    now: float,
    summary: ImportSummary,
    report: Progress,
) -> None:
    rows = [(c.id, c.name, c.email, c.first_seen, now, now, "import") for c in people.values()]
    people_columns = ("id", "name", "email", "first_seen", "created_at", "changed_at", "source")
    for done in _batches(conn, customers, people_columns, rows, report, "writing customers"):
        summary.customers = done
    lines = [(c.id, n) for c in people.values() for n in c.numbers]
    for done in _batches(conn, customer_numbers, ("customer_id", "number"), lines, report, ""):
        summary.numbers = done
    columns = ("customer_id", "ref", "at", "amount_cents", "category")
    for done in _batches(conn, orders, columns, bought, report, "writing orders"):
        summary.orders = done
    # Customers of the database with new orders: changed, for the next recompute.
    changed = sorted({row[0] for row in bought if row[0] not in people})
    for chunk in _chunks(changed):
        conn.execute(update(customers).where(customers.c.id.in_(chunk)).values(changed_at=now))


def _batches(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: list[Any],
    report: Progress,
    what: str,
) -> Iterator[int]:
    for start in range(0, len(rows), BATCH):
        bulk_insert(conn, table, columns, rows[start : start + BATCH])
        done = min(start + BATCH, len(rows))
        if what:
            report(what, done, len(rows))
        yield done


def _text(row: dict[str, str], names: tuple[str, ...], bad: list[str]) -> None:
    """Required columns not empty, none longer than its column."""
    for name in names:
        value = row.get(name, "")
        if not value and (CUSTOMER_COLUMNS | ORDER_COLUMNS)[name]:
            bad.append(f"{name} is empty")
        elif len(value) > _LIMITS[name]:
            bad.append(f"{name} is {len(value)} characters long, at most {_LIMITS[name]}")


def _time(text: str, name: str, now: float, bad: list[str]) -> float | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        bad.append(
            f"{name} {text!r}: not an ISO 8601 date or time (e.g. 2024-05-31 or "
            "2024-05-31T14:05:00+02:00)"
        )
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    at = moment.timestamp()
    if at > now:
        bad.append(f"{name} {text!r} is in the future")
        return None
    return at


def _count_lines(path: Path) -> int:
    with path.open("rb") as raw:
        return sum(block.count(b"\n") for block in iter(lambda: raw.read(1 << 20), b""))


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _cols(columns: dict[str, bool]) -> str:
    return (
        ",".join(columns) + " (" + ", ".join(n for n, r in columns.items() if not r) + " optional)"
    )


def _line_of(problem: str) -> int:
    found = re.search(r" line ([0-9]+): ", problem)
    return int(found.group(1)) if found else 0


class ProgressBar:
    """``progress(what, done, total)`` drawn on ``stream`` (stderr): on a terminal a bar
    redrawn in place (``\\r``), at most ten times a second; otherwise (a log, a pipe) a line
    every ``every`` seconds of a phase still running, so a short job prints nothing."""

    WIDTH = 30

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every = every
        self.clock = clock
        self.what: str | None = None
        self.shown = 0.0
        self.open = False  # a bar drawn without its newline yet

    def __call__(self, what: str, done: int, total: int) -> None:
        now = self.clock()
        new = what != self.what
        if new:
            self.close()
            self.what, self.shown = what, now
        finished = done >= total
        if self.tty:
            if new or finished or now - self.shown >= 0.1:
                self._draw(what, done, total, finished)
                self.shown = now
        elif now - self.shown >= self.every and not finished:
            self.stream.write(f"{what}: {self._figures(done, total)}\n")
            self.stream.flush()
            self.shown = now

    def close(self) -> None:
        """End a bar left open (an interrupted phase) with its newline."""
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False

    def _draw(self, what: str, done: int, total: int, finished: bool) -> None:
        share = done / total if total else 1.0
        filled = round(self.WIDTH * min(share, 1.0))
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.stream.write(f"\r{what} [{bar}] {self._figures(done, total)}")
        self.open = True
        if finished:
            self.close()
        self.stream.flush()

    @staticmethod
    def _figures(done: int, total: int) -> str:
        share = 100 * done / total if total else 100.0
        return f"{share:3.0f}% ({done:,} of {total:,})"
