"""AsyncAGI: the call model's AsyncAGI events on recording 04, the transport on a task.Clock
with a recording action sender, and end to end with the PBX simulator over AMI/TCP."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from cti.ami.client import ActionFailed
from cti.ami.codec import Message
from cti.calls.events import (
    AsyncAgiEnded,
    AsyncAgiReplied,
    AsyncAgiStarted,
    CallEvent,
    CallQueued,
    IvrEntered,
)
from cti.calls.model import CallModel
from cti.capture import captures_dir, replay
from cti.history import load_call_events
from ivr.agi import (
    AgiChannel,
    AgiEnd,
    AgiError,
    AgiProtocolError,
    AgiReply,
    AgiSessionEnded,
    AgiTimeout,
    answer,
    channel_status,
    collected_digits,
    get_data,
    get_full_variable,
    get_variable,
    pressed_digit,
    set_variable,
    stream_file,
    variable_value,
    verbose,
    wait_for_digit,
)
from ivr.asyncagi import AsyncAgi, AsyncAgiSession
from tests.e2e import caller, start_backend, start_simulator, until

CHANNEL = "Local/5002@inbound-00000008;2"
#: The driver's commands in recording 04, in order (CommandID cmd1..cmd9).
COMMANDS = [
    answer(),
    get_full_variable("${CALLERID(num)}"),
    get_variable("CTI_CALLID"),
    set_variable("CTI_ROUTE", "sales"),
    stream_file("lab-welcome"),
    wait_for_digit(5000),
    get_data("lab-beep", 5000, 4),
    verbose("routing via controller"),
    channel_status(),
]


def recording_04_events() -> list[Any]:
    return replay(captures_dir() / "04-asyncagi.jsonl", CallModel(), devices=True)


# ---------------------------------------------------------------------------- call model


def test_call_model_reports_the_asyncagi_session_of_recording_04() -> None:
    events = recording_04_events()
    (started,) = [e for e in events if isinstance(e, AsyncAgiStarted)]
    replied = [e for e in events if isinstance(e, AsyncAgiReplied)]
    (ended,) = [e for e in events if isinstance(e, AsyncAgiEnded)]
    (entered,) = [e for e in events if isinstance(e, IvrEntered)]
    assert started.channel == ended.channel == CHANNEL
    assert started.call_id == entered.call_id == ended.call_id == "1795356729.16"
    assert started.env["agi_channel"] == CHANNEL
    assert started.env["agi_callerid"] == "+15554443333"
    assert started.env["agi_calleridname"] == "Dan Async"
    assert started.env["agi_accountcode"] == "" and started.env["agi_request"] == "async"
    assert [e.command_id for e in replied] == [f"cmd{n}" for n in range(1, 10)]
    assert [e.reply for e in replied] == [
        "200 result=0",
        "200 result=1 (+15554443333)",
        "200 result=1 (1795356729.17)",
        "200 result=1",
        "200 result=0 endpos=12000",
        "200 result=53",
        "200 result=42",
        "200 result=1",
        "200 result=6",
    ]
    # In order: the session starts after the call entered the IVR and ends before it queues.
    order = [type(e) for e in events]
    assert order.index(IvrEntered) < order.index(AsyncAgiStarted)
    assert order.index(AsyncAgiEnded) < order.index(CallQueued)


def test_asyncagi_events_serialise_and_are_not_call_history() -> None:
    events = [e for e in recording_04_events() if e.kind.startswith("asyncagi_")]
    assert len(events) == 11
    records = json.loads(json.dumps([e.to_record() for e in events]))
    assert records[0]["kind"] == "asyncagi_started" and records[0]["env"]["agi_language"] == "en"
    assert records[1] == {
        "kind": "asyncagi_replied", "at": events[1].at, "channel": CHANNEL,
        "call_id": "1795356729.16", "command_id": "cmd1", "reply": "200 result=0",
        "restored": False,
    }  # fmt: skip
    # History records call events only (callcenter.app and CallEventRecorder check this).
    assert not any(isinstance(e, CallEvent) for e in events)


def test_asyncagi_events_of_unknown_channels_and_damaged_headers() -> None:
    model = CallModel()
    env = "agi_channel%3A%20PJSIP%2Fx-1%0Agarbage%0Aagi_uniqueid%3A%209.9%0A"
    start = Message([("Event", "AsyncAGIStart"), ("Channel", "PJSIP/x-1"), ("Uniqueid", "9.9"),
                     ("Env", env)])  # fmt: skip
    (started,) = model.handle(start, 5.0)
    assert isinstance(started, AsyncAgiStarted) and started.call_id is None
    assert started.env == {"agi_channel": "PJSIP/x-1", "agi_uniqueid": "9.9"}
    assert model.handle(Message([("Event", "AsyncAGIExec"), ("Channel", "PJSIP/x-1")])) == []
    assert model.handle(Message([("Event", "AsyncAGIEnd")])) == []


# ---------------------------------------------------------------------------- transport


class Actions:
    """An ActionSender that records the actions and answers each as told."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []
        self.refuse: str | None = None

    def send_action(
        self, name: str, fields: Sequence[tuple[str, str]] = (), *, timeout: float | None = None
    ) -> Deferred[Message]:
        self.sent.append((name, dict(fields)))
        if self.refuse is not None:
            response = Message([("Response", "Error"), ("Message", self.refuse)])
            return defer.fail(ActionFailed(name, response))
        return defer.succeed(Message([("Response", "Success"),
                                      ("Message", "Added AGI command to queue")]))  # fmt: skip


class Harness:
    def __init__(self) -> None:
        self.clock = Clock()
        self.actions = Actions()
        self.sessions: list[AsyncAgiSession] = []
        self.agi = AsyncAgi(
            self.actions, self.clock, self.sessions.append, reply_timeout=10, prefix="t"
        )

    def start(self, channel: str = CHANNEL) -> AsyncAgiSession:
        env = {"agi_channel": channel, "agi_uniqueid": "1.2", "agi_callerid": "+15554443333"}
        self.agi.on_call_event(AsyncAgiStarted(1.0, channel, "1.1", env))
        return self.sessions[-1]

    def reply(self, command_id: str, text: str, channel: str = CHANNEL) -> None:
        self.agi.on_call_event(AsyncAgiReplied(2.0, channel, "1.1", command_id, text))


def outcome(d: Deferred[Any]) -> list[Any]:
    got: list[Any] = []
    d.addBoth(got.append)
    return got


def test_recording_04_driven_through_the_transport() -> None:
    """The driver's nine commands as AGI actions; the recorded replies, matched by our
    CommandIDs, answer them in the recorded order."""
    h = Harness()
    for event in recording_04_events():
        if isinstance(event, AsyncAgiStarted):
            h.agi.on_call_event(event)
    (session,) = h.sessions
    assert session.env.channel == CHANNEL and session.call_id == "1795356729.16"
    channel: AgiChannel = session  # what the IVR's shell holds (checked by mypy)
    results = [outcome(channel.send(c)) for c in COMMANDS]
    assert [f for _, f in h.actions.sent] == [
        {"Channel": CHANNEL, "Command": c, "CommandID": f"t-{n}"} for n, c in enumerate(COMMANDS, 1)
    ]
    assert {name for name, _ in h.actions.sent} == {"AGI"}
    recorded = [e for e in recording_04_events() if isinstance(e, AsyncAgiReplied)]
    for n, event in enumerate(recorded, 1):  # the recording's cmdN is our t-N
        h.reply(f"t-{n}", event.reply, event.channel)
    replies: list[AgiReply] = [r[0] for r in results]
    assert variable_value(replies[1]) == "+15554443333"
    assert variable_value(replies[2]) == "1795356729.17"
    assert replies[4].endpos == 12000
    assert pressed_digit(replies[5]) == "5"
    assert collected_digits(replies[6]) == ("42", False)
    assert replies[8].number == 6
    assert not h.clock.getDelayedCalls()  # every reply cancelled its timer
    for event in recording_04_events():
        if isinstance(event, AsyncAgiEnded):
            h.agi.on_call_event(event)
    assert session.ended is AgiEnd.ENDED and not h.agi.sessions


def test_replies_to_other_commands_or_channels_are_not_taken() -> None:
    h = Harness()
    session = h.start()
    waiting = outcome(session.send("NOOP"))
    h.reply("someone-else-1", "200 result=0")  # another AMI client's command
    h.reply("t-1", "200 result=0", channel="PJSIP/other-1")
    assert waiting == []
    h.reply("t-1", "200 result=0")
    assert waiting[0].result == "0"


def test_timeout_then_late_reply_is_ignored() -> None:
    h = Harness()
    session = h.start()
    slow = outcome(session.send(get_data("menu", 20000, 4)))
    custom = outcome(session.send(get_data("menu", 20000, 4), timeout=30))
    h.clock.advance(10)
    assert isinstance(slow[0].value, AgiTimeout) and custom == []
    h.reply("t-1", "200 result=1")  # too late: dropped, the session goes on
    h.reply("t-2", "200 result=2")
    assert custom[0].result == "2" and session.ended is None


def test_refused_action_fails_the_command() -> None:
    h = Harness()
    session = h.start()
    h.actions.refuse = "Channel SIP/x does not exist."
    refused = outcome(session.send("NOOP"))
    assert isinstance(refused[0].value, ActionFailed)
    assert not h.clock.getDelayedCalls()


def test_end_fails_what_waits_and_fires_closed_once() -> None:
    h = Harness()
    session = h.start()
    ends = outcome(session.closed)
    waiting = outcome(session.send(wait_for_digit(-1)))
    h.agi.on_call_event(AsyncAgiEnded(3.0, CHANNEL, "1.1"))
    assert isinstance(waiting[0].value, AgiSessionEnded)
    assert waiting[0].value.reason is AgiEnd.ENDED and ends == [AgiEnd.ENDED]
    late = outcome(session.send("NOOP"))
    assert isinstance(late[0].value, AgiSessionEnded)
    h.agi.on_call_event(AsyncAgiEnded(3.0, CHANNEL, "1.1"))  # again: nothing happens
    assert ends == [AgiEnd.ENDED] and not h.clock.getDelayedCalls()


def test_close_sends_asyncagi_break() -> None:
    h = Harness()
    session = h.start()
    session.close()
    assert h.actions.sent[-1] == (
        "AGI", {"Channel": CHANNEL, "Command": "ASYNCAGI BREAK", "CommandID": "t-1"}
    )  # fmt: skip
    assert session.ended is AgiEnd.CLOSED and not h.agi.sessions


def test_bad_replies_and_commands() -> None:
    h = Harness()
    session = h.start()
    garbled = outcome(session.send("NOOP"))
    h.reply("t-1", "hello")
    assert isinstance(garbled[0].value, AgiProtocolError) and garbled[0].value.line == "hello"
    bad = outcome(session.send("NOOP\r\nHANGUP"))
    assert isinstance(bad[0].value, AgiError) and len(h.actions.sent) == 1


def test_a_restarted_session_on_the_same_channel_ends_the_old_one(caplog: Any) -> None:
    h = Harness()
    first = h.start()
    waiting = outcome(first.send("NOOP"))
    second = h.start()
    assert first.ended is AgiEnd.ENDED and isinstance(waiting[0].value, AgiSessionEnded)
    assert h.agi.sessions[CHANNEL] is second
    h.agi.on_call_event(AsyncAgiStarted(4.0, "Local/x;2", None, {}))  # no uniqueid: refused
    assert "unusable environment" in caplog.text and len(h.sessions) == 2


# ---------------------------------------------------------------------------- over AMI/TCP


@pytest.fixture
def simulator(reactor: Any) -> Any:
    port = start_simulator(reactor)
    yield port
    port.stopListening()


@pytest.fixture
def app(simulator: Any, reactor: Any, tmp_path: Path, run: Any) -> Any:
    center = start_backend(reactor, run, simulator, tmp_path)
    yield center
    run(center.stop())


def test_end_to_end_with_the_simulator(app: Any, reactor: Any, run: Any) -> None:
    """A caller on DID 5002 (AGI(agi:async)), driven over the backend's own AMI link: the
    replies come back through the call model's events; the caller presses 5 and 42#, is
    redirected to queue support, and the call's history holds no AGI chatter."""
    sessions: list[AsyncAgiSession] = []
    agi = AsyncAgi(app.ami, reactor, sessions.append, reply_timeout=10)
    app.watch(agi.on_call_event, "asyncagi")

    async def go() -> list[Any]:
        fields = caller("+15554443333", "Dan Async", "5002", 3, keys=("5", "42#"))
        await app.ami.send_action("Originate", fields)
        await until(lambda: bool(sessions))
        session = sessions[0]
        await session.send(answer())
        number = variable_value(await session.send(get_full_variable("${CALLERID(num)}")))
        await session.send(set_variable("CTI_ROUTE", "support"))
        beep = await session.send(stream_file("lab-beep"))
        digit = pressed_digit(await session.send(wait_for_digit(5000)))
        keyed = collected_digits(await session.send(get_data("lab-beep", 5000, 4)))
        unknown = await session.send("FLY TO THE MOON")
        await app.ami.send_action(
            "Redirect",
            [("Channel", session.channel), ("Context", "queue-entry"), ("Exten", "support"),
             ("Priority", "1")],
        )  # fmt: skip
        end = await session.closed
        await until(lambda: any(e.kind == "ended" for e in app.seen), timeout=30)
        await until(lambda: app.history.pending == 0)
        return [number, beep.endpos, digit, keyed, unknown.code, end]

    got = run(go(), timeout=40)
    assert got == ["+15554443333", 2400, "5", ("42", False), 510, AgiEnd.ENDED]
    assert sessions[0].env.calleridname == "Dan Async"
    (queued,) = [e for e in app.seen if isinstance(e, CallQueued)]
    assert queued.queue == "support" and queued.call_id == sessions[0].call_id
    assert [e.kind for e in app.devices if e.kind.startswith("asyncagi_")][-2:] == [
        "asyncagi_replied", "asyncagi_ended"
    ]  # fmt: skip
    stored = load_call_events(create_engine(app.settings.database.url.get_secret_value()))
    assert stored == [e.to_record() for e in app.seen]
    assert not any(r["kind"].startswith("asyncagi") for r in stored)
    assert not agi.sessions


def test_recording_04_replays_from_raw_the_same() -> None:
    """The raw bytes of 04 give the same AsyncAGI events as its JSON lines."""
    from_raw = replay(captures_dir() / "04-asyncagi.raw", CallModel(), devices=True)
    from_json = recording_04_events()
    assert [e.to_record() for e in from_raw if e.kind.startswith("asyncagi")] == [
        e.to_record() for e in from_json if e.kind.startswith("asyncagi")
    ]
