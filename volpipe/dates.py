"""UTC dates and date ranges: one definition for the ingestor's daily files, the replay, the
comparison, the trainer, batch inference and the DAGs.

A range is inclusive of both dates, ``[start 00:00 UTC, end + 1 day 00:00 UTC)`` in epoch
nanoseconds. Everything is integer arithmetic on UTC days: no local time zone anywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools

NS_PER_DAY = 86_400 * 1_000_000_000
EPOCH = dt.date(1970, 1, 1)


def day_of_ns(ns: int) -> dt.date:
    """The UTC date of an epoch-nanosecond time."""
    return _epoch_day(ns // NS_PER_DAY)


@functools.lru_cache(maxsize=64)
def _epoch_day(days: int) -> dt.date:
    return EPOCH + dt.timedelta(days=days)


def file_stem(day: dt.date) -> str:
    """The stem (YYYYMMDD) of the ingestor's daily NDJSON file of ``day``."""
    return f"{day:%Y%m%d}"


def daily_file_stem(ns: int) -> str:
    """The daily NDJSON file stem of the UTC day of ``ns`` (a receipt time; the ingestor's hot path)."""
    return _stem(ns // NS_PER_DAY)


@functools.lru_cache(maxsize=64)
def _stem(days: int) -> str:
    return file_stem(_epoch_day(days))


@dataclasses.dataclass(frozen=True)
class DateRange:
    """UTC dates ``start`` to ``end``, both included."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")

    @property
    def bounds_ns(self) -> tuple[int, int]:
        """[start 00:00 UTC, end + 1 day 00:00 UTC) as epoch nanoseconds."""
        return (self.start - EPOCH).days * NS_PER_DAY, ((self.end - EPOCH).days + 1) * NS_PER_DAY

    def days(self, *, before: int = 0) -> list[dt.date]:
        """Every date of the range in order, preceded by ``before`` earlier days."""
        first = self.start - dt.timedelta(days=before)
        return [first + dt.timedelta(days=i) for i in range((self.end - first).days + 1)]

    def where_ns(self, column: str) -> str:
        """A SQL predicate selecting ``column`` (epoch ns) inside the range."""
        low, high = self.bounds_ns
        return f"{column} >= {low} AND {column} < {high}"

    def where_partitions(self, column: str = "date") -> str:
        """A SQL predicate selecting the range's days on a DATE partition column."""
        return f"{column} >= DATE'{self.start}' AND {column} <= DATE'{self.end}'"

    def __str__(self) -> str:
        return f"{self.start}..{self.end}"


def yesterday(today: dt.date | None = None) -> dt.date:
    """The UTC date before ``today`` (default: today in UTC)."""
    return (today or dt.datetime.now(dt.UTC).date()) - dt.timedelta(days=1)


def parse_range(start: str | dt.date | None, end: str | dt.date | None = None) -> DateRange:
    """A range from ISO dates (strings, as Airflow Params and flags give them); ``end`` defaults
    to ``start``, ``start`` to yesterday (UTC).

    Raises:
        ValueError: A date is malformed or the range runs backwards.
    """
    first = _date(start) if start else yesterday()
    return DateRange(first, _date(end) if end else first)


def _date(value: str | dt.date) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def optional_bounds_ns(start: dt.date | None, end: dt.date | None) -> tuple[int | None, int | None]:
    """``DateRange(start, end).bounds_ns``, or (None, None) when neither date is given (all data);
    a missing ``end`` is ``start`` and a missing ``start`` is ``end``.

    Raises:
        ValueError: ``end`` is before ``start``.
    """
    if start is None:
        return (None, None) if end is None else DateRange(end, end).bounds_ns
    return DateRange(start, end or start).bounds_ns


def add_range_flags(parser: argparse.ArgumentParser) -> None:
    """``--start``/``--end`` UTC dates (``--end`` defaults to ``--start``, ``--start`` to yesterday)."""
    parser.add_argument("--start", type=dt.date.fromisoformat, help="first UTC date, YYYY-MM-DD (default: yesterday)")
    parser.add_argument("--end", type=dt.date.fromisoformat, help="last UTC date (default: --start)")


def range_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> DateRange:
    """The range ``add_range_flags`` parsed; a backwards range is a usage error."""
    try:
        return parse_range(args.start, args.end)
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits
