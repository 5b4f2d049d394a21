"""The ``callcenter`` command as a new user meets it: help, a taken port, an unreachable or
refusing PBX, files that are not captures, withheld callers. No tracebacks anywhere."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from callcenter.cli import describe, describe_pbx_down, main
from cti.ami.client import LinkState
from cti.calls.events import (
    CallArrived,
    CallbackLegEnded,
    Caller,
    DeviceStateChanged,
    OriginateOutcome,
)
from tests.e2e import start_simulator, until

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "config/callcenter.yaml")
CAPTURES = ROOT / "tests/captures"


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None, **kw: Any) -> Any:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    return subprocess.run(
        [sys.executable, "-m", "callcenter.cli", "--config", CONFIG, *args],
        cwd=cwd,
        env={**clean, "CALLCENTER_HTTP__PORT": "0", **(env or {})},  # API: any free port
        capture_output=True,
        text=True,
        timeout=60,
        **kw,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- help --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["demo"], ["run"], ["pbx-sim"], ["replay"]])
def test_help_is_plain_text_with_defaults(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and ":class:" not in text and "\x1b" not in text
    assert "(default: None)" not in text
    expected = {
        "": "(default: setting log_level, INFO unless configured)",
        "demo": "(default: setting simulator.port, 5038 unless configured)",
        "run": "(default: 10.0)",
        "pbx-sim": "(default: setting simulator.traffic.calls_per_minute, 6.0 unless",
        "replay": "a .jsonl or .raw capture",
    }
    assert expected["".join(command)] in " ".join(text.split())


# -- demo and run ------------------------------------------------------------------------------


def test_demo_on_a_taken_port_says_so_and_suggests_port_0(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _cli("demo", "--port", str(port), "--duration", "1", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert f"cannot listen on 127.0.0.1:{port} (Address already in use)" in proc.stderr
    assert "use --port 0 for any free port" in proc.stderr


def test_run_with_the_pbx_unreachable_warns_once_and_the_figures_say_so(tmp_path: Path) -> None:
    proc = _cli(
        "run",
        "--duration",
        "2.5",
        "--figures-every",
        "1",
        cwd=tmp_path,
        env={"CALLCENTER_AMI__PORT": str(_free_port())},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    warnings = [line for line in proc.stderr.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, proc.stderr
    assert "cannot connect to the PBX: connection refused" in warnings[0]
    figures = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert figures and all("free/" not in line for line in figures)
    assert "[sales] PBX unreachable: cannot connect to the PBX: connection refused" in figures[0]
    assert "Traceback" not in proc.stderr


def test_run_with_the_login_refused_warns_once_and_the_figures_say_why(
    tmp_path: Path, reactor: Any, run: Any
) -> None:
    simulator = start_simulator(reactor)  # user cti, secret s3cret
    out, err = tmp_path / "out", tmp_path / "err"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    env = {
        **clean,
        "CALLCENTER_AMI__PORT": str(simulator.getHost().port),
        "CALLCENTER_AMI__USERNAME": "cti",
        "CALLCENTER_AMI__SECRET": "not-the-secret",
        "CALLCENTER_AMI__RECONNECT__MIN_DELAY": "0.2",
        "CALLCENTER_HTTP__PORT": "0",  # the agent API on any free port
    }
    cmd = [sys.executable, "-m", "callcenter.cli", "--config", CONFIG, "run"]
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [*cmd, "--duration", "4", "--figures-every", "1.5"],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        try:
            # The simulator runs on this process's reactor: keep it turning meanwhile.
            run(until(lambda: proc.poll() is not None, timeout=30), timeout=40)
        finally:
            proc.kill()
            simulator.stopListening()
    stderr_text = err.read_text()
    assert proc.returncode == 0, stderr_text[-2000:]
    warnings = [line for line in stderr_text.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, stderr_text
    assert "login as 'cti' refused by the server: Authentication failed" in warnings[0]
    figures = [line for line in out.read_text().splitlines() if line.startswith("[")]
    assert figures and all("free/" not in line for line in figures)
    assert "PBX unreachable: login as 'cti' refused by the server" in figures[0]


def test_the_figures_line_while_the_pbx_is_down() -> None:
    assert describe_pbx_down("sales", LinkState.DISCONNECTED, "login refused") == (
        "[sales] PBX unreachable: login refused; agents and waiting callers unknown until "
        "the link is back"
    )
    assert describe_pbx_down("sales", LinkState.CONNECTED, None).startswith(
        "[sales] PBX not connected yet (AMI link connected)"
    )


# -- replay ------------------------------------------------------------------------------------


def _replay(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--config", CONFIG, "replay", str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("image.jsonl", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "line 1: not UTF-8 text"),
        ("notes.txt", b"hello, this is not a capture\n", "line 1: not a JSON record"),
        ("list.json", b"[1, 2, 3]\n", "line 1: a JSON list, not a capture record"),
        (
            "headers.jsonl",
            b'{"dir": "in", "kind": "event", "headers": {"Event": "Hangup"}}\n',
            "line 1: 'headers' is not a list of [key, value] pairs",
        ),
    ],
)
def test_replay_of_a_file_that_is_no_capture_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = _replay(path, capsys)
    assert code == 1 and out == ""
    assert err.startswith(f"callcenter replay: {path}: {expected}")
    assert "a capture is a .jsonl file of recorded AMI records" in err


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("other.json", b'{"name": "not a capture", "items": [1, 2]}\n'),
        ("empty.jsonl", b""),
        ("binary.raw", bytes(range(256)) * 4),
        (
            "actions-only.jsonl",
            b'{"ts": 1.0, "conn": null, "dir": "note", "text": "start"}\n'
            b'{"ts": 1.1, "conn": 1, "dir": "in", "kind": "banner", "text": '
            b'"Asterisk Call Manager/11.0.0"}\n'
            b'{"ts": 1.2, "conn": 1, "dir": "out", "kind": "action", "name": "Login", '
            b'"headers": [["Action", "Login"]]}\n',
        ),
    ],
)
def test_replay_of_a_capture_without_ami_messages_says_so_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = _replay(path, capsys)
    assert code == 1 and out == ""
    assert err.startswith(f"callcenter replay: {path}: no AMI messages in it")


def test_replay_ends_with_a_summary_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _replay(CAPTURES / "10-busy-hour.jsonl", capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[-1] == (
        "replayed 1419 AMI messages over 1 connection: 10 calls, 5 answered, 5 abandoned"
    )
    code, out, _ = _replay(CAPTURES / "08-reconnect.raw", capsys)
    assert code == 0 and "over 2 connections: " in out.splitlines()[-1]


def test_replay_cli_runs_without_a_traceback_in_a_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps([{"dir": "in"}]) + "\n")
    proc = _cli("replay", str(path), cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "a JSON list, not a capture record" in proc.stderr


# -- the console lines -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "shown"),
    [
        (Caller(None, None, "anonymous"), "caller=withheld dialled=5003"),
        (Caller(None, "Private Person", ""), "caller=withheld (Private Person) dialled=5003"),
        (Caller("+15551230001", "Alice", "5551230001"), "caller=+15551230001 (Alice) dialled"),
        (Caller("+15551230001", None, "5551230001"), "caller=+15551230001 dialled"),
    ],
)
def test_a_withheld_caller_prints_as_withheld(caller: Caller, shown: str) -> None:
    line = describe(CallArrived("1.1", 0.0, caller=caller, dialled="5003", channel="L/1"))
    assert shown in line and "caller=()" not in line


def test_events_without_a_call_print_as_legs() -> None:
    """The console prints every event of the stream, also those about legs, not calls."""
    leg = "Local/6001@agents-1;1"
    answered = describe(OriginateOutcome(0.0, "acd-1-000001", leg, True, "answered"))
    assert " leg " in answered and "originate_outcome" in answered and "acd-1-000001" in answered
    ended = describe(CallbackLegEnded(0.0, "cb-1.1", "Local/6001@agents-1;1", "Normal Clearing"))
    assert "callback_leg_ended" in ended and "request_id=cb-1.1" in ended
    busy = describe(DeviceStateChanged(0.0, "Local/6001@agents", "busy", restored=True))
    assert "device" in busy and "busy" in busy


def test_the_process_entry_freezes_what_start_up_left_alive() -> None:
    import gc

    from callcenter.app import freeze_start_up

    alive = [{"n": i} for i in range(1000)]
    try:
        freeze_start_up()
        assert gc.get_freeze_count() >= len(alive)
    finally:
        gc.unfreeze()
