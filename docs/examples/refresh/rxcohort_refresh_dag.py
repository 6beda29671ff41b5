"""Airflow DAG: refresh the warehouse when a new NorPD delivery has arrived.

Two ways to run the same refresh: on the Airflow worker with BashOperator (the embedded engine,
no cluster), or on a Spark cluster with SparkSubmitOperator (jobs/refresh.py, Delta JARs from
the offline kit's `share/rxcohort/jars`). Keep one of the two tasks. A non-zero exit fails
the task: 5 the quality gate closed, 6 a study failed, 4 another writer held the warehouse
(retried).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sensors.filesystem import FileSensor

JARS = "/srv/rxcohort/.venv/share/rxcohort/jars"

with DAG(
    dag_id="rxcohort_refresh",
    start_date=datetime(2026, 1, 1),
    schedule="30 2 * * *",
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=30)},
) as dag:
    # The registry's transfer writes manifest.json last: its arrival means the delivery is whole.
    delivered = FileSensor(
        task_id="delivery_arrived",
        filepath="/data/norpd/current/manifest.json",
        poke_interval=600,
        timeout=6 * 3600,
        mode="reschedule",
    )

    refresh_local = BashOperator(
        task_id="refresh",
        cwd="/srv/rxcohort",
        bash_command=(
            ".venv/bin/rxcohort refresh /data/norpd/current --studies cohorts "
            "--warehouse /data/warehouse --wait 3600 --json"
        ),
    )

    refresh_cluster = SparkSubmitOperator(
        task_id="refresh_on_cluster",
        application="/srv/rxcohort/jobs/refresh.py",
        application_args=[
            "/data/norpd/current",
            "--warehouse",
            "/data/warehouse",
            "--studies",
            "/srv/rxcohort/cohorts",
            "--engine",
            "spark",
            "--wait",
            "3600",
            "--json",
        ],
        # Every JAR of the offline kit (delta-spark and what it needs), none fetched at run time.
        jars=",".join(sorted(str(p) for p in Path(JARS).glob("*.jar"))),
        conf={
            "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
            "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
            "spark.pyspark.python": "/srv/rxcohort/.venv/bin/python",
        },
        env_vars={"RXCOHORT_ENV": "cluster"},
        conn_id="spark_default",
    )

    delivered >> refresh_local
    delivered >> refresh_cluster
