"""Agent states: log in/out, pause, offers, wrap-up; refused commands change nothing."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.agents import (
    NO_ANSWER,
    AcdError,
    AgentBusy,
    AgentRoster,
    AgentState,
    AgentStateError,
    AlreadyLoggedIn,
    NotLoggedIn,
    NotPaused,
    UnknownAgent,
)


@pytest.fixture
def roster() -> AgentRoster:
    return AgentRoster([("6001", "Alice"), ("6002", "Bob")])


def test_login_pause_unpause_logout(roster: AgentRoster) -> None:
    event = roster.login("6001", 10.0)
    assert (event.agent, event.state, event.at) == ("6001", "available", 10.0)
    assert roster.get("6001").idle_since == 10.0
    event = roster.pause("6001", "lunch", 11.0)
    assert (event.state, event.reason) == ("paused", "lunch")
    assert roster.get("6001").pause_reason == "lunch"
    assert roster.pause("6001", "meeting", 12.0).reason == "meeting"  # a new reason code
    assert roster.unpause("6001", 13.0).state == "available"
    assert roster.get("6001").pause_reason is None
    assert roster.logout("6001", 14.0).state == "logged_out"


def test_a_call_from_offer_to_wrap_up(roster: AgentRoster) -> None:
    roster.login("6001", 0.0)
    roster.ring("6001", "c1", "sales", 5.0)
    alice = roster.get("6001")
    assert (alice.state, alice.call_id, alice.last_offered) == ("ringing", "c1", {"sales": 5.0})
    roster.answer("6001", 6.0)
    assert (alice.state, alice.calls_taken) == (AgentState.ON_CALL, 1)
    roster.hang_up("6001", 60.0, wrap_up=10.0)
    assert (alice.state, alice.wrap_up_until, alice.idle_since) == ("wrap_up", 70.0, 60.0)
    roster.end_wrap_up("6001", 70.0)
    assert (alice.state, alice.wrap_up_until, alice.call_id) == ("available", None, None)


def test_no_wrap_up_means_available_at_once(roster: AgentRoster) -> None:
    roster.login("6001", 0.0)
    roster.ring("6001", "c1", "sales", 1.0)
    roster.answer("6001", 2.0)
    assert roster.hang_up("6001", 3.0, wrap_up=0).state == "available"


def test_auto_pause_after_consecutive_misses(roster: AgentRoster) -> None:
    roster.login("6001", 0.0)
    for n in (1, 2):
        roster.ring("6001", f"c{n}", "sales", n)
        assert roster.miss("6001", n + 0.5, auto_pause_after=3).state == "available"
    roster.ring("6001", "c3", "sales", 3.0)
    event = roster.miss("6001", 3.5, auto_pause_after=3)
    assert (event.state, event.reason) == ("paused", NO_ANSWER)
    roster.unpause("6001", 4.0)
    assert roster.get("6001").missed_offers == 0


def test_an_answer_resets_the_miss_count(roster: AgentRoster) -> None:
    roster.login("6001", 0.0)
    roster.ring("6001", "c1", "sales", 1.0)
    roster.miss("6001", 2.0, auto_pause_after=2)
    roster.ring("6001", "c2", "sales", 3.0)
    roster.answer("6001", 4.0)
    assert roster.get("6001").missed_offers == 0


def test_zero_never_auto_pauses(roster: AgentRoster) -> None:
    roster.login("6001", 0.0)
    for n in range(10):
        roster.ring("6001", f"c{n}", "sales", n)
        assert roster.miss("6001", n, auto_pause_after=0).state == "available"


def test_release_is_not_a_miss(roster: AgentRoster) -> None:
    roster.login("6001", 0.0)
    roster.ring("6001", "c1", "sales", 1.0)
    roster.release("6001", 2.0)
    assert roster.get("6001").missed_offers == 0


def test_unknown_agent(roster: AgentRoster) -> None:
    with pytest.raises(UnknownAgent, match="'9999'"):
        roster.login("9999", 0.0)


def test_double_login(roster: AgentRoster) -> None:
    roster.login("6001", 0.0)
    with pytest.raises(AlreadyLoggedIn, match="already logged in"):
        roster.login("6001", 5.0)
    assert roster.get("6001").idle_since == 0.0


@pytest.mark.parametrize("command", ["pause", "logout"])
def test_pause_or_logout_while_ringing_or_on_call_is_refused(
    roster: AgentRoster, command: str
) -> None:
    roster.login("6001", 0.0)
    roster.ring("6001", "c1", "sales", 1.0)
    act = (lambda: roster.pause("6001", "break", 2.0)) if command == "pause" else None
    act = act or (lambda: roster.logout("6001", 2.0))
    with pytest.raises(AgentBusy, match="ringing with call c1"):
        act()
    roster.answer("6001", 3.0)
    with pytest.raises(AgentBusy, match="on_call"):
        act()
    assert roster.get("6001").state is AgentState.ON_CALL


def test_pause_in_wrap_up_ends_it(roster: AgentRoster) -> None:
    roster.login("6001", 0.0)
    roster.ring("6001", "c1", "sales", 1.0)
    roster.answer("6001", 2.0)
    roster.hang_up("6001", 3.0, wrap_up=30.0)
    roster.pause("6001", "coaching", 4.0)
    alice = roster.get("6001")
    assert (alice.state, alice.wrap_up_until) == ("paused", None)


def test_commands_on_a_logged_out_agent(roster: AgentRoster) -> None:
    with pytest.raises(NotLoggedIn):
        roster.pause("6001", "break", 0.0)
    with pytest.raises(NotLoggedIn):
        roster.logout("6001", 0.0)
    with pytest.raises(NotPaused):
        roster.unpause("6001", 0.0)
    with pytest.raises(AgentStateError):
        roster.ring("6001", "c1", "sales", 0.0)


COMMANDS = st.sampled_from(
    ["login", "logout", "pause", "unpause", "ring", "answer", "release", "miss", "hang_up", "wrap"]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(COMMANDS, st.sampled_from(["6001", "6002", "6003"])), max_size=60))
def test_errors_change_nothing_and_state_stays_consistent(
    script: list[tuple[str, str]],
) -> None:
    roster = AgentRoster([("6001", "Alice"), ("6002", "Bob")])
    actions = {
        "login": lambda a, t: roster.login(a, t),
        "logout": lambda a, t: roster.logout(a, t),
        "pause": lambda a, t: roster.pause(a, "break", t),
        "unpause": lambda a, t: roster.unpause(a, t),
        "ring": lambda a, t: roster.ring(a, f"call-{t}", "sales", t),
        "answer": lambda a, t: roster.answer(a, t),
        "release": lambda a, t: roster.release(a, t),
        "miss": lambda a, t: roster.miss(a, t, auto_pause_after=2),
        "hang_up": lambda a, t: roster.hang_up(a, t, wrap_up=t % 2),
        "wrap": lambda a, t: roster.end_wrap_up(a, t),
    }
    for now, (command, agent_id) in enumerate(script):
        before = copy.deepcopy(list(roster))
        try:
            event = actions[command](agent_id, float(now))
        except AcdError:
            assert list(roster) == before
            continue
        assert event.state == roster.get(agent_id).state
        for agent in roster:
            busy = agent.state in (AgentState.RINGING, AgentState.ON_CALL)
            assert (agent.call_id is not None) == busy
            assert (agent.pause_reason is not None) == (agent.state is AgentState.PAUSED)
            assert (agent.wrap_up_until is not None) == (agent.state is AgentState.WRAP_UP)
