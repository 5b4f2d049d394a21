"""The AMI codec against every real capture, in any chunking, and against garbage."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti.ami.codec import Message, Parser, encode, encode_action
from tests.captures import expected_messages, raw_files

RAW_FILES = raw_files()


def _as_tuples(messages: list[Message]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    return [(m.kind, m.name, m.headers) for m in messages]


def _parse(chunks: list[bytes]) -> list[Message]:
    parser = Parser()
    out: list[Message] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    out.extend(parser.close())
    return out


@pytest.mark.parametrize("raw", RAW_FILES, ids=lambda p: p.stem)
def test_capture_parses_into_exactly_the_recorded_messages(raw: Path) -> None:
    expected = [(e.kind, e.name, e.headers) for e in expected_messages(raw)]
    got = _parse([raw.read_bytes()])
    assert _as_tuples(got) == expected
    assert all(not m.problems for m in got)


def test_all_twelve_captures_are_covered() -> None:
    assert len(RAW_FILES) >= 12


@pytest.mark.parametrize("raw", RAW_FILES, ids=lambda p: p.stem)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_capture_parses_the_same_in_random_chunks(raw: Path, data: st.DataObject) -> None:
    blob = raw.read_bytes()
    sizes = data.draw(st.lists(st.integers(1, 4096), min_size=1, max_size=64))
    chunks, pos, i = [], 0, 0
    while pos < len(blob):
        n = sizes[i % len(sizes)]
        chunks.append(blob[pos : pos + n])
        pos, i = pos + n, i + 1
    expected = [(e.kind, e.name, e.headers) for e in expected_messages(raw)]
    assert _as_tuples(_parse(chunks)) == expected


def test_utf8_split_inside_a_character_is_reassembled() -> None:
    frame = "Event: Newchannel\r\nCallerIDName: 张伟 Ελένη Дмитрий\r\n\r\n".encode()
    cut = frame.index("伟".encode()) + 1  # inside the three-byte sequence
    parser = Parser(expect_banner=False)
    assert parser.feed(frame[:cut]) == []
    [msg] = parser.feed(frame[cut:])
    assert msg["CallerIDName"] == "张伟 Ελένη Дмитрий"


def test_one_byte_at_a_time() -> None:
    blob = b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: 1\r\n\r\n"
    parser = Parser()
    out = []
    for b in blob:
        out.extend(parser.feed(bytes([b])))
    assert [m.kind for m in out] == ["banner", "response"]
    assert out[1].action_id == "1"


def test_lookups_are_case_insensitive_and_duplicates_kept() -> None:
    [msg] = Parser(expect_banner=False).feed(
        b"Event: AsyncAGIExec\r\nCommandId: 7\r\nChanVariable: A=1\r\nChanVariable: B=x=y\r\n"
        b"ChanVariable(Local/6002@agents-00000001;1): C=3\r\nAccountCode: \r\n"
        b"CallerIDNum: <unknown>\r\n\r\n"
    )
    assert msg.get("CommandID") == "7" and msg.get("commandid") == "7"
    assert msg.get_all("chanvariable") == ["A=1", "B=x=y"]
    assert msg.variables() == {"A": "1", "B": "x=y", "C": "3"}
    assert msg["AccountCode"] == ""
    assert msg["CallerIDNum"] == "<unknown>"
    assert "Missing" not in msg and msg.get("Missing", "d") == "d"


def test_malformed_lines_are_kept_and_reported() -> None:
    [msg] = Parser(expect_banner=False).feed(
        b"Event: Weird\r\nno colon here\r\nKey:tight\r\nEmpty:\r\n\r\n"
    )
    assert msg.name == "Weird"
    assert ("", "no colon here") in msg.headers
    assert msg["Key"] == "tight" and msg["Empty"] == ""
    assert len(msg.problems) == 1 and "no colon here" in msg.problems[0]


def test_invalid_utf8_is_read_as_latin1_and_reported() -> None:
    [msg] = Parser(expect_banner=False).feed(b"Event: Newchannel\r\nCallerIDName: Jos\xe9\r\n\r\n")
    assert msg["CallerIDName"] == "José"
    assert "UTF-8" in msg.problems[0]


def test_oversized_frame_is_dropped_and_parsing_resumes() -> None:
    parser = Parser(expect_banner=False, max_frame=100)
    out = parser.feed(b"Event: Big\r\nData: " + b"x" * 200)
    assert len(out) == 1 and out[0].problems and "discarded" in out[0].problems[0]
    out = parser.feed(b"yyy\r\n\r\nEvent: Next\r\n\r\n")
    assert [m.name for m in out] == ["Next"]
    assert parser.dropped_bytes >= 200


def test_oversized_frame_whose_terminator_spans_two_reads() -> None:
    parser = Parser(expect_banner=False, max_frame=100)
    assert len(parser.feed(b"Event: Big\r\nData: " + b"x" * 200 + b"\r\n\r")) == 1
    out = parser.feed(b"\nEvent: Next\r\n\r\n")
    assert [m.name for m in out] == ["Next"]


def test_close_reports_a_truncated_frame() -> None:
    parser = Parser(expect_banner=False)
    assert parser.feed(b"Event: Hangup\r\nChannel: x") == []
    [msg] = parser.close()
    assert msg.name == "Hangup" and "closed before" in msg.problems[0]
    assert parser.close() == []


def test_banner_glued_to_a_frame_mid_stream() -> None:
    out = Parser().feed(
        b"Asterisk Call Manager/11.0.0\r\nResponse: Goodbye\r\n\r\n"
        b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\n\r\n"
    )
    assert [m.kind for m in out] == ["banner", "response", "banner", "response"]


def test_encode_round_trip_and_injection_refused() -> None:
    wire = encode_action("Originate", [("Variable", "A=1"), ("Variable", "B=2")], Async="true")
    [msg] = Parser(expect_banner=False).feed(wire)
    assert msg.kind == "action" and msg.name == "Originate"
    assert msg.get_all("Variable") == ["A=1", "B=2"] and msg["Async"] == "true"
    with pytest.raises(ValueError, match="CR, LF"):
        encode([("Action", "Hangup\r\nAction: Logoff")])
    assert Message.make_banner("Asterisk Call Manager/11.0.0").to_bytes().endswith(b"\r\n")


_key = st.text(st.characters(blacklist_characters="\r\n:", blacklist_categories=["Cs"]), min_size=1)
_value = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]))


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(st.lists(st.tuples(_key, _value), min_size=1, max_size=8), max_size=8),
    cut=st.integers(0, 10_000),
)
def test_any_encoded_frames_round_trip(frames: list[list[tuple[str, str]]], cut: int) -> None:
    frames = [[(k.strip() or "K", v) for k, v in f] for f in frames]
    frames = [[(k if not k.endswith(" ") else k + "x", v) for k, v in f] for f in frames]
    blob = b"".join(encode(f) for f in frames)
    cut = min(cut, len(blob))
    parser = Parser(expect_banner=False)
    got = parser.feed(blob[:cut]) + parser.feed(blob[cut:])
    assert [m.headers for m in got] == frames


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000), st.integers(1, 64))
def test_garbage_never_raises(blob: bytes, step: int) -> None:
    parser = Parser(max_frame=512)
    for i in range(0, len(blob), step):
        for msg in parser.feed(blob[i : i + step]):
            assert isinstance(msg.headers, list)
            _ = msg.kind, msg.name
    parser.close()


def test_feed_leaves_the_garbage_collector_as_it_found_it() -> None:
    import gc

    frame = b"Event: Hangup\r\nUniqueid: 1.1\r\n\r\n"
    assert gc.isenabled()
    assert [m.name for m in Parser(expect_banner=False).feed(frame)] == ["Hangup"]
    assert gc.isenabled()
    gc.disable()
    try:
        Parser(expect_banner=False).feed(frame)
        assert not gc.isenabled()  # an application's choice is kept
    finally:
        gc.enable()
