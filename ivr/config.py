"""The IVR service's settings (``callcenter.yaml``'s ``ivr:`` section) and the flow files
they name.

:class:`IvrSettings` is checked by pydantic when the process reads its configuration (the
process's loader names the file, the key and the fix). :func:`flow_files` turns ``flows``
(files, or directories whose ``*.yaml`` are read) into the files to load, and
:func:`entry_flows` checks that every entry names a loaded flow; both raise
:class:`~ivr.errors.IvrStartupError` naming the ``IvrSettings`` key to fix. The flows
themselves are checked by :func:`ivr.flow.load_flows` (file, node, problem and fix).

An entry is how a channel arriving over AGI finds its flow (:meth:`IvrSettings.flow_for`):
the FastAGI script (``agi://host:port/<script>``), AsyncAGI's first argument
(``AGI(agi:async,<flow>)``), or the extension the AGI runs at (a DID: ``5002``, or the
simulator's ``did-5002``). A script or argument that is itself a flow's name needs no entry.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ivr.dialplan import IvrEntry
from ivr.errors import IvrStartupError

__all__ = ["IvrEntrySettings", "IvrSettings", "entry_fallbacks", "entry_flows", "flow_files"]

_ENTRY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+*#._-]*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IvrEntrySettings(_Section):
    """``entry`` (a DID, an extension, or a FastAGI script name) runs ``flow`` over
    ``transport`` (what ``callcenter asterisk dialplan`` writes for it). A caller the
    backend fails there (FastAGI unreachable or dropped mid-flow, the channel given back)
    goes to ``fallback_queue``'s holding lane; None: the entry hangs up."""

    entry: str = Field(pattern=_ENTRY.pattern)
    flow: str = Field(min_length=1)
    transport: Literal["asyncagi", "fastagi"] = "asyncagi"
    fallback_queue: str | None = Field(None, min_length=1)

    @field_validator("entry", "flow", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        # YAML reads an unquoted DID (5002) as a number; it is a name here.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class IvrSettings(_Section):
    """Where the flows are, which entry runs which, and the FastAGI server."""

    #: Flow files, or directories whose ``*.yaml`` files are all loaded (relative to the
    #: configuration file). Empty: no IVR.
    flows: tuple[Path, ...] = ()
    #: Which entry runs which flow.
    entries: tuple[IvrEntrySettings, ...] = ()
    #: The FastAGI server (``AGI(agi://host:port/<flow>)``); port 0: no FastAGI server.
    fastagi_host: str = "127.0.0.1"
    fastagi_port: int = Field(4573, ge=0, le=65535)
    #: Seconds an AGI command's reply may take beyond the waiting its step asks for (the
    #: prompt's length is unknown here): past it the step counts as timed out.
    agi_timeout: float = Field(30.0, gt=0, le=600)
    #: Seconds a caller look-up, a wait estimate or a collect's check may take before the
    #: flow goes on as if the caller were unknown, the wait unknown, the check failed.
    lookup_timeout: float = Field(1.0, gt=0, le=60)

    @model_validator(mode="after")
    def _entries(self) -> IvrSettings:
        seen: set[str] = set()
        for entry in self.entries:
            if entry.entry in seen:
                raise ValueError(
                    f"entry {entry.entry!r} is given twice; keep one flow per entry"
                )
            seen.add(entry.entry)
        if self.entries and not self.flows:
            raise ValueError("entries are given but no 'flows': list the flow files")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.flows)

    def dialplan_entries(self) -> list[IvrEntry]:
        """The entries as ``callcenter asterisk dialplan`` writes them."""
        return [IvrEntry(e.entry, e.flow, e.transport, e.fallback_queue) for e in self.entries]

    def flow_for(
        self,
        flows: Collection[str],
        *,
        script: str | None = None,
        argument: str | None = None,
        extension: str | None = None,
    ) -> str | None:
        """The flow a channel runs: by its FastAGI ``script``, AsyncAGI ``argument`` (each an
        entry, or a flow's own name), else its ``extension`` (an entry; a ``did-`` prefix,
        the lab's inbound dialplan, is dropped). None: no flow for it."""
        by_entry = {e.entry: e.flow for e in self.entries}
        for name in (script, argument):
            if name:
                if name in by_entry:
                    return by_entry[name]
                if name in flows:
                    return name
        if extension:
            for key in (extension, extension.removeprefix("did-")):
                if key in by_entry:
                    return by_entry[key]
        return None


def flow_files(paths: Iterable[Path]) -> list[Path]:
    """The files ``flows`` names: each file, and each directory's ``*.yaml`` (sorted).
    :class:`IvrStartupError` for a path that does not exist or a directory without any."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.yaml"))
            if not found:
                raise IvrStartupError(
                    f"IVR flows directory {path} holds no *.yaml file", setting="flows"
                )
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise IvrStartupError(
                f"IVR flow file {path} does not exist (relative names are relative to the "
                "configuration file)",
                setting="flows",
            )
    return list(dict.fromkeys(files))


def entry_flows(settings: IvrSettings, flows: Mapping[str, object]) -> None:
    """Every entry names a loaded flow: :class:`IvrStartupError` for the first that does not."""
    for entry in settings.entries:
        if entry.flow not in flows:
            known = ", ".join(sorted(flows)) or "none"
            raise IvrStartupError(
                f"IVR entry {entry.entry!r} runs flow {entry.flow!r}, which no flow file "
                f"defines (flows: {known}); name one of them or add its file",
                setting="entries",
            )


def entry_fallbacks(settings: IvrSettings, queues: Collection[str]) -> None:
    """Every entry's ``fallback_queue`` is one of ``queues`` (those with a holding lane):
    :class:`IvrStartupError` for the first that is not."""
    for entry in settings.entries:
        if entry.fallback_queue is not None and entry.fallback_queue not in queues:
            known = ", ".join(sorted(queues)) or "none"
            raise IvrStartupError(
                f"IVR entry {entry.entry!r}: fallback_queue {entry.fallback_queue!r} is not a "
                f"queue of the ACD with a holding lane (queues: {known}); name one of them "
                "or leave it out (the entry then hangs up on callers the backend fails)",
                setting="entries",
            )
