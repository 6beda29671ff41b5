"""``build_report``: read a study's tables, aggregate, render one self-contained HTML file.

The I/O edge of the report: tables are read through :mod:`rxcohort.io`; person-level tables
(cohort, consumption, persistence) are aggregated by Spark (:mod:`rxcohort.report.summaries`)
before anything is collected; the result tables are small and collected as they are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from rxcohort import io
from rxcohort.errors import ConfigError, TableNotFoundError
from rxcohort.lock import warehouse_lock
from rxcohort.log import get_logger
from rxcohort.preflight import check_study_tables
from rxcohort.report import summaries
from rxcohort.report.html import render_page
from rxcohort.report.plotdata import dose_bins, histogram_table
from rxcohort.report.sections import ReportData, RunInfo, build_sections, protect_report
from rxcohort.study.describe import describe_study
from rxcohort.study.loader import parse_study
from rxcohort.study.models import Study

log = get_logger("report")

REPORT_FILE = "report.html"
RESULT_TABLES = (
    "attrition",
    "group_results",
    "did_results",
    "responders",
    "trajectories",
    "its_results",
    "km_curves",
    "km_medians",
    "cox_results",
    "use_over_time",
    "prescriber_summary",
    "characteristics",
    "characteristics_smd",
)
PERSON_TABLES = ("cohort", "consumption", "persistence", "dose")
DOSE_COLUMN = "mean_daily_dose_mg"
DOSE_BIN_WIDTH = 0.5
DOSE_BIN_UPPER = 5.0


def build_report(
    spark: SparkSession,
    *,
    warehouse: str | Path,
    study_id: str,
    study: Study | None = None,
    run: Any = None,
) -> Path:
    """Write ``<warehouse>/studies/<study_id>/report.html`` and return its path.

    ``study`` is the parsed study file; without it the definition stored with the run is used.
    ``run`` describes the run for the provenance section - a row of the ``runs`` table or an
    object with the same attributes (the study pipeline's ``RunRecord``); without it the latest
    succeeded run in the ``runs`` table is used. Every section whose tables are missing says so;
    the report is only refused when the study has no tables at all.
    """
    with warehouse_lock(warehouse, command="report"):
        return _build_report(spark, warehouse=warehouse, study_id=study_id, study=study, run=run)


def _build_report(
    spark: SparkSession, *, warehouse: str | Path, study_id: str, study: Study | None, run: Any
) -> Path:
    study_dir = check_study_tables(warehouse, study_id)
    data = collect_report_data(
        spark, warehouse=Path(warehouse), study_id=study_id, study=study, run=run
    )
    page = render_report(data)
    path = study_dir / REPORT_FILE
    partial = study_dir / f".{REPORT_FILE}.partial"
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, path)
    log.info("report for %s written to %s (%d KiB)", study_id, path, len(page) // 1024)
    return path


def render_report(data: ReportData) -> str:
    """The whole HTML page for ``data`` (pure: no I/O)."""
    sections = build_sections(data)
    title = data.study.title if data.study is not None else f"Study {data.study_id}"
    available = sum(s.available for s in sections)
    subtitle = (
        f"Study {data.study_id} · report generated {data.generated_at} UTC · "
        f"{available} of {len(sections)} sections with data. Counts of 1-4 persons are shown "
        "as <5 and values that would reveal them as 'masked'; figures leave them out."
    )
    footer = (
        "Built by rxcohort from the study's Delta tables. Self-contained: no scripts, fonts or "
        "links; the figures are embedded PNG images."
    )
    return render_page(title=title, subtitle=subtitle, sections=sections, footer=footer)


# -- reading ------------------------------------------------------------------------------------


def collect_report_data(
    spark: SparkSession,
    *,
    warehouse: Path,
    study_id: str,
    study: Study | None = None,
    run: Any = None,
) -> ReportData:
    study_dir = warehouse / "studies" / study_id
    notes: dict[str, str] = {}
    run_info = RunInfo.from_any(run) if run is not None else _latest_run(spark, study_dir / "runs")
    tables, versions = _run_tables(spark, study_dir, run_info)
    if run_info is None:
        notes["run"] = "the study has no runs table"
    study = _study_of_run(study, study_id, run_info, notes)

    results = {name: tables[name].toPandas() for name in RESULT_TABLES if name in tables}
    characteristics = results.pop("characteristics", None)
    characteristics_smd = results.pop("characteristics_smd", None)
    window_ddd = None
    if "cohort" in tables:
        if characteristics is None:  # a run from before Table 1 was a study table
            characteristics = _characteristics(study, tables)
        if "consumption" in tables:
            window_ddd = summaries.summarise_window_ddd(
                tables["cohort"], tables["consumption"]
            ).toPandas()
    dose_table, dose_bands, dose_source = _dose_summaries(tables, notes)
    deliveries, quality, scope = _quality(spark, warehouse, run_info, notes)

    groups, drugs = _labels(study, characteristics, window_ddd, results)
    data = ReportData(
        study_id=study_id,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        study=study,
        study_text=describe_study(study) if study is not None else None,
        groups=groups,
        drug_groups=drugs,
        windows=_windows(study, window_ddd),
        ddd_unit=_ddd_unit(study),
        attrition=results.get("attrition"),
        characteristics=characteristics,
        characteristics_smd=characteristics_smd,
        window_ddd=window_ddd,
        group_results=results.get("group_results"),
        did_results=results.get("did_results"),
        responders=results.get("responders"),
        trajectories=results.get("trajectories"),
        its_results=results.get("its_results"),
        km_curves=results.get("km_curves"),
        km_medians=results.get("km_medians"),
        cox_results=results.get("cox_results"),
        use_over_time=results.get("use_over_time"),
        prescriber_summary=results.get("prescriber_summary"),
        dose_bins=dose_table,
        dose_bands=dose_bands,
        dose_source=dose_source,
        deliveries=deliveries,
        quality=quality,
        quality_scope=scope,
        run=run_info,
        table_versions=versions,
        notes=notes,
    )
    return replace(data, protected=protect_report(data))


def _run_tables(
    spark: SparkSession, study_dir: Path, run_info: RunInfo | None
) -> tuple[dict[str, DataFrame], dict[str, int]]:
    """The study's tables as the run wrote them, and their versions. A later run killed
    half-way left newer versions of some (rxcohort.pipelines.snapshot); without a run that
    wrote them, the latest."""
    written = dict(run_info.output_versions) if run_info and run_info.output_versions else {}
    names = [
        name
        for name in (*RESULT_TABLES, *PERSON_TABLES)
        if io.table_exists(study_dir / name) and (not written or name in written)
    ]
    tables = {
        name: io.read_table(spark, study_dir / name, version=written.get(name)) for name in names
    }
    versions = {
        name: v
        for name in (*names, "runs")
        if (v := written.get(name, io.table_version(study_dir / name))) is not None
    }
    return tables, versions


def _study_of_run(
    study: Study | None, study_id: str, run_info: RunInfo | None, notes: dict[str, str]
) -> Study | None:
    """The study given, else the definition the run recorded; ``notes`` says when neither."""
    if study is None and run_info is not None and run_info.definition_yaml:
        try:
            study = parse_study(
                run_info.definition_yaml, study_id=study_id, source=f"run {run_info.run_id}"
            ).study
        except ConfigError as exc:
            notes["study"] = f"the stored study definition no longer validates ({exc})"
    if study is None and "study" not in notes:
        notes["study"] = "no study file was given and no run recorded the definition"
    return study


def _dose_summaries(
    tables: dict[str, DataFrame], notes: dict[str, str]
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, str | None]:
    """The dose histogram and the persons per dose band, and the table they came from."""
    dose, dose_source = _dose_frame(tables)
    if dose is None:
        if "persistence" in tables or "dose" in tables:
            notes["dose"] = f"the persistence tables have no {DOSE_COLUMN} column"
        return None, None, dose_source
    bins = dose_bins(width=DOSE_BIN_WIDTH, upper=DOSE_BIN_UPPER)
    counts = summaries.summarise_dose_bins(
        dose, dose_col=DOSE_COLUMN, width=DOSE_BIN_WIDTH, upper=DOSE_BIN_UPPER
    ).toPandas()
    dose_bands = None
    if "dose_band" in dose.columns:
        dose_bands = (
            summaries.summarise_group_counts(dose, column="dose_band")
            .toPandas()
            .sort_values("value", na_position="last")
            .reset_index(drop=True)
        )
    return histogram_table(counts, bins), dose_bands, dose_source


def _latest_run(spark: SparkSession, path: Path) -> RunInfo | None:
    """The latest succeeded run (the latest of any status when none succeeded)."""
    if not io.table_exists(path):
        return None
    runs = io.read_table(spark, path)
    succeeded = F.when(F.col("status") == "succeeded", 1).otherwise(0)
    row = runs.orderBy(succeeded.desc(), F.col("started_at").desc()).limit(1).collect()
    return RunInfo.from_any(row[0]) if row else None


def _dose_frame(tables: dict[str, DataFrame]) -> tuple[DataFrame | None, str | None]:
    for name in ("persistence", "dose"):
        frame = tables.get(name)
        if frame is not None and DOSE_COLUMN in frame.columns:
            return frame, name
    return None, None


def _quality(
    spark: SparkSession, warehouse: Path, run: RunInfo | None, notes: dict[str, str]
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, str | None]:
    """Deliveries and expectation results of the loads the run read (else the latest load)."""
    quality_path = warehouse / "quality" / "runs"
    deliveries_path = warehouse / "silver" / "deliveries"
    if not io.table_exists(quality_path):
        notes["quality"] = "the warehouse has no quality/runs table"
        return None, None, None
    deliveries = None
    version = (run.input_versions if run else {}).get("silver/deliveries")
    if io.table_exists(deliveries_path):
        try:
            deliveries = io.read_table(spark, deliveries_path, version=version)
        except TableNotFoundError:
            deliveries = None
    quality = io.read_table(spark, quality_path)
    load_ids: list[str] = []
    if deliveries is not None and version is not None:
        load_ids = [r["load_id"] for r in deliveries.select("load_id").distinct().collect()]
        scope = f"Loads recorded in silver/deliveries version {version}, the version the run read."
    if not load_ids:
        latest = quality.orderBy(F.col("run_time").desc()).select("load_id").limit(1).collect()
        if not latest:
            notes["quality"] = "the quality/runs table is empty"
            return None, None, None
        load_ids = [latest[0]["load_id"]]
        scope = "The latest load in the warehouse (the run did not record which loads it read)."
    columns = [
        c
        for c in (
            "load_id",
            "suite",
            "expectation_index",
            "expectation",
            "column",
            "severity",
            "success",
            "observed",
        )
        if c in quality.columns
    ]
    quality_pd = quality.where(F.col("load_id").isin(load_ids)).select(*columns).toPandas()
    deliveries_pd = None
    if deliveries is not None:
        wanted = [
            c
            for c in (
                "load_id",
                "registry",
                "extract_date",
                "period_start",
                "period_end",
                "rows_read",
            )
            if c in deliveries.columns
        ]
        deliveries_pd = (
            deliveries.where(F.col("load_id").isin(load_ids))
            .select(*wanted)
            .toPandas()
            .sort_values("load_id")
            .reset_index(drop=True)
        )
    return deliveries_pd, quality_pd, scope


def _characteristics(study: Study | None, tables: Mapping[str, DataFrame]) -> pd.DataFrame:
    """Table 1 without the markers, for a run that did not write ``characteristics``."""
    from rxcohort.transforms.characterisation import characteristics_table

    cohort = tables["cohort"].select("person_id", "exposure_group", "sex", "age_at_index")
    cohort_pdf = cohort.toPandas()
    consumption = tables.get("consumption")
    window = study.characterisation.window if study is not None else "pre"
    if study is not None:
        groups = [g.label for g in study.exposure_groups]
        drugs = list(study.drug_groups)
    else:
        groups = sorted(g for g in cohort_pdf["exposure_group"].dropna().unique())
        drugs = []
    consumption_pdf = None
    if consumption is not None:
        consumption_pdf = consumption.where(F.col("window") == window).toPandas()
        if study is None:
            drugs = sorted(consumption_pdf["drug_group"].unique())
    return characteristics_table(
        cohort_pdf, consumption_pdf, None, groups=groups, drug_groups=drugs, window=window
    )


def _labels(
    study: Study | None,
    characteristics: pd.DataFrame | None,
    window_ddd: pd.DataFrame | None,
    results: dict[str, pd.DataFrame],
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if study is not None:
        return (
            tuple(g.label for g in study.exposure_groups),
            tuple(study.drug_groups),
        )
    groups: set[str] = set()
    drugs: set[str] = set()
    for frame in (characteristics, window_ddd, *results.values()):
        if frame is None:
            continue
        if "exposure_group" in frame.columns:
            groups |= {g for g in frame["exposure_group"].dropna() if g != summaries.ALL_GROUPS}
        if "drug_group" in frame.columns:
            drugs |= set(frame["drug_group"].dropna())
    return tuple(sorted(groups)), tuple(sorted(drugs))


def _windows(study: Study | None, window_ddd: pd.DataFrame | None) -> tuple[str, str]:
    names: list[str] = list(study.windows) if study is not None else []
    if not names and window_ddd is not None and not window_ddd.empty:
        names = sorted(set(window_ddd["window"]), key=lambda w: (w != "pre", w != "post", w))
    if "pre" in names and "post" in names:
        return ("pre", "post")
    if len(names) >= 2:
        return (names[0], names[1])
    return ("pre", "post")


def _ddd_unit(study: Study | None) -> str:
    if study is None:
        return "DDD per person per window"
    lengths = {w.end - w.start + 1 for w in study.windows.values()}
    if lengths == {365}:
        return "DDD per person per year"
    if len(lengths) == 1:
        return f"DDD per person per {lengths.pop()} days"
    return "DDD per person per window"
