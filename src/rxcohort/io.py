"""The one storage module: every Delta Lake read and write in rxcohort goes through here.

Two backends, chosen per Spark session and reported once in the log:

* ``delta-spark`` - Delta's Spark classes are on the JVM classpath and the session has Delta's
  SQL extension (a cluster started with ``--packages io.delta:delta-spark_2.13:...``, Databricks):
  plain ``format("delta")``.
* ``delta-rs commit`` - everywhere else, including air-gapped servers that cannot fetch Maven
  JARs: Spark writes the Parquet data files in parallel into a private staging directory inside
  the table, the driver moves them into place and commits them as ONE Delta transaction with the
  ``deltalake`` package (add actions with size, partition values and per-file statistics read from
  the Parquet footers; an overwrite removes the previous files in the same commit). Reads take the
  file list of the requested snapshot from ``deltalake`` and read it with Spark's Parquet reader.

Either way the result is a standard Delta table, with history and time travel, that any Delta
reader opens. A crash between writing files and committing leaves the table as it was: files
that no commit names are invisible to every reader, and :func:`remove_uncommitted_files` deletes
them later.

The delta-rs backend writes to local (or mounted network) file systems; object stores go through
the delta-spark backend.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    StructField,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from rxcohort.config import delta_backend_preference
from rxcohort.errors import CommitConflictError, RxCohortError, TableExistsError, TableNotFoundError
from rxcohort.log import get_logger

log = get_logger("io")

WriteMode = Literal["error", "append", "overwrite"]
Backend = Literal["delta-spark", "delta-rs"]

STAGING_DIR = "_rxcohort_staging"
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
# Delta's statistics are for data skipping; long strings are skipped rather than truncated so
# a reader never sees a max value that is smaller than the real one.
_MAX_STAT_STRING = 64
_BACKEND_CACHE: dict[int, Backend] = {}


# --------------------------------------------------------------------------------------------
# Backend choice


def backend(spark: SparkSession) -> Backend:
    """The Delta backend for this session (cached per SparkContext)."""
    key = id(spark.sparkContext)
    if key not in _BACKEND_CACHE:
        preference = delta_backend_preference()
        available = _delta_spark_available(spark)
        if preference == "spark" and not available:
            raise RxCohortError(
                "RXCOHORT_DELTA_BACKEND=spark but Delta's Spark classes or SQL extension are not "
                "in this session (start Spark with delta-spark on the classpath)"
            )
        chosen: Backend = "delta-spark" if available and preference != "rs" else "delta-rs"
        _BACKEND_CACHE[key] = chosen
        log.info("delta backend: %s", chosen)
    return _BACKEND_CACHE[key]


def _delta_spark_available(spark: SparkSession) -> bool:
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    if "io.delta.sql.DeltaSparkSessionExtension" not in extensions:
        return False
    try:
        spark.sparkContext._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")  # type: ignore[union-attr]
    except Exception:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Metadata: existence, versions, history


def table_exists(path: str | Path) -> bool:
    """True when ``path`` holds a Delta table with at least one commit."""
    log_dir = Path(path) / "_delta_log"
    if not log_dir.is_dir():
        return False
    return any(name.endswith(".json") or ".checkpoint" in name for name in os.listdir(log_dir))


def _open(path: str | Path, version: int | None = None):
    from deltalake import DeltaTable

    if not table_exists(path):
        raise TableNotFoundError(f"no Delta table at {path}")
    try:
        table = DeltaTable(str(path))
        if version is not None:
            latest = table.version()
            if version < 0 or version > latest:
                raise TableNotFoundError(f"{path} has versions 0..{latest}, not {version}")
            table.load_as_version(version)
    except TableNotFoundError:
        raise
    except Exception as exc:
        raise TableNotFoundError(
            f"cannot open Delta table at {path} (version {version}): {exc}"
        ) from exc
    return table


def table_version(path: str | Path) -> int | None:
    """Latest version of the table, or None when there is no table."""
    if not table_exists(path):
        return None
    return _open(path).version()


def table_history(path: str | Path, *, limit: int | None = None) -> list[dict[str, Any]]:
    """Commits newest first: version, timestamp (UTC ISO), operation, parameters, metrics, info."""
    table = _open(path)
    rows = []
    for entry in table.history(limit):
        known = {"version", "timestamp", "operation", "operationParameters", "operationMetrics"}
        timestamp = entry.get("timestamp")
        rows.append(
            {
                "version": entry.get("version"),
                "timestamp": (
                    datetime.fromtimestamp(timestamp / 1000, tz=UTC).isoformat(timespec="seconds")
                    if timestamp is not None
                    else None
                ),
                "operation": entry.get("operation"),
                "parameters": entry.get("operationParameters") or {},
                "metrics": entry.get("operationMetrics") or {},
                "info": {
                    k: v
                    for k, v in entry.items()
                    if k not in known
                    and k not in {"engineInfo", "clientVersion", "isBlindAppend", "rxcohort.txn"}
                },
            }
        )
    return rows


def table_schema(path: str | Path, *, version: int | None = None) -> StructType:
    """The table's schema as a Spark StructType (Delta's schema JSON is Spark's)."""
    table = _open(path, version)
    return StructType.fromJson(json.loads(table.schema().to_json()))


def partition_columns(path: str | Path) -> list[str]:
    return list(_open(path).metadata().partition_columns)


# --------------------------------------------------------------------------------------------
# Reads


def read_table(spark: SparkSession, path: str | Path, *, version: int | None = None) -> DataFrame:
    """The table (or the snapshot at ``version``) as a DataFrame, partition columns included."""
    if backend(spark) == "delta-spark":
        if not table_exists(path):
            raise TableNotFoundError(f"no Delta table at {path}")
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(str(path))
    return _read_via_deltalake(spark, path, version=version)


def _read_via_deltalake(spark: SparkSession, path: str | Path, *, version: int | None) -> DataFrame:
    table = _open(path, version)
    _refuse_unsupported_features(table, path, reading=True)
    schema = StructType.fromJson(json.loads(table.schema().to_json()))
    part_cols = list(table.metadata().partition_columns)
    root = Path(path).resolve()
    actions = _add_actions(table)
    if not actions:
        return spark.createDataFrame([], schema)
    data_schema = StructType([f for f in schema.fields if f.name not in part_cols])
    files = [str(root / unquote(a["path"])) for a in actions]
    if not part_cols:
        return spark.read.schema(data_schema).parquet(*files).select(*schema.fieldNames())
    if all(_is_hive_path(a["path"], part_cols, a["partition_values"]) for a in actions):
        # Spark discovers the partition values from the k=v directories and prunes on them.
        return (
            spark.read.schema(schema)
            .option("basePath", str(root))
            .parquet(*files)
            .select(*schema.fieldNames())
        )
    return _read_grouped_by_partition(spark, root, actions, schema, data_schema, part_cols)


def _read_grouped_by_partition(
    spark: SparkSession,
    root: Path,
    actions: list[dict[str, Any]],
    schema: StructType,
    data_schema: StructType,
    part_cols: list[str],
) -> DataFrame:
    # Files not laid out as k=v directories: read each partition's files, add its values.
    groups: dict[tuple, list[str]] = {}
    for action in actions:
        key = tuple(action["partition_values"].get(c) for c in part_cols)
        groups.setdefault(key, []).append(str(root / unquote(action["path"])))
    frames = []
    types = {f.name: f.dataType for f in schema.fields}
    for key, files in sorted(
        groups.items(), key=lambda kv: tuple("" if v is None else v for v in kv[0])
    ):
        frame = spark.read.schema(data_schema).parquet(*files)
        for column, raw in zip(part_cols, key, strict=True):
            frame = frame.withColumn(column, F.lit(raw).cast(types[column]))
        frames.append(frame.select(*schema.fieldNames()))
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _is_hive_path(rel_path: str, part_cols: list[str], values: Mapping[str, str | None]) -> bool:
    parts = unquote(rel_path).split("/")[:-1]
    if len(parts) < len(part_cols):
        return False
    tail = parts[-len(part_cols) :]
    for column, segment in zip(part_cols, tail, strict=True):
        name, _, raw = segment.partition("=")
        if name != column:
            return False
        value = values.get(column)
        if (value is None and raw != _HIVE_NULL) or (value is not None and unquote(raw) != value):
            return False
    return len(parts) == len(part_cols)


def _add_actions(table) -> list[dict[str, Any]]:
    """Path and partition values of every file in the snapshot, from the log."""
    import pyarrow as pa

    arrow = pa.table(table.get_add_actions(flatten=False))
    rows = arrow.to_pylist()
    out = []
    for row in rows:
        raw = row.get("partition_values") or row.get("partition") or {}
        values = {
            k: (None if v is None else _partition_value_to_string(v)) for k, v in dict(raw).items()
        }
        out.append({"path": row["path"], "partition_values": values})
    return out


def _refuse_unsupported_features(table, path: str | Path, *, reading: bool) -> None:
    protocol = table.protocol()
    features = (
        set(protocol.reader_features or []) if reading else set(protocol.writer_features or [])
    )
    unsupported = features & {"deletionVectors", "columnMapping", "v2Checkpoint"}
    if unsupported:
        raise RxCohortError(
            f"{path} uses Delta features {sorted(unsupported)} that the delta-rs commit backend "
            "cannot read with Spark's Parquet reader; use a Spark session with delta-spark"
        )


# --------------------------------------------------------------------------------------------
# Writes


def write_table(
    df: DataFrame,
    path: str | Path,
    *,
    mode: WriteMode = "error",
    partition_by: Sequence[str] | None = None,
    replace_where: Mapping[str, Any] | None = None,
    sort_within_partitions: Sequence[str] | None = None,
    commit_info: Mapping[str, str] | None = None,
    cluster: bool = True,
    row_group_bytes: int | None = None,
) -> int:
    """Write ``df`` as one Delta commit and return the table's new version.

    mode ``error`` (the safe default) refuses to touch an existing table, ``append`` adds files,
    ``overwrite`` replaces the table's content - or, with ``replace_where`` (a mapping of partition
    column to a value or list of values), only the matching partitions.

    With ``partition_by`` the rows are shuffled so that each partition value is written by one
    task (few files, sorted by ``sort_within_partitions``); ``cluster=False`` skips that shuffle
    when the frame's partitions already hold one partition value each (e.g. rows read from one
    file per task), and each task writes its rows as they come. ``row_group_bytes`` sets the
    Parquet row-group size (default 128 MB): smaller groups of sorted rows let readers skip more.
    """
    partition_by = list(partition_by or [])
    _check_partition_columns(df.columns, partition_by)
    _check_mode(mode, partition_by, replace_where)
    # Checked before any file is written, and again by the commit (another writer may come first).
    _check_target(df.schema, path, partition_by, mode, replace_where)
    spark = df.sparkSession
    if backend(spark) == "delta-spark":
        laid_out = _layout(df, partition_by, list(sort_within_partitions or []), cluster=cluster)
        return _write_delta_spark(
            laid_out,
            path,
            mode=mode,
            partition_by=partition_by,
            replace_where=replace_where,
            commit_info=commit_info,
            row_group_bytes=row_group_bytes,
        )
    staged = stage_table(
        df,
        path,
        partition_by=partition_by,
        sort_within_partitions=sort_within_partitions,
        cluster=cluster,
        row_group_bytes=row_group_bytes,
    )
    return staged.commit(mode=mode, replace_where=replace_where, commit_info=commit_info)


def _check_partition_columns(columns: Sequence[str], partition_by: list[str]) -> None:
    missing = [c for c in partition_by if c not in columns]
    if missing:
        raise ValueError(f"partition columns {missing} are not in the frame")


def _check_mode(
    mode: WriteMode, partition_by: list[str], replace_where: Mapping[str, Any] | None
) -> None:
    if mode not in ("error", "append", "overwrite"):
        raise ValueError(f"mode must be 'error', 'append' or 'overwrite', not {mode!r}")
    if replace_where:
        if mode != "overwrite":
            raise ValueError("replace_where goes with mode='overwrite'")
        unknown = [c for c in replace_where if c not in partition_by]
        if unknown:
            raise ValueError(f"replace_where may only name partition columns, not {unknown}")


def _check_target(
    schema: StructType,
    path: str | Path,
    partition_by: list[str],
    mode: WriteMode,
    replace_where: Mapping[str, Any] | None,
) -> None:
    if not table_exists(path):
        return
    if mode == "error":
        raise TableExistsError(f"{path} already exists; write with mode='append' or 'overwrite'")
    _check_compatible(schema, path, partition_by, mode=mode, replace_where=replace_where)


def _layout(
    df: DataFrame, partition_by: list[str], sort_by: list[str], *, cluster: bool = True
) -> DataFrame:
    if partition_by and not cluster:
        return df.sortWithinPartitions(*partition_by, *sort_by) if sort_by else df
    if partition_by:
        # One task per partition value keeps the file count per partition small and lets the
        # sort cluster rows (e.g. by ATC code) so Parquet row-group statistics prune reads.
        return df.repartition(*[F.col(c) for c in partition_by]).sortWithinPartitions(
            *partition_by, *sort_by
        )
    if sort_by:
        return df.sortWithinPartitions(*sort_by)
    return df


def _check_compatible(
    schema: StructType,
    path: str | Path,
    partition_by: list[str],
    *,
    mode: WriteMode,
    replace_where: Mapping[str, Any] | None,
) -> None:
    table = _open(path)
    current = StructType.fromJson(json.loads(table.schema().to_json()))
    existing_parts = list(table.metadata().partition_columns)
    if existing_parts != partition_by:
        # A commit cannot change a table's partition columns in place (readers would pair old
        # metadata with new files); a new layout is a new table.
        raise RxCohortError(
            f"{path} is partitioned by {existing_parts}, the write by {partition_by}; "
            "write to a new table (or remove this one) to change the layout"
        )
    if mode == "overwrite" and not replace_where:
        return
    if _type_signature(current) != _type_signature(schema):
        raise RxCohortError(
            f"{path}: the frame's columns {_describe(schema)} do not match the table's "
            f"{_describe(current)}; overwrite the whole table to change its schema"
        )


def _type_signature(schema: StructType) -> list[tuple[str, str]]:
    return [(f.name, f.dataType.simpleString()) for f in schema.fields]


def _describe(schema: StructType) -> str:
    return ", ".join(f"{n}:{t}" for n, t in _type_signature(schema))


def _write_delta_spark(
    df: DataFrame,
    path: str | Path,
    *,
    mode: WriteMode,
    partition_by: list[str],
    replace_where: Mapping[str, Any] | None,
    commit_info: Mapping[str, str] | None,
    row_group_bytes: int | None = None,
) -> int:
    writer = df.write.format("delta").mode("errorifexists" if mode == "error" else mode)
    if row_group_bytes:
        writer = writer.option("parquet.block.size", str(row_group_bytes))
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if replace_where:
        writer = writer.option("replaceWhere", _sql_predicate(replace_where))
    if mode == "overwrite" and not replace_where:
        writer = writer.option("overwriteSchema", "true")
    if commit_info:
        writer = writer.option("userMetadata", json.dumps(dict(commit_info), sort_keys=True))
    writer.save(str(path))
    version = table_version(path)
    assert version is not None
    return version


def _sql_predicate(replace_where: Mapping[str, Any]) -> str:
    clauses = []
    for column, value in replace_where.items():
        values = list(value) if isinstance(value, list | tuple | set) else [value]
        literals = ", ".join(_sql_literal(v) for v in values)
        clauses.append(f"`{column}` IN ({literals})")
    return " AND ".join(clauses)


def _sql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


@dataclass(frozen=True)
class _StagedFile:
    staged: Path
    final_rel: str
    partition_values: dict[str, str | None]


@dataclass
class StagedTable:
    """Parquet files written for a table but not yet committed: no reader of the table sees them.

    :func:`stage_table` makes one; :meth:`frame` reads the staged rows (to validate or count
    them before they count), :meth:`commit` makes them one version of the table and
    :meth:`discard` deletes them. Under the delta-spark backend the files sit in the same
    private directory and :meth:`commit` writes them through ``format("delta")``.
    """

    spark: SparkSession
    root: Path
    staging: Path
    schema: StructType
    partition_by: list[str]
    row_group_bytes: int | None = None
    done: bool = False

    def frame(self) -> DataFrame:
        """The staged rows, with the frame's schema (partition columns typed, not inferred)."""
        spark = self.spark
        if not any(self.staging.rglob("*.parquet")):
            return spark.createDataFrame([], self.schema)
        return (
            spark.read.schema(self.schema)
            .option("basePath", str(self.staging))
            .parquet(str(self.staging))
            .select(*self.schema.fieldNames())
        )

    def commit(
        self,
        *,
        mode: WriteMode,
        replace_where: Mapping[str, Any] | None = None,
        commit_info: Mapping[str, str] | None = None,
    ) -> int:
        """Commit the staged files as one version of the table (see :func:`write_table`)."""
        if self.done:
            raise RxCohortError(f"{_short(self.root)}: staged files were already committed")
        try:
            _check_mode(mode, self.partition_by, replace_where)
            _check_target(self.schema, self.root, self.partition_by, mode, replace_where)
        except Exception:
            self.discard()
            raise
        self.done = True
        if backend(self.spark) == "delta-spark":
            try:
                return _write_delta_spark(
                    self.frame(),
                    self.root,
                    mode=mode,
                    partition_by=self.partition_by,
                    replace_where=replace_where,
                    commit_info=commit_info,
                    row_group_bytes=self.row_group_bytes,
                )
            finally:
                self.discard()
        return commit_staged(
            self.root,
            self.staging,
            schema=self.schema,
            mode=mode,
            partition_by=self.partition_by,
            replace_where=replace_where,
            commit_info=commit_info,
        )

    def discard(self) -> None:
        """Delete the staged files (a no-op once they are committed and moved)."""
        shutil.rmtree(self.staging, ignore_errors=True)
        _remove_empty_dir(self.root / STAGING_DIR)
        _remove_empty_dir(self.root)


def stage_table(
    df: DataFrame,
    path: str | Path,
    *,
    partition_by: Sequence[str] | None = None,
    sort_within_partitions: Sequence[str] | None = None,
    cluster: bool = True,
    row_group_bytes: int | None = None,
) -> StagedTable:
    """Write ``df``'s Parquet files for the table at ``path`` without committing them.

    The files go to a private directory inside the table (``_rxcohort_staging/<id>``), which
    no Delta reader lists. Layout options as in :func:`write_table`.
    """
    partition_by = list(partition_by or [])
    _check_partition_columns(df.columns, partition_by)
    root = Path(path).resolve()
    staging = root / STAGING_DIR / uuid.uuid4().hex
    root.mkdir(parents=True, exist_ok=True)
    laid_out = _layout(df, partition_by, list(sort_within_partitions or []), cluster=cluster)
    writer = laid_out.write.mode("overwrite")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if row_group_bytes:
        writer = writer.option("parquet.block.size", str(row_group_bytes))
    try:
        writer.parquet(str(staging))
    except Exception:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return StagedTable(
        df.sparkSession, root, staging, _nullable(df.schema), partition_by, row_group_bytes
    )


def commit_staged(
    root: Path,
    staging: Path,
    *,
    schema: StructType,
    mode: WriteMode,
    partition_by: list[str],
    replace_where: Mapping[str, Any] | None = None,
    commit_info: Mapping[str, str] | None = None,
) -> int:
    """Move the Parquet files under ``staging`` into the table and commit them as one version.

    The files are named in the log only by the commit; until it succeeds no reader sees them.
    On a failed commit the moved files are deleted again and the error is raised.
    """
    from deltalake import CommitProperties, Schema
    from deltalake.transaction import create_table_with_add_actions

    staged = list(_staged_files(staging, partition_by))
    moved: list[Path] = []
    try:
        actions = []
        for item in staged:
            final = root / item.final_rel
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(item.staged, final)
            moved.append(final)
            actions.append(
                _add_action(final, item.final_rel, item.partition_values, schema, partition_by)
            )
        delta_schema = Schema.from_json(schema.json())
        metadata = {**dict(commit_info or {}), "rxcohort.txn": staging.name}
        properties = CommitProperties(custom_metadata=metadata)
        if not table_exists(root):
            create_table_with_add_actions(
                str(root),
                delta_schema,
                actions,
                mode="error",
                partition_by=partition_by or None,
                commit_properties=properties,
            )
        else:
            table = _open(root)
            filters = _partition_filters(replace_where) if replace_where else None
            table.create_write_transaction(
                actions,
                mode="append" if mode == "append" else "overwrite",
                schema=delta_schema,
                partition_by=partition_by or None,
                partition_filters=filters,
                commit_properties=properties,
            )
    except Exception as exc:
        for file in moved:
            file.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        if _is_conflict(exc):
            raise CommitConflictError(
                f"{root}: another writer committed a conflicting change first; nothing was written, "
                "run the job again"
            ) from exc
        raise
    shutil.rmtree(staging, ignore_errors=True)
    _remove_empty_dir(root / STAGING_DIR)
    version = _version_of_txn(root, staging.name)
    log.info("committed %s version %d (%d files)", _short(root), version, len(staged))
    return version


def _version_of_txn(root: Path, txn: str) -> int:
    # Another writer may have committed right after us: find our own commit by its tag.
    for entry in _open(root).history(50):
        if entry.get("rxcohort.txn") == txn:
            return int(entry["version"])
    version = table_version(root)
    assert version is not None
    return version


def _short(root: Path) -> str:
    return "/".join(root.parts[-2:])


def _is_conflict(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("conflict", "already exists", "version mismatch", "concurrent"))


def _remove_empty_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()


def _nullable(schema: StructType) -> StructType:
    """Delta NOT NULL columns are invariants every writer must enforce; we keep all nullable."""
    return StructType(
        [StructField(f.name, _nullable_type(f.dataType), True, f.metadata) for f in schema.fields]
    )


def _nullable_type(data_type: DataType) -> DataType:
    if isinstance(data_type, StructType):
        return _nullable(data_type)
    return data_type


def _staged_files(staging: Path, partition_by: list[str]) -> Iterable[_StagedFile]:
    for file in sorted(staging.rglob("*.parquet")):
        rel = file.relative_to(staging)
        segments = rel.parts[:-1]
        values: dict[str, str | None] = {}
        for segment in segments:
            name, _, raw = segment.partition("=")
            values[name] = None if raw == _HIVE_NULL else unquote(raw)
        if sorted(values) != sorted(partition_by):
            raise RxCohortError(f"unexpected staged file layout under {staging.name}: {rel}")
        yield _StagedFile(file, rel.as_posix(), values)


def _add_action(
    file: Path,
    rel_path: str,
    partition_values: dict[str, str | None],
    schema: StructType,
    partition_by: list[str],
):
    from deltalake.transaction import AddAction

    stat = file.stat()
    stats = _file_stats(file, schema, partition_by)
    return AddAction(
        path=rel_path,
        size=stat.st_size,
        partition_values=partition_values,
        modification_time=int(stat.st_mtime * 1000),
        data_change=True,
        stats=json.dumps(stats),
    )


def _file_stats(file: Path, schema: StructType, partition_by: list[str]) -> dict[str, Any]:
    """numRecords, minValues, maxValues and nullCount of the top-level columns, from the footer."""
    import pyarrow.parquet as pq

    meta = pq.read_metadata(file)
    types = {f.name: f.dataType for f in schema.fields if f.name not in partition_by}
    column_index = {}
    for i in range(meta.num_columns):
        col_path = meta.schema.column(i).path
        if col_path in types:
            column_index[col_path] = i
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for name, idx in column_index.items():
        low = high = None
        null_count = 0
        complete = True
        for rg in range(meta.num_row_groups):
            col = meta.row_group(rg).column(idx)
            st = col.statistics
            if st is None:
                complete = False
                continue
            if st.has_null_count:
                null_count += st.null_count
            else:
                complete = False
            rows_with_values = meta.row_group(rg).num_rows - (
                st.null_count if st.has_null_count else 0
            )
            if rows_with_values == 0:
                continue
            if not st.has_min_max:
                low = high = None
                complete = False
                break
            try:
                rg_min, rg_max = st.min, st.max
            except (NotImplementedError, ValueError, TypeError):
                # pyarrow cannot decode every physical type (e.g. some decimals): no stats then.
                low = high = None
                break
            low = rg_min if low is None else min(low, rg_min)
            high = rg_max if high is None else max(high, rg_max)
        if complete:
            nulls[name] = int(null_count)
        if low is not None and high is not None:
            low_json = _stat_value(low, types[name])
            high_json = _stat_value(high, types[name])
            if low_json is not None and high_json is not None:
                mins[name] = low_json
                maxs[name] = high_json
    return {"numRecords": meta.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls}


def _stat_value(value: Any, data_type: DataType) -> Any:
    if isinstance(data_type, BooleanType):
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(value, str):
        return value if len(value) <= _MAX_STAT_STRING else None
    if isinstance(data_type, TimestampType | TimestampNTZType) and isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(data_type, DateType) and isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, int):
        return value
    return None


def _partition_filters(replace_where: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    filters = []
    for column, value in replace_where.items():
        values = list(value) if isinstance(value, list | tuple | set) else [value]
        filters.append((column, "in", [_partition_value_to_string(v) for v in values]))
    return filters


def _partition_value_to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# --------------------------------------------------------------------------------------------
# Housekeeping


def remove_uncommitted_files(path: str | Path, *, older_than_seconds: float = 3600.0) -> int:
    """Delete data files no version of the table names (left by a crash before commit).

    Only files older than ``older_than_seconds`` are touched, so a writer still between its file
    write and its commit keeps its files. Returns the number of files removed.
    """
    root = Path(path).resolve()
    if not table_exists(root):
        return 0
    referenced = _all_referenced_paths(root)
    cutoff = time.time() - older_than_seconds
    removed = 0
    staging = root / STAGING_DIR
    if staging.is_dir():
        for txn in staging.iterdir():
            if txn.stat().st_mtime < cutoff:
                removed += sum(1 for _ in txn.rglob("*.parquet"))
                shutil.rmtree(txn, ignore_errors=True)
        _remove_empty_dir(staging)
    for file in root.rglob("*.parquet"):
        rel = file.relative_to(root).as_posix()
        if rel.startswith(("_delta_log/", f"{STAGING_DIR}/")):
            continue
        if rel not in referenced and file.stat().st_mtime < cutoff:
            file.unlink()
            removed += 1
    return removed


def _all_referenced_paths(root: Path) -> set[str]:
    """Every data file path any commit in the log adds (so time travel keeps working)."""
    referenced: set[str] = set()
    log_dir = root / "_delta_log"
    for entry in sorted(log_dir.glob("*.json")):
        with entry.open(encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if not line:
                    continue
                action = json.loads(line)
                for kind in ("add", "remove"):
                    if kind in action:
                        referenced.add(unquote(action[kind]["path"]))
    if any(log_dir.glob("*.checkpoint*.parquet")):
        # A checkpoint may be all that is left of older commits: keep what it names too.
        table = _open(root)
        referenced.update(unquote(a["path"]) for a in _add_actions(table))
    return referenced


def table_row_count(path: str | Path, *, version: int | None = None) -> int:
    """Rows in the snapshot, from the per-file statistics in the log (no data read)."""
    import pyarrow as pa

    table = _open(path, version)
    arrow = pa.table(table.get_add_actions(flatten=True))
    if arrow.num_rows == 0:
        return 0
    counts = arrow.column("num_records").to_pylist()
    if any(c is None for c in counts):
        return int(table.to_pyarrow_dataset().count_rows())
    return int(sum(counts))
