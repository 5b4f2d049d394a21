"""The simulator over real loopback TCP, against the independent ``asterisk-ami`` client
and raw sockets. Clients run in threads (blocking sockets) while the reactor serves."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet import protocol, threads
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IListeningPort, ITCPTransport

from pbx_simulator import Settings, serve


@pytest.fixture
def port(reactor: Any) -> Any:
    listening = serve(reactor, Settings(port=0))
    yield _port(listening)
    listening.stopListening()


def _raw(port: int, payload: bytes, wait_for: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        got = b""
        sock.sendall(payload)
        deadline = time.monotonic() + timeout
        while wait_for not in got and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_raw_login_ping(port: int, run: Callable[..., Any]) -> None:
    got = run(
        threads.deferToThread(
            _raw,
            port,
            b"Action: Ping\r\nActionID: p0\r\n\r\n"
            b"Action: Login\r\nUsername: cti\r\nSecret: ctilab-secret\r\n\r\n"
            b"Action: Ping\r\nActionID: p1\r\n\r\n",
            b"Ping: Pong",
        )
    )
    assert got.startswith(
        b"Asterisk Call Manager/11.0.0\r\nResponse: Error\r\nActionID: p0\r\n"
        b"Message: Permission denied\r\n\r\n"
    )
    assert b"Authentication accepted" in got and b"ActionID: p1\r\nPing: Pong" in got


def test_raw_wrong_secret_is_closed(port: int, run: Callable[..., Any]) -> None:
    def login() -> tuple[bytes, float]:
        start = time.monotonic()
        got = _raw(port, b"Action: Login\r\nUsername: cti\r\nSecret: nope\r\n\r\n", b"\x00")
        return got, time.monotonic() - start

    got, took = run(threads.deferToThread(login))
    assert got.endswith(b"Response: Error\r\nMessage: Authentication failed\r\n\r\n")
    assert 0.8 < took < 4  # answered after ~1 s, then the server closed the socket


def test_malformed_input_gets_an_error(port: int, run: Callable[..., Any]) -> None:
    got = run(threads.deferToThread(_raw, port, b"garbage line\r\n\r\n", b"Missing action"))
    assert b"Response: Error\r\nMessage: Missing action in request" in got


def test_asterisk_ami_client_receives_events(port: int, run: Callable[..., Any]) -> None:
    from asterisk.ami import AMIClient, SimpleAction

    received: list[str] = []
    done = threading.Event()

    def listener(event: Any, **kwargs: Any) -> None:
        received.append(event.name)
        if event.name == "QueueCallerJoin":
            done.set()

    def session() -> tuple[str, str]:
        client = AMIClient(address="127.0.0.1", port=port, timeout=3)
        login = client.login(username="cti", secret="ctilab-secret").response
        client.add_event_listener(listener)
        origin = client.send_action(
            SimpleAction(
                "Originate",
                Channel="Local/5000@inbound",
                Context="caller-script",
                Exten="stay",
                Priority="1",
                Async="true",
                CallerID="Zoë Müller <+4930123456>",
            )
        ).response
        done.wait(3)
        client.logoff()
        return login.status, origin.status

    assert run(threads.deferToThread(session), timeout=15) == ("Success", "Success")
    assert {"Newchannel", "Newexten", "QueueCallerJoin"} <= set(received)


def _port(listening: IListeningPort) -> int:
    address = listening.getHost()
    assert isinstance(address, IPv4Address)
    return address.port


class _FastAgiServer(protocol.Protocol):
    """Reads the environment, sets CTI_ROUTE, hangs up (the 09 script, shortened)."""

    factory: _FastAgiFactory
    transport: ITCPTransport

    def connectionMade(self) -> None:
        self.buffer = b""
        self.factory.environments.append(b"")

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if b"\n\n" in self.buffer and not hasattr(self, "sent"):
            self.factory.environments[-1] = self.buffer
            self.sent = True
            self.transport.write(b"SET VARIABLE CTI_ROUTE support\n")
        elif self.buffer.endswith(b"200 result=1\n"):
            self.transport.loseConnection()


class _FastAgiFactory(protocol.ServerFactory[_FastAgiServer]):
    protocol = _FastAgiServer

    def __init__(self) -> None:
        self.environments: list[bytes] = []


def _fastagi_call(reactor: Any, run: Callable[..., Any], agi_port: int) -> str:
    """Place a 5004 call whose AGI script lives at ``agi_port``; the queue it reaches."""
    from dataclasses import replace

    from pbx_simulator.settings import Route

    settings = Settings(port=0)
    url = f"agi://127.0.0.1:{agi_port}/lab-route"
    settings = replace(settings, dids={**settings.dids, "5004": Route("fastagi", "sales", url)})
    listening = serve(reactor, settings)

    def session() -> bytes:
        with socket.create_connection(("127.0.0.1", _port(listening)), timeout=5) as s:
            s.sendall(
                b"Action: Login\r\nUsername: cti\r\nSecret: ctilab-secret\r\n\r\n"
                b"Action: Originate\r\nChannel: Local/5004@inbound\r\nContext: caller-script\r\n"
                b"Exten: stay\r\nPriority: 1\r\nAsync: true\r\n\r\n"
            )
            got, deadline = b"", time.monotonic() + 5
            while b"Event: QueueCallerJoin" not in got and time.monotonic() < deadline:
                got += s.recv(65536)
            return got

    try:
        got = run(threads.deferToThread(session), timeout=10)
    finally:
        listening.stopListening()
    join = got[got.index(b"Event: QueueCallerJoin") :]
    return join.split(b"Queue: ")[1].split(b"\r\n")[0].decode()


def test_fastagi_over_tcp(reactor: Any, run: Callable[..., Any]) -> None:
    factory = _FastAgiFactory()
    agi = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        assert _fastagi_call(reactor, run, agi.getHost().port) == "support"
    finally:
        agi.stopListening()
    assert b"agi_network_script: lab-route\n" in factory.environments[0]


def test_fastagi_server_down_continues_to_the_queue(reactor: Any, run: Callable[..., Any]) -> None:
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert _fastagi_call(reactor, run, port) == "sales"
