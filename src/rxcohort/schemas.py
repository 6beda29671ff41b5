"""Schemas fixed by the contract (../shared/CONTRACT.md §1) and the silver tables built from them.

The raw schemas list the delivered columns in contract order; bronze keeps every value as a
string. The silver schemas are what the cohort engine reads.
"""

from __future__ import annotations

from pyspark.sql.types import (
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from rxcohort.contract import spark_schemas

PERSONS_COLUMNS: tuple[str, ...] = (
    "person_id",
    "sex",
    "birth_year",
    "death_date",
    "emigration_date",
    "county",
)

PRESCRIBERS_COLUMNS: tuple[str, ...] = ("prescriber_id", "profession", "specialty")

DISPENSINGS_COLUMNS: tuple[str, ...] = (
    "dispensing_id",
    "person_id",
    "dispense_date",
    "atc_code",
    "product_id",
    "product_name",
    "magistral",
    "strength_mg",
    "units_per_pack",
    "packs",
    "ddd_per_pack",
    "prescriber_id",
    "reimbursement",
    "reimbursement_code",
)

RAW_COLUMNS: dict[str, tuple[str, ...]] = {
    "persons": PERSONS_COLUMNS,
    "prescribers": PRESCRIBERS_COLUMNS,
    "dispensings": DISPENSINGS_COLUMNS,
}


def raw_schema(table: str) -> StructType:
    """All-string schema of a delivered file, in contract column order."""
    return StructType([StructField(c, StringType(), True) for c in RAW_COLUMNS[table]])


# Lineage columns carried from bronze into silver and quarantine.
LINEAGE_FIELDS: list[StructField] = [
    StructField("source_file", StringType(), False),
    StructField("source_sha256", StringType(), False),
    StructField("line_number", LongType(), False),
    StructField("load_id", StringType(), False),
    StructField("load_time", TimestampType(), False),
]


def bronze_schema(table: str) -> StructType:
    return StructType(raw_schema(table).fields + LINEAGE_FIELDS)


# The silver tables, as declared in rxcohort.contract.
SILVER_PERSONS, SILVER_PRESCRIBERS, SILVER_DISPENSINGS = spark_schemas(
    "silver_persons", "silver_prescribers", "silver_dispensings"
)

# silver/dispensings is partitioned by year of dispensing and sorted by ATC code within each
# partition, so a study reading a few ATC groups skips most row groups by their min/max stats.
SILVER_DISPENSINGS_PARTITION_BY: list[str] = ["dispense_year"]
