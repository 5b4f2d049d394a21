"""What the profile core knows of a customer: orders, contacts, when first seen.

Plain frozen values, built by whatever reads them (the database, an import, a test); the core
never reads a clock or a file. Times are epoch seconds, like the call events' ``at``; money is
:class:`~decimal.Decimal` (exact sums, exact comparisons at a cut-off).

A *purchase* is an order with a positive amount. A refund is an order with a negative
amount: it lowers revenue, but it is no purchase, so it counts for no frequency, recency,
category or tenure (a customer whose last movement is a refund did not buy lately).

Windows: "the last D days" at ``now`` is ``now - D days < at <= now`` (:func:`within`), so an
order exactly D days old is outside it; anything after ``now`` (a clock ahead, a future-dated
order) is not counted anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol, TypeVar, get_args

__all__ = [
    "DAY",
    "OUTCOMES",
    "Contact",
    "CustomerHistory",
    "Dated",
    "Order",
    "Outcome",
    "within",
]

#: Seconds in a day: windows are counted in exact days of 86,400 seconds.
DAY = 86_400.0

#: How a contact ended: ``answered`` by an agent, ``abandoned`` (the caller hung up while
#: waiting), ``callback`` (the caller asked to be called back), ``voicemail`` (left a message or
#: was sent to a mailbox), ``failed`` (our outbound call did not reach the customer).
Outcome = Literal["answered", "abandoned", "callback", "voicemail", "failed"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)


def _finite_time(at: float, what: str) -> None:
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise ValueError(f"{what}: 'at' must be epoch seconds, got {at!r}")


@dataclass(frozen=True, slots=True)
class Order:
    """A purchase: when (epoch seconds), how much (revenue, negative for a refund), of what
    category (the product line the cross-purchase rule counts)."""

    at: float
    amount: Decimal
    category: str

    def __post_init__(self) -> None:
        _finite_time(self.at, "order")
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite():
            raise ValueError(f"order: 'amount' must be a finite Decimal, got {self.amount!r}")
        if not self.category:
            raise ValueError("order: 'category' must not be empty")


@dataclass(frozen=True, slots=True)
class Contact:
    """A contact with the center (a call): when, how it ended, and whether the customer
    complained on it."""

    at: float
    outcome: Outcome
    complaint: bool = False

    def __post_init__(self) -> None:
        _finite_time(self.at, "contact")
        if self.outcome not in OUTCOMES:
            raise ValueError(
                f"contact: 'outcome' must be one of {', '.join(OUTCOMES)}, got {self.outcome!r}"
            )


@dataclass(frozen=True, slots=True)
class CustomerHistory:
    """One customer as the profile sees it. ``first_seen`` is when the customer became known
    (account opened, first contact), if earlier than the first order; None when unknown."""

    customer_id: str
    orders: tuple[Order, ...] = ()
    contacts: tuple[Contact, ...] = ()
    first_seen: float | None = None

    def __post_init__(self) -> None:
        if self.first_seen is not None:
            _finite_time(self.first_seen, f"customer {self.customer_id!r}: first_seen")

    def orders_until(self, now: float) -> list[Order]:
        """The orders (purchases and refunds) placed at or before ``now``, oldest first."""
        return sorted((o for o in self.orders if o.at <= now), key=lambda o: o.at)

    def purchases_until(self, now: float) -> list[Order]:
        """The purchases (positive amounts) placed at or before ``now``, oldest first."""
        return sorted((o for o in self.orders if o.at <= now and o.amount > 0), key=lambda o: o.at)

    def customer_since(self, now: float) -> float | None:
        """When the relationship began as of ``now``: the earlier of ``first_seen`` and the
        first purchase (None: neither, or only in the future)."""
        starts = [o.at for o in self.orders if o.at <= now and o.amount > 0]
        if self.first_seen is not None and self.first_seen <= now:
            starts.append(self.first_seen)
        return min(starts, default=None)


class Dated(Protocol):
    """Anything with a time: an order, a contact."""

    @property
    def at(self) -> float: ...


D = TypeVar("D", bound=Dated)


def within(items: Iterable[D], now: float, days: float) -> list[D]:
    """The items of the last ``days`` days at ``now`` (``now - days < at <= now``)."""
    start = now - days * DAY
    return [o for o in items if start < o.at <= now]
