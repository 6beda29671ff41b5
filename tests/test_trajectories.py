"""Monthly DDD around the index date: month boundaries, zeros, returns, group sizes."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)
from pyspark.testing import assertDataFrameEqual

from rxcohort.errors import ConfigError
from rxcohort.schemas import SILVER_DISPENSINGS
from rxcohort.stats import summarise_its, summarise_trajectories
from rxcohort.transforms.trajectories import add_relative_month, summarise_monthly_ddd

INDEX = date(2013, 3, 1)
COHORT_SCHEMA = StructType(
    [
        StructField("person_id", StringType(), False),
        StructField("index_date", DateType(), False),
        StructField("exposure_group", StringType(), False),
    ]
)
MONTHLY_SCHEMA = StructType(
    [
        StructField("exposure_group", StringType(), True),
        StructField("drug_group", StringType(), True),
        StructField("month", IntegerType(), True),
        StructField("n_persons", LongType(), True),
        StructField("n_users", LongType(), True),
        StructField("mean_ddd", DoubleType(), True),
        StructField("sd_ddd", DoubleType(), True),
    ]
)
DRUG_GROUPS = {"opioids": ["N02A"], "nsaids": ["M01A"]}


def _dispensing(n: int, person: str, day: int, atc: str, packs: float, ddd: float | None):
    values = {field.name: None for field in SILVER_DISPENSINGS.fields}
    when = INDEX + timedelta(days=day)
    values.update(
        dispensing_id=f"d{n}",
        person_id=person,
        dispense_date=when,
        atc_code=atc,
        packs=packs,
        ddd=ddd,
        dispense_year=when.year,
    )
    return tuple(values[field.name] for field in SILVER_DISPENSINGS.fields)


# Month k starts on day ceil(365 k / 12): each boundary at N - 1, N, N + 1.
BOUNDARIES = {
    -366: -13,
    -365: -12,
    -364: -12,
    -335: -12,
    -334: -11,
    -333: -11,
    -183: -7,
    -182: -6,
    -181: -6,
    -2: -1,
    -1: -1,
    0: 0,
    1: 0,
    30: 0,
    31: 1,
    32: 1,
    182: 5,
    183: 6,
    184: 6,
    364: 11,
    365: 12,
}


def test_relative_month_boundaries(spark):
    frame = spark.createDataFrame(
        [(day, INDEX, INDEX + timedelta(days=day)) for day in BOUNDARIES],
        "day int, index_date date, dispense_date date",
    )
    months = {
        r["day"]: r["month"] for r in add_relative_month(frame, date_col="dispense_date").collect()
    }
    assert months == BOUNDARIES


def test_twelve_months_tile_each_window_with_30_or_31_days(spark):
    days = spark.range(-365, 365).select(
        F.lit(INDEX).alias("index_date"),
        F.date_add(F.lit(INDEX), F.col("id").cast("int")).alias("dispense_date"),
    )
    counts = {
        r["month"]: r["count"]
        for r in add_relative_month(days, date_col="dispense_date")
        .groupBy("month")
        .count()
        .collect()
    }
    assert sorted(counts) == list(range(-12, 12))
    assert set(counts.values()) == {30, 31}
    assert sum(counts[m] for m in range(-12, 0)) == 365
    assert sum(counts[m] for m in range(0, 12)) == 365


def test_monthly_ddd_counts_every_person_and_month(spark):
    cohort = spark.createDataFrame(
        [("a", INDEX, "ldn_1"), ("b", INDEX, "ldn_1"), ("c", INDEX, "ldn_4plus")], COHORT_SCHEMA
    )
    dispensings = spark.createDataFrame(
        [
            _dispensing(1, "a", -366, "N02AA01", 1.0, 50.0),  # before month -12: out
            _dispensing(2, "a", -365, "N02AA01", 1.0, 10.0),  # month -12
            _dispensing(3, "a", -1, "N02AA01", 1.0, 20.0),  # month -1
            _dispensing(4, "a", 0, "N02AA01", 1.0, 6.0),  # month 0
            _dispensing(5, "a", 30, "N02AX02", 1.0, 4.0),  # month 0
            _dispensing(6, "a", 31, "N02AA01", 1.0, 8.0),  # month 1
            _dispensing(7, "a", 32, "N02AA01", -0.5, -3.0),  # return, month 1: subtracts
            _dispensing(8, "a", 364, "N02AA01", 1.0, 2.0),  # month 11
            _dispensing(9, "a", 365, "N02AA01", 1.0, 90.0),  # after month 11: out
            _dispensing(10, "b", 40, "N02AA01", 1.0, None),  # DDD unknown: a user, 0 DDD
            _dispensing(11, "b", 0, "M01AE01", 2.0, 12.0),  # nsaids, month 0
            _dispensing(12, "b", 0, "C09AA02", 1.0, 30.0),  # no drug group
            _dispensing(13, "c", -1, "N02AA01", 1.0, 7.0),
            _dispensing(14, "x", 0, "N02AA01", 1.0, 99.0),  # not in the cohort
        ],
        SILVER_DISPENSINGS,
    )
    result = summarise_monthly_ddd(cohort, dispensings, drug_groups=DRUG_GROUPS)

    # (group, drug group, month) -> (n_users, mean_ddd, sd_ddd); other cells are zero months.
    # sd of two persons' values [x, y] is |x - y| / sqrt(2); one person has no sd.
    r2 = 2**0.5
    cells = {
        ("ldn_1", "opioids", -12): (1, 5.0, 10 / r2),
        ("ldn_1", "opioids", -1): (1, 10.0, 20 / r2),
        ("ldn_1", "opioids", 0): (1, 5.0, 10 / r2),
        ("ldn_1", "opioids", 1): (2, 2.5, 5 / r2),
        ("ldn_1", "opioids", 11): (1, 1.0, 2 / r2),
        ("ldn_1", "nsaids", 0): (1, 6.0, 12 / r2),
        ("ldn_4plus", "opioids", -1): (1, 7.0, None),
    }
    sizes = {"ldn_1": 2, "ldn_4plus": 1}
    expected = []
    for group, n in sizes.items():
        for drug in DRUG_GROUPS:
            for month in range(-12, 12):
                users, mean, sd = cells.get((group, drug, month), (0, 0.0, 0.0 if n > 1 else None))
                expected.append(Row(group, drug, month, n, users, mean, sd))
    assertDataFrameEqual(result, spark.createDataFrame(expected, MONTHLY_SCHEMA), rtol=1e-12)

    # Collected, the summary feeds the pandas side: intervals, then the segmented regression.
    trajectories = summarise_trajectories(
        result.toPandas(), group_order=["ldn_1", "ldn_4plus"], drug_groups=list(DRUG_GROUPS)
    )
    assert len(trajectories) == 96
    one_person = trajectories[trajectories["exposure_group"] == "ldn_4plus"]
    assert one_person["ci_low"].isna().all() and one_person["sd_ddd"].isna().all()
    its = summarise_its(trajectories, group_order=["ldn_1", "ldn_4plus"], drug_groups=["opioids"])
    assert len(its) == 2 * 4 and set(its["n_months"]) == {24}


def test_months_before_and_after_set_the_range(spark):
    cohort = spark.createDataFrame([("a", INDEX, "ldn_1")], COHORT_SCHEMA)
    dispensings = spark.createDataFrame(
        [
            _dispensing(1, "a", -731, "N02AA01", 1.0, 1.0),  # month -25: out
            _dispensing(2, "a", -730, "N02AA01", 1.0, 2.0),  # month -24
            _dispensing(3, "a", 60, "N02AA01", 1.0, 4.0),  # month 1
            _dispensing(4, "a", 61, "N02AA01", 1.0, 8.0),  # month 2: out
        ],
        SILVER_DISPENSINGS,
    )
    result = summarise_monthly_ddd(
        cohort, dispensings, drug_groups={"opioids": ["N02A"]}, months_before=24, months_after=2
    )
    months = {r["month"]: r["mean_ddd"] for r in result.collect()}
    assert sorted(months) == list(range(-24, 2))
    assert (months[-24], months[1], sum(months.values())) == (2.0, 4.0, 6.0)


def test_bad_parameters_are_refused(spark):
    cohort = spark.createDataFrame([], COHORT_SCHEMA)
    dispensings = spark.createDataFrame([], SILVER_DISPENSINGS)
    with pytest.raises(ConfigError):
        summarise_monthly_ddd(cohort, dispensings, drug_groups={"opioids": []})
    with pytest.raises(ConfigError):
        summarise_monthly_ddd(cohort, dispensings, drug_groups=DRUG_GROUPS, months_before=0)
