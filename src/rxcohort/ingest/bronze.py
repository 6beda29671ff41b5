"""Delivered files into bronze rows: every value a string as delivered, plus its lineage.

Files are read with the engine's text reader (one record per line, ``.gz`` decompressed) so
that every row keeps its line number; the fields are then split by :func:`split_fields` (``;``
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

from collections.abc import Callable, Sequence
from datetime import datetime

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

from rxcohort.errors import DeliveryError
from rxcohort.ingest.delivery import CheckedFile
from rxcohort.schemas import RAW_COLUMNS, bronze_schema
from rxcohort.spark import local_frame

# Bronze carries two columns beyond schemas.bronze_schema: how many fields the line had, and
# the whole line when that number was wrong (the parsed columns cannot hold it then).
BRONZE_EXTRA_FIELDS = [
    StructField("field_count", IntegerType(), False),
    StructField("raw_line", StringType(), True),
]
BRONZE_PARTITION_BY = ["source_file"]
# Writes a frame to scratch and reads it back: (frame, name) -> the frame as written.
Materialise = Callable[[DataFrame, str], DataFrame]
# One field after its separator: a double-quoted stretch ("" inside is an escaped quote, and
# anything up to the next separator stays with it) or a run of non-separators. Matched against
# ";" + line, so every match consumes its separator and none is empty.
_FIELD = r';("(?:[^"]|"")*"[^;]*|[^;]*)'
# Line numbers come from monotonically_increasing_id: the task (file block) in the upper 31
# bits, the row's position within the task in the lower 33.
_ROW_BITS = 33


def bronze_table_schema(table: str) -> StructType:
    """The schema of ``bronze/<table>``: raw columns, lineage, field_count, raw_line."""
    return StructType(bronze_schema(table).fields + BRONZE_EXTRA_FIELDS)


def read_bronze_rows(
    spark: SparkSession,
    files: Sequence[CheckedFile],
    *,
    load_id: str,
    load_time: datetime,
    materialise: Materialise,
) -> dict[str, DataFrame]:
    """The rows of ``files`` as bronze rows with lineage, one frame per table.

    The files' lines are read once and kept by ``materialise`` (a frame written to scratch and
    read back). Raises DeliveryError when the engine counts a different number of lines than
    the check did (the file changed while it was being ingested).
    """
    frames = {table: spark.createDataFrame([], bronze_table_schema(table)) for table in RAW_COLUMNS}
    if not files:
        return frames
    names = [f.file.path.name for f in files]
    if len(set(names)) != len(names):
        raise DeliveryError("two delivered files share a file name")
    lines = _numbered_lines(spark, files, materialise)
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


def _numbered_lines(
    spark: SparkSession, files: Sequence[CheckedFile], materialise: Materialise
) -> DataFrame:
    """Every line of every file with its 1-based line number within its file.

    Each file is read on its own, so its rows carry its name without the engine's file-metadata
    columns (not every engine has them). A large plain file is split into blocks read by
    different tasks; within a task the rows get consecutive monotonically_increasing_id values
    in file order, so a line's number is its position in its block plus the lines of the blocks
    before it (counted in one pass). The ids depend on how the engine plans the read - a filter
    on the file name may drop other files' tasks and renumber the rest - so the lines and their
    ids are materialised once, and counted and numbered from that one copy.
    """
    parts = [
        spark.read.text(str(f.file.path)).select(
            F.col("value"),
            F.lit(f.file.path.name).alias("_file_name"),
            F.monotonically_increasing_id().alias("_id"),
        )
        for f in files
    ]
    raw = parts[0]
    for part in parts[1:]:
        raw = raw.unionByName(part)
    raw = materialise(
        raw.withColumn("_block", F.shiftright(F.col("_id"), _ROW_BITS)), "delivered_lines"
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
                f"{f.file.relpath}: the engine read {seen} lines but the check counted "
                f"{f.lines}; was the file changed during the ingest?"
            )
    offset_frame = local_frame(
        spark,
        offsets,
        StructType(
            [
                StructField("_file_name", StringType()),
                StructField("_block", LongType()),
                StructField("_first_id", LongType()),
                StructField("_before", LongType()),
            ]
        ),
    )
    return (
        raw.join(F.broadcast(offset_frame), ["_file_name", "_block"])
        .withColumn("line_number", F.col("_id") - F.col("_first_id") + F.col("_before") + 1)
        .drop("_block", "_id", "_first_id", "_before")
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
        inner = F.regexp_replace(F.regexp_extract(field, r'^"(.*)"$', 1), '""', '"')
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
