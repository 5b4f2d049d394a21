"""The configured promises as the tickets service reads them: :class:`SlaPolicies` turns
:class:`~tickets.config.TicketSettings` (a policy per customer tier and priority, the
business calendar) into the service's ``deadlines`` (a new ticket's due instants) and
``sla`` (a ticket's state, alarms due and next event at a moment), both through
:class:`~tickets.sla.SlaClock`, so the process's wiring passes settings and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence

from cti.business_hours import BusinessHours
from tickets.config import TicketSettings
from tickets.service import SlaAlarm, SlaReading
from tickets.sla import DEADLINES, SlaClock, SlaPolicy
from tickets.store import Deadlines, Ticket

__all__ = ["SlaPolicies"]


class SlaPolicies:
    """``settings``' SLA policies and calendar, as the service's ``deadlines`` and ``sla``."""

    def __init__(self, settings: TicketSettings) -> None:
        self.settings = settings
        self.calendar: BusinessHours = settings.business_hours()

    def policy(self, tier: str | None, priority: str) -> SlaPolicy:
        """The promise for a customer of ``tier`` (None: no known customer) at ``priority``."""
        return self.settings.policy_for(tier, priority)

    def deadlines(self, tier: str | None, priority: str, opened_at: float) -> Deadlines:
        """A ticket opened at ``opened_at``: when its first response and resolution are due."""
        clock = SlaClock(self.policy(tier, priority), self.calendar, opened_at)
        return Deadlines(clock.first_response_due(opened_at), clock.resolution_due(opened_at))

    def clock(self, ticket: Ticket, history: Sequence[tuple[float, str]]) -> SlaClock:
        """The ticket's clock: its policy (tier at creation, priority now), its status
        history after the opening (the store's starts with ``new`` at creation)."""
        changes = [(at, status) for at, status in history if at >= ticket.created_at]
        if changes and changes[0] == (ticket.created_at, "new"):
            changes = changes[1:]
        return SlaClock(
            self.policy(ticket.customer_tier, ticket.priority),
            self.calendar,
            ticket.created_at,
            changes,
            first_response_at=ticket.first_response_at,
        )

    def read(self, ticket: Ticket, history: list[tuple[float, str]], now: float) -> SlaReading:
        """The ticket's SLA at ``now``: its state, an alarm per deadline now in warning or
        breach, the next instant one happens and the due instants as of now.

        Both deadlines are read every time rather than trusting the timer's event alone:
        :meth:`SlaClock.next_event` names one of two events at the same instant, and a
        breach that passed while the process was down is read here, not scheduled."""
        clock = self.clock(ticket, history)
        alarms = []
        for name in DEADLINES:
            status = clock.deadline(name, now)
            if status.state in ("warning", "breached"):
                alarms.append(SlaAlarm(name, status.state, status.due))
        upcoming = clock.next_event(now)
        return SlaReading(
            clock.state(now),
            tuple(alarms),
            upcoming.at if upcoming is not None else None,
            Deadlines(clock.first_response_due(now), clock.resolution_due(now)),
        )
