"""Business hours: time zones, holidays, DST gaps and folds, next opening."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.routing.calendar import is_open, local_instant, next_close, next_open
from callcenter.routing.rules import Calendar

WEEKDAYS_9_18 = {d: "09:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")}


def cal(hours=None, holidays=(), tz="Europe/Berlin") -> Calendar:
    hours = WEEKDAYS_9_18 if hours is None else hours
    return Calendar.model_validate({"timezone": tz, "hours": hours, "holidays": list(holidays)})


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_same_utc_hour_is_open_in_summer_and_closed_in_winter() -> None:
    office = cal()
    # Friday 28 March 2025, CET (UTC+1): 08:30Z is 09:30 local
    assert is_open(office, utc(2025, 3, 28, 8, 30))
    assert not is_open(office, utc(2025, 3, 28, 7, 30))
    # Monday 31 March 2025, CEST (UTC+2): 07:30Z is 09:30 local, 06:30Z is 08:30
    assert is_open(office, utc(2025, 3, 31, 7, 30))
    assert not is_open(office, utc(2025, 3, 31, 6, 30))


def test_opening_is_inclusive_closing_exclusive() -> None:
    office = cal()
    berlin = office.zone
    assert is_open(office, datetime(2025, 6, 2, 9, 0, tzinfo=berlin))
    assert not is_open(office, datetime(2025, 6, 2, 8, 59, 59, tzinfo=berlin))
    assert is_open(office, datetime(2025, 6, 2, 17, 59, 59, 999999, tzinfo=berlin))
    assert not is_open(office, datetime(2025, 6, 2, 18, 0, tzinfo=berlin))


def test_any_input_zone_is_converted_first() -> None:
    office = cal()
    tokyo = timezone(timedelta(hours=9))
    # 17:30 Tokyo = 10:30 CEST on Monday 2 June 2025
    assert is_open(office, datetime(2025, 6, 2, 17, 30, tzinfo=tokyo))
    new_york = cal(tz="America/New_York")
    assert is_open(new_york, utc(2025, 6, 2, 14, 0))  # 10:00 EDT
    assert not is_open(new_york, utc(2025, 6, 2, 12, 0))  # 08:00 EDT


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        is_open(cal(), datetime(2025, 6, 2, 10, 0))


def test_weekends_and_holidays_are_closed_and_skipped() -> None:
    office = cal(holidays=["2025-12-24", "2025-12-25", "2025-12-26"])
    assert not is_open(office, utc(2025, 12, 24, 10, 0))  # a Wednesday, but a holiday
    assert not is_open(office, utc(2025, 12, 27, 10, 0))  # Saturday
    # Tuesday evening before Christmas: next opening is Monday 29 December 09:00 CET
    assert next_open(office, utc(2025, 12, 23, 19, 0)) == datetime(2025, 12, 29, 9, 0, tzinfo=office.zone)
    assert next_open(office, utc(2025, 12, 29, 8, 0)) == utc(2025, 12, 29, 8, 0)  # already open: now


def test_lunch_break_and_next_close() -> None:
    office = cal({"mon": ["09:00-12:00", "13:00-18:00"]})
    berlin = office.zone
    assert not is_open(office, datetime(2025, 6, 2, 12, 30, tzinfo=berlin))
    assert next_open(office, datetime(2025, 6, 2, 12, 30, tzinfo=berlin)) == datetime(2025, 6, 2, 13, 0, tzinfo=berlin)
    assert next_close(office, datetime(2025, 6, 2, 10, 0, tzinfo=berlin)) == datetime(2025, 6, 2, 12, 0, tzinfo=berlin)
    assert next_close(office, datetime(2025, 6, 2, 12, 30, tzinfo=berlin)) is None


def test_next_close_runs_through_midnight() -> None:
    office = cal({"mon": "00:00-24:00", "tue": "00:00-12:00"})
    berlin = office.zone
    assert is_open(office, datetime(2025, 6, 2, 23, 59, tzinfo=berlin))
    assert next_close(office, datetime(2025, 6, 2, 20, 0, tzinfo=berlin)) == datetime(2025, 6, 3, 12, 0, tzinfo=berlin)


def test_opening_inside_the_spring_forward_gap_opens_at_the_jump() -> None:
    # Sunday 30 March 2025 in Berlin: 02:00 CET jumps to 03:00 CEST (01:00Z); 02:30 never exists.
    night = cal({"sun": "02:30-04:00"})
    opening = next_open(night, utc(2025, 3, 29, 12, 0))
    assert opening == utc(2025, 3, 30, 1, 0)
    assert opening is not None and opening.astimezone(night.zone).hour == 3
    assert opening.tzinfo is UTC
    assert is_open(night, utc(2025, 3, 30, 1, 0))
    assert not is_open(night, utc(2025, 3, 30, 0, 59, 59))
    assert local_instant(datetime(2025, 3, 30).date(), 150, night.zone) == utc(2025, 3, 30, 1, 0)


def test_fall_back_fold_opens_at_the_first_occurrence_and_stays_wall_clock() -> None:
    # Sunday 26 October 2025 in Berlin: 02:00-03:00 happens twice (CEST, then CET).
    night = cal({"sun": "02:30-02:45"})
    assert next_open(night, utc(2025, 10, 25, 12, 0)) == utc(2025, 10, 26, 0, 30)  # 02:30 CEST
    assert is_open(night, utc(2025, 10, 26, 0, 35))  # 02:35 CEST
    assert is_open(night, utc(2025, 10, 26, 1, 35))  # 02:35 CET: the wall clock reads it again
    assert not is_open(night, utc(2025, 10, 26, 1, 0))  # 02:00 CET


def test_a_calendar_that_never_opens() -> None:
    assert next_open(cal({}), utc(2025, 6, 2, 10, 0)) is None
    days_1_28 = [f"2025-{m:02d}-{d:02d}" for m in range(1, 13) for d in range(1, 29)]
    # the first Monday not on days 1-28 is 31 March 2025 (09:00 CEST = 07:00Z)
    assert next_open(cal({"mon": "09:00-10:00"}, holidays=days_1_28), utc(2025, 1, 1, 0, 0)) == utc(2025, 3, 31, 7, 0)
    mondays = [datetime(2025, 1, 6) + timedelta(weeks=w) for w in range(110)]
    every_monday_off = cal({"mon": "09:00-10:00"}, holidays=[d.date().isoformat() for d in mondays])
    assert next_open(every_monday_off, utc(2025, 1, 1, 0, 0)) is None  # nothing within the horizon


@settings(max_examples=300, deadline=None)
@given(
    at=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
    tz=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"]),
    hours=st.sampled_from(
        [WEEKDAYS_9_18, {"sun": "02:30-04:00", "sat": "00:00-24:00"}, {"mon": ["01:00-02:15", "02:45-03:30"]}]
    ),
)
def test_next_open_is_open_and_nothing_opens_earlier(at: datetime, tz: str, hours: dict) -> None:
    c = cal(hours, holidays=["2025-12-25", "2026-01-01"], tz=tz)
    opening = next_open(c, at)
    assert opening is not None
    assert opening >= at
    assert is_open(c, opening)
    if opening > at:
        assert not is_open(c, at)
        assert not is_open(c, opening - timedelta(seconds=1))
        # sample the closed stretch: never open in between
        span = (opening - at).total_seconds()
        for k in range(1, 20):
            assert not is_open(c, at + timedelta(seconds=span * k / 20 - 1))
