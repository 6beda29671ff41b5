"""Where ingestion's tables live in the warehouse, and the schemas of its bookkeeping tables."""

from __future__ import annotations

from pathlib import Path

from rxcohort.contract import spark_schemas

TABLES = ("persons", "prescribers", "dispensings")
SUITES = {
    "raw": "raw_files",
    "persons": "silver_persons",
    "prescribers": "silver_prescribers",
    "dispensings": "silver_dispensings",
}

# The bookkeeping tables, as declared in rxcohort.contract: bronze/files (the ingest's registry
# of delivered files), silver/deliveries (one row per load that changed something),
# silver/changes (what each load changed) and quality/runs (one row per expectation and load).
FILES_SCHEMA, DELIVERIES_SCHEMA, CHANGES_SCHEMA, QUALITY_RUNS_SCHEMA = spark_schemas(
    "files", "deliveries", "changes", "quality_runs"
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
