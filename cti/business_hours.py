"""The business calendar: weekly opening spans in a time zone, with closed holidays.

One code for every room that counts open time: the ACD's queue hours (open or closed now,
when that changes) and the tickets' service levels (a deadline "8 business hours" after a
ticket was opened, the open time a ticket has been waiting).

Instants are epoch seconds (floats), as everywhere in the cores; local dates and clock times
are only used to place each day's spans. A span's ends are local wall-clock times, so on a
daylight-saving change the span is as long as it really is that day: ``08:00-18:00`` on the
autumn night's Sunday is still ten hours, ``00:00-06:00`` across the spring-forward night is
five. A wall-clock time that does not exist that day (02:30 in Paris on the spring-forward
night) is read with the offset in force before the change, as :mod:`zoneinfo` does.

:meth:`BusinessHours.always_open` is the calendar that never closes: its business seconds are
wall-clock seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["WEEKDAYS", "BusinessHours", "Weekday"]

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class BusinessHours(BaseModel):
    """Weekly opening spans (``"08:00-18:00"``) in ``time_zone``, and closed holidays.

    A weekday missing from ``weekly`` is closed all day.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_zone: str = "UTC"
    weekly: dict[Weekday, tuple[str, ...]]
    holidays: tuple[date, ...] = ()

    @classmethod
    def always_open(cls, time_zone: str = "UTC") -> BusinessHours:
        """The calendar that never closes (no holidays): business time is wall-clock time."""
        return cls(time_zone=time_zone, weekly={day: ("00:00-24:00",) for day in WEEKDAYS})

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name") from None
        return value

    @field_validator("weekly")
    @classmethod
    def _spans(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for day, spans in value.items():
            for span in spans:
                m = _SPAN.match(span)
                past_midnight = m is not None and m[3] == "24" and m[4] != "00"
                if m is None or past_midnight or (m[1], m[2]) >= (m[3], m[4]):
                    raise ValueError(
                        f"{day}: {span!r} is not a span 'HH:MM-HH:MM' with start before end"
                    )
        return value

    def is_open(self, now: float) -> bool:
        """Whether the calendar is open at epoch second ``now``."""
        return any(start <= now < end for start, end in self._spans_around(now))

    def next_change(self, now: float) -> float | None:
        """The first instant after ``now`` at which :meth:`is_open` may change."""
        edges = [t for span in self._spans_around(now) for t in span if t > now]
        return min(edges, default=None)

    def add_business_seconds(self, start: float, seconds: float) -> float:
        """The instant at which ``seconds`` of open time have passed since ``start``.

        Closed time does not count: one business hour after Friday 17:30, open Mon-Fri
        08:00-18:00, is Monday 08:30. A deadline that uses up a span exactly falls on its
        close (Friday 18:00), not on the next opening. ``seconds`` 0 is ``start`` itself.
        Raises ValueError for negative ``seconds`` or a calendar that never opens.
        """
        if seconds < 0:
            raise ValueError(f"seconds must not be negative, got {seconds}")
        if seconds == 0:
            return start
        left = seconds
        for opens, closes in self.open_spans(start):
            if left <= closes - opens:
                return opens + left
            left -= closes - opens
        raise AssertionError("open_spans never ends")  # pragma: no cover

    def business_seconds(self, start: float, end: float) -> float:
        """The open seconds between ``start`` and ``end`` (0 when ``end`` is not after it).
        Raises ValueError for a calendar that never opens."""
        total = 0.0
        if end <= start:
            return total
        for opens, closes in self.open_spans(start):
            if opens >= end:
                break
            total += min(closes, end) - opens
        return total

    def open_spans(self, since: float) -> Iterator[tuple[float, float]]:
        """The open intervals ``[opens, closes)`` from ``since`` on, in order, without end.

        One day's overlapping spans come as one; spans of two days that meet at midnight
        (Monday ``20:00-24:00``, Tuesday ``00:00-06:00``) come one after the other, so an
        always-open calendar yields a span a day. The first starts no earlier than ``since``
        (cut there when ``since`` falls inside it). Raises ValueError when the calendar has no
        span at all.
        """
        if not any(self.weekly.values()):
            raise ValueError("the calendar is never open: give 'weekly' at least one span")
        zone = ZoneInfo(self.time_zone)
        # From yesterday: yesterday's spans end by today's midnight, so none is missed.
        day = datetime.fromtimestamp(since, zone).date() - timedelta(days=1)
        while True:
            for opens, closes in self._day_spans(day, zone):
                if closes > since:
                    yield max(opens, since), closes
            day += timedelta(days=1)

    def _day_spans(self, day: date, zone: ZoneInfo) -> list[tuple[float, float]]:
        # One day's spans as epoch intervals, sorted, overlaps merged; a span that a
        # spring-forward gap turns backwards (02:30-03:15 on that night) is dropped.
        if day in self.holidays:
            return []
        spans: list[tuple[float, float]] = []
        for span in self.weekly.get(WEEKDAYS[day.weekday()], ()):
            start, end = span.split("-")
            spans.append((_at(day, start, zone), _at(day, end, zone)))
        merged: list[tuple[float, float]] = []
        for opens, closes in sorted(spans):
            if opens >= closes:
                continue
            if merged and opens <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], closes))
            else:
                merged.append((opens, closes))
        return merged

    def _spans_around(self, now: float) -> list[tuple[float, float]]:
        # Opening spans as epoch intervals from yesterday to a week ahead, local time (DST).
        zone = ZoneInfo(self.time_zone)
        today = datetime.fromtimestamp(now, zone).date()
        spans = []
        for offset in range(-1, 8):
            day = today + timedelta(days=offset)
            if day in self.holidays:
                continue
            for span in self.weekly.get(WEEKDAYS[day.weekday()], ()):
                start, end = span.split("-")
                spans.append((_at(day, start, zone), _at(day, end, zone)))
        return spans


def _at(day: date, hhmm: str, zone: ZoneInfo) -> float:
    hours, minutes = int(hhmm[:2]), int(hhmm[3:])
    midnight = datetime.combine(day, time(0), zone)
    if hours == 24:
        return datetime.combine(day + timedelta(days=1), time(0), zone).timestamp()
    return midnight.replace(hour=hours, minute=minutes).timestamp()
