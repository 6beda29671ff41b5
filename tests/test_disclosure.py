"""Disclosure control: no count of 1-4 persons can be read from, or solved out of, the tables
published together.

The attack is written here independently of rxcohort.disclosure: the relations a reader knows
from the design (attrition steps and exclusions, groups and cohort, users within a group,
responders within the eligible, strata within the overall row, a Cox model within the
Kaplan-Meier population, a risk set and the next) are stated by hand for hand-made tables with
small cells in every margin, and an integer program (scipy's milp) finds the smallest and the
largest value each hidden count can take given everything published. A count of 1-4 is safe
when that range holds more than one value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp

from rxcohort.disclosure import protect_counts, protect_tables
from rxcohort.privacy import MASKED_COUNT, MASKED_VALUE, mask_small_counts
from rxcohort.report.sections import REPORT_RULES

GROUPS = ("ldn_1", "ldn_2_3", "ldn_4plus")
DRUGS = ("opioids", "nsaids")


def _tables() -> dict[str, pd.DataFrame]:
    attrition = pd.DataFrame(
        [(0, "index", 230, 0), (1, "new users", 229, 1), (2, "follow-up", 226, 3), (3, "prior use", 54, 172)],
        columns=["step", "criterion", "n_persons", "n_excluded"],
    )  # fmt: skip
    size = {"ldn_1": 14, "ldn_2_3": 3, "ldn_4plus": 37}  # 54 in all; one group of 3
    users = {  # (pre, post): a group's users, 1-4 of them, or 1-4 non-users
        ("ldn_1", "opioids"): (14, 12),
        ("ldn_1", "nsaids"): (2, 9),
        ("ldn_2_3", "opioids"): (3, 1),
        ("ldn_2_3", "nsaids"): (0, 0),
        ("ldn_4plus", "opioids"): (37, 20),
        ("ldn_4plus", "nsaids"): (18, 35),
    }
    group_results = pd.DataFrame(
        [
            (g, d, size[g], 50.0, 40.0, -10.0, -20.0, 0.0, pre, post)
            for g in GROUPS
            for d in DRUGS
            for pre, post in [users[(g, d)]]
        ],
        columns=[
            "exposure_group", "drug_group", "n_persons", "mean_ddd_pre", "mean_ddd_post",
            "mean_diff", "ci_low", "ci_high", "users_pre", "users_post",
        ],
    )  # fmt: skip
    responders = pd.DataFrame(
        [
            (g, d, 0.3, size[g], users[(g, d)][0], responded, 0.5, 0.2, 0.8)
            for (g, d), responded in {
                ("ldn_1", "opioids"): 12,  # 2 of 14 eligible did not respond
                ("ldn_1", "nsaids"): 1,
                ("ldn_2_3", "opioids"): 2,
                ("ldn_2_3", "nsaids"): 0,
                ("ldn_4plus", "opioids"): 20,
                ("ldn_4plus", "nsaids"): 9,
            }.items()
        ],
        columns=[
            "exposure_group", "drug_group", "threshold", "n_persons", "n_eligible",
            "n_responders", "prop_responders", "ci_low", "ci_high",
        ],
    )  # fmt: skip
    km_medians = pd.DataFrame(
        [
            ("overall", "all", 54, 45, 185.0, 107.0, 436.0),
            ("sex", "female", 33, 27, 185.0, 100.0, 474.0),
            ("sex", "male", 21, 18, 261.0, 100.0, 510.0),
            ("age_band", "40-49", 30, 26, 200.0, 150.0, 300.0),
            ("age_band", "50-59", 22, 17, 150.0, 100.0, 200.0),  # 2 persons in no band
        ],
        columns=[
            "stratum_variable", "stratum", "n_persons", "n_events", "median_time",
            "median_ci_low", "median_ci_high",
        ],
    )  # fmt: skip
    cox = pd.DataFrame(
        [
            ("(model)", None, None, 53, 44, None, "ok", "1 person(s) left out"),
            ("sex", "male", "female", 21, 18, 1.4, "ok", None),
        ],
        columns=["covariate", "level", "reference", "n_persons", "n_events", "hr", "status", "note"],
    )  # fmt: skip
    km_curves = pd.DataFrame(
        [
            ("overall", "all", 0.0, 54, 0, 0, 1.0, 1.0, 1.0),
            ("overall", "all", 30.0, 54, 3, 0, 0.944, 0.85, 0.98),
            ("overall", "all", 60.0, 51, 10, 2, 0.759, 0.62, 0.85),
            ("overall", "all", 90.0, 39, 8, 0, 0.603, 0.46, 0.72),
        ],
        columns=[
            "stratum_variable", "stratum", "time", "at_risk", "events", "censored", "survival",
            "ci_low", "ci_high",
        ],
    )  # fmt: skip
    trajectories = pd.DataFrame(
        [
            (g, "opioids", m, size[g], n_users, 1.0, 2.0, 0.0, 3.0)
            for g, m, n_users in [
                ("ldn_1", -1, 12), ("ldn_1", 0, 14), ("ldn_1", 1, 10),  # 2 non-users in month -1
                ("ldn_4plus", -1, 30), ("ldn_4plus", 0, 2), ("ldn_4plus", 1, 0),
            ]
        ],
        columns=[
            "exposure_group", "drug_group", "month", "n_persons", "n_users", "mean_ddd",
            "sd_ddd", "ci_low", "ci_high",
        ],
    )  # fmt: skip
    return {
        "attrition": attrition,
        "group_results": group_results,
        "responders": responders,
        "trajectories": trajectories,
        "km_curves": km_curves,
        "km_medians": km_medians,
        "cox_results": cox,
    }


class Attack:
    """Integer variables for every count as published (fixed) or hidden (a range), and the
    relations a reader knows, as equalities with non-negative slacks for what is unpublished."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.low: list[float] = []
        self.high: list[float] = []
        self.rows: list[dict[int, float]] = []
        self.kinds: dict[int, str] = {}
        self.binaries: list[tuple[int, int]] = []

    def var(self, name: str, low: float, high: float) -> int:
        self.names.append(name)
        self.low.append(low)
        self.high.append(high)
        return len(self.names) - 1

    def count(self, name: str, published: object) -> int:
        if published == MASKED_COUNT:
            i = self.var(name, 1, 4)
            self.kinds[i] = "primary"
        elif published == MASKED_VALUE:
            i = self.var(name, 0, 10_000)  # 0 or >= 5: see the binary below
            flag = self.var(name + "?", 0, 1)
            self.binaries.append((i, flag))
            self.kinds[i] = "secondary"
        else:
            value = float(published)
            i = self.var(name, value, value)
        return i

    def slack(self, name: str) -> int:
        return self.var(name, 0, 10_000)

    def equal(self, terms: dict[int, float]) -> None:
        self.rows.append(terms)

    def ranges(self) -> dict[str, tuple[float, float]]:
        n = len(self.names)
        rows = [[r.get(j, 0.0) for j in range(n)] for r in self.rows]
        lows, highs = [0.0] * len(rows), [0.0] * len(rows)
        for value, flag in self.binaries:  # x <= M b and x >= 5 b: x is 0 or at least 5
            row = [0.0] * n
            row[value], row[flag] = 1.0, -10_000.0
            rows.append(row)
            lows.append(-np.inf)
            highs.append(0.0)
            row = [0.0] * n
            row[value], row[flag] = 1.0, -5.0
            rows.append(row)
            lows.append(0.0)
            highs.append(np.inf)
        constraints = LinearConstraint(np.array(rows), lows, highs)
        bounds = Bounds(self.low, self.high)
        out = {}
        for i, kind in self.kinds.items():
            found = []
            for sign in (1.0, -1.0):
                c = np.zeros(n)
                c[i] = sign
                result = milp(c, constraints=constraints, bounds=bounds, integrality=np.ones(n))
                assert result.status == 0, (self.names[i], result.message)
                found.append(round(result.x[i]))
            out[f"{kind}:{self.names[i]}"] = (found[0], found[1])
        return out


def _attack(published: dict[str, pd.DataFrame]) -> dict[str, tuple[float, float]]:
    a = Attack()
    att = published["attrition"].sort_values("step")
    n = {int(r.step): a.count(f"attrition n {r.step}", r.n_persons) for r in att.itertuples()}
    x = {int(r.step): a.count(f"attrition x {r.step}", r.n_excluded) for r in att.itertuples()}
    for step in range(1, 4):
        a.equal({n[step - 1]: 1, x[step]: -1, n[step]: -1})
    cohort = n[3]

    gr = published["group_results"]
    size = {}
    for r in gr.itertuples():
        i = a.count(f"size {r.exposure_group} in {r.drug_group} row", r.n_persons)
        if r.exposure_group in size:
            a.equal({i: 1, size[r.exposure_group]: -1})
        else:
            size[r.exposure_group] = i
    a.equal({cohort: 1, **{size[g]: -1 for g in GROUPS}})
    users = {}
    for r in gr.itertuples():
        for window in ("pre", "post"):
            u = a.count(
                f"users {window} {r.exposure_group} {r.drug_group}", getattr(r, f"users_{window}")
            )
            users[(r.exposure_group, r.drug_group, window)] = u
            a.equal({size[r.exposure_group]: 1, u: -1, a.slack("non-users"): -1})

    for r in published["responders"].itertuples():
        g = r.exposure_group
        s = a.count(f"responders size {g}", r.n_persons)
        a.equal({s: 1, size[g]: -1})
        e = a.count(f"eligible {g} {r.drug_group}", r.n_eligible)
        rr = a.count(f"responders {g} {r.drug_group}", r.n_responders)
        a.equal({e: 1, users[(g, r.drug_group, "pre")]: -1})  # eligible: users before
        a.equal({e: 1, rr: -1, a.slack("non-responders"): -1})

    for r in published["trajectories"].itertuples():
        g = r.exposure_group
        s = a.count(f"trajectory size {g}", r.n_persons)
        a.equal({s: 1, size[g]: -1})
        u = a.count(f"month users {g} {r.month}", r.n_users)
        a.equal({size[g]: 1, u: -1, a.slack("month non-users"): -1})

    km = published["km_medians"]
    kn = {
        (r.stratum_variable, r.stratum): a.count(f"km n {r.stratum}", r.n_persons)
        for r in km.itertuples()
    }
    ke = {
        (r.stratum_variable, r.stratum): a.count(f"km events {r.stratum}", r.n_events)
        for r in km.itertuples()
    }
    for key in kn:
        a.equal({kn[key]: 1, ke[key]: -1, a.slack("censored"): -1})
    a.equal({cohort: 1, kn[("overall", "all")]: -1})
    for variable, exact in (("sex", True), ("age_band", False)):
        for cells in (kn, ke):
            terms = {cells[("overall", "all")]: 1.0}
            terms.update({cells[k]: -1.0 for k in cells if k[0] == variable})
            if not exact:
                terms[a.slack("outside the bands")] = -1.0
            a.equal(terms)

    cox = published["cox_results"]
    model = cox[cox.covariate == "(model)"].iloc[0]
    male = cox[cox.covariate == "sex"].iloc[0]
    cn, ce = a.count("cox n", model.n_persons), a.count("cox events", model.n_events)
    mn, me = a.count("cox n male", male.n_persons), a.count("cox events male", male.n_events)
    a.equal({kn[("overall", "all")]: 1, cn: -1, a.slack("left out of the model"): -1})
    a.equal({ke[("overall", "all")]: 1, ce: -1, a.slack("events left out"): -1})
    a.equal({cn: 1, mn: -1, a.slack("women in the model"): -1})
    a.equal({ce: 1, me: -1, a.slack("women's events"): -1})
    a.equal({kn[("sex", "male")]: 1, mn: -1, a.slack("men left out"): -1})

    curve = published["km_curves"].sort_values("time")
    ar = [a.count(f"at risk {t}", v) for t, v in zip(curve.time, curve.at_risk, strict=True)]
    ev = [a.count(f"events {t}", v) for t, v in zip(curve.time, curve.events, strict=True)]
    ce_ = [a.count(f"censored {t}", v) for t, v in zip(curve.time, curve.censored, strict=True)]
    a.equal({ar[0]: 1, kn[("overall", "all")]: -1})
    for i in range(len(ar) - 1):
        a.equal({ar[i]: 1, ev[i]: -1, ce_[i]: -1, ar[i + 1]: -1})
    return a.ranges()


def test_no_small_count_can_be_solved_from_what_is_published():
    tables = _tables()
    published = protect_tables(tables)
    ranges = _attack(published)
    primary = {k: v for k, v in ranges.items() if k.startswith("primary:")}
    # Every count of 1-4 in the tables is hidden (the attack has a variable for it) ...
    assert len(primary) >= 12
    # ... and none is pinned to one value by the rest.
    pinned = {k: v for k, v in primary.items() if v[0] == v[1]}
    assert not pinned, pinned


def test_without_complementary_suppression_the_attack_recovers_counts():
    """The attack is strong enough to matter: on per-row masking alone it solves counts."""
    from rxcohort.privacy import MASKING_RULES, mask_small_counts

    tables = _tables()
    per_row = {
        name: mask_small_counts(frame, table=name, rule=MASKING_RULES.get(name))
        for name, frame in tables.items()
    }
    ranges = _attack(per_row)
    pinned = {k for k, v in ranges.items() if k.startswith("primary:") and v[0] == v[1]}
    assert "primary:attrition x 1" in pinned  # 230 - 229
    assert "primary:size ldn_2_3 in opioids row" in pinned  # 54 - 14 - 37


def test_values_resting_on_hidden_counts_go_with_them():
    published = protect_tables(_tables())
    groups = published["group_results"]
    small = groups[groups["exposure_group"] == "ldn_2_3"]
    assert (small["n_persons"] == MASKED_COUNT).all()
    assert (small["mean_diff"] == MASKED_VALUE).all()
    curve = published["km_curves"].sort_values("time")
    # Survival from the first hidden count of the stratum on (3 events at day 30).
    assert list(curve["survival"]) == [1.0, MASKED_VALUE, MASKED_VALUE, MASKED_VALUE]
    cox = published["cox_results"]
    note = cox.loc[cox["covariate"] == "(model)", "note"].item()
    assert note in ("<5 person(s) left out", MASKED_VALUE)


def test_tables_without_small_counts_are_published_whole():
    tables = _tables()
    big = {
        "attrition": tables["attrition"].assign(
            n_persons=[300, 290, 280, 54], n_excluded=[0, 10, 10, 226]
        )
    }
    out = protect_tables(big)
    assert out["attrition"]["n_persons"].tolist() == [300, 290, 280, 54]
    assert out["attrition"]["n_excluded"].tolist() == [0, 10, 10, 226]


@pytest.mark.parametrize("seed", range(5))
def test_random_attrition_chains_are_protected(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 400))
    rows = [(0, "index", n, 0)]
    for step in range(1, 6):
        out_ = int(rng.choice([0, 1, 2, 3, 4, 5, 9, 20]))
        n -= min(out_, n)
        rows.append((step, f"step {step}", n, min(out_, rows[-1][2])))
    attrition = pd.DataFrame(rows, columns=["step", "criterion", "n_persons", "n_excluded"])
    published = protect_tables({"attrition": attrition})["attrition"]
    a = Attack()
    cells_n = [
        a.count(f"n {s}", v) for s, v in zip(published.step, published.n_persons, strict=True)
    ]
    cells_x = [
        a.count(f"x {s}", v) for s, v in zip(published.step, published.n_excluded, strict=True)
    ]
    for k in range(1, len(rows)):
        a.equal({cells_n[k - 1]: 1, cells_x[k]: -1, cells_n[k]: -1})
    pinned = {k: v for k, v in a.ranges().items() if k.startswith("primary:") and v[0] == v[1]}
    assert not pinned, (rows, pinned)


# -- the report's own tables: Table 1, baseline use, the dose histogram and bands -------------


def _report_tables() -> tuple[dict[str, pd.DataFrame], dict[tuple[str, str], int]]:
    """Tables as the report computes them, with 1-4 persons in every margin; and the true
    values of the unpublished cells an attacker would want (men, non-users)."""
    attrition = pd.DataFrame(
        [(0, "index", 300, 0), (1, "new users", 296, 4), (2, "prior use", 60, 236)],
        columns=["step", "criterion", "n_persons", "n_excluded"],
    )
    size = {"ldn_1": 3, "ldn_2_3": 20, "ldn_4plus": 37}
    female = {"ldn_1": 2, "ldn_2_3": 18, "ldn_4plus": 20}  # 2 men in ldn_2_3
    users = {  # (group, drug): (pre, post)
        ("ldn_1", "opioids"): (3, 2),
        ("ldn_1", "nsaids"): (0, 1),
        ("ldn_2_3", "opioids"): (20, 3),
        ("ldn_2_3", "nsaids"): (9, 12),
        ("ldn_4plus", "opioids"): (37, 30),
        ("ldn_4plus", "nsaids"): (36, 20),  # 1 non-user before
    }
    # Table 1 (rxcohort.transforms.characterisation): sex, age, a condition held by 1-4.
    ra = {"ldn_1": 0, "ldn_2_3": 3, "ldn_4plus": 9}
    chars_rows = []
    for g, n in (*size.items(), ("all", 60)):
        women = female.get(g, sum(female.values()))
        has_ra = ra.get(g, sum(ra.values()))
        chars_rows += [
            (g, "sex", "female", None, n, women, 100 * women / n, None, None),
            (g, "sex", "male", None, n, n - women, 100 * (n - women) / n, None, None),
            (g, "age", "", None, n, None, None, 50.0, 10.0),
            (g, "condition", "ra", "pre", n, has_ra, 100 * has_ra / n, None, None),
        ]
    chars = pd.DataFrame(
        chars_rows,
        columns=["exposure_group", "variable", "level", "window", "n_persons", "n", "percent",
                 "mean", "sd"],
    )  # fmt: skip
    window_rows = []
    for d in DRUGS:
        for w, k in (("pre", 0), ("post", 1)):
            for g in GROUPS:
                window_rows.append((g, d, w, size[g], users[(g, d)][k], 10.0, 2.0, 9.0))
            total = sum(users[(g, d)][k] for g in GROUPS)
            window_rows.append(("all", d, w, 60, total, 10.0, 2.0, 9.0))
    window_ddd = pd.DataFrame(
        window_rows,
        columns=[
            "exposure_group", "drug_group", "window", "n_persons", "n_users", "mean_ddd",
            "sd_ddd", "median_ddd",
        ],
    )  # fmt: skip
    group_results = pd.DataFrame(
        [
            (g, d, size[g], 10.0, 9.0, -1.0, users[(g, d)][0], users[(g, d)][1])
            for g in GROUPS
            for d in DRUGS
        ],
        columns=[
            "exposure_group", "drug_group", "n_persons", "mean_ddd_pre", "mean_ddd_post",
            "mean_diff", "users_pre", "users_post",
        ],
    )  # fmt: skip
    km_medians = pd.DataFrame(
        [("overall", "all", 60, 50, 100.0, 80.0, 120.0)],
        columns=[
            "stratum_variable", "stratum", "n_persons", "n_events", "median_time",
            "median_ci_low", "median_ci_high",
        ],
    )  # fmt: skip
    bins = {0: 0, 1: 2, 2: 6, 3: 0, 4: 14, 5: 0, 6: 11, 7: 0, 8: 0, 9: 19, 10: 8, -1: 0}
    band = {0: "ultra_low", 1: "ultra_low", 10: "other", -1: None}
    dose_bins = pd.DataFrame(
        [(o, f"bin {o}", band.get(o, "low"), n) for o, n in bins.items()],
        columns=["bin_order", "bin", "band", "n_persons"],
    )
    dose_bands = pd.DataFrame(
        [("low", 50), ("other", 8), ("ultra_low", 2)], columns=["value", "n_persons"]
    )
    tables = {
        "attrition": attrition,
        "characteristics": chars,
        "window_ddd": window_ddd,
        "group_results": group_results,
        "km_medians": km_medians,
        "dose_bins": dose_bins,
        "dose_bands": dose_bands,
    }
    unpublished = {(g, "without ra"): size[g] - ra[g] for g in GROUPS}
    for (g, d), (pre, post) in users.items():
        unpublished[(g, f"{d} pre non-users")] = size[g] - pre
        unpublished[(g, f"{d} post non-users")] = size[g] - post
    return tables, unpublished


def _attack_report(published: dict[str, pd.DataFrame]) -> dict[str, tuple[float, float]]:
    a = Attack()
    att = published["attrition"].sort_values("step")
    n = {int(r.step): a.count(f"attrition n {r.step}", r.n_persons) for r in att.itertuples()}
    x = {int(r.step): a.count(f"attrition x {r.step}", r.n_excluded) for r in att.itertuples()}
    for step in (1, 2):
        a.equal({n[step - 1]: 1, x[step]: -1, n[step]: -1})
    cohort = n[2]
    chars = published["characteristics"].set_index(["exposure_group", "variable", "level"])
    size = {g: a.count(f"size {g}", chars.loc[(g, "age", ""), "n_persons"]) for g in GROUPS}
    a.equal({a.count("size all", chars.loc[("all", "age", ""), "n_persons"]): 1, cohort: -1})
    a.equal({cohort: 1, **{size[g]: -1 for g in GROUPS}})
    for (g, variable, level), row in chars.iterrows():  # every row's persons: the group's
        total = size.get(g, cohort)
        a.equal({a.count(f"persons of {g} {variable} {level}", row["n_persons"]): 1, total: -1})
    for sex in ("female", "male"):
        cells = {g: a.count(f"{sex} {g}", chars.loc[(g, "sex", sex), "n"]) for g in GROUPS}
        a.equal(
            {a.count(f"{sex} all", chars.loc[("all", "sex", sex), "n"]): 1,
             **{cells[g]: -1 for g in GROUPS}}
        )  # fmt: skip
        if sex == "female":
            women = cells
    for g in GROUPS:
        a.equal({size[g]: 1, women[g]: -1, a.count(f"men {g} again", chars.loc[(g, "sex", "male"), "n"]): -1})  # fmt: skip
    ra = {g: a.count(f"ra {g}", chars.loc[(g, "condition", "ra"), "n"]) for g in GROUPS}
    a.equal(
        {a.count("ra all", chars.loc[("all", "condition", "ra"), "n"]): 1,
         **{ra[g]: -1 for g in GROUPS}}
    )  # fmt: skip
    for g in GROUPS:
        a.equal({size[g]: 1, ra[g]: -1, a.watch(f"{g} without ra"): -1})
    for r in published["group_results"].itertuples():
        g = r.exposure_group
        a.equal({a.count(f"group_results size {g}", r.n_persons): 1, size[g]: -1})
        for w in ("pre", "post"):
            u = a.count(f"group_results users {g} {r.drug_group} {w}", getattr(r, f"users_{w}"))
            a.equal({size[g]: 1, u: -1, a.watch(f"{g} {r.drug_group} {w} non-users"): -1})
            same = published["window_ddd"]
            row = same[
                (same.exposure_group == g) & (same.drug_group == r.drug_group) & (same.window == w)
            ]
            a.equal({u: 1, a.count(f"window users {g} {r.drug_group} {w}", row.n_users.item()): -1})
    ddd = published["window_ddd"]
    for (d, w), part in ddd.groupby(["drug_group", "window"]):
        part = part.set_index("exposure_group")
        terms = {a.count(f"window users all {d} {w}", part.loc["all", "n_users"]): 1.0}
        for g in GROUPS:
            terms[a.count(f"window users {g} {d} {w} again", part.loc[g, "n_users"])] = -1.0
            a.equal({a.count(f"window size {g} {d} {w}", part.loc[g, "n_persons"]): 1, size[g]: -1})
        a.equal(terms)
    km = published["km_medians"].iloc[0]
    km_n = a.count("km n", km.n_persons)
    a.equal({km_n: 1, cohort: -1})
    bins = published["dose_bins"]
    cells = {
        int(o): a.count(f"bin {o}", v) for o, v in zip(bins.bin_order, bins.n_persons, strict=True)
    }
    a.equal({km_n: 1, **{c: -1 for c in cells.values()}})
    bands = published["dose_bands"].set_index("value")["n_persons"]
    members = {"ultra_low": (0, 1), "low": tuple(range(2, 10)), "other": (10,)}
    for name, orders in members.items():
        a.equal({a.count(f"band {name}", bands[name]): 1, **{cells[o]: -1 for o in orders}})
    return a.ranges()


def _watch(self: Attack, name: str) -> int:
    i = self.slack(name)
    self.kinds[i] = "unpublished"
    return i


Attack.watch = _watch  # type: ignore[attr-defined]


def test_report_tables_leave_no_small_count_solvable():
    tables, unpublished = _report_tables()
    published = protect_tables(tables, rules=REPORT_RULES, windows=("pre", "post"))
    ranges = _attack_report(published)
    primary = {k: v for k, v in ranges.items() if k.startswith("primary:")}
    assert len(primary) >= 8  # sizes, women, users, bins and bands of 1-4
    assert not {k: v for k, v in primary.items() if v[0] == v[1]}
    # The unpublished counts of 1-4 (men of a group, non-users) are open too.
    small = {f"{g} {what}" for (g, what), v in unpublished.items() if 1 <= v <= 4}
    assert small
    for name in small:
        low, high = ranges[f"unpublished:{name}"]
        assert low < high, (name, low, high)
    # Shares and means resting on hidden counts go with them.
    chars = published["characteristics"].set_index(["exposure_group", "variable", "level"])
    assert chars.loc[("ldn_1", "age", ""), "mean"] == MASKED_VALUE
    assert chars.loc[("ldn_2_3", "condition", "ra"), "percent"] == MASKED_VALUE


def test_report_tables_per_row_masking_alone_gives_counts_away():
    from rxcohort.privacy import mask_small_counts

    tables, _ = _report_tables()
    per_row = {
        name: mask_small_counts(frame, table=name, rule=REPORT_RULES.get(name))
        for name, frame in tables.items()
    }
    ranges = _attack_report(per_row)
    assert ranges["primary:ra ldn_2_3"] == (3, 3)  # 12 with ra less 0 and 9
    assert ranges["primary:size ldn_1"] == (3, 3)  # 60 - 20 - 37
    assert ranges["primary:bin 1"] == (2, 2)  # 60 persons less the other bins


def _attack_dose(published: dict[str, pd.DataFrame]) -> dict[str, tuple[float, float]]:
    a = Attack()
    km_n = a.count("km n", published["km_medians"].iloc[0].n_persons)
    bins = published["dose_bins"]
    cells = {
        int(o): a.count(f"bin {o}", v) for o, v in zip(bins.bin_order, bins.n_persons, strict=True)
    }
    a.equal({km_n: 1, **{c: -1 for c in cells.values()}})
    bands = published["dose_bands"].set_index("value")["n_persons"]
    members = {"ultra_low": (0, 1), "low": tuple(range(2, 10)), "other": (10,)}
    for name, orders in members.items():
        a.equal({a.count(f"band {name}", bands[name]): 1, **{cells[o]: -1 for o in orders}})
    return a.ranges()


def test_dose_bins_and_bands_cannot_be_solved_from_their_total():
    tables, _ = _report_tables()
    dose = {k: tables[k] for k in ("km_medians", "dose_bins", "dose_bands")}
    per_row = {k: mask_small_counts(v, table=k, rule=REPORT_RULES.get(k)) for k, v in dose.items()}
    assert _attack_dose(per_row)["primary:bin 1"] == (2, 2)  # 60 less the other bins
    ranges = _attack_dose(protect_tables(dose, rules=REPORT_RULES))
    primary = {k: v for k, v in ranges.items() if k.startswith("primary:")}
    assert primary and not {k: v for k, v in primary.items() if v[0] == v[1]}


def test_exact_elimination_agrees_with_the_null_space():
    """_fixed_columns (sparse, exact) against numpy's SVD on random sparse integer systems:
    a column is fixed exactly when every null-space vector is 0 there."""
    from rxcohort.disclosure import _fixed_columns

    rng = np.random.default_rng(5)
    checked = 0
    for _ in range(300):
        n = int(rng.integers(2, 14))
        columns = [(f"c{i}",) for i in range(n)]
        relations = []
        for _ in range(int(rng.integers(1, n + 3))):
            size = int(rng.integers(1, min(n, 4) + 1))
            cells = rng.choice(n, size=size, replace=False)
            relations.append({columns[i]: int(rng.choice([-2, -1, 1, 1, 1, 2])) for i in cells})
        matrix = np.array([[r.get(c, 0) for c in columns] for r in relations], dtype=float)
        _, singular, vh = np.linalg.svd(matrix)
        rank = int((singular > 1e-9).sum())
        null = vh[rank:]
        expected = {
            c
            for i, c in enumerate(columns)
            if null.shape[0] == 0 or np.abs(null[:, i]).max() < 1e-9
        }
        assert set(_fixed_columns(set(columns), relations)) == expected
        checked += len(expected)
    assert checked > 100  # the systems fix some columns, not none


def test_counts_the_small_markers_alone_would_pin_are_shown_masked():
    # Four strata of 1 under a total of 4: every count is "<5", and 4 parts of at least 1
    # under a total of at most 4 are each exactly 1. No count hidden beside them helps.
    parts = [("stratum", k) for k in "abcd"]
    counts = {("total",): 4, **dict.fromkeys(parts, 1)}
    shown = protect_counts(counts, totals=[(("total",), parts)])
    assert MASKED_VALUE in shown.values()
    assert set(shown.values()) <= {MASKED_COUNT, MASKED_VALUE}
    # A reader knows a "<5" is 1-4 and a "masked" count any count (it may hide 1-4 here).
    names = list(counts)
    low = [1.0 if shown[c] == MASKED_COUNT else 0.0 for c in names]
    high = [4.0 if shown[c] == MASKED_COUNT else 10_000.0 for c in names]
    relation = LinearConstraint(np.array([[1.0, -1.0, -1.0, -1.0, -1.0]]), 0.0, 0.0)
    for i, name in enumerate(names):
        found = []
        for sign in (1.0, -1.0):
            c = np.zeros(len(names))
            c[i] = sign
            result = milp(c, constraints=relation, bounds=Bounds(low, high), integrality=1)
            found.append(round(result.x[i]))
        assert found[0] < found[1], (name, found)
