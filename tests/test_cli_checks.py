"""Cheap checks first: a wrong path, study file, study id, run id or engine is one line, and
no engine is started for it (the command runs in a fresh process, as a user's would)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "cohorts" / "ldn_opioids_2013.yaml"


def rxcohort(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RXCOHORT_ENV": "test", "RXCOHORT_ENGINE": "sail"}
    return subprocess.run(
        [sys.executable, "-m", "rxcohort.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def _warehouse_with_a_study(root: Path) -> Path:
    """A warehouse whose study has one recorded run, written with deltalake alone."""
    import pyarrow as pa
    from deltalake import write_deltalake

    wh = root / "wh"
    for table in ("silver/dispensings", "silver/persons"):
        write_deltalake(str(wh / table), pa.table({"x": [1]}))
    write_deltalake(
        str(wh / "studies" / "ldn_opioids_2013" / "runs"),
        pa.table({"run_id": ["20130101T000000Z"]}),
    )
    return wh


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("ingest", "{tmp}/no-delivery", "-w", "{tmp}/wh"), "no such delivery directory"),
        (("run", str(STUDY), "-w", "{tmp}/no-warehouse"), "no warehouse at"),
        (("run", str(STUDY), "-w", "{tmp}/empty"), "has no silver/dispensings, silver/persons"),
        (("run", str(STUDY), "-w", "{wh}", "--as-of", "nope"), "run nope is not in"),
        (("run", "{tmp}/no-such.yaml", "-w", "{wh}"), "no such study file"),
        (
            ("export", "no_study", "--out", "{tmp}/out", "-w", "{wh}"),
            "study no_study has no tables",
        ),
        (("export", "../x", "--out", "{tmp}/out", "-w", "{wh}"), "must be a file name"),
        (
            ("export", "ldn_opioids_2013", "--out", "{tmp}/out", "-w", "{wh}", "--format", "xlsx"),
            "unknown export format 'xlsx'; choose one of csv, summarised_result",
        ),
        (("report", "no_study", "-w", "{wh}"), "(studies here: ldn_opioids_2013)"),
        (("sql", "SELECT 1", "-w", "{tmp}/no-warehouse"), "no warehouse at"),
        (("sql", "SELECT 1", "-w", "{wh}", "--out", "{tmp}/x.xlsx"), "--out must end in"),
        (("run", str(STUDY), "-w", "{wh}", "--engine", "flink"), "engine must be one of"),
        (("generate", "{tmp}/d", "--start", "2013-13-01"), "--start must be a date"),
    ],
)
def test_a_wrong_argument_is_one_line_before_any_engine(tmp_path, args, expected):
    (tmp_path / "empty").mkdir()
    wh = _warehouse_with_a_study(tmp_path)
    argv = [a.format(tmp=tmp_path, wh=wh) for a in args]
    proc = rxcohort(*argv, cwd=tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("rxcohort: ") and expected in lines[0]
    assert "engine:" not in proc.stderr  # the session factory logs this line when it starts one
    assert not (tmp_path / "no-warehouse").exists()


SQL_COMMAND = (sys.executable, "-m", "rxcohort.cli", "sql")


@pytest.mark.parametrize("engine", ["sail", "spark"])
def test_sql_leaves_nothing_in_the_working_directory(tmp_path, engine):
    if engine == "spark":
        from test_cross_engine import _skip_without_classic_spark

        _skip_without_classic_spark()
    import pyarrow as pa
    from deltalake import write_deltalake

    wh = tmp_path / "wh"
    write_deltalake(str(wh / "silver" / "persons"), pa.table({"x": [1, 2, 3]}))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {**os.environ, "RXCOHORT_ENV": "test", "RXCOHORT_ENGINE": engine}
    proc = subprocess.run(
        [*SQL_COMMAND, "SELECT count(*) AS n FROM silver.persons", "-w", str(wh)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "3" in proc.stdout
    assert list(cwd.iterdir()) == []  # no spark-warehouse/, no metastore, no logs


@pytest.mark.parametrize(
    "args",
    [
        ("generate", "{tmp}/d", "--start", "2013-13-01"),
        ("generate", "{tmp}/d", "--persons", "5"),
        ("sql", "SELECT 1", "-w", "{wh}", "--out", "{tmp}/x.xlsx"),
    ],
)
def test_a_parameter_error_exits_2_like_a_usage_error(tmp_path, args):
    wh = _warehouse_with_a_study(tmp_path)
    proc = rxcohort(*[a.format(tmp=tmp_path, wh=wh) for a in args], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "internal error" not in proc.stderr


def test_a_parameter_error_is_the_projects_error_and_a_value_error():
    from rxcohort.errors import ParameterError, RxCohortError
    from rxcohort.transforms.codes import starts_with_any

    with pytest.raises(ParameterError, match="at least one prefix") as caught:
        starts_with_any("atc_code", [])
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, RxCohortError)
    assert caught.value.exit_code == 2
