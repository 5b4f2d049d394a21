"""The customer tables' queries (crm_bridge.store) on SQLite and PostgreSQL: look-up by
number with shared lines, records, contacts newest first, histories for the profile, orders
that bump the customer, call choices, the ACD's tier index, unknown ids."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine, insert, select, update

from crm_bridge import store
from crm_bridge.customer import Contact, CustomerHistory, Order
from crm_bridge.errors import DuplicateCustomer, NumberError, UnknownCustomer
from crm_bridge.schema import contacts, customers, orders

NOW = 1_780_000_000.0


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    engine = migrated_engine
    with engine.begin() as conn:
        store.add_customer(conn, "c1", "Jürgen Müller", ["+49301234567", "+4915123456789"],
                           email="jm@example.de", first_seen=NOW - 400 * 86400, source="test",
                           now=NOW)  # fmt: skip
        store.add_customer(conn, "c2", "Élodie Dubois", ["+49301234567"], source="test", now=NOW)
        store.add_customer(conn, "c3", "王伟", ["+8613123456789"], source="test", now=NOW)
    return engine


def _contact(customer_id: str, call_id: str, at: float, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "pbx": "pbx1", "call_id": call_id, "customer_id": customer_id, "number": None, "at": at,
        "queue": "sales", "agent": "6001", "wait": 12.0, "talk": 90.0, "outcome": "answered",
        "ivr_path": ["menu", "1"], "complaint": False,
    }  # fmt: skip
    row.update(kw)
    return row


def test_a_shared_number_finds_every_customer_on_it_by_id(engine: Engine) -> None:
    with engine.connect() as conn:
        found = store.candidates_for(conn, "+49301234567")
        assert [c.id for c in found] == ["c1", "c2"]
        assert found[0] == store.CustomerRecord(
            "c1", "Jürgen Müller", "jm@example.de", ("+4915123456789", "+49301234567"),
            None, None, None,
        )  # fmt: skip
        assert found[1].numbers == ("+49301234567",)
        assert [c.id for c in store.candidates_for(conn, "+4915123456789")] == ["c1"]
        assert store.candidates_for(conn, "+12025550143") == []


def test_a_customer_by_id_with_its_stored_profile(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(customers)
            .where(customers.c.id == "c3")
            .values(tier="vip", profile={"tier": {"reason": "VIP: top 1%"}}, profiled_at=NOW)
        )
        record = store.customer(conn, "c3")
        assert record == store.CustomerRecord(
            "c3", "王伟", None, ("+8613123456789",), "vip", {"tier": {"reason": "VIP: top 1%"}},
            NOW,
        )  # fmt: skip
        store.add_customer(conn, "c4", "Без номера", [], source="test", now=NOW)
        assert store.customer(conn, "c4") == store.CustomerRecord(
            "c4", "Без номера", None, (), None, None, None
        )
        assert store.customer(conn, "nobody") is None


def test_last_contacts_are_the_newest_first_and_limited(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(contacts),
            [_contact("c1", f"call-{i}", NOW - 1000 * i, outcome="answered") for i in range(7)]
            + [_contact("c2", "other", NOW, outcome="abandoned", complaint=True)],
        )
        got = store.last_contacts(conn, "c1", limit=3)
        assert [c["at"] for c in got] == [NOW, NOW - 1000, NOW - 2000]
        assert got[0] == {
            "at": NOW, "queue": "sales", "agent": "6001", "wait": 12.0, "talk": 90.0,
            "outcome": "answered", "ivr_path": ["menu", "1"], "complaint": False,
        }  # fmt: skip
        assert len(store.last_contacts(conn, "c1")) == 5
        assert store.last_contacts(conn, "c3") == []
        with pytest.raises(UnknownCustomer, match="no customer with id 'ghost'"):
            store.last_contacts(conn, "ghost")


def test_history_holds_orders_in_decimal_contacts_and_first_seen(engine: Engine) -> None:
    with engine.begin() as conn:
        assert store.add_order(conn, "c1", NOW - 50, Decimal("19.99"), "books", "A-1", now=NOW)
        assert store.add_order(conn, "c1", NOW - 100, Decimal("-5.10"), "books", now=NOW + 1)
        store.add_order(conn, "c2", NOW - 10, Decimal("1200"), "garden", now=NOW)
        conn.execute(insert(contacts), [_contact("c1", "x", NOW - 5, outcome="callback",
                                                 complaint=True)])  # fmt: skip
        got = store.history_of(conn, ["c3", "c1"])
    assert list(got) == ["c3", "c1"]
    assert got["c1"] == CustomerHistory(
        "c1",
        (Order(NOW - 100, Decimal("-5.10"), "books"), Order(NOW - 50, Decimal("19.99"), "books")),
        (Contact(NOW - 5, "callback", True),),
        NOW - 400 * 86400,
    )
    assert got["c3"] == CustomerHistory("c3")
    with engine.connect() as conn, pytest.raises(UnknownCustomer, match="'ghost'"):
        store.history_of(conn, ["c1", "ghost"])


def test_history_of_many_customers_reads_them_in_chunks(engine: Engine) -> None:
    ids = [f"m{i:04d}" for i in range(store.CHUNK + 50)]
    with engine.begin() as conn:
        for cid in ids:
            store.add_customer(conn, cid, "Όνομα", [], source="test", now=NOW)
        conn.execute(
            insert(orders),
            [{"customer_id": cid, "at": NOW, "amount_cents": i, "category": "x"}
             for i, cid in enumerate(ids)],
        )  # fmt: skip
        got = store.history_of(conn, ids)
    assert list(got) == ids
    assert [h.orders[0].amount for h in got.values()] == [Decimal(i) / 100 for i in range(len(ids))]


def test_an_order_bumps_the_customer_and_a_known_ref_adds_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        assert store.add_order(conn, "c2", NOW - 5, Decimal("10.50"), "books", "R1", now=NOW + 60)
        assert not store.add_order(conn, "c2", NOW - 5, Decimal("10.50"), "books", "R1",
                                   now=NOW + 120)  # fmt: skip
        changed = conn.execute(select(customers.c.changed_at).where(customers.c.id == "c2"))
        assert changed.scalar_one() == NOW + 60
        rows = conn.execute(select(orders.c.amount_cents, orders.c.ref)).all()
        assert [tuple(r) for r in rows] == [(1050, "R1")]


def test_bad_orders_are_refused_before_anything_is_written(engine: Engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(UnknownCustomer, match="'ghost'"):
            store.add_order(conn, "ghost", NOW, Decimal("1"), "books", now=NOW)
        with pytest.raises(ValueError, match="more than 2 decimals"):
            store.add_order(conn, "c1", NOW, Decimal("1.005"), "books", now=NOW)
        with pytest.raises(ValueError, match="'category' must not be empty"):
            store.add_order(conn, "c1", NOW, Decimal("1"), "", now=NOW)
        with pytest.raises(ValueError, match="finite Decimal"):
            store.add_order(conn, "c1", NOW, Decimal("NaN"), "books", now=NOW)
        assert conn.execute(select(orders.c.id)).all() == []
        changed = conn.execute(select(customers.c.changed_at).where(customers.c.id == "c1"))
        assert changed.scalar_one() == NOW


def test_customers_and_numbers_are_checked(engine: Engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(DuplicateCustomer, match="customer id 'c1' is already taken"):
            store.add_customer(conn, "c1", "Again", [], source="test", now=NOW)
        with pytest.raises(NumberError, match=r"'030 123': not E\.164"):
            store.add_customer(conn, "c9", "Someone", ["030 123"], source="test", now=NOW)
        with pytest.raises(ValueError, match="the name must not be empty"):
            store.add_customer(conn, "c9", " ", [], source="test", now=NOW)
        assert store.customer(conn, "c9") is None
        assert store.add_number(conn, "c3", "+302101234567", "office")
        assert not store.add_number(conn, "c3", "+302101234567")
        assert store.customer(conn, "c3").numbers == ("+302101234567", "+8613123456789")  # type: ignore[union-attr]
        with pytest.raises(UnknownCustomer):
            store.add_number(conn, "ghost", "+302101234567")


def test_a_choice_is_remembered_for_the_call_and_choosing_again_replaces_it(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        assert store.chosen_customer(conn, "pbx1", "call-1") is None
        store.remember_choice(conn, "pbx1", "call-1", "c1", None, NOW)
        store.remember_choice(conn, "pbx2", "call-1", "c3", "6001", NOW)
        assert store.chosen_customer(conn, "pbx1", "call-1") == "c1"
        store.remember_choice(conn, "pbx1", "call-1", "c2", "6002", NOW + 5)
        assert store.chosen_customer(conn, "pbx1", "call-1") == "c2"
        assert store.chosen_customer(conn, "pbx2", "call-1") == "c3"
        with pytest.raises(UnknownCustomer):
            store.remember_choice(conn, "pbx1", "call-1", "ghost", "6001", NOW)
        assert store.chosen_customer(conn, "pbx1", "call-1") == "c2"


def test_the_tier_index_gives_a_shared_number_its_best_tier(engine: Engine) -> None:
    with engine.begin() as conn:
        assert store.tier_index(conn) == {}
        for cid, tier in [("c1", "ordinary"), ("c2", "key")]:
            conn.execute(update(customers).where(customers.c.id == cid).values(tier=tier))
        assert store.tier_index(conn) == {
            "+49301234567": "key",  # c1 ordinary and c2 key share it
            "+4915123456789": "ordinary",
        }  # c3 has no tier yet: left out
        conn.execute(update(customers).where(customers.c.id == "c1").values(tier="vip"))
        assert store.tier_index(conn)["+49301234567"] == "vip"


def test_the_tier_index_since_a_time_reads_the_numbers_of_customers_profiled_since(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        for cid, tier, at in [("c1", "vip", 100.0), ("c2", "ordinary", 200.0), ("c3", "key", 50.0)]:
            conn.execute(
                update(customers).where(customers.c.id == cid).values(tier=tier, profiled_at=at)
            )
        # c2 changed at 200: its shared number is judged against c1 (vip) too
        assert store.tier_index(conn, profiled_since=200.0) == {"+49301234567": "vip"}
        assert store.tier_index(conn, profiled_since=100.0) == {
            "+49301234567": "vip",
            "+4915123456789": "vip",  # c1's other number
        }
        assert store.tier_index(conn, profiled_since=50.0) == store.tier_index(conn)
        assert store.tier_index(conn, profiled_since=201.0) == {}


def test_cents_are_exact() -> None:
    assert store.cents(Decimal("19.99")) == 1999
    assert store.cents(Decimal("-0.5")) == -50
    assert store.cents(Decimal("1E+3")) == 100_000
    with pytest.raises(ValueError, match="more than 2 decimals"):
        store.cents(Decimal("0.001"))
