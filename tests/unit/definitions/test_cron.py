"""Cron expressions read in a time zone, across daylight-saving changes."""
from __future__ import annotations

import datetime as dt

import pytest

from orchestrator.definitions.cron import parse_cron
from orchestrator.errors import ValidationError

UTC = dt.UTC


def local(times: list[dt.datetime], zone: str) -> list[str]:
    from zoneinfo import ZoneInfo

    return [t.astimezone(ZoneInfo(zone)).strftime("%m-%d %H:%M:%S%z") for t in times]


def test_five_six_fields_and_aliases() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    assert local(parse_cron("*/15 9 * * 1-5").upcoming(start, 2), "UTC") == ["01-01 09:00:00+0000",
                                                                            "01-01 09:15:00+0000"]
    assert local(parse_cron("*/20 * * * * *").upcoming(start, 3), "UTC") == [
        "01-01 00:00:20+0000", "01-01 00:00:40+0000", "01-01 00:01:00+0000"]
    assert parse_cron("@hourly").next_after(start) == dt.datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert parse_cron("@weekly").next_after(start) == dt.datetime(2026, 1, 4, tzinfo=UTC)  # a Sunday


def test_a_time_skipped_in_spring_fires_as_if_the_clock_had_not_jumped() -> None:
    # New York, 2026-03-08: 02:00 EST becomes 03:00 EDT; 02:30 does not exist that night.
    cron = parse_cron("30 2 * * *", "America/New_York")
    fires = cron.upcoming(dt.datetime(2026, 3, 7, 12, tzinfo=UTC), 3)
    assert local(fires, "America/New_York") == ["03-08 03:30:00-0400", "03-09 02:30:00-0400",
                                                "03-10 02:30:00-0400"]
    assert fires[1] - fires[0] == dt.timedelta(hours=23)


def test_a_time_repeated_in_autumn_fires_once_at_its_first_occurrence() -> None:
    # Paris, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    cron = parse_cron("30 2 * * *", "Europe/Paris")
    fires = cron.upcoming(dt.datetime(2026, 10, 24, 12, tzinfo=UTC), 2)
    assert local(fires, "Europe/Paris") == ["10-25 02:30:00+0200", "10-26 02:30:00+0100"]
    hourly = parse_cron("0 * * * *", "Europe/Paris").between(
        dt.datetime(2026, 10, 24, 23, 30, tzinfo=UTC), dt.datetime(2026, 10, 25, 3, 30, tzinfo=UTC))
    assert local(hourly, "Europe/Paris") == ["10-25 02:00:00+0200", "10-25 03:00:00+0100", "10-25 04:00:00+0100"]


def test_the_zone_decides_the_hour() -> None:
    start = dt.datetime(2026, 5, 31, 12, tzinfo=UTC)
    assert parse_cron("0 9 * * *", "Asia/Tokyo").next_after(start) == dt.datetime(2026, 6, 1, 0, tzinfo=UTC)
    assert parse_cron("0 9 * * *", "America/Los_Angeles").next_after(start) == dt.datetime(2026, 5, 31, 16,
                                                                                            tzinfo=UTC)


@pytest.mark.parametrize(("cron", "zone", "path", "words"), [
    ("* * *", "UTC", "cron", "has 3 fields"),
    ("61 * * * *", "UTC", "cron", "not a valid cron expression"),
    ("* * * * * * *", "UTC", "cron", "has 7 fields"),
    ("@fortnightly", "UTC", "cron", "unknown alias"),
    ("* * * * *", "Mars/Olympus", "timezone", "not an IANA time zone"),
])
def test_bad_expressions_and_zones_name_the_field(cron, zone, path, words) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_cron(cron, zone)
    assert caught.value.problems[0].path == path and words in caught.value.problems[0].message
