"""Table 1 (``characteristics``) and the groups' standardised mean differences
(``characteristics_smd``): counts and statistics against hand-worked values and numpy, the
markers against a brute-force pass over the dispensings, and the demo run's tables against its
cohort."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from rxcohort import io
from rxcohort.transforms.characterisation import (
    characteristics_table,
    person_markers,
    smd_table,
)

GROUPS = ["low", "high"]


def _cohort() -> pd.DataFrame:
    rows = [
        ("p1", "low", 2, 30), ("p2", "low", 2, 40), ("p3", "low", 1, 50), ("p4", "low", 2, 61),
        ("p5", "high", 1, 45), ("p6", "high", 1, 55), ("p7", "high", 2, 65),
        ("p8", None, 2, 70),  # in no group: counted in "all" only
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["person_id", "exposure_group", "sex", "age_at_index"])


def _consumption() -> pd.DataFrame:
    ddd = {"p1": 10.0, "p2": 0.0, "p3": 5.0, "p4": 0.0, "p5": 20.0, "p6": 30.0, "p7": 0.0}
    rows = [(p, "opioids", "pre", v, v > 0) for p, v in ddd.items()]
    rows += [(p, "opioids", "post", 99.0, True) for p in ddd]  # another window: not read
    rows.append(("p8", "opioids", "pre", 0.0, False))
    return pd.DataFrame(rows, columns=["person_id", "drug_group", "window", "ddd", "is_user"])


def _markers() -> pd.DataFrame:
    rows = [
        ("p1", "condition", "ra"), ("p5", "condition", "ra"), ("p6", "condition", "ra"),
        ("p1", "code_chapter", "L"), ("p5", "code_chapter", "L"), ("p2", "code_chapter", "P"),
        ("p1", "comedication", "N02A"), ("p2", "comedication", "N02A"),
        ("p5", "comedication", "N02A"), ("p3", "comedication", "M01A"),
        ("p6", "comedication", "A02B"),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["person_id", "variable", "level"])


def _table(top: int = 10) -> pd.DataFrame:
    return characteristics_table(
        _cohort(), _consumption(), _markers(), groups=GROUPS, drug_groups=["opioids"],
        window="pre", conditions=["ra", "ms"], comedication_top=top,
    )  # fmt: skip


def _row(table: pd.DataFrame, group: str, variable: str, level: str) -> pd.Series:
    part = table[
        (table.exposure_group == group) & (table.variable == variable) & (table.level == level)
    ]
    assert len(part) == 1, (group, variable, level)
    return part.iloc[0]


def test_counts_and_shares_per_group_and_for_all():
    table = _table()
    assert _row(table, "all", "sex", "female")[["n_persons", "n"]].tolist() == [8, 5]
    assert _row(table, "low", "sex", "female")["n"] == 3
    assert _row(table, "high", "sex", "male")["n"] == 2
    assert _row(table, "high", "sex", "male")["percent"] == pytest.approx(200 / 3)
    # Conditions: every named one, held or not; p8 has none.
    assert _row(table, "high", "condition", "ra")["n"] == 2
    assert _row(table, "low", "condition", "ra")["n"] == 1
    assert _row(table, "all", "condition", "ms")["n"] == 0
    assert _row(table, "all", "code_chapter", "L")["n"] == 2
    # Users in the pre window (the post rows are not read), and their DDD over everyone.
    use = _row(table, "low", "drug_use", "opioids")
    assert (use["n"], use["percent"]) == (2, 50.0)
    ddd = _row(table, "low", "drug_ddd", "opioids")
    assert ddd["n"] == 2
    assert ddd["mean"] == pytest.approx(3.75)
    assert ddd["sd"] == pytest.approx(np.std([10.0, 0.0, 5.0, 0.0], ddof=1))
    assert ddd["median"] == pytest.approx(2.5)
    assert _row(table, "all", "drug_ddd", "opioids")["n_persons"] == 8


def test_age_statistics_match_numpy():
    table = _table()
    ages = {"low": [30, 40, 50, 61], "high": [45, 55, 65], "all": [30, 40, 50, 61, 45, 55, 65, 70]}
    for group, values in ages.items():
        row = _row(table, group, "age", "")
        assert pd.isna(row["n"])
        assert row["mean"] == pytest.approx(np.mean(values))
        assert row["sd"] == pytest.approx(np.std(values, ddof=1))
        q1, median, q3 = np.percentile(values, [25, 50, 75])  # linear, as Spark's percentile
        assert (row["q1"], row["median"], row["q3"]) == pytest.approx((q1, median, q3))


def test_comedication_keeps_the_groups_with_most_users():
    table = _table(top=2)
    shown = set(table.loc[table.variable == "comedication", "level"])
    assert shown == {"N02A", "A02B"}  # N02A: 3 users; A02B and M01A 1 each, A02B first by code
    assert _row(table, "low", "comedication", "N02A")["n"] == 2


def test_smd_of_a_share_and_of_a_mean():
    table = _table()
    smd = smd_table(table, [("high", "low")])
    female = smd[(smd.variable == "sex") & (smd.level == "female")].iloc[0]
    p_high, p_low = 1 / 3, 3 / 4
    want = (p_high - p_low) / math.sqrt((p_high * (1 - p_high) + p_low * (1 - p_low)) / 2)
    assert female["smd"] == pytest.approx(want)
    assert (female["n_high"], female["n_low"], female["n_persons_high"]) == (1, 3, 3)
    age = smd[smd.variable == "age"].iloc[0]
    high, low = [45, 55, 65], [30, 40, 50, 61]
    pooled = math.sqrt((np.var(high, ddof=1) + np.var(low, ddof=1)) / 2)
    assert age["smd"] == pytest.approx((np.mean(high) - np.mean(low)) / pooled)
    # Nobody has MS in either group: no difference, and no spread to divide by.
    ms = smd[(smd.variable == "condition") & (smd.level == "ms")].iloc[0]
    assert ms["smd"] == 0.0
    assert set(smd["exposure_group_high"]) == {"high"}


def test_markers_read_the_window_codes_and_packs(spark):
    from pyspark.sql.types import (
        DateType,
        DoubleType,
        StringType,
        StructField,
        StructType,
    )

    from rxcohort.spark import local_frame

    cohort = local_frame(
        spark,
        [("p1", date(2013, 3, 1)), ("p2", date(2013, 6, 1))],
        StructType([StructField("person_id", StringType()), StructField("index_date", DateType())]),
    )
    schema = StructType(
        [
            StructField("person_id", StringType()),
            StructField("dispense_date", DateType()),
            StructField("atc_code", StringType()),
            StructField("packs", DoubleType()),
            StructField("reimbursement_code", StringType()),
        ]
    )
    rows = [
        ("p1", date(2013, 2, 28), "M01AE01", 1.0, "L88"),  # day -1: inside
        ("p1", date(2012, 3, 1), "N06AB04", 1.0, "M05.3"),  # day -365: inside, M05 prefix
        ("p1", date(2012, 2, 29), "A02BC01", 1.0, "K21"),  # day -366: outside
        ("p1", date(2013, 3, 1), "N02AX02", 1.0, "T90"),  # day 0: outside
        ("p2", date(2013, 5, 1), "N02BE01", -1.0, "L88"),  # a return: not a dispensing
        ("p2", date(2013, 5, 2), "N02BE01", 1.0, None),  # no code: co-medication only
        ("p3", date(2013, 5, 2), "N02BE01", 1.0, "L88"),  # not in the cohort
    ]
    dispensings = local_frame(spark, rows, schema)
    markers = person_markers(
        cohort, dispensings, window=(-365, -1), conditions={"ra": ["L88", "M05"], "ms": ["G35"]},
        code_chapters=True,
    ).toPandas()  # fmt: skip
    got = sorted(map(tuple, markers[["person_id", "variable", "level"]].to_numpy()))
    assert got == [
        ("p1", "code_chapter", "L"),
        ("p1", "code_chapter", "M"),
        ("p1", "comedication", "M01A"),
        ("p1", "comedication", "N06A"),
        ("p1", "condition", "ra"),
        ("p2", "comedication", "N02B"),
    ]


def test_the_demo_run_writes_table1_and_the_export_masks_it(spark, demo_warehouse, tmp_path):
    from rxcohort.export import export_study
    from rxcohort.privacy import MASKED_COUNT, is_small_count

    warehouse, _, study_id = demo_warehouse
    study_dir = warehouse / "studies" / study_id
    chars = io.read_table(spark, study_dir / "characteristics").toPandas()
    cohort = io.read_table(spark, study_dir / "cohort").toPandas()
    women = _row(chars, "all", "sex", "female")
    assert women["n_persons"] == len(cohort)
    assert women["n"] == int((cohort["sex"] == 2).sum())
    for group, part in cohort.groupby("exposure_group"):
        assert _row(chars, group, "age", "")["mean"] == pytest.approx(part["age_at_index"].mean())
    # The study's reimbursement-free design names no condition; co-medication at most 10.
    assert chars.loc[chars.variable == "comedication", "level"].nunique() <= 10
    assert set(chars["variable"]) >= {"sex", "age", "drug_use", "drug_ddd", "comedication"}
    smd = io.read_table(spark, study_dir / "characteristics_smd").toPandas()
    assert set(zip(smd.exposure_group_high, smd.exposure_group_low, strict=True)) == {
        ("ldn_4plus", "ldn_1")
    }

    export_study(spark, study_id, out=tmp_path, warehouse=warehouse)
    published = pd.read_csv(tmp_path / "characteristics.csv", dtype=str, keep_default_na=False)
    assert len(published) == len(chars)
    for column in ("n_persons", "n"):
        values = published[column]
        assert not values.map(is_small_count).any(), column
    assert (published["n"] == MASKED_COUNT).any()  # the demo's groups are small
    assert (tmp_path / "characteristics_smd.csv").exists()
