"""Business hours: is a calendar open at an instant, and when does it open next.

Hours are local wall-clock time in the calendar's time zone; holidays are local dates. The
instant asked about may be in any zone (the PBX reports UTC): it is converted first, so the
same UTC instant is 09:30 in winter and 10:30 in summer in Berlin, as people expect.

Instants are returned in UTC (why): Python compares an ambiguous local time (the repeated hour
of a fall-back day) as unequal to every datetime of another zone, even the same instant (PEP
495), so a local result would surprise every caller comparing it. Display converts.

DST (why the care): on the spring-forward day a local time such as 02:30 does not exist; an
opening at 02:30 then means "as soon as the wall clock shows 02:30 or later", which is the
transition itself (03:00 CEST). On the fall-back day 02:30 happens twice; the calendar opens at
the first. ``is_open`` only ever compares wall-clock readings, so it agrees with both rules.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from callcenter.routing.rules import WEEKDAYS, Calendar, TimeRange

# A calendar with no opening in this many days is treated as never opening (all holidays).
HORIZON_DAYS = 400


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"an aware datetime is required, got {at!r}")
    return at


def _ranges(calendar: Calendar, day: date) -> tuple[TimeRange, ...]:
    if day in calendar.holidays:
        return ()
    return calendar.hours.get(WEEKDAYS[day.weekday()], ())  # type: ignore[call-overload]


def is_open(calendar: Calendar, at: datetime) -> bool:
    """Whether ``calendar`` is open at the instant ``at`` (aware datetime, any zone)."""
    local = _aware(at).astimezone(calendar.zone)
    minute = local.hour * 60 + local.minute + local.second / 60 + local.microsecond / 60e6
    return any(r.contains(minute) for r in _ranges(calendar, local.date()))


def local_instant(day: date, minute: int, zone: ZoneInfo) -> datetime:
    """The first instant (UTC) at which the wall clock in ``zone`` reads ``day`` ``minute``
    (after midnight, 0..1440) or later."""
    if minute >= 1440:
        return local_instant(day + timedelta(days=1), minute - 1440, zone)
    naive = datetime.combine(day, time(minute // 60, minute % 60))
    first = naive.replace(tzinfo=zone, fold=0)  # fold=0: the earlier of an ambiguous pair
    utc = first.astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) == naive:
        return utc
    # In a gap: fold=1 resolves with the offset after the jump (an instant before it), fold=0
    # with the offset before (an instant after it). The jump lies between; find it to the second.
    lo = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    hi = utc
    while (hi - lo) > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).replace(tzinfo=None) >= naive:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)


def next_open(calendar: Calendar, at: datetime) -> datetime | None:
    """``at`` itself if the calendar is open then, else the next opening instant (UTC), or
    None if it does not open within ``HORIZON_DAYS``."""
    if is_open(calendar, at):
        return at
    zone = calendar.zone
    start_day = at.astimezone(zone).date()
    for offset in range(HORIZON_DAYS + 1):
        day = start_day + timedelta(days=offset)
        for r in _ranges(calendar, day):
            candidate = local_instant(day, r.start, zone)
            if candidate > at:
                return candidate
    return None


def next_close(calendar: Calendar, at: datetime) -> datetime | None:
    """When (UTC) an open calendar closes next (None if it is closed at ``at``). A range ending at
    24:00 followed by one starting at 00:00 the next day is one opening."""
    if not is_open(calendar, at):
        return None
    zone = calendar.zone
    day = at.astimezone(zone).date()
    for _ in range(HORIZON_DAYS + 1):
        for r in _ranges(calendar, day):
            end = local_instant(day, r.end, zone)
            if end > at and not is_open(calendar, end):
                return end
        day += timedelta(days=1)
    return None
