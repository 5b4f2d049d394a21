"""How a benchmark's world process starts: the child that plays the PBX (and, for some, the
agents' browsers) around a backend measured alone in the parent's process
(:mod:`bench.screen_pop_world`, :mod:`bench.ivr_world`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: A world's body: the reactor and the parent's spec in, done when the parent is.
Live = Callable[[Any, dict[str, Any]], Awaitable[None]]


def run_world(live: Live, description: str, argv: list[str] | None = None) -> int:
    """Read the parent's SPEC.json (the one argument), then run ``live`` on Twisted's
    asyncio reactor, installed on a fresh loop, until it returns."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("spec", type=Path, help="the parent's SPEC.json")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    logging.basicConfig(level=logging.WARNING, format="world %(levelname)s %(name)s: %(message)s")

    on_reactor(lambda reactor: live(reactor, spec))
    return 0


def on_reactor(body: Callable[[Any], Awaitable[T]]) -> T:
    """``body(reactor)`` run to its end on Twisted's asyncio reactor, installed on a fresh
    loop (as ``callcenter run`` runs the backend); the reactor's shutdown after it."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)
    from twisted.internet import reactor

    reactor.startRunning(installSignalHandlers=False)  # type: ignore[attr-defined]
    try:
        return loop.run_until_complete(body(reactor))
    finally:
        reactor.fireSystemEvent("shutdown")
