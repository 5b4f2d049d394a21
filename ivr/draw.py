"""IVR flows as graphs: Graphviz ``dot`` and Mermaid ``flowchart`` text
(``callcenter ivr draw``). One cluster per flow; edges carry the key, case or outcome that
takes them; ``call`` and ``goto`` edges lead to the other flow's start."""

from __future__ import annotations

import re
from collections.abc import Collection

from ivr.flow import (
    BranchNode,
    CallbackNode,
    CallNode,
    CollectNode,
    FlowBook,
    GotoNode,
    LanguageNode,
    Node,
    QueueNode,
    SetNode,
    TransferNode,
    VoicemailNode,
    flow_edges,
)

__all__ = ["describe", "to_dot", "to_mermaid"]

_KIND = {
    "PlayNode": "play",
    "MenuNode": "menu",
    "CollectNode": "collect",
    "LookupCallerNode": "lookup caller",
    "BranchNode": "branch",
    "SetNode": "set",
    "LanguageNode": "language",
    "QueueNode": "queue",
    "CallbackNode": "callback",
    "VoicemailNode": "voicemail",
    "TransferNode": "transfer",
    "HangupNode": "hang up",
    "GotoNode": "goto",
    "CallNode": "call",
    "ReturnNode": "return",
}


def describe(node: Node) -> str:
    """A node's one-line label: its kind and what it acts on."""
    kind = _KIND[type(node).__name__]
    match node:
        case CollectNode():
            detail = f"{node.variable} ({node.min_length}-{node.max_length})"
            detail += " luhn" if node.luhn else ""
        case BranchNode():
            detail = f"on {node.on}" + (f" {node.queue}" if node.queue else "")
            detail += f" {node.variable}" if node.variable else ""
            detail += f" > {node.seconds:g} s" if node.seconds is not None else ""
        case SetNode():
            detail = f"{node.variable}={node.value}"
        case LanguageNode():
            detail = node.language
        case QueueNode() | CallbackNode():
            detail = node.queue
        case VoicemailNode():
            detail = node.mailbox
        case TransferNode():
            detail = node.number
        case CallNode() | GotoNode():
            detail = node.flow or ""
        case _:
            detail = ""
    return f"{node.id}: {kind} {detail}".rstrip()


def _chosen(book: FlowBook, flows: Collection[str] | None) -> list[str]:
    return [name for name in book.flows if flows is None or name in flows]


def to_dot(book: FlowBook, flows: Collection[str] | None = None) -> str:
    """Graphviz text of ``flows`` (default: all); edges into other flows are drawn to
    their start node even when that flow is not drawn."""
    names = _chosen(book, flows)
    lines = ["digraph ivr {", "  rankdir=TB;", '  node [shape=box, fontname="Helvetica"];']
    for name in names:
        flow = book.flows[name]
        lines.append(f"  subgraph {_dot_id('cluster_' + name)} {{")
        lines.append(f"    label={_quote(f'{name} ({flow.file})')};")
        for node in flow.nodes.values():
            shape = ", shape=diamond" if isinstance(node, BranchNode) else ""
            peripheries = ", peripheries=2" if node.id == flow.start else ""
            lines.append(
                f"    {_dot_id(f'{name}.{node.id}')} [label={_quote(describe(node))}"
                f"{shape}{peripheries}];"
            )
        lines.append("  }")
    for flow, node, label, target in flow_edges(book):
        if flow.name in names:
            attrs = f" [label={_quote(label)}]" if label else ""
            lines.append(f"  {_dot_id(f'{flow.name}.{node.id}')} -> {_dot_id(target)}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(book: FlowBook, flows: Collection[str] | None = None) -> str:
    """Mermaid ``flowchart`` text of ``flows`` (default: all)."""
    names = _chosen(book, flows)
    lines = ["flowchart TD"]
    for name in names:
        flow = book.flows[name]
        lines.append(f'  subgraph {_mermaid_id(name)}["{_mermaid_text(name)}"]')
        for node in flow.nodes.values():
            text = _mermaid_text(describe(node))
            ref = _mermaid_id(f"{name}.{node.id}")
            shape = f'{{"{text}"}}' if isinstance(node, BranchNode) else f'["{text}"]'
            lines.append(f"    {ref}{shape}")
        lines.append("  end")
    for flow, node, label, target in flow_edges(book):
        if flow.name in names:
            arrow = f' -->|"{_mermaid_text(label)}"| ' if label else " --> "
            lines.append(f"  {_mermaid_id(f'{flow.name}.{node.id}')}{arrow}{_mermaid_id(target)}")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_id(ref: str) -> str:
    return _quote(ref)


def _mermaid_id(ref: str) -> str:
    # Mermaid ids: letters, digits, _ only; ``.`` and ``-`` are kept apart by their codes.
    return "n_" + re.sub(r"[^A-Za-z0-9_]", lambda m: f"_{ord(m[0]):x}_", ref)


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")
