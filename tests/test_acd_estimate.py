"""Erlang B/C, service level, ASA, agents needed and waiting-time estimates."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acd.estimate import (
    WaitEstimate,
    agents_needed,
    average_speed_of_answer,
    erlang_b,
    erlang_c,
    estimated_wait,
    service_level,
)

# The textbook example: 100 calls in 30 minutes, 3-minute handle time: A = 10 Erlangs.
RATE = 100 / 1800
AHT = 180.0


def exact_erlang_c(agents: int, traffic: int) -> Fraction:
    """The closed formula with exact fractions: (A^N/N! · N/(N-A)) / (Σ_{k<N} A^k/k! + ...)."""
    term = Fraction(traffic**agents, math.factorial(agents)) * Fraction(agents, agents - traffic)
    below = sum(Fraction(traffic**k, math.factorial(k)) for k in range(agents))
    return term / (below + term)


def log_space_erlang_b(agents: int, traffic: float) -> float:
    """A^N/N! / Σ_k A^k/k! with log-sum-exp: an independent reference for thousands of agents."""
    logs = [k * math.log(traffic) - math.lgamma(k + 1) for k in range(agents + 1)]
    top = max(logs)
    return math.exp(logs[-1] - top - math.log(math.fsum(math.exp(x - top) for x in logs)))


@pytest.mark.parametrize(
    ("agents", "expected"), [(11, 0.6821), (12, 0.4494), (13, 0.2853), (14, 0.1741)]
)
def test_classic_ten_erlangs(agents: int, expected: float) -> None:
    assert erlang_c(agents, 10) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize(("agents", "traffic"), [(3, 2), (11, 10), (20, 15), (30, 29), (60, 50)])
def test_erlang_c_matches_the_closed_formula(agents: int, traffic: int) -> None:
    assert erlang_c(agents, traffic) == pytest.approx(float(exact_erlang_c(agents, traffic)))


def test_small_cases_by_hand() -> None:
    # A = 2, N = 3: A^3/3! · 3/(3-2) = 4 against 1 + 2 + 2 below: C = 4/9.
    assert erlang_c(3, 2) == pytest.approx(4 / 9)
    # Erlang B, A = 2, N = 2: (4/2) / (1 + 2 + 2) = 2/5.
    assert erlang_b(2, 2) == pytest.approx(2 / 5)
    assert erlang_b(0, 5) == 1.0
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: C = utilisation


def test_service_level_80_20() -> None:
    # SL = 1 - C·exp(-(N-A)·20/180): 13 agents miss 80/20, 14 make it.
    assert service_level(13, RATE, AHT, 20) == pytest.approx(
        1 - 0.285270453 * math.exp(-3 * 20 / 180), abs=1e-9
    )
    assert service_level(13, RATE, AHT, 20) == pytest.approx(0.7956, abs=5e-5)
    assert service_level(14, RATE, AHT, 20) == pytest.approx(0.8884, abs=5e-5)
    assert agents_needed(RATE, AHT, 20, 0.8) == 14
    assert agents_needed(RATE, AHT, 20, 0.9) == 15  # SL(15) = 0.9415
    assert service_level(14, RATE, AHT, 0) == pytest.approx(1 - erlang_c(14, 10))


def test_average_speed_of_answer() -> None:
    # C·AHT/(N-A) = 0.174132 · 180 / 4.
    assert average_speed_of_answer(14, RATE, AHT) == pytest.approx(7.8359, abs=5e-5)
    assert average_speed_of_answer(11, RATE, AHT) == pytest.approx(0.682118 * 180, abs=1e-3)


def test_unstable_and_empty_queues() -> None:
    assert erlang_c(10, 10) == 1.0
    assert erlang_c(0, 3) == 1.0
    assert service_level(10, RATE, AHT, 20) == 0.0
    assert average_speed_of_answer(9, RATE, AHT) == math.inf
    assert erlang_c(0, 0) == 0.0
    assert service_level(0, 0, AHT, 20) == 1.0
    assert average_speed_of_answer(0, 0, AHT) == 0.0
    assert agents_needed(0, AHT, 20, 0.8) == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda: erlang_c(-1, 2),
        lambda: erlang_c(2, -1),
        lambda: erlang_c(2, math.nan),
        lambda: service_level(2, 1, 0, 20),
        lambda: service_level(2, 0.01, 100, -1),
        lambda: agents_needed(RATE, AHT, 20, 1.0),
        lambda: agents_needed(RATE, AHT, 20, 0),
    ],
)
def test_bad_input_is_refused(call: Callable[[], float]) -> None:
    with pytest.raises(ValueError):
        call()


def test_ten_thousand_agents() -> None:
    started = time.perf_counter()
    c = erlang_c(10_000, 9_900)
    b = log_space_erlang_b(10_000, 9_900)
    assert c == pytest.approx(10_000 * b / (10_000 - 9_900 * (1 - b)), rel=1e-9)
    assert 0 < c < 1
    needed = agents_needed(9_900 / AHT, AHT, 20, 0.8)
    assert service_level(needed, 9_900 / AHT, AHT, 20) >= 0.8
    assert service_level(needed - 1, 9_900 / AHT, AHT, 20) < 0.8
    assert time.perf_counter() - started < 1


@given(st.integers(0, 300), st.floats(0, 300))
def test_probability_of_waiting_is_a_probability(agents: int, traffic: float) -> None:
    assert 0.0 <= erlang_c(agents, traffic) <= 1.0
    assert 0.0 <= erlang_b(agents, traffic) <= 1.0


@given(st.integers(0, 200), st.floats(0.01, 200))
def test_more_agents_wait_less(agents: int, traffic: float) -> None:
    assert erlang_c(agents + 1, traffic) <= erlang_c(agents, traffic) + 1e-12


@given(
    st.integers(0, 200),
    st.floats(0.001, 1.0),
    st.floats(10, 600),
    st.floats(0, 120),
    st.floats(0, 60),
)
def test_service_level_grows_with_agents_and_threshold(
    agents: int, rate: float, aht: float, threshold: float, more: float
) -> None:
    level = service_level(agents, rate, aht, threshold)
    assert 0.0 <= level <= 1.0
    assert service_level(agents + 1, rate, aht, threshold) >= level - 1e-12
    assert service_level(agents, rate, aht, threshold + more) >= level - 1e-12


@given(st.floats(0.001, 2.0), st.floats(10, 600), st.floats(0, 60), st.floats(0.05, 0.99))
def test_agents_needed_is_the_fewest(
    rate: float, aht: float, threshold: float, target: float
) -> None:
    needed = agents_needed(rate, aht, threshold, target)
    assert service_level(needed, rate, aht, threshold) >= target
    assert service_level(needed - 1, rate, aht, threshold) < target


def test_position_estimate() -> None:
    # Third in line, 5 agents all busy with a 200 s AHT: one frees up every 40 s on average.
    assert estimated_wait(3, 5, 200) == WaitEstimate(120.0, "position", None, 200, "observed")
    # Two free agents take the first two callers at once: the third waits for one release.
    assert estimated_wait(3, 5, 200, agents_available=2).seconds == 40.0
    assert estimated_wait(2, 5, 200, agents_available=2).seconds == 0.0


def test_erlang_c_estimate_for_a_new_arrival() -> None:
    estimate = estimated_wait(None, 14, AHT, arrival_rate=RATE)
    assert estimate.method == "erlang_c"
    assert estimate.seconds == pytest.approx(average_speed_of_answer(14, RATE, AHT))
    unstable = estimated_wait(None, 10, AHT, arrival_rate=RATE)
    assert (unstable.seconds, unstable.unknown) == (None, "unstable")
    assert estimated_wait(None, 10, AHT).unknown == "no_arrival_rate"


def test_estimate_without_agents_or_handle_time() -> None:
    assert estimated_wait(1, 0, AHT) == WaitEstimate(None, "position", "no_agents")
    assert estimated_wait(1, 3, None) == WaitEstimate(None, "position", "no_aht")
    assert estimated_wait(1, 3, 0.0).unknown == "no_aht"
    fallback = estimated_wait(2, 4, None, fallback_aht=240)
    assert fallback == WaitEstimate(120.0, "position", None, 240, "fallback")
    assert fallback.to_record() == {
        "seconds": 120.0,
        "method": "position",
        "unknown": None,
        "aht": 240,
        "aht_source": "fallback",
    }
    with pytest.raises(ValueError):
        estimated_wait(0, 3, AHT)
