"""Bronze -> silver rules: every quarantine reason with one bad row, duplicates, returns, DDD.

Pure transforms on inline frames; the expected status of every row is written out by hand.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from rxcohort.ingest import rules
from rxcohort.ingest.bronze import bronze_table_schema
from rxcohort.reference import WHO_DDD_SCHEMA
from rxcohort.schemas import RAW_COLUMNS, SILVER_DISPENSINGS, SILVER_PERSONS, SILVER_PRESCRIBERS
from test_ingest_fixtures import dispensing

LOAD_TIME = datetime(2016, 3, 2, 8, 0, 0)
FILES_SCHEMA = "source_file string, file_year int, period_start date, period_end date"


def bronze_frame(spark, table, rows, *, source_file, load_id="L1"):
    """Bronze rows as the reader makes them: '' -> null; a str row is a raw line."""
    n = len(RAW_COLUMNS[table])
    data = []
    for i, row in enumerate(rows):
        if isinstance(row, str):
            fields = row.split(";")
            values = [v or None for v in (fields + [""] * n)[:n]]
            count, raw_line = len(fields), row
        else:
            values = [v if v != "" else None for v in row]
            count, raw_line = n, None
        data.append((*values, source_file, "ab12", i + 2, load_id, LOAD_TIME, count, raw_line))
    return spark.createDataFrame(data, bronze_table_schema(table))


def outcome(classified, key):
    rows = classified.select(key, "line_number", "status", "reason", "reason_detail").collect()
    return sorted((tuple(r) for r in rows), key=lambda r: r[1])


@pytest.fixture(scope="module")
def who_ddd(spark):
    return spark.createDataFrame(
        [
            ("N02AX02", None, None, 0.3, "g", "O", 300.0),
            ("N05CF01", None, 2012, 5.0, "mg", "O", 5.0),
            ("N05CF01", 2013, None, 7.5, "mg", "O", 7.5),
            ("N02AA59", None, 2016, None, "UD", "O", None),
        ],
        WHO_DDD_SCHEMA,
    )


PERSON_ROWS = [
    ("P1", "2", "1960", "", "", "03"),  # 2 clean
    (" P2 ", "1", "1971", "", "", "46"),  # 3 clean, id trimmed
    "P3;2;1980",  # 4 wrong_field_count
    ("", "2", "1980", "", "", "03"),  # 5 missing person_id
    ("P4", "x", "1980", "", "", "03"),  # 6 unparseable sex
    ("P4b", "2", "19x0", "", "", "03"),  # 7 unparseable birth_year
    ("P4c", "3", "1980", "", "", "03"),  # 8 sex outside 1/2
    ("P4d", "2", "1980", "2015-13-01", "", "03"),  # 9 unparseable death_date
    ("P4e", "2", "1980", "", "2015/01/01", "03"),  # 10 unparseable emigration_date
    ("P5", "1", "1950", "", "", "03"),  # 11 clean
    ("P5", "1", "1950", "", "", "03"),  # 12 exact duplicate
    ("P6", "2", "1950", "", "", "03"),  # 13 conflicting
    ("P6", "2", "1951", "", "", "03"),  # 14 conflicting
    ("P7", "", "", "", "", ""),  # 15 clean: unknown sex and birth year are allowed
]


@pytest.fixture(scope="module")
def persons(spark):
    bronze = bronze_frame(spark, "persons", PERSON_ROWS, source_file="persons.csv")
    return rules.classify_persons(bronze).cache()


def test_each_person_reason_with_one_bad_row(persons):
    q, c, d = rules.QUARANTINED, rules.CLEAN, rules.DUPLICATE
    assert outcome(persons, "t_person_id") == [
        ("P1", 2, c, None, None),
        ("P2", 3, c, None, None),
        ("P3", 4, q, "wrong_field_count", "expected 6 fields"),
        (None, 5, q, "missing_required_field", "person_id"),
        ("P4", 6, q, "unparseable_number", "sex"),
        ("P4b", 7, q, "unparseable_number", "birth_year"),
        ("P4c", 8, q, "invalid_value", "sex"),
        ("P4d", 9, q, "unparseable_date", "death_date"),
        ("P4e", 10, q, "unparseable_date", "emigration_date"),
        ("P5", 11, c, None, None),
        ("P5", 12, d, None, None),
        ("P6", 13, q, "conflicting_duplicate", "person_id"),
        ("P6", 14, q, "conflicting_duplicate", "person_id"),
        ("P7", 15, c, None, None),
    ]


def test_silver_persons_are_typed_and_trimmed(spark, persons):
    expected = spark.createDataFrame(
        [
            ("P1", 2, 1960, None, None, "03", "persons.csv", "L1"),
            ("P2", 1, 1971, None, None, "46", "persons.csv", "L1"),
            ("P5", 1, 1950, None, None, "03", "persons.csv", "L1"),
            ("P7", None, None, None, None, None, "persons.csv", "L1"),
        ],
        SILVER_PERSONS,
    )
    silver = rules.select_silver_persons(persons)
    assert silver.schema.simpleString() == SILVER_PERSONS.simpleString()
    assertDataFrameEqual(silver, expected)


def test_each_prescriber_reason_with_one_bad_row(spark):
    rows = [
        ("D1", "physician", "general_practice"),  # 2 clean
        ("D2", " Physician ", "Neurology"),  # 3 clean, normalised to lower case
        "D3;physician",  # 4 wrong_field_count
        ("", "nurse", ""),  # 5 missing id
        ("D4", "surgeon", ""),  # 6 invalid profession
        ("D5", "dentist", ""),  # 7 clean
        ("D5", "dentist", ""),  # 8 duplicate
        ("D6", "nurse", ""),  # 9 conflicting
        ("D6", "other", ""),  # 10 conflicting
    ]
    classified = rules.classify_prescribers(
        bronze_frame(spark, "prescribers", rows, source_file="prescribers.csv")
    )
    q, c, d = rules.QUARANTINED, rules.CLEAN, rules.DUPLICATE
    assert [r[1:] for r in outcome(classified, "t_prescriber_id")] == [
        (2, c, None, None),
        (3, c, None, None),
        (4, q, "wrong_field_count", "expected 3 fields"),
        (5, q, "missing_required_field", "prescriber_id"),
        (6, q, "invalid_value", "profession"),
        (7, c, None, None),
        (8, d, None, None),
        (9, q, "conflicting_duplicate", "prescriber_id"),
        (10, q, "conflicting_duplicate", "prescriber_id"),
    ]
    expected = spark.createDataFrame(
        [
            ("D1", "physician", "general_practice", "prescribers.csv", "L1"),
            ("D2", "physician", "neurology", "prescribers.csv", "L1"),
            ("D5", "dentist", None, "prescribers.csv", "L1"),
        ],
        SILVER_PRESCRIBERS,
    )
    assertDataFrameEqual(rules.select_silver_prescribers(classified), expected)


# Period 2012-01-01 .. 2013-06-30: the 2013 file's rows after June are outside the delivery.
FILES = [
    ("dispensings_2013.csv", 2013, date(2012, 1, 1), date(2013, 6, 30)),
    ("dispensings_2012.csv", 2012, date(2012, 1, 1), date(2013, 6, 30)),
]
D = dispensing
DISPENSING_ROWS_2013 = [
    D("C1"),  # 2 clean
    "W1;P1;2013-03-01",  # 3 wrong_field_count
    D("M1", person_id=""),  # 4 missing person_id
    D("M2", atc_code=""),  # 5 missing atc_code
    D("DT1", dispense_date="2013-02-30"),  # 6 no such day
    D("DT2", dispense_date="01.03.2013"),  # 7 not ISO
    D("N1", packs="1,5"),  # 8 decimal comma
    D("N2", strength_mg="abc"),  # 9
    D("V1", magistral="2"),  # 10
    D("V2", reimbursement="red"),  # 11
    D("A1", atc_code="N2AX02"),  # 12 six characters
    D("A2", atc_code="N02AX02X"),  # 13 eight characters
    D("B1", dispense_date="2013-01-01"),  # 14 clean: first day of the file's year
    D("Y1", dispense_date="2012-12-31"),  # 15 day before the file's year
    D("B2", dispense_date="2013-06-30"),  # 16 clean: last day of the period
    D("PR1", dispense_date="2013-07-01"),  # 17 day after the period
    D("Z1", packs="0"),  # 18
    D("U1", person_id="P9"),  # 19 not in persons
    D("U2", person_id="P6"),  # 20 person quarantined (conflicting) -> unknown
    D("E1"),  # 21 clean
    D("E1"),  # 22 exact duplicate
    D("K1", packs="1"),  # 23 conflicting
    D("K1", packs="2"),  # 24 conflicting
    D("R1", person_id="P2", product_id="999999", packs="-1"),  # 25 nothing dispensed
    D("S1", person_id="P2", product_id="888888", dispense_date="2013-04-01"),  # 26 clean
    D("R2", person_id="P2", product_id="888888", dispense_date="2013-04-01", packs="-1"),  # 27
    D("R3", person_id="P2", product_id="888888", dispense_date="2013-04-02", packs="-0.5"),  # 28
    D("R4", person_id="P2", product_id="777777", dispense_date="2013-04-30", packs="-1"),  # 29
    D("S2", person_id="P2", product_id="777777", dispense_date="2013-05-01"),  # 30 clean
    D(" c2 ", atc_code=" n02ax02 ", reimbursement=" BLUE ", magistral="1"),  # 31 clean
    # a return nets against the product's dispensings in the 14 days up to it (13, 14, 15)
    D("S5", person_id="P2", product_id="444444", dispense_date="2013-03-01"),  # 32 clean
    D("R7", person_id="P2", product_id="444444", dispense_date="2013-03-14", packs="-1"),  # 33
    D("S3", person_id="P2", product_id="666666", dispense_date="2013-03-01"),  # 34 clean
    D("R5", person_id="P2", product_id="666666", dispense_date="2013-03-15", packs="-1"),  # 35
    D("S4", person_id="P2", product_id="555555", dispense_date="2013-03-01"),  # 36 clean
    D("R6", person_id="P2", product_id="555555", dispense_date="2013-03-16", packs="-1"),  # 37
]
DISPENSING_ROWS_2012 = [
    D("Y2", dispense_date="2013-01-01"),  # 2 a 2013 date in the 2012 file
    D("C3", dispense_date="2012-12-31"),  # 3 clean
]


@pytest.fixture(scope="module")
def dispensings(spark, persons, who_ddd):
    bronze = bronze_frame(
        spark, "dispensings", DISPENSING_ROWS_2013, source_file="dispensings_2013.csv"
    ).unionByName(
        bronze_frame(spark, "dispensings", DISPENSING_ROWS_2012, source_file="dispensings_2012.csv")
    )
    files = spark.createDataFrame(FILES, FILES_SCHEMA)
    return rules.classify_dispensings(bronze, persons, files, who_ddd).cache()


def test_each_dispensing_reason_with_one_bad_row(dispensings):
    q, c, d = rules.QUARANTINED, rules.CLEAN, rules.DUPLICATE
    got = [
        (r["source_file"][12:16], r["line_number"], r["status"], r["reason"], r["reason_detail"])
        for r in dispensings.select(
            "source_file", "line_number", "status", "reason", "reason_detail"
        ).collect()
    ]
    assert sorted(got) == [
        ("2012", 2, q, "date_outside_file_year", "dispense_date"),
        ("2012", 3, c, None, None),
        ("2013", 2, c, None, None),
        ("2013", 3, q, "wrong_field_count", "expected 14 fields"),
        ("2013", 4, q, "missing_required_field", "person_id"),
        ("2013", 5, q, "missing_required_field", "atc_code"),
        ("2013", 6, q, "unparseable_date", "dispense_date"),
        ("2013", 7, q, "unparseable_date", "dispense_date"),
        ("2013", 8, q, "unparseable_number", "packs"),
        ("2013", 9, q, "unparseable_number", "strength_mg"),
        ("2013", 10, q, "invalid_value", "magistral"),
        ("2013", 11, q, "invalid_value", "reimbursement"),
        ("2013", 12, q, "malformed_atc", "atc_code"),
        ("2013", 13, q, "malformed_atc", "atc_code"),
        ("2013", 14, c, None, None),
        ("2013", 15, q, "date_outside_file_year", "dispense_date"),
        ("2013", 16, c, None, None),
        ("2013", 17, q, "date_outside_period", "dispense_date"),
        ("2013", 18, q, "zero_packs", "packs"),
        ("2013", 19, q, "unknown_person", "person_id"),
        ("2013", 20, q, "unknown_person", "person_id"),
        ("2013", 21, c, None, None),
        ("2013", 22, d, None, None),
        ("2013", 23, q, "conflicting_duplicate", "dispensing_id"),
        ("2013", 24, q, "conflicting_duplicate", "dispensing_id"),
        ("2013", 25, q, "unmatched_return", "packs"),
        ("2013", 26, c, None, None),
        ("2013", 27, c, None, None),
        ("2013", 28, q, "return_exceeds_dispensed", "packs"),
        ("2013", 29, q, "unmatched_return", "packs"),
        ("2013", 30, c, None, None),
        ("2013", 31, c, None, None),
        ("2013", 32, c, None, None),
        ("2013", 33, c, None, None),
        ("2013", 34, c, None, None),
        ("2013", 35, c, None, None),
        ("2013", 36, c, None, None),
        ("2013", 37, q, "unmatched_return", "packs"),
    ]


def test_every_reason_code_is_exercised(dispensings, persons):
    seen = {r["reason"] for r in dispensings.select("reason").distinct().collect()}
    assert seen - {None} == set(rules.REASONS["dispensings"])
    seen = {r["reason"] for r in persons.select("reason").distinct().collect()}
    assert seen - {None} == set(rules.REASONS["persons"])


def test_silver_dispensings_are_normalised_with_ddd(spark, dispensings):
    silver = rules.select_silver_dispensings(dispensings)
    assert silver.schema.simpleString() == SILVER_DISPENSINGS.simpleString()
    picked = silver.where(F.col("dispensing_id").isin("C1", "c2", "R2"))

    def row(did, person, day, packs, ddd, magistral=False, product="123456"):
        return (
            did, person, day, "N02AX02", product, "Tramadol 50 mg", magistral, 50.0, 30.0,
            packs, 5.0, ddd, "registry", "D1", "blue", "L88", "dispensings_2013.csv", "L1", 2013,
        )  # fmt: skip

    expected = spark.createDataFrame(
        [
            row("C1", "P1", date(2013, 3, 1), 1.0, 5.0),
            row("c2", "P1", date(2013, 3, 1), 1.0, 5.0, magistral=True),
            row("R2", "P2", date(2013, 4, 1), -1.0, -5.0, product="888888"),
        ],
        SILVER_DISPENSINGS,
    )
    assertDataFrameEqual(picked, expected)


def test_ddd_registry_then_computed_by_year_then_unknown(spark, who_ddd):
    typed = spark.createDataFrame(
        [
            # id, atc, year, packs, units, strength, ddd_per_pack
            ("reg", "N02AX02", 2013, 2.0, 30.0, 50.0, 5.0),
            ("tramadol", "N02AX02", 2013, 2.0, 30.0, 50.0, None),  # 2*30*50/300
            ("zopiclone2012", "N05CF01", 2012, 1.0, 10.0, 7.5, None),  # 10*7.5/5
            ("zopiclone2013", "N05CF01", 2013, 1.0, 10.0, 7.5, None),  # 10*7.5/7.5
            ("return", "N02AX02", 2013, -1.0, 30.0, 50.0, None),  # -1*30*50/300
            ("ud", "N02AA59", 2013, 1.0, 20.0, 30.0, None),  # DDD in unit doses: unknown
            ("unknown_atc", "N99ZZ99", 2013, 1.0, 20.0, 30.0, None),
            ("no_strength", "N02AX02", 2013, 1.0, 20.0, None, None),
        ],
        "id string, t_atc_code string, t_dispense_year int, t_packs double, "
        "t_units_per_pack double, t_strength_mg double, t_ddd_per_pack double",
    )
    got = {
        r["id"]: (r["t_ddd"], r["t_ddd_method"])
        for r in rules.add_ddd(typed, who_ddd).select("id", "t_ddd", "t_ddd_method").collect()
    }
    assert got == {
        "reg": (10.0, "registry"),
        "tramadol": (10.0, "computed"),
        "zopiclone2012": (15.0, "computed"),
        "zopiclone2013": (10.0, "computed"),
        "return": (-5.0, "computed"),
        "ud": (None, None),
        "unknown_atc": (None, None),
        "no_strength": (None, None),
    }


def test_quarantine_keeps_raw_values_reason_and_lineage(dispensings):
    quarantine = rules.select_quarantine(dispensings, table="dispensings")
    assert quarantine.columns == [
        *RAW_COLUMNS["dispensings"],
        "reason",
        "reason_detail",
        "source_file",
        "source_sha256",
        "line_number",
        "load_id",
        "load_time",
        "field_count",
        "raw_line",
    ]
    wrong = quarantine.where("reason = 'wrong_field_count'").first()
    assert (wrong["dispensing_id"], wrong["field_count"], wrong["raw_line"]) == (
        "W1",
        3,
        "W1;P1;2013-03-01",
    )
    packs = quarantine.where("reason = 'unparseable_number'").select("packs").collect()
    assert {r["packs"] for r in packs} == {"1,5", "1"}  # raw strings, as delivered


def test_writing_intermediate_results_changes_no_verdict(
    spark, persons, who_ddd, dispensings, tmp_path
):
    """The ingest writes each intermediate frame to Parquet and reads it back; the verdicts
    must be those of the whole plan kept in memory."""
    written: list[str] = []

    def to_parquet(frame, name):
        written.append(name)
        target = str(tmp_path / name)
        frame.write.mode("overwrite").parquet(target)
        return spark.read.schema(frame.schema).parquet(target)

    bronze = bronze_frame(
        spark, "dispensings", DISPENSING_ROWS_2013, source_file="dispensings_2013.csv"
    ).unionByName(
        bronze_frame(spark, "dispensings", DISPENSING_ROWS_2012, source_file="dispensings_2012.csv")
    )
    files = spark.createDataFrame(FILES, FILES_SCHEMA)
    via_files = rules.classify_dispensings(bronze, persons, files, who_ddd, materialise=to_parquet)
    columns = ["source_file", "line_number", "status", "reason", "reason_detail", "t_ddd"]
    assertDataFrameEqual(via_files.select(*columns), dispensings.select(*columns))
    assert written == [
        "known_persons",
        "checked",
        "repeated_keys",
        "duplicate_flags",
        "return_products",
        "return_flags",
    ]


def test_values_are_trimmed_of_ascii_whitespace_only(spark):
    frame = spark.createDataFrame(
        [(" \t x y\r\n",), ("\x0b\f7\f",), ("\u00a0z\u00a0",), (" \t ",), (None,)], "sex string"
    )
    got = [
        r["s_sex"]
        for r in rules._trimmed(
            "persons",
            frame.select(
                *[
                    F.lit(None).cast("string").alias(c)
                    for c in RAW_COLUMNS["persons"]
                    if c != "sex"
                ],
                "sex",
            ),
        ).collect()
    ]
    # Inner spaces stay; a non-breaking space is a value, not whitespace; blank is null.
    assert got == ["x y", "7", "\u00a0z\u00a0", None, None]
