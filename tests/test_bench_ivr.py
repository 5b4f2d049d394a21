"""The IVR benchmark's code path (``bench/ivr.py``) at a tiny scale: 20 callers through the
shipped flows over each transport, a whole backend on this process's reactor and the
simulator in the bench's child process (``bench/ivr_world.py``), which dials this
process's FastAGI port. Checked: every caller reached the IVR and ended queued in support
with its keys and a verified account, every step was timed, the child reported its CPU and
hung the parked callers up, and the bench's wrappers are gone after the run. No timings
here: the speed goal lives in the benchmark."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred

import pbx_simulator
from bench.ivr import Load, report, run_transport
from bench.ivr_world import WorldRecords, noting_drops
from cti.ami.client import AmiProtocol
from ivr.fastagi import FastAgiSession
from pbx_simulator.server import BANNER

SESSIONS = 20


@pytest.mark.parametrize("transport", ["asyncagi", "fastagi"])
def test_every_caller_ends_queued_and_every_step_is_timed(
    reactor: Any, run: Any, tmp_path: Path, transport: str
) -> None:
    unwrapped = (AmiProtocol.dataReceived, FastAgiSession._write_next)
    load = Load(sessions=SESSIONS, ramp=0.5, prompt_seconds=0.3, deadline=30)
    said: list[str] = []
    result = run(
        Deferred.fromFuture(asyncio.ensure_future(
            run_transport(reactor, transport, load, tmp_path, say=said.append)
        )),
        timeout=90,
    )  # fmt: skip

    assert result.errors == []
    assert (result.placed, result.started, result.finished) == (SESSIONS,) * 3
    assert result.outcomes == {"queued": SESSIONS}
    assert result.timer.refused == {} and result.timer.links_lost == 0
    # Each walk has a dozen AGI results followed by a command (the Redirect included).
    steps = result.timer.steps
    assert len(steps) >= 10 * SESSIONS
    verbs = {verb for _, _, verb in steps}
    assert {"STREAM FILE", "GET DATA", "SET VARIABLE", "Redirect"} <= verbs
    assert sum(verb == "Redirect" for _, _, verb in steps) == SESSIONS
    assert len(result.timer.firsts) == SESSIONS
    assert all(read >= 0 and handed >= 0 for read, handed, _ in steps)
    assert result.cpu > 0 and result.simulator.cpu > 0 and result.simulator.wall > 0
    # Every caller was still there when the run ended: parked in support, hung up by the
    # child (the channels of a parked call: at least the caller's).
    assert result.simulator.placed == SESSIONS and result.simulator.hung_up >= SESSIONS
    text = report([result])
    assert "errors: 0" in text and f"goal ({transport})" in text
    assert (AmiProtocol.dataReceived, FastAgiSession._write_next) == unwrapped


#: A backend that reads: connects to the port given, reads until it has the bytes given or
#: the connection ends, prints how many it got.
READER = """
import socket, sys
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
got, want = 0, int(sys.argv[2])
while got < want:
    try:
        chunk = sock.recv(1 << 20)
    except ConnectionResetError:
        break
    if not chunk:
        break
    got += len(chunk)
print(got)
"""


def _connected(simulator: Any, before: set[int]) -> Any:
    """The simulator's protocol of the connection made since ``before`` (or None)."""
    new = set(simulator.factory.connections) - before
    return simulator.factory.connections[new.pop()] if new else None


def test_the_simulator_drops_only_a_backend_that_does_not_read(reactor: Any, run: Any) -> None:
    """The simulator writes as Asterisk's: 16 MB of events in one loop turn reach a client
    that reads (Twisted alone would hold them past the 4 MB writetimeout and drop it: the
    client got nothing), and a client that does not read is dropped, with the kernel's
    queue full."""
    records = WorldRecords()
    simulator: Any = pbx_simulator.serve(reactor, pbx_simulator.Settings(port=0))
    port = simulator.getHost().port
    limit = simulator.factory.settings.max_write_buffer
    frame = b"Event: VarSet\r\nValue: " + b"x" * 1000 + b"\r\n\r\n"
    total = 16_000 * len(frame)

    async def scenario() -> tuple[int, int]:
        with noting_drops(records, lambda: 0.0):
            # The reading backend is another process, as in the benchmark: a thread of this
            # one would read only when this loop's turn lets go of the GIL.
            before = set(simulator.factory.connections)
            reader = await asyncio.create_subprocess_exec(
                sys.executable, "-c", READER, str(port), str(len(BANNER) + total),
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            while (conn := _connected(simulator, before)) is None:
                await asyncio.sleep(0.01)
            # One loop turn (Twisted flushes only between turns), at ~10 MB/s: a simulator's
            # pace, which the reader keeps up with; much faster, it would fall behind.
            for n in range(total // len(frame)):
                conn.send(frame)
                if n % 10 == 9:
                    time.sleep(0.001)
            out, _ = await reader.communicate()

            before = set(simulator.factory.connections)
            idle = socket.socket()
            idle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
            idle.connect(("127.0.0.1", port))
            while (conn := _connected(simulator, before)) is None:
                await asyncio.sleep(0.01)
            sent = 0
            while not records.drops and sent < 64 * limit:
                conn.send(frame)
                sent += len(frame)
            idle.close()
        return int(out) - len(BANNER), sent

    try:
        received, sent = run(Deferred.fromFuture(asyncio.ensure_future(scenario())), timeout=30)
    finally:
        simulator.stopListening()
    assert received == total
    assert len(records.drops) == 1, records.drops
    drop = records.drops[0]
    # Dropped when the kernel had taken all it would and 4 MB more were waiting.
    assert drop.held > limit and drop.unsent > 0 and sent > limit
