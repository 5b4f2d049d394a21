"""Every error the tickets domain raises, in one place (as ``acd/errors.py`` does for the ACD).

* :class:`TicketStartupError` — the tickets service cannot start: nothing was started.
  :class:`TicketConfigError` is its configuration (``config/tickets.yaml`` or a ``tickets:``
  section): the message names the file, the key and the fix. ``setting`` names the service
  setting to fix (None when the message says it all), so the process that built those
  settings can name its own key instead.
* :class:`TicketError` — something asked of a ticket that the domain refuses; nothing was
  changed. :class:`IllegalTransition` is a workflow action the ticket's status does not
  allow: it says why and which actions are allowed. The store's refusals are the others:
  :class:`TicketInputError` (bad input, naming the field), :class:`UnknownTicket`,
  :class:`ConflictError` (someone changed the ticket since it was read) and
  :class:`IdempotencyMismatch` (a create's key used for another request).

The pure cores (``tickets.workflow``, ``tickets.sla``) raise only these and
:class:`ValueError` for data that breaks their contract (a status that is none, a history
out of order): the edges validate what people send first.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ConflictError",
    "IdempotencyMismatch",
    "IllegalTransition",
    "TicketConfigError",
    "TicketError",
    "TicketInputError",
    "TicketStartupError",
    "UnknownTicket",
]


# -- start-up --------------------------------------------------------------------------------


class TicketStartupError(Exception):
    """The tickets service cannot start. ``problem`` says what is wrong; ``setting`` names the
    service setting to fix (or None); ``str()`` is the whole message in the domain's terms."""

    def __init__(self, problem: str, *, setting: str | None = None) -> None:
        self.problem = problem
        self.setting = setting
        super().__init__(self.message(setting and f"the tickets setting {setting!r}"))

    def message(self, setting: str | None) -> str:
        """The message, naming the setting to fix as ``setting`` (e.g. a configuration key
        and its environment variable) when there is one."""
        if setting is None:
            return self.problem
        return f"{self.problem}; check {setting}"


class TicketConfigError(TicketStartupError):
    """The tickets configuration cannot be used; the message names the file, the key and the
    fix."""


# -- refused requests ------------------------------------------------------------------------


class TicketError(Exception):
    """A request about a ticket the domain refuses; nothing was changed."""


class IllegalTransition(TicketError):
    """``action`` is not allowed on a ticket in ``status``: ``reason`` says why, ``allowed``
    lists the actions that are (empty for a ticket nothing can change)."""

    def __init__(self, status: str, action: str, reason: str, allowed: Sequence[str]) -> None:
        self.status = status
        self.action = action
        self.reason = reason
        self.allowed = tuple(allowed)
        choices = ", ".join(self.allowed) if self.allowed else "none"
        super().__init__(
            f"cannot {action} a ticket that is {status}: {reason} "
            f"(actions allowed when {status}: {choices})"
        )


class TicketInputError(TicketError, ValueError):
    """Input the store refuses; ``field`` names it (``subject``, ``tags.3``)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class UnknownTicket(TicketError, LookupError):
    """No ticket has this id (or number)."""

    def __init__(self, ticket: int | str) -> None:
        self.ticket = ticket
        super().__init__(f"no ticket {ticket}")


class ConflictError(TicketError):
    """The ticket changed since the caller read it: nothing was written. ``current`` is the
    version now in the database (read again, re-apply, send that)."""

    def __init__(self, ticket_id: int, expected: int, current: int) -> None:
        self.ticket_id = ticket_id
        self.expected = expected
        self.current = current
        super().__init__(
            f"ticket {_number(ticket_id)} is at version {current}, not {expected}: "
            "someone changed it since you read it; read it again and re-apply your change"
        )


class IdempotencyMismatch(TicketError):
    """An idempotency key used before with a different request."""

    def __init__(self, key: str, ticket_id: int) -> None:
        self.key = key
        self.ticket_id = ticket_id
        super().__init__(
            f"Idempotency-Key {key!r} was used for another request (it created ticket "
            f"{_number(ticket_id)}); use a new key for a new ticket"
        )


def _number(ticket_id: int) -> str:
    # As tickets.store.ticket_number says it (errors must not import the store).
    return f"T-{ticket_id:06d}"
