"""The ``runs`` table: what each study run read, with which definition and code, and how it ended.

One row per run, appended to ``<warehouse>/studies/<study_id>/runs``. With the Delta version of
every input, a run can be rebuilt later (``rxcohort run STUDY --as-of RUN_ID``).
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

import rxcohort
from rxcohort import io
from rxcohort.config import project_root
from rxcohort.contract import table_spec
from rxcohort.errors import RxCohortError
from rxcohort.spark import local_frame

STATUS_SUCCEEDED = "succeeded"
STATUS_FAILED = "failed"

RUNS_SCHEMA = table_spec("runs").schema()


@dataclass
class RunRecord:
    """One row of the runs table, filled in as the run goes."""

    run_id: str
    study_id: str
    definition_sha256: str
    definition_yaml: str
    started_at: datetime
    as_of_run_id: str | None = None
    input_versions: dict[str, int] = field(default_factory=dict)
    output_versions: dict[str, int] = field(default_factory=dict)
    n_persons: int | None = None
    status: str = STATUS_FAILED
    error: str | None = None
    finished_at: datetime | None = None
    rxcohort_version: str = rxcohort.__version__
    git_commit: str | None = None

    def as_tuple(self) -> tuple:
        return (
            self.run_id,
            self.study_id,
            self.status,
            self.as_of_run_id,
            self.definition_sha256,
            self.definition_yaml,
            self.rxcohort_version,
            self.git_commit,
            dict(self.input_versions),
            dict(self.output_versions),
            self.n_persons,
            self.started_at,
            self.finished_at or utc_now(),
            self.error,
        )


@dataclass(frozen=True)
class PastRun:
    run_id: str
    study_id: str
    status: str
    definition_sha256: str
    definition_yaml: str
    input_versions: dict[str, int]


def utc_now() -> datetime:
    # Spark stores timestamps as UTC instants; a naive UTC datetime keeps the session zone out.
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def new_run_id(now: datetime) -> str:
    """Sortable and unique: ``20250101T120000Z-1a2b3c4d``."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


def git_commit() -> str | None:
    """The source checkout's commit (``-dirty`` with uncommitted changes), or None."""
    root = project_root()
    if root is None or not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = head.stdout.strip()
    return f"{commit}-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else commit


def append_run(spark: SparkSession, runs_path: Path, record: RunRecord) -> int:
    frame = local_frame(spark, [record.as_tuple()], RUNS_SCHEMA).coalesce(1)
    return io.write_table(
        frame,
        runs_path,
        mode="append",
        commit_info={"rxcohort.run_id": record.run_id, "rxcohort.study_id": record.study_id},
    )


def find_run(spark: SparkSession, runs_path: Path, run_id: str) -> PastRun:
    """The runs-table row of ``run_id``; a clear error when there is none."""
    if not io.table_exists(runs_path):
        raise RxCohortError(f"no runs recorded at {runs_path}; nothing to rebuild --as-of")
    rows = (
        io.read_table(spark, runs_path)
        .where(F.col("run_id") == F.lit(run_id))
        .select(
            "run_id",
            "study_id",
            "status",
            "definition_sha256",
            "definition_yaml",
            "input_versions",
        )
        .collect()
    )
    if not rows:
        raise RxCohortError(f"run {run_id} is not in {runs_path}")
    row = rows[0]
    return PastRun(
        run_id=row["run_id"],
        study_id=row["study_id"],
        status=row["status"],
        definition_sha256=row["definition_sha256"],
        definition_yaml=row["definition_yaml"],
        input_versions={k: int(v) for k, v in (row["input_versions"] or {}).items()},
    )
