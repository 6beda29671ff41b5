"""Small-count masking: counts 1-4 become <5, and values that would give them back are hidden."""

from __future__ import annotations

import pandas as pd
import pytest

from rxcohort.privacy import (
    MASKED_COUNT,
    MASKED_VALUE,
    MaskingRule,
    is_small_count,
    mask_small_counts,
)

M, X = MASKED_COUNT, MASKED_VALUE


@pytest.mark.parametrize(
    ("value", "small"),
    [(0, False), (1, True), (4, True), (5, False), (4.0, True), (None, False), (pd.NA, False)],
)
def test_small_count_boundaries(value, small):
    assert is_small_count(value) is small


def test_attrition_counts_masked_at_1_to_4_only():
    attrition = pd.DataFrame(
        {
            "step": [0, 1, 2, 3],
            "criterion": ["a", "b", "c", "d"],
            "n_persons": [100, 5, 4, 1],
            "n_excluded": [0, 95, 1, 3],
        }
    )
    out = mask_small_counts(attrition, table="attrition")
    assert out["n_persons"].tolist() == [100, 5, M, M]
    assert out["n_excluded"].tolist() == [0, 95, M, M]
    assert out["criterion"].tolist() == ["a", "b", "c", "d"]
    assert attrition["n_persons"].tolist() == [100, 5, 4, 1]  # the input is untouched


def _group_results(**overrides):
    row = {
        "exposure_group": "ldn_1",
        "drug_group": "nsaids",
        "n_persons": 40,
        "mean_ddd_pre": 3.0,
        "mean_ddd_post": 4.0,
        "mean_diff": 1.0,
        "ci_low": -1.0,
        "ci_high": 3.0,
        "rel_change": 0.33,
        "users_pre": 12,
        "users_post": 14,
        "sd_diff": 2.0,
        "p_value": 0.4,
        "rel_change_ci_low": -0.2,
        "rel_change_ci_high": 0.9,
        "prop_users_pre": 0.3,
        "prop_users_post": 0.35,
        "prop_diff": 0.05,
        "prop_diff_ci_low": -0.1,
        "prop_diff_ci_high": 0.2,
    }
    return pd.DataFrame([row | overrides])


def test_group_results_with_large_counts_are_unchanged():
    frame = _group_results()
    pd.testing.assert_frame_equal(mask_small_counts(frame, table="group_results"), frame)


def test_few_users_before_hide_the_pre_mean_and_every_change():
    out = mask_small_counts(_group_results(users_pre=3), table="group_results").iloc[0]
    assert out["users_pre"] == M
    for column in ("mean_ddd_pre", "prop_users_pre", "mean_diff", "ci_low", "rel_change"):
        assert out[column] == X, column
    for column in ("prop_diff", "prop_diff_ci_high", "p_value", "sd_diff"):
        assert out[column] == X, column
    # The post window rests on 14 users: shown.
    assert (out["users_post"], out["mean_ddd_post"], out["prop_users_post"]) == (14, 4.0, 0.35)


def test_zero_users_are_shown_with_their_statistics():
    out = mask_small_counts(
        _group_results(users_pre=0, mean_ddd_pre=0.0), table="group_results"
    ).iloc[0]
    assert (out["users_pre"], out["mean_ddd_pre"], out["mean_diff"]) == (0, 0.0, 1.0)


def test_a_group_of_four_persons_shows_only_its_labels():
    out = mask_small_counts(
        _group_results(n_persons=4, users_pre=4, users_post=0), table="group_results"
    ).iloc[0]
    assert (out["exposure_group"], out["drug_group"]) == ("ldn_1", "nsaids")
    assert (out["n_persons"], out["users_pre"], out["users_post"]) == (M, M, 0)
    assert out["mean_ddd_post"] == X and out["prop_users_post"] == X


def test_did_any_small_count_hides_the_comparison():
    did = pd.DataFrame(
        {
            "drug_group": ["opioids", "nsaids"],
            "contrast": ["ldn_4plus_vs_ldn_1"] * 2,
            "did": [-40.0, 1.0],
            "ci_low": [-50.0, -1.0],
            "ci_high": [-30.0, 3.0],
            "p_value": [0.001, 0.5],
            "exposure_group_high": ["ldn_4plus"] * 2,
            "exposure_group_low": ["ldn_1"] * 2,
            "n_persons_high": [500, 500],
            "n_persons_low": [300, 300],
            "users_pre_high": [500, 50],
            "users_post_high": [450, 60],
            "users_pre_low": [300, 2],
            "users_post_low": [290, 9],
            "did_users_pp": [-8.0, 1.5],
        }
    )
    out = mask_small_counts(did, table="did_results")
    assert out.loc[0].tolist() == did.loc[0].tolist()
    assert out.loc[1, "users_pre_low"] == M
    assert out.loc[1, ["did", "ci_low", "p_value", "did_users_pp"]].tolist() == [X] * 4
    assert out.loc[1, ["users_pre_high", "n_persons_low"]].tolist() == [50, 300]


def test_responders_share_hidden_with_its_count():
    responders = pd.DataFrame(
        {
            "exposure_group": ["ldn_1", "ldn_4plus", "ldn_2_3"],
            "drug_group": ["opioids"] * 3,
            "threshold": [0.3] * 3,
            "n_persons": [50, 60, 7],
            "n_eligible": [50, 60, 3],
            "n_responders": [2, 0, 1],
            "prop_responders": [0.04, 0.0, 1 / 3],
            "ci_low": [0.01, 0.0, 0.06],
            "ci_high": [0.13, 0.06, 0.79],
        }
    )
    out = mask_small_counts(responders, table="responders")
    assert out.loc[0, ["n_eligible", "n_responders", "prop_responders", "ci_high"]].tolist() == [
        50,
        M,
        X,
        X,
    ]
    assert out.loc[1, ["n_responders", "prop_responders"]].tolist() == [0, 0.0]
    assert out.loc[2, ["n_persons", "n_eligible", "n_responders", "prop_responders"]].tolist() == [
        7,
        M,
        M,
        X,
    ]
    assert out["threshold"].tolist() == [0.3] * 3


def test_trajectory_month_with_few_users_hides_its_mean():
    monthly = pd.DataFrame(
        {
            "exposure_group": ["ldn_1"] * 3,
            "drug_group": ["nsaids"] * 3,
            "month": [-1, 0, 1],
            "n_persons": [80, 80, 80],
            "n_users": [5, 4, 0],
            "mean_ddd": [1.0, 0.5, 0.0],
            "sd_ddd": [2.0, 1.5, 0.0],
            "ci_low": [0.5, 0.2, None],
            "ci_high": [1.5, 0.8, None],
        }
    )
    out = mask_small_counts(monthly, table="trajectories")
    assert out["n_users"].tolist() == [5, M, 0]
    assert out["mean_ddd"].tolist() == [1.0, X, 0.0]
    assert out["ci_low"].tolist()[:2] == [0.5, X] and pd.isna(out["ci_low"].iloc[2])
    assert out["month"].tolist() == [-1, 0, 1]


def test_nulls_stay_null():
    frame = _group_results(n_persons=0, users_pre=0, users_post=0, mean_diff=None)
    frame["mean_diff"] = frame["mean_diff"].astype("Float64")
    out = mask_small_counts(frame, table="group_results")
    assert out.loc[0, "mean_diff"] is pd.NA and out.loc[0, "n_persons"] == 0


def test_unknown_table_masks_count_like_columns_and_their_rows():
    frame = pd.DataFrame({"n_things": [3, 10], "share": [0.1, 0.2]})
    out = mask_small_counts(frame, table="something_new")
    assert out["n_things"].tolist() == [M, 10]
    assert out["share"].tolist() == [X, 0.2]


def test_an_explicit_rule_overrides_the_table_rule():
    frame = pd.DataFrame({"k": ["a"], "count": [2], "value": [1.0]})
    rule = MaskingRule(person_counts=("count",), keys=("k",), dependants={"count": ("value",)})
    out = mask_small_counts(frame, table="group_results", rule=rule)
    assert out.iloc[0].tolist() == ["a", M, X]


def test_counts_inside_notes_are_masked():
    from rxcohort.privacy import mask_counts_in_text, mask_small_counts

    assert mask_counts_in_text("left out (1 persons); 4 event(s), fewer than 10 needed") == (
        "left out (<5 persons); <5 event(s), fewer than 10 needed"
    )
    assert mask_counts_in_text("5 persons; 14 events; 0 persons; 2.5 units") == (
        "5 persons; 14 events; 0 persons; 2.5 units"
    )
    frame = pd.DataFrame(
        {
            "covariate": ["sex"],
            "n_persons": [50],
            "note": ["3 person(s) with a missing value left out"],
        }
    )
    out = mask_small_counts(frame, table="cox_results")
    assert out.loc[0, "note"] == "<5 person(s) with a missing value left out"
