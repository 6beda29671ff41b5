"""Where ingestion's tables live in the warehouse, and the schemas of its bookkeeping tables."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql.types import (
    BooleanType,
    DateType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

TABLES = ("persons", "prescribers", "dispensings")
SUITES = {
    "raw": "raw_files",
    "persons": "silver_persons",
    "prescribers": "silver_prescribers",
    "dispensings": "silver_dispensings",
}

# bronze/files: one row per delivered file currently in bronze (the ingest's own registry).
FILES_SCHEMA = StructType(
    [
        StructField("source_file", StringType(), False),
        StructField("table_name", StringType(), False),
        StructField("delivered_as", StringType(), False),
        StructField("file_year", IntegerType(), True),
        StructField("sha256", StringType(), False),
        StructField("size_bytes", LongType(), False),
        StructField("lines", LongType(), False),
        StructField("blank_lines", LongType(), False),
        StructField("rows", LongType(), False),
        StructField("period_start", DateType(), True),
        StructField("period_end", DateType(), True),
        StructField("load_id", StringType(), False),
        StructField("load_time", TimestampType(), False),
    ]
)

# silver/deliveries: one row per ingest that changed something.
DELIVERIES_SCHEMA = StructType(
    [
        StructField("load_id", StringType(), False),
        StructField("registry", StringType(), True),
        StructField("extract_date", DateType(), True),
        StructField("period_start", DateType(), True),
        StructField("period_end", DateType(), True),
        StructField("period_source", StringType(), False),
        StructField("n_files", IntegerType(), False),
        StructField("n_files_changed", IntegerType(), False),
        StructField("rows_read", LongType(), False),
        StructField("manifest_sha256", StringType(), True),
        StructField("load_time", TimestampType(), False),
    ]
)

# quality/runs: one row per expectation per suite per ingest.
# What each load changed (silver/changes): one row per table x part whose rows changed.
CHANGES_SCHEMA = StructType(
    [
        StructField("load_id", StringType(), False),
        StructField("table_name", StringType(), False),  # silver/dispensings, quarantine/...
        StructField("part_column", StringType(), True),  # dispense_year, source_file, or null
        StructField("part_value", StringType(), True),
        StructField("change", StringType(), False),  # added, removed, changed
        StructField("rows_before", LongType(), False),
        StructField("rows_after", LongType(), False),
    ]
)

QUALITY_RUNS_SCHEMA = StructType(
    [
        StructField("load_id", StringType(), False),
        StructField("suite", StringType(), False),
        StructField("expectation_index", IntegerType(), False),
        StructField("expectation", StringType(), False),
        StructField("column", StringType(), True),
        StructField("severity", StringType(), False),
        StructField("success", BooleanType(), False),
        StructField("observed", StringType(), True),
        StructField("arguments", StringType(), True),
        StructField("run_time", TimestampType(), False),
    ]
)


class WarehousePaths:
    """The ingest's table paths under one warehouse directory."""

    def __init__(self, warehouse: str | Path) -> None:
        self.root = Path(warehouse)

    def bronze(self, table: str) -> Path:
        return self.root / "bronze" / table

    @property
    def files(self) -> Path:
        return self.root / "bronze" / "files"

    def silver(self, table: str) -> Path:
        return self.root / "silver" / table

    @property
    def deliveries(self) -> Path:
        return self.root / "silver" / "deliveries"

    def quarantine(self, table: str) -> Path:
        return self.root / "quarantine" / table

    @property
    def changes(self) -> Path:
        return self.root / "silver" / "changes"

    @property
    def quality_runs(self) -> Path:
        return self.root / "quality" / "runs"

    def report(self, load_id: str) -> Path:
        return self.root / "quality" / "reports" / f"{load_id}.html"

    def all_tables(self) -> dict[str, Path]:
        tables: dict[str, Path] = {}
        for table in TABLES:
            tables[f"bronze/{table}"] = self.bronze(table)
        tables["bronze/files"] = self.files
        for table in TABLES:
            tables[f"silver/{table}"] = self.silver(table)
        tables["silver/deliveries"] = self.deliveries
        tables["silver/changes"] = self.changes
        for table in TABLES:
            tables[f"quarantine/{table}"] = self.quarantine(table)
        tables["quality/runs"] = self.quality_runs
        return tables
