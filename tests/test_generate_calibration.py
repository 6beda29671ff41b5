"""A 20,000-person synthetic NorPD against the published figures it is calibrated to.

One delivery is generated per module (LDN enriched to 8% of persons so the LDN groups are
large enough); every figure is computed from the delivered files with pandas, following the
contract's study rules (CONTRACT §5), not from the generator's internals. Targets come from
STUDY.md; tolerances allow for sampling noise at this size.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rxcohort.generate import generate_delivery

pytestmark = pytest.mark.slow

PERSONS = 20_000
LDN_RATE = 0.08
YEARS = range(2011, 2016)
ATC = re.compile(r"^[A-Z][0-9]{2}[A-Z]{2}[0-9]{2}$")
DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


@pytest.fixture(scope="module")
def delivery(spark, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("calibration")
    generate_delivery(spark, root, persons=PERSONS, seed=2013, ldn_rate=LDN_RATE)
    return root


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)


@pytest.fixture(scope="module")
def data(delivery):
    persons = _read(delivery / "persons.csv")
    prescribers = _read(delivery / "prescribers.csv")
    parts = []
    for year in YEARS:
        part = _read(delivery / "dispensings" / f"dispensings_{year}.csv")
        part["file_year"] = year
        parts.append(part)
    d = pd.concat(parts, ignore_index=True)
    d["date"] = pd.to_datetime(d.dispense_date, format="%Y-%m-%d")
    d["packs_n"] = d.packs.astype(float)
    d["strength"] = pd.to_numeric(d.strength_mg)
    d["ddd"] = d.packs_n * pd.to_numeric(d.ddd_per_pack)
    truth = json.loads((delivery / "truth.json").read_text())
    return persons, prescribers, d, truth


# ---------------------------------------------------------------------------------------------
# The contract's format, read independently
# ---------------------------------------------------------------------------------------------


def test_files_have_the_contract_columns_in_order(delivery):
    expected = {
        "persons.csv": "person_id;sex;birth_year;death_date;emigration_date;county",
        "prescribers.csv": "prescriber_id;profession;specialty",
    }
    for year in YEARS:
        expected[f"dispensings/dispensings_{year}.csv"] = (
            "dispensing_id;person_id;dispense_date;atc_code;product_id;product_name;magistral;"
            "strength_mg;units_per_pack;packs;ddd_per_pack;prescriber_id;reimbursement;"
            "reimbursement_code"
        )
    for rel, header in expected.items():
        with open(delivery / rel, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")
        assert lines[0] == header, rel
        assert lines[-1] == "" and all(line.count(";") == header.count(";") for line in lines[1:-1])
    manifest = json.loads((delivery / "manifest.json").read_text())
    assert set(manifest["files"]) == set(expected)


def test_persons_and_prescribers_values_have_contract_types(data):
    persons, prescribers, _, _ = data
    assert persons.person_id.is_unique and len(persons) == PERSONS
    assert set(persons.sex) == {"1", "2"}
    assert persons.birth_year.str.fullmatch(r"(19|20)[0-9]{2}").all()
    for col in ("death_date", "emigration_date"):
        filled = persons[col][persons[col] != ""]
        assert len(filled) > 0
        assert pd.to_datetime(filled, format="%Y-%m-%d").between("2011-01-01", "2015-12-31").all()
    assert persons.county.str.fullmatch(r"([0-9]{2})?").all()
    assert prescribers.prescriber_id.is_unique
    assert set(prescribers.profession) == {"physician", "dentist", "nurse", "other"}
    assert set(prescribers.specialty) <= {
        "",
        "general_practice",
        "neurology",
        "rheumatology",
        "internal_medicine",
        "psychiatry",
        "other",
    }


def test_dispensings_values_have_contract_types(data):
    persons, prescribers, d, _ = data
    assert d.dispensing_id.is_unique
    assert d.person_id.isin(persons.person_id).all()
    assert d.atc_code.str.match(ATC).all()
    assert d.product_id.str.fullmatch(r"[0-9]{6}").all()
    assert set(d.magistral) == {"0", "1"}
    for col in ("units_per_pack", "packs"):
        assert d[col].str.match(DECIMAL).all(), col
    for col in ("strength_mg", "ddd_per_pack"):
        assert d[col].str.fullmatch(r"(-?[0-9]+(\.[0-9]+)?)?").all(), col
    assert set(d.reimbursement) == {"blue", "white", "h"}
    known = set(prescribers.prescriber_id) | {""}
    assert d.prescriber_id.isin(known).all()
    assert 0 < (d.prescriber_id == "").mean() < 0.01


def test_every_row_lies_in_its_file_year_and_files_are_sorted(data):
    _, _, d, _ = data
    assert (d.date.dt.year == d.file_year).all()
    assert d.date.between("2011-01-01", "2015-12-31").all()
    for _, part in d.groupby("file_year"):
        keys = list(zip(part.dispense_date, part.dispensing_id, strict=True))
        assert keys == sorted(keys)


def test_clean_delivery_has_no_defects_but_genuine_returns(data):
    _, _, d, truth = data
    assert sum(truth["defects"]["by_kind"].values()) == 0
    line_text = d.drop(columns=["file_year", "date", "packs_n", "strength", "ddd"]).astype(str)
    assert not line_text.duplicated().any()
    assert not line_text.apply(lambda c: c.str.strip() != c).any().any()
    assert (d[d.magistral == "0"].ddd_per_pack != "").all()
    returns = int((d.packs_n < 0).sum())
    assert returns == truth["dispensings"]["genuine_returns"]
    assert returns / len(d) == pytest.approx(0.002, abs=0.0005)


# ---------------------------------------------------------------------------------------------
# Population, prescribers, background use
# ---------------------------------------------------------------------------------------------


def test_population_has_norwegian_structure_and_turnover(data):
    persons, _, _, _ = data
    # Statistics Norway, 1 January 2011: 22% under 18, 15% aged 65 or more.
    age = 2010 - persons.birth_year.astype(int)
    age = age[age >= 0]
    assert (persons.sex == "2").mean() == pytest.approx(0.5, abs=0.015)
    assert (age < 18).mean() == pytest.approx(0.22, abs=0.015)
    assert (age >= 65).mean() == pytest.approx(0.15, abs=0.015)
    born = (persons.birth_year.astype(int) >= 2011).mean()
    assert born == pytest.approx(0.057, abs=0.006)  # ~1.2% a year
    deaths_per_year = (persons.death_date != "").mean() / 5
    assert deaths_per_year == pytest.approx(0.0085, abs=0.0015)
    assert (persons.emigration_date != "").mean() / 5 == pytest.approx(0.005, abs=0.0015)
    assert (persons.county == "03").mean() == pytest.approx(0.125, abs=0.015)  # Oslo


def test_prescribers_are_a_realistic_registered_population(data):
    _, prescribers, d, _ = data
    physicians = prescribers[prescribers.profession == "physician"]
    assert len(physicians) == PERSONS // 200
    named = physicians[physicians.specialty != ""].specialty.value_counts()
    assert named.index[0] == "general_practice"
    # Everyone registered is listed, prescribing or not.
    assert not prescribers.prescriber_id.isin(d.prescriber_id).all()


def test_dispensing_volume_and_atc_mix(data):
    _, _, d, _ = data
    per_person_year = len(d) / PERSONS / 5
    assert 7 <= per_person_year <= 13
    by_year = d.groupby("file_year").size()
    assert by_year.max() / by_year.min() < 1.08
    group = d.atc_code.str[:4]
    share = group.value_counts(normalize=True)
    for g in ("N02A", "M01A", "N02B", "N03A", "N05A", "N05B", "N05C", "N06A", "C10A", "J01C"):
        assert share.get(g, 0) > 0.004, g
    assert share.index.nunique() >= 40
    opioids = d[group == "N02A"].atc_code.unique()
    assert {"N02AA59", "N02AX02", "N02AA05", "N02AA01", "N02AE01", "N02AB03"} <= set(opioids)


def test_codeine_combinations_carry_the_code_valid_at_the_time(data):
    _, _, d, _ = data
    codeine = d[d.product_name.str.contains("/30 mg")]
    assert set(codeine.atc_code) == {"N02AA59"}  # N02AJ06 only from 2017
    assert codeine.ddd_per_pack.isin({"4", "20"}).all()  # 20 or 100 tablets, DDD 5 tablets


def test_chronic_users_refill_and_reimbursement_codes_follow_the_rules(data):
    _, _, d, _ = data
    assert (d[d.reimbursement == "blue"].reimbursement_code != "").all()
    assert (d[d.reimbursement == "white"].reimbursement_code == "").all()
    assert (d.reimbursement == "h").mean() < 0.01
    codes = set(d.reimbursement_code)
    assert {"L88", "L18", "N86", "G35", "T93", "K86"} <= codes
    statins = d[d.atc_code.str.startswith("C10AA") & (d.packs_n > 0)]
    fills = statins.groupby("person_id").size()
    assert fills.median() >= 8  # regular refills over five years
    antibiotics = d[d.atc_code.str.startswith("J01")].groupby("person_id").size()
    assert antibiotics.median() <= 2  # occasional


# ---------------------------------------------------------------------------------------------
# The LDN wave
# ---------------------------------------------------------------------------------------------


def _ldn(d: pd.DataFrame) -> pd.DataFrame:
    return d[(d.atc_code == "N07BB04") & (d.strength <= 5) & (d.packs_n > 0)]


def _users(d: pd.DataFrame) -> pd.Index:
    ldn = _ldn(d)
    return pd.Index(ldn[ldn.date.dt.year.isin([2013, 2014])].person_id.unique(), name="person_id")


def _in_window(df: pd.DataFrame, index: pd.Series, start: int, end: int) -> pd.DataFrame:
    m = df.merge(index.rename("index_date").reset_index(), on="person_id")
    days = (m.date - m.index_date).dt.days
    return m[(days >= start) & (days <= end)]


def test_ldn_products_are_compounded_low_dose_mostly_white(data):
    _, _, d, _ = data
    naltrexone = d[d.atc_code == "N07BB04"]
    ldn = naltrexone[naltrexone.strength <= 5]
    assert set(ldn.magistral) == {"1"} and set(ldn.ddd_per_pack) == {""}
    assert {"1.5", "3", "4.5"} <= set(ldn.strength_mg)
    assert (ldn.reimbursement == "white").mean() > 0.9
    dependence = naltrexone[naltrexone.strength > 5]
    assert len(dependence) > 0
    assert set(dependence.strength_mg) == {"50"} and set(dependence.magistral) == {"0"}
    assert set(dependence.ddd_per_pack) == {"28"}


def test_ldn_users_are_the_share_sex_and_age_asked_for(data):
    persons, _, d, truth = data
    users = _users(d)
    assert len(users) / PERSONS == pytest.approx(LDN_RATE, rel=0.08)
    assert len(users) == truth["ldn"]["users_2013_2014"] + _early_users_in_wave(d)
    who = persons.set_index("person_id").loc[users]
    assert (who.sex == "2").mean() == pytest.approx(0.74, abs=0.03)
    assert np.median(2013 - who.birth_year.astype(int)) == pytest.approx(52, abs=2)


def _early_users_in_wave(d: pd.DataFrame) -> int:
    ldn = _ldn(d)
    first = ldn.groupby("person_id").date.min()
    early = first[first < "2013-01-01"].index
    return int(
        ldn[ldn.person_id.isin(early) & ldn.date.dt.year.isin([2013, 2014])].person_id.nunique()
    )


def test_ldn_uptake_follows_the_wave(data):
    _, _, d, _ = data
    ldn = _ldn(d)
    first = ldn.groupby("person_id").date.min()
    users = _users(d)
    start = first.loc[users]
    # A handful started before 2013; nobody in January 2013; a spring peak; 70-75% in 2013.
    assert 1 <= (start < "2013-01-01").sum() <= 10
    assert not start.between("2013-01-01", "2013-01-31").any()
    months = start[start.dt.year == 2013].dt.month.value_counts()
    assert months.idxmax() in (3, 4)
    assert months[3] > 3 * months[12]
    assert (start.dt.year == 2013).mean() == pytest.approx(0.725, abs=0.03)


def test_implied_daily_dose_centres_on_3_7_mg(data):
    _, _, d, _ = data
    ldn = _ldn(d).sort_values(["person_id", "date"])
    ldn = ldn[ldn.person_id.isin(_users(d))]
    mg = ldn.strength * ldn.units_per_pack.astype(float) * ldn.packs_n
    g = ldn.assign(mg=mg).groupby("person_id")
    span = (g.date.max() - g.date.min()).dt.days
    # mg collected before the last dispensing, over the days from first to last
    dose = (g.mg.sum() - g.mg.last()) / span
    dose = dose[span > 0]
    assert len(dose) > 500
    assert dose.median() == pytest.approx(3.7, abs=0.3)


@pytest.fixture(scope="module")
def cohort(data):
    """The reference study's cohort and exposure groups (CONTRACT §5), from the files."""
    persons, _, d, _ = data
    ldn = _ldn(d)
    first = ldn.groupby("person_id").date.min()
    index = ldn[ldn.date.dt.year == 2013].groupby("person_id").date.min()
    new_users = index[first.loc[index.index] == index]
    p = persons.set_index("person_id").loc[new_users.index]
    limit = new_users + pd.Timedelta(days=364)
    gone = pd.Series(False, index=new_users.index)
    for col in ("death_date", "emigration_date"):
        when = pd.to_datetime(p[col].replace("", None), format="%Y-%m-%d")
        gone |= when < limit
    new_users = new_users[~gone]
    n = _in_window(ldn, new_users, 0, 364).groupby("person_id").size()
    n = n.reindex(new_users.index, fill_value=0)
    group = pd.cut(n, [0, 1, 3, np.inf], labels=["ldn_1", "ldn_2_3", "ldn_4plus"])
    opioids = d[d.atc_code.str.startswith("N02A") & (d.packs_n > 0)]
    prior = _in_window(opioids, new_users, -365, -1).person_id.unique()
    return new_users, group, new_users.loc[prior]


def test_exposure_groups_of_2013_starters(cohort):
    new_users, group, _ = cohort
    assert len(new_users) > 800
    shares = group.value_counts(normalize=True)
    assert shares["ldn_1"] == pytest.approx(0.32, abs=0.04)
    assert shares["ldn_2_3"] == pytest.approx(0.23, abs=0.04)
    assert shares["ldn_4plus"] == pytest.approx(0.45, abs=0.04)


def test_a_quarter_of_users_had_an_opioid_the_year_before(data):
    _, _, d, _ = data
    ldn = _ldn(d)
    first = ldn.groupby("person_id").date.min()
    start = first.loc[_users(d)]
    opioids = d[d.atc_code.str.startswith("N02A") & (d.packs_n > 0)]
    prior = _in_window(opioids, start, -365, -1).person_id.nunique()
    assert prior / len(start) == pytest.approx(0.25, abs=0.03)


def _before_after(d: pd.DataFrame, cohort_index: pd.Series, prefix: str) -> pd.DataFrame:
    use = d[d.atc_code.str.startswith(prefix)]
    pre = _in_window(use, cohort_index, -365, -1).groupby("person_id").ddd.sum()
    post = _in_window(use, cohort_index, 0, 364).groupby("person_id").ddd.sum()
    return pd.DataFrame(
        {
            "pre": pre.reindex(cohort_index.index, fill_value=0.0),
            "post": post.reindex(cohort_index.index, fill_value=0.0),
        }
    )


def test_opioid_use_falls_by_the_injected_effect(data, cohort):
    _, _, d, truth = data
    _, group, opioid_cohort = cohort
    assert truth["effects"]["relative_change"]["N02A"] == {
        "ldn_1": 0.0,
        "ldn_2_3": -0.15,
        "ldn_4plus": -0.46,
    }
    ddd = _before_after(d, opioid_cohort, "N02A").join(group.rename("group"))
    assert len(ddd) > 250
    assert 75 <= ddd.pre.mean() <= 100  # published: about 80-90 DDD in the year before
    means = ddd.groupby("group", observed=True)[["pre", "post"]].mean()
    rel = means.post / means.pre - 1
    assert rel["ldn_4plus"] == pytest.approx(-0.46, abs=0.1)
    assert rel["ldn_2_3"] == pytest.approx(-0.15, abs=0.12)
    assert rel["ldn_1"] == pytest.approx(0.0, abs=0.1)
    assert rel["ldn_4plus"] < rel["ldn_2_3"] < rel["ldn_1"]


@pytest.mark.parametrize("prefix", ["M01A", "N02B"])
def test_nsaids_and_other_analgesics_do_not_change(data, cohort, prefix):
    _, _, d, _ = data
    new_users, _, _ = cohort
    # All 2013 new users, for power: a paired t-test does not reject "no change" at 1%.
    ddd = _before_after(d, new_users, prefix)
    assert ddd.pre.mean() > 5
    assert stats.ttest_rel(ddd.post, ddd.pre).pvalue > 0.01
    assert ddd.post.mean() / ddd.pre.mean() - 1 == pytest.approx(0.0, abs=0.15)


def test_ldn_prescribers_are_a_fifth_of_doctors_and_most_gps(data):
    _, prescribers, d, _ = data
    ldn = _ldn(d)
    wrote = set(ldn[ldn.date.dt.year.isin([2013, 2014])].prescriber_id)
    physicians = prescribers[prescribers.profession == "physician"]
    gps = physicians[physicians.specialty == "general_practice"]
    assert physicians.prescriber_id.isin(wrote).mean() == pytest.approx(0.20, abs=0.03)
    assert gps.prescriber_id.isin(wrote).mean() == pytest.approx(0.71, abs=0.06)


def test_truth_records_what_was_asked(data):
    _, _, _, truth = data
    assert truth["arguments"] == {
        "persons": PERSONS,
        "seed": 2013,
        "start": "2011-01-01",
        "end": "2015-12-31",
        "defects": 0.0,
        "gzip": False,
        "ldn_rate": LDN_RATE,
    }
    assert truth["effects"]["ramp_days"] == [30, 90]
    assert truth["calibration_targets"]["ldn_female_share"] == 0.74
    assert date.fromisoformat(truth["arguments"]["end"]).year == 2015
