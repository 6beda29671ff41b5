"""One writer at a time: the warehouse lock, in one process and between processes started
together (ingest + ingest, run + run, ingest + run), each ending in a state that equals one
sequential order of the two."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import pytest

from rxcohort import io
from rxcohort.errors import RxCohortError
from rxcohort.lock import (
    LOCK_FILE,
    WarehouseBusyError,
    clear_stale_record,
    lock_state,
    warehouse_lock,
)

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "cohorts" / "ldn_opioids_2013.yaml"


def _hold(warehouse: str, ready, release) -> None:
    with warehouse_lock(warehouse, command="ingest"):
        ready.set()
        release.wait(60)


def _hold_and_die(warehouse: str, ready) -> None:
    with warehouse_lock(warehouse, command="run"):
        ready.set()
        time.sleep(60)


@pytest.fixture
def child():
    ctx = multiprocessing.get_context("spawn")
    started = []

    def start(target, *args):
        process = ctx.Process(target=target, args=args)
        process.start()
        started.append(process)
        return process

    yield ctx, start
    for process in started:
        if process.is_alive():
            process.kill()
        process.join(10)


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path, child):
    ctx, start = child
    ready, release = ctx.Event(), ctx.Event()
    holder = start(_hold, str(tmp_path), ready, release)
    assert ready.wait(60)
    with pytest.raises(WarehouseBusyError) as caught, warehouse_lock(tmp_path, command="run"):
        pass
    message = str(caught.value)
    assert "`ingest`" in message and f"process {holder.pid}" in message
    assert caught.value.exit_code == 4
    state = lock_state(tmp_path)
    assert state.held and state.holder is not None and state.holder.pid == holder.pid
    with pytest.raises(WarehouseBusyError, match="is alive"):
        clear_stale_record(tmp_path)
    release.set()
    holder.join(30)
    with warehouse_lock(tmp_path, command="run") as me:
        assert me.pid == os.getpid()
    assert not lock_state(tmp_path).held
    assert json.loads((tmp_path / LOCK_FILE).read_text())["released"] is True


def test_a_waiting_writer_goes_on_when_the_holder_ends(tmp_path, child):
    ctx, start = child
    ready, release = ctx.Event(), ctx.Event()
    start(_hold, str(tmp_path), ready, release)
    assert ready.wait(60)
    said: list[str] = []
    began = time.monotonic()
    # The holder lets go 1.5 s from now; the waiter, told to wait up to 30 s, then goes on.
    threading.Timer(1.5, release.set).start()
    with warehouse_lock(tmp_path, command="run", wait_seconds=30, say=said.append):
        waited = time.monotonic() - began
    assert 1.0 < waited < 30
    assert len(said) == 1 and said[0].startswith("waiting for `ingest`")


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with warehouse_lock(tmp_path, command="run"):
        with warehouse_lock(tmp_path, command="report"):
            assert lock_state(tmp_path).held
        assert lock_state(tmp_path).held
    assert not lock_state(tmp_path).held


def test_a_killed_writer_leaves_no_lock_and_its_leftovers_are_removed(tmp_path, child):
    ctx, start = child
    ready = ctx.Event()
    victim = start(_hold_and_die, str(tmp_path), ready)
    assert ready.wait(60)
    # What a killed ingest leaves: its scratch space and a table's staged files.
    leftovers = [
        tmp_path / io.SCRATCH_DIR / "20260101T000000Z-0000" / "x.parquet",
        tmp_path / "silver" / "dispensings" / io.STAGING_DIR / "abc" / "part-0.parquet",
        tmp_path / "studies" / "s" / "cohort" / io.STAGING_DIR / "def" / "part-0.parquet",
    ]
    for file in leftovers:
        file.parent.mkdir(parents=True)
        file.write_bytes(b"PAR1")
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(30)
    state = lock_state(tmp_path)
    assert not state.held and state.holder is not None and not state.holder.released
    assert "ended without releasing" in state.describe()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("rxcohort").addHandler(handler)
    try:
        with warehouse_lock(tmp_path, command="ingest"):
            pass
    finally:
        logging.getLogger("rxcohort").removeHandler(handler)
    assert any("ended without releasing its lock" in r.getMessage() for r in records)
    assert not any(f.exists() for f in leftovers)
    assert not (tmp_path / io.SCRATCH_DIR).exists()
    assert not (tmp_path / "silver" / "dispensings" / io.STAGING_DIR).exists()


def test_clearing_a_crashed_writers_record(tmp_path):
    (tmp_path / LOCK_FILE).write_text(
        json.dumps(
            {
                "command": "ingest",
                "pid": 999999,
                "host": "h",
                "user": "u",
                "started_at": "2026-01-01T00:00:00+00:00",
                "released": False,
            }
        )
    )
    assert "ended without releasing" in lock_state(tmp_path).describe()
    cleared = clear_stale_record(tmp_path)
    assert cleared is not None and cleared.pid == 999999
    assert "the last writer was `ingest`" in lock_state(tmp_path).describe()
    assert clear_stale_record(tmp_path) is None  # nothing left to clear


def test_a_missing_warehouse_is_not_created_by_a_run(tmp_path):
    with (
        pytest.raises(RxCohortError, match="does not exist"),
        warehouse_lock(tmp_path / "typo", command="run"),
    ):
        pass
    assert not (tmp_path / "typo").exists()


def test_the_command_names_the_holder_in_one_line_before_any_engine(tmp_path, child):
    ctx, start = child
    ready, release = ctx.Event(), ctx.Event()
    (tmp_path / "delivery").mkdir()
    wh = tmp_path / "wh"
    wh.mkdir()
    start(_hold, str(wh), ready, release)
    assert ready.wait(60)
    env = {**os.environ, "RXCOHORT_ENV": "test", "RXCOHORT_ENGINE": "sail"}
    shown = subprocess.run(
        [sys.executable, "-m", "rxcohort.cli", "lock", "-w", str(wh)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert shown.returncode == 4 and "locked: `ingest`" in shown.stdout
    import pyarrow as pa
    from deltalake import write_deltalake

    for table in ("silver/dispensings", "silver/persons"):
        write_deltalake(str(wh / table), pa.table({"x": [1]}))
    began = time.monotonic()
    refused = subprocess.run(
        [sys.executable, "-m", "rxcohort.cli", "run", str(STUDY), "-w", str(wh)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert refused.returncode == 4
    assert refused.stderr.startswith("rxcohort: warehouse ") and "`ingest`" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "engine:" not in refused.stderr  # refused before any engine started
    assert time.monotonic() - began < 30
    release.set()


# -- two processes started together ------------------------------------------------------------


def _job(script: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "RXCOHORT_ENV": "test", "RXCOHORT_ENGINE": "sail"}
    return subprocess.Popen(
        [sys.executable, str(REPO / "jobs" / script), *args, "--wait", "600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _finish(*processes: subprocess.Popen) -> None:
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]


def _rows(spark, path: Path) -> list[tuple]:
    frame = io.read_table(spark, path)
    return sorted(tuple(r) for r in frame.drop("load_id", "load_time").collect())


@pytest.fixture(scope="module")
def deliveries(spark, tmp_path_factory):
    """Two different deliveries with the same file names (the second replaces the first)."""
    from rxcohort.generate import generate_delivery

    root = tmp_path_factory.mktemp("lock_deliveries")
    out = {}
    for name, seed in (("a", 11), ("b", 12)):
        generate_delivery(
            spark,
            root / name,
            persons=300,
            seed=seed,
            start=date(2011, 1, 1),
            end=date(2015, 12, 31),
            defects=0.0,
            gzip=False,
            ldn_rate=0.2,
        )
        out[name] = root / name
    # Delivery a in two parts that add up: its earlier years, then its later years (same
    # persons and prescribers, same manifest period).
    manifest = json.loads((out["a"] / "manifest.json").read_text())
    for part, years in (("early", (2011, 2012, 2013)), ("late", (2014, 2015))):
        target = root / part
        (target / "dispensings").mkdir(parents=True)
        keep = {"persons.csv", "prescribers.csv"} | {
            f"dispensings/dispensings_{y}.csv" for y in years
        }
        for name in keep:
            shutil.copyfile(out["a"] / name, target / name)
        files = {k: v for k, v in manifest["files"].items() if k in keep}
        (target / "manifest.json").write_text(json.dumps({**manifest, "files": files}))
        out[part] = target
    return out


@pytest.mark.slow
def test_two_ingests_started_together_end_as_one_after_the_other(spark, tmp_path, deliveries):
    from rxcohort.pipelines import ingest_delivery

    wh = tmp_path / "wh"
    first = _job("ingest.py", str(deliveries["early"]), "--warehouse", str(wh))
    second = _job("ingest.py", str(deliveries["late"]), "--warehouse", str(wh))
    _finish(first, second)
    # Either order gives the same warehouse: every year of delivery a. Nothing is lost.
    alone = tmp_path / "alone"
    ingest_delivery(spark, deliveries["early"], warehouse=alone)
    ingest_delivery(spark, deliveries["late"], warehouse=alone)
    assert io.table_row_count(wh / "silver" / "deliveries") == 2
    for table in ("bronze/files", "silver/dispensings", "silver/persons", "quarantine/dispensings"):
        assert _rows(spark, wh / table) == _rows(spark, alone / table), table
    assert not (wh / io.SCRATCH_DIR).exists()


@pytest.fixture(scope="module")
def loaded(spark, tmp_path_factory, deliveries):
    from rxcohort.pipelines import ingest_delivery

    wh = tmp_path_factory.mktemp("lock_wh") / "wh"
    ingest_delivery(spark, deliveries["a"], warehouse=wh)
    return wh


@pytest.mark.slow
def test_two_runs_started_together_both_land_one_after_the_other(spark, loaded):
    first = _job("run.py", str(STUDY), "--warehouse", str(loaded))
    second = _job("run.py", str(STUDY), "--warehouse", str(loaded))
    _finish(first, second)
    study = loaded / "studies" / "ldn_opioids_2013"
    runs = io.read_table(spark, study / "runs").orderBy("started_at").collect()
    assert [r["status"] for r in runs[-2:]] == ["succeeded", "succeeded"]
    # Not interleaved: the later run started after the earlier one had finished, and every
    # study table's latest commit is the later run's.
    assert runs[-1]["started_at"] >= runs[-2]["finished_at"]
    for table in ("cohort", "attrition", "consumption", "group_results"):
        latest = io.table_history(study / table, limit=1)[0]["info"]
        assert latest["rxcohort.run_id"] == runs[-1]["run_id"], table


@pytest.mark.slow
def test_an_ingest_and_a_run_started_together_do_not_mix(spark, loaded, deliveries):
    before = io.table_version(loaded / "silver" / "dispensings")
    ingest = _job("ingest.py", str(deliveries["b"]), "--warehouse", str(loaded))
    run = _job("run.py", str(STUDY), "--warehouse", str(loaded))
    _finish(ingest, run)
    after = io.table_version(loaded / "silver" / "dispensings")
    assert after == before + 1
    runs = io.read_table(spark, loaded / "studies" / "ldn_opioids_2013" / "runs")
    last = runs.orderBy("started_at", ascending=False).first()
    assert last["status"] == "succeeded"
    # The run read silver entirely before or entirely after the ingest.
    assert last["input_versions"]["silver/dispensings"] in (before, after)
