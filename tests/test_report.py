"""The study report: every section, small counts masked in text and figures, nothing per person."""

from __future__ import annotations

import base64
import re
from datetime import date, datetime
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from rxcohort import io
from rxcohort.cli import app
from rxcohort.errors import TableNotFoundError
from rxcohort.pipelines.runs import RUNS_SCHEMA
from rxcohort.report import SECTION_IDS, ReportData, build_report, render_report
from rxcohort.report.html import count_text, mask_counts_in_text
from rxcohort.report.plotdata import (
    dose_bins,
    histogram_table,
    km_plot_points,
    plottable_did,
    plottable_window_means,
)
from rxcohort.stats import compute_outcome_tables, to_spark
from rxcohort.transforms import utilisation

STUDY = "ldn_opioids_2013"
REPO = Path(__file__).resolve().parents[1]

# -- reading the rendered page ----------------------------------------------------------------


class _Page(HTMLParser):
    """Texts of class="count" elements, section ids and states, image sources, all text."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: list[str] = []
        self.sections: dict[str, str] = {}
        self.images: list[str] = []
        self.text: list[str] = []
        self._in_count = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections[attrs["id"]] = attrs.get("data-state", "")
        if tag == "img":
            self.images.append(attrs["src"])
        if "count" in (attrs.get("class") or "").split():
            self._in_count += 1
            self.counts.append("")

    def handle_endtag(self, tag):
        if tag == "span" and self._in_count:
            self._in_count -= 1

    def handle_data(self, data):
        self.text.append(data)
        if self._in_count:
            self.counts[-1] += data


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _section(html: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}"[^>]*>(.*?)</section>', html, flags=re.S)
    assert match, section_id
    return match.group(1)


# -- pure parts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0, "0"), (1, "&lt;5"), (4, "&lt;5"), (5, "5"), (12345, "12,345"), ("<5", "&lt;5")],
)
def test_count_text_shows_zero_and_five_up_and_masks_one_to_four(value, shown):
    assert count_text(value) == f'<span class="count">{shown}</span>'


def test_counts_written_into_free_text_are_masked():
    note = "sex: 1 rare level(s) with 3 event(s) in all left out (4 persons); 12 persons kept"
    assert mask_counts_in_text(note) == (
        "sex: 1 rare level(s) with <5 event(s) in all left out (<5 persons); 12 persons kept"
    )
    assert mask_counts_in_text("at least 1 dispensing in window 2") == (
        "at least 1 dispensing in window 2"
    )


def test_window_means_get_t_intervals_and_bars_on_one_to_four_persons_or_users_are_hidden():
    means = pd.DataFrame(
        [
            ("g5", "opioids", "pre", 5, 5, 10.0, 2.0),
            ("g5", "nsaids", "pre", 5, 4, 3.0, 1.0),  # 4 users
            ("g4", "opioids", "pre", 4, 4, 10.0, 2.0),  # 4 persons
            ("g5", "nsaids", "post", 5, 0, 0.0, 0.0),  # nobody: 0 is shown
        ],
        columns=[
            "exposure_group",
            "drug_group",
            "window",
            "n_persons",
            "n_users",
            "mean_ddd",
            "sd_ddd",
        ],
    )
    out = plottable_window_means(means)
    # t(0.975, 4) * 2 / sqrt(5) = 2.483327996 (scipy.stats.t.ppf)
    assert out.loc[0, "ci_low"] == pytest.approx(10 - 2.483327996)
    assert out.loc[0, "ci_high"] == pytest.approx(10 + 2.483327996)
    assert out["hidden"].tolist() == [False, True, True, False]
    assert out.loc[[1, 2], ["mean_ddd", "ci_low", "ci_high"]].isna().all().all()
    assert out.loc[3, "mean_ddd"] == 0.0


def test_did_rows_resting_on_one_to_four_persons_or_users_are_not_plotted():
    did = pd.DataFrame(
        {
            "drug_group": ["opioids", "nsaids"],
            "contrast": ["high_vs_low"] * 2,
            "did": [-5.0, 1.0],
            "ci_low": [-9.0, -2.0],
            "ci_high": [-1.0, 4.0],
            "n_persons_high": [20, 20],
            "n_persons_low": [10, 10],
            "users_pre_high": [20, 3],
            "users_post_high": [15, 9],
            "users_pre_low": [10, 0],
            "users_post_low": [9, 6],
        }
    )
    assert plottable_did(did)["drug_group"].tolist() == ["opioids"]


def _curve(rows):
    return pd.DataFrame(
        rows, columns=["time", "at_risk", "events", "censored", "survival", "ci_low", "ci_high"]
    )


def test_km_points_merge_steps_until_five_events_and_stop_before_one_to_four_at_risk():
    curve = _curve(
        [
            (0, 20, 0, 0, 1.00, 1.00, 1.00),
            (10, 20, 2, 0, 0.90, 0.80, 0.95),
            (20, 18, 1, 0, 0.85, 0.75, 0.92),
            (40, 17, 3, 1, 0.70, 0.60, 0.80),
            (70, 13, 5, 0, 0.43, 0.30, 0.55),
            (100, 8, 1, 2, 0.38, 0.25, 0.50),
            (130, 5, 1, 0, 0.30, 0.15, 0.45),
        ]
    )
    # Day 30: 3 events since day 0 - not shown. Day 60: 6 events - shown with the estimate of
    # day 40. Day 90: 5 more - shown. Day 120: 1 more - not shown. Day 150: 4 at risk - stop.
    expected = pd.DataFrame(
        [(0.0, 1.0, 1.0, 1.0), (60.0, 0.70, 0.60, 0.80), (90.0, 0.43, 0.30, 0.55)],
        columns=["time", "survival", "ci_low", "ci_high"],
    )
    pd.testing.assert_frame_equal(km_plot_points(curve, step_days=30), expected)


def test_km_points_of_a_stratum_of_four_persons_are_empty_and_a_curve_may_reach_zero():
    four = _curve([(0, 4, 0, 0, 1.0, 1.0, 1.0), (10, 4, 4, 0, 0.0, 0.0, 0.0)])
    assert km_plot_points(four, step_days=30).empty
    six = _curve([(0, 6, 0, 0, 1.0, 1.0, 1.0), (10, 6, 6, 0, 0.0, 0.0, 0.0)])
    assert km_plot_points(six, step_days=30)["survival"].tolist() == [1.0, 0.0]


def test_dose_bins_stay_inside_one_dose_band_and_bins_of_one_to_four_persons_are_hidden():
    bins = dose_bins(width=0.5, upper=5.0)
    labels = [b.label for b in bins]
    assert labels[:2] == ["0 to <0.5", "0.5 to <1"]
    assert labels[-3:] == ["4.5 to 5", ">5", "not estimated"]
    counts = pd.DataFrame({"bin_order": [1, 4, 9, -1], "n_persons": [3, 6, 12, 2]})
    table = histogram_table(counts, bins)
    assert len(table) == 12
    hidden = dict(zip(table["bin_order"], table["hidden"], strict=True))
    assert hidden[1] and hidden[-1] and not hidden[4] and not hidden[9] and not hidden[0]


def test_every_section_says_not_available_when_there_is_no_data():
    html = render_report(ReportData(study_id="empty", generated_at="2025-01-01 00:00"))
    page = _parse(html)
    assert list(page.sections) == list(SECTION_IDS)
    assert set(page.sections.values()) == {"not-available"}
    assert html.count("Not available in this run") == len(SECTION_IDS)


# -- a warehouse with known counts ------------------------------------------------------------------

# ldn_1 has 3 persons, so everything about it is masked; ldn_4plus has 2 NSAID users before.
GROUPS = {"ldn_1": range(1, 4), "ldn_2_3": range(4, 11), "ldn_4plus": range(11, 22)}
FEMALE = {1, 2} | {4, 5, 6, 7, 8} | set(range(11, 19))


def _pid(i: int) -> str:
    return f"P-SECRET-{i:03d}"


def _cohort_rows():
    rows = []
    for group, ids in GROUPS.items():
        for k, i in enumerate(ids):
            age = 40 + k if group == "ldn_4plus" else 30 + i
            rows.append((_pid(i), date(2013, 3, 1), group, 2 if i in FEMALE else 1, age))
    return rows


def _consumption_rows():
    rows = []
    for group, ids in GROUPS.items():
        after = {"ldn_1": 100.0, "ldn_2_3": 90.0, "ldn_4plus": 60.0}[group]
        for i in ids:
            rows.append((_pid(i), "opioids", "pre", 100.0 + i, 2, True))
            rows.append((_pid(i), "opioids", "post", after + i % 3, 2, True))
            nsaid_pre = 20.0 if i in (11, 12) else 0.0
            nsaid_post = 10.0 if 11 <= i <= 16 else 0.0
            rows.append((_pid(i), "nsaids", "pre", nsaid_pre, int(nsaid_pre > 0), nsaid_pre > 0))
            rows.append(
                (_pid(i), "nsaids", "post", nsaid_post, int(nsaid_post > 0), nsaid_post > 0)
            )
    return rows


def _trajectories():
    rows = []
    for group, ids in GROUPS.items():
        for drug in ("opioids", "nsaids"):
            for month in (-2, -1, 0, 1):
                users = 3 if (group, drug, month) == ("ldn_4plus", "nsaids", 0) else len(ids)
                rows.append((group, drug, month, len(ids), users, 8.0 - month, 2.0, 7.0, 9.0))
    frame = pd.DataFrame(
        rows,
        columns=[
            "exposure_group",
            "drug_group",
            "month",
            "n_persons",
            "n_users",
            "mean_ddd",
            "sd_ddd",
            "ci_low",
            "ci_high",
        ],
    )
    return frame.astype(
        {
            "month": "int32",
            "mean_ddd": "Float64",
            "sd_ddd": "Float64",
            "ci_low": "Float64",
            "ci_high": "Float64",
        }
    )


KM_SCHEMA = (
    "stratum_variable string, stratum string, time double, at_risk long, events long, "
    "censored long, survival double, ci_low double, ci_high double"
)
KM_ROWS = [
    ("overall", "all", 0.0, 20, 0, 0, 1.0, 1.0, 1.0),
    ("overall", "all", 40.0, 20, 6, 1, 0.70, 0.60, 0.80),
    ("overall", "all", 70.0, 13, 5, 0, 0.43, 0.30, 0.55),
    ("sex", "female", 0.0, 16, 0, 0, 1.0, 1.0, 1.0),
    ("sex", "female", 40.0, 16, 8, 0, 0.5, 0.3, 0.7),
    ("sex", "male", 0.0, 4, 0, 0, 1.0, 1.0, 1.0),
    ("sex", "male", 40.0, 4, 3, 0, 0.25, 0.05, 0.6),
]
MEDIANS_SCHEMA = (
    "stratum_variable string, stratum string, n_persons long, n_events long, median_time double, "
    "median_ci_low double, median_ci_high double"
)
MEDIANS_ROWS = [
    ("overall", "all", 20, 11, 70.0, 40.0, None),
    ("sex", "female", 16, 8, 40.0, 40.0, 70.0),
    ("sex", "male", 4, 3, 40.0, 40.0, 40.0),
]
COX_SCHEMA = (
    "covariate string, level string, reference string, n_persons long, n_events long, "
    "coef double, se_coef double, hr double, ci_low double, ci_high double, p_value double, "
    "ph_test_stat double, ph_p_value double, status string, note string"
)
COX_ROWS = [
    (
        "(model)",
        None,
        None,
        20,
        11,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        "ok",
        "index_dose_band: 1 rare level(s) with 2 event(s) in all left out (3 persons)",
    ),
    (
        "age_at_index",
        "per 10",
        None,
        20,
        11,
        0.1,
        0.2,
        1.105,
        0.75,
        1.63,
        0.61,
        0.5,
        0.48,
        "ok",
        None,
    ),
    ("sex", "male", "female", 4, 3, 0.3, 0.5, 1.35, 0.5, 3.6, 0.55, 0.1, 0.75, "ok", None),
]
QUALITY_SCHEMA = (
    "load_id string, suite string, expectation_index int, expectation string, column string, "
    "severity string, success boolean, observed string, arguments string, run_time timestamp"
)
QUALITY_ROWS = [
    (
        "L1",
        "silver_persons",
        0,
        "expect_column_values_to_not_be_null",
        "person_id",
        "hard",
        True,
        '{"unexpected_count": 0}',
        "{}",
        datetime(2025, 1, 2),
    ),
    (
        "L1",
        "silver_persons",
        1,
        "expect_column_values_to_be_between",
        "birth_year",
        "soft",
        False,
        '{"unexpected_count": 3, "unexpected_percent": 0.3}',
        "{}",
        datetime(2025, 1, 2),
    ),
    (
        "L1",
        "silver_dispensings",
        0,
        "expect_column_values_to_not_be_null",
        "ddd",
        "soft",
        False,
        '{"unexpected_count": 250, "unexpected_percent": 2.5}',
        "{}",
        datetime(2025, 1, 2),
    ),
    (
        "L0",
        "silver_persons",
        0,
        "expect_column_values_to_not_be_null",
        "person_id",
        "hard",
        False,
        '{"unexpected_count": 77}',
        "{}",
        datetime(2024, 1, 2),
    ),
]


def _write_study(spark, root: Path) -> None:
    study = root / "studies" / STUDY
    cohort = spark.createDataFrame(
        _cohort_rows(),
        "person_id string, index_date date, exposure_group string, sex int, age_at_index int",
    )
    consumption = spark.createDataFrame(
        _consumption_rows(),
        "person_id string, drug_group string, window string, ddd double, n_dispensings long, "
        "is_user boolean",
    )
    io.write_table(cohort, study / "cohort")
    io.write_table(consumption, study / "consumption")
    attrition = spark.createDataFrame(
        [
            (0, "first LDN dispensing in 2013", 120, 0),
            (1, "new users", 117, 3),
            (2, "prior opioid use", 21, 96),
        ],
        "step int, criterion string, n_persons long, n_excluded long",
    )
    io.write_table(attrition, study / "attrition")
    outcomes = compute_outcome_tables(
        cohort.select("person_id", "exposure_group").toPandas(),
        consumption.toPandas(),
        group_order=list(GROUPS),
        drug_groups=["opioids", "nsaids"],
        contrasts=[("ldn_4plus", "ldn_1"), ("ldn_4plus", "ldn_2_3")],
    )
    outcomes["trajectories"] = _trajectories()
    for name, frame in outcomes.items():
        io.write_table(to_spark(spark, frame, table=name), study / name)
    io.write_table(spark.createDataFrame(KM_ROWS, KM_SCHEMA), study / "km_curves")
    io.write_table(spark.createDataFrame(MEDIANS_ROWS, MEDIANS_SCHEMA), study / "km_medians")
    io.write_table(spark.createDataFrame(COX_ROWS, COX_SCHEMA), study / "cox_results")
    doses = [(_pid(i), 0.8, "ultra_low") for i in (1, 2, 3)]
    doses += [(_pid(i), 2.0, "low") for i in range(4, 10)]
    doses += [(_pid(i), 4.5, "low") for i in range(10, 22)]
    io.write_table(
        spark.createDataFrame(
            doses, "person_id string, mean_daily_dose_mg double, dose_band string"
        ),
        study / "persistence",
    )
    _write_utilisation(spark, study)
    io.write_table(spark.createDataFrame(QUALITY_ROWS, QUALITY_SCHEMA), root / "quality" / "runs")
    io.write_table(
        spark.createDataFrame(
            [
                (
                    "L1",
                    "NorPD (synthetic)",
                    date(2016, 3, 30),
                    date(2011, 1, 1),
                    date(2015, 12, 31),
                    1000,
                )
            ],
            "load_id string, registry string, extract_date date, period_start date, "
            "period_end date, rows_read long",
        ),
        root / "silver" / "deliveries",
    )
    yaml_text = (REPO / "cohorts" / f"{STUDY}.yaml").read_text(encoding="utf-8")
    run = (
        "RUN-1",
        STUDY,
        "succeeded",
        None,
        "ab" * 32,
        yaml_text,
        "0.1.0",
        "c0ffee",
        {"silver/deliveries": 0, "silver/dispensings": 4},
        # What the run wrote: every table of the study directory (the report reads these).
        {p.name: io.table_version(p) for p in sorted(study.iterdir()) if io.table_exists(p)},
        21,
        datetime(2025, 1, 3, 10, 0),
        datetime(2025, 1, 3, 10, 5),
        None,
    )
    io.write_table(spark.createDataFrame([run], RUNS_SCHEMA), study / "runs")


def _write_utilisation(spark, study: Path) -> None:
    """use_over_time for 2013 (LDN users among 2,000 inhabitants) and prescriber_summary."""
    bounds, labels = (0, 18, 45, 65, 80), ("0-17", "18-44", "45-64", "65-79", "80+")
    groups = pd.DataFrame(
        {
            "sex": [1, 2, 1, 2],
            "birth_year": [1950, 1950, 1980, 1980],
            "left_on": [None, None, None, None],
            "n": [400, 600, 500, 500],
        }
    )
    months = [date(2013, m, 1) for m in range(1, 13)]
    users = pd.DataFrame(
        [("LDN", "month", m, sex, 1950, 5 + i) for i, m in enumerate(months) for sex in (1, 2)]
        + [("LDN", "year", date(2013, 1, 1), sex, 1950, 40) for sex in (1, 2)],
        columns=["drug", "period_type", "period_start", "sex", "birth_year", "n"],
    )
    first = pd.DataFrame(
        [("LDN", m, sex, 1950, 2) for m in months for sex in (1, 2)],
        columns=["drug", "month", "sex", "birth_year", "n"],
    )
    table = utilisation.use_over_time_table(
        groups,
        users,
        first,
        drugs=["LDN"],
        periods=utilisation.calendar_periods(date(2013, 1, 1), date(2013, 12, 31)),
        bounds=bounds,
        labels=labels,
        new_users_from=date(2013, 1, 1),
    )
    io.write_table(to_spark(spark, table, table="use_over_time"), study / "use_over_time")
    prescribers = spark.createDataFrame(
        [(f"R{i}", "physician", "general_practice" if i < 30 else "neurology") for i in range(40)]
        + [(f"N{i}", "dentist", None) for i in range(10)],
        "prescriber_id string, profession string, specialty string",
    )
    index = spark.createDataFrame(
        [(_pid(i), date(2013, 1 + i % 12, 2), f"R{i % 35}") for i in range(120)],
        "person_id string, dispense_date date, prescriber_id string",
    )
    summary = utilisation.prescriber_summary_table(index, prescribers)
    io.write_table(
        to_spark(spark, summary, table="prescriber_summary"), study / "prescriber_summary"
    )


@pytest.fixture(scope="module")
def report_warehouse(spark, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report_wh")
    _write_study(spark, root)
    return root


@pytest.fixture(scope="module")
def report_html(spark, report_warehouse) -> str:
    path = build_report(spark, warehouse=report_warehouse, study_id=STUDY)
    assert path == report_warehouse / "studies" / STUDY / "report.html"
    return path.read_text(encoding="utf-8")


@pytest.mark.slow
def test_report_has_every_section_with_data(report_html):
    page = _parse(report_html)
    assert list(page.sections) == list(SECTION_IDS)
    assert set(page.sections.values()) == {"available"}
    assert "Not available in this run" not in report_html
    # Study in plain words from the definition stored with the run.
    assert "The cohort consists of persons with a dispensing of LDN" in _section(
        report_html, "study"
    )
    # Bars, forest plot, trajectories, responders, KM curves, dose histogram, use over time.
    assert len(page.images) == 7
    for src in page.images:
        assert (
            base64.b64decode(src.removeprefix("data:image/png;base64,"))[:8] == b"\x89PNG\r\n\x1a\n"
        )


@pytest.mark.slow
def test_report_never_shows_a_count_of_one_to_four_persons(report_html):
    page = _parse(report_html)
    assert page.counts, "person counts are marked up"
    assert not [c for c in page.counts if c.strip() in {"1", "2", "3", "4"}]
    masked = {c for c in page.counts if c.strip() == "<5"}
    assert masked
    attrition = _section(report_html, "attrition")
    assert 'Excluded: <span class="count">&lt;5</span>' in attrition  # 3 excluded
    assert 'ldn_1</div><div class="n">n = <span class="count">&lt;5</span>' in attrition
    assert 'ldn_4plus</div><div class="n">n = <span class="count">11</span>' in attrition
    # The cohort of 21 is hidden in the attrition (the Kaplan-Meier table has 20 of them),
    # and so in the provenance, which would show it otherwise.
    provenance = _section(report_html, "provenance")
    assert 'Persons in the cohort</th><td><span class="count">masked</span>' in provenance
    assert ">21<" not in provenance
    text = "".join(page.text)
    assert "(<5 persons)" in text and "(3 persons)" not in text  # the Cox note
    assert "<5 event(s)" in text


@pytest.mark.slow
def test_table1_counts_shares_and_ages_by_exposure_group(report_html):
    table1 = _section(report_html, "table1")
    rows = {
        m.group(1): re.findall(r'<td class="num">(.*?)</td>', m.group(2))
        for m in re.finditer(r"<tr><th>([^<]*)</th>(.*?)</tr>", table1)
    }
    count = '<span class="count">{}</span>'
    # ldn_1 (3 persons), ldn_2_3 (7), ldn_4plus (11), all (21). The cohort of 21 is hidden:
    # the Kaplan-Meier table of the same report has 20 persons, which would leave 1 out.
    assert rows["Persons, n"] == [count.format(n) for n in ("&lt;5", "7", "11", "masked")]
    # Women: 2, 5 of 7, 8 of 11, 15 of 21. Showing 5 of 7 or 8 of 11 would give the 2 and 3
    # men of those groups, so only the total is shown (its share rests on the hidden 21).
    assert rows["Female, n (%)"] == [
        f"{count.format('&lt;5')} (masked)",
        f"{count.format('masked')} (masked)",
        f"{count.format('masked')} (masked)",
        f"{count.format('15')} (masked)",
    ]
    # ldn_4plus ages 40..50: mean 45.0, SD 3.3166, median 45, quartiles 42.5 and 47.5
    assert rows["Age at index, years, mean (SD)"][2] == "45.0 (3.3)"
    assert rows["Age at index, years, median (IQR)"][2] == "45 (42.5–47.5)"
    # NSAIDs before: 2 users in ldn_4plus - masked with the mean they make
    assert rows["nsaids: users in the pre window, n (%)"][2] == f"{count.format('&lt;5')} (masked)"
    assert rows["nsaids: DDD in the pre window, mean (SD)"][2] == "masked (masked)"
    # nobody in ldn_2_3 used NSAIDs before: 0 is shown
    assert rows["nsaids: users in the pre window, n (%)"][1] == f"{count.format('0')} (0.0%)"


@pytest.mark.slow
def test_report_holds_no_person_level_value_and_nothing_external(report_html):
    assert "P-SECRET" not in report_html
    lowered = report_html.lower()
    for forbidden in ("http://", "https://", "<script", "<link", "@import", "url("):
        assert forbidden not in lowered


@pytest.mark.slow
def test_quality_section_covers_the_loads_the_run_read_with_row_counts_masked(report_html):
    quality = _section(report_html, "quality")
    assert "L1" in quality and "L0" not in quality  # silver/deliveries v0 names L1 only
    assert '<span class="count">250</span>' in quality
    assert '<span class="count">&lt;5</span>' in quality  # 3 rows with a bad birth year
    assert "2.5%" in quality and "0.3%" not in quality


@pytest.mark.slow
def test_provenance_shows_run_checksum_versions_and_code(report_html):
    provenance = _section(report_html, "provenance")
    for expected in ("RUN-1", "ab" * 32, "c0ffee", "silver/dispensings", "0.1.0"):
        assert expected in provenance
    assert '<span class="count">masked</span>' in provenance  # as in the attrition


def test_report_command_marks_missing_tables_not_available(spark, tmp_path):
    study = tmp_path / "studies" / "only_attrition"
    io.write_table(
        spark.createDataFrame(
            [(0, "everyone", 30, 0)], "step int, criterion string, n_persons long, n_excluded long"
        ),
        study / "attrition",
    )
    result = CliRunner().invoke(app, ["report", "only_attrition", "--warehouse", str(tmp_path)])
    assert result.exit_code == 0, result.output
    states = _parse((study / "report.html").read_text(encoding="utf-8")).sections
    assert list(states) == list(SECTION_IDS)
    not_available = {k for k, v in states.items() if v == "not-available"}
    assert not_available == set(SECTION_IDS) - {"attrition"}


def test_a_study_without_tables_is_an_error(spark, tmp_path):
    (tmp_path / "studies" / "empty").mkdir(parents=True)
    for study_id in ("empty", "no_such_study"):
        with pytest.raises(TableNotFoundError, match="run the study first"):
            build_report(spark, warehouse=tmp_path, study_id=study_id)


@pytest.mark.slow
def test_report_on_the_demo_warehouse(spark, request):
    """End to end on the lead's demo warehouse, once conftest provides it."""
    warehouse, _, study_id = request.getfixturevalue("demo_warehouse")
    assert study_id == STUDY
    html = build_report(spark, warehouse=Path(warehouse), study_id=STUDY).read_text()
    page = _parse(html)
    assert list(page.sections) == list(SECTION_IDS)
    for section in ("study", "attrition", "table1", "ddd", "provenance"):
        assert page.sections[section] == "available", section
    assert not [c for c in page.counts if c.strip() in {"1", "2", "3", "4"}]


def test_a_trajectory_is_drawn_whole_or_not_at_all():
    from rxcohort.report.plotdata import hidden_series, plottable_trajectories

    rows = [
        # ldn_1 / opioids: months with 0 and with 7 users, and one month with 3 users.
        ("ldn_1", "opioids", -1, 40, 0, 0.0, 0.0, None, None),
        ("ldn_1", "opioids", 0, 40, 3, 0.4, 1.5, 0.0, 0.9),
        ("ldn_1", "opioids", 1, 40, 7, 1.2, 2.5, 0.4, 2.0),
        # ldn_1 / nsaids: every month 0 or >= 5 users: drawn, zeros included.
        ("ldn_1", "nsaids", -1, 40, 0, 0.0, 0.0, None, None),
        ("ldn_1", "nsaids", 0, 40, 6, 0.9, 2.0, 0.3, 1.5),
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            "exposure_group", "drug_group", "month", "n_persons", "n_users",
            "mean_ddd", "sd_ddd", "ci_low", "ci_high",
        ],
    )  # fmt: skip
    shown = plottable_trajectories(frame)
    opioids = shown[shown["drug_group"] == "opioids"]
    nsaids = shown[shown["drug_group"] == "nsaids"]
    # Not only the month with 3 users: the whole line, so no drawn point depends on its count.
    assert opioids["hidden"].all() and opioids["mean_ddd"].isna().all()
    assert not nsaids["hidden"].any()
    assert nsaids["mean_ddd"].tolist() == [0.0, 0.9]
    assert hidden_series(shown) == [("ldn_1", "opioids")]
