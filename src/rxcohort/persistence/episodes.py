"""Supply, treatment episodes and daily dose from index-drug dispensings (pure Spark transforms).

The chain is ``add_supply`` -> ``generate_episodes`` -> ``summarise_dose``; see
docs/persistence.md for the method and every column.

Day arithmetic is in whole calendar days. A dispensing collected on day ``d`` with a supply of
``n`` days covers ``d .. d + n - 1``; the *gap* before the next dispensing is the number of
uncovered days between the end of the running supply and that dispensing.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from rxcohort.errors import ConfigError

DOSE_BAND_ULTRA_LOW = "ultra_low"
DOSE_BAND_LOW = "low"
DOSE_BAND_OTHER = "other"

DOSE_METHOD_REFILL_INTERVAL = "refill_interval"
DOSE_METHOD_ASSUMED = "assumed_units_per_day"

EPISODE_COLUMNS: tuple[str, ...] = (
    "person_id",
    "episode_number",
    "episode_start",
    "last_dispense_date",
    "episode_end",
    "duration_days",
    "n_dispensings",
    "dispensing_ids",
    "total_units",
    "total_mg",
    "supply_days",
    "carried_over_days",
    "refill_interval_days",
    "refill_interval_units",
    "refill_interval_mg",
)

DOSE_COLUMNS: tuple[str, ...] = (
    "person_id",
    "n_episodes",
    "n_dispensings",
    "total_units",
    "total_mg",
    "refill_interval_days",
    "mean_daily_units",
    "mean_daily_dose_mg",
    "dose_method",
    "dose_band",
)


def require_positive_units_per_day(units_per_day: float) -> float:
    if not units_per_day > 0:
        raise ConfigError(f"units_per_day must be a positive number, not {units_per_day!r}")
    return float(units_per_day)


def require_grace_days(grace_days: int) -> int:
    if isinstance(grace_days, bool) or not isinstance(grace_days, int) or grace_days < 0:
        raise ConfigError(f"persistence grace_days must be a whole number >= 0, not {grace_days!r}")
    return grace_days


def add_supply(dispensings: DataFrame, *, units_per_day: float = 1.0) -> DataFrame:
    """Add ``units``, ``dispensed_mg`` and ``supply_days`` to index-drug dispensings.

    ``units = units_per_pack * packs``; ``dispensed_mg = strength_mg * units``;
    ``supply_days = ceil(units / units_per_day)``, the days the dispensed units last at the
    assumed intake (compounded LDN is one capsule a day, so the default is 1). A row without
    positive units (a return, a correction, a missing pack size) gets a null ``supply_days`` and
    takes no part in episodes or dose.
    """
    units_per_day = require_positive_units_per_day(units_per_day)
    units = F.col("units_per_pack") * F.col("packs")
    # Rounding first keeps 1.1 packs x 100 units (110.00000000000001) at 110 days, not 111.
    days = F.ceil(F.round(units / F.lit(units_per_day), 6)).cast("int")
    return (
        dispensings.withColumn("units", units.cast("double"))
        .withColumn("dispensed_mg", (F.col("strength_mg") * F.col("units")).cast("double"))
        .withColumn("supply_days", F.when(F.col("units") > 0, days))
    )


def add_episode_number(dispensings: DataFrame, *, grace_days: int) -> DataFrame:
    """Place each dispensing with a supply in a treatment episode, carrying leftover supply forward.

    Needs ``person_id``, ``dispense_date``, ``dispensing_id`` and ``supply_days`` (from
    :func:`add_supply`); rows with a null ``supply_days`` are left out. Adds ``supply_start``
    and ``supply_end`` (first and last day this dispensing covers after any leftover supply is
    used up), ``carried_over_days`` (leftover supply in hand when it was collected),
    ``gap_days`` (uncovered days before it) and ``episode_number`` (1, 2, ... per person).

    The running supply end follows the recursion ``end_i = max(d_i - 1, end_{i-1}) + days_i``
    (an early refill starts when the previous supply runs out; a late one on its own day).
    Unrolled, ``end_i = S_i + max_{j<=i}(d_j - 1 - S_{j-1})`` with ``S`` the running sum of
    supply days, which two running window aggregates compute exactly - no sequential scan, no
    Python UDF, any number of dispensings per person.
    """
    grace_days = require_grace_days(grace_days)
    order = Window.partitionBy("person_id").orderBy("dispense_date", "dispensing_id")
    running = order.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    day = F.unix_date(F.col("dispense_date"))
    return (
        dispensings.where(F.col("supply_days").isNotNull())
        .withColumn("_cum", F.sum(F.col("supply_days").cast("long")).over(running))
        .withColumn("_k", day - 1 - (F.col("_cum") - F.col("supply_days")))
        .withColumn("_end", F.col("_cum") + F.max("_k").over(running))
        .withColumn("_prev_end", F.lag("_end").over(order))
        .withColumn("_free", day - F.col("_prev_end") - 1)
        .withColumn("gap_days", F.greatest(F.col("_free"), F.lit(0)).cast("int"))
        .withColumn("carried_over_days", F.greatest(-F.col("_free"), F.lit(0)).cast("int"))
        .withColumn(
            "_new_episode",
            F.when(F.col("_prev_end").isNull() | (F.col("gap_days") > grace_days), 1).otherwise(0),
        )
        .withColumn("episode_number", F.sum("_new_episode").over(running).cast("int"))
        .withColumn(
            "supply_start",
            F.date_from_unix_date((F.col("_end") - F.col("supply_days") + 1).cast("int")),
        )
        .withColumn("supply_end", F.date_from_unix_date(F.col("_end").cast("int")))
        .drop("_cum", "_k", "_end", "_prev_end", "_free", "_new_episode")
    )


def generate_episodes(dispensings: DataFrame, *, grace_days: int) -> DataFrame:
    """Treatment episodes: one row per person and episode (columns in ``EPISODE_COLUMNS``).

    Input: index-drug dispensings after :func:`add_supply`. Consecutive dispensings belong to
    one episode while the gap after the running supply runs out is at most ``grace_days``.
    ``episode_end`` is the last day covered by supply; ``dispensing_ids`` lists the episode's
    dispensings in date order. The ``refill_interval_*`` columns feed :func:`summarise_dose`:
    the days from the first to the last dispensing date of the episode and the units and mg
    collected before that last date (consumed in those days).
    """
    placed = add_episode_number(dispensings, grace_days=grace_days)
    episode = Window.partitionBy("person_id", "episode_number")
    placed = placed.withColumn(
        "_on_last_date", F.col("dispense_date") == F.max("dispense_date").over(episode)
    )
    before_last = ~F.col("_on_last_date")
    aggregated = placed.groupBy("person_id", "episode_number").agg(
        F.min("dispense_date").alias("episode_start"),
        F.max("dispense_date").alias("last_dispense_date"),
        F.max("supply_end").alias("episode_end"),
        F.count(F.lit(1)).cast("int").alias("n_dispensings"),
        F.array_sort(F.collect_list(F.struct("dispense_date", "dispensing_id"))).alias("_sorted"),
        F.sum("units").alias("total_units"),
        F.sum("dispensed_mg").alias("total_mg"),
        F.sum("supply_days").cast("int").alias("supply_days"),
        F.sum("carried_over_days").cast("int").alias("carried_over_days"),
        F.sum(F.when(before_last, F.col("units")).otherwise(F.lit(0.0))).alias(
            "refill_interval_units"
        ),
        F.sum(F.when(before_last, F.col("dispensed_mg")).otherwise(F.lit(0.0))).alias(
            "refill_interval_mg"
        ),
    )
    return aggregated.select(
        "person_id",
        "episode_number",
        "episode_start",
        "last_dispense_date",
        "episode_end",
        # datediff is an int on Spark, a long on Sail: the table has one type on every engine.
        (F.datediff("episode_end", "episode_start") + 1).cast("int").alias("duration_days"),
        "n_dispensings",
        F.transform("_sorted", lambda s: s["dispensing_id"]).alias("dispensing_ids"),
        "total_units",
        "total_mg",
        "supply_days",
        "carried_over_days",
        F.datediff("last_dispense_date", "episode_start").cast("int").alias("refill_interval_days"),
        "refill_interval_units",
        "refill_interval_mg",
    )


def add_dose_band(df: DataFrame, *, dose_col: str, band_col: str = "dose_band") -> DataFrame:
    """Add the dose band of ``dose_col`` (mg/day): ultra_low < 1, low 1-5 (both ends), other > 5."""
    dose = F.col(dose_col)
    band = (
        F.when(dose.isNull(), F.lit(None).cast("string"))
        .when(dose < 1.0, DOSE_BAND_ULTRA_LOW)
        .when(dose <= 5.0, DOSE_BAND_LOW)
        .otherwise(DOSE_BAND_OTHER)
    )
    return df.withColumn(band_col, band)


def summarise_dose(episodes: DataFrame, *, units_per_day: float = 1.0) -> DataFrame:
    """Estimated daily dose per person (columns in ``DOSE_COLUMNS``) from :func:`generate_episodes`.

    Refill-interval method: what a person collected is taken to be used up by the next
    collection in the same episode, so ``mean_daily_dose_mg`` = mg collected before the last
    dispensing date of each episode / days from first to last dispensing date, summed over the
    person's episodes. The last dispensing of an episode has no next collection to date it; it
    is assumed to be used at the person's own rate measured from the earlier intervals, so it
    leaves the estimate unchanged and is simply not counted. Gaps longer than the grace period
    separate episodes and never count as days of use. A person without any interval (one
    dispensing date per episode) gets the assumed intake: unit-weighted mean strength x
    ``units_per_day`` (``dose_method = 'assumed_units_per_day'``).
    """
    units_per_day = require_positive_units_per_day(units_per_day)
    per_person = episodes.groupBy("person_id").agg(
        F.count(F.lit(1)).cast("int").alias("n_episodes"),
        F.sum("n_dispensings").cast("int").alias("n_dispensings"),
        F.sum("total_units").alias("total_units"),
        F.sum("total_mg").alias("total_mg"),
        F.sum("refill_interval_days").cast("int").alias("refill_interval_days"),
        F.sum("refill_interval_units").alias("_interval_units"),
        F.sum("refill_interval_mg").alias("_interval_mg"),
    )
    measured = F.col("refill_interval_days") > 0
    days = F.col("refill_interval_days").cast("double")
    assumed_dose = F.col("total_mg") / F.col("total_units") * F.lit(units_per_day)
    result = per_person.select(
        *DOSE_COLUMNS[: DOSE_COLUMNS.index("refill_interval_days") + 1],
        F.when(measured, F.col("_interval_units") / days)
        .otherwise(F.lit(units_per_day))
        .alias("mean_daily_units"),
        F.when(measured, F.col("_interval_mg") / days)
        .otherwise(assumed_dose)
        .alias("mean_daily_dose_mg"),
        F.when(measured, F.lit(DOSE_METHOD_REFILL_INTERVAL))
        .otherwise(F.lit(DOSE_METHOD_ASSUMED))
        .alias("dose_method"),
    )
    return add_dose_band(result, dose_col="mean_daily_dose_mg")
