"""Person attributes and the inclusion/exclusion criteria applied after the index date is set."""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from rxcohort.cohort.attrition import Cohort
from rxcohort.contract import SEX_CODES
from rxcohort.errors import ParameterError
from rxcohort.transforms.codes import describe_codes, starts_with_any_filter
from rxcohort.transforms.drugs import describe_days

FollowUpEvent = Literal["death", "emigration"]
_EVENT_COLUMNS: dict[str, str] = {"death": "death_date", "emigration": "emigration_date"}


def add_person_attributes(cohort: DataFrame, persons: DataFrame) -> DataFrame:
    """Add sex, birth_year, death_date, emigration_date and age_at_index from ``persons``.

    Age at index is the index year minus the birth year (NorPD gives birth year only), so it
    can be one year more than the exact age. A person missing from ``persons`` keeps nulls.
    """
    attributes = persons.select(
        "person_id", "sex", "birth_year", "death_date", "emigration_date"
    ).join(F.broadcast(cohort.select("person_id")), "person_id", "left_semi")
    return cohort.join(attributes, "person_id", "left").withColumn(
        "age_at_index", (F.year("index_date") - F.col("birth_year")).cast("int")
    )


def require_follow_up(
    cohort: Cohort,
    *,
    days: int,
    events: Sequence[FollowUpEvent] = ("death", "emigration"),
) -> Cohort:
    """Exclude persons with an event (death, emigration) before index + ``days``.

    An event on day index + ``days`` or later keeps the person; the cohort needs the
    death_date / emigration_date columns of :func:`add_person_attributes`.
    """
    if days < 0:
        raise ParameterError("follow-up days must be >= 0")
    if not events:
        raise ParameterError("require_follow_up needs at least one event")
    limit = F.date_add("index_date", days)
    early = [F.coalesce(F.col(_EVENT_COLUMNS[e]) < limit, F.lit(False)) for e in events]
    any_early = early[0]
    for condition in early[1:]:
        any_early = any_early | condition
    criterion = f"full follow-up: no {' or '.join(events)} before index + {days} days"
    return cohort.require(cohort.frame.where(~any_early), criterion=criterion)


def require_drug_use(
    cohort: Cohort,
    dispensings: DataFrame,
    *,
    name: str,
    atc_prefixes: Sequence[str],
    window: tuple[int, int],
    min_count: int = 1,
    drug_label: str | None = None,
    exclude: bool = False,
) -> Cohort:
    """Keep persons with at least ``min_count`` dispensings (packs > 0) of ``atc_prefixes`` in
    ``window`` (days from index, both ends included); with ``exclude``, remove them instead."""
    rule = _DispensingRule(atc_prefixes=tuple(atc_prefixes), drug_label=drug_label)
    return _require_dispensings(cohort, dispensings, name, rule, window, min_count, exclude)


def require_reimbursement_code(
    cohort: Cohort,
    dispensings: DataFrame,
    *,
    name: str,
    codes: Sequence[str],
    window: tuple[int, int],
    min_count: int = 1,
    atc_prefixes: Sequence[str] | None = None,
    drug_label: str | None = None,
    exclude: bool = False,
) -> Cohort:
    """Keep persons with at least ``min_count`` dispensings (packs > 0) whose reimbursement
    code starts with one of ``codes`` in ``window``, optionally only of ``atc_prefixes``."""
    if not codes:
        raise ParameterError("require_reimbursement_code needs at least one prefix")
    rule = _DispensingRule(tuple(atc_prefixes or ()), drug_label, codes=tuple(codes))
    return _require_dispensings(cohort, dispensings, name, rule, window, min_count, exclude)


def require_age(
    cohort: Cohort,
    *,
    name: str,
    min_years: int | None = None,
    max_years: int | None = None,
    exclude: bool = False,
) -> Cohort:
    """Keep persons whose age at index is from ``min_years`` to ``max_years`` (both included).

    A person with unknown age never meets the rule (kept by ``exclude``)."""
    if min_years is None and max_years is None:
        raise ParameterError("require_age needs min_years, max_years or both")
    age = F.col("age_at_index")
    condition = F.lit(True)
    if min_years is not None:
        condition = condition & (age >= min_years)
    if max_years is not None:
        condition = condition & (age <= max_years)
    if min_years is not None and max_years is not None:
        text = f"age at index {min_years} to {max_years} years"
    elif min_years is not None:
        text = f"age at index {min_years} years or more"
    else:
        text = f"age at index {max_years} years or less"
    return _require_condition(cohort, condition, name=name, text=text, exclude=exclude)


def require_sex(
    cohort: Cohort,
    *,
    name: str,
    sex: Literal["male", "female"],
    exclude: bool = False,
) -> Cohort:
    """Keep persons of ``sex`` (person table: 1 = male, 2 = female)."""
    condition = F.col("sex") == F.lit(SEX_CODES[sex])
    return _require_condition(cohort, condition, name=name, text=f"sex {sex}", exclude=exclude)


def _require_condition(
    cohort: Cohort, condition: Column, *, name: str, text: str, exclude: bool
) -> Cohort:
    meets = F.coalesce(condition, F.lit(False))
    kept = cohort.frame.where(~meets if exclude else meets)
    return cohort.require(kept, criterion=_criterion(name, text, exclude=exclude))


@dataclass(frozen=True)
class _DispensingRule:
    """Which dispensings count: ATC prefixes, reimbursement-code prefixes, or both."""

    atc_prefixes: tuple[str, ...]
    drug_label: str | None = None
    codes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.atc_prefixes and not self.codes:
            raise ParameterError("a dispensing criterion needs at least one prefix")

    def condition(self) -> Column:
        parts = []
        if self.codes:
            parts.append(starts_with_any_filter("reimbursement_code", self.codes))
        if self.atc_prefixes:
            parts.append(starts_with_any_filter("atc_code", self.atc_prefixes))
        return functools.reduce(operator.and_, parts)

    def describe(self, min_count: int) -> str:
        what = f"at least {min_count} dispensing{'s' if min_count > 1 else ''}"
        if self.atc_prefixes:
            atc = f"ATC {describe_codes(self.atc_prefixes)}"
            if self.drug_label:
                what += f" of {self.drug_label} ({atc})"
            else:
                what += f" of ({atc})" if self.codes else f" of {atc}"
        if self.codes:
            what += f" with reimbursement code {describe_codes(self.codes)}"
        return what


def _require_dispensings(
    cohort: Cohort,
    dispensings: DataFrame,
    name: str,
    rule: _DispensingRule,
    window: tuple[int, int],
    min_count: int,
    exclude: bool,
) -> Cohort:
    start, end = window
    if end < start:
        raise ParameterError(f"window ends before it starts: {window}")
    if min_count < 1:
        raise ParameterError("min_count must be at least 1")
    # ``condition`` filters rows only (an exclusion anti-joins the persons, never negates it),
    # so it may be the pushable, null-propagating form.
    keys = F.broadcast(cohort.frame.select("person_id", "index_date"))
    day = F.datediff("dispense_date", "index_date")
    meeting = (
        dispensings.where(rule.condition() & (F.col("packs") > 0))
        .join(keys, "person_id")
        .where(day.between(start, end))
        .groupBy("person_id")
        .agg(F.count(F.lit(1)).alias("_n"))
        .where(F.col("_n") >= min_count)
        .select("person_id")
    )
    kept = cohort.frame.join(meeting, "person_id", "left_anti" if exclude else "left_semi")
    what = f"{rule.describe(min_count)} on {describe_days(window)}"
    return cohort.require(kept, criterion=_criterion(name, what, exclude=exclude))


def _criterion(name: str, text: str, *, exclude: bool) -> str:
    return f"{name}: exclude persons with {text}" if exclude else f"{name}: {text}"
