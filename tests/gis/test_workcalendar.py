"""Tests for gis.workcalendar: working periods, holidays and 调休, deadlines and handling time.

The calendar is built from the rows the seed migration inserts (0003_seed_reference_data): Monday to
Friday 08:30-12:00 and 13:00-17:30 (8 working hours), 2026 National Day Oct 1-7 off, and the make-up
working days Sunday 2026-09-20 and Saturday 2026-10-10.
"""

from __future__ import annotations

import datetime as dt
import importlib
import random
import re
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from gis.workcalendar import (
    LIMIT_UNITS,
    MAX_DAYS_WALKED,
    WorkingCalendar,
    add_limit,
    working_minutes_between,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
seed = importlib.import_module("migrations.versions.0003_seed_reference_data")

SEED_CALENDAR = WorkingCalendar.from_rows(
    seed.WORKING_PERIODS,
    [(day, False) for day, _name in seed.HOLIDAYS_2025 + seed.HOLIDAYS_2026]
    + [(day, True) for day in seed.MAKEUP_2025 + seed.MAKEUP_2026],
)

# Dates the tests lean on, checked once here so a wrong weekday fails loudly instead of confusing a test.
MONDAY = dt.date(2026, 3, 2)
FRIDAY = dt.date(2026, 3, 6)
SATURDAY = dt.date(2026, 3, 7)
NEXT_MONDAY = dt.date(2026, 3, 9)
EVE_OF_NATIONAL_DAY = dt.date(2026, 9, 30)  # Wednesday
NATIONAL_DAY = [dt.date(2026, 10, day) for day in range(1, 8)]
DAY_AFTER_NATIONAL_DAY = dt.date(2026, 10, 8)  # Thursday
MAKEUP_SUNDAY = dt.date(2026, 9, 20)
MAKEUP_SATURDAY = dt.date(2026, 10, 10)


def at(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    """An aware Beijing-time instant on ``day``."""
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=SHANGHAI)


def calendar_with(periods: dict[int, tuple[tuple[dt.time, dt.time], ...]]) -> WorkingCalendar:
    return WorkingCalendar(periods=periods, exceptions={})


def test_the_dates_used_have_the_weekdays_the_tests_assume() -> None:
    assert [d.isoweekday() for d in (MONDAY, FRIDAY, SATURDAY, NEXT_MONDAY)] == [1, 5, 6, 1]
    assert EVE_OF_NATIONAL_DAY.isoweekday() == 3
    assert DAY_AFTER_NATIONAL_DAY.isoweekday() == 4
    assert (MAKEUP_SUNDAY.isoweekday(), MAKEUP_SATURDAY.isoweekday()) == (7, 6)
    assert {day for day, _name in seed.HOLIDAYS_2026} >= set(NATIONAL_DAY)
    assert {MAKEUP_SUNDAY, MAKEUP_SATURDAY} <= set(seed.MAKEUP_2026)


# ------------------------------------------------------------------------------------ the calendar


def test_from_rows_groups_and_sorts_periods_by_weekday() -> None:
    calendar = WorkingCalendar.from_rows(
        [(2, dt.time(13), dt.time(17)), (2, dt.time(8), dt.time(12)), (1, dt.time(9), dt.time(10))], []
    )
    assert dict(calendar.periods) == {
        1: ((dt.time(9), dt.time(10)),),
        2: ((dt.time(8), dt.time(12)), (dt.time(13), dt.time(17))),
    }
    assert calendar.timezone is SHANGHAI


def test_working_days_follow_weekdays_holidays_and_makeup_days() -> None:
    assert SEED_CALENDAR.is_working_day(MONDAY)
    assert not SEED_CALENDAR.is_working_day(SATURDAY)
    assert not any(SEED_CALENDAR.is_working_day(day) for day in NATIONAL_DAY)
    assert SEED_CALENDAR.is_working_day(MAKEUP_SUNDAY)
    assert SEED_CALENDAR.is_working_day(MAKEUP_SATURDAY)
    assert not SEED_CALENDAR.is_working_day(dt.date(2026, 10, 11))  # the Sunday after is an ordinary one


def test_periods_on_a_working_day_are_aware_beijing_times() -> None:
    assert SEED_CALENDAR.periods_on(MONDAY) == (
        (at(MONDAY, 8, 30), at(MONDAY, 12)),
        (at(MONDAY, 13), at(MONDAY, 17, 30)),
    )
    assert all(start.tzinfo is SHANGHAI for start, _end in SEED_CALENDAR.periods_on(MONDAY))


def test_a_non_working_day_has_no_periods() -> None:
    assert SEED_CALENDAR.periods_on(SATURDAY) == ()
    assert SEED_CALENDAR.periods_on(dt.date(2026, 10, 1)) == ()


def test_a_makeup_weekend_day_borrows_an_ordinary_days_periods() -> None:
    assert SEED_CALENDAR.periods_on(MAKEUP_SATURDAY) == (
        (at(MAKEUP_SATURDAY, 8, 30), at(MAKEUP_SATURDAY, 12)),
        (at(MAKEUP_SATURDAY, 13), at(MAKEUP_SATURDAY, 17, 30)),
    )


def test_a_makeup_day_borrows_the_first_weekday_that_has_periods() -> None:
    # Monday has none here, so Tuesday's periods are the standard working day.
    calendar = WorkingCalendar(
        periods={2: ((dt.time(9), dt.time(11)),), 3: ((dt.time(14), dt.time(15)),)},
        exceptions={SATURDAY: True},
    )
    assert calendar.periods_on(SATURDAY) == ((at(SATURDAY, 9), at(SATURDAY, 11)),)


def test_the_calendar_copies_its_inputs() -> None:
    periods = {1: ((dt.time(9), dt.time(17)),)}
    exceptions = {MONDAY: False}
    calendar = WorkingCalendar(periods=periods, exceptions=exceptions)
    periods[2] = ((dt.time(9), dt.time(17)),)
    exceptions[MONDAY] = True
    assert 2 not in calendar.periods
    assert not calendar.is_working_day(MONDAY)
    assert calendar == WorkingCalendar(periods={1: ((dt.time(9), dt.time(17)),)}, exceptions={MONDAY: False})


# ------------------------------------------------------------------------------- working minutes


def test_within_one_period() -> None:
    assert add_limit(SEED_CALENDAR, at(MONDAY, 9), 30, "working_minutes") == at(MONDAY, 9, 30)


def test_spanning_the_lunch_break() -> None:
    assert add_limit(SEED_CALENDAR, at(MONDAY, 11, 30), 60, "working_minutes") == at(MONDAY, 13, 30)


def test_starting_before_opening_counts_from_opening() -> None:
    assert add_limit(SEED_CALENDAR, at(MONDAY, 7), 60, "working_minutes") == at(MONDAY, 9, 30)


def test_starting_in_the_lunch_break_counts_from_the_afternoon() -> None:
    assert add_limit(SEED_CALENDAR, at(MONDAY, 12, 15), 30, "working_minutes") == at(MONDAY, 13, 30)


def test_starting_after_closing_counts_from_the_next_morning() -> None:
    tuesday = MONDAY + dt.timedelta(days=1)
    assert add_limit(SEED_CALENDAR, at(MONDAY, 18), 30, "working_minutes") == at(tuesday, 9)


def test_starting_on_a_saturday_counts_from_monday() -> None:
    assert add_limit(SEED_CALENDAR, at(SATURDAY, 10), 60, "working_minutes") == at(NEXT_MONDAY, 9, 30)


def test_across_a_weekend() -> None:
    assert add_limit(SEED_CALENDAR, at(FRIDAY, 17), 60, "working_minutes") == at(NEXT_MONDAY, 9)


def test_across_the_national_day_holiday() -> None:
    deadline = add_limit(SEED_CALENDAR, at(EVE_OF_NATIONAL_DAY, 17), 60, "working_minutes")
    assert deadline == at(DAY_AFTER_NATIONAL_DAY, 9)


def test_a_makeup_saturday_counts() -> None:
    friday = MAKEUP_SATURDAY - dt.timedelta(days=1)
    assert add_limit(SEED_CALENDAR, at(friday, 17), 60, "working_minutes") == at(MAKEUP_SATURDAY, 9)


def test_a_makeup_sunday_counts() -> None:
    saturday = MAKEUP_SUNDAY - dt.timedelta(days=1)
    assert add_limit(SEED_CALENDAR, at(saturday, 10), 30, "working_minutes") == at(MAKEUP_SUNDAY, 9)


def test_a_deadline_exactly_at_a_period_end_stays_there() -> None:
    assert add_limit(SEED_CALENDAR, at(MONDAY, 11, 30), 30, "working_minutes") == at(MONDAY, 12)
    assert add_limit(SEED_CALENDAR, at(FRIDAY, 17), 30, "working_minutes") == at(FRIDAY, 17, 30)


def test_starting_exactly_at_a_period_end_counts_from_the_next_period() -> None:
    assert add_limit(SEED_CALENDAR, at(MONDAY, 12), 30, "working_minutes") == at(MONDAY, 13, 30)


def test_working_hours_are_sixty_working_minutes() -> None:
    assert add_limit(SEED_CALENDAR, at(MONDAY, 11), 4, "working_hours") == at(MONDAY, 16)
    # 1.5 h left on Friday, the last half hour on Monday morning.
    assert add_limit(SEED_CALENDAR, at(FRIDAY, 16), 2, "working_hours") == at(NEXT_MONDAY, 9)


def test_start_in_another_timezone_gives_a_beijing_deadline() -> None:
    start = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)  # 09:00 in Beijing
    deadline = add_limit(SEED_CALENDAR, start, 30, "working_minutes")
    assert deadline == at(MONDAY, 9, 30)
    assert deadline.tzinfo is SHANGHAI


# ---------------------------------------------------------------------------------- working days


def test_one_working_day_from_friday_morning_is_due_at_the_same_time_next_working_day() -> None:
    assert add_limit(SEED_CALENDAR, at(FRIDAY, 10), 1, "working_days") == at(NEXT_MONDAY, 10)


def test_a_working_day_dispatched_before_opening_ends_at_that_days_closing() -> None:
    assert add_limit(SEED_CALENDAR, at(MONDAY, 7), 1, "working_days") == at(MONDAY, 17, 30)


def test_street_lamp_two_working_days_across_national_day() -> None:
    # 6.5 h left on Sep 30, 8 h on Oct 8, then 1.5 h on Oct 9.
    deadline = add_limit(SEED_CALENDAR, at(EVE_OF_NATIONAL_DAY, 10), 2, "working_days")
    assert deadline == at(dt.date(2026, 10, 9), 10)


def test_working_days_are_sized_by_the_standard_day() -> None:
    calendar = calendar_with({1: ((dt.time(9), dt.time(12)),), 2: ((dt.time(9), dt.time(17)),)})
    # Monday's 3 hours are the standard working day, so 1 working day on Tuesday is 3 hours.
    tuesday = MONDAY + dt.timedelta(days=1)
    assert add_limit(calendar, at(tuesday, 9), 1, "working_days") == at(tuesday, 12)


# ------------------------------------------------------------------------- calendar hours, fractions


def test_calendar_hours_ignore_the_calendar() -> None:
    start = at(dt.date(2026, 10, 3), 23)  # a holiday Saturday, at night
    assert add_limit(SEED_CALENDAR, start, 2, "calendar_hours") == at(dt.date(2026, 10, 4), 1)
    empty = WorkingCalendar.from_rows([], [])
    assert add_limit(empty, start, Decimal("1.5"), "calendar_hours") == at(dt.date(2026, 10, 4), 0, 30)


def test_half_a_working_day_spans_lunch() -> None:
    assert add_limit(SEED_CALENDAR, at(MONDAY, 8, 30), Decimal("0.5"), "working_days") == at(MONDAY, 13, 30)


def test_fractional_hours_and_minutes() -> None:
    assert add_limit(SEED_CALENDAR, at(MONDAY, 11), 1.5, "working_hours") == at(MONDAY, 13, 30)
    assert add_limit(SEED_CALENDAR, at(MONDAY, 9), Decimal("0.25"), "working_minutes") == at(MONDAY, 9, 0, 15)


# ----------------------------------------------------------------------- working_minutes_between


@pytest.mark.parametrize(
    ("start", "end", "minutes"),
    [
        (at(MONDAY, 9), at(MONDAY, 10), 60.0),
        (at(MONDAY, 11), at(MONDAY, 14), 120.0),
        (at(MONDAY, 0), at(NEXT_MONDAY, 0), 5 * 480.0),
        (at(FRIDAY, 17), at(NEXT_MONDAY, 9), 60.0),
        (at(EVE_OF_NATIONAL_DAY, 17), at(DAY_AFTER_NATIONAL_DAY, 9), 60.0),
        (at(SATURDAY, 8), at(SATURDAY, 18), 0.0),
        (at(MONDAY, 10), at(MONDAY, 9), 0.0),
        (at(MONDAY, 10), at(MONDAY, 10), 0.0),
        (at(MONDAY, 9), at(MONDAY, 9, 0, 30), 0.5),
    ],
)
def test_working_minutes_between(start: dt.datetime, end: dt.datetime, minutes: float) -> None:
    assert working_minutes_between(SEED_CALENDAR, start, end) == minutes


def test_working_minutes_between_inverts_add_limit_for_random_starts_and_amounts() -> None:
    rng = random.Random(20261001)
    year_start = at(dt.date(2026, 1, 1), 0)
    for _ in range(2000):
        start = year_start + dt.timedelta(seconds=rng.randrange(365 * 24 * 3600))
        minutes = rng.randint(1, 5000)
        deadline = add_limit(SEED_CALENDAR, start, minutes, "working_minutes")
        assert working_minutes_between(SEED_CALENDAR, start, deadline) == minutes, start
        # A deadline always falls inside (or at the end of) a working period, never in the night.
        periods = SEED_CALENDAR.periods_on(deadline.date())
        assert any(begin < deadline <= end for begin, end in periods), (start, minutes, deadline)

        hundredths = Decimal(rng.randint(1, 500_000)) / 100
        deadline = add_limit(SEED_CALENDAR, start, hundredths, "working_minutes")
        assert working_minutes_between(SEED_CALENDAR, start, deadline) == float(hundredths), start

        days = rng.randint(1, 10)
        deadline = add_limit(SEED_CALENDAR, start, days, "working_days")
        assert working_minutes_between(SEED_CALENDAR, start, deadline) == days * 480, start


# ------------------------------------------------------------------------------------ bad inputs


def test_a_naive_start_is_rejected() -> None:
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        add_limit(SEED_CALENDAR, dt.datetime(2026, 3, 2, 9), 30, "working_minutes")
    with pytest.raises(ValueError, match="end must be timezone-aware"):
        working_minutes_between(SEED_CALENDAR, at(MONDAY, 9), dt.datetime(2026, 3, 2, 10))


@pytest.mark.parametrize(
    "amount", [0, -1, Decimal("-0.5"), Decimal(0), -2.5, float("nan"), float("inf"), Decimal("NaN")]
)
def test_an_amount_that_is_not_positive_and_finite_is_rejected(amount: Decimal | float | int) -> None:
    with pytest.raises(ValueError, match="time-limit amount must be"):
        add_limit(SEED_CALENDAR, at(MONDAY, 9), amount, "working_minutes")


@pytest.mark.parametrize("amount", [True, "30", None])
def test_an_amount_that_is_not_a_number_is_rejected(amount: object) -> None:
    with pytest.raises(ValueError, match="must be a number"):
        add_limit(SEED_CALENDAR, at(MONDAY, 9), amount, "working_minutes")  # type: ignore[arg-type]


def test_an_unknown_unit_is_rejected_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown time-limit unit 'days'") as raised:
        add_limit(SEED_CALENDAR, at(MONDAY, 9), 1, "days")
    assert all(unit in str(raised.value) for unit in LIMIT_UNITS)


def test_overlapping_periods_are_rejected() -> None:
    rows = [(1, dt.time(8), dt.time(12)), (1, dt.time(11), dt.time(13))]
    with pytest.raises(ValueError, match=r"weekday 1: period 11:00:00-13:00:00 overlaps"):
        WorkingCalendar.from_rows(rows, [])


def test_touching_periods_are_allowed() -> None:
    calendar = WorkingCalendar.from_rows([(1, dt.time(8), dt.time(12)), (1, dt.time(12), dt.time(13))], [])
    assert add_limit(calendar, at(MONDAY, 11), 90, "working_minutes") == at(MONDAY, 12, 30)


@pytest.mark.parametrize("weekday", [0, 8, True])
def test_a_weekday_outside_iso_range_is_rejected(weekday: int) -> None:
    with pytest.raises(ValueError, match=re.escape("ISO weekday 1 (Monday) .. 7 (Sunday)")):
        WorkingCalendar.from_rows([(weekday, dt.time(8), dt.time(12))], [])


def test_a_period_that_does_not_start_before_it_ends_is_rejected() -> None:
    with pytest.raises(ValueError, match="must start before it ends"):
        WorkingCalendar.from_rows([(1, dt.time(12), dt.time(12))], [])
    with pytest.raises(ValueError, match="must start before it ends"):
        calendar_with({1: ((dt.time(17), dt.time(8)),)})


def test_an_aware_period_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="naive wall-clock time"):
        calendar_with({1: ((dt.time(8, tzinfo=dt.UTC), dt.time(12, tzinfo=dt.UTC)),)})


def test_a_day_listed_as_both_working_and_not_is_rejected() -> None:
    with pytest.raises(ValueError, match="listed both as working and as not working"):
        WorkingCalendar.from_rows(seed.WORKING_PERIODS, [(MONDAY, True), (MONDAY, False)])


def test_an_exception_keyed_by_a_datetime_is_rejected() -> None:
    with pytest.raises(ValueError, match=re.escape("keyed by a datetime.date")):
        WorkingCalendar(periods={}, exceptions={at(MONDAY, 0): False})


def test_an_empty_calendar_is_rejected_instead_of_looping() -> None:
    empty = WorkingCalendar.from_rows([], [])
    with pytest.raises(ValueError, match="no working periods at all"):
        add_limit(empty, at(MONDAY, 9), 30, "working_minutes")
    with pytest.raises(ValueError, match="no working periods at all"):
        working_minutes_between(empty, at(MONDAY, 9), at(MONDAY, 10))


def test_working_days_need_an_ordinary_weekday_with_periods() -> None:
    weekends_only = calendar_with({6: ((dt.time(9), dt.time(17)),)})
    assert add_limit(weekends_only, at(MONDAY, 9), 60, "working_minutes") == at(SATURDAY, 10)
    with pytest.raises(ValueError, match=re.escape("no weekday 1..5 has working periods")):
        add_limit(weekends_only, at(MONDAY, 9), 1, "working_days")


def test_the_day_walk_is_bounded() -> None:
    with pytest.raises(ValueError, match=f"within {MAX_DAYS_WALKED} days"):
        add_limit(SEED_CALENDAR, at(MONDAY, 9), 10**6, "working_days")
    # Every working day of the next eleven years is a holiday: no deadline, and no endless loop.
    mondays = [MONDAY + dt.timedelta(weeks=n) for n in range(11 * 53)]
    all_off = WorkingCalendar(
        periods={1: ((dt.time(9), dt.time(17)),)}, exceptions=dict.fromkeys(mondays, False)
    )
    with pytest.raises(ValueError, match=re.escape("calendar has (almost) no working days")):
        add_limit(all_off, at(MONDAY, 9), 1, "working_minutes")
