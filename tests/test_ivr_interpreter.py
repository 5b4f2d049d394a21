"""The pure IVR interpreter: every node type, timeouts, wrong keys, retries, barge-in,
hang-ups and transport errors at any point, and random key/timeout/hang-up sequences."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acd.config import BusinessHours, QueueConfig
from ivr.errors import UnexpectedResult
from ivr.flow import Flow, FlowBook, GotoNode, load_flows, parse_flows
from ivr.interpreter import (
    MAX_HOPS,
    AskWait,
    CallerFound,
    CallerUnknown,
    CheckResult,
    CollectDigits,
    DigitsCollected,
    Finished,
    HangUp,
    HungUp,
    IvrSession,
    LeaveMessage,
    LookupCaller,
    Play,
    PlayDone,
    RequestCallback,
    Result,
    RouteToQueue,
    RunCheck,
    SayNumber,
    SetVariable,
    Step,
    TransferTo,
    TransportError,
    WaitDigit,
    WaitFigures,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = load_flows(sorted((ROOT / "config" / "ivr").glob("*.yaml")), queues=("sales", "support"))
P = {"en": "p-en", "fr": "p-fr"}
HANGUP = {"type": "hangup"}
MENU = {
    "type": "menu",
    "prompts": {"en": "menu", "fr": "fr/menu"},
    "choices": {1: "one", 2: "two"},
    "timeout": 3,
    "retries": 1,
    "invalid_prompts": {"en": "invalid", "fr": "fr/invalid"},
    "timeout_prompts": {"en": "nothing", "fr": "fr/nothing"},
}
T0 = 1_000_000.0


def _book(nodes: dict[str, Any], start: str = "a", **flows: dict[str, Any]) -> FlowBook:
    document = {
        "languages": ["en", "fr"],
        "flows": {"main": {"start": start, "nodes": nodes}, **flows},
    }
    return parse_flows([("test.yaml", document)], queues=("sales", "support"), checks=None)


def _session(book: FlowBook, flow: str = "main", **facts: Any) -> IvrSession:
    facts.setdefault("caller", "+33123456789")
    return IvrSession(book, flow, channel="PJSIP/t-1", call_id="c1", **facts)


def _menu_book(**menu: Any) -> FlowBook:
    return _book(
        {
            "a": {**MENU, **menu},
            "one": {"type": "transfer", "number": "1001"},
            "two": {"type": "transfer", "number": "1002"},
            **({"else": HANGUP} if any(v == "else" for v in menu.values()) else {}),
        }
    )


# -- play, menu --------------------------------------------------------------------------


def test_play_then_hang_up() -> None:
    s = _session(_book({"a": {"type": "play", "prompts": P, "next": "b"}, "b": HANGUP}))
    assert s.start(T0) == [Play(("p-en",), barge_in=False)]
    assert s.waiting_for == Play(("p-en",))
    steps = s.on_result(PlayDone(), T0 + 2)
    assert steps == [HangUp(), Finished("ended", ("main.a", "main.b"), ())]
    assert s.finished and s.outcome == "ended" and s.waiting_for is None
    assert (s.started_at, s.ended_at) == (T0, T0 + 2)


def test_menu_key_after_the_prompt() -> None:
    s = _session(_menu_book())
    assert s.start(T0) == [Play(("menu",), barge_in=True)]
    assert s.on_result(PlayDone(None), T0) == [WaitDigit(3)]
    steps = s.on_result(DigitsCollected("2"), T0)
    assert steps == [TransferTo("1002"), Finished("transferred", ("main.a", "main.two"), ("2",))]


def test_menu_key_during_the_prompt() -> None:
    s = _session(_menu_book())
    s.start(T0)
    assert s.on_result(PlayDone("1"), T0)[0] == TransferTo("1001")
    assert s.digits == ("1",)


def test_wrong_key_plays_invalid_and_asks_again() -> None:
    s = _session(_menu_book())
    s.start(T0)
    s.on_result(PlayDone(None), T0)
    assert s.on_result(DigitsCollected("7"), T0) == [Play(("invalid",), barge_in=True)]
    assert s.on_result(PlayDone(None), T0) == [Play(("menu",), barge_in=True)]
    s.on_result(PlayDone(None), T0)
    assert s.on_result(DigitsCollected("1"), T0)[0] == TransferTo("1001")
    assert s.digits == ("7", "1")
    assert s.path == ("main.a", "main.one")


def test_silence_plays_the_timeout_prompt() -> None:
    s = _session(_menu_book())
    s.start(T0)
    s.on_result(PlayDone(None), T0)
    assert s.on_result(DigitsCollected("", timed_out=True), T0) == [
        Play(("nothing",), barge_in=True)
    ]


def test_key_during_the_invalid_prompt_is_the_next_choice() -> None:
    s = _session(_menu_book())
    s.start(T0)
    s.on_result(PlayDone("9"), T0)
    assert s.on_result(PlayDone("2"), T0)[0] == TransferTo("1002")
    assert s.digits == ("9", "2")


def test_retries_exhausted_without_after_retries_hangs_up() -> None:
    s = _session(_menu_book())
    s.start(T0)
    s.on_timeout(T0)  # the prompt's own timer: as if it ended without a key
    s.on_timeout(T0)  # no key
    s.on_result(PlayDone(), T0)  # "nothing" prompt
    s.on_result(PlayDone(), T0)  # menu again
    steps = s.on_result(DigitsCollected("", timed_out=True), T0)
    assert steps == [HangUp(), Finished("retries_exhausted", ("main.a",), ())]


def test_retries_exhausted_goes_to_after_retries() -> None:
    s = _session(_menu_book(retries=0, after_retries="two"))
    s.start(T0)
    s.on_result(PlayDone("5"), T0)
    assert s.outcome == "transferred" and s.path == ("main.a", "main.two")


def test_on_invalid_goes_there_at_once() -> None:
    s = _session(_menu_book(on_invalid="else"))
    s.start(T0)
    assert s.on_result(PlayDone("#"), T0) == [
        HangUp(),
        Finished("ended", ("main.a", "main.else"), ("#",)),
    ]


def test_menu_without_invalid_prompts_asks_again_at_once() -> None:
    book = _book(
        {
            "a": {"type": "menu", "prompts": P, "choices": {1: "b"}, "retries": 3},
            "b": HANGUP,
        }
    )
    s = _session(book)
    s.start(T0)
    assert s.on_result(PlayDone("4"), T0) == [Play(("p-en",), barge_in=True)]


def test_barge_in_skips_to_the_menu() -> None:
    book = _book(
        {
            "a": {"type": "play", "prompts": P, "barge_in": True, "next": "b"},
            "b": {"type": "play", "prompts": P, "barge_in": True, "next": "c"},
            "c": {"type": "set", "variable": "X", "value": "y", "next": "a2"},
            "a2": {**MENU, "choices": {1: "one", 2: "two"}},
            "one": HANGUP,
            "two": HANGUP,
        }
    )
    s = _session(book)
    s.start(T0)
    steps = s.on_result(PlayDone("2"), T0)
    assert steps == [
        SetVariable("X", "y"),
        HangUp(),
        Finished("ended", ("main.a", "main.b", "main.c", "main.a2", "main.two"), ("2",)),
    ]


def test_key_during_a_prompt_without_barge_in_is_ignored() -> None:
    book = _book({"a": {"type": "play", "prompts": P, "next": "m"}, "m": MENU, **_ends()})
    s = _session(book)
    s.start(T0)
    assert s.on_result(PlayDone("1"), T0) == [Play(("menu",), barge_in=True)]


def _ends() -> dict[str, Any]:
    return {"one": HANGUP, "two": HANGUP}


# -- collect ---------------------------------------------------------------------------------


def _collect_book(**collect: Any) -> FlowBook:
    node = {
        "type": "collect",
        "prompts": P,
        "variable": "ACCOUNT",
        "min_length": 4,
        "max_length": 16,
        "validate": {"luhn": True},
        "invalid_prompts": {"en": "wrong", "fr": "fr/wrong"},
        "retries": 1,
        "next": "q",
        **collect,
    }
    ends = {"x": HANGUP} if "x" in collect.values() else {}
    return _book({"a": node, "q": {"type": "queue", "queue": "support"}, **ends})


def test_collect_a_luhn_number_and_route_with_it() -> None:
    s = _session(_collect_book())
    assert s.start(T0) == [CollectDigits(("p-en",), 4, 16, 5.0, "#")]
    steps = s.on_result(DigitsCollected("79927398713"), T0)
    assert steps == [
        RouteToQueue(
            "support",
            {
                "ACCOUNT": "79927398713",
                "IVR_PATH": "main.a>main.q",
                "IVR_DIGITS": "79927398713",
            },
            None,
        ),
        Finished("queued", ("main.a", "main.q"), ("79927398713",)),
    ]


def test_collect_bad_luhn_retries_then_gives_up() -> None:
    s = _session(_collect_book())
    s.start(T0)
    assert s.on_result(DigitsCollected("79927398710"), T0) == [Play(("wrong",), barge_in=True)]
    assert s.on_result(PlayDone(), T0) == [CollectDigits(("p-en",), 4, 16, 5.0, "#")]
    steps = s.on_result(DigitsCollected("1234"), T0)
    assert steps[-1] == Finished("retries_exhausted", ("main.a",), ("79927398710", "1234"))
    assert "ACCOUNT" not in s.variables


@pytest.mark.parametrize(
    ("keyed", "valid"),
    [
        ("123", False),  # shorter than min_length
        ("1234", True),
        ("1234#99", True),  # stops at the terminator
        ("12a4", False),
        ("", False),
        ("12345678901234567", False),  # longer than max_length
    ],
)
def test_collect_length_and_pattern(keyed: str, valid: bool) -> None:
    s = _session(
        _collect_book(validate={"pattern": "[0-9]+"}, retries=0, after_retries="x", max_length=16)
    )
    s.start(T0)
    s.on_result(DigitsCollected(keyed), T0)
    assert (s.outcome == "queued") is valid
    if valid:
        assert s.variables["ACCOUNT"] == "1234"


def test_collect_check_by_the_service() -> None:
    s = _session(_collect_book(validate={"check": "known_account"}, retries=0, after_retries="x"))
    s.start(T0)
    assert s.on_result(DigitsCollected("5555"), T0) == [RunCheck("known_account", "5555")]
    s.on_result(CheckResult(True), T0)
    assert s.outcome == "queued" and s.variables["ACCOUNT"] == "5555"
    s2 = _session(_collect_book(validate={"check": "known_account"}, retries=0, after_retries="x"))
    s2.start(T0)
    s2.on_result(DigitsCollected("5555"), T0)
    s2.on_timeout(T0)  # a check that does not answer fails
    assert s2.outcome == "ended" and s2.path == ("main.a", "main.x")


def test_private_collect_is_masked_in_the_digits() -> None:
    s = _session(_collect_book(private=True))
    s.start(T0)
    s.on_result(DigitsCollected("79927398713"), T0)
    assert s.digits == ("***********",)
    assert s.variables["ACCOUNT"] == "79927398713"


def test_barge_in_digit_starts_the_collected_number() -> None:
    book = _book(
        {
            "a": {"type": "play", "prompts": P, "barge_in": True, "next": "c"},
            "c": {"type": "collect", "prompts": P, "variable": "N", "max_length": 3, "next": "b"},
            "b": HANGUP,
        }
    )
    s = _session(book)
    s.start(T0)
    assert s.on_result(PlayDone("4"), T0) == [CollectDigits((), 0, 2, 5.0, "#")]
    s.on_result(DigitsCollected("2"), T0)
    assert s.variables["N"] == "42"


def test_barge_in_digit_fills_a_one_digit_collect() -> None:
    book = _book(
        {
            "a": {"type": "play", "prompts": P, "barge_in": True, "next": "c"},
            "c": {"type": "collect", "prompts": P, "variable": "N", "max_length": 1, "next": "b"},
            "b": HANGUP,
        }
    )
    s = _session(book)
    s.start(T0)
    assert s.on_result(PlayDone("7"), T0)[-1].outcome == "ended"  # type: ignore[union-attr]
    assert s.variables["N"] == "7"


def test_barge_in_terminator_is_an_empty_collect() -> None:
    book = _book(
        {
            "a": {"type": "play", "prompts": P, "barge_in": True, "next": "c"},
            "c": {
                "type": "collect",
                "prompts": P,
                "variable": "N",
                "max_length": 3,
                "retries": 0,
                "next": "b",
            },
            "b": HANGUP,
        }
    )
    s = _session(book)
    s.start(T0)
    assert s.on_result(PlayDone("#"), T0)[-1] == Finished("retries_exhausted", s.path, ())


# -- the caller, branches ---------------------------------------------------------------------


def test_vip_fast_lane_skips_the_menu_and_routes_with_the_tier() -> None:
    s = _session(EXAMPLES, "vip_fast_lane", caller="+8613700137000")
    assert s.start(T0) == [LookupCaller("+8613700137000")]
    s.on_result(CallerFound("Li Wei", "vip", 2), T0)
    steps = s.on_result(PlayDone(), T0)
    route = steps[0]
    assert isinstance(route, RouteToQueue)
    assert route.queue == "sales" and route.tier == "vip"
    assert route.variables["CALLER_TIER"] == "vip"
    assert route.variables["CALLER_NAME"] == "Li Wei"
    assert route.variables["CALLER_OPEN_TICKETS"] == "2"
    assert route.variables["IVR_PATH"] == (
        "vip_fast_lane.who>vip_fast_lane.tier>vip_fast_lane.greet_vip>vip_fast_lane.vip_queue"
    )


@pytest.mark.parametrize(
    ("result", "first_main_step"),
    [
        (CallerFound("Ann", "key", 0), "main.welcome"),
        (CallerUnknown(), "main.welcome"),
    ],
)
def test_not_vip_gets_the_main_menu(result: Result, first_main_step: str) -> None:
    s = _session(EXAMPLES, "vip_fast_lane")
    s.start(T0)
    steps = s.on_result(result, T0)
    assert steps == [Play(("welcome", "calls-recorded"), barge_in=True)]
    assert first_main_step in s.path


def test_withheld_caller_is_not_looked_up() -> None:
    s = _session(EXAMPLES, "vip_fast_lane", caller=None)
    assert s.start(T0) == [Play(("welcome", "calls-recorded"), barge_in=True)]
    assert s.path[:2] == ("vip_fast_lane.who", "vip_fast_lane.menu")


def test_known_tier_given_at_creation() -> None:
    book = _book(
        {
            "a": {"type": "branch", "on": "tier", "cases": {"key": "k"}, "default": "o"},
            "k": {"type": "transfer", "number": "1"},
            "o": {"type": "transfer", "number": "2"},
        }
    )
    assert _session(book, tier="key").start(T0)[0] == TransferTo("1")
    assert _session(book).start(T0)[0] == TransferTo("2")


def _hours_book() -> FlowBook:
    hours = BusinessHours(
        time_zone="UTC", weekly={"mon": ("08:00-18:00",)}, holidays=(date(2026, 1, 5),)
    )
    queue = QueueConfig(
        name="sales", hours=hours, overflow={"kind": "voicemail", "target": "1@default"}
    )
    document = {
        "languages": ["en"],
        "flows": {
            "main": {
                "start": "a",
                "nodes": {
                    "a": {"type": "branch", "on": "hours", "queue": "sales", "open": "o"}
                    | {"closed": "c"},
                    "o": {"type": "queue", "queue": "sales"},
                    "c": {"type": "voicemail", "mailbox": "5003@default"},
                },
            }
        },
    }
    return parse_flows([("h.yaml", document)], queues={"sales": queue})


@pytest.mark.parametrize(
    ("when", "outcome"),
    [
        (datetime(2026, 1, 12, 9, 0, tzinfo=UTC), "queued"),  # a Monday, open
        (datetime(2026, 1, 12, 19, 0, tzinfo=UTC), "voicemail"),  # Monday evening
        (datetime(2026, 1, 13, 9, 0, tzinfo=UTC), "voicemail"),  # Tuesday: closed all day
        (datetime(2026, 1, 5, 9, 0, tzinfo=UTC), "voicemail"),  # a Monday holiday
    ],
)
def test_branch_on_the_queue_hours(when: datetime, outcome: str) -> None:
    s = _session(_hours_book())
    steps = s.start(when.timestamp())
    assert s.outcome == outcome
    if outcome == "voicemail":
        assert steps[0] == LeaveMessage("5003@default")


@pytest.mark.parametrize(
    ("figures", "target"),
    [
        (WaitFigures(3, 181.0), "main.offer_callback"),
        (WaitFigures(1, 180.0), "main.sales"),
        (WaitFigures(None, None), "main.sales"),
    ],
)
def test_branch_on_the_estimated_wait(figures: WaitFigures, target: str) -> None:
    s = _session(EXAMPLES)
    s.start(T0)
    s.on_result(PlayDone("1"), T0)  # the welcome, barged into with 1: sales
    assert s.waiting_for == AskWait("sales")
    s.on_result(figures, T0)
    assert s.path[-1] == target


def test_branch_on_a_variable() -> None:
    book = _book(
        {
            "s": {"type": "set", "variable": "V", "value": 2, "next": "a"},
            "a": {
                "type": "branch",
                "on": "variable",
                "variable": "V",
                "cases": {"2": "two"},
                "default": "other",
            },
            "two": {"type": "transfer", "number": "2"},
            "other": {"type": "transfer", "number": "0"},
        },
        start="s",
    )
    assert _session(book).start(T0)[:2] == [SetVariable("V", "2"), TransferTo("2")]


def test_language_switch_changes_the_prompts() -> None:
    s = _session(EXAMPLES)
    s.start(T0)
    s.on_result(PlayDone(None), T0)  # welcome
    s.on_result(PlayDone("9"), T0)  # menu: 9 = français
    assert s.language == "fr"
    steps = s.on_result(PlayDone(None), T0)  # a step late: the french menu is asked for
    assert steps == [WaitDigit(5)]
    s2 = _session(EXAMPLES)
    s2.start(T0)
    s2.on_result(PlayDone(None), T0)
    steps = s2.on_result(PlayDone("9"), T0)
    assert steps[0] == SetVariable("CHANNEL(language)", "fr")
    assert steps[1] == Play(
        ("fr/tapez-1-ventes", "fr/tapez-2-compte", "fr/tapez-3-rappel", "fr/tapez-0-standard"),
        barge_in=True,
    )


@pytest.mark.parametrize(
    ("asked", "language"),
    [("fr", "fr"), ("fr_CA", "fr"), ("de", "en"), (None, "en"), ("en-GB", "en")],
)
def test_language_of_the_caller(asked: str | None, language: str) -> None:
    assert _session(EXAMPLES, language=asked).language == language


# -- queue, callback, voicemail, transfer, sub-flows --------------------------------------------


def test_queue_announces_position_and_wait_then_routes() -> None:
    s = _session(EXAMPLES)
    s.start(T0)
    s.on_result(PlayDone("2"), T0)  # account
    s.on_result(DigitsCollected("4111111111111111"), T0)
    assert s.on_result(PlayDone(), T0) == [AskWait("support")]  # thanks played, back in main
    assert s.on_result(WaitFigures(4, 130.0), T0) == [Play(("you-are-caller-number",))]
    assert s.on_result(PlayDone(), T0) == [SayNumber(4)]
    assert s.on_result(PlayDone(), T0) == [Play(("estimated-wait-minutes",))]
    assert s.on_result(PlayDone(), T0) == [SayNumber(3)]
    steps = s.on_result(PlayDone(), T0)
    route = steps[0]
    assert isinstance(route, RouteToQueue)
    assert route.queue == "support"
    assert route.variables["ACCOUNT"] == "4111111111111111"
    assert route.variables["ACCOUNT_STATUS"] == "verified"
    assert route.variables["IVR_DIGITS"] == "2-4111111111111111"
    assert route.variables["IVR_PATH"].split(">") == [
        "main.welcome",
        "main.hours",
        "main.menu",
        "main.account",
        "account_number.ask",
        "account_number.verified",
        "account_number.thanks",
        "account_number.done",
        "main.support",
    ]
    assert steps[1] == Finished("queued", s.path, ("2", "4111111111111111"))


def test_queue_without_figures_announces_nothing() -> None:
    s = _session(EXAMPLES)
    s.start(T0)
    s.on_result(PlayDone("1"), T0)
    s.on_result(WaitFigures(None, 10), T0)  # sales_wait: within
    assert s.on_result(WaitFigures(None, None), T0)[0] == RouteToQueue(
        "sales", {"IVR_PATH": ">".join(s.path), "IVR_DIGITS": "1"}, None
    )


def test_sub_flow_gives_up_and_returns() -> None:
    s = _session(EXAMPLES)
    s.start(T0)
    s.on_result(PlayDone("2"), T0)
    for _ in range(3):
        s.on_result(DigitsCollected("1234"), T0)  # too short
        if s.waiting_for == Play(("account-number-invalid",), barge_in=True):
            s.on_result(PlayDone(), T0)
    assert s.variables["ACCOUNT_STATUS"] == "unverified"
    assert s.waiting_for == AskWait("support")


def test_callback_keeps_the_callers_number() -> None:
    s = _session(EXAMPLES, caller="+4930123456")
    s.start(T0)
    steps = s.on_result(PlayDone("3"), T0)
    assert steps == [RequestCallback("sales", "+4930123456"), Play(_callback_ok())]
    assert s.on_result(PlayDone(), T0)[-1] == Finished("callback", s.path, ("3",))


def _callback_ok() -> tuple[str, ...]:
    return ("we-will-call-you-back", "goodbye")


def test_callback_without_a_number_is_never_promised() -> None:
    s = _session(EXAMPLES, caller=None)
    s.start(T0)
    assert s.on_result(PlayDone("3"), T0) == [Play(("number-withheld",))]
    assert s.path[-1] == "main.no_number"


def test_callback_number_from_a_variable() -> None:
    book = _book(
        {
            "a": {"type": "collect", "prompts": P, "variable": "NUM", "max_length": 12}
            | {"next": "cb"},
            "cb": {"type": "callback", "queue": "sales", "number_variable": "NUM"}
            | {"next": "b", "no_number": "b"},
            "b": HANGUP,
        }
    )
    s = _session(book, caller=None)
    s.start(T0)
    steps = s.on_result(DigitsCollected("0612345678"), T0)
    assert steps[0] == RequestCallback("sales", "0612345678")
    assert s.outcome == "callback"


def test_operator_transfer_and_closed_voicemail() -> None:
    s = _session(EXAMPLES)
    s.start(T0)
    assert s.on_result(PlayDone("0"), T0)[0] == TransferTo("6001")


def test_return_outside_a_call_hangs_up() -> None:
    s = _session(EXAMPLES, "account_number")
    s.start(T0)
    steps = s.on_result(DigitsCollected("79927398713"), T0)
    assert steps[0] == SetVariable("ACCOUNT_STATUS", "verified")
    assert s.on_result(PlayDone(), T0) == [HangUp(), Finished("ended", s.path, s.digits)]


def test_goto_another_flow() -> None:
    book = _book(
        {"a": {"type": "goto", "flow": "side"}},
        side={"start": "s", "nodes": {"s": {"type": "transfer", "number": "9"}}},
    )
    assert _session(book).start(T0)[0] == TransferTo("9")


def test_runaway_flow_stops() -> None:
    # The loader refuses this; a hand-built book shows the interpreter stops anyway.
    flow = Flow("main", "x", "a", ("en",), {"a": GotoNode("a", next="a")})
    s = _session(FlowBook({"main": flow}))
    steps = s.start(T0)
    assert steps[-2:] == [HangUp(), Finished("flow_loop", s.path, ())]
    assert len(s.path) == MAX_HOPS


# -- hang-ups, transport errors, misuse ---------------------------------------------------------


def test_hang_up_mid_menu_ends_cleanly() -> None:
    s = _session(_menu_book())
    s.start(T0)
    s.on_result(PlayDone(None), T0)
    assert s.on_hangup(T0 + 4) == [Finished("hung_up", ("main.a",), ())]
    assert s.finished and s.waiting_for is None and s.ended_at == T0 + 4
    assert s.on_result(DigitsCollected("1"), T0 + 5) == []  # a late reply is ignored
    assert s.on_timeout(T0 + 6) == [] and s.on_hangup(T0 + 7) == []
    assert s.outcome == "hung_up"


def test_hang_up_result() -> None:
    s = _session(_collect_book())
    s.start(T0)
    assert s.on_result(HungUp(), T0) == [Finished("hung_up", ("main.a",), ())]


def test_dead_channel() -> None:
    s = _session(_menu_book())
    s.start(T0)
    assert s.on_result(TransportError(511, "Command Not Permitted on a dead channel"), T0) == [
        Finished("channel_gone", ("main.a",), ())
    ]
    assert s.waiting_for is None


def test_other_agi_error_hangs_up() -> None:
    s = _session(_menu_book())
    s.start(T0)
    assert s.on_result(TransportError(510, "Invalid or unknown command"), T0) == [
        HangUp(),
        Finished("agi_error", ("main.a",), ()),
    ]


def test_hang_up_before_start() -> None:
    s = _session(_menu_book())
    assert s.on_hangup(T0) == [Finished("hung_up", (), ())]
    assert s.finished


def test_wrong_result_is_refused_and_changes_nothing() -> None:
    s = _session(_menu_book())
    s.start(T0)
    with pytest.raises(UnexpectedResult, match="does not answer"):
        s.on_result(CallerUnknown(), T0)
    assert s.waiting_for == Play(("menu",), barge_in=True)
    with pytest.raises(UnexpectedResult, match="started already"):
        s.start(T0)


def test_result_before_start_is_refused() -> None:
    with pytest.raises(UnexpectedResult, match="before the session started"):
        _session(_menu_book()).on_result(PlayDone(), T0)


def test_timeout_of_each_kind_of_wait() -> None:
    s = _session(EXAMPLES, "vip_fast_lane")
    s.start(T0)
    s.on_timeout(T0)  # a CRM that does not answer: unknown
    assert s.path[-1] == "main.welcome"
    s.on_timeout(T0)  # welcome
    s.on_timeout(T0)  # menu prompt
    assert s.waiting_for == WaitDigit(5)


# -- random sequences --------------------------------------------------------------------------

KEYS = "0123456789*#"


def _answer(step: Step, draw: Any) -> Result:
    """A plausible result for the step waited on."""
    match step:
        case Play() | SayNumber():
            return PlayDone(draw(st.sampled_from([None, None, *KEYS])))
        case CollectDigits() | WaitDigit():
            keyed = draw(st.text(KEYS, max_size=18))
            return DigitsCollected(keyed, timed_out=not keyed)
        case LookupCaller():
            tier = draw(st.sampled_from(["vip", "key", "ordinary", None]))
            return draw(st.sampled_from([CallerFound("X", tier, 1), CallerUnknown()]))
        case AskWait():
            return WaitFigures(
                draw(st.none() | st.integers(0, 50)),
                draw(st.none() | st.floats(0, 3600, allow_nan=False)),
            )
        case RunCheck():
            return CheckResult(draw(st.booleans()))
    raise AssertionError(step)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flow=st.sampled_from(["main", "vip_fast_lane", "account_number"]),
    caller=st.sampled_from([None, "+33123456789"]),
    language=st.sampled_from(["en", "fr"]),
    data=st.data(),
)
def test_random_sessions_end_or_wait(
    flow: str, caller: str | None, language: str, data: Any
) -> None:
    s = _session(EXAMPLES, flow, caller=caller, language=language)
    at = T0
    steps = s.start(at)
    known = {f"{f.name}.{n}" for f in EXAMPLES.flows.values() for n in f.nodes}
    for _ in range(60):
        _check_batch(s, steps, known)
        if s.finished:
            break
        at += data.draw(st.floats(0, 30, allow_nan=False))
        action = data.draw(st.sampled_from(["answer"] * 8 + ["timeout", "hangup", "dead", "err"]))
        waiting = s.waiting_for
        assert waiting is not None
        if action == "answer":
            steps = s.on_result(_answer(waiting, data.draw), at)
        elif action == "timeout":
            steps = s.on_timeout(at)
        elif action == "hangup":
            steps = s.on_hangup(at)
        elif action == "dead":
            steps = s.on_result(TransportError(511, "dead"), at)
        else:
            steps = s.on_result(TransportError(520, "usage"), at)
    if s.finished:
        assert s.on_hangup(at + 1) == [] and s.waiting_for is None


def _check_batch(s: IvrSession, steps: list[Step], known: set[str]) -> None:
    assert steps, "a batch never comes back empty while the session runs"
    assert set(s.path) <= known
    awaiting = [st_ for st_ in steps if st_.awaits]
    assert len(awaiting) <= 1
    last = steps[-1]
    if isinstance(last, Finished):
        assert s.finished and s.waiting_for is None and not awaiting
        assert last.path == s.path
        assert sum(isinstance(x, Finished) for x in steps) == 1
    else:
        assert not s.finished and awaiting == [last] and s.waiting_for == last


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.sampled_from([*KEYS, None]), max_size=12), hang_up_at=st.integers(0, 12))
def test_random_menu_keys_and_hang_up(keys: list[str | None], hang_up_at: int) -> None:
    s = _session(_menu_book(retries=2))
    steps = s.start(T0)
    for i, key in enumerate(keys):
        if s.finished:
            break
        if i == hang_up_at:
            assert s.on_hangup(T0 + i) == [Finished("hung_up", s.path, s.digits)]
            break
        waiting = s.waiting_for
        if isinstance(waiting, WaitDigit):
            steps = s.on_result(DigitsCollected(key or "", timed_out=key is None), T0 + i)
        else:
            steps = s.on_result(PlayDone(key), T0 + i)
        assert steps
    if s.finished:
        assert s.outcome in ("transferred", "retries_exhausted", "hung_up")
        if s.outcome == "transferred":
            assert s.digits[-1] in ("1", "2")
        assert len(s.digits) <= 3  # one try and two retries
    else:
        assert isinstance(s.waiting_for, Play | WaitDigit)


def test_the_backend_stopping_ends_a_session_stopped_once() -> None:
    session = _session(EXAMPLES)
    session.start(T0)
    (finished,) = session.on_stop(T0 + 5)
    assert isinstance(finished, Finished) and finished.outcome == "stopped"
    assert session.finished and session.ended_at == T0 + 5
    assert session.on_stop(T0 + 6) == [] and session.on_hangup(T0 + 7) == []
