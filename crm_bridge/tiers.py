"""Who is calling, as far as the ACD cares: the customer's value tier.

The ACD asks a :class:`CallerTiers` for a caller's tier when the call arrives, before it
joins a queue, on the routing path: the answer must come from memory, never from a database
or a network. :class:`TierIndex` is the screen-pop bridge's computed tiers by number (loaded
from the customers' stored profiles and swapped whole when a recompute lands);
:class:`StaticTiers` is the ACD configuration's fixed table, which overrides it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

#: The customer pyramid, most valuable first (``small`` only with a small-customer
#: threshold; the ACD weighs it as ``ordinary`` unless its configuration says otherwise).
TIERS = ("vip", "key", "ordinary")
DEFAULT_TIER = "ordinary"


class CallerTiers(Protocol):
    """Maps a caller's number (E.164, or None when withheld) to a value tier."""

    def tier_of(self, number: str | None) -> str: ...


class TierIndex:
    """Computed tiers by E.164 number; unknown and withheld numbers get ``default``.
    :meth:`replace` swaps the whole table at once, so a reader on another thread sees the
    old or the new table, never half of one; :meth:`update` changes a few numbers in place
    (each one old or new to a reader), without copying a table of a million numbers."""

    def __init__(self, default: str = DEFAULT_TIER) -> None:
        self.default = default
        self._by_number: dict[str, str] = {}

    def replace(self, by_number: Mapping[str, str]) -> None:
        """Use ``by_number`` from now on."""
        self._by_number = dict(by_number)

    def update(self, changes: Mapping[str, str]) -> None:
        """Set the tiers of the numbers in ``changes``; the others stay."""
        self._by_number.update(changes)

    def __len__(self) -> int:
        return len(self._by_number)

    def tier_of(self, number: str | None) -> str:
        if number is None:
            return self.default
        return self._by_number.get(number, self.default)


@dataclass(frozen=True, slots=True)
class StaticTiers:
    """Tiers from a fixed table; other numbers are asked of ``fallback`` (the computed
    tiers) when there is one, else get ``default``, as withheld numbers do."""

    by_number: Mapping[str, str] = field(default_factory=dict)
    default: str = DEFAULT_TIER
    fallback: CallerTiers | None = None

    def tier_of(self, number: str | None) -> str:
        if number is not None and number in self.by_number:
            return self.by_number[number]
        if self.fallback is not None:
            return self.fallback.tier_of(number)
        return self.default
