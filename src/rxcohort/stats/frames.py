"""Column lists, dtypes and Spark schemas of the outcome result tables.

pandas side: labels are ``object`` (str), person counts ``int64`` (never null), month and lag
``int32``, statistics nullable ``Float64`` where ``<NA>`` means "undefined" (too few persons,
no variance, a zero denominator). Use :func:`to_spark` to turn a frame into a Spark DataFrame:
``spark.createDataFrame`` on a pandas frame would store an undefined statistic as NaN instead
of null (and on a list of rows it starts Python workers, see :func:`rxcohort.spark.local_frame`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import (
    StructType,
)

from rxcohort.contract import table_spec
from rxcohort.spark import local_frame

# (column, kind) of each result table, from rxcohort.contract: kind is "str", "long" (a count),
# "long?" (a count that may be undefined), "int" (month, lag), "double" or "date".
RESULT_TABLES: tuple[str, ...] = (
    "group_results",
    "did_results",
    "responders",
    "trajectories",
    "its_results",
    "use_over_time",
    "characteristics",
    "characteristics_smd",
    "prescriber_summary",
)
_LAYOUT: dict[str, tuple[tuple[str, str], ...]] = {
    name: table_spec(name).layout() for name in RESULT_TABLES
}

COLUMNS: dict[str, list[str]] = {name: [c for c, _ in spec] for name, spec in _LAYOUT.items()}

_PANDAS_DTYPES = {
    "str": "object",
    "long": "int64",
    "long?": "Int64",
    "int": "int32",
    "double": "Float64",
    "date": "object",
}
RESULT_SCHEMAS: dict[str, StructType] = {name: table_spec(name).schema() for name in _LAYOUT}


def finish(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """The frame with exactly the table's columns, in order, with the table's dtypes.

    NaN and infinities in a statistic become ``<NA>``: undefined, not a number.
    """
    out = frame.reindex(columns=COLUMNS[table]).reset_index(drop=True)
    for column, kind in _LAYOUT[table]:
        if kind == "double":
            values = pd.to_numeric(out[column], errors="raise").astype("float64")
            values = values.where(values.map(math.isfinite), other=float("nan"))
            out[column] = values.astype("Float64")
        elif kind == "str":
            out[column] = out[column].astype("object")
        elif kind == "date":
            out[column] = out[column].map(_as_date).astype("object")
        else:
            out[column] = out[column].astype(_PANDAS_DTYPES[kind])
    return out


def to_spark(spark: SparkSession, frame: pd.DataFrame, *, table: str) -> DataFrame:
    """A result frame as a Spark DataFrame with the table's schema; ``<NA>`` becomes null."""
    schema = RESULT_SCHEMAS[table]
    kinds = dict(_LAYOUT[table])
    columns = COLUMNS[table]
    rows = [
        tuple(_python_value(value, kinds[c]) for c, value in zip(columns, record, strict=True))
        for record in frame[columns].itertuples(index=False, name=None)
    ]
    return local_frame(spark, rows, schema)


def _python_value(value: object, kind: str) -> object:
    if value is None or value is pd.NA:
        return None
    if kind == "double":
        number = float(value)  # type: ignore[arg-type]
        return number if math.isfinite(number) else None
    if kind in ("long", "long?", "int"):
        return int(value)  # type: ignore[call-overload]
    if kind == "date":
        return _as_date(value)
    return str(value)


def _as_date(value: object) -> object:
    """A date cell as a ``datetime.date`` (pandas may hand a Timestamp); null stays None."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    return value


def empty(table: str) -> pd.DataFrame:
    """A table with no rows and the right dtypes."""
    return finish(pd.DataFrame(columns=COLUMNS[table]), table)


__all__: Sequence[str] = ["COLUMNS", "RESULT_SCHEMAS", "empty", "finish", "to_spark"]
