"""AmiClient over real loopback TCP against small scripted AMI servers.

The reactor is the shared asyncio reactor of ``tests/conftest.py``; each test drives it with
the ``run`` fixture (run until a Deferred/coroutine completes, with a timeout). Servers:

* :class:`FakeAmi` answers Login (plain/MD5), Ping and EventList actions like Asterisk 22 and
  refuses a wrong secret the way 11-acd-failures shows (Error after a delay, then closes);
* :class:`Replay08` replays the server side of the 08-reconnect capture: the first session
  is dropped mid-call, the second answers the resync with the recorded lists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import resource
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Protocol, ServerFactory

from cti.ami.client import (
    AmiClient,
    AmiClientSettings,
    AmiConnectionLost,
    LinkChange,
    LinkState,
)
from cti.ami.codec import Message, Parser, encode
from tests.captures import captures_dir
from tests.conftest import sleep

SECRET = "ctilab-secret"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
Frame = list[tuple[str, str]]


class Recorder:
    """Consumer writing down what it gets; ``slow`` makes every event take a reactor turn."""

    def __init__(self, reactor: Any = None, slow: bool = False) -> None:
        self.feed: list[tuple[str, Any]] = []
        self.links: list[LinkChange] = []
        self.reactor = reactor
        self.slow = slow
        self.events = 0
        self.out_of_order = 0

    def on_message(self, message: Message) -> Deferred[None] | None:
        if not self.slow or message.name != "Tick":
            self.feed.append(("event", message.name))
            return None
        if int(message.get("Seq", "-1") or -1) != self.events:
            self.out_of_order += 1
        self.events += 1
        d: Deferred[None] = Deferred()
        self.reactor.callLater(0, d.callback, None)
        return d

    def on_resync(self, results: dict[str, list[Message]], now: float) -> None:
        self.feed.append(("resync", {k: [m.name for m in v] for k, v in results.items()}))

    def on_link(self, change: LinkChange) -> None:
        self.links.append(change)


class ServerSession(Protocol):
    """One accepted connection; the factory decides what to answer."""

    factory: ScriptedServer
    transport: ITCPTransport

    def connectionMade(self) -> None:
        self.parser = Parser(expect_banner=False)
        self.factory.sessions.append(self)
        self.transport.write(BANNER)

    def dataReceived(self, data: bytes) -> None:
        for action in self.parser.feed(data):
            self.factory.handle(self, action)

    def send(self, *frames: Frame) -> None:
        self.transport.write(b"".join(encode(f) for f in frames))

    def respond(self, action: Message, status: str, *extra: tuple[str, str]) -> None:
        self.send([("Response", status), ("ActionID", action.action_id or ""), *extra])


class ScriptedServer(ServerFactory[ServerSession]):
    protocol = ServerSession

    def __init__(self) -> None:
        self.sessions: list[ServerSession] = []

    def handle(self, session: ServerSession, action: Message) -> None:
        raise NotImplementedError


class FakeAmi(ScriptedServer):
    """Answers like Asterisk 22 (see ami-captures); ``after_resync`` runs once the client's
    last resync list has been answered."""

    def __init__(self, reactor: Any, secret: str = SECRET) -> None:
        super().__init__()
        self.reactor = reactor
        self.secret = secret
        self.login_times: list[float] = []
        self.lists: dict[str, list[Frame]] = {}
        self.after_resync: Callable[[ServerSession], None] | None = None
        self._challenge = "4711"

    def handle(self, session: ServerSession, action: Message) -> None:
        name = action.name.lower()
        if name == "challenge":
            session.respond(action, "Success", ("Challenge", self._challenge))
        elif name == "login":
            self.login_times.append(self.reactor.seconds())
            if action.get("AuthType") == "md5":
                ok = action.get("Key") == hashlib.md5(
                    (self._challenge + self.secret).encode()).hexdigest()
            else:
                ok = action.get("Secret") == self.secret
            if ok:
                session.respond(action, "Success", ("Message", "Authentication accepted"))
                session.send([("Event", "FullyBooted"), ("Status", "Fully Booted")])
            else:
                # Asterisk answers a bad login after about a second, then hangs up.
                def refuse() -> None:
                    session.respond(action, "Error", ("Message", "Authentication failed"))
                    session.transport.loseConnection()

                self.reactor.callLater(0.03, refuse)
        elif name == "ping":
            session.respond(action, "Success", ("Ping", "Pong"))
        elif name in ("coreshowchannels", "bridgelist", "queuestatus", "status"):
            aid = action.action_id or ""
            items = self.lists.get(action.name, [])
            session.respond(action, "Success", ("EventList", "start"))
            session.send(*([f[0], ("ActionID", aid), *f[1:]] for f in items))
            session.send([("Event", f"{action.name}Complete"), ("ActionID", aid),
                          ("EventList", "Complete"), ("ListItems", str(len(items)))])
            if name == "status" and self.after_resync is not None:
                self.after_resync(session)
        else:
            session.respond(action, "Error", ("Message", f"Invalid/unknown command: {action.name}"))


@pytest.fixture
def tcp(reactor: Any, run: Callable[..., Any]) -> Iterator[Callable[..., AmiClient]]:
    """``tcp(server, consumer, **settings)`` -> a started client connected to ``server``
    on an ephemeral loopback port; everything is stopped after the test."""
    cleanup: list[Callable[[], Any]] = []

    def start(server: ScriptedServer, consumer: Recorder, **overrides: Any) -> AmiClient:
        port = reactor.listenTCP(0, server, interface="127.0.0.1")
        cleanup.append(port.stopListening)
        options: dict[str, Any] = {
            "host": "127.0.0.1", "port": port.getHost().port, "username": "cti",
            "secret": SECRET, "action_timeout": 2.0, "ping_interval": 5.0,
            "reconnect_min_delay": 0.05, "reconnect_max_delay": 0.2,
        }
        options.update(overrides)
        # The middle of the jitter: each reconnect waits exactly the backoff.
        client = AmiClient(AmiClientSettings(**options), consumer, reactor=reactor,
                           random=lambda: 0.5)
        cleanup.append(client.stop)
        client.start()
        return client

    yield start
    for stop in reversed(cleanup):
        run(stop())
    run(sleep(0.01))  # let the last close notifications run


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await sleep(0.01)
    raise AssertionError("condition not reached in time")


def test_wrong_secret_is_refused_retried_with_backoff_then_fixed(
    tcp: Callable[..., AmiClient], reactor: Any, run: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = FakeAmi(reactor, secret="rotated-secret")
    consumer = Recorder()
    client = tcp(server, consumer, auth="md5")
    run(wait_for(lambda: len(server.login_times) >= 4))
    gaps = [b - a for a, b in zip(server.login_times, server.login_times[1:], strict=False)]
    # Each retry waits the backoff (0.05, 0.1, 0.2 s) on top of the server's 0.03 s refusal.
    for gap, delay in zip(gaps, [0.05, 0.1, 0.2], strict=False):
        assert gap >= delay + 0.03 - 0.005
    assert "refused by the server: Authentication failed" in caplog.text
    server.secret = SECRET
    run(client.when_ready())
    assert client.state is LinkState.READY
    assert SECRET not in caplog.text and "rotated-secret" not in caplog.text


def test_unknown_action_fails_and_ping_works(
    tcp: Callable[..., AmiClient], reactor: Any, run: Callable[..., Any],
) -> None:
    server = FakeAmi(reactor)
    server.lists["CoreShowChannels"] = [[("Event", "CoreShowChannel"), ("Channel", "Local/1;2")]]
    consumer = Recorder()
    client = tcp(server, consumer)
    run(client.when_ready())
    assert consumer.feed[0] == ("resync", {"CoreShowChannels": ["CoreShowChannel"],
                                           "BridgeList": [], "QueueStatus": [], "Status": []})
    assert run(client.send_action("Ping")).get("Ping") == "Pong"
    with pytest.raises(Exception, match="Invalid/unknown command: NoSuchAction"):
        run(client.send_action("NoSuchAction"))


@pytest.mark.parametrize("close", ["half-close", "close"])
def test_server_closing_mid_frame_is_logged_then_the_client_reconnects_and_resyncs(
    tcp: Callable[..., AmiClient], reactor: Any, run: Callable[..., Any],
    caplog: pytest.LogCaptureFixture, close: str,
) -> None:
    server = FakeAmi(reactor)

    def cut(session: ServerSession) -> None:
        if len(server.sessions) > 1:
            session.send([("Event", "Newchannel"), ("Uniqueid", "2.1")])
            return
        session.transport.write(b"Event: Hangup\r\nUniqueid: 1.1\r\nChannel: Local/1@x-")
        if close == "half-close":
            session.transport.loseWriteConnection()  # FIN, still reading
        else:
            session.transport.loseConnection()

    server.after_resync = cut
    consumer = Recorder()
    caplog.set_level(logging.INFO)
    client = tcp(server, consumer)
    run(wait_for(lambda: ("event", "Newchannel") in consumer.feed))
    assert len(server.sessions) == 2 and client.state is LinkState.READY
    connection = f"AMI#1 127.0.0.1:{client.settings.port}"
    [warning] = [r.getMessage() for r in caplog.records if "incomplete frame" in r.getMessage()]
    assert warning.startswith(f"{connection}: incomplete frame at close at byte ")
    assert "Event: Hangup | Uniqueid: 1.1 | Channel: Local/1@x-" in warning
    assert [c.state for c in consumer.links].count(LinkState.DISCONNECTED) == 1
    lost = next(c for c in consumer.links if c.state is LinkState.DISCONNECTED)
    assert lost.connection == connection and "closed by the server" in (lost.reason or "")
    # The partial frame was never delivered; the second session resynced before its events.
    empty: dict[str, list[str]] = {k: [] for k in Replay08.RESYNC}
    assert consumer.feed == [("resync", empty), ("event", "FullyBooted"),
                             ("resync", empty), ("event", "FullyBooted"), ("event", "Newchannel")]


# -- 08-reconnect replayed ------------------------------------------------------------------


def _records() -> list[dict[str, Any]]:
    path = captures_dir() / "08-reconnect.jsonl"
    return [json.loads(line) for line in path.open(encoding="utf-8")]


class Replay08(ScriptedServer):
    """The Asterisk side of 08-reconnect, answering the client's own ActionIDs.

    Session 1: login, then (when the client sends its first action after the resync) the
    call's events, then an abrupt close. Session 2: login, the recorded resync lists, then
    the events that followed in the recording.
    """

    RESYNC = ("CoreShowChannels", "BridgeList", "QueueStatus", "Status")

    def __init__(self) -> None:
        super().__init__()
        self.records = _records()

    def _conn(self, n: int) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("conn") == n and "headers" in r]

    def _answer(self, conn: int, name: str) -> tuple[str, list[Frame]] | None:
        """The recorded ActionID of ``name`` and the frames answering it."""
        recs = self._conn(conn)
        for i, r in enumerate(recs):
            if r["dir"] == "out" and r["name"] == name:
                aid = dict(r["headers"])["ActionID"]
                frames = [rec["headers"] for rec in recs[i + 1 :]
                          if rec["dir"] == "in" and dict(rec["headers"]).get("ActionID") == aid]
                return aid, frames
        return None

    def login_events(self, conn: int) -> list[Frame]:
        """Events between the Login response and the driver's next action."""
        recs = self._conn(conn)
        start = next(i for i, r in enumerate(recs) if r["dir"] == "out" and r["name"] == "Login")
        out = []
        for r in recs[start + 2 :]:
            if r["dir"] == "out":
                break
            out.append(r["headers"])
        return out

    def tail(self, conn: int) -> list[Frame]:
        """Live events after the session's last replayed action (list items excluded)."""
        recs = self._conn(conn)
        last = max(i for i, r in enumerate(recs) if r["dir"] == "out"
                   and r["name"] in ("Login", "Originate", *self.RESYNC))
        list_ids = {dict(r["headers"]).get("ActionID") for r in recs
                    if r["dir"] == "in" and dict(r["headers"]).get("EventList") == "start"}
        return [r["headers"] for r in recs[last + 1 :] if r["dir"] == "in"
                and r["kind"] == "event" and dict(r["headers"]).get("ActionID") not in list_ids]

    def handle(self, session: ServerSession, action: Message) -> None:
        conn = len(self.sessions)
        recorded = self._answer(conn, action.name)
        if action.name not in ("Login", *self.RESYNC):
            # Session 1's mid-call drop: the call's events, then the socket closes (no
            # Logoff; loseConnection rather than abort so the events are flushed first).
            session.send(*self.tail(conn))
            session.transport.loseConnection()
            return
        if recorded is None:  # session 1 did no resync: empty lists
            aid = action.action_id or ""
            session.respond(action, "Success", ("EventList", "start"))
            session.send([("Event", f"{action.name}Complete"), ("ActionID", aid),
                          ("EventList", "Complete"), ("ListItems", "0")])
            return
        old_id, frames = recorded
        mine = action.action_id or ""
        session.send(*([(k, mine if k == "ActionID" and v == old_id else v) for k, v in f]
                       for f in frames))
        if action.name == "Login":
            session.send(*self.login_events(conn))
        elif action.name == "Status" and conn == 2:
            session.send(*self.tail(conn))


def test_replay_08_reconnect_drop_mid_call_then_resync_before_live_events(
    tcp: Callable[..., AmiClient], run: Callable[..., Any],
) -> None:
    server = Replay08()
    consumer = Recorder()
    client = tcp(server, consumer)
    run(client.when_ready())
    pending = client.send_action("Hangup", {"Channel": "Local/5000@inbound-00000015;1"})
    with pytest.raises(AmiConnectionLost):
        run(pending)  # the server dropped the link: pending actions fail, never hang
    run(wait_for(lambda: sum(1 for k, _ in consumer.feed if k == "resync") == 2))
    run(wait_for(lambda: len(consumer.feed) == len(expected_feed(server))))
    assert consumer.feed == expected_feed(server)
    up = [LinkState.CONNECTED, LinkState.LOGGED_IN, LinkState.READY]
    assert [c.state for c in consumer.links] == [*up, LinkState.DISCONNECTED, *up]


def expected_feed(server: Replay08) -> list[tuple[str, Any]]:
    """Session 1: empty resync, its login events, the call; session 2: the recorded resync
    lists, then the events held during it, then the rest of the recording."""
    feed: list[tuple[str, Any]] = [("resync", {k: [] for k in Replay08.RESYNC})]
    feed += [("event", f[0][1]) for f in server.login_events(1) + server.tail(1)]
    lists = {}
    for name in Replay08.RESYNC:
        recorded = server._answer(2, name)
        assert recorded is not None
        lists[name] = [f[0][1] for f in recorded[1]
                       if f[0][0] == "Event" and dict(f).get("EventList") != "Complete"]
    feed.append(("resync", lists))
    feed += [("event", f[0][1]) for f in server.login_events(2) + server.tail(2)]
    return feed


# -- backpressure, measured -----------------------------------------------------------------


def _rss_kib() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() // 1024


def test_fast_server_slow_consumer_stays_bounded_and_loses_nothing(
    tcp: Callable[..., AmiClient], reactor: Any, run: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    count, high_water = 200_000, 1_000
    rss_before = _rss_kib()
    frames = b"".join(encode([("Event", "Tick"), ("Seq", str(i))]) for i in range(count))
    server = FakeAmi(reactor)
    server.after_resync = lambda session: session.transport.write(frames)
    consumer = Recorder(reactor, slow=True)
    client = tcp(server, consumer, max_pending_events=high_water, action_timeout=30.0)
    t0 = reactor.seconds()
    peak = [rss_before]

    def done() -> bool:  # polled every 10 ms: also samples the RSS while the events flow
        peak[0] = max(peak[0], _rss_kib())
        return consumer.events == count

    run(wait_for(done, timeout=30.0), timeout=40.0)
    elapsed = reactor.seconds() - t0
    sub = client.subscription
    # One socket read is at most 64 KiB; the smallest frame is "Event: Tick\r\nSeq: 0\r\n\r\n".
    per_read = 65_536 // len(encode([("Event", "Tick"), ("Seq", "0")])) + 1
    assert consumer.out_of_order == 0
    assert sub.peak_pending <= high_water + per_read
    assert sub.failures == 0
    rss_after = _rss_kib()
    with capsys.disabled():
        print(f"\n[ami backpressure] {count} events, {len(frames)} bytes in {elapsed:.2f} s; "
              f"high-water {high_water}, peak pending {sub.peak_pending} "
              f"(bound {high_water + per_read}); RSS {rss_before} -> {rss_after} KiB "
              f"(peak {peak[0]})")
    # Measured: ~13 MB at the peak, the frames (5.5 MB, and the server's buffer of them)
    # included; with backpressure off the peak grows by ~180 MB.
    assert peak[0] - rss_before < 40 * 1024
