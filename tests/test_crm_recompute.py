"""Profiles computed from the database: the bulk run and the incremental path, on hand-made
populations whose classes are known, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, update

from crm_bridge import store
from crm_bridge.config import ProfileRules, PyramidRules
from crm_bridge.customer import DAY, Contact, CustomerHistory, Order
from crm_bridge.document import profile_document
from crm_bridge.profile import profile_population
from crm_bridge.pyramid import cutoffs_from_json
from crm_bridge.recompute import (
    NoTierRun,
    latest_run,
    recompute_all,
    recompute_changed,
    reprofile,
)
from crm_bridge.schema import contacts, customers, orders, tier_runs

NOW = 1_780_000_000.0
RULES = ProfileRules()
THRESHOLD = ProfileRules(
    pyramid=PyramidRules(method="threshold", vip_from=Decimal(10000), key_from=Decimal(2000))
)


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    return migrated_engine


def _monthly(amount: int, months: int, category: str = "garden", *, skip: int = 0) -> list[Order]:
    """One order of ``amount`` a month for ``months`` months back from NOW - 10 days, the
    newest ``skip`` months left out."""
    return [
        Order(NOW - (10 + 30 * m) * DAY, Decimal(amount), category) for m in range(skip, months)
    ]


def _population() -> list[CustomerHistory]:
    """200 customers: 2 VIP places, 10 VIP-or-key places (rank 1% + 4%).

    * ``big1``/``big2``: 12 x 5,000 a year, two categories: VIP, true loyalty;
    * ``decliner``: 3,000 a month for three years, only 2 orders in the last 6 months: key by
      rank (24,000 a year, below the VIPs, above the rest), decline, retention offer;
    * ``k01``..``k07``: 12 x 1,000, key;
    * ``o000``..``o179``: 2 orders of 50 (ordinary), ``o000`` with 3 abandoned calls;
    * ``nobody1``..``nobody10``: no order (potential), first seen a month ago.
    """
    out = [
        CustomerHistory(
            f"big{i}",
            tuple(_monthly(2500, 12) + _monthly(2500, 12, "kitchen")),
            first_seen=NOW - 800 * DAY,
        )
        for i in (1, 2)
    ]
    recent = [
        Order(NOW - 10 * DAY, Decimal(3000), "garden"),
        Order(NOW - 40 * DAY, Decimal(3000), "garden"),
    ]
    out.append(CustomerHistory("decliner", tuple(recent + _monthly(3000, 36, skip=6))))
    out += [CustomerHistory(f"k{i:02}", tuple(_monthly(1000, 12))) for i in range(1, 8)]
    for i in range(180):
        calls = tuple(Contact(NOW - d * DAY, "abandoned") for d in (5, 6, 7)) if i == 0 else ()
        out.append(
            CustomerHistory(
                f"o{i:03}",
                (
                    Order(NOW - 20 * DAY, Decimal(50), "toys"),
                    Order(NOW - 300 * DAY, Decimal(50), "toys"),
                ),
                calls,
            )
        )
    out += [CustomerHistory(f"nobody{i}", first_seen=NOW - 30 * DAY) for i in range(1, 11)]
    return out


def _store(engine: Engine, histories: list[CustomerHistory]) -> None:
    """The histories as rows, with plain inserts."""
    with engine.begin() as conn:
        conn.execute(
            insert(customers),
            [
                {"id": h.customer_id, "name": f"Kundin {h.customer_id} Ørsted",
                 "first_seen": h.first_seen,
                 "created_at": NOW - 1000 * DAY, "changed_at": NOW - 1000 * DAY, "source": "test"}
                for h in histories
            ],
        )  # fmt: skip
        conn.execute(
            insert(orders),
            [
                {"customer_id": h.customer_id, "at": o.at, "category": o.category,
                 "amount_cents": int(o.amount * 100)}
                for h in histories for o in h.orders
            ],
        )  # fmt: skip
        called = [
            {"pbx": "p", "call_id": f"{h.customer_id}-{i}", "customer_id": h.customer_id,
             "at": c.at, "outcome": c.outcome, "complaint": c.complaint}
            for h in histories for i, c in enumerate(h.contacts)
        ]  # fmt: skip
        if called:
            conn.execute(insert(contacts), called)


def _documents(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {cid: doc for cid, doc in conn.execute(select(customers.c.id, customers.c.profile))}


def test_a_bulk_run_gives_the_known_classes_and_stores_the_run(engine: Engine) -> None:
    _store(engine, _population())
    seen: list[tuple[int, int]] = []
    summary = recompute_all(
        engine, NOW, RULES, progress=lambda done, total: seen.append((done, total)), batch=64
    )
    assert summary.customers == 200
    assert summary.tiers == {"vip": 2, "key": 8, "ordinary": 190, "small": 0}
    assert seen[0] == (0, 200) and seen[-1] == (200, 200) and len(seen) == 1 + 4
    docs = _documents(engine)
    big = docs["big1"]
    assert big["tier"]["tier"] == "vip"
    assert big["tier"]["window_value"] == "60000.00"
    assert big["tier"]["reason"] == (
        "VIP: top 1% by 12-month revenue, 60,000 (the best outside the top 1% has 24,000)"
    )
    assert big["loyalty"]["class"] == "true"
    assert big["quadrant"]["quadrant"] == "apostle"
    assert big["next_step"]["code"] == "referral"

    decliner = docs["decliner"]
    assert decliner["tier"]["tier"] == "key"
    assert decliner["lifecycle"]["stage"] == "decline"
    assert decliner["lifecycle"]["retention"] is True
    assert decliner["next_step"]["code"] == "retention_offer"
    assert decliner["lifecycle"]["recent"] == "6000.00"

    assert {docs[f"k{i:02}"]["tier"]["tier"] for i in range(1, 8)} == {"key"}
    assert docs["o001"]["tier"]["tier"] == "ordinary"
    assert docs["o000"]["quadrant"]["quadrant"] == "defector"
    assert docs["o000"]["quadrant"]["abandoned"] == 3
    assert docs["o000"]["next_step"]["code"] == "service_recovery"
    nobody = docs["nobody1"]
    assert nobody["lifecycle"]["stage"] == "potential"
    assert nobody["next_step"]["code"] == "first_purchase"
    assert nobody["lifetime_value"]["amount"] == "0.00"

    with engine.connect() as conn:
        row = conn.execute(select(tier_runs)).one()
        tiers = dict(conn.execute(select(customers.c.id, customers.c.run_tier)).all())
        profiled = set(conn.execute(select(customers.c.profiled_at)).scalars())
    assert row.id == summary.run_id and row.customers == 200 and row.at == NOW
    assert cutoffs_from_json(row.cutoffs) == summary.cutoffs
    assert summary.cutoffs.vip_places == 2 and summary.cutoffs.top_places == 10
    assert tiers["big2"] == "vip" and tiers["decliner"] == "key" and tiers["o005"] == "ordinary"
    assert profiled == {NOW}


def test_the_bulk_run_is_the_cores_profile_population(engine: Engine) -> None:
    """Database in, database out: the same documents as the pure core on the same data."""
    histories = _population()
    _store(engine, histories)
    summary = recompute_all(engine, NOW, RULES, batch=37)
    expected = profile_population(histories, NOW, RULES)
    assert summary.cutoffs == expected.cutoffs
    assert _documents(engine) == {
        cid: profile_document(p, expected.cutoffs) for cid, p in expected.profiles.items()
    }


def test_thresholds_tier_by_amount(engine: Engine) -> None:
    _store(engine, _population())
    summary = recompute_all(engine, NOW, THRESHOLD)
    docs = _documents(engine)
    assert docs["big1"]["tier"]["reason"] == "VIP: 12-month revenue 60,000, at least 10,000"
    assert docs["decliner"]["tier"]["tier"] == "vip"  # 24,000: above the 10,000 line
    assert docs["decliner"]["next_step"]["code"] == "retention_offer"
    assert docs["k01"]["tier"]["reason"] == "VIP: 12-month revenue 12,000, at least 10,000"
    assert docs["o001"]["tier"]["reason"] == "ordinary: 12-month revenue 100, below 2,000 for key"
    assert summary.tiers == {"vip": 3 + 7, "key": 0, "ordinary": 190, "small": 0}


def test_incremental_on_unchanged_data_is_the_bulk_run(engine: Engine) -> None:
    _store(engine, _population())
    recompute_all(engine, NOW, RULES)
    bulk = _documents(engine)
    with engine.begin() as conn:
        conn.execute(update(customers).values(profile=None, tier=None))
        ids = list(conn.execute(select(customers.c.id)).scalars())
        profiles = reprofile(conn, [*ids, "no-such-customer"], NOW, RULES)
    assert len(profiles) == 200
    assert _documents(engine) == bulk


def test_an_incremental_change_gives_what_a_bulk_run_gives(engine: Engine) -> None:
    """An ordinary customer buys enough to pass the last VIP place: the incremental path
    makes him VIP at once, as the next bulk run does; so does a customer who was not in
    the run (no run tier)."""
    _store(engine, _population())
    recompute_all(engine, NOW, RULES)
    later = NOW + DAY
    with engine.begin() as conn:
        store.add_order(conn, "o007", NOW + 3600, Decimal("70000"), "garden", now=later)
        conn.execute(
            insert(customers).values(id="late", name="Late Comer", created_at=later,
                                     changed_at=later, source="test")
        )  # fmt: skip
        conn.execute(
            insert(orders).values(customer_id="late", at=NOW, amount_cents=1_500_000, category="a")
        )
    assert recompute_changed(engine, later, RULES, since=later) == 2
    incremental = _documents(engine)
    assert incremental["o007"]["tier"]["tier"] == "vip"
    assert incremental["o007"]["tier"]["reason"].endswith("(passes the last VIP place, 60,000)")
    assert incremental["late"]["tier"]["tier"] == "key"  # 15,000 passes the last key place
    recompute_all(engine, later, RULES)
    bulk = _documents(engine)
    for cid in ("o007", "late"):
        assert bulk[cid]["tier"]["tier"] == incremental[cid]["tier"]["tier"]
        for part in ("loyalty", "quadrant", "lifecycle", "lifetime_value", "next_step"):
            assert bulk[cid][part] == incremental[cid][part]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tier_runs)).scalar_one() == 2
        run = latest_run(conn)
    assert run is not None and run.cutoffs.at == later


def test_recompute_changed_takes_only_the_changed(engine: Engine) -> None:
    _store(engine, _population())
    recompute_all(engine, NOW, RULES)
    with engine.begin() as conn:
        conn.execute(update(customers).where(customers.c.id == "k03").values(changed_at=NOW + 5))
    assert recompute_changed(engine, NOW + 10, RULES, since=NOW) == 1
    with engine.connect() as conn:
        at = dict(conn.execute(select(customers.c.id, customers.c.profiled_at)).all())
    assert at["k03"] == NOW + 10 and at["k04"] == NOW


def test_without_a_run_the_incremental_path_asks_for_a_bulk_run(engine: Engine) -> None:
    _store(engine, _population()[:3])
    with pytest.raises(NoTierRun, match="callcenter tiers recompute"):
        recompute_changed(engine, NOW, RULES, since=0)
    with engine.begin() as conn, pytest.raises(NoTierRun):
        reprofile(conn, ["big1"], NOW, RULES)
    with engine.connect() as conn:
        assert (
            conn.execute(select(customers.c.profile).where(customers.c.id == "big1")).scalar()
            is None
        )


def test_the_portable_write_equals_the_batched_one(engine: Engine) -> None:
    _store(engine, _population())
    recompute_all(engine, NOW, RULES)
    batched = _documents(engine)
    recompute_all(engine, NOW, RULES, update_with="executemany")
    assert _documents(engine) == batched


def test_an_empty_database_gives_an_empty_run(engine: Engine) -> None:
    summary = recompute_all(engine, NOW, RULES)
    assert summary.customers == 0 and sum(summary.tiers.values()) == 0
    with engine.connect() as conn:
        assert latest_run(conn) is not None


def test_a_background_pass_rests_in_proportion_to_the_batch_it_just_did(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from crm_bridge import recompute

    slept: list[float] = []
    monkeypatch.setattr(recompute.time, "sleep", slept.append)
    monkeypatch.setattr(recompute.time, "monotonic", lambda: 10.0)
    recompute.breathe(9.9, 0.005, 3.0)  # a batch of 100 ms: 300 ms more, plus the pause
    recompute.breathe(9.9, 0.0, 0.0)  # the command line's bulk run does not rest
    assert slept == [pytest.approx(0.305)]
