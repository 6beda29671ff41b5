"""use_over_time: users, new users and the mid-period population, against a hand-worked example
and against a brute-force count over the demo warehouse's silver tables."""

from __future__ import annotations

import math
from datetime import date

import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from rxcohort import io
from rxcohort.schemas import SILVER_DISPENSINGS, SILVER_PERSONS
from rxcohort.spark import local_frame
from rxcohort.transforms import utilisation
from rxcohort.transforms.drugs import DrugDefinition

BOUNDS = (0, 18, 45, 65, 80)
LABELS = ("0-17", "18-44", "45-64", "65-79", "80+")
LDN = DrugDefinition(label="LDN", atc_prefixes=("N07BB04",), strength_max_mg=5)
OPIOIDS = DrugDefinition(label="opioids", atc_prefixes=("N02A",))


def _persons(spark, rows):
    full = [
        (pid, sex, birth, death, emigration, None, "persons.csv", "load")
        for pid, sex, birth, death, emigration in rows
    ]
    return local_frame(spark, full, SILVER_PERSONS)


def _dispensings(spark, rows):
    names = SILVER_DISPENSINGS.fieldNames()
    full = []
    for i, (pid, day, atc, strength, packs) in enumerate(rows):
        values = dict.fromkeys(names)
        values.update(
            dispensing_id=f"d{i}",
            person_id=pid,
            dispense_date=day,
            atc_code=atc,
            strength_mg=strength,
            packs=packs,
            dispense_year=day.year,
        )
        full.append(tuple(values[n] for n in names))
    return local_frame(spark, full, SILVER_DISPENSINGS)


@pytest.fixture(scope="module")
def worked(spark):
    """Five persons, worked out by hand in the comments of the tests below."""
    persons = _persons(
        spark,
        [
            ("p1", 2, 1960, None, None),  # female, 53 in 2013
            ("p2", 1, 1990, date(2013, 3, 10), None),  # male, 23, died 10 March
            ("p3", 2, 2013, None, None),  # female, born in 2013: counts from 1 July
            ("p4", 1, 1940, None, date(2013, 7, 1)),  # male, 73, emigrated 1 July
            ("p5", None, 1970, None, None),  # sex unknown, 43
        ],
    )
    dispensings = _dispensings(
        spark,
        [
            ("p1", date(2012, 12, 1), "N07BB04", 4.5, 1.0),  # before 2013: p1 is no new user
            ("p1", date(2013, 2, 3), "N07BB04", 4.5, 1.0),
            ("p1", date(2013, 2, 20), "N07BB04", 4.5, 2.0),
            ("p1", date(2013, 5, 1), "N07BB04", 4.5, -1.0),  # a return: no use
            ("p2", date(2013, 1, 5), "N07BB04", 3.0, 1.0),  # first ever: new in 2013
            ("p4", date(2013, 6, 10), "N02AA01", None, 1.0),
            ("p5", date(2013, 6, 10), "N07BB04", 50.0, 1.0),  # 50 mg: not low-dose
        ],
    )
    periods = utilisation.calendar_periods(date(2013, 1, 1), date(2013, 12, 31))
    users, first = utilisation.user_counts(
        dispensings, persons, [LDN, OPIOIDS], start=date(2013, 1, 1), end=date(2013, 12, 31)
    )
    table = utilisation.use_over_time_table(
        utilisation.person_groups(persons),
        users,
        first,
        drugs=["LDN", "opioids"],
        periods=periods,
        bounds=BOUNDS,
        labels=LABELS,
        new_users_from=date(2013, 1, 1),
    )
    return table.set_index(["period_type", "period_start", "drug", "sex", "age_band"]).sort_index()


def test_calendar_periods_are_whole_years_and_months_inside_the_span():
    periods = utilisation.calendar_periods(date(2013, 1, 15), date(2014, 12, 31))
    assert [p.start for p in periods if p.period_type == "year"] == [date(2014, 1, 1)]
    months = [p for p in periods if p.period_type == "month"]
    assert months[0].start == date(2013, 2, 1) and months[-1].end == date(2014, 12, 31)
    assert len(months) == 23
    assert months[0].mid == date(2013, 2, 15) and periods[0].mid == date(2014, 7, 1)


def test_the_mid_year_population_by_hand(worked):
    year = worked.xs(("year", date(2013, 1, 1), "LDN"))
    # 1 July: p2 died, p4 emigrated that day; p3 (born 2013) counts; p5 in the margins only.
    assert year.loc[("all", "all"), "n_population"] == 3
    assert year.loc[("female", "all"), "n_population"] == 2
    assert year.loc[("male", "all"), "n_population"] == 0
    assert year.loc[("female", "0-17"), "n_population"] == 1
    assert year.loc[("all", "18-44"), "n_population"] == 1  # p5
    assert year.loc[("female", "45-64"), "n_population"] == 1


def test_monthly_population_follows_deaths_emigrations_and_births(worked):
    def population(month: int) -> int:
        return int(worked.loc[("month", date(2013, month, 1), "LDN", "all", "all"), "n_population"])

    assert population(2) == 4  # p1 p2 p4 p5 (p2 dies 10 March, after the 15th of February)
    assert population(3) == 3  # p1 p4 p5
    assert population(6) == 3  # p1 p4 p5 (p3 not yet counted)
    assert population(7) == 3  # p1 p3 p5 (p4 left on 1 July)


def test_users_and_new_users_by_hand(worked):
    year = worked.xs(("year", date(2013, 1, 1), "LDN"))
    # p1 and p2 collected LDN in 2013; p2's is their first ever; p5's 50 mg is not LDN.
    assert year.loc[("all", "all"), "n_users"] == 2
    assert year.loc[("all", "all"), "n_new_users"] == 1
    assert year.loc[("male", "18-44"), "n_users"] == 1
    # p2 died before 1 July: a user outside the mid-year population, so no rate for men.
    assert year.loc[("male", "all"), "n_population"] == 0
    assert pd.isna(year.loc[("male", "all"), "per_1000"])
    assert year.loc[("all", "all"), "per_1000"] == pytest.approx(1000 * 2 / 3)
    february = worked.xs(("month", date(2013, 2, 1), "LDN"))
    assert february.loc[("all", "all"), "n_users"] == 1  # two dispensings, one person
    assert february.loc[("all", "all"), "n_new_users"] == 0
    may = worked.xs(("month", date(2013, 5, 1), "LDN"))
    assert may.loc[("all", "all"), "n_users"] == 0  # a return is no use
    assert worked.loc[("month", date(2013, 6, 1), "opioids", "male", "65-79"), "n_users"] == 1
    assert worked.loc[("year", date(2013, 1, 1), "opioids", "all", "all"), "n_new_users"] == 1


def test_new_users_are_undefined_without_the_look_back(spark, worked):
    persons = _persons(spark, [("p1", 2, 1960, None, None)])
    dispensings = _dispensings(spark, [("p1", date(2013, 2, 3), "N07BB04", 4.5, 1.0)])
    users, first = utilisation.user_counts(
        dispensings, persons, [LDN], start=date(2013, 1, 1), end=date(2013, 12, 31)
    )
    table = utilisation.use_over_time_table(
        utilisation.person_groups(persons),
        users,
        first,
        drugs=["LDN"],
        periods=utilisation.calendar_periods(date(2013, 1, 1), date(2013, 12, 31)),
        bounds=BOUNDS,
        labels=LABELS,
        new_users_from=date(2013, 6, 1),
    )
    months = table[(table["period_type"] == "month") & (table["sex"] == "all")]
    months = months[months["age_band"] == "all"].set_index("period_start")
    assert pd.isna(months.loc[date(2013, 5, 1), "n_new_users"])
    assert months.loc[date(2013, 6, 1), "n_new_users"] == 0
    year = table[(table["period_type"] == "year") & (table["sex"] == "all")]
    assert year["n_new_users"].isna().all()


def _wilson_by_root_finding(events: int, total: int) -> tuple[float, float]:
    """The score interval as the two roots of |p_hat - p| = z * sqrt(p (1 - p) / n)."""
    z, p_hat = norm.ppf(0.975), events / total

    def gap(p: float) -> float:
        return abs(p_hat - p) - z * math.sqrt(p * (1 - p) / total)

    low = 0.0 if events == 0 else brentq(gap, 1e-15, min(p_hat, 1 - 1e-12))
    high = 1.0 if events == total else brentq(gap, max(p_hat, 1e-12), 1 - 1e-15)
    return low, high


@pytest.mark.parametrize(("events", "total"), [(0, 10), (1, 3), (7, 20), (52, 18848), (5, 5)])
def test_wilson_interval_matches_the_score_test_inverted(events, total):
    low, high = utilisation.wilson_interval(events, total)
    expected = _wilson_by_root_finding(events, total)
    assert low == pytest.approx(expected[0], abs=1e-9)
    assert high == pytest.approx(expected[1], abs=1e-9)
    assert utilisation.wilson_interval(3, 2) is None
    assert utilisation.wilson_interval(0, 0) is None


def test_use_over_time_on_the_demo_warehouse_equals_a_brute_force_count(
    spark, demo_warehouse, repo_root, tmp_path
):
    """Every row of the table for LDN and opioids in 2013, recounted from the silver tables
    with plain pandas masks (no code shared with the module)."""
    from rxcohort.pipelines.analyses import run_use_over_time
    from rxcohort.study.loader import load_study_source

    warehouse, _, _ = demo_warehouse
    study = load_study_source(repo_root / "cohorts" / "ldn_utilisation_2013_2014.yaml").study
    dispensings = io.read_table(spark, warehouse / "silver" / "dispensings")
    persons = io.read_table(spark, warehouse / "silver" / "persons")
    run_use_over_time(
        study=study,
        dispensings=dispensings,
        persons=persons,
        data_start=date(2011, 1, 1),
        study_dir=tmp_path,
        commit_info={},
    )
    table = io.read_table(spark, tmp_path / "use_over_time").toPandas()
    people = persons.select("person_id", "sex", "birth_year", "death_date", "emigration_date")
    people = people.toPandas().set_index("person_id")
    uses = (
        dispensings.where(
            (dispensings.atc_code.startswith("N07BB04") & (dispensings.strength_mg <= 5))
            | dispensings.atc_code.startswith("N02A")
        )
        .where(dispensings.packs > 0)
        .select("person_id", "dispense_date", "atc_code")
        .toPandas()
    )
    uses["drug"] = ["LDN" if a.startswith("N07BB04") else "opioids" for a in uses["atc_code"]]
    first = uses.groupby(["person_id", "drug"])["dispense_date"].min()
    never = pd.Timestamp.max.date()
    death = people["death_date"].map(lambda d: never if pd.isna(d) else d)
    emigration = people["emigration_date"].map(lambda d: never if pd.isna(d) else d)
    sex_code = {"male": 1, "female": 2}
    checked = 0
    for row in table[table["drug"].isin(["LDN", "opioids"])].itertuples():
        start = row.period_start
        if start.year != 2013:
            continue
        if row.period_type == "year":
            end, mid = date(2013, 12, 31), date(2013, 7, 1)
        else:
            following = date(2013 + start.month // 12, start.month % 12 + 1, 1)
            end, mid = following - pd.Timedelta(days=1), date(2013, start.month, 15)
        cell = pd.Series(True, index=people.index)
        if row.sex != "all":
            cell &= people["sex"] == sex_code[row.sex]
        if row.age_band != "all":
            low, _, high = row.age_band.rstrip("+").partition("-")
            age = mid.year - people["birth_year"]
            cell &= (age >= int(low)) & (age <= (int(high) if high else 500))
        born = (people["birth_year"] < mid.year) | (
            (people["birth_year"] == mid.year) & (mid.month >= 7)
        )
        resident = born & (death > mid) & (emigration > mid)
        mine = uses[(uses["drug"] == row.drug) & uses["dispense_date"].between(start, end)]
        users = {pid for pid in set(mine["person_id"]) if cell[pid]}
        new = {pid for pid in users if start <= first[(pid, row.drug)] <= end}
        assert (row.n_users, row.n_new_users, row.n_population) == (
            len(users),
            len(new),
            int((cell & resident).sum()),
        ), row
        checked += 1
    assert checked == 2 * 13 * 3 * 6
