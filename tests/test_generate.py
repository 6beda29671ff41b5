"""The synthetic NorPD generator: building blocks, determinism, manifest and injected defects.

Deliveries are read back with the csv module only (an independent reader), never through the
generator's own code.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, LongType, StructField, StructType

from rxcohort.errors import RxCohortError
from rxcohort.generate import catalogue as cat
from rxcohort.generate import generate_delivery
from rxcohort.generate.dispensings import effect_reductions, format_number
from rxcohort.generate.lines import dispensing_id
from rxcohort.generate.population import plan_prescribers
from rxcohort.generate.rand import cumulative, pick, uniform

ATC = re.compile(r"^[A-Z][0-9]{2}[A-Z]{2}[0-9]{2}$")
DISPENSING_HEADER = (
    "dispensing_id;person_id;dispense_date;atc_code;product_id;product_name;magistral;"
    "strength_mg;units_per_pack;packs;ddd_per_pack;prescriber_id;reimbursement;"
    "reimbursement_code"
)


# ---------------------------------------------------------------------------------------------
# An independent reader
# ---------------------------------------------------------------------------------------------


def read_lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    lines = read_lines(path)
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=";", quoting=csv.QUOTE_NONE)
    rows = list(reader)
    header = rows[0]
    assert all(len(r) == len(header) for r in rows[1:]), f"{path.name}: ragged rows"
    return header, [dict(zip(header, r, strict=True)) for r in rows[1:]]


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def test_format_number_writes_registry_decimals():
    assert [format_number(x) for x in (None, 1.0, 100, 4.5, 1 / 3, 66.66666, 0.075, 2.8)] == [
        None,
        "1",
        "100",
        "4.5",
        "0.3333",
        "66.6667",
        "0.075",
        "2.8",
    ]


@pytest.mark.parametrize(
    ("key", "ddd_per_pack"),
    [
        ("paralgin_100", 20.0),  # 100 tablets, DDD 5 unit doses
        ("oxycodone_10_98", 10 * 98 / 75),
        ("tramadol_50_100", 50 * 100 / 300),
        ("ibuprofen_400_30", 10.0),
        ("buprenorphine_5_4", 2.8),  # 4 x 7 days x 0.12 mg/day / 1.2 mg
        ("fentanyl_12_5", 3.6),  # 5 x 3 days x 0.288 mg/day / 1.2 mg
        ("naltrexone_50_28", 28.0),
        ("escitalopram_10_98", 98.0),
    ],
)
def test_ddd_per_pack_of_products(key, ddd_per_pack):
    product = cat.ALL_PRODUCTS[cat.PRODUCT_INDEX[key]]
    assert cat.ddd_per_pack(product) == pytest.approx(ddd_per_pack)


def test_ldn_products_are_compounded_without_ddd():
    assert len(cat.LDN_PRODUCTS) == len(cat.LDN_STRENGTHS) * len(cat.LDN_PACK_UNITS)
    for p in cat.LDN_PRODUCTS:
        assert p.atc == "N07BB04" and p.magistral and cat.ddd_per_pack(p) is None
        assert 0 < p.strength_mg <= 5
    first = cat.ALL_PRODUCTS[cat.ldn_product_index(0, 0)]
    last = cat.ALL_PRODUCTS[cat.ldn_product_index(len(cat.LDN_STRENGTHS) - 1, 4)]
    assert (first.strength_mg, first.units) == (0.5, 30)
    assert (last.strength_mg, last.units) == (4.5, 100)


def test_product_ids_are_unique_six_digit_numbers():
    ids = [p.product_id for p in cat.ALL_PRODUCTS]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9]{6}", i) for i in ids)


def test_effect_reductions_use_the_longest_matching_prefix():
    effects = {"N02A": {"ldn_4plus": -0.46, "ldn_2_3": -0.15}, "N02AX": {"ldn_4plus": -0.2}}
    assert effect_reductions("N02AA59", effects) == [0.0, 0.15, 0.46]
    assert effect_reductions("N02AX02", effects) == [0.0, 0.0, 0.2]
    assert effect_reductions("M01AE01", effects) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("persons", "physicians", "gps", "dentists", "willing_gps"),
    [(20_000, 100, 25, 18, 18), (1_000_000, 5000, 1250, 909, 912)],
)
def test_prescriber_pools_scale_with_the_population(
    persons, physicians, gps, dentists, willing_gps
):
    plan = plan_prescribers(persons)
    assert plan.physicians == physicians
    assert plan.pool("gp").count == gps
    assert plan.pool("dentist").count == dentists
    assert plan.ldn_willing_gps == willing_gps
    # 20% of physicians are willing to prescribe LDN, most of them GPs.
    assert plan.ldn_willing_gps + plan.ldn_willing_others == round(0.205 * physicians)
    gp = plan.pool("gp").count
    assert all(p.count <= gp for p in plan.pools if p.profession == "physician" and p.specialty)


def test_cumulative_weights_end_at_one():
    assert cumulative([1, 1, 2]) == [0.25, 0.5, 1.0]


def test_pick_maps_uniforms_onto_weights(spark):
    df = spark.createDataFrame([(0.05,), (0.2,), (0.25,), (0.74,), (0.75,), (0.99,)], "u double")
    got = [r[0] for r in df.select(pick(F.col("u"), [1, 0, 2, 1])).collect()]
    # cumulative 0.25, 0.25, 0.75, 1.0: index 1 has weight 0 and is never drawn
    assert got == [0, 0, 2, 2, 3, 3]


def test_uniform_depends_only_on_seed_purpose_and_keys(spark):
    schema = StructType([StructField("a", LongType()), StructField("b", IntegerType())])
    df = spark.createDataFrame([(1, 2), (1, 2), (2, 1)], schema).repartition(3)
    rows = df.select(
        "a", "b", uniform(7, "x", "a", "b").alias("u"), uniform(8, "x", "a", "b").alias("v")
    ).collect()
    by_key: dict[tuple[int, int], set[float]] = {}
    for r in rows:
        by_key.setdefault((r["a"], r["b"]), set()).add(r["u"])
        assert 0.0 < r["u"] < 1.0 and r["u"] != r["v"]
    assert len(by_key[(1, 2)]) == 1
    assert by_key[(1, 2)] != by_key[(2, 1)]


def test_dispensing_ids_are_unique_fifteen_digits(spark):
    keys = [(i, s, k) for i in (0, 1, 99_999_999) for s in (1, 90, 590) for k in (0, 1, 9999)]
    schema = "idx long, src int, k int"
    ids = [
        r[0]
        for r in spark.createDataFrame(keys, schema)
        .select(dispensing_id(F.col("idx"), F.col("src"), F.col("k"), 2013))
        .collect()
    ]
    assert len(set(ids)) == len(keys)
    assert all(re.fullmatch(r"[0-9]{15}", i) for i in ids)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"persons": 10}, "--persons"),
        ({"defects": 0.7}, "--defects"),
        ({"ldn_rate": 0.5}, "--ldn-rate"),
        ({"start": date(2015, 1, 1), "end": date(2014, 1, 1)}, "--end"),
        ({"effects": {"N02A": {"ldn_9": -0.1}}}, "unknown exposure group"),
        ({"effects": {"N02A": {"ldn_4plus": 0.5}}}, "between -0.9 and 0"),
        ({"effects": {"n02a": {"ldn_4plus": -0.5}}}, "not an ATC"),
    ],
)
def test_bad_arguments_fail_before_spark_work(spark, tmp_path, kwargs, message):
    args = {"persons": 1000, **kwargs}
    with pytest.raises(RxCohortError, match=message):
        generate_delivery(spark, tmp_path / "out", **args)


def test_refuses_a_directory_with_foreign_files(spark, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RxCohortError, match="not from a generated delivery"):
        generate_delivery(spark, tmp_path, persons=1000)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------------------------------------
# Two runs, same arguments, different parallelism: identical bytes; defects as declared
# ---------------------------------------------------------------------------------------------

PAIR_ARGS = {"persons": 1500, "seed": 11, "defects": 0.1, "gzip": True, "ldn_rate": 0.02}


@pytest.fixture(scope="module")
def pair(spark, tmp_path_factory):
    first = tmp_path_factory.mktemp("gen_a")
    second = tmp_path_factory.mktemp("gen_b")
    generate_delivery(spark, first, **PAIR_ARGS)
    before = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "5")
    try:
        generate_delivery(spark, second, **PAIR_ARGS)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)
    return first, second


def _all_files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_same_arguments_give_identical_bytes(pair):
    first, second = pair
    files = _all_files(first)
    assert set(files) == {
        "manifest.json",
        "truth.json",
        "persons.csv.gz",
        "prescribers.csv.gz",
        *[f"dispensings/dispensings_{y}.csv.gz" for y in range(2011, 2016)],
    }
    assert files == _all_files(second)


@pytest.mark.slow
def test_manifest_names_every_file_with_its_sha256(pair):
    root = pair[0]
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["period"] == ["2011-01-01", "2015-12-31"]
    assert date.fromisoformat(manifest["extract_date"]) > date(2015, 12, 31)
    assert manifest["registry"]
    delivered = {
        k: v for k, v in _all_files(root).items() if k not in ("manifest.json", "truth.json")
    }
    assert manifest["files"] == delivered


@pytest.fixture(scope="module")
def defective(pair):
    root = pair[0]
    truth = json.loads((root / "truth.json").read_text())
    _, persons = read_rows(root / "persons.csv.gz")
    lines: list[tuple[int, str]] = []
    for year in range(2011, 2016):
        path = root / "dispensings" / f"dispensings_{year}.csv.gz"
        file_lines = read_lines(path)
        assert file_lines[0] == DISPENSING_HEADER
        lines += [(year, line) for line in file_lines[1:]]
    return truth, {p["person_id"] for p in persons}, lines


def _fields(line: str) -> dict[str, str]:
    return dict(zip(DISPENSING_HEADER.split(";"), line.split(";"), strict=True))


def _parses_in_year(value: str, year: int) -> bool:
    try:
        return date.fromisoformat(value).year == year
    except ValueError:
        return False


@pytest.mark.slow
def test_defects_appear_at_the_requested_rate(defective):
    truth, _, lines = defective
    by_kind = truth["defects"]["by_kind"]
    assert truth["defects"]["rate"] == 0.1
    assert len(lines) == truth["dispensings"]["rows"]
    injected = sum(by_kind.values())
    assert injected / truth["defects"]["events"] == pytest.approx(0.1, abs=0.01)
    # Every kind is present, roughly in its declared proportion.
    for kind, weight in cat.DEFECT_KINDS:
        assert by_kind[kind] / injected == pytest.approx(weight, abs=0.04), kind


@pytest.mark.slow
def test_each_defect_kind_is_found_in_the_files_as_counted(defective):
    truth, person_ids, lines = defective
    by_kind = truth["defects"]["by_kind"]
    counts = Counter(line for _, line in lines)
    assert sum(n - 1 for n in counts.values()) == by_kind["duplicate"]
    unique = list(dict.fromkeys(lines))
    rows = [(year, _fields(line)) for year, line in unique]
    found = Counter()
    for year, r in rows:
        if any(v != v.strip() for v in r.values()):
            found["whitespace"] += 1
        r = {k: v.strip() for k, v in r.items()}
        if not ATC.match(r["atc_code"]):
            found["malformed_atc"] += 1
        if not _parses_in_year(r["dispense_date"], year):
            found["impossible_date"] += 1
        if r["person_id"] not in person_ids:
            found["unknown_person"] += 1
        if r["magistral"] == "0" and r["ddd_per_pack"] == "":
            found["missing_ddd"] += 1
        if float(r["packs"]) < 0:
            found["negative"] += 1
    for kind in ("whitespace", "malformed_atc", "impossible_date", "unknown_person", "missing_ddd"):
        assert found[kind] == by_kind[kind], kind
    assert found["negative"] == by_kind["return"] + truth["dispensings"]["genuine_returns"]
