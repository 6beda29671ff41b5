"""The analyses of a study run: outcome statistics (issue 6), persistence (issue 7), and drug
utilisation over calendar time and by prescriber (issue 16).

They read the tables the run has just built, collect only the small study-level frames (the
cohort, its consumption and monthly summaries), and write their result tables beside the cohort
through :mod:`rxcohort.io`, one Delta commit per table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from rxcohort import io
from rxcohort.log import get_logger
from rxcohort.spark import local_frame

if TYPE_CHECKING:
    from rxcohort.study.models import Study

log = get_logger("study.analyses")

Progress = Callable[[str], None]

# silver/prescribers' columns that persistence reads, for a warehouse without that table.
NO_PRESCRIBERS_SCHEMA = StructType(
    [StructField(name, StringType()) for name in ("prescriber_id", "profession", "specialty")]
)
STATISTICS_TABLES = ("group_results", "did_results", "responders", "trajectories", "its_results")
PERSISTENCE_ORDER = ("episodes", "dose", "persistence", "km_curves", "km_medians", "cox_results")


def run_statistics(
    spark: SparkSession,
    *,
    cohort: DataFrame,
    consumption: DataFrame,
    dispensings: DataFrame,
    study_dir: Path,
    exposure_groups: list[str],
    drug_groups: Mapping[str, tuple[str, ...] | list[str]],
    contrasts: list[tuple[str, str]] | None,
    responder_threshold: float,
    months_before: int,
    months_after: int,
    its_lag_months: list[int],
    commit_info: Mapping[str, str],
) -> dict[str, int]:
    """Compute and write the outcome tables; return their Delta versions."""
    from rxcohort.stats import compute_outcome_tables
    from rxcohort.transforms.trajectories import summarise_monthly_ddd

    cohort_pdf = cohort.select("person_id", "exposure_group").toPandas()
    consumption_pdf = consumption.toPandas()
    monthly = summarise_monthly_ddd(
        cohort,
        dispensings,
        drug_groups={k: list(v) for k, v in drug_groups.items()},
        months_before=months_before,
        months_after=months_after,
    ).toPandas()
    tables = compute_outcome_tables(
        cohort_pdf,
        consumption_pdf,
        monthly,
        group_order=exposure_groups,
        drug_groups=list(drug_groups),
        contrasts=contrasts,
        responder_threshold=responder_threshold,
        its_lag_months=its_lag_months,
    )
    return write_result_frames(spark, tables, study_dir=study_dir, commit_info=commit_info)


def write_result_frames(
    spark: SparkSession,
    frames: Mapping[str, pd.DataFrame],
    *,
    study_dir: Path,
    commit_info: Mapping[str, str],
) -> dict[str, int]:
    """Write each small result frame (its table's layout, :mod:`rxcohort.stats.frames`) as
    one-file Delta table ``study_dir/<name>``, one commit each; return their versions."""
    from rxcohort.stats import to_spark

    return {
        name: io.write_table(
            to_spark(spark, frame, table=name).coalesce(1),
            study_dir / name,
            mode="overwrite",
            commit_info=commit_info,
        )
        for name, frame in frames.items()
    }


def _finished(frames: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each frame in its table's columns and dtypes (:func:`rxcohort.stats.frames.finish`)."""
    from rxcohort.stats.frames import finish

    return {name: finish(frame, name) for name, frame in frames.items()}


def baseline_use(consumption: DataFrame, *, drug_group: str, window: str) -> DataFrame:
    """Per person: DDD of ``drug_group`` in ``window`` and whether they used it (for the models)."""
    return consumption.where(
        (F.col("drug_group") == drug_group) & (F.col("window") == window)
    ).select(
        "person_id",
        F.col("ddd").alias("baseline_opioid_ddd"),
        F.col("is_user").alias("prior_opioid_use"),
    )


def run_persistence(
    *,
    cohort: DataFrame,
    index_dispensings: DataFrame,
    prescribers: DataFrame | None,
    consumption: DataFrame,
    study_dir: Path,
    baseline_drug_group: str,
    baseline_window: str,
    grace_days: int,
    data_end: date,
    commit_info: Mapping[str, str],
) -> dict[str, int]:
    """Build and write episodes, dose, persistence, KM and Cox tables; return their versions."""
    from rxcohort.persistence import build_persistence_tables

    spark = cohort.sparkSession
    if prescribers is None:
        prescribers = local_frame(spark, [], NO_PRESCRIBERS_SCHEMA)
    tables = build_persistence_tables(
        cohort,
        index_dispensings,
        prescribers,
        baseline_use(consumption, drug_group=baseline_drug_group, window=baseline_window),
        grace_days=grace_days,
        data_end=data_end,
    )
    versions = {}
    for name in [n for n in PERSISTENCE_ORDER if n in tables] + sorted(
        set(tables) - set(PERSISTENCE_ORDER)
    ):
        frame = tables[name]
        if name not in ("episodes", "persistence", "dose"):
            frame = frame.coalesce(1)
        versions[name] = io.write_table(
            frame, study_dir / name, mode="overwrite", commit_info=commit_info
        )
    return versions


def run_use_over_time(
    *,
    study: Study,
    dispensings: DataFrame,
    persons: DataFrame,
    data_start: date,
    study_dir: Path,
    commit_info: Mapping[str, str],
) -> dict[str, int]:
    """Write ``use_over_time`` (:mod:`rxcohort.transforms.utilisation`) for the index drug and
    each drug group; ``dispensings`` are all silver dispensings, ``data_start`` the data's
    first day (for the new users' look-back)."""
    from rxcohort.cohort.build import index_drug_definition
    from rxcohort.transforms import utilisation
    from rxcohort.transforms.drugs import DrugDefinition

    section = study.use_over_time
    span = study.use_over_time_period()
    assert section is not None and span is not None
    periods = utilisation.calendar_periods(*span)
    drugs = [index_drug_definition(study)] + [
        DrugDefinition(label=name, atc_prefixes=tuple(prefixes))
        for name, prefixes in study.drug_groups.items()
    ]
    users, first_uses = utilisation.user_counts(
        dispensings, persons, drugs, start=span[0], end=span[1]
    )
    frame = utilisation.use_over_time_table(
        utilisation.person_groups(persons),
        users,
        first_uses,
        drugs=[d.label for d in drugs],
        periods=periods,
        bounds=section.age_bands,
        labels=section.band_labels(),
        new_users_from=data_start + timedelta(days=section.look_back_days),
    )
    return write_result_frames(
        dispensings.sparkSession,
        _finished({"use_over_time": frame}),
        study_dir=study_dir,
        commit_info=commit_info,
    )


def run_prescriber_summary(
    *,
    study: Study,
    dispensings: DataFrame,
    prescribers: DataFrame,
    study_dir: Path,
    commit_info: Mapping[str, str],
) -> dict[str, int]:
    """Write ``prescriber_summary``: who prescribed the index drug in the index period."""
    from rxcohort.cohort.build import index_drug_definition
    from rxcohort.transforms.utilisation import prescriber_summary_table

    period = study.index_period
    index = dispensings.where(
        index_drug_definition(study).filter()
        & F.col("dispense_date").between(F.lit(period.start), F.lit(period.end))
    )
    return write_result_frames(
        dispensings.sparkSession,
        _finished({"prescriber_summary": prescriber_summary_table(index, prescribers)}),
        study_dir=study_dir,
        commit_info=commit_info,
    )


def run_characteristics(
    *,
    study: Study,
    cohort: DataFrame,
    consumption: DataFrame,
    dispensings: DataFrame,
    study_dir: Path,
    commit_info: Mapping[str, str],
) -> dict[str, int]:
    """Write Table 1, ``characteristics``, and the groups' standardised mean differences,
    ``characteristics_smd`` (:mod:`rxcohort.transforms.characterisation`); ``dispensings``
    are all silver dispensings (co-medication reads every ATC code)."""
    from rxcohort.stats import default_contrasts
    from rxcohort.transforms import characterisation as chars

    section = study.characterisation
    window = study.window_days(section.window)
    conditions = study.characterisation_conditions()
    period = study.index_period
    markers = chars.person_markers(
        cohort,
        dispensings.where(
            F.col("dispense_date").between(
                F.lit(period.start + timedelta(days=window[0])),
                F.lit(period.end + timedelta(days=window[1])),
            )
        ),
        window=window,
        conditions=conditions,
        code_chapters=section.code_chapters,
    ).toPandas()
    groups = [g.label for g in study.exposure_groups]
    table = chars.characteristics_table(
        cohort.select("person_id", "exposure_group", "sex", "age_at_index").toPandas(),
        consumption.where(F.col("window") == section.window)
        .select("person_id", "drug_group", "window", "ddd", "is_user")
        .toPandas(),
        markers,
        groups=groups,
        drug_groups=list(study.drug_groups),
        window=section.window,
        conditions=list(conditions),
        comedication_top=section.comedication_top,
    )
    contrasts = (
        [tuple(c) for c in study.statistics.contrasts]
        if study.statistics.contrasts
        else default_contrasts(groups)
    )
    frames = {"characteristics": table, "characteristics_smd": chars.smd_table(table, contrasts)}
    return write_result_frames(
        dispensings.sparkSession, _finished(frames), study_dir=study_dir, commit_info=commit_info
    )
