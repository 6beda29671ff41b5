"""notebooks/analyst_tour.ipynb: committed without outputs, runs top to bottom, shows aggregates only."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import nbformat
import pytest

from rxcohort import io
from rxcohort.stats import compute_outcome_tables, to_spark

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "analyst_tour.ipynb"
STUDY = "ldn_opioids_2013"


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    source = "\n".join(c.source for c in code)
    # The four ways in, and no look at person-level rows.
    for needle in ("io.read_table", "sql_frame", "DeltaTable(", "pl.read_delta", "duckdb.sql"):
        assert needle in source, needle
    assert ".head(" not in source
    assert not re.search(r"\b(cohort|consumption)\w*\.(show|collect|toPandas|to_pandas)\(", source)


def _person(i: int) -> str:
    return f"NB-PERSON-{i:03d}"


@pytest.fixture
def tour_warehouse(spark, tmp_path) -> Path:
    # Opioid DDD before/after: ldn_1 100 -> 100, ldn_2_3 100 -> 88, ldn_4plus 100 -> 55 (+ i).
    groups = {"ldn_1": range(0, 6), "ldn_2_3": range(6, 12), "ldn_4plus": range(12, 20)}
    after = {"ldn_1": 100.0, "ldn_2_3": 88.0, "ldn_4plus": 55.0}
    cohort_rows, consumption_rows = [], []
    for group, ids in groups.items():
        for i in ids:
            cohort_rows.append((_person(i), date(2013, 4, 1), group, 1 + i % 2, 40 + i))
            for drug, pre, post in (("opioids", 100.0 + i, after[group] + i), ("nsaids", 0.0, 0.0)):
                consumption_rows.append((_person(i), drug, "pre", pre, int(pre > 0), pre > 0))
                consumption_rows.append((_person(i), drug, "post", post, int(post > 0), post > 0))
    study = tmp_path / "studies" / STUDY
    cohort = spark.createDataFrame(
        cohort_rows,
        "person_id string, index_date date, exposure_group string, sex int, age_at_index int",
    )
    consumption = spark.createDataFrame(
        consumption_rows,
        "person_id string, drug_group string, window string, ddd double, n_dispensings long, "
        "is_user boolean",
    )
    io.write_table(cohort, study / "cohort")
    io.write_table(consumption, study / "consumption")
    results = compute_outcome_tables(
        cohort.select("person_id", "exposure_group").toPandas(),
        consumption.toPandas(),
        group_order=list(groups),
        drug_groups=["opioids", "nsaids"],
    )["group_results"]
    io.write_table(to_spark(spark, results, table="group_results"), study / "group_results")
    return tmp_path


@pytest.mark.slow
def test_notebook_runs_on_a_warehouse_and_outputs_only_aggregates(tour_warehouse, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("RXCOHORT_WAREHOUSE", str(tour_warehouse))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The venv's ipykernel provides the `python3` kernel; jupyter_client starts it with this
    # interpreter, so the kernel sees the installed rxcohort and the environment set here.
    NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()

    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = json.dumps([o for o in outputs if "image/png" not in o.get("data", {})])
    assert "NB-PERSON" not in text  # no person-level row in any output
    # The kernel flushes stdout on a timer, so one print can arrive as several stream outputs
    # (CI saw it split): read each cell's stdout as one text.
    printed = [
        "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
        for cell in notebook.cells
        if cell.cell_type == "code"
    ]
    assert any(
        "DuckDB and the pipeline's group_results agree on the mean change: True" in p
        for p in printed
    ), printed
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the published figure
    # The comparison table: ldn_4plus fell by 45 DDD per person (100 + i -> 55 + i).
    assert "-45.0" in text and "-41.0" in text
