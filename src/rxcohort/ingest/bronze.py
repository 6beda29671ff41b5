"""Delivered files into bronze rows: every value a string as delivered, plus its lineage.

Files are split into numbered lines on the driver (Arrow, ``.gz`` decompressed) and read by
the engine from Parquet, so that every row keeps its line number; the fields are then split by :func:`split_fields` (``;``
separator, ``"`` quotes, doubled quotes inside), written here once in plain column expressions
rather than with ``from_csv``: engines differ in how their CSV functions treat quotes and a
wrong number of fields, and the split must give the same fields on every engine. Nothing is
inferred.

A row whose number of fields differs from the header is kept in bronze with its whole line in
``raw_line`` (and ``field_count``), and goes to quarantine as ``wrong_field_count``; the file
as a whole is fine. Lines with nothing but spaces are not rows: they are counted per file
(``blank_lines`` in ``bronze/files``) and skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

from rxcohort.errors import DeliveryError
from rxcohort.ingest.delivery import CheckedFile, write_numbered_lines
from rxcohort.schemas import RAW_COLUMNS, bronze_schema
from rxcohort.spark import local_frame

# Bronze carries two columns beyond schemas.bronze_schema: how many fields the line had, and
# the whole line when that number was wrong (the parsed columns cannot hold it then).
BRONZE_EXTRA_FIELDS = [
    StructField("field_count", IntegerType(), False),
    StructField("raw_line", StringType(), True),
]
BRONZE_PARTITION_BY = ["source_file"]
# One field after its separator: a double-quoted stretch ("" inside is an escaped quote, and
# anything up to the next separator stays with it) or a run of non-separators. Matched against
# ";" + line, so every match consumes its separator and none is empty.
_FIELD = r';("(?:[^"]|"")*"[^;]*|[^;]*)'


def bronze_table_schema(table: str) -> StructType:
    """The schema of ``bronze/<table>``: raw columns, lineage, field_count, raw_line."""
    return StructType(bronze_schema(table).fields + BRONZE_EXTRA_FIELDS)


def read_bronze_rows(
    spark: SparkSession,
    files: Sequence[CheckedFile],
    *,
    load_id: str,
    load_time: datetime,
    scratch: Path,
) -> dict[str, DataFrame]:
    """The rows of ``files`` as bronze rows with lineage, one frame per table.

    The files' numbered lines are kept under ``scratch`` (the caller removes it). Raises
    DeliveryError when a file has a different number of lines than the check counted (it
    changed while it was being ingested).
    """
    frames = {table: spark.createDataFrame([], bronze_table_schema(table)) for table in RAW_COLUMNS}
    if not files:
        return frames
    names = [f.file.path.name for f in files]
    if len(set(names)) != len(names):
        raise DeliveryError("two delivered files share a file name")
    lines = _numbered_lines(spark, files, scratch)
    lineage = local_frame(
        spark,
        [(f.file.path.name, f.file.name, f.sha256) for f in files],
        StructType(
            [
                StructField("_file_name", StringType()),
                StructField("source_file", StringType()),
                StructField("source_sha256", StringType()),
            ]
        ),
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


def _numbered_lines(spark: SparkSession, files: Sequence[CheckedFile], scratch: Path) -> DataFrame:
    """Every line of every file with its 1-based line number within its file.

    The files are split into numbered lines on the driver (:func:`write_numbered_lines`, Arrow
    at memory speed) into Parquet under ``scratch``, which the engine then reads in parallel:
    a line keeps its number on every engine, whatever order the engine reads blocks in.
    """
    parts = []
    for i, f in enumerate(files):
        target = scratch / "delivered_lines" / f"{i:04d}.parquet"
        write_numbered_lines(f, target)
        lines = spark.read.schema(_LINES_SCHEMA).parquet(str(target))
        parts.append(lines.withColumn("_file_name", F.lit(f.file.path.name)))
    result = parts[0]
    for part in parts[1:]:
        result = result.unionByName(part)
    return result


_LINES_SCHEMA = StructType(
    [StructField("value", StringType()), StructField("line_number", LongType())]
)


def split_fields(line: Column) -> Column:
    """The fields of a ``;``-separated line as an array of strings.

    A field in double quotes loses them and its doubled quotes become one; an empty unquoted
    field is null, an empty quoted one (``""``) the empty string, as a CSV reader gives them.
    Lines without a quote (nearly all) are split directly.
    """
    quoted = F.regexp_extract_all(F.concat(F.lit(";"), line), F.lit(_FIELD), 1)
    plain = F.split(line, ";", -1)
    raw = F.when(line.contains('"'), quoted).otherwise(plain)

    def unquote(field: Column) -> Column:
        is_quoted = field.startswith('"') & field.endswith('"') & (F.length(field) >= 2)
        inner = F.regexp_replace(F.regexp_extract(field, r'(?s)^"(.*)"$', 1), '""', '"')
        return F.when(is_quoted, inner).when(field != "", field)

    return F.transform(raw, unquote)


def _parse_group(lines: DataFrame, *, header: tuple[str, ...], table: str) -> DataFrame:
    """Split the data lines of files sharing one header into the table's raw columns.

    A line with fewer fields than the header fills the first columns; extra fields are dropped
    (the whole line is kept in ``raw_line`` either way).
    """
    expected = len(header)
    position = {name: i for i, name in enumerate(header)}
    data = lines.where((F.col("line_number") > 1) & (F.trim(F.col("value")) != ""))
    fields = data.select(
        "_file_name",
        "line_number",
        F.col("value"),
        split_fields(F.col("value")).alias("_fields"),
    )
    field_count = F.size(F.col("_fields"))
    return fields.select(
        "_file_name",
        "line_number",
        field_count.cast("int").alias("field_count"),
        F.when(field_count != expected, F.col("value")).alias("raw_line"),
        *[
            F.when(field_count > position[c], F.col("_fields")[position[c]]).alias(c)
            for c in RAW_COLUMNS[table]
        ],
    )
