"""export_study: result tables to CSV with small counts masked; person-level tables never."""

from __future__ import annotations

import csv
from datetime import date

import pandas as pd
import pytest

from rxcohort import io
from rxcohort.errors import ConfigError, TableNotFoundError
from rxcohort.export import export_study
from rxcohort.stats import compute_outcome_tables, to_spark

STUDY = "ldn_test"


def _outcomes():
    persons = {f"p{i}": "ldn_4plus" for i in range(6)} | {"q0": "ldn_1", "q1": "ldn_1"}
    cohort = pd.DataFrame(list(persons.items()), columns=["person_id", "exposure_group"])
    rows = []
    for i, pid in enumerate(persons):
        rows.append((pid, "opioids", "pre", 10.0 + i, 1, True))
        rows.append((pid, "opioids", "post", float(i), int(i > 0), i > 0))
    consumption = pd.DataFrame(
        rows, columns=["person_id", "drug_group", "window", "ddd", "n_dispensings", "is_user"]
    )
    return compute_outcome_tables(
        cohort, consumption, group_order=["ldn_1", "ldn_2_3", "ldn_4plus"], drug_groups=["opioids"]
    )


@pytest.fixture(scope="module")
def warehouse(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("warehouse")
    study = root / "studies" / STUDY
    tables = _outcomes()
    io.write_table(
        to_spark(spark, tables["group_results"], table="group_results"), study / "group_results"
    )
    attrition = spark.createDataFrame(
        [(1, "prior opioid use", 8, 3), (0, "LDN in 2013", 11, 0)],
        "step int, criterion string, n_persons long, n_excluded long",
    )
    io.write_table(attrition, study / "attrition")
    person_level = spark.createDataFrame(
        [("p0", date(2013, 5, 1), "ldn_4plus")],
        "person_id string, index_date date, exposure_group string",
    )
    io.write_table(person_level, study / "cohort")
    return root


def _read(path):
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_export_writes_result_tables_only_and_masks_small_counts(spark, warehouse, tmp_path):
    written = export_study(spark, STUDY, out=tmp_path / "out", warehouse=warehouse)
    assert [p.name for p in written] == ["attrition.csv", "group_results.csv"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "attrition.csv",
        "group_results.csv",
    ]

    attrition = _read(tmp_path / "out" / "attrition.csv")
    assert [(r["step"], r["criterion"], r["n_persons"], r["n_excluded"]) for r in attrition] == [
        ("0", "LDN in 2013", "11", "0"),
        # 3 excluded: <5; and 8 left would give the 3 back (11 - 8), so it is hidden too.
        ("1", "prior opioid use", "masked", "<5"),
    ]

    results = {r["exposure_group"]: r for r in _read(tmp_path / "out" / "group_results.csv")}
    high, low = results["ldn_4plus"], results["ldn_1"]
    # 6 persons, 6 users before and 5 after: the 5 would give back the 1 person who used
    # none after (6 - 5), so it is hidden, with what rests on it; the rest is shown.
    assert (high["n_persons"], high["users_pre"], high["users_post"]) == ("6", "6", "masked")
    assert float(high["mean_ddd_pre"]) == pytest.approx(12.5)
    assert high["mean_ddd_post"] == "masked" and high["mean_diff"] == "masked"
    # 2 persons: counts <5, statistics masked, labels kept.
    assert (low["n_persons"], low["users_pre"], low["users_post"]) == ("<5", "<5", "<5")
    assert low["mean_diff"] == "masked" and low["drug_group"] == "opioids"


def test_delta_tables_keep_exact_counts(spark, warehouse, tmp_path):
    export_study(spark, STUDY, out=tmp_path, warehouse=warehouse)
    stored = io.read_table(spark, warehouse / "studies" / STUDY / "group_results")
    assert sorted(r["n_persons"] for r in stored.collect()) == [0, 2, 6]


def test_null_statistics_are_empty_fields(spark, warehouse, tmp_path):
    export_study(spark, STUDY, out=tmp_path, warehouse=warehouse)
    rows = {r["exposure_group"]: r for r in _read(tmp_path / "group_results.csv")}
    # ldn_2_3 has nobody: 0 persons is shown, its undefined statistics are empty fields.
    empty = rows["ldn_2_3"]
    assert (empty["n_persons"], empty["users_pre"]) == ("0", "0")
    assert (empty["mean_ddd_pre"], empty["mean_diff"], empty["ci_low"]) == ("", "", "")
    assert all(value not in ("nan", "<NA>", "None") for r in rows.values() for value in r.values())


def test_study_without_tables_is_one_clear_line(spark, tmp_path):
    with pytest.raises(TableNotFoundError, match="no_such_study has no result tables") as info:
        export_study(spark, "no_such_study", out=tmp_path / "out", warehouse=tmp_path)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_study_id_cannot_leave_the_studies_directory(spark, tmp_path):
    with pytest.raises(ConfigError):
        export_study(spark, "../silver", out=tmp_path, warehouse=tmp_path)
