"""Where the real Asterisk recordings live, and what each one is expected to parse into."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cti.calls.events import CallEvent
from cti.capture import captures_dir


@dataclass(frozen=True)
class ExpectedMessage:
    kind: str
    name: str
    headers: list[tuple[str, str]]


def raw_files() -> list[Path]:
    files = sorted(captures_dir().glob("*.raw"))
    if not files:
        pytest.fail(f"no AMI captures found in {captures_dir()} (set CALLCENTER_CAPTURES)")
    return files


def expected_messages(raw: Path) -> list[ExpectedMessage]:
    """The received records of the ``.jsonl`` that belongs to ``raw``, in order."""
    out = []
    with raw.with_suffix(".jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec["dir"] != "in":
                continue
            if rec["kind"] == "banner":
                out.append(ExpectedMessage("banner", rec["text"], []))
            else:
                headers = [(k, v) for k, v in rec["headers"]]
                out.append(ExpectedMessage(rec["kind"], rec["name"], headers))
    return out


def call_events(events: list[Any]) -> list[CallEvent]:
    """The call events of a model's output (device state changes left out)."""
    return [e for e in events if isinstance(e, CallEvent)]
