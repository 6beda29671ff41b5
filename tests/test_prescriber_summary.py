"""prescriber_summary on a hand-worked example; use_over_time and prescriber_summary in the
study file, the report and the export."""

from __future__ import annotations

from datetime import date

import pytest
from pyspark.sql.types import StringType, StructField, StructType

from rxcohort.errors import ConfigError
from rxcohort.spark import local_frame
from rxcohort.transforms.utilisation import prescriber_summary_table

PRESCRIBERS = StructType(
    [StructField(c, StringType()) for c in ("prescriber_id", "profession", "specialty")]
)
INDEX = StructType(
    [
        StructField("person_id", StringType()),
        StructField("dispense_date", StringType()),
        StructField("prescriber_id", StringType()),
    ]
)


@pytest.fixture(scope="module")
def summary(spark):
    prescribers = local_frame(
        spark,
        [
            ("gp1", "physician", "general_practice"),
            ("gp2", "physician", "general_practice"),
            ("gp3", "physician", "general_practice"),
            ("ne1", "physician", "neurology"),
            ("ne2", "physician", "neurology"),
            ("ph1", "physician", None),
            ("de1", "dentist", None),
        ],
        PRESCRIBERS,
    )
    index = local_frame(
        spark,
        [
            ("a", "2013-02-01", "gp1"),  # a: first from a GP
            ("a", "2013-05-01", "ne1"),
            ("b", "2013-03-01", "ne1"),  # b: a neurologist and a GP the same first day -> GP
            ("b", "2013-03-01", "gp2"),
            ("c", "2013-04-01", "ne2"),  # c: neurologist
            ("d", "2013-04-01", None),  # d: no prescriber recorded -> unknown
            ("e", "2013-06-01", "xx9"),  # e: a prescriber not in the register -> unknown
        ],
        INDEX,
    )
    frame = prescriber_summary_table(index, prescribers)
    return frame.set_index(["unit", "category", "level"]).sort_index()


def test_prescribers_against_the_register_by_hand(summary):
    # Prescribing: gp1, gp2, ne1, ne2 (xx9 is not registered); registered: 6 physicians, 1 dentist.
    assert summary.loc[("prescribers", "profession", "all"), ["n", "n_total"]].tolist() == [4, 7]
    assert summary.loc[("prescribers", "profession", "physician"), ["n", "n_total"]].tolist() == [
        4,
        6,
    ]
    assert summary.loc[("prescribers", "profession", "dentist"), ["n", "n_total"]].tolist() == [
        0,
        1,
    ]
    gps = summary.loc[("prescribers", "specialty", "general_practice")]
    assert (gps["n"], gps["n_total"]) == (2, 3)
    assert gps["share"] == pytest.approx(2 / 3)
    assert summary.loc[("prescribers", "specialty", "neurology"), "n"] == 2
    assert summary.loc[("prescribers", "specialty", "unknown"), ["n", "n_total"]].tolist() == [0, 1]
    assert summary.loc[("prescribers", "specialty", "all"), "n_total"] == 6  # physicians only


def test_users_by_their_first_prescriber_by_hand(summary):
    first = summary.loc[("users", "first_prescriber")]
    assert first.loc["all", "n"] == 5
    assert first.loc["general_practice", "n"] == 2  # a, b
    assert first.loc["neurology", "n"] == 1  # c
    assert first.loc["unknown", "n"] == 2  # d, e
    assert (first["n_total"] == 5).all()
    assert first.loc["general_practice", "share"] == pytest.approx(0.4)
    low, high = first.loc["general_practice", ["ci_low", "ci_high"]]
    assert low < 0.4 < high


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("{age_bands: [5, 18]}", "first age band must start at 0"),
        ("{age_bands: [0, 18, 18]}", "must increase"),
        ("{start: 2014-01-01, end: 2013-01-01}", "before the start"),
        ("{look_back: 365}", "look_back"),
    ],
)
def test_a_wrong_use_over_time_section_is_a_config_error(repo_root, tmp_path, section, message):
    from rxcohort.study.loader import load_study_source

    text = (repo_root / "cohorts" / "ldn_utilisation_2013_2014.yaml").read_text(encoding="utf-8")
    head, _, _ = text.partition("\nuse_over_time:")
    path = tmp_path / "bad.yaml"
    path.write_text(head + f"\nuse_over_time: {section}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_study_source(path)


def test_the_utilisation_study_counts_use_over_its_index_period(repo_root):
    from rxcohort.cohort.build import required_data_range
    from rxcohort.study.loader import load_study_source

    study = load_study_source(repo_root / "cohorts" / "ldn_utilisation_2013_2014.yaml").study
    assert study.use_over_time is not None
    assert study.use_over_time_period() == (date(2013, 1, 1), date(2014, 12, 31))
    assert study.use_over_time.band_labels() == ("0-17", "18-44", "45-64", "65-79", "80+")
    start, end = required_data_range(study)
    assert start <= date(2013, 1, 1) and end >= date(2014, 12, 31)


def test_the_demo_run_writes_a_prescriber_summary_the_report_and_export_show(
    spark, demo_warehouse, tmp_path
):
    from rxcohort import io
    from rxcohort.export import export_study

    warehouse, _, study_id = demo_warehouse
    study_dir = warehouse / "studies" / study_id
    table = io.read_table(spark, study_dir / "prescriber_summary").toPandas()
    assert {"profession", "specialty", "first_prescriber"} <= set(table["category"])
    html = (study_dir / "report.html").read_text(encoding="utf-8")
    assert 'id="prescribers" data-state="available"' in html
    # The reference study has no use_over_time section: said so, not drawn.
    assert 'id="use_over_time" data-state="not-available"' in html
    written = {p.name for p in export_study(spark, study_id, out=tmp_path, warehouse=warehouse)}
    assert "prescriber_summary.csv" in written
    exported = (tmp_path / "prescriber_summary.csv").read_text(encoding="utf-8").splitlines()
    for line in exported[1:]:
        n, n_total = line.split(",")[3:5]
        assert n not in {"1", "2", "3", "4"} and n_total not in {"1", "2", "3", "4"}
