"""The backend SIGKILLed mid-traffic and started again, against the PBX simulator over real
TCP: callers parked before and during the outage are routed at once, agents already talking
(on the ACD's bridges or on app_queue calls) are never offered another caller, and history
holds exactly one row per fact."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text

from pbx_simulator.engine import Pbx
from tests.conftest import sleep
from tests.e2e import (
    SECRET,
    USER,
    PopClient,
    caller,
    originate_inside,
    start_simulator,
    until,
)
from web.accounts import Accounts

ROOT = Path(__file__).resolve().parent.parent

QUEUES = {
    "agent_interface": "Local/{agent}@agents",
    "queues": {
        "sales": {"lanes": ["external"], "strategy": "longest_idle", "wrap_up": 1},
        "support": {"lanes": ["external-moh"], "strategy": "longest_idle", "wrap_up": 1},
    },
    "agents": {
        agent: {"name": name, "queues": {"sales": 0, "support": 0}}
        for agent, name in (("6001", "Alice"), ("6002", "Bob"), ("6003", "Carol"))
    },
}
AGENTS = ("Local/6001@agents", "Local/6002@agents", "Local/6003@agents")


class Backend:
    """``callcenter run`` in its own process, attached to the simulator."""

    def __init__(self, tmp: Path, port: int) -> None:
        queues = tmp / "queues.yaml"
        queues.write_text(yaml.safe_dump(QUEUES))
        self.db = f"sqlite:///{tmp / 'cc.sqlite3'}"
        self.log = tmp / "backend.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")},
            "CALLCENTER_AMI__PORT": str(port),
            "CALLCENTER_AMI__USERNAME": USER,
            "CALLCENTER_AMI__SECRET": SECRET,
            "CALLCENTER_AMI__RECONNECT__MIN_DELAY": "0.1",
            "CALLCENTER_DATABASE__URL": self.db,
            "CALLCENTER_ACD__QUEUES": str(queues),
            "CALLCENTER_ACD__LOGIN_AGENTS": "true",
            "CALLCENTER_HISTORY__SPOOL_DIR": str(tmp / "spool"),
            "CALLCENTER_HTTP__PORT": "0",  # the agent API on any free port
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "callcenter.cli", "--config",
                 str(ROOT / "config/callcenter.yaml"), "run"],
                cwd=self.log.parent, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def api_port(self) -> int | None:
        """The agent API's port of the latest start (from its log line), once it serves."""
        found = re.findall(r"API: serving on http://127\.0\.0\.1:(\d+)/", self.log.read_text())
        return int(found[-1]) if found else None

    def rows(self, table: str) -> list[dict[str, Any]]:
        engine = create_engine(self.db)
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))
            out = [dict(r._mapping) for r in rows]
        for row in out:
            if isinstance(row.get("payload"), str):  # SQLite hands JSON back as text
                row["payload"] = json.loads(row["payload"])
        engine.dispose()
        return out


@pytest.fixture
def lab(reactor: Any, tmp_path: Path) -> Iterator[tuple[Any, Backend]]:
    simulator = start_simulator(reactor)
    backend = Backend(tmp_path, simulator.getHost().port)
    yield simulator, backend
    if backend.proc is not None and backend.proc.poll() is None:
        backend.proc.kill()
        backend.proc.wait()
    simulator.stopListening()


def _calls_per_agent(pbx: Pbx) -> dict[str, int]:
    """Agent device -> the Local pairs up on it now (each pair is one call leg)."""
    pairs: dict[str, set[str]] = defaultdict(set)
    for ch in pbx.channels.values():
        base = ch.name.rpartition(";")[0]
        device = base.rpartition("-")[0]
        if device in AGENTS:
            pairs[device].add(base)
    return {device: len(bases) for device, bases in pairs.items()}


def _logged_in(simulator: Any) -> int:
    return sum(s.authenticated for s in simulator.factory.core.sessions.values())


def test_a_sigkilled_backend_restarts_into_the_truth(lab: tuple[Any, Backend], run: Any) -> None:
    simulator, backend = lab
    core = simulator.factory.core
    most: Counter[str] = Counter()
    login_at: list[float] = []
    bridged_after_login: list[float] = []
    pages: list[PopClient] = []
    popped: dict[str, str] = {}

    def watch() -> None:
        for device, n in _calls_per_agent(core.pbx).items():
            most[device] = max(most[device], n)

    async def watched(seconds: float) -> None:
        for _ in range(int(seconds / 0.05)):
            watch()
            await sleep(0.05)

    async def go() -> None:
        from twisted.internet import reactor

        backend.start()
        await until(lambda: _logged_in(simulator) == 1, timeout=20)
        await until(lambda: len(backend.rows("acd_events")) >= 3, timeout=10)  # 3 log-ins
        # Noor is parked and bridged by the ACD; Priya reaches an agent through app_queue.
        originate_inside(simulator, caller("5552010001", "Noor Haddad", "5003", 20))
        await until(lambda: sum(_calls_per_agent(core.pbx).values()) == 1, timeout=10)
        await watched(2.5)
        originate_inside(simulator, caller("5552010099", "Priya Raman", "5000", 20))
        await watched(3.0)
        assert sum(_calls_per_agent(core.pbx).values()) == 2
        assert backend.signal(signal.SIGKILL) == -signal.SIGKILL
        # While no backend runs, two callers park: nobody routes them.
        originate_inside(simulator, caller("4532123456", "Lars Østergaard", "5006", 8))
        originate_inside(simulator, caller("81355501234", "Mei Tanaka", "5003", 20))
        await watched(1.5)
        assert sum(_calls_per_agent(core.pbx).values()) == 2
        serving_before = backend.log.read_text().count("API: serving")
        backend.start()
        await until(lambda: _logged_in(simulator) == 1, timeout=20)
        login_at.append(reactor.seconds())
        await until(lambda: backend.log.read_text().count("API: serving") > serving_before)
        # Agents' pages reconnect: each agent on a call from before the SIGKILL gets its
        # pop again (the ACD's bridge and the app_queue call), rebuilt from the snapshot.
        port = backend.api_port()
        accounts = Accounts(create_engine(backend.db))
        for agent in ("6001", "6002", "6003"):
            account = accounts.add(agent, "restart-password", "agent", agent=agent)
            pages.append(PopClient(
                f"ws://127.0.0.1:{port}/api/v1/pops", accounts.issue_token(account).token
            ))  # fmt: skip
        await until(lambda: len(_talking(pages)) == 2, timeout=10)
        popped.update(_talking(pages))
        for page in pages:
            page.stop()
        # The one free agent gets the longest-parked caller at once.
        while sum(_calls_per_agent(core.pbx).values()) < 3:
            watch()
            assert reactor.seconds() - login_at[0] < 2.0, "no parked caller routed"
            await sleep(0.02)
        bridged_after_login.append(reactor.seconds() - login_at[0])
        # Everyone hangs up in time; Mei waits for Lars's agent, then talks.
        await watched(2.0)
        for _ in range(int(45 / 0.05)):
            watch()
            if not core.pbx.channels:
                break
            await sleep(0.05)
        await watched(1.0)

    run(go(), timeout=120)
    assert backend.signal(signal.SIGTERM) == 0
    # Nobody was ever on two calls at once.
    assert set(most) == set(AGENTS) and max(most.values()) == 1, most
    print(f"\nrestart: first parked caller offered {bridged_after_login[0]:.2f} s after login")

    calls = defaultdict(list)
    for row in backend.rows("call_events"):
        calls[row["call_id"]].append(row)
    assert len(calls) == 4
    by_name = {
        next(r["payload"]["caller"]["name"] for r in rows if r["kind"] == "arrived"): rows
        for rows in calls.values()
    }
    for name, rows in by_name.items():
        kinds = Counter(r["kind"] for r in rows)
        # Exactly one row per fact, whatever the restart re-read from the snapshot.
        assert kinds["arrived"] == kinds["ended"] == 1, (name, kinds)
        assert kinds["answered"] <= 1 and kinds["parked"] <= 1, (name, kinds)
    ends = {n: next(r for r in rows if r["kind"] == "ended") for n, rows in by_name.items()}
    assert ends["Noor Haddad"]["payload"]["ended_by"] == "caller"
    assert ends["Noor Haddad"]["payload"]["answered"]
    # Parked during the outage: the first routed at once after the restart, the other
    # either routed when an agent came free or gone by its patience (8 s), counted from
    # when it parked, not from the backend's login.
    lars, mei = ends["Lars Østergaard"]["payload"], ends["Mei Tanaka"]["payload"]
    assert lars["answered"] or mei["answered"]

    acd: defaultdict[str, Counter[str]] = defaultdict(Counter)
    waits = {}
    for row in backend.rows("acd_events"):
        if row["call_id"]:
            acd[row["call_id"]][row["kind"]] += 1
            if row["kind"] == "caller_abandoned":
                waits[row["call_id"]] = row["payload"]["wait"]
    ids = {name: rows[0]["call_id"] for name, rows in by_name.items()}
    noor = ids["Noor Haddad"]
    # The bridge found after the restart is completed once.
    assert acd[noor]["caller_connected"] == acd[noor]["call_completed"] == 1, acd[noor]
    for name in ("Lars Østergaard", "Mei Tanaka"):
        counts = acd[ids[name]]
        assert counts["caller_joined"] == 1, (name, counts)
        if ends[name]["payload"]["answered"]:
            assert counts["caller_connected"] == counts["call_completed"] == 1, (name, counts)
        else:
            assert counts["caller_abandoned"] == 1, (name, counts)
            assert waits[ids[name]] == pytest.approx(8.0, abs=1.5)
    # Priya's app_queue call is the PBX's: the ACD never claimed it.
    assert not acd[ids["Priya Raman"]]
    # After the restart both calls from before it popped again at the agents talking.
    assert set(popped) == {"+15552010001", "+15552010099"}, popped


def _talking(pages: list[PopClient]) -> dict[str, str]:
    """Caller number -> the agent whose page shows that call in progress."""
    return {
        pop["caller"]["number"]: pop["agent"]
        for page in pages
        for pop in page.pops[-1:]
        if pop["state"] == "talking"
    }
