"""Cron expressions in a time zone: when a schedule fires.

Five fields (minute hour day-of-month month day-of-week), six with seconds first
(``*/10 * * * * *``: every ten seconds), or an alias (``@hourly``, ``@daily``,
``@weekly``, ``@monthly``, ``@yearly``). Fields are matched against the wall clock of the
schedule's IANA time zone, and the daylight-saving rules are these:

* a wall-clock time that does not exist (the hour skipped in spring) fires as if the clock
  had not jumped: 02:30 on the night clocks go from 02:00 to 03:00 fires at 03:30;
* a wall-clock time that happens twice (the hour repeated in autumn) fires once, at its
  first occurrence.

Fire times are returned as aware UTC datetimes.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from orchestrator.errors import Problem, ValidationError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
UTC = dt.UTC
_MAX_SLOTS = 100_000  # a bound on any one walk over fire times


@dataclass(frozen=True)
class Cron:
    expression: str  # as written (an alias stays an alias)
    timezone: str

    @property
    def _fields(self) -> str:
        return ALIASES.get(self.expression.strip().lower(), self.expression.strip())

    @property
    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def next_after(self, instant: dt.datetime) -> dt.datetime:
        """The first fire time strictly after ``instant`` (aware)."""
        zone = self._zone
        local = instant.astimezone(zone).replace(tzinfo=None)
        walk = croniter(self._fields, local, second_at_beginning=len(self._fields.split()) == 6)
        for _ in range(_MAX_SLOTS):
            naive = walk.get_next(dt.datetime)
            # fold=0: a repeated time means its first occurrence; a skipped time takes the
            # offset from before the jump, which lands it that much later in real time.
            fire = naive.replace(tzinfo=zone).astimezone(UTC)
            if fire > instant:
                return fire
        raise ValueError(f"no fire time of '{self.expression}' after {instant}")

    def upcoming(self, after: dt.datetime, count: int) -> list[dt.datetime]:
        times: list[dt.datetime] = []
        while len(times) < count:
            after = self.next_after(after)
            times.append(after)
        return times

    def between(self, start: dt.datetime, end: dt.datetime, limit: int = _MAX_SLOTS) -> list[dt.datetime]:
        """Fire times in (start, end], at most ``limit`` of them (the earliest)."""
        times: list[dt.datetime] = []
        at = start
        while len(times) < limit:
            at = self.next_after(at)
            if at > end:
                break
            times.append(at)
        return times


_FIELDS = (("minute", "0-59"), ("hour", "0-23"), ("day of month", "1-31"), ("month", "1-12 or jan-dec"),
           ("day of week", "0-7 (0 and 7 are Sunday) or sun-sat"))


def _bad_field(fields: list[str]) -> str | None:
    """Which field of a cron expression croniter refuses, with its range: each is tried alone."""
    named = (("second", "0-59"), *_FIELDS) if len(fields) == 6 else _FIELDS
    for i, (name, allowed) in enumerate(named):
        alone = ["*"] * len(fields)
        alone[i] = fields[i]
        try:
            croniter(" ".join(alone), dt.datetime(2000, 1, 1), second_at_beginning=len(fields) == 6)
        except (ValueError, KeyError):
            return (f"field {i + 1} ({name}) is '{fields[i]}'; it takes {allowed}, lists (1,15), ranges (1-5) "
                    "and steps (*/10)")
    return None


def parse_cron(expression: str, timezone: str = "UTC", *, path: str = "") -> Cron:
    """A checked Cron; ValidationError naming ``path``.cron or ``path``.timezone otherwise."""
    prefix = f"{path}." if path else ""
    problems = []
    fields = ALIASES.get(expression.strip().lower(), expression.strip())
    count = len(fields.split())
    if expression.strip().startswith("@") and expression.strip().lower() not in ALIASES:
        problems.append(Problem(f"{prefix}cron", f"unknown alias '{expression}'; one of: {', '.join(ALIASES)}"))
    elif count not in (5, 6):
        problems.append(Problem(f"{prefix}cron", f"'{expression}' has {count} fields; a cron expression has 5 "
                                                 "(minute hour day month weekday) or 6 (seconds first)"))
    else:
        try:
            croniter(fields, dt.datetime(2000, 1, 1), second_at_beginning=count == 6)
        except (ValueError, KeyError) as exc:
            problems.append(Problem(f"{prefix}cron", f"'{expression}' is not a valid cron expression: "
                                                     f"{_bad_field(fields.split()) or exc}"))
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(Problem(f"{prefix}timezone", f"'{timezone}' is not an IANA time zone (e.g. Europe/Paris)"))
    if problems:
        raise ValidationError(problems)
    return Cron(expression.strip(), timezone)
