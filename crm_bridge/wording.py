"""How the profile's reasons write figures, so every reason reads the same way.

Amounts with thousands separators and cents only when there are any ("48,200", "12.50");
windows in months when they are whole months ("12 months", "6 months") else in days;
ages and tenures in the unit a person would use ("40 days", "7 months", "4.1 years").
"""

from __future__ import annotations

from decimal import Decimal

__all__ = [
    "ago",
    "count",
    "duration",
    "money",
    "percent",
    "period",
    "period_adjective",
    "ratio",
    "rounded",
]


def money(amount: Decimal) -> str:
    """``48200`` → ``48,200``; ``12.5`` → ``12.50``; ``-30`` → ``-30``."""
    if amount == amount.to_integral_value():
        return f"{amount:,.0f}"
    return f"{amount:,.2f}"


def rounded(amount: Decimal) -> str:
    """An estimate, to whole units: ``262857.14`` → ``262,857``."""
    return f"{amount:,.0f}"


def count(n: int, noun: str, plural: str | None = None, *, zero: str | None = None) -> str:
    """``1 order``, ``3 orders``, ``1,200 customers``; ``zero`` replaces ``0 orders``
    (e.g. ``no complaint``)."""
    if n == 0 and zero is not None:
        return zero
    word = noun if n == 1 else (plural or noun + "s")
    return f"{n:,} {word}"


def period(days: int) -> str:
    """A window as a noun: 365 → ``12 months``, 730 → ``24 months``, 180 → ``6 months``,
    30 → ``1 month``, 90 → ``3 months``, 45 → ``45 days``, 1 → ``1 day``."""
    if days % 365 == 0:
        return count(12 * days // 365, "month")
    if days % 30 == 0:
        return count(days // 30, "month")
    return count(days, "day")


def period_adjective(days: int) -> str:
    """A window as an adjective: 365 → ``12-month``, 180 → ``6-month``, 45 → ``45-day``."""
    if days % 365 == 0:
        return f"{12 * days // 365}-month"
    if days % 30 == 0:
        return f"{days // 30}-month"
    return f"{days}-day"


def duration(days: float) -> str:
    """An age or a tenure, rounded down: under 60 days in days, under two years in months
    (of 30 days), else in years to one decimal (``4.1 years``)."""
    if days < 60:
        return count(int(days), "day")
    if days < 730:
        return count(int(days // 30), "month")
    return f"{int(days / 365 * 10) / 10:g} years"


def percent(value: float) -> str:
    """A configured share in percent: 1.0 → ``1%``, 2.5 → ``2.5%``."""
    return f"{value:g}%"


def ratio(value: Decimal) -> str:
    """A ratio as a whole percent: 0.984 → ``98%``, 2.1 → ``210%``."""
    return f"{value * 100:,.0f}%"


def ago(days: float) -> str:
    """How long ago: ``today`` under a day, else ``40 days ago``, ``7 months ago``."""
    if days < 1:
        return "today"
    return f"{duration(days)} ago"
