"""Delta's per-file statistics, read from a Parquet file's footer, and partition values as the
Delta log writes them."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    StructType,
    TimestampNTZType,
    TimestampType,
)

# Delta's statistics are for data skipping; long strings are skipped rather than truncated so
# a reader never sees a max value that is smaller than the real one.
_MAX_STAT_STRING = 64


def file_stats(file: Path, schema: StructType, partition_by: list[str]) -> dict[str, Any]:
    """numRecords, minValues, maxValues and nullCount of the top-level columns, from the footer."""
    import pyarrow.parquet as pq

    meta = pq.read_metadata(file)
    types = {f.name: f.dataType for f in schema.fields if f.name not in partition_by}
    column_index = {}
    for i in range(meta.num_columns):
        col_path = meta.schema.column(i).path
        if col_path in types:
            column_index[col_path] = i
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for name, idx in column_index.items():
        low = high = None
        null_count = 0
        complete = True
        for rg in range(meta.num_row_groups):
            col = meta.row_group(rg).column(idx)
            st = col.statistics
            if st is None:
                complete = False
                continue
            if st.has_null_count:
                null_count += st.null_count
            else:
                complete = False
            rows_with_values = meta.row_group(rg).num_rows - (
                st.null_count if st.has_null_count else 0
            )
            if rows_with_values == 0:
                continue
            if not st.has_min_max:
                low = high = None
                complete = False
                break
            try:
                rg_min, rg_max = st.min, st.max
            except (NotImplementedError, ValueError, TypeError):
                # pyarrow cannot decode every physical type (e.g. some decimals): no stats then.
                low = high = None
                break
            low = rg_min if low is None else min(low, rg_min)
            high = rg_max if high is None else max(high, rg_max)
        if complete:
            nulls[name] = int(null_count)
        if low is not None and high is not None:
            low_json = _stat_value(low, types[name])
            high_json = _stat_value(high, types[name])
            if low_json is not None and high_json is not None:
                mins[name] = low_json
                maxs[name] = high_json
    return {"numRecords": meta.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls}


def _stat_value(value: Any, data_type: DataType) -> Any:
    if isinstance(data_type, BooleanType):
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(value, str):
        return value if len(value) <= _MAX_STAT_STRING else None
    if isinstance(data_type, TimestampType | TimestampNTZType) and isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(data_type, DateType) and isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, int):
        return value
    return None


def partition_value_to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
