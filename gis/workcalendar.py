"""Working calendar and case deadlines counted in working time (DOMAIN.md §4).

A case's time limit starts at dispatch (派遣) and is set per class in one of four units (``LIMIT_UNITS``):

* ``"working_minutes"`` and ``"working_hours"``: working time, counted only inside the working periods
  of working days (e.g. 08:30–12:00 and 13:00–17:30 on Monday to Friday in the seed);
* ``"working_days"``: N working days are N times the length of a *standard working day* of working time
  (see ``add_limit``);
* ``"calendar_hours"``: elapsed hours, day and night, holidays included (e.g. a burst pipe).

The calendar is data a city edits, never constants in code: the weekly ``working_period`` rows, plus
``calendar_day`` exceptions for public holidays (not working) and 调休 make-up days (a weekend day
worked). A make-up day borrows the periods of an ordinary working day, because the State Council's
notices make it a full working day although its own weekday has no working hours.

All instants are timezone-aware. Working periods are wall-clock times in the calendar's timezone
(Asia/Shanghai by default); durations are measured between UTC instants, so the arithmetic stays
right even for a timezone with daylight saving time. Results are rounded to the microsecond.

Errors are ``ValueError`` with a message naming the offending value, so a service can turn them into
an invalid-input error.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from types import MappingProxyType
from typing import Final, NamedTuple
from zoneinfo import ZoneInfo

__all__ = [
    "LIMIT_UNITS",
    "MAX_DAYS_WALKED",
    "WorkingCalendar",
    "add_limit",
    "working_minutes_between",
]

LIMIT_UNITS: Final = ("working_minutes", "working_hours", "working_days", "calendar_hours")
"""The units a time limit may be given in, as stored in ``time_limit_rule.unit``."""

MAX_DAYS_WALKED: Final = 3660
"""How many calendar days ``add_limit`` walks before giving up: no urban-management limit runs for
ten years, so walking further means the calendar has (almost) no working time left."""

_CHINA_STANDARD_TIME: Final = ZoneInfo("Asia/Shanghai")
_UTC: Final = dt.UTC
_ONE_DAY: Final = dt.timedelta(days=1)
_ONE_MINUTE: Final = dt.timedelta(minutes=1)
_ONE_HOUR: Final = dt.timedelta(hours=1)
_ZERO: Final = dt.timedelta(0)
_ORDINARY_WEEKDAYS: Final = (1, 2, 3, 4, 5)

_Period = tuple[dt.time, dt.time]
_Span = tuple[dt.datetime, dt.datetime]


class _DaySpans(NamedTuple):
    """The working periods of one date, cached: as the caller sees them and as UTC instants to measure."""

    local: tuple[_Span, ...]
    utc: tuple[_Span, ...]
    total: dt.timedelta


_NO_WORK: Final = _DaySpans((), (), _ZERO)


@dataclass(frozen=True)
class WorkingCalendar:
    """Weekly working periods plus dated exceptions (holidays and 调休 make-up days).

    Parameters
    ----------
    periods : Mapping[int, tuple[tuple[datetime.time, datetime.time], ...]]
        ISO weekday (1 = Monday .. 7 = Sunday) -> its working periods as naive wall-clock
        ``(start, end)`` times with ``start < end``. They are stored sorted; overlapping periods are an
        error. A weekday that is absent (or has no periods) is not a working day.
    exceptions : Mapping[datetime.date, bool]
        Date -> whether it is a working day, overriding the weekly pattern: ``False`` for a public
        holiday, ``True`` for a make-up working day.
    timezone : datetime.tzinfo
        The timezone the periods are wall-clock times in; Asia/Shanghai unless told otherwise.

    Raises
    ------
    ValueError
        If a weekday is outside 1..7, a period is not ``start < end`` or is timezone-aware, two periods
        of a weekday overlap, or an exception is not keyed by a plain date.

    Notes
    -----
    Both mappings are copied into read-only views, so the calendar cannot change under its own cache.
    The calendar compares by value but is not hashable (its fields are mappings); per-date periods are
    cached on the instance instead of in a global ``lru_cache``.
    """

    periods: Mapping[int, tuple[tuple[dt.time, dt.time], ...]]
    exceptions: Mapping[dt.date, bool]
    timezone: dt.tzinfo = _CHINA_STANDARD_TIME
    _day_cache: dict[dt.date, _DaySpans] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        periods = {weekday: _checked_periods(weekday, spans) for weekday, spans in self.periods.items()}
        exceptions = {_checked_exception_day(day): bool(working) for day, working in self.exceptions.items()}
        if not isinstance(self.timezone, dt.tzinfo):
            raise ValueError(f"timezone must be a datetime.tzinfo, got {self.timezone!r}")
        # The dataclass is frozen: object.__setattr__ is how a frozen dataclass normalises its own fields.
        object.__setattr__(self, "periods", MappingProxyType(dict(sorted(periods.items()))))
        object.__setattr__(self, "exceptions", MappingProxyType(exceptions))

    @classmethod
    def from_rows(
        cls,
        periods: Iterable[tuple[int, dt.time, dt.time]],
        exceptions: Iterable[tuple[dt.date, bool]],
        timezone: dt.tzinfo | None = None,
    ) -> WorkingCalendar:
        """Build a calendar from ``working_period`` and ``calendar_day`` rows.

        Parameters
        ----------
        periods : Iterable[tuple[int, datetime.time, datetime.time]]
            ``(weekday, start_time, end_time)`` rows, in any order.
        exceptions : Iterable[tuple[datetime.date, bool]]
            ``(day, is_working)`` rows.
        timezone : datetime.tzinfo or None
            The calendar's timezone; ``None`` means Asia/Shanghai.

        Returns
        -------
        WorkingCalendar

        Raises
        ------
        ValueError
            On a weekday outside 1..7, a period with ``start >= end``, overlapping periods on one
            weekday, or a date listed twice with different ``is_working``.
        """
        by_weekday: dict[int, list[_Period]] = {}
        for row in periods:
            weekday, start, end = row
            by_weekday.setdefault(_checked_weekday(weekday), []).append((start, end))
        working_by_day: dict[dt.date, bool] = {}
        for day, is_working in exceptions:
            if working_by_day.get(day, is_working) != is_working:
                raise ValueError(f"calendar day {day} is listed both as working and as not working")
            working_by_day[day] = is_working
        return cls(
            periods={weekday: tuple(spans) for weekday, spans in by_weekday.items()},
            exceptions=working_by_day,
            timezone=_CHINA_STANDARD_TIME if timezone is None else timezone,
        )

    @property
    def _standard_periods(self) -> tuple[_Period, ...]:
        # The first ordinary weekday that has periods defines a standard working day: it sizes
        # "working_days" limits and is what a make-up day borrows.
        for weekday in _ORDINARY_WEEKDAYS:
            if self.periods.get(weekday):
                return self.periods[weekday]
        return ()

    def is_working_day(self, day: dt.date) -> bool:
        """Whether ``day`` is worked: its exception if it has one, else whether its weekday has periods.

        Parameters
        ----------
        day : datetime.date

        Returns
        -------
        bool
        """
        working = self.exceptions.get(day)
        if working is not None:
            return working
        return bool(self.periods.get(day.isoweekday()))

    def periods_on(self, day: dt.date) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
        """The working periods of ``day`` as aware datetimes in the calendar's timezone.

        A non-working day (holiday, or a weekday without periods) has none. A working day uses its own
        weekday's periods; a make-up working day whose weekday has none (a 调休 Saturday or Sunday) uses
        the periods of the first weekday 1..5 that has periods, i.e. an ordinary working day's.

        Parameters
        ----------
        day : datetime.date

        Returns
        -------
        tuple[tuple[datetime.datetime, datetime.datetime], ...]
            ``(start, end)`` pairs in time order.
        """
        return self._spans_on(day).local

    def _spans_on(self, day: dt.date) -> _DaySpans:
        cached = self._day_cache.get(day)
        if cached is not None:
            return cached
        spans = self._compute_spans(day)
        self._day_cache[day] = spans
        return spans

    def _compute_spans(self, day: dt.date) -> _DaySpans:
        if not self.is_working_day(day):
            return _NO_WORK
        times = self.periods.get(day.isoweekday()) or self._standard_periods
        if not times:
            return _NO_WORK
        local = tuple(
            (
                dt.datetime.combine(day, start, tzinfo=self.timezone),
                dt.datetime.combine(day, end, tzinfo=self.timezone),
            )
            for start, end in times
        )
        utc = tuple((start.astimezone(_UTC), end.astimezone(_UTC)) for start, end in local)
        return _DaySpans(local, utc, sum((end - start for start, end in utc), _ZERO))

    def _require_working_time(self) -> None:
        if not any(self.periods.values()):
            raise ValueError(
                "the working calendar has no working periods at all: load the working_period rows first"
            )


def add_limit(
    calendar: WorkingCalendar, start: dt.datetime, amount: Decimal | float | int, unit: str
) -> dt.datetime:
    """The deadline of a time limit of ``amount`` ``unit`` counted from ``start``.

    Working time is consumed period by period, never minute by minute, so the cost is proportional to
    the number of days walked. A ``start`` outside working time begins counting at the next period
    start. A deadline that falls exactly at a period's end stays there (17:30, not the next morning).

    ``"working_days"`` counts working *time*, not dates: N working days are N times the length of a
    standard working day (the summed periods of the first weekday 1..5 that has periods; 8 h in the
    seed). So a case dispatched at 10:00 on a Friday with 1 working day is due at 10:00 on the next
    working day, one dispatched before opening is due at that day's closing time, and half a working
    day is half of that time. This keeps working days, hours and minutes on one scale, and it is what
    ``working_minutes_between`` measures when checking a case closed on time.

    Parameters
    ----------
    calendar : WorkingCalendar
    start : datetime.datetime
        The dispatch instant; must be timezone-aware (any timezone).
    amount : Decimal or float or int
        How many units; fractions allowed (``Decimal("0.5")`` working days). Must be finite and > 0.
    unit : str
        One of ``LIMIT_UNITS``.

    Returns
    -------
    datetime.datetime
        The deadline, aware, in ``calendar.timezone``.

    Raises
    ------
    ValueError
        If ``start`` is naive, ``amount`` is not a finite number > 0, ``unit`` is unknown, the
        calendar has no working periods (working units only), or no deadline falls within
        ``MAX_DAYS_WALKED`` days of ``start``.
    """
    _require_aware(start, "start")
    if unit not in LIMIT_UNITS:
        raise ValueError(f"unknown time-limit unit {unit!r}: expected one of {', '.join(LIMIT_UNITS)}")
    if unit == "calendar_hours":
        elapsed = _as_duration(amount, _ONE_HOUR, unit)
        try:
            # Through UTC: aware datetimes in one zone add wall-clock time, wrong across a DST change.
            return (start.astimezone(_UTC) + elapsed).astimezone(calendar.timezone)
        except OverflowError:
            raise ValueError(f"{amount} {unit} from {start.isoformat()} is past the last date") from None

    calendar._require_working_time()
    if unit == "working_days":
        standard_day = sum((_length(period) for period in calendar._standard_periods), _ZERO)
        if standard_day <= _ZERO:
            raise ValueError("no weekday 1..5 has working periods, so a working day has no length")
        remaining = _as_duration(amount, standard_day, unit)
    else:
        remaining = _as_duration(amount, _ONE_MINUTE if unit == "working_minutes" else _ONE_HOUR, unit)

    cursor = start.astimezone(_UTC)
    day = start.astimezone(calendar.timezone).date()
    for _ in range(MAX_DAYS_WALKED):
        spans = calendar._spans_on(day)
        if spans.utc:
            # A whole day still ahead that is not enough is skipped with one subtraction.
            if cursor <= spans.utc[0][0] and remaining > spans.total:
                remaining -= spans.total
            else:
                for period_start, period_end in spans.utc:
                    if period_end <= cursor:
                        continue
                    begin = max(period_start, cursor)
                    available = period_end - begin
                    # "<=": a deadline landing exactly on a period end is that end, not the next start.
                    if remaining <= available:
                        return (begin + remaining).astimezone(calendar.timezone)
                    remaining -= available
        day = _next_day(day)
    raise ValueError(
        f"no deadline for {amount} {unit} from {start.isoformat()} within {MAX_DAYS_WALKED} days: "
        "the amount is too large or the calendar has (almost) no working days"
    )


def working_minutes_between(calendar: WorkingCalendar, start: dt.datetime, end: dt.datetime) -> float:
    """Working time in minutes from ``start`` to ``end``; 0 if ``end <= start``.

    The inverse of ``add_limit`` for working units: ``working_minutes_between(c, s, add_limit(c, s, m,
    "working_minutes")) == m``. Used for handling time and for 按期 (on-time) checks.

    Parameters
    ----------
    calendar : WorkingCalendar
    start, end : datetime.datetime
        Timezone-aware instants (any timezone).

    Returns
    -------
    float
        Minutes of working time, fractional to the microsecond.

    Raises
    ------
    ValueError
        If either instant is naive, or the calendar has no working periods at all (a calendar that was
        never loaded would otherwise report every case as handled in 0 minutes).
    """
    _require_aware(start, "start")
    _require_aware(end, "end")
    calendar._require_working_time()
    if end <= start:
        return 0.0
    start_utc, end_utc = start.astimezone(_UTC), end.astimezone(_UTC)
    day = start.astimezone(calendar.timezone).date()
    last_day = end.astimezone(calendar.timezone).date()
    worked = _ZERO
    while day <= last_day:
        spans = calendar._spans_on(day)
        if spans.utc and start_utc <= spans.utc[0][0] and spans.utc[-1][1] <= end_utc:
            worked += spans.total
        else:
            for period_start, period_end in spans.utc:
                overlap = min(period_end, end_utc) - max(period_start, start_utc)
                if overlap > _ZERO:
                    worked += overlap
        day = _next_day(day)
    return worked / _ONE_MINUTE


def _checked_weekday(weekday: object) -> int:
    if isinstance(weekday, bool) or not isinstance(weekday, int) or not 1 <= weekday <= 7:
        raise ValueError(f"weekday must be an ISO weekday 1 (Monday) .. 7 (Sunday), got {weekday!r}")
    return weekday


def _checked_periods(weekday: int, periods: Iterable[_Period]) -> tuple[_Period, ...]:
    _checked_weekday(weekday)
    checked: list[_Period] = []
    for period in periods:
        start, end = period
        for value in (start, end):
            if not isinstance(value, dt.time):
                raise ValueError(f"weekday {weekday}: a period bound must be a datetime.time, got {value!r}")
            if value.tzinfo is not None:
                raise ValueError(
                    f"weekday {weekday}: period bound {value} must be a naive wall-clock time "
                    "(the calendar's timezone applies)"
                )
        if not start < end:
            raise ValueError(f"weekday {weekday}: period {start}-{end} must start before it ends")
        checked.append((start, end))
    checked.sort()
    for (_, earlier_end), (later_start, later_end) in itertools.pairwise(checked):
        # Touching periods (12:00-12:00) are allowed; only real overlap is ambiguous.
        if later_start < earlier_end:
            raise ValueError(
                f"weekday {weekday}: period {later_start}-{later_end} overlaps the period ending at "
                f"{earlier_end}"
            )
    return tuple(checked)


def _checked_exception_day(day: object) -> dt.date:
    # A datetime is a date subclass, but as a key it would never match the plain dates looked up.
    if isinstance(day, dt.datetime) or not isinstance(day, dt.date):
        raise ValueError(f"a calendar exception must be keyed by a datetime.date, got {day!r}")
    return day


def _require_aware(instant: dt.datetime, name: str) -> None:
    if not isinstance(instant, dt.datetime):
        raise ValueError(f"{name} must be a datetime.datetime, got {instant!r}")
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(
            f"{name} must be timezone-aware, got naive {instant.isoformat()}: "
            "attach the timezone it was recorded in (e.g. Asia/Shanghai)"
        )


def _as_duration(amount: object, unit_length: dt.timedelta, unit: str) -> dt.timedelta:
    # Decimal keeps Decimal("0.1") exact and shows a float's exact binary value; numpy scalars from a
    # data frame are accepted through the numbers ABCs.
    if isinstance(amount, bool) or not isinstance(amount, Decimal | numbers.Real):
        raise ValueError(f"a time-limit amount must be a number, got {amount!r}")
    if isinstance(amount, Decimal):
        value = amount
    elif isinstance(amount, numbers.Integral):
        value = Decimal(int(amount))
    else:
        as_float = float(amount)
        if not math.isfinite(as_float):
            raise ValueError(f"a time-limit amount must be finite, got {amount!r} {unit}")
        value = Decimal(as_float)
    if not value.is_finite():
        raise ValueError(f"a time-limit amount must be finite, got {amount!r} {unit}")
    if value <= 0:
        raise ValueError(f"a time-limit amount must be greater than 0, got {amount!r} {unit}")
    micros = value * (unit_length // dt.timedelta(microseconds=1))
    try:
        return dt.timedelta(microseconds=int(micros.to_integral_value(rounding=ROUND_HALF_EVEN)))
    except OverflowError:
        raise ValueError(f"a time-limit amount of {amount!r} {unit} is too large") from None


def _length(period: _Period) -> dt.timedelta:
    # A standard day's length is wall-clock: periods are the same every ordinary day.
    start, end = period
    return dt.datetime.combine(dt.date.min, end) - dt.datetime.combine(dt.date.min, start)


def _next_day(day: dt.date) -> dt.date:
    try:
        return day + _ONE_DAY
    except OverflowError:
        raise ValueError(f"the working calendar cannot be walked past {day}") from None
