"""Reference data shipped with rxcohort: the WHO defined daily doses (DDD) used by ingestion.

``who_ddd.csv`` holds one row per ATC code and range of years: ATC codes and DDDs change over
time (codeine + paracetamol was N02AA59 until the N02AJ group was created), so a dispensing is
matched on its ATC code *and* its year. ``ddd_mg`` is the DDD in milligrams, filled only where a
DDD can be computed from a product's strength in mg; combination products with a DDD in unit
doses (UD) leave it empty, and their DDD then comes from the registry's ``ddd_per_pack`` alone.

A dispensing carries no route of administration, so each ATC code has one row per year range:
the route whose DDD applies to the products the registry delivers under that code.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from dataclasses import dataclass
from importlib import resources

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

from rxcohort.errors import ParameterError

ATC_PATTERN = re.compile(r"^[A-Z][0-9]{2}[A-Z]{2}[0-9]{2}$")
_UNIT_TO_MG = {"mg": 1.0, "g": 1000.0, "mcg": 0.001}

WHO_DDD_SCHEMA = StructType(
    [
        StructField("atc_code", StringType(), False),
        StructField("valid_from_year", IntegerType(), True),
        StructField("valid_to_year", IntegerType(), True),
        StructField("ddd", DoubleType(), True),
        StructField("unit", StringType(), False),
        StructField("route", StringType(), True),
        StructField("ddd_mg", DoubleType(), True),
    ]
)


@dataclass(frozen=True)
class WhoDdd:
    atc_code: str
    substance: str
    valid_from_year: int | None
    valid_to_year: int | None
    ddd: float | None
    unit: str
    route: str | None
    ddd_mg: float | None
    source: str

    def covers(self, year: int) -> bool:
        low = self.valid_from_year if self.valid_from_year is not None else -(10**9)
        high = self.valid_to_year if self.valid_to_year is not None else 10**9
        return low <= year <= high


def load_who_ddd(text: str | None = None) -> tuple[WhoDdd, ...]:
    """Parse and check the WHO DDD table (the shipped ``who_ddd.csv`` unless ``text`` is given).

    Raises ValueError naming the line when a row is malformed, when ``ddd_mg`` disagrees with
    ``ddd`` and ``unit``, or when two rows of one ATC code cover the same year.
    """
    if text is None:
        text = resources.files(__package__).joinpath("who_ddd.csv").read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    expected = {
        "atc_code",
        "substance",
        "valid_from_year",
        "valid_to_year",
        "ddd",
        "unit",
        "route",
        "ddd_mg",
        "source",
    }
    if set(reader.fieldnames or []) != expected:
        raise ParameterError(f"who_ddd.csv: columns must be {sorted(expected)}")
    rows = []
    for line_number, raw in enumerate(reader, start=2):
        rows.append(_parse_row(raw, line_number))
    _check_no_overlap(rows)
    return tuple(rows)


def _parse_row(raw: dict[str, str], line_number: int) -> WhoDdd:
    where = f"who_ddd.csv line {line_number}"
    atc = raw["atc_code"].strip()
    if not ATC_PATTERN.match(atc):
        raise ParameterError(f"{where}: atc_code must look like N02AX02")
    try:
        row = WhoDdd(
            atc_code=atc,
            substance=raw["substance"].strip(),
            valid_from_year=_opt_int(raw["valid_from_year"]),
            valid_to_year=_opt_int(raw["valid_to_year"]),
            ddd=_opt_float(raw["ddd"]),
            unit=raw["unit"].strip(),
            route=raw["route"].strip() or None,
            ddd_mg=_opt_float(raw["ddd_mg"]),
            source=raw["source"].strip(),
        )
    except ValueError as exc:
        raise ParameterError(f"{where}: {exc}") from exc
    if not row.source:
        raise ParameterError(f"{where}: every DDD needs a source note")
    if (
        row.valid_from_year is not None
        and row.valid_to_year is not None
        and row.valid_from_year > row.valid_to_year
    ):
        raise ParameterError(f"{where}: valid_from_year is after valid_to_year")
    if row.unit in _UNIT_TO_MG:
        if row.ddd is None or row.ddd_mg is None:
            raise ParameterError(f"{where}: a DDD in {row.unit} needs both ddd and ddd_mg")
        if abs(row.ddd * _UNIT_TO_MG[row.unit] - row.ddd_mg) > 1e-9 * max(1.0, row.ddd_mg):
            raise ParameterError(f"{where}: ddd_mg does not equal ddd in {row.unit}")
    elif row.ddd_mg is not None:
        raise ParameterError(f"{where}: ddd_mg must be empty for a DDD in {row.unit}")
    return row


def _opt_int(value: str) -> int | None:
    value = value.strip()
    return int(value) if value else None


def _opt_float(value: str) -> float | None:
    value = value.strip()
    return float(value) if value else None


def _check_no_overlap(rows: list[WhoDdd]) -> None:
    by_code: dict[str, list[WhoDdd]] = {}
    for row in rows:
        by_code.setdefault(row.atc_code, []).append(row)
    for code, entries in by_code.items():
        ordered = sorted(
            entries, key=lambda r: r.valid_from_year if r.valid_from_year is not None else -(10**9)
        )
        for earlier, later in itertools.pairwise(ordered):
            end = earlier.valid_to_year if earlier.valid_to_year is not None else 10**9
            start = later.valid_from_year if later.valid_from_year is not None else -(10**9)
            if start <= end:
                raise ParameterError(f"who_ddd.csv: two rows for {code} cover the same year")


def who_ddd_frame(spark: SparkSession, rows: tuple[WhoDdd, ...] | None = None) -> DataFrame:
    """The DDD table as a small DataFrame (schema ``WHO_DDD_SCHEMA``) for joining to dispensings."""
    rows = load_who_ddd() if rows is None else rows
    data = [
        (r.atc_code, r.valid_from_year, r.valid_to_year, r.ddd, r.unit, r.route, r.ddd_mg)
        for r in rows
    ]
    return spark.createDataFrame(data, WHO_DDD_SCHEMA)
