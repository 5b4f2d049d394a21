"""The value tier (customer pyramid): VIP, key, ordinary and, when configured, small.

A customer's value is the revenue of the last ``window_days`` (:func:`window_value`). The
tier compares it with two lines, VIP and key (:func:`tier_of`):

* ``method: rank``: a bulk run over *every* customer (:func:`rank_cutoffs`) draws the lines
  from the shares. With N customers, ``floor(N * vip_percent / 100)`` places are VIP and
  ``floor(N * (vip_percent + key_percent) / 100)`` VIP or key. A customer is in a tier when
  *strictly above* the best customer left out of its places (the value at place
  ``places + 1``; 0 when fewer customers have revenue). So a tier never holds more than its
  share; customers tied across the last place are all left out together (equal values get
  equal tiers, and "top 1%" stays true); a customer without revenue is never VIP or key.
* ``method: threshold``: the lines are the configured amounts; a customer *at or above* one
  is in the tier (:func:`threshold_cutoffs`).

Not VIP, not key: ordinary, or small when the value is below ``small_below``.

**Incremental path.** Each line is stored as two values (:class:`Line`): ``stay``, the best
value left out (a customer of the tier at the run stays in while strictly above it), and
``entry``, the value at the tier's last place (anyone else gets in by passing it strictly:
that customer would take the last place and push its holder out). With the customer's tier
at the run (``was``), :func:`tier_of` gives for one customer whose revenue changed exactly
the tier a bulk recompute would give, as long as no other customer changed. The customer
pushed out keeps the tier until the next bulk run, so between runs a tier may hold a
customer or two beyond its share. More revenue never lowers a customer's tier, in either
path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from crm_bridge.config import PyramidRules
from crm_bridge.customer import CustomerHistory, within
from crm_bridge.wording import count, money, percent, period_adjective

__all__ = [
    "PYRAMID",
    "Line",
    "Tier",
    "TierCutoffs",
    "TierResult",
    "cutoffs_for",
    "cutoffs_from_json",
    "cutoffs_to_json",
    "describe",
    "rank_cutoffs",
    "ranked_tier",
    "threshold_cutoffs",
    "tier_of",
    "window_value",
]

Tier = Literal["vip", "key", "ordinary", "small"]
#: Most valuable first; ``small`` only when ``small_below`` is configured.
PYRAMID: tuple[Tier, ...] = ("vip", "key", "ordinary", "small")


@dataclass(frozen=True, slots=True)
class Line:
    """Where a tier starts (see the module's "Incremental path"). ``rank``: a customer who
    was in the tier at the run is in while strictly above ``stay``, anyone else while
    strictly above ``entry`` (``entry >= stay``). ``threshold``: both are the configured
    amount, reached at or above it."""

    stay: Decimal
    entry: Decimal


@dataclass(frozen=True, slots=True)
class TierCutoffs:
    """The lines of one run and the rules they were drawn with, stored so that one customer
    can be re-evaluated later without ranking everyone again.

    ``vip``/``key``: the lines (None: the population is too small for the tier's share,
    nobody is in it). ``population`` is the number of customers ranked (every customer, with
    or without revenue); ``vip_places``/``top_places`` how many may be VIP / VIP or key.
    """

    at: float
    method: Literal["rank", "threshold"]
    window_days: int
    vip: Line | None
    key: Line | None
    small_below: Decimal | None = None
    vip_percent: float = 0.0
    key_percent: float = 0.0
    population: int = 0
    vip_places: int = 0
    top_places: int = 0


@dataclass(frozen=True, slots=True)
class TierResult:
    """A customer's tier, the value it was decided on and why, in words."""

    tier: Tier
    value: Decimal
    reason: str


def window_value(history: CustomerHistory, now: float, window_days: int) -> Decimal:
    """Revenue of the last ``window_days`` at ``now`` (refunds subtract)."""
    return sum((o.amount for o in within(history.orders, now, window_days)), Decimal(0))


def threshold_cutoffs(rules: PyramidRules, now: float) -> TierCutoffs:
    """The lines of ``method: threshold``: the configured amounts."""
    if rules.vip_from is None or rules.key_from is None:
        raise ValueError("method 'threshold' needs vip_from and key_from")
    return TierCutoffs(
        at=now,
        method="threshold",
        window_days=rules.window_days,
        vip=Line(rules.vip_from, rules.vip_from),
        key=Line(rules.key_from, rules.key_from),
        small_below=rules.small_below,
    )


def rank_cutoffs(values: Iterable[Decimal], rules: PyramidRules, now: float) -> TierCutoffs:
    """The lines of ``method: rank`` over ``values``, the window value of every customer
    (one each, zero for those without revenue: they count in the population)."""
    ranked = sorted(values, reverse=True)
    population = len(ranked)
    vip_share = Decimal(str(rules.vip_percent))
    top_share = vip_share + Decimal(str(rules.key_percent))
    vip_places = math.floor(population * vip_share / 100)
    top_places = math.floor(population * top_share / 100)
    return TierCutoffs(
        at=now,
        method="rank",
        window_days=rules.window_days,
        vip=_line(ranked, vip_places),
        key=_line(ranked, top_places),
        small_below=rules.small_below,
        vip_percent=rules.vip_percent,
        key_percent=rules.key_percent,
        population=population,
        vip_places=vip_places,
        top_places=top_places,
    )


def cutoffs_for(values: Iterable[Decimal], rules: PyramidRules, now: float) -> TierCutoffs:
    """The lines of a bulk run by the configured method (``values`` as for
    :func:`rank_cutoffs`; the threshold method does not need them)."""
    if rules.method == "threshold":
        return threshold_cutoffs(rules, now)
    return rank_cutoffs(values, rules, now)


def _line(ranked: list[Decimal], places: int) -> Line | None:
    """The line of a tier of ``places`` places over ``ranked`` (best first)."""
    if places == 0:
        return None

    def at_place(place: int) -> Decimal:  # 1-based; 0 past the end or below zero
        return max(ranked[place - 1], Decimal(0)) if place <= len(ranked) else Decimal(0)

    return Line(stay=at_place(places + 1), entry=at_place(places))


def ranked_tier(value: Decimal, cutoffs: TierCutoffs) -> TierResult:
    """The tier of a customer who was in the run that drew ``cutoffs`` with ``value``: what
    the bulk run says."""
    return tier_of(value, cutoffs, was=tier_of(value, cutoffs, was="vip").tier)


def tier_of(value: Decimal, cutoffs: TierCutoffs, *, was: Tier | None) -> TierResult:
    """The tier of a customer whose window value is ``value``, with the reason in words.

    ``was``: the customer's tier in the run that drew ``cutoffs`` (None: the run did not
    include the customer); it decides which of a rank line's two values applies.
    """
    revenue = f"{period_adjective(cutoffs.window_days)} revenue"
    vip, key = cutoffs.vip, cutoffs.key
    in_vip = was == "vip"
    in_top = was in ("vip", "key")
    if _reaches(value, vip, in_vip, cutoffs):
        assert vip is not None
        why = _inside(value, vip, in_vip, cutoffs, revenue, "VIP", cutoffs.vip_percent)
        return TierResult("vip", value, f"VIP: {why}")
    if _reaches(value, key, in_top, cutoffs):
        assert key is not None
        why = _inside(value, key, in_top, cutoffs, revenue, "key", cutoffs.key_percent)
        return TierResult("key", value, f"key: {why}")
    if cutoffs.small_below is not None and value < cutoffs.small_below:
        return TierResult(
            "small", value, f"small: {revenue} {money(value)}, below {money(cutoffs.small_below)}"
        )
    top = f"the top {percent(cutoffs.vip_percent + cutoffs.key_percent)}"
    if key is None:
        why = (
            f"{revenue} {money(value)}; {count(cutoffs.population, 'customer')} are too few "
            f"for {top}"
        )
    elif cutoffs.method == "threshold":
        why = f"{revenue} {money(value)}, below {money(key.entry)} for key"
    else:
        line = key.stay if in_top else key.entry
        if value == line and line > 0:
            why = (
                f"{revenue} {money(value)}, tied at the last place of {top} with more "
                "customers than it holds"
            )
        else:
            why = f"{revenue} {money(value)}, key needs more than {money(line)} ({top})"
    return TierResult("ordinary", value, f"ordinary: {why}")


def _reaches(value: Decimal, line: Line | None, member: bool, cutoffs: TierCutoffs) -> bool:
    if line is None:
        return False
    if cutoffs.method == "threshold":
        return value >= line.entry
    return value > (line.stay if member else line.entry)


def _inside(
    value: Decimal,
    line: Line,
    member: bool,
    cutoffs: TierCutoffs,
    revenue: str,
    name: str,
    share: float,
) -> str:
    if cutoffs.method == "threshold":
        why = f"{revenue} {money(value)}, at least {money(line.entry)}"
        if name == "key" and cutoffs.vip is not None:
            why += f" (VIP from {money(cutoffs.vip.entry)})"
        return why
    rank = "top" if name == "VIP" else "next"
    head = f"{rank} {percent(share)} by {revenue}, {money(value)}"
    above = cutoffs.vip_percent if name == "VIP" else cutoffs.vip_percent + cutoffs.key_percent
    scope = f"the top {percent(above)}"
    if member:
        if line.stay == 0:
            return f"{head} (nobody outside {scope} has revenue)"
        return f"{head} (the best outside {scope} has {money(line.stay)})"
    if line.entry == 0:
        return f"{head} (a {name} place was free)"
    return f"{head} (passes the last {name} place, {money(line.entry)})"


def describe(cutoffs: TierCutoffs) -> str:
    """One line for a supervisor: how the run cut the pyramid."""
    revenue = f"{period_adjective(cutoffs.window_days)} revenue"
    if cutoffs.method == "threshold":
        assert cutoffs.vip is not None and cutoffs.key is not None
        return (
            f"by {revenue}: VIP from {money(cutoffs.vip.entry)}, key from "
            f"{money(cutoffs.key.entry)}"
        )

    def line(value: Line | None) -> str:
        return "nobody (too few customers)" if value is None else f"above {money(value.stay)}"

    return (
        f"{count(cutoffs.population, 'customer')} ranked by {revenue}: "
        f"VIP (top {percent(cutoffs.vip_percent)}, {count(cutoffs.vip_places, 'place')}) "
        f"{line(cutoffs.vip)}, key (next {percent(cutoffs.key_percent)}, "
        f"{count(cutoffs.top_places - cutoffs.vip_places, 'place')}) {line(cutoffs.key)}"
    )


def cutoffs_to_json(cutoffs: TierCutoffs) -> dict[str, Any]:
    """``cutoffs`` as JSON-ready data (amounts as decimal strings, exact), for
    ``tier_runs.cutoffs``; :func:`cutoffs_from_json` reads it back equal."""

    def line(value: Line | None) -> dict[str, str] | None:
        return None if value is None else {"stay": str(value.stay), "entry": str(value.entry)}

    return {
        "at": cutoffs.at,
        "method": cutoffs.method,
        "window_days": cutoffs.window_days,
        "vip": line(cutoffs.vip),
        "key": line(cutoffs.key),
        "small_below": None if cutoffs.small_below is None else str(cutoffs.small_below),
        "vip_percent": cutoffs.vip_percent,
        "key_percent": cutoffs.key_percent,
        "population": cutoffs.population,
        "vip_places": cutoffs.vip_places,
        "top_places": cutoffs.top_places,
    }


def cutoffs_from_json(data: Any) -> TierCutoffs:
    """The cut-offs :func:`cutoffs_to_json` wrote; :class:`ValueError` names the key when
    ``data`` is not such a record."""
    if not isinstance(data, dict):
        raise ValueError(f"tier cut-offs must be a JSON object, got {type(data).__name__}")

    def field(key: str) -> Any:
        if key not in data:
            raise ValueError(f"tier cut-offs: key {key!r} is missing")
        return data[key]

    def amount(key: str, value: Any) -> Decimal:
        try:
            result = Decimal(value)
        except (ArithmeticError, TypeError, ValueError):
            raise ValueError(
                f"tier cut-offs: {key} must be a decimal string, got {value!r}"
            ) from None
        if not result.is_finite():
            raise ValueError(f"tier cut-offs: {key} must be finite, got {value!r}")
        return result

    def line(key: str) -> Line | None:
        value = field(key)
        if value is None:
            return None
        if not isinstance(value, dict) or not {"stay", "entry"} <= value.keys():
            raise ValueError(f"tier cut-offs: {key} must have 'stay' and 'entry', got {value!r}")
        return Line(amount(f"{key}.stay", value["stay"]), amount(f"{key}.entry", value["entry"]))

    def number(key: str, kind: type[int] | type[float]) -> Any:
        value = field(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"tier cut-offs: {key} must be a number, got {value!r}")
        return kind(value)

    method = field("method")
    if method not in ("rank", "threshold"):
        raise ValueError(f"tier cut-offs: method must be 'rank' or 'threshold', got {method!r}")
    small = field("small_below")
    return TierCutoffs(
        at=number("at", float),
        method=method,
        window_days=number("window_days", int),
        vip=line("vip"),
        key=line("key"),
        small_below=None if small is None else amount("small_below", small),
        vip_percent=number("vip_percent", float),
        key_percent=number("key_percent", float),
        population=number("population", int),
        vip_places=number("vip_places", int),
        top_places=number("top_places", int),
    )
