"""Compare two warehouses table by table: the check that a refactoring changed no result.

    python benchmarks/compare_warehouses.py WAREHOUSE_A WAREHOUSE_B

Every Delta table under either warehouse is read at its latest version with delta-rs (no
engine); its schema (names, types, nullability, order) must be the same, its rows sorted by every column that is not a float, and compared with the other's
value for value: every column but the floats exactly, the floats bit for bit with --exact,
else to 1e-9 relative to the value (to 1 for values under 1; NaN equal to NaN). The engines add floats in whatever order their
threads finish, so two runs of the same code on the same data can differ in the last bits of
a sum: the report gives each table's largest relative difference. Columns that record when or by what a
commit was made (run and load ids, timestamps, durations, the git commit, paths of the
warehouse itself) differ between any two runs and are left out; the report says which.
Prints one line per table and exits 1 when any table differs or exists on one side only.
Reads person-level tables but prints no value of them: only table names, columns and counts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from deltalake import DeltaTable

# Columns that are per run by design (ids, clocks, versions of the code, absolute paths).
VOLATILE = {
    "run_id",
    "load_id",
    "started_at",
    "finished_at",
    "loaded_at",
    "committed_at",
    "created_at",
    "ingested_at",
    "duration_s",
    "seconds",
    "git_commit",
    "rxcohort_version",
    "warehouse",
    "study_file",
    "source_path",
    "path",
    "engine",
    "host",
    "error",
    "inputs",
    "pinned_versions",
    "details",
}


def delta_tables(root: Path) -> dict[str, Path]:
    """Every Delta table under ``root``, by its path relative to ``root``."""
    return {
        log.parent.relative_to(root).as_posix(): log.parent
        for log in sorted(root.rglob("_delta_log"))
        if log.is_dir()
    }


def volatile_columns(frame: pd.DataFrame) -> list[str]:
    return [
        c
        for c in frame.columns
        if c in VOLATILE or c.endswith(("_at", "_ts", "_time", "_seconds")) or "version" in c
    ]


def canonical(frame: pd.DataFrame, drop: list[str]) -> pd.DataFrame:
    """The frame without ``drop``, columns in name order, rows sorted by the text of every
    column that is not a float and then by the floats themselves."""
    kept = frame.drop(columns=drop)
    kept = kept[sorted(kept.columns)]
    floats = [c for c in kept.columns if pd.api.types.is_float_dtype(kept[c])]
    keys = pd.DataFrame(
        {f"_key_{c}": kept[c].map(_exact_text) for c in kept.columns if c not in floats},
        index=kept.index,
    )
    ordered = pd.concat([keys, kept[floats]], axis=1)
    by = list(keys.columns) + floats
    rows = ordered.sort_values(by, na_position="last").index if by else kept.index
    return kept.loc[rows].reset_index(drop=True)


def differences(a: pd.DataFrame, b: pd.DataFrame, *, exact: bool) -> tuple[list[str], float]:
    """The columns that differ and the largest relative difference of a float column."""
    differing, largest = [], 0.0
    for c in a.columns:
        if pd.api.types.is_float_dtype(a[c]) and pd.api.types.is_float_dtype(b[c]):
            x, y = a[c].to_numpy(dtype=float), b[c].to_numpy(dtype=float)
            both_nan = np.isnan(x) & np.isnan(y)
            # Relative to the values, or to 1 near zero (a sum that should be 0 comes out as
            # +-1e-15 in whichever order it was added).
            scale = np.maximum(1.0, np.maximum(np.abs(x), np.abs(y)))
            with np.errstate(invalid="ignore"):
                rel = np.where(both_nan | (x == y), 0.0, np.abs(x - y) / scale)
            rel = np.where(np.isnan(rel), np.inf, rel)
            worst = float(rel.max()) if len(rel) else 0.0
            largest = max(largest, worst)
            if worst > (0.0 if exact else 1e-9):
                differing.append(c)
        elif not a[c].map(_exact_text).equals(b[c].map(_exact_text)):
            differing.append(c)
    return differing, largest


def _exact_text(value: object) -> str:
    if isinstance(value, float):
        return "nan" if value != value else value.hex()
    if value is None or value is pd.NA or value is pd.NaT:
        return "<null>"
    if hasattr(value, "tolist"):  # numpy arrays (list columns)
        return repr(value.tolist())
    return repr(value)


def compare(a: Path, b: Path, *, exact: bool = False) -> int:
    left, right = delta_tables(a), delta_tables(b)
    failures = 0
    for name in sorted(set(left) | set(right)):
        if name not in left or name not in right:
            print(f"{name}: only in {'A' if name in left else 'B'}")
            failures += 1
            continue
        ta, tb = DeltaTable(str(left[name])), DeltaTable(str(right[name]))
        if ta.schema().to_json() != tb.schema().to_json():
            print(f"{name}: schemas differ (types or nullability)")
            failures += 1
            continue
        fa, fb = ta.to_pandas(), tb.to_pandas()
        if sorted(fa.columns) != sorted(fb.columns):
            only = sorted(set(fa.columns) ^ set(fb.columns))
            print(f"{name}: columns differ ({', '.join(only)})")
            failures += 1
            continue
        drop = sorted(set(volatile_columns(fa)) | set(volatile_columns(fb)))
        ca, cb = canonical(fa, drop), canonical(fb, drop)
        skipped = f" (not compared: {', '.join(drop)})" if drop else ""
        if len(ca) != len(cb):
            print(f"{name}: {len(ca):,} rows against {len(cb):,}")
            failures += 1
        else:
            differing, largest = differences(ca, cb, exact=exact)
            if differing:
                print(f"{name}: {len(ca):,} rows, values differ in {', '.join(differing)}")
                failures += 1
            else:
                close = f", floats within {largest:.1e}" if largest else ""
                print(f"{name}: same, {len(ca):,} rows{close}{skipped}")
    print(f"{len(set(left) | set(right))} tables, {failures} differ")
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--exact", action="store_true", help="floats bit for bit")
    args = parser.parse_args()
    sys.exit(compare(args.a, args.b, exact=args.exact))


if __name__ == "__main__":
    main()
