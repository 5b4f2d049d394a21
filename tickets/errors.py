"""Every error the tickets domain raises, in one place (as ``acd/errors.py`` does for the ACD).

* :class:`TicketStartupError` — the tickets service cannot start: nothing was started.
  :class:`TicketConfigError` is its configuration (``config/tickets.yaml`` or a ``tickets:``
  section): the message names the file, the key and the fix. ``setting`` names the service
  setting to fix (None when the message says it all), so the process that built those
  settings can name its own key instead.
* :class:`TicketError` — something asked of a ticket that the domain refuses; nothing was
  changed. :class:`IllegalTransition` is a workflow action the ticket's status does not
  allow: it says why and which actions are allowed.

The pure cores (``tickets.workflow``, ``tickets.sla``) raise only these and
:class:`ValueError` for data that breaks their contract (a status that is none, a history
out of order): the edges validate what people send first.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "IllegalTransition",
    "TicketConfigError",
    "TicketError",
    "TicketStartupError",
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
