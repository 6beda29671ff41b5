"""Expectation suites: they load fully or not at all, run on pandas and Spark, keep no values."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import pandas as pd
import pytest

from rxcohort.errors import ConfigError, QualityGateError
from rxcohort.quality import (
    ExpectationOutcome,
    load_suite,
    load_suites,
    render_quality_report,
    require_hard_expectations,
    run_suite,
)

SHIPPED = ("raw_files", "silver_dispensings", "silver_persons", "silver_prescribers")


def test_shipped_suites_load_every_expectation(repo_root):
    directory = repo_root / "expectations"
    assert sorted(p.stem for p in directory.glob("*.json")) == sorted(SHIPPED)
    for name, suite in load_suites(directory, SHIPPED).items():
        in_file = json.loads((directory / f"{name}.json").read_text())["expectations"]
        assert len(in_file) == suite.n_expectations == len(suite.gx_suite.expectations), name
        assert {e["meta"]["severity"] for e in in_file} <= {"hard", "soft"}


def _write_suite(tmp_path, expectations, name="s"):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"name": name, "expectations": expectations}))
    return path


GOOD = {
    "type": "expect_column_values_to_not_be_null",
    "kwargs": {"column": "a"},
    "meta": {"severity": "hard"},
}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"type": "expect_column_values_to_be_purple", "kwargs": {"column": "a"}},
            "expectation 2 (expect_column_values_to_be_purple) cannot be loaded",
        ),
        (
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"colum": "a"}},
            "expectation 2 (expect_column_values_to_not_be_null) cannot be loaded",
        ),
        (
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "a", "min_value": "x"},
            },
            "expectation 2 (expect_column_values_to_be_between) cannot be loaded",
        ),
    ],
)
def test_a_suite_with_an_expectation_gx_cannot_build_fails_loading(tmp_path, bad, message):
    path = _write_suite(tmp_path, [GOOD, {**bad, "meta": {"severity": "soft"}}])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_suite(path)


def test_every_expectation_needs_a_severity(tmp_path):
    path = _write_suite(tmp_path, [GOOD, {**GOOD, "meta": {"severity": "fatal"}}])
    with pytest.raises(ConfigError, match=r"meta\.severity must be hard or soft"):
        load_suite(path)


def test_suite_name_must_match_its_file(tmp_path):
    _write_suite(tmp_path, [GOOD], name="other")
    (tmp_path / "other.json").rename(tmp_path / "mine.json")
    with pytest.raises(ConfigError, match="is named 'other', not 'mine'"):
        load_suites(tmp_path, ["mine"])


def test_an_empty_or_broken_suite_file_fails(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_suite(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="non-empty 'expectations'"):
        load_suite(_write_suite(tmp_path, []))


PRIVACY_SUITE = [
    {
        "type": "expect_table_row_count_to_be_between",
        "kwargs": {"min_value": 1},
        "meta": {"severity": "hard"},
    },
    {
        "type": "expect_column_values_to_not_be_null",
        "kwargs": {"column": "death_date"},
        "meta": {"severity": "soft"},
    },
    {
        "type": "expect_column_values_to_match_regex",
        "kwargs": {"column": "person_id", "regex": "^P[0-9]+$"},
        "meta": {"severity": "hard"},
    },
    {
        "type": "expect_column_min_to_be_between",
        "kwargs": {"column": "birth_year", "min_value": 1900},
        "meta": {"severity": "soft"},
    },
    {
        "type": "expect_column_distinct_values_to_be_in_set",
        "kwargs": {"column": "person_id", "value_set": ["P1"]},
        "meta": {"severity": "soft"},
    },
]
PEOPLE = [("P1", 1880, date(2014, 2, 3)), ("P2", 1950, None), ("SECRET9", 1960, None)]


def _outcomes_key(outcomes):
    return [(o.index, o.expectation, o.success, o.observed) for o in outcomes]


EXPECTED_OUTCOMES = [
    (0, "expect_table_row_count_to_be_between", True, {"observed_value": 3}),
    (
        1,
        "expect_column_values_to_not_be_null",
        False,
        {"element_count": 3, "unexpected_count": 2, "unexpected_percent": pytest.approx(200 / 3)},
    ),
    (
        2,
        "expect_column_values_to_match_regex",
        False,
        {
            "element_count": 3,
            "unexpected_count": 1,
            "unexpected_percent": pytest.approx(100 / 3),
            "missing_count": 0,
            "missing_percent": 0.0,
            "unexpected_percent_total": pytest.approx(100 / 3),
            "unexpected_percent_nonmissing": pytest.approx(100 / 3),
        },
    ),
    (3, "expect_column_min_to_be_between", False, {}),  # the minimum is one person's value
    # observed_value would list person ids; the count of distinct values outside the set stays
    (4, "expect_column_distinct_values_to_be_in_set", False, {"unexpected_count": 2}),
]


def test_run_suite_on_pandas_keeps_counts_and_drops_values(tmp_path):
    suite = load_suite(_write_suite(tmp_path, PRIVACY_SUITE))
    frame = pd.DataFrame(PEOPLE, columns=["person_id", "birth_year", "death_date"])
    outcomes = run_suite(suite, frame)
    assert _outcomes_key(outcomes) == EXPECTED_OUTCOMES
    text = json.dumps([o.observed for o in outcomes], default=str)
    assert "SECRET9" not in text and "1880" not in text and "2014" not in text


def test_run_suite_on_spark_gives_the_same_outcomes(spark, tmp_path):
    suite = load_suite(_write_suite(tmp_path, PRIVACY_SUITE))
    frame = spark.createDataFrame(PEOPLE, "person_id string, birth_year int, death_date date")
    assert _outcomes_key(run_suite(suite, frame)) == EXPECTED_OUTCOMES


def _outcome(severity, success, **observed):
    return ExpectationOutcome(
        suite="silver_x",
        index=0,
        expectation="expect_column_values_to_not_be_null",
        column="person_id",
        severity=severity,
        success=success,
        observed=observed,
    )


def test_the_gate_closes_on_hard_failures_only():
    require_hard_expectations([_outcome("soft", False), _outcome("hard", True)])
    with pytest.raises(QualityGateError) as info:
        require_hard_expectations(
            [_outcome("hard", False, unexpected_count=3), _outcome("soft", False)],
            report="wh/quality/reports/L1.html",
        )
    assert str(info.value) == (
        "1 hard quality expectation(s) failed, nothing was committed: "
        "silver_x: expect_column_values_to_not_be_null(person_id) (3 rows); "
        "report: wh/quality/reports/L1.html"
    )


def test_report_is_self_contained_and_escaped():
    outcomes = [
        _outcome("hard", False, unexpected_count=2),
        ExpectationOutcome("raw_files", 1, "expect_x", "<script>", "soft", True, {}, {"max": 0.5}),
    ]
    page = render_quality_report(
        title="ingest",
        load_id="L1",
        generated_at="2016-03-02T08:00:00",
        summary=[("persons", "3 read")],
        outcomes=outcomes,
        quarantine=[("dispensings", "zero_packs", 1234)],
    )
    assert "Gate closed: 1 hard expectation(s) failed" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "zero_packs" in page and "1,234" in page
    assert "rows failing=2" in page and "max=0.5" in page
    assert "unexpected_count" not in page  # GX's own result keys are not shown
    assert "src=" not in page and "href=" not in page  # nothing to fetch


def test_the_page_hides_row_counts_of_one_to_four_and_what_gives_them_back():
    from rxcohort.quality.report import protect_page

    counts = {  # persons.csv: 250 read = 247 clean + 3 quarantined + 0 duplicates
        "read": 250,
        "clean": 247,
        "quarantined": 3,
        "duplicates": 0,
        "reason birth_year": 3,
    }
    totals = [
        ("read", ["clean", "quarantined", "duplicates"]),
        ("quarantined", ["reason birth_year"]),
    ]
    outcomes = [
        _outcome("soft", False, element_count=250, unexpected_count=3, unexpected_percent=1.2),
        replace(
            _outcome(
                "soft", False, element_count=250, unexpected_count=40, unexpected_percent=16.0
            ),
            index=1,
        ),
    ]
    shown, protected = protect_page(counts, totals, outcomes)
    assert shown["quarantined"] == shown["reason birth_year"] == "<5"
    assert shown["duplicates"] == 0
    # 250 - 247 - 0 would be the 3: one of the two goes.
    assert "masked" in (shown["read"], shown["clean"])
    first, second = (o.observed for o in protected)
    assert first["unexpected_count"] == "<5" and first["unexpected_percent"] == "masked"
    # 250 checked, 40 failing: no small count in it, shown whole (the 210 passing is no secret).
    assert second == outcomes[1].observed
    # Without the rows read, the clean rows or the percentage, nothing pins the 3: every
    # published relation leaves at least two unknowns (checked by hand above).
    visible = [v for v in shown.values() if isinstance(v, int)]
    assert 3 not in visible
