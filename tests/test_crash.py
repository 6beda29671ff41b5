"""Crash safety: an ingest and a run killed with SIGKILL just after one of their commits.

Each trial starts from a copy of a warehouse with one complete load and one complete run,
runs the job in a child process that kills itself after its N-th Delta commit
(tests/crash_child.py), and checks that

* every table still opens, and readers (rxcohort.pipelines.snapshot) still read the last complete load
  or run, not the half-written one;
* the same job run again completes, and leaves tables equal, row for row, to those of a job
  that was never interrupted (load and run ids aside);
* no scratch or staging directory is left, and the bookkeeping holds one row per load / run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from rxcohort import io
from rxcohort.analyst import discover_tables
from rxcohort.pipelines.snapshot import complete_load, succeeded_run, warehouse_snapshot
from rxcohort.pipelines.study import pin_inputs

REPO = Path(__file__).resolve().parents[1]
STUDY_FILE = REPO / "cohorts" / "ldn_opioids_2013.yaml"
STUDY = "ldn_opioids_2013"
LEFTOVERS = ("_rxcohort_scratch", "_rxcohort_staging")
# Columns that differ between two runs of the same job on the same data.
VOLATILE = {"load_time", "run_time", "started_at", "finished_at", "run_id", "output_versions"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deliveries(spark, tmp_path_factory):
    from rxcohort.generate import generate_delivery

    root = tmp_path_factory.mktemp("crash_deliveries")
    for name, seed in (("a", 21), ("b", 22)):
        generate_delivery(
            spark,
            root / name,
            persons=250,
            seed=seed,
            start=date(2011, 1, 1),
            end=date(2015, 12, 31),
            defects=0.02,
            gzip=False,
            ldn_rate=0.2,
        )
    return root


@pytest.fixture(scope="module")
def warehouses(spark, tmp_path_factory, deliveries):
    """base: load a + a run; loaded: base + load b; ran: loaded + a second run."""
    from rxcohort.pipelines import ingest_delivery, run_study

    root = tmp_path_factory.mktemp("crash_wh")
    base = root / "base"
    ingest_delivery(spark, deliveries / "a", warehouse=base)
    run_study(spark, STUDY_FILE, warehouse=base)
    loaded = root / "loaded"
    shutil.copytree(base, loaded)
    ingest_delivery(spark, deliveries / "b", warehouse=loaded)
    ran = root / "ran"
    shutil.copytree(loaded, ran)
    run_study(spark, STUDY_FILE, warehouse=ran)
    return {"base": base, "loaded": loaded, "ran": ran}


def _kill_after(commits: int, script: str, *args: str) -> None:
    env = {**os.environ, "RXCOHORT_ENV": "test", "RXCOHORT_ENGINE": "sail"}
    child = subprocess.run(
        [sys.executable, str(REPO / "tests" / "crash_child.py"), str(commits),
         str(REPO / "jobs" / script), *args],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr[-2000:])


def _state(spark, warehouse: Path, prefix: str = "") -> dict[str, list[tuple]]:
    """Every table's rows (sorted), volatile columns dropped and load ids by their order."""
    loads = sorted(
        {r["load_id"] for r in io.read_table(spark, warehouse / "silver/deliveries").collect()}
    )
    rank = {load: f"load {i}" for i, load in enumerate(loads)}
    out = {}
    for table in discover_tables(warehouse):
        if not table.path.relative_to(warehouse).as_posix().startswith(prefix):
            continue
        frame = io.read_table(spark, table.path)
        frame = frame.drop(*[c for c in frame.columns if c in VOLATILE])
        rows = []
        for row in frame.collect():
            values = row.asDict()
            if "load_id" in values:
                values["load_id"] = rank.get(values["load_id"], values["load_id"])
            rows.append(tuple(sorted((k, _value(v)) for k, v in values.items())))
        out[table.name] = sorted(rows)
    return out


def _value(value: object) -> str:
    # Sums of doubles come out in the last bits as the engine's tasks add them up.
    return f"{value:.10g}" if isinstance(value, float) else repr(value)


def _leftovers(warehouse: Path) -> list[str]:
    return [str(p.relative_to(warehouse)) for p in warehouse.rglob("*") if p.name in LEFTOVERS]


def _opens(warehouse: Path) -> None:
    for table in discover_tables(warehouse):
        assert io.table_version(table.path) is not None, table.name
        io.table_row_count(table.path)


# After a bronze commit, a silver one, a quarantine one, silver/deliveries, quality/runs.
@pytest.mark.parametrize("commits", [1, 4, 9, 10, 11])
def test_an_ingest_killed_after_a_commit_is_repaired_by_the_next(
    spark, tmp_path, deliveries, warehouses, commits
):
    from rxcohort.pipelines import ingest_delivery

    wh = tmp_path / "wh"
    shutil.copytree(warehouses["base"], wh)
    _kill_after(commits, "ingest.py", str(deliveries / "b"), "--warehouse", str(wh))
    _opens(wh)
    # Readers read the complete load a, whatever the killed load b committed.
    assert complete_load(warehouses["base"])[0] is not None
    assert complete_load(wh) == complete_load(warehouses["base"])
    assert pin_inputs(wh) == pin_inputs(warehouses["base"])
    assert warehouse_snapshot(wh).versions == warehouse_snapshot(warehouses["base"]).versions

    ingest_delivery(spark, deliveries / "b", warehouse=wh)
    assert _leftovers(wh) == []
    assert _state(spark, wh) == _state(spark, warehouses["loaded"])
    deliveries_rows = io.read_table(spark, wh / "silver/deliveries").collect()
    assert len(deliveries_rows) == 2  # one per load
    runs = io.read_table(spark, wh / "quality/runs")
    assert runs.select("load_id").distinct().count() == 2


# After the cohort, after consumption, half-way through the analyses, after the last table
# before the run's record.
@pytest.mark.parametrize("commits", [1, 3, 8, 14])
def test_a_run_killed_after_a_commit_leaves_the_last_run_readable_and_reruns(
    spark, tmp_path, warehouses, commits
):
    from rxcohort.export import export_study
    from rxcohort.pipelines import run_study

    wh = tmp_path / "wh"
    shutil.copytree(warehouses["loaded"], wh)
    study_dir = wh / "studies" / STUDY
    before = succeeded_run(study_dir)
    _kill_after(commits, "run.py", str(STUDY_FILE), "--warehouse", str(wh))
    _opens(wh)
    # The killed run left no record: readers still read the run before it, and an export
    # now equals one taken before the kill.
    assert succeeded_run(study_dir) == before
    assert any(
        io.table_version(study_dir / name) > version for name, version in before[1].items()
    ), "the child was killed before it committed anything"
    export_study(spark, STUDY, out=tmp_path / "after_kill", warehouse=wh)
    export_study(spark, STUDY, out=tmp_path / "before_kill", warehouse=warehouses["loaded"])
    for path in sorted((tmp_path / "before_kill").iterdir()):
        assert (tmp_path / "after_kill" / path.name).read_text() == path.read_text(), path.name

    run_study(spark, STUDY_FILE, warehouse=wh)
    assert _leftovers(wh) == []
    prefix = f"studies/{STUDY}/"
    got, want = _state(spark, wh, prefix), _state(spark, warehouses["ran"], prefix)
    assert got.keys() == want.keys()
    for name in want:
        for a, b in zip(got[name], want[name], strict=True):
            assert a == b, (name, [(x, y) for x, y in zip(a, b, strict=True) if x != y])
    runs = io.read_table(spark, study_dir / "runs").collect()
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]  # one row per run
