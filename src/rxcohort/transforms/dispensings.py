"""The study's one pass over silver dispensings: only the rows and columns it can use."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from rxcohort.errors import ParameterError
from rxcohort.transforms.codes import starts_with_any_filter

STUDY_DISPENSING_COLUMNS = (
    "dispensing_id",
    "person_id",
    "dispense_date",
    "atc_code",
    "strength_mg",
    "packs",
    "ddd",
    "prescriber_id",
    "reimbursement_code",
)


def select_study_dispensings(
    dispensings: DataFrame,
    *,
    index_atc_prefixes: Sequence[str],
    index_from: date | None,
    other_atc_prefixes: Sequence[str],
    reimbursement_codes: Sequence[str],
    date_from: date,
    date_to: date,
) -> DataFrame:
    """Silver dispensings a study needs, with the columns the cohort engine reads.

    Not a ``require_*``: it records no attrition, it only narrows the scan. Kept rows:

    * the index drug's ATC prefixes from ``index_from`` (None: all earlier data, for a new-user
      look-back over the whole delivery) to ``date_to``;
    * ``other_atc_prefixes`` (drug groups, rule drug sets) and ``reimbursement_codes`` from
      ``date_from`` to ``date_to``.

    Returns and rows of other strengths are kept: consumption needs returns, and the index
    drug's strength rule is applied by its :class:`~rxcohort.cohort.DrugDefinition`.
    The conditions on ``dispense_year`` let Spark skip whole partitions, and the code and date
    conditions (plain comparisons, see :func:`starts_with_any_filter`) are pushed into the
    Parquet reader, which skips the row groups and pages that hold none of the study's codes.
    """
    if date_to < date_from:
        raise ParameterError("date_to is before date_from")
    day = F.col("dispense_date")
    index_rows = starts_with_any_filter("atc_code", index_atc_prefixes) & (day <= F.lit(date_to))
    if index_from is not None:
        index_rows = index_rows & (day >= F.lit(index_from))
    in_range = day.between(F.lit(date_from), F.lit(date_to))
    other: Column | None = None
    if other_atc_prefixes:
        other = starts_with_any_filter("atc_code", other_atc_prefixes)
    if reimbursement_codes:
        by_code = starts_with_any_filter("reimbursement_code", reimbursement_codes)
        other = by_code if other is None else other | by_code
    keep = index_rows if other is None else index_rows | (in_range & other)
    if "dispense_year" in dispensings.columns:
        year = F.col("dispense_year")
        years = year <= date_to.year
        if index_from is not None:
            years = years & (year >= min(date_from, index_from).year)
        keep = years & keep
    return dispensings.where(keep).select(*STUDY_DISPENSING_COLUMNS)


def select_cohort_dispensings(dispensings: DataFrame, cohort: DataFrame) -> DataFrame:
    """The rows of ``dispensings`` of the persons in ``cohort``, columns as they were.

    A study's steps read the dispensings of cohort persons only, and each step's cohort is a
    subset of the index cohort: narrowing the study's dispensings to the index cohort's persons
    once makes every later join small. The cohort is broadcast, as in each step.
    """
    persons = F.broadcast(cohort.select("person_id"))
    return dispensings.join(persons, "person_id", "left_semi").select(*dispensings.columns)
