"""The IVR benchmark's code path (``bench/ivr.py``) at a tiny scale: 20 callers through the
shipped flows over each transport, a whole backend on this process's reactor and the
simulator in the bench's child process (``bench/ivr_world.py``), which dials this
process's FastAGI port. Checked: every caller reached the IVR and ended queued in support
with its keys and a verified account, every step was timed, the child reported its CPU and
hung the parked callers up, and the bench's wrappers are gone after the run. No timings
here: the speed goal lives in the benchmark."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from bench.ivr import Load, report, run_transport
from cti.ami.client import AmiProtocol
from ivr.fastagi import FastAgiSession

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
