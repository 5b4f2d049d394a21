"""A ticket's life: its statuses, the actions people take on it and which are legal. Pure.

::

    new --open--> open --wait_for_customer----> pending_customer ---resume--> open
                    |  --wait_for_third_party-> pending_third_party --resume--> open
                    |
    open, pending_* --resolve--> resolved --close--> closed
    resolved, closed --reopen--> open
    any status but closed (and merged) --merge--> merged   (a duplicate of another ticket)

``merged`` is final: the duplicate points at the ticket that survived it (the store keeps
``merged_into``), and work goes on there. A ticket is ``new`` until someone takes it
(``open``), so an unowned ticket shows as such in lists.

:func:`transition` answers the new status or raises
:class:`~tickets.errors.IllegalTransition` saying why and which actions the status allows.
The SLA clock (``tickets.sla``) stops while a ticket is in :data:`PAUSED` (waiting for the
customer is not the center's time); :data:`DONE` statuses have met their resolution deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

from tickets.errors import IllegalTransition

__all__ = [
    "ACTIONS",
    "ACTIVE",
    "DONE",
    "PAUSED",
    "STATUSES",
    "TRANSITIONS",
    "Action",
    "IllegalTransition",
    "Status",
    "allowed_actions",
    "transition",
]

Status = Literal[
    "new", "open", "pending_customer", "pending_third_party", "resolved", "closed", "merged"
]
Action = Literal[
    "open",
    "wait_for_customer",
    "wait_for_third_party",
    "resume",
    "resolve",
    "close",
    "reopen",
    "merge",
]
STATUSES: tuple[Status, ...] = get_args(Status)
ACTIONS: tuple[Action, ...] = get_args(Action)

#: Statuses the resolution clock does not run in (the customer owes the next step).
PAUSED: frozenset[Status] = frozenset({"pending_customer"})
#: Statuses in which the ticket's work is over (resolved, closed, or merged elsewhere).
DONE: frozenset[Status] = frozenset({"resolved", "closed", "merged"})
#: Statuses of tickets someone still has to work on.
ACTIVE: frozenset[Status] = frozenset(STATUSES) - DONE

_PENDING: tuple[Status, ...] = ("pending_customer", "pending_third_party")

#: Every legal (status, action) and the status it leads to.
TRANSITIONS: Mapping[tuple[Status, Action], Status] = {
    ("new", "open"): "open",
    ("open", "wait_for_customer"): "pending_customer",
    ("open", "wait_for_third_party"): "pending_third_party",
    **{(pending, "resume"): "open" for pending in _PENDING},
    **{(status, "resolve"): "resolved" for status in ("open", *_PENDING)},
    ("resolved", "close"): "closed",
    ("resolved", "reopen"): "open",
    ("closed", "reopen"): "open",
    **{(status, "merge"): "merged" for status in STATUSES if status not in ("closed", "merged")},
}


def allowed_actions(status: str) -> tuple[Action, ...]:
    """The actions legal on a ticket in ``status``, in :data:`ACTIONS` order."""
    _known_status(status)
    return tuple(a for a in ACTIONS if (status, a) in TRANSITIONS)


def transition(status: str, action: str) -> Status:
    """The status ``action`` leads to from ``status``.

    Raises :class:`IllegalTransition` (with the reason and the allowed actions) when the
    action is unknown or not legal in ``status``, and ValueError for an unknown status (a
    ticket's stored status is always one of :data:`STATUSES`).
    """
    known = _known_status(status)
    allowed = allowed_actions(known)
    if action not in ACTIONS:
        raise IllegalTransition(
            known, action, f"{action!r} is no action; actions are {', '.join(ACTIONS)}", allowed
        )
    target = TRANSITIONS.get((known, action))
    if target is None:
        raise IllegalTransition(known, action, _why(known, action), allowed)
    return target


def _known_status(status: str) -> Status:
    if status not in STATUSES:
        raise ValueError(f"{status!r} is no ticket status; statuses are {', '.join(STATUSES)}")
    return status


def _why(status: Status, action: str) -> str:
    # The reason a person can act on: what the ticket is, and what to do first.
    if status == "merged":
        return "it was merged into another ticket; work on that one"
    if status == "closed":
        if action == "merge":
            return "a closed ticket is history and is not merged; reopen it first"
        return "a closed ticket can only be reopened"
    target = next(t for (_, a), t in TRANSITIONS.items() if a == action)
    if target == status:
        return f"it is already {status}"
    if action == "open":
        hint = "resume it" if status in _PENDING else "reopen it"
        return f"only a new ticket is opened; {hint}"
    if action == "reopen":
        return "only a resolved or closed ticket is reopened"
    if action == "resume":
        return "only a ticket waiting for the customer or a third party resumes"
    if action == "close":
        return "only a resolved ticket is closed; resolve it first"
    if status == "new":
        return "take the ticket first (open)"
    if status in _PENDING:
        return "it is waiting; resume it first"
    # resolved: waiting or resolving again needs the ticket back in work.
    return "the ticket is resolved; reopen it first"
