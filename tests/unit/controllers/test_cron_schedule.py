"""Next firing times of cron schedules, as the CronJob controller computes them."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from pinnace.controllers.cron_schedule import CronError, parse, zone

UTC = dt.UTC


def at(*a: int, tz: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime(*a, tzinfo=tz)


def nexts(spec: str, start: dt.datetime, n: int = 3, tz: dt.tzinfo = UTC) -> list[dt.datetime]:
    s = parse(spec)
    out, t = [], start
    for _ in range(n):
        t = s.next(t, tz)
        out.append(t)
    return out


def test_every_minute_is_strictly_after() -> None:
    assert nexts("* * * * *", at(2024, 1, 1, 10, 0, 0)) == [
        at(2024, 1, 1, 10, 1), at(2024, 1, 1, 10, 2), at(2024, 1, 1, 10, 3)]
    assert parse("* * * * *").next(at(2024, 1, 1, 10, 0, 30), UTC) == at(2024, 1, 1, 10, 1)


def test_steps_ranges_lists_and_names() -> None:
    assert nexts("*/15 9-10 * * *", at(2024, 1, 1, 10, 40)) == [
        at(2024, 1, 1, 10, 45), at(2024, 1, 2, 9, 0), at(2024, 1, 2, 9, 15)]
    assert nexts("0 0 1 jan,jul *", at(2024, 2, 1), 2) == [at(2024, 7, 1), at(2025, 1, 1)]
    assert nexts("5/20 * * * *", at(2024, 1, 1, 0, 0), 3) == [
        at(2024, 1, 1, 0, 5), at(2024, 1, 1, 0, 25), at(2024, 1, 1, 0, 45)]


def test_day_of_month_or_day_of_week() -> None:
    # both restricted: either matches (the 13th, or any Friday)
    got = nexts("0 0 13 * fri", at(2024, 9, 1), 3)
    assert got == [at(2024, 9, 6), at(2024, 9, 13), at(2024, 9, 20)]
    # one is a star: both must match (Fridays only)
    assert nexts("0 0 * * 5", at(2024, 9, 1), 1) == [at(2024, 9, 6)]


def test_descriptors_and_every() -> None:
    assert nexts("@hourly", at(2024, 1, 1, 10, 30), 1) == [at(2024, 1, 1, 11)]
    assert nexts("@daily", at(2024, 1, 1, 10, 30), 1) == [at(2024, 1, 2)]
    assert nexts("@weekly", at(2024, 1, 1), 1) == [at(2024, 1, 7)]  # a Sunday
    assert nexts("@monthly", at(2024, 1, 15), 1) == [at(2024, 2, 1)]
    assert nexts("@yearly", at(2024, 1, 15), 1) == [at(2025, 1, 1)]
    assert nexts("@every 1m30s", at(2024, 1, 1), 2) == [at(2024, 1, 1, 0, 1, 30),
                                                         at(2024, 1, 1, 0, 3)]


def test_time_zone() -> None:
    ny = ZoneInfo("America/New_York")
    t = parse("0 9 * * *").next(at(2024, 6, 1, 12, 0), ny)  # 08:00 in New York
    assert t.astimezone(UTC) == at(2024, 6, 1, 13, 0)
    # 02:30 does not exist on the spring-forward day
    t = parse("30 2 * * *").next(at(2024, 3, 10, 0, 0, tz=ny), ny)
    assert t.replace(tzinfo=None) == dt.datetime(2024, 3, 11, 2, 30)
    with pytest.raises(CronError):
        zone("Mars/Olympus")


def test_impossible_and_invalid() -> None:
    assert parse("0 0 30 2 *").next(at(2024, 1, 1), UTC) is None
    with pytest.raises(CronError, match="expected exactly 5 fields"):
        parse("* * * *")
    with pytest.raises(CronError, match="above maximum"):
        parse("60 * * * *")
