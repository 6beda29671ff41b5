"""The index date (first index-drug dispensing in the index period) and the new-user rule."""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from rxcohort.cohort.attrition import Cohort
from rxcohort.errors import ParameterError
from rxcohort.transforms.drugs import DrugDefinition


def generate_index_cohort(
    dispensings: DataFrame,
    *,
    index_drug: DrugDefinition,
    period: tuple[date, date],
) -> Cohort:
    """Persons with a dispensing of ``index_drug`` in ``period`` (both ends included).

    Returns one row per person - person_id, index_date (the earliest such dispensing),
    index_strength_mg and index_prescriber_id (from that dispensing; with several on the index
    date, the one with the smallest dispensing_id) - as a cohort whose attrition step 0 they are.
    """
    start, end = period
    first = (
        dispensings.where(
            index_drug.filter() & F.col("dispense_date").between(F.lit(start), F.lit(end))
        )
        .groupBy("person_id")
        .agg(
            F.min(
                F.struct(
                    F.col("dispense_date").alias("index_date"),
                    F.col("dispensing_id").alias("_dispensing_id"),
                    F.col("strength_mg").alias("index_strength_mg"),
                    F.col("prescriber_id").alias("index_prescriber_id"),
                )
            ).alias("_first")
        )
    )
    cohort = first.select(
        "person_id",
        "_first.index_date",
        "_first.index_strength_mg",
        "_first.index_prescriber_id",
    )
    criterion = (
        f"first dispensing of {index_drug.describe()} from {start.isoformat()} to "
        f"{end.isoformat()} (the index date)"
    )
    return Cohort.start(cohort, criterion=criterion)


def require_new_users(
    cohort: Cohort,
    dispensings: DataFrame,
    *,
    index_drug: DrugDefinition,
    look_back_days: int | None = None,
) -> Cohort:
    """Keep persons with no dispensing of ``index_drug`` before their index date.

    ``look_back_days`` limits the search to the days index - look_back_days .. index - 1;
    None searches all earlier data (the whole delivery).
    """
    keys = F.broadcast(cohort.frame.select("person_id", "index_date"))
    earlier = dispensings.where(index_drug.filter()).join(keys, "person_id")
    before = F.col("dispense_date") < F.col("index_date")
    if look_back_days is not None:
        if look_back_days < 1:
            raise ParameterError("look_back_days must be at least 1")
        before = before & (F.col("dispense_date") >= F.date_sub("index_date", look_back_days))
    prior_users = earlier.where(before).select("person_id").distinct()
    kept = cohort.frame.join(prior_users, "person_id", "left_anti")
    span = "all earlier data" if look_back_days is None else f"the {look_back_days} days before"
    criterion = (
        f"new users: no dispensing of {index_drug.label} before the index date (look-back: {span})"
    )
    return cohort.require(kept, criterion=criterion)
