"""Delta tables on every engine: metadata and history through ``deltalake``, data through the
engine's own ``format("delta")``."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from rxcohort.errors import (
    CommitConflictError,
    ParameterError,
    RxCohortError,
    TableExistsError,
    TableNotFoundError,
)
from rxcohort.io.stats import partition_value_to_string
from rxcohort.log import get_logger
from rxcohort.spark import session_engine

log = get_logger("io")

WriteMode = Literal["error", "append", "overwrite"]
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


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
        entry = {**entry, **_user_metadata(entry)}
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
                    and k
                    not in {
                        "engineInfo",
                        "clientVersion",
                        "isBlindAppend",
                        "rxcohort.txn",
                        "userMetadata",
                        "readVersion",
                        "isolationLevel",
                        "txnId",
                        "inCommitTimestamp",
                        "operationMetrics",
                    }
                },
            }
        )
    return rows


def _user_metadata(entry: Mapping[str, Any]) -> dict[str, str]:
    """The commit info an engine's own writer keeps in ``userMetadata`` (a JSON object we wrote),
    as the top-level keys the ``deltalake`` commit puts there directly."""
    raw = entry.get("userMetadata")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {"userMetadata": raw}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def table_schema(path: str | Path, *, version: int | None = None) -> StructType:
    """The table's schema as a Spark StructType (Delta's schema JSON is Spark's)."""
    table = _open(path, version)
    return StructType.fromJson(json.loads(table.schema().to_json()))


def partition_columns(path: str | Path) -> list[str]:
    return list(_open(path).metadata().partition_columns)


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


def read_rows(
    path: str | Path, columns: Sequence[str], *, version: int | None = None
) -> list[dict[str, Any]]:
    """The rows of a small table (bookkeeping: runs, deliveries) as dicts, read by
    ``deltalake`` without an engine; a map column comes back as a dict."""
    table = _open(path, version)
    rows = table.to_pyarrow_table(columns=list(columns)).to_pylist()
    for row in rows:
        for key, value in row.items():
            if isinstance(value, list) and all(isinstance(v, tuple) and len(v) == 2 for v in value):
                row[key] = dict(value)
    return rows


def add_actions(table) -> list[dict[str, Any]]:
    """Path and partition values of every file in the snapshot, from the log."""
    import pyarrow as pa

    arrow = pa.table(table.get_add_actions(flatten=False))
    rows = arrow.to_pylist()
    out = []
    for row in rows:
        raw = row.get("partition_values") or row.get("partition") or {}
        values = {
            k: (None if v is None else partition_value_to_string(v)) for k, v in dict(raw).items()
        }
        out.append({"path": row["path"], "partition_values": values})
    return out


# --------------------------------------------------------------------------------------------
# Reads


def read_table(spark: SparkSession, path: str | Path, *, version: int | None = None) -> DataFrame:
    """The table (or the snapshot at ``version``) as a DataFrame, in the table's column order.

    Connect engines (Sail, a remote server) read through their own Delta reader
    (``format("delta")``). Classic Spark reads the snapshot's Parquet files as ``deltalake``
    lists them from the log, when that list is the whole snapshot (see
    :func:`_file_list`); otherwise through delta-spark. Both give the rows of exactly
    that version; the file list spares delta-spark's log replay in Spark jobs, paid again on
    every query of a time-travel read (the study pins every input version), which made the
    classic engine's study two to three times slower than plain Parquet reads.
    """
    table = _open(path, version)  # also: a clear error for a missing version
    schema = StructType.fromJson(json.loads(table.schema().to_json()))
    if session_engine(spark).name == "spark":
        files = _file_list(table, Path(path).resolve())
        if files is not None:
            return _read_files(spark, files, Path(path).resolve(), table, schema)
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(str(Path(path).resolve())).select(
        *[F.col(f"`{n}`") for n in schema.fieldNames()]
    )


# Reader features whose tables' rows are exactly their data files' rows, read as plain Parquet.
_PLAIN_READER_FEATURES = frozenset(
    {"timestampNtz", "v2Checkpoint", "vacuumProtocolCheck", "checkpointProtection"}
)


def _file_list(table: Any, root: Path) -> list[str] | None:
    """The snapshot's data files when reading them as Parquet gives the snapshot's rows.

    None when it would not: deletion vectors, column mapping or another reader feature that
    changes what a file's rows mean, or partition values that are not in ``k=v`` directories
    (the reader takes them from the paths).
    """
    protocol = table.protocol()
    features = set(protocol.reader_features or [])
    if protocol.min_reader_version == 2 or not features <= _PLAIN_READER_FEATURES:
        return None
    columns = list(table.metadata().partition_columns)
    files = []
    for action in add_actions(table):
        relative = unquote(action["path"])
        if "://" in relative or relative.startswith("/"):
            return None  # files outside the table (a shallow clone): leave them to delta-spark
        values = {c: action["partition_values"].get(c) for c in columns}
        if set(action["partition_values"]) != set(columns) or not _is_hive_path(relative, values):
            return None
        files.append(str(root / relative))
    return files


def _is_hive_path(relative: str, values: Mapping[str, str | None]) -> bool:
    """True when ``relative`` lies in the ``k=v`` directories of its partition values, as
    Spark's reader parses them (``%XX`` escapes decoded, Hive's null marker)."""
    directories = relative.split("/")[:-1]
    if len(directories) != len(values):
        return False
    for directory, (key, value) in zip(directories, values.items(), strict=True):
        name, sep, raw = directory.partition("=")
        if not sep or name != key:
            return False
        if (None if raw == _HIVE_NULL else unquote(raw)) != value:
            return False
    return True


def _read_files(
    spark: SparkSession, files: list[str], root: Path, table: Any, schema: StructType
) -> DataFrame:
    if not files:
        return spark.createDataFrame([], schema)
    reader = spark.read.schema(schema)
    if table.metadata().partition_columns:
        # The partition values come from the k=v directories, typed by the table's schema.
        reader = reader.option("basePath", str(root))
    return reader.parquet(*files).select(*[F.col(f"`{n}`") for n in schema.fieldNames()])


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
    df = column_order(df, path, partition_by)
    # Checked before any file is written, and again by the commit (another writer may come first).
    _check_target(df.schema, path, partition_by, mode, replace_where)
    if session_engine(df.sparkSession).name == "spark":
        return _write_staged(
            df,
            path,
            mode=mode,
            partition_by=partition_by,
            replace_where=replace_where,
            sort_within_partitions=sort_within_partitions,
            commit_info=commit_info,
            cluster=cluster,
            row_group_bytes=row_group_bytes,
        )
    laid_out = _layout(df, partition_by, list(sort_within_partitions or []), cluster=cluster)
    return _write_native(
        laid_out,
        path,
        mode=mode,
        partition_by=partition_by,
        replace_where=replace_where,
        commit_info=commit_info,
        row_group_bytes=row_group_bytes,
    )


def _write_staged(
    df: DataFrame,
    path: str | Path,
    *,
    mode: WriteMode,
    partition_by: list[str],
    replace_where: Mapping[str, Any] | None,
    sort_within_partitions: Sequence[str] | None,
    commit_info: Mapping[str, str] | None,
    cluster: bool,
    row_group_bytes: int | None,
) -> int:
    """Classic Spark: the engine writes the Parquet files, ``deltalake`` commits them.

    delta-spark's own commit costs about a second per table on a small machine (a snapshot
    rebuilt in Spark jobs before and after each commit), five times a ``deltalake`` commit of
    the same files; a study writes fifteen tables (benchmarks/README.md, "The classic spark
    engine").
    """
    from rxcohort.io.staged import stage_table

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
        raise ParameterError(f"partition columns {missing} are not in the frame")


def _check_mode(
    mode: WriteMode, partition_by: list[str], replace_where: Mapping[str, Any] | None
) -> None:
    if mode not in ("error", "append", "overwrite"):
        raise ParameterError(f"mode must be 'error', 'append' or 'overwrite', not {mode!r}")
    if replace_where:
        if mode != "overwrite":
            raise ParameterError("replace_where goes with mode='overwrite'")
        unknown = [c for c in replace_where if c not in partition_by]
        if unknown:
            raise ParameterError(f"replace_where may only name partition columns, not {unknown}")


def column_order(df: DataFrame, path: str | Path, partition_by: Sequence[str]) -> DataFrame:
    """``df``'s columns in the order the table at ``path`` will keep them.

    Rows added to an existing table with the same columns take its order (a Delta table's
    schema is by name, a Parquet file's by position). A new table, or a whole new content, has
    its partition columns last: Hive lays tables out so, and some engines' Delta writers store
    the schema so whatever the frame's order; with this a table has one schema on every engine.
    """
    order = list(df.columns)
    existing = table_schema(path).fieldNames() if table_exists(path) else []
    if sorted(existing) == sorted(order):
        order = existing
    elif partition_by:
        order = [c for c in order if c not in partition_by] + list(partition_by)
    if order == list(df.columns):
        return df
    return df.select(*[F.col(f"`{c}`") for c in order])


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


def _check_target(
    schema: StructType,
    path: str | Path,
    partition_by: list[str],
    mode: WriteMode,
    replace_where: Mapping[str, Any] | None,
    *,
    partial: bool = False,
) -> None:
    """An existing table at ``path`` takes the write: same partition columns, and the same
    columns unless the whole table is overwritten (not only some partitions, or some files:
    ``partial``)."""
    if not table_exists(path):
        return
    if mode == "error":
        raise TableExistsError(f"{path} already exists; write with mode='append' or 'overwrite'")
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
    if mode == "overwrite" and not replace_where and not partial:
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


def _write_native(
    df: DataFrame,
    path: str | Path,
    *,
    mode: WriteMode,
    partition_by: list[str],
    replace_where: Mapping[str, Any] | None,
    commit_info: Mapping[str, str] | None,
    row_group_bytes: int | None = None,
) -> int:
    # Mode "error" was checked against the table just before; not every engine has the mode.
    writer = df.write.format("delta").mode("append" if mode == "error" else mode)
    if row_group_bytes:
        writer = writer.option("parquet.block.size", str(row_group_bytes))
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if replace_where:
        writer = writer.option("replaceWhere", _sql_predicate(replace_where))
    if mode == "overwrite" and not replace_where:
        writer = writer.option("overwriteSchema", "true")
    txn = uuid.uuid4().hex
    metadata = {**dict(commit_info or {}), "rxcohort.txn": txn}
    writer = writer.option("userMetadata", json.dumps(metadata, sort_keys=True))
    root = Path(path).resolve()
    try:
        writer.save(str(root))
    except Exception as exc:
        if _is_conflict(exc):
            raise CommitConflictError(
                f"{_short(root)}: another writer committed a conflicting change first; "
                "nothing was written, run the job again"
            ) from exc
        raise
    version = version_of_txn(root, txn)
    log.info("committed %s version %d", _short(root), version)
    return version


def version_of_txn(root: Path, txn: str) -> int:
    """The version our commit tagged ``txn`` got (another writer may have committed since)."""
    for entry in _open(root).history(50):
        if entry.get("rxcohort.txn") == txn or _user_metadata(entry).get("rxcohort.txn") == txn:
            return int(entry["version"])
    version = table_version(root)
    assert version is not None
    return version


def _short(root: Path) -> str:
    return "/".join(Path(root).parts[-2:])


def _is_conflict(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("conflict", "already exists", "version mismatch", "concurrent"))


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
