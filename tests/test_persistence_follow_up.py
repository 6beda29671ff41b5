"""Censoring of the first treatment episode and the per-person persistence table."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from rxcohort.errors import ConfigError
from rxcohort.persistence import (
    add_age_band,
    add_follow_up,
    add_supply,
    generate_episodes,
    generate_persistence,
    summarise_dose,
)

DAY0 = date(2013, 1, 1)
GRACE = 30
FOLLOW_UP_IN = (
    "k string, index_date date, first_episode_end date, death_date date, emigration_date date"
)
FOLLOW_UP_OUT = "k string, observation_end date, follow_up_end date, time_days int, event int, end_reason string"


def day(n: int | None) -> date | None:
    return None if n is None else DAY0 + timedelta(days=n)


def follow_up(spark, rows, *, data_end_day):
    """rows: (key, supply end, death, emigration) as day offsets from an index date of day 0."""
    df = spark.createDataFrame(
        [(k, day(0), day(end), day(death), day(emig)) for k, end, death, emig in rows], FOLLOW_UP_IN
    )
    return add_follow_up(df, grace_days=GRACE, data_end=day(data_end_day)).select(
        "k", "observation_end", "follow_up_end", "time_days", "event", "end_reason"
    )


def test_censoring_at_death_and_emigration_around_the_grace_period(spark):
    # Supply ends on day 99. Discontinuation is seen once days 100..129 (the grace period) and
    # day 130 (the first day a refill would start a new episode) are observed.
    rows = [
        ("death_129", 99, 129, None),
        ("death_130", 99, 130, None),
        ("death_131", 99, 131, None),
        ("emig_129", 99, None, 129),
        ("emig_130", 99, None, 130),
        ("death_98", 99, 98, None),  # died before the supply ran out
        ("death_99", 99, 99, None),
        ("death_100", 99, 100, None),
        ("both_129", 99, 129, 129),
        ("before_index", 99, -5, None),
        ("no_supply", None, None, None),
    ]
    out = follow_up(spark, rows, data_end_day=1000)
    expected = spark.createDataFrame(
        [
            ("death_129", day(129), day(99), 100, 0, "death"),
            ("death_130", day(130), day(99), 100, 1, "discontinued"),
            ("death_131", day(131), day(99), 100, 1, "discontinued"),
            ("emig_129", day(129), day(99), 100, 0, "emigration"),
            ("emig_130", day(130), day(99), 100, 1, "discontinued"),
            ("death_98", day(98), day(98), 99, 0, "death"),
            ("death_99", day(99), day(99), 100, 0, "death"),
            ("death_100", day(100), day(99), 100, 0, "death"),
            ("both_129", day(129), day(99), 100, 0, "death"),
            ("before_index", day(-5), day(-5), 0, 0, "death"),
            ("no_supply", day(1000), None, None, None, "no_valid_supply"),
        ],
        FOLLOW_UP_OUT,
    )
    assertDataFrameEqual(out, expected)


def test_censoring_at_end_of_data_around_the_grace_period(spark):
    runs = [
        follow_up(spark, [(f"end_{n}", 99, None, None)], data_end_day=n) for n in (129, 130, 131)
    ]
    out = runs[0].unionByName(runs[1]).unionByName(runs[2])
    expected = spark.createDataFrame(
        [
            ("end_129", day(129), day(99), 100, 0, "end_of_data"),
            ("end_130", day(130), day(99), 100, 1, "discontinued"),
            ("end_131", day(131), day(99), 100, 1, "discontinued"),
        ],
        FOLLOW_UP_OUT,
    )
    assertDataFrameEqual(out, expected)


def test_supply_beyond_end_of_data_is_cut_there(spark):
    out = follow_up(spark, [("p", 400, None, None)], data_end_day=364)
    expected = spark.createDataFrame(
        [("p", day(364), day(364), 365, 0, "end_of_data")], FOLLOW_UP_OUT
    )
    assertDataFrameEqual(out, expected)


def test_data_end_must_be_a_date(spark):
    df = spark.createDataFrame([("p", day(0), day(9), None, None)], FOLLOW_UP_IN)
    with pytest.raises(ConfigError, match="data_end"):
        add_follow_up(df, grace_days=GRACE, data_end="2015-12-31")


def test_age_bands_at_their_edges(spark):
    df = spark.createDataFrame(
        [(a,) for a in (17, 39, 40, 49, 50, 69, 70, 95, None)], "age_at_index int"
    )
    out = add_age_band(df, edges=(40, 50, 70))
    expected = spark.createDataFrame(
        [
            (17, "<40"),
            (39, "<40"),
            (40, "40-49"),
            (49, "40-49"),
            (50, "50-69"),
            (69, "50-69"),
            (70, "70+"),
            (95, "70+"),
            (None, None),
        ],
        "age_at_index int, age_band string",
    )
    assertDataFrameEqual(out, expected)
    with pytest.raises(ConfigError, match="increasing"):
        add_age_band(df, edges=(50, 40))


COHORT = (
    "person_id string, index_date date, exposure_group string, n_index_drug_dispensings int, "
    "sex int, age_at_index int, birth_year int, index_strength_mg double, "
    "index_prescriber_id string, death_date date, emigration_date date"
)
DISPENSINGS = (
    "dispensing_id string, person_id string, dispense_date date, strength_mg double, "
    "units_per_pack double, packs double"
)
PERSISTENCE = (
    "person_id string, index_date date, exposure_group string, first_episode_end date, "
    "first_episode_dispensings int, observation_end date, follow_up_end date, time_days int, "
    "event int, end_reason string, age_at_index int, age_band string, sex string, "
    "mean_daily_dose_mg double, dose_band string, dose_method string, "
    "index_daily_dose_mg double, index_dose_band string, baseline_opioid_ddd double, "
    "prior_opioid_use boolean, prescriber_specialty string"
)


def test_generate_persistence_first_episode_and_covariates(spark):
    cohort = spark.createDataFrame(
        [
            ("a", day(0), "ldn_2_3", 3, 2, 52, 1961, 4.5, "gp1", None, None),
            ("b", day(0), "ldn_1", 1, 1, 38, 1975, 0.5, "nurse1", None, None),
            ("c", day(0), "ldn_1", 1, 2, 70, 1943, 3.0, None, day(20), None),
            ("d", day(0), "ldn_1", 1, 1, 45, 1968, 1.5, "nobody", None, None),
        ],
        COHORT,
    )
    index_dispensings = spark.createDataFrame(
        [
            # a: two refills 50 days apart (joined), then a second episode after a long break
            ("a1", "a", day(0), 4.5, 50.0, 1.0),
            ("a2", "a", day(50), 4.5, 50.0, 1.0),
            ("a3", "a", day(300), 4.5, 50.0, 1.0),
            ("b1", "b", day(0), 0.5, 30.0, 1.0),
            ("c1", "c", day(0), 3.0, 100.0, 1.0),
            ("d1", "d", day(0), 1.5, 30.0, 1.0),
        ],
        DISPENSINGS,
    )
    prescribers = spark.createDataFrame(
        [
            ("gp1", "physician", "general_practice"),
            ("nurse1", "nurse", None),
            ("doc2", "physician", None),
        ],
        "prescriber_id string, profession string, specialty string",
    )
    # b is absent (no opioid in the window: 0 DDD); c's DDD is unknown.
    baseline = spark.createDataFrame(
        [("a", 120.0), ("c", None), ("d", 0.0)], "person_id string, baseline_opioid_ddd double"
    )
    episodes = generate_episodes(add_supply(index_dispensings), grace_days=GRACE)
    dose = summarise_dose(episodes)
    out = generate_persistence(
        cohort, episodes, dose, prescribers, baseline, grace_days=GRACE, data_end=day(364)
    )
    expected = spark.createDataFrame(
        [
            ("a", day(0), "ldn_2_3", day(99), 2, day(364), day(99), 100, 1, "discontinued",
             52, "50-59", "female", 4.5 * 50 / 50, "low", "refill_interval", 4.5, "low", 120.0,
             True, "general_practice"),
            ("b", day(0), "ldn_1", day(29), 1, day(364), day(29), 30, 1, "discontinued",
             38, "<40", "male", 0.5, "ultra_low", "assumed_units_per_day", 0.5, "ultra_low", 0.0,
             False, "nurse"),
            ("c", day(0), "ldn_1", day(99), 1, day(20), day(20), 21, 0, "death",
             70, "70+", "female", 3.0, "low", "assumed_units_per_day", 3.0, "low", None,
             None, "unknown"),
            ("d", day(0), "ldn_1", day(29), 1, day(364), day(29), 30, 1, "discontinued",
             45, "40-49", "male", 1.5, "low", "assumed_units_per_day", 1.5, "low", 0.0,
             False, "unknown"),
        ],
        PERSISTENCE,
    )  # fmt: skip
    assertDataFrameEqual(out, expected)


def test_generate_persistence_without_baseline_and_with_a_given_flag(spark):
    cohort = spark.createDataFrame(
        [
            ("a", day(0), "ldn_1", 1, 2, 52, 1961, 4.5, "doc2", None, None),
            ("b", day(0), "ldn_1", 1, 2, 52, 1961, 4.5, "doc2", None, None),
        ],
        COHORT,
    )
    episodes = spark.createDataFrame(
        [("a", 1, day(0), day(29), 1), ("b", 1, day(0), day(29), 1)],
        "person_id string, episode_number int, episode_start date, episode_end date, "
        "n_dispensings int",
    )
    dose = spark.createDataFrame(
        [("a", 4.5, "low", "assumed_units_per_day"), ("b", 4.5, "low", "assumed_units_per_day")],
        "person_id string, mean_daily_dose_mg double, dose_band string, dose_method string",
    )
    prescribers = spark.createDataFrame(
        [("doc2", "physician", None)], "prescriber_id string, profession string, specialty string"
    )
    flagged = spark.createDataFrame(
        [("a", 0.0, True)], "person_id string, baseline_opioid_ddd double, prior_opioid_use boolean"
    )
    cols = ["person_id", "baseline_opioid_ddd", "prior_opioid_use", "prescriber_specialty"]
    runs = [
        generate_persistence(
            cohort, episodes, dose, prescribers, baseline, grace_days=GRACE, data_end=day(364)
        )
        .select(*cols)
        .withColumn("run", F.lit(name))
        for name, baseline in (("none", None), ("flag", flagged))
    ]
    expected = spark.createDataFrame(
        [
            ("a", None, None, "unspecified", "none"),
            ("b", None, None, "unspecified", "none"),
            # b is absent from the frame: 0 DDD and no use; a's given flag wins over its 0 DDD
            ("a", 0.0, True, "unspecified", "flag"),
            ("b", 0.0, False, "unspecified", "flag"),
        ],
        "person_id string, baseline_opioid_ddd double, prior_opioid_use boolean, "
        "prescriber_specialty string, run string",
    )
    assertDataFrameEqual(runs[0].unionByName(runs[1]), expected)
