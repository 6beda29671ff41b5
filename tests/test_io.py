"""rxcohort.io: Delta tables written through Spark + a deltalake commit, read back by anyone."""

from __future__ import annotations

import json
import multiprocessing
import os
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)
from pyspark.testing import assertDataFrameEqual

from rxcohort import io
from rxcohort.errors import (
    CommitConflictError,
    RxCohortError,
    TableExistsError,
    TableNotFoundError,
)

ALL_TYPES = StructType(
    [
        StructField("s", StringType()),
        StructField("i", IntegerType()),
        StructField("l", LongType()),
        StructField("d", DoubleType()),
        StructField("b", BooleanType()),
        StructField("day", DateType()),
        StructField("ts", TimestampType()),
        StructField("dec", DecimalType(12, 3)),
        StructField("ids", ArrayType(StringType())),
    ]
)
ALL_ROWS = [
    ("a", 1, 10_000_000_000, 1.5, True, date(2013, 1, 1), datetime(2013, 2, 3, 4, 5, 6, tzinfo=UTC),
     Decimal("1.250"), ["x", "y"]),
    ("æøå", -2, -1, -0.25, False, date(2013, 12, 31), datetime(2014, 1, 1, 0, 0, tzinfo=UTC),
     Decimal("-3.000"), []),
    (None, None, None, None, None, None, None, None, None),
]  # fmt: skip

SIMPLE = StructType(
    [
        StructField("id", LongType()),
        StructField("year", IntegerType()),
        StructField("v", StringType()),
    ]
)


def simple(spark, rows):
    """Rows given as (id, year, v), in the column order a table partitioned by year has."""
    return spark.createDataFrame(rows, SIMPLE).select("id", "v", "year")


def test_round_trip_of_every_type(spark, tmp_path):
    df = spark.createDataFrame(ALL_ROWS, ALL_TYPES)
    version = io.write_table(df, tmp_path / "t", mode="error")
    assert version == 0
    back = io.read_table(spark, tmp_path / "t")
    assert back.schema.simpleString() == ALL_TYPES.simpleString()
    assertDataFrameEqual(back, df)


def test_round_trip_is_readable_by_deltalake_alone_with_the_same_values(spark, tmp_path):
    from deltalake import DeltaTable

    df = spark.createDataFrame(ALL_ROWS, ALL_TYPES)
    io.write_table(df, tmp_path / "t", mode="error")
    table = DeltaTable(str(tmp_path / "t")).to_pyarrow_table()
    rows = sorted(table.to_pylist(), key=lambda r: (r["s"] is None, r["s"] or ""))
    assert [r["s"] for r in rows] == ["a", "æøå", None]
    assert rows[0]["l"] == 10_000_000_000
    assert rows[0]["day"] == date(2013, 1, 1)
    assert rows[0]["ts"] == datetime(2013, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert rows[0]["dec"] == Decimal("1.250")
    assert rows[0]["ids"] == ["x", "y"]
    assert rows[1]["ids"] == []
    assert rows[2] == {k: None for k in ALL_TYPES.fieldNames()}


def test_commit_carries_per_file_statistics_from_the_parquet_footer(spark, tmp_path):
    rows = [(i, 2013, f"v{i:02d}") for i in range(10)] + [(99, 2013, None)]
    io.write_table(simple(spark, rows).coalesce(1), tmp_path / "t", mode="error")
    log = (tmp_path / "t" / "_delta_log" / "00000000000000000000.json").read_text().splitlines()
    adds = [json.loads(line)["add"] for line in log if '"add"' in line]
    assert len(adds) == 1
    stats = json.loads(adds[0]["stats"])
    assert stats["numRecords"] == 11
    assert stats["minValues"] == {"id": 0, "year": 2013, "v": "v00"}
    assert stats["maxValues"] == {"id": 99, "year": 2013, "v": "v09"}
    assert stats["nullCount"] == {"id": 0, "year": 0, "v": 1}
    assert adds[0]["size"] == (tmp_path / "t" / adds[0]["path"]).stat().st_size


def test_append_adds_a_version_and_overwrite_replaces_content(spark, tmp_path):
    path = tmp_path / "t"
    assert io.write_table(simple(spark, [(1, 2013, "a")]), path, mode="error") == 0
    assert io.write_table(simple(spark, [(2, 2013, "b")]), path, mode="append") == 1
    assertDataFrameEqual(
        io.read_table(spark, path), simple(spark, [(1, 2013, "a"), (2, 2013, "b")])
    )
    assert io.write_table(simple(spark, [(3, 2014, "c")]), path, mode="overwrite") == 2
    assertDataFrameEqual(io.read_table(spark, path), simple(spark, [(3, 2014, "c")]))
    assert io.table_version(path) == 2


def test_time_travel_reads_older_versions(spark, tmp_path):
    path = tmp_path / "t"
    io.write_table(simple(spark, [(1, 2013, "a")]), path, mode="error")
    io.write_table(simple(spark, [(2, 2013, "b")]), path, mode="append")
    io.write_table(simple(spark, [(3, 2014, "c")]), path, mode="overwrite")
    assertDataFrameEqual(io.read_table(spark, path, version=0), simple(spark, [(1, 2013, "a")]))
    assertDataFrameEqual(
        io.read_table(spark, path, version=1), simple(spark, [(1, 2013, "a"), (2, 2013, "b")])
    )
    assertDataFrameEqual(io.read_table(spark, path, version=2), simple(spark, [(3, 2014, "c")]))
    with pytest.raises(TableNotFoundError, match=r"versions 0\.\.2"):
        io.read_table(spark, path, version=3)


def test_history_lists_commits_newest_first_with_commit_info(spark, tmp_path):
    path = tmp_path / "t"
    io.write_table(
        simple(spark, [(1, 2013, "a")]), path, mode="error", commit_info={"load_id": "L1"}
    )
    io.write_table(
        simple(spark, [(2, 2013, "b")]), path, mode="append", commit_info={"load_id": "L2"}
    )
    history = io.table_history(path)
    assert [h["version"] for h in history] == [1, 0]
    assert history[0]["info"]["load_id"] == "L2"
    assert history[1]["info"]["load_id"] == "L1"
    assert "rxcohort.txn" not in history[0]["info"]


def test_error_mode_refuses_to_touch_an_existing_table(spark, tmp_path):
    path = tmp_path / "t"
    io.write_table(simple(spark, [(1, 2013, "a")]), path, mode="error")
    with pytest.raises(TableExistsError):
        io.write_table(simple(spark, [(2, 2013, "b")]), path, mode="error")
    with pytest.raises(TableExistsError):
        io.write_table(simple(spark, [(2, 2013, "b")]), path)  # error is the default
    assert io.table_version(path) == 0
    assertDataFrameEqual(io.read_table(spark, path), simple(spark, [(1, 2013, "a")]))


def test_missing_table_is_a_clear_error(spark, tmp_path):
    assert io.table_version(tmp_path / "nope") is None
    assert not io.table_exists(tmp_path / "nope")
    with pytest.raises(TableNotFoundError, match="no Delta table"):
        io.read_table(spark, tmp_path / "nope")


def test_append_with_other_columns_is_refused(spark, tmp_path):
    path = tmp_path / "t"
    io.write_table(simple(spark, [(1, 2013, "a")]), path, mode="error")
    other = spark.createDataFrame([(1, "x")], "id long, w string")
    with pytest.raises(Exception, match="do not match"):
        io.write_table(other, path, mode="append")
    assert io.table_version(path) == 0


def test_partitioned_write_and_partition_pruned_read(spark, tmp_path):
    path = tmp_path / "t"
    rows = [(i, 2011 + i % 3, f"v{i}") for i in range(30)]
    io.write_table(
        simple(spark, rows), path, mode="error", partition_by=["year"], sort_within_partitions=["v"]
    )
    assert sorted(p.name for p in path.iterdir() if p.name.startswith("year=")) == [
        "year=2011",
        "year=2012",
        "year=2013",
    ]
    back = io.read_table(spark, path)
    # Partition columns last on every engine, so that a table has one schema everywhere.
    assert back.columns == ["id", "v", "year"]
    assertDataFrameEqual(back, simple(spark, rows))
    # Pruning, told without engine internals: the other partitions' files are made unreadable,
    # so a read that opened any of them would fail.
    for other in ("year=2011", "year=2013"):
        for file in (path / other).glob("*.parquet"):
            file.write_bytes(b"not parquet")
    only_2012 = io.read_table(spark, path).where(F.col("year") == 2012)
    assert sorted(r["id"] for r in only_2012.collect()) == [i for i in range(30) if i % 3 == 1]


def test_replace_where_overwrites_only_the_named_partitions(spark, tmp_path):
    path = tmp_path / "t"
    rows = [(1, 2011, "a"), (2, 2012, "b"), (3, 2013, "c")]
    io.write_table(simple(spark, rows), path, mode="error", partition_by=["year"])
    io.write_table(
        simple(spark, [(20, 2012, "B"), (21, 2012, "BB")]),
        path,
        mode="overwrite",
        partition_by=["year"],
        replace_where={"year": [2012]},
    )
    expected = [(1, 2011, "a"), (20, 2012, "B"), (21, 2012, "BB"), (3, 2013, "c")]
    assertDataFrameEqual(io.read_table(spark, path), simple(spark, expected))
    assert io.table_version(path) == 1


def test_string_partition_values_with_odd_characters(spark, tmp_path):
    path = tmp_path / "t"
    df = spark.createDataFrame(
        [("dispensings/dispensings_2013.csv", 1), ("a b=c", 2), (None, 3)], "f string, n int"
    )
    io.write_table(df, path, mode="error", partition_by=["f"])
    assertDataFrameEqual(io.read_table(spark, path), df.select("n", "f"))
    io.write_table(
        spark.createDataFrame([("a b=c", 9)], "f string, n int"),
        path,
        mode="overwrite",
        partition_by=["f"],
        replace_where={"f": "a b=c"},
    )
    expected = spark.createDataFrame(
        [(1, "dispensings/dispensings_2013.csv"), (9, "a b=c"), (3, None)], "n int, f string"
    )
    assertDataFrameEqual(io.read_table(spark, path), expected)
    from deltalake import DeltaTable

    arrow = DeltaTable(str(path)).to_pyarrow_table()
    assert sorted(zip(arrow["n"].to_pylist(), arrow["f"].to_pylist(), strict=True)) == [
        (1, "dispensings/dispensings_2013.csv"),
        (3, None),
        (9, "a b=c"),
    ]


def test_empty_frame_makes_an_empty_table(spark, tmp_path):
    path = tmp_path / "t"
    io.write_table(simple(spark, []), path, mode="error", partition_by=["year"])
    back = io.read_table(spark, path)
    assert back.count() == 0
    assert back.schema.simpleString() == "struct<id:bigint,v:string,year:int>"


def test_written_table_opens_with_deltalake_and_polars(spark, tmp_path):
    import polars as pl
    from deltalake import DeltaTable

    path = tmp_path / "t"
    rows = [(i, 2011 + i % 2, f"v{i}") for i in range(6)]
    io.write_table(simple(spark, rows), path, mode="error", partition_by=["year"])
    io.write_table(simple(spark, [(100, 2015, "new")]), path, mode="append", partition_by=["year"])
    table = DeltaTable(str(path))
    assert table.version() == 1
    assert len(table.history()) == 2
    arrow = table.to_pyarrow_table()
    assert sorted(arrow["id"].to_pylist()) == [0, 1, 2, 3, 4, 5, 100]
    frame = pl.read_delta(str(path)).sort("id")
    assert frame["id"].to_list() == [0, 1, 2, 3, 4, 5, 100]
    assert frame["year"].to_list() == [2011, 2012, 2011, 2012, 2011, 2012, 2015]
    old = pl.read_delta(str(path), version=0)
    assert old.height == 6


def test_table_written_by_deltalake_alone_is_read_by_rxcohort(spark, tmp_path):
    from deltalake import write_deltalake

    path = tmp_path / "t"
    data = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "year": pa.array([2012, 2013, 2013], pa.int32()),
            "v": pa.array(["a", None, "c"]),
            "day": pa.array([date(2012, 5, 1), date(2013, 1, 2), None], pa.date32()),
        }
    )
    write_deltalake(str(path), data, partition_by=["year"])
    write_deltalake(str(path), data.slice(0, 1), mode="append")
    back = io.read_table(spark, path)
    first = [
        (1, 2012, "a", date(2012, 5, 1)),
        (2, 2013, None, date(2013, 1, 2)),
        (3, 2013, "c", None),
    ]
    schema = "id long, year int, v string, day date"
    assertDataFrameEqual(back, spark.createDataFrame([*first, first[0]], schema))
    assertDataFrameEqual(
        io.read_table(spark, path, version=0), spark.createDataFrame(first, schema)
    )
    # and rxcohort can append to it
    io.write_table(back.limit(1), path, mode="append", partition_by=["year"])
    assert io.read_table(spark, path).count() == 5


class SimulatedCrash(BaseException):
    """Stands for the process dying: nothing after it runs, no cleanup handler catches it."""


def test_crash_between_file_write_and_commit_leaves_the_table_as_it_was(
    spark, tmp_path, monkeypatch
):
    from deltalake import DeltaTable

    path = tmp_path / "t"
    io.write_table(simple(spark, [(1, 2013, "a")]), path, mode="error", partition_by=["year"])

    def crash(*args, **kwargs):
        raise SimulatedCrash

    staged = io.stage_table(
        simple(spark, [(2, 2013, "b"), (3, 2014, "c")]), path, partition_by=["year"]
    )
    monkeypatch.setattr(DeltaTable, "create_write_transaction", crash)
    with pytest.raises(SimulatedCrash):
        staged.commit(mode="append")
    monkeypatch.undo()

    data_files = [p for p in path.rglob("*.parquet") if "_delta_log" not in p.parts]
    assert len(data_files) > 1, "the crashed write should have left its files behind"
    assert io.table_version(path) == 0
    assertDataFrameEqual(io.read_table(spark, path), simple(spark, [(1, 2013, "a")]))
    assert DeltaTable(str(path)).to_pyarrow_table()["id"].to_pylist() == [1]

    assert io.remove_uncommitted_files(path, older_than_seconds=3600) == 0  # too young to touch
    removed = io.remove_uncommitted_files(path, older_than_seconds=0)
    assert removed == len(data_files) - 1
    assertDataFrameEqual(io.read_table(spark, path), simple(spark, [(1, 2013, "a")]))
    io.write_table(simple(spark, [(4, 2013, "d")]), path, mode="append", partition_by=["year"])
    assertDataFrameEqual(
        io.read_table(spark, path), simple(spark, [(1, 2013, "a"), (4, 2013, "d")])
    )


def test_a_failed_commit_removes_its_files(spark, tmp_path, monkeypatch):
    from deltalake import DeltaTable

    path = tmp_path / "t"
    io.write_table(simple(spark, [(1, 2013, "a")]), path, mode="error")
    before = sorted(p for p in path.rglob("*.parquet") if "_delta_log" not in p.parts)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    staged = io.stage_table(simple(spark, [(2, 2013, "b")]), path)
    monkeypatch.setattr(DeltaTable, "create_write_transaction", fail)
    with pytest.raises(OSError, match="disk full"):
        staged.commit(mode="append")
    after = sorted(p for p in path.rglob("*.parquet") if "_delta_log" not in p.parts)
    assert after == before
    assert io.table_version(path) == 0


def _append_in_child(root: str, worker: int, n: int, barrier) -> None:
    """Commit ``n`` appends of one row each through rxcohort.io's commit step (no Spark)."""
    from pyspark.sql.types import LongType, StructField, StructType

    from rxcohort import io as rio

    schema = StructType([StructField("worker", LongType()), StructField("seq", LongType())])
    barrier.wait()
    for seq in range(n):
        staging = Path(root) / rio.STAGING_DIR / f"w{worker}-{seq}"
        staging.mkdir(parents=True)
        table = pa.table(
            {"worker": pa.array([worker], pa.int64()), "seq": pa.array([seq], pa.int64())}
        )
        pq.write_table(table, staging / f"part-w{worker}-{seq}.snappy.parquet")
        rio.commit_staged(Path(root), staging, schema=schema, mode="append", partition_by=[])


def test_concurrent_appends_from_two_processes_all_land(spark, tmp_path):
    from deltalake import DeltaTable

    path = tmp_path / "t"
    io.write_table(spark.createDataFrame([(0, -1)], "worker long, seq long"), path, mode="error")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    n = 8
    procs = [ctx.Process(target=_append_in_child, args=(str(path), w, n, barrier)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    table = DeltaTable(str(path))
    assert table.version() == 2 * n
    rows = sorted(zip(*table.to_pyarrow_table().to_pydict().values(), strict=True))
    assert rows == [(0, -1)] + [(w, s) for w in (1, 2) for s in range(n)]
    assert io.read_table(spark, path).count() == 2 * n + 1
    # every version in between is a readable table
    assert io.read_table(spark, path, version=n).count() == n + 1


def test_the_session_runs_on_the_engine_asked_for(spark):
    from rxcohort.config import engine_choice
    from rxcohort.spark import is_connect, session_engine

    name, _ = engine_choice()
    assert session_engine(spark).name == name
    assert is_connect(spark) == (name != "spark")


def test_overwrite_may_change_columns_but_not_the_partition_layout(spark, tmp_path):
    path = tmp_path / "t"
    io.write_table(simple(spark, [(1, 2013, "a")]), path, mode="error", partition_by=["year"])
    with pytest.raises(Exception, match="partitioned by"):
        io.write_table(simple(spark, [(2, 2014, "b")]), path, mode="overwrite")
    assert io.table_version(path) == 0
    wider = spark.createDataFrame([(2, 2014, "b", 0.5)], "id long, year int, v string, w double")
    io.write_table(wider, path, mode="overwrite", partition_by=["year"])
    assert io.partition_columns(path) == ["year"]
    assert io.read_table(spark, path).collect() == [Row(id=2, v="b", w=0.5, year=2014)]
    assert io.read_table(spark, path, version=0).collect() == [Row(id=1, v="a", year=2013)]
    assert os.path.isdir(path / "_delta_log")


def test_staged_files_are_readable_but_invisible_until_committed(spark, tmp_path):
    path = tmp_path / "t"
    io.write_table(simple(spark, [(1, 2011, "a")]), path, mode="error", partition_by=["year"])
    rows = [(2, 2012, "b"), (3, 2013, "c")]
    staged = io.stage_table(simple(spark, rows), path, partition_by=["year"])
    # The staged rows, typed as the frame was (partition column included) ...
    assert staged.frame().schema == io.staged._nullable(simple(spark, []).schema)
    assertDataFrameEqual(staged.frame(), simple(spark, rows))
    # ... while the table still shows its committed version only.
    assert io.table_version(path) == 0
    assertDataFrameEqual(io.read_table(spark, path), simple(spark, [(1, 2011, "a")]))
    assert staged.commit(mode="append") == 1
    assertDataFrameEqual(io.read_table(spark, path), simple(spark, [(1, 2011, "a"), *rows]))
    assert not (path / io.STAGING_DIR).exists()
    with pytest.raises(RxCohortError, match="already committed"):
        staged.commit(mode="append")


def test_discarded_staged_files_leave_nothing(spark, tmp_path):
    path = tmp_path / "t"
    io.write_table(simple(spark, [(1, 2011, "a")]), path, mode="error")
    staged = io.stage_table(simple(spark, [(2, 2012, "b")]), path)
    assert any((path / io.STAGING_DIR).rglob("*.parquet"))
    staged.discard()
    assert not (path / io.STAGING_DIR).exists()
    assert io.table_version(path) == 0
    assert io.table_row_count(path) == 1


def test_a_staged_commit_still_refuses_a_new_partition_layout(spark, tmp_path):
    path = tmp_path / "t"
    io.write_table(simple(spark, [(1, 2011, "a")]), path, mode="error", partition_by=["year"])
    staged = io.stage_table(simple(spark, [(2, 2012, "b")]), path)
    with pytest.raises(RxCohortError, match="partitioned by"):
        staged.commit(mode="overwrite")
    # The refused files are gone and the table is as it was.
    assert not (path / io.STAGING_DIR).exists()
    assert io.table_version(path) == 0


def test_unclustered_partitioned_write_sorts_within_each_task(spark, tmp_path):
    path = tmp_path / "t"
    rows = [(i, 2011 + i % 2, f"v{(7 * i) % 10}") for i in range(10)]
    io.write_table(
        simple(spark, rows).coalesce(1),
        path,
        mode="error",
        partition_by=["year"],
        sort_within_partitions=["v"],
        cluster=False,
        row_group_bytes=1024 * 1024,
    )
    for year in (2011, 2012):
        files = list((path / f"year={year}").glob("*.parquet"))
        assert len(files) == 1  # one task, one file per partition value
        values = pq.ParquetFile(files[0]).read(columns=["v"]).column("v").to_pylist()
        assert values == sorted(values)
    assertDataFrameEqual(io.read_table(spark, path), simple(spark, rows))


def test_a_staged_commit_checks_its_arguments_like_write_table(spark, tmp_path):
    path = tmp_path / "t"
    io.write_table(simple(spark, [(1, 2011, "a")]), path, mode="error", partition_by=["year"])
    staged = io.stage_table(simple(spark, [(2, 2012, "b")]), path, partition_by=["year"])
    with pytest.raises(ValueError, match="may only name partition columns"):
        staged.commit(mode="overwrite", replace_where={"v": "b"})
    assert not (path / io.STAGING_DIR).exists()
    assert io.table_version(path) == 0


def _files_of(path) -> dict[str, list[str]]:
    """Each partition's data files (paths in the snapshot), from the log."""
    out: dict[str, list[str]] = {}
    for f in io.table_files(path, columns=["id"]):
        out.setdefault(f.partition_values["year"], []).append(f.path)
    return {k: sorted(v) for k, v in out.items()}


def test_split_files_and_a_commit_that_replaces_some_of_a_partitions_files(spark, tmp_path):
    """Rows staged with ``split_files_by`` lie in one file per value of that column within
    their partition (the column itself is not stored); a later commit replaces the files of
    one value and leaves the partition's other files, and the table's statistics say which
    file holds what."""
    path = tmp_path / "t"
    rows = [(i, 2011 + i % 2, f"v{i}") for i in range(12)]
    parts = F.when(F.col("id") < 6, "low").otherwise("high")
    staged = io.stage_table(
        simple(spark, rows).withColumn("part", parts),
        path,
        partition_by=["year"],
        split_files_by="part",
        cluster=False,
    )
    assert staged.frame().columns == ["id", "v", "year"]
    staged.commit(mode="error")
    files = _files_of(path)
    assert {k: len(v) for k, v in files.items()} == {"2011": 2, "2012": 2}
    assert all(
        p.split("/")[1].startswith(("part-low-", "part-high-")) for v in files.values() for p in v
    )
    assertDataFrameEqual(io.read_table(spark, path), simple(spark, rows))
    stats = {
        f.path: (f.minimum["id"], f.maximum["id"], f.rows)
        for f in io.table_files(path, columns=["id"])
    }
    low_2011 = next(p for p in files["2011"] if "part-low-" in p)
    assert stats[low_2011] == (0, 4, 3)

    # The low ids of 2011 again, one row changed and one gone: that file alone is replaced.
    again = io.stage_table(
        simple(spark, [(0, 2011, "changed"), (2, 2011, "v2")]).withColumn("part", F.lit("low")),
        path,
        partition_by=["year"],
        split_files_by="part",
    )
    assert again.commit(mode="overwrite", replace_files=[low_2011]) == 1
    after = _files_of(path)
    assert low_2011 not in after["2011"] and len(after["2011"]) == 2
    assert after["2012"] == files["2012"]
    expected = [(0, 2011, "changed"), (2, 2011, "v2")] + [
        r for r in rows if r[0] >= 6 or r[1] == 2012
    ]
    assertDataFrameEqual(io.read_table(spark, path), simple(spark, expected))
    assertDataFrameEqual(io.read_table(spark, path, version=0), simple(spark, rows))

    # A file that is no longer in the table cannot be replaced: nothing is written.
    late = io.stage_table(simple(spark, [(0, 2011, "late")]), path, partition_by=["year"])
    with pytest.raises(CommitConflictError):
        late.commit(mode="overwrite", replace_files=[low_2011])
    assert io.table_version(path) == 1
    assert not (path / io.STAGING_DIR).exists()
    with pytest.raises(ValueError, match="replace_files"):
        io.stage_table(simple(spark, [(0, 2011, "x")]), path, partition_by=["year"]).commit(
            mode="append", replace_files=[]
        )


# -- classic Spark reads the snapshot's file list: only when that list is the whole snapshot --


def test_file_list_is_the_snapshot_of_a_plain_table_with_odd_partition_values(spark, tmp_path):
    from rxcohort.io.tables import _file_list, _open

    path = tmp_path / "t"
    df = spark.createDataFrame([("a b=c/d%", 1), (None, 2), ("x", 3)], "f string, n int")
    io.write_table(df, path, mode="error", partition_by=["f"])
    io.write_table(
        df.where("n = 3"), path, mode="overwrite", replace_where={"f": "x"}, partition_by=["f"]
    )
    files = _file_list(_open(path), path.resolve())
    assert files is not None and len(files) == 3
    assert all(Path(f).is_file() for f in files)
    assert sum(pq.read_metadata(f).num_rows for f in files) == 3
    assertDataFrameEqual(io.read_table(spark, path), df.select("n", "f"))


@pytest.mark.parametrize(
    "configuration",
    [{"delta.enableDeletionVectors": "true"}, {"delta.columnMapping.mode": "name"}],
    ids=["deletion-vectors", "column-mapping"],
)
def test_tables_whose_files_are_not_their_rows_are_left_to_the_delta_reader(
    spark, tmp_path, configuration
):
    from deltalake import write_deltalake

    from rxcohort.io.tables import _file_list, _open

    path = tmp_path / "t"
    write_deltalake(
        str(path), pa.table({"a": pa.array([1, 2], pa.int64())}), configuration=configuration
    )
    assert _file_list(_open(path), path.resolve()) is None


@pytest.mark.parametrize(
    ("relative", "values", "expected"),
    [
        ("f=a/part-0.parquet", {"f": "a"}, True),
        ("f=a%20b%3Dc/part-0.parquet", {"f": "a b=c"}, True),
        ("f=__HIVE_DEFAULT_PARTITION__/part-0.parquet", {"f": None}, True),
        ("y=2013/f=a/part-0.parquet", {"y": "2013", "f": "a"}, True),
        ("f=a/y=2013/part-0.parquet", {"y": "2013", "f": "a"}, False),  # other column order
        ("a/part-0.parquet", {"f": "a"}, False),  # not k=v
        ("f=b/part-0.parquet", {"f": "a"}, False),  # the path disagrees with the log
        ("part-0.parquet", {"f": "a"}, False),
        ("part-0.parquet", {}, True),
    ],
)
def test_partition_values_must_be_readable_from_the_path(relative, values, expected):
    from rxcohort.io.tables import _is_hive_path

    assert _is_hive_path(relative, values) is expected
