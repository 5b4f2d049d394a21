"""The Twisted shell: a TCP server speaking AMI, a clock driving the core's timers, and
the FastAGI client connections the dialplan's ``AGI(agi://...)`` opens."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet import protocol
from twisted.internet.interfaces import IConnector, IDelayedCall, IListeningPort, ITCPTransport

from cti.ami.codec import Message, Parser, encode

from .engine import FastAgiCall
from .manager import Close, ManagerCore, Output, Send
from .settings import Settings
from .traffic import TrafficGenerator

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


class Reactor(Protocol):
    """What the simulator uses of a reactor: IReactorTime and IReactorTCP together (as
    Twisted's reactors provide them; a zope interface cannot say "both" to mypy)."""

    def seconds(self) -> float: ...

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kw: object
    ) -> IDelayedCall: ...

    def connectTCP(
        self, host: str, port: int, factory: protocol.ClientFactory[Any], timeout: float = ...
    ) -> IConnector: ...

    def listenTCP(
        self, port: int, factory: protocol.ServerFactory[Any], backlog: int = ...,
        interface: str = ...,
    ) -> IListeningPort: ...


#: Bytes handed to the kernel per write attempt (Twisted's default: 128 KB).
SEND_LIMIT = 1 << 26


def unread(transport: Any) -> int:
    """Bytes written to ``transport`` that the kernel has not taken yet. Twisted keeps the
    length of its list of pending writes: summing the list on every frame made a backlog
    quadratic (bench/screen_pop.py at 50 calls/s)."""
    taken = getattr(transport, "offset", 0)
    held = len(getattr(transport, "dataBuffer", b"")) + getattr(transport, "_tempDataLen", 0)
    return held - taken


class AmiServerProtocol(protocol.Protocol):
    """One AMI connection: bytes -> actions -> core; outputs -> bytes."""

    factory: AmiServerFactory
    transport: ITCPTransport
    session: int | None = None

    def connectionMade(self) -> None:
        self.parser = Parser(expect_banner=False)
        #: Whether this client was dropped for not reading (nothing is written after).
        self.dropped = False
        # All the kernel takes at each write, not Twisted's 128 KB a loop turn.
        self.transport.SEND_LIMIT = SEND_LIMIT  # type: ignore[attr-defined]
        self.transport.write(BANNER)
        peer = self.transport.getPeer()
        self.session = self.factory.open(
            self, f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', 0)}"
        )

    def dataReceived(self, data: bytes) -> None:
        for message in self.parser.feed(data):
            if self.session is None:
                return
            self.factory.receive(self.session, message)

    def connectionLost(self, reason: object = None) -> None:
        if self.session is not None:
            self.factory.close(self.session)
            self.session = None

    def send(self, frame: bytes) -> None:
        transport = self.transport
        if self.dropped:
            return
        transport.write(frame)
        # Asterisk drops a client that stops reading (writetimeout); bound the backlog. Its
        # write goes straight to the socket and blocks before it gives up, so only what the
        # kernel refuses is unread: hand the kernel what it takes now before judging.
        # Twisted writes between loop turns only, and counting its buffer (the part already
        # sent too) dropped a backend that was waiting for data (bench.ivr, 1,000 calls).
        limit = self.factory.settings.max_write_buffer
        if unread(transport) > limit:
            transport.doWrite()  # type: ignore[attr-defined]
            if unread(transport) > limit:
                log.warning("AMI client %s does not read: disconnecting", self.session)
                self.dropped = True
                transport.abortConnection()


class FastAgiClientProtocol(protocol.Protocol):
    """Asterisk's side of a FastAGI connection: bytes to and from the core's call."""

    factory: FastAgiClientFactory
    transport: ITCPTransport

    def connectionMade(self) -> None:
        call, transport = self.factory.call, self.transport
        self.factory.drive(lambda: call.connected(transport.write, transport.loseConnection))

    def dataReceived(self, data: bytes) -> None:
        self.factory.drive(lambda: self.factory.call.received(data))

    def connectionLost(self, reason: object = None) -> None:
        self.factory.drive(self.factory.call.closed)


class FastAgiClientFactory(protocol.ClientFactory[FastAgiClientProtocol]):
    protocol = FastAgiClientProtocol

    def __init__(self, call: FastAgiCall, drive: Callable[[Callable[[], None]], None]) -> None:
        self.call = call
        self.drive = drive

    def clientConnectionFailed(self, connector: object, reason: object) -> None:
        self.drive(self.call.failed)


class AmiServerFactory(protocol.ServerFactory[AmiServerProtocol]):
    protocol = AmiServerProtocol

    def __init__(self, reactor: Reactor, settings: Settings) -> None:
        self.reactor = reactor
        self.settings = settings
        self.core = ManagerCore(settings, now=reactor.seconds(), rng=random.Random(settings.seed))
        self.connections: dict[int, AmiServerProtocol] = {}
        self._timer: IDelayedCall | None = None
        self.core.pbx.fastagi_connector = self._connect_fastagi
        self.traffic: TrafficGenerator | None = None
        if settings.traffic.enabled:
            self.traffic = TrafficGenerator(
                self.core, settings.traffic, random.Random(settings.seed + 1)
            )
            self.traffic.start()
            self._reschedule()

    def open(self, conn: AmiServerProtocol, peer: str) -> int:
        sid = self.core.connect(self.reactor.seconds(), peer)
        self.connections[sid] = conn
        return sid

    def close(self, sid: int) -> None:
        self.connections.pop(sid, None)
        self.core.disconnect(sid)

    def receive(self, sid: int, message: Message) -> None:
        try:
            outputs = self.core.receive(sid, message, self.reactor.seconds())
        except Exception:  # a bug in the simulator must not take the server down
            log.exception("PBX simulator failed on an action")
            outputs = [Send(sid, [("Response", "Error"), ("Message", "Internal simulator error")])]
        self._deliver(outputs)

    def _connect_fastagi(self, call: FastAgiCall) -> None:
        factory = FastAgiClientFactory(call, self._drive)
        self.reactor.connectTCP(call.host, call.port, factory, timeout=5)

    def inside(self, fn: Callable[[], None]) -> None:
        """Make something happen in the PBX that no AMI action asked for (a call from a
        trunk, an operator's console): ``fn`` runs in the core, its events are delivered."""
        self._drive(fn)

    def _drive(self, fn: Callable[[], None]) -> None:
        """Run an I/O callback in the core, then deliver what it produced."""
        try:
            outputs = self.core.run(self.reactor.seconds(), fn)
        except Exception:
            log.exception("PBX simulator failed on FastAGI input")
            outputs = []
        self._deliver(outputs)

    def _tick(self) -> None:
        self._timer = None
        try:
            outputs = self.core.advance(self.reactor.seconds())
        except Exception:
            log.exception("PBX simulator failed in a timer")
            outputs = []
        self._deliver(outputs)

    def _deliver(self, outputs: list[Output]) -> None:
        for out in outputs:
            conn = self.connections.get(out.session)
            if conn is None:
                continue
            if isinstance(out, Send):
                conn.send(encode(out.headers))
            elif isinstance(out, Close):
                self.connections.pop(out.session, None)
                self.core.disconnect(out.session)
                conn.session = None
                conn.transport.loseConnection()
        self._reschedule()

    def _reschedule(self) -> None:
        due = self.core.next_deadline()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if due is not None:
            self._timer = self.reactor.callLater(max(0.0, due - self.reactor.seconds()), self._tick)

    def stopFactory(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


def serve(reactor: Reactor, settings: Settings | None = None) -> IListeningPort:
    """Listen for AMI clients on ``settings.host:settings.port`` (0 = ephemeral; read the
    port back with ``port.getHost().port``). ``reactor`` must also provide IReactorTime."""
    settings = settings or Settings()
    factory = AmiServerFactory(reactor, settings)
    return reactor.listenTCP(settings.port, factory, interface=settings.host)
