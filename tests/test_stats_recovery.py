"""Recovery: simulated persons with a known effect, and the coverage of the intervals.

Pre-window DDD ~ Gamma(shape 2, scale 45) (mean 90, like the opioid users of the reference
study). LDN x4+: post = pre * (1 - 0.46) * g, g ~ Gamma(4, 1/4) with mean 1, so the true
relative change is -46% and the true mean difference -0.46 * 90 = -41.4 DDD. LDN x1:
post = pre * g, no change.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rxcohort.stats import compute_outcome_tables
from rxcohort.stats import inference as inf

pytestmark = pytest.mark.slow

SHAPE, SCALE = 2.0, 45.0
TRUE_REL = -0.46
TRUE_DIFF = TRUE_REL * SHAPE * SCALE


def _simulate(rng: np.random.Generator, n_high: int, n_low: int):
    persons, rows = [], []
    for group, n, factor in (("ldn_4plus", n_high, 1 + TRUE_REL), ("ldn_1", n_low, 1.0)):
        pre = rng.gamma(SHAPE, SCALE, n)
        post = pre * factor * rng.gamma(4.0, 0.25, n)
        for i in range(n):
            pid = f"{group}-{i}"
            persons.append((pid, group))
            rows.append((pid, "opioids", "pre", pre[i], 1, True))
            rows.append((pid, "opioids", "post", post[i], 1, True))
    cohort = pd.DataFrame(persons, columns=["person_id", "exposure_group"])
    consumption = pd.DataFrame(
        rows, columns=["person_id", "drug_group", "window", "ddd", "n_dispensings", "is_user"]
    )
    return cohort, consumption


def test_injected_effect_is_recovered():
    cohort, consumption = _simulate(np.random.default_rng(2013), n_high=1500, n_low=1000)
    tables = compute_outcome_tables(
        cohort, consumption, group_order=["ldn_1", "ldn_4plus"], drug_groups=["opioids"]
    )
    results = tables["group_results"].set_index("exposure_group")
    high, low = results.loc["ldn_4plus"], results.loc["ldn_1"]
    assert high["rel_change_ci_low"] <= TRUE_REL <= high["rel_change_ci_high"]
    assert high["ci_low"] <= TRUE_DIFF <= high["ci_high"]
    assert high["ci_high"] < -30  # clearly a fall, not just a covered value
    assert low["ci_low"] <= 0 <= low["ci_high"]
    assert low["rel_change_ci_low"] <= 0 <= low["rel_change_ci_high"]
    did = tables["did_results"].iloc[0]
    assert did["contrast"] == "ldn_4plus_vs_ldn_1"
    assert did["ci_low"] <= TRUE_DIFF <= did["ci_high"]
    assert did["p_value"] < 1e-6


@pytest.mark.parametrize(
    ("name", "interval"),
    [
        ("paired mean", lambda pre, post: inf.paired_mean(post - pre)),
        ("relative change", lambda pre, post: inf.ratio_of_means(post - pre, pre)),
    ],
)
def test_intervals_cover_the_truth_about_95_percent_of_the_time(name, interval):
    rng = np.random.default_rng(7)
    truth = TRUE_DIFF if name == "paired mean" else TRUE_REL
    covered = 0
    runs = 400
    for _ in range(runs):
        pre = rng.gamma(SHAPE, SCALE, 150)
        post = pre * (1 + TRUE_REL) * rng.gamma(4.0, 0.25, 150)
        result = interval(pre, post)
        covered += result.ci_low <= truth <= result.ci_high
    # Binomial(400, 0.95) lies in [370, 390] with probability > 0.99.
    assert 370 <= covered <= 390, f"{name}: {covered}/{runs}"


def test_welch_interval_covers_the_true_did_about_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    covered = 0
    runs = 400
    for _ in range(runs):
        pre_h, pre_l = rng.gamma(SHAPE, SCALE, 120), rng.gamma(SHAPE, SCALE, 60)
        d_high = pre_h * (1 + TRUE_REL) * rng.gamma(4.0, 0.25, 120) - pre_h
        d_low = pre_l * rng.gamma(4.0, 0.25, 60) - pre_l
        result = inf.welch_difference(d_high, d_low)
        covered += result.ci_low <= TRUE_DIFF <= result.ci_high
    assert 370 <= covered <= 390, f"{covered}/{runs}"
