"""The demo's data: generated customers the first time (never over existing ones), the
simulator's callers given distinct profiles and one shared line, fresh log-ins each run."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, func, select

import migrations
from callcenter.demo import DEMO_CUSTOMERS, demo_logins, seed_customers
from crm_bridge import store
from crm_bridge.config import ProfileRules
from crm_bridge.schema import customers
from web.accounts import Accounts

NOW = 1_780_000_000.0
CALLERS = [
    ("Zoë Müller", "+4930123456"),
    ("Дмитрий Иванов", "+74951234567"),
    ("Νίκος Παπαδόπουλος", "+302101234567"),
    ("José Ramírez", "+34911234567"),
    ("", "<unknown>"),  # withheld: no customer
]


def test_the_demo_seeds_customers_once_with_its_callers_profiled(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    migrations.upgrade(url)
    engine = create_engine(url)
    written = seed_customers(engine, CALLERS, region="US", rules=ProfileRules(), now=NOW)
    assert written == DEMO_CUSTOMERS
    with engine.connect() as conn:
        found = {name: store.candidates_for(conn, number) for name, number in CALLERS[:4]}
        profiled = conn.execute(
            select(func.count()).select_from(customers).where(customers.c.profile.is_not(None))
        ).scalar()
    assert profiled == DEMO_CUSTOMERS
    # Each caller is a customer under the caller's name, with a profile of its own kind.
    kinds = set()
    for name, records in found.items():
        own = [r for r in records if r.name == name]
        assert len(own) == 1, name
        assert own[0].profile is not None
        kinds.add((own[0].tier, own[0].profile["lifecycle"]["stage"]))
    assert len(kinds) == 4
    # The last caller's line is shared with the customer before it: the pop lists both.
    assert len(found["José Ramírez"]) == 2
    # A second start changes nothing.
    assert seed_customers(engine, CALLERS, region="US", rules=ProfileRules(), now=NOW) == 0
    engine.dispose()


def test_demo_logins_are_fresh_each_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'logins.sqlite3'}"
    migrations.upgrade(url)
    accounts = Accounts(create_engine(url))
    first = demo_logins(accounts, ["6001", "6002"])
    assert [(x.username, x.role) for x in first] == [
        ("6001", "agent"), ("6002", "agent"), ("supervisor", "supervisor")
    ]
    second = demo_logins(accounts, ["6001", "6002"])
    for old, new in zip(first, second, strict=True):
        assert old.password != new.password
        assert accounts.authenticate(new.username, old.password) is None
        account = accounts.authenticate(new.username, new.password)
        assert account is not None and account.role == new.role
    agent = accounts.authenticate("6001", second[0].password)
    assert agent is not None and agent.agent == "6001"
