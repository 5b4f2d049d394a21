"""IVR flows: the typed model and the loader that checks them fully (``config/ivr/*.yaml``).

A flow file holds one or more named flows that share the file's languages and prompt sets::

    languages: [en, fr]            # every prompt must exist in each of them
    prompts:                       # named prompt sets, used by name in nodes
      welcome: {en: [welcome], fr: [fr/bienvenue]}
    flows:
      main:                        # flow names are global across the files loaded together
        start: welcome
        nodes:
          welcome: {type: play, prompts: welcome, barge_in: true, next: menu}
          menu:
            type: menu
            prompts: {en: [press-1-sales], fr: [fr/tapez-1]}   # or inline, per language
            choices: {1: sales, 2: account}
          ...

Node types and their keys (``*`` required; a target is a node id of the same flow):

============== ==========================================================================
play           prompts*, barge_in (false), next*
menu           prompts*, choices* (digit -> target), timeout (5 s), retries (2: tries after
               the first), invalid_prompts, timeout_prompts, on_invalid (target: go there
               at once on a wrong digit instead of retrying), after_retries (target; none:
               hang up, outcome ``retries_exhausted``)
collect        prompts*, variable*, max_length*, min_length (1), terminator (``#``),
               timeout (5 s), validate {pattern (regex, whole input), luhn (bool), check
               (a named check the IVR service supplies)}, invalid_prompts, retries (2),
               after_retries, private (false: the digits are masked in IVR_DIGITS), next*
lookup_caller  store {name, tier, open_tickets: variable names; CALLER_NAME, CALLER_TIER,
               CALLER_OPEN_TICKETS}, next*, on_unknown*
branch         on* = ``tier`` (cases {vip|key|ordinary|small: target}, default*),
               ``variable`` (variable*, cases {value: target}, default*), ``hours``
               (queue*, open*, closed*: the queue's business hours and holidays from the
               ACD configuration; a queue without hours is open), ``wait`` (queue*,
               seconds*, over*, within*: the ACD's estimated wait; unknown counts as within)
set            variable*, value*, next* (also set on the channel at once)
language       language* (one of the file's), next*: prompts from then on in that language
queue          queue* (an ACD queue), announce {position: prompts, wait: prompts}: played
               before the caller's position / the estimated wait in minutes
callback       queue*, number_variable (the number to call back; default: the caller's),
               next*, no_number* (where a caller without a number goes: never promised one)
voicemail      mailbox* (``5003@default``)
transfer       number*
hangup         (nothing)
goto           next (a target) or flow (another flow's start): exactly one
call           flow* (a sub-flow, run until its ``return``), next* (after it returns)
return         (nothing): back to the node after the ``call``; in a flow not called: hang up
============== ==========================================================================

Prompts are either the name of a set under ``prompts:`` or a mapping language -> prompt
name(s). Digits are ``0``-``9``, ``*``, ``#`` (quote the last two: ``"#"`` starts a YAML
comment). Node ids and variables are identifiers. A bare ``on:`` key (YAML 1.1 reads it
as ``true``) is taken as ``on``.

:func:`load_flows` reads files (through :func:`cti.yamlfile.load_yaml`) into one
:class:`FlowBook` and checks: unknown node types and keys, missing keys, wrong values,
dangling targets and flows, unreachable nodes, loops without input (a cycle of nodes none
of which waits for the caller: a ``menu`` or ``collect``), sub-flows calling themselves,
missing prompts for a declared language, queues the ACD does not have, bad regexes,
``min_length`` over ``max_length``. Every problem is collected and raised together as
:class:`~ivr.errors.FlowsInvalid` of :class:`~ivr.errors.FlowError` (file, node, problem,
fix); nothing half-loaded is returned.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cti.yamlfile import YamlFileError, load_yaml
from ivr.errors import FlowError, FlowsInvalid

if TYPE_CHECKING:
    from acd.config import BusinessHours

__all__ = [
    "DIGITS",
    "INPUT_NODES",
    "NODE_TYPES",
    "BranchNode",
    "CallNode",
    "CallbackNode",
    "CollectNode",
    "Flow",
    "FlowBook",
    "FlowError",
    "FlowsInvalid",
    "GotoNode",
    "HangupNode",
    "LanguageNode",
    "LookupCallerNode",
    "MenuNode",
    "Node",
    "PlayNode",
    "Prompts",
    "QueueNode",
    "ReturnNode",
    "SetNode",
    "TransferNode",
    "VoicemailNode",
    "load_flows",
    "luhn_valid",
    "parse_flows",
]

#: The keys of a telephone keypad.
DIGITS = "0123456789*#"
#: Tiers a ``branch on: tier`` may name (crm_bridge's pyramid and its optional bottom layer).
BRANCH_TIERS = ("vip", "key", "ordinary", "small")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Prompts:
    """Prompt names per language."""

    by_language: Mapping[str, tuple[str, ...]]

    def for_language(self, language: str) -> tuple[str, ...]:
        """The prompts in ``language`` (the loader guarantees every declared one)."""
        return self.by_language.get(language, ())


NO_PROMPTS = Prompts({})


@dataclass(frozen=True)
class PlayNode:
    id: str
    prompts: Prompts
    next: str
    barge_in: bool = False


@dataclass(frozen=True)
class MenuNode:
    id: str
    prompts: Prompts
    choices: Mapping[str, str]
    timeout: float = 5.0
    retries: int = 2
    invalid_prompts: Prompts = NO_PROMPTS
    timeout_prompts: Prompts = NO_PROMPTS
    on_invalid: str | None = None
    after_retries: str | None = None


@dataclass(frozen=True)
class CollectNode:
    id: str
    prompts: Prompts
    variable: str
    max_length: int
    next: str
    min_length: int = 1
    terminator: str = "#"
    timeout: float = 5.0
    pattern: re.Pattern[str] | None = None
    luhn: bool = False
    check: str | None = None
    invalid_prompts: Prompts = NO_PROMPTS
    retries: int = 2
    after_retries: str | None = None
    private: bool = False


@dataclass(frozen=True)
class LookupCallerNode:
    id: str
    next: str
    on_unknown: str
    #: Caller field (name, tier, open_tickets) -> the variable it is stored in.
    store: Mapping[str, str] = field(
        default_factory=lambda: {
            "name": "CALLER_NAME",
            "tier": "CALLER_TIER",
            "open_tickets": "CALLER_OPEN_TICKETS",
        }
    )


@dataclass(frozen=True)
class BranchNode:
    id: str
    on: Literal["tier", "variable", "hours", "wait"]
    #: Value -> target: tier names, variable values, ``open``/``closed``, ``over``/``within``.
    cases: Mapping[str, str]
    default: str | None = None
    variable: str | None = None
    queue: str | None = None
    seconds: float | None = None
    #: The queue's business hours (``on: hours``), from the ACD configuration; None: open.
    hours: BusinessHours | None = None


@dataclass(frozen=True)
class SetNode:
    id: str
    variable: str
    value: str
    next: str


@dataclass(frozen=True)
class LanguageNode:
    id: str
    language: str
    next: str


@dataclass(frozen=True)
class QueueNode:
    id: str
    queue: str
    announce_position: Prompts | None = None
    announce_wait: Prompts | None = None


@dataclass(frozen=True)
class CallbackNode:
    id: str
    queue: str
    next: str
    no_number: str
    number_variable: str | None = None


@dataclass(frozen=True)
class VoicemailNode:
    id: str
    mailbox: str


@dataclass(frozen=True)
class TransferNode:
    id: str
    number: str


@dataclass(frozen=True)
class HangupNode:
    id: str


@dataclass(frozen=True)
class GotoNode:
    id: str
    next: str | None = None
    flow: str | None = None


@dataclass(frozen=True)
class CallNode:
    id: str
    flow: str
    next: str


@dataclass(frozen=True)
class ReturnNode:
    id: str


Node = (
    PlayNode
    | MenuNode
    | CollectNode
    | LookupCallerNode
    | BranchNode
    | SetNode
    | LanguageNode
    | QueueNode
    | CallbackNode
    | VoicemailNode
    | TransferNode
    | HangupNode
    | GotoNode
    | CallNode
    | ReturnNode
)
#: Nodes that wait for the caller's keys (a cycle needs one of them).
INPUT_NODES = (MenuNode, CollectNode)


@dataclass(frozen=True)
class Flow:
    """One named flow: its nodes by id, where it starts, the languages of its file."""

    name: str
    file: str
    start: str
    languages: tuple[str, ...]
    nodes: Mapping[str, Node]

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]


@dataclass(frozen=True)
class FlowBook:
    """Every flow loaded together (sub-flows and gotos may cross files)."""

    flows: Mapping[str, Flow]

    def flow(self, name: str) -> Flow:
        """The flow called ``name``; KeyError naming the known ones otherwise."""
        try:
            return self.flows[name]
        except KeyError:
            raise KeyError(f"no IVR flow {name!r}; known: {sorted(self.flows)}") from None


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of card and account numbers."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def targets(node: Node) -> Iterator[tuple[str, str]]:
    """``(label, target node id)`` of each edge leaving ``node`` within its flow."""
    match node:
        case MenuNode():
            yield from ((f"{d}", t) for d, t in node.choices.items())
            if node.on_invalid:
                yield "invalid", node.on_invalid
            if node.after_retries:
                yield "after retries", node.after_retries
        case CollectNode():
            yield "valid", node.next
            if node.after_retries:
                yield "after retries", node.after_retries
        case LookupCallerNode():
            yield "found", node.next
            yield "unknown", node.on_unknown
        case BranchNode():
            yield from node.cases.items()
            if node.default:
                yield "default", node.default
        case CallbackNode():
            yield "requested", node.next
            yield "no number", node.no_number
        case GotoNode():
            if node.next:
                yield "", node.next
        case PlayNode() | SetNode() | LanguageNode() | CallNode():
            yield "", node.next
        case _:
            return


# -- loading ---------------------------------------------------------------------------------


def load_flows(
    paths: Iterable[Path],
    *,
    queues: Mapping[str, Any] | Collection[str],
    checks: Collection[str] | None = None,
) -> FlowBook:
    """Read and check flow files together. ``queues``: the ACD's queues (a mapping of name to
    :class:`acd.config.QueueConfig` gives ``branch on: hours`` their business hours; bare
    names make every queue open). ``checks``: the collect checks the service supplies (None:
    not checked). :class:`FlowsInvalid` lists every problem."""
    documents: list[tuple[str, Any]] = []
    errors: list[FlowError] = []
    for path in paths:
        try:
            documents.append((str(path), load_yaml(path, "IVR flow file")))
        except YamlFileError as exc:
            text = str(exc).removeprefix(f"{path}:").strip()
            errors.append(FlowError(str(path), None, text, "fix the file"))
    try:
        book = parse_flows(documents, queues=queues, checks=checks)
    except FlowsInvalid as exc:
        errors += exc.errors
    if errors:
        raise FlowsInvalid(errors)
    return book


def parse_flows(
    documents: Iterable[tuple[str, Any]],
    *,
    queues: Mapping[str, Any] | Collection[str],
    checks: Collection[str] | None = None,
) -> FlowBook:
    """Check already-parsed YAML documents ``(file name, data)``; see :func:`load_flows`."""
    errors: list[FlowError] = []
    flows: dict[str, Flow] = {}
    for file, data in documents:
        for flow in _FileReader(file, queues, checks, errors).read(data):
            if flow.name in flows:
                errors.append(
                    FlowError(
                        file,
                        flow.name,
                        f"flow {flow.name!r} is also defined in {flows[flow.name].file}",
                        "rename one of them (flow names are shared by the files loaded together)",
                    )
                )
            else:
                flows[flow.name] = flow
    errors += _check_book(flows)
    if errors:
        raise FlowsInvalid(errors)
    return FlowBook(flows)


def _keys(required: str, optional: str = "") -> tuple[frozenset[str], frozenset[str]]:
    return frozenset(required.split()), frozenset(optional.split())


#: Node type -> (required keys, optional keys), ``type`` aside.
_KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "play": _keys("prompts next", "barge_in"),
    "menu": _keys(
        "prompts choices",
        "timeout retries invalid_prompts timeout_prompts on_invalid after_retries",
    ),
    "collect": _keys(
        "prompts variable max_length next",
        "min_length terminator timeout validate invalid_prompts retries after_retries private",
    ),
    "lookup_caller": _keys("next on_unknown", "store"),
    "branch": _keys("on", "cases default variable queue open closed seconds over within"),
    "set": _keys("variable value next"),
    "language": _keys("language next"),
    "queue": _keys("queue", "announce"),
    "callback": _keys("queue next no_number", "number_variable"),
    "voicemail": _keys("mailbox"),
    "transfer": _keys("number"),
    "hangup": _keys(""),
    "goto": _keys("", "next flow"),
    "call": _keys("flow next"),
    "return": _keys(""),
}
NODE_TYPES = tuple(_KEYS)
_BRANCH_KEYS: dict[str, tuple[set[str], set[str]]] = {
    "tier": ({"cases", "default"}, set()),
    "variable": ({"variable", "cases", "default"}, set()),
    "hours": ({"queue", "open", "closed"}, set()),
    "wait": ({"queue", "seconds", "over", "within"}, set()),
}


class _Missing:
    pass


_MISSING = _Missing()


class _FileReader:
    """Reads one file's flows, appending every problem to ``errors``."""

    def __init__(
        self,
        file: str,
        queues: Mapping[str, Any] | Collection[str],
        checks: Collection[str] | None,
        errors: list[FlowError],
    ) -> None:
        self.file = file
        self.queues = queues
        self.checks = checks
        self.errors = errors
        self.languages: tuple[str, ...] = ()
        self.prompt_sets: dict[str, Prompts] = {}

    def error(self, node: str | None, problem: str, fix: str) -> None:
        self.errors.append(FlowError(self.file, node, problem, fix))

    def read(self, data: Any) -> list[Flow]:
        if not isinstance(data, dict):
            self.error(
                None,
                "the top level must be a mapping" if data is not None else "the file is empty",
                "write 'languages:', optional 'prompts:' and 'flows:' at the top level",
            )
            return []
        for key in data:
            if key not in ("languages", "prompts", "flows"):
                self.error(
                    None,
                    f"unknown top-level key {key!r}",
                    "use only 'languages', 'prompts' and 'flows'",
                )
        langs = data.get("languages")
        if (
            not isinstance(langs, list)
            or not langs
            or not all(isinstance(x, str) and x for x in langs)
        ):
            self.error(
                None,
                f"'languages' must be a non-empty list of language codes (got {langs!r})",
                "declare them, e.g. 'languages: [en, fr]'",
            )
        else:
            self.languages = tuple(langs)
            if len(set(langs)) != len(langs):
                self.error(None, "a language is listed twice in 'languages'", "list each once")
        sets = data.get("prompts", {})
        if not isinstance(sets, dict):
            self.error(
                None, "'prompts' must map set names to prompts", "write 'prompts: {name: {en: ..}}'"
            )
        else:
            for name, raw in sets.items():
                prompts = self.inline_prompts(f"prompt set {name!r}", None, raw)
                if prompts is not None:
                    self.prompt_sets[str(name)] = prompts
        raw_flows = data.get("flows")
        if not isinstance(raw_flows, dict) or not raw_flows:
            self.error(
                None,
                "'flows' must map flow names to flows",
                "add 'flows: {main: {start: ..., nodes: {...}}}'",
            )
            return []
        return [
            f
            for name, raw in raw_flows.items()
            if (f := self.read_flow(str(name), raw)) is not None
        ]

    def read_flow(self, name: str, raw: Any) -> Flow | None:
        if not _IDENT.match(name):
            self.error(name, f"flow name {name!r} is not an identifier", "use letters, digits, _ -")
        if not isinstance(raw, dict):
            self.error(name, "a flow must be a mapping", "give it 'start:' and 'nodes:'")
            return None
        for key in raw:
            if key not in ("start", "nodes"):
                self.error(name, f"unknown flow key {key!r}", "use only 'start' and 'nodes'")
        raw_nodes = raw.get("nodes")
        if not isinstance(raw_nodes, dict) or not raw_nodes:
            self.error(name, "the flow has no 'nodes'", "add 'nodes:' mapping node ids to nodes")
            return None
        nodes: dict[str, Node] = {}
        for node_id, raw_node in raw_nodes.items():
            node_id = str(node_id)
            ref = f"{name}.{node_id}"
            if not _IDENT.match(node_id):
                self.error(
                    ref, f"node id {node_id!r} is not an identifier", "use letters, digits, _ -"
                )
                continue
            node = _NodeReader(self, ref, node_id).read(raw_node)
            if node is not None:
                nodes[node_id] = node
        start = raw.get("start")
        if not isinstance(start, str) or start not in raw_nodes:
            self.error(
                name,
                f"'start' {start!r} is not a node of the flow",
                f"set 'start' to one of {sorted(map(str, raw_nodes))}",
            )
            return None
        flow = Flow(name, self.file, start, self.languages, nodes)
        self.check_targets(flow, raw_nodes)
        return flow

    def check_targets(self, flow: Flow, raw_nodes: Mapping[Any, Any]) -> None:
        known = set(map(str, raw_nodes))
        for node in flow.nodes.values():
            for label, target in targets(node):
                if target not in known:
                    what = f" ({label})" if label else ""
                    self.error(
                        f"{flow.name}.{node.id}",
                        f"target {target!r}{what} is not a node of flow {flow.name!r}",
                        f"point it at one of {sorted(known)}",
                    )
        # Unreachable nodes: only when every target resolves (else the dangling one says it).
        if all(t in known for n in flow.nodes.values() for _, t in targets(n)) and (
            set(flow.nodes) == known
        ):
            seen = _reachable(flow)
            for node_id in flow.nodes:
                if node_id not in seen:
                    self.error(
                        f"{flow.name}.{node_id}",
                        f"node {node_id!r} cannot be reached from the start {flow.start!r}",
                        "point a target at it, or remove it",
                    )

    def inline_prompts(self, label: str, ref: str | None, raw: Any) -> Prompts | None:
        if not isinstance(raw, dict) or not raw:
            self.error(
                ref,
                f"{label} must map languages to prompt names (got {raw!r})",
                "write e.g. {en: [welcome], fr: [fr/bienvenue]}",
            )
            return None
        by_language: dict[str, tuple[str, ...]] = {}
        for lang, names in raw.items():
            if isinstance(names, str):
                names = [names]
            if (
                not isinstance(names, list)
                or not names
                or not all(isinstance(n, str) and n for n in names)
            ):
                self.error(
                    ref,
                    f"{label}: language {lang!r} needs a prompt name or a list of them",
                    "give the sound file names without extension",
                )
                continue
            if self.languages and lang not in self.languages:
                self.error(
                    ref,
                    f"{label}: language {lang!r} is not declared in 'languages'",
                    f"add it to 'languages' or remove it (declared: {list(self.languages)})",
                )
            by_language[str(lang)] = tuple(names)
        missing = [lang for lang in self.languages if lang not in raw]
        if missing:
            self.error(
                ref,
                f"{label}: missing prompts for language(s) {missing}",
                "add the prompt names for every declared language",
            )
        return Prompts(by_language)


class _NodeReader:
    """Reads one node; problems go to the file reader's list."""

    def __init__(self, owner: _FileReader, ref: str, node_id: str) -> None:
        self.owner = owner
        self.ref = ref
        self.id = node_id
        self.raw: dict[Any, Any] = {}
        self.ok = True

    def error(self, problem: str, fix: str) -> None:
        self.ok = False
        self.owner.error(self.ref, problem, fix)

    def read(self, raw: Any) -> Node | None:
        if not isinstance(raw, dict):
            self.error("a node must be a mapping with a 'type'", f"give it one of {list(_KEYS)}")
            return None
        if True in raw and "on" not in raw:
            # YAML 1.1 reads a bare ``on:`` key as the boolean true.
            raw = {("on" if k is True else k): v for k, v in raw.items()}
        self.raw = raw
        kind = raw.get("type")
        if kind not in _KEYS:
            self.error(f"unknown node type {kind!r}", f"use one of {', '.join(_KEYS)}")
            return None
        required, optional = _KEYS[kind]
        if kind == "branch":
            required, optional = self.branch_keys(required, optional)
        allowed = required | optional | {"type"}
        for key in raw:
            if key not in allowed:
                self.error(
                    f"unknown key {key!r} for a {kind} node",
                    f"use only {sorted(allowed - {'type'})}",
                )
        for key in sorted(required - set(raw)):
            self.error(f"a {kind} node needs {key!r}", f"add '{key}:'")
        if not self.ok:
            return None
        node = getattr(self, f"node_{kind}")()
        return node if self.ok else None

    def branch_keys(
        self, required: frozenset[str], optional: frozenset[str]
    ) -> tuple[frozenset[str], frozenset[str]]:
        on = self.raw.get("on")
        if on not in _BRANCH_KEYS:
            self.error(f"branch 'on' must be one of {list(_BRANCH_KEYS)} (got {on!r})", "fix 'on'")
            return required, optional
        needed, _ = _BRANCH_KEYS[on]
        return required | frozenset(needed), frozenset()

    # -- values --

    def get(self, key: str, default: Any = _MISSING) -> Any:
        return self.raw.get(key, default)

    def text(self, key: str, default: Any = _MISSING) -> str:
        value = self.raw.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # 5003 or 6001 unquoted: a name
        if not isinstance(value, str) or not value:
            self.error(f"{key!r} must be a non-empty text (got {value!r})", f"fix '{key}'")
            return ""
        return value

    def target(self, key: str) -> str:
        value = self.raw.get(key)
        if not isinstance(value, str) or not value:
            self.error(f"{key!r} must name a node (got {value!r})", f"set '{key}' to a node id")
            return ""
        return value

    def optional_target(self, key: str) -> str | None:
        return self.target(key) if key in self.raw else None

    def variable(self, key: str, value: Any = _MISSING) -> str:
        value = self.raw.get(key) if value is _MISSING else value
        if not isinstance(value, str) or not _VARIABLE.match(value):
            self.error(
                f"{key!r} must be a variable name (got {value!r})",
                "use letters, digits and _, not starting with a digit",
            )
            return ""
        return value

    def number(self, key: str, default: float, *, integer: bool = False, low: float = 0) -> Any:
        value = self.raw.get(key, default)
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or value < low:
            what = "a whole number" if integer else "a number of seconds"
            self.error(f"{key!r} must be {what} >= {low:g} (got {value!r})", f"fix '{key}'")
            return default
        if not integer and value <= 0:
            self.error(f"{key!r} must be more than 0 seconds (got {value!r})", f"fix '{key}'")
            return default
        return value

    def flag(self, key: str) -> bool:
        value = self.raw.get(key, False)
        if not isinstance(value, bool):
            self.error(f"{key!r} must be true or false (got {value!r})", f"fix '{key}'")
            return False
        return value

    def prompts(self, key: str, raw: Any = _MISSING) -> Prompts:
        raw = self.raw.get(key) if raw is _MISSING else raw
        if isinstance(raw, str):
            found = self.owner.prompt_sets.get(raw)
            if found is None:
                known = sorted(self.owner.prompt_sets)
                self.error(
                    f"{key!r}: no prompt set {raw!r} under 'prompts:'",
                    f"define it or use one of {known}" if known else "define it under 'prompts:'",
                )
                return NO_PROMPTS
            return found
        before = len(self.owner.errors)
        found = self.owner.inline_prompts(repr(key), self.ref, raw)
        if len(self.owner.errors) != before:
            self.ok = False
        return found or NO_PROMPTS

    def optional_prompts(self, key: str) -> Prompts:
        return self.prompts(key) if key in self.raw else NO_PROMPTS

    def queue(self) -> str:
        name = self.text("queue")
        if name and name not in self.owner.queues:
            self.error(
                f"queue {name!r} is not a queue of the ACD configuration",
                f"use one of {sorted(self.owner.queues)}, or add it to the queues file",
            )
        return name

    def retries(self) -> tuple[int, str | None]:
        return self.number("retries", 2, integer=True), self.optional_target("after_retries")

    # -- node types --

    def node_play(self) -> Node:
        return PlayNode(
            self.id, self.prompts("prompts"), self.target("next"), self.flag("barge_in")
        )

    def node_menu(self) -> Node:
        raw = self.get("choices")
        choices: dict[str, str] = {}
        if not isinstance(raw, dict) or not raw:
            self.error("'choices' must map digits to nodes", "write e.g. 'choices: {1: sales}'")
        else:
            for digit, target in raw.items():
                digit = str(digit)
                if len(digit) != 1 or digit not in DIGITS:
                    self.error(f"choice {digit!r} is not one key", f"use one of {DIGITS}")
                elif not isinstance(target, str) or not target:
                    self.error(f"choice {digit!r} must name a node", "set it to a node id")
                else:
                    choices[digit] = target
        retries, after = self.retries()
        return MenuNode(
            self.id,
            self.prompts("prompts"),
            choices,
            timeout=self.number("timeout", 5.0),
            retries=retries,
            invalid_prompts=self.optional_prompts("invalid_prompts"),
            timeout_prompts=self.optional_prompts("timeout_prompts"),
            on_invalid=self.optional_target("on_invalid"),
            after_retries=after,
        )

    def node_collect(self) -> Node:
        low = self.number("min_length", 1, integer=True, low=1)
        high = self.number("max_length", 1, integer=True, low=1)
        if low > high:
            self.error(
                f"min_length {low} is more than max_length {high}",
                "make min_length at most max_length",
            )
        terminator = str(self.get("terminator", "#"))
        if terminator not in ("", *DIGITS) or len(terminator) > 1:
            self.error(f"terminator {terminator!r} is not one key", f"use one of {DIGITS} or ''")
        validate = self.get("validate", {})
        pattern: re.Pattern[str] | None = None
        luhn = False
        check: str | None = None
        if not isinstance(validate, dict):
            self.error("'validate' must be a mapping", "use {pattern: .., luhn: .., check: ..}")
            validate = {}
        for key in validate:
            if key not in ("pattern", "luhn", "check"):
                self.error(f"unknown validation {key!r}", "use only 'pattern', 'luhn' and 'check'")
        if "pattern" in validate:
            try:
                pattern = re.compile(str(validate["pattern"]))
            except re.error as exc:
                self.error(
                    f"validate.pattern {validate['pattern']!r} is not a regular expression ({exc})",
                    "fix the pattern (Python 're' syntax)",
                )
        if "luhn" in validate:
            luhn = validate["luhn"]
            if not isinstance(luhn, bool):
                self.error(f"validate.luhn must be true or false (got {luhn!r})", "fix it")
                luhn = False
        if "check" in validate:
            check = validate["check"]
            checks = self.owner.checks
            if not isinstance(check, str) or not check:
                self.error(f"validate.check must name a check (got {check!r})", "fix it")
                check = None
            elif checks is not None and check not in checks:
                self.error(
                    f"validate.check {check!r} is not a check the IVR service supplies",
                    f"use one of {sorted(checks)}" if checks else "remove it",
                )
        retries, after = self.retries()
        return CollectNode(
            self.id,
            self.prompts("prompts"),
            self.variable("variable"),
            high,
            self.target("next"),
            min_length=low,
            terminator=terminator,
            timeout=self.number("timeout", 5.0),
            pattern=pattern,
            luhn=luhn,
            check=check,
            invalid_prompts=self.optional_prompts("invalid_prompts"),
            retries=retries,
            after_retries=after,
            private=self.flag("private"),
        )

    def node_lookup_caller(self) -> Node:
        store = dict(LookupCallerNode("", "", "").store)
        raw = self.get("store", {})
        if not isinstance(raw, dict):
            self.error("'store' must map caller fields to variables", "e.g. {tier: TIER}")
            raw = {}
        for key, var in raw.items():
            if key not in store:
                self.error(f"unknown caller field {key!r}", f"use {sorted(store)}")
            else:
                store[key] = self.variable(f"store.{key}", var)
        return LookupCallerNode(self.id, self.target("next"), self.target("on_unknown"), store)

    def node_branch(self) -> Node:
        on = self.get("on")
        if on in ("tier", "variable"):
            raw = self.get("cases")
            cases: dict[str, str] = {}
            if not isinstance(raw, dict) or not raw:
                self.error("'cases' must map values to nodes", "write e.g. 'cases: {vip: vip}'")
                raw = {}
            for value, target in raw.items():
                value = str(value)
                if on == "tier" and value not in BRANCH_TIERS:
                    self.error(f"unknown tier {value!r}", f"use one of {list(BRANCH_TIERS)}")
                if not isinstance(target, str) or not target:
                    self.error(f"case {value!r} must name a node", "set it to a node id")
                else:
                    cases[value] = target
            variable = self.variable("variable") if on == "variable" else None
            return BranchNode(self.id, on, cases, self.target("default"), variable=variable)
        if on == "hours":
            queue = self.queue()
            queues = self.owner.queues
            config = queues.get(queue) if isinstance(queues, Mapping) else None
            return BranchNode(
                self.id,
                "hours",
                {"open": self.target("open"), "closed": self.target("closed")},
                queue=queue,
                hours=getattr(config, "hours", None),
            )
        return BranchNode(
            self.id,
            "wait",
            {"over": self.target("over"), "within": self.target("within")},
            queue=self.queue(),
            seconds=self.number("seconds", 60.0),
        )

    def node_set(self) -> Node:
        value = self.get("value")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.error(f"'value' must be a text or a number (got {value!r})", "fix 'value'")
            value = ""
        return SetNode(self.id, self.variable("variable"), str(value), self.target("next"))

    def node_language(self) -> Node:
        language = self.text("language")
        if language and language not in self.owner.languages:
            self.error(
                f"language {language!r} is not declared in 'languages'",
                f"use one of {list(self.owner.languages)} or declare it",
            )
        return LanguageNode(self.id, language, self.target("next"))

    def node_queue(self) -> Node:
        raw = self.get("announce", {})
        position = wait = None
        if not isinstance(raw, dict):
            self.error("'announce' must be a mapping", "use {position: prompts, wait: prompts}")
            raw = {}
        for key in raw:
            if key not in ("position", "wait"):
                self.error(f"unknown announcement {key!r}", "use only 'position' and 'wait'")
        if "position" in raw:
            position = self.prompts("announce.position", raw["position"])
        if "wait" in raw:
            wait = self.prompts("announce.wait", raw["wait"])
        return QueueNode(self.id, self.queue(), position, wait)

    def node_callback(self) -> Node:
        number = self.variable("number_variable") if "number_variable" in self.raw else None
        return CallbackNode(
            self.id, self.queue(), self.target("next"), self.target("no_number"), number
        )

    def node_voicemail(self) -> Node:
        return VoicemailNode(self.id, self.text("mailbox"))

    def node_transfer(self) -> Node:
        return TransferNode(self.id, self.text("number"))

    def node_hangup(self) -> Node:
        return HangupNode(self.id)

    def node_goto(self) -> Node:
        if ("next" in self.raw) == ("flow" in self.raw):
            self.error(
                "a goto needs exactly one of 'next' (a node) and 'flow' (another flow)",
                "keep one of them",
            )
            return GotoNode(self.id)
        if "next" in self.raw:
            return GotoNode(self.id, next=self.target("next"))
        return GotoNode(self.id, flow=self.text("flow"))

    def node_call(self) -> Node:
        return CallNode(self.id, self.text("flow"), self.target("next"))

    def node_return(self) -> Node:
        return ReturnNode(self.id)


def _reachable(flow: Flow) -> set[str]:
    seen = {flow.start}
    todo = [flow.start]
    while todo:
        node = flow.nodes.get(todo.pop())
        if node is None:
            continue
        for _, target in targets(node):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _check_book(flows: Mapping[str, Flow]) -> list[FlowError]:
    """Checks across flows: flows named by goto/call exist and speak the caller's
    languages, sub-flows do not call themselves, no loop without input."""
    errors: list[FlowError] = []
    for flow in flows.values():
        for node in flow.nodes.values():
            other = node.flow if isinstance(node, GotoNode | CallNode) else None
            if other is None:
                continue
            ref = f"{flow.name}.{node.id}"
            if other not in flows:
                errors.append(
                    FlowError(
                        flow.file,
                        ref,
                        f"flow {other!r} is not defined in the files loaded",
                        f"use one of {sorted(flows)}, or load the file that defines it",
                    )
                )
                continue
            missing = [x for x in flow.languages if x not in flows[other].languages]
            if missing:
                errors.append(
                    FlowError(
                        flow.file,
                        ref,
                        f"flow {other!r} has no prompts in language(s) {missing}",
                        f"declare them in {flows[other].file}, or do not go there",
                    )
                )
    if errors:
        return errors
    errors += _call_cycles(flows)
    errors += _silent_loops(flows)
    return errors


def _call_cycles(flows: Mapping[str, Flow]) -> list[FlowError]:
    calls = {
        name: [(n, n.flow) for n in f.nodes.values() if isinstance(n, CallNode)]
        for name, f in flows.items()
    }
    errors = []
    reported: set[frozenset[str]] = set()

    def visit(name: str, chain: list[str]) -> None:
        for node, callee in calls[name]:
            if callee in chain:
                loop = chain[chain.index(callee) :]
                if frozenset(loop) not in reported:
                    reported.add(frozenset(loop))
                    path = " -> ".join([*loop, callee])
                    errors.append(
                        FlowError(
                            flows[name].file,
                            f"{name}.{node.id}",
                            f"sub-flows call themselves: {path}",
                            "end the chain: use 'goto' to leave a flow for good",
                        )
                    )
                continue
            visit(callee, [*chain, callee])

    for name in flows:
        visit(name, [name])
    return errors


def _silent_loops(flows: Mapping[str, Flow]) -> list[FlowError]:
    """Cycles through nodes none of which waits for the caller (they would spin forever)."""
    graph: dict[str, list[str]] = {}
    where: dict[str, Flow] = {}
    for flow in flows.values():
        for node in flow.nodes.values():
            ref = f"{flow.name}.{node.id}"
            where[ref] = flow
            if isinstance(node, INPUT_NODES):
                graph[ref] = []  # the caller's keys (or a timeout) break the loop here
                continue
            edges = [f"{flow.name}.{t}" for _, t in targets(node)]
            if isinstance(node, GotoNode | CallNode) and node.flow:
                edges.append(f"{node.flow}.{flows[node.flow].start}")
            graph[ref] = edges
    errors = []
    for component in _strongly_connected(graph):
        first = min(component)
        if len(component) > 1 or first in graph[first]:
            nodes = ", ".join(sorted(component))
            errors.append(
                FlowError(
                    where[first].file,
                    first,
                    f"loop without input: {nodes} repeat without waiting for the caller",
                    "put a menu or collect in the loop, or end it (queue, hangup, ...)",
                )
            )
    return errors


def _strongly_connected(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (flows may be long chains)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph[nxt])))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                result.append(component)
    return result


def flow_edges(book: FlowBook) -> Iterator[tuple[Flow, Node, str, str]]:
    """Every edge for drawing: ``(flow, node, label, target ref)``; refs are ``flow.node``."""
    for flow in book.flows.values():
        for node in flow.nodes.values():
            for label, target in targets(node):
                yield flow, node, label, f"{flow.name}.{target}"
            other = node.flow if isinstance(node, GotoNode | CallNode) else None
            if other is not None and other in book.flows:
                label = "call" if isinstance(node, CallNode) else "goto"
                yield flow, node, label, f"{other}.{book.flows[other].start}"
