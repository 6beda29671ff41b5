"""The spark-submit jobs on a real (if small) Spark standalone cluster give local mode's tables.

A master and two one-core workers start on 127.0.0.1 from the installed pyspark
(tests/cluster.py); jobs/generate.py, jobs/ingest.py and jobs/run.py are submitted to it with
``spark-submit --master spark://127.0.0.1:PORT`` and ``RXCOHORT_ENV=cluster``, exactly as a user
would on a cluster with a shared file system. The same delivery is then ingested and studied in
local mode (the suite's session); every study table must be the same.
"""

from __future__ import annotations

import json

import pytest
from pyspark.testing import assertDataFrameEqual

from cluster import spark_submit, standalone_cluster
from rxcohort import io
from rxcohort.pipelines import ingest_delivery, run_study

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

PERSONS = 1500
LDN_RATE = 0.1
SEED = 31
COMPARED = ("cohort", "attrition", "consumption", "group_results", "did_results")


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory, repo_root):
    """Generate, ingest and run on the standalone cluster; (delivery, warehouse, outputs)."""
    root = tmp_path_factory.mktemp("cluster")
    delivery, warehouse = root / "delivery", root / "warehouse_cluster"
    study = repo_root / "cohorts" / "ldn_opioids_2013.yaml"
    outputs = {}
    with standalone_cluster(root / "spark", workers=2, cores=1, memory="1g") as master:
        outputs["generate"] = spark_submit(
            master,
            repo_root / "jobs" / "generate.py",
            [str(delivery), "--persons", str(PERSONS), "--seed", str(SEED),
             "--ldn-rate", str(LDN_RATE)],
            work=root / "spark",
        )  # fmt: skip
        outputs["ingest"] = spark_submit(
            master,
            repo_root / "jobs" / "ingest.py",
            # Passed explicitly, as on a cluster where the checkout is not beside the package.
            [str(delivery), "--warehouse", str(warehouse),
             "--expectations", str(repo_root / "expectations")],
            work=root / "spark",
        )  # fmt: skip
        outputs["run"] = spark_submit(
            master,
            repo_root / "jobs" / "run.py",
            [str(study), "--warehouse", str(warehouse)],
            work=root / "spark",
        )
        outputs["master_log"] = (root / "spark" / "master.log").read_text(errors="replace")
    return delivery, warehouse, outputs


@pytest.fixture(scope="module")
def local_warehouse(spark, cluster_run, tmp_path_factory, repo_root):
    delivery, _, _ = cluster_run
    warehouse = tmp_path_factory.mktemp("local") / "warehouse"
    ingest_delivery(spark, delivery, warehouse=warehouse)
    run_study(spark, repo_root / "cohorts" / "ldn_opioids_2013.yaml", warehouse=warehouse)
    return warehouse


def test_the_jobs_ran_on_the_cluster_executors(cluster_run):
    delivery, _, outputs = cluster_run
    # The master saw the three applications and both workers ran executors for them.
    assert outputs["master_log"].count("Registered app rxcohort-") == 3
    assert outputs["master_log"].count("Launching executor") >= 6
    truth = json.loads((delivery / "truth.json").read_text())["arguments"]
    assert (truth["persons"], truth["seed"], truth["ldn_rate"]) == (PERSONS, SEED, LDN_RATE)
    assert "persons: 1,500" in outputs["generate"]
    assert "expectations: " in outputs["ingest"] and " 0 hard failures" in outputs["ingest"]
    assert "exposure group ldn_4plus: " in outputs["run"]


@pytest.mark.parametrize("table", COMPARED)
def test_study_table_equals_local_mode(spark, cluster_run, local_warehouse, table):
    _, cluster_warehouse, _ = cluster_run
    on_cluster = io.read_table(spark, cluster_warehouse / "studies" / "ldn_opioids_2013" / table)
    local = io.read_table(spark, local_warehouse / "studies" / "ldn_opioids_2013" / table)
    assert local.count() > 0
    # Sums of DDD may add in another order with other partitioning: equal to 1e-9 relative.
    assertDataFrameEqual(on_cluster, local, rtol=1e-9, atol=1e-9)


def test_the_cohort_is_worth_comparing(spark, local_warehouse):
    groups = {
        r["exposure_group"]: r["n"]
        for r in io.read_table(spark, local_warehouse / "studies" / "ldn_opioids_2013" / "cohort")
        .groupBy("exposure_group")
        .count()
        .withColumnRenamed("count", "n")
        .collect()
    }
    assert set(groups) == {"ldn_1", "ldn_2_3", "ldn_4plus"}
    assert min(groups.values()) >= 3
