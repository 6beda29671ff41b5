"""The jobs on the remote engine against Spark's own Spark Connect server, with delta-spark.

A classic Spark Connect server (``SparkConnectServer`` from the installed pyspark, local[2],
the Delta JARs fetched at install time; tests/cluster.py) listens on 127.0.0.1; jobs/generate.py,
jobs/ingest.py and jobs/run.py run against it with ``--engine remote --remote sc://...``, as a
user would drive a Connect-only cluster. Server and jobs see the warehouse under the same local
path. The same delivery is then ingested and studied on the suite's own engine; every study
table must be the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.testing import assertDataFrameEqual

from cluster import connect_server, free_port
from rxcohort import io
from rxcohort.pipelines import ingest_delivery, run_study

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

PERSONS = 1500
LDN_RATE = 0.1
SEED = 31
COMPARED = ("cohort", "attrition", "consumption", "group_results", "did_results")
STUDY_ID = "ldn_opioids_2013"


def _job(
    repo_root: Path, script: str, args: list[str], *, remote: str
) -> subprocess.CompletedProcess:
    # The job chooses its engine from its arguments alone: nothing of the suite's own engine.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RXCOHORT_ENGINE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE")
    }
    env["RXCOHORT_ENV"] = "test"
    proc = subprocess.run(
        [sys.executable, str(repo_root / "jobs" / script), *args, "--engine", "remote",
         "--remote", remote],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    assert "engine: remote" in proc.stderr, proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def server_run(tmp_path_factory, repo_root):
    """Generate, ingest and run on the Spark Connect server; (delivery, warehouse, outputs)."""
    root = tmp_path_factory.mktemp("connect")
    delivery, warehouse = root / "delivery", root / "warehouse_connect"
    study = repo_root / "cohorts" / f"{STUDY_ID}.yaml"
    outputs: dict[str, object] = {}
    port = free_port()
    with connect_server(root / "server", port=port) as remote:
        outputs["generate"] = _job(
            repo_root,
            "generate.py",
            [str(delivery), "--persons", str(PERSONS), "--seed", str(SEED),
             "--ldn-rate", str(LDN_RATE)],
            remote=remote,
        )  # fmt: skip
        outputs["ingest"] = _job(
            repo_root,
            "ingest.py",
            [str(delivery), "--warehouse", str(warehouse),
             "--expectations", str(repo_root / "expectations")],
            remote=remote,
        )  # fmt: skip
        outputs["run"] = _job(
            repo_root, "run.py", [str(study), "--warehouse", str(warehouse)], remote=remote
        )
    outputs["port"] = port
    outputs["server_log"] = (root / "server" / "connect-server.log").read_text(errors="replace")
    return delivery, warehouse, outputs


@pytest.fixture(scope="module")
def local_warehouse(spark, server_run, tmp_path_factory, repo_root):
    delivery, _, _ = server_run
    warehouse = tmp_path_factory.mktemp("local") / "warehouse"
    ingest_delivery(spark, delivery, warehouse=warehouse)
    run_study(spark, repo_root / "cohorts" / f"{STUDY_ID}.yaml", warehouse=warehouse)
    return warehouse


def _engine_infos(table: Path) -> set[str]:
    infos = set()
    for commit in sorted((table / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "commitInfo" in action:
                infos.add(action["commitInfo"].get("engineInfo", ""))
    return infos


def test_the_jobs_ran_on_the_spark_connect_server(server_run):
    delivery, warehouse, outputs = server_run
    assert f"Spark Connect server started at: 127.0.0.1:{outputs['port']}" in outputs["server_log"]
    for name in ("generate", "ingest", "run"):
        assert "engine: remote (spark 4.1.4 API)" in outputs[name].stderr, name
    truth = json.loads((delivery / "truth.json").read_text())["arguments"]
    assert (truth["persons"], truth["seed"], truth["ldn_rate"]) == (PERSONS, SEED, LDN_RATE)
    printed = {
        name: outputs[name].stdout + outputs[name].stderr for name in ("generate", "ingest", "run")
    }
    assert "persons: 1,500" in printed["generate"]
    assert "expectations: " in printed["ingest"] and " 0 hard failures" in printed["ingest"]
    assert "exposure group ldn_4plus: " in printed["run"]
    # The study tables were committed by the server's delta-spark, not by another writer.
    for table in COMPARED:
        infos = _engine_infos(warehouse / "studies" / STUDY_ID / table)
        assert infos and all(i.startswith("Apache-Spark/4.1.4 Delta-Lake/") for i in infos), (
            table,
            infos,
        )


@pytest.mark.parametrize("table", COMPARED)
def test_study_table_equals_the_suite_engine(spark, server_run, local_warehouse, table):
    _, server_warehouse, _ = server_run
    on_server = io.read_table(spark, server_warehouse / "studies" / STUDY_ID / table)
    local = io.read_table(spark, local_warehouse / "studies" / STUDY_ID / table)
    assert local.count() > 0
    # Sums of DDD may add in another order with other partitioning: equal to 1e-9 relative.
    assertDataFrameEqual(on_server, local, rtol=1e-9, atol=1e-9)


def test_the_cohort_is_worth_comparing(spark, local_warehouse):
    groups = {
        r["exposure_group"]: r["n"]
        for r in io.read_table(spark, local_warehouse / "studies" / STUDY_ID / "cohort")
        .groupBy("exposure_group")
        .count()
        .withColumnRenamed("count", "n")
        .collect()
    }
    assert set(groups) == {"ldn_1", "ldn_2_3", "ldn_4plus"}
    assert min(groups.values()) >= 3
