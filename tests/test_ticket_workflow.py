"""The ticket workflow: every status x action pair, legal ones leading where the issue says,
illegal ones refused with the reason and the actions that are allowed."""

from __future__ import annotations

import itertools

import pytest

from tickets.errors import IllegalTransition, TicketError
from tickets.workflow import (
    ACTIONS,
    ACTIVE,
    DONE,
    PAUSED,
    STATUSES,
    TRANSITIONS,
    allowed_actions,
    transition,
)

#: The whole table, written out by hand from issue 16 and the design: (status, action) ->
#: the new status, or the words the refusal must contain.
EXPECTED: dict[tuple[str, str], str] = {
    ("new", "open"): "=open",
    ("new", "wait_for_customer"): "take the ticket first",
    ("new", "wait_for_third_party"): "take the ticket first",
    ("new", "resume"): "only a ticket waiting",
    ("new", "resolve"): "take the ticket first",
    ("new", "close"): "only a resolved ticket is closed",
    ("new", "reopen"): "only a resolved or closed ticket is reopened",
    ("new", "merge"): "=merged",
    ("open", "open"): "already open",
    ("open", "wait_for_customer"): "=pending_customer",
    ("open", "wait_for_third_party"): "=pending_third_party",
    ("open", "resume"): "already open",
    ("open", "resolve"): "=resolved",
    ("open", "close"): "only a resolved ticket is closed",
    ("open", "reopen"): "already open",
    ("open", "merge"): "=merged",
    ("pending_customer", "open"): "only a new ticket is opened; resume it",
    ("pending_customer", "wait_for_customer"): "already pending_customer",
    ("pending_customer", "wait_for_third_party"): "waiting; resume it first",
    ("pending_customer", "resume"): "=open",
    ("pending_customer", "resolve"): "=resolved",
    ("pending_customer", "close"): "only a resolved ticket is closed",
    ("pending_customer", "reopen"): "only a resolved or closed ticket is reopened",
    ("pending_customer", "merge"): "=merged",
    ("pending_third_party", "open"): "only a new ticket is opened; resume it",
    ("pending_third_party", "wait_for_customer"): "waiting; resume it first",
    ("pending_third_party", "wait_for_third_party"): "already pending_third_party",
    ("pending_third_party", "resume"): "=open",
    ("pending_third_party", "resolve"): "=resolved",
    ("pending_third_party", "close"): "only a resolved ticket is closed",
    ("pending_third_party", "reopen"): "only a resolved or closed ticket is reopened",
    ("pending_third_party", "merge"): "=merged",
    ("resolved", "open"): "only a new ticket is opened; reopen it",
    ("resolved", "wait_for_customer"): "resolved; reopen it first",
    ("resolved", "wait_for_third_party"): "resolved; reopen it first",
    ("resolved", "resume"): "only a ticket waiting",
    ("resolved", "resolve"): "already resolved",
    ("resolved", "close"): "=closed",
    ("resolved", "reopen"): "=open",
    ("resolved", "merge"): "=merged",
    **{
        ("closed", action): "a closed ticket can only be reopened"
        for action in ACTIONS
        if action not in ("reopen", "merge")
    },
    ("closed", "reopen"): "=open",
    ("closed", "merge"): "closed ticket is history and is not merged; reopen it first",
    **{("merged", action): "merged into another ticket" for action in ACTIONS},
}


def test_the_table_covers_every_pair() -> None:
    assert set(EXPECTED) == set(itertools.product(STATUSES, ACTIONS))
    assert len(STATUSES) == 7 and len(ACTIONS) == 8


@pytest.mark.parametrize(("status", "action"), sorted(EXPECTED))
def test_every_status_and_action(status: str, action: str) -> None:
    expected = EXPECTED[(status, action)]
    if expected.startswith("="):
        assert transition(status, action) == expected[1:]
        assert action in allowed_actions(status)
        return
    with pytest.raises(IllegalTransition) as info:
        transition(status, action)
    error = info.value
    assert (error.status, error.action) == (status, action)
    assert expected in error.reason
    assert error.allowed == allowed_actions(status)
    assert action not in error.allowed
    message = str(error)
    assert message.startswith(f"cannot {action} a ticket that is {status}: {error.reason}")
    allowed = ", ".join(error.allowed) if error.allowed else "none"
    assert message.endswith(f"(actions allowed when {status}: {allowed})")


def test_allowed_actions_per_status() -> None:
    assert allowed_actions("new") == ("open", "merge")
    assert allowed_actions("open") == (
        "wait_for_customer",
        "wait_for_third_party",
        "resolve",
        "merge",
    )
    assert allowed_actions("pending_customer") == ("resume", "resolve", "merge")
    assert allowed_actions("resolved") == ("close", "reopen", "merge")
    assert allowed_actions("closed") == ("reopen",)
    assert allowed_actions("merged") == ()
    legal = sum(len(allowed_actions(s)) for s in STATUSES)
    assert legal == len(TRANSITIONS) == 16


def test_a_ticket_walks_its_whole_life() -> None:
    status = "new"
    for action, after in [
        ("open", "open"),
        ("wait_for_third_party", "pending_third_party"),
        ("resume", "open"),
        ("wait_for_customer", "pending_customer"),
        ("resolve", "resolved"),
        ("close", "closed"),
        ("reopen", "open"),
        ("resolve", "resolved"),
        ("merge", "merged"),
    ]:
        status = transition(status, action)
        assert status == after


def test_unknown_actions_and_statuses() -> None:
    with pytest.raises(IllegalTransition, match=r"'escalate' is no action; actions are open,"):
        transition("open", "escalate")
    # An unknown action is a refused request like any other (the HTTP layer answers it).
    assert issubclass(IllegalTransition, TicketError)
    with pytest.raises(ValueError, match="'archived' is no ticket status"):
        transition("archived", "open")
    with pytest.raises(ValueError, match="'archived' is no ticket status"):
        allowed_actions("archived")


def test_status_groups() -> None:
    assert {"pending_customer"} == PAUSED
    assert {"resolved", "closed", "merged"} == DONE
    assert set(STATUSES) == ACTIVE | DONE and not ACTIVE & DONE
    # Work that is over is not resolved or put on hold again without a reopen.
    for status in DONE:
        assert not {"resolve", "wait_for_customer", "resume"} & set(allowed_actions(status))
