"""The IVR end to end: the shipped flows (config/ivr) run by the backend's IvrService against
the PBX simulator over real TCP AMI (AsyncAGI, DID 5002) and a real FastAGI connection
(DID 5004, the lab's ``lab-route`` script): the caller's keys choose the way, the caller is
redirected to the ACD queue's holding lane with IVR_PATH and IVR_DIGITS on its channel, the
ACD rings the agent, and the agent's pop shows the flow walked and the keys. A caller who
hangs up in the menu ends cleanly: call ended in history, no IVR session left."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine

from cti.history import load_call_events
from ivr.events import IvrEvent, IvrFinished, IvrStarted
from pbx_simulator.settings import Route, Settings
from tests.e2e import PopClient, caller, start_backend, start_simulator, until

ROOT = Path(__file__).resolve().parent.parent
QUEUES = {
    "agent_interface": "Local/{agent}@agents",
    "queues": {
        "sales": {"lanes": ["external"], "ring_timeout": 5, "wrap_up": 1},
        "support": {"lanes": ["external-moh"], "ring_timeout": 5, "wrap_up": 1},
    },
    "agents": {"6001": {"name": "Alice", "queues": {"sales": 0, "support": 0}}},
}
#: A Luhn-valid account number (the account sub-flow checks it).
ACCOUNT = "79927398713"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def center(reactor: Any, run: Any, tmp_path: Path) -> Any:
    queues = tmp_path / "queues.yaml"
    queues.write_text(yaml.safe_dump(QUEUES))
    agi_port = _free_port()
    dids = {**Settings().dids,
            "5004": Route("fastagi", "sales", f"agi://127.0.0.1:{agi_port}/lab-route")}  # fmt: skip
    # Short prompts: the flows' welcome and menu take a second, not ten.
    simulator = start_simulator(reactor, dids=dids, prompt_seconds=0.3)
    entries = [{"entry": "5002", "flow": "main", "transport": "asyncagi"},
               {"entry": "lab-route", "flow": "main", "transport": "fastagi"}]  # fmt: skip
    app = start_backend(reactor, run, simulator, tmp_path, {
        "CALLCENTER_ACD__QUEUES": str(queues),
        "CALLCENTER_ACD__LOGIN_AGENTS": "true",
        "CALLCENTER_IVR__FLOWS": json.dumps([str(ROOT / "config" / "ivr")]),
        "CALLCENTER_IVR__ENTRIES": json.dumps(entries),
        "CALLCENTER_IVR__FASTAGI_PORT": str(agi_port),
    })  # fmt: skip
    app.accounts.add("6001", "ivr-test-password", "agent", agent="6001")
    seen: list[IvrEvent] = []
    assert app.ivr is not None and app.ivr.fastagi_port == agi_port
    app.ivr.events.subscribe(seen.append, name="test")
    yield app, simulator, seen
    run(app.stop())
    simulator.stopListening()


def _pop_feed(app: Any) -> PopClient:
    account = app.accounts.authenticate("6001", "ivr-test-password")
    token = app.accounts.issue_token(account).token
    return PopClient(f"ws://127.0.0.1:{app.api.port}/api/v1/pops", str(token))


def _finished(seen: list[IvrEvent]) -> list[IvrFinished]:
    return [e for e in seen if isinstance(e, IvrFinished)]


def _walk(pop: dict[str, Any]) -> dict[str, Any] | None:
    return next((step for step in pop["ivr"]["path"] if "nodes" in step), None)


def _route_and_pop(
    center: Any, run: Any, did: str, keys: tuple[str, ...]
) -> tuple[IvrFinished, dict[str, Any], dict[str, str]]:
    """A caller on ``did`` pressing ``keys``: what the IVR published, the pop with the
    walk that rang agent 6001, and the caller's channel variables once parked."""
    app, simulator, seen = center
    pbx = simulator.factory.core.pbx
    feed = _pop_feed(app)
    parked: dict[str, str] = {}

    async def go() -> None:
        await until(lambda: bool(feed.messages))
        await app.ami.send_action("Originate", caller("+302101234567", "Eleni", did, 30, keys))
        await until(lambda: bool(_finished(seen)), timeout=30)
        channel = pbx.channels.get(_finished(seen)[0].channel)
        assert channel is not None, "the caller left before it was parked"
        parked.update(pbx.channel_vars(channel))
        await until(lambda: any(_walk(p) for p in feed.pops if p["kind"] != "withdrawn"), 20)

    try:
        run(go(), timeout=60)
    finally:
        feed.stop()
    pop = next(p for p in feed.pops if _walk(p))
    return _finished(seen)[0], pop, parked


def test_asyncagi_caller_keys_sales_and_the_pop_shows_the_walk(center: Any, run: Any) -> None:
    """DID 5002 (AGI(agi:async)): the caller presses 1 during the menu; the flow asks the
    ACD's estimate (short: no callback offer), announces position and wait, routes to
    sales with its path and keys, and the agent rung sees them before answering."""
    app, _, seen = center
    done, pop, variables = _route_and_pop(center, run, "5002", ("1",))
    assert (done.outcome, done.queue, done.transport, done.flow) == (
        "queued", "sales", "asyncagi", "main"
    )  # fmt: skip
    assert done.path == ("main.welcome", "main.hours", "main.menu", "main.sales_wait",
                         "main.sales")  # fmt: skip
    assert done.digits == ("1",)
    # On the channel, for the ACD and the dialplan: set before the Redirect.
    assert variables["IVR_PATH"] == ">".join(done.path)
    assert variables["IVR_DIGITS"] == "1"
    # The ACD took the parked caller in sales and rang the agent, pop first.
    assert pop["queue"] == "sales" and pop["kind"] in ("ring", "update", "answered")
    walk = _walk(pop)
    assert walk is not None
    assert walk["nodes"] == list(done.path) and walk["keyed"] == ["1"]
    assert walk["outcome"] == "queued" and walk["queue"] == "sales"
    assert pop["ivr"]["digits"] == "1"  # the key as the PBX reported it (DTMF)
    assert pop["call_id"] == done.call_id
    started = [e for e in seen if isinstance(e, IvrStarted)]
    assert [(e.flow, e.transport) for e in started] == [("main", "asyncagi")]
    assert not app.ivr.sessions and not app.ivr.asyncagi.sessions


def test_fastagi_caller_keys_an_account_and_reaches_support(center: Any, run: Any) -> None:
    """DID 5004 (AGI(agi://127.0.0.1:<port>/lab-route)): 2 for the account sub-flow, then a
    Luhn-valid number ended by #; the caller reaches support with ACCOUNT set."""
    app, _, _ = center
    done, pop, variables = _route_and_pop(center, run, "5004", ("2", f"{ACCOUNT}#"))
    assert (done.outcome, done.queue, done.transport) == ("queued", "support", "fastagi")
    assert done.path[:3] == ("main.welcome", "main.hours", "main.menu")
    assert "account_number.ask" in done.path and done.path[-1] == "main.support"
    assert done.digits == ("2", ACCOUNT)
    assert variables["IVR_DIGITS"] == f"2-{ACCOUNT}"
    assert variables["ACCOUNT"] == ACCOUNT and variables["ACCOUNT_STATUS"] == "verified"
    walk = _walk(pop)
    assert walk is not None and walk["keyed"] == ["2", ACCOUNT]
    assert pop["queue"] == "support" and pop["ivr"]["digits"] == f"2{ACCOUNT}#"
    assert not app.ivr.sessions
    run(until(lambda: not app.ivr.fastagi.sessions, timeout=5))


@pytest.mark.parametrize("did", ["5002", "5004"])
def test_a_caller_hanging_up_in_the_menu_ends_cleanly(center: Any, run: Any, did: str) -> None:
    app, _, seen = center

    async def go() -> None:
        await app.ami.send_action("Originate", caller("+15550009999", "Quick", did, 1.0))
        await until(lambda: bool(_finished(seen)), timeout=20)
        await until(lambda: any(e.kind == "ended" for e in app.seen), timeout=20)
        await until(lambda: app.history.pending == 0)

    run(go(), timeout=40)
    (done,) = _finished(seen)
    assert done.outcome == "hung_up" and done.queue is None
    assert done.path[0] == "main.welcome" and done.digits == ()
    assert not app.ivr.sessions
    assert not app.ivr.asyncagi.sessions and not app.ivr.fastagi.sessions
    stored = load_call_events(create_engine(app.settings.database.url.get_secret_value()))
    kinds = [r["kind"] for r in stored if r["call_id"] == done.call_id]
    assert kinds[0] == "arrived" and kinds[-1] == "ended"
    assert "queued" not in kinds and "parked" not in kinds


def test_ivr_events_are_json_ready() -> None:
    event: IvrEvent = IvrFinished(
        1.0, "c1", "Local/5002@inbound-1;2", "main", "asyncagi", "queued", ("main.menu",),
        ("1",), "sales", {"IVR_DIGITS": "1"},
    )  # fmt: skip
    record = json.loads(json.dumps(event.to_record()))
    assert record["kind"] == "ivr_finished" and record["path"] == ["main.menu"]
    assert record["variables"] == {"IVR_DIGITS": "1"}
