"""IVR flow files: the examples load, and every kind of mistake is reported with its file,
node, problem and fix, all of them at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from acd.config import load_acd_config
from callcenter.cli import main
from ivr.draw import to_dot, to_mermaid
from ivr.errors import FlowError, FlowsInvalid
from ivr.flow import (
    BranchNode,
    CollectNode,
    MenuNode,
    PlayNode,
    QueueNode,
    load_flows,
    luhn_valid,
    parse_flows,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "config" / "ivr").glob("*.yaml"))
QUEUES = ("sales", "support")


def _file(nodes: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"languages": ["en", "fr"], "flows": {"main": {"start": "a", "nodes": nodes}}, **top}


def _errors(*documents: dict[str, Any], checks: list[str] | None = None) -> list[FlowError]:
    named = [(f"f{i}.yaml", d) for i, d in enumerate(documents)]
    with pytest.raises(FlowsInvalid) as info:
        parse_flows(named, queues=QUEUES, checks=checks)
    assert info.value.errors, "FlowsInvalid without errors"
    return list(info.value.errors)


def _one(*documents: dict[str, Any], checks: list[str] | None = None) -> FlowError:
    errors = _errors(*documents, checks=checks)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


PROMPT = {"en": "hello", "fr": "fr/bonjour"}
HANGUP = {"type": "hangup"}


def test_examples_load_against_the_acd_queues() -> None:
    config = load_acd_config(ROOT / "config" / "queues.yaml")
    book = load_flows(EXAMPLES, queues=config.queues)
    assert set(book.flows) == {"main", "account_number", "vip_fast_lane"}
    main = book.flow("main")
    assert main.languages == ("en", "fr")
    welcome = main.node("welcome")
    assert isinstance(welcome, PlayNode) and welcome.barge_in
    menu = main.node("menu")
    assert isinstance(menu, MenuNode) and menu.choices["1"] == "sales_wait"
    ask = book.flow("account_number").node("ask")
    assert isinstance(ask, CollectNode) and ask.luhn and ask.min_length == 8
    hours = main.node("hours")
    assert isinstance(hours, BranchNode) and hours.on == "hours" and hours.hours is None
    sales = main.node("sales")
    assert isinstance(sales, QueueNode) and sales.announce_position is not None


def test_unknown_flow_name_lists_the_known_ones() -> None:
    book = load_flows(EXAMPLES, queues=QUEUES)
    with pytest.raises(KeyError, match="known"):
        book.flow("nope")


def test_message_names_file_node_problem_and_fix() -> None:
    error = _one(_file({"a": {"type": "dance", "next": "a"}}))
    assert error.file == "f0.yaml" and error.node == "main.a"
    assert "unknown node type 'dance'" in error.problem
    assert "menu" in error.fix
    assert str(error).startswith("f0.yaml: node 'main.a': unknown node type 'dance'; use one of")


def test_every_problem_is_reported_not_just_the_first() -> None:
    errors = _errors(
        _file(
            {
                "a": {"type": "play", "prompts": PROMPT, "next": "b", "colour": "red"},
                "b": {"type": "queue", "queue": "billing"},
                "c": {"type": "menu", "prompts": {"en": "x"}, "choices": {1: "zz"}},
            }
        )
    )
    text = "\n".join(map(str, errors))
    assert "unknown key 'colour'" in text
    assert "queue 'billing' is not a queue" in text
    assert "missing prompts for language(s) ['fr']" in text
    assert len(errors) == 3


@pytest.mark.parametrize(
    ("node", "problem", "fix"),
    [
        ({"type": "play", "prompts": PROMPT}, "a play node needs 'next'", "add 'next:'"),
        ({"type": "play", "prompts": PROMPT, "next": "zz"}, "target 'zz'", "point it at"),
        ({"type": "play", "prompts": PROMPT, "next": 5}, "'next' must name a node", "node id"),
        ({"type": "play", "prompts": "nope", "next": "b"}, "no prompt set 'nope'", "define"),
        ({"type": "play", "prompts": {"en": "x"}, "next": "b"}, "language(s) ['fr']", "every"),
        (
            {"type": "play", "prompts": {**PROMPT, "de": "x"}, "next": "b"},
            "language 'de' is not declared",
            "add it",
        ),
        ({"type": "play", "prompts": {"en": [], "fr": "x"}, "next": "b"}, "'en' needs", "sound"),
        ({"type": "play", "prompts": PROMPT, "next": "b", "barge_in": "yes"}, "true or", "fix"),
        ({"type": "menu", "prompts": PROMPT, "choices": {}}, "'choices' must map", "write"),
        ({"type": "menu", "prompts": PROMPT, "choices": {12: "b"}}, "'12' is not one key", "use"),
        ({"type": "menu", "prompts": PROMPT, "choices": {"x": "b"}}, "'x' is not one key", "use"),
        (
            {"type": "menu", "prompts": PROMPT, "choices": {1: "b"}, "timeout": 0},
            "more than",
            "fix",
        ),
        (
            {"type": "menu", "prompts": PROMPT, "choices": {1: "b"}, "retries": -1},
            "whole number >= 0",
            "fix",
        ),
        (
            {"type": "menu", "prompts": PROMPT, "choices": {1: "b"}, "retries": 1.5},
            "whole number",
            "fix",
        ),
        ({"type": "menu", "prompts": PROMPT, "choices": {1: "b"}, "after_retries": "q"}, "'q'", ""),
        (
            {
                "type": "collect",
                "prompts": PROMPT,
                "variable": "A",
                "max_length": 2,
                "next": "b",
                "min_length": 3,
            },
            "min_length 3 is more than max_length 2",
            "make min_length at most max_length",
        ),
        (
            {
                "type": "collect",
                "prompts": PROMPT,
                "variable": "A",
                "max_length": 2,
                "next": "b",
                "validate": {"pattern": "[0-9"},
            },
            "is not a regular expression",
            "fix the pattern",
        ),
        (
            {
                "type": "collect",
                "prompts": PROMPT,
                "variable": "A",
                "max_length": 2,
                "next": "b",
                "validate": {"luhn": "yes"},
            },
            "validate.luhn must be true or false",
            "fix",
        ),
        (
            {
                "type": "collect",
                "prompts": PROMPT,
                "variable": "A",
                "max_length": 2,
                "next": "b",
                "validate": {"regex": "x"},
            },
            "unknown validation 'regex'",
            "pattern",
        ),
        (
            {"type": "collect", "prompts": PROMPT, "variable": "1A", "max_length": 2, "next": "b"},
            "'variable' must be a variable name",
            "letters",
        ),
        (
            {
                "type": "collect",
                "prompts": PROMPT,
                "variable": "A",
                "max_length": 2,
                "next": "b",
                "terminator": "x",
            },
            "terminator 'x' is not one key",
            "use one of",
        ),
        ({"type": "lookup_caller", "next": "b"}, "needs 'on_unknown'", "add"),
        (
            {"type": "lookup_caller", "next": "b", "on_unknown": "b", "store": {"age": "AGE"}},
            "unknown caller field 'age'",
            "use",
        ),
        ({"type": "branch", "on": "weather"}, "branch 'on' must be one of", "fix 'on'"),
        (
            {"type": "branch", "on": "tier", "cases": {"gold": "b"}, "default": "b"},
            "tier 'gold'",
            "",
        ),
        ({"type": "branch", "on": "tier", "cases": {"vip": "b"}}, "needs 'default'", "add"),
        (
            {"type": "branch", "on": "tier", "cases": {"vip": "b"}, "default": "b", "queue": "s"},
            "unknown key 'queue'",
            "use only",
        ),
        ({"type": "branch", "on": "hours", "queue": "sales", "open": "b"}, "needs 'closed'", ""),
        (
            {"type": "branch", "on": "hours", "queue": "nope", "open": "b", "closed": "b"},
            "queue 'nope' is not a queue of the ACD configuration",
            "use one of ['sales', 'support']",
        ),
        (
            {
                "type": "branch",
                "on": "wait",
                "queue": "sales",
                "seconds": -3,
                "over": "b",
                "within": "b",
            },
            "'seconds' must be a number of seconds",
            "fix",
        ),
        (
            {"type": "branch", "on": "variable", "cases": {"1": "b"}, "default": "b"},
            "'variable'",
            "",
        ),
        ({"type": "set", "variable": "A", "value": [1], "next": "b"}, "'value' must be", "fix"),
        ({"type": "language", "language": "de", "next": "b"}, "'de' is not declared", "use one"),
        ({"type": "queue", "queue": "sales", "announce": {"music": "x"}}, "announcement", "only"),
        ({"type": "queue", "queue": "sales", "announce": {"position": "nope"}}, "'nope'", ""),
        ({"type": "callback", "queue": "sales", "next": "b"}, "needs 'no_number'", "add"),
        ({"type": "voicemail", "mailbox": ""}, "'mailbox' must be a non-empty text", "fix"),
        ({"type": "transfer"}, "needs 'number'", "add"),
        ({"type": "goto"}, "exactly one of 'next'", "keep one"),
        ({"type": "goto", "next": "b", "flow": "main"}, "exactly one of 'next'", "keep one"),
        ({"type": "call", "flow": "elsewhere", "next": "b"}, "flow 'elsewhere' is not", "use"),
        ({"type": "hangup", "prompts": PROMPT}, "unknown key 'prompts' for a hangup", "use only"),
        ("just text", "a node must be a mapping", "give it one of"),
        ({"next": "b"}, "unknown node type None", "use one of"),
    ],
)
def test_bad_node_is_reported(node: Any, problem: str, fix: str) -> None:
    error = _one(_file({"a": node, "b": HANGUP}))
    assert error.node in ("main.a", "main"), str(error)
    assert problem in error.problem, str(error)
    assert fix in error.fix, str(error)


def test_goto_an_unknown_flow() -> None:
    errors = _errors(_file({"a": {"type": "goto", "flow": "elsewhere"}, "b": HANGUP}))
    assert [(e.node, e.problem) for e in errors] == [
        ("main.b", "node 'b' cannot be reached from the start 'a'"),
        ("main.a", "flow 'elsewhere' is not defined in the files loaded"),
    ]


def test_yaml_on_key_read_as_true_is_taken_as_on() -> None:
    text = """
languages: [en]
flows:
  main:
    start: a
    nodes:
      a: {type: branch, on: tier, cases: {vip: b}, default: b}
      b: {type: hangup}
"""
    book = parse_flows([("x.yaml", yaml.safe_load(text))], queues=QUEUES)
    node = book.flow("main").node("a")
    assert isinstance(node, BranchNode) and node.cases == {"vip": "b"}


def test_unreachable_node() -> None:
    error = _one(_file({"a": HANGUP, "b": HANGUP}))
    assert error.node == "main.b"
    assert "cannot be reached from the start 'a'" in error.problem


def test_loop_without_input() -> None:
    nodes = {
        "a": {"type": "play", "prompts": PROMPT, "next": "b"},
        "b": {"type": "set", "variable": "X", "value": 1, "next": "a"},
    }
    error = _one(_file(nodes))
    assert "loop without input: main.a, main.b" in error.problem
    assert "menu or collect" in error.fix


def test_self_loop_without_input() -> None:
    error = _one(_file({"a": {"type": "goto", "next": "a"}}))
    assert "loop without input: main.a" in error.problem


def test_loop_through_a_menu_is_fine() -> None:
    nodes = {
        "a": {"type": "play", "prompts": PROMPT, "next": "m"},
        "m": {"type": "menu", "prompts": PROMPT, "choices": {1: "a", 2: "b"}},
        "b": HANGUP,
    }
    assert parse_flows([("x", _file(nodes))], queues=QUEUES).flow("main").start == "a"


def test_loop_across_flows_without_input() -> None:
    other = {
        "languages": ["en", "fr"],
        "flows": {"side": {"start": "s", "nodes": {"s": {"type": "goto", "flow": "main"}}}},
    }
    error = _one(_file({"a": {"type": "goto", "flow": "side"}}), other)
    assert "loop without input" in error.problem and "side.s" in error.problem


def test_sub_flow_calling_itself() -> None:
    nodes = {
        "a": {"type": "menu", "prompts": PROMPT, "choices": {1: "c", 2: "b"}},
        "c": {"type": "call", "flow": "main", "next": "b"},
        "b": HANGUP,
    }
    error = _one(_file(nodes))
    assert "sub-flows call themselves: main -> main" in error.problem
    assert "goto" in error.fix


def test_sub_flow_must_speak_the_callers_languages() -> None:
    other = {
        "languages": ["en"],
        "flows": {"side": {"start": "s", "nodes": {"s": {"type": "return"}}}},
    }
    nodes = {"a": {"type": "call", "flow": "side", "next": "b"}, "b": HANGUP}
    error = _one(_file(nodes), other)
    assert "has no prompts in language(s) ['fr']" in error.problem


def test_same_flow_name_in_two_files() -> None:
    error = _one(_file({"a": HANGUP}), _file({"a": HANGUP}))
    assert error.file == "f1.yaml" and "also defined in f0.yaml" in error.problem


def test_collect_check_must_be_one_the_service_supplies() -> None:
    node = {
        "type": "collect",
        "prompts": PROMPT,
        "variable": "A",
        "max_length": 4,
        "next": "b",
        "validate": {"check": "known_order"},
    }
    error = _one(_file({"a": node, "b": HANGUP}), checks=["known_account"])
    assert "'known_order' is not a check the IVR service supplies" in error.problem
    assert "known_account" in error.fix
    parsed = parse_flows([("x", _file({"a": node, "b": HANGUP}))], queues=QUEUES)
    collect = parsed.flow("main").node("a")
    assert isinstance(collect, CollectNode) and collect.check == "known_order"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (None, "the file is empty"),
        ([1, 2], "the top level must be a mapping"),
        ({"flows": {}}, "'languages' must be a non-empty list"),
        ({"languages": ["en"], "flows": {}}, "'flows' must map flow names"),
        (
            {"languages": ["en", "en"], "flows": {"m": {"start": "a", "nodes": {"a": HANGUP}}}},
            "listed twice",
        ),
        (
            {
                "languages": ["en"],
                "extra": 1,
                "flows": {"m": {"start": "a", "nodes": {"a": HANGUP}}},
            },
            "unknown top-level key 'extra'",
        ),
        (
            {"languages": ["en"], "flows": {"m": {"start": "zz", "nodes": {"a": HANGUP}}}},
            "'start' 'zz' is not a node",
        ),
        ({"languages": ["en"], "flows": {"m": {"start": "a"}}}, "the flow has no 'nodes'"),
        (
            {"languages": ["en"], "flows": {"m": {"start": "a", "nodes": {"a": HANGUP}, "x": 1}}},
            "unknown flow key 'x'",
        ),
        (
            {"languages": ["en"], "flows": {"m": {"start": "a", "nodes": {"a b": HANGUP}}}},
            "is not an identifier",
        ),
        (
            {
                "languages": ["en"],
                "prompts": {"p": "x"},
                "flows": {"m": {"start": "a", "nodes": {"a": HANGUP}}},
            },
            "must map languages to prompt names",
        ),
    ],
)
def test_bad_file_structure(document: Any, problem: str) -> None:
    errors = _errors(document)
    assert any(problem in e.problem for e in errors), [str(e) for e in errors]


def test_unreadable_and_invalid_yaml_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("flows: [\n", encoding="utf-8")
    duplicate = tmp_path / "dup.yaml"
    duplicate.write_text("languages: [en]\nlanguages: [fr]\n", encoding="utf-8")
    with pytest.raises(FlowsInvalid) as info:
        load_flows([broken, duplicate, tmp_path / "missing.yaml"], queues=QUEUES)
    files = [e.file for e in info.value.errors]
    assert files == [str(broken), str(duplicate), str(tmp_path / "missing.yaml")]
    text = str(info.value)
    assert "not valid YAML" in text and "duplicate key 'languages'" in text
    assert "cannot read the IVR flow file" in text


def test_hours_come_from_the_acd_queue(tmp_path: Path) -> None:
    queues = tmp_path / "queues.yaml"
    queues.write_text(
        yaml.safe_dump(
            {
                "queues": {
                    "sales": {
                        "hours": {"time_zone": "UTC", "weekly": {"mon": ["08:00-18:00"]}},
                        "overflow": {"kind": "voicemail", "target": "1@default"},
                    }
                }
            }
        ),
        encoding="utf-8",
    )
    config = load_acd_config(queues)
    nodes = {
        "a": {"type": "branch", "on": "hours", "queue": "sales", "open": "b", "closed": "b"},
        "b": HANGUP,
    }
    book = parse_flows([("x", _file(nodes))], queues=config.queues)
    branch = book.flow("main").node("a")
    assert isinstance(branch, BranchNode) and branch.hours is config.queues["sales"].hours


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("79927398713", True),
        ("4111111111111111", True),
        ("4111111111111112", False),
        ("0", True),
        ("79927398710", False),
        ("", False),
        ("12a4", False),
    ],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


# -- drawing and the command line ------------------------------------------------------------


def test_draw_dot_and_mermaid() -> None:
    book = load_flows(EXAMPLES, queues=QUEUES)
    dot = to_dot(book, ["vip_fast_lane"])
    assert dot.startswith("digraph ivr {") and dot.rstrip().endswith("}")
    assert '"vip_fast_lane.tier" [label="tier: branch on tier", shape=diamond];' in dot
    assert '"vip_fast_lane.tier" -> "vip_fast_lane.greet_vip" [label="vip"];' in dot
    assert '"vip_fast_lane.menu" -> "main.welcome" [label="goto"];' in dot
    assert "cluster_main" not in dot  # only the flows asked for
    mermaid = to_mermaid(book)
    assert mermaid.startswith("flowchart TD\n")
    assert 'n_main_2e_menu -->|"1"| n_main_2e_sales_wait' in mermaid
    assert 'n_main_2e_account -->|"call"| n_account_number_2e_ask' in mermaid
    assert 'n_account_number_2e_ask["ask: collect ACCOUNT (8-16) luhn"]' in mermaid


def _cli(*argv: str) -> int:
    return main(["--config", str(ROOT / "config" / "callcenter.yaml"), *argv])


def test_cli_check_accepts_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("ivr", "check", *map(str, EXAMPLES)) == 0
    out = capsys.readouterr().out
    assert out == "ok: 3 flows in 3 files (account_number, main, vip_fast_lane)\n"


def test_cli_check_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    nodes = {
        "a": {"type": "queue", "queue": "billing"},
        "b": {"type": "wait"},
    }
    bad.write_text(yaml.safe_dump(_file(nodes)), encoding="utf-8")
    assert _cli("ivr", "check", str(bad), str(tmp_path / "missing.yaml")) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines == [
        f"{tmp_path / 'missing.yaml'}: cannot read the IVR flow file (No such file or "
        "directory); fix the file",
        f"{bad}: node 'main.a': queue 'billing' is not a queue of the ACD configuration; use "
        "one of ['sales', 'support'], or add it to the queues file",
        f"{bad}: node 'main.b': unknown node type 'wait'; use one of play, menu, collect, "
        "lookup_caller, branch, set, language, queue, callback, voicemail, transfer, hangup, "
        "goto, call, return",
    ]
    assert captured.err == "3 problems\n"


def test_cli_check_needs_the_queues(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "callcenter.yaml"
    empty.write_text("{}\n", encoding="utf-8")
    assert main(["--config", str(empty), "ivr", "check", str(EXAMPLES[0])]) == 2
    assert "give --queues FILE or set acd.queues" in capsys.readouterr().err
    queues = str(ROOT / "config" / "queues.yaml")
    args = ["--config", str(empty), "ivr", "check", "--queues", queues, *map(str, EXAMPLES)]
    assert main(args) == 0


def test_cli_draw(capsys: pytest.CaptureFixture[str]) -> None:
    main_file = str(ROOT / "config" / "ivr" / "main.yaml")
    assert _cli("ivr", "draw", main_file) == 0
    dot = capsys.readouterr().out
    assert "cluster_main" in dot and "cluster_account_number" not in dot
    assert '"main.account" -> "account_number.ask" [label="call"];' in dot
    assert _cli("ivr", "draw", "--format", "mermaid", main_file) == 0
    assert capsys.readouterr().out.startswith("flowchart TD")


def test_cli_draw_of_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_file({"a": {"type": "goto", "next": "zz"}})), encoding="utf-8")
    assert _cli("ivr", "draw", str(bad)) == 1
    assert "target 'zz' is not a node of flow 'main'" in capsys.readouterr().out
