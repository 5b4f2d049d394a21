"""What the backend does when a caller joins a queue: announce the position and estimated
wait, or overflow at once when the estimate exceeds the queue's max_estimated_wait."""

from __future__ import annotations

from typing import Any, cast

import pytest

from acd.config import parse_acd_config
from acd.events import AgentStateChanged, CallerJoined
from acd.figures import FigureRules, LiveFigures
from acd.service import AcdService

T0 = 1_800_000_000.0


class Driver:
    def __init__(self) -> None:
        self.done: list[tuple[Any, ...]] = []

    def overflow(self, call_id: str, reason: str) -> None:
        self.done.append(("overflow", call_id, reason))

    def announce(
        self, call_id: str, position: int, wait: float | None, queue: str | None = None
    ) -> None:
        self.done.append(("announce", call_id, position, wait))


def _acd(limit: float | None) -> tuple[AcdService, Driver]:
    queue: dict[str, Any] = {"lanes": ["external"]}
    if limit is not None:
        queue |= {"max_estimated_wait": limit, "overflow": {"kind": "voicemail", "target": "1"}}
    acd = object.__new__(AcdService)  # only the join logic is under test, not the wiring
    acd.config = parse_acd_config(
        {"queues": {"sales": queue}, "agents": {"6001": {"name": "A", "queues": {"sales": 0}}}},
        "test",
    )
    acd.figures = {"sales": LiveFigures({"sales": ["6001"]}, FigureRules(fallback_aht=120))}
    driver = Driver()
    acd.driver = cast(Any, driver)  # a stand-in: the join logic only calls announce()
    for state in ("available", "on_call"):  # one agent staffed, busy: nobody free
        acd._count(AgentStateChanged(T0, "6001", state))
    return acd, driver


@pytest.mark.parametrize(
    ("limit", "position", "expected"),
    [
        (240, 3, ("overflow", "c3", "estimated wait 360 s (position)")),
        (400, 3, ("announce", "c3", 3, 360.0)),
        (None, 3, ("announce", "c3", 3, 360.0)),
    ],
)
def test_join_announces_or_overflows_on_the_estimate(
    limit: float | None, position: int, expected: tuple[Any, ...]
) -> None:
    acd, driver = _acd(limit)
    acd._count(CallerJoined(T0 + 1, "c3", "sales", "ordinary", position))
    assert driver.done == [expected]
