"""Attrition: how many persons each criterion keeps, counted lazily.

Each step contributes a one-row frame (criterion, n_persons) computed from the cohort after the
step; :func:`summarise_attrition` numbers the steps in order and derives n_excluded from the
previous step's count, so the table is built by Spark at write time without collecting.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from rxcohort.errors import ParameterError

ATTRITION_COLUMNS = ("step", "criterion", "n_persons", "n_excluded")


def attrition_row(cohort: DataFrame, *, criterion: str) -> DataFrame:
    """One row: the criterion text and the number of persons (rows) in ``cohort``."""
    return cohort.agg(F.count(F.lit(1)).alias("n_persons")).select(
        F.lit(criterion).alias("criterion"), F.col("n_persons").cast("long")
    )


def summarise_attrition(rows: Sequence[DataFrame]) -> DataFrame:
    """The attrition table: step (int, from 0), criterion, n_persons, n_excluded (long).

    ``rows`` are the :func:`attrition_row` frames in the order the criteria were applied; step 0
    is the starting population, so its n_excluded is 0.
    """
    if not rows:
        raise ParameterError("summarise_attrition needs at least one step")
    numbered = [
        row.select(F.lit(step).cast("int").alias("step"), "criterion", "n_persons")
        for step, row in enumerate(rows)
    ]
    table = reduce(DataFrame.unionByName, numbered)
    # A handful of rows: one window partition is the simple, correct choice here.
    previous = F.lag("n_persons").over(Window.orderBy("step"))
    return table.select(
        "step",
        "criterion",
        "n_persons",
        F.coalesce(previous - F.col("n_persons"), F.lit(0)).cast("long").alias("n_excluded"),
    )
