"""A reader of Asterisk's ``.conf`` syntax (``queues.conf``, ``extensions.conf``...).

Why not pyst2's ``asterisk.config``: pyst2 and ``asterisk-ami`` (a test dependency) both
install the top-level package ``asterisk``, so they cannot share one environment, and the
syntax needed here is small. What is read, as Asterisk's config parser reads it:

* sections ``[name]``; templates ``[name](!)``; inheritance ``[name](base, other)`` and
  ``[name](!, base)`` (the bases' entries first, in the order named); ``[name](+)`` adds to
  a section already read;
* entries ``key = value`` and ``key => value`` (an *object*, e.g. ``member =>``,
  ``exten =>``); a key may repeat, order is kept;
* comments: ``;`` to the end of the line (``\\;`` is a literal semicolon), and block
  comments ``;-- ... --;`` over several lines;
* ``#include file`` and ``#tryinclude file`` (quotes optional, relative to the including
  file's directory, wildcards allowed; ``#tryinclude`` of nothing is no error), followed in
  place unless the caller refuses them; ``#exec`` is refused (it runs a program).

Each entry keeps the file and line it came from, so anything built from it can point at the
line. A line that is none of these raises :class:`AsteriskConfError` naming file and line.
Pure but for reading the files named.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["AsteriskConf", "AsteriskConfError", "ConfEntry", "ConfSection", "read_conf"]

_HEADER = re.compile(r"^\[([^\[\]]+)\]\s*(?:\(([^()]*)\))?$")
_DIRECTIVE = re.compile(r"^#\s*(include|tryinclude|exec)\b\s*(.*)$")


class AsteriskConfError(ValueError):
    """A ``.conf`` file that cannot be read as Asterisk would; names the file and line."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True)
class ConfEntry:
    """``key = value`` (``is_object`` for ``=>``), where it was written."""

    key: str
    value: str
    path: str
    line: int
    is_object: bool = False

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(slots=True)
class ConfSection:
    """A ``[name]`` section; ``entries`` are its own, :meth:`resolved` adds the inherited."""

    name: str
    path: str
    line: int
    template: bool = False
    bases: tuple[str, ...] = ()
    entries: list[ConfEntry] = field(default_factory=list)
    _inherited: list[ConfEntry] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def resolved(self) -> list[ConfEntry]:
        """The bases' entries (in the order the header names them), then its own."""
        return [*self._inherited, *self.entries]

    def get(self, key: str) -> ConfEntry | None:
        """The last entry ``key`` (a later one overrides an inherited one)."""
        return next((e for e in reversed(self.resolved()) if e.key == key), None)


@dataclass(slots=True)
class AsteriskConf:
    """Every section of a file and what it includes, in order of first appearance."""

    sections: dict[str, ConfSection]
    #: The files read, the main one first.
    files: list[str]

    def concrete(self) -> Iterator[ConfSection]:
        """The sections that are not templates."""
        return (s for s in self.sections.values() if not s.template)


def read_conf(path: Path, *, follow_includes: bool = True) -> AsteriskConf:
    """Read ``path`` (and what it includes); :class:`AsteriskConfError` on a bad line.

    ``follow_includes`` false: an ``#include`` is an error naming its line."""
    reader = _Reader(follow_includes)
    reader.read(Path(path), None)
    reader.inherit()
    return AsteriskConf(reader.sections, reader.files)


class _Reader:
    def __init__(self, follow_includes: bool) -> None:
        self.follow = follow_includes
        self.sections: dict[str, ConfSection] = {}
        self.files: list[str] = []
        self.current: ConfSection | None = None
        self._open: list[Path] = []
        self._in_block = False

    def read(self, path: Path, at: tuple[str, int] | None) -> None:
        where = f"{at[0]}:{at[1]}: " if at else ""
        resolved = path.resolve()
        if resolved in self._open:
            raise AsteriskConfError(
                at[0] if at else path,
                at[1] if at else None,
                f"#include {path} includes itself (a loop)",
            )
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise AsteriskConfError(path, None, f"{where}not UTF-8 text ({exc.reason})") from None
        except OSError as exc:
            raise AsteriskConfError(path, None, f"{where}cannot read: {exc.strerror}") from None
        self.files.append(str(path))
        self._open.append(resolved)
        for number, raw in enumerate(text.splitlines(), start=1):
            self._line(path, number, raw)
        self._open.pop()

    def _line(self, path: Path, number: int, raw: str) -> None:
        line = self._strip_comment(raw).strip()
        if not line:
            return
        if line.startswith("#"):
            self._directive(path, number, line)
        elif line.startswith("["):
            self._header(path, number, line)
        else:
            self._entry(path, number, line)

    def _strip_comment(self, raw: str) -> str:
        """The line without comments; ``\\;`` becomes ``;``; block comments span lines."""
        out: list[str] = []
        i = 0
        while i < len(raw):
            if self._in_block:
                end = raw.find("--;", i)
                if end < 0:
                    return "".join(out)
                self._in_block = False
                i = end + 3
                continue
            ch = raw[i]
            if ch == "\\" and raw.startswith(";", i + 1):
                out.append(";")
                i += 2
            elif ch == ";":
                if raw.startswith(";--", i):
                    self._in_block = True
                    i += 3
                    continue
                break
            else:
                out.append(ch)
                i += 1
        return "".join(out)

    def _directive(self, path: Path, number: int, line: str) -> None:
        m = _DIRECTIVE.match(line)
        if m is None:
            raise AsteriskConfError(path, number, f"unknown directive {line!r}")
        kind, target = m[1], m[2].strip().strip('"').strip("<>").strip()
        if kind == "exec":
            raise AsteriskConfError(path, number, "#exec runs a program: unsupported here")
        if not target:
            raise AsteriskConfError(path, number, f"#{kind} without a file name")
        if not self.follow:
            raise AsteriskConfError(path, number, f"#{kind} {target}: includes are not followed")
        pattern = Path(target) if Path(target).is_absolute() else path.parent / target
        found = sorted(glob.glob(str(pattern)))
        if not found and kind == "include":
            raise AsteriskConfError(path, number, f"#include {target}: no such file")
        for name in found:
            self.read(Path(name), (str(path), number))

    def _header(self, path: Path, number: int, line: str) -> None:
        m = _HEADER.match(line)
        if m is None:
            raise AsteriskConfError(
                path, number, f"not a section header {line!r}; use [name] or [name](options)"
            )
        name = m[1].strip()
        options = [o.strip() for o in (m[2] or "").split(",") if o.strip()]
        if "+" in options:
            existing = self.sections.get(name)
            if existing is None:
                raise AsteriskConfError(path, number, f"[{name}](+) adds to no section {name!r}")
            self.current = existing
            return
        if name in self.sections:
            first = self.sections[name]
            raise AsteriskConfError(
                path, number, f"section [{name}] again (first at {first.where}); use [{name}](+)"
            )
        bases = tuple(o for o in options if o != "!")
        self.current = ConfSection(name, str(path), number, "!" in options, bases)
        self.sections[name] = self.current

    def _entry(self, path: Path, number: int, line: str) -> None:
        key, sep, value = line.partition("=")
        if not sep:
            raise AsteriskConfError(path, number, f"{line!r} is not 'key = value' nor a [section]")
        is_object = value.startswith(">")
        key, value = key.strip(), value.removeprefix(">").strip()
        if not key:
            raise AsteriskConfError(path, number, f"{line!r}: no key before '='")
        if self.current is None:
            raise AsteriskConfError(path, number, f"{key!r} before any [section]")
        self.current.entries.append(ConfEntry(key, value, str(path), number, is_object))

    def inherit(self) -> None:
        """Copy each base's (resolved) entries into the sections naming it."""
        done: set[str] = set()

        def resolve(section: ConfSection, chain: tuple[str, ...]) -> None:
            if section.name in done:
                return
            inherited: list[ConfEntry] = []
            for base_name in section.bases:
                base = self.sections.get(base_name)
                if base is None:
                    raise AsteriskConfError(
                        section.path,
                        section.line,
                        f"[{section.name}] inherits from [{base_name}], which is not defined",
                    )
                if base_name in chain:
                    loop = " -> ".join([*chain, base_name])
                    raise AsteriskConfError(section.path, section.line, f"inheritance loop {loop}")
                resolve(base, (*chain, base_name))
                inherited += base.resolved()
            section._inherited = inherited
            done.add(section.name)

        for section in self.sections.values():
            resolve(section, (section.name,))
