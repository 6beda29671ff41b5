"""Outcome statistics against values computed independently and pasted here as literals.

Oracles: scipy.stats.ttest_rel / ttest_ind(equal_var=False) with .confidence_interval(0.95);
statsmodels proportion_confint(method="wilson") and OLS; the delta-method interval of a ratio
computed from the gradient and the covariance matrix of the two means (np.cov); Newcombe's
paired interval from a published example (Fagerland, Lydersen & Laake, Statistical Analysis
of Contingency Tables, ch. 8: Cavo et al. 2012) and worked by hand from statsmodels' Wilson
limits.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from rxcohort.errors import ConfigError, RxCohortError
from rxcohort.stats import (
    COLUMNS,
    compute_outcome_tables,
    person_outcomes,
    summarise_its,
    summarise_responders,
    summarise_trajectories,
    to_spark,
)
from rxcohort.stats import inference as inf

GROUPS = ["ldn_1", "ldn_2_3", "ldn_4plus"]

# Per person: exposure group, (pre DDD, post DDD, user before, user after) for opioids.
PERSONS = {
    "h1": ("ldn_4plus", 30.0, 10.0, True, True),
    "h2": ("ldn_4plus", 10.0, 7.0, True, True),
    "h3": ("ldn_4plus", 20.0, 0.0, True, False),
    "h4": ("ldn_4plus", 40.0, 22.0, True, True),
    "h5": ("ldn_4plus", 12.0, 0.0, True, False),
    "l1": ("ldn_1", 10.0, 12.0, True, True),
    "l2": ("ldn_1", 20.0, 18.0, True, True),
    "l3": ("ldn_1", 5.0, 0.0, True, False),
    "l4": ("ldn_1", 0.0, 8.0, False, True),
}


def _frames(persons=PERSONS, drug_group="opioids"):
    cohort = pd.DataFrame(
        [(pid, group) for pid, (group, *_rest) in persons.items()],
        columns=["person_id", "exposure_group"],
    )
    rows = []
    for pid, (_group, pre, post, user_pre, user_post) in persons.items():
        rows.append((pid, drug_group, "pre", pre, int(user_pre), user_pre))
        rows.append((pid, drug_group, "post", post, int(user_post), user_post))
    consumption = pd.DataFrame(
        rows, columns=["person_id", "drug_group", "window", "ddd", "n_dispensings", "is_user"]
    )
    return cohort, consumption


def _tables(**kwargs):
    cohort, consumption = _frames()
    options = {"group_order": GROUPS, "drug_groups": ["opioids"]} | kwargs
    return compute_outcome_tables(cohort, consumption, **options)


def _row(frame, **keys):
    match = frame
    for column, value in keys.items():
        match = match[match[column] == value]
    assert len(match) == 1, keys
    return match.iloc[0]


def _value(value):
    return None if value is pd.NA else float(value)


# --- group_results ---------------------------------------------------------------------------


def test_group_results_paired_t_matches_scipy():
    results = _tables()["group_results"]
    high = _row(results, exposure_group="ldn_4plus", drug_group="opioids")
    # scipy.stats.ttest_rel(post, pre) on h1..h5 and l1..l4.
    assert high["n_persons"] == 5
    assert high["mean_ddd_pre"] == pytest.approx(22.4)
    assert high["mean_ddd_post"] == pytest.approx(7.8)
    assert high["mean_diff"] == pytest.approx(-14.6)
    assert high["ci_low"] == pytest.approx(-23.62237866519618, rel=1e-10)
    assert high["ci_high"] == pytest.approx(-5.577621334803821, rel=1e-10)
    assert high["p_value"] == pytest.approx(0.010882092548325388, rel=1e-8)
    assert high["sd_diff"] == pytest.approx(7.26636084983398, rel=1e-10)
    assert high["rel_change"] == pytest.approx(-14.6 / 22.4)
    assert high["rel_change_ci_low"] == pytest.approx(-0.9840095210446744, rel=1e-10)
    assert high["rel_change_ci_high"] == pytest.approx(-0.3195619075267541, rel=1e-10)
    low = _row(results, exposure_group="ldn_1", drug_group="opioids")
    assert low["mean_diff"] == pytest.approx(0.75)
    assert low["ci_low"] == pytest.approx(-8.192523110817932, rel=1e-10)
    assert low["ci_high"] == pytest.approx(9.692523110817932, rel=1e-10)
    assert low["p_value"] == pytest.approx(0.8068354753960632, rel=1e-8)
    assert low["rel_change_ci_low"] == pytest.approx(-1.008292926274334, rel=1e-10)
    assert low["rel_change_ci_high"] == pytest.approx(1.1797214977029054, rel=1e-10)


def test_group_results_users_and_paired_share_interval():
    results = _tables()["group_results"]
    high = _row(results, exposure_group="ldn_4plus")
    assert (high["users_pre"], high["users_post"]) == (5, 3)
    assert (high["prop_users_pre"], high["prop_users_post"]) == (1.0, 0.6)
    # Every person used before: phi = 0 and the pre share's Wilson upper limit is 1, so the
    # lower limit is -0.4 - (0.6 - wilson(3, 5).low) (statsmodels: 0.2307242812760129).
    assert high["prop_diff"] == pytest.approx(-0.4)
    assert high["prop_diff_ci_low"] == pytest.approx(-0.7692757187239871, rel=1e-10)
    assert high["prop_diff_ci_high"] == pytest.approx(0.11818243828697239, rel=1e-10)
    low = _row(results, exposure_group="ldn_1")
    assert (low["users_pre"], low["users_post"]) == (3, 3)
    # Discordant pairs 1 and 1, ad - bc = -1, phi = -1/3 (worked by hand).
    assert low["prop_diff"] == pytest.approx(0.0)
    assert low["prop_diff_ci_low"] == pytest.approx(-0.5522170552761342, rel=1e-10)
    assert low["prop_diff_ci_high"] == pytest.approx(0.5522170552761342, rel=1e-10)


def test_group_without_persons_has_a_row_of_empty_statistics():
    results = _tables()["group_results"]
    middle = _row(results, exposure_group="ldn_2_3")
    assert (middle["n_persons"], middle["users_pre"], middle["users_post"]) == (0, 0, 0)
    stats = [c for c in COLUMNS["group_results"] if c not in ("exposure_group", "drug_group")]
    assert all(middle[c] is pd.NA for c in stats if not c.startswith(("n_", "users_")))
    assert list(results["exposure_group"]) == GROUPS


def test_one_person_gives_a_mean_but_no_interval():
    cohort, consumption = _frames({"p": ("ldn_1", 10.0, 4.0, True, True)})
    results = compute_outcome_tables(
        cohort, consumption, group_order=["ldn_1"], drug_groups=["opioids"]
    )["group_results"]
    row = results.iloc[0]
    assert (row["n_persons"], row["mean_diff"], row["rel_change"]) == (1, -6.0, -0.6)
    for column in ("ci_low", "ci_high", "p_value", "sd_diff", "rel_change_ci_low"):
        assert row[column] is pd.NA, column


def test_zero_variance_and_zero_pre_use_give_empty_interval_and_rel_change():
    same = {f"p{i}": ("ldn_1", 0.0, 0.1, False, True) for i in range(3)}
    cohort, consumption = _frames(same)
    row = compute_outcome_tables(
        cohort, consumption, group_order=["ldn_1"], drug_groups=["opioids"]
    )["group_results"].iloc[0]
    assert row["mean_diff"] == pytest.approx(0.1)
    assert row["ci_low"] is pd.NA and row["ci_high"] is pd.NA and row["p_value"] is pd.NA
    # mean_ddd_pre = 0: rel_change is undefined (CONTRACT §5 rule 11).
    assert row["rel_change"] is pd.NA


def test_drug_group_nobody_used_is_all_zero_without_intervals():
    cohort, consumption = _frames()
    results = compute_outcome_tables(
        cohort, consumption, group_order=GROUPS, drug_groups=["opioids", "nsaids"]
    )["group_results"]
    nsaids = _row(results, exposure_group="ldn_4plus", drug_group="nsaids")
    assert (nsaids["mean_ddd_pre"], nsaids["mean_diff"], nsaids["users_post"]) == (0.0, 0.0, 0)
    assert nsaids["ci_low"] is pd.NA and nsaids["rel_change"] is pd.NA
    assert nsaids["prop_diff"] == 0.0
    assert list(results["drug_group"]) == ["opioids", "nsaids"] * 3


# --- did_results -----------------------------------------------------------------------------


def test_did_matches_welch_and_users_pp_by_mover():
    did = _tables()["did_results"]
    assert list(did["contrast"]) == ["ldn_4plus_vs_ldn_1"]
    row = did.iloc[0]
    # scipy.stats.ttest_ind(d_high, d_low, equal_var=False).
    assert row["did"] == pytest.approx(-15.35)
    assert row["ci_low"] == pytest.approx(-25.50849030536785, rel=1e-10)
    assert row["ci_high"] == pytest.approx(-5.191509694632149, rel=1e-10)
    assert row["p_value"] == pytest.approx(0.009059694621190642, rel=1e-8)
    assert (row["mean_diff_high"], row["mean_diff_low"]) == (pytest.approx(-14.6), 0.75)
    assert (row["n_persons_high"], row["n_persons_low"]) == (5, 4)
    assert (row["users_pre_high"], row["users_post_high"]) == (5, 3)
    assert (row["users_pre_low"], row["users_post_low"]) == (3, 3)
    # -40 pp; limits: -40 -+ 100 * hypot of the distances to the group limits above.
    assert row["did_users_pp"] == pytest.approx(-40.0)
    assert row["did_users_pp_ci_low"] == pytest.approx(-106.43103435721608, rel=1e-10)
    assert row["did_users_pp_ci_high"] == pytest.approx(35.72692490038645, rel=1e-10)


def test_did_with_a_one_person_group_has_no_interval():
    persons = dict(PERSONS)
    persons = {k: v for k, v in persons.items() if not k.startswith("l")}
    persons["l1"] = PERSONS["l1"]
    cohort, consumption = _frames(persons)
    row = compute_outcome_tables(cohort, consumption, group_order=GROUPS, drug_groups=["opioids"])[
        "did_results"
    ].iloc[0]
    assert row["did"] == pytest.approx(-14.6 - 2.0)
    assert row["ci_low"] is pd.NA and row["p_value"] is pd.NA


def test_contrasts_are_named_high_vs_low_and_validated():
    did = _tables(contrasts=[("ldn_4plus", "ldn_1"), ("ldn_2_3", "ldn_1")])["did_results"]
    assert list(did["contrast"]) == ["ldn_4plus_vs_ldn_1", "ldn_2_3_vs_ldn_1"]
    assert did.iloc[1]["did"] is pd.NA  # ldn_2_3 has nobody here
    with pytest.raises(ConfigError, match="contrast"):
        _tables(contrasts=[("ldn_4plus", "ldn_9")])
    with pytest.raises(ConfigError, match="contrast"):
        _tables(contrasts=[("ldn_1", "ldn_1")])


# --- estimators on their own -----------------------------------------------------------------


def test_newcombe_paired_matches_published_example():
    # Cavo et al. 2012 via Fagerland et al. ch. 8: table [[59, 6], [16, 80]];
    # Newcombe square-and-add: -0.0621 (95% CI -0.1186 to -0.0046).
    result = inf.newcombe_paired(both=59, first_only=6, second_only=16, neither=80)
    assert result.estimate == pytest.approx(-0.0621, abs=5e-5)
    assert result.ci_low == pytest.approx(-0.1186, abs=5e-5)
    assert result.ci_high == pytest.approx(-0.0046, abs=5e-5)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [  # statsmodels proportion_confint(k, n, method="wilson")
        (7, 20, 0.18119182410108203, 0.5671457233147638),
        (0, 4, 0.0, 0.4898908364545974),
        (4, 4, 0.5101091635454025, 1.0),
        (1, 1, 0.2065493143772374, 1.0),
    ],
)
def test_wilson_matches_statsmodels(k, n, low, high):
    result = inf.wilson(k, n)
    assert (result.ci_low, result.ci_high) == (pytest.approx(low), pytest.approx(high))


def test_estimators_return_nan_rather_than_raise_on_empty_input():
    assert math.isnan(inf.paired_mean([]).estimate)
    assert math.isnan(inf.welch_difference([], [1.0]).estimate)
    assert math.isnan(inf.wilson(0, 0).estimate)
    assert math.isnan(inf.ratio_of_means([1.0], [0.0]).estimate)
    assert math.isnan(inf.newcombe_paired(both=0, first_only=0, second_only=0, neither=0).estimate)


# --- responders ------------------------------------------------------------------------------


def test_responders_fall_of_exactly_the_threshold_counts():
    persons = pd.DataFrame(
        [  # pre 10: a fall to 7.01 is 29.9%, to 7 is 30%, to 6.99 is 30.1%
            ("a", "ldn_1", "opioids", 10.0, 7.01, True, True),
            ("b", "ldn_1", "opioids", 10.0, 7.0, True, True),
            ("c", "ldn_1", "opioids", 10.0, 6.99, True, True),
            ("d", "ldn_1", "opioids", 0.0, 0.0, False, False),  # no use before: not eligible
            ("e", "ldn_1", "opioids", 0.0, 5.0, False, True),
        ],
        columns=[
            "person_id",
            "exposure_group",
            "drug_group",
            "ddd_pre",
            "ddd_post",
            "is_user_pre",
            "is_user_post",
        ],
    )
    row = summarise_responders(persons, group_order=["ldn_1"], drug_groups=["opioids"]).iloc[0]
    assert (row["n_persons"], row["n_eligible"], row["n_responders"]) == (5, 3, 2)
    assert row["threshold"] == 0.30
    assert row["prop_responders"] == pytest.approx(2 / 3)
    # statsmodels proportion_confint(2, 3, method="wilson")
    assert row["ci_low"] == pytest.approx(0.2076596008020477, rel=1e-9)
    assert row["ci_high"] == pytest.approx(0.9385080552796037, rel=1e-9)
    stricter = summarise_responders(
        persons, group_order=["ldn_1"], drug_groups=["opioids"], threshold=0.5
    ).iloc[0]
    assert stricter["n_responders"] == 0


def test_responders_in_the_outcome_tables():
    responders = _tables(responder_threshold=0.30)["responders"]
    high = _row(responders, exposure_group="ldn_4plus")
    assert (high["n_eligible"], high["n_responders"]) == (5, 5)
    low = _row(responders, exposure_group="ldn_1")
    assert (low["n_eligible"], low["n_responders"]) == (3, 1)
    # statsmodels proportion_confint(1, 3, method="wilson")
    assert low["ci_low"] == pytest.approx(0.06149194472039626, rel=1e-9)
    assert low["ci_high"] == pytest.approx(0.7923403991979523, rel=1e-9)
    assert _row(responders, exposure_group="ldn_2_3")["prop_responders"] is pd.NA


# --- person-level input ----------------------------------------------------------------------


def test_missing_consumption_rows_count_as_no_use():
    cohort, consumption = _frames()
    consumption = consumption[~((consumption.person_id == "h1") & (consumption.window == "post"))]
    persons = person_outcomes(cohort, consumption, drug_groups=["opioids"])
    h1 = persons[persons.person_id == "h1"].iloc[0]
    assert (h1["ddd_pre"], h1["ddd_post"], h1["is_user_post"]) == (30.0, 0.0, False)
    assert len(persons) == len(PERSONS)


def test_duplicated_consumption_rows_raise_without_person_ids():
    cohort, consumption = _frames()
    doubled = pd.concat([consumption, consumption.iloc[:1]])
    with pytest.raises(RxCohortError, match="1 duplicated") as info:
        person_outcomes(cohort, doubled, drug_groups=["opioids"])
    assert "h1" not in str(info.value)


def test_unknown_exposure_group_in_cohort_raises():
    cohort, consumption = _frames()
    cohort.loc[0, "exposure_group"] = "ldn_7"
    with pytest.raises(RxCohortError, match="ldn_7"):
        compute_outcome_tables(cohort, consumption, group_order=GROUPS, drug_groups=["opioids"])


def test_tables_have_contract_columns_and_dtypes():
    tables = _tables()
    contract = {
        "group_results": [
            "exposure_group",
            "drug_group",
            "n_persons",
            "mean_ddd_pre",
            "mean_ddd_post",
            "mean_diff",
            "ci_low",
            "ci_high",
            "rel_change",
            "users_pre",
            "users_post",
        ],
        "did_results": ["drug_group", "contrast", "did", "ci_low", "ci_high", "p_value"],
    }
    for name, columns in contract.items():
        assert list(tables[name].columns[: len(columns)]) == columns
    dtypes = tables["group_results"].dtypes
    assert (dtypes["n_persons"], dtypes["mean_diff"], dtypes["exposure_group"]) == (
        "int64",
        "Float64",
        "object",
    )


# --- trajectories and interrupted time series ------------------------------------------------


def _monthly(rows):
    return pd.DataFrame(
        rows,
        columns=[
            "exposure_group",
            "drug_group",
            "month",
            "n_persons",
            "n_users",
            "mean_ddd",
            "sd_ddd",
        ],
    )


def test_trajectory_interval_is_the_t_interval_of_the_mean():
    monthly = _monthly(
        [  # persons' DDD [0, 2, 4, 10] and [0, 0, 0, 6]; then everybody 0; then one person
            ("ldn_1", "opioids", 0, 4, 3, 4.0, 4.320493798938574),
            ("ldn_1", "opioids", -1, 4, 1, 1.5, 3.0),
            ("ldn_1", "opioids", 1, 4, 0, 0.0, 0.0),
            ("ldn_4plus", "opioids", 0, 1, 1, 7.0, None),
        ]
    )
    out = summarise_trajectories(monthly, group_order=GROUPS, drug_groups=["opioids"])
    assert list(zip(out["exposure_group"], out["month"], strict=True)) == [
        ("ldn_1", -1),
        ("ldn_1", 0),
        ("ldn_1", 1),
        ("ldn_4plus", 0),
    ]
    # scipy.stats.t.interval(0.95, 3, loc=mean, scale=sd / 2) gives (-3.2737, 6.2737) and
    # (-2.8749, 10.8749); DDD per person per month is not negative, so the lower limits are 0.
    from scipy import stats as scipy_stats

    low, high = scipy_stats.t.interval(0.95, 3, loc=1.5, scale=3.0 / 2)
    assert low < 0 and out.loc[0, "ci_low"] == 0.0
    assert out.loc[0, "ci_high"] == pytest.approx(high, rel=1e-10)
    assert out.loc[0, "ci_high"] == pytest.approx(6.2736694579263945, rel=1e-10)
    assert out.loc[1, "ci_low"] == 0.0
    assert out.loc[1, "ci_high"] == pytest.approx(10.874869763717816, rel=1e-10)
    assert out.loc[2, "ci_low"] is pd.NA  # nobody used the drug: no spread, no interval
    assert out.loc[3, "ci_low"] is pd.NA and out.loc[3, "sd_ddd"] is pd.NA


ITS_SERIES = [  # months -12..11: 50 + 0.5 t, then -10 and -1 per month, plus noise
    50.0, 50.8, 50.73, 50.61, 51.55, 51.51, 53.06, 54.84, 53.51, 53.88, 55.49, 55.86,
    46.11, 44.57, 44.97, 45.2, 42.66, 43.04, 41.1, 41.21, 40.16, 41.26, 39.73, 40.77,
]  # fmt: skip

# statsmodels OLS(y, [1, month + 12, after, (month - lag) * after]).fit(): params, conf_int(),
# pvalues; with lag 2, months 0 and 1 left out.
ITS_EXPECTED = {
    (0, "baseline_level"): (49.67948717948712, 48.79341125511047, 50.56556310386377, 7.762188798227345e-30),
    (0, "pre_slope"): (0.5406993006993066, 0.40424529126770736, 0.6771533101309058, 7.011538573282945e-08),
    (0, "level_change"): (-10.530571095571077, -11.869860999885814, -9.191281191256339, 4.584468577102452e-13),
    (0, "slope_change"): (-1.0993006993007062, -1.29227581007906, -0.9063255885223525, 1.616502956157621e-10),
    (2, "baseline_level"): (49.67948717948717, 48.75754338350953, 50.60143097546481, 3.89609436213299e-27),
    (2, "pre_slope"): (0.5406993006993016, 0.3987217071649335, 0.6826768942336697, 2.4462282565486257e-07),
    (2, "level_change"): (-12.740550116550123, -14.38140001546127, -11.099700217638976, 3.141421699431272e-12),
    (2, "slope_change"): (-1.0959720279720226, -1.3307006826207781, -0.8612433733232672, 1.1998955168137507e-08),
}  # fmt: skip


def _its_input(series):
    return _monthly(
        [
            ("ldn_4plus", "opioids", month, 40, 30, value, 5.0)
            for month, value in zip(range(-12, 12), series, strict=True)
        ]
    )


def test_its_matches_statsmodels_ols():
    trajectories = summarise_trajectories(
        _its_input(ITS_SERIES), group_order=GROUPS, drug_groups=["opioids"]
    )
    its = summarise_its(
        trajectories, group_order=GROUPS, drug_groups=["opioids"], lag_months=[0, 2]
    )
    assert len(its) == 8
    for row in its.itertuples():
        estimate, low, high, p = ITS_EXPECTED[(row.lag_months, row.parameter)]
        assert row.estimate == pytest.approx(estimate, rel=1e-9)
        assert row.ci_low == pytest.approx(low, rel=1e-9)
        assert row.ci_high == pytest.approx(high, rel=1e-9)
        assert row.p_value == pytest.approx(p, rel=1e-6)
    assert set(zip(its["lag_months"], its["n_months"], strict=True)) == {(0, 24), (2, 22)}
    assert set(its["n_persons"]) == {40}


def test_its_on_a_constant_series_has_estimates_but_no_intervals():
    trajectories = summarise_trajectories(
        _its_input([0.0] * 24), group_order=GROUPS, drug_groups=["opioids"]
    )
    its = summarise_its(trajectories, group_order=GROUPS, drug_groups=["opioids"], lag_months=1)
    assert list(its["parameter"]) == ["baseline_level", "pre_slope", "level_change", "slope_change"]
    assert [float(v) for v in its["estimate"]] == pytest.approx([0.0] * 4, abs=1e-12)
    assert its["ci_low"].isna().all() and its["p_value"].isna().all()


def test_its_rejects_a_negative_lag():
    trajectories = summarise_trajectories(
        _its_input(ITS_SERIES), group_order=GROUPS, drug_groups=["opioids"]
    )
    with pytest.raises(RxCohortError, match="lag"):
        summarise_its(trajectories, group_order=GROUPS, drug_groups=["opioids"], lag_months=-1)


def test_outcome_tables_include_trajectories_and_its_when_given_monthly_means():
    tables = _tables(monthly=_its_input(ITS_SERIES), its_lag_months=[0, 1, 2, 3])
    assert set(tables) == {
        "group_results",
        "did_results",
        "responders",
        "trajectories",
        "its_results",
    }
    assert sorted(set(tables["its_results"]["lag_months"])) == [0, 1, 2, 3]


# --- to Spark --------------------------------------------------------------------------------


def test_to_spark_turns_undefined_statistics_into_nulls(spark):
    results = _tables()["group_results"]
    frame = to_spark(spark, results, table="group_results")
    rows = {r["exposure_group"]: r for r in frame.collect()}
    assert rows["ldn_2_3"]["mean_diff"] is None  # null, not NaN
    assert rows["ldn_2_3"]["n_persons"] == 0
    assert rows["ldn_4plus"]["ci_low"] == pytest.approx(-23.62237866519618, rel=1e-10)
    assert dict(frame.dtypes)["n_persons"] == "bigint"
