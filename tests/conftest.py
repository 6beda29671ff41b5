"""One session-scoped SparkSession for the whole suite (local[2], 2 shuffle partitions, UTC)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RXCOHORT_ENV", "test")
os.environ.setdefault("TZ", "UTC")
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def spark():
    from rxcohort.spark import build_session, stop_session

    session = build_session()
    yield session
    stop_session(session)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo_warehouse(spark, tmp_path_factory):
    """A small end-to-end warehouse: generated delivery -> ingest -> reference study run.

    Built once per test session and shared by the end-to-end tests (report, notebook, export,
    CLI, the pipeline-vs-reference checks). Returns (warehouse, delivery, study_id).
    """
    from datetime import date

    from rxcohort.generate import generate_delivery
    from rxcohort.pipelines import ingest_delivery, run_study

    root = tmp_path_factory.mktemp("demo")
    delivery = root / "delivery"
    warehouse = root / "warehouse"
    generate_delivery(
        spark,
        delivery,
        persons=DEMO_PERSONS,
        seed=7,
        start=date(2011, 1, 1),
        end=date(2015, 12, 31),
        defects=0.002,
        gzip=False,
        ldn_rate=DEMO_LDN_RATE,
    )
    ingest_delivery(spark, delivery, warehouse=warehouse, progress=None)
    result = run_study(
        spark,
        REPO / "cohorts" / "ldn_opioids_2013.yaml",
        warehouse=warehouse,
        as_of=None,
        progress=None,
    )
    return warehouse, delivery, result.study_id


# Enough LDN users (enriched from the real 0.3%) that every exposure group has persons.
DEMO_PERSONS = 4000
DEMO_LDN_RATE = 0.1
