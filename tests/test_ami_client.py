"""AmiClient on a fake clock and in-memory transports: exact timeouts, keepalive, backoff.

``MemoryReactorClock`` records each connection attempt; the test builds the protocol from
the recorded factory, hands it a ``StringTransport``, reads what the client wrote and feeds
it Asterisk's answers (shapes taken from the 22.10.1 captures).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from cti.ami.client import (
    MIN_RECONNECT_DELAY,
    ActionFailed,
    ActionTimeout,
    AmiClient,
    AmiClientSettings,
    AmiConnectionLost,
    LinkChange,
    LinkState,
    ListResult,
    reconnect_delay,
)
from cti.ami.codec import Message, Parser, encode
from cti.stream import EventStream

SECRET = "ctilab-secret"
RESYNC = ["CoreShowChannels", "BridgeList", "QueueStatus", "Status"]


class Recorder:
    """A consumer that writes down everything, in order."""

    def __init__(self) -> None:
        self.feed: list[tuple[str, Any]] = []
        self.links: list[LinkChange] = []
        self.reply: Deferred[None] | None = None

    def on_message(self, message: Message) -> Deferred[None] | None:
        self.feed.append(("event", message.name))
        return self.reply

    def on_resync(self, results: dict[str, list[Message]], now: float) -> None:
        self.feed.append(("resync", {k: [m.name for m in v] for k, v in results.items()}))

    def on_link(self, change: LinkChange) -> None:
        self.links.append(change)

    def events(self) -> list[str]:
        return [v for k, v in self.feed if k == "event"]


class Link:
    """The server end of one connection attempt recorded by the memory reactor."""

    def __init__(self, reactor: MemoryReactorClock, banner: bool = True) -> None:
        factory = reactor.tcpClients[-1][2]
        proto = factory.buildProtocol(None)
        assert proto is not None  # the endpoint's wrapper around the AmiProtocol
        self.proto = proto
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        self._parser = Parser(expect_banner=False)
        self._seen = 0
        if banner:
            self.proto.dataReceived(b"Asterisk Call Manager/11.0.0\r\n")

    def sent(self) -> list[Message]:
        """Actions written since the last call."""
        data = self.transport.value()
        new, self._seen = data[self._seen :], len(data)
        return self._parser.feed(new)

    def take(self, name: str) -> Message:
        """The single new action, which must be ``name``."""
        actions = self.sent()
        assert [a.name for a in actions] == [name], actions
        return actions[0]

    def feed(self, *frames: list[tuple[str, str]]) -> None:
        self.proto.dataReceived(b"".join(encode(f) for f in frames))

    def respond(self, action: Message, status: str = "Success", *extra: tuple[str, str]) -> None:
        self.feed([("Response", status), ("ActionID", action.action_id or ""), *extra])

    def lose(self, reason: Exception | None = None) -> None:
        self.proto.connectionLost(Failure(reason or ConnectionDone()))

    def login(self, **items: list[list[tuple[str, str]]]) -> None:
        """Accept the Login and answer the resync; ``items[action]`` are its list items."""
        (first,) = self.sent()
        if first.name == "Challenge":
            self.respond(first, "Success", ("Challenge", "1"))
            first = self.take("Login")
        assert first.name == "Login"
        self.respond(first, "Success", ("Message", "Authentication accepted"))
        for name in RESYNC:
            self.answer_list(self.take(name), items.get(name, []))

    def answer_list(self, action: Message, items: list[list[tuple[str, str]]]) -> None:
        aid = action.action_id or ""
        self.respond(action, "Success", ("EventList", "start"), ("Message", "will follow"))
        for item in items:
            self.feed([item[0], ("ActionID", aid), *item[1:]])
        self.feed([("Event", f"{action.name}Complete"), ("ActionID", aid),
                   ("EventList", "Complete"), ("ListItems", str(len(items)))])


def event(name: str, **headers: str) -> list[tuple[str, str]]:
    return [("Event", name), *headers.items()]


def make_client(
    consumer: Recorder | None = None,
    random: Callable[[], float] = lambda: 0.5,  # the middle of the jitter: the exact backoff
    **overrides: Any,
) -> tuple[MemoryReactorClock, AmiClient, Recorder]:
    reactor = MemoryReactorClock()
    options: dict[str, Any] = {
        "host": "pbx.example", "username": "cti", "secret": SECRET, "ping_interval": 20.0,
        "action_timeout": 5.0, "reconnect_min_delay": 1.0, "reconnect_max_delay": 8.0,
    }
    options.update(overrides)
    consumer = consumer or Recorder()
    client = AmiClient(
        AmiClientSettings(**options), consumer, reactor=reactor,
        endpoint=TCP4ClientEndpoint(reactor, "pbx.example", 5038),
        random=random, action_id_prefix="t",
    )
    client.start()
    return reactor, client, consumer


def ready_client(**overrides: Any) -> tuple[MemoryReactorClock, AmiClient, Recorder, Link]:
    reactor, client, consumer = make_client(**overrides)
    link = Link(reactor)
    link.login()
    assert client.state is LinkState.READY
    return reactor, client, consumer, link


def failure_of(d: Deferred[Any]) -> Failure:
    out: list[Failure] = []
    d.addErrback(out.append)
    assert out, "the Deferred has not failed"
    return out[0]


def result_of(d: Deferred[Any]) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


# -- settings and backoff -------------------------------------------------------------------


def test_settings_repr_hides_the_secret() -> None:
    settings = AmiClientSettings(host="h", username="cti", secret=SECRET)
    assert SECRET not in repr(settings) and "cti" in repr(settings)


@pytest.mark.parametrize("bad", [{"auth": "sha1"}, {"reconnect_min_delay": 0},
                                 {"reconnect_min_delay": 5, "reconnect_max_delay": 1},
                                 {"action_timeout": 0}, {"secret": "a\r\nAction: Logoff"},
                                 {"reconnect_jitter": -0.1}, {"reconnect_jitter": 1.5},
                                 {"max_held_events": 0}])
def test_settings_are_validated(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AmiClientSettings(**{"host": "h", "username": "u", "secret": "s", **bad})


def test_reconnect_delay_doubles_up_to_the_cap_and_jitter_spreads_it_both_ways() -> None:
    doubling = [reconnect_delay(n, 1.0, 30.0, 0.2, 0.5) for n in range(1, 8)]
    assert doubling == [1, 2, 4, 8, 16, 30, 30]
    assert [reconnect_delay(n, 1.0, 30.0, 0.0, 0.9) for n in (1, 3)] == [1, 4]
    assert reconnect_delay(3, 1.0, 30.0, 0.2, 0.0) == pytest.approx(4 * 0.8)
    assert reconnect_delay(3, 1.0, 30.0, 0.2, 1.0) == pytest.approx(4 * 1.2)
    assert reconnect_delay(3, 1.0, 30.0, 0.2, 0.25) == pytest.approx(4 * 0.9)
    assert reconnect_delay(10_000, 1.0, 30.0, 0.2, 1.0) == 30  # capped, never beyond max
    assert reconnect_delay(1, 1.0, 30.0, 1.0, 0.0) == MIN_RECONNECT_DELAY  # never zero


def test_reconnect_uses_the_configured_jitter() -> None:
    draws = iter([0.0, 1.0])
    reactor, _client, _ = make_client(random=lambda: next(draws), reconnect_jitter=0.5)
    for attempt, delay in enumerate([0.5, 2.0 * 1.5]):
        Link(reactor).lose(ConnectionLost())
        reactor.advance(delay - 0.001)
        assert len(reactor.tcpClients) == attempt + 1, "reconnected too early"
        reactor.advance(0.001)
        assert len(reactor.tcpClients) == attempt + 2


# -- login ----------------------------------------------------------------------------------


def test_plain_login_then_resync_then_ready() -> None:
    reactor, client, consumer = make_client(events="call,agent,system")
    link = Link(reactor)
    login = link.take("Login")
    assert login.get("Username") == "cti" and login.get("Secret") == SECRET
    assert login.get("Events") == "call,agent,system"
    assert client.state is LinkState.CONNECTED
    link.respond(login, "Success", ("Message", "Authentication accepted"))
    assert client.state is LinkState.LOGGED_IN
    for name in RESYNC:
        action = link.take(name)  # one at a time, in this order
        if name == "Status":
            assert action.get("AllVariables") == "true"
        link.answer_list(action, [event("CoreShowChannel", Channel="Local/6001@agents-1;2")]
                         if name == "CoreShowChannels" else [])
    assert client.state is LinkState.READY
    assert consumer.feed == [("resync", {"CoreShowChannels": ["CoreShowChannel"], "BridgeList": [],
                                         "QueueStatus": [], "Status": []})]
    assert [c.state for c in consumer.links] == [LinkState.CONNECTED, LinkState.LOGGED_IN,
                                                 LinkState.READY]
    assert result_of(client.when_ready()) is None


def test_md5_login_answers_the_challenge_without_sending_the_secret() -> None:
    reactor, client, _ = make_client(auth="md5")
    link = Link(reactor)
    challenge = link.take("Challenge")
    assert challenge.get("AuthType") == "md5"
    link.respond(challenge, "Success", ("Challenge", "840415273"))
    login = link.take("Login")
    assert login.get("AuthType") == "md5" and "Secret" not in login
    assert login.get("Key") == hashlib.md5(f"840415273{SECRET}".encode()).hexdigest()
    link.respond(login, "Success", ("Message", "Authentication accepted"))
    assert client.state is LinkState.LOGGED_IN


def test_refused_login_is_logged_and_retried_with_growing_delays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    reactor, client, consumer = make_client(auth="md5")
    for attempt, delay in enumerate([1.0, 2.0, 4.0, 8.0, 8.0]):
        link = Link(reactor)
        link.respond(link.take("Challenge"), "Success", ("Challenge", "1"))
        link.respond(link.take("Login"), "Error", ("Message", "Authentication failed"))
        assert link.transport.disconnecting  # we close; no need to wait for Asterisk
        link.lose()
        assert client.state is LinkState.DISCONNECTED
        reactor.advance(delay - 0.01)
        assert len(reactor.tcpClients) == attempt + 1, "reconnected too early"
        reactor.advance(0.01)
        assert len(reactor.tcpClients) == attempt + 2
    assert "refused by the server: Authentication failed" in caplog.text
    assert consumer.links[-1].reason is not None and "login refused" in consumer.links[-1].reason
    # A successful login resets the backoff.
    link = Link(reactor)
    link.login()
    link.lose(ConnectionLost())
    reactor.advance(1.0)
    assert len(reactor.tcpClients) == 7
    assert SECRET not in caplog.text


def test_secret_never_logged_on_plain_login(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    reactor, client, _ = make_client()
    link = Link(reactor)
    link.respond(link.take("Login"), "Error", ("Message", "Authentication failed"))
    link.lose()
    assert "Authentication failed" in caplog.text
    assert SECRET not in caplog.text and SECRET not in repr(client.protocol)


def test_connection_refused_backs_off_too() -> None:
    reactor, _client, _ = make_client()
    for attempt, delay in enumerate([1.0, 2.0, 4.0]):
        factory = reactor.tcpClients[-1][2]
        factory.clientConnectionFailed(reactor.connectors[-1], Failure(ConnectionRefusedError()))
        reactor.advance(delay - 0.01)
        assert len(reactor.tcpClients) == attempt + 1
        reactor.advance(0.01)
    assert len(reactor.tcpClients) == 4


def test_login_without_answer_times_out_and_drops() -> None:
    reactor, _client, _ = make_client()
    link = Link(reactor)
    link.take("Login")
    reactor.advance(5.0)
    assert link.transport.disconnecting
    link.lose()
    reactor.advance(1.0)
    assert len(reactor.tcpClients) == 2


# -- actions --------------------------------------------------------------------------------


def test_responses_are_matched_by_action_id_whatever_the_order_and_key_case() -> None:
    _, client, _, link = ready_client()
    d1 = client.send_action("Hangup", {"Channel": "Local/1@x-1;1"})
    d2 = client.send_action("Redirect", [("Channel", "c"), ("Context", "holding")])
    hangup, redirect = link.sent()
    assert hangup.get("Channel") == "Local/1@x-1;1" and redirect.get("Context") == "holding"
    assert hangup.action_id != redirect.action_id
    link.feed([("Response", "Success"), ("actionid", redirect.action_id or ""),
               ("Message", "Redirect successful")])
    link.respond(hangup, "Success", ("Message", "Channel Hungup"))
    assert result_of(d1).get("Message") == "Channel Hungup"
    assert result_of(d2).get("Message") == "Redirect successful"


def test_error_response_fails_with_action_failed() -> None:
    _, client, _, link = ready_client()
    d = client.send_action("Bridge", {"Channel1": "gone;2", "Channel2": "agent;1"})
    link.respond(link.take("Bridge"), "Error", ("Message", "Channel1 does not exist: gone;2"))
    err = failure_of(d).value
    assert isinstance(err, ActionFailed)
    assert err.message == "Channel1 does not exist: gone;2" and err.response.name == "Error"
    assert "Bridge failed: Channel1 does not exist" in str(err)


def test_action_timeout_is_exact_and_late_response_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reactor, client, consumer, link = ready_client()
    d = client.send_action("Originate", {"Channel": "Local/6001@agents"}, timeout=3.0)
    action = link.take("Originate")
    reactor.advance(2.999)
    assert not d.called
    reactor.advance(0.001)
    assert isinstance(failure_of(d).value, ActionTimeout)
    with caplog.at_level(logging.WARNING):
        link.respond(action, "Success")
    assert "response to no pending action" in caplog.text
    assert consumer.events() == []


def test_event_with_the_action_id_of_a_finished_action_is_a_normal_event() -> None:
    _, client, consumer, link = ready_client()
    d = client.send_action("Originate", {"Channel": "Local/6002@agents", "Async": "true"})
    action = link.take("Originate")
    link.respond(action, "Success", ("Message", "Originate successfully queued"))
    link.feed(event("OriginateResponse", ActionID=action.action_id or "", Response="Failure",
                    Reason="3"))
    assert result_of(d).name == "Success"
    assert consumer.events() == ["OriginateResponse"]


def test_list_action_collects_items_and_its_timeout_restarts_per_item() -> None:
    reactor, client, consumer, link = ready_client()
    d = client.send_list_action("QueueStatus", timeout=2.0)
    action = link.take("QueueStatus")
    aid = action.action_id or ""
    link.respond(action, "Success", ("EventList", "start"))
    for name in ["QueueParams", "QueueMember", "QueueEntry"]:
        reactor.advance(1.5)
        link.feed(event(name, ActionID=aid, Queue="sales"))
    link.feed(event("QueueSummary"))  # a live event in between is not an item
    reactor.advance(1.5)
    link.feed(event("QueueStatusComplete", ActionID=aid, EventList="Complete", ListItems="3"))
    result: ListResult = result_of(d)
    assert [m.name for m in result.items] == ["QueueParams", "QueueMember", "QueueEntry"]
    assert result.response.get("EventList") == "start"
    assert result.complete is not None and result.complete.get("ListItems") == "3"
    assert consumer.events() == ["QueueSummary"]


def test_list_action_error_and_timeout_and_missing_list(caplog: pytest.LogCaptureFixture) -> None:
    reactor, client, _, link = ready_client()
    d_err = client.send_list_action("Status", {"Channel": "nope"})
    link.respond(link.take("Status"), "Error", ("Message", "No such channel"))
    err = failure_of(d_err).value
    assert isinstance(err, ActionFailed) and err.message == "No such channel"

    d_slow = client.send_list_action("CoreShowChannels")
    action = link.take("CoreShowChannels")
    link.respond(action, "Success", ("EventList", "start"))
    link.feed(event("CoreShowChannel", ActionID=action.action_id or ""))
    reactor.advance(5.0)
    timeout = failure_of(d_slow).value
    assert isinstance(timeout, ActionTimeout) and "after 1 items" in str(timeout)

    with caplog.at_level(logging.WARNING):
        d_plain = client.send_list_action("Ping")
        link.respond(link.take("Ping"), "Success", ("Ping", "Pong"))
    assert result_of(d_plain).items == [] and "without an event list" in caplog.text


def test_list_item_count_mismatch_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    _, client, _, link = ready_client()
    d = client.send_list_action("BridgeList")
    with caplog.at_level(logging.WARNING):
        action = link.take("BridgeList")
        link.respond(action, "Success", ("EventList", "start"))
        link.feed(event("BridgeListComplete", ActionID=action.action_id or "",
                        EventList="Complete", ListItems="2"))
    assert result_of(d).items == [] and "announced 2 items, got 0" in caplog.text


def test_actions_before_login_fail_at_once() -> None:
    reactor, client, _ = make_client()
    assert isinstance(failure_of(client.send_action("Ping")).value, AmiConnectionLost)
    Link(reactor)  # connected, not logged in yet
    assert isinstance(failure_of(client.send_list_action("QueueStatus")).value,
                      AmiConnectionLost)


def test_pending_actions_fail_when_the_link_drops() -> None:
    _, client, consumer, link = ready_client()
    d1 = client.send_action("Hangup", {"Channel": "x"})
    d2 = client.send_list_action("CoreShowChannels")
    link.lose(ConnectionLost("Connection reset by peer"))
    for d in (d1, d2):
        err = failure_of(d).value
        assert isinstance(err, AmiConnectionLost) and "Connection reset by peer" in str(err)
    assert consumer.links[-1].state is LinkState.DISCONNECTED
    assert isinstance(failure_of(client.send_action("Ping")).value, AmiConnectionLost)


def test_unsendable_fields_fail_the_action_not_the_link() -> None:
    _, client, _, link = ready_client()
    d = client.send_action("Setvar", {"Value": "a\r\nAction: Hangup"})
    assert isinstance(failure_of(d).value, ValueError)
    assert link.sent() == []


def test_stop_fails_ready_waiters_and_closes() -> None:
    reactor, client, _ = make_client()
    waiter = client.when_ready()
    link = Link(reactor)
    client.stop()
    assert link.transport.disconnecting
    assert isinstance(failure_of(waiter).value, AmiConnectionLost)
    link.lose()
    reactor.advance(100)
    assert len(reactor.tcpClients) == 1


# -- resync ordering ------------------------------------------------------------------------


def test_events_during_login_and_resync_are_held_until_after_the_snapshot() -> None:
    reactor, _client, consumer = make_client()
    link = Link(reactor)
    link.feed([("Response", "Success"), ("ActionID", link.take("Login").action_id or "")],
              event("FullyBooted"), event("SuccessfulAuth"))
    csc = link.take("CoreShowChannels")
    link.feed(event("Newchannel", Uniqueid="1.1"))
    link.answer_list(csc, [event("CoreShowChannel", Uniqueid="1.0")])
    link.feed(event("Hangup", Uniqueid="1.0"))
    for name in RESYNC[1:]:
        link.answer_list(link.take(name), [])
    assert consumer.feed[0][0] == "resync"
    assert consumer.events() == ["FullyBooted", "SuccessfulAuth", "Newchannel", "Hangup"]
    link.feed(event("DialBegin"))
    assert consumer.events()[-1] == "DialBegin"


def test_failing_resync_action_does_not_stop_the_session(caplog: pytest.LogCaptureFixture) -> None:
    reactor, client, consumer = make_client()
    link = Link(reactor)
    link.respond(link.take("Login"), "Success")
    link.answer_list(link.take("CoreShowChannels"), [event("CoreShowChannel")])
    with caplog.at_level(logging.ERROR):
        link.respond(link.take("BridgeList"), "Error", ("Message", "Permission denied"))
        link.take("QueueStatus")
        reactor.advance(5.0)  # QueueStatus never answers
    link.answer_list(link.take("Status"), [])
    assert client.state is LinkState.READY
    assert consumer.feed == [("resync", {"CoreShowChannels": ["CoreShowChannel"], "Status": []})]
    assert "resync BridgeList failed" in caplog.text and "resync QueueStatus failed" in caplog.text
    assert "failed: BridgeList, QueueStatus" in (consumer.links[-1].reason or "")


def test_link_lost_during_resync_discards_the_partial_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reactor, _client, consumer = make_client()
    link = Link(reactor)
    link.respond(link.take("Login"), "Success")
    link.feed(event("FullyBooted"))
    with caplog.at_level(logging.WARNING):
        link.lose()
    assert consumer.feed == []
    assert "1 events received before the resync completed are discarded" in caplog.text
    reactor.advance(1.0)
    Link(reactor).login()
    assert consumer.feed == [("resync", {k: [] for k in RESYNC})]


# -- keepalive ------------------------------------------------------------------------------


def test_ping_every_interval_and_a_missing_pong_drops_the_link(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reactor, client, _, link = ready_client()
    reactor.advance(19.9)
    assert link.sent() == []
    reactor.advance(0.1)
    link.respond(link.take("Ping"), "Success", ("Ping", "Pong"))
    reactor.advance(20.0)
    link.take("Ping")
    with caplog.at_level(logging.WARNING):
        reactor.advance(4.99)
        assert not link.transport.disconnecting
        reactor.advance(0.01)
    assert link.transport.disconnected  # aborted, not a graceful close
    assert "no Pong within 5.0 s" in caplog.text
    link.lose(ConnectionLost())
    assert client.state is LinkState.DISCONNECTED
    assert "keepalive timeout" in (client.consumer.links[-1].reason or "")  # type: ignore[attr-defined]
    reactor.advance(1.0)
    assert len(reactor.tcpClients) == 2


# -- backpressure ---------------------------------------------------------------------------


def test_slow_consumer_pauses_reading_and_suspends_timers() -> None:
    consumer = Recorder()
    consumer.reply = Deferred()  # never fires until the test says so
    reactor, client, _ = make_client(consumer, max_pending_events=3)
    link = Link(reactor)
    link.login()
    d = client.send_action("Hangup", {"Channel": "x"})
    link.feed(event("Newchannel"), event("Newstate"))
    assert link.transport.producerState == "producing"
    link.feed(event("Hangup"))  # the third event waiting reaches the mark
    assert link.transport.producerState == "paused"
    reactor.advance(60.0)  # no timeout and no Ping while we are not reading
    assert not d.called and [a.name for a in link.sent()] == ["Hangup"]
    ready, consumer.reply = consumer.reply, None
    ready.callback(None)
    assert link.transport.producerState == "producing"
    assert consumer.events() == ["Newchannel", "Newstate", "Hangup"]
    reactor.advance(5.0)  # the timeout restarted in full on resume
    assert isinstance(failure_of(d).value, ActionTimeout)


class Blocker:
    """An app-side consumer (as ``CallCenter.call_events`` has) that holds every item."""

    def __init__(self, client: AmiClient) -> None:
        self.stream: EventStream[int] = EventStream("call events")
        self.stream.subscribe(self, max_pending=1, name="blocked")
        self.stream.register_producer(client)
        self.waiting: list[Deferred[None]] = []

    def __call__(self, item: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.waiting.append(d)
        return d

    def block(self) -> None:
        self.stream.publish(0)
        assert self.stream.paused

    def release(self) -> None:
        self.waiting.pop(0).callback(None)
        assert not self.stream.paused


def test_a_pause_before_the_session_is_live_applies_when_it_goes_live() -> None:
    reactor, client, consumer = make_client()
    blocker = Blocker(client)
    blocker.block()  # not even connected yet
    link = Link(reactor)
    link.respond(link.take("Login"), "Success")
    link.feed(event("FullyBooted"))
    assert link.transport.producerState == "producing"  # login and resync must be read
    for name in RESYNC:
        link.answer_list(link.take(name), [])
    assert client.state is LinkState.READY
    assert consumer.events() == ["FullyBooted"]  # the held events are delivered first
    assert link.transport.producerState == "paused"
    blocker.release()
    assert link.transport.producerState == "producing"


def test_backpressure_survives_a_reconnect() -> None:
    reactor, client, consumer, link = ready_client()
    blocker = Blocker(client)
    blocker.block()
    assert link.transport.producerState == "paused"
    link.lose(ConnectionLost())
    reactor.advance(1.0)
    second = Link(reactor)
    second.login()
    assert client.state is LinkState.READY
    assert second.transport.producerState == "paused"  # the consumer is still behind
    blocker.release()
    assert second.transport.producerState == "producing"
    second.feed(event("Newchannel"))
    assert consumer.events() == ["Newchannel"]


def test_reading_resumes_only_when_every_stream_has_resumed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, client, consumer, link = ready_client(max_pending_events=1)
    calls, history = Blocker(client), Blocker(client)
    consumer.reply = Deferred()
    link.feed(event("Newchannel"))  # the client's own stream pauses too
    calls.block()
    history.block()
    assert client.paused and link.transport.producerState == "paused"
    ready, consumer.reply = consumer.reply, None
    ready.callback(None)
    history.release()
    assert link.transport.producerState == "paused"  # ``calls`` is still behind
    calls.release()
    assert not client.paused and link.transport.producerState == "producing"
    with caplog.at_level(logging.WARNING):
        client.resumeProducing()  # unbalanced: ignored, the count never goes negative
    assert "without a matching pauseProducing" in caplog.text
    calls.block()
    assert link.transport.producerState == "paused"


def test_events_held_during_resync_are_bounded_then_the_link_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reactor, client, consumer = make_client(max_held_events=3)
    link = Link(reactor)
    link.respond(link.take("Login"), "Success")
    link.take("CoreShowChannels")
    with caplog.at_level(logging.WARNING):
        link.feed(*(event("Newchannel", Uniqueid=f"1.{n}") for n in range(5)))
    assert client.protocol is not None and len(client.protocol._held) == 3  # the bound
    assert link.transport.disconnected  # aborted: no more reading into the hold
    assert "AMI#1 pbx.example:5038: 4 events arrived during login and resync (limit 3)" in (
        caplog.text)
    assert "Uniqueid: 1.3" in caplog.text and caplog.text.count("limit 3") == 1
    link.lose(ConnectionLost())
    assert consumer.feed == []
    assert "too many events held during resync" in (consumer.links[-1].reason or "")
    reactor.advance(1.0)
    Link(reactor).login()
    assert client.state is LinkState.READY
    assert consumer.feed == [("resync", {k: [] for k in RESYNC})]


# -- bad input ------------------------------------------------------------------------------


def test_malformed_and_unexpected_frames_are_logged_with_context_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, client, consumer, link = ready_client()
    with caplog.at_level(logging.WARNING):
        link.proto.dataReceived(b"Event: Newchannel\r\nthis is not a header\r\n\r\n")
        link.proto.dataReceived(b"Foo: bar\r\n\r\n")
        link.feed([("Response", "Success"), ("ActionID", "nobody-1")])
        link.proto.dataReceived(b"Event: Hangup\r\nChannel: Local/1@x-")
    assert consumer.events() == ["Newchannel"]  # delivered with what could be read
    text = caplog.text
    assert "malformed frame (line without 'Key: value'" in text and "AMI#1 pbx.example:5038" in text
    assert "neither an event nor a response; dropped at byte" in text and "Foo: bar" in text
    assert "response to no pending action" in text and "nobody-1" in text
    with caplog.at_level(logging.WARNING):
        link.lose()
    assert "incomplete frame at close" in caplog.text and "Channel: Local/1@x-" in caplog.text
    assert "closed by the server" in (consumer.links[-1].reason or "")
    assert client.state is LinkState.DISCONNECTED


def test_banner_is_logged_and_a_missing_banner_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reactor, _, _ = make_client()
    with caplog.at_level(logging.INFO):
        Link(reactor)
    assert "banner 'Asterisk Call Manager/11.0.0'" in caplog.text
    reactor2, _, _ = make_client()
    with caplog.at_level(logging.WARNING):
        Link(reactor2, banner=False).proto.dataReceived(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert "no AMI banner" in caplog.text


def test_a_failing_consumer_does_not_stop_the_session(caplog: pytest.LogCaptureFixture) -> None:
    class Grumpy(Recorder):
        def on_message(self, message: Message) -> None:
            super().on_message(message)
            if message.name == "Newchannel":
                raise KeyError("Uniqueid")

        def on_link(self, change: LinkChange) -> None:
            raise RuntimeError("supervisor view down")

    reactor, client, consumer = make_client(Grumpy())
    link = Link(reactor)
    with caplog.at_level(logging.ERROR):
        link.login()
        link.feed(event("Newchannel"), event("Hangup"))
    assert consumer.events() == ["Newchannel", "Hangup"]
    assert client.state is LinkState.READY
    assert "consumer failed on link change" in caplog.text and "Uniqueid" in caplog.text


def test_event_filters_are_set_after_login_and_a_refused_one_does_not_stop_the_session() -> None:
    reactor, client, _ = make_client(filters=("!Event: VarSet", "!Event: Newexten"))
    link = Link(reactor)
    link.respond(link.take("Login"), "Success")
    first = link.take("Filter")
    assert first.get("Operation") == "Add" and first.get("Filter") == "!Event: VarSet"
    link.respond(first, "Success", ("Message", "Filter Added Successfully"))
    second = link.take("Filter")
    assert second.get("Filter") == "!Event: Newexten"
    link.respond(second, "Error", ("Message", "Permission denied"))
    for name in RESYNC:
        link.answer_list(link.take(name), [])
    assert client.state is LinkState.READY
    with pytest.raises(ValueError, match="filter must not contain CR or LF"):
        make_client(filters=("Event: X\r\nAction: Logoff",))


# -- why the link is down, said once; PBX values escaped in logs ------------------------------


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_an_unreachable_pbx_is_one_warning_with_the_reason_not_one_per_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    reactor, client, consumer = make_client()
    for delay in (1.0, 2.0, 4.0):
        factory = reactor.tcpClients[-1][2]
        factory.clientConnectionFailed(reactor.connectors[-1], Failure(ConnectionRefusedError()))
        reactor.advance(delay)
    [warning] = _warnings(caplog)
    assert warning == ("AMI pbx.example:5038: cannot connect to the PBX: connection refused "
                       "(nothing listens on that port, or a firewall rejects it); retrying "
                       "with backoff (up to 8 s apart)")
    assert client.problem is not None and "cannot connect to the PBX" in client.problem
    # The consumer learns the reason once, though no connection was ever made.
    [change] = consumer.links
    assert change.state is LinkState.DISCONNECTED and change.reason == client.problem
    # The PBX answers again: ready, the problem is gone, and the log says what it was.
    caplog.clear()
    Link(reactor).login()
    assert client.state is LinkState.READY and client.problem is None
    assert "ready (" in caplog.text and "was: cannot connect to the PBX" in caplog.text


def test_a_refused_login_is_one_warning_until_the_link_is_ready_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    reactor, client, consumer = make_client()
    for delay in (1.0, 2.0, 4.0):
        link = Link(reactor)
        link.respond(link.take("Login"), "Error", ("Message", "Authentication failed"))
        link.lose()
        reactor.advance(delay)
    assert _warnings(caplog) == [
        "AMI#1 pbx.example:5038: login as 'cti' refused by the server: Authentication failed; "
        "retrying with backoff (up to 8 s apart)"
    ]
    assert client.problem == "login as 'cti' refused by the server: Authentication failed"
    # Routine retries are not INFO noise once the reason is known.
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert sum("reconnecting in" in m for m in info) == 1
    assert sum(": connected" in m for m in info) == 1
    # A login that works, then a dropped link: a new state, a new warning.
    link = Link(reactor)
    link.login()
    assert client.problem is None
    caplog.clear()
    link.lose(ConnectionLost())
    [lost] = _warnings(caplog)
    assert lost.startswith("AMI#4 pbx.example:5038: AMI link lost: Connection to the other side")
    assert consumer.links[-1].state is LinkState.DISCONNECTED


def test_a_login_without_answer_is_warned_with_a_reason_that_repeats_as_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    reactor, client, _ = make_client()
    for _ in range(2):
        link = Link(reactor)
        link.take("Login")
        reactor.advance(5.0)
        link.lose()
        reactor.advance(8.0)
    assert _warnings(caplog) == [
        "AMI#1 pbx.example:5038: the login got no answer within 5 s; retrying with backoff "
        "(up to 8 s apart)"
    ]
    assert client.problem == "the login got no answer within 5 s"


def test_a_bare_lf_in_a_pbx_value_forges_no_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """Values from the PBX are escaped: a bare LF (which the codec keeps inside a value) or
    an ESC sequence must not start a new line or colour the terminal of whoever reads the
    log."""
    import io

    _, client, _, link = ready_client()
    forged = "2026-01-01 12:00:00,000 CRITICAL root: forged"
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("cti").addHandler(handler)
    try:
        with caplog.at_level(logging.WARNING):
            link.proto.dataReceived(
                b"Response: Success\r\nActionID: nobody\nCRITICAL root: forged\r\n"
                b"Message: \x1b[31mred\r\n\r\n"
            )
            link.proto.dataReceived(b"Foo: bar\n" + forged.encode() + b"\r\n\r\n")
    finally:
        logging.getLogger("cti").removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(line.startswith("WARNING cti.ami.client: ") for line in lines)
    assert "ActionID: nobody\\nCRITICAL root: forged" in lines[0]
    assert "\x1b" not in out.getvalue() and "Message: \\x1b[31mred" in lines[0]
    assert f"Foo: bar\\n{forged}" in lines[1]
    # A refused action's message (logged by whoever catches it) is escaped too.
    d = client.send_action("Redirect")
    aid = (link.take("Redirect").action_id or "").encode()
    link.proto.dataReceived(b"Response: Error\r\nActionID: " + aid
                            + b"\r\nMessage: No such channel\nFAKE line\r\n\r\n")
    err = failure_of(d)
    assert "\n" not in str(err.value) and "No such channel\\nFAKE line" in str(err.value)


def test_for_log_escapes_line_breaks_and_control_characters() -> None:
    from cti.ami.codec import for_log

    assert for_log("Local/6001@agents-00000001;1") == "Local/6001@agents-00000001;1"
    assert for_log("Ελένη Παππά") == "Ελένη Παππά"
    assert for_log("a\rb\nc\td\x1b[0m\x00\x7f\x85\u2028") == (
        "a\\rb\\nc\\td\\x1b[0m\\x00\\x7f\\x85\\u2028"
    )
