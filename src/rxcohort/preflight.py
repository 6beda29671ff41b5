"""Checks that need no engine, made before one starts.

A wrong path, study id or run id is one clear line at once, not after an engine has started
(seconds on the embedded engine, tens of seconds on a JVM). Each check reads only the file
system and Delta logs (through ``deltalake``); the jobs repeat what matters when they run.
"""

from __future__ import annotations

import re
from pathlib import Path

from rxcohort import io
from rxcohort.errors import ConfigError, RxCohortError, TableNotFoundError

STUDY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# What a study reads; a warehouse without them has had no ingest.
STUDY_INPUTS = ("silver/dispensings", "silver/persons")


# What ``rxcohort export --format`` writes: a CSV per table, or DARWIN EU's long format.
EXPORT_FORMATS: tuple[str, ...] = ("csv", "summarised_result")


def check_export_format(format: str) -> None:
    if format not in EXPORT_FORMATS:
        raise ConfigError(
            f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}"
        )


def check_study_id(study_id: str) -> None:
    if not STUDY_ID.match(study_id):
        raise ConfigError(f"study id {study_id!r} must be a file name (letters, digits, _ . -)")


def check_warehouse(warehouse: str | Path, *, inputs: bool = False) -> Path:
    """The warehouse directory exists (and, with ``inputs``, holds the silver tables)."""
    root = Path(warehouse)
    if not root.is_dir():
        raise RxCohortError(
            f"no warehouse at {root}: ingest a delivery first (rxcohort ingest DIR -w {root})"
        )
    if inputs:
        missing = [t for t in STUDY_INPUTS if not io.table_exists(root / t)]
        if missing:
            raise TableNotFoundError(
                f"{root} has no {', '.join(missing)}: ingest a delivery first "
                f"(rxcohort ingest DIR -w {root})"
            )
    return root


def check_study_tables(warehouse: str | Path, study_id: str) -> Path:
    """The study has tables in the warehouse; returns its directory."""
    check_study_id(study_id)
    root = check_warehouse(warehouse)
    study_dir = root / "studies" / study_id
    if not study_dir.is_dir() or not any(io.table_exists(p) for p in study_dir.iterdir()):
        known = sorted(p.name for p in (root / "studies").glob("*") if p.is_dir())
        hint = f" (studies here: {', '.join(known)})" if known else ""
        raise TableNotFoundError(
            f"study {study_id} has no tables in {root / 'studies'}; run the study first{hint}"
        )
    return study_dir


def check_run_id(warehouse: str | Path, study_id: str, run_id: str) -> None:
    """``run_id`` is a recorded run of the study (for ``--as-of``)."""
    runs = Path(warehouse) / "studies" / study_id / "runs"
    if not io.table_exists(runs):
        raise RxCohortError(f"no runs recorded at {runs}; nothing to rebuild --as-of")
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    # File by file on this thread: a thread pool left running at exit can abort the process.
    ids = [
        run
        for uri in DeltaTable(str(runs)).file_uris()
        for run in pq.read_table(uri, columns=["run_id"], use_threads=False)["run_id"].to_pylist()
    ]
    if run_id not in ids:
        latest = sorted(i for i in ids if i)[-3:]
        raise RxCohortError(
            f"run {run_id} is not in {runs} (latest: {', '.join(latest) or 'none'})"
        )


def check_delivery(delivery_dir: str | Path) -> None:
    """The delivery directory exists and lists contract files (manifest read, no content)."""
    from rxcohort.ingest.delivery import scan_delivery

    scan_delivery(delivery_dir)
