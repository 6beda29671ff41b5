"""Deterministic randomness as Spark columns.

Every random number is a hash of (seed, a purpose label, the row's identifying columns), so a
value depends only on what it describes: not on partitioning, row order, the number of cores
or which other rows exist. That is what makes two runs byte-identical and lets a cluster
generate any slice of the population independently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from rxcohort.errors import ParameterError

_TWO_53 = float(1 << 53)


def uniform(seed: int, purpose: str, *keys: Column | str) -> Column:
    """A uniform number in (0, 1), fixed by the seed, the purpose and the key columns."""
    h = F.xxhash64(F.lit(seed).cast("long"), F.lit(purpose), *keys)
    return (F.shiftrightunsigned(h, 11).cast("double") + F.lit(0.5)) / F.lit(_TWO_53)


def with_uniforms(
    df: DataFrame, seed: int, keys: Sequence[str], purposes: Sequence[str], *, prefix: str = "u_"
) -> DataFrame:
    """Add one uniform column ``<prefix><purpose>`` per purpose, keyed on the ``keys`` columns.

    Materialising draws as columns first keeps later expressions small: a draw used in several
    places is then a column reference, not a repeated hash.
    """
    key_cols = [F.col(k) for k in keys]
    return df.withColumns({prefix + p: uniform(seed, p, *key_cols) for p in purposes})


def normal(seed: int, purpose: str, *keys: Column | str) -> Column:
    """A standard normal number (Box-Muller on two uniforms)."""
    u1 = uniform(seed, purpose + ":n1", *keys)
    u2 = uniform(seed, purpose + ":n2", *keys)
    return F.sqrt(F.lit(-2.0) * F.log(u1)) * F.cos(F.lit(2 * math.pi) * u2)


def exponential(seed: int, purpose: str, *keys: Column | str) -> Column:
    """An exponential number with mean 1."""
    return -F.log(uniform(seed, purpose, *keys))


def pick(u: Column, weights: Sequence[float]) -> Column:
    """Index (0-based int) drawn from fixed ``weights`` by the uniform ``u``."""
    total = float(sum(weights))
    if total <= 0:
        raise ParameterError("weights must have a positive sum")
    cumulative = 0.0
    expr = None
    for i, w in enumerate(weights[:-1]):
        cumulative += w / total
        if w <= 0:
            continue
        expr = F.when(u < cumulative, F.lit(i)) if expr is None else expr.when(u < cumulative, i)
    last = F.lit(len(weights) - 1)
    return last if expr is None else expr.otherwise(last)


def item(array: Column, index: Column | int) -> Column:
    """``array``'s element at the 1-based ``index``; null for an index outside the array.

    Only rows a filter or a CASE already excludes ever have such an index, but engines may
    evaluate an expression on those rows too (Sail does), and element_at refuses index 0
    where ``get`` gives null.
    """
    position = F.lit(index) if isinstance(index, int) else index
    return F.get(array, position - 1)


def pick_from_array(u: Column, cumulative: Column) -> Column:
    """Index (0-based int) drawn by ``u`` from a per-row array of cumulative weights in (0, 1]."""
    return F.size(F.filter(cumulative, lambda c: c <= u))


def local_table(
    spark: SparkSession, schema: StructType, rows: Sequence[Sequence[Any]]
) -> DataFrame:
    """A small constant table built in SQL (an inline VALUES table), not from a Python RDD.

    ``spark.createDataFrame`` on Python rows scans through Python workers every time a job
    reads it; an inline table is a plain constant relation on the JVM.
    """
    names = [f.name for f in schema.fields]
    values = ",\n".join("(" + ", ".join(_sql_literal(v) for v in row) + ")" for row in rows)
    table = spark.sql(f"SELECT * FROM VALUES {values} AS t({', '.join(names)})")
    return table.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def _sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}L"
    if isinstance(value, float):
        return f"CAST('{value!r}' AS DOUBLE)"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "array(" + ", ".join(_sql_literal(v) for v in value) + ")"
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def cumulative(weights: Sequence[float]) -> list[float]:
    """Normalised cumulative weights, the last forced to exactly 1."""
    total = float(sum(weights))
    out, acc = [], 0.0
    for w in weights:
        acc += w / total
        out.append(acc)
    out[-1] = 1.0
    return out
