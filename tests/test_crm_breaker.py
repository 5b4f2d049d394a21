"""The circuit breaker's state machine: every transition by hand (closed -> open at the
failure count, open -> half-open at the time, the one trial, its success, failure and
abandonment, stale outcomes ignored), then random sequences of requests and outcomes against
the invariants (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from crm_bridge.breaker import CircuitBreaker, Permit, Transition


def breaker(
    failures_to_open: int = 3, open_seconds: float = 30.0
) -> tuple[CircuitBreaker, list[Transition]]:
    seen: list[Transition] = []
    return CircuitBreaker(failures_to_open, open_seconds, on_transition=seen.append), seen


def opened(failures_to_open: int = 3, at: float = 100.0) -> tuple[CircuitBreaker, list[Transition]]:
    """A breaker just opened at ``at`` by ``failures_to_open`` failures."""
    b, seen = breaker(failures_to_open)
    for _ in range(failures_to_open):
        permit = b.allow(at)
        assert permit is not None
        b.failed(at, permit)
    assert b.state == "open"
    return b, seen


def permit(b: CircuitBreaker, now: float) -> Permit:
    p = b.allow(now)
    assert p is not None, f"refused at {now} in state {b.state}"
    return p


# -- closed ---------------------------------------------------------------------------------


def test_a_new_breaker_is_closed_and_lets_requests_out() -> None:
    b, seen = breaker()
    assert (b.state, b.failures, b.opened_at, b.epoch) == ("closed", 0, None, 0)
    assert b.allow(0.0) == Permit(0, trial=False)
    assert b.state_at(1e9) == "closed"
    assert seen == []


def test_it_opens_at_the_nth_failure_in_a_row_not_before() -> None:
    b, seen = breaker(failures_to_open=3)
    b.failed(1.0, permit(b, 1.0))
    assert (b.state, b.failures) == ("closed", 1)
    b.failed(2.0, permit(b, 2.0))
    assert (b.state, b.failures) == ("closed", 2)
    assert seen == []
    t = b.failed(3.0, permit(b, 3.0))
    assert t == Transition(3.0, "closed", "open", "3 failures in a row")
    assert seen == [t]
    assert (b.state, b.failures, b.opened_at, b.epoch) == ("open", 0, 3.0, 1)


def test_a_success_starts_the_count_again() -> None:
    b, seen = breaker(failures_to_open=3)
    for now in (1.0, 2.0):
        b.failed(now, permit(b, now))
    assert b.succeeded(2.5, permit(b, 2.5)) is None
    assert b.failures == 0
    b.failed(3.0, permit(b, 3.0))
    b.failed(4.0, permit(b, 4.0))
    assert b.state == "closed" and seen == []
    b.failed(5.0, permit(b, 5.0))
    assert b.state == "open"


def test_one_failure_opens_when_so_configured() -> None:
    b, seen = breaker(failures_to_open=1)
    b.failed(7.0, permit(b, 7.0))
    assert seen == [Transition(7.0, "closed", "open", "failure")]


def test_concurrent_requests_of_the_closed_epoch_all_count() -> None:
    b, _ = breaker(failures_to_open=3)
    permits = [permit(b, 1.0) for _ in range(3)]  # three requests out at once
    for p in permits:
        b.failed(2.0, p)
    assert b.state == "open"


# -- open -----------------------------------------------------------------------------------


def test_open_refuses_every_request_until_open_seconds_have_passed() -> None:
    b, seen = opened(at=100.0)
    for now in (100.0, 110.0, 129.999):
        assert b.allow(now) is None
        assert b.state_at(now) == "open"
    assert b.state == "open" and len(seen) == 1


def test_state_at_tells_a_due_breaker_without_moving_it() -> None:
    b, seen = opened(at=100.0)
    assert b.state_at(130.0) == "half-open"
    assert b.state == "open" and len(seen) == 1


def test_outcomes_of_requests_sent_before_it_opened_are_ignored() -> None:
    b, seen = breaker(failures_to_open=2)
    early = permit(b, 1.0)  # still out when the breaker opens
    b.failed(2.0, permit(b, 2.0))
    b.failed(3.0, permit(b, 3.0))
    assert b.state == "open"
    assert b.succeeded(4.0, early) is None
    assert b.failed(4.0, early) is None
    assert (b.state, b.opened_at, len(seen)) == ("open", 3.0, 1)


# -- half-open ------------------------------------------------------------------------------


def test_the_first_request_after_open_seconds_is_the_one_trial() -> None:
    b, seen = opened(at=100.0)
    trial = b.allow(130.0)
    assert trial == Permit(2, trial=True)
    assert seen[-1] == Transition(130.0, "open", "half-open", "30 s open: one trial request")
    assert b.state == "half-open"
    # Everyone else is refused while the trial runs, however long it takes.
    assert b.allow(130.0) is None
    assert b.allow(10_000.0) is None


def test_a_successful_trial_closes_the_breaker() -> None:
    b, seen = opened(at=100.0)
    trial = permit(b, 131.0)
    t = b.succeeded(131.5, trial)
    assert t == Transition(131.5, "half-open", "closed", "the trial request succeeded")
    assert seen[-1] == t
    assert (b.state, b.failures, b.opened_at) == ("closed", 0, None)
    assert b.allow(131.6) == Permit(b.epoch, trial=False)
    # The count starts from zero: it takes failures_to_open failures again to open.
    for now in (132.0, 133.0):
        b.failed(now, permit(b, now))
    assert b.state == "closed"


def test_a_failed_trial_opens_it_again_for_open_seconds() -> None:
    b, seen = opened(at=100.0)
    trial = permit(b, 140.0)
    t = b.failed(140.2, trial)
    assert t == Transition(140.2, "half-open", "open", "the trial request failed")
    assert (b.state, b.opened_at) == ("open", 140.2)
    assert b.allow(170.1) is None
    assert b.allow(170.2) == Permit(b.epoch, trial=True)
    assert [(s.was, s.to) for s in seen] == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "open"),
        ("open", "half-open"),
    ]


def test_an_abandoned_trial_lets_the_next_request_be_the_trial() -> None:
    b, seen = opened(at=100.0)
    trial = permit(b, 130.0)
    b.abandoned(trial)
    assert b.state == "half-open"
    again = b.allow(130.5)
    assert again == Permit(b.epoch, trial=True)
    assert b.allow(130.5) is None
    assert len(seen) == 2  # abandoning is no transition


def test_abandoning_a_closed_request_or_a_stale_trial_changes_nothing() -> None:
    b, _ = breaker()
    p = permit(b, 1.0)
    b.abandoned(p)
    assert (b.state, b.failures) == ("closed", 0)
    b2, _ = opened(at=100.0)
    old_trial = permit(b2, 130.0)
    b2.failed(131.0, old_trial)  # open again, new epoch
    b2.abandoned(old_trial)
    assert b2.allow(150.0) is None  # still open: the stale trial did not free anything


def test_only_the_trial_decides_a_half_open_breaker() -> None:
    b, _ = breaker(failures_to_open=2)
    before = permit(b, 1.0)
    b.failed(2.0, permit(b, 2.0))
    b.failed(3.0, permit(b, 3.0))
    trial = permit(b, 40.0)
    b.succeeded(40.1, before)  # sent while closed, answered during the trial
    assert b.state == "half-open"
    b.failed(40.2, before)
    assert b.state == "half-open"
    b.succeeded(40.3, trial)
    assert b.state == "closed"


@pytest.mark.parametrize(("failures_to_open", "open_seconds"), [(0, 1.0), (3, 0.0), (3, -1.0)])
def test_nonsense_settings_are_refused(failures_to_open: int, open_seconds: float) -> None:
    with pytest.raises(ValueError, match=r"failures_to_open|open_seconds"):
        CircuitBreaker(failures_to_open, open_seconds)


# -- random sequences -----------------------------------------------------------------------

ALLOWED_MOVES = {
    ("closed", "open"),
    ("open", "half-open"),
    ("half-open", "closed"),
    ("half-open", "open"),
}


class BreakerMachine(RuleBasedStateMachine):
    """Requests and outcomes in any order, the clock moving forward; checked against the
    rules of the module docstring after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Transition] = []
        self.b = CircuitBreaker(3, 10.0, on_transition=self.seen.append)
        self.now = 0.0
        self.out: list[Permit] = []  # permits whose outcome is not reported yet
        self.in_a_row = 0  # failures reported in a row with permits of the closed epoch

    @rule(seconds=st.floats(min_value=0, max_value=15, allow_nan=False))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def ask(self) -> None:
        state, due = self.b.state, self.b.state_at(self.now)
        trial_out = any(p.trial and p.epoch == self.b.epoch for p in self.out)
        p = self.b.allow(self.now)
        if state == "closed":
            assert p == Permit(self.b.epoch, trial=False)
        elif (state == "open" and due == "open") or trial_out:
            assert p is None
        else:
            assert p is not None and p.trial and self.b.state == "half-open"
        if p is not None:
            self.out.append(p)

    def _report(self, index: int, outcome: str) -> None:
        p = self.out.pop(index % len(self.out))
        before_state, before_epoch, before_count = self.b.state, self.b.epoch, len(self.seen)
        if outcome == "success":
            t = self.b.succeeded(self.now, p)
        elif outcome == "failure":
            t = self.b.failed(self.now, p)
        else:
            self.b.abandoned(p)
            t = None
        if p.epoch != before_epoch:
            assert (self.b.state, self.b.epoch, len(self.seen)) == (
                before_state,
                before_epoch,
                before_count,
            ), "a stale outcome moved the breaker"
            return
        if before_state == "closed":
            if outcome == "failure":
                self.in_a_row += 1
            elif outcome == "success":
                self.in_a_row = 0  # (abandoning counts nothing either way)
            if self.in_a_row >= 3:
                assert t is not None and t.to == "open"
                self.in_a_row = 0
            else:
                assert t is None and self.b.failures == self.in_a_row
        elif before_state == "half-open" and outcome != "abandoned":
            assert t is not None and t.to == ("closed" if outcome == "success" else "open")
            self.in_a_row = 0

    @precondition(lambda self: bool(self.out))
    @rule(
        index=st.integers(min_value=0), outcome=st.sampled_from(["success", "failure", "abandoned"])
    )
    def report(self, index: int, outcome: str) -> None:
        self._report(index, outcome)

    @invariant()
    def consistent(self) -> None:
        b = self.b
        assert b.epoch == len(self.seen)
        assert 0 <= b.failures < b.failures_to_open
        assert (b.opened_at is None) == (b.state == "closed")
        if b.state != "closed":
            assert b.failures == 0
        if self.seen:
            assert self.seen[-1].to == b.state
        for before, after in zip(self.seen, self.seen[1:], strict=False):
            assert after.was == before.to and after.at >= before.at
        for t in self.seen:
            assert (t.was, t.to) in ALLOWED_MOVES
        trials = [p for p in self.out if p.trial and p.epoch == b.epoch]
        assert len(trials) <= 1
        if trials:
            assert b.state == "half-open"


BreakerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
test_breaker_state_machine = BreakerMachine.TestCase
