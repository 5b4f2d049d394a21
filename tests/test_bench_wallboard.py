"""The wallboard benchmark runs end to end on a small board: every change it makes is seen
on the page, and the page updates its rows in place (the figures are the benchmark's to
report, not this test's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.wallboard import percentile


def test_a_small_board_sees_every_change_in_place(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.wallboard", "--queues", "3", "--agents", "20",
         "--changes", "40", "--rate", "40", "--json"],
        cwd=root, env=clean, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary, raw = proc.stdout.strip().rsplit("\n", 1)
    result = json.loads(raw)
    assert summary.startswith("wallboard: 3 queues, 20 agents, 40 state changes")
    assert result["missing"] == 0 and len(result["dom"]) == result["changes"] == 40
    assert (result["rows_added"], result["rows_removed"]) == (0, 0)
    # Never before the change (the page's clock counts whole milliseconds).
    assert all(latency > -1.0 for latency in result["dom"])


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 51.0 and percentile(values, 0.99) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) != percentile([], 0.5)  # NaN: nothing measured
