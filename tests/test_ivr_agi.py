"""The AGI codec (ivr.agi) on the real recordings 04 (AsyncAGI) and 09 (FastAGI), and the
command formatting against Asterisk's own argument splitting."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.capture import captures_dir
from ivr.agi import (
    AgiArgumentError,
    AgiFailure,
    AgiProtocolError,
    AgiReply,
    DeadChannel,
    FastAgiReader,
    Hangup,
    InvalidCommand,
    UsageError,
    collected_digits,
    command_error,
    decode_async_result,
    exec_app,
    get_data,
    get_full_variable,
    get_variable,
    hang_up,
    parse_environment,
    parse_reply,
    pressed_digit,
    quote_argument,
    set_variable,
    stream_file,
    variable_value,
    verbose,
    wait_for_digit,
)

USAGE = (
    "520-Invalid command syntax.  Proper usage follows:\n"
    " Usage: WAIT FOR DIGIT <timeout>\n"
    "\tWaits up to 'timeout' milliseconds for channel to receive a DTMF digit.\n"
    "520 End of proper usage."
)


def transcript() -> tuple[list[str], list[tuple[str, str]]]:
    """09-fastagi.agi.txt: the environment lines, then (command, reply) pairs."""
    lines = (captures_dir() / "09-fastagi.agi.txt").read_text(encoding="utf-8").splitlines()
    env: list[str] = []
    pairs: list[tuple[str, str]] = []
    rest = iter(lines)
    for line in rest:
        if line == "< ":
            break
        env.append(line[2:])
    for line in rest:
        if line.startswith("> "):
            pairs.append((line[2:], ""))
        else:
            pairs[-1] = (pairs[-1][0], line[2:])
    return env, pairs


def recording_04() -> tuple[str, list[tuple[str, str, str]]]:
    """04-asyncagi.jsonl: AsyncAGIStart's Env, and (command, CommandID, Result) per action."""
    env = ""
    sent: dict[str, str] = {}
    results: list[tuple[str, str, str]] = []
    with (captures_dir() / "04-asyncagi.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            rec: dict[str, Any] = json.loads(line)
            headers = dict(rec.get("headers", []))
            if rec.get("name") == "AsyncAGIStart":
                env = headers["Env"]
            elif rec["dir"] == "out" and rec["name"] == "AGI":
                sent[headers["CommandID"]] = headers["Command"]
            elif rec.get("name") == "AsyncAGIExec":
                cid = headers["CommandId"]
                results.append((sent[cid], cid, headers["Result"]))
    return env, results


# ---------------------------------------------------------------------------- environment


def test_fastagi_environment_of_recording_09() -> None:
    env = parse_environment(transcript()[0])
    assert env.channel == "Local/5004@inbound-00000019;2"
    assert env.uniqueid == "1795356801.53"
    assert (env.callerid, env.calleridname) == ("+15550001111", "Jack Fast")
    assert (env.context, env.extension, env.language) == ("inbound", "did-5004", "en")
    assert env.request == "agi://127.0.0.1:4573/lab-route"
    assert env.script == "lab-route"
    assert env.values["accountcode"] == "" and env.values["threadid"] == "139648841193152"


def test_asyncagi_environment_of_recording_04() -> None:
    env = parse_environment(decode_async_result(recording_04()[0]))
    assert env.channel == "Local/5002@inbound-00000008;2"
    assert env.uniqueid == "1795356729.17"
    assert (env.callerid, env.calleridname) == ("+15554443333", "Dan Async")
    assert env.request == "async" and env.script is None


def test_environment_errors_name_the_line_or_the_missing_key() -> None:
    with pytest.raises(AgiProtocolError, match=r"not an agi_\* environment line.*'hello'"):
        parse_environment("agi_channel: x\nhello\n\n")
    with pytest.raises(AgiProtocolError, match="without agi_uniqueid"):
        parse_environment("agi_channel: SIP/x-1\n\n")
    unknown = parse_environment("agi_channel: c\nagi_uniqueid: 1\nagi_callerid: unknown\n\n")
    assert unknown.callerid is None and unknown.calleridname is None


# ---------------------------------------------------------------------------- replies


def test_every_reply_of_recording_09() -> None:
    replies = {cmd: parse_reply(text) for cmd, text in transcript()[1]}
    assert variable_value(replies["GET VARIABLE CTI_CALLID"]) == "1795356801.53"
    assert variable_value(replies['GET FULL VARIABLE "${CALLERID(num)}"']) == "+15550001111"
    played = replies['STREAM FILE lab-beep ""']
    assert (played.code, played.result, played.endpos) == (200, "0", 2400)
    assert pressed_digit(played) is None
    assert replies["SET VARIABLE CTI_ROUTE sales"] == AgiReply(200, "1", None, None, "200 result=1")


def test_every_result_of_recording_04() -> None:
    replies = {cmd: parse_reply(decode_async_result(r)) for cmd, _, r in recording_04()[1]}
    assert len(replies) == 9
    assert all(r.ok for r in replies.values())
    assert replies["ANSWER"].number == 0
    assert variable_value(replies['GET FULL VARIABLE "${CALLERID(num)}"']) == "+15554443333"
    assert variable_value(replies["GET VARIABLE CTI_CALLID"]) == "1795356729.17"
    assert replies['STREAM FILE lab-welcome ""'].endpos == 12000
    assert pressed_digit(replies["WAIT FOR DIGIT 5000"]) == "5"  # result=53
    assert collected_digits(replies["GET DATA lab-beep 5000 4"]) == ("42", False)
    assert replies["CHANNEL STATUS"].number == 6


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("200 result=1 (a (b) c)", AgiReply(200, "1", "a (b) c")),
        ("200 result=1 ()", AgiReply(200, "1", "")),
        ("200 result= (timeout)", AgiReply(200, "", "timeout")),
        ("200 result=12 (timeout)", AgiReply(200, "12", "timeout")),
        ("200 result=53 endpos=6000", AgiReply(200, "53", None, 6000)),
        ("200 result=0 (timeout) endpos=1600", AgiReply(200, "0", "timeout", 1600)),
        ("200 result=-1", AgiReply(200, "-1")),
        ("510 Invalid or unknown command", AgiReply(510, "")),
    ],
)
def test_reply_shapes(line: str, expected: AgiReply) -> None:
    reply = parse_reply(line + "\n")
    assert (reply.code, reply.result, reply.data, reply.endpos) == (
        expected.code, expected.result, expected.data, expected.endpos
    )  # fmt: skip
    assert reply.raw == line


def test_error_replies_become_typed_errors() -> None:
    invalid = parse_reply("510 Invalid or unknown command")
    dead = parse_reply("511 Command Not Permitted on a dead channel or intercepted channel")
    usage = parse_reply(USAGE)
    assert isinstance(command_error(invalid, "FOO"), InvalidCommand)
    error = command_error(dead, "WAIT FOR DIGIT 5000")
    assert isinstance(error, DeadChannel) and error.code == 511
    assert "dead channel" in str(error) and "WAIT FOR DIGIT 5000" in str(error)
    assert isinstance(command_error(usage), UsageError)
    assert usage.data is not None and usage.data.startswith(" Usage: WAIT FOR DIGIT")
    assert command_error(parse_reply("200 result=0")) is None
    with pytest.raises(DeadChannel):
        pressed_digit(dead)
    with pytest.raises(AgiFailure, match="-1"):
        pressed_digit(parse_reply("200 result=-1"))
    with pytest.raises(AgiFailure):
        collected_digits(parse_reply("200 result=-1"))


def test_get_data_timeouts() -> None:
    assert collected_digits(parse_reply("200 result= (timeout)")) == ("", True)
    assert collected_digits(parse_reply("200 result=12 (timeout)")) == ("12", True)
    assert collected_digits(parse_reply("200 result=*3")) == ("*3", False)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("hello", "not an AGI reply"),
        ("20 result=1", "not an AGI reply"),
        ("200 ok", "200 reply without result="),
        ("200 result=1 endpos=x", "endpos is not a number"),
        ("200 result=1 garbage", "cannot read the reply after result="),
        ("520-Invalid command syntax.\nno end", "520 usage block without its end line"),
    ],
)
def test_malformed_replies_name_the_line(line: str, problem: str) -> None:
    with pytest.raises(AgiProtocolError) as caught:
        parse_reply(line)
    assert caught.value.problem == problem
    assert caught.value.line in line and caught.value.line in str(caught.value)


def test_results_that_are_not_keys_are_protocol_errors() -> None:
    with pytest.raises(AgiProtocolError, match="not a DTMF key"):
        pressed_digit(parse_reply("200 result=120"))  # 'x'
    with pytest.raises(AgiProtocolError, match="not a number"):
        pressed_digit(parse_reply("200 result=abc"))
    with pytest.raises(AgiProtocolError, match="not DTMF keys"):
        collected_digits(parse_reply("200 result=12x"))


def test_fastagi_reader_splits_environment_replies_usage_and_hangup() -> None:
    env_lines, pairs = transcript()
    wire = "".join(f"{line}\n" for line in env_lines) + "\n"
    wire += "".join(f"{reply}\r\n" for _, reply in pairs) + USAGE + "\nHANGUP\n"
    reader = FastAgiReader()
    data = wire.encode()
    items: list[Any] = []
    for i in range(0, len(data), 7):  # in small pieces, as TCP may deliver them
        items += reader.feed(data[i : i + 7])
    assert reader.has_environment
    assert items[0].channel == "Local/5004@inbound-00000019;2"
    assert [r.raw for r in items[1:-2]] == [reply for _, reply in pairs]
    assert items[-2].code == 520 and items[-2].raw == USAGE
    assert items[-1] == Hangup()


def test_fastagi_reader_rejects_garbage_and_endless_lines() -> None:
    with pytest.raises(AgiProtocolError, match=re.escape("'GET / HTTP/1.1'")):
        FastAgiReader().feed(b"GET / HTTP/1.1\r\n")
    reader = FastAgiReader()
    reader.feed(b"agi_channel: c\nagi_uniqueid: 1\n\n")
    with pytest.raises(AgiProtocolError, match="'whatever'"):
        reader.feed(b"whatever\n")
    with pytest.raises(AgiProtocolError, match="line too long"):
        FastAgiReader().feed(b"x" * 70_000)


# ---------------------------------------------------------------------------- commands


def asterisk_args(line: str) -> list[str]:
    """res_agi.c ``parse_args``: double quotes group, a backslash escapes the next
    character, spaces and tabs separate (the reference the formatting must satisfy)."""
    args: list[str] = []
    current: list[str] | None = None
    quoted = escaped = False
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if current is None:
                current = []
            continue
        if ch in " \t" and not quoted and not escaped:
            if current is not None:
                args.append("".join(current))
            current = None
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        current = (current or []) + [ch]
        escaped = False
    if current is not None:
        args.append("".join(current))
    return args


#: Any character a command may carry (not line breaks or NUL; no lone surrogates).
ONE_LINE = st.characters(exclude_characters="\r\n\0", exclude_categories=["Cs"])


def test_commands_are_those_of_the_recordings() -> None:
    sent = {cmd for cmd, _, _ in recording_04()[1]} | {cmd for cmd, _ in transcript()[1]}
    ours = {
        stream_file("lab-welcome"),
        stream_file("lab-beep", ""),
        wait_for_digit(5000),
        get_data("lab-beep", 5000, 4),
        set_variable("CTI_ROUTE", "sales"),
        get_variable("CTI_CALLID"),
        get_full_variable("${CALLERID(num)}"),
        verbose("routing via controller"),
        verbose("fastagi routed to sales"),
    }
    assert ours <= sent


def test_command_shapes() -> None:
    assert stream_file("ivr/welcome", "123#") == "STREAM FILE ivr/welcome 123#"
    assert stream_file("menu", "*") == "STREAM FILE menu *"
    assert wait_for_digit(-1) == "WAIT FOR DIGIT -1"
    path = set_variable("__IVR_PATH", "main>menu>sales")
    assert path == "SET VARIABLE __IVR_PATH main>menu>sales"
    assert set_variable("IVR_NAME", 'Zoë "Z" O\\Brien') == (
        'SET VARIABLE IVR_NAME "Zoë \\"Z\\" O\\\\Brien"'
    )
    assert set_variable("EMPTY", "") == 'SET VARIABLE EMPTY ""'
    assert hang_up() == "HANGUP"
    assert exec_app("Playback", "lab-beep,noanswer") == "EXEC Playback lab-beep,noanswer"
    assert exec_app("Set", "A=1 2") == 'EXEC Set "A=1 2"'


@given(
    name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
    value=st.text(ONE_LINE),
)
def test_set_variable_arrives_intact_at_asterisk(name: str, value: str) -> None:
    assert asterisk_args(set_variable(name, value)) == ["SET", "VARIABLE", name, value]


@given(st.text(ONE_LINE))
def test_exec_data_is_one_argument(data: str) -> None:
    assert asterisk_args(exec_app("NoOp", data)) == ["EXEC", "NoOp", data]


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: stream_file("two words"), "prompt"),
        (lambda: stream_file("menu", "12x"), "escape_digits"),
        (lambda: stream_file("", ""), "prompt"),
        (lambda: get_data("menu", 0, 4), "timeout_ms"),
        (lambda: get_data("menu", 5000, 0), "max_digits"),
        (lambda: get_data("menu", 5000, 2000), "max_digits"),
        (lambda: wait_for_digit(-2), "ms"),
        (lambda: wait_for_digit(True), "ms"),
        (lambda: set_variable("A B", "x"), "name"),
        (lambda: set_variable("A=B", "x"), "name"),
        (lambda: set_variable("A", "line\nbreak"), "value"),
        (lambda: exec_app("Dial", "x\r"), "data"),
        (lambda: quote_argument("\0"), "argument"),
    ],
)
def test_bad_arguments_are_refused_by_name(make: Any, argument: str) -> None:
    with pytest.raises(AgiArgumentError) as caught:
        make()
    assert caught.value.argument == argument
    assert repr(argument) in str(caught.value)
