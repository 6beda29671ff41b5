"""Each CLI command on the demo warehouse: the happy path and one error path, in process.

``rxcohort.cli.main`` is called with argv as a user would type it; it exits through SystemExit
with the status a shell would see, and prints errors as one line on stderr.
"""

from __future__ import annotations

import sys

import pytest

from rxcohort import cli

pytestmark = pytest.mark.slow


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["rxcohort", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_tables_lists_layers_and_study_tables(monkeypatch, capsys, demo_warehouse):
    warehouse, _, study_id = demo_warehouse
    code, out, _ = run_cli(monkeypatch, capsys, "tables", "--warehouse", str(warehouse))
    assert code == 0
    for name in (
        "silver.dispensings",
        "quarantine.dispensings",
        "quality.runs",
        f"{study_id}.cohort",
    ):
        assert name in out


def test_tables_on_a_missing_warehouse_is_one_line(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "tables", "--warehouse", str(tmp_path / "nope"))
    assert code == 1
    assert err.strip().splitlines() == [f"rxcohort: no warehouse at {tmp_path / 'nope'}"]


def test_history_shows_commits(monkeypatch, capsys, demo_warehouse):
    warehouse, _, _ = demo_warehouse
    code, out, _ = run_cli(
        monkeypatch, capsys, "history", "silver.dispensings", "--warehouse", str(warehouse)
    )
    assert code == 0
    assert "WRITE" in out or "CREATE" in out


def test_history_of_an_unknown_table_names_the_known_ones(monkeypatch, capsys, demo_warehouse):
    warehouse, _, _ = demo_warehouse
    code, _, err = run_cli(
        monkeypatch, capsys, "history", "silver.nope", "--warehouse", str(warehouse)
    )
    assert code == 1
    assert "no table 'silver.nope'" in err and "silver.dispensings" in err
    assert len(err.strip().splitlines()) == 1


def test_sql_prints_and_writes(monkeypatch, capsys, demo_warehouse, tmp_path):
    import pandas as pd

    warehouse, _, study_id = demo_warehouse
    query = f"SELECT exposure_group, count(*) AS n FROM {study_id}.cohort GROUP BY 1 ORDER BY 1"
    code, out, _ = run_cli(monkeypatch, capsys, "sql", query, "--warehouse", str(warehouse))
    assert code == 0 and "ldn_4plus" in out
    target = tmp_path / "groups.csv"
    code, _, _ = run_cli(
        monkeypatch, capsys, "sql", query, "--warehouse", str(warehouse), "--out", str(target)
    )
    assert code == 0
    frame = pd.read_csv(target)
    assert list(frame["exposure_group"]) == ["ldn_1", "ldn_2_3", "ldn_4plus"]


def test_sql_error_is_one_line(monkeypatch, capsys, demo_warehouse):
    warehouse, _, _ = demo_warehouse
    code, _, err = run_cli(
        monkeypatch, capsys, "sql", "SELECT nope FROM silver.persons", "--warehouse", str(warehouse)
    )
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and err.startswith("rxcohort: SQL error")


def test_export_happy_and_unknown_study(monkeypatch, capsys, demo_warehouse, tmp_path):
    warehouse, _, study_id = demo_warehouse
    code, _, _ = run_cli(
        monkeypatch,
        capsys,
        "export",
        study_id,
        "--out",
        str(tmp_path / "x"),
        "--warehouse",
        str(warehouse),
    )
    assert code == 0
    assert (tmp_path / "x" / "group_results.csv").is_file()
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "export",
        "nope",
        "--out",
        str(tmp_path / "y"),
        "--warehouse",
        str(warehouse),
    )
    assert code == 1 and len(err.strip().splitlines()) == 1


def test_check_prints_methods_and_rejects_a_bad_file(monkeypatch, capsys, repo_root, tmp_path):
    code, out, _ = run_cli(
        monkeypatch, capsys, "check", str(repo_root / "cohorts" / "ldn_opioids_2013.yaml")
    )
    assert code == 0 and "N07BB04" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (repo_root / "cohorts" / "ldn_opioids_2013.yaml")
        .read_text()
        .replace("end: 364", "end: -400")
    )
    code, _, err = run_cli(monkeypatch, capsys, "check", str(bad))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "bad.yaml" in err


def test_ingest_and_run_error_paths(monkeypatch, capsys, tmp_path, repo_root):
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "ingest",
        str(tmp_path / "no-delivery"),
        "--warehouse",
        str(tmp_path / "wh"),
    )
    assert code == 1 and len(err.strip().splitlines()) == 1
    study = str(repo_root / "cohorts" / "ldn_opioids_2013.yaml")
    code, _, err = run_cli(
        monkeypatch, capsys, "run", study, "--warehouse", str(tmp_path / "empty-wh")
    )
    assert code == 1 and "rxcohort ingest" in err and len(err.strip().splitlines()) == 1


def test_ingest_again_changes_no_table(monkeypatch, capsys, demo_warehouse):
    from rxcohort import io

    warehouse, delivery, _ = demo_warehouse
    tables = ("silver/dispensings", "silver/persons", "bronze/dispensings", "quality/runs")
    before = {t: io.table_version(warehouse / t) for t in tables}
    code, _out, _ = run_cli(
        monkeypatch, capsys, "ingest", str(delivery), "--warehouse", str(warehouse)
    )
    assert code == 0
    assert {t: io.table_version(warehouse / t) for t in tables} == before
