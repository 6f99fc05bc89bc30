"""The injectable clock and the monthly blackout of the lost-repair upload.

Lambda clocks are UTC; the upstream's rule ("no request from 00:00 on the 27th") is in China
time, which is UTC+8 all year (no daylight saving), so a fixed offset is exact. When the
blackout ends is not in the spec: see docs/decisions.md#blackout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

CHINA_TZ = timezone(timedelta(hours=8), name="CST")


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware datetime (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class OffsetClock:
    """Starts at ``start`` and runs on at the speed of the real clock (``CLOCK_NOW``)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("CLOCK_NOW needs an offset, e.g. 2026-12-27T01:00:00+08:00")
        self._start = start.astimezone(UTC)
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._t0)


class FixedClock:
    """Stands still unless moved: for unit tests."""

    def __init__(self, at: datetime) -> None:
        self.at = at.astimezone(UTC)

    def now(self) -> datetime:
        return self.at

    def move_to(self, at: datetime) -> None:
        self.at = at.astimezone(UTC)


def clock_from_setting(clock_now: str) -> Clock:
    return OffsetClock(datetime.fromisoformat(clock_now)) if clock_now else SystemClock()


def china_time(at: datetime) -> datetime:
    return at.astimezone(CHINA_TZ)


@dataclass(frozen=True)
class Blackout:
    """The window in which no lost-repair request may be sent.

    From 00:00 on ``start_day`` (China time) until 00:00 on ``resume_day`` of the next month.
    A ``start_day`` beyond a month's length (e.g. 31 in February) means no blackout that month.
    """

    start_day: int = 27
    resume_day: int = 1

    def window_containing(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The (start, end) of the blackout ``at`` falls in, or None when sending is allowed."""
        local = china_time(at)
        for month_start in (_first_of_month(local), _first_of_month(_previous_month(local))):
            start = _day_in_month(month_start, self.start_day)
            if start is None:
                continue
            end = _day_in_month(_first_of_month(_next_month(month_start)), self.resume_day)
            assert end is not None
            if start <= local < end:
                return start, end
        return None

    def is_blacked_out(self, at: datetime) -> bool:
        return self.window_containing(at) is not None

    def resumes_at(self, at: datetime) -> datetime | None:
        window = self.window_containing(at)
        return None if window is None else window[1]


def _first_of_month(local: datetime) -> datetime:
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(local: datetime) -> datetime:
    first = _first_of_month(local)
    return (first + timedelta(days=32)).replace(day=1)


def _previous_month(local: datetime) -> datetime:
    return _first_of_month(_first_of_month(local) - timedelta(days=1))


def _day_in_month(month_start: datetime, day: int) -> datetime | None:
    try:
        return month_start.replace(day=day)
    except ValueError:
        return None
