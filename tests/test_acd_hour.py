"""A scaled-down simulated hour (bench/acd_hour.py): ten minutes, ten agents, about 150
calls through simulator and backend on one simulated clock, checked against Erlang C."""

from __future__ import annotations

from bench.acd_hour import Scenario, balanced, checks, run_centre

#: 150 calls in 10 minutes to 10 agents at 80 % load (AHT 32 s), measured after 5 minutes.
SMALL = Scenario(calls=150, agents=10, seed=3, patience=600, occupancy=0.8, hour=600,
                 warmup=300, replications=200)


def test_a_short_busy_period_matches_erlang_c_and_loses_no_call() -> None:
    measured = run_centre(SMALL)
    assert balanced(measured), measured
    assert measured.arrived_in_hour > 100 and measured.hour.answered > 100
    results = checks(SMALL, measured)
    assert all(c.centre == c.erlang_c for c in results)  # patient callers: Erlang C is the check
    failed = [c for c in results if not c.passed]
    assert not failed, failed


def test_the_run_is_deterministic() -> None:
    small = Scenario(calls=60, agents=5, seed=5, occupancy=0.8, hour=300, warmup=60)
    first, second = run_centre(small), run_centre(small)
    assert (first.hour, first.outcomes) == (second.hour, second.outcomes)
