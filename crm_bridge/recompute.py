"""The customer profiles computed from the database: in bulk, and one customer at a time.

**Bulk** (:func:`recompute_all`, ``callcenter tiers recompute``): two passes.

1. The window values of every customer, summed by the database (one ``GROUP BY`` over the
   orders of the pyramid's window; customers without revenue count as 0), give the
   pyramid's cut-offs: nothing but 100,000 numbers is held.
2. The customers are read in batches in id order (keyset: ``id > last``), each batch's
   orders and contacts by ``customer_id`` (:func:`crm_bridge.store.history_of`, on the
   indexes), profiled against those cut-offs exactly as
   :func:`crm_bridge.profile.profile_population` would, and written (``tier``,
   ``run_tier``, ``profile``, ``profiled_at``) in the batch's own transaction. Memory stays
   one batch deep.

The ``tier_runs`` row (the cut-offs) is written last: a run that dies midway leaves the
previous run in force for the incremental path; the customers it had already rewritten
carry their new tier (and ``run_tier``) until the next run finishes. A customer added or
changed while the run goes is profiled with what the run read and marked changed by its
writer (``changed_at``), so the next incremental pass takes it again.

**Incremental** (:func:`reprofile`, :func:`recompute_changed`): when an order or a contact
arrives, the customer is profiled against the latest run's cut-offs and its tier at that run
(``run_tier``, the core's ``was``; NULL for a customer the run did not include). This gives
the tier a bulk recompute would give as long as nobody else changed
(:mod:`crm_bridge.pyramid`). Without any run there are no cut-offs: :class:`NoTierRun`
says a bulk run is needed first.

On PostgreSQL a batch's profiles go in with one ``UPDATE ... FROM json_to_recordset(batch)`` (one
round trip per batch); elsewhere with an executemany ``UPDATE`` (README "Customer tiers"
has the figures of both).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, cast

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, text, update

from crm_bridge import store
from crm_bridge.config import ProfileRules
from crm_bridge.customer import DAY
from crm_bridge.document import profile_document
from crm_bridge.profile import Profile, profile_customer
from crm_bridge.pyramid import (
    PYRAMID,
    Tier,
    TierCutoffs,
    cutoffs_for,
    cutoffs_from_json,
    cutoffs_to_json,
    ranked_tier,
    window_value,
)
from crm_bridge.schema import customers, orders, tier_runs

__all__ = [
    "NoTierRun",
    "Progress",
    "RecomputeSummary",
    "TierRun",
    "latest_run",
    "recompute_all",
    "recompute_changed",
    "reprofile",
]

#: Customers per batch (one transaction each) in a bulk run.
BATCH = 2000

#: ``progress(done, total)``: customers profiled so far, of ``total``.
Progress = Callable[[int, int], None]


class NoTierRun(LookupError):
    """No bulk run has drawn the pyramid's cut-offs yet: run ``callcenter tiers recompute``
    (:func:`recompute_all`) before profiling customers one at a time."""

    def __init__(self) -> None:
        super().__init__(
            "no tier run yet: the value tiers need a bulk recompute first "
            "(callcenter tiers recompute)"
        )


@dataclass(frozen=True, slots=True)
class TierRun:
    """A stored bulk run: its row id and its cut-offs."""

    id: int
    cutoffs: TierCutoffs


@dataclass(frozen=True, slots=True)
class RecomputeSummary:
    """What a bulk run did: the ``tier_runs`` row, how many customers, how many in each tier
    (every tier of :data:`~crm_bridge.pyramid.PYRAMID`, zeros included), the cut-offs and
    the seconds it took."""

    run_id: int
    customers: int
    tiers: dict[str, int]
    cutoffs: TierCutoffs
    seconds: float
    #: Seconds of each part: window values, profiles (reading and computing), writes.
    parts: dict[str, float] = field(default_factory=dict)


def recompute_all(
    engine: Engine,
    now: float,
    rules: ProfileRules,
    *,
    progress: Progress | None = None,
    batch: int = BATCH,
    update_with: Literal["auto", "executemany"] = "auto",
) -> RecomputeSummary:
    """Profile every customer at ``now`` and store a new tier run (the bulk path).

    ``update_with="executemany"`` forces the portable write on PostgreSQL too (to measure
    it); ``auto`` uses one UPDATE per batch there."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    started = time.monotonic()
    with engine.connect() as conn:
        population = conn.execute(select(func.count()).select_from(customers)).scalar_one()
        values = _window_values(conn, now, rules.pyramid.window_days)
    values += [Decimal(0)] * (population - len(values))
    cutoffs = cutoffs_for(values, rules.pyramid, now)
    del values
    valued = time.monotonic()
    tiers: Counter[str] = Counter()
    done = 0
    writing = 0.0
    after: str | None = None
    if progress is not None:
        progress(0, population)
    while True:
        with engine.begin() as conn:
            query = select(customers.c.id).order_by(customers.c.id).limit(batch)
            if after is not None:
                query = query.where(customers.c.id > after)
            ids = list(conn.execute(query).scalars())
            if not ids:
                break
            rows = []
            for cid, history in store.history_of(conn, ids).items():
                value = window_value(history, now, cutoffs.window_days)
                profile = profile_customer(
                    history, cutoffs, now, rules, was=ranked_tier(value, cutoffs).tier
                )
                tiers[profile.tier.tier] += 1
                rows.append((cid, profile.tier.tier, profile_document(profile, cutoffs)))
            t = time.monotonic()
            _write(conn, rows, now, run=True, update_with=update_with)
            writing += time.monotonic() - t
        after = ids[-1]
        done += len(ids)
        if progress is not None:
            progress(done, max(population, done))
    t = time.monotonic()
    with engine.begin() as conn:
        run_id = conn.execute(
            insert(tier_runs)
            .values(
                at=now, finished_at=time.time(), customers=done, cutoffs=cutoffs_to_json(cutoffs)
            )
            .returning(tier_runs.c.id)
        ).scalar_one()
    finished = time.monotonic()
    writing += finished - t
    return RecomputeSummary(
        run_id=int(run_id),
        customers=done,
        tiers={tier: tiers[tier] for tier in PYRAMID},
        cutoffs=cutoffs,
        seconds=finished - started,
        parts={
            "window values": valued - started,
            "profiles": finished - valued - writing,
            "writes": writing,
        },
    )


def latest_run(conn: Connection) -> TierRun | None:
    """The newest stored tier run (None: none yet)."""
    row = conn.execute(
        select(tier_runs.c.id, tier_runs.c.cutoffs).order_by(tier_runs.c.id.desc()).limit(1)
    ).first()
    if row is None:
        return None
    try:
        cutoffs = cutoffs_from_json(row.cutoffs)
    except ValueError as exc:
        raise ValueError(f"tier_runs row {row.id}: {exc}") from None
    return TierRun(int(row.id), cutoffs)


def reprofile(
    conn: Connection, customer_ids: Iterable[str], now: float, rules: ProfileRules
) -> dict[str, Profile]:
    """Profile ``customer_ids`` at ``now`` against the latest run and store each profile
    (``tier``, ``profile``, ``profiled_at``; ``run_tier`` stays the run's). Ids no customer
    has any more are skipped. :class:`NoTierRun` when no bulk run exists yet. The caller
    owns the transaction."""
    run = latest_run(conn)
    if run is None:
        raise NoTierRun()
    wanted = list(dict.fromkeys(customer_ids))
    profiles: dict[str, Profile] = {}
    for start in range(0, len(wanted), store.CHUNK):
        chunk = wanted[start : start + store.CHUNK]
        was: dict[str, Tier | None] = {
            cid: cast("Tier | None", tier)
            for cid, tier in conn.execute(
                select(customers.c.id, customers.c.run_tier).where(customers.c.id.in_(chunk))
            )
        }
        found = [cid for cid in chunk if cid in was]
        rows = []
        for cid, history in store.history_of(conn, found).items():
            profile = profile_customer(history, run.cutoffs, now, rules, was=was[cid])
            profiles[cid] = profile
            rows.append((cid, profile.tier.tier, profile_document(profile, run.cutoffs)))
        _write(conn, rows, now, run=False, update_with="auto")
    return profiles


def recompute_changed(
    engine: Engine,
    now: float,
    rules: ProfileRules,
    *,
    since: float,
    batch: int = BATCH,
    pause: float = 0.0,
    rest: float = 0.0,
) -> int:
    """Re-profile every customer changed (an order, a contact: ``changed_at``) at or after
    ``since`` against the latest run, one transaction per ``batch``; how many were.
    ``pause`` and ``rest``: after each batch, sleep ``pause`` plus ``rest`` times as long as
    the batch took (a background thread in a process that answers calls hands the GIL back
    that way: ``rest`` 3 keeps it to a quarter of the time). :class:`NoTierRun` when there
    is no run yet (a bulk run is needed)."""
    with engine.connect() as conn:
        if latest_run(conn) is None:
            raise NoTierRun()
        changed = list(
            conn.execute(
                select(customers.c.id)
                .where(customers.c.changed_at >= since)
                .order_by(customers.c.id)
            ).scalars()
        )
    done = 0
    for start in range(0, len(changed), batch):
        began = time.monotonic()
        with engine.begin() as conn:
            done += len(reprofile(conn, changed[start : start + batch], now, rules))
        if start + batch < len(changed):
            breathe(began, pause, rest)
    return done


def breathe(began: float, pause: float, rest: float) -> None:
    """Sleep ``pause`` plus ``rest`` times the time since ``began`` (monotonic), if any."""
    if pause or rest:
        time.sleep(pause + rest * (time.monotonic() - began))


def _window_values(conn: Connection, now: float, window_days: int) -> list[Decimal]:
    """Each customer's revenue of the window (as :func:`~crm_bridge.pyramid.window_value`
    counts it: ``now - window < at <= now``), for the customers with an order in it."""
    start = now - window_days * DAY
    query = (
        select(func.sum(orders.c.amount_cents))
        .where(orders.c.at > start, orders.c.at <= now)
        .group_by(orders.c.customer_id)
    )
    return [Decimal(int(cents)).scaleb(-2) for cents in conn.execute(query).scalars()]


def _batch_update(run: bool) -> Any:
    """PostgreSQL: one UPDATE for a whole batch, its rows passed as one JSON array (a
    parameter per column would be an array of JSON strings, which the driver escapes
    character by character: ten times slower)."""
    run_tier = "run_tier = v.tier, " if run else ""
    return text(
        f"""
        UPDATE customers AS c
        SET tier = v.tier, {run_tier}profile = v.profile, profiled_at = :at
        FROM json_to_recordset(CAST(:rows AS JSON)) AS v(id TEXT, tier TEXT, profile JSON)
        WHERE c.id = v.id
        """
    )


_BATCH_UPDATE = {run: _batch_update(run) for run in (False, True)}


def _write(
    conn: Connection,
    rows: Sequence[tuple[str, str, dict[str, Any]]],
    now: float,
    *,
    run: bool,
    update_with: Literal["auto", "executemany"],
) -> None:
    """Store profiles: ``(customer id, tier, document)`` each; ``run``: also ``run_tier``."""
    if not rows:
        return
    if update_with == "auto" and conn.dialect.name == "postgresql":
        batch = [{"id": cid, "tier": tier, "profile": doc} for cid, tier, doc in rows]
        conn.execute(_BATCH_UPDATE[run], {"at": now, "rows": _json(batch)})
        return
    values: dict[str, Any] = {
        "tier": bindparam("p_tier"),
        "profile": bindparam("p_profile", type_=customers.c.profile.type),
        "profiled_at": bindparam("p_at"),
    }
    if run:
        values["run_tier"] = bindparam("p_tier")
    statement = update(customers).where(customers.c.id == bindparam("p_id")).values(values)
    conn.execute(
        statement,
        [{"p_id": cid, "p_tier": tier, "p_profile": doc, "p_at": now} for cid, tier, doc in rows],
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
