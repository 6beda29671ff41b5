"""``rxcohort export``: a study's result tables as CSV files, small counts masked.

Only the result tables named in :data:`rxcohort.privacy.EXPORTABLE_TABLES` are written;
person-level tables (cohort, consumption, episodes, ...) never leave the warehouse this way,
whatever else the study directory holds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession

from rxcohort import io
from rxcohort.disclosure import protect_tables
from rxcohort.errors import TableNotFoundError
from rxcohort.log import get_logger
from rxcohort.persistence.survival import km_curves_published
from rxcohort.pipelines.snapshot import last_succeeded_run, succeeded_run
from rxcohort.preflight import check_export_format, check_study_id
from rxcohort.privacy import EXPORTABLE_TABLES, MASKED_VALUE, MASKING_RULES, masked_counts
from rxcohort.stats.its import ITS_PARAMETERS
from rxcohort.summarised import write_summarised_result

log = get_logger("export")


UNKNOWN_REGISTRY = "unknown"


def export_study(
    spark: SparkSession,
    study_id: str,
    *,
    out: str | Path,
    warehouse: str | Path,
    format: str = "csv",
) -> list[Path]:
    """Write ``<out>/<table>.csv`` for each result table the study has; return the paths.

    ``format="summarised_result"`` writes the same protected values as
    ``summarised_result.csv`` and ``settings.csv`` instead (:mod:`rxcohort.summarised`), with
    the registry of the loads the run read as ``cdm_name``.

    Files are comma-separated UTF-8 with a header, ``.`` as decimal mark and an empty field
    for a missing value; person counts 1-4 read ``<5``, and the counts that would give them
    back by subtraction and the values resting on any hidden count read ``masked``
    (:mod:`rxcohort.disclosure`). Rows are sorted by the table's key columns. Each
    file is written beside its final name and renamed into place, so a reader never sees
    half a file. Raises TableNotFoundError when the study has no result table.
    """
    check_study_id(study_id)
    check_export_format(format)
    study_dir = Path(warehouse) / "studies" / study_id
    present = [t for t in EXPORTABLE_TABLES if io.table_exists(study_dir / t)]
    if not present:
        raise TableNotFoundError(
            f"study {study_id} has no result tables in {Path(warehouse) / 'studies'}; "
            f"run the study first"
        )
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    # One artifact: every table is protected together, so that no count hidden in one can be
    # solved from the others (rxcohort.disclosure).
    # The tables as the study's last succeeded run wrote them (a run killed half-way left
    # newer versions of some: rxcohort.pipelines.snapshot); tables that run did not write are left out.
    run_id, written = succeeded_run(study_dir)
    if run_id is not None:
        present = [t for t in present if t in written]
        log.info("exporting the tables of run %s", run_id)
    frames = {
        table: _sorted(
            _whole_counts(
                io.read_table(spark, study_dir / table, version=written.get(table)).toPandas(),
                table,
            ),
            table,
        )
        for table in present
    }
    if "km_curves" in frames:  # a month's counts leave the warehouse, not a day's
        frames["km_curves"] = km_curves_published(frames["km_curves"])
    protected = protect_tables(frames)
    if format == "summarised_result":
        cdm_name = _registry(Path(warehouse), study_dir)
        paths = write_summarised_result(
            {t: protected[t] for t in present},
            out_dir,
            study_id=study_id,
            cdm_name=cdm_name,
            run_id=run_id,
        )
        log.info("exported %d tables as summarised_result (cdm_name %s)", len(present), cdm_name)
        return paths
    written = []
    for table in present:
        masked = protected[table]
        path = out_dir / f"{table}.csv"
        _write_csv(masked, path)
        rule = MASKING_RULES[table]
        log.info(
            "exported %s: %d rows, %d counts masked as <5, %d more hidden beside them",
            table,
            len(masked),
            masked_counts(masked, columns=rule.person_counts),
            int(sum((masked[c] == MASKED_VALUE).sum() for c in rule.person_counts if c in masked)),
        )
        written.append(path)
    return written


def _registry(warehouse: Path, study_dir: Path) -> str:
    """The registry named in the manifests of the loads the study's run read (silver/deliveries
    at the version it pinned; the latest without a run), or ``unknown``."""
    deliveries = warehouse / "silver" / "deliveries"
    if not io.table_exists(deliveries):
        return UNKNOWN_REGISTRY
    run = last_succeeded_run(study_dir)
    version = (run or {}).get("input_versions", {}).get("silver/deliveries")
    rows = io.read_rows(deliveries, ["registry"], version=version)
    names = sorted({r["registry"] for r in rows if r["registry"]})
    return " / ".join(names) if names else UNKNOWN_REGISTRY


def _whole_counts(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Person counts as whole numbers: Spark hands a count column that holds nulls to pandas
    as floats (``11.0``)."""
    out = frame
    for column in MASKING_RULES[table].person_counts:
        if column in out.columns and pd.api.types.is_float_dtype(out[column]):
            out = out.assign(**{column: out[column].astype("Int64")})
    return out


def _sorted(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    # Delta gives no row order; sorting by the labels makes two exports of one version equal.
    keys = [k for k in MASKING_RULES[table].keys if k in frame.columns]
    if not keys:
        return frame.reset_index(drop=True)
    return frame.sort_values(keys, key=_sort_key, kind="stable", na_position="last").reset_index(
        drop=True
    )


def _sort_key(column: pd.Series) -> pd.Series:
    # ITS parameters read best in model order (level, slope, then their changes).
    if column.name == "parameter" and set(column.dropna()) <= set(ITS_PARAMETERS):
        return column.map(ITS_PARAMETERS.index)
    return column


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    partial = path.with_name(f".{path.name}.partial")
    frame.to_csv(partial, index=False, na_rep="", lineterminator="\n", encoding="utf-8")
    os.replace(partial, path)
