"""``callcenter customers generate`` (crm_bridge.generator): deterministic by seed, names
from many countries, valid E.164 numbers with a few shared, and histories shaped so that the
profile core finds every tier, loyalty class, lifecycle stage and quadrant (the acceptance
criterion), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select

import migrations
from callcenter.cli import main
from crm_bridge import store
from crm_bridge.config import ProfileRules
from crm_bridge.customer import DAY
from crm_bridge.errors import DuplicateCustomer
from crm_bridge.generator import CATEGORIES, generate
from crm_bridge.numbers import to_e164
from crm_bridge.profile import profile_population
from crm_bridge.schema import contacts, customer_numbers, customers, orders

NOW = 1_780_000_000.0


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    return migrated_engine


def _sqlite(tmp_path: Path, name: str) -> Engine:
    url = f"sqlite:///{tmp_path / name}"
    migrations.upgrade(url)
    return create_engine(url)


def _dump(engine: Engine) -> list[list[Any]]:
    with engine.connect() as conn:
        return [
            [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]
            for table in (customers, customer_numbers, orders, contacts)
        ]


def test_every_class_of_the_profile_occurs_in_a_generated_population(engine: Engine) -> None:
    summary = generate(engine, 2000, 20_000, seed=11, now=NOW, region="DE")
    assert (summary.customers, summary.orders) == (2000, 20_000)
    with engine.connect() as conn:
        ids = list(conn.execute(select(customers.c.id)).scalars())
        histories = store.history_of(conn, ids)
    # small_below set, so the optional bottom layer of the pyramid occurs too.
    rules = ProfileRules.model_validate({"pyramid": {"small_below": 50}})
    profiles = profile_population(histories.values(), NOW, rules).profiles.values()
    assert {p.tier.tier for p in profiles} == {"vip", "key", "ordinary", "small"}
    assert {p.loyalty.loyalty for p in profiles} == {"none", "latent", "inertial", "true"}
    assert {p.quadrant.quadrant for p in profiles} == {
        "apostle", "mercenary", "hostage", "defector"
    }  # fmt: skip
    stages = Counter(p.lifecycle.stage for p in profiles)
    assert set(stages) == {"potential", "development", "growth", "mature", "decline", "lost"}
    # A pyramid: VIPs are few and hold much of the revenue.
    default = profile_population(histories.values(), NOW, ProfileRules()).profiles
    tiers = Counter(p.tier.tier for p in default.values())
    assert tiers["vip"] == 20 and tiers["key"] == 80
    # Every next step the pop can suggest occurs as well.
    assert len({p.next_step.code for p in profiles}) == 11


def test_generated_rows_look_like_customers(engine: Engine) -> None:
    summary = generate(engine, 1000, 8000, seed=3, now=NOW, region="DE")
    with engine.connect() as conn:
        names = list(conn.execute(select(customers.c.name)).scalars())
        numbers = conn.execute(select(customer_numbers.c.customer_id, customer_numbers.c.number))
        per_customer = Counter[str]()
        holders = Counter[str]()
        for cid, number in numbers:
            assert to_e164(number, "DE") == number  # valid, and E.164 already
            per_customer[cid] += 1
            holders[number] += 1
        bought = conn.execute(select(orders.c.at, orders.c.amount_cents, orders.c.category)).all()
        called = conn.execute(select(func.count()).select_from(contacts)).scalar_one()
    assert sum(not n.isascii() for n in names) > 500  # most names carry non-ASCII letters
    scripts = {
        "ü": "de",
        "é": "fr",
        "ñ": "es",
        "ł": "pl",
        "и": "ru",
        "Ελ": "el",
        "王": "zh",
        "م": "ar",
    }
    assert {lang for ch, lang in scripts.items() if any(ch in n for n in names)} == set(
        scripts.values()
    )
    assert set(per_customer.values()) == {1, 2, 3}
    foreign = [n for n in holders if not n.startswith("+49")]
    assert 0 < len(foreign) < len(holders) / 4  # mostly the default region
    shared = [n for n, k in holders.items() if k == 2]
    assert shared and max(holders.values()) == 2 and len(shared) == summary.shared_numbers
    assert summary.numbers == sum(per_customer.values())
    assert len(bought) == 8000 and summary.contacts == called > 0
    assert all(NOW - 3 * 365 * DAY < at <= NOW for at, _, _ in bought)
    assert {c for _, _, c in bought} <= set(CATEGORIES)
    refunds = [a for _, a, _ in bought if a < 0]
    assert 0 < len(refunds) == summary.refunds < len(bought) / 20


def test_the_same_seed_gives_the_same_data(tmp_path: Path) -> None:
    first, second, other = (_sqlite(tmp_path, f"{n}.sqlite3") for n in ("a", "b", "c"))
    generate(first, 300, 2000, seed=5, now=NOW, region="US")
    generate(second, 300, 2000, seed=5, now=NOW, region="US")
    generate(other, 300, 2000, seed=6, now=NOW, region="US")
    assert _dump(first) == _dump(second)
    assert _dump(first)[2] != _dump(other)[2]
    for engine in (first, second, other):
        engine.dispose()


def test_a_seed_generated_before_is_refused_and_adds_nothing(engine: Engine) -> None:
    generate(engine, 50, 200, seed=1, now=NOW, region="DE")
    before = _dump(engine)
    with pytest.raises(DuplicateCustomer, match="'G1-0000001' is already taken"):
        generate(engine, 50, 200, seed=1, now=NOW, region="DE")
    assert _dump(engine) == before
    generate(engine, 10, 20, seed=2, now=NOW, region="DE")  # another seed adds to them
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(customers)).scalar_one() == 60


def test_counts_are_checked() -> None:
    with pytest.raises(ValueError, match="orders need customers"):
        generate(create_engine("sqlite://"), 0, 5, seed=1, now=NOW, region="DE")
    with pytest.raises(ValueError, match="must not be negative"):
        generate(create_engine("sqlite://"), -1, 0, seed=1, now=NOW, region="DE")


def test_the_command_generates_and_refuses_a_seed_twice(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "callcenter.yaml"
    config.write_text(f"database:\n  url: {database_url}\nnumbering:\n  country_code: '33'\n")
    argv = ["--config", str(config), "--log-level", "WARNING", "customers", "generate"]
    assert main([*argv, "--customers", "200", "--orders", "1000", "--seed", "4"]) == 0
    assert capsys.readouterr().out.startswith("generated 200 customers (")
    engine = create_engine(database_url)
    with engine.connect() as conn:
        numbers = list(conn.execute(select(customer_numbers.c.number)).scalars())
    engine.dispose()
    assert sum(n.startswith("+33") for n in numbers) > len(numbers) / 2  # region of +33: FR
    assert main([*argv, "--customers", "5", "--orders", "5", "--seed", "4"]) == 2
    assert "seed 4 was generated before; use another --seed" in capsys.readouterr().err
    assert main([*argv, "--customers", "0", "--orders", "5"]) == 2
    assert "orders need customers" in capsys.readouterr().err
