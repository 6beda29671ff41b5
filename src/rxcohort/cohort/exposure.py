"""Exposure: how many index-drug dispensings a person collected, and the group that puts them in."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from rxcohort.cohort.attrition import Cohort
from rxcohort.errors import ParameterError
from rxcohort.transforms.drugs import DrugDefinition, describe_days

# (label, min, max): max None means no upper bound; both bounds included.
ExposureBin = tuple[str, int, int | None]


def add_exposure_count(
    cohort: DataFrame,
    dispensings: DataFrame,
    *,
    index_drug: DrugDefinition,
    window: tuple[int, int],
) -> DataFrame:
    """Add n_index_drug_dispensings: dispensings of ``index_drug`` in ``window`` (days from
    index, both ends included). Several dispensings on one day count separately."""
    start, end = window
    keys = F.broadcast(cohort.select("person_id", "index_date"))
    counts = (
        dispensings.where(index_drug.filter())
        .join(keys, "person_id")
        .where(F.datediff("dispense_date", "index_date").between(start, end))
        .groupBy("person_id")
        .agg(F.count(F.lit(1)).alias("n_index_drug_dispensings"))
    )
    return cohort.join(counts, "person_id", "left").withColumn(
        "n_index_drug_dispensings",
        F.coalesce(F.col("n_index_drug_dispensings"), F.lit(0)).cast("long"),
    )


def add_exposure_group(
    cohort: DataFrame,
    *,
    bins: Sequence[ExposureBin],
    count_column: str = "n_index_drug_dispensings",
) -> DataFrame:
    """Add exposure_group: the label of the first bin whose min..max holds the count (else null)."""
    if not bins:
        raise ParameterError("add_exposure_group needs at least one bin")
    count = F.col(count_column)
    group = None
    for label, low, high in bins:
        condition = count >= low if high is None else count.between(low, high)
        group = (
            F.when(condition, F.lit(label))
            if group is None
            else group.when(condition, F.lit(label))
        )
    return cohort.withColumn("exposure_group", group)


def require_exposure_group(
    cohort: Cohort, *, drug_label: str, window: tuple[int, int], labels: Sequence[str]
) -> Cohort:
    """Keep persons whose count falls in an exposure group (needed when the bins leave gaps)."""
    kept = cohort.frame.where(F.col("exposure_group").isNotNull())
    criterion = (
        f"exposure: number of {drug_label} dispensings on {describe_days(window)} falls in an "
        f"exposure group ({', '.join(labels)})"
    )
    return cohort.require(kept, criterion=criterion)
