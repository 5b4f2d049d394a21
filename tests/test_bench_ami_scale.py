"""The scale benchmark's traffic (``bench/ami_scale.py``, ``python -m bench.ami_ingest
--scale``) is traffic the call model understands: each ACD agent leg's DialBegin is an
offer to its parked caller, each callback's dial an outbound call, N calls stay alive, and
a seed gives the same bytes every time."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import islice

from bench.ami_scale import Frame, Traffic, report, run
from cti.ami.codec import Parser
from cti.calls.events import CallArrived, PbxEvent
from cti.calls.model import CallModel


def drive(
    model: CallModel, frames: Iterable[tuple[str, Frame]]
) -> Iterator[tuple[Frame, list[PbxEvent]]]:
    parser = Parser(expect_banner=False)
    for text, frame in frames:
        (message,) = parser.feed(text.encode())
        assert not message.problems
        yield frame, model.handle(message)


def test_every_dial_is_understood_and_the_calls_stay_alive(caplog) -> None:
    caplog.set_level(logging.WARNING)
    calls = 20
    traffic = Traffic(calls, seed=7)
    model = CallModel()
    for _ in drive(model, traffic.warm_up()):
        pass
    seen: Counter[str] = Counter()
    dials: Counter[str] = Counter()
    live = set()
    for frame, events in drive(model, islice(traffic.frames(), 20_000)):
        kinds = [e.kind for e in events]
        if frame.dial == "offer":
            # Found by the caller's number alone: no CTI_CALLID on the agent leg.
            assert kinds.count("offered") == 1, kinds
        elif frame.dial == "outbound":
            arrived = [e for e in events if isinstance(e, CallArrived)]
            assert [e.direction for e in arrived] == ["outbound"]
        dials[frame.dial] += 1
        seen.update(kinds)
        live.add(len(model.calls))
    assert dials["offer"] > 100 and dials["outbound"] > 20
    # Parked callers offered, some offers missed (Failure), answered, ended.
    for kind in ("arrived", "parked", "queued", "offered", "offer_missed", "answered", "ended"):
        assert seen[kind] > 20, (kind, seen)
    assert seen["offered"] >= dials["offer"]  # app_queue's AgentCalled are offers too
    # A callback is a call from its dial on; before, only its agent leg rings.
    assert max(live) <= calls and min(live) >= calls * 0.6, sorted(live)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_traffic_is_the_same_for_a_seed() -> None:
    def sample(seed: int) -> bytes:
        traffic = Traffic(50, seed=seed)
        warm = "".join(text for text, _ in traffic.warm_up()).encode()
        return warm + traffic.window(5_000)[0]

    assert sample(3) == sample(3)
    assert sample(3) != sample(4)


def test_the_scale_table_reports_each_n() -> None:
    result = run([5, 20], window=2_000, repeat=2, seed=1)
    assert [r["calls"] for r in result["rows"]] == [5, 20]
    assert result["rows"][0]["ratio_model"] == 1.0
    assert all(r["codec_model_per_s"] > 0 and r["model_per_s"] > 0 for r in result["rows"])
    text = report(result)
    assert "codec+model/s" in text and "ratio model" in text
    small, large = result["rows"]
    assert small["live_max"] <= 5 and large["live_max"] <= 20
    assert small["measured_events"] == large["measured_events"] == 2 * 2 * 2_000
    assert len(small["model_runs"]) == len(small["codec_model_runs"]) == 2


def test_the_command_prints_the_table(capsys) -> None:
    from bench.ami_ingest import main

    argv = ["--scale", "--calls", "5,10", "--window", "1000", "--repeat", "1"]
    assert main([*argv, "--mix", "acd=1", "--missed-offers", "1-2"]) == 0
    out = capsys.readouterr().out
    assert "mix acd 1; 1-2 unanswered offers" in out
    assert "cost per event against N = 5:" in out
