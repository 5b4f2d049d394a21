"""Every error the IVR raises, in one place (the modules that raise them re-export them).

* :class:`FlowError` — one problem in a flow file: the file, the node (``flow.node``, or
  the flow or None when the problem is the file's), what is wrong and how to fix it.
* :class:`FlowsInvalid` — loading flow files found problems; it carries all of them (the
  loader checks everything before it raises, so one run of ``callcenter ivr check`` lists
  every mistake). Nothing was loaded.
* :class:`IvrStartupError` — the IVR service cannot start (flows that do not load, an entry
  naming no flow, a FastAGI port taken): the problem and the setting to fix.
* :class:`UnexpectedResult` — a transport fed a session a result that does not answer the
  step the session waits on (a transport bug, not a caller's doing); the session is
  unchanged.
"""

from __future__ import annotations

__all__ = ["FlowError", "FlowsInvalid", "IvrError", "IvrStartupError", "UnexpectedResult"]


class IvrError(Exception):
    """Base of the IVR's errors."""


class FlowError(IvrError):
    """One problem in a flow file. ``str()`` is one line: ``file: node 'main.menu': problem;
    fix``."""

    def __init__(self, file: str, node: str | None, problem: str, fix: str) -> None:
        self.file = file
        self.node = node
        self.problem = problem
        self.fix = fix
        where = f" node {node!r}:" if node else ""
        super().__init__(f"{file}:{where} {problem}; {fix}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FlowError) and self.fields() == other.fields()

    def __hash__(self) -> int:
        return hash(self.fields())

    def fields(self) -> tuple[str, str | None, str, str]:
        """``(file, node, problem, fix)``."""
        return (self.file, self.node, self.problem, self.fix)


class FlowsInvalid(IvrError):
    """Flow files that cannot be used; ``errors`` lists every problem found."""

    def __init__(self, errors: list[FlowError]) -> None:
        self.errors = tuple(errors)
        lines = "\n  ".join(str(e) for e in self.errors)
        count = f"{len(self.errors)} problem{'s' if len(self.errors) > 1 else ''}"
        super().__init__(f"invalid IVR flows ({count}):\n  {lines}")


class UnexpectedResult(IvrError):
    """A result that does not answer the step the session waits on."""


class IvrStartupError(IvrError):
    """The IVR cannot start. ``problem`` says what is wrong; ``setting`` names the
    :class:`~ivr.config.IvrSettings` key to fix (or None); ``str()`` is the whole message in
    the IVR's terms (the process names its own key and variable through :meth:`message`)."""

    def __init__(self, problem: str, *, setting: str | None = None) -> None:
        self.problem = problem
        self.setting = setting
        super().__init__(self.message(setting and f"the IVR setting {setting!r}"))

    def message(self, setting: str | None) -> str:
        """The message, naming ``setting`` (a configuration key and its variable) to fix."""
        if setting is None:
            return self.problem
        return f"{self.problem}; check {setting}"
