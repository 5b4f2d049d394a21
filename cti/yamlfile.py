"""Reading the product's YAML files (``callcenter.yaml``, ``queues.yaml``): one loader for all.

:func:`load_yaml` is ``yaml.safe_load`` with the mistakes a person makes caught and told
plainly, never as a traceback: a file that cannot be read, that is not UTF-8, that is not
YAML, and a key given twice in one mapping (YAML forbids it; PyYAML would silently keep the
last one, so a second ``port:`` further down would quietly win). Each becomes a
:class:`YamlFileError` naming the file, the line and the key or problem; the caller wraps it
in its own configuration error. :func:`explain_invalid` turns a pydantic validation error
of such a file's settings into lines naming the file, the key and the fix. It imports
nothing of the product, so any package may use it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

__all__ = ["YamlFileError", "explain_invalid", "load_yaml"]

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlFileError(ValueError):
    """A YAML file that cannot be used; the message names the file, the line and what is
    wrong. ``unreadable`` is true when the file could not be read at all (missing,
    a directory, no permission)."""

    def __init__(self, message: str, *, unreadable: bool = False) -> None:
        super().__init__(message)
        self.unreadable = unreadable


class _UniqueKeyLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses a key given twice in one mapping (merge keys ``<<`` may
    still be overridden, as YAML intends)."""

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            first_lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = first_lines.get(key)
                except TypeError:
                    continue  # an unhashable key: SafeLoader reports it below
                if first is None:
                    first_lines[key] = key_node.start_mark.line
                else:
                    raise ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {key!r} (first given on line {first + 1}); "
                        "keep only one",
                        key_node.start_mark,
                    )
        # types-PyYAML says MappingNode; SafeConstructor checks the node and raises its own
        # "expected a mapping node" for any other.
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]


def load_yaml(path: Path, what: str = "file") -> Any:
    """The YAML document in ``path`` (None when it is empty). ``what`` names the file in
    the message when it cannot be read ("the configuration file")."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise YamlFileError(
            f"{path}: cannot read the {what} ({exc.strerror or exc})", unreadable=True
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YamlFileError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save the file as UTF-8"
        ) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        if problem.startswith("duplicate key"):
            raise YamlFileError(f"{path}:{where} {problem}") from None
        raise YamlFileError(f"{path}:{where} not valid YAML: {problem}") from None


def explain_invalid(
    exc: ValidationError,
    origin: str,
    what: str,
    own_lines: Callable[[ErrorDetails], list[str] | None] = lambda err: None,
) -> str:
    """``exc`` as ``invalid <what>:`` and one line per problem, each naming ``origin`` (the
    file) and the key: a misspelt key, a missing one, or a value with what was given.
    ``own_lines(err)`` may answer a domain's own lines for an error (None: the usual one)."""
    lines = []
    for err in exc.errors():
        own = own_lines(err)
        if own is not None:
            lines += own
            continue
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"{origin}: key {key!r} is not a setting; check its spelling")
        elif err["type"] == "missing":
            lines.append(f"{origin}: key {key!r} is missing; add it")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{origin}: key {key!r}: {msg} (got {err.get('input')!r})")
    return f"invalid {what}:\n  " + "\n  ".join(lines)
