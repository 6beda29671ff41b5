"""A corpus of broken deliveries: every row read lands in silver or in quarantine with a reason
(or is counted as an exact duplicate), or the ingest stops with one line naming the file and
changes nothing.

Row-level faults are all in one delivery, one per line, so one ingest checks them all by
line number; file-level faults each get their own delivery, tried on a copy of a warehouse
that already holds a load.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from rxcohort import io
from rxcohort.errors import DeliveryError, QualityGateError
from rxcohort.schemas import DISPENSINGS_COLUMNS, PERSONS_COLUMNS, PRESCRIBERS_COLUMNS
from test_ingest_fixtures import PERSONS, PRESCRIBERS, csv_text, dispensing, write_delivery

pytestmark = pytest.mark.slow

DISPENSINGS_FILE = "dispensings/dispensings_2013.csv"
HUGE = "x" * 200_000


def _line(*fields: str) -> str:
    return ";".join(fields)


def _row(n: int, **changes: str) -> str:
    return _line(*dispensing(f"C{n}", **changes))


# (what is on the line, where the row must end up): "silver", a quarantine reason, or
# "duplicate" (an exact copy of an earlier row, removed and counted).
ROWS: list[tuple[str, str, str]] = [
    ("well-formed row", _row(1), "silver"),
    ("impossible date", _row(2, dispense_date="2013-02-30"), "unparseable_date"),
    ("day.month.year date", _row(3, dispense_date="01.03.2013"), "unparseable_date"),
    ("slashed date", _row(4, dispense_date="2013/03/01"), "unparseable_date"),
    ("compact date", _row(5, dispense_date="20130301"), "unparseable_date"),
    ("date with a time", _row(6, dispense_date="2013-03-01T10:00"), "unparseable_date"),
    ("date of 13th month", _row(7, dispense_date="2013-13-01"), "unparseable_date"),
    ("empty date", _row(8, dispense_date=""), "missing_required_field"),
    ("date in the wrong year", _row(9, dispense_date="2014-01-05"), "date_outside_file_year"),
    ("date padded with spaces", _row(10, dispense_date=" 2013-03-02 "), "silver"),
    ("decimal comma", _row(11, packs="1,5"), "unparseable_number"),
    ("letters for a number", _row(12, packs="abc"), "unparseable_number"),
    ("NaN", _row(13, packs="NaN"), "unparseable_number"),
    ("hexadecimal", _row(14, strength_mg="0x10"), "unparseable_number"),
    ("Java double suffix", _row(15, strength_mg="1d"), "unparseable_number"),
    ("exponent", _row(16, packs="1e1"), "silver"),
    ("zero packs", _row(17, packs="0"), "zero_packs"),
    ("return without a dispensing", _row(18, packs="-1", product_id="999999"), "unmatched_return"),
    ("negative strength", _row(19, strength_mg="-5"), "invalid_value"),
    ("no units per pack", _row(20, units_per_pack="0"), "invalid_value"),
    ("magistral not 0/1", _row(21, magistral="2"), "invalid_value"),
    ("unknown reimbursement", _row(22, reimbursement="red"), "invalid_value"),
    ("short ATC code", _row(23, atc_code="N02X"), "malformed_atc"),
    ("lower-case ATC code", _row(24, atc_code="n02ax02"), "silver"),
    ("unknown person", _row(25, person_id="P404"), "unknown_person"),
    ("empty dispensing id", _line(*dispensing("")), "missing_required_field"),
    ("too few fields", ";".join(dispensing("C27")[:-2]), "wrong_field_count"),
    ("too many fields", _row(28) + ";extra", "wrong_field_count"),
    ("quoted separator", _row(29, product_name='"Tramadol; 50 mg"'), "silver"),
    ("doubled quotes", _row(30, product_name='"Tramadol ""retard"""'), "silver"),
    ("NUL byte in a field", _row(31, product_name="Tramadol\x0050 mg"), "silver"),
    ("non-ASCII letters", _row(32, product_name="Paralgin forte \u00e6\u00f8\u00e5"), "silver"),
    ("huge field", _row(33, product_name=HUGE), "silver"),
    ("CRLF line end", _row(34) + "\r", "silver"),
    ("exact duplicate", _row(1), "duplicate"),
    ("same id, other content", _row(36, packs="2"), "conflicting_duplicate"),
    ("same id, other content again", _row(36, packs="3"), "conflicting_duplicate"),
    ("only separators", ";" * (len(DISPENSINGS_COLUMNS) - 1), "missing_required_field"),
]
# A quoted field that holds a line break: one record over two lines. Then, last in the file,
# a quote that never closes: a character of its line (see rxcohort.ingest.records).
QUOTED_NEWLINE = _row(40, product_name='"Tramadol\n50 mg"')
STRAY_QUOTE = _row(41, product_name='"Tramadol')


@pytest.fixture(scope="module")
def corpus(spark, tmp_path_factory):
    from rxcohort.pipelines import ingest_delivery

    root = tmp_path_factory.mktemp("corpus")
    lines = [line for _, line, _ in ROWS]
    body = "\n".join([";".join(DISPENSINGS_COLUMNS), *lines, "", QUOTED_NEWLINE, STRAY_QUOTE])
    body += "\n"
    persons = csv_text(PERSONS_COLUMNS, [*PERSONS, ("P7", "3", "1950", "", "", "03")])
    delivery = write_delivery(
        root / "delivery",
        raw_files={
            DISPENSINGS_FILE: body.encode("utf-8"),
            # A byte-order mark before the header is accepted.
            "persons.csv": b"\xef\xbb\xbf" + persons.encode(),
        },
    )
    wh = root / "wh"
    result = ingest_delivery(spark, delivery, warehouse=wh)
    return wh, result


def _quarantined(spark, wh: Path) -> dict[int, str]:
    rows = io.read_table(spark, wh / "quarantine/dispensings").collect()
    return {
        r["line_number"]: r["reason"] for r in rows if r["source_file"] == "dispensings_2013.csv"
    }


def _silver(spark, wh: Path) -> list[dict]:
    frame = io.read_table(spark, wh / "silver/dispensings")
    return [r.asDict() for r in frame.where("source_file = 'dispensings_2013.csv'").collect()]


def test_every_row_lands_in_silver_or_quarantine_with_its_reason(spark, corpus):
    wh, _ = corpus
    silver = _silver(spark, wh)
    quarantine = _quarantined(spark, wh)
    in_silver = [r["dispensing_id"] for r in silver]
    seen: set[str] = set()
    wrong = {}
    for number, (case, line, expected) in enumerate(ROWS, start=2):  # line 1 is the header
        key = line.split(";")[0]
        if number in quarantine:
            got = quarantine[number]
        elif key in in_silver and key not in seen:
            got = "silver"
        else:
            got = "duplicate"
        seen.add(key)
        if got != expected:
            wrong[case] = (expected, got)
    assert not wrong, wrong
    # Each clean row once (the exact duplicate is not there twice), the quoted line break too.
    expected_silver = sum(1 for *_, e in ROWS if e == "silver") + 2
    assert sorted(in_silver) == sorted(set(in_silver)) and len(in_silver) == expected_silver
    # The values kept as delivered, unquoted, trimmed or upper-cased as the contract says.
    names = {r["dispensing_id"]: r["product_name"] for r in silver}
    assert names["C29"] == "Tramadol; 50 mg"
    assert names["C30"] == 'Tramadol "retard"'
    assert names["C31"] == "Tramadol\x0050 mg"
    assert names["C32"] == "Paralgin forte \u00e6\u00f8\u00e5"
    assert names["C33"] == HUGE
    assert {r["atc_code"] for r in silver if r["dispensing_id"] == "C24"} == {"N02AX02"}


def test_a_quoted_line_break_is_one_record(spark, corpus):
    wh, _ = corpus
    silver = {r["dispensing_id"]: r["product_name"] for r in _silver(spark, wh)}
    assert silver["C40"] == "Tramadol\n50 mg"
    first_line = len(ROWS) + 3  # header, the rows, a blank line
    quarantine = _quarantined(spark, wh)
    assert first_line not in quarantine and first_line + 1 not in quarantine
    assert silver["C41"] == '"Tramadol'  # the stray quote, as delivered


def test_the_counts_add_up_for_the_corpus(corpus):
    _, result = corpus
    counts = result.counts["dispensings"]
    records = len(ROWS) + 2  # the quoted line break makes one record of two lines
    assert counts.read_this_load == records
    assert counts.duplicates_this_load == 1
    assert counts.read_this_load == (
        counts.clean_this_load + counts.quarantined_this_load + counts.duplicates_this_load
    )
    persons = result.counts["persons"]
    assert persons.quarantined_this_load == 1  # sex 3


# -- files that cannot be read stop the ingest and change nothing ---------------------------


def _good() -> dict[str, bytes]:
    return {
        "persons.csv": csv_text(PERSONS_COLUMNS, PERSONS).encode(),
        "prescribers.csv": csv_text(PRESCRIBERS_COLUMNS, PRESCRIBERS).encode(),
        DISPENSINGS_FILE: csv_text(DISPENSINGS_COLUMNS, [dispensing("F1")]).encode(),
    }


def _replace(rel: str, data: bytes):
    return lambda files: {**files, rel: data}


def _gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


GOOD = _good()
FILE_FAULTS = [
    (
        "latin-1 byte",
        _replace("persons.csv", GOOD["persons.csv"] + "P9;1;1950;;;S\u00f8r\n".encode("latin-1")),
        "persons.csv: not UTF-8",
    ),
    (
        "UTF-16",
        _replace("persons.csv", GOOD["persons.csv"].decode().encode("utf-16")),
        "persons.csv: not UTF-8",
    ),
    (
        "bare carriage return",
        _replace("persons.csv", GOOD["persons.csv"].replace(b"\n", b"\r")),
        "persons.csv: line 1 holds a bare carriage return",
    ),
    ("empty file", _replace("prescribers.csv", b""), "prescribers.csv: empty file"),
    (
        "header missing a column",
        _replace("persons.csv", GOOD["persons.csv"].replace(b";county", b"")),
        "persons.csv: header lacks column(s) county",
    ),
    (
        "header with another separator",
        _replace("persons.csv", GOOD["persons.csv"].replace(b";", b",")),
        "persons.csv: separator is ','",
    ),
    (
        "header repeating a column",
        _replace("persons.csv", GOOD["persons.csv"].replace(b";county", b";sex", 1)),
        "persons.csv: header repeats column(s) sex",
    ),
    (
        "binary file",
        _replace("prescribers.csv", bytes(range(256)) * 4),
        "prescribers.csv: ",
    ),
    (
        "truncated gzip",
        lambda f: {
            **{k: v for k, v in f.items() if k != DISPENSINGS_FILE},
            DISPENSINGS_FILE + ".gz": _gzipped(GOOD[DISPENSINGS_FILE] * 200)[:-40],
        },
        "dispensings/dispensings_2013.csv.gz: truncated or corrupt gzip file",
    ),
    (
        "fake gzip",
        lambda f: {
            **{k: v for k, v in f.items() if k != DISPENSINGS_FILE},
            DISPENSINGS_FILE + ".gz": GOOD[DISPENSINGS_FILE],
        },
        "dispensings/dispensings_2013.csv.gz: truncated or corrupt gzip file",
    ),
    (
        "gzip of a latin-1 file",
        lambda f: {
            **{k: v for k, v in f.items() if k != DISPENSINGS_FILE},
            DISPENSINGS_FILE + ".gz": _gzipped(
                GOOD[DISPENSINGS_FILE] + _row(2, product_name="S\u00f8r").encode("latin-1") + b"\n"
            ),
        },
        "dispensings/dispensings_2013.csv.gz: not UTF-8",
    ),
    (
        "badly named dispensings file",
        lambda f: {
            **{k: v for k, v in f.items() if k != DISPENSINGS_FILE},
            "dispensings/disp_2013.csv": GOOD[DISPENSINGS_FILE],
        },
        "dispensings/disp_2013.csv",
    ),
    (
        "file no table takes",
        _replace("extra.csv", b"a;b\n"),
        "extra.csv: not a file of the delivery",
    ),
    (
        "missing persons file",
        lambda f: {k: v for k, v in f.items() if k != "persons.csv"},
        "persons.csv is missing",
    ),
]
MANIFEST_FAULTS = [
    ("manifest not JSON", lambda m: "{not json", "manifest.json"),
    ("manifest period of one date", lambda m: json.dumps({**m, "period": ["2012-01-01"]}), "manifest.json: period must be [start, end]"),
    ("manifest extract date not ISO", lambda m: json.dumps({**m, "extract_date": "1.3.2016"}), "manifest.json: extract_date is not a YYYY-MM-DD date"),
    ("manifest checksum wrong", lambda m: json.dumps({**m, "files": {**m["files"], "persons.csv": "0" * 64}}), "persons.csv: sha256 does not match manifest.json"),
    ("file in the manifest not delivered", lambda m: json.dumps({**m, "files": {**m["files"], "dispensings/dispensings_2014.csv": "0" * 64}}), "dispensings/dispensings_2014.csv: listed in manifest.json but not delivered"),
    ("file delivered but not in the manifest", lambda m: json.dumps({**m, "files": {k: v for k, v in m["files"].items() if k != "prescribers.csv"}}), "prescribers.csv: delivered but not listed in manifest.json"),
]  # fmt: skip


@pytest.fixture(scope="module")
def loaded(spark, tmp_path_factory):
    from rxcohort.pipelines import ingest_delivery

    root = tmp_path_factory.mktemp("corpus_base")
    wh = root / "wh"
    ingest_delivery(spark, write_delivery(root / "delivery"), warehouse=wh)
    return wh


def _write(root: Path, files: dict[str, bytes], manifest=None) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    body = {
        "registry": "NorPD (synthetic)",
        "extract_date": "2016-03-01",
        "period": ["2012-01-01", "2015-12-31"],
        "files": {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()},
    }
    (root / "manifest.json").write_text(manifest(body) if manifest else json.dumps(body))
    return root


def _versions(wh: Path) -> dict[str, int | None]:
    return {str(p.relative_to(wh)): io.table_version(p.parent) for p in wh.rglob("_delta_log")}


def _stops(spark, tmp_path, loaded, delivery: Path, message: str, error=DeliveryError) -> None:
    from rxcohort.pipelines import ingest_delivery

    wh = tmp_path / "wh"
    shutil.copytree(loaded, wh)
    before = _versions(wh)
    with pytest.raises(error) as info:
        ingest_delivery(spark, delivery, warehouse=wh)
    text = str(info.value)
    assert message in text, text
    assert "\n" not in text
    assert _versions(wh) == before
    assert not [p for p in wh.rglob("*") if p.name in ("_rxcohort_scratch", "_rxcohort_staging")]


@pytest.mark.parametrize(
    ("case", "change", "message"), FILE_FAULTS, ids=[c[0] for c in FILE_FAULTS]
)
def test_an_unreadable_file_stops_the_ingest_and_changes_nothing(
    spark, tmp_path, loaded, case, change, message
):
    delivery = _write(tmp_path / "delivery", change(dict(GOOD)))
    _stops(spark, tmp_path, loaded, delivery, message)


@pytest.mark.parametrize(
    ("case", "change", "message"), MANIFEST_FAULTS, ids=[c[0] for c in MANIFEST_FAULTS]
)
def test_a_manifest_fault_stops_the_ingest_and_changes_nothing(
    spark, tmp_path, loaded, case, change, message
):
    delivery = _write(tmp_path / "delivery", dict(GOOD), manifest=change)
    _stops(spark, tmp_path, loaded, delivery, message)


def test_a_file_of_a_year_outside_the_period_closes_the_gate_and_names_it(spark, tmp_path, loaded):
    files = {**GOOD, "dispensings/dispensings_2019.csv": GOOD[DISPENSINGS_FILE]}
    delivery = _write(tmp_path / "delivery", files)
    _stops(spark, tmp_path, loaded, delivery, "dispensings_2019.csv", error=QualityGateError)
