"""Staged writes: Parquet files written for a table but named by no commit until the caller
has validated them, then moved into the table and committed as one ``deltalake`` transaction.

This is the one place rxcohort writes Delta's log itself. The ingest needs it: bronze, silver
and quarantine are counted and validated by the quality gate *before* they become visible, and
committing the very files that were validated (a rename each) costs nothing, where rewriting
them through the engine's writer would double the largest write of the ingest. The warehouse
must therefore be on a file system this process sees (local or mounted), as for every engine's
staging. Classic Spark's :func:`rxcohort.io.write_table` commits this way too, for its
speed (delta-spark's commit rebuilds the snapshot in Spark jobs, about a second per table on a
small machine against a fifth of that here); the other engines' ``write_table`` goes through
their own ``format("delta")``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, StructField, StructType

from rxcohort.errors import CommitConflictError, ParameterError, RxCohortError
from rxcohort.io.stats import file_stats, partition_value_to_string
from rxcohort.io.tables import (
    WriteMode,
    _check_mode,
    _check_partition_columns,
    _check_target,
    _is_conflict,
    _layout,
    _open,
    _short,
    add_actions,
    column_order,
    table_exists,
    version_of_txn,
)
from rxcohort.log import get_logger

log = get_logger("io")

STAGING_DIR = "_rxcohort_staging"
# The ingest's scratch space: <warehouse>/_rxcohort_scratch/<load id>, removed at its end.
SCRATCH_DIR = "_rxcohort_scratch"
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


@dataclass(frozen=True)
class DataFile:
    """One data file of a table's snapshot, from the log: its path (relative to the table),
    partition values, rows, and the least and greatest value of the columns asked for
    (None where the log has no statistic)."""

    path: str
    partition_values: dict[str, str | None]
    rows: int | None
    minimum: dict[str, Any]
    maximum: dict[str, Any]
    nulls: dict[str, int | None]


def table_files(
    path: str | Path, *, version: int | None = None, columns: Sequence[str] = ()
) -> list[DataFile]:
    """The data files of the table (at ``version``) with the statistics of ``columns``."""
    import pyarrow as pa

    table = _open(path, version)
    arrow = pa.table(table.get_add_actions(flatten=True))
    names = set(arrow.column_names)
    partition_columns = list(table.metadata().partition_columns)

    def value(row: dict[str, Any], key: str) -> Any:
        return row.get(key) if key in names else None

    out = []
    for row in arrow.to_pylist():
        partitions = {
            c: (
                None
                if (v := value(row, f"partition.{c}")) is None
                else partition_value_to_string(v)
            )
            for c in partition_columns
        }
        out.append(
            DataFile(
                path=unquote(row["path"]),
                partition_values=partitions,
                rows=value(row, "num_records"),
                minimum={c: value(row, f"min.{c}") for c in columns},
                maximum={c: value(row, f"max.{c}") for c in columns},
                nulls={c: value(row, f"null_count.{c}") for c in columns},
            )
        )
    return out


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
    :meth:`discard` deletes them. The commit moves the files the quality gate saw into the
    table and names them in one ``deltalake`` transaction, whatever the engine: rewriting them
    through the engine's ``format("delta")`` would double the ingest's largest write.
    """

    spark: SparkSession
    root: Path
    staging: Path
    schema: StructType
    partition_by: list[str]
    split_files_by: str | None = None
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
        replace_files: Sequence[str] | None = None,
        commit_info: Mapping[str, str] | None = None,
    ) -> int:
        """Commit the staged files as one version of the table (see :func:`write_table`).

        ``replace_files`` (with mode ``overwrite``, instead of ``replace_where``): the data
        files of the table (paths as :func:`table_files` gives them) that the staged files
        replace, the rest of their partitions left as they are."""
        if self.done:
            raise RxCohortError(f"{_short(self.root)}: staged files were already committed")
        try:
            _check_mode(mode, self.partition_by, replace_where)
            if replace_files is not None and (mode != "overwrite" or replace_where):
                raise ParameterError("replace_files goes with mode='overwrite' alone")
            _check_target(
                self.schema,
                self.root,
                self.partition_by,
                mode,
                replace_where,
                partial=replace_files is not None,
            )
        except Exception:
            self.discard()
            raise
        self.done = True
        return commit_staged(
            self.root,
            self.staging,
            schema=self.schema,
            mode=mode,
            partition_by=self.partition_by,
            replace_where=replace_where,
            replace_files=replace_files,
            split_files_by=self.split_files_by,
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
    split_files_by: str | None = None,
) -> StagedTable:
    """Write ``df``'s Parquet files for the table at ``path`` without committing them.

    The files go to a private directory inside the table (``_rxcohort_staging/<id>``), which
    no Delta reader lists. Layout options as in :func:`write_table`; ``split_files_by`` is a
    column of ``df`` that is not one of the table's: each partition's rows are written in one
    file (or more) per value of it, so that a later commit can replace some of a partition's
    files (``replace_files``) and leave the others.
    """
    partition_by = list(partition_by or [])
    table_frame = df.drop(split_files_by) if split_files_by else df
    _check_partition_columns(table_frame.columns, partition_by)
    table_frame = column_order(table_frame, path, partition_by)
    split = [split_files_by] if split_files_by else []
    df = (
        df.select(*[F.col(f"`{c}`") for c in (*table_frame.columns, *split)])
        if split
        else (table_frame)
    )
    root = Path(path).resolve()
    staging = root / STAGING_DIR / uuid.uuid4().hex
    root.mkdir(parents=True, exist_ok=True)
    sort_by = list(sort_within_partitions or [])
    laid_out = _layout(df, [*partition_by, *split], sort_by, cluster=cluster)
    writer = laid_out.write.mode("overwrite")
    if partition_by or split:
        writer = writer.partitionBy(*partition_by, *split)
    if row_group_bytes:
        writer = writer.option("parquet.block.size", str(row_group_bytes))
    try:
        writer.parquet(str(staging))
    except Exception:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return StagedTable(
        df.sparkSession,
        root,
        staging,
        _nullable(table_frame.schema),
        partition_by,
        split_files_by=split_files_by,
    )


def commit_staged(
    root: Path,
    staging: Path,
    *,
    schema: StructType,
    mode: WriteMode,
    partition_by: list[str],
    replace_where: Mapping[str, Any] | None = None,
    replace_files: Sequence[str] | None = None,
    split_files_by: str | None = None,
    commit_info: Mapping[str, str] | None = None,
) -> int:
    """Move the Parquet files under ``staging`` into the table and commit them as one version.

    The files are named in the log only by the commit; until it succeeds no reader sees them.
    On a failed commit the moved files are deleted again and the error is raised.
    ``replace_files``: the table's files the commit removes (else ``mode`` and
    ``replace_where`` say which).
    """
    from deltalake import CommitProperties, Schema
    from deltalake.transaction import create_table_with_add_actions

    staged = list(_staged_files(staging, partition_by, split_files_by))
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
            if replace_files is not None:  # removes named here: the transaction appends them
                actions.extend(_remove_actions(table, replace_files))
                mode = "append"
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
        _remove_empty_dir(root / STAGING_DIR)
        if _is_conflict(exc):
            raise CommitConflictError(
                f"{root}: another writer committed a conflicting change first; nothing was written, "
                "run the job again"
            ) from exc
        raise
    shutil.rmtree(staging, ignore_errors=True)
    _remove_empty_dir(root / STAGING_DIR)
    version = version_of_txn(root, staging.name)
    log.info("committed %s version %d (%d files)", _short(root), version, len(staged))
    return version


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


def _staged_files(
    staging: Path, partition_by: list[str], split_files_by: str | None = None
) -> Iterable[_StagedFile]:
    """The staged files, each with its path in the table and its partition values. The
    directory of a ``split_files_by`` value becomes part of the file's name (the table's
    files lie in its partitions' directories, as every reader expects)."""
    expected = sorted([*partition_by, *([split_files_by] if split_files_by else [])])
    for file in sorted(staging.rglob("*.parquet")):
        rel = file.relative_to(staging)
        segments = rel.parts[:-1]
        values: dict[str, str | None] = {}
        for segment in segments:
            name, _, raw = segment.partition("=")
            values[name] = None if raw == _HIVE_NULL else unquote(raw)
        if sorted(values) != expected:
            raise RxCohortError(f"unexpected staged file layout under {staging.name}: {rel}")
        final = rel.as_posix()
        if split_files_by:
            part = _SAFE_NAME.sub("_", str(values.pop(split_files_by)))
            final = "/".join([*segments[:-1], f"{split_files_by}-{part}-{file.name}"])
        yield _StagedFile(file, final, values)


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def _remove_actions(table: Any, paths: Sequence[str]) -> list[Any]:
    """Remove actions for ``paths``, files of the table's snapshot; one that is not there
    (another writer removed it) is a conflict."""
    from deltalake.transaction import RemoveAction

    known = {unquote(a["path"]): a for a in add_actions(table)}
    missing = [p for p in paths if p not in known]
    if missing:
        raise CommitConflictError(
            f"{len(missing)} file(s) to replace are no longer in the table (another writer "
            "changed it); nothing was written, run the job again"
        )
    now = int(time.time() * 1000)
    return [
        RemoveAction(
            path=known[p]["path"],
            data_change=True,
            deletion_timestamp=now,
            partition_values=known[p]["partition_values"],
        )
        for p in dict.fromkeys(paths)
    ]


def _add_action(
    file: Path,
    rel_path: str,
    partition_values: dict[str, str | None],
    schema: StructType,
    partition_by: list[str],
):
    from deltalake.transaction import AddAction

    stat = file.stat()
    stats = file_stats(file, schema, partition_by)
    return AddAction(
        path=rel_path,
        size=stat.st_size,
        partition_values=partition_values,
        modification_time=int(stat.st_mtime * 1000),
        data_change=True,
        stats=json.dumps(stats),
    )


def _partition_filters(replace_where: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    filters = []
    for column, value in replace_where.items():
        values = list(value) if isinstance(value, list | tuple | set) else [value]
        filters.append((column, "in", [partition_value_to_string(v) for v in values]))
    return filters


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


def remove_leftovers(warehouse: str | Path) -> int:
    """Delete every writer's private directories in ``warehouse``: the ingest's scratch space
    and each table's staged files, which no commit names and no reader lists.

    Only for the holder of the warehouse's write lock (:mod:`rxcohort.lock`): with it held no
    other rxcohort writer can be between staging and committing, so whatever is there was left
    by a writer that crashed or was killed. Returns the number of directories removed.
    """
    root = Path(warehouse)
    found = [root / SCRATCH_DIR]
    for pattern in (f"*/*/{STAGING_DIR}", f"studies/*/*/{STAGING_DIR}"):
        found.extend(root.glob(pattern))
    removed = 0
    for directory in found:
        if directory.is_dir():
            shutil.rmtree(directory, ignore_errors=True)
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
        referenced.update(unquote(a["path"]) for a in add_actions(table))
    return referenced
