"""export --format summarised_result: the protected tables in omopgenerics' 13 columns."""

from __future__ import annotations

import csv
from datetime import date

import pandas as pd
import pytest

from rxcohort import __version__, io
from rxcohort.errors import ConfigError
from rxcohort.export import export_study
from rxcohort.persistence.survival import COX_COLUMNS, KM_CURVE_COLUMNS, KM_MEDIAN_COLUMNS
from rxcohort.privacy import MASKING_RULES
from rxcohort.stats import to_spark
from rxcohort.stats.frames import COLUMNS
from rxcohort.summarised import LAYOUTS, RESULT_COLUMNS, layout_keys, to_summarised_result
from test_export import _outcomes

STUDY = "ldn_sr"
# The estimate types omopgenerics accepts.
ESTIMATE_TYPES = {"numeric", "integer", "date", "character", "proportion", "percentage", "logical"}


def _read(path):
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def warehouse(spark, tmp_path_factory):
    """Six persons in ldn_4plus (6 users before, 5 after), two in ldn_1, none in ldn_2_3; an
    attrition of 11 -> 8; a delivery from NorPD."""
    root = tmp_path_factory.mktemp("sr")
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
    deliveries = spark.createDataFrame([("load-1", "NorPD")], "load_id string, registry string")
    io.write_table(deliveries, root / "silver" / "deliveries")
    return root


def _estimate(rows, **where):
    found = [r for r in rows if all(r[k] == v for k, v in where.items())]
    assert len(found) == 1, (where, found)
    return found[0]["estimate_value"]


def test_the_long_format_holds_the_protected_values(spark, warehouse, tmp_path):
    paths = export_study(
        spark, STUDY, out=tmp_path, warehouse=warehouse, format="summarised_result"
    )
    assert [p.name for p in paths] == ["summarised_result.csv", "settings.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.csv", "summarised_result.csv"]
    with (tmp_path / "summarised_result.csv").open(encoding="utf-8") as handle:
        assert handle.readline().strip().split(",") == list(RESULT_COLUMNS)
    rows = _read(tmp_path / "summarised_result.csv")
    assert {r["cdm_name"] for r in rows} == {"NorPD"}

    attrition = [r for r in rows if r["result_id"] == "1"]
    # As the CSV export: step 1's 3 excluded read <5, and the 8 left that give them back: -.
    assert _estimate(attrition, strata_level="LDN in 2013", variable_name="number_subjects") == "11"
    assert (
        _estimate(attrition, strata_level="prior opioid use", variable_name="number_subjects")
        == "-"
    )
    assert (
        _estimate(attrition, strata_level="prior opioid use", variable_name="excluded_subjects")
        == "<5"
    )
    assert {(r["strata_name"], r["additional_name"]) for r in attrition} == {("criterion", "step")}
    assert {r["additional_level"] for r in attrition} == {"0", "1"}

    results = [r for r in rows if r["result_id"] == "2"]
    assert {r["group_name"] for r in results} == {"exposure_group"}
    assert {r["variable_level"] for r in results} == {"opioids"}
    high = [r for r in results if r["group_level"] == "ldn_4plus"]
    assert _estimate(high, variable_name="number subjects", estimate_name="count") == "6"
    assert _estimate(high, variable_name="users pre", estimate_name="count") == "6"
    # 5 users after would give back the one non-user: hidden, with the statistics on it.
    assert _estimate(high, variable_name="users post", estimate_name="count") == "-"
    assert _estimate(high, variable_name="ddd post", estimate_name="mean") == "-"
    assert float(_estimate(high, variable_name="ddd pre", estimate_name="mean")) == pytest.approx(
        12.5
    )
    low = [r for r in results if r["group_level"] == "ldn_1"]
    assert _estimate(low, variable_name="number subjects", estimate_name="count") == "<5"
    assert _estimate(low, variable_name="ddd change", estimate_name="mean") == "-"
    # ldn_2_3 has nobody: 0 is shown and its undefined statistics are NA (empty).
    empty = [r for r in results if r["group_level"] == "ldn_2_3"]
    assert _estimate(empty, variable_name="number subjects", estimate_name="count") == "0"
    assert _estimate(empty, variable_name="ddd pre", estimate_name="mean") == ""

    settings = _read(tmp_path / "settings.csv")
    assert [(s["result_id"], s["table_name"], s["result_type"]) for s in settings] == [
        ("1", "attrition", "cohort_attrition"),
        ("2", "group_results", "ddd_change"),
    ]
    assert {(s["package_name"], s["package_version"], s["min_cell_count"]) for s in settings} == {
        ("rxcohort", __version__, "5")
    }
    assert settings[1]["group"] == "exposure_group" and settings[0]["strata"] == "criterion"


def test_every_value_of_the_csv_export_is_one_estimate(spark, warehouse, tmp_path):
    """The same protected values in both formats: each cell of the CSV export is one row of
    the long format (masked there reads - here), and nothing else is."""
    export_study(spark, STUDY, out=tmp_path / "csv", warehouse=warehouse)
    export_study(spark, STUDY, out=tmp_path / "sr", warehouse=warehouse, format="summarised_result")
    long = _read(tmp_path / "sr" / "summarised_result.csv")
    expected = 0
    for result_id, table in ((1, "attrition"), (2, "group_results")):
        wide = _read(tmp_path / "csv" / f"{table}.csv")
        values = [c for c in wide[0] if c not in MASKING_RULES[table].keys]
        expected += len(wide) * len(values)
        mine = [r for r in long if r["result_id"] == str(result_id)]
        got = sorted(r["estimate_value"] for r in mine)
        want = sorted("-" if row[c] == "masked" else row[c] for row in wide for c in values)
        assert [_number(v) for v in got] == [_number(v) for v in want]
    assert len(long) == expected


def _number(text):
    try:
        return round(float(text), 9)
    except ValueError:
        return text


def test_hand_worked_use_over_time_rows():
    frame = pd.DataFrame(
        {
            "period_type": ["year", "year"],
            "period_start": [date(2013, 1, 1), date(2013, 1, 1)],
            "drug": ["LDN", "LDN"],
            "sex": ["all", "female"],
            "age_band": ["all", "all"],
            "n_users": [12, "<5"],
            "n_new_users": [pd.NA, "masked"],
            "n_population": [4000, 2100],
            "per_1000": [3.0, "masked"],
            "ci_low": [1.7, "masked"],
            "ci_high": [5.2, "masked"],
        }
    )
    out = to_summarised_result("use_over_time", frame, result_id=3, cdm_name="NorPD")
    assert list(out.columns) == list(RESULT_COLUMNS)
    assert len(out) == 12
    everyone = out[out["strata_name"] == "overall"]
    assert set(everyone["strata_level"]) == {"overall"}
    assert set(out["additional_name"]) == {"period_type &&& period_start"}
    assert set(out["additional_level"]) == {"year &&& 2013-01-01"}
    assert set(out["variable_level"]) == {"LDN"}
    assert set(out["group_name"]) == {"overall"}
    by = {
        (r.strata_level, r.variable_name, r.estimate_name): r.estimate_value
        for r in out.itertuples()
    }
    assert by[("overall", "users", "outcome_count")] == "12"
    assert by[("overall", "new users", "outcome_count")] is None
    assert by[("overall", "population", "denominator_count")] == "4000"
    assert by[("overall", "users", "per_1000")] == "3.0"
    assert by[("overall", "users", "per_1000_95CI_upper")] == "5.2"
    assert by[("female", "users", "outcome_count")] == "<5"
    assert by[("female", "new users", "outcome_count")] == "-"
    assert by[("female", "users", "per_1000_95CI_lower")] == "-"
    assert set(out.loc[out["strata_level"] == "female", "strata_name"]) == {"sex"}


def test_every_column_of_every_table_has_a_place():
    """No column falls to the catch-all: each is a key (group, strata, variable, additional)
    or a named estimate, in every exportable table."""
    columns = dict(COLUMNS)
    columns["km_curves"] = list(KM_CURVE_COLUMNS)
    columns["km_medians"] = list(KM_MEDIAN_COLUMNS)
    columns["cox_results"] = list(COX_COLUMNS)
    columns["attrition"] = ["step", "criterion", "n_persons", "n_excluded"]
    assert set(columns) == set(LAYOUTS) == set(MASKING_RULES)
    for table, names in columns.items():
        layout = LAYOUTS[table]
        keys = {*layout.group, *layout.strata, *(layout.strata_pair or ()), *layout_keys(table)}
        keys |= {layout.variable_level, layout.variable_name_from} - {None}
        assert keys <= set(names), table
        for name in names:
            assert (name in keys) != (name in layout.estimates), (table, name)
        for estimate in layout.estimates.values():
            assert estimate.type in ESTIMATE_TYPES
        # Person counts carry "count" in their estimate name, so a viewer that suppresses
        # again (omopgenerics' suppress) finds them.
        for count in MASKING_RULES[table].person_counts:
            assert "count" in layout.estimates[count].name, (table, count)


def test_the_demo_study_is_well_formed(spark, demo_warehouse, tmp_path):
    """Every table of the demo study in one file that omopgenerics' rules accept: as many
    levels as names, one value per estimate, known types, no person-level column."""
    warehouse, _, study_id = demo_warehouse
    export_study(spark, study_id, out=tmp_path, warehouse=warehouse, format="summarised_result")
    rows = _read(tmp_path / "summarised_result.csv")
    settings = _read(tmp_path / "settings.csv")
    assert {s["table_name"] for s in settings} >= {
        "attrition",
        "group_results",
        "km_curves",
        "cox_results",
        "prescriber_summary",
    }
    assert {r["result_id"] for r in rows} == {s["result_id"] for s in settings}
    assert {r["cdm_name"] for r in rows} == {"NorPD (synthetic)"}
    for r in rows:
        for kind in ("group", "strata", "additional"):
            names, levels = r[f"{kind}_name"].split(" &&& "), r[f"{kind}_level"].split(" &&& ")
            assert len(names) == len(levels), r
        assert r["estimate_type"] in ESTIMATE_TYPES
        if r["estimate_type"] == "integer" and r["estimate_value"] not in ("", "<5", "-"):
            assert int(r["estimate_value"]) == 0 or int(r["estimate_value"]) >= 5
    keys = [
        tuple(r[c] for c in RESULT_COLUMNS if c not in ("estimate_type", "estimate_value"))
        for r in rows
    ]
    assert len(keys) == len(set(keys))
    assert not any("person_id" in r["variable_name"] for r in rows)


def test_unknown_format_is_refused(spark, warehouse, tmp_path):
    with pytest.raises(ConfigError, match="unknown export format 'xlsx'"):
        export_study(spark, STUDY, out=tmp_path, warehouse=warehouse, format="xlsx")
