"""The IVR when its backend dies: callers are never left in silence nor hung up.

* AsyncAGI: Asterisk keeps a channel in ``AGI(agi:async)`` waiting for commands for ever.
  The AMI snapshot a (re)connected backend takes shows it there (CoreShowChannel
  ``Application: AGI``, ``ApplicationData: agi:async[,flow]``); the call model reports it as
  a restored AsyncAgiStarted, the AsyncAGI transport opens a session, and the IVR runs the
  flow again from its start.
* FastAGI: the connection fails (``AGISTATUS=FAILURE``) or drops mid-flow (Asterisk reports
  a closed connection as ``SUCCESS``) and the dialplan goes on: an entry with a
  ``fallback_queue`` parks the caller in that queue's holding spot instead of hanging up.

Pure parts here (the simulator's core with time advanced by hand, the call model, the
dialplan generator, the settings), then end to end: a real ``callcenter run`` SIGKILLed
with a caller mid-menu and FastAGI callers, against the simulator over TCP.
"""

from __future__ import annotations

import json
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from twisted.internet import defer
from twisted.internet.task import Clock

from acd.config import parse_acd_config
from acd.dialplan import DialplanError, DialplanOptions, HoldingSpot, Step, render
from callcenter.asterisk import generate_dialplan
from callcenter.settings import load_settings
from cti.ami.codec import Message
from cti.calls.events import AsyncAgiStarted, CallArrived, IvrEntered
from cti.calls.model import CallModel
from ivr.asyncagi import AsyncAgi, AsyncAgiSession
from ivr.config import IvrSettings
from ivr.dialplan import IvrEntry, ivr_entry_dialplan, queue_holding
from ivr.errors import IvrStartupError
from ivr.service import HoldingLane, IvrService, IvrTargets
from pbx_simulator import Send
from pbx_simulator.dialplan import Step as LabStep
from pbx_simulator.engine import FastAgiCall
from pbx_simulator.settings import Route, Settings
from tests.conftest import sleep
from tests.e2e import caller, originate_inside, start_simulator, until
from tests.test_asterisk_dialplan import CONFIG, generated, parked_lanes
from tests.test_pbx_simulator_core import Harness

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "config" / "ivr"
TARGETS = IvrTargets({"sales": HoldingLane("holding", "s", "external"),
                      "support": HoldingLane("holding", "moh", "external-moh")})  # fmt: skip
LOST = '$["${AGISTATUS}" = "FAILURE" | "${AGISTATUS}" = "SUCCESS"]'


# -- AsyncAGI: the snapshot ------------------------------------------------------------------


def _snapshot(h: Harness) -> list[Message]:
    """The simulator's answer to CoreShowChannels: its CoreShowChannel items."""
    before = len(h.out)
    h.act("CoreShowChannels")
    return [
        Message(o.headers)
        for o in h.out[before:]
        if isinstance(o, Send) and o.headers[0] == ("Event", "CoreShowChannel")
    ]


def _restored(events: list[Any]) -> list[AsyncAgiStarted]:
    return [e for e in events if isinstance(e, AsyncAgiStarted)]


def test_a_channel_left_in_asyncagi_is_restored_from_the_snapshot() -> None:
    """A caller on DID 5002 (``AGI(agi:async)``) that nobody drives: the simulator's
    CoreShowChannel says what Asterisk says, and a fresh call model (a restarted backend)
    turns it into the call, its IVR entry and a restored AsyncAgiStarted whose environment
    finds the flow the way a live AsyncAGIStart's does (by the extension)."""
    h = Harness()
    h.login()
    h.call("5002", "stay")
    h.advance(3)
    assert h.events("AsyncAGIStart"), "the caller never reached AsyncAGI"
    items = _snapshot(h)
    parked = next(m for m in items if m.get("Application") == "AGI")
    assert parked.get("ApplicationData") == "agi:async"
    assert (parked.get("Context"), parked.get("Exten")) == ("inbound", "did-5002")

    events = CallModel().resync({"CoreShowChannels": items}, h.now)
    (started,) = _restored(events)
    assert started.restored and started.channel == parked.get("Channel")
    assert started.env["agi_uniqueid"] == parked.get("Uniqueid")
    assert started.env["agi_callerid"] == parked.get("CallerIDNum")
    assert started.env["agi_calleridname"] == "Zoë Müller"
    assert (started.env["agi_context"], started.env["agi_extension"]) == ("inbound", "did-5002")
    assert "agi_arg_1" not in started.env  # the lab's AGI(agi:async) has no argument
    arrived = next(e for e in events if isinstance(e, CallArrived))
    entered = next(e for e in events if isinstance(e, IvrEntered))
    assert started.call_id == arrived.call_id == entered.call_id
    assert entered.restored and entered.application == "AsyncAGI"
    # Call facts first: the IVR's session knows its call.
    assert events.index(arrived) < events.index(entered) < events.index(started)

    # The transport opens a restored session; the settings find its flow by the DID.
    sessions: list[AsyncAgiSession] = []
    transport = AsyncAgi(_NoActions(), Clock(), sessions.append, prefix="t")
    transport.on_call_event(started)
    (session,) = sessions
    assert session.restored and session.call_id == arrived.call_id
    assert session.env.channel == started.channel and session.env.extension == "did-5002"
    settings = IvrSettings.model_validate(
        {"flows": [FLOWS], "entries": [{"entry": "5002", "flow": "main"}]}
    )
    assert settings.flow_for({"main"}, argument=None, extension=session.env.extension) == "main"


def test_the_flow_named_in_the_agi_arguments_travels_as_arg_1() -> None:
    """The generated entries run ``AGI(agi:async,<flow>)``: the simulator shows that as the
    ApplicationData and passes ``agi_arg_1`` live, and the restored environment has it too."""
    h = Harness()
    h.core.pbx.dialplan["inbound"]["did-5002"] = [
        LabStep("Answer"),
        LabStep("AGI", "agi:async,main,x"),
    ]
    h.login()
    h.call("5002", "stay")
    h.advance(3)
    (live,) = h.events("AsyncAGIStart")
    assert "agi_arg_1%3A%20main%0Aagi_arg_2%3A%20x%0A%0A" in live["Env"]
    items = _snapshot(h)
    parked = next(m for m in items if m.get("Application") == "AGI")
    assert parked.get("ApplicationData") == "agi:async,main,x"
    (started,) = _restored(CallModel().resync({"CoreShowChannels": items}, h.now))
    assert (started.env["agi_arg_1"], started.env["agi_arg_2"]) == ("main", "x")


def _channel(app: str, data: str, uid: str = "1.2") -> Message:
    return Message([
        ("Event", "CoreShowChannel"), ("Channel", f"SIP/trunk-{uid}"), ("Uniqueid", uid),
        ("Linkedid", uid), ("CallerIDNum", "+302101234567"), ("CallerIDName", "Eleni"),
        ("Language", "fr"), ("Context", "ivr-entry"), ("Exten", "5001"), ("Priority", "3"),
        ("Application", app), ("ApplicationData", data), ("Duration", "00:00:07"),
        ("BridgeId", ""),
    ])  # fmt: skip


def test_only_channels_in_asyncagi_are_restored() -> None:
    """A FastAGI channel (its connection is the backend's own), another application, or
    an AGI script are not AsyncAGI: nothing to restore. An AsyncAGI channel the model
    cannot tie to a call is still restored (the IVR decides), without a call id."""
    items = [
        _channel("AGI", "agi://127.0.0.1:4573/main", "1.1"),
        _channel("Wait", "300", "1.2"),
        _channel("AGI", "agi:asyncx", "1.3"),
        _channel("AGI", "agi:async,main", "1.4"),
    ]
    (started,) = _restored(CallModel().resync({"CoreShowChannels": items}, 100.0))
    assert started.channel == "SIP/trunk-1.4" and started.call_id is None
    assert started.env["agi_language"] == "fr" and started.env["agi_arg_1"] == "main"
    assert started.env["agi_extension"] == "5001" and started.env["agi_priority"] == "3"


def test_a_restored_session_restarts_the_flow_and_says_so() -> None:
    """The IVR runs a restored channel's flow from its start (a mid-menu caller hears the
    welcome and the menu again) and marks its IvrStarted restored."""
    ami = _NoActions()
    clock = Clock()
    settings = IvrSettings.model_validate(
        {"flows": [FLOWS], "entries": [{"entry": "5001", "flow": "main"}], "fastagi_port": 0}
    )
    ivr = IvrService(settings, reactor=clock, actions=ami, queues=("sales", "support"),
                     targets=TARGETS)  # fmt: skip
    seen: list[Any] = []
    ivr.events.subscribe(seen.append)
    (started,) = _restored(CallModel().resync({"CoreShowChannels": [
        _channel("AGI", "agi:async", "1.4")
    ]}, 100.0))  # fmt: skip
    ivr.on_call_event(started)
    assert [(e.kind, e.flow, e.restored) for e in seen] == [("ivr_started", "main", True)]
    first = ami.actions[0]
    assert first["Channel"] == "SIP/trunk-1.4"
    # From the start, in the caller's language as the snapshot tells it.
    assert first["Command"] == "STREAM FILE fr/bienvenue 0123456789*#"
    assert "SIP/trunk-1.4" in ivr.sessions


class _NoActions:
    """An AMI client that takes every action and never answers (no reply events)."""

    def __init__(self) -> None:
        self.actions: list[dict[str, str]] = []

    def send_action(self, name: str, fields: Any = (), *, timeout: float | None = None) -> Any:
        self.actions.append({"Action": name, **dict(fields)})
        return defer.Deferred()


# -- FastAGI: the fallback -------------------------------------------------------------------


def test_an_entry_with_a_fallback_parks_callers_the_backend_fails() -> None:
    holding = {
        "sales": HoldingSpot("holding", "s", "external", None, False),
        "support": HoldingSpot("holding", "moh", "external-moh", "default", False),
    }
    entries = [IvrEntry("5004", "main", "fastagi", "sales"), IvrEntry("5002", "main", "asyncagi")]
    (context,), _ = ivr_entry_dialplan(entries, holding=holding)
    with_fallback, without = context.extensions["5004"], context.extensions["5002"]
    assert [s.app for s in with_fallback] == ["NoOp", "Answer", "AGI", "NoOp", "GotoIf", "Hangup"]
    assert with_fallback[4] == Step("GotoIf", f"{LOST}?holding,s,1")
    assert [s.app for s in without] == ["NoOp", "Answer", "AGI", "NoOp", "Hangup"]
    assert f"same => n,GotoIf({LOST}?holding,s,1)" in render([context], [])
    with pytest.raises(DialplanError, match=r"IVR entry 5004: fallback_queue 'billing'.*sales"):
        ivr_entry_dialplan([IvrEntry("5004", "main", "fastagi", "billing")], holding=holding)


def test_the_generated_dialplan_falls_back_to_the_queues_holding_spot(tmp_path: Path) -> None:
    """``callcenter asterisk dialplan``: the fallback goes where the IVR redirects the
    queue's callers, the spot that announces the queue's lane."""
    settings = load_settings(CONFIG, environ={})
    entries = [IvrEntry("5004", "main", "fastagi", "support")]
    plan = generated(tmp_path, generate_dialplan(settings, ivr_entries=entries).text)
    steps = plan["ivr-entry"]["5004"]
    (goto,) = [data for app, data, _ in steps if app == "GotoIf"]
    condition, _, target = goto.partition("?")
    assert condition == LOST
    context, exten, priority = target.split(",")
    config = parse_acd_config(yaml.safe_load((ROOT / "config/queues.yaml").read_text()), "q")
    lane = config.queues["support"].lanes[0]
    assert parked_lanes(plan)[lane] == (context, exten) and priority == "1"
    assert (
        queue_holding(config, DialplanOptions(holding=settings.calls.holding))["support"].target()
        == target
    )


def test_fallback_queue_is_checked_against_the_queues() -> None:
    with pytest.raises(ValidationError, match="fallback_queue"):
        IvrSettings.model_validate({"flows": [FLOWS], "entries": [
            {"entry": "5004", "flow": "main", "fallback_queue": ""}]})  # fmt: skip
    settings = IvrSettings.model_validate({"flows": [FLOWS], "fastagi_port": 0, "entries": [
        {"entry": "lab-route", "flow": "main", "transport": "fastagi",
         "fallback_queue": "billing"}]})  # fmt: skip
    with pytest.raises(IvrStartupError, match=r"fallback_queue 'billing'.*sales, support") as e:
        IvrService(settings, reactor=Clock(), actions=_NoActions(), queues=("sales", "support"),
                   targets=TARGETS)  # fmt: skip
    assert e.value.setting == "entries"
    assert settings.dialplan_entries()[0].fallback_queue == "billing"


def _lab_fallback() -> Harness:
    route = Route("fastagi", "sales", "agi://127.0.0.1:4599/lab-route", "holding,s,1")
    h = Harness(dids={**Settings().dids, "5004": route})
    h.login()
    return h


def _parked(h: Harness) -> list[dict[str, str]]:
    return [e for e in h.events("UserEvent") if e.get("UserEvent") == "CtiParked"]


def test_lab_fastagi_unreachable_parks_the_caller_in_the_fallback() -> None:
    h = _lab_fallback()
    h.core.pbx.fastagi_connector = lambda call: call.failed()
    h.call("5004", LAB_WAIT="10")
    h.advance(3)
    status = next(e for e in h.events("VarSet") if e["Variable"] == "AGISTATUS")
    assert status["Value"] == "FAILURE"
    (parked,) = _parked(h)
    assert parked["Queue"] == "external" and parked["Context"] == "holding"
    assert not h.events("QueueCallerJoin") and not h.events("Hangup")


def test_lab_fastagi_dropped_mid_flow_parks_the_caller_in_the_fallback() -> None:
    """The backend dies after one command: Asterisk sees the connection close (AGISTATUS
    SUCCESS, as res_agi reports a script that closed) and the caller still parks."""
    h = _lab_fallback()
    calls: list[FastAgiCall] = []

    def connect(call: FastAgiCall) -> None:
        calls.append(call)
        call.connected(lambda data: None, lambda: None)
        call.received(b'STREAM FILE press-1-sales ""\n')

    h.core.pbx.fastagi_connector = connect
    h.call("5004", LAB_WAIT="30")
    h.advance(1.5)
    assert [e["Command"] for e in h.events("AGIExecStart")] == ['STREAM FILE press-1-sales ""']
    h.out += h.core.run(h.now, calls[0].closed)  # the server's process is gone
    h.advance(2)
    status = next(e for e in h.events("VarSet") if e["Variable"] == "AGISTATUS")
    assert status["Value"] == "SUCCESS"
    (parked,) = _parked(h)
    assert parked["Queue"] == "external"
    assert not h.events("QueueCallerJoin") and not h.events("Hangup")


# -- end to end: a real backend SIGKILLed mid-flow -------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lab(reactor: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The simulator (DID 5002: AsyncAGI; 5004: FastAGI to the backend's port, falling back
    to ``holding,s,1`` as the generated entry does), the AGI commands each channel ran
    (time, channel, command), and ``callcenter run`` with the IVR, not yet started."""
    from tests.test_acd_restart_end_to_end import Backend

    agi_port = _free_port()
    route = Route("fastagi", "sales", f"agi://127.0.0.1:{agi_port}/lab-route", "holding,s,1")
    simulator = start_simulator(reactor, dids={**Settings().dids, "5004": route},
                                prompt_seconds=0.3)  # fmt: skip
    pbx = simulator.factory.core.pbx
    commands: list[tuple[float, str, str]] = []
    emit = pbx.emit_channel

    def recording(name: str, privilege: str, ch: Any, extra: Any = ()) -> None:
        if name == "AGIExecStart":
            commands.append((reactor.seconds(), ch.name, dict(extra)["Command"]))
        emit(name, privilege, ch, extra)

    monkeypatch.setattr(pbx, "emit_channel", recording)
    backend = Backend(tmp_path, simulator.getHost().port)
    entries = [{"entry": "5002", "flow": "main", "transport": "asyncagi"},
               {"entry": "lab-route", "flow": "main", "transport": "fastagi",
                "fallback_queue": "sales"}]  # fmt: skip
    backend.env.update({
        "CALLCENTER_IVR__FLOWS": json.dumps([str(FLOWS)]),
        "CALLCENTER_IVR__ENTRIES": json.dumps(entries),
        "CALLCENTER_IVR__FASTAGI_PORT": str(agi_port),
        "CALLCENTER_LOG_LEVEL": "INFO",
    })  # fmt: skip
    yield simulator, backend, commands
    if backend.proc is not None and backend.proc.poll() is None:
        backend.proc.kill()
        backend.proc.wait()
    simulator.stopListening()


def _press(simulator: Any, channel: str, digit: str) -> None:
    """The caller on ``channel`` keys ``digit`` (as SendDTMF on the far end delivers it)."""
    pbx = simulator.factory.core.pbx

    def key() -> None:
        ch = pbx.channels[channel]
        pbx.emit_channel("DTMFBegin", "dtmf,all", ch, [("Digit", digit),
                                                         ("Direction", "Received")])  # fmt: skip
        pbx.emit_channel("DTMFEnd", "dtmf,all", ch, [("Digit", digit), ("DurationMs", "250"),
                                                       ("Direction", "Received")])  # fmt: skip
        ch.digits.append(digit)
        pbx.wake(ch, "digit")

    simulator.factory.inside(key)


def _in_menu(commands: list[tuple[float, str, str]], did: str, since: float = 0.0) -> str | None:
    """The channel of DID ``did`` that has played the menu's first prompt since ``since``."""
    return next((ch for at, ch, command in commands if at >= since and
                 ch.startswith(f"Local/{did}@") and "press-1-sales" in command), None)  # fmt: skip


def test_callers_mid_flow_survive_a_sigkilled_backend(lab: Any, run: Any) -> None:
    """A caller in the AsyncAGI menu and one in the FastAGI menu when ``callcenter run`` is
    SIGKILLed, and a FastAGI caller arriving while it is down. The AsyncAGI caller waits
    in silence until the restarted backend finds it in the snapshot and plays the welcome
    and the menu again; the caller keys 1 and parks in sales. Both FastAGI callers park
    in the entry's fallback (sales) instead of being hung up, and are routed once the
    backend is back: all three end up talking to agents."""
    simulator, backend, commands = lab
    core = simulator.factory.core
    pbx = core.pbx
    found: dict[str, str] = {}

    def logged_in() -> bool:
        return sum(s.authenticated for s in core.sessions.values()) == 1

    def parked(name: str) -> bool:
        ch = pbx.channels.get(name)
        return ch is not None and ch.context == "holding"

    async def go() -> None:
        from twisted.internet import reactor

        backend.start()
        await until(logged_in, timeout=20)
        await until(lambda: "IVR: FastAGI on" in backend.log.read_text(), timeout=10)
        originate_inside(simulator, caller("5551230001", "Ana Async", "5002", 60))
        originate_inside(simulator, caller("5551230002", "Fred Fast", "5004", 60))
        await until(lambda: bool(_in_menu(commands, "5002") and _in_menu(commands, "5004")))
        found["async"] = _in_menu(commands, "5002") or ""
        found["fast"] = _in_menu(commands, "5004") or ""
        assert backend.signal(signal.SIGKILL) == -signal.SIGKILL
        killed = reactor.seconds()
        # The FastAGI caller's connection closed: it parks in sales' holding spot.
        await until(lambda: parked(found["fast"]), timeout=5)
        # One arriving now finds no FastAGI server: AGISTATUS=FAILURE, parked too.
        originate_inside(simulator, caller("5551230003", "Nina Late", "5004", 60))
        await until(
            lambda: any(
                parked(n)
                for n in pbx.channels
                if n.startswith("Local/5004@") and n != found["fast"]
            ),
            5,
        )
        found["late"] = next(n for n in pbx.channels if n.startswith("Local/5004@") and
                             n.endswith(";2") and n != found["fast"])  # fmt: skip
        # The AsyncAGI caller hears nothing: still in AGI, no command since the kill.
        await sleep(1.5)
        waiting = pbx.channels[found["async"]]
        assert (waiting.app, waiting.app_data) == ("AGI", "agi:async")
        assert not [c for at, ch, c in commands if ch == found["async"] and at > killed + 0.5]

        restarted = reactor.seconds()  # every command from now on is the new backend's
        backend.start()
        await until(logged_in, timeout=20)
        # The flow starts again from its start on the same channel: welcome, then the menu.
        await until(lambda: _in_menu(commands, "5002", restarted) == found["async"], 15)
        again = [c for at, ch, c in commands if ch == found["async"] and at >= restarted]
        assert again[0].startswith("STREAM FILE welcome")
        _press(simulator, found["async"], "1")
        await until(lambda: parked(found["async"]), timeout=15)
        variables = pbx.channel_vars(pbx.channels[found["async"]])
        assert variables["IVR_DIGITS"] == "1"
        assert variables["IVR_PATH"].startswith("main.welcome>main.hours>main.menu")
        assert variables["IVR_PATH"].endswith("main.sales")
        # All three reach agents (3 agents, sales): nobody was lost.
        await until(lambda: all(pbx.channels[n].bridge is not None for n in found.values()
                                if n in pbx.channels), timeout=15)  # fmt: skip
        assert all(n in pbx.channels for n in found.values()), "a caller was hung up"

    run(go(), timeout=120)
    log = backend.log.read_text()
    assert re.search(rf"IVR: {re.escape(found['async'])} found waiting in AsyncAGI; flow main "
                     "starts again", log)  # fmt: skip
