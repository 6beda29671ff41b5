"""A cohort and its attrition: how many persons each criterion keeps, counted lazily.

A :class:`Cohort` is the persons (one row each) together with one row (criterion, n_persons)
per step that made them. Each ``require_*`` takes a cohort and returns a new one with its own
row appended, its text built from its parameters; ``add_*`` steps change the frame only
(:meth:`Cohort.map`). :func:`summarise_attrition` numbers the rows in order and derives
n_excluded from the previous step's count, so the table is built by Spark at write time
without collecting. A cohort has one row per person, so its records are its persons.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Concatenate, ParamSpec

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from rxcohort.errors import ParameterError

ATTRITION_COLUMNS = ("step", "criterion", "n_persons", "n_excluded")

P = ParamSpec("P")


@dataclass(frozen=True)
class Cohort:
    """Persons (``frame``, one row each) and the attrition rows of the steps that made them.

    Immutable: every step returns a new cohort. A study reads as one chain::

        cohort = (
            generate_index_cohort(dispensings, index_drug=ldn, period=period)
            .then(require_new_users, dispensings, index_drug=ldn)
            .map(add_person_attributes, persons)
            .then(require_age, name="adults", min_years=18)
        )
        cohort.attrition()  # step, criterion, n_persons, n_excluded
    """

    frame: DataFrame
    steps: tuple[DataFrame, ...] = ()

    @classmethod
    def start(cls, frame: DataFrame, *, criterion: str) -> Cohort:
        """A cohort whose first attrition row (step 0) is ``frame`` itself."""
        return cls(frame, (attrition_row(frame, criterion=criterion),))

    def require(self, kept: DataFrame, *, criterion: str) -> Cohort:
        """The persons a criterion kept, with that criterion's attrition row appended."""
        return Cohort(kept, (*self.steps, attrition_row(kept, criterion=criterion)))

    def map(
        self,
        step: Callable[Concatenate[DataFrame, P], DataFrame],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Cohort:
        """``step(frame, ...)`` for a step that adds columns or materialises (no attrition row)."""
        return Cohort(step(self.frame, *args, **kwargs), self.steps)

    def then(
        self, step: Callable[Concatenate[Cohort, P], Cohort], *args: P.args, **kwargs: P.kwargs
    ) -> Cohort:
        """``step(self, ...)``: chain a ``require_*`` (or any cohort-to-cohort step)."""
        return step(self, *args, **kwargs)

    def attrition(self) -> DataFrame:
        """The attrition table of the steps so far (see :func:`summarise_attrition`)."""
        return summarise_attrition(self.steps)


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
