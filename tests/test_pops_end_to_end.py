"""Screen pops end to end: a known customer calls through the PBX simulator (real AMI over
TCP), the product's ACD rings agents, and each agent's authenticated WebSocket gets the pop
of the call ringing at their phone — before answer, nobody else's — which follows the call
to the agent who answers, is given again on reconnect, ends with the call and is audited."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, select, update
from twisted.internet.defer import Deferred

import migrations
from crm_bridge import store
from crm_bridge.schema import customers, pops
from tests.conftest import sleep
from tests.e2e import PopClient, caller, start_backend, start_simulator, until

QUEUES = {
    "agent_interface": "Local/{agent}@agents",
    "queues": {"sales": {"lanes": ["external"], "ring_timeout": 2, "wrap_up": 1}},
    "agents": {
        # Penalty 0: rung first; never answers, so the pop moves on.
        "6101": {"name": "Nobody", "interface": "Local/6101@agents-noanswer",
                 "queues": {"sales": 0}},
        "6001": {"name": "Alice", "queues": {"sales": 1}},
    },
}  # fmt: skip
NUMBER = "+302101234567"
PROFILE = {"tier": {"tier": "vip", "reason": "VIP: top 1% by 365-day revenue"},
           "next_step": {"code": "referral", "step": "Thank them; ask for a referral"}}  # fmt: skip


@pytest.fixture
def center(reactor: Any, run: Any, tmp_path: Path) -> Any:
    queues = tmp_path / "queues.yaml"
    queues.write_text(yaml.safe_dump(QUEUES))
    # The customer is known before the backend starts: its tier reaches the ACD too.
    url = f"sqlite:///{tmp_path / 'cc.sqlite3'}"  # the database start_backend uses
    migrations.upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        store.add_customer(conn, "k1", "Ελένη Παππά", [NUMBER], source="test", now=0.0)
        conn.execute(update(customers).values(tier="vip", profile=PROFILE, profiled_at=1.0))
    engine.dispose()
    simulator = start_simulator(reactor)
    app = start_backend(reactor, run, simulator, tmp_path, {
        "CALLCENTER_ACD__QUEUES": str(queues), "CALLCENTER_ACD__LOGIN_AGENTS": "true",
    })  # fmt: skip
    for agent in ("6101", "6001", "6002", "6003"):
        app.accounts.add(agent, "pop-test-password", "agent", agent=agent)
    app.accounts.add("sup", "pop-test-password", "supervisor")
    yield app
    run(app.stop())
    simulator.stopListening()


def token(app: Any, username: str) -> str:
    account = app.accounts.authenticate(username, "pop-test-password")
    return str(app.accounts.issue_token(account).token)


def feed_url(app: Any) -> str:
    return f"ws://127.0.0.1:{app.api.port}/api/v1/pops"


def test_the_pop_reaches_the_rung_agent_before_answer_and_follows_the_call(
    center: Any, run: Any
) -> None:
    app = center
    nobody = PopClient(feed_url(app), token(app, "6101"))
    alice = PopClient(feed_url(app), token(app, "6001"))
    late: list[PopClient] = []

    async def go() -> None:
        await until(lambda: bool(nobody.messages) and bool(alice.messages))
        assert nobody.messages[0] == {"type": "hello", "agent": "6101"}
        await app.ami.send_action("Originate", caller(NUMBER, "Eleni", "5003", 8))
        await until(lambda: "answered" in alice.kinds(), timeout=20)
        # A second tab (or a reconnect) gets the pop of the call in progress at once.
        late.append(PopClient(feed_url(app), token(app, "6001")))
        await until(lambda: bool(late[0].pops))
        await until(lambda: "ended" in alice.kinds(), timeout=20)

    try:
        run(go(), timeout=45)
    finally:
        for client in (nobody, alice, *late):
            client.stop()
    # The agent who never answers was rung first: the pop came, then went.
    assert nobody.kinds()[0] == "ring" and nobody.kinds()[-1] == "withdrawn"
    assert "answered" not in nobody.kinds()
    # The agent who answered: ring (the customer known before answer), answered, ended.
    kinds = [k for k in alice.kinds() if k != "update"]
    assert kinds == ["ring", "answered", "ended"]
    ring = next(p for p in alice.pops if p["kind"] == "ring")
    shown = next(p for p in alice.pops if p["customer"] is not None)
    assert alice.pops.index(shown) < alice.kinds().index("answered")
    assert shown["customer"]["id"] == "k1"
    assert shown["customer"]["name"] == "Ελένη Παππά"
    assert shown["customer"]["profile"]["tier"]["reason"].startswith("VIP")
    assert ring["caller"]["number"] == NUMBER and ring["queue"] == "sales"
    assert ring["tier"] == "vip"  # the ACD routed the caller with the computed tier
    assert {p["call_id"] for p in alice.pops} == {ring["call_id"]}
    assert late[0].pops[0]["kind"] == "answered" and late[0].pops[0]["customer"]["id"] == "k1"
    # Every frame sent is audited with the call.
    run(app.crm._write_audit())
    with app.engine.connect() as conn:
        audited = conn.execute(
            select(pops.c.agent, pops.c.kind).where(pops.c.call_id == ring["call_id"])
        ).all()
    assert ("6001", "ring") in audited and ("6101", "withdrawn") in audited


def test_an_app_queue_call_pops_at_the_member_asterisk_rings(center: Any, run: Any) -> None:
    """DID 5000 is Asterisk's own queue (app_queue rings its members): the product's ACD did
    not route it, and the member whose phone rings still gets the pop, by its device."""
    app = center
    clients = {a: PopClient(feed_url(app), token(app, a)) for a in ("6001", "6002", "6003")}

    async def go() -> None:
        await until(lambda: all(c.messages for c in clients.values()))
        await app.ami.send_action("Originate", caller(NUMBER, "Eleni", "5000", 4))
        await until(lambda: any("ended" in c.kinds() for c in clients.values()), timeout=25)

    try:
        run(go(), timeout=40)
    finally:
        for client in clients.values():
            client.stop()
    answered = [a for a, c in clients.items() if "answered" in c.kinds()]
    assert len(answered) == 1
    pops = clients[answered[0]].pops
    assert next(p["kind"] for p in pops if p["kind"] != "update") == "ring"
    shown = next(p for p in pops if p["customer"] is not None)
    assert shown["customer"]["id"] == "k1" and shown["queue"] == "sales"
    assert pops.index(shown) < [p["kind"] for p in pops].index("answered")
    # Members rung but not answering had the pop withdrawn; nobody else got one.
    for agent, client in clients.items():
        if agent not in answered and client.pops:
            assert client.kinds()[-1] == "withdrawn"


def test_pop_feeds_and_routes_refuse_strangers(center: Any, run: Any) -> None:
    app = center
    stranger = PopClient(feed_url(app), "not-a-token")
    supervisor = PopClient(feed_url(app), token(app, "sup"))
    base = f"http://127.0.0.1:{app.api.port}/api/v1"

    run(until(lambda: stranger.close_code is not None and supervisor.close_code is not None))

    async def go() -> dict[str, int]:
        async with httpx.AsyncClient() as http:
            alice = {"Authorization": f"Bearer {token(app, '6001')}"}
            return {
                "no token": (await http.get(f"{base}/pops/current")).status_code,
                "none yet": (await http.get(f"{base}/pops/current", headers=alice)).status_code,
                "not theirs": (
                    await http.get(f"{base}/calls/123.4/pop", headers=alice)
                ).status_code,
                "bad body": (
                    await http.post(f"{base}/calls/123.4/customer", headers=alice, json={})
                ).status_code,
                "bad number": (
                    await http.get(f"{base}/customers", params={"number": "12ab"}, headers=alice)
                ).status_code,
            }

    statuses = run(Deferred.fromFuture(asyncio.ensure_future(go())), timeout=20)
    assert stranger.close_code == 4401 and supervisor.close_code == 4403
    assert statuses == {"no token": 401, "none yet": 200, "not theirs": 404, "bad body": 422,
                        "bad number": 422}  # fmt: skip


def test_callcenter_pops_prints_the_agents_pops_live(center: Any, run: Any) -> None:
    app = center
    env = {**os.environ, "AGENT_PASSWORD": "pop-test-password", "CALLCENTER_HTTP__PORT": "0"}
    command = [sys.executable, "-m", "callcenter.cli", "pops", "--agent", "6001",
               "--url", f"http://127.0.0.1:{app.api.port}", "--duration", "20"]  # fmt: skip
    client = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        run(until(lambda: app.crm.sessions.connected("6001") == 1, timeout=15))
        run(app.ami.send_action("Originate", caller(NUMBER, "Eleni", "5003", 3)))
        run(until(lambda: _ended(app), timeout=25), timeout=30)
        run(sleep(0.5))  # the "ended" frame's way to the client
    finally:
        client.terminate()
        out, _ = client.communicate(timeout=10)
    lines = out.splitlines()
    assert lines[0].startswith("connected to http://127.0.0.1:")
    ring = next(line for line in lines if " ring " in line)
    assert f"from {NUMBER}" in ring
    shown = next(line for line in lines if "Ελένη Παππά [k1]" in line)
    assert "VIP: top 1%" in shown and "next: Thank them; ask for a referral" in shown


def _ended(app: Any) -> bool:
    return any(e.kind == "ended" for e in app.seen)
