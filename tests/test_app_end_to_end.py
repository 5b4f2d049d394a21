"""The whole backend against the PBX simulator over real TCP: AMI client -> call model ->
call events -> SQL history, including a dropped AMI link in the middle of a call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

import pbx_simulator
from callcenter.app import CallCenter
from callcenter.settings import load_settings
from cti.calls.events import CallEvent
from cti.history import load_call_events
from tests.conftest import sleep

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def simulator(reactor: Any) -> Any:
    port = pbx_simulator.serve(
        reactor, pbx_simulator.Settings(port=0, username="cti", secret="s3cret", seed=7)
    )
    yield port
    port.stopListening()


@pytest.fixture
def app(simulator: Any, reactor: Any, tmp_path: Path, run: Any) -> Any:
    settings = load_settings(
        None,
        {
            "CALLCENTER_AMI__PORT": str(simulator.getHost().port),
            "CALLCENTER_AMI__USERNAME": "cti",
            "CALLCENTER_AMI__SECRET": "s3cret",
            "CALLCENTER_AMI__RECONNECT__MIN_DELAY": "0.1",
            "CALLCENTER_DATABASE__URL": f"sqlite:///{tmp_path / 'cc.sqlite3'}",
        },
    )
    center = CallCenter(settings, reactor)
    seen: list[CallEvent] = []
    center.watch(seen.append, "test")
    center.seen = seen
    center.start()
    run(center.ami.when_ready())
    yield center
    run(center.stop())


async def _until(predicate: Any, timeout: float = 15.0) -> None:
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            raise AssertionError("condition not reached in time")
        await sleep(0.05)
        waited += 0.05


def _caller(
    number: str, name: str, did: str, talk: float, keys: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    """An Originate as the lab's driver sends it: the ;1 half scripts the human caller,
    who waits ``talk`` seconds and hangs up, pressing ``keys`` (menu, then more) first."""
    script = [("Exten", "dtmf" if keys else "hangup-after"), ("Variable", f"LAB_WAIT={talk}")]
    for n, key in enumerate(keys, 1):
        script += [("Variable", f"LAB_DELAY{n}=1.5"), ("Variable", f"LAB_DTMF{n}={key}")]
    return [
        ("Channel", f"Local/{did}@inbound"),
        ("Context", "caller-script"),
        ("Priority", "1"),
        ("CallerID", f"{name} <{number}>"),
        ("Async", "true"),
        *script,
    ]


CONNECTED_CALL = ["arrived", "queued", "offered", "answered", "ended"]


def _kinds(events: list[CallEvent], call_id: str) -> list[str]:
    return [e.kind for e in events if e.call_id == call_id]


def test_a_queue_call_flows_from_the_pbx_to_the_history(app: Any, run: Any) -> None:
    async def go() -> None:
        await app.ami.send_action("Originate", _caller("5551230001", "Alice Example", "5000", 4))
        await _until(lambda: any(e.kind == "ended" for e in app.seen))
        await _until(lambda: app.history.pending == 0)

    run(go(), timeout=30)
    [arrived] = [e for e in app.seen if e.kind == "arrived"]
    assert arrived.caller.number == "+15551230001" and arrived.caller.name == "Alice Example"
    assert arrived.dialled == "5000"
    assert _kinds(app.seen, arrived.call_id) == CONNECTED_CALL
    ended = app.seen[-1]
    assert ended.ended_by == "caller" and ended.answered and ended.talk_time > 2
    stored = load_call_events(create_engine(app.settings.database.url.get_secret_value()))
    assert stored == [e.to_record() for e in app.seen]


def test_an_ivr_caller_keys_digits_that_reach_the_call(app: Any, run: Any) -> None:
    """DID 5001: menu choice 1, account number, then the sales queue; the default event
    mask must let the dialplan and DTMF events through."""

    async def go() -> None:
        fields = _caller("+442071234567", "Carla Caller", "5001", 5, keys=("1", "12345#"))
        await app.ami.send_action("Originate", fields)
        await _until(lambda: any(e.kind == "ended" for e in app.seen), timeout=30)

    run(go(), timeout=40)
    kinds = [e.kind for e in app.seen]
    assert kinds[:2] == ["arrived", "ivr_entered"]
    assert "".join(e.digits for e in app.seen if e.kind == "digits") == "112345#"
    assert kinds[-4:] == ["queued", "offered", "answered", "ended"]
    [call] = [c for c in app.model.recently_ended]
    assert call.variables.get("CTI_ACCOUNT") == "12345"


def test_a_dropped_ami_link_is_resynced_and_the_call_lost_nothing(
    app: Any, simulator: Any, run: Any
) -> None:
    async def go() -> None:
        await app.ami.send_action("Originate", _caller("+302101234567", "Ελένη Παππά", "5000", 6))
        await _until(lambda: any(e.kind == "answered" for e in app.seen))
        # Cut the TCP link under the client, as a network failure would; while it is down a
        # second caller arrives, whose events this backend never sees.
        app.ami.protocol.transport.abortConnection()
        core = simulator.factory.core
        core.originate(_message("Originate", _caller("+74951234567", "Дмитрий", "5000", 30)))
        await _until(lambda: app.ami.state.value == "ready", timeout=10)
        await _until(lambda: sum(e.kind == "ended" for e in app.seen) >= 1, timeout=20)

    run(go(), timeout=40)
    first = next(e for e in app.seen if e.kind == "arrived").call_id
    assert _kinds(app.seen, first) == CONNECTED_CALL
    assert next(e for e in app.seen if e.kind == "ended").ended_by == "caller"
    # The caller who arrived during the outage is known from the resync snapshot.
    later = [e for e in app.seen if e.kind == "arrived" and e.call_id != first]
    assert [e.caller.number for e in later] == ["+74951234567"]
    assert later[0].call_id in app.model.calls


def _message(action: str, fields: list[tuple[str, str]]) -> Any:
    from cti.ami.codec import Message

    return Message([("Action", action), *fields])


def test_demo_command_runs_on_embedded_defaults(tmp_path: Path) -> None:
    """`callcenter demo` as the README starts it, for a few seconds, in a fresh directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "callcenter.cli",
            "--config",
            str(ROOT / "config/callcenter.yaml"),
            "demo",
            "--duration",
            "8",
            "--calls-per-minute",
            "120",
            "--seed",
            "5",
            "--port",
            "0",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "PBX simulator: AMI on 127.0.0.1:" in proc.stdout
    assert " arrived " in proc.stdout and " queued " in proc.stdout
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith("summary: arrived ")
    assert int(summary.split("arrived ")[1].split(",")[0]) >= 5
    assert (tmp_path / "var" / "callcenter.sqlite3").is_file()
