"""The one entry point the study pipeline calls: dose, episodes, persistence, KM and Cox tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DoubleType,
    StructType,
)

from rxcohort.cohort.build import truncate_lineage
from rxcohort.contract import spark_schemas
from rxcohort.errors import ConfigError
from rxcohort.log import get_logger
from rxcohort.persistence.episodes import (
    add_supply,
    generate_episodes,
    require_grace_days,
    require_positive_units_per_day,
    summarise_dose,
)
from rxcohort.persistence.follow_up import (
    DEFAULT_AGE_BAND_EDGES,
    END_NO_SUPPLY,
    generate_persistence,
)
from rxcohort.persistence.survival import (
    fit_cox,
    fit_km_curves,
    fit_km_medians,
)
from rxcohort.spark import local_frame

log = get_logger("persistence")

DEFAULT_KM_STRATA: tuple[str, ...] = ("sex", "age_band", "index_dose_band", "prior_opioid_use")
DEFAULT_COX_COVARIATES: tuple[str, ...] = (
    "age_at_index",
    "sex",
    "baseline_opioid_ddd",
    "index_dose_band",
    "prescriber_specialty",
)
# Hazard ratios per 10 years of age and per 100 DDD of opioids read better than per unit.
DEFAULT_COX_SCALE: Mapping[str, float] = {"age_at_index": 10.0, "baseline_opioid_ddd": 100.0}
DEFAULT_COX_REFERENCES: Mapping[str, str] = {
    "sex": "female",
    "index_dose_band": "low",
    "prescriber_specialty": "general_practice",
}

KM_CURVES_SCHEMA, KM_MEDIANS_SCHEMA, COX_RESULTS_SCHEMA = spark_schemas(
    "km_curves", "km_medians", "cox_results"
)

_MODEL_COLUMNS: tuple[str, ...] = (
    "time_days",
    "event",
    "end_reason",
    "age_at_index",
    "age_band",
    "sex",
    "dose_band",
    "index_dose_band",
    "mean_daily_dose_mg",
    "baseline_opioid_ddd",
    "prior_opioid_use",
    "prescriber_specialty",
    "exposure_group",
)


def restrict_to_follow_up(
    index_dispensings: DataFrame, cohort: DataFrame, *, data_end: date
) -> DataFrame:
    """Index-drug dispensings of cohort persons from their index date to the end of data.

    Episodes then start at index by construction (a new user has nothing earlier), and for a
    study without a new-user rule, earlier use does not leak into time on treatment.
    """
    return (
        index_dispensings.join(cohort.select("person_id", "index_date"), "person_id")
        .where(
            (F.col("dispense_date") >= F.col("index_date"))
            & (F.col("dispense_date") <= F.lit(data_end))
        )
        .drop("index_date")
    )


def pandas_to_spark(spark: SparkSession, pdf: pd.DataFrame, schema: StructType) -> DataFrame:
    """A small pandas result as a Spark frame with a fixed schema; NaN and NA become null."""
    names = [f.name for f in schema.fields]
    as_float = [isinstance(f.dataType, DoubleType) for f in schema.fields]
    records = []
    for row in pdf[names].itertuples(index=False, name=None):
        records.append(
            tuple(
                None if _is_missing(v) else (float(v) if f else _plain(v))
                for v, f in zip(row, as_float, strict=True)
            )
        )
    return local_frame(spark, records, schema)


def _is_missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _plain(value: object) -> object:
    # numpy scalars -> Python scalars, which Spark's verifier accepts.
    return value.item() if hasattr(value, "item") else value


def build_persistence_tables(
    cohort: DataFrame,
    index_dispensings: DataFrame,
    prescribers: DataFrame,
    baseline: DataFrame | None,
    *,
    grace_days: int,
    data_end: date,
    units_per_day: float = 1.0,
    age_band_edges: Sequence[int] = DEFAULT_AGE_BAND_EDGES,
    km_strata: Sequence[str] = DEFAULT_KM_STRATA,
    cox_covariates: Sequence[str] = DEFAULT_COX_COVARIATES,
    cox_references: Mapping[str, str] = DEFAULT_COX_REFERENCES,
    cox_scale: Mapping[str, float] = DEFAULT_COX_SCALE,
    min_events_per_level: int = 5,
) -> dict[str, DataFrame]:
    """Build the study's persistence tables (all Spark DataFrames, ready for ``io.write_table``).

    Inputs: ``cohort`` (person_id, index_date, exposure_group, sex, age_at_index,
    index_strength_mg, index_prescriber_id, death_date, emigration_date); ``index_dispensings``
    (silver dispensings already filtered by the study's index-drug rule); ``prescribers``
    (silver/prescribers); ``baseline`` (person_id, baseline_opioid_ddd[, prior_opioid_use]) or
    None. Values: ``grace_days`` (study ``persistence.grace_days``), ``data_end`` (last day of
    the delivery period), ``units_per_day`` (assumed intake for supply and for persons whose
    dose cannot be measured).

    Returns ``episodes``, ``dose`` and ``persistence`` and ``km_curves``, ``km_medians`` and
    ``cox_results`` (small frames computed here with lifelines on the per-person table, the one
    place this function collects to the driver). Columns: see docs/persistence.md. The first
    three are computed here, once (local checkpoints: a row per person or episode), because
    each is read again - by the next, by the model fits and by its write.
    """
    grace_days = require_grace_days(grace_days)
    units_per_day = require_positive_units_per_day(units_per_day)
    if not isinstance(data_end, date):
        raise ConfigError(f"data_end must be a date, not {type(data_end).__name__}")

    dispensings = restrict_to_follow_up(index_dispensings, cohort, data_end=data_end)
    episodes = truncate_lineage(
        generate_episodes(
            add_supply(dispensings, units_per_day=units_per_day), grace_days=grace_days
        )
    )
    dose = truncate_lineage(summarise_dose(episodes, units_per_day=units_per_day))
    persistence = truncate_lineage(
        generate_persistence(
            cohort,
            episodes,
            dose,
            prescribers,
            baseline,
            grace_days=grace_days,
            data_end=data_end,
            units_per_day=units_per_day,
            age_band_edges=age_band_edges,
        )
    )

    fits = _fit_models(
        persistence,
        km_strata=km_strata,
        cox_covariates=cox_covariates,
        cox_references=cox_references,
        cox_scale=cox_scale,
        min_events_per_level=min_events_per_level,
    )
    return {"episodes": episodes, "dose": dose, "persistence": persistence, **fits}


def _fit_models(
    persistence: DataFrame,
    *,
    km_strata: Sequence[str],
    cox_covariates: Sequence[str],
    cox_references: Mapping[str, str],
    cox_scale: Mapping[str, float],
    min_events_per_level: int,
) -> dict[str, DataFrame]:
    """Kaplan-Meier curves and medians and the Cox model over the persons with a supply, on
    the driver (the per-person table's model columns only), back as Spark frames."""
    # In person order: the PH test ranks tied times by row order, which Spark does not fix.
    pdf = (
        persistence.select("person_id", *_MODEL_COLUMNS)
        .toPandas()
        .sort_values("person_id", kind="stable", ignore_index=True)
        .drop(columns="person_id")
    )
    _log_counts(pdf)
    analysable = pdf[pdf["end_reason"] != END_NO_SUPPLY]
    km_curves = fit_km_curves(analysable, strata=km_strata)
    km_medians = fit_km_medians(analysable, strata=km_strata)
    cox = fit_cox(
        analysable,
        covariates=cox_covariates,
        references=cox_references,
        scale=cox_scale,
        min_events_per_level=min_events_per_level,
    )
    model_row = cox.iloc[0]
    log.info("cox model: status %s, %s term row(s)", model_row["status"], len(cox) - 1)
    spark = persistence.sparkSession
    return {
        "km_curves": pandas_to_spark(spark, km_curves, KM_CURVES_SCHEMA),
        "km_medians": pandas_to_spark(spark, km_medians, KM_MEDIANS_SCHEMA),
        "cox_results": pandas_to_spark(spark, cox, COX_RESULTS_SCHEMA),
    }


def _log_counts(pdf: pd.DataFrame) -> None:
    reasons = pdf["end_reason"].value_counts().to_dict()
    log.info(
        "persistence: %d persons; first episode ends: %s",
        len(pdf),
        ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none",
    )
