"""A study with every rule kind, built from a study file: steps in file order, one person out at each.

Complements test_study_pipeline (the reference study against the oracle): here the rules the
reference study does not use - a limited look-back, death-only follow-up, age, sex,
reimbursement codes, an exclusion and exposure groups with a gap - go through
``build_study_tables`` as a study file states them.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from reference_impl import dispensing, ldn, person
from rxcohort.cohort.build import build_study_tables, required_data_range, select_dispensings_for
from rxcohort.schemas import SILVER_DISPENSINGS, SILVER_PERSONS
from rxcohort.study import parse_study

STUDY = """
schema_version: 1
title: Every rule kind
index_drug: {name: LDN, atc: [N07BB04], strength_mg: {min: 0.5, max: 5}}
index_period: {start: 2013-01-01, end: 2013-12-31}
new_users: {look_back_days: 365}
follow_up: {days: 30, events: [death]}
windows:
  pre: {start: -365, end: -1}
  post: {start: 0, end: 364}
drug_groups:
  antipsychotics: [N05A]
  opioids: [N02A]
inclusion:
  - {name: adults, kind: age, min: 18, max: 80}
  - {name: women, kind: sex, sex: female}
  - {name: rheumatoid_arthritis, kind: reimbursement, codes: [L88], window: pre}
exclusion:
  - {name: antipsychotic_users, kind: drug, drug_group: antipsychotics, window: {start: -90, end: -1}}
exposure_window: post
exposure_groups:
  - {label: ldn_1, min: 1, max: 1}
  - {label: ldn_4plus, min: 4}
"""

INDEX = date(2013, 6, 1)


def day(n: int) -> date:
    return INDEX + timedelta(days=n)


def ra(pid: str) -> dict:
    return dispensing(pid, day(-100), "M01AE01", reimbursement_code="L88")


@pytest.mark.slow
def test_every_rule_kind_in_file_order(spark):
    study = parse_study(STUDY, study_id="every_rule", source="every_rule.yaml").study
    persons = [
        person("kept_1", birth_year=1970),
        person("kept_4", birth_year=1970),
        person("ldn_300_days_before", birth_year=1970),
        person("ldn_400_days_before", birth_year=1970),
        person("died_day_29", death_date=day(29)),
        person("emigrated_day_1", emigration_date=day(1)),  # follow-up is on death only
        person("age_81", birth_year=2013 - 81),
        person("man", sex=1),
        person("no_ra_code"),
        person("antipsychotic_day_minus_90"),
        person("two_ldn", birth_year=1970),
        person("ultra_low_dose_only"),
    ]
    rows = [ldn(p["person_id"], INDEX) for p in persons if p["person_id"] != "ultra_low_dose_only"]
    rows += [ra(p["person_id"]) for p in persons if p["person_id"] != "no_ra_code"]
    rows += [
        ldn("kept_4", day(10)),
        ldn("kept_4", day(20)),
        ldn("kept_4", day(364)),
        ldn("two_ldn", day(5)),
        ldn("ldn_300_days_before", day(-300)),
        ldn("ldn_400_days_before", day(-400)),
        dispensing("antipsychotic_day_minus_90", day(-90), "N05AH04"),
        ldn("ultra_low_dose_only", INDEX, strength_mg=0.25),  # below the strength bounds
        dispensing("kept_1", day(-1), "N02AA01", ddd=2.5),
    ]
    dispensings = spark.createDataFrame(
        [tuple(r[f.name] for f in SILVER_DISPENSINGS.fields) for r in rows], SILVER_DISPENSINGS
    )
    tables = build_study_tables(
        study,
        dispensings=select_dispensings_for(study, dispensings),
        persons=spark.createDataFrame(
            [tuple(p[f.name] for f in SILVER_PERSONS.fields) for p in persons], SILVER_PERSONS
        ),
    )

    assertDataFrameEqual(
        tables.attrition,
        [
            Row(
                step=0,
                criterion="first dispensing of LDN (ATC N07BB04, strength 0.5 to 5 mg, "
                "packs > 0) from 2013-01-01 to 2013-12-31 (the index date)",
                n_persons=11,
                n_excluded=0,
            ),
            Row(
                step=1,
                criterion="new users: no dispensing of LDN before the index date "
                "(look-back: the 365 days before)",
                n_persons=10,
                n_excluded=1,
            ),
            Row(
                step=2,
                criterion="full follow-up: no death before index + 30 days",
                n_persons=9,
                n_excluded=1,
            ),
            Row(step=3, criterion="adults: age at index 18 to 80 years", n_persons=8, n_excluded=1),
            Row(step=4, criterion="women: sex female", n_persons=7, n_excluded=1),
            Row(
                step=5,
                criterion="rheumatoid_arthritis: at least 1 dispensing with reimbursement "
                "code L88 on days -365 to -1 from index",
                n_persons=6,
                n_excluded=1,
            ),
            Row(
                step=6,
                criterion="antipsychotic_users: exclude persons with at least 1 dispensing "
                "of antipsychotics (ATC N05A) on days -90 to -1 from index",
                n_persons=5,
                n_excluded=1,
            ),
            Row(
                step=7,
                criterion="exposure: number of LDN dispensings on days 0 to 364 from index "
                "falls in an exposure group (ldn_1, ldn_4plus)",
                n_persons=4,
                n_excluded=1,
            ),
        ],
        checkRowOrder=True,
    )
    assertDataFrameEqual(
        tables.cohort.select(
            "person_id", "exposure_group", "n_index_drug_dispensings", "age_at_index"
        ),
        [
            Row(
                person_id="emigrated_day_1",
                exposure_group="ldn_1",
                n_index_drug_dispensings=1,
                age_at_index=53,
            ),
            Row(
                person_id="kept_1",
                exposure_group="ldn_1",
                n_index_drug_dispensings=1,
                age_at_index=43,
            ),
            Row(
                person_id="kept_4",
                exposure_group="ldn_4plus",
                n_index_drug_dispensings=4,
                age_at_index=43,
            ),
            Row(
                person_id="ldn_400_days_before",
                exposure_group="ldn_1",
                n_index_drug_dispensings=1,
                age_at_index=43,
            ),
        ],
    )
    consumption = tables.consumption.where("person_id = 'kept_1'").select(
        "drug_group", "window", "ddd"
    )
    assertDataFrameEqual(
        consumption,
        [
            Row(drug_group="antipsychotics", window="pre", ddd=0.0),
            Row(drug_group="antipsychotics", window="post", ddd=0.0),
            Row(drug_group="opioids", window="pre", ddd=2.5),
            Row(drug_group="opioids", window="post", ddd=0.0),
        ],
        rtol=0.0,
        atol=0.0,
    )
    assert required_data_range(study) == (date(2012, 1, 2), date(2014, 12, 30))
