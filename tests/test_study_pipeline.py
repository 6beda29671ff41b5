"""The whole study pipeline against the plain-Python reading of CONTRACT §5 (tests/reference_impl).

Random silver-shaped rows (crowded around the rules' boundary days) are written as Delta tables,
``run_study`` builds the reference study, and its tables must equal the oracle's exactly. Then
the inputs change and ``--as-of`` must rebuild the first run's tables from the old versions.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from reference_impl import dispensing, ldn, person, random_silver, reference_study
from rxcohort import io
from rxcohort.cohort.build import COHORT_COLUMNS
from rxcohort.errors import RxCohortError
from rxcohort.pipelines import run_study
from rxcohort.schemas import SILVER_DISPENSINGS, SILVER_PERSONS
from rxcohort.study import load_study_source

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "cohorts" / "ldn_opioids_2013.yaml"
DELIVERIES_COLUMNS = (
    "load_id string, registry string, extract_date date, period_start date, period_end date"
)

pytestmark = pytest.mark.slow


def write_silver(
    spark, warehouse: Path, persons, rows, *, period=(date(2011, 1, 1), date(2015, 12, 31))
):
    dispensings = spark.createDataFrame(
        [tuple(r[f.name] for f in SILVER_DISPENSINGS.fields) for r in rows], SILVER_DISPENSINGS
    )
    io.write_table(
        dispensings,
        warehouse / "silver" / "dispensings",
        partition_by=["dispense_year"],
        sort_within_partitions=["atc_code"],
    )
    io.write_table(
        spark.createDataFrame(
            [tuple(r[f.name] for f in SILVER_PERSONS.fields) for r in persons], SILVER_PERSONS
        ),
        warehouse / "silver" / "persons",
    )
    io.write_table(
        spark.createDataFrame([("L1", "NorPD", period[1], *period)], DELIVERIES_COLUMNS),
        warehouse / "silver" / "deliveries",
    )


def table_rows(
    spark, path: Path, *, version: int | None = None, order: tuple[str, ...]
) -> list[dict]:
    rows = [r.asDict() for r in io.read_table(spark, path, version=version).collect()]
    return sorted(rows, key=lambda r: tuple(r[c] for c in order))


def consumption_key(row):
    return (row["person_id"], row["drug_group"], row["window"])


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    warehouse = tmp_path_factory.mktemp("warehouse")
    persons, rows = random_silver(seed=2013, n_persons=300)
    write_silver(spark, warehouse, persons, rows)
    first = run_study(spark, STUDY, warehouse=warehouse)
    return warehouse, persons, rows, first


def test_run_matches_the_reference_implementation(spark, built):
    warehouse, persons, rows, first = built
    expected = reference_study(rows, persons)
    study_dir = warehouse / "studies" / "ldn_opioids_2013"
    assert len(expected.cohort) > 30, "the generated data should give a sizeable cohort"

    cohort = table_rows(spark, study_dir / "cohort", order=("person_id",))
    assert [list(r) for r in cohort][:1] == [list(COHORT_COLUMNS)]
    assert cohort == expected.cohort

    attrition = table_rows(spark, study_dir / "attrition", order=("step",))
    assert [(r["step"], r["n_persons"], r["n_excluded"]) for r in attrition] == expected.attrition
    assert [r["criterion"] for r in attrition] == [
        "first dispensing of LDN (ATC N07BB04, strength <= 5 mg, packs > 0) from 2013-01-01 to "
        "2013-12-31 (the index date)",
        "new users: no dispensing of LDN before the index date (look-back: all earlier data)",
        "full follow-up: no death or emigration before index + 364 days",
        "prior_opioid_use: at least 1 dispensing of opioids (ATC N02A) on days -365 to -1 from "
        "index",
    ]

    consumption = table_rows(
        spark, study_dir / "consumption", order=("person_id", "drug_group", "window")
    )
    assert consumption == sorted(expected.consumption, key=consumption_key)

    summary = dict(first.summary_rows())
    assert summary["run id"] == first.run_id
    groups = {
        g: sum(1 for p in expected.cohort if p["exposure_group"] == g)
        for g in ("ldn_1", "ldn_2_3", "ldn_4plus")
    }
    assert {k: summary[f"exposure group {k}"] for k in groups} == {
        k: str(v) for k, v in groups.items()
    }


def test_as_of_rebuilds_a_past_run_from_its_input_versions(spark, built, tmp_path):
    warehouse, persons, rows, first = built
    study_dir = warehouse / "studies" / "ldn_opioids_2013"
    # New data arrives: a new LDN user with prior opioid use, and more opioids for everyone.
    extra = [ldn("NEW01", date(2013, 3, 1)), dispensing("NEW01", date(2012, 9, 1), "N02AA01")]
    extra += [
        dispensing(p["person_id"], date(2013, 1, 15), "N02AA01", ddd=1.0) for p in persons[:50]
    ]
    io.write_table(
        spark.createDataFrame(
            [tuple(r[f.name] for f in SILVER_DISPENSINGS.fields) for r in extra], SILVER_DISPENSINGS
        ),
        warehouse / "silver" / "dispensings",
        mode="append",
        partition_by=["dispense_year"],
    )
    io.write_table(
        spark.createDataFrame(
            [tuple(person("NEW01")[f.name] for f in SILVER_PERSONS.fields)], SILVER_PERSONS
        ),
        warehouse / "silver" / "persons",
        mode="append",
    )

    # The study file has changed since: the rebuild uses the definition stored with the run.
    edited = tmp_path / STUDY.name
    edited.write_text(
        STUDY.read_text(encoding="utf-8").replace("min_count: 1", "min_count: 3"), encoding="utf-8"
    )
    messages: list[str] = []
    rebuilt = run_study(
        spark, edited, warehouse=warehouse, as_of=first.run_id, progress=messages.append
    )
    assert (
        f"the study file has changed since run {first.run_id}; rebuilding with that run's definition"
        in messages
    )

    assert rebuilt.input_versions == first.input_versions
    for table, order in [
        ("cohort", ("person_id",)),
        ("attrition", ("step",)),
        ("consumption", ("person_id", "drug_group", "window")),
    ]:
        before = table_rows(
            spark, study_dir / table, version=first.output_versions[table], order=order
        )
        after = table_rows(
            spark, study_dir / table, version=rebuilt.output_versions[table], order=order
        )
        assert after == before, table
        assert rebuilt.output_versions[table] > first.output_versions[table]

    runs = {r["run_id"]: r for r in table_rows(spark, study_dir / "runs", order=("run_id",))}
    source = load_study_source(STUDY)
    assert runs[first.run_id]["as_of_run_id"] is None
    assert runs[rebuilt.run_id]["as_of_run_id"] == first.run_id
    for run in (runs[first.run_id], runs[rebuilt.run_id]):
        assert run["status"] == "succeeded"
        assert run["study_id"] == "ldn_opioids_2013"
        assert run["definition_sha256"] == source.sha256
        assert run["definition_yaml"] == source.text
        assert run["input_versions"] == {
            "silver/dispensings": 0,
            "silver/persons": 0,
            "silver/deliveries": 0,
        }
        assert run["n_persons"] == len(reference_study(rows, persons).cohort)
        assert run["error"] is None
        assert run["started_at"] <= run["finished_at"]


def test_a_study_beyond_the_delivered_period_fails_and_is_recorded(spark, tmp_path):
    warehouse = tmp_path / "wh"
    write_silver(
        spark,
        warehouse,
        [person("A")],
        [ldn("A", date(2013, 5, 1))],
        period=(date(2013, 1, 1), date(2013, 12, 31)),
    )
    with pytest.raises(RxCohortError) as raised:
        run_study(spark, STUDY, warehouse=warehouse)
    assert str(raised.value) == (
        "study ldn_opioids_2013 needs dispensings from 2012-01-02 to 2014-12-30, but the "
        "deliveries in the warehouse cover 2013-01-01 to 2013-12-31"
    )
    (run,) = table_rows(
        spark, warehouse / "studies" / "ldn_opioids_2013" / "runs", order=("run_id",)
    )
    assert run["status"] == "failed"
    assert run["error"].startswith("RxCohortError: study ldn_opioids_2013 needs dispensings")
    assert run["n_persons"] is None
    assert not io.table_exists(warehouse / "studies" / "ldn_opioids_2013" / "cohort")


def test_a_warehouse_without_silver_tables_says_what_to_do(spark, tmp_path):
    with pytest.raises(RxCohortError, match=r"no silver/dispensings table in .*rxcohort ingest"):
        run_study(spark, STUDY, warehouse=tmp_path)


def test_a_code_that_matches_no_dispensing_is_named(spark):
    from rxcohort.errors import ConfigError
    from rxcohort.pipelines.study import check_codes_present
    from rxcohort.study import parse_study

    text = (Path(__file__).resolve().parents[1] / "cohorts" / "ldn_opioids_2013.yaml").read_text()
    study = parse_study(
        text.replace("other_analgesics: [N02B]", "other_analgesics: [N02B, N02X]"),
        study_id="x",
        source="x.yaml",
    ).study
    rows = [
        ("N07BB04",),  # the index drug
        ("N02AX02",),  # opioids
        ("M01AE01",),  # nsaids
        ("N02BE01",),  # other analgesics; nothing starts with N02X
    ]
    dispensings = spark.createDataFrame(rows, "atc_code string")
    assert check_codes_present(study, dispensings) == ["N02X"]
    with pytest.raises(ConfigError, match=r"ATC code\(s\) N02X match no dispensing"):
        check_codes_present(study, dispensings, strict=True)
    assert (
        check_codes_present(
            study, dispensings.union(spark.createDataFrame([("N02XA1",)], "atc_code string"))
        )
        == []
    )
