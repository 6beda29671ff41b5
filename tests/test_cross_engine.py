"""Tables written on one engine are read, appended to and time-travelled on the other, and the
study gives the same tables on both.

The suite's own session is one engine (sail by default, spark under ``make test-spark``); the
other engine runs in a child process, as a user switching engines on the same warehouse would.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

from rxcohort import io
from rxcohort.config import engine_choice
from rxcohort.spark import java_version

REPO = Path(__file__).resolve().parents[1]
SCHEMA = StructType(
    [
        StructField("id", LongType()),
        StructField("v", StringType()),
        StructField("year", IntegerType()),
    ]
)


def _other_engine() -> str:
    return "sail" if engine_choice()[0] == "spark" else "spark"


def _skip_without_classic_spark() -> None:
    if java_version() is None:
        pytest.skip("classic Spark needs Java 17; none here (CI has it and runs this test)")
    from rxcohort.jars import DeltaJarsMissingError, delta_jars

    try:
        delta_jars()
    except DeltaJarsMissingError:
        pytest.skip("no Delta JARs for classic Spark: run make delta-jars")


def _in_other_engine(script: str, *args: str, timeout: int = 600) -> dict:
    """Run ``script`` (which prints one JSON line last) on the other engine; return its result."""
    env = {**os.environ, "RXCOHORT_ENGINE": _other_engine(), "RXCOHORT_ENV": "test"}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


OTHER_SIDE = """
    import json, sys
    from rxcohort import io
    from rxcohort.spark import build_session, session_engine
    spark = build_session()
    path = sys.argv[1]
    seen = {
        str(v): sorted(tuple(r) for r in io.read_table(spark, path, version=v).collect())
        for v in range(io.table_version(path) + 1)
    }
    extra = spark.createDataFrame([(9, "other", 2014)], "id long, v string, year int")
    version = io.write_table(
        extra, path, mode="append", partition_by=["year"], commit_info={"writer": "other"}
    )
    print(json.dumps({"engine": session_engine(spark).name, "seen": seen, "version": version}))
"""


def test_a_table_moves_between_engines_with_its_history(spark, tmp_path):
    _skip_without_classic_spark()
    path = tmp_path / "t"
    rows = [(1, "a", 2012), (2, "b", 2013)]
    io.write_table(spark.createDataFrame(rows, SCHEMA), path, mode="error", partition_by=["year"])
    io.write_table(
        spark.createDataFrame([(3, "c", 2013)], SCHEMA),
        path,
        mode="overwrite",
        partition_by=["year"],
        replace_where={"year": 2013},
        commit_info={"writer": "this"},
    )
    staged = io.stage_table(
        spark.createDataFrame([(4, "d", 2014)], SCHEMA), path, partition_by=["year"]
    )
    staged.commit(mode="append")

    other = _in_other_engine(OTHER_SIDE, str(path))
    assert other["engine"] == _other_engine()
    assert other["seen"] == {
        "0": [[1, "a", 2012], [2, "b", 2013]],
        "1": [[1, "a", 2012], [3, "c", 2013]],
        "2": [[1, "a", 2012], [3, "c", 2013], [4, "d", 2014]],
    }
    assert other["version"] == 3
    # ... and back: every version, on this engine and through deltalake alone
    assert sorted(tuple(r) for r in io.read_table(spark, path).collect()) == [
        (1, "a", 2012),
        (3, "c", 2013),
        (4, "d", 2014),
        (9, "other", 2014),
    ]
    assert io.read_table(spark, path, version=1).count() == 2
    from deltalake import DeltaTable

    assert sorted(DeltaTable(str(path)).to_pyarrow_table()["id"].to_pylist()) == [1, 3, 4, 9]
    history = io.table_history(path)
    assert [h["version"] for h in history] == [3, 2, 1, 0]
    assert history[0]["info"].get("writer") == "other"
    assert history[2]["info"].get("writer") == "this"


# Values computed on different engines may differ in the last bits (the order of a sum):
# confidence limits in the 10th decimal were seen. Everything else must be equal.
_REL = 1e-9


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=_REL, abs_tol=1e-12)
    return a == b


def _rows(spark, path: Path) -> list[tuple]:
    frame = io.read_table(spark, path)
    return sorted(
        (tuple(r) for r in frame.collect()),
        key=lambda t: tuple("" if v is None else str(v) for v in t),
    )


STUDY_TABLES_SKIPPED = {"runs"}  # ids and timestamps of the runs differ by construction


@pytest.mark.slow
def test_the_study_gives_the_same_tables_on_both_engines(spark, demo_warehouse, tmp_path):
    """The demo warehouse (built on this engine) is studied again on the other one."""
    if engine_choice()[0] != "spark":
        pytest.skip("run by make test-spark, where the other engine is the fast embedded one")
    _skip_without_classic_spark()
    warehouse, _delivery, study_id = demo_warehouse
    copy = tmp_path / "warehouse"
    shutil.copytree(warehouse, copy)
    study_file = REPO / "cohorts" / f"{study_id}.yaml"
    ours = warehouse / "studies" / study_id
    theirs = copy / "studies" / study_id
    from deltalake import DeltaTable

    runs_before = DeltaTable(str(ours / "runs")).to_pyarrow_table()
    first_run = sorted(runs_before["run_id"].to_pylist())[0]
    # A plain run, then a rebuild --as-of this engine's run, both on the other engine.
    for extra in ([], ["--as-of", first_run]):
        _run_on_other_engine(study_file, copy, *extra)
        _assert_same_study_tables(spark, ours, theirs)
    assert DeltaTable(str(theirs / "runs")).to_pyarrow_table().num_rows == runs_before.num_rows + 2


def _run_on_other_engine(study_file: Path, warehouse: Path, *extra: str) -> None:
    env = {**os.environ, "RXCOHORT_ENGINE": _other_engine(), "RXCOHORT_ENV": "test"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rxcohort.cli",
            "run",
            str(study_file),
            "-w",
            str(warehouse),
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _assert_same_study_tables(spark, ours: Path, theirs: Path) -> None:
    tables = sorted(p.name for p in ours.iterdir() if io.table_exists(p))
    assert len(tables) >= 10
    for name in tables:
        if name in STUDY_TABLES_SKIPPED:
            continue
        a, b = _rows(spark, ours / name), _rows(spark, theirs / name)
        assert len(a) == len(b), name
        mismatched = [
            (x, y)
            for x, y in zip(a, b, strict=True)
            if not all(_same(u, v) for u, v in zip(x, y, strict=True))
        ]
        assert not mismatched, f"{name}: {len(mismatched)} rows differ, e.g. {mismatched[:1]}"
        # Names and types; engines disagree on which computed columns they call non-nullable.
        assert _types(ours / name) == _types(theirs / name), name


def _types(path: Path) -> list[tuple[str, str]]:
    return [(f.name, f.dataType.simpleString()) for f in io.table_schema(path).fields]


KEYS_SIDE = """
    import json, sys
    from pathlib import Path
    from rxcohort import io
    from rxcohort.ingest import keystore
    from rxcohort.ingest.rules import dispensing_keys
    from rxcohort.spark import build_session
    spark = build_session()
    wh = Path(sys.argv[1])
    files = io.read_table(spark, wh / "bronze/files").where("table_name = 'dispensings'")
    loads = {r["source_file"]: r["load_id"] for r in files.collect()}
    bronze = io.read_table(spark, wh / "bronze/dispensings")
    store = keystore.KeyStore(spark, wh, Path(sys.argv[2]))
    kept, fresh = store.keys(bronze, loads), dispensing_keys(bronze)
    differ = kept.subtract(fresh).count() + fresh.subtract(kept).count()
    print(json.dumps({"kept": kept.count(), "fresh": fresh.count(), "differ": differ,
                      "computed": len(store.computed)}))
"""


def test_the_kept_row_keys_are_read_on_the_other_engine(spark, demo_warehouse, tmp_path):
    """The keys an ingest on this engine kept for the next load are what the other engine
    computes from bronze, read from the folders without computing them again."""
    if engine_choice()[0] != "spark":
        pytest.skip("run by make test-spark, where the other engine is the fast embedded one")
    _skip_without_classic_spark()
    warehouse, _delivery, _study = demo_warehouse
    seen = _in_other_engine(KEYS_SIDE, str(warehouse), str(tmp_path / "scratch"))
    assert seen["computed"] == 0
    assert seen["kept"] == seen["fresh"] > 0
    assert seen["differ"] == 0
