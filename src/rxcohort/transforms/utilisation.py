"""Drug utilisation over calendar time per population, and who prescribes the index drug.

``use_over_time``: per calendar year and month, by sex and age band, the persons with a
dispensing of a drug in the period (``n_users``), those whose first dispensing of it in the
data falls in the period (``n_new_users``), the population alive and resident at mid-period
(``n_population``: 1 July of a year, the 15th of a month) and users per 1,000 of it with a
95% Wilson score interval.

- The population is ``silver/persons``: a person counts from 1 July of their birth year (the
  registry gives the year only; age at mid-period = the period's year - birth year) until
  death or emigration (a person who died or emigrated on the mid-period day or before
  is out). The registry records no immigration: a person is resident from birth.
- Users are counted as NorPD's statistics count them: every person with a dispensing in the
  period (sex and age band as for the population), including those who died or emigrated
  before mid-period - so in a small cell ``n_users`` can exceed ``n_population``, and then the
  interval is left undefined.
- A new user has no dispensing of the drug before the period in the data; the count is null
  (undefined) for a period that starts less than ``look_back_days`` after the data's first day.
- ``sex``: ``all``, ``female``, ``male``; ``age_band``: ``all`` and the study's bands. Persons
  of unknown sex or birth year count in ``all`` only.

The Spark side reduces the dispensings to counts per (drug, period, sex, birth year) - a few
thousand rows - and pandas does the rest.

``prescriber_summary``: the prescribers with a dispensing of the index drug in the index period,
against the registered prescribers of ``silver/prescribers`` (by profession, and for physicians
by specialty; ``general_practice`` is the GPs), and the users by the specialty of the
prescriber of their first dispensing in the index period.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from rxcohort.contract import SEX_LABELS
from rxcohort.transforms.drugs import DrugDefinition

ALL = "all"
SEXES = (ALL, "female", "male")
PERIOD_TYPES = ("year", "month")
Z_95 = 1.959963984540054
GP = "general_practice"


@dataclass(frozen=True)
class CalendarPeriod:
    period_type: str  # "year" or "month"
    start: date
    end: date

    @property
    def mid(self) -> date:
        """The day the population is counted: 1 July of a year, the 15th of a month."""
        if self.period_type == "year":
            return date(self.start.year, 7, 1)
        return date(self.start.year, self.start.month, 15)


def calendar_periods(start: date, end: date) -> list[CalendarPeriod]:
    """The calendar years and months that lie wholly between ``start`` and ``end``."""
    periods = []
    for year in range(start.year, end.year + 1):
        first, last = date(year, 1, 1), date(year, 12, 31)
        if start <= first and last <= end:
            periods.append(CalendarPeriod("year", first, last))
    month = date(start.year, start.month, 1)
    while month <= end:
        following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        if start <= month and following - timedelta(days=1) <= end:
            periods.append(CalendarPeriod("month", month, following - timedelta(days=1)))
        month = following
    return periods


def band_of(age: int, bounds: Sequence[int], labels: Sequence[str]) -> str | None:
    """The label of the band holding ``age`` (None for a negative age: not yet born)."""
    if age < 0:
        return None
    band = None
    for bound, label in zip(bounds, labels, strict=True):
        if age >= bound:
            band = label
    return band


def wilson_interval(events: int, total: int, *, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of the proportion ``events / total`` (None if undefined)."""
    if total <= 0 or events < 0 or events > total:
        return None
    p = events / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    # At 0 and at ``total`` one end is exact; rounding would leave 1e-17 there.
    low = 0.0 if events == 0 else max(0.0, centre - half)
    high = 1.0 if events == total else min(1.0, centre + half)
    return (low, high)


# -- Spark: counts per (drug, period, sex, birth year) --------------------------------------------


def person_groups(persons: DataFrame) -> pd.DataFrame:
    """Persons counted by sex, birth year and the day they left (death or emigration, first)."""
    left = F.least(F.col("death_date"), F.col("emigration_date"))
    return (
        persons.select("sex", "birth_year", left.alias("left_on"))
        .groupBy("sex", "birth_year", "left_on")
        .agg(F.count(F.lit(1)).alias("n"))
        .toPandas()
    )


def user_counts(
    dispensings: DataFrame,
    persons: DataFrame,
    drugs: Sequence[DrugDefinition],
    *,
    start: date,
    end: date,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(users, first uses): distinct persons per drug, period, sex and birth year with a
    dispensing from ``start`` to ``end``; and persons per drug, month, sex and birth year whose
    first dispensing of the drug in ``dispensings`` falls in that month (up to ``end``)."""
    uses = None
    for drug in drugs:
        part = dispensings.where(drug.filter() & (F.col("dispense_date") <= F.lit(end))).select(
            "person_id", F.lit(drug.label).alias("drug"), "dispense_date"
        )
        uses = part if uses is None else uses.unionByName(part)
    assert uses is not None
    people = persons.select("person_id", "sex", "birth_year")
    month_start = F.trunc("dispense_date", "month")
    monthly = (
        uses.where(F.col("dispense_date") >= F.lit(start))
        .groupBy("person_id", "drug", month_start.alias("month"))
        .agg(F.count(F.lit(1)).alias("_rows"))
        .join(people, "person_id")
    )
    per_month = monthly.groupBy("drug", "month", "sex", "birth_year").agg(
        F.count(F.lit(1)).alias("n")
    )
    per_year = monthly.groupBy("drug", F.year("month").alias("year"), "sex", "birth_year").agg(
        F.countDistinct("person_id").alias("n")
    )
    first = (
        uses.groupBy("person_id", "drug")
        .agg(F.min("dispense_date").alias("first_date"))
        .where(F.col("first_date") >= F.lit(start))
        .join(people, "person_id")
        .groupBy("drug", F.trunc("first_date", "month").alias("month"), "sex", "birth_year")
        .agg(F.count(F.lit(1)).alias("n"))
    )
    users = pd.concat(
        [
            per_month.toPandas().assign(period_type="month", period_start=lambda f: f["month"]),
            per_year.toPandas().assign(
                period_type="year", period_start=lambda f: [date(int(y), 1, 1) for y in f["year"]]
            ),
        ],
        ignore_index=True,
    )
    return users, first.toPandas()


# -- pandas: the table -------------------------------------------------------------------------


def use_over_time_table(
    groups: pd.DataFrame,
    users: pd.DataFrame,
    first_uses: pd.DataFrame,
    *,
    drugs: Sequence[str],
    periods: Sequence[CalendarPeriod],
    bounds: Sequence[int],
    labels: Sequence[str],
    new_users_from: date | None,
) -> pd.DataFrame:
    """The ``use_over_time`` rows from the counts of :func:`person_groups` and
    :func:`user_counts`; ``new_users_from``: the first period start with enough look-back
    (None: no period has it)."""
    rows = []
    for period in periods:
        population = _population(groups, period, bounds, labels)
        year = period.mid.year
        for drug in drugs:
            used = _cells(_of(users, drug, period), year, bounds, labels)
            if new_users_from is not None and period.start >= new_users_from:
                months = _first_in(first_uses, drug, period)
                new = _cells(months, year, bounds, labels)
            else:
                new = None
            for key, n_population in population.items():
                n_users = used.get(key, 0)
                ci = wilson_interval(n_users, n_population)
                rows.append(
                    {
                        "period_type": period.period_type,
                        "period_start": period.start,
                        "drug": drug,
                        "sex": key[0],
                        "age_band": key[1],
                        "n_users": n_users,
                        "n_new_users": None if new is None else new.get(key, 0),
                        "n_population": n_population,
                        "per_1000": 1000 * n_users / n_population if n_population else None,
                        "ci_low": 1000 * ci[0] if ci else None,
                        "ci_high": 1000 * ci[1] if ci else None,
                    }
                )
    return pd.DataFrame(rows)


def _population(
    groups: pd.DataFrame, period: CalendarPeriod, bounds: Sequence[int], labels: Sequence[str]
) -> dict[tuple[str, str], int]:
    mid = period.mid
    left_on = groups["left_on"]
    present = left_on.isna() | (pd.to_datetime(left_on) > pd.Timestamp(mid))
    # Only the birth year is known: a person born in the mid-period's year counts from 1 July.
    born_before = groups["birth_year"] < mid.year
    born_by_mid = (groups["birth_year"] == mid.year) & (mid.month >= 7)
    born = groups["birth_year"].isna() | born_before | born_by_mid
    alive = groups[present & born]
    cells = _cells(alive, mid.year, bounds, labels)
    return {(s, b): cells.get((s, b), 0) for s in SEXES for b in (ALL, *labels)}


def _of(users: pd.DataFrame, drug: str, period: CalendarPeriod) -> pd.DataFrame:
    keep = (
        (users["drug"] == drug)
        & (users["period_type"] == period.period_type)
        & (users["period_start"].map(_as_date) == period.start)
    )
    return users[keep]


def _first_in(first_uses: pd.DataFrame, drug: str, period: CalendarPeriod) -> pd.DataFrame:
    months = first_uses["month"].map(_as_date)
    keep = (first_uses["drug"] == drug) & (months >= period.start) & (months <= period.end)
    return first_uses[keep]


def _as_date(value: object) -> date:
    return value.date() if isinstance(value, pd.Timestamp) else value  # type: ignore[return-value]


def _cells(
    counts: pd.DataFrame, year: int, bounds: Sequence[int], labels: Sequence[str]
) -> dict[tuple[str, str], int]:
    """Counts (columns sex, birth_year, n) summed into (sex, age band) cells with the ``all``
    margins; unknown sex or birth year counts in the margins only."""
    out: dict[tuple[str, str], int] = {}
    for sex_code, birth_year, n in zip(
        counts["sex"], counts["birth_year"], counts["n"], strict=True
    ):
        sex = SEX_LABELS.get(int(sex_code)) if pd.notna(sex_code) else None
        band = band_of(year - int(birth_year), bounds, labels) if pd.notna(birth_year) else None
        for s in (ALL, sex):
            for b in (ALL, band):
                if s is not None and b is not None:
                    out[(s, b)] = out.get((s, b), 0) + int(n)
    return out


# -- prescribers ---------------------------------------------------------------------------------


def prescriber_summary_table(index_dispensings: DataFrame, prescribers: DataFrame) -> pd.DataFrame:
    """The ``prescriber_summary`` rows: ``unit`` (prescribers, users), ``category``
    (profession, specialty, first_prescriber), ``level``, ``n`` of ``n_total`` and the share
    with a 95% Wilson interval.

    prescribers/profession/<p>: prescribers of that profession with a dispensing in
    ``index_dispensings`` of all registered ones; prescribers/specialty/<s>: the same for the
    physicians of a specialty; users/first_prescriber/<s>: users whose first dispensing came
    from a prescriber of specialty ``s`` (``unknown``: no or an unregistered prescriber), of
    all users. The ``all`` level of a category is its total.
    """
    registered = prescribers.select(
        "prescriber_id",
        F.coalesce(F.col("profession"), F.lit("unknown")).alias("profession"),
        F.coalesce(F.col("specialty"), F.lit("unknown")).alias("specialty"),
    )
    prescribing = (
        index_dispensings.select("prescriber_id")
        .where(F.col("prescriber_id").isNotNull())
        .distinct()
    )
    marked = registered.join(
        prescribing.withColumn("_prescribes", F.lit(1)), "prescriber_id", "left"
    )
    counts = (
        marked.groupBy("profession", "specialty")
        .agg(
            F.count(F.lit(1)).alias("n_total"),
            F.count(F.col("_prescribes")).alias("n"),
        )
        .toPandas()
    )
    rows = []
    for category, column, part in (
        ("profession", "profession", counts),
        ("specialty", "specialty", counts[counts["profession"] == "physician"]),
    ):
        rows.extend(_share_rows("prescribers", category, part.groupby(column)[["n", "n_total"]]))
    rows.extend(_first_prescriber_rows(index_dispensings, registered))
    return pd.DataFrame(rows)


def _share_rows(unit: str, category: str, grouped) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    sums = grouped.sum()
    out = [_share(unit, category, ALL, int(sums["n"].sum()), int(sums["n_total"].sum()))]
    for level, r in sums.sort_index().iterrows():
        out.append(_share(unit, category, str(level), int(r["n"]), int(r["n_total"])))
    return out


def _share(unit: str, category: str, level: str, n: int, n_total: int) -> dict[str, object]:
    ci = wilson_interval(n, n_total)
    return {
        "unit": unit,
        "category": category,
        "level": level,
        "n": n,
        "n_total": n_total,
        "share": n / n_total if n_total else None,
        "ci_low": ci[0] if ci else None,
        "ci_high": ci[1] if ci else None,
    }


def _first_prescriber_rows(
    index_dispensings: DataFrame, registered: DataFrame
) -> list[dict[str, object]]:
    """Each user's first day of the index drug, labelled GP when any of that day's
    prescribers is one, else by the smallest specialty name among them (``unknown`` without
    a registered prescriber)."""
    first_day = index_dispensings.groupBy("person_id").agg(
        F.min("dispense_date").alias("dispense_date")
    )
    specialty: Column = F.coalesce(F.col("specialty"), F.lit("unknown"))
    labelled = (
        index_dispensings.join(first_day, ["person_id", "dispense_date"])
        .join(registered.select("prescriber_id", "specialty"), "prescriber_id", "left")
        .groupBy("person_id")
        .agg(
            F.max((specialty == F.lit(GP)).cast("int")).alias("_gp"),
            F.min(specialty).alias("_first"),
        )
        .select(F.when(F.col("_gp") == 1, F.lit(GP)).otherwise(F.col("_first")).alias("level"))
        .groupBy("level")
        .agg(F.count(F.lit(1)).alias("n"))
        .toPandas()
    )
    total = int(labelled["n"].sum())
    out = [_share("users", "first_prescriber", ALL, total, total)]
    for level, n in sorted(zip(labelled["level"], labelled["n"], strict=True)):
        out.append(_share("users", "first_prescriber", str(level), int(n), total))
    return out
