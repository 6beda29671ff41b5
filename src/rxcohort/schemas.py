"""Schemas fixed by the contract (../shared/CONTRACT.md §1) and the silver tables built from them.

The raw schemas list the delivered columns in contract order; bronze keeps every value as a
string. The silver schemas are what the cohort engine reads.
"""

from __future__ import annotations

from pyspark.sql.types import (
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

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


SILVER_PERSONS = StructType(
    [
        StructField("person_id", StringType(), False),
        StructField("sex", IntegerType(), True),
        StructField("birth_year", IntegerType(), True),
        StructField("death_date", DateType(), True),
        StructField("emigration_date", DateType(), True),
        StructField("county", StringType(), True),
        StructField("source_file", StringType(), True),
        StructField("load_id", StringType(), True),
    ]
)

SILVER_PRESCRIBERS = StructType(
    [
        StructField("prescriber_id", StringType(), False),
        StructField("profession", StringType(), True),
        StructField("specialty", StringType(), True),
        StructField("source_file", StringType(), True),
        StructField("load_id", StringType(), True),
    ]
)

# One row per dispensing_id. ``ddd`` is CONTRACT §5 rule 8 (packs * ddd_per_pack, else computed
# from strength and the WHO DDD); ``ddd_method`` says which: 'registry', 'computed' or null.
SILVER_DISPENSINGS = StructType(
    [
        StructField("dispensing_id", StringType(), False),
        StructField("person_id", StringType(), False),
        StructField("dispense_date", DateType(), False),
        StructField("atc_code", StringType(), False),
        StructField("product_id", StringType(), True),
        StructField("product_name", StringType(), True),
        StructField("magistral", BooleanType(), True),
        StructField("strength_mg", DoubleType(), True),
        StructField("units_per_pack", DoubleType(), True),
        StructField("packs", DoubleType(), False),
        StructField("ddd_per_pack", DoubleType(), True),
        StructField("ddd", DoubleType(), True),
        StructField("ddd_method", StringType(), True),
        StructField("prescriber_id", StringType(), True),
        StructField("reimbursement", StringType(), True),
        StructField("reimbursement_code", StringType(), True),
        StructField("source_file", StringType(), True),
        StructField("load_id", StringType(), True),
        StructField("dispense_year", IntegerType(), False),
    ]
)

# silver/dispensings is partitioned by year of dispensing and sorted by ATC code within each
# partition, so a study reading a few ATC groups skips most row groups by their min/max stats.
SILVER_DISPENSINGS_PARTITION_BY: list[str] = ["dispense_year"]
