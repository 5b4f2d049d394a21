"""What ``callcenter demo`` adds to the embedded defaults so the screen pop has something to
show: customers (the first time), profiles, and log-ins for the sample agents.

* Customers: into an empty customer table, a generated population
  (:func:`crm_bridge.generator.generate`) whose histories cover every tier, loyalty class and
  lifecycle stage; then the simulator's own callers (``config/demo-customers.csv``) take over
  generated customers of different profiles, so the calls the demo places pop with a VIP in
  decline, a key customer, a new one, a lost one … One caller's line is given to two
  customers, so a pop lists candidates. Then a bulk tier recompute.
* Log-ins: each ACD agent (user name = agent name) and a ``supervisor`` get a fresh random
  password each run, printed once; an existing account keeps its role.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, func, select, update

from crm_bridge import store
from crm_bridge.config import ProfileRules
from crm_bridge.generator import generate
from crm_bridge.numbers import NumberError, to_e164
from crm_bridge.recompute import recompute_all
from crm_bridge.schema import customers
from web.accounts import AccountError, Accounts

__all__ = ["DemoLogin", "demo_logins", "seed_customers"]

#: The demo's generated population: big enough for every class, small enough to be quick.
DEMO_CUSTOMERS = 2_000
DEMO_ORDERS = 20_000
DEMO_SEED = 1


@dataclass(frozen=True, slots=True)
class DemoLogin:
    """A sample log-in, printed once by the demo."""

    username: str
    password: str
    role: str


def seed_customers(
    engine: Engine,
    callers: Iterable[tuple[str, str]],
    *,
    region: str,
    rules: ProfileRules,
    now: float | None = None,
) -> int:
    """Fill an empty customer table for the demo (see the module); returns how many
    customers were written (0: the table had customers already, nothing changed).
    ``callers`` are the simulator's (name, number) pairs."""
    with engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(customers)).scalar():
            return 0
    at = time.time() if now is None else now
    summary = generate(engine, DEMO_CUSTOMERS, DEMO_ORDERS, seed=DEMO_SEED, now=at, region=region)
    recompute_all(engine, at, rules)
    _give_callers_profiles(engine, list(callers), region, at)
    return summary.customers


def _give_callers_profiles(
    engine: Engine, callers: Sequence[tuple[str, str]], region: str, now: float
) -> None:
    """Each caller with a number takes over a generated customer of a profile not taken
    yet (tier and lifecycle stage); the last caller's number also goes to the customer
    before it (a shared line)."""
    known = []
    for name, raw in callers:
        try:
            known.append((name or "Unnamed caller", to_e164(raw, region)))
        except NumberError:
            continue  # a withheld or unknown caller: no customer
    with engine.begin() as conn:
        rows = conn.execute(
            select(customers.c.id, customers.c.tier, customers.c.profile).order_by(customers.c.id)
        ).all()
        taken: set[tuple[str | None, str | None]] = set()
        chosen: list[str] = []
        for row in rows:
            stage = (row.profile or {}).get("lifecycle", {}).get("stage")
            if (row.tier, stage) in taken:
                continue
            taken.add((row.tier, stage))
            chosen.append(row.id)
            if len(chosen) == len(known):
                break
        for customer_id, (name, number) in zip(chosen, known, strict=False):
            conn.execute(
                update(customers)
                .where(customers.c.id == customer_id)
                .values(name=name, changed_at=now)
            )
            store.add_number(conn, customer_id, number, "demo caller")
        if len(chosen) >= 2:
            store.add_number(conn, chosen[-2], known[len(chosen) - 1][1], "shared line")


def demo_logins(accounts: Accounts, agents: Iterable[str]) -> list[DemoLogin]:
    """A fresh password for each agent's account and a supervisor's, created when missing."""
    logins: list[tuple[str, str, str | None]] = [(agent, "agent", agent) for agent in agents]
    logins.append(("supervisor", "supervisor", None))
    given = []
    for username, role, agent in logins:
        password = secrets.token_urlsafe(9)
        try:
            accounts.add(username, password, role, agent=agent)
        except AccountError as exc:
            if exc.field != "username":
                raise
            accounts.set_password(username, password)  # it exists: keep it, new password
        given.append(DemoLogin(username, password, role))
    return given
