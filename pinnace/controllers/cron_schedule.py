"""Cron schedules as the CronJob controller reads them (robfig/cron v3's
standard parser, which upstream uses): five fields or a descriptor, and the
next time a schedule fires after a given instant in a time zone.

Validation and its error messages live in pinnace.api.validation.cron; this
module expands a valid spec into sets and walks the calendar."""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pinnace.api.validation.cron import _BOUNDS, CronError, parse_standard

__all__ = ["CronError", "Schedule", "local_zone", "parse", "zone"]

DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
               "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
               "@hourly": "0 * * * *"}
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_YEARS = 5  # robfig gives up looking after five years (e.g. "0 0 30 2 *")


def _expand(field: str, lo: int, hi: int, names: dict[str, int]) -> tuple[set[int], bool]:
    """The values a valid field allows, and whether it starts with * or ?."""
    out: set[int] = set()
    for expr in field.split(","):
        range_step = expr.split("/")
        low_high = range_step[0].split("-")
        star = low_high[0] in ("*", "?")
        if star:
            start, end = lo, hi
        else:
            start = _num(low_high[0], names)
            end = _num(low_high[1], names) if len(low_high) == 2 else start
        step = 1
        if len(range_step) == 2:
            step = int(range_step[1])
            if not star and len(low_high) == 1:
                end = hi
        out.update(range(start, end + 1, step))
    return out, field.startswith(("*", "?"))


def _num(s: str, names: dict[str, int]) -> int:
    return names[s.lower()] if s.lower() in names else int(s)


def _duration(s: str) -> float:
    parts = re.findall(r"([0-9]+(\.[0-9]+)?)(ns|us|µs|ms|s|m|h)", s)
    return sum(float(n) * _UNITS[u] for n, _, u in parts)


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    dom: frozenset[int]
    months: frozenset[int]
    dow: frozenset[int]
    dom_star: bool
    dow_star: bool
    every: float = 0.0  # "@every <duration>": a constant delay instead

    def _day_matches(self, d: dt.date) -> bool:
        dom_ok = d.day in self.dom
        dow_ok = (d.isoweekday() % 7) in self.dow
        # robfig: when either field is unrestricted both must match, else either.
        if self.dom_star or self.dow_star:
            return dom_ok and dow_ok
        return dom_ok or dow_ok

    def next(self, after: dt.datetime, tz: dt.tzinfo) -> dt.datetime | None:
        """The first firing strictly after ``after`` (an aware datetime), in
        ``tz``; None when the schedule never fires within five years."""
        if self.every:
            step = max(round(self.every), 1)
            base = after.replace(microsecond=0)
            return base + dt.timedelta(seconds=step)
        local = after.astimezone(tz)
        start = local.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        day = start.date()
        hours = sorted(self.hours)
        minutes = sorted(self.minutes)
        for _ in range(366 * MAX_YEARS):
            if day.month in self.months and self._day_matches(day):
                for h in hours:
                    for m in minutes:
                        cand = dt.datetime(day.year, day.month, day.day, h, m, tzinfo=tz)
                        # Wall times skipped by a DST jump do not exist: skip them.
                        if cand.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) != \
                                cand.replace(tzinfo=None):
                            continue
                        if cand >= start:
                            return cand
            day += dt.timedelta(days=1)
        return None

    def fire_times(self, after: dt.datetime, until: dt.datetime, tz: dt.tzinfo,
                   limit: int) -> list[dt.datetime]:
        """Firings in (after, until], at most ``limit`` of them (the earliest)."""
        out: list[dt.datetime] = []
        t = self.next(after, tz)
        while t is not None and t <= until and len(out) < limit:
            out.append(t)
            t = self.next(t, tz)
        return out


def parse(spec: str) -> Schedule:
    """Parse a standard cron spec; raises CronError with robfig's message."""
    parse_standard(spec)
    spec = spec.strip()
    if spec.startswith(("TZ=", "CRON_TZ=")):
        spec = spec.partition(" ")[2].strip()
    if spec.startswith("@every "):
        return Schedule(frozenset(), frozenset(), frozenset(), frozenset(), frozenset(),
                        True, True, every=_duration(spec[len("@every "):]))
    spec = DESCRIPTORS.get(spec, spec)
    sets = [_expand(f, lo, hi, names) for f, (lo, hi, names) in zip(spec.split(), _BOUNDS,
                                                                     strict=True)]
    return Schedule(frozenset(sets[0][0]), frozenset(sets[1][0]), frozenset(sets[2][0]),
                    frozenset(sets[3][0]), frozenset(sets[4][0]), sets[2][1], sets[4][1])


def zone(name: str) -> dt.tzinfo:
    """A time zone by IANA name; raises CronError when unknown."""
    if name in ("", "Local"):
        return local_zone()
    if name == "UTC":
        return dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise CronError(f"unknown time zone {name}") from e


def local_zone() -> dt.tzinfo:
    """The controller's local zone (upstream schedules in time.Local without a timeZone)."""
    tz = os.environ.get("TZ")
    if tz:
        try:
            return ZoneInfo(tz.lstrip(":"))
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="Local")
    except OSError:
        return dt.UTC
