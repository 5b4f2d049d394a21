"""The FastAGI server: exact behaviour on a StringTransport and a task.Clock (recording 09
replayed, queueing, timeouts, hang-ups), then over real TCP with the PBX simulator as
Asterisk, a call on DID 5004 connecting to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from cti.ami.codec import Message
from cti.capture import captures_dir
from ivr.agi import (
    AgiChannel,
    AgiEnd,
    AgiProtocolError,
    AgiReply,
    AgiSessionEnded,
    AgiTimeout,
    collected_digits,
    get_data,
    get_full_variable,
    get_variable,
    pressed_digit,
    set_variable,
    stream_file,
    variable_value,
    wait_for_digit,
)
from ivr.fastagi import FastAgiServer, FastAgiSession
from pbx_simulator import Settings
from pbx_simulator.settings import Route
from tests.e2e import caller, start_simulator, until

ENV = b"agi_network: yes\nagi_channel: SIP/trunk-00000001\nagi_uniqueid: 42.1\n\n"


class Harness:
    """One connection to a FastAgiServer on a StringTransport, its clock and its results."""

    def __init__(self, handler: Callable[[FastAgiSession], Any] | None = None) -> None:
        self.clock = Clock()
        self.sessions: list[FastAgiSession] = []
        self.server = FastAgiServer(
            handler or self.sessions.append, self.clock, reply_timeout=10, environment_timeout=5
        )
        proto = self.server.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        assert isinstance(proto, FastAgiSession)
        self.proto = proto
        self.transport = StringTransport()
        proto.makeConnection(self.transport)
        self.ends: list[AgiEnd] = []
        proto.closed.addCallback(self.ends.append)

    def written(self) -> list[str]:
        lines = self.transport.value().decode().splitlines()
        self.transport.clear()
        return lines

    def lose(self) -> None:
        self.proto.connectionLost(Failure(ConnectionError("closed")))


def outcome(d: Deferred[Any]) -> list[Any]:
    """What ``d`` fired with so far: [] while it waits, [result] or [Failure]."""
    got: list[Any] = []
    d.addBoth(got.append)
    return got


def test_recording_09_replayed() -> None:
    """The server side of 09-fastagi.agi.txt: environment in, the same commands out, each
    reply firing its own command's Deferred."""
    text = (captures_dir() / "09-fastagi.agi.txt").read_text(encoding="utf-8").splitlines()
    from_pbx = [line[2:] for line in text if line.startswith("<")]
    to_pbx = [line[2:] for line in text if line.startswith(">")]
    env_end = from_pbx.index("")
    h = Harness()
    h.proto.dataReceived("".join(f"{line}\n" for line in from_pbx[: env_end + 1]).encode())
    (fastagi,) = h.sessions
    session: AgiChannel = fastagi  # what the IVR's shell holds (checked by mypy)
    assert session.env.channel == "Local/5004@inbound-00000019;2"
    assert session.env.script == "lab-route"
    commands = [
        get_variable("CTI_CALLID"),
        get_full_variable("${CALLERID(num)}"),
        stream_file("lab-beep"),
        set_variable("CTI_ROUTE", "sales"),
    ]
    assert commands == to_pbx[:4]
    results = [outcome(session.send(c)) for c in commands]
    for n, reply in enumerate(from_pbx[env_end + 1 : env_end + 5]):
        assert h.written() == [to_pbx[n]]  # one at a time: the next waits for this reply
        assert all(r == [] for r in results[n:])
        h.proto.dataReceived(reply.encode() + b"\n")
        assert results[n] and isinstance(results[n][0], AgiReply)
    assert variable_value(results[0][0]) == "1795356801.53"
    assert variable_value(results[1][0]) == "+15550001111"
    assert results[2][0].endpos == 2400
    assert results[3][0].result == "1"
    session.close()
    assert h.transport.disconnecting and h.ends == [AgiEnd.CLOSED]


def test_a_reply_can_send_the_next_command_at_once() -> None:
    h = Harness()
    h.proto.dataReceived(ENV)
    session = h.sessions[0]
    got: list[str | None] = []

    def then(reply: AgiReply) -> Deferred[AgiReply]:
        got.append(pressed_digit(reply))
        return session.send(get_data("menu", 3000, 4))

    d = session.send(wait_for_digit(5000)).addCallback(then)
    assert h.written() == ["WAIT FOR DIGIT 5000"]
    h.proto.dataReceived(b"200 result=49\n")
    assert got == ["1"] and h.written() == ["GET DATA menu 3000 4"]
    h.proto.dataReceived(b"200 result=" + b"12" + b" (timeout)\n")
    assert collected_digits(outcome(d)[0]) == ("12", True)


def test_hangup_line_fails_what_waits_and_ends_the_session() -> None:
    h = Harness()
    h.proto.dataReceived(ENV)
    session = h.sessions[0]
    first, second = outcome(session.send("WAIT FOR DIGIT -1")), outcome(session.send("NOOP"))
    h.proto.dataReceived(b"HANGUP\n")
    for result in (first, second):
        assert isinstance(result[0].value, AgiSessionEnded)
        assert result[0].value.reason is AgiEnd.HANGUP
    assert h.ends == [AgiEnd.HANGUP] and h.transport.disconnecting
    late = outcome(session.send("NOOP"))
    assert isinstance(late[0].value, AgiSessionEnded)
    h.lose()
    assert h.ends == [AgiEnd.HANGUP]  # once


def test_connection_lost_is_the_end_of_the_session() -> None:
    h = Harness()
    h.proto.dataReceived(ENV)
    waiting = outcome(h.sessions[0].send("STREAM FILE menu 12"))
    h.lose()
    assert waiting[0].value.reason is AgiEnd.ENDED and h.ends == [AgiEnd.ENDED]
    assert not h.server.sessions


def test_a_command_without_reply_times_out_on_the_clock() -> None:
    h = Harness()
    h.proto.dataReceived(ENV)
    session = h.sessions[0]
    default = outcome(session.send("NOOP"))
    queued = outcome(session.send("GET DATA menu 20000 4", timeout=40))
    h.clock.advance(9.9)
    assert default == []
    h.clock.advance(0.2)
    assert isinstance(default[0].value, AgiTimeout) and default[0].value.seconds == 10
    assert isinstance(queued[0].value, AgiSessionEnded)  # never sent: the link is in doubt
    assert h.ends == [AgiEnd.FAILED] and h.transport.disconnecting
    assert not h.clock.getDelayedCalls()


def test_per_command_timeout() -> None:
    h = Harness()
    h.proto.dataReceived(ENV)
    long = outcome(h.sessions[0].send("GET DATA menu 20000 4", timeout=40))
    h.clock.advance(30)
    assert long == []
    h.proto.dataReceived(b"200 result=7\n")
    assert long[0].result == "7" and not h.clock.getDelayedCalls()


def test_environment_must_come_in_time() -> None:
    h = Harness()
    h.proto.dataReceived(b"agi_channel: x\n")
    h.clock.advance(5)
    assert h.sessions == [] and h.ends == [AgiEnd.FAILED] and h.transport.disconnecting


@pytest.mark.parametrize(
    "data", [b"hello there\n", ENV + b"200 result=1\n", ENV + b"garbage\n"], ids=str
)
def test_protocol_errors_close_the_connection(data: bytes, caplog: Any) -> None:
    h = Harness()
    h.proto.dataReceived(data)
    assert h.ends == [AgiEnd.FAILED] and h.transport.disconnecting
    assert "closing the connection" in caplog.text


def test_protocol_error_fails_the_command_waiting_with_the_bad_line() -> None:
    h = Harness()
    h.proto.dataReceived(ENV)
    waiting = outcome(h.sessions[0].send("NOOP"))
    h.proto.dataReceived(b"HTTP/1.1 400 Bad Request\n")
    error = waiting[0].value
    assert isinstance(error, AgiProtocolError) and error.line == "HTTP/1.1 400 Bad Request"


def test_usage_reply_split_across_reads() -> None:
    h = Harness()
    h.proto.dataReceived(ENV)
    waiting = outcome(h.sessions[0].send("WAIT FOR DIGIT"))
    h.proto.dataReceived(b"520-Invalid command syntax.  Proper usage follows:\n Usage: WA")
    assert waiting == []
    h.proto.dataReceived(b"IT FOR DIGIT <timeout>\n520 End of proper usage.\n")
    assert waiting[0].code == 520 and waiting[0].data == " Usage: WAIT FOR DIGIT <timeout>"


def test_a_failing_handler_closes_the_session(caplog: Any) -> None:
    def broken(session: FastAgiSession) -> None:
        raise RuntimeError("bug")

    h = Harness(broken)
    h.proto.dataReceived(ENV)
    assert h.ends == [AgiEnd.CLOSED] and h.transport.disconnecting
    assert "session handler failed" in caplog.text


def test_multi_line_commands_are_refused() -> None:
    h = Harness()
    h.proto.dataReceived(ENV)
    bad = outcome(h.sessions[0].send("NOOP\nHANGUP"))
    assert "one line" in str(bad[0].value) and h.written() == []


# ---------------------------------------------------------------------------- over TCP


def fastagi_call(reactor: Any, agi_port: int, keys: tuple[str, ...], talk: float) -> Any:
    """The simulator, its DID 5004 running AGI(agi://127.0.0.1:<agi_port>/ivr-main), and
    one caller on it (``keys`` pressed 1.5 s apart); returns the listening simulator."""
    url = f"agi://127.0.0.1:{agi_port}/ivr-main"
    dids = {**Settings().dids, "5004": Route("fastagi", "sales", url)}
    simulator = start_simulator(reactor, dids=dids)
    core = simulator.factory.core
    fields = caller("+15550001111", "Jack Fast", "5004", talk, keys)
    simulator.factory.inside(lambda: core.originate(Message([("Action", "Originate"), *fields])))
    return simulator


def test_end_to_end_with_the_simulator(reactor: Any, run: Callable[..., Any]) -> None:
    """A caller on DID 5004 reaches this server over TCP, presses 5 at a WAIT FOR DIGIT and
    42# at a GET DATA; the script routes to queue support, and the dialplan goes there."""
    sessions: list[FastAgiSession] = []
    server = FastAgiServer(sessions.append, reactor, reply_timeout=10)
    agi = reactor.listenTCP(0, server, interface="127.0.0.1")
    simulator = fastagi_call(reactor, agi.getHost().port, ("5", "42#"), talk=30)
    try:
        run(until(lambda: bool(sessions)), timeout=10)
        (session,) = sessions
        assert session.env.script == "ivr-main"
        assert session.env.callerid == "+15550001111"

        async def script() -> list[Any]:
            callid = variable_value(await session.send(get_variable("CTI_CALLID")))
            number = variable_value(await session.send(get_full_variable("${CALLERID(num)}")))
            beep = await session.send(stream_file("lab-beep"))
            digit = pressed_digit(await session.send(wait_for_digit(5000)))
            keyed = collected_digits(await session.send(get_data("lab-beep", 5000, 4)))
            route = await session.send(set_variable("CTI_ROUTE", "support"))
            session.close()
            return [callid, number, beep.endpos, digit, keyed, route.result]

        got = run(script(), timeout=15)
        assert got == [session.env.uniqueid, "+15550001111", 2400, "5", ("42", False), "1"]
        pbx = simulator.factory.core.pbx
        run(until(lambda: bool(pbx.queues["support"].calls)), timeout=5)
        (waiting,) = pbx.queues["support"].calls
        assert waiting.caller.name == session.env.channel
        assert run(session.closed) is AgiEnd.CLOSED
    finally:
        simulator.stopListening()
        agi.stopListening()


def test_caller_hanging_up_mid_command(reactor: Any, run: Callable[..., Any]) -> None:
    """The caller hangs up during a long WAIT FOR DIGIT: the PBX drops the connection, the
    command fails with the session's end, and the server keeps no session."""
    sessions: list[FastAgiSession] = []
    server = FastAgiServer(sessions.append, reactor, reply_timeout=10)
    agi = reactor.listenTCP(0, server, interface="127.0.0.1")
    simulator = fastagi_call(reactor, agi.getHost().port, (), talk=1.0)
    try:
        run(until(lambda: bool(sessions)), timeout=10)
        waiting = sessions[0].send(wait_for_digit(8000))
        ended = run(waiting.addErrback(lambda f: f.value), timeout=8)
        assert isinstance(ended, AgiSessionEnded) and ended.reason is AgiEnd.ENDED
        assert run(sessions[0].closed) is AgiEnd.ENDED
        run(until(lambda: not server.sessions), timeout=5)
    finally:
        simulator.stopListening()
        agi.stopListening()
