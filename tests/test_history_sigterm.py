"""``callcenter demo`` stopped by SIGTERM while its PostgreSQL is down: the backlog stays in
the spool, the process exits 0, and the next start writes every event once (a fact the
call model repeated, such as a snapshot's ``parked`` and then the live one, once)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select

from acd.history import ACD_FACTS, AcdEventRecorder, acd_events
from cti.history import CALL_FACTS, CallEventRecorder, EventRecorder, call_events
from tests.e2e import until

ROOT = Path(__file__).resolve().parent.parent
#: A console line of a call event (``describe``): time, call id, kind.
CALL_LINE = re.compile(r"^\d\d:\d\d:\d\d (\S+)\s+(\S+)")


def test_sigterm_during_a_database_outage_keeps_the_backlog_and_exits_0(
    postgres_server: Any, tmp_path: Path, reactor: Any, run: Any
) -> None:
    spool = tmp_path / "spool"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    env |= {
        "CALLCENTER_DATABASE__URL": postgres_server.url,
        "CALLCENTER_HISTORY__SPOOL_DIR": str(spool),
        "CALLCENTER_HISTORY__CLOSE_GRACE": "1",
    }
    config = str(ROOT / "config/callcenter.yaml")
    argv = [sys.executable, "-m", "callcenter.cli", "--config", config,
            "demo", "--calls-per-minute", "300", "--seed", "3", "--port", "0"]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(3.0)  # start-up (migrations) and some traffic stored
        postgres_server.stop()
        time.sleep(1.5)  # traffic while the database is down: spooled
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert re.search(r"call history: \d+ events kept in the spool .* for the next start", err)

    postgres_server.start()  # the next start: the spools are written first
    engine = create_engine(postgres_server.url)
    recorders: list[EventRecorder[Any]] = [
        CallEventRecorder(engine, reactor, spool_dir=spool),
        AcdEventRecorder(engine, reactor, spool_dir=spool),
    ]
    assert recorders[0].pending > 0

    async def drain() -> None:
        await until(lambda: not any(r.pending for r in recorders))
        for r in recorders:
            assert (await r.close()).kept == 0

    run(drain(), timeout=30)
    not_calls = ("ACD", "IVR", "ticket", "device", "leg")  # the console's other lines
    calls = _printed(out, lambda cid: cid not in not_calls, CALL_FACTS)
    acd = _printed(out, lambda cid: cid == "ACD", ACD_FACTS)
    with engine.connect() as conn:
        stored = conn.execute(
            select(call_events.c.call_id, call_events.c.kind).order_by(call_events.c.id)
        ).all()
        acd_stored = conn.execute(select(acd_events.c.kind).order_by(acd_events.c.id)).all()
    engine.dispose()
    print(f"\nSIGTERM during the outage: {len(calls)} call and {len(acd)} ACD events printed "
          f"(repeated facts left out), {len(stored)} and {len(acd_stored)} stored")  # fmt: skip
    assert [tuple(row) for row in stored] == calls  # every one, once, in order
    assert [kind for (kind,) in acd_stored] == [kind for _call, kind in acd]


def _printed(out: str, wanted: Any, facts: Mapping[str, str]) -> list[tuple[str, str]]:
    """(call id, kind) of the console's event lines, in order, a repeated fact once."""
    seen: set[tuple[str, str]] = set()
    events = []
    for line in out.splitlines():
        m = CALL_LINE.match(line)
        if not m or not wanted(m.group(1)):
            continue
        fields = dict(re.findall(r"(\w+)=(\S+)", line))
        acd = m.group(1) == "ACD"
        call_id, kind = (fields.get("call_id", ""), m.group(2)) if acd else m.groups()
        if kind in facts and call_id:
            fact = (call_id, facts[kind].format_map(fields))
            if fact in seen:
                continue
            seen.add(fact)
        events.append((call_id, kind))
    return events
