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
from twisted.internet.defer import Deferred

from cti.calls.events import CallEvent
from cti.history import load_call_events
from tests.conftest import sleep
from tests.e2e import caller, originate_inside, start_backend, start_simulator, until

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def simulator(reactor: Any) -> Any:
    port = start_simulator(reactor)
    yield port
    port.stopListening()


@pytest.fixture
def app(simulator: Any, reactor: Any, tmp_path: Path, run: Any) -> Any:
    center = start_backend(reactor, run, simulator, tmp_path)
    yield center
    run(center.stop())


CONNECTED_CALL = ["arrived", "queued", "offered", "answered", "ended"]


def _kinds(events: list[CallEvent], call_id: str) -> list[str]:
    return [e.kind for e in events if e.call_id == call_id]


def test_a_queue_call_flows_from_the_pbx_to_the_history(app: Any, run: Any) -> None:
    async def go() -> None:
        await app.ami.send_action("Originate", caller("5551230001", "Alice Example", "5000", 4))
        await until(lambda: any(e.kind == "ended" for e in app.seen))
        await until(lambda: app.history.pending == 0)

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
        fields = caller("+442071234567", "Carla Caller", "5001", 5, keys=("1", "12345#"))
        await app.ami.send_action("Originate", fields)
        await until(lambda: any(e.kind == "ended" for e in app.seen), timeout=30)

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
        await app.ami.send_action("Originate", caller("+302101234567", "Ελένη Παππά", "5000", 6))
        await until(lambda: any(e.kind == "answered" for e in app.seen))
        # Cut the TCP link under the client, as a network failure would; while it is down a
        # second caller arrives, whose events this backend never sees.
        app.ami.protocol.transport.abortConnection()
        originate_inside(simulator, caller("+74951234567", "Дмитрий", "5000", 30))
        await until(lambda: app.ami.state.value == "ready", timeout=10)
        await until(lambda: sum(e.kind == "ended" for e in app.seen) >= 1, timeout=20)

    run(go(), timeout=40)
    first = next(e for e in app.seen if e.kind == "arrived").call_id
    assert _kinds(app.seen, first) == CONNECTED_CALL
    assert next(e for e in app.seen if e.kind == "ended").ended_by == "caller"
    # The caller who arrived during the outage is known from the resync snapshot.
    later = [e for e in app.seen if e.kind == "arrived" and e.call_id != first]
    assert [e.caller.number for e in later] == ["+74951234567"]
    assert later[0].call_id in app.model.calls


class Blocked:
    """A call event consumer that is stuck until released: it holds each Deferred."""

    def __init__(self) -> None:
        self.seen: list[CallEvent] = []
        self.waiting: list[Deferred[None]] = []
        self.released = False

    def __call__(self, event: CallEvent) -> Deferred[None] | None:
        self.seen.append(event)
        if self.released:
            return None
        d: Deferred[None] = Deferred()
        self.waiting.append(d)
        return d

    def release(self) -> None:
        self.released = True
        while self.waiting:
            self.waiting.pop(0).callback(None)


def test_a_blocked_consumer_keeps_the_reconnected_ami_link_paused_and_loses_nothing(
    app: Any, simulator: Any, reactor: Any, run: Any
) -> None:
    blocked = Blocked()
    # A low mark (the app's is 5,000) pauses the AMI client within one call.
    app.watch(blocked, "blocked", max_pending=2)
    core = simulator.factory.core

    def reading() -> bool:
        return app.ami.protocol.transport in reactor.getReaders()

    async def go() -> None:
        await app.ami.send_action("Originate", caller("5551230002", "Bob", "5000", 2))
        await until(lambda: app.call_events.paused)
        assert app.ami.paused and not reading()
        # Drop the link under the paused client; the next session must not read freely.
        app.ami.protocol.transport.abortConnection()
        await until(lambda: app.ami.state.value == "disconnected", timeout=10)
        await until(lambda: app.ami.state.value == "ready", timeout=10)
        assert app.call_events.paused and not reading()
        # Meanwhile the PBX goes on: a second call, whose events wait in the socket.
        seen = len(app.seen)
        originate_inside(simulator, caller("5551230003", "Carol", "5000", 4))
        await sleep(2.0)
        carol = [c for c in core.pbx.channels.values() if c.cid_num == "5551230003"]
        assert carol  # the PBX has her call ...
        assert len(app.seen) == seen and not reading()  # ... the backend does not, yet
        blocked.release()
        await until(lambda: reading() and not app.ami.paused)
        await until(lambda: sum(e.kind == "ended" for e in app.seen) >= 2, timeout=20)

    run(go(), timeout=60)
    by_number = {e.caller.number: e.call_id for e in app.seen if e.kind == "arrived"}
    assert set(by_number) == {"+15551230002", "+15551230003"}
    # The second call began while reading was paused: all of it arrives, in order.
    assert _kinds(app.seen, by_number["+15551230003"]) == CONNECTED_CALL
    assert _kinds(app.seen, by_number["+15551230002"])[-1] == "ended"
    # The blocked consumer lost nothing either (device states included).
    assert [e for e in blocked.seen if isinstance(e, CallEvent)] == app.seen
    assert [e for e in blocked.seen if not isinstance(e, CallEvent)] == app.devices


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
