"""The whole chain on a generated delivery: generate -> ingest -> run -> export.

Uses the session's ``demo_warehouse`` (tests/conftest.py). The Spark pipeline is compared with
the plain-Python reading of CONTRACT §5 in tests/reference_impl.py, and the statistics with the
effects the generator injected (truth.json), which the pipeline never reads.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
from pyspark.sql import functions as F

from reference_impl import reference_study
from rxcohort import io

pytestmark = pytest.mark.slow

RELEVANT_ATC = ("N07BB04", "N02A", "M01A", "N02B")


def _rows(frame):
    return [row.asDict() for row in frame.collect()]


@pytest.fixture(scope="module")
def oracle(spark, demo_warehouse):
    warehouse, _, _ = demo_warehouse
    dispensings = io.read_table(spark, warehouse / "silver" / "dispensings")
    relevant = dispensings.where(
        F.greatest(*[F.col("atc_code").startswith(p) for p in RELEVANT_ATC])
    ).select("dispensing_id", "person_id", "dispense_date", "atc_code", "strength_mg", "packs", "ddd",
             "prescriber_id")  # fmt: skip
    persons = io.read_table(spark, warehouse / "silver" / "persons")
    return reference_study(_rows(relevant), _rows(persons))


def test_cohort_matches_the_independent_reference(spark, demo_warehouse, oracle):
    warehouse, _, study_id = demo_warehouse
    cohort = io.read_table(spark, warehouse / "studies" / study_id / "cohort")
    got = sorted(
        (r["person_id"], r["index_date"], r["exposure_group"], r["n_index_drug_dispensings"], r["sex"],
         r["age_at_index"])
        for r in _rows(cohort)
    )  # fmt: skip
    want = sorted(
        (c["person_id"], c["index_date"], c["exposure_group"], c["n_index_drug_dispensings"], c["sex"],
         c["age_at_index"])
        for c in oracle.cohort
    )  # fmt: skip
    assert len(want) >= 30, "the demo delivery should give a cohort worth testing"
    assert got == want


def test_attrition_matches_the_independent_reference(spark, demo_warehouse, oracle):
    warehouse, _, study_id = demo_warehouse
    attrition = io.read_table(spark, warehouse / "studies" / study_id / "attrition")
    got = sorted((r["step"], r["n_persons"], r["n_excluded"]) for r in _rows(attrition))
    assert got == oracle.attrition


def test_consumption_matches_the_independent_reference(spark, demo_warehouse, oracle):
    warehouse, _, study_id = demo_warehouse
    consumption = _rows(io.read_table(spark, warehouse / "studies" / study_id / "consumption"))
    got = {(r["person_id"], r["drug_group"], r["window"]): r for r in consumption}
    assert len(got) == len(consumption) == len(oracle.cohort) * 3 * 2
    for want in oracle.consumption:
        row = got[(want["person_id"], want["drug_group"], want["window"])]
        assert row["ddd"] == pytest.approx(want["ddd"], rel=1e-9, abs=1e-9)
        assert row["n_dispensings"] == want["n_dispensings"]
        assert row["is_user"] == want["is_user"]


def test_injected_effects_are_recovered(spark, demo_warehouse):
    warehouse, delivery, study_id = demo_warehouse
    truth = json.loads((delivery / "truth.json").read_text())["effects"]["relative_change"]
    results = {
        (r["exposure_group"], r["drug_group"]): r
        for r in _rows(io.read_table(spark, warehouse / "studies" / study_id / "group_results"))
    }
    for group in ("ldn_4plus", "ldn_2_3"):
        row = results[(group, "opioids")]
        injected = truth["N02A"][group]
        assert row["rel_change_ci_low"] <= injected <= row["rel_change_ci_high"], (group, row)
    control = results[("ldn_1", "opioids")]
    assert control["ci_low"] <= 0 <= control["ci_high"]
    # LDN x4+ really fell: the whole interval of the paired difference is below zero
    assert results[("ldn_4plus", "opioids")]["ci_high"] < 0
    for drug in ("nsaids", "other_analgesics"):
        for group in ("ldn_1", "ldn_2_3", "ldn_4plus"):
            row = results[(group, drug)]
            assert row["ci_low"] <= 0, f"{drug} rose significantly in {group}"


def test_did_contrast_is_the_difference_of_group_means(spark, demo_warehouse):
    warehouse, _, study_id = demo_warehouse
    groups = {
        (r["exposure_group"], r["drug_group"]): r["mean_diff"]
        for r in _rows(io.read_table(spark, warehouse / "studies" / study_id / "group_results"))
    }
    did = _rows(io.read_table(spark, warehouse / "studies" / study_id / "did_results"))
    assert {(r["drug_group"], r["contrast"]) for r in did} == {
        (d, "ldn_4plus_vs_ldn_1") for d in ("opioids", "nsaids", "other_analgesics")
    }
    for row in did:
        expected = groups[("ldn_4plus", row["drug_group"])] - groups[("ldn_1", row["drug_group"])]
        assert row["did"] == pytest.approx(expected, rel=1e-12)
        assert row["ci_low"] < row["did"] < row["ci_high"]
        assert 0 <= row["p_value"] <= 1


def test_every_output_table_is_written_and_the_run_recorded(spark, demo_warehouse):
    warehouse, _, study_id = demo_warehouse
    study_dir = warehouse / "studies" / study_id
    for table in (
        "cohort",
        "attrition",
        "consumption",
        "group_results",
        "did_results",
        "responders",
        "trajectories",
        "its_results",
        "episodes",
        "persistence",
        "km_curves",
        "cox_results",
        "runs",
    ):
        assert io.table_exists(study_dir / table), table  # fmt: skip
    runs = _rows(io.read_table(spark, study_dir / "runs"))
    assert [r["status"] for r in runs] == ["succeeded"]
    assert (study_dir / "report.html").is_file()


def test_export_writes_masked_csvs(spark, demo_warehouse, tmp_path):
    from rxcohort.export import export_study

    warehouse, _, study_id = demo_warehouse
    written = export_study(spark, study_id, out=tmp_path, warehouse=warehouse)
    names = {p.name for p in written}
    assert {"attrition.csv", "group_results.csv", "did_results.csv"} <= names
    assert not names & {"cohort.csv", "consumption.csv", "episodes.csv", "persistence.csv"}
    person_counts = (
        "n_persons",
        "users_pre",
        "users_post",
        "n_excluded",
        "at_risk",
        "events",
        "censored",
    )
    for path in written:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                for column in person_counts:
                    value = row.get(column)
                    if value in (None, "", "<5", "masked"):
                        continue
                    number = float(value)
                    assert not (1 <= number <= 4) or math.isnan(number), (path.name, column, value)


def test_median_ldn_dose_comes_out_near_the_calibrated_value(spark, demo_warehouse):
    warehouse, delivery, study_id = demo_warehouse
    target = json.loads((delivery / "truth.json").read_text())["calibration_targets"][
        "ldn_median_daily_dose_mg"
    ]
    dose = io.read_table(spark, warehouse / "studies" / study_id / "dose")
    median = dose.select(F.percentile("mean_daily_dose_mg", 0.5)).first()[0]
    assert target == 3.7
    assert abs(median - target) <= 0.5, median
    bands = {r["dose_band"]: r["count"] for r in dose.groupBy("dose_band").count().collect()}
    assert bands.get("low", 0) >= 0.8 * sum(bands.values())
