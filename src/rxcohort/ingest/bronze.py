"""Delivered files into bronze rows: every value a string as delivered, plus its lineage.

Files are read with Spark's text reader (one record per line, ``.gz`` handled by Hadoop) so
that every row keeps its line number; the fields are then split with Spark's own CSV parser
(``from_csv``: ``;`` separator, ``"`` quotes, doubled quotes inside) against an explicit
all-string schema in the order of the file's header. Nothing is inferred.

A row whose number of fields differs from the header is kept in bronze with its whole line in
``raw_line`` (and ``field_count``), and goes to quarantine as ``wrong_field_count``; the file
as a whole is fine. Lines with nothing but spaces are not rows: they are counted per file
(``blank_lines`` in ``bronze/files``) and skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, StringType, StructField, StructType

from rxcohort.errors import DeliveryError
from rxcohort.ingest.delivery import CheckedFile
from rxcohort.schemas import RAW_COLUMNS, bronze_schema

# Bronze carries two columns beyond schemas.bronze_schema: how many fields the line had, and
# the whole line when that number was wrong (the parsed columns cannot hold it then).
BRONZE_EXTRA_FIELDS = [
    StructField("field_count", IntegerType(), False),
    StructField("raw_line", StringType(), True),
]
BRONZE_PARTITION_BY = ["source_file"]
_CSV_OPTIONS = {
    "sep": ";",
    "quote": '"',
    "escape": '"',
    "mode": "PERMISSIVE",
    "ignoreLeadingWhiteSpace": "false",
    "ignoreTrailingWhiteSpace": "false",
}
# Separators outside double-quoted stretches; "" inside quotes is an escaped quote.
_QUOTED = r'"(?:[^"]|"")*"'


def bronze_table_schema(table: str) -> StructType:
    """The schema of ``bronze/<table>``: raw columns, lineage, field_count, raw_line."""
    return StructType(bronze_schema(table).fields + BRONZE_EXTRA_FIELDS)


def read_bronze_rows(
    spark: SparkSession,
    files: Sequence[CheckedFile],
    *,
    load_id: str,
    load_time: datetime,
) -> dict[str, DataFrame]:
    """The rows of ``files`` as bronze rows with lineage, one frame per table.

    All files are read in one pass. Raises DeliveryError when Spark counts a different number
    of lines than the check did (the file changed while it was being ingested).
    """
    frames = {table: spark.createDataFrame([], bronze_table_schema(table)) for table in RAW_COLUMNS}
    if not files:
        return frames
    names = [f.file.path.name for f in files]
    if len(set(names)) != len(names):
        raise DeliveryError("two delivered files share a file name")
    lines = _numbered_lines(spark, files)
    lineage = spark.createDataFrame(
        [(f.file.path.name, f.file.name, f.sha256) for f in files],
        "_file_name string, source_file string, source_sha256 string",
    )
    for table in RAW_COLUMNS:
        mine = [f for f in files if f.file.table == table]
        if not mine:
            continue
        parts = []
        for header in sorted({f.header for f in mine}):
            group = [f.file.path.name for f in mine if f.header == header]
            selected = lines.where(F.col("_file_name").isin(group))
            parts.append(_parse_group(selected, header=header, table=table))
        rows = parts[0]
        for part in parts[1:]:
            rows = rows.unionByName(part)
        rows = rows.join(F.broadcast(lineage), "_file_name")
        frames[table] = rows.select(
            *[F.col(c) for c in RAW_COLUMNS[table]],
            F.col("source_file"),
            F.col("source_sha256"),
            F.col("line_number"),
            F.lit(load_id).alias("load_id"),
            F.lit(load_time).cast("timestamp").alias("load_time"),
            F.col("field_count"),
            F.col("raw_line"),
        )
    return frames


def _numbered_lines(spark: SparkSession, files: Sequence[CheckedFile]) -> DataFrame:
    """Every line of every file with its 1-based line number within its file.

    A large plain file is split into blocks read by different tasks; within a task the rows of
    a block get consecutive monotonically_increasing_id values in file order, so a line's number
    is its position in its block plus the lines of the blocks before it (counted in one pass).
    """
    raw = spark.read.text([str(f.file.path) for f in files]).select(
        F.col("value"),
        F.col("_metadata.file_name").alias("_file_name"),
        F.col("_metadata.file_block_start").alias("_block"),
        F.monotonically_increasing_id().alias("_id"),
    )
    blocks = (
        raw.groupBy("_file_name", "_block")
        .agg(F.count(F.lit(1)).alias("n"), F.min("_id").alias("first_id"))
        .collect()
    )
    offsets = []
    counted: dict[str, int] = {}
    for row in sorted(blocks, key=lambda r: (r["_file_name"], r["_block"])):
        before = counted.get(row["_file_name"], 0)
        offsets.append((row["_file_name"], int(row["_block"]), int(row["first_id"]), before))
        counted[row["_file_name"]] = before + int(row["n"])
    for f in files:
        seen = counted.get(f.file.path.name, 0)
        if seen != f.lines:
            raise DeliveryError(
                f"{f.file.relpath}: Spark read {seen} lines but the check counted {f.lines}; "
                "was the file changed during the ingest?"
            )
    offset_frame = spark.createDataFrame(
        offsets, "_file_name string, _block long, _first_id long, _before long"
    )
    return (
        raw.join(F.broadcast(offset_frame), ["_file_name", "_block"])
        .withColumn("line_number", F.col("_id") - F.col("_first_id") + F.col("_before") + 1)
        .drop("_block", "_id", "_first_id", "_before")
    )


def _parse_group(lines: DataFrame, *, header: tuple[str, ...], table: str) -> DataFrame:
    """Split the data lines of files sharing one header into the table's raw columns."""
    expected = len(header)
    schema = ", ".join(f"`{name}` STRING" for name in header)
    # Quoted stretches may hold separators; most lines have no quote and skip the regex.
    value = F.col("value")
    unquoted = F.when(value.contains('"'), F.regexp_replace(value, _QUOTED, "")).otherwise(value)
    field_count = F.size(F.split(unquoted, ";", -1))
    data = lines.where((F.col("line_number") > 1) & (F.trim(F.col("value")) != ""))
    parsed = data.select(
        "_file_name",
        "line_number",
        field_count.cast("int").alias("field_count"),
        F.when(field_count != expected, F.col("value")).alias("raw_line"),
        F.from_csv(F.col("value"), schema, _CSV_OPTIONS).alias("_fields"),
    )
    return parsed.select(
        "_file_name",
        "line_number",
        "field_count",
        "raw_line",
        *[F.col(f"_fields.`{c}`").alias(c) for c in RAW_COLUMNS[table]],
    )
