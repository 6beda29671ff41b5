"""Configuration layering, the session factory, the CLI's error contract and analyst access."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from rxcohort import analyst, config, io
from rxcohort.errors import ConfigError
from rxcohort.spark import JavaMissingError, check_java, local_frame

REPO = Path(__file__).resolve().parents[1]


def test_env_layer_overrides_base(monkeypatch):
    local = config.spark_settings("local")
    test = config.spark_settings("test")
    cluster = config.spark_settings("cluster")
    # base settings reach every environment
    for settings in (local, test, cluster):
        assert settings.spark_conf["spark.sql.session.timeZone"] == "UTC"
    assert local.master == "local[*]"
    assert local.spark_conf["spark.ui.enabled"] == "false"
    assert test.master == "local[2]"
    assert test.spark_conf["spark.sql.shuffle.partitions"] == "2"
    # the cluster profile must not override spark-submit
    assert cluster.master is None
    assert "spark.driver.memory" not in cluster.spark_conf
    assert "spark.sql.shuffle.partitions" not in cluster.spark_conf


def test_deep_merge_merges_nested_and_replaces_scalars():
    base = {"a": 1, "n": {"x": 1, "y": 2}}
    assert config.deep_merge(base, {"a": 2, "n": {"y": 3}}) == {"a": 2, "n": {"x": 1, "y": 3}}
    assert base == {"a": 1, "n": {"x": 1, "y": 2}}  # inputs are not mutated


def test_warehouse_from_environment(monkeypatch):
    monkeypatch.setenv("RXCOHORT_WAREHOUSE", "/data/wh")
    assert config.app_settings().warehouse == "/data/wh"


def test_bad_engine_setting_is_refused(monkeypatch):
    monkeypatch.setenv("RXCOHORT_ENGINE", "flink")
    with pytest.raises(ConfigError, match="engine must be one of sail, spark, remote"):
        config.engine_choice()


def test_engine_comes_from_option_then_environment_then_conf(monkeypatch):
    monkeypatch.delenv("RXCOHORT_ENGINE", raising=False)
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert config.engine_choice() == ("sail", None)
    monkeypatch.setenv("RXCOHORT_ENGINE", "spark")
    assert config.engine_choice() == ("spark", None)
    assert config.engine_choice("sail") == ("sail", None)
    monkeypatch.delenv("RXCOHORT_ENGINE")
    # An address alone means a Spark Connect server.
    monkeypatch.setenv("SPARK_REMOTE", "sc://db:15002")
    assert config.engine_choice() == ("remote", "sc://db:15002")
    assert config.engine_choice(remote="sc://other:1") == ("remote", "sc://other:1")
    # Under spark-submit the JVM that started the driver is the engine.
    monkeypatch.delenv("SPARK_REMOTE")
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "4040")
    assert config.engine_choice() == ("spark", None)


def test_missing_java_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))
    with pytest.raises(JavaMissingError, match=r"Java 17 is required.*apt-get install openjdk-17"):
        check_java()


def test_cli_without_java_runs_on_the_embedded_engine_and_says_so_for_spark(tmp_path):
    # No java on PATH and a JAVA_HOME that holds none: the default engine needs no JVM.
    env = {
        "PATH": str(Path(sys.executable).parent),
        "JAVA_HOME": str(tmp_path / "no-java"),
        "RXCOHORT_ENV": "test",
        "HOME": str(tmp_path),
    }
    command = [sys.executable, "-m", "rxcohort.cli", "sql", "SELECT 41 + 1 AS answer"]
    proc = subprocess.run(
        [*command, "--warehouse", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "42" in proc.stdout
    proc = subprocess.run(
        [*command, "--warehouse", str(tmp_path), "--engine", "spark"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Java 17" in lines[0] and "--engine sail" in lines[0]


def test_cli_help_lists_every_contract_command():
    proc = subprocess.run(
        [sys.executable, "-m", "rxcohort.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    for command in (
        "generate",
        "ingest",
        "run",
        "demo",
        "export",
        "sql",
        "check",
        "tables",
        "history",
    ):
        assert command in proc.stdout


def test_cli_usage_error_exits_2_with_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "rxcohort.cli", "generate"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("rxcohort: ")
    assert len(proc.stderr.strip().splitlines()) == 1


PEOPLE = StructType([StructField("person_id", StringType()), StructField("sex", IntegerType())])


def test_sql_names_tables_by_layer_and_study(spark, tmp_path):
    wh = tmp_path / "wh"
    people = spark.createDataFrame([("a", 1), ("b", 2), ("c", 2)], PEOPLE)
    io.write_table(people, wh / "silver" / "persons", mode="error")
    io.write_table(people.limit(1), wh / "studies" / "s1" / "cohort", mode="error")
    names = [t.name for t in analyst.discover_tables(wh)]
    assert names == ["silver.persons", "s1.cohort"]
    frame = analyst.sql_frame(
        spark,
        "SELECT p.sex, count(*) AS n FROM silver.persons p LEFT JOIN `s1`.`cohort` c USING (person_id) "
        "GROUP BY p.sex ORDER BY p.sex",
        warehouse=wh,
    )
    assert [tuple(r) for r in frame.collect()] == [(1, 1), (2, 2)]


def test_sql_error_is_one_line_naming_the_problem(spark, tmp_path):
    from rxcohort.errors import RxCohortError

    wh = tmp_path / "wh"
    io.write_table(
        spark.createDataFrame([("a", 1)], PEOPLE), wh / "silver" / "persons", mode="error"
    )
    with pytest.raises(RxCohortError, match=r"SQL error: .*nope"):
        analyst.sql_frame(spark, "SELECT nope FROM silver.persons", warehouse=wh)


def test_rewrite_leaves_other_identifiers_alone():
    tables = [analyst.WarehouseTable("silver.persons", Path("x"))]
    assert (
        analyst.rewrite_query(
            "SELECT silver.persons.sex, xsilver.persons FROM silver.persons", tables
        )
        == "SELECT silver__persons.sex, xsilver.persons FROM silver__persons"
    )


def test_local_frame_holds_the_rows_as_given(spark):
    schema = StructType(
        [
            StructField("label", StringType(), False),
            StructField("n", LongType(), True),
            StructField("value", DoubleType(), True),
            StructField("versions", MapType(StringType(), LongType()), False),
            StructField("at", TimestampType(), True),
        ]
    )
    at = datetime(2024, 3, 1, 12, 30, 5)  # naive UTC, as rxcohort.pipelines.runs.utc_now gives
    rows = [("a", 3, 0.5, {"silver/dispensings": 2}, at), ("b", None, None, {}, None)]
    frame = local_frame(spark, rows, schema)
    assert frame.schema == schema
    assert sorted(frame.collect()) == [
        Row(label="a", n=3, value=0.5, versions={"silver/dispensings": 2}, at=at),
        Row(label="b", n=None, value=None, versions={}, at=None),
    ]
    assert frame.select(F.unix_timestamp("at")).first()[0] == int(
        at.replace(tzinfo=UTC).timestamp()
    )
    assert local_frame(spark, [], schema).count() == 0


def test_the_checkpoint_folders_of_dead_processes_are_removed(tmp_path):
    """A process killed before its exit handler leaves its Sail checkpoint folder; the next
    engine start removes the folders of processes that no longer run, and only those."""
    import os

    from rxcohort.spark import remove_dead_checkpoints

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = tmp_path / f"rxcohort-sail-{int(gone.stdout)}-abc"
    alive = tmp_path / f"rxcohort-sail-{os.getpid()}-def"
    unnamed = tmp_path / "rxcohort-sail-xyz"  # an older version's: whose, it does not say
    for folder in (dead, alive, unnamed):
        (folder / "part").mkdir(parents=True)
    assert remove_dead_checkpoints(tmp_path) == 1
    assert not dead.exists() and alive.exists() and unnamed.exists()
