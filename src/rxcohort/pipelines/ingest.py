"""``rxcohort ingest``: a delivery into bronze, silver and quarantine, gated by quality suites.

The order of work is what makes the ingest safe to repeat and safe to fail:

1. check every file in plain Python (manifest sha256, gzip, UTF-8, header, line count) -
   except a file whose stamp shows it unchanged since its load (:mod:`rxcohort.ingest.stamps`);
   compare with ``bronze/files``: when no file changed, stop here - nothing is written;
2. read the changed files into bronze rows (Spark) and stage them: Parquet files written into
   the bronze table's private staging directory, not yet committed, so no reader sees them.
   The new bronze of each table is its committed rows of unchanged files plus the staged rows;
3. rebuild silver and quarantine from that whole bronze and stage them too; the rules that
   compare rows write their small intermediate results to a scratch directory
   (``<warehouse>/_rxcohort_scratch/<load id>``, removed at the end). Count the rows, run the
   quality suites on the staged silver files, write the HTML report; a failed hard expectation
   stops here - the staged files are deleted and nothing is committed;
4. commit the staged files: bronze tables (replacing only the changed files' partitions), silver
   and quarantine (one overwrite each), then ``silver/deliveries``, ``quality/runs`` and, last,
   ``bronze/files``. A crash before that last commit leaves ``bronze/files`` unchanged, so
   the next ingest of the same delivery sees the files as changed and redoes the work;
5. check the row-count invariant on the committed tables.

Every row is read from the delivery once and written once per table it lands in; nothing wide
is cached in memory, so the ingest's time and memory grow with the delivery's rows, not faster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from rxcohort import io
from rxcohort.config import project_root
from rxcohort.errors import ConfigError, RxCohortError
from rxcohort.ingest import rules
from rxcohort.ingest.bronze import BRONZE_PARTITION_BY, bronze_table_schema, read_bronze_rows
from rxcohort.ingest.delivery import CheckedFile, Delivery, check_file, scan_delivery
from rxcohort.ingest.incremental import SHARED_IDS, AffectedRows, affected_rows, shared_ids
from rxcohort.ingest.keystore import KeyStore
from rxcohort.ingest.parts import FILE_MONTH, RewrittenParts, file_month, plan_parts
from rxcohort.ingest.rules import ROW_KEY
from rxcohort.ingest.stamps import (
    FileStamp,
    read_stamps,
    stamp_of,
    unchanged_file,
    updated_stamps,
    write_stamps,
)
from rxcohort.ingest.tables import (
    CHANGES_SCHEMA,
    DELIVERIES_SCHEMA,
    FILES_SCHEMA,
    QUALITY_RUNS_SCHEMA,
    SUITES,
    TABLES,
    WarehousePaths,
)
from rxcohort.lock import warehouse_lock
from rxcohort.log import get_logger
from rxcohort.pipelines.snapshot import (
    FINGERPRINTS_RECORD,
    LOAD_VERSIONS,
    SUITES_RECORD,
    complete_load,
    complete_load_record,
)
from rxcohort.quality import (
    ExpectationOutcome,
    load_suites,
    name_failing_files,
    render_quality_report,
    require_hard_expectations,
    run_suite,
)
from rxcohort.quality.report import count_text, protect_page
from rxcohort.quality.suites import Suite
from rxcohort.reference import who_ddd_frame
from rxcohort.schemas import SILVER_DISPENSINGS_PARTITION_BY
from rxcohort.spark import local_frame
from rxcohort.spark import pandas_validation_rows as default_pandas_validation_rows

log = get_logger("ingest")
# Intermediate results of one ingest, under the warehouse; removed when the ingest ends.
SCRATCH_DIR = io.SCRATCH_DIR
# Parquet row groups of silver/dispensings (rows sorted by ATC code within each file).
SILVER_ROW_GROUP_BYTES = 2 * 1024 * 1024
Progress = Callable[[str], None]


@dataclass
class TableCounts:
    """Row counts of one table: this load's rows and the warehouse's after the ingest."""

    read_this_load: int = 0
    clean_this_load: int = 0
    quarantined_this_load: int = 0
    duplicates_this_load: int = 0
    bronze: int = 0
    clean: int = 0
    quarantined: int = 0
    duplicates: int = 0
    reasons: dict[str, tuple[int, int]] = field(default_factory=dict)  # reason: (all, this load)


@dataclass
class IngestResult:
    """What an ingest did; ``summary_rows()`` is what the CLI prints."""

    delivery_dir: Path
    load_id: str | None
    changed: bool
    files: list[tuple[str, int, bool]]  # (delivered path, rows, changed)
    counts: dict[str, TableCounts]
    outcomes: list[ExpectationOutcome]
    versions: dict[str, int | None]
    report_path: Path | None
    ignored: tuple[str, ...] = ()
    # The parts of silver and quarantine whose rows changed (as in silver/changes).
    changed_parts: tuple[str, ...] = ()
    # Dispensing rows classified again by an incremental update (None: all of bronze).
    reclassified: int | None = None

    def summary_rows(self) -> list[tuple[str, str]]:
        n_changed = sum(1 for _, _, changed in self.files if changed)
        rows: list[tuple[str, str]] = [
            ("load id", self.load_id or "none (nothing changed)"),
            ("files", f"{len(self.files)} checked, {n_changed} new or changed"),
        ]
        if not self.changed:
            rows.append(
                ("result", "no change: every file is already in the warehouse as delivered")
            )
        for table in TABLES:
            c = self.counts.get(table)
            if c is None:
                continue
            if self.changed:
                rows.append(
                    (
                        f"{table}: rows read",
                        f"{c.read_this_load:,}: {c.clean_this_load:,} clean, "
                        f"{c.quarantined_this_load:,} quarantined, "
                        f"{c.duplicates_this_load:,} duplicates",
                    )
                )
            rows.append(
                (
                    f"{table}: warehouse",
                    f"{c.bronze:,} bronze = {c.clean:,} silver + {c.quarantined:,} quarantine "
                    f"+ {c.duplicates:,} duplicates",
                )
            )
            for reason, (total, this_load) in sorted(c.reasons.items()):
                rows.append((f"  quarantined {reason}", f"{total:,} ({this_load:,} this load)"))
        if self.outcomes:
            passed = sum(o.success for o in self.outcomes)
            failed_soft = sum(1 for o in self.outcomes if not o.success and o.severity == "soft")
            failed_hard = sum(1 for o in self.outcomes if o.is_hard_failure)
            rows.append(
                (
                    "expectations",
                    f"{passed} passed, {failed_soft} soft warnings, {failed_hard} hard failures",
                )
            )
            for o in self.outcomes:
                if not o.success:
                    rows.append((f"  warning {o.suite}", f"{o.label} {_observed_text(o)}".strip()))
        if self.changed:
            rows.append(("changed", "; ".join(self.changed_parts) or "no silver or quarantine row"))
            rows.append(
                (
                    "dispensings classified",
                    "every row (full)"
                    if self.reclassified is None
                    else f"{self.reclassified:,} rows the changed files can affect (incremental)",
                )
            )
        layers: dict[str, list[str]] = {}
        for name, version in self.versions.items():
            layer, _, table = name.partition("/")
            layers.setdefault(layer, []).append(f"{table} {'-' if version is None else version}")
        for layer, items in layers.items():
            rows.append((f"versions {layer}", ", ".join(items)))
        if self.report_path is not None:
            rows.append(("quality report", str(self.report_path)))
        for name in self.ignored:
            rows.append(("ignored (not a contract file)", name))
        return rows


def _observed_text(outcome: ExpectationOutcome) -> str:
    count = outcome.observed.get("unexpected_count")
    if isinstance(count, int):
        return f"({count:,} rows)"
    if "observed_value" in outcome.observed:
        return f"(observed {outcome.observed['observed_value']})"
    return ""


def default_expectations_dir() -> Path:
    root = project_root()
    if root is None or not (root / "expectations").is_dir():
        raise ConfigError(
            "cannot find the expectations/ directory of the rxcohort checkout; "
            "pass expectations_dir (spark-submit: --expectations DIR)"
        )
    return root / "expectations"


def ingest_delivery(
    spark: SparkSession,
    delivery_dir: str | Path,
    *,
    warehouse: str | Path,
    progress: Progress | None = None,
    expectations_dir: str | Path | None = None,
    pandas_validation_rows: int | None = None,
    lock_wait: float = 0.0,
    full: bool = False,
    verify: bool = False,
) -> IngestResult:
    """Load one delivery into the warehouse (see the module docstring). Safe to repeat.

    Silver and quarantine dispensings are updated incrementally - only the rows the changed
    files can affect are classified again (:mod:`rxcohort.ingest.incremental`) - unless
    ``full``, which classifies the whole bronze again (the same result, slower).

    A file whose stamp shows it unchanged since it was loaded is not read again
    (:mod:`rxcohort.ingest.stamps`); ``verify`` reads and hashes every file all the same.

    ``expectations_dir`` holds the suites (default: the checkout's ``expectations/``); a silver
    table of at most ``pandas_validation_rows`` rows is validated with GX's pandas engine,
    a larger one with GX's Spark engine (default: the engine's own
    :func:`rxcohort.spark.pandas_validation_rows`). The warehouse's write lock is held
    throughout (waited for up to ``lock_wait`` seconds, see :mod:`rxcohort.lock`).
    """
    with warehouse_lock(
        warehouse, command="ingest", wait_seconds=lock_wait, create=True, say=progress
    ):
        return _ingest_delivery(
            spark,
            delivery_dir,
            warehouse=warehouse,
            progress=progress,
            expectations_dir=expectations_dir,
            pandas_validation_rows=pandas_validation_rows,
            full=full,
            verify=verify,
        )


def _ingest_delivery(
    spark: SparkSession,
    delivery_dir: str | Path,
    *,
    warehouse: str | Path,
    progress: Progress | None,
    expectations_dir: str | Path | None,
    pandas_validation_rows: int | None,
    full: bool = False,
    verify: bool = False,
) -> IngestResult:
    say: Progress = progress or (lambda message: None)
    paths = WarehousePaths(warehouse)
    suites_dir = Path(expectations_dir or default_expectations_dir())

    delivery = scan_delivery(delivery_dir)
    for name in delivery.ignored:
        say(f"ignoring {name}: not a contract file")
    registry = _read_registry(spark, paths)
    stamps_before = {} if verify else read_stamps(warehouse)
    fresh: dict[str, FileStamp] = {}  # stamps of the files read this time
    checked = _check_files(delivery, registry, stamps_before, fresh, say)

    period_start, period_end = delivery.period
    changed = [
        c
        for c in checked
        if (r := registry.get(c.file.name)) is None
        or (r["sha256"], r["period_start"], r["period_end"]) != (c.sha256, period_start, period_end)
    ]
    versions_before = {name: io.table_version(p) for name, p in paths.all_tables().items()}
    if not changed and all(v is not None for v in versions_before.values()):
        say("nothing changed: every file is already in the warehouse as delivered")
        if fresh:  # files read again (touched, copied, or --verify) are known now
            write_stamps(warehouse, updated_stamps(stamps_before, fresh, keep=registry))
        return IngestResult(
            delivery_dir=Path(delivery_dir),
            load_id=None,
            changed=False,
            files=[(c.file.relpath, c.rows, False) for c in checked],
            counts={},
            outcomes=[],
            versions=versions_before,
            report_path=None,
            ignored=delivery.ignored,
        )
    if not changed:
        # Files unchanged but a table is missing (deleted, or a crash in an earlier run):
        # rebuild from these files, every one of them read.
        _read_every_file(delivery, checked, fresh)
        changed = list(checked)

    # The suites are loaded (Great Expectations imported: seconds) while the engine reads the
    # changed files; an unchanged delivery needs none.
    suites = _in_background(load_suites, suites_dir, SUITES.values())
    load_time = datetime.now(UTC).replace(microsecond=0)
    load_id = f"{load_time:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    run = _IngestRun(spark, paths, delivery, checked, changed, load_id, load_time, say)
    run.full = full
    run.pandas_limit = (
        pandas_validation_rows
        if pandas_validation_rows is not None
        else default_pandas_validation_rows(spark)
    )
    try:
        result = run.execute(suites, versions_before)
    finally:
        run.release()
    # bronze/files now holds every file of the registry and every file checked.
    kept = set(registry) | {c.file.name for c in checked}
    write_stamps(warehouse, updated_stamps(stamps_before, fresh, keep=kept))
    return result


def _in_background(work: Callable[..., Any], *args: Any) -> Future[Any]:
    """``work(*args)`` started in a thread of its own; its result (or error) from the future."""
    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(work(*args))
        except BaseException as error:  # handed to whoever waits for the result
            future.set_exception(error)

    threading.Thread(target=run, name="rxcohort-suites", daemon=True).start()
    return future


def _check_files(
    delivery: Delivery,
    registry: dict[str, Any],
    stamps_before: dict[str, FileStamp],
    fresh: dict[str, FileStamp],
    say: Progress,
) -> list[CheckedFile]:
    """Every file of the delivery checked: a file whose size and time are as when it was
    loaded is taken as it was; any other is read whole (rows, sha256 against the manifest)
    and its new stamp put in ``fresh``."""
    manifest_files = delivery.manifest.files if delivery.manifest else None
    checked: list[CheckedFile] = []
    for file in delivery.files:
        expected = manifest_files.get(file.relpath) if manifest_files else None
        known = unchanged_file(
            file,
            stamp=stamps_before.get(file.name),
            registered=registry.get(file.name),
            expected_sha256=expected,
        )
        if known is not None:
            say(f"unchanged {file.relpath}: {known.rows:,} rows (size and time as loaded)")
            checked.append(known)
            continue
        before = stamp_of(file)
        result = check_file(file, expected_sha256=expected)
        sha_note = "sha256 matches manifest" if expected else "no sha256 in manifest"
        say(f"checked {file.relpath}: {result.rows:,} rows, {sha_note}")
        fresh[file.name] = dataclasses.replace(before, sha256=result.sha256)
        checked.append(result)
    return checked


def _read_every_file(
    delivery: Delivery, checked: list[CheckedFile], fresh: dict[str, FileStamp]
) -> None:
    """Read (and stamp) the files that were taken as loaded, in place in ``checked``."""
    manifest_files = delivery.manifest.files if delivery.manifest else None
    for i, c in enumerate(checked):
        if c.file.name not in fresh:
            fresh[c.file.name] = stamp_of(c.file)
            expected = manifest_files.get(c.file.relpath) if manifest_files else None
            checked[i] = check_file(c.file, expected_sha256=expected)
            fresh[c.file.name] = dataclasses.replace(fresh[c.file.name], sha256=checked[i].sha256)


@dataclass
class _Incremental:
    """An incremental update of silver dispensings: the rows to classify again (and the
    context they are classified in), the dispensing ids of those outside the changed files,
    and the years it rewrites."""

    affected: AffectedRows  # whose verdicts may change, and the context they are classified in
    ids: DataFrame  # the dispensing ids of affected rows outside the changed files
    size: int = 0  # rows whose verdicts may change
    nothing: bool = False  # no dispensing row can change
    # (year, month) of the affected rows outside the changed files: where their silver rows are
    months: frozenset[tuple[int, int]] = frozenset()
    parts: RewrittenParts = field(default_factory=lambda: RewrittenParts(years=frozenset()))


class _IngestRun:
    """One ingest that changes the warehouse; holds the cached frames so they can be released."""

    def __init__(
        self,
        spark: SparkSession,
        paths: WarehousePaths,
        delivery: Delivery,
        checked: list[CheckedFile],
        changed: list[CheckedFile],
        load_id: str,
        load_time: datetime,
        say: Progress,
    ) -> None:
        self.spark = spark
        self.paths = paths
        self.delivery = delivery
        self.checked = checked
        self.changed = changed
        self.load_id = load_id
        self.load_time = load_time
        self.say = say
        self._cached: list[DataFrame] = []
        self._staged: list[io.StagedTable] = []
        self.changed_parts: tuple[str, ...] = ()
        self.full = False
        self.incremental: _Incremental | None = None
        # The silver dispensings an incremental load rewrote, and their count (None: all).
        self.batch: tuple[DataFrame, int] | None = None
        self.fingerprints: dict[str, _Prints] = {}  # table -> part -> (rows, hash sum) after
        self.scratch = paths.root / SCRATCH_DIR / load_id
        self.pandas_limit = 1_000_000
        self.keystore = KeyStore(spark, paths.root, self.scratch)
        self.materialised: dict[str, DataFrame] = {}
        self.loads: dict[str, str] = {}  # dispensings file -> the load its bronze rows are of
        self.suites: dict[str, Suite] = {}
        self.rebuild: dict[str, bool] = {}
        self.versions_before: dict[str, int | None] = {}
        self.carried: dict[str, str] = {}  # suite -> the load whose outcomes this load keeps

    def _cache(self, frame: DataFrame) -> DataFrame:
        frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
        self._cached.append(frame)
        return frame

    def _stage(self, frame: DataFrame, path: Path, **layout: Any) -> io.StagedTable:
        staged = io.stage_table(frame, path, **layout)
        self._staged.append(staged)
        return staged

    def _materialise(self, frame: DataFrame, name: str) -> DataFrame:
        """Write an intermediate result to the scratch directory and read it back."""
        target = self.scratch / name
        frame.write.mode("overwrite").parquet(str(target))
        # An engine may write nothing at all for no rows (Sail leaves no folder): the folder
        # stands for the empty result, so that what is kept for the next load (the shared
        # ids) is there whether or not any row is.
        target.mkdir(parents=True, exist_ok=True)
        self.materialised[name] = self.spark.read.schema(frame.schema).parquet(str(target))
        return self.materialised[name]

    def release(self) -> None:
        """Unpersist cached frames, delete staged files never committed and the scratch."""
        for frame in self._cached:
            frame.unpersist()
        self._cached.clear()
        for staged in self._staged:
            if not staged.done:
                staged.discard()
        self._staged.clear()
        shutil.rmtree(self.scratch, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.scratch.parent.rmdir()

    # ----------------------------------------------------------------------------------------

    def execute(
        self, loading: Future[dict[str, Suite]], versions_before: dict[str, int | None]
    ) -> IngestResult:
        """The load, its suites coming from ``loading`` (a wrong suite stops it once the
        changed files are read, before anything else is done)."""
        changed_names = {c.file.name for c in self.changed}
        rebuild = self._tables_to_rebuild(versions_before)
        self.rebuild, self.versions_before = rebuild, versions_before
        self.say(f"reading {len(self.changed)} new or changed file(s)")
        staged_bronze, bronze = self._read_bronze(changed_names, versions_before)
        self.suites = suites = loading.result()
        files_frame = self._files_frame(changed_names, versions_before)
        self.loads = _loads_of(files_frame, "dispensings")

        self.say("building silver and quarantine")
        classified, silver, quarantine = self._classify(
            bronze, files_frame, changed_names, versions_before, rebuild
        )
        if self.incremental is None:  # the keys and shared ids the next load's plan reads
            checked = self.materialised.get(rules.CHECKED_DISPENSINGS)
            keys = self.keystore.keys(bronze["dispensings"], self.loads, checked=checked)
            self._materialise(shared_ids(keys), SHARED_IDS)
        staged_silver, staged_quarantine = self._stage_silver_and_quarantine(
            silver, quarantine, rebuild, versions_before
        )
        changes = self._changes(staged_silver, staged_quarantine)
        statuses = self._all_statuses(classified, silver, staged_quarantine, files_frame)
        counts = self._counts(statuses, bronze)
        for table, c in counts.items():
            self.say(
                f"{table}: {c.bronze:,} rows = {c.clean:,} clean + {c.quarantined:,} quarantined "
                f"+ {c.duplicates:,} duplicates"
            )

        self.say("running quality suites")
        outcomes, report_path = self._run_quality(suites, silver, statuses, counts)

        self.say("committing")
        self._commit(staged_bronze, staged_silver, staged_quarantine)
        self._commit_bookkeeping(changes, outcomes, files_frame)
        self._check_committed(counts)
        self.keystore.keep(self.loads, load_id=self.load_id, shared=self.scratch / SHARED_IDS)
        self.say(f"done: load {self.load_id}")
        return self._result(changed_names, counts, outcomes, report_path)

    # -- the stages of a load, in order --------------------------------------------------------

    def _tables_to_rebuild(self, versions_before: dict[str, int | None]) -> dict[str, bool]:
        """persons and prescribers are rebuilt only when one of their files changed (or a
        table is missing); dispensings depend on everything (known persons, delivery periods)."""
        changed_tables = {c.file.table for c in self.changed}
        rebuild = {
            table: table in changed_tables
            or versions_before[f"silver/{table}"] is None
            or versions_before[f"quarantine/{table}"] is None
            for table in TABLES
        }
        rebuild["dispensings"] = True
        return rebuild

    def _read_bronze(
        self, changed_names: set[str], versions_before: dict[str, int | None]
    ) -> tuple[dict[str, io.StagedTable], dict[str, DataFrame]]:
        """The changed files' rows staged for bronze, and each table's bronze after the load."""
        changed_tables = {c.file.table for c in self.changed}
        read = read_bronze_rows(
            self.spark,
            self.changed,
            load_id=self.load_id,
            load_time=self.load_time,
            scratch=self.scratch,
        )
        staged_bronze: dict[str, io.StagedTable] = {}
        new_rows: dict[str, DataFrame] = {}
        for table in TABLES:
            if table in changed_tables:
                # Each task reads one stretch of one file: no shuffle, rows in line order.
                staged_bronze[table] = self._stage(
                    read[table],
                    self.paths.bronze(table),
                    partition_by=BRONZE_PARTITION_BY,
                    sort_within_partitions=["line_number"],
                    cluster=False,
                )
                new_rows[table] = staged_bronze[table].frame()
            else:
                new_rows[table] = read[table]
        bronze = {
            t: self._bronze_after(t, new_rows[t], changed_names, versions_before) for t in TABLES
        }
        return staged_bronze, bronze

    def _classify(
        self,
        bronze: dict[str, DataFrame],
        files_frame: DataFrame,
        changed_names: set[str],
        versions_before: dict[str, int | None],
        rebuild: dict[str, bool],
    ) -> tuple[dict[str, DataFrame], dict[str, DataFrame], dict[str, DataFrame]]:
        """Every bronze row with its verdict, and the silver and quarantine rows they give.

        After an incremental plan only the affected dispensings are classified again (and
        ``rebuild["dispensings"]`` says whether there are any); their silver and quarantine
        rows are merged with the committed rows of the same partitions."""
        persons = self._cache(rules.classify_persons(bronze["persons"]))
        prescribers = self._cache(rules.classify_prescribers(bronze["prescribers"]))
        known = persons
        if not rebuild["persons"]:  # persons.csv as loaded: its clean rows are silver's
            known = io.read_table(self.spark, self.paths.silver("persons")).select(
                F.col("person_id").alias("t_person_id"), F.lit(rules.CLEAN).alias("status")
            )
        to_classify = bronze["dispensings"]
        self.incremental = self._incremental_plan(
            bronze["dispensings"], persons, changed_names, versions_before
        )
        if self.incremental is not None:
            to_classify = self.incremental.affected.context_of(bronze["dispensings"])
            rebuild["dispensings"] = not self.incremental.nothing
        dispensings = rules.classify_dispensings(
            to_classify,
            known,
            files_frame,
            who_ddd_frame(self.spark),
            materialise=self._materialise,
        )
        if self.incremental is not None:  # the context's other rows keep their verdicts
            dispensings = self.incremental.affected.rows_of(dispensings)
        classified = {"persons": persons, "prescribers": prescribers, "dispensings": dispensings}
        silver = {
            "persons": rules.select_silver_persons(persons),
            "prescribers": rules.select_silver_prescribers(prescribers),
            "dispensings": rules.select_silver_dispensings(dispensings),
        }
        quarantine = {t: rules.select_quarantine(classified[t], table=t) for t in TABLES}
        if self.incremental is not None and not self.incremental.nothing:
            silver["dispensings"], quarantine["dispensings"] = self._merge_dispensings(
                silver["dispensings"], quarantine["dispensings"], versions_before
            )
        return classified, silver, quarantine

    def _stage_silver_and_quarantine(
        self,
        silver: dict[str, DataFrame],
        quarantine: dict[str, DataFrame],
        rebuild: dict[str, bool],
        versions_before: dict[str, int | None],
    ) -> tuple[dict[str, io.StagedTable], dict[str, io.StagedTable]]:
        """Stage the tables to rebuild; ``silver`` then holds what was written (read back
        rather than computed again), with the untouched partitions after an incremental load."""
        staged_silver: dict[str, io.StagedTable] = {}
        staged_quarantine: dict[str, io.StagedTable] = {}
        for table in TABLES:
            if not rebuild[table]:
                continue
            layout: dict[str, Any] = {}
            if table == "dispensings":
                # No shuffle: each task holds rows of one file (one year, mostly) and writes
                # them sorted by ATC code, in row groups small enough that a study's scan
                # of a few ATC groups skips most of them.
                # One file per month of a year, so that a later load can replace the months
                # it changes and leave the others (rxcohort.ingest.parts).
                layout = {
                    "partition_by": SILVER_DISPENSINGS_PARTITION_BY,
                    "sort_within_partitions": ["atc_code"],
                    "cluster": False,
                    "row_group_bytes": SILVER_ROW_GROUP_BYTES,
                    "split_files_by": FILE_MONTH,
                }
            rows = silver[table]
            if table == "dispensings":
                rows = rows.withColumn(FILE_MONTH, file_month())
            staged_silver[table] = self._stage(rows, self.paths.silver(table), **layout)
            staged_quarantine[table] = self._stage(quarantine[table], self.paths.quarantine(table))
            silver[table] = staged_silver[table].frame()
            if table == "dispensings" and self.incremental is not None:
                untouched = self._untouched_silver(versions_before)
                silver[table] = untouched.unionByName(silver[table].select(*untouched.columns))
        return staged_silver, staged_quarantine

    def _all_statuses(
        self,
        classified: dict[str, DataFrame],
        silver: dict[str, DataFrame],
        staged_quarantine: dict[str, io.StagedTable],
        files_frame: DataFrame,
    ) -> dict[str, DataFrame]:
        """Each table's row statuses. After an incremental update the dispensings' come from
        silver and quarantine, not from the rows classified again; and those of a table this
        load does not rebuild (its file unchanged) from its committed silver and quarantine."""
        kept = [t for t in ("persons", "prescribers") if not self.rebuild[t]]
        skip = [*kept, *(["dispensings"] if self.incremental is not None else [])]
        statuses = self._statuses({t: f for t, f in classified.items() if t not in skip})
        for table in kept:
            statuses[table] = self._statuses_as_committed(
                table,
                io.read_table(self.spark, self.paths.silver(table)),
                io.read_table(self.spark, self.paths.quarantine(table)),
                files_frame,
            )
        if self.incremental is not None:
            if self.incremental.nothing:  # no dispensing row can change: as committed
                silver["dispensings"] = io.read_table(self.spark, self.paths.silver("dispensings"))
                after = io.read_table(self.spark, self.paths.quarantine("dispensings"))
            else:
                after = staged_quarantine["dispensings"].frame()
            statuses["dispensings"] = self._statuses_as_committed(
                "dispensings", silver["dispensings"], after, files_frame
            )
        return statuses

    def _run_quality(
        self,
        suites: dict[str, Any],
        silver: dict[str, DataFrame],
        statuses: dict[str, DataFrame],
        counts: dict[str, TableCounts],
    ) -> tuple[list[Any], Path]:
        """The raw suite over the row statuses and each table's suite over its silver; the
        quality report written; a failed hard expectation stops the load here."""
        dispensings, rows = silver["dispensings"], {t: counts[t].clean for t in TABLES}
        if self.batch is not None:
            # An incremental load validates the partitions it rewrote (its batch); the others
            # are as the load that wrote them validated them, and an id stays unique across
            # partitions because each id's rows are classified together (--full: all of it).
            dispensings, rows["dispensings"] = self.batch
            self.say(
                f"validating the {rows['dispensings']:,} silver dispensings of the rewritten "
                f"parts {self.incremental.parts.describe()}"
            )
        views = {
            "persons": silver["persons"],
            "prescribers": silver["prescribers"],
            "dispensings": _dispensings_view(dispensings, silver["prescribers"]),
        }
        profile = self._raw_profile(statuses)
        outcomes = name_failing_files(run_suite(suites[SUITES["raw"]], profile), profile)
        for table in TABLES:
            suite = suites[SUITES[table]]
            carried = self._carried_outcomes(suite, table)
            outcomes += (
                carried
                if carried is not None
                else run_suite(
                    suite,
                    _validation_frame(views[table], rows=rows[table], limit=self.pandas_limit),
                )
            )
        report_path = self.paths.report(self.load_id)
        self._write_report(report_path, counts, outcomes)
        require_hard_expectations(outcomes, report=str(report_path))
        for o in outcomes:
            if not o.success:
                log.warning("soft expectation failed: %s %s", o.suite, o.label)
        return outcomes, report_path

    def _carried_outcomes(self, suite: Suite, table: str) -> list[ExpectationOutcome] | None:
        """The outcomes of the last complete load for a silver table this load does not
        rewrite, when that load validated the same version of the table with the same suite
        (the same rows and expectations give the same outcomes); None: validate it now."""
        if self.full or self.rebuild.get(table, True):
            return None
        record = complete_load_record(self.paths.root)
        if record is None or not io.table_exists(self.paths.quality_runs):
            return None
        info, name = record["info"], f"silver/{table}"
        digests = json.loads(info.get(SUITES_RECORD) or "{}")
        versions = json.loads(info[LOAD_VERSIONS])
        if (
            digests.get(suite.name) != suite.sha256
            or versions.get(name) != self.versions_before.get(name)
            or (load_id := info.get("rxcohort.load_id")) is None
        ):
            return None
        rows = (
            io.read_table(self.spark, self.paths.quality_runs)
            .where((F.col("load_id") == load_id) & (F.col("suite") == suite.name))
            .collect()
        )
        if sorted(r["expectation_index"] for r in rows) != list(range(suite.n_expectations)):
            return None
        self.carried[suite.name] = load_id
        self.say(f"{suite.name}: {name} and its suite unchanged since load {load_id}: kept")
        return [_outcome_of(r, suite) for r in sorted(rows, key=lambda r: r["expectation_index"])]

    def _commit(
        self,
        staged_bronze: dict[str, io.StagedTable],
        staged_silver: dict[str, io.StagedTable],
        staged_quarantine: dict[str, io.StagedTable],
    ) -> None:
        """One commit per table: bronze replaces the changed files' rows, silver the
        partitions an incremental load touched (else all of it), quarantine all of it."""
        info = self._commit_info()
        for table, staged in staged_bronze.items():
            names = sorted({c.file.name for c in self.changed if c.file.table == table})
            exists = io.table_exists(self.paths.bronze(table))
            staged.commit(
                mode="overwrite",
                replace_where={"source_file": names} if exists else None,
                commit_info=info,
            )
        for table in staged_silver:
            files = (
                self.incremental.parts.files
                if table == "dispensings" and self.incremental is not None
                else None
            )
            staged_silver[table].commit(mode="overwrite", replace_files=files, commit_info=info)
            staged_quarantine[table].commit(mode="overwrite", commit_info=info)

    def _commit_bookkeeping(
        self, changes: DataFrame, outcomes: list[Any], files_frame: DataFrame
    ) -> None:
        """The deliveries, changes and quality rows, then bronze/files: the load's last
        commit, so a load is complete when a bronze/files commit names it. A load killed
        between its deliveries row and that commit left bookkeeping rows of a load that did
        not happen: they are replaced here."""
        paths, info = self.paths, self._commit_info()
        unfinished = self._unfinished_loads()
        self._record(paths.deliveries, self._delivery_row(), unfinished, info)
        self._record(paths.changes, changes, unfinished, info)
        self._record(paths.quality_runs, self._quality_rows(outcomes), unfinished, info)
        # bronze/files records the version of every table the load committed: readers pin to
        # them (rxcohort.pipelines.snapshot), so a load killed before this commit is never read half.
        committed = {
            name: version
            for name, path in paths.all_tables().items()
            if path != paths.files and (version := io.table_version(path)) is not None
        }
        record = {
            **info,
            LOAD_VERSIONS: json.dumps(committed, sort_keys=True),
            SUITES_RECORD: json.dumps({s.name: s.sha256 for s in self.suites.values()}),
            FINGERPRINTS_RECORD: _fingerprints_json(self.fingerprints),
        }
        io.write_table(files_frame.coalesce(1), paths.files, mode="overwrite", commit_info=record)

    def _commit_info(self) -> dict[str, str]:
        return {"rxcohort.load_id": self.load_id, "rxcohort.operation": "ingest"}

    def _result(
        self,
        changed_names: set[str],
        counts: dict[str, TableCounts],
        outcomes: list[Any],
        report_path: Path,
    ) -> IngestResult:
        versions = {name: io.table_version(p) for name, p in self.paths.all_tables().items()}
        return IngestResult(
            delivery_dir=self.delivery.directory,
            load_id=self.load_id,
            changed=True,
            files=[(c.file.relpath, c.rows, c.file.name in changed_names) for c in self.checked],
            counts=counts,
            outcomes=outcomes,
            versions=versions,
            report_path=report_path,
            ignored=self.delivery.ignored,
            changed_parts=self.changed_parts,
            reclassified=self.incremental.size if self.incremental else None,
        )

    # ----------------------------------------------------------------------------------------

    def _unfinished_loads(self) -> set[str]:
        """Load ids in silver/deliveries that no bronze/files commit names (killed loads)."""
        paths = self.paths
        if not io.table_exists(paths.deliveries):
            return set()
        recorded = {
            r["load_id"]
            for r in io.read_table(self.spark, paths.deliveries).select("load_id").collect()
        }
        finished = (
            {
                e["info"].get("rxcohort.load_id")
                for e in io.table_history(paths.files)
                if e["info"].get("rxcohort.load_id")
            }
            if io.table_exists(paths.files)
            else set()
        )
        unfinished = recorded - finished
        if unfinished:
            log.warning(
                "%d earlier load(s) ended before their last commit; their bookkeeping rows are "
                "replaced by this load's",
                len(unfinished),
            )
        return unfinished

    def _incremental_plan(
        self,
        bronze: DataFrame,
        persons: DataFrame,
        changed_names: set[str],
        versions_before: dict[str, int | None],
    ) -> _Incremental | None:
        """Which dispensing rows this load can change (None: classify them all)."""
        needed = ("bronze/dispensings", "silver/dispensings", "quarantine/dispensings")
        if self.full or any(versions_before[name] is None for name in (*needed, "silver/persons")):
            return None
        # Only on top of a complete load: the rows a killed load committed cannot be told from
        # those it replaced (and a warehouse from before loads recorded their versions).
        last_load, complete = complete_load(self.paths.root)
        tables = (*needed, "silver/persons", "bronze/persons")
        if any(complete.get(name) != versions_before[name] for name in tables):
            self.say("the last load is not on record as complete: classifying every row")
            return None
        paths = self.paths
        names = sorted(c.file.name for c in self.changed if c.file.table == "dispensings")
        keys = self.keystore.keys(bronze, self.loads)
        removed = self._removed_keys(names, versions_before)
        flipped = None
        if any(c.file.table == "persons" for c in self.changed):
            before = io.read_table(
                self.spark, paths.silver("persons"), version=versions_before["silver/persons"]
            ).select(F.col("person_id").alias("_person"))
            now = persons.where(F.col("status") == rules.CLEAN).select(
                F.col("t_person_id").alias("_person")
            )
            turned = before.subtract(now).unionByName(now.subtract(before))
            flipped = keys.join(F.broadcast(turned), "_person", "left_semi")
        affected = affected_rows(
            keys,
            returns=self.keystore.returns(keys, self.loads),
            files=tuple(names),
            flipped=flipped,
            removed=removed,
            kept_shared=self.keystore.shared(last_load),
            window_days=rules.RETURN_WINDOW_DAYS,
            materialise=self._materialise,
        )
        reached = self._materialise(
            keys.join(F.broadcast(affected.rows_outside), ROW_KEY, "left_semi").select(
                "_id", "_day"
            ),
            "incremental_reached_keys",
        )
        ids = self._materialise(
            reached.select("_id").where(F.col("_id").isNotNull()).distinct(),
            "incremental_ids",
        )
        day = F.date_add(F.lit("1970-01-01").cast("date"), F.col("_day").cast("int"))
        months = reached.where(F.col("_day").isNotNull()).select(
            F.year(day).alias("y"), F.month(day).alias("m")
        )
        months = frozenset((r["y"], r["m"]) for r in months.distinct().collect())
        in_files = keys.where(F.col("source_file").isin(*names)).count() if names else 0
        n_outside, n_removed = affected.rows_outside.count(), removed.count()
        n_context = affected.context_outside.count()
        n_rows = in_files + n_outside
        self.say(
            f"incremental: {n_rows:,} dispensing rows to classify again ({in_files:,} of the "
            f"changed files, {n_outside:,} of others they reach), with {n_context - n_outside:,} "
            "more that their rules read"
        )
        return _Incremental(
            affected=affected,
            ids=ids,
            size=n_rows,
            nothing=n_rows == 0 and n_removed == 0,
            months=months,
        )

    def _removed_keys(self, names: list[str], versions_before: dict[str, int | None]) -> DataFrame:
        """The keys of the bronze rows this load takes out: the earlier version of each
        changed dispensings file (none for a new file)."""
        old = io.read_table(
            self.spark,
            self.paths.bronze("dispensings"),
            version=versions_before["bronze/dispensings"],
        )
        before = _loads_of(
            io.read_table(self.spark, self.paths.files, version=versions_before["bronze/files"]),
            "dispensings",
        )
        names = [name for name in names if name in before]
        kept = [self.keystore.kept(name, before[name]) for name in names]
        if len(names) == 1 and kept[0] is not None:
            # One corrected file, its keys kept: read as they are (writing them again cost a
            # year's keys).
            return self.keystore.keys_of(old.limit(0), names[0], before[names[0]])
        parts = [
            self.keystore.keys_of(old.where(F.col("source_file") == name), name, before[name])
            for name in names
        ]
        removed = rules.dispensing_keys(old).limit(0)
        for part in parts:
            removed = removed.unionByName(part)
        # Written once (none too): it is used several times, and Sail (0.7) fails to plan
        # some of those uses over a union with a plain read of no rows.
        return self._materialise(removed, "incremental_removed")

    def _merge_dispensings(
        self, clean: DataFrame, rejected: DataFrame, versions_before: dict[str, int | None]
    ) -> tuple[DataFrame, DataFrame]:
        """Silver dispensings of the parts this load rewrites (the rows classified again, and
        the others of those parts as they were), and the whole quarantine likewise."""
        plan = self.incremental
        assert plan is not None
        paths = self.paths
        ids = F.broadcast(plan.ids.select(F.col("_id").alias("dispensing_id")))
        changed = sorted(c.file.name for c in self.changed if c.file.table == "dispensings")
        old = io.read_table(
            self.spark, paths.silver("dispensings"), version=versions_before["silver/dispensings"]
        )
        # Silver's rows that go: those of the changed files (from their earlier version) and
        # those with the id of an affected row of another file (one row per id in silver),
        # which lie in the months of those rows.
        from_changed = F.col("source_file").isin(*changed) if changed else F.lit(False)
        reached = RewrittenParts(years=frozenset(), months=_by_year(plan.months)).condition()
        going = old.where(from_changed).unionByName(
            old.where(~from_changed & reached).join(ids, "dispensing_id", "left_semi")
        )
        plan.parts = self._parts_to_rewrite(
            going, clean.select(*old.columns), from_changed, versions_before
        )
        in_parts = plan.parts.condition()
        kept = old.where(in_parts).where(~from_changed).join(ids, "dispensing_id", "left_anti")
        before = io.read_table(
            self.spark,
            paths.quarantine("dispensings"),
            version=versions_before["quarantine/dispensings"],
        )
        held = before.where(~F.col("source_file").isin(*changed) if changed else F.lit(True))
        held = plan.affected.not_rows_of(held)
        rewritten = clean.where(in_parts)
        return (
            kept.unionByName(rewritten.select(*kept.columns)),
            held.unionByName(rejected.select(*held.columns)),
        )

    def _parts_to_rewrite(
        self,
        going: DataFrame,
        coming: DataFrame,
        from_changed: Column,
        versions_before: dict[str, int | None],
    ) -> RewrittenParts:
        """The parts of silver dispensings this load rewrites: the years of the changed files
        whole, and in other years the months where a row of another file classified again
        has a new silver row. Most of those rows keep their verdict and so their row (it is
        built from the bronze row alone), and a month where nothing differs is left as it
        is (:mod:`rxcohort.ingest.parts`)."""
        outside_going, outside_coming = going.where(~from_changed), coming.where(~from_changed)
        differ = outside_going.subtract(outside_coming).unionByName(
            outside_coming.subtract(outside_going)
        )
        changed = [c.file for c in self.changed if c.file.table == "dispensings"]
        years = {f.year for f in changed if f.year}
        if any(not f.year for f in changed):
            # A file without a year in its name: the years its rows fall in (a file with one
            # holds silver rows of that year only: the others are date_outside_file_year).
            theirs = going.where(from_changed).unionByName(coming.where(from_changed))
            years |= {year for year, _ in _months_of_rows(theirs)}
        found = _months_of_rows(differ)
        if not years and not found:  # no silver row changes (a load of persons only)
            found = _months_of_rows(going.unionByName(coming))
        if _recorded_fingerprints(self.paths.root).get("silver/dispensings") is None:
            # A year's fingerprint after the load needs the one recorded before it: without
            # it (a warehouse from before they were recorded) the years are rewritten whole.
            years |= {year for year, _ in found}
        files = io.table_files(
            self.paths.silver("dispensings"),
            version=versions_before["silver/dispensings"],
            columns=["dispense_date"],
        )
        return plan_parts(whole_years=years, changed_months=found, files=files)

    def _untouched_silver(self, versions_before: dict[str, int | None]) -> DataFrame:
        """Silver dispensings of the parts this load leaves as they are."""
        plan = self.incremental
        assert plan is not None
        old = io.read_table(
            self.spark,
            self.paths.silver("dispensings"),
            version=versions_before["silver/dispensings"],
        )
        return old.where(~plan.parts.condition())

    def _statuses_as_committed(
        self, table: str, silver: DataFrame, quarantine: DataFrame, files: DataFrame
    ) -> list[dict[str, Any]]:
        """A table's rows per file and status as its silver and quarantine hold them (after
        an incremental update of dispensings, or as committed): clean rows from silver,
        quarantined ones (by reason) from quarantine, and the exact duplicates removed as the
        file's bronze rows less both (negative would be a bug)."""
        clean = {
            r["source_file"]: r["n"]
            for r in silver.groupBy("source_file").agg(F.count(F.lit(1)).alias("n")).collect()
        }
        rejected: dict[str, dict[str, int]] = {}
        for r in (
            quarantine.groupBy("source_file", "reason").agg(F.count(F.lit(1)).alias("n")).collect()
        ):
            rejected.setdefault(r["source_file"], {})[r["reason"]] = r["n"]
        changed = {c.file.name for c in self.changed}
        out: list[dict[str, Any]] = []
        for f in files.where(F.col("table_name") == table).collect():
            name, rows = f["source_file"], int(f["rows"])
            this = name in changed
            n_clean = clean.get(name, 0)
            reasons = rejected.get(name, {})
            duplicates = rows - n_clean - sum(reasons.values())
            if duplicates < 0:
                raise RxCohortError(
                    f"{table}: {name} has {rows} bronze rows but {n_clean} in silver and "
                    f"{sum(reasons.values())} in quarantine; nothing was committed (a bug)"
                )
            common = {"source_file": name, "this_load": this, "table": table}
            out.append({**common, "status": rules.CLEAN, "reason": None, "rows": n_clean})
            out.append({**common, "status": rules.DUPLICATE, "reason": None, "rows": duplicates})
            out += [
                {**common, "status": rules.QUARANTINED, "reason": reason, "rows": n}
                for reason, n in sorted(reasons.items())
            ]
        return out

    def _changes(
        self, silver: dict[str, io.StagedTable], quarantine: dict[str, io.StagedTable]
    ) -> DataFrame:
        """The parts of silver and quarantine whose rows this load changes (silver/changes):
        silver dispensings by ``dispense_year``, quarantine by ``source_file``, persons and
        prescribers whole. A part changed when its rows differ in content (load ids and times
        aside): compared by count and an order-free fingerprint (the sum of row hashes). The
        parts' fingerprints before are those the last complete load recorded (computed from
        its tables when it recorded none); those after this load go into its record."""
        rows: list[tuple[Any, ...]] = []
        recorded = _recorded_fingerprints(self.paths.root)
        self.fingerprints = dict(recorded)  # what this load leaves: as it found, unless staged
        for layer, staged, part in (
            ("silver", silver, {"dispensings": "dispense_year"}),
            ("quarantine", quarantine, {t: "source_file" for t in TABLES}),
        ):
            for table, new in staged.items():
                name = f"{layer}/{table}"
                column = part.get(table)
                after = _fingerprints(new.frame(), column)
                if name == "silver/dispensings" and self.incremental:
                    if after:
                        self.batch = (new.frame(), sum(n for n, _ in after.values()))
                    after = self._whole_years(after, recorded.get(name))
                before = self._fingerprints_before(name, column, recorded.get(name))
                for value in sorted(after.keys() | before.keys(), key=str):
                    old, now = before.get(value), after.get(value)
                    if old == now:
                        continue
                    change = "added" if old is None else "removed" if now is None else "changed"
                    counts = (old[0] if old else 0, now[0] if now else 0)
                    rows.append((self.load_id, name, column, value, change, *counts))
                self.fingerprints[name] = self._fingerprints_after(name, after, recorded.get(name))
        self.fingerprints = {k: v for k, v in self.fingerprints.items() if v is not None}
        self.changed_parts = tuple(
            f"{name} {column}={value} ({change})" if column else f"{name} ({change})"
            for _, name, column, value, change, *_ in rows
        )
        return local_frame(self.spark, rows, CHANGES_SCHEMA)

    def _whole_years(self, staged: _Prints, recorded: _Prints | None) -> _Prints:
        """The fingerprints of the years the staged rows are of, whole: a year rewritten in
        some months only is its recorded print less its old rows of those months, plus the
        staged ones (the print is a count and a sum, so it adds and subtracts)."""
        parts = self.incremental.parts if self.incremental else None
        if parts is None or not parts.months:
            return staged
        assert recorded is not None  # _parts_to_rewrite rewrites whole years without one
        old = io.read_table(
            self.spark,
            self.paths.silver("dispensings"),
            version=self.versions_before["silver/dispensings"],
        )
        partial = RewrittenParts(years=frozenset(), months=parts.months)
        gone = _fingerprints(old.where(partial.condition()), "dispense_year")
        whole = dict(staged)
        for year in parts.months:
            key = str(year)
            n, h = recorded.get(key, (0, None))
            for sign, (m, g) in ((-1, gone.get(key, (0, None))), (1, staged.get(key, (0, None)))):
                n, h = n + sign * m, (h or 0) + sign * (g or 0)
            if n:
                whole[key] = (n, h)
            else:
                whole.pop(key, None)
        return whole

    def _rewritten_parts(self, name: str) -> set[str] | None:
        """The parts of ``name`` this load rewrites, when not all of them (as fingerprint keys)."""
        if name == "silver/dispensings" and self.incremental is not None:
            return {str(year) for year in self.incremental.parts.all_years}
        return None

    def _fingerprints_before(
        self, name: str, column: str | None, recorded: _Prints | None
    ) -> _Prints:
        """The fingerprints of the parts of ``name`` this load rewrites, as it found them."""
        rewritten = self._rewritten_parts(name)
        if recorded is not None:
            return (
                recorded
                if rewritten is None
                else {k: v for k, v in recorded.items() if k in rewritten}
            )
        # Against the last complete load: a load killed half-way changed nothing on record.
        _, complete = complete_load(self.paths.root)
        version = complete.get(name)
        if version is None:
            return {}
        old = io.read_table(self.spark, self.paths.root / name, version=version)
        if rewritten is not None:  # only the years this load rewrote; the others are untouched
            old = old.where(F.col("dispense_year").isin(*self.incremental.parts.all_years))
        return _fingerprints(old, column)

    def _fingerprints_after(
        self, name: str, after: _Prints, recorded: _Prints | None
    ) -> _Prints | None:
        """Every part's fingerprint after this load (None: not known without reading)."""
        rewritten = self._rewritten_parts(name)
        if rewritten is None:
            return after
        if recorded is None:
            return None
        return {**{k: v for k, v in recorded.items() if k not in rewritten}, **after}

    def _record(
        self, path: Path, rows: DataFrame, unfinished: set[str], info: dict[str, str]
    ) -> None:
        """Append this load's bookkeeping rows, dropping those of ``unfinished`` loads."""
        if not unfinished or not io.table_exists(path):
            io.write_table(rows, path, mode="append", commit_info=info)
            return
        kept = [
            r for r in io.read_table(self.spark, path).collect() if r["load_id"] not in unfinished
        ]
        schema = rows.schema
        earlier = local_frame(
            self.spark, [tuple(r[c] for c in schema.fieldNames()) for r in kept], schema
        )
        io.write_table(earlier.unionByName(rows), path, mode="overwrite", commit_info=info)

    def _bronze_after(
        self,
        table: str,
        new_rows: DataFrame,
        changed_names: set[str],
        versions_before: dict[str, int | None],
    ) -> DataFrame:
        """The table's bronze as it will be after this ingest: kept rows plus the new files."""
        version = versions_before[f"bronze/{table}"]
        if version is None:
            return new_rows
        existing = io.read_table(self.spark, self.paths.bronze(table), version=version)
        kept = existing.where(~F.col("source_file").isin(*sorted(changed_names)))
        columns = bronze_table_schema(table).fieldNames()
        return kept.select(*columns).unionByName(new_rows.select(*columns))

    def _files_frame(
        self, changed_names: set[str], versions_before: dict[str, int | None]
    ) -> DataFrame:
        """``bronze/files`` after this ingest: earlier entries kept, changed files replaced."""
        rows: dict[str, tuple] = {}
        if versions_before["bronze/files"] is not None:
            existing = io.read_table(
                self.spark, self.paths.files, version=versions_before["bronze/files"]
            ).collect()
            for row in existing:
                rows[row["source_file"]] = tuple(row[f] for f in FILES_SCHEMA.fieldNames())
        start, end = self.delivery.period
        for c in self.changed:
            rows[c.file.name] = (
                c.file.name,
                c.file.table,
                c.file.relpath,
                c.file.year,
                c.sha256,
                c.size_bytes,
                c.lines,
                c.blank_lines,
                c.rows,
                start,
                end,
                self.load_id,
                self.load_time,
            )
        assert changed_names <= set(rows)
        return self.spark.createDataFrame([rows[k] for k in sorted(rows)], FILES_SCHEMA)

    def _statuses(self, classified: dict[str, DataFrame]) -> dict[str, list[dict[str, Any]]]:
        """Rows per table, file, this load or not, status and reason (one Spark job)."""
        grouped = None
        for table in classified:
            part = (
                classified[table]
                .groupBy(
                    "source_file",
                    (F.col("load_id") == F.lit(self.load_id)).alias("this_load"),
                    "status",
                    "reason",
                )
                .agg(F.count(F.lit(1)).alias("rows"))
                .select(F.lit(table).alias("table"), "*")
            )
            grouped = part if grouped is None else grouped.unionByName(part)
        out: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
        for row in grouped.collect() if grouped is not None else []:
            out[row["table"]].append(row.asDict())
        return out

    def _counts(
        self, statuses: dict[str, list[dict[str, Any]]], bronze: dict[str, DataFrame]
    ) -> dict[str, TableCounts]:
        sizes = _row_counts(bronze)
        counts = {}
        for table in TABLES:
            c = TableCounts()
            for s in statuses[table]:
                n, this = s["rows"], s["this_load"]
                c.bronze += n
                c.read_this_load += n if this else 0
                if s["status"] == rules.CLEAN:
                    c.clean += n
                    c.clean_this_load += n if this else 0
                elif s["status"] == rules.DUPLICATE:
                    c.duplicates += n
                    c.duplicates_this_load += n if this else 0
                else:
                    c.quarantined += n
                    c.quarantined_this_load += n if this else 0
                    total, mine = c.reasons.get(s["reason"], (0, 0))
                    c.reasons[s["reason"]] = (total + n, mine + (n if this else 0))
            # The classification must neither lose nor multiply rows (its joins could).
            if c.bronze != sizes[table]:
                raise RxCohortError(
                    f"{table}: classification saw {c.bronze} rows but bronze has "
                    f"{sizes[table]}; nothing was committed (this is a bug in rxcohort)"
                )
            read = sum(x.rows for x in self.changed if x.file.table == table)
            if c.read_this_load != read:
                raise RxCohortError(
                    f"{table}: {c.read_this_load} rows read by Spark but {read} counted when the "
                    "files were checked; nothing was committed"
                )
            counts[table] = c
        return counts

    def _raw_profile(self, statuses: dict[str, list[dict[str, Any]]]):  # -> pandas.DataFrame
        import pandas as pd

        per_file: dict[str, dict[str, int]] = {}
        for table_statuses in statuses.values():
            for s in table_statuses:
                entry = per_file.setdefault(s["source_file"], {"quarantined": 0, "wrong": 0})
                if s["status"] == rules.QUARANTINED:
                    entry["quarantined"] += s["rows"]
                if s["reason"] == rules.WRONG_FIELD_COUNT:
                    entry["wrong"] += s["rows"]
        start, end = self.delivery.period
        records = []
        for c in self.checked:
            entry = per_file.get(c.file.name, {"quarantined": 0, "wrong": 0})
            rows = c.rows
            records.append(
                {
                    "source_file": c.file.name,
                    "table_name": c.file.table,
                    "rows": rows,
                    "blank_lines": c.blank_lines,
                    "wrong_field_count_rows": entry["wrong"],
                    "wrong_field_count_share": entry["wrong"] / rows if rows else 0.0,
                    "quarantined_rows": entry["quarantined"],
                    "quarantined_share": entry["quarantined"] / rows if rows else 0.0,
                    "file_year_in_period": (
                        c.file.year is None
                        or start is None
                        or end is None
                        or start.year <= c.file.year <= end.year
                    ),
                }
            )
        return pd.DataFrame.from_records(records)

    def _write_report(
        self, path: Path, counts: dict[str, TableCounts], outcomes: list[ExpectationOutcome]
    ) -> None:
        summary = [("delivery", str(self.delivery.directory))]
        manifest = self.delivery.manifest
        if manifest is not None:
            summary.append(("registry", manifest.registry or "-"))
            summary.append(("extract date", str(manifest.extract_date or "-")))
        start, end = self.delivery.period
        summary.append(("period", f"{start} to {end} ({self.delivery.period_source})"))
        summary.append(
            ("files", f"{len(self.checked)} checked, {len(self.changed)} new or changed")
        )
        if self.batch is not None and self.incremental is not None:
            parts = self.incremental.parts.describe()
            summary.append(("silver_dispensings validated on", f"the parts rewritten: {parts}"))
        for suite, load_id in sorted(self.carried.items()):
            summary.append(
                (f"{suite} outcomes", f"kept from load {load_id} (table and suite unchanged)")
            )
        shown, outcomes = protect_page(*_page_counts(counts), outcomes)

        def n(*key: str) -> str:
            return count_text(shown[key])

        for table in counts:
            summary.append(
                (
                    f"{table} (this load)",
                    f"{n(table, 'read')} read = {n(table, 'clean')} clean + "
                    f"{n(table, 'quarantined')} quarantined + {n(table, 'duplicates')} duplicates",
                )
            )
            summary.append(
                (
                    f"{table} (warehouse)",
                    f"{n(table, 'bronze')} bronze = {n(table, 'silver')} silver + "
                    f"{n(table, 'quarantine')} quarantine + "
                    f"{n(table, 'duplicates_all')} duplicates removed",
                )
            )
        quarantine = [
            (table, reason, shown[(table, "reason", reason)])
            for table, c in counts.items()
            for reason in sorted(c.reasons)
        ]
        page = render_quality_report(
            title="rxcohort ingest: data quality",
            load_id=self.load_id,
            generated_at=self.load_time.isoformat(timespec="seconds"),
            summary=summary,
            outcomes=outcomes,
            quarantine=quarantine,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")

    def _delivery_row(self) -> DataFrame:
        manifest = self.delivery.manifest
        start, end = self.delivery.period
        row = (
            self.load_id,
            manifest.registry if manifest else None,
            manifest.extract_date if manifest else None,
            start,
            end,
            self.delivery.period_source,
            len(self.checked),
            len(self.changed),
            sum(c.rows for c in self.changed),
            manifest.sha256 if manifest else None,
            self.load_time,
        )
        return self.spark.createDataFrame([row], DELIVERIES_SCHEMA).coalesce(1)

    def _quality_rows(self, outcomes: Sequence[ExpectationOutcome]) -> DataFrame:
        rows = [
            (
                self.load_id,
                o.suite,
                o.index,
                o.expectation,
                o.column,
                o.severity,
                o.success,
                json.dumps(o.observed, sort_keys=True, default=str),
                json.dumps(o.arguments, sort_keys=True, default=str),
                self.load_time,
            )
            for o in outcomes
        ]
        return self.spark.createDataFrame(rows, QUALITY_RUNS_SCHEMA).coalesce(1)

    def _check_committed(self, counts: dict[str, TableCounts]) -> None:
        """rows in bronze = rows in silver + rows in quarantine + duplicates removed.

        Counted from the row counts the commits recorded for each file (no data read).
        """
        sizes = {}
        for table in TABLES:
            for layer, path in (
                ("bronze", self.paths.bronze(table)),
                ("silver", self.paths.silver(table)),
                ("quarantine", self.paths.quarantine(table)),
            ):
                sizes[f"{layer}/{table}"] = io.table_row_count(path)
        for table, c in counts.items():
            in_bronze = sizes[f"bronze/{table}"]
            in_silver = sizes[f"silver/{table}"]
            in_quarantine = sizes[f"quarantine/{table}"]
            if in_bronze != in_silver + in_quarantine + c.duplicates:
                raise RxCohortError(
                    f"{table}: row-count invariant violated after commit: {in_bronze} bronze rows "
                    f"!= {in_silver} silver + {in_quarantine} quarantine + {c.duplicates} duplicates "
                    "(another writer, or a bug)"
                )


def _months_of_rows(rows: DataFrame) -> set[tuple[int, int]]:
    """The (year, month) pairs of silver dispensing rows."""
    pairs = rows.select("dispense_year", F.month(F.col("dispense_date"))).distinct().collect()
    return {(int(r[0]), int(r[1])) for r in pairs if r[0] is not None and r[1] is not None}


def _by_year(months: frozenset[tuple[int, int]]) -> dict[int, frozenset[int]]:
    """(year, month) pairs as year -> months."""
    out: dict[int, set[int]] = {}
    for year, month in months:
        out.setdefault(year, set()).add(month)
    return {year: frozenset(ms) for year, ms in out.items()}


def _outcome_of(row: Any, suite: Suite) -> ExpectationOutcome:
    """An outcome as ``quality/runs`` holds it (the explanation from the suite)."""
    meta = suite.definitions[row["expectation_index"]].get("meta") or {}
    same = {name: row[name] for name in ("suite", "expectation", "column", "severity", "success")}
    return ExpectationOutcome(
        **same,
        index=row["expectation_index"],
        observed=json.loads(row["observed"] or "{}"),
        arguments=json.loads(row["arguments"] or "{}"),
        why=str(meta["why"]) if meta.get("why") else None,
    )


def _loads_of(files: DataFrame, table: str) -> dict[str, str]:
    """File name -> the load its bronze rows are of, for one table's files in ``files``
    (rows of ``bronze/files``)."""
    rows = files.where(F.col("table_name") == table).select("source_file", "load_id").collect()
    return {r["source_file"]: r["load_id"] for r in rows}


def _row_counts(frames: dict[str, DataFrame]) -> dict[str, int]:
    """Row count of every frame, in one Spark job."""
    union = None
    for name, frame in frames.items():
        part = frame.groupBy().count().select(F.lit(name).alias("name"), "count")
        union = part if union is None else union.unionByName(part)
    assert union is not None
    return {row["name"]: int(row["count"]) for row in union.collect()}


def _read_registry(spark: SparkSession, paths: WarehousePaths) -> dict[str, dict[str, Any]]:
    """source_file -> its ``bronze/files`` row."""
    if not io.table_exists(paths.files):
        return {}
    return {r["source_file"]: r.asDict() for r in io.read_table(spark, paths.files).collect()}


def _validation_frame(frame: DataFrame, *, rows: int, limit: int) -> Any:
    """The frame GX validates: pandas (fast, one collect) up to ``limit`` rows, else Spark.

    GX runs each metric as its own Spark job; on a small table that overhead dominates, while
    on a large one only the Spark engine scales. The expectations mean the same on both. The
    frame reads the staged silver files (caching it in memory was measured: no faster).
    """
    if rows <= limit:
        return frame.toPandas()
    return frame


def _dispensings_view(dispensings: DataFrame, prescribers: DataFrame) -> DataFrame:
    """Silver dispensings plus ``prescriber_registered`` (null when no prescriber is given),
    for the soft check that prescribers are in prescribers.csv."""
    known = prescribers.select(F.col("prescriber_id").alias("_known")).distinct()
    joined = dispensings.join(known, dispensings["prescriber_id"] == known["_known"], "left")
    registered = F.when(F.col("prescriber_id").isNotNull(), F.col("_known").isNotNull())
    return joined.withColumn("prescriber_registered", registered).drop("_known")


def _page_counts(
    counts: dict[str, TableCounts],
) -> tuple[dict[tuple[str, ...], int], list[tuple[tuple[str, ...], list[tuple[str, ...]]]]]:
    """The quality page's table counts by key, and the sums that tie them."""
    cells: dict[tuple[str, ...], int] = {}
    totals: list[tuple[tuple[str, ...], list[tuple[str, ...]]]] = []
    for table, c in counts.items():
        cells.update(
            {
                (table, "read"): c.read_this_load,
                (table, "clean"): c.clean_this_load,
                (table, "quarantined"): c.quarantined_this_load,
                (table, "duplicates"): c.duplicates_this_load,
                (table, "bronze"): c.bronze,
                (table, "silver"): c.clean,
                (table, "quarantine"): c.quarantined,
                (table, "duplicates_all"): c.duplicates,
            }
        )
        parts = [(table, "clean"), (table, "quarantined"), (table, "duplicates")]
        totals.append(((table, "read"), parts))
        parts = [(table, "silver"), (table, "quarantine"), (table, "duplicates_all")]
        totals.append(((table, "bronze"), parts))
        reasons = [(table, "reason", reason) for reason in sorted(c.reasons)]
        cells.update({key: c.reasons[key[2]][0] for key in reasons})
        if reasons:
            totals.append(((table, "quarantine"), reasons))
    return cells, totals


_Prints = dict[str | None, tuple[int, Any]]  # part -> (rows, sum of the rows' hashes)


def _fingerprints(frame: DataFrame, column: str | None) -> _Prints:
    """Per value of ``column`` (one part when None): (rows, sum of the rows' hashes), load ids
    and times left out so that rows delivered again unchanged count as unchanged."""
    content = [c for c in frame.columns if c not in ("load_id", "load_time")]
    part = F.col(column).cast("string") if column else F.lit(None).cast("string")
    digest = F.sum(F.xxhash64(*content).cast("decimal(38,0)"))
    out = frame.groupBy(part.alias("part")).agg(F.count(F.lit(1)).alias("n"), digest.alias("h"))
    return {r["part"]: (int(r["n"]), r["h"]) for r in out.collect()}


def _fingerprints_json(prints: dict[str, _Prints]) -> str:
    """The fingerprints of every table's parts, for the load's record."""
    return json.dumps(
        {
            name: [
                [part, n, None if h is None else str(h)]
                for part, (n, h) in sorted(parts.items(), key=lambda kv: str(kv[0]))
            ]
            for name, parts in sorted(prints.items())
        }
    )


def _recorded_fingerprints(root: Path) -> dict[str, _Prints]:
    """The fingerprints the last complete load recorded ({} when it recorded none)."""
    record = complete_load_record(root)
    text = record["info"].get(FINGERPRINTS_RECORD) if record else None
    if not text:
        return {}
    return {
        name: {part: (int(n), None if h is None else Decimal(h)) for part, n, h in parts}
        for name, parts in json.loads(text).items()
    }
