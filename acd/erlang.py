"""Staffing by Erlang C: how many agents an interval needs to meet a queue's service level.

The queueing formulas are :mod:`acd.estimate`'s (Erlang B by its recursion, no factorials,
exact for thousands of agents); this module turns an interval's observed calls and handle
time into the offered traffic ``A = calls * AHT / interval`` and answers, for N agents, the
probability of waiting, the service level and the ASA, and the fewest agents meeting a
target. Pure: numbers in, numbers out.

Erlang C assumes callers never hang up, so where they do it slightly overstates the agents
needed (the usual, safe, direction for staffing).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from acd.estimate import agents_needed as _agents_needed
from acd.estimate import average_speed_of_answer, erlang_c, service_level

__all__ = [
    "StaffingNeed",
    "agents_needed",
    "average_speed_of_answer_of",
    "probability_of_waiting",
    "service_level_of",
    "staffing_need",
    "traffic_intensity",
]

#: The largest staff :func:`agents_needed` searches: beyond it a target is not one a call
#: center can staff (and the walk would take long).
MAX_AGENTS = 100_000


def traffic_intensity(calls: float, aht: float, interval: float) -> float:
    """Offered traffic in Erlangs: ``calls`` arriving in ``interval`` seconds, each taking
    ``aht`` seconds on average (100 calls in 1800 s at 180 s = 10 Erlangs)."""
    if not calls >= 0 or math.isinf(calls):
        raise ValueError(f"calls must be a finite number ≥ 0, got {calls}")
    if not aht > 0 or math.isinf(aht):
        raise ValueError(f"aht must be a finite number > 0, got {aht}")
    if not interval > 0 or math.isinf(interval):
        raise ValueError(f"interval must be a finite number > 0, got {interval}")
    return calls * aht / interval


def probability_of_waiting(agents: int, traffic: float) -> float:
    """Erlang C: the chance an arriving caller finds all ``agents`` busy (1 when N ≤ A)."""
    return erlang_c(agents, traffic)


def service_level_of(agents: int, traffic: float, aht: float, threshold: float) -> float:
    """Share of callers answered within ``threshold`` seconds with ``agents`` agents at
    ``traffic`` Erlangs of calls taking ``aht`` seconds: 1 - C·e^(-(N-A)·T/AHT)."""
    return service_level(agents, traffic / aht, aht, threshold)


def average_speed_of_answer_of(agents: int, traffic: float, aht: float) -> float:
    """Mean wait of all callers, seconds: C·AHT / (N - A); ``math.inf`` when N ≤ A > 0."""
    return average_speed_of_answer(agents, traffic / aht, aht)


def agents_needed(traffic: float, aht: float, threshold: float, target: float) -> int:
    """The fewest agents whose service level within ``threshold`` seconds is at least
    ``target`` (0 < target < 1) at ``traffic`` Erlangs; 0 without traffic."""
    if not traffic >= 0 or math.isinf(traffic):
        raise ValueError(f"traffic must be a finite number ≥ 0, got {traffic}")
    if traffic > MAX_AGENTS:
        raise ValueError(f"traffic {traffic:g} Erlangs is beyond {MAX_AGENTS} agents")
    return _agents_needed(traffic / aht, aht, threshold, target)


@dataclass(frozen=True, slots=True)
class StaffingNeed:
    """What an interval needs: ``traffic`` Erlangs, ``agents`` (the fewest meeting the
    target) and, with that many, the chance of waiting, service level and ASA (seconds).
    Without calls every figure is 0 agents, certain service."""

    traffic: float
    agents: int
    probability_of_waiting: float
    service_level: float
    asa: float

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


def staffing_need(
    calls: float, aht: float, interval: float, threshold: float, target: float
) -> StaffingNeed:
    """The agents ``interval`` seconds with ``calls`` calls of ``aht`` seconds need for
    ``target`` (0 < target < 1) of them answered within ``threshold`` seconds.

    A target of 1 (100 %) cannot be met by Erlang C with any finite staff; it is refused.
    """
    traffic = traffic_intensity(calls, aht, interval)
    agents = agents_needed(traffic, aht, threshold, target)
    return StaffingNeed(
        traffic=traffic,
        agents=agents,
        probability_of_waiting=probability_of_waiting(agents, traffic),
        service_level=service_level_of(agents, traffic, aht, threshold),
        asa=average_speed_of_answer_of(agents, traffic, aht),
    )
