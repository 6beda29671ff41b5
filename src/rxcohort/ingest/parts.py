"""Which parts of silver dispensings an incremental load rewrites: whole years, or months.

Silver dispensings are partitioned by ``dispense_year`` and, within a year, written one file
(or more) per month of ``dispense_date`` (:data:`FILE_MONTH`). A load rewrites the whole year
of each changed file - every row of the file is delivered again, under a new load id - but in
the other years only the months where a row's verdict or content really changed: a corrected
December reaches the next January through the returns that net against it, and rewriting the
eleven other months would cost most of that year's rows for a handful of changed ones.

A month is rewritten by replacing the files that hold its rows. A file may span more than one
month (a table written before this layout spans its year in one), so the months to rewrite
are closed over the files (:func:`close_months`): every file holding a row of a rewritten
month is replaced, and every month of a replaced file is rewritten. Then the rows of the
rewritten months are exactly the rows of the replaced files, which is what lets a load select
them by date and replace them by file.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from pyspark.sql import Column
from pyspark.sql import functions as F

from rxcohort.io import DataFile

# The column silver dispensings' files are split by within a year (not stored in the table).
FILE_MONTH = "file_month"
YEAR, DATE = "dispense_year", "dispense_date"
ALL_MONTHS = frozenset(range(1, 13))


def file_month() -> Column:
    """The month a silver dispensing row's file is written for."""
    return F.month(F.col(DATE))


def months_of(file: DataFile) -> frozenset[int]:
    """The months of its year a file may hold rows of (all of them when the log does not
    tell: no statistics, or rows without a date)."""
    low, high = file.minimum.get(DATE), file.maximum.get(DATE)
    if not isinstance(low, date) or not isinstance(high, date) or file.nulls.get(DATE):
        return ALL_MONTHS
    year = file.partition_values.get(YEAR)
    if year is None or low.year != high.year or str(low.year) != year:
        return ALL_MONTHS
    return frozenset(range(low.month, high.month + 1))


def close_months(
    files: Iterable[DataFile], months: Iterable[int]
) -> tuple[frozenset[int], list[str]]:
    """The months to rewrite so that ``months`` are, and the files to replace: the least set
    of months holding ``months`` such that every file holding a row of one of them holds rows
    of none other (``files``: one year's)."""
    spans = [(f.path, months_of(f)) for f in files]
    covered = frozenset(months)
    while True:
        replaced = [(path, span) for path, span in spans if span & covered]
        wider = covered.union(*(span for _, span in replaced))
        if wider == covered:
            return covered, [path for path, _ in replaced]
        covered = wider


@dataclass(frozen=True)
class RewrittenParts:
    """What an incremental load rewrites in silver dispensings: ``years`` whole, and in
    ``months`` (year -> months) only those months; ``files``, the files they replace."""

    years: frozenset[int]
    months: Mapping[int, frozenset[int]] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    @property
    def all_years(self) -> list[int]:
        return sorted(self.years | set(self.months))

    def condition(self) -> Column:
        """True for a silver row (``dispense_year``, ``dispense_date``) of a rewritten part;
        written with the dates' bounds so that a reader skips the other files."""
        whole = F.col(YEAR).isin(*sorted(self.years)) if self.years else F.lit(False)
        for year, months in sorted(self.months.items()):
            for first, last in _runs(sorted(months)):
                start = date(year, first, 1)
                end = date(year, last, calendar.monthrange(year, last)[1])
                whole = whole | (
                    (F.col(YEAR) == year)
                    & (F.col(DATE) >= F.lit(start))
                    & (F.col(DATE) <= F.lit(end))
                )
        return whole

    def describe(self) -> str:
        """The parts in words: ``2014, 2015 (January)``."""
        out = []
        for year in self.all_years:
            if year in self.years:
                out.append(str(year))
            else:
                names = ", ".join(calendar.month_name[m] for m in sorted(self.months[year]))
                out.append(f"{year} ({names})")
        return ", ".join(out)


def _runs(months: list[int]) -> list[tuple[int, int]]:
    """Consecutive months as (first, last) runs."""
    runs: list[tuple[int, int]] = []
    for m in months:
        if runs and runs[-1][1] == m - 1:
            runs[-1] = (runs[-1][0], m)
        else:
            runs.append((m, m))
    return runs


def plan_parts(
    *,
    whole_years: Iterable[int],
    changed_months: Iterable[tuple[int, int]],
    files: Iterable[DataFile],
) -> RewrittenParts:
    """The parts to rewrite: ``whole_years``, and the (year, month) pairs of
    ``changed_months`` in other years, closed over the table's ``files``."""
    years = frozenset(whole_years)
    wanted: dict[int, set[int]] = {}
    for year, month in changed_months:
        if year not in years:
            wanted.setdefault(year, set()).add(month)
    by_year: dict[int, list[DataFile]] = {}
    for f in files:
        value = f.partition_values.get(YEAR)
        if value is not None:
            by_year.setdefault(int(value), []).append(f)
    months: dict[int, frozenset[int]] = {}
    replaced = [
        f.path
        for f in files
        if f.partition_values.get(YEAR) is not None and int(f.partition_values[YEAR]) in years
    ]
    for year, asked in sorted(wanted.items()):
        covered, paths = close_months(by_year.get(year, []), asked)
        if covered == ALL_MONTHS:
            years = years | {year}
            replaced += [f.path for f in by_year.get(year, [])]
        else:
            months[year] = covered
            replaced += paths
    return RewrittenParts(years=years, months=months, files=tuple(sorted(set(replaced))))
