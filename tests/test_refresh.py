"""``rxcohort refresh``: ingest, then run the studies whose inputs or study file changed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from rxcohort import io
from rxcohort.pipelines.refresh import refresh, study_sources
from rxcohort.pipelines.snapshot import last_succeeded_run

REPO = Path(__file__).resolve().parents[1]
STUDY_FILE = REPO / "cohorts" / "ldn_opioids_2013.yaml"
STUDY = "ldn_opioids_2013"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def delivery(spark, tmp_path_factory):
    from rxcohort.generate import generate_delivery

    root = tmp_path_factory.mktemp("refresh_delivery") / "d"
    generate_delivery(
        spark,
        root,
        persons=300,
        seed=31,
        start=date(2011, 1, 1),
        end=date(2015, 12, 31),
        defects=0.0,
        gzip=False,
        ldn_rate=0.2,
    )
    return root


def _corrected(delivery: Path, target: Path, *, drop: int = 10) -> Path:
    """The delivery with the last ``drop`` lines of dispensings_2014.csv left out."""
    shutil.copytree(delivery, target)
    path = target / "dispensings" / "dispensings_2014.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-drop]))
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["files"]["dispensings/dispensings_2014.csv"] = hashlib.sha256(
        path.read_bytes()
    ).hexdigest()
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def _versions(wh: Path) -> dict[str, int | None]:
    return {
        str(p.parent.relative_to(wh)): io.table_version(p.parent) for p in wh.rglob("_delta_log")
    }


def _refresh(spark, delivery: Path, wh: Path, studies=(STUDY_FILE,)):
    steps = []
    result = refresh(
        lambda: spark,
        delivery,
        warehouse=wh,
        studies=study_sources(studies),
        report=steps.append,
    )
    assert steps == result.steps
    return result, {(s.step, s.status) for s in steps}, steps


def test_a_refresh_loads_runs_then_skips_what_did_not_change(spark, tmp_path, delivery):
    wh = tmp_path / "wh"
    result, seen, _ = _refresh(spark, delivery, wh)
    assert seen == {("ingest", "loaded"), ("study", "ran")} and result.exit_code == 0
    first = last_succeeded_run(wh / "studies" / STUDY)
    before = _versions(wh)

    result, seen, steps = _refresh(spark, delivery, wh)
    assert seen == {("ingest", "unchanged"), ("study", "skipped")} and result.exit_code == 0
    assert steps[1].reason == f"inputs and study file as in run {first['run_id']}"
    assert _versions(wh) == before  # nothing written

    # A corrected yearly file: its year's silver part changed, and the study runs again.
    corrected = _corrected(delivery, tmp_path / "corrected")
    result, seen, steps = _refresh(spark, corrected, wh)
    assert seen == {("ingest", "loaded"), ("study", "ran")}
    assert steps[0].details["changed"] == ["silver/dispensings dispense_year=2014 (changed)"]
    assert "inputs changed since run" in steps[1].reason
    assert "silver/dispensings" in steps[1].reason
    changes = io.read_table(spark, wh / "silver" / "changes").collect()
    latest = [r for r in changes if r["load_id"] == steps[0].details["load_id"]]
    assert [(r["table_name"], r["part_value"], r["change"]) for r in latest] == [
        ("silver/dispensings", "2014", "changed")
    ]
    assert latest[0]["rows_before"] - latest[0]["rows_after"] == 10


def test_a_changed_study_file_runs_again_and_a_failing_study_does_not_stop_the_others(
    spark, tmp_path, delivery
):
    wh = tmp_path / "wh"
    _refresh(spark, delivery, wh)
    studies = tmp_path / "studies"
    studies.mkdir()
    text = STUDY_FILE.read_text()
    (studies / f"{STUDY}.yaml").write_text(text + "\n# reviewed\n")
    # Same design, but its index period needs data the deliveries do not cover.
    (studies / "ldn_later.yaml").write_text(text.replace("2013-", "2015-"))
    result, _, steps = _refresh(spark, delivery, wh, studies=[studies])
    by_name = {s.name: s for s in steps}
    assert by_name[STUDY].status == "ran"
    assert by_name[STUDY].reason.startswith("the study file changed since run")
    assert by_name["ldn_later"].status == "failed"
    assert "deliveries in the warehouse cover" in by_name["ldn_later"].reason
    assert result.exit_code == 6


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RXCOHORT_ENV": "test", "RXCOHORT_ENGINE": "sail"}
    return subprocess.run(
        [sys.executable, "-m", "rxcohort.cli", "refresh", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_the_command_speaks_json_and_its_exit_codes_are_distinct(tmp_path, delivery):
    wh = tmp_path / "wh"
    done = _cli(str(delivery), "--studies", str(STUDY_FILE), "-w", str(wh), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    steps = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(s["step"], s["status"]) for s in steps] == [("ingest", "loaded"), ("study", "ran")]

    # The spark-submit job, again: nothing to do.
    env = {**os.environ, "RXCOHORT_ENV": "test", "RXCOHORT_ENGINE": "sail"}
    job = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "refresh.py"), str(delivery), "--warehouse",
         str(wh), "--studies", str(STUDY_FILE), "--json"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert job.returncode == 0, job.stderr[-2000:]
    steps = [json.loads(line) for line in job.stdout.splitlines()]
    assert [s["status"] for s in steps] == ["unchanged", "skipped"]

    # A delivery whose file lies outside its period: the gate closes, no study runs (5).
    late = tmp_path / "late"
    shutil.copytree(delivery, late)
    manifest = json.loads((late / "manifest.json").read_text())
    manifest["period"] = ["2011-01-01", "2014-12-31"]
    (late / "manifest.json").write_text(json.dumps(manifest))
    closed = _cli(str(late), "--studies", str(STUDY_FILE), "-w", str(wh), "--json")
    assert closed.returncode == 5, closed.stderr[-2000:]
    assert [json.loads(line)["status"] for line in closed.stdout.splitlines()] == ["gate_closed"]

    # A bad study file is refused before anything starts (2).
    bad = tmp_path / "bad.yaml"
    bad.write_text("study_id: [")
    refused = _cli(str(delivery), "--studies", str(bad), "-w", str(wh))
    assert refused.returncode == 2 and refused.stdout == ""


def test_another_writer_makes_the_refresh_exit_4(tmp_path, delivery):
    from rxcohort.lock import warehouse_lock

    wh = tmp_path / "wh"
    with warehouse_lock(wh, command="ingest", create=True):
        busy = _cli(str(delivery), "--studies", str(STUDY_FILE), "-w", str(wh))
    assert busy.returncode == 4
    assert "is being written by `ingest`" in busy.stderr
