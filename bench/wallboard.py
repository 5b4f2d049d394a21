"""Wallboard benchmark: with 50 queues and 1,000 agents on the open wallboard page, how long
from an agent's state change in the ACD to that change on the page, and does the page stay
responsive (issue 17; goal: p99 < 200 ms, no full re-render per event).

    python -m bench.wallboard [--queues 50] [--agents 1000] [--changes 2000] [--rate 20]

One process is the backend: an unmodified :class:`~callcenter.app.CallCenter` (ACD in
memory, SQLite in a temporary folder, the API on a free port) logged in over TCP AMI to the
PBX simulator on the same reactor (no calls: it only answers the ACD), every agent logged
in at start, each a member of two queues. The page is the real ``/wallboard`` in Debian's
headless Chromium (its own processes), logged in as a supervisor through the log-in page.

Changes: ``--changes`` times at ``--rate`` a second, a random agent is paused (if available)
or made available (if paused) through the ACD's own commands, as the agent API does; the
time is taken (``time.time()``) just before the command. The page carries an instrument
(a MutationObserver on the agents table, installed after the snapshot) that notes, for each
state cell that changes, the agent, the new text and ``Date.now()`` — the same clock, one
host — and again at the next animation frame (the change painted). Latency = the first
matching note after the command minus the command's time.

Responsiveness: the longest tasks the page's main thread ran (``PerformanceObserver``
``longtask``: over 50 ms) during the run, and how many table rows were added or removed
while changes streamed (0: every event updates its cells in place; a re-render would
replace rows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.world import on_reactor

#: The page's instrument: notes state-cell changes and paint times, counts row churn, and
#: the long tasks of the main thread.
INSTRUMENT = """() => {
  const notes = [];
  const churn = { added: 0, removed: 0 };
  const long = [];
  const body = document.getElementById('agent-rows');
  new MutationObserver((records) => {
    const now = Date.now();
    const painted = [];
    for (const r of records) {
      if (r.target === body) {
        churn.added += r.addedNodes.length;
        churn.removed += r.removedNodes.length;
        continue;
      }
      const cell = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      if (!cell || !cell.classList.contains('state')) continue;
      const agent = cell.parentElement.dataset.agent;
      const note = { agent, state: cell.textContent, dom: now, paint: null };
      notes.push(note);
      painted.push(note);
    }
    if (!painted.length) return;
    requestAnimationFrame(() => {
      const t = Date.now();
      for (const n of painted) n.paint = t;
    });
  }).observe(body, { childList: true, subtree: true, characterData: true });
  new PerformanceObserver((list) => { for (const e of list.getEntries()) long.push(e.duration); })
    .observe({ type: 'longtask', buffered: false });
  window.__bench = { notes, churn, long };
}"""

SUPERVISOR, PASSWORD = "bench-supervisor", "bench-wallboard-password"


@dataclass
class Result:
    """What one run measured (milliseconds)."""

    queues: int
    agents: int
    changes: int
    rate: float
    dom: list[float]
    paint: list[float]
    missing: int
    long_tasks: list[float]
    rows_added: int
    rows_removed: int

    def summary(self) -> str:
        lines = [
            f"wallboard: {self.queues} queues, {self.agents} agents, {self.changes} state "
            f"changes at {self.rate:g}/s",
            _spread("change -> page (DOM):", self.dom),
            _spread("change -> next frame:", self.paint),
            f"  changes never seen on the page: {self.missing}",
            f"  long tasks (> 50 ms) on the page: {len(self.long_tasks)}"
            + (f", longest {max(self.long_tasks):.0f} ms" if self.long_tasks else ""),
            f"  table rows added/removed while changes streamed: {self.rows_added}/"
            f"{self.rows_removed} (0/0: updated in place)",
        ]
        return "\n".join(lines)

    def p99(self) -> float:
        """The goal's figure: change to painted frame, p99 (ms)."""
        return percentile(self.paint, 0.99) if self.paint else float("inf")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank); NaN when there are none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _spread(what: str, values: Sequence[float]) -> str:
    cuts = "  ".join(f"p{round(q * 100)} {percentile(values, q):.1f} ms" for q in (0.5, 0.95, 0.99))
    return f"  {what:<22} {cuts}  max {max(values, default=float('nan')):.1f} ms"


def queues_file(folder: Path, queues: int, agents: int, seed: int) -> Path:
    """A queues file of ``queues`` queues and ``agents`` agents (6000...), two queues each."""
    rng = random.Random(seed)
    names = [f"q{n:02d}" for n in range(1, queues + 1)]
    config = {
        "agent_interface": "Local/{agent}@agents",
        "queues": {name: {"lanes": [name]} for name in names},
        "agents": {
            str(6000 + n): {
                "name": f"Agent {6000 + n}",
                "queues": {q: i for i, q in enumerate(rng.sample(names, 2))},
            }
            for n in range(agents)
        },
    }
    path = folder / "queues.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def measure(
    reactor: Any, folder: Path, *, queues: int, agents: int, changes: int, rate: float, seed: int
) -> Result:
    """Start the backend and the page, stream the changes, read the page's notes."""
    import pbx_simulator
    from bench.browser import BrowserThread
    from callcenter.app import CallCenter, freeze_start_up
    from callcenter.settings import load_settings

    simulator: Any = pbx_simulator.serve(reactor, pbx_simulator.Settings(port=0, secret="bench"))
    settings = load_settings(None, {
        "CALLCENTER_AMI__PORT": str(simulator.getHost().port),
        "CALLCENTER_AMI__USERNAME": "cti", "CALLCENTER_AMI__SECRET": "bench",
        "CALLCENTER_DATABASE__URL": f"sqlite:///{folder / 'cc.sqlite3'}",
        "CALLCENTER_HTTP__PORT": "0",
        "CALLCENTER_ACD__QUEUES": str(queues_file(folder, queues, agents, seed)),
        "CALLCENTER_ACD__LOGIN_AGENTS": "true",
    })  # fmt: skip
    loop = asyncio.get_running_loop()
    app = CallCenter(settings, reactor)
    app.start()
    freeze_start_up()
    await app.ami.when_ready().asFuture(loop)
    acd = app.acd
    assert acd is not None and app.api is not None
    names = sorted(acd.config.agents)
    await _until(lambda: all(acd.agent_status(a).state == "available" for a in names), 60)
    app.accounts.add(SUPERVISOR, PASSWORD, "supervisor")
    base = f"http://127.0.0.1:{app.api.port}"

    browser = BrowserThread()
    page_box: list[Any] = []

    def open_page() -> None:
        page = browser.new_page(1600, 1000, bypass_csp=True)
        page.goto(f"{base}/")
        page.fill("#username", SUPERVISOR)
        page.fill("#password", PASSWORD)
        page.click("#submit")
        page.wait_for_url("**/wallboard")
        page.wait_for_function(f"document.querySelectorAll('#agent-rows > div').length >= {agents}")
        page.evaluate(INSTRUMENT)
        page_box.append(page)

    try:
        await browser.do(open_page).asFuture(loop)
        rng = random.Random(seed)
        sent: list[tuple[str, str, float]] = []  # agent, state text expected, time
        gap = 1.0 / rate
        start = time.time()
        for n in range(changes):
            await _sleep_until(start + n * gap)
            agent = rng.choice(names)
            state = acd.agent_status(agent).state
            if state == "available":
                sent.append((agent, "paused", time.time()))
                acd.agent_pause(agent, "bench").addErrback(_refused, agent)
            elif state == "paused":
                sent.append((agent, "available", time.time()))
                acd.agent_available(agent).addErrback(_refused, agent)
        await _sleep_until(time.time() + 2.0)
        notes = await browser.do(lambda: page_box[0].evaluate("() => window.__bench")).asFuture(
            loop
        )
    finally:
        await browser.do(_close, page_box).asFuture(loop)
        browser.close()
        await app.stop().asFuture(loop)
        simulator.stopListening()
    return _match(sent, notes, queues=queues, agents=agents, changes=len(sent), rate=rate)


def _match(
    sent: Sequence[tuple[str, str, float]], notes: dict[str, Any], **shape: Any
) -> Result:
    """Each change's first note on the page (same agent, the state's text, after it)."""
    by_agent: dict[str, list[dict[str, Any]]] = {}
    for note in notes["notes"]:
        by_agent.setdefault(note["agent"], []).append(note)
    dom: list[float] = []
    paint: list[float] = []
    missing = 0
    used: set[int] = set()
    for agent, text, at in sent:
        found = next(
            (n for n in by_agent.get(agent, ())
             if id(n) not in used and n["state"] == text and n["dom"] >= at * 1000 - 1),
            None,
        )  # fmt: skip
        if found is None:
            missing += 1
            continue
        used.add(id(found))
        dom.append(found["dom"] - at * 1000)
        if found["paint"] is not None:
            paint.append(found["paint"] - at * 1000)
    churn = notes["churn"]
    return Result(
        dom=dom, paint=paint, missing=missing, long_tasks=list(notes["long"]),
        rows_added=churn["added"], rows_removed=churn["removed"], **shape,
    )  # fmt: skip


def _close(pages: list[Any]) -> None:
    for page in pages:
        page.context.close()


def _refused(failure: Any, agent: str) -> None:
    logging.getLogger(__name__).warning("agent %s: %s", agent, failure.getErrorMessage())


async def _until(predicate: Any, timeout: float) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise RuntimeError("the ACD did not log every agent in")
        await asyncio.sleep(0.1)


async def _sleep_until(at: float) -> None:
    await asyncio.sleep(max(0.0, at - time.time()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=20.0, help="state changes a second")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when p99 >= 200 ms")
    args = parser.parse_args(argv)
    if not 1 <= args.agents <= 1000:
        parser.error("--agents: 1 to 1000 (the simulator's agent extensions are 6000-6999)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory(prefix="bench-wallboard-") as folder:
        result = on_reactor(lambda reactor: measure(
            reactor, Path(folder), queues=args.queues, agents=args.agents,
            changes=args.changes, rate=args.rate, seed=args.seed,
        ))  # fmt: skip
    print(result.summary())
    if args.json:
        print(json.dumps(result.__dict__))
    return 1 if args.check and result.p99() >= 200 else 0


if __name__ == "__main__":
    sys.exit(main())
