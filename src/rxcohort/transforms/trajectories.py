"""Monthly DDD per exposure group and drug group around the index date (time to effect).

Month k relative to the index date holds the days d = dispense_date - index_date with
floor(12 d / 365) = k, i.e. d in [ceil(365 k / 12), ceil(365 (k + 1) / 12) - 1]: months of 30
or 31 days, twelve of them tiling a 365-day year exactly. Months -12..-1 are therefore the
pre window [index - 365, index - 1] and months 0..11 the post window [index, index + 364] of
CONTRACT §5 rule 7, and a person's DDD summed over months -12..-1 equals their pre-window DDD.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from rxcohort.errors import ConfigError
from rxcohort.transforms.codes import starts_with_any, starts_with_any_filter

MONTH_DAYS_PER_YEAR = 365
MONTHS_PER_YEAR = 12


def add_relative_month(
    frame: DataFrame, *, date_col: str, index_col: str = "index_date"
) -> DataFrame:
    """Add ``month``: floor(12 * (date - index) / 365), the month of ``date`` around the index."""
    days = F.datediff(F.col(date_col), F.col(index_col))
    # 12 d / 365 is an exact double whenever 365 divides 12 d, so no boundary day is rounded
    # into the neighbouring month; floor (not a cast) keeps days before the index negative.
    month = F.floor(days * F.lit(MONTHS_PER_YEAR) / F.lit(MONTH_DAYS_PER_YEAR)).cast("int")
    return frame.withColumn("month", month)


def summarise_monthly_ddd(
    cohort: DataFrame,
    dispensings: DataFrame,
    *,
    drug_groups: Mapping[str, Sequence[str]],
    months_before: int = 12,
    months_after: int = 12,
) -> DataFrame:
    """Per exposure group x drug group x month in [-months_before, months_after - 1]:
    n_persons, n_users, mean_ddd and sd_ddd of a person's DDD in that month.

    ``cohort`` gives person_id, index_date and exposure_group (one row per person);
    ``dispensings`` has the silver schema (``ddd`` negative for returns, null when unknown -
    such rows add nothing, as in the windows of rule 10). ``drug_groups`` maps each drug group
    to its ATC prefixes; a dispensing counts in every group one of whose prefixes it starts
    with. Every cohort person counts in every month, with 0 DDD when they had no dispensing,
    so n_persons is the group's size; n_users counts persons with at least one dispensing with
    packs > 0 of the group in the month. sd_ddd is the sample SD over all persons (null below
    two persons). The result is small (groups x drug groups x months rows) and is meant to be
    collected and finished by :func:`rxcohort.stats.summarise_trajectories`.
    """
    if months_before < 1 or months_after < 1:
        raise ConfigError("trajectory months before and after must both be at least 1")
    groups = {name: list(prefixes) for name, prefixes in drug_groups.items()}
    if not groups or any(not prefixes for prefixes in groups.values()):
        raise ConfigError("every drug group needs at least one ATC prefix")
    persons = cohort.select("person_id", "index_date", "exposure_group")
    sizes = persons.groupBy("exposure_group").agg(F.count(F.lit(1)).alias("n_persons"))

    per_person_month = _per_person_month(
        persons, dispensings, groups, months_before=months_before, months_after=months_after
    )
    sums = per_person_month.groupBy("exposure_group", "drug_group", "month").agg(
        F.sum("ddd").alias("sum_ddd"),
        F.sum(F.col("ddd") * F.col("ddd")).alias("sum_sq_ddd"),
        F.sum("used").cast("long").alias("n_users"),
    )

    # Every exposure group x drug group x month, zeros included; exploded from literals rather
    # than joined with frames made on the driver, which would start Python workers.
    grid = sizes.select(
        "exposure_group",
        "n_persons",
        F.explode(F.array(*[F.lit(name) for name in groups])).alias("drug_group"),
    ).select(
        "*", F.explode(F.sequence(F.lit(-months_before), F.lit(months_after - 1))).alias("month")
    )
    n = F.col("n_persons")
    total = F.coalesce(F.col("sum_ddd"), F.lit(0.0))
    total_sq = F.coalesce(F.col("sum_sq_ddd"), F.lit(0.0))
    # Persons without a dispensing add 0 to both sums, so the sums over users are the sums over
    # the whole group; the clamp absorbs rounding when every person has the same value.
    variance = F.greatest((total_sq - total * total / n) / (n - 1), F.lit(0.0))
    return grid.join(sums, ["exposure_group", "drug_group", "month"], "left").select(
        "exposure_group",
        "drug_group",
        "month",
        F.col("n_persons").cast("long").alias("n_persons"),
        F.coalesce(F.col("n_users"), F.lit(0)).cast("long").alias("n_users"),
        (total / n).alias("mean_ddd"),
        F.when(n >= 2, F.sqrt(variance)).alias("sd_ddd"),
    )


def _per_person_month(
    persons: DataFrame,
    dispensings: DataFrame,
    groups: dict[str, list[str]],
    *,
    months_before: int,
    months_after: int,
) -> DataFrame:
    """A person's DDD of a drug group in a month from index, and whether they collected any
    (packs > 0): persons with no dispensing of the group in the month have no row."""
    any_group = starts_with_any_filter("atc_code", [p for ps in groups.values() for p in ps])
    group_of = F.array_compact(
        F.array(
            *[
                F.when(starts_with_any("atc_code", prefixes), F.lit(name))
                for name, prefixes in groups.items()
            ]
        )
    )
    return (
        dispensings.where(any_group)
        .select("person_id", "dispense_date", "atc_code", "packs", "ddd")
        .join(persons, "person_id")
        .transform(add_relative_month, date_col="dispense_date")
        .where((F.col("month") >= -months_before) & (F.col("month") < months_after))
        .withColumn("drug_group", F.explode(group_of))
        .groupBy("exposure_group", "drug_group", "month", "person_id")
        .agg(
            F.coalesce(F.sum("ddd"), F.lit(0.0)).alias("ddd"),
            F.max((F.col("packs") > 0).cast("int")).alias("used"),
        )
    )
