"""The simulator over real loopback TCP, against the independent ``asterisk-ami`` client
and raw sockets. Clients run in threads (blocking sockets) while the reactor serves."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet import threads

from pbx_simulator import Settings, serve


@pytest.fixture
def port(reactor: Any) -> Any:
    listening = serve(reactor, Settings(port=0))
    yield listening.getHost().port
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
