"""The IVR in ``callcenter demo``: the demo runs the example flows of config/ivr on the
simulator's AGI DIDs (5002 AsyncAGI, 5004 FastAGI) when the configuration names none, its
generated callers key what the flows ask, and the console shows each session's end and the
caller reaching the ACD. Without the flows' queues the demo runs without the IVR (and
sends no caller to its DIDs); a taken FastAGI port gives way to a free one that the
simulator's DID dials too."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from callcenter.cli import describe_ivr
from callcenter.demo import DEMO_FLOWS, demo_ivr, fastagi_routes
from callcenter.settings import Settings as CallcenterSettings
from callcenter.settings import load_settings
from cti.ami.codec import Message
from ivr.events import IvrFinished, IvrStarted
from ivr.flow import luhn_valid
from pbx_simulator import ManagerCore, Send, Settings
from pbx_simulator.settings import TrafficSettings
from pbx_simulator.traffic import TrafficGenerator

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "callcenter.yaml"
T0 = 1_800_000_000.0


def _shipped(**env: str) -> CallcenterSettings:
    return load_settings(CONFIG, {"CALLCENTER_IVR__FASTAGI_PORT": str(_free_port()), **env})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the demo's settings --------------------------------------------------------------------


def test_the_demo_turns_the_example_flows_on_for_the_simulators_agi_dids() -> None:
    shipped = load_settings(CONFIG, {})
    assert not shipped.ivr.enabled  # the shipped file leaves the IVR off ...
    settings, notes = demo_ivr(_shipped())
    assert settings.ivr.flows == (DEMO_FLOWS,)  # ... the demo turns it on
    entries = {(e.entry, e.flow, e.transport) for e in settings.ivr.entries}
    assert entries == {("5002", "main", "asyncagi"), ("lab-route", "main", "fastagi")}
    assert {"5002", "5004"} <= set(settings.simulator.traffic.dids)
    assert notes == [f"IVR: flows {DEMO_FLOWS}; entries 5002 (asyncagi), lab-route (fastagi)"]


def test_without_the_flows_queues_the_demo_runs_without_ivr_and_its_callers(
    tmp_path: Path,
) -> None:
    queues = tmp_path / "queues.yaml"
    queues.write_text(
        yaml.safe_dump(
            {
                "queues": {"sales": {"lanes": ["external"]}},
                "agents": {"6001": {"name": "Alice", "queues": {"sales": 0}}},
            }
        )
    )
    settings, notes = demo_ivr(_shipped(CALLCENTER_ACD__QUEUES=str(queues)))
    assert not settings.ivr.enabled
    assert settings.simulator.traffic.dids == ("5003", "5003", "5006", "5000", "5001")
    (note,) = notes
    assert note.startswith("IVR off in this demo: ") and "'support'" in note


def test_flows_of_the_configuration_are_kept(tmp_path: Path) -> None:
    flow = tmp_path / "only.yaml"
    flow.write_text(
        "languages: [en]\nflows:\n  only:\n    start: q\n    nodes:\n"
        "      q: {type: queue, queue: sales}\n"
    )
    settings, notes = demo_ivr(_shipped(CALLCENTER_IVR__FLOWS=f'["{flow}"]'))
    assert settings.ivr.flows == (flow,) and settings.ivr.entries == ()
    assert notes == [f"IVR: flows {flow}; entries none"]


def test_a_taken_fastagi_port_gives_way_to_a_free_one_the_simulator_dials() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        settings, notes = demo_ivr(_shipped(CALLCENTER_IVR__FASTAGI_PORT=str(port)))
    free = settings.ivr.fastagi_port
    assert free not in (port, 0)
    assert notes[0] == (
        f"FastAGI port 127.0.0.1:{port} is taken: the IVR's FastAGI server listens on {free} "
        "instead"
    )
    dids = fastagi_routes(Settings().dids, settings.ivr.fastagi_host, free)
    assert dids["5004"].agi_url == f"agi://127.0.0.1:{free}/lab-route"
    assert {d: r for d, r in dids.items() if d != "5004"} == {
        d: r for d, r in Settings().dids.items() if d != "5004"
    }
    assert fastagi_routes(Settings().dids, "127.0.0.1", 0) == Settings().dids
    assert fastagi_routes(Settings().dids, "0.0.0.0", 4600)["5004"].agi_url == (
        "agi://127.0.0.1:4600/lab-route"
    )


# -- the console --------------------------------------------------------------------------


def test_ivr_console_lines_show_the_walk_the_keys_and_the_flows_own_variables() -> None:
    started = describe_ivr(IvrStarted(T0, "c1", "Local/5002@inbound-1;2", "main", "asyncagi"))
    assert started.endswith(
        " IVR started            call_id=c1 channel=Local/5002@inbound-1;2 flow=main "
        "transport=asyncagi"
    )
    finished = IvrFinished(
        T0, "c1", "Local/5004@inbound-2;2", "main", "fastagi", "queued",
        ("main.menu", "account_number.ask", "main.support"), ("2", "79927398713"), "support",
        {"IVR_PATH": "main.menu>account_number.ask>main.support", "IVR_DIGITS": "2-79927398713",
         "ACCOUNT": "79927398713"},
    )  # fmt: skip
    assert describe_ivr(finished).endswith(
        " IVR finished           call_id=c1 channel=Local/5004@inbound-2;2 flow=main "
        "transport=fastagi outcome=queued path=main.menu>account_number.ask>main.support "
        "digits=2-79927398713 queue=support variables=(ACCOUNT=79927398713)"
    )
    hung_up = IvrFinished(T0, None, "ch", "main", "asyncagi", "hung_up", ("main.welcome",), ())
    assert describe_ivr(hung_up).endswith(
        " IVR finished           channel=ch flow=main transport=asyncagi outcome=hung_up "
        "path=main.welcome"
    )


# -- the simulator's callers ------------------------------------------------------------------


def test_agi_did_callers_key_the_example_flows_choices() -> None:
    """No backend here: each caller's keys as the PBX side receives them (DTMFEnd), for
    callers on DID 5004 (its FastAGI unreachable, the dialplan goes on to sales)."""
    core = ManagerCore(Settings(), now=T0)
    sid = core.connect(T0)
    login = [("Action", "Login"), ("Username", "cti"), ("Secret", "ctilab-secret")]
    core.receive(sid, Message(login), T0)
    # Patient callers: none hangs up before all its keys are sent.
    traffic = TrafficSettings(
        enabled=True, calls_per_minute=30, mean_patience=10_000, dids=("5004",)
    )
    generator = TrafficGenerator(core, traffic, random.Random(3))
    generator.start()
    out: list[object] = []
    t = T0
    while t < T0 + 240:
        t = min(core.next_deadline() or t + 1, T0 + 240)
        out += core.advance(t)
    keyed: dict[str, str] = defaultdict(str)
    for o in out:
        headers = dict(o.headers) if isinstance(o, Send) else {}
        if headers.get("Event") == "DTMFEnd" and headers.get("Direction") == "Received":
            keyed[headers["Channel"]] += headers["Digit"]
    assert generator.placed > 60 and len(keyed) > 60
    shapes: dict[str, int] = defaultdict(int)
    for digits in keyed.values():
        if digits.startswith("2") and len(digits) > 1:
            assert digits.endswith("#") and luhn_valid(digits[1:-1]), digits
            shapes["support"] += 1
        else:
            assert digits in ("1", "91"), digits
            shapes["sales" if digits == "1" else "french"] += 1
    assert set(shapes) == {"sales", "support", "french"}


# -- the demo itself --------------------------------------------------------------------------


def test_the_demo_shows_ivr_callers_walk_the_menu_and_reach_an_agent(tmp_path: Path) -> None:
    """``callcenter demo`` on the shipped configuration, every generated caller on the
    IVR's DIDs: the console shows sessions start and finish (queued, with path and keys)
    and the same call joining the ACD and being answered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    env |= {
        "CALLCENTER_HTTP__PORT": "0",
        "CALLCENTER_SIMULATOR__TRAFFIC__DIDS": '["5002", "5004"]',
    }
    proc = subprocess.run(
        [sys.executable, "-m", "callcenter.cli", "--config", str(CONFIG), "demo",
         "--duration", "20", "--calls-per-minute", "20", "--seed", "4", "--port", "0",
         "--figures-every", "0"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("IVR: flows ") and "5002 (asyncagi)" in line for line in lines)
    started = [line for line in lines if " IVR started " in line]
    assert {"transport=asyncagi", "transport=fastagi"} <= {
        word for line in started for word in line.split() if word.startswith("transport=")
    }
    assert any(" ivr_entered " in line for line in lines)
    assert any(" digits " in line for line in lines)
    # The transport's own chatter stays off the console.
    assert not any("asyncagi_replied" in line for line in lines)
    finished = [line for line in lines if " IVR finished " in line]
    queued = [line for line in finished if " outcome=queued " in line]
    assert queued, "\n".join(lines[-60:])
    answered = []
    for line in queued:
        call_id = re.search(r"call_id=(\S+)", line).group(1)  # type: ignore[union-attr]
        assert re.search(r" path=main\.welcome>main\.hours>\S*>main\.(sales|support) ", line)
        assert re.search(r" queue=(sales|support)", line)
        after = lines[lines.index(line) + 1 :]
        assert any(f"ACD caller_joined      call_id={call_id} " in a for a in after), call_id
        if any(a.split()[1:3] == [call_id, "answered"] for a in after):
            answered.append(call_id)
    assert answered, "no IVR caller was answered:\n" + "\n".join(lines[-60:])
