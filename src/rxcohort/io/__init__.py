"""The one storage module: every Delta Lake read and write in rxcohort goes through here, and
it is the only place that knows how each engine reaches Delta.

* Data is read and written by the engine: Sail's native Delta reader and writer
  (``format("delta")``) on the embedded engine, the server's Delta support on a Spark Connect
  server. On classic Spark the engine reads and writes the Parquet files and ``deltalake``
  keeps the log: a read is the snapshot's file list from the log (delta-spark's reader when a
  table uses deletion vectors or column mapping), a write is Parquet files committed in one
  ``deltalake`` transaction - delta-spark's own snapshot rebuilds cost about a second per read
  and per write, three times the classic engine's study (benchmarks/README.md). One call, one
  commit, one version, on every engine.
* Metadata - existence, versions, history, schemas, row counts from the log - comes from the
  ``deltalake`` package (delta-rs), which reads the log without starting any engine; analysts'
  tools (polars, DuckDB) open the same tables.
* Staged writes (:func:`stage_table`) are written by the engine as plain Parquet into a private
  directory inside the table, validated there, and committed by moving those very files into the
  table in one ``deltalake`` transaction (see :mod:`rxcohort.io.staged` for why). Classic
  Spark's ``write_table`` is a staged write committed at once.

Every table is a standard Delta table with history and time travel. A crash between writing
files and committing leaves the table as it was: files no commit names are invisible to every
reader, and :func:`remove_uncommitted_files` deletes them later. Tables live on a file system
this process sees (local disk or a mount), for every engine.
"""

from __future__ import annotations

from rxcohort.io.staged import (
    SCRATCH_DIR,
    STAGING_DIR,
    DataFile,
    StagedTable,
    commit_staged,
    remove_leftovers,
    remove_uncommitted_files,
    stage_table,
    table_files,
)
from rxcohort.io.tables import (
    WriteMode,
    partition_columns,
    read_rows,
    read_table,
    table_exists,
    table_history,
    table_row_count,
    table_schema,
    table_version,
    write_table,
)

__all__ = [
    "SCRATCH_DIR",
    "STAGING_DIR",
    "DataFile",
    "StagedTable",
    "WriteMode",
    "commit_staged",
    "partition_columns",
    "read_rows",
    "read_table",
    "remove_leftovers",
    "remove_uncommitted_files",
    "stage_table",
    "table_exists",
    "table_files",
    "table_history",
    "table_row_count",
    "table_schema",
    "table_version",
    "write_table",
]
