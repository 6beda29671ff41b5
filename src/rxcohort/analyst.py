"""Analyst access to the warehouse: list tables, show history, run Spark SQL.

Tables are named after their place in the warehouse: ``bronze/dispensings`` is
``bronze.dispensings``, ``studies/ldn_opioids_2013/cohort`` is ``ldn_opioids_2013.cohort``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from rich.console import Console
from rich.table import Table

from rxcohort import io
from rxcohort.errors import ParameterError, RxCohortError, TableNotFoundError
from rxcohort.pipelines.snapshot import pinned, warehouse_snapshot

_LAYERS = ("bronze", "silver", "quarantine", "quality")


@dataclass(frozen=True)
class WarehouseTable:
    name: str  # e.g. silver.dispensings
    path: Path

    @property
    def view_name(self) -> str:
        # Spark temp views take one-part names; the dot becomes a double underscore.
        return self.name.replace(".", "__")


def discover_tables(warehouse: Path) -> list[WarehouseTable]:
    """Every Delta table under the warehouse, with its SQL name."""
    warehouse = Path(warehouse)
    if not warehouse.is_dir():
        raise TableNotFoundError(f"no warehouse at {warehouse}")
    found = []
    for log_dir in sorted(warehouse.rglob("_delta_log")):
        table_dir = log_dir.parent
        if not io.table_exists(table_dir):
            continue
        rel = table_dir.relative_to(warehouse).parts
        if rel and rel[0] == "studies" and len(rel) == 3:
            name = f"{rel[1]}.{rel[2]}"
        elif len(rel) >= 2 and rel[0] in _LAYERS:
            name = f"{rel[0]}.{'_'.join(rel[1:])}"
        else:
            name = "_".join(rel)
        found.append(WarehouseTable(name=name, path=table_dir))
    return found


def resolve_table(warehouse: Path, name: str) -> WarehouseTable:
    tables = {t.name: t for t in discover_tables(warehouse)}
    if name not in tables:
        schema = name.partition(".")[0]
        near = sorted(t for t in tables if t.partition(".")[0] == schema)
        hint = f"{schema} has: {', '.join(near)}" if near else "rxcohort tables lists them"
        raise TableNotFoundError(f"no table {name!r} in {warehouse} ({hint})")
    return tables[name]


def register_views(spark: SparkSession, warehouse: Path) -> list[WarehouseTable]:
    """A view per table, at the version of the last complete load or run (rxcohort.pipelines.snapshot):
    a load or run killed half-way is not read."""
    tables = discover_tables(warehouse)
    versions = _versions(warehouse, tables)
    for table in tables:
        version = versions[table.name]
        io.read_table(spark, table.path, version=version).createOrReplaceTempView(table.view_name)
    return tables


def _versions(warehouse: Path, tables: list[WarehouseTable]) -> dict[str, int | None]:
    snapshot = warehouse_snapshot(warehouse)
    return pinned(snapshot, {t.name: t.path for t in tables}, Path(warehouse))


def rewrite_query(query: str, tables: list[WarehouseTable]) -> str:
    """Point ``layer.table`` names (plain or back-quoted) at their registered views."""
    for table in sorted(tables, key=lambda t: -len(t.name)):
        schema, _, name = table.name.partition(".")
        pattern = rf"(?<![\w.`])`?{re.escape(schema)}`?\s*\.\s*`?{re.escape(name)}`?(?![\w`])"
        query = re.sub(pattern, table.view_name, query, flags=re.IGNORECASE)
    return query


def sql_frame(spark: SparkSession, query: str, *, warehouse: Path) -> DataFrame:
    tables = register_views(spark, warehouse)
    try:
        frame = spark.sql(rewrite_query(query, tables))
        _ = frame.schema  # a Spark Connect query is analysed only when asked: ask now
        return frame
    except (
        Exception
    ) as exc:  # Spark's analysis errors: keep the first line, which names the problem
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RxCohortError(f"SQL error: {message}") from exc


def run_sql(
    spark: SparkSession,
    query: str,
    *,
    warehouse: Path,
    out: Path | None,
    limit: int,
    console: Console,
) -> None:
    frame = sql_frame(spark, query, warehouse=warehouse)
    if out is not None:
        suffix = out.suffix.lower()
        if suffix == ".csv":
            frame.toPandas().to_csv(out, index=False)
        elif suffix == ".parquet":
            frame.toPandas().to_parquet(out, index=False)
        else:
            raise ParameterError(f"--out must end in .csv or .parquet, not {out.name}")
        console.print(f"wrote {out}")
        return
    rows = frame.limit(limit + 1).collect()
    table = Table(show_lines=False)
    for column in frame.columns:
        # Fold rather than truncate: a cut-off number is worse than a wrapped one.
        table.add_column(column, overflow="fold")
    for row in rows[:limit]:
        table.add_row(*["" if v is None else str(v) for v in row])
    console.print(table)
    if len(rows) > limit:
        console.print(f"(first {limit} rows; use --limit or --out for more)")


def list_tables(warehouse: Path, *, console: Console) -> None:
    """Each table at the version readers read (rxcohort.pipelines.snapshot), with a note where a newer
    version is from a load or run that did not finish."""
    table = Table(title=f"Tables in {warehouse}", title_justify="left")
    for column in ("table", "version", "rows", "last commit (UTC)", "note"):
        table.add_column(column, justify="right" if column in ("version", "rows") else "left")
    found = discover_tables(warehouse)
    versions = _versions(warehouse, found)
    for item in found:
        latest = io.table_version(item.path)
        version = versions[item.name]
        history = io.table_history(item.path, limit=1)
        note = ""
        if version is not None and latest is not None and latest > version:
            note = f"v{latest} is from a load or run that did not finish; not read"
        table.add_row(
            item.name,
            str(latest if version is None else version),
            str(io.table_row_count(item.path, version=version)),
            history[0]["timestamp"] if history else "",
            note,
        )
    console.print(table)


def show_history(warehouse: Path, name: str, *, console: Console) -> None:
    item = resolve_table(warehouse, name)
    table = Table(title=f"History of {item.name}", title_justify="left")
    for column in ("version", "timestamp (UTC)", "operation", "rows added", "info"):
        table.add_column(column)
    for entry in io.table_history(item.path):
        metrics = entry["metrics"]
        added = metrics.get("num_added_rows", metrics.get("numOutputRows", ""))
        info = ", ".join(
            f"{k}={v}" for k, v in sorted(entry["info"].items()) if k not in ("operationMetrics",)
        )
        table.add_row(
            str(entry["version"]),
            str(entry["timestamp"]),
            str(entry["operation"]),
            str(added),
            info,
        )
    console.print(table)
