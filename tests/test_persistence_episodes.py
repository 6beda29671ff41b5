"""Supply, treatment episodes and daily dose on hand-made LDN dispensing sequences."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest
from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from rxcohort.errors import ConfigError
from rxcohort.persistence import (
    add_dose_band,
    add_episode_number,
    add_supply,
    generate_episodes,
    summarise_dose,
)

DAY0 = date(2013, 1, 1)

DISPENSINGS = (
    "dispensing_id string, person_id string, dispense_date date, strength_mg double, "
    "units_per_pack double, packs double"
)
EPISODES = (
    "person_id string, episode_number int, episode_start date, last_dispense_date date, "
    "episode_end date, duration_days int, n_dispensings int, dispensing_ids array<string>, "
    "total_units double, total_mg double, supply_days int, carried_over_days int, "
    "refill_interval_days int, refill_interval_units double, refill_interval_mg double"
)


def day(n: int) -> date:
    return DAY0 + timedelta(days=n)


def dispensings(spark, rows):
    """rows: (dispensing_id, person_id, day offset, strength_mg, units_per_pack, packs)."""
    return spark.createDataFrame(
        [(i, p, day(d), s, u, k) for i, p, d, s, u, k in rows], DISPENSINGS
    )


# Grace 30, one 30-capsule pack a time: the second collection comes 29, 30 or 31 days after the
# first supply (days 0..29) ran out.
SEQUENCES = [
    ("g29a", "gap29", 0, 3.0, 30.0, 1.0),
    ("g29b", "gap29", 59, 3.0, 30.0, 1.0),
    ("g30a", "gap30", 0, 3.0, 30.0, 1.0),
    ("g30b", "gap30", 60, 3.0, 30.0, 1.0),
    ("g31a", "gap31", 0, 3.0, 30.0, 1.0),
    ("g31b", "gap31", 61, 3.0, 30.0, 1.0),
    # Early refill on day 10 carries 20 days forward (covers 30..59), so day 80 is a 20-day
    # gap (joined); without carry-forward it would be 40 (a new episode).
    ("s1", "stock", 0, 3.0, 30.0, 1.0),
    ("s2", "stock", 10, 3.0, 30.0, 1.0),
    ("s3", "stock", 80, 3.0, 30.0, 1.0),
    ("x1", "single", 0, 4.5, 100.0, 1.0),
    # Two items the same day: the second starts when the first runs out.
    ("m2", "sameday", 0, 3.0, 30.0, 1.0),
    ("m1", "sameday", 0, 3.0, 30.0, 1.0),
    # A return (negative packs) supplies nothing and is ignored.
    ("r1", "return", 0, 3.0, 30.0, 1.0),
    ("r2", "return", 5, 3.0, 30.0, -1.0),
]


def test_add_supply_units_mg_and_days(spark):
    rows = [
        ("a", "p", 0, 4.5, 100.0, 1.0),
        ("b", "p", 1, 3.0, 100.0, 1.1),  # 100 x 1.1 = 110.00000000000001: 55 days, not 56
        ("c", "p", 2, 1.5, 45.0, 1.0),
        ("d", "p", 3, 1.5, 30.0, -1.0),
        ("e", "p", 4, 1.5, None, 1.0),
    ]
    out = add_supply(dispensings(spark, rows), units_per_day=2.0).select(
        "dispensing_id", "units", "dispensed_mg", "supply_days"
    )
    expected = spark.createDataFrame(
        [
            ("a", 100.0, 450.0, 50),
            ("b", 110.00000000000001, 330.00000000000006, 55),
            ("c", 45.0, 67.5, 23),  # 22.5 days rounds up: the half day is still covered
            ("d", -30.0, -45.0, None),
            ("e", None, None, None),
        ],
        "dispensing_id string, units double, dispensed_mg double, supply_days int",
    )
    assertDataFrameEqual(out, expected)


def test_add_supply_rejects_non_positive_units_per_day(spark):
    with pytest.raises(ConfigError, match="units_per_day"):
        add_supply(dispensings(spark, SEQUENCES[:1]), units_per_day=0)


def test_episodes_grace_boundaries_stockpiling_single_sameday_return(spark):
    out = generate_episodes(
        add_supply(dispensings(spark, SEQUENCES), units_per_day=1.0), grace_days=30
    )
    e = [
        ("gap29", 1, day(0), day(59), day(88), 89, 2, ["g29a", "g29b"], 60.0, 180.0, 60, 0, 59, 30.0, 90.0),
        ("gap30", 1, day(0), day(60), day(89), 90, 2, ["g30a", "g30b"], 60.0, 180.0, 60, 0, 60, 30.0, 90.0),
        ("gap31", 1, day(0), day(0), day(29), 30, 1, ["g31a"], 30.0, 90.0, 30, 0, 0, 0.0, 0.0),
        ("gap31", 2, day(61), day(61), day(90), 30, 1, ["g31b"], 30.0, 90.0, 30, 0, 0, 0.0, 0.0),
        ("stock", 1, day(0), day(80), day(109), 110, 3, ["s1", "s2", "s3"], 90.0, 270.0, 90, 20, 80, 60.0, 180.0),
        ("single", 1, day(0), day(0), day(99), 100, 1, ["x1"], 100.0, 450.0, 100, 0, 0, 0.0, 0.0),
        ("sameday", 1, day(0), day(0), day(59), 60, 2, ["m1", "m2"], 60.0, 180.0, 60, 30, 0, 0.0, 0.0),
        ("return", 1, day(0), day(0), day(29), 30, 1, ["r1"], 30.0, 90.0, 30, 0, 0, 0.0, 0.0),
    ]  # fmt: skip
    assertDataFrameEqual(out, spark.createDataFrame(e, EPISODES))


def test_grace_zero_joins_only_seamless_refills(spark):
    rows = [
        ("a", "p", 0, 3.0, 30.0, 1.0),
        ("b", "p", 30, 3.0, 30.0, 1.0),
        ("c", "p", 61, 3.0, 30.0, 1.0),
    ]
    out = add_episode_number(add_supply(dispensings(spark, rows)), grace_days=0).select(
        "dispensing_id",
        "supply_start",
        "supply_end",
        "gap_days",
        "carried_over_days",
        "episode_number",
    )
    expected = spark.createDataFrame(
        [
            ("a", day(0), day(29), 0, 0, 1),
            ("b", day(30), day(59), 0, 0, 1),
            ("c", day(61), day(90), 1, 0, 2),
        ],
        "dispensing_id string, supply_start date, supply_end date, gap_days int, "
        "carried_over_days int, episode_number int",
    )
    assertDataFrameEqual(out, expected)


def test_negative_grace_is_a_config_error(spark):
    with pytest.raises(ConfigError, match="grace_days"):
        generate_episodes(add_supply(dispensings(spark, SEQUENCES[:1])), grace_days=-1)


def _sequential_episodes(rows, grace):
    """Independent oracle: walk each person's dispensings one by one, carrying supply forward."""
    by_person: dict[str, list] = {}
    for did, pid, d, _s, units, packs in sorted(rows, key=lambda r: (r[1], r[2], r[0])):
        by_person.setdefault(pid, []).append((d, did, int(units * packs)))
    out = []
    for pid, items in by_person.items():
        number, end, current = 0, None, None
        for d, did, supply in items:
            if end is None or d - end - 1 > grace:
                number += 1
                current = [pid, number, d, None, []]
                out.append(current)
                start = d
            else:
                start = max(d, end + 1)
            end = start + supply - 1
            current[3] = end
            current[4].append(did)
    return [
        Row(
            person_id=p,
            episode_number=n,
            episode_start=day(s),
            episode_end=day(e),
            dispensing_ids=ids,
        )
        for p, n, s, e, ids in out
    ]


def test_episodes_match_a_sequential_walk_on_random_sequences(spark):
    rng = random.Random(20130201)
    rows = []
    for p in range(40):
        d = rng.randint(0, 30)
        for k in range(rng.randint(1, 9)):
            units = rng.choice([20, 30, 50, 100])
            rows.append((f"d{p:02d}_{k}", f"p{p:02d}", d, 3.0, float(units), 1.0))
            d += rng.choice([0, 1, 5, 15, 25, 40, 60, 90, 130])
    out = generate_episodes(add_supply(dispensings(spark, rows)), grace_days=30).select(
        "person_id", "episode_number", "episode_start", "episode_end", "dispensing_ids"
    )
    assertDataFrameEqual(out, _sequential_episodes(rows, 30))


def test_summarise_dose_refill_interval_and_assumed(spark):
    episodes = generate_episodes(
        add_supply(dispensings(spark, SEQUENCES), units_per_day=1.0), grace_days=30
    )
    out = summarise_dose(episodes, units_per_day=1.0)
    expected = spark.createDataFrame(
        [
            # 90 mg collected before the last date, used over 59 days
            ("gap29", 1, 2, 60.0, 180.0, 59, 30 / 59, 90 / 59, "refill_interval", "low"),
            ("gap30", 1, 2, 60.0, 180.0, 60, 0.5, 1.5, "refill_interval", "low"),
            # two one-dispensing episodes: no interval, 1 capsule of 3 mg a day assumed
            ("gap31", 2, 2, 60.0, 180.0, 0, 1.0, 3.0, "assumed_units_per_day", "low"),
            ("stock", 1, 3, 90.0, 270.0, 80, 0.75, 2.25, "refill_interval", "low"),
            ("single", 1, 1, 100.0, 450.0, 0, 1.0, 4.5, "assumed_units_per_day", "low"),
            ("sameday", 1, 2, 60.0, 180.0, 0, 1.0, 3.0, "assumed_units_per_day", "low"),
            ("return", 1, 1, 30.0, 90.0, 0, 1.0, 3.0, "assumed_units_per_day", "low"),
        ],
        "person_id string, n_episodes int, n_dispensings int, total_units double, "
        "total_mg double, refill_interval_days int, mean_daily_units double, "
        "mean_daily_dose_mg double, dose_method string, dose_band string",
    )
    assertDataFrameEqual(out, expected)


def test_summarise_dose_assumed_intake_follows_units_per_day(spark):
    rows = [("x1", "single", 0, 4.5, 100.0, 1.0), ("u1", "ultra", 0, 0.5, 60.0, 1.0)]
    episodes = generate_episodes(
        add_supply(dispensings(spark, rows), units_per_day=2.0), grace_days=30
    )
    out = summarise_dose(episodes, units_per_day=2.0).select(
        "person_id", "mean_daily_dose_mg", "dose_band"
    )
    expected = spark.createDataFrame(
        [("single", 9.0, "other"), ("ultra", 1.0, "low")],
        "person_id string, mean_daily_dose_mg double, dose_band string",
    )
    assertDataFrameEqual(out, expected)


def test_dose_band_boundaries(spark):
    df = spark.createDataFrame(
        [("a", 0.99), ("b", 1.0), ("c", 5.0), ("d", 5.01), ("e", None)], "k string, dose double"
    )
    out = add_dose_band(df, dose_col="dose")
    expected = spark.createDataFrame(
        [
            ("a", 0.99, "ultra_low"),
            ("b", 1.0, "low"),
            ("c", 5.0, "low"),
            ("d", 5.01, "other"),
            ("e", None, None),
        ],
        "k string, dose double, dose_band string",
    )
    assertDataFrameEqual(out, expected)
