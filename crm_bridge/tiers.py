"""Who is calling, as far as the ACD cares: the customer's value tier.

The ACD asks :class:`CallerTiers` for a caller's tier when the caller joins a queue. Until
the screen pop identifies customers from the CRM, :class:`StaticTiers` answers from a
configured number -> tier table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

#: The customer pyramid, most valuable first.
TIERS = ("vip", "key", "ordinary")
DEFAULT_TIER = "ordinary"


class CallerTiers(Protocol):
    """Maps a caller's number (E.164, or None when withheld) to a value tier."""

    def tier_of(self, number: str | None) -> str: ...


@dataclass(frozen=True, slots=True)
class StaticTiers:
    """Tiers from a fixed table; unknown and withheld numbers get ``default``."""

    by_number: Mapping[str, str] = field(default_factory=dict)
    default: str = DEFAULT_TIER

    def tier_of(self, number: str | None) -> str:
        if number is None:
            return self.default
        return self.by_number.get(number, self.default)
