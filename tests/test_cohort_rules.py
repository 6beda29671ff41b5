"""Scenario tests for the cohort transforms: rows in, expected rows out, one rule per test.

Day-count rules are tested on the boundary day and the days either side of it. Most scenarios
put the index date on 2013-06-01 and place dispensings at ``day(n)`` = index + n days.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pyspark.sql import Row
from pyspark.sql.types import DateType, IntegerType, LongType, StringType, StructField, StructType
from pyspark.testing import assertDataFrameEqual

from reference_impl import dispensing, ldn, person
from rxcohort.cohort import (
    Cohort,
    DrugDefinition,
    add_exposure_count,
    add_exposure_group,
    add_person_attributes,
    generate_index_cohort,
    require_age,
    require_drug_use,
    require_exposure_group,
    require_follow_up,
    require_new_users,
    require_reimbursement_code,
    require_sex,
    summarise_attrition,
)
from rxcohort.schemas import SILVER_DISPENSINGS, SILVER_PERSONS
from rxcohort.transforms.codes import starts_with_any, starts_with_any_filter
from rxcohort.transforms.consumption import summarise_consumption
from rxcohort.transforms.dispensings import select_cohort_dispensings, select_study_dispensings

INDEX = date(2013, 6, 1)
LDN = DrugDefinition(label="LDN", atc_prefixes=("N07BB04",), strength_max_mg=5.0)
EXACT = {"rtol": 0.0, "atol": 0.0}

COHORT = StructType([StructField("person_id", StringType()), StructField("index_date", DateType())])


def day(n: int) -> date:
    return INDEX + timedelta(days=n)


def silver(spark, rows, schema=SILVER_DISPENSINGS):
    return spark.createDataFrame([tuple(r[f.name] for f in schema.fields) for r in rows], schema)


def cohort_at_index(spark, *person_ids: str):
    return spark.createDataFrame([(p, INDEX) for p in person_ids], COHORT)


def kept_ids(frame) -> list[str]:
    return sorted(r["person_id"] for r in frame.select("person_id").collect())


def applied(cohort: Cohort) -> tuple:
    """A new cohort, or a rule applied to a cohort of no steps yet: the persons and the one
    attrition row the step recorded."""
    assert len(cohort.steps) == 1
    return cohort.frame, cohort.steps[0]


def one_row(frame) -> tuple:
    rows = frame.collect()
    assert len(rows) == 1
    return tuple(rows[0])


# -- rules 1 and 2: the index date -------------------------------------------------------------


def test_index_date_is_the_first_ldn_dispensing_in_the_period(spark):
    rows = [
        ldn("start_minus_1", date(2012, 12, 31)),
        ldn("start", date(2013, 1, 1)),
        ldn("start_plus_1", date(2013, 1, 2)),
        ldn("end_minus_1", date(2013, 12, 30)),
        ldn("end_minus_1", date(2013, 12, 31)),
        ldn("end", date(2013, 12, 31)),
        ldn("end_plus_1", date(2014, 1, 1)),
        # 50 mg naltrexone shares the ATC code and is not LDN; 5 mg is LDN, 5.01 mg is not.
        dispensing("fifty_mg_first", date(2013, 2, 1), "N07BB04", strength_mg=50.0),
        ldn("fifty_mg_first", date(2013, 3, 1), strength_mg=5.0),
        ldn("above_5_mg", date(2013, 3, 1), strength_mg=5.01),
        ldn("no_strength", date(2013, 3, 1), strength_mg=None),
        # A return or a zero-pack correction is not a dispensing.
        ldn("return_first", date(2013, 2, 1), packs=-1.0, ddd=-0.5),
        ldn("return_first", date(2013, 4, 1)),
        ldn("zero_packs_first", date(2013, 2, 2), packs=0.0),
        ldn("zero_packs_first", date(2013, 2, 3)),
        # Two on the index date: strength and prescriber come from the smaller dispensing_id.
        ldn("same_day", date(2013, 5, 5), dispensing_id="D2", strength_mg=4.5, prescriber_id="P2"),
        ldn("same_day", date(2013, 5, 5), dispensing_id="D1", strength_mg=1.5, prescriber_id="P1"),
        dispensing("opioid_only", date(2013, 5, 5), "N02AX02"),
    ]
    cohort, row = applied(
        generate_index_cohort(
            silver(spark, rows), index_drug=LDN, period=(date(2013, 1, 1), date(2013, 12, 31))
        )
    )
    assertDataFrameEqual(
        cohort,
        [
            Row(
                person_id="start",
                index_date=date(2013, 1, 1),
                index_strength_mg=4.5,
                index_prescriber_id="P1",
            ),
            Row(
                person_id="start_plus_1",
                index_date=date(2013, 1, 2),
                index_strength_mg=4.5,
                index_prescriber_id="P1",
            ),
            Row(
                person_id="end_minus_1",
                index_date=date(2013, 12, 30),
                index_strength_mg=4.5,
                index_prescriber_id="P1",
            ),
            Row(
                person_id="end",
                index_date=date(2013, 12, 31),
                index_strength_mg=4.5,
                index_prescriber_id="P1",
            ),
            Row(
                person_id="fifty_mg_first",
                index_date=date(2013, 3, 1),
                index_strength_mg=5.0,
                index_prescriber_id="P1",
            ),
            Row(
                person_id="return_first",
                index_date=date(2013, 4, 1),
                index_strength_mg=4.5,
                index_prescriber_id="P1",
            ),
            Row(
                person_id="zero_packs_first",
                index_date=date(2013, 2, 3),
                index_strength_mg=4.5,
                index_prescriber_id="P1",
            ),
            Row(
                person_id="same_day",
                index_date=date(2013, 5, 5),
                index_strength_mg=1.5,
                index_prescriber_id="P1",
            ),
        ],
        **EXACT,
    )
    assert one_row(row) == (
        "first dispensing of LDN (ATC N07BB04, strength <= 5 mg, packs > 0) "
        "from 2013-01-01 to 2013-12-31 (the index date)",
        8,
    )


# -- rule 3: new users -------------------------------------------------------------------------


def test_new_users_have_no_ldn_before_the_index_date(spark):
    rows = [
        ldn("ldn_day_minus_1", day(-1)),
        ldn("ldn_day_0", day(0)),
        ldn("ldn_day_1", day(1)),
        ldn("ldn_years_before", date(2005, 1, 1)),
        dispensing("fifty_mg_day_minus_1", day(-1), "N07BB04", strength_mg=50.0),
        ldn("return_day_minus_1", day(-1), packs=-1.0),
        ldn("no_strength_day_minus_1", day(-1), strength_mg=None),
    ]
    ids = sorted({r["person_id"] for r in rows})
    kept, row = applied(
        require_new_users(
            Cohort(cohort_at_index(spark, *ids)),
            silver(spark, rows),
            index_drug=LDN,
            look_back_days=None,
        )
    )
    assert kept_ids(kept) == [
        "fifty_mg_day_minus_1",
        "ldn_day_0",
        "ldn_day_1",
        "no_strength_day_minus_1",
        "return_day_minus_1",
    ]
    assert one_row(row) == (
        "new users: no dispensing of LDN before the index date (look-back: all earlier data)",
        5,
    )


def test_new_users_with_a_look_back_of_365_days(spark):
    rows = [
        ldn("day_minus_366", day(-366)),
        ldn("day_minus_365", day(-365)),
        ldn("day_minus_364", day(-364)),
    ]
    kept, row = applied(
        require_new_users(
            Cohort(cohort_at_index(spark, "day_minus_366", "day_minus_365", "day_minus_364")),
            silver(spark, rows),
            index_drug=LDN,
            look_back_days=365,
        )
    )
    assert kept_ids(kept) == ["day_minus_366"]
    assert one_row(row)[0].endswith("(look-back: the 365 days before)")


# -- rule 4: full follow-up --------------------------------------------------------------------


def test_follow_up_excludes_death_or_emigration_before_index_plus_364(spark):
    schema = StructType(
        [
            *COHORT.fields,
            StructField("death_date", DateType()),
            StructField("emigration_date", DateType()),
        ]
    )
    cohort = spark.createDataFrame(
        [
            ("death_363", INDEX, day(363), None),
            ("death_364", INDEX, day(364), None),
            ("death_365", INDEX, day(365), None),
            ("death_0", INDEX, day(0), None),
            ("emigration_363", INDEX, None, day(363)),
            ("emigration_364", INDEX, None, day(364)),
            ("emigration_365", INDEX, None, day(365)),
            ("neither", INDEX, None, None),
        ],
        schema,
    )
    kept, row = applied(require_follow_up(Cohort(cohort), days=364, events=("death", "emigration")))
    assert kept_ids(kept) == [
        "death_364",
        "death_365",
        "emigration_364",
        "emigration_365",
        "neither",
    ]
    assert one_row(row) == ("full follow-up: no death or emigration before index + 364 days", 5)


def test_follow_up_on_death_only_ignores_emigration(spark):
    schema = StructType(
        [
            *COHORT.fields,
            StructField("death_date", DateType()),
            StructField("emigration_date", DateType()),
        ]
    )
    cohort = spark.createDataFrame([("emigrated", INDEX, None, day(10))], schema)
    kept, _ = applied(require_follow_up(Cohort(cohort), days=364, events=("death",)))
    assert kept_ids(kept) == ["emigrated"]


# -- rule 5: prior opioid use ------------------------------------------------------------------


def test_prior_opioid_use_window_is_days_minus_365_to_minus_1(spark):
    rows = [
        dispensing("day_minus_366", day(-366), "N02AA01"),
        dispensing("day_minus_365", day(-365), "N02AA01"),
        dispensing("day_minus_364", day(-364), "N02AA01"),
        dispensing("day_minus_1", day(-1), "N02AX02"),
        dispensing("day_0", day(0), "N02AA05"),
        dispensing("return_only", day(-10), "N02AA01", packs=-1.0, ddd=-1.0),
        dispensing("zero_packs_only", day(-10), "N02AA01", packs=0.0),
        dispensing("other_analgesic", day(-10), "N02BE01"),
    ]
    ids = sorted({r["person_id"] for r in rows} | {"nothing"})
    kept, row = applied(
        require_drug_use(
            Cohort(cohort_at_index(spark, *ids)),
            silver(spark, rows),
            name="prior_opioid_use",
            atc_prefixes=["N02A"],
            window=(-365, -1),
            min_count=1,
            drug_label="opioids",
        )
    )
    assert kept_ids(kept) == ["day_minus_1", "day_minus_364", "day_minus_365"]
    assert one_row(row) == (
        "prior_opioid_use: at least 1 dispensing of opioids (ATC N02A) on days -365 to -1 from index",
        3,
    )


def test_drug_rule_min_count_and_exclusion(spark):
    rows = [
        dispensing("two", day(-5), "N05BA01"),
        dispensing("two", day(-5), "N05BA01"),
        dispensing("one", day(-5), "N05BA01"),
    ]
    cohort = cohort_at_index(spark, "two", "one", "none")
    kept, row = applied(
        require_drug_use(
            Cohort(cohort),
            silver(spark, rows),
            name="anxiolytics",
            atc_prefixes=["N05B"],
            window=(-30, -1),
            min_count=2,
        )
    )
    assert kept_ids(kept) == ["two"]
    assert one_row(row)[1] == 1
    excluded, row = applied(
        require_drug_use(
            Cohort(cohort),
            silver(spark, rows),
            name="no_anxiolytics",
            atc_prefixes=["N05B"],
            window=(-30, -1),
            min_count=1,
            exclude=True,
        )
    )
    assert kept_ids(excluded) == ["none"]
    assert one_row(row) == (
        "no_anxiolytics: exclude persons with at least 1 dispensing of ATC N05B on days -30 to -1 "
        "from index",
        1,
    )


def test_reimbursement_code_rule_matches_code_prefixes_in_the_window(spark):
    rows = [
        dispensing("l88", day(-10), "N02AA01", reimbursement_code="L88"),
        dispensing("icd_m05_3", day(-10), "L04AX03", reimbursement_code="M05.3"),
        dispensing("other_code", day(-10), "N02AA01", reimbursement_code="L89"),
        dispensing("outside", day(-400), "N02AA01", reimbursement_code="L88"),
        dispensing("return", day(-10), "N02AA01", reimbursement_code="L88", packs=-1.0),
    ]
    ids = sorted({r["person_id"] for r in rows})
    kept, row = applied(
        require_reimbursement_code(
            Cohort(cohort_at_index(spark, *ids)),
            silver(spark, rows),
            name="rheumatoid_arthritis",
            codes=["L88", "M05"],
            window=(-365, -1),
        )
    )
    assert kept_ids(kept) == ["icd_m05_3", "l88"]
    assert one_row(row) == (
        "rheumatoid_arthritis: at least 1 dispensing with reimbursement code L88, M05 on days "
        "-365 to -1 from index",
        2,
    )
    only_l04, _ = applied(
        require_reimbursement_code(
            Cohort(cohort_at_index(spark, *ids)),
            silver(spark, rows),
            name="ra_dmard",
            codes=["L88", "M05"],
            window=(-365, -1),
            atc_prefixes=["L04"],
        )
    )
    assert kept_ids(only_l04) == ["icd_m05_3"]


# -- age, sex and person attributes -------------------------------------------------------------


def test_age_at_index_is_index_year_minus_birth_year(spark):
    persons = [
        person("born_1960", birth_year=1960, sex=1, death_date=date(2020, 1, 1)),
        person("no_year", birth_year=None),
    ]
    cohort = spark.createDataFrame(
        [("born_1960", date(2013, 1, 1)), ("no_year", INDEX), ("not_in_persons", INDEX)], COHORT
    )
    result = add_person_attributes(cohort, silver(spark, persons, SILVER_PERSONS))
    assertDataFrameEqual(
        result,
        [
            Row(
                person_id="born_1960",
                index_date=date(2013, 1, 1),
                sex=1,
                birth_year=1960,
                death_date=date(2020, 1, 1),
                emigration_date=None,
                age_at_index=53,
            ),
            Row(
                person_id="no_year",
                index_date=INDEX,
                sex=2,
                birth_year=None,
                death_date=None,
                emigration_date=None,
                age_at_index=None,
            ),
            Row(
                person_id="not_in_persons",
                index_date=INDEX,
                sex=None,
                birth_year=None,
                death_date=None,
                emigration_date=None,
                age_at_index=None,
            ),
        ],
    )


@pytest.fixture
def aged_cohort(spark):
    schema = StructType(
        [
            StructField("person_id", StringType()),
            StructField("age_at_index", IntegerType()),
            StructField("sex", IntegerType()),
        ]
    )
    return spark.createDataFrame(
        [
            ("age_17", 17, 1),
            ("age_18", 18, 2),
            ("age_65", 65, 2),
            ("age_66", 66, 1),
            ("age_unknown", None, None),
        ],
        schema,
    )


def test_age_rule_includes_both_bounds(aged_cohort):
    kept, row = applied(require_age(Cohort(aged_cohort), name="adults", min_years=18, max_years=65))
    assert kept_ids(kept) == ["age_18", "age_65"]
    assert one_row(row) == ("adults: age at index 18 to 65 years", 2)
    excluded, _ = applied(
        require_age(Cohort(aged_cohort), name="not_children", max_years=17, exclude=True)
    )
    assert kept_ids(excluded) == ["age_18", "age_65", "age_66", "age_unknown"]


def test_a_cohort_chains_its_rules_and_carries_their_attrition(aged_cohort):
    start = Cohort.start(aged_cohort, criterion="everyone")
    chained = start.then(require_age, name="not_old", max_years=65).then(
        require_sex, name="women", sex="female"
    )
    assert kept_ids(chained.frame) == ["age_18", "age_65"]
    assertDataFrameEqual(
        chained.attrition(),
        [
            Row(step=0, criterion="everyone", n_persons=5, n_excluded=0),
            Row(
                step=1,
                criterion="not_old: age at index 65 years or less",
                n_persons=3,
                n_excluded=2,
            ),
            Row(step=2, criterion="women: sex female", n_persons=2, n_excluded=1),
        ],
        checkRowOrder=True,
    )
    # Immutable: the start is as it was; map changes the frame and records no step.
    assert len(start.steps) == 1 and kept_ids(start.frame) == kept_ids(aged_cohort)
    narrowed = chained.map(lambda frame: frame.select("person_id"))
    assert narrowed.steps == chained.steps and narrowed.frame.columns == ["person_id"]


def test_sex_rule(aged_cohort):
    kept, row = applied(require_sex(Cohort(aged_cohort), name="women", sex="female"))
    assert kept_ids(kept) == ["age_18", "age_65"]
    assert one_row(row) == ("women: sex female", 2)


# -- rule 6: exposure groups -------------------------------------------------------------------


def test_exposure_counts_ldn_dispensings_on_days_0_to_364(spark):
    rows = [
        ldn("one", day(0)),
        ldn("two_with_day_364", day(0)),
        ldn("two_with_day_364", day(364)),
        ldn("day_365_not_counted", day(0)),
        ldn("day_365_not_counted", day(365)),
        ldn("three", day(0)),
        ldn("three", day(30)),
        ldn("three", day(60)),
        ldn("four", day(0)),
        *[ldn("four", day(d)) for d in (30, 60, 90)],
        ldn("not_ldn_not_counted", day(0)),
        dispensing("not_ldn_not_counted", day(30), "N07BB04", strength_mg=50.0),
        ldn("not_ldn_not_counted", day(40), packs=-1.0),
        ldn("not_ldn_not_counted", day(50), strength_mg=None),
        ldn("day_minus_1_not_counted", day(-1)),
        ldn("day_minus_1_not_counted", day(0)),
        ldn("two_on_index_day", day(0)),
        ldn("two_on_index_day", day(0)),
    ]
    ids = sorted({r["person_id"] for r in rows})
    result = (
        cohort_at_index(spark, *ids)
        .transform(add_exposure_count, silver(spark, rows), index_drug=LDN, window=(0, 364))
        .transform(
            add_exposure_group, bins=[("ldn_1", 1, 1), ("ldn_2_3", 2, 3), ("ldn_4plus", 4, None)]
        )
        .select("person_id", "n_index_drug_dispensings", "exposure_group")
    )
    assertDataFrameEqual(
        result,
        [
            Row(
                person_id="day_365_not_counted", n_index_drug_dispensings=1, exposure_group="ldn_1"
            ),
            Row(
                person_id="day_minus_1_not_counted",
                n_index_drug_dispensings=1,
                exposure_group="ldn_1",
            ),
            Row(person_id="four", n_index_drug_dispensings=4, exposure_group="ldn_4plus"),
            Row(
                person_id="not_ldn_not_counted", n_index_drug_dispensings=1, exposure_group="ldn_1"
            ),
            Row(person_id="one", n_index_drug_dispensings=1, exposure_group="ldn_1"),
            Row(person_id="three", n_index_drug_dispensings=3, exposure_group="ldn_2_3"),
            Row(person_id="two_on_index_day", n_index_drug_dispensings=2, exposure_group="ldn_2_3"),
            Row(person_id="two_with_day_364", n_index_drug_dispensings=2, exposure_group="ldn_2_3"),
        ],
    )
    schema = result.schema
    assert schema["n_index_drug_dispensings"].dataType == LongType()


def test_exposure_groups_with_a_gap_drop_the_persons_in_it(spark):
    schema = StructType(
        [
            StructField("person_id", StringType()),
            StructField("n_index_drug_dispensings", LongType()),
        ]
    )
    cohort = spark.createDataFrame([("n1", 1), ("n2", 2), ("n3", 3), ("n4", 4)], schema).transform(
        add_exposure_group, bins=[("ldn_1", 1, 1), ("ldn_4plus", 4, None)]
    )
    kept, row = applied(
        require_exposure_group(
            Cohort(cohort), drug_label="LDN", window=(0, 364), labels=["ldn_1", "ldn_4plus"]
        )
    )
    assertDataFrameEqual(
        kept,
        [
            Row(person_id="n1", n_index_drug_dispensings=1, exposure_group="ldn_1"),
            Row(person_id="n4", n_index_drug_dispensings=4, exposure_group="ldn_4plus"),
        ],
    )
    assert one_row(row) == (
        "exposure: number of LDN dispensings on days 0 to 364 from index falls in an exposure "
        "group (ldn_1, ldn_4plus)",
        2,
    )


# -- rules 7-10: consumption -------------------------------------------------------------------


def test_consumption_by_window_with_returns_unknown_ddd_and_zero_rows(spark):
    rows = [
        dispensing("user", day(-366), "N02AA01", ddd=100.0),  # before pre: not counted
        dispensing("user", day(-365), "N02AA01", ddd=10.0),  # first day of pre
        dispensing("user", day(-1), "N02AX02", ddd=2.5),  # last day of pre
        dispensing("user", day(-1), "N02AA01", ddd=None),  # unknown DDD: counted, adds nothing
        dispensing("user", day(0), "N02AA05", packs=2.0, ddd=20.0),  # first day of post
        dispensing("user", day(364), "N02AA01", ddd=5.0),  # last day of post
        dispensing("user", day(365), "N02AA01", ddd=100.0),  # after post: not counted
        dispensing("user", day(100), "N02AA01", packs=-1.0, ddd=-5.0),  # a return subtracts
        dispensing("user", day(-20), "M01AE01", ddd=0.25),
        dispensing("user", day(-20), "N05BA01", ddd=7.0),  # in no drug group
        dispensing("someone_else", day(-20), "N02AA01", ddd=7.0),  # not in the cohort
    ]
    result = summarise_consumption(
        cohort_at_index(spark, "user", "no_dispensings"),
        silver(spark, rows),
        drug_groups={"opioids": ["N02A"], "nsaids": ["M01A"], "other_analgesics": ["N02B"]},
        windows={"pre": (-365, -1), "post": (0, 364)},
    )

    def cell(pid, group, window, ddd, n, unknown=0):
        return Row(
            person_id=pid,
            drug_group=group,
            window=window,
            ddd=ddd,
            n_dispensings=n,
            is_user=n > 0,
            n_ddd_unknown=unknown,
        )

    assertDataFrameEqual(
        result,
        [
            cell("user", "opioids", "pre", 12.5, 3, unknown=1),
            cell("user", "opioids", "post", 20.0, 2),
            cell("user", "nsaids", "pre", 0.25, 1),
            cell("user", "nsaids", "post", 0.0, 0),
            cell("user", "other_analgesics", "pre", 0.0, 0),
            cell("user", "other_analgesics", "post", 0.0, 0),
            *[
                cell("no_dispensings", g, w, 0.0, 0)
                for g in ("opioids", "nsaids", "other_analgesics")
                for w in ("pre", "post")
            ],
        ],
        **EXACT,
    )
    assert [(f.name, f.dataType.simpleString()) for f in result.schema.fields] == [
        ("person_id", "string"),
        ("drug_group", "string"),
        ("window", "string"),
        ("ddd", "double"),
        ("n_dispensings", "bigint"),
        ("is_user", "boolean"),
        ("n_ddd_unknown", "bigint"),
    ]


def test_consumption_counts_a_dispensing_in_every_group_and_window_it_matches(spark):
    rows = [dispensing("p", day(-1), "N02AA01", ddd=3.0)]
    result = summarise_consumption(
        cohort_at_index(spark, "p"),
        silver(spark, rows),
        drug_groups={"analgesics": ["N02"], "opioids": ["N02A"]},
        windows={"pre": (-365, -1), "last_month": (-30, -1)},
    )
    assert sorted((r.drug_group, r.window, r.ddd) for r in result.collect()) == [
        ("analgesics", "last_month", 3.0),
        ("analgesics", "pre", 3.0),
        ("opioids", "last_month", 3.0),
        ("opioids", "pre", 3.0),
    ]


# -- attrition and the dispensing selection -----------------------------------------------------


def test_attrition_numbers_the_steps_and_counts_exclusions(spark):
    schema = StructType(
        [StructField("criterion", StringType()), StructField("n_persons", LongType())]
    )
    rows = [
        spark.createDataFrame([(c, n)], schema)
        for c, n in [("start", 10), ("a", 7), ("b", 7), ("c", 2)]
    ]
    assertDataFrameEqual(
        summarise_attrition(rows),
        [
            Row(step=0, criterion="start", n_persons=10, n_excluded=0),
            Row(step=1, criterion="a", n_persons=7, n_excluded=3),
            Row(step=2, criterion="b", n_persons=7, n_excluded=0),
            Row(step=3, criterion="c", n_persons=2, n_excluded=5),
        ],
        checkRowOrder=True,
    )


def test_select_study_dispensings_keeps_the_study_rows_only(spark):
    rows = [
        ldn("p", date(2005, 1, 1), dispensing_id="ldn_early"),  # whole-delivery look-back
        ldn("p", date(2015, 1, 1), dispensing_id="ldn_late"),  # after the last window day
        dispensing("p", date(2011, 12, 31), "N02AA01", dispensing_id="opioid_early"),
        dispensing("p", date(2012, 1, 1), "N02AA01", dispensing_id="opioid_first_day"),
        dispensing("p", date(2014, 12, 30), "N02AA01", dispensing_id="opioid_last_day"),
        dispensing("p", date(2014, 12, 31), "N02AA01", dispensing_id="opioid_late"),
        dispensing("p", date(2013, 5, 1), "N05BA01", dispensing_id="other_atc"),
        dispensing(
            "p", date(2013, 5, 1), "L04AX03", reimbursement_code="M05.3", dispensing_id="code"
        ),
    ]
    kept = select_study_dispensings(
        silver(spark, rows),
        index_atc_prefixes=["N07BB04"],
        index_from=None,
        other_atc_prefixes=["N02A"],
        reimbursement_codes=["M05"],
        date_from=date(2012, 1, 1),
        date_to=date(2014, 12, 30),
    )
    assert sorted(r.dispensing_id for r in kept.collect()) == [
        "code",
        "ldn_early",
        "opioid_first_day",
        "opioid_last_day",
    ]


def test_select_study_dispensings_pushes_codes_and_dates_into_the_parquet_reader(
    spark, tmp_path, capsys
):
    path = str(tmp_path / "dispensings")
    silver(spark, [ldn("p", INDEX)]).write.parquet(path)
    kept = select_study_dispensings(
        spark.read.schema(SILVER_DISPENSINGS).parquet(path),
        index_atc_prefixes=["N07BB04"],
        index_from=None,
        other_atc_prefixes=["N02A", "M01A"],
        reimbursement_codes=[],
        date_from=date(2012, 1, 1),
        date_to=date(2014, 12, 30),
    )
    capsys.readouterr()
    kept.explain(mode="formatted")
    plan = capsys.readouterr().out
    from rxcohort.spark import is_connect

    if is_connect(spark):  # Sail: the predicate the Parquet scan (DataSourceExec) prunes with
        scan = next(line for line in plan.splitlines() if "DataSourceExec" in line)
        pushed = scan[scan.index("predicate=") : scan.index("pruning_predicate=")]
        expected = ("LIKE N07BB04%", "LIKE N02A%", "LIKE M01A%", ">= 2012-01-01")
    else:
        pushed = plan[plan.index("PushedFilters:") :].splitlines()[0]
        expected = (
            "StringStartsWith(atc_code,N07BB04)",
            "StringStartsWith(atc_code,N02A)",
            "StringStartsWith(atc_code,M01A)",
            "GreaterThanOrEqual(dispense_date,2012-01-01)",
        )
    for predicate in expected:
        assert predicate in pushed


def test_starts_with_any_filter_differs_from_starts_with_any_only_on_null_codes(spark):
    codes = spark.createDataFrame([("N02AA01",), ("N05BA01",), (None,)], "atc_code string")
    values = codes.select(
        "atc_code",
        starts_with_any("atc_code", ["N02A"]).alias("value"),
        starts_with_any_filter("atc_code", ["N02A"]).alias("filter"),
    )
    assert sorted(values.collect(), key=lambda r: r.atc_code or "") == [
        Row(atc_code=None, value=False, filter=None),
        Row(atc_code="N02AA01", value=True, filter=True),
        Row(atc_code="N05BA01", value=False, filter=False),
    ]


def test_drug_definition_filter_keeps_the_rows_of_its_condition(spark):
    rows = [
        ldn("p", INDEX, dispensing_id="ldn"),
        ldn("p", INDEX, strength_mg=None, dispensing_id="no_strength"),
        ldn("p", INDEX, strength_mg=50.0, dispensing_id="naltrexone_50"),
        ldn("p", INDEX, packs=-1.0, dispensing_id="return"),
        dispensing("p", INDEX, "N07BB05", dispensing_id="other_atc"),
    ]
    frame = silver(spark, rows)
    by_filter = sorted(r.dispensing_id for r in frame.where(LDN.filter()).collect())
    by_condition = sorted(r.dispensing_id for r in frame.where(LDN.condition()).collect())
    assert by_filter == by_condition == ["ldn"]


def test_select_cohort_dispensings_keeps_the_rows_of_cohort_persons(spark):
    rows = [
        dispensing("in", day(-10), "N02AA01", dispensing_id="in_1"),
        dispensing("in", day(10), "M01AE01", dispensing_id="in_2"),
        dispensing("out", day(-10), "N02AA01", dispensing_id="out_1"),
    ]
    kept = select_cohort_dispensings(silver(spark, rows), cohort_at_index(spark, "in"))
    assert sorted(r.dispensing_id for r in kept.collect()) == ["in_1", "in_2"]
    assert kept.columns == silver(spark, rows).columns
