"""Time on treatment per person: first episode, censoring and covariates (pure Spark transforms)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from itertools import pairwise

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from rxcohort.contract import SEX_CODES
from rxcohort.errors import ConfigError
from rxcohort.persistence.episodes import (
    add_dose_band,
    require_grace_days,
    require_positive_units_per_day,
)

END_DISCONTINUED = "discontinued"
END_DEATH = "death"
END_EMIGRATION = "emigration"
END_OF_DATA = "end_of_data"
END_NO_SUPPLY = "no_valid_supply"

DEFAULT_AGE_BAND_EDGES: tuple[int, ...] = (40, 50, 60, 70)

PERSISTENCE_COLUMNS: tuple[str, ...] = (
    "person_id",
    "index_date",
    "exposure_group",
    "first_episode_end",
    "first_episode_dispensings",
    "observation_end",
    "follow_up_end",
    "time_days",
    "event",
    "end_reason",
    "age_at_index",
    "age_band",
    "sex",
    "mean_daily_dose_mg",
    "dose_band",
    "dose_method",
    "index_daily_dose_mg",
    "index_dose_band",
    "baseline_opioid_ddd",
    "prior_opioid_use",
    "prescriber_specialty",
)


def require_age_band_edges(edges: Sequence[int]) -> tuple[int, ...]:
    edges = tuple(edges)
    if not edges or list(edges) != sorted(set(edges)):
        raise ConfigError(f"age band edges must be strictly increasing, not {list(edges)!r}")
    return edges


def age_band_labels(edges: Sequence[int]) -> list[str]:
    """Labels for the bands cut at ``edges``: (40, 50) -> ['<40', '40-49', '50+']."""
    edges = require_age_band_edges(edges)
    labels = [f"<{edges[0]}"]
    labels += [f"{lo}-{hi - 1}" for lo, hi in pairwise(edges)]
    labels.append(f"{edges[-1]}+")
    return labels


def add_age_band(
    df: DataFrame,
    *,
    age_col: str = "age_at_index",
    edges: Sequence[int] = DEFAULT_AGE_BAND_EDGES,
    band_col: str = "age_band",
) -> DataFrame:
    """Add the age band of ``age_col`` (whole years): bands start at each edge, e.g. '40-49'."""
    edges = require_age_band_edges(edges)
    labels = age_band_labels(edges)
    age = F.col(age_col)
    band = F.when(age.isNull(), F.lit(None).cast("string"))
    for edge, label in zip(edges, labels[:-1], strict=True):
        band = band.when(age < edge, label)
    return df.withColumn(band_col, band.otherwise(labels[-1]))


def _first_episodes(cohort: DataFrame, episodes: DataFrame) -> DataFrame:
    starts = episodes.join(cohort.select("person_id", "index_date"), "person_id").where(
        F.col("episode_start") >= F.col("index_date")
    )
    first = Window.partitionBy("person_id").orderBy("episode_start", "episode_number")
    return (
        starts.withColumn("_rank", F.row_number().over(first))
        .where(F.col("_rank") == 1)
        .select(
            "person_id",
            F.col("episode_end").alias("first_episode_end"),
            F.col("n_dispensings").alias("first_episode_dispensings"),
        )
    )


def add_follow_up(df: DataFrame, *, grace_days: int, data_end: date) -> DataFrame:
    """Add observation end, the event and time on treatment of the first episode.

    Needs ``index_date``, ``first_episode_end`` (last day covered by supply), ``death_date``,
    ``emigration_date``. ``observation_end`` = earliest of death, emigration and ``data_end``
    (each the last day a refill could be seen). Discontinuation (``event = 1``) is established
    once a whole grace period after the supply end has been observed without a refill:
    ``first_episode_end + grace_days + 1 <= observation_end``; its time is the supply end.
    Otherwise the person is censored (``event = 0``) at the earlier of the supply end and
    ``observation_end`` - a supply reaching beyond death, emigration or the end of data is cut
    there, and a person still inside the grace period is censored at the supply end.
    ``time_days`` = days from index to ``follow_up_end``, both included (>= 0). Without a
    first episode (no usable supply) event, time and ``follow_up_end`` are null and
    ``end_reason`` is ``no_valid_supply``.
    """
    grace_days = require_grace_days(grace_days)
    if not isinstance(data_end, date):
        raise ConfigError(f"data_end must be a date, not {type(data_end).__name__}")
    end = F.col("first_episode_end")
    obs_end = F.least(F.col("death_date"), F.col("emigration_date"), F.lit(data_end))
    has_supply = end.isNotNull()
    discontinued = has_supply & (F.date_add(end, grace_days + 1) <= F.col("observation_end"))
    follow_up_end = (
        F.when(~has_supply, F.lit(None).cast("date"))
        .when(F.col("event") == 1, end)
        .otherwise(F.least(end, F.col("observation_end")))
    )
    reason = (
        F.when(~has_supply, F.lit(END_NO_SUPPLY))
        .when(F.col("event") == 1, F.lit(END_DISCONTINUED))
        .when(F.col("death_date") == F.col("observation_end"), F.lit(END_DEATH))
        .when(F.col("emigration_date") == F.col("observation_end"), F.lit(END_EMIGRATION))
        .otherwise(F.lit(END_OF_DATA))
    )
    return (
        df.withColumn("observation_end", obs_end)
        .withColumn("event", F.when(has_supply, F.when(discontinued, 1).otherwise(0)).cast("int"))
        .withColumn("follow_up_end", follow_up_end)
        .withColumn(
            "time_days",
            F.when(
                has_supply,
                F.greatest(F.datediff("follow_up_end", "index_date") + 1, F.lit(0)),
            ).cast("int"),
        )
        .withColumn("end_reason", reason)
    )


def _specialty_label(prescribers: DataFrame) -> DataFrame:
    # Non-physicians rarely carry a specialty; their profession is the informative label.
    label = (
        F.when(F.col("specialty").isNotNull(), F.col("specialty"))
        .when(
            F.col("profession").isNotNull() & (F.col("profession") != "physician"),
            F.col("profession"),
        )
        .otherwise(F.lit("unspecified"))
    )
    return prescribers.select(
        F.col("prescriber_id").alias("index_prescriber_id"), label.alias("_specialty")
    ).dropDuplicates(["index_prescriber_id"])


def _baseline(baseline: DataFrame | None, cohort: DataFrame) -> DataFrame:
    ids = cohort.select("person_id")
    if baseline is None:
        return ids.select(
            "person_id",
            F.lit(None).cast("double").alias("baseline_opioid_ddd"),
            F.lit(None).cast("boolean").alias("prior_opioid_use"),
        )
    has_flag = "prior_opioid_use" in baseline.columns
    given = baseline.select(
        "person_id",
        F.col("baseline_opioid_ddd").cast("double").alias("_ddd"),
        (F.col("prior_opioid_use").cast("boolean") if has_flag else F.lit(None)).alias("_flag"),
        F.lit(True).alias("_present"),
    )
    joined = ids.join(given, "person_id", "left")
    # A cohort person absent from the baseline frame had no opioid in the window: 0 DDD, no use.
    # An explicit null (DDD unknown) stays null.
    absent = F.col("_present").isNull()
    ddd = F.when(absent, F.lit(0.0)).otherwise(F.col("_ddd"))
    flag = F.when(absent, F.lit(False)).otherwise(F.col("_flag") if has_flag else F.col("_ddd") > 0)
    return joined.select(
        "person_id", ddd.alias("baseline_opioid_ddd"), flag.alias("prior_opioid_use")
    )


def generate_persistence(
    cohort: DataFrame,
    episodes: DataFrame,
    dose: DataFrame,
    prescribers: DataFrame,
    baseline: DataFrame | None,
    *,
    grace_days: int,
    data_end: date,
    units_per_day: float = 1.0,
    age_band_edges: Sequence[int] = DEFAULT_AGE_BAND_EDGES,
) -> DataFrame:
    """One row per cohort person: time on the first treatment episode and its covariates.

    Inputs: the study ``cohort``; ``episodes`` from :func:`generate_episodes` built from the
    index-drug dispensings on or after each person's index date; ``dose`` from
    :func:`summarise_dose`; ``prescribers`` (prescriber_id, profession, specialty); ``baseline``
    (person_id, baseline_opioid_ddd[, prior_opioid_use]) or None. Columns are
    ``PERSISTENCE_COLUMNS``; the method is in :func:`add_follow_up` and docs/persistence.md.
    """
    units_per_day = require_positive_units_per_day(units_per_day)
    people = cohort.select(
        "person_id",
        "index_date",
        "exposure_group",
        "age_at_index",
        "sex",
        "index_strength_mg",
        "index_prescriber_id",
        "death_date",
        "emigration_date",
    )
    dose_cols = dose.select("person_id", "mean_daily_dose_mg", "dose_band", "dose_method")
    frame = (
        people.join(_first_episodes(cohort, episodes), "person_id", "left")
        .join(dose_cols, "person_id", "left")
        .join(_baseline(baseline, cohort), "person_id", "left")
        .join(F.broadcast(_specialty_label(prescribers)), "index_prescriber_id", "left")
        .withColumn(
            "prescriber_specialty",
            F.when(F.col("index_prescriber_id").isNull(), F.lit("unknown")).otherwise(
                F.coalesce(F.col("_specialty"), F.lit("unknown"))
            ),
        )
        .withColumn("index_daily_dose_mg", F.col("index_strength_mg") * F.lit(units_per_day))
        .withColumn(
            "sex",
            F.when(F.col("sex") == SEX_CODES["male"], "male").when(
                F.col("sex") == SEX_CODES["female"], "female"
            ),
        )
        .transform(add_follow_up, grace_days=grace_days, data_end=data_end)
        .transform(add_age_band, edges=age_band_edges)
        .transform(add_dose_band, dose_col="index_daily_dose_mg", band_col="index_dose_band")
    )
    return frame.select(*PERSISTENCE_COLUMNS)
