"""The lifelines wrappers against hand-worked Kaplan-Meier values and R's Cox fit of Rossi."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines.datasets import load_rossi

from rxcohort.errors import ConfigError
from rxcohort.persistence import fit_cox, fit_km_curves, fit_km_medians

# Six persons: events at 1, 2, 3, 5; censored at 2 and 5.
# By hand: S(1) = 5/6, S(2) = 5/6 * 4/5, S(3) = * 2/3, S(5) = * 1/2. Greenwood sum
# d/(n(n-d)) = 1/30, +1/20, +1/6, +1/2; limits S^exp(+-1.959964 * sqrt(sum) / |log S|).
SMALL = pd.DataFrame(
    {
        "time_days": [1, 2, 2, 3, 5, 5],
        "event": [1, 1, 0, 1, 0, 1],
        "sex": ["female", "female", "male", "male", None, "female"],
        "prior": [True, False, True, True, False, True],
    }
)


def test_km_curve_overall_matches_the_hand_worked_example():
    out = fit_km_curves(SMALL, strata=[])
    expected = pd.DataFrame(
        {
            "stratum_variable": ["overall"] * 5,
            "stratum": ["all"] * 5,
            "time": [0.0, 1.0, 2.0, 3.0, 5.0],
            "at_risk": [6, 6, 5, 3, 2],
            "events": [0, 1, 1, 1, 1],
            "censored": [0, 0, 1, 0, 1],
            "survival": [1.0, 5 / 6, 4 / 6, 8 / 18, 8 / 36],
            "ci_low": [1.0, 0.273123, 0.194617, 0.066187, 0.009569],
            "ci_high": [1.0, 0.974712, 0.904434, 0.784908, 0.614721],
        }
    )
    pd.testing.assert_frame_equal(out, expected, atol=5e-7, rtol=0)


def test_km_strata_labels_missing_and_booleans():
    out = fit_km_curves(SMALL, strata=["sex", "prior"])
    strata = out[["stratum_variable", "stratum"]].drop_duplicates().values.tolist()
    assert strata == [
        ["overall", "all"],
        ["sex", "female"],
        ["sex", "male"],
        ["sex", "missing"],
        ["prior", "false"],
        ["prior", "true"],
    ]
    # Women: events at 1, 2 and 5 among 3 at risk: S = 2/3, 1/3, 0.
    women = out[(out.stratum_variable == "sex") & (out.stratum == "female")]
    assert women["survival"].tolist() == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    assert women["at_risk"].tolist() == [3, 3, 2, 1]


def test_km_medians_with_interval_and_unreached_limits():
    out = fit_km_medians(SMALL, strata=["prior"])
    expected = pd.DataFrame(
        {
            "stratum_variable": ["overall", "prior", "prior"],
            "stratum": ["all", "false", "true"],
            "n_persons": [6, 2, 4],
            "n_events": [4, 1, 3],
            # overall: S drops to 4/9 at 3; lower limit below 0.5 from time 1; upper never.
            # prior=false: one event at 2 among 2 -> S = 1/2 at 2; censored at 5.
            # prior=true: times 1(e), 2(c), 3(e), 5(e): S = 3/4, 3/4, 3/8, 0; the upper limit
            # is 0.808 at 3 and, where S reaches 0, lifelines sets both limits to 0, so the
            # median's upper limit is 5 (R's log-log interval is NA there).
            "median_time": [3.0, 2.0, 3.0],
            "median_ci_low": [1.0, 2.0, 1.0],
            "median_ci_high": [np.nan, np.nan, 5.0],
        }
    )
    pd.testing.assert_frame_equal(out, expected, check_exact=False)


def test_km_median_is_first_time_at_or_below_one_half():
    # S = 3/4, 1/2, 1/4, 0: lifelines (and this table) report 2; R's survfit reports 2.5,
    # the midpoint of the flat stretch at exactly 1/2.
    df = pd.DataFrame({"time_days": [1, 2, 3, 4], "event": [1, 1, 1, 1]})
    assert fit_km_medians(df, strata=[])["median_time"].tolist() == [2.0]


def test_km_without_events_has_no_median():
    df = pd.DataFrame({"time_days": [3, 4], "event": [0, 0]})
    out = fit_km_medians(df, strata=[])
    assert out["n_events"].tolist() == [0]
    assert out["median_time"].isna().all()


ROSSI_COVARIATES = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]


@pytest.fixture(scope="module")
def rossi() -> pd.DataFrame:
    return load_rossi()


def test_cox_matches_r_survival_on_rossi(rossi):
    out = fit_cox(rossi, covariates=ROSSI_COVARIATES, duration_col="week", event_col="arrest")
    model = out.iloc[0]
    assert (model["covariate"], model["status"]) == ("(model)", "ok")
    assert (model["n_persons"], model["n_events"]) == (432, 114)
    terms = out.iloc[1:].set_index("covariate")
    # R: summary(coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, Rossi))
    r_coef = {
        "fin": -0.379422,
        "age": -0.057438,
        "race": 0.313900,
        "wexp": -0.149796,
        "mar": -0.433704,
        "paro": -0.084871,
        "prio": 0.091497,
    }
    for name, coef in r_coef.items():
        assert terms.loc[name, "coef"] == pytest.approx(coef, abs=5e-6)
    assert terms.loc["fin", "hr"] == pytest.approx(0.6843, abs=5e-5)
    assert terms.loc["fin", "se_coef"] == pytest.approx(0.1914, abs=5e-5)
    assert terms.loc["fin", "ci_low"] == pytest.approx(0.4702, abs=5e-5)
    assert terms.loc["fin", "ci_high"] == pytest.approx(0.9957, abs=5e-5)
    assert terms.loc["fin", "p_value"] == pytest.approx(0.0474, abs=5e-5)
    assert terms.loc["prio", "hr"] == pytest.approx(1.0958, abs=5e-5)
    assert terms.loc["prio", "p_value"] == pytest.approx(0.0014, abs=5e-5)
    # lifelines docs, check_assumptions on this model (rank transform): age 11.45, wexp 7.31.
    assert terms.loc["age", "ph_test_stat"] == pytest.approx(11.45, abs=0.005)
    assert terms.loc["wexp", "ph_test_stat"] == pytest.approx(7.31, abs=0.005)
    assert terms.loc["age", "ph_p_value"] < 0.005
    assert terms.loc["fin", "ph_p_value"] == pytest.approx(0.90, abs=0.005)


def test_cox_categorical_levels_reference_and_scale(rossi):
    df = rossi.assign(
        fin_label=rossi["fin"].map({0: "no", 1: "yes"}),
        # equal sizes: the reference would fall to "a" alphabetically; "b" is asked for
        half=np.where(np.arange(len(rossi)) % 2 == 0, "a", "b"),
    )
    out = fit_cox(
        df,
        covariates=["fin_label", "age", "prio"],
        duration_col="week",
        event_col="arrest",
        scale={"age": 10},
    )
    terms = out.iloc[1:].set_index("covariate")
    # R: coxph(Surv(week, arrest) ~ fin + age + prio, Rossi): fin -0.34695, age -0.06706,
    # prio 0.09689
    assert (terms.loc["fin_label", "level"], terms.loc["fin_label", "reference"]) == ("yes", "no")
    assert terms.loc["fin_label", "coef"] == pytest.approx(-0.34695, abs=5e-5)
    assert terms.loc["age", "level"] == "per 10"
    assert terms.loc["age", "coef"] == pytest.approx(-0.6706, abs=5e-4)
    assert terms.loc["prio", "coef"] == pytest.approx(0.09689, abs=5e-5)
    assert (terms.loc["fin_label", "n_persons"], terms.loc["fin_label", "n_events"]) == (216, 48)

    chosen = fit_cox(
        df, covariates=["half"], duration_col="week", event_col="arrest", references={"half": "b"}
    ).iloc[1]
    assert (chosen["level"], chosen["reference"]) == ("a", "b")


def _frame(groups: dict[str, tuple[int, int]], seed: int = 5) -> pd.DataFrame:
    """groups: level -> (persons, events); durations spread so the model is well posed."""
    rng = np.random.default_rng(seed)
    parts = []
    for level, (n, e) in groups.items():
        parts.append(
            pd.DataFrame(
                {
                    "time_days": rng.integers(1, 365, size=n),
                    "event": [1] * e + [0] * (n - e),
                    "specialty": level,
                    "age": rng.integers(20, 80, size=n),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def test_cox_pools_rare_levels_when_the_pool_is_big_enough():
    df = _frame({"gp": (60, 30), "neuro": (30, 15), "rheum": (6, 3), "psych": (6, 3)})
    out = fit_cox(df, covariates=["specialty"], min_events_per_level=5)
    rows = out.iloc[1:]
    assert rows["level"].tolist() == ["neuro", "pooled_rare_levels"]
    assert set(rows["reference"]) == {"gp"}
    assert rows["n_events"].tolist() == [15, 6]
    assert "2 rare level(s) pooled" in out.iloc[0]["note"]


def test_cox_leaves_out_a_pool_that_stays_rare():
    df = _frame({"gp": (60, 30), "neuro": (30, 15), "dentist": (4, 2)})
    out = fit_cox(df, covariates=["specialty", "age"], min_events_per_level=5)
    model, terms = out.iloc[0], out.iloc[1:]
    assert (model["n_persons"], model["n_events"]) == (90, 45)
    assert terms["level"].tolist() == ["neuro", None]
    assert terms.iloc[1]["n_persons"] == 90
    assert "left out (4 persons)" in model["note"]


def test_cox_drops_a_covariate_with_one_level_or_no_variation():
    df = _frame({"gp": (60, 30), "dentist": (4, 2)}).assign(constant=1.0)
    out = fit_cox(df, covariates=["specialty", "constant", "age"], min_events_per_level=5)
    assert out["covariate"].tolist() == ["(model)", "age", "specialty", "constant"]
    assert out["status"].tolist() == ["ok", "ok", "dropped", "dropped"]
    assert out.iloc[2]["note"] == "only one level left"
    assert out.iloc[3]["note"] == "no variation in this covariate"


def test_cox_with_too_few_events_says_so():
    df = _frame({"gp": (20, 3)})
    out = fit_cox(df, covariates=["age"], min_events=10)
    assert out["covariate"].tolist() == ["(model)"]
    assert out.iloc[0]["status"] == "insufficient_data"
    assert out.iloc[0]["note"] == "3 event(s), fewer than 10 needed"


def test_cox_that_cannot_be_fitted_returns_a_row_not_an_error():
    df = _frame({"gp": (60, 30)})
    df["age_twice"] = df["age"] * 2  # perfectly collinear: the information matrix is singular
    out = fit_cox(df, covariates=["age", "age_twice"])
    assert out["covariate"].tolist() == ["(model)"]
    assert out.iloc[0]["status"] == "not_converged"
    assert "could not be fitted" in out.iloc[0]["note"]


def test_cox_complete_cases_only():
    df = _frame({"gp": (60, 30), "neuro": (40, 20)})
    df.loc[[0, 1, 2], "age"] = np.nan
    out = fit_cox(df, covariates=["age", "specialty"])
    assert out.iloc[0]["n_persons"] == 97
    assert out.iloc[0]["note"].startswith("3 person(s) with a missing value left out")


def test_unknown_columns_are_a_config_error():
    with pytest.raises(ConfigError, match="Cox model column"):
        fit_cox(SMALL, covariates=["specialty"])
    with pytest.raises(ConfigError, match="Kaplan-Meier column"):
        fit_km_curves(SMALL, strata=["age_band"])


def test_cox_separated_level_warns_with_readable_names_instead_of_overflowing():
    # Level b has no events at all: its coefficient runs away (complete separation).
    df = pd.DataFrame(
        {
            "time_days": np.r_[np.arange(1, 41), np.arange(100, 140)],
            "event": [1] * 40 + [0] * 40,
            "g": ["a"] * 40 + ["b"] * 40,
            "age": np.tile([30, 50, 70, 40], 20),
        }
    )
    out = fit_cox(df, covariates=["g", "age"], min_events_per_level=0)
    assert out["status"].tolist() == ["converged_with_warnings"] * 3
    assert "g=b" in out.iloc[0]["note"] and "x0" not in out.iloc[0]["note"]
    level_b = out.iloc[1]
    assert (level_b["level"], level_b["n_events"]) == ("b", 0)
    assert level_b["hr"] < 1e-6 and level_b["ci_high"] == np.inf
