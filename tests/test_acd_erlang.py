"""Staffing by Erlang C (``acd.erlang``): textbook values, an exact closed form in rational
numbers, monotony in the number of agents, the least staff meeting a target, and refusals
of inputs that are not numbers of calls or seconds."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acd.erlang import (
    agents_needed,
    average_speed_of_answer_of,
    probability_of_waiting,
    service_level_of,
    staffing_need,
    traffic_intensity,
)


def exact_erlang_c(agents: int, traffic: int) -> Fraction:
    """A^N/N! · N/(N-A) / (Σ_{k<N} A^k/k! + A^N/N! · N/(N-A)), in exact fractions."""
    a = Fraction(traffic)
    top = a**agents / math.factorial(agents) * Fraction(agents, agents - traffic)
    return top / (sum(a**k / math.factorial(k) for k in range(agents)) + top)


def test_the_textbook_half_hour_of_ten_erlangs() -> None:
    # 100 calls in 30 minutes at 3 minutes each: 10 Erlangs; 80 % in 20 s needs 14 agents.
    traffic = traffic_intensity(100, 180, 1800)
    assert traffic == 10
    assert [round(probability_of_waiting(n, traffic), 3) for n in (11, 12, 13, 14)] == [
        0.682, 0.449, 0.285, 0.174
    ]  # fmt: skip
    assert service_level_of(13, traffic, 180, 20) == pytest.approx(0.796, abs=5e-4)
    assert service_level_of(14, traffic, 180, 20) == pytest.approx(0.888, abs=5e-4)
    assert average_speed_of_answer_of(14, traffic, 180) == pytest.approx(7.8, abs=0.05)
    need = staffing_need(100, 180, 1800, 20, 0.8)
    assert need.agents == 14 and need.traffic == 10
    assert need.service_level == pytest.approx(0.888, abs=5e-4)
    assert need.to_record()["asa"] == pytest.approx(7.8, abs=0.05)


@pytest.mark.parametrize(("agents", "traffic"), [(2, 1), (5, 3), (8, 7), (30, 25), (60, 50)])
def test_probability_of_waiting_matches_the_closed_form(agents: int, traffic: int) -> None:
    assert probability_of_waiting(agents, traffic) == pytest.approx(
        float(exact_erlang_c(agents, traffic)), rel=1e-9
    )


def test_thousands_of_agents_stay_finite() -> None:
    # A^N/N! would overflow a float long before this; the recursion does not.
    need = staffing_need(calls=36_000, aht=300, interval=900, threshold=20, target=0.9)
    assert 12_000 < need.agents < 12_200
    assert 0 < need.probability_of_waiting < 1 and 0.9 <= need.service_level < 1


def test_no_calls_need_no_agents() -> None:
    need = staffing_need(0, 180, 900, 20, 0.8)
    assert (need.agents, need.traffic, need.probability_of_waiting) == (0, 0, 0)
    assert (need.service_level, need.asa) == (1, 0)


def test_too_few_agents_never_answer_in_time() -> None:
    assert probability_of_waiting(10, 10) == 1
    assert service_level_of(9, 10, 180, 20) == 0
    assert average_speed_of_answer_of(10, 10, 180) == math.inf


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ((-1, 180, 900, 20, 0.8), "calls"),
        ((10, 0, 900, 20, 0.8), "aht"),
        ((10, 180, 0, 20, 0.8), "interval"),
        ((10, 180, 900, 20, 1.0), "target"),
        ((10, 180, 900, -1, 0.8), "threshold"),
        ((math.nan, 180, 900, 20, 0.8), "calls"),
    ],
)
def test_bad_inputs_are_refused_naming_them(
    args: tuple[float, float, float, float, float], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        staffing_need(*args)


traffic_values = st.floats(min_value=0.01, max_value=400, allow_nan=False)
ahts = st.floats(min_value=5, max_value=1200, allow_nan=False)
thresholds = st.floats(min_value=0, max_value=300, allow_nan=False)


@given(traffic=traffic_values, aht=ahts, threshold=thresholds, extra=st.integers(0, 50))
def test_more_agents_never_serve_worse(
    traffic: float, aht: float, threshold: float, extra: int
) -> None:
    n = math.floor(traffic) + 1 + extra
    assert probability_of_waiting(n + 1, traffic) <= probability_of_waiting(n, traffic) + 1e-12
    assert service_level_of(n + 1, traffic, aht, threshold) >= (
        service_level_of(n, traffic, aht, threshold) - 1e-12
    )
    assert average_speed_of_answer_of(n + 1, traffic, aht) <= (
        average_speed_of_answer_of(n, traffic, aht) * (1 + 1e-12)
    )
    assert 0 <= probability_of_waiting(n, traffic) <= 1
    assert 0 <= service_level_of(n, traffic, aht, threshold) <= 1


@given(
    traffic=traffic_values,
    aht=ahts,
    threshold=thresholds,
    target=st.floats(min_value=0.05, max_value=0.99),
)
def test_agents_needed_is_the_least_staff_meeting_the_target(
    traffic: float, aht: float, threshold: float, target: float
) -> None:
    n = agents_needed(traffic, aht, threshold, target)
    assert n > traffic  # a stable queue
    assert service_level_of(n, traffic, aht, threshold) >= target
    assert n - 1 <= traffic or service_level_of(n - 1, traffic, aht, threshold) < target


@given(calls=st.integers(0, 2000), aht=ahts, target=st.floats(min_value=0.5, max_value=0.95))
def test_more_calls_never_need_fewer_agents(calls: int, aht: float, target: float) -> None:
    fewer = staffing_need(calls, aht, 900, 20, target).agents
    assert staffing_need(calls + 1, aht, 900, 20, target).agents >= fewer
