"""Shared pieces of the end-to-end tests: the PBX simulator on an ephemeral port, a backend
attached to it, callers scripted as the recordings' driver scripted them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import websockets

import pbx_simulator
from acd.events import AcdEvent
from callcenter.app import CallCenter
from callcenter.settings import load_settings
from cti.ami.codec import Message
from cti.calls.events import CallEvent
from pbx_simulator.traffic import caller_originate
from tests.conftest import sleep

USER, SECRET = "cti", "s3cret"


class Backend(CallCenter):
    """A backend as the tests watch it: what it published, noted by start_backend and the
    tests that ask for more (``acd_seen``, ``contexts``)."""

    seen: list[CallEvent]
    devices: list[Any]
    acd_seen: list[AcdEvent]
    contexts: set[str | None]


def start_simulator(reactor: Any, **overrides: Any) -> Any:
    """The simulator listening on a free loopback port (``port.factory.core`` is its PBX)."""
    settings = pbx_simulator.Settings(port=0, username=USER, secret=SECRET, seed=7, **overrides)
    return pbx_simulator.serve(reactor, settings)


def start_backend(
    reactor: Any,
    run: Callable[..., Any],
    simulator: Any,
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
) -> Backend:
    """A backend on SQLite in ``tmp_path``, logged in to ``simulator``; ``app.seen`` lists
    its call events, ``app.devices`` the rest of the stream (device states, leg outcomes)."""
    settings = load_settings(
        None,
        {
            "CALLCENTER_AMI__PORT": str(simulator.getHost().port),
            "CALLCENTER_AMI__USERNAME": USER,
            "CALLCENTER_AMI__SECRET": SECRET,
            "CALLCENTER_AMI__RECONNECT__MIN_DELAY": "0.1",
            "CALLCENTER_DATABASE__URL": f"sqlite:///{tmp_path / 'cc.sqlite3'}",
            "CALLCENTER_HTTP__PORT": "0",  # the agent API on a free port, never a fixed one
            **(env or {}),
        },
    )
    app = Backend(settings, reactor)
    app.seen = []
    app.devices = []

    def watch(event: Any) -> None:
        (app.seen if isinstance(event, CallEvent) else app.devices).append(event)

    app.watch(watch, "test")
    app.start()
    run(app.ami.when_ready())
    return app


async def until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait (the reactor running) until ``predicate()`` holds; fail after ``timeout``."""
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            raise AssertionError("condition not reached in time")
        await sleep(0.05)
        waited += 0.05


def caller(
    number: str, name: str, did: str, talk: float, keys: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    """An Originate as the lab's driver sends it: the ;1 half scripts the human caller,
    who hangs up after ``talk`` seconds, pressing ``keys`` (menu, then more) first."""
    variables = [("Variable", f"LAB_WAIT={talk}")]
    for n, key in enumerate(keys, 1):
        variables += [("Variable", f"LAB_DELAY{n}=1.5"), ("Variable", f"LAB_DTMF{n}={key}")]
    exten = "dtmf" if keys else "hangup-after"
    return caller_originate(did, f"{name} <{number}>", exten, variables)


def originate_inside(simulator: Any, fields: list[tuple[str, str]]) -> None:
    """A call the PBX starts by itself (nobody's AMI action), e.g. during an AMI outage."""
    core = simulator.factory.core
    simulator.factory.inside(lambda: core.originate(Message([("Action", "Originate"), *fields])))


class PopClient:
    """One agent's pop feed, as a page would hold it."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.messages: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async with websockets.connect(self.url) as socket:
            await socket.send(json.dumps({"token": self.token}))
            try:
                async for raw in socket:
                    self.messages.append(json.loads(raw))
            except websockets.ConnectionClosed:
                pass
            self.close_code = socket.close_code

    @property
    def pops(self) -> list[dict[str, Any]]:
        return [m["pop"] for m in self.messages if m["type"] == "pop"]

    def kinds(self) -> list[str]:
        return [p["kind"] for p in self.pops]

    def stop(self) -> None:
        self.task.cancel()
