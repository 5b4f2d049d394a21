"""IvrService with a scripted AGI channel and a fake clock: each step's AGI commands, the
results fed back, timeouts on the clock, dead channels and hang-ups, and start-up errors
that name the setting to fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from callcenter.settings import ConfigError, load_settings
from cti.ami.codec import Message
from ivr.agi import AgiEnd, AgiEnvironment, AgiReply, AgiSessionEnded, AgiTimeout, parse_reply
from ivr.config import IvrSettings
from ivr.errors import IvrStartupError
from ivr.events import IvrEvent, IvrFinished
from ivr.interpreter import CallerFound, WaitFigures
from ivr.service import HoldingLane, IvrService, IvrTargets

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "config" / "ivr"
TARGETS = IvrTargets({"sales": HoldingLane("holding", "s", "external"),
                      "support": HoldingLane("holding", "moh", "external-moh")})  # fmt: skip
ENTRIES = ({"entry": "5002", "flow": "main"}, {"entry": "5010", "flow": "vip_fast_lane"})

Reply = str | Callable[[str], str | None]


class Channel:
    """An AGI channel whose replies a test scripts: ``answer(command) -> reply text`` (None:
    no reply, the command waits)."""

    def __init__(self, answer: Callable[[str], str | None], extension: str = "did-5002") -> None:
        self._env = AgiEnvironment.from_values({
            "agi_channel": "Local/5002@inbound-1;2", "agi_uniqueid": "1.2",
            "agi_callerid": "+302101234567", "agi_extension": extension,
        })  # fmt: skip
        self._closed: Deferred[AgiEnd] = Deferred()
        self.answer = answer
        self.sent: list[str] = []
        self.waiting: list[Deferred[AgiReply]] = []
        self.closes = 0

    @property
    def env(self) -> AgiEnvironment:
        return self._env

    @property
    def closed(self) -> Deferred[AgiEnd]:
        return self._closed

    def send(self, command: str, timeout: float | None = None) -> Deferred[AgiReply]:
        self.sent.append(command)
        text = self.answer(command)
        if text is None:
            d: Deferred[AgiReply] = Deferred()
            self.waiting.append(d)
            return d
        return defer.succeed(parse_reply(text))

    def close(self) -> None:
        self.closes += 1

    def end(self, reason: AgiEnd = AgiEnd.ENDED) -> None:
        for d in self.waiting:
            d.errback(AgiSessionEnded(reason))
        self._closed.callback(reason)


class Ami:
    def __init__(self) -> None:
        self.actions: list[tuple[str, dict[str, str]]] = []

    def send_action(self, name: str, fields: Any = (), *, timeout: float | None = None
                    ) -> Deferred[Message]:  # fmt: skip
        self.actions.append((name, dict(fields)))
        return defer.succeed(Message([("Response", "Success")]))


def service(clock: Clock, ami: Ami, **kw: Any) -> tuple[IvrService, list[IvrEvent]]:
    settings = IvrSettings.model_validate({"flows": [FLOWS], "entries": ENTRIES,
                                           "fastagi_port": 0, "agi_timeout": 5})  # fmt: skip
    ivr = IvrService(settings, reactor=clock, actions=ami, queues=("sales", "support"),
                     targets=TARGETS, **kw)  # fmt: skip
    seen: list[IvrEvent] = []
    ivr.events.subscribe(seen.append)
    return ivr, seen


def keys(*pressed: tuple[str, str]) -> Callable[[str], str | None]:
    """Replies: ``(command prefix, reply)`` used in order for matching commands; anything
    else succeeds plainly."""
    script = list(pressed)

    def answer(command: str) -> str | None:
        if script and command.startswith(script[0][0]):
            return script.pop(0)[1]
        if command.startswith(("STREAM", "SAY", "WAIT")):
            return "200 result=0 endpos=100"  # played through, no key
        return "200 result=1"

    return answer


def test_a_key_during_the_menu_routes_to_sales_with_the_variables_then_redirects() -> None:
    clock, ami = Clock(), Ami()
    ivr, seen = service(clock, ami, wait_figures=lambda q: WaitFigures(3, 90.0))
    channel = Channel(keys(("STREAM FILE press-1-sales", "200 result=49 endpos=10")))
    ivr._begin(channel, "main", "asyncagi", "call-1")
    assert channel.sent[:3] == ['STREAM FILE welcome 0123456789*#',
                                'STREAM FILE calls-recorded 0123456789*#',
                                'STREAM FILE press-1-sales 0123456789*#']  # fmt: skip
    # Position 3, wait 90 s -> 2 minutes, said without barge-in; then the route.
    assert "SAY NUMBER 3 \"\"" in channel.sent and "SAY NUMBER 2 \"\"" in channel.sent
    sets = [c for c in channel.sent if c.startswith("SET VARIABLE")]
    assert sets == ['SET VARIABLE IVR_PATH main.welcome>main.hours>main.menu>main.sales_wait'
                    '>main.sales', "SET VARIABLE IVR_DIGITS 1"]  # fmt: skip
    redirect = {"Channel": "Local/5002@inbound-1;2", "Context": "holding", "Exten": "s",
                "Priority": "1"}  # fmt: skip
    assert ami.actions == [("Redirect", redirect)]
    (done,) = [e for e in seen if isinstance(e, IvrFinished)]
    assert (done.outcome, done.queue, done.call_id, done.digits) == ("queued", "sales", "call-1",
                                                                     ("1",))  # fmt: skip
    assert channel.closes == 0  # AsyncAGI: the Redirect ends the session on the PBX's side
    assert not ivr.sessions


def test_no_reply_in_time_is_the_step_timing_out_on_the_clock() -> None:
    """WAIT FOR DIGIT unanswered past its own 5 s plus agi_timeout: the menu counts it as
    silence, asks again twice, then goes on (after_retries) to sales."""
    clock, ami = Clock(), Ami()
    ivr, seen = service(clock, ami)
    channel = Channel(keys())

    def no_reply(command: str) -> str | None:
        return None if command.startswith("WAIT FOR DIGIT") else keys()(command)

    channel.answer = no_reply
    waiting: list[Deferred[AgiReply]] = []

    def send(command: str, timeout: float | None = None) -> Deferred[AgiReply]:
        channel.sent.append(command)
        if command.startswith("WAIT FOR DIGIT"):
            d: Deferred[AgiReply] = Deferred()
            waiting.append(d)
            assert timeout == 10  # the 5 s wait plus agi_timeout
            def late() -> None:
                if not d.called:
                    d.errback(AgiTimeout(command, 10))

            clock.callLater(timeout, late)
            return d
        return defer.succeed(parse_reply(keys()(command) or ""))

    channel.send = send  # type: ignore[method-assign]
    ivr._begin(channel, "main", "fastagi", None)
    for _ in range(3):
        clock.advance(10)
    assert channel.sent.count("WAIT FOR DIGIT 5000") == 3
    (done,) = [e for e in seen if isinstance(e, IvrFinished)]
    assert done.outcome == "queued" and done.path[-1] == "main.sales"
    assert channel.closes == 1  # FastAGI: the connection is closed after the Redirect


def test_a_dead_channel_511_ends_the_session_channel_gone() -> None:
    clock, ami = Clock(), Ami()
    ivr, seen = service(clock, ami)
    channel = Channel(keys(("STREAM FILE welcome", "511 Command Not Permitted on a dead channel")))
    ivr._begin(channel, "main", "asyncagi", "c")
    (done,) = [e for e in seen if isinstance(e, IvrFinished)]
    assert done.outcome == "channel_gone" and not ivr.sessions and not ami.actions


def test_a_hang_up_while_a_command_waits_ends_the_session_once() -> None:
    clock, ami = Clock(), Ami()
    ivr, seen = service(clock, ami)
    channel = Channel(lambda command: None)
    ivr._begin(channel, "main", "fastagi", "c")
    assert ivr.sessions
    channel.end(AgiEnd.HANGUP)
    finished = [e for e in seen if isinstance(e, IvrFinished)]
    assert [e.outcome for e in finished] == ["hung_up"] and not ivr.sessions
    assert channel.closes == 0


def test_a_flow_cut_short_by_the_backend_stopping_ends_stopped_and_hands_the_caller_back(
) -> None:
    clock, ami = Clock(), Ami()
    ivr, seen = service(clock, ami)
    channel = Channel(lambda command: None)
    ivr._begin(channel, "main", "fastagi", "c")
    ivr.stop()
    channel.end(AgiEnd.CLOSED)  # the connection closing after
    finished = [e for e in seen if isinstance(e, IvrFinished)]
    assert [e.outcome for e in finished] == ["stopped"] and not ivr.sessions
    assert channel.closes == 1  # the dialplan goes on (the entry's fallback, if any)


def test_the_vip_fast_lane_uses_the_lookup_and_a_slow_lookup_counts_as_unknown() -> None:
    clock, ami = Clock(), Ami()
    ivr, seen = service(clock, ami, lookup_caller=lambda n: CallerFound("Ελένη", "vip", 0))
    channel = Channel(keys())
    ivr._begin(channel, "vip_fast_lane", "asyncagi", "c")
    (done,) = [e for e in seen if isinstance(e, IvrFinished)]
    assert done.path == ("vip_fast_lane.who", "vip_fast_lane.tier", "vip_fast_lane.greet_vip",
                         "vip_fast_lane.vip_queue")  # fmt: skip
    assert done.variables["CALLER_TIER"] == "vip" and done.variables["CALLER_NAME"] == "Ελένη"

    slow, seen2 = service(Clock(), Ami(), lookup_caller=lambda n: Deferred())
    clock2 = slow.reactor
    channel2 = Channel(lambda command: None)
    slow._begin(channel2, "vip_fast_lane", "asyncagi", "c")
    assert channel2.sent == []  # waiting on the look-up
    clock2.advance(1.0)  # lookup_timeout: the caller is unknown, the main menu begins
    assert channel2.sent == ["STREAM FILE welcome 0123456789*#"]
    assert [e for e in seen2 if isinstance(e, IvrFinished)] == []


def test_callback_voicemail_and_transfer_use_the_acds_paths() -> None:
    clock, ami = Clock(), Ami()
    ivr, seen = service(clock, ami)
    channel = Channel(keys(("STREAM FILE welcome", "200 result=51 endpos=1")))
    ivr._begin(channel, "main", "asyncagi", "c")
    execs = [c for c in channel.sent if c.startswith("EXEC")]
    assert execs == ['EXEC UserEvent "CtiParked,Queue: external,CallerIDNum: +302101234567"',
                     'EXEC UserEvent "CtiCallback,Number: +302101234567"']  # fmt: skip
    assert channel.sent[-1] == "HANGUP"
    (done,) = [e for e in seen if isinstance(e, IvrFinished)]
    assert (done.outcome, done.queue) == ("callback", "sales")

    ami2 = Ami()
    ivr2, seen2 = service(Clock(), ami2)
    ivr2._begin(Channel(keys(("STREAM FILE welcome", "200 result=48 endpos=1"))), "main",
                "asyncagi", "c")  # fmt: skip
    assert ami2.actions[0][1]["Context"] == "outbound" and ami2.actions[0][1]["Exten"] == "6001"
    assert [e.outcome for e in seen2 if isinstance(e, IvrFinished)] == ["transferred"]


def test_entries_find_flows_by_script_argument_or_did() -> None:
    settings = IvrSettings.model_validate({"flows": [FLOWS], "entries": ENTRIES})
    flows = ("main", "vip_fast_lane")
    assert settings.flow_for(flows, extension="did-5010") == "vip_fast_lane"
    assert settings.flow_for(flows, script="main") == "main"
    assert settings.flow_for(flows, argument="5002") == "main"
    assert settings.flow_for(flows, script="lab-route", extension="9999") is None


@pytest.mark.parametrize(
    ("ivr", "message"),
    [
        ({"flows": ["nowhere"]}, "nowhere does not exist"),
        ({"flows": [str(FLOWS)], "entries": [{"entry": "5002", "flow": "nope"}]},
         "runs flow 'nope', which no flow file defines"),
    ],
)  # fmt: skip
def test_startup_errors_name_the_setting(ivr: dict[str, Any], message: str) -> None:
    settings = IvrSettings.model_validate(ivr)
    with pytest.raises(IvrStartupError, match=message) as err:
        IvrService(settings, reactor=Clock(), actions=Ami(), queues=("sales", "support"),
                   targets=TARGETS)  # fmt: skip
    assert err.value.setting in ("flows", "entries")


def test_flows_naming_a_queue_the_acd_lacks_or_without_a_lane_are_refused() -> None:
    settings = IvrSettings.model_validate({"flows": [FLOWS]})
    with pytest.raises(IvrStartupError, match="support") as err:
        IvrService(settings, reactor=Clock(), actions=Ami(), queues=("sales",), targets=TARGETS)
    assert err.value.setting == "flows"
    lanes = IvrTargets({"sales": TARGETS.holding["sales"]})
    with pytest.raises(IvrStartupError, match="queue 'support' has no holding lane"):
        IvrService(settings, reactor=Clock(), actions=Ami(), queues=("sales", "support"),
                   targets=lanes)  # fmt: skip


def test_the_ivr_section_is_checked_with_the_process_settings() -> None:
    with pytest.raises(ConfigError, match=r"key 'ivr.fastagi_port'"):
        load_settings(None, {"CALLCENTER_IVR__FASTAGI_PORT": "70000"})
    with pytest.raises(ConfigError, match="entry '5002' is given twice"):
        twice = '[{"entry": 5002, "flow": "a"}, {"entry": "5002", "flow": "b"}]'
        load_settings(None, {"CALLCENTER_IVR__FLOWS": '["ivr"]', "CALLCENTER_IVR__ENTRIES": twice})
    settings = load_settings(None, {"CALLCENTER_IVR__FLOWS": '["ivr"]'})
    assert settings.ivr.flows[0].parts[-2:] == ("config", "ivr")  # beside callcenter.yaml
