"""Spark aggregations of the person-level study tables for the report.

``cohort``, ``consumption`` and ``persistence`` hold one row per person; the report collects
only what these functions return: a few rows per exposure group, drug group and window. Pure
transforms: DataFrames in, DataFrames out.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import IntegralType

from rxcohort.privacy import ALL_GROUPS

_FEMALE = ("2", "female", "f")
_MALE = ("1", "male", "m")


def _sex_is(frame: DataFrame, values: tuple[str, ...]) -> Column:
    sex = F.col("sex").cast("string")
    if isinstance(frame.schema["sex"].dataType, IntegralType):
        # Digits have no case. The first lower() of a session costs seconds (Spark loads its
        # ICU case mappings), so an integer code, as silver persons has it, skips it.
        return sex.isin(*values)
    return F.lower(sex).isin(*values)


def _label(column: str) -> Column:
    # rollup's total row has a null label; name it so it reads as a column of Table 1.
    return F.when(F.col("_total") == 1, F.lit(ALL_GROUPS)).otherwise(F.col(column)).alias(column)


def summarise_window_ddd(cohort: DataFrame, consumption: DataFrame) -> DataFrame:
    """Per exposure group (and ``all``) × drug group × window: n_persons, n_users (is_user),
    mean_ddd, sd_ddd (sample) and median_ddd of the persons' DDD in the window.

    ``consumption`` holds every cohort person × drug group × window, zeros included (CONTRACT
    §4), so n_persons is the group's size and the mean is DDD per person of the whole group.
    """
    joined = consumption.join(cohort.select("person_id", "exposure_group"), "person_id")
    ddd = F.col("ddd").cast("double")
    return (
        joined.rollup("drug_group", "window", "exposure_group")
        .agg(
            F.count(F.lit(1)).alias("n_persons"),
            F.count(F.when(F.col("is_user"), 1)).alias("n_users"),
            F.avg(ddd).alias("mean_ddd"),
            F.stddev_samp(ddd).alias("sd_ddd"),
            F.percentile(ddd, F.lit(0.5)).alias("median_ddd"),
            F.grouping("window").alias("_window_total"),
            F.grouping("exposure_group").alias("_total"),
        )
        .where(F.col("_window_total") == 0)
        .select(
            _label("exposure_group"),
            "drug_group",
            "window",
            "n_persons",
            "n_users",
            "mean_ddd",
            "sd_ddd",
            "median_ddd",
        )
    )


def summarise_dose_bins(
    persistence: DataFrame, *, dose_col: str, width: float, upper: float
) -> DataFrame:
    """Persons per dose bin: bin_order, n_persons.

    Bin i >= 0 holds doses in [i·width, (i+1)·width), the last finite bin also ``upper``;
    doses above ``upper`` are bin upper/width; a null dose is bin -1. Matches
    :func:`rxcohort.report.plotdata.dose_bins`.
    """
    n = round(upper / width)
    dose = F.col(dose_col).cast("double")
    order = (
        F.when(dose.isNull(), F.lit(-1))
        .when(dose > F.lit(upper), F.lit(n))
        .when(dose >= F.lit(upper), F.lit(n - 1))
        .otherwise(F.floor(F.greatest(dose, F.lit(0.0)) / F.lit(width)).cast("int"))
    )
    return (
        persistence.select(order.cast("int").alias("bin_order"))
        .groupBy("bin_order")
        .agg(F.count(F.lit(1)).alias("n_persons"))
    )


def summarise_group_counts(frame: DataFrame, *, column: str) -> DataFrame:
    """Persons per value of ``column`` (value, n_persons), nulls as their own value."""
    return frame.groupBy(F.col(column).cast("string").alias("value")).agg(
        F.count(F.lit(1)).alias("n_persons")
    )
