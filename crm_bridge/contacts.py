"""The ``contacts`` table filled from the persisted call and ACD histories.

One row per (pbx, call) once the call has ended (its ``ended`` call event is stored):

* ``number``: the caller's E.164 number, the ``arrived`` event's or, when the PBX changed
  it afterwards, the last ``caller_changed``'s (what screens and history show); NULL when
  withheld;
* ``at``: when the call arrived;
* ``queue``, ``agent``, ``wait``: the ACD's ``caller_connected`` (else its last
  ``caller_joined`` queue and ``caller_abandoned`` wait), else the call events'
  ``answered`` / ``queued`` / ``abandoned``;
* ``talk``: the ``ended`` event's talk time;
* ``outcome`` (:data:`crm_bridge.customer.OUTCOMES`), the first that holds: ``failed`` (an
  outbound call that did not reach the customer), ``callback`` (the caller asked for one),
  ``answered``, ``voicemail`` (overflowed, and joined no queue after: a mailbox), else
  ``abandoned`` (hung up unanswered: while waiting, or in self-service, which has no
  outcome of its own);
* ``ivr_path``: the ``ivr_entered`` and ``digits`` events in order (NULL: none);
* ``customer_id``: the customer an agent chose for the call (``call_customers``), else the
  only customer on the number, else NULL (unknown, withheld or shared number);
* ``complaint``: the customer complained on this call, i.e. the call is linked to a
  complaint ticket. The tickets domain answers that through the ``complaints`` callable the
  process passes (crm_bridge reads no ticket table); a complaint ticket made or linked
  after the contact is stored marks it then (``CrmBridgeService.complaints_changed``).

Idempotent and restart-safe without a stored watermark: a pass reads ``ended`` events
whose (pbx, call) has no contact row (the contacts' primary key answers that), inserts with
ON CONFLICT DO NOTHING and, in the same transaction, marks each new contact's customer
changed (``customers.changed_at``) for the incremental recompute. A pass that dies leaves
whole batches; two passes at once insert each contact once.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, case, exists, func, select, update

from acd.history import acd_events
from crm_bridge.recompute import breathe
from crm_bridge.schema import call_customers, contacts, customer_numbers, customers
from cti.history import call_events

__all__ = ["ComplaintCalls", "FillSummary", "contact_row", "fill_contacts"]

#: Of these calls ``(pbx, call_id)``, those the customer complained on (linked to a
#: complaint ticket). Blocking: called on the contacts pass's thread.
ComplaintCalls = Callable[[Sequence[tuple[str, str]]], Collection[tuple[str, str]]]

#: The ACD event kinds a contact reads.
_ACD_KINDS = (
    "caller_joined",
    "caller_connected",
    "caller_abandoned",
    "caller_overflowed",
    "callback_requested",
    "callback_not_offered",
)


@dataclass(frozen=True, slots=True)
class FillSummary:
    """What a pass added: ``added`` contacts, ``customers`` the ids of their customers
    (marked changed: re-profile them), and the seconds it took."""

    added: int
    customers: frozenset[str]
    seconds: float


def fill_contacts(
    engine: Engine,
    *,
    batch: int = 1000,
    since: float | None = None,
    now: float | None = None,
    pause: float = 0.0,
    rest: float = 0.0,
    complaints: ComplaintCalls | None = None,
) -> FillSummary:
    """Add a contact for every ended call that has none yet, ``batch`` calls a transaction.

    ``since``: only calls whose ``ended`` event is at or after it (epoch seconds; the scan
    then starts from ``ix_call_events_at`` instead of every ``ended`` event). A periodic
    caller passes its previous pass's time minus a margin longer than a call and an outage
    of the history writer (events written late keep their PBX time); None scans the whole
    history (the first pass, ``callcenter``). ``now`` is the ``changed_at`` given to the
    customers (default: the wall clock). ``pause`` and ``rest``: after each batch, sleep
    ``pause`` plus ``rest`` times as long as the batch took (a background thread hands the
    GIL back to the thread answering calls that way). ``complaints``: which calls were
    complained on (None: none known, ``complaint`` stays false)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    started = time.monotonic()
    stamp = time.time() if now is None else now
    added = 0
    touched: set[str] = set()
    e = call_events.c
    pending = (
        select(e.pbx, e.call_id)
        .where(
            e.kind == "ended",
            ~exists().where(contacts.c.pbx == e.pbx, contacts.c.call_id == e.call_id),
        )
        .order_by(e.id)
        .limit(batch)
    )
    if since is not None:
        pending = pending.where(e.at >= since)
    while True:
        began = time.monotonic()
        with engine.begin() as conn:
            calls = [(pbx, call_id) for pbx, call_id in conn.execute(pending)]
            if not calls:
                break
            rows = _contact_rows(conn, calls)
            if complaints is not None and rows:
                flagged = set(complaints([(r["pbx"], r["call_id"]) for r in rows]))
                for row in rows:
                    row["complaint"] = (row["pbx"], row["call_id"]) in flagged
            new = _insert(conn, rows)
            ids = {cid for cid in new if cid is not None}
            if ids:
                c = customers.c
                conn.execute(
                    update(customers)
                    .where(c.id.in_(sorted(ids)))
                    .values(changed_at=case((c.changed_at < stamp, stamp), else_=c.changed_at))
                )
        added += len(new)
        touched |= ids
        if len(calls) < batch:
            break
        breathe(began, pause, rest)
    return FillSummary(added, frozenset(touched), time.monotonic() - started)


def contact_row(
    pbx: str,
    call_id: str,
    call: Sequence[dict[str, Any]],
    acd: Sequence[dict[str, Any]],
) -> dict[str, Any] | None:
    """The contact of one call from its stored event payloads, each list in the order they
    were stored; ``customer_id`` is left for the caller. None when the call has not ended."""
    ended = next((p for p in call if p.get("kind") == "ended"), None)
    if ended is None:
        return None
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for payload in call:
        by_kind[payload.get("kind", "")].append(payload)
    queues: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for payload in acd:
        queues[payload.get("kind", "")].append(payload)

    arrived = _first(by_kind, "arrived")
    caller = (_last(by_kind, "caller_changed") or arrived or {}).get("caller") or {}
    at = arrived["at"] if arrived else min(float(p["at"]) for p in call)

    connected = _first(queues, "caller_connected")
    answered = _first(by_kind, "answered")
    joined = _last(queues, "caller_joined")
    queued = _last(by_kind, "queued")
    abandoned = _first(queues, "caller_abandoned") or _first(by_kind, "abandoned")
    if connected:
        queue, agent, wait = connected["queue"], connected["agent"], connected["wait"]
    else:
        queue = (joined or queued or answered or abandoned or {}).get("queue")
        agent = answered["agent"]["interface"] if answered else None
        wait = (answered or abandoned or {}).get("wait")

    ivr = [
        {"kind": p["kind"], "at": p["at"], "digits": p["digits"]}
        if p["kind"] == "digits"
        else {"kind": p["kind"], "at": p["at"], "application": p.get("application")}
        for p in call
        if p.get("kind") in ("ivr_entered", "digits")
    ]
    return {
        "pbx": pbx,
        "call_id": call_id,
        "number": caller.get("number"),
        "at": float(at),
        "queue": queue,
        "agent": agent,
        "wait": None if wait is None else float(wait),
        "talk": ended.get("talk_time"),
        "outcome": _outcome(
            by_kind, queues, answered=bool(connected or answered or ended.get("answered"))
        ),
        "ivr_path": ivr or None,
        "complaint": False,
    }


def _outcome(
    by_kind: dict[str, list[dict[str, Any]]],
    queues: dict[str, list[dict[str, Any]]],
    *,
    answered: bool,
) -> str:
    if by_kind.get("failed"):
        return "failed"
    if by_kind.get("callback_asked") or queues.get("callback_requested"):
        return "callback"
    if answered:
        return "answered"
    overflowed = _last(queues, "caller_overflowed") or next(
        (p for p in reversed(queues.get("callback_not_offered", [])) if p.get("fallback")), None
    )
    joined = _last(queues, "caller_joined")
    if overflowed and (joined is None or joined["at"] < overflowed["at"]):
        return "voicemail"
    return "abandoned"


def _first(events: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, Any] | None:
    found = events.get(kind)
    return found[0] if found else None


def _last(events: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, Any] | None:
    found = events.get(kind)
    return found[-1] if found else None


def _contact_rows(conn: Connection, calls: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The contacts of ``calls`` (ended), each with its customer."""
    by_pbx: dict[str, list[str]] = defaultdict(list)
    for pbx, call_id in calls:
        by_pbx[pbx].append(call_id)
    call: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    acd: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    chosen: dict[tuple[str, str], str] = {}
    for pbx, ids in by_pbx.items():
        # (pbx, call_id) leads the unique fact index of both event tables.
        e = call_events.c
        for call_id, payload in conn.execute(
            select(e.call_id, e.payload).where(e.pbx == pbx, e.call_id.in_(ids)).order_by(e.id)
        ):
            call[pbx, call_id].append(payload)
        a = acd_events.c
        for call_id, payload in conn.execute(
            select(a.call_id, a.payload)
            .where(a.pbx == pbx, a.call_id.in_(ids), a.kind.in_(_ACD_KINDS))
            .order_by(a.id)
        ):
            acd[pbx, call_id].append(payload)
        k = call_customers.c
        for call_id, customer_id in conn.execute(
            select(k.call_id, k.customer_id).where(k.pbx == pbx, k.call_id.in_(ids))
        ):
            chosen[pbx, call_id] = customer_id
    rows = []
    for pbx, call_id in calls:
        row = contact_row(pbx, call_id, call[pbx, call_id], acd[pbx, call_id])
        if row is not None:
            rows.append(row)
    only = _only_customers(conn, {r["number"] for r in rows if r["number"]})
    for row in rows:
        row["customer_id"] = chosen.get((row["pbx"], row["call_id"])) or only.get(row["number"])
    return rows


def _only_customers(conn: Connection, numbers: Iterable[str]) -> dict[str, str]:
    """The numbers of ``numbers`` that exactly one customer has, with that customer."""
    wanted = sorted(numbers)
    if not wanted:
        return {}
    n = customer_numbers.c
    query = (
        select(n.number, func.min(n.customer_id))
        .where(n.number.in_(wanted))
        .group_by(n.number)
        .having(func.count() == 1)
    )
    return {number: customer_id for number, customer_id in conn.execute(query)}


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> list[str | None]:
    """Insert ``rows``, skipping contacts already stored; the customer of each new one."""
    if not rows:
        return []
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    else:
        raise NotImplementedError(f"contacts on {dialect}: use sqlite or postgresql")
    statement = (
        insert(contacts)
        .on_conflict_do_nothing(index_elements=["pbx", "call_id"])
        .returning(contacts.c.customer_id)
    )
    result = conn.execute(statement, rows)
    return list(result.scalars())
