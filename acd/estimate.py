"""Queueing estimates: Erlang C staffing figures and the expected wait of a caller.

Pure functions of numbers; nothing reads the clock. Units are the caller's choice as long as
they agree: with ``arrival_rate`` in calls per second, ``aht`` and ``threshold`` are seconds.
The offered traffic is ``A = arrival_rate * aht`` Erlangs and ``N`` is the number of agents.

The Erlang C model (M/M/N) assumes Poisson arrivals, exponential handle times, callers who
never hang up and agents who all serve the same queue; it is the industry's standard for
staffing and slightly pessimistic where callers abandon.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

WaitMethod = Literal["position", "erlang_c"]
"""``position``: from the caller's place in line; ``erlang_c``: the steady-state mean."""

WaitUnknown = Literal["no_agents", "no_aht", "no_arrival_rate", "unstable"]
"""Why a :class:`WaitEstimate` has no value: nobody staffs the queue; no handle time observed
and no fallback configured; the Erlang C method without an arrival rate; or the traffic is at
least the number of agents (N ≤ A), so the queue grows without bound."""


def _check(agents: int, traffic_erlangs: float) -> None:
    if agents < 0:
        raise ValueError(f"agents must be ≥ 0, got {agents}")
    if not traffic_erlangs >= 0 or math.isinf(traffic_erlangs):
        raise ValueError(f"traffic must be a finite number ≥ 0, got {traffic_erlangs}")


def erlang_b(agents: int, traffic_erlangs: float) -> float:
    """Probability that a call finds all ``agents`` busy when blocked calls are lost.

    By the recursion B(0) = 1, B(N) = A·B(N-1) / (N + A·B(N-1)): it only multiplies and
    divides numbers in [0, 1] and A, so unlike the textbook A^N/N! it neither overflows nor
    cancels for 10,000 agents.
    """
    _check(agents, traffic_erlangs)
    blocking = 1.0
    for n in range(1, agents + 1):
        blocking = _next_erlang_b(n, traffic_erlangs, blocking)
    return blocking


def _next_erlang_b(agents: int, traffic_erlangs: float, previous: float) -> float:
    return traffic_erlangs * previous / (agents + traffic_erlangs * previous)


def _erlang_c_from_b(agents: int, traffic_erlangs: float, blocking: float) -> float:
    # C = N·B / (N - A·(1 - B)); the denominator is > 0 whenever N > A.
    if traffic_erlangs == 0:
        return 0.0
    if agents <= traffic_erlangs:
        return 1.0
    return agents * blocking / (agents - traffic_erlangs * (1.0 - blocking))


def erlang_c(agents: int, traffic_erlangs: float) -> float:
    """Probability that an arriving caller has to wait (all ``agents`` busy).

    1.0 when N ≤ A > 0 (the queue is unstable: everyone waits) and 0.0 without traffic.
    """
    return _erlang_c_from_b(agents, traffic_erlangs, erlang_b(agents, traffic_erlangs))


def _service_level(agents: int, traffic: float, aht: float, threshold: float, c: float) -> float:
    if traffic == 0:
        return 1.0
    if agents <= traffic:
        return 0.0
    return 1.0 - c * math.exp(-(agents - traffic) * threshold / aht)


def _check_rates(arrival_rate: float, aht: float) -> None:
    if not arrival_rate >= 0 or math.isinf(arrival_rate):
        raise ValueError(f"arrival_rate must be a finite number ≥ 0, got {arrival_rate}")
    if not aht > 0 or math.isinf(aht):
        raise ValueError(f"aht must be a finite number > 0, got {aht}")


def service_level(agents: int, arrival_rate: float, aht: float, threshold: float) -> float:
    """Share of callers answered within ``threshold``: 1 - C·e^(-(N-A)·threshold/AHT).

    0.0 when N ≤ A > 0 (in the long run nobody is answered in time), 1.0 without traffic.
    """
    _check_rates(arrival_rate, aht)
    if threshold < 0:
        raise ValueError(f"threshold must be ≥ 0, got {threshold}")
    traffic = arrival_rate * aht
    return _service_level(agents, traffic, aht, threshold, erlang_c(agents, traffic))


def average_speed_of_answer(agents: int, arrival_rate: float, aht: float) -> float:
    """Mean wait of all callers (ASA), zero waits included: C·AHT / (N - A).

    ``math.inf`` when N ≤ A > 0.
    """
    _check_rates(arrival_rate, aht)
    traffic = arrival_rate * aht
    if traffic == 0:
        return 0.0
    if agents <= traffic:
        return math.inf
    return erlang_c(agents, traffic) * aht / (agents - traffic)


def agents_needed(arrival_rate: float, aht: float, threshold: float, target: float) -> int:
    """The fewest agents whose :func:`service_level` is at least ``target`` (0 < target < 1).

    Walks N upwards from the first stable N (> A) carrying the Erlang B recursion along, so
    the cost is one pass up to the answer, also for thousands of agents.
    """
    _check_rates(arrival_rate, aht)
    if not 0 < target < 1:
        raise ValueError(f"target must be between 0 and 1 (exclusive), got {target}")
    if threshold < 0:
        raise ValueError(f"threshold must be ≥ 0, got {threshold}")
    traffic = arrival_rate * aht
    if traffic == 0:
        return 0
    agents = math.floor(traffic)
    blocking = erlang_b(agents, traffic)
    while True:
        agents += 1
        blocking = _next_erlang_b(agents, traffic, blocking)
        c = _erlang_c_from_b(agents, traffic, blocking)
        if _service_level(agents, traffic, aht, threshold, c) >= target:
            return agents


@dataclass(frozen=True, slots=True)
class WaitEstimate:
    """An expected wait and how it was obtained, for the API and the announcements.

    ``seconds`` is None when the wait cannot be estimated; ``unknown`` then says why.
    ``aht`` is the handle time the estimate used and ``aht_source`` whether it was observed
    or the configured fallback.
    """

    seconds: float | None
    method: WaitMethod
    unknown: WaitUnknown | None = None
    aht: float | None = None
    aht_source: Literal["observed", "fallback"] | None = None

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


def estimated_wait(
    position: int | None,
    agents_staffed: int,
    aht: float | None,
    *,
    agents_available: int = 0,
    arrival_rate: float | None = None,
    fallback_aht: float | None = None,
) -> WaitEstimate:
    """Expected remaining wait of a caller at ``position`` (1 = next to be served).

    ``position`` method (a caller in line, or about to join at the end): the
    ``agents_available`` free agents take the first callers at once; after that all N =
    ``agents_staffed`` agents are busy and, with exponential handle times, each finishes at
    rate 1/AHT independently of how long its call has lasted, so agents free up at rate N/AHT
    and the caller is answered at the (position - free)-th release:
    wait = max(0, position - free) · AHT / N.

    ``erlang_c`` method (``position=None``: no particular caller, e.g. "typical wait now"):
    the steady-state mean wait of an arrival, C·AHT / (N - A) with A = arrival_rate · AHT.

    ``aht`` None or ≤ 0 (nothing observed yet) falls back to ``fallback_aht``.
    """
    method: WaitMethod = "erlang_c" if position is None else "position"
    if position is not None and position < 1:
        raise ValueError(f"position starts at 1, got {position}")
    if agents_staffed < 0 or agents_available < 0:
        raise ValueError("agent counts must be ≥ 0")
    if agents_staffed == 0:
        return WaitEstimate(None, method, "no_agents")
    source: Literal["observed", "fallback"]
    if aht is not None and aht > 0:
        used, source = aht, "observed"
    elif fallback_aht is not None and fallback_aht > 0:
        used, source = fallback_aht, "fallback"
    else:
        return WaitEstimate(None, method, "no_aht")
    if position is not None:
        ahead = max(0, position - agents_available)
        return WaitEstimate(ahead * used / agents_staffed, method, None, used, source)
    if arrival_rate is None:
        return WaitEstimate(None, method, "no_arrival_rate", used, source)
    asa = average_speed_of_answer(agents_staffed, arrival_rate, used)
    if math.isinf(asa):
        return WaitEstimate(None, method, "unstable", used, source)
    return WaitEstimate(asa, method, None, used, source)
