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
* The IVR: when the configuration names no flows, the demo runs the example flows of
  ``config/ivr`` on the simulator's AGI DIDs (5002 over AsyncAGI, 5004's FastAGI script
  ``lab-route``), whose generated callers key the menu (:mod:`pbx_simulator.traffic`); the
  shipped ``callcenter.yaml`` leaves them off, as another queues file may lack their queues.
  A FastAGI port already taken gives way to a free one, which the simulator's DID dials.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, func, select, update

from crm_bridge import store
from crm_bridge.config import ProfileRules
from crm_bridge.generator import generate
from crm_bridge.numbers import NumberError, to_e164
from crm_bridge.recompute import recompute_all
from crm_bridge.schema import customers
from web.accounts import AccountError, Accounts

if TYPE_CHECKING:
    from callcenter.settings import Settings
    from pbx_simulator.settings import Route

__all__ = ["DemoLogin", "demo_ivr", "demo_logins", "fastagi_routes", "seed_customers"]

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


#: The example flows the demo runs when the configuration names none.
DEMO_FLOWS = Path(__file__).resolve().parent.parent / "config" / "ivr"
#: Their entries: the simulator's DID 5002 runs ``AGI(agi:async)``, DID 5004
#: ``AGI(agi://host:port/lab-route)``; both start the main menu.
DEMO_ENTRIES = (
    {"entry": "5002", "flow": "main", "transport": "asyncagi"},
    {"entry": "lab-route", "flow": "main", "transport": "fastagi"},
)
#: The simulator's DIDs whose callers go through the IVR.
IVR_DIDS = ("5002", "5004")


def demo_ivr(settings: Settings) -> tuple[Settings, list[str]]:
    """The demo's settings with the IVR on (see the module) and the lines to print about
    it. Flows of the configuration are kept as they are. When the example flows do not fit
    the ACD's queues, the IVR stays off and the traffic leaves the IVR's DIDs (nobody would
    answer their AGI). An unreadable queues file is left to the start-up to report."""
    from acd.config import load_acd_config
    from acd.errors import AcdConfigError
    from ivr.config import IvrSettings, flow_files
    from ivr.errors import FlowsInvalid
    from ivr.flow import load_flows

    notes: list[str] = []
    ivr = settings.ivr
    if not ivr.enabled:
        why = None
        if settings.acd.queues is None:
            why = "no ACD queues (acd.queues) for its flows to route to"
        else:
            try:
                queues = load_acd_config(settings.acd.queues).queues
                load_flows(flow_files([DEMO_FLOWS]), queues=queues)
            except AcdConfigError:
                return settings, notes
            except FlowsInvalid as exc:
                why = str(exc.errors[0])
        if why is not None:
            traffic = settings.simulator.traffic
            dids = tuple(d for d in traffic.dids if d not in IVR_DIDS) or ("5003",)
            traffic = traffic.model_copy(update={"dids": dids})
            simulator = settings.simulator.model_copy(update={"traffic": traffic})
            notes.append(f"IVR off in this demo: {why}")
            return settings.model_copy(update={"simulator": simulator}), notes
        ivr = IvrSettings.model_validate(
            {**ivr.model_dump(), "flows": [DEMO_FLOWS], "entries": DEMO_ENTRIES}
        )
    port = ivr.fastagi_port
    if port and not _free(ivr.fastagi_host, port):
        free = _free_port(ivr.fastagi_host)
        notes.append(
            f"FastAGI port {ivr.fastagi_host}:{port} is taken: the IVR's FastAGI server "
            f"listens on {free} instead"
        )
        ivr = ivr.model_copy(update={"fastagi_port": free})
    entries = ", ".join(f"{e.entry} ({e.transport})" for e in ivr.entries) or "none"
    notes.append(f"IVR: flows {', '.join(str(f) for f in ivr.flows)}; entries {entries}")
    return settings.model_copy(update={"ivr": ivr}), notes


def fastagi_routes(dids: Mapping[str, Route], host: str, port: int) -> dict[str, Route]:
    """The simulator's DIDs with each FastAGI route dialling ``host:port`` (the backend's
    FastAGI server; a wildcard host is reached on loopback), its script kept. Port 0 (no
    FastAGI server): unchanged."""
    if not port:
        return dict(dids)
    target = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    target = f"[{target}]" if ":" in target else target
    return {
        did: (
            replace(route, agi_url=f"agi://{target}:{port}/{route.agi_url.rsplit('/', 1)[-1]}")
            if route.kind == "fastagi"
            else route
        )
        for did, route in dids.items()
    }


def _free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        socket.create_server((host, port), family=family).close()
    except OSError:
        return False
    return True


def _free_port(host: str) -> int:
    """A port free now on ``host`` (the simulator's dialplan needs it before the server
    listens, so it cannot be the server's own port 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_server((host, 0), family=family) as server:
        return int(server.getsockname()[1])
