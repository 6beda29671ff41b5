"""File-level checks that run before Spark: each unreadable file stops with one clear line."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import date

import pytest

from rxcohort.errors import DeliveryError
from rxcohort.ingest.delivery import check_file, scan_delivery
from rxcohort.schemas import DISPENSINGS_COLUMNS, PERSONS_COLUMNS
from test_ingest_fixtures import csv_text, dispensing, write_delivery


def _check_all(directory):
    delivery = scan_delivery(directory)
    files = delivery.manifest.files if delivery.manifest else {}
    return {f.relpath: check_file(f, expected_sha256=files.get(f.relpath)) for f in delivery.files}


def test_scan_finds_contract_files_and_ignores_others(tmp_path):
    root = write_delivery(
        tmp_path / "d",
        dispensings={
            2013: [dispensing("X1")],
            2014: [dispensing("Y1", dispense_date="2014-05-01")],
        },
        gzip_files=["dispensings/dispensings_2014.csv"],
    )
    (root / "truth.json").write_text("{}")
    delivery = scan_delivery(root)
    assert [(f.table, f.name, f.relpath, f.year, f.compressed) for f in delivery.files] == [
        ("persons", "persons.csv", "persons.csv", None, False),
        ("prescribers", "prescribers.csv", "prescribers.csv", None, False),
        ("dispensings", "dispensings_2013.csv", "dispensings/dispensings_2013.csv", 2013, False),
        ("dispensings", "dispensings_2014.csv", "dispensings/dispensings_2014.csv.gz", 2014, True),
    ]
    assert delivery.ignored == ("truth.json",)
    assert delivery.period == (date(2012, 1, 1), date(2015, 12, 31))
    assert delivery.period_source == "manifest"


def test_period_without_manifest_is_the_file_years(tmp_path):
    root = write_delivery(
        tmp_path / "d",
        dispensings={2012: [dispensing("X1", dispense_date="2012-02-02")], 2014: []},
        manifest=False,
    )
    delivery = scan_delivery(root)
    assert delivery.manifest is None
    assert delivery.period == (date(2012, 1, 1), date(2014, 12, 31))
    assert delivery.period_source == "file_years"


def test_check_counts_lines_rows_and_blank_lines(tmp_path):
    rows = [dispensing("X1"), "", "   ", dispensing("X2")]
    root = write_delivery(
        tmp_path / "d",
        dispensings={2013: rows},
        gzip_files=["dispensings/dispensings_2013.csv"],
    )
    checked = _check_all(root)["dispensings/dispensings_2013.csv.gz"]
    # header + 4 lines; the empty and the spaces-only line are not rows
    assert (checked.lines, checked.blank_lines, checked.rows) == (5, 2, 2)
    data = (root / "dispensings/dispensings_2013.csv.gz").read_bytes()
    assert checked.sha256 == hashlib.sha256(data).hexdigest()
    assert checked.header == DISPENSINGS_COLUMNS


def test_header_may_list_the_columns_in_another_order(tmp_path):
    columns = list(reversed(PERSONS_COLUMNS))
    text = csv_text(columns, [("03", "", "", "1960", "2", "P1")])
    root = write_delivery(tmp_path / "d", raw_files={"persons.csv": text.encode()})
    assert _check_all(root)["persons.csv"].header == tuple(columns)


def _broken(tmp_path, rel: str, data: bytes, *, manifest_sha: bool = False):
    """A delivery whose file ``rel`` is replaced by ``data`` after the manifest was written
    (so the manifest's sha256 is the good file's) or before it (``manifest_sha``)."""
    root = write_delivery(tmp_path / "d", raw_files={rel: data} if manifest_sha else None)
    if not manifest_sha:
        (root / rel).write_bytes(data)
        manifest = json.loads((root / "manifest.json").read_text())
        manifest["files"][rel] = hashlib.sha256(data).hexdigest()
        (root / "manifest.json").write_text(json.dumps(manifest))
    return root


GOOD_PERSONS = csv_text(PERSONS_COLUMNS, [("P1", "2", "1960", "", "", "03")]).encode()


@pytest.mark.parametrize(
    ("case", "rel", "data", "message"),
    [
        (
            "missing column",
            "persons.csv",
            b"person_id;sex;birth_year;death_date;county\nP1;2;1960;;03\n",
            "persons.csv: header lacks column(s) emigration_date",
        ),
        (
            "renamed column",
            "persons.csv",
            GOOD_PERSONS.replace(b"county", b"kommune"),
            "persons.csv: header lacks column(s) county",
        ),
        (
            "extra column",
            "persons.csv",
            GOOD_PERSONS.replace(b"county\n", b"county;extra\n"),
            "persons.csv: header has column(s) not in the contract: 'extra'",
        ),
        (
            "wrong separator",
            "persons.csv",
            GOOD_PERSONS.replace(b";", b","),
            "persons.csv: separator is ',', the contract says ';'",
        ),
        (
            "tab separator",
            "persons.csv",
            GOOD_PERSONS.replace(b";", b"\t"),
            "persons.csv: separator is tab, the contract says ';'",
        ),
        (
            "not UTF-8",
            "persons.csv",
            GOOD_PERSONS + "P2;1;1950;;;S\u00f8r\n".encode("latin-1"),
            "persons.csv: not UTF-8 (line 3, byte 14)",
        ),
        (
            "bare carriage return",
            "persons.csv",
            GOOD_PERSONS + b"P2;1;1950;;;03\rP3;1;1950;;;03\n",
            "persons.csv: line 3 holds a bare carriage return",
        ),
        ("empty file", "persons.csv", b"", "persons.csv: empty file (no header line)"),
        (
            "truncated gzip",
            "dispensings/dispensings_2013.csv.gz",
            gzip.compress(csv_text(DISPENSINGS_COLUMNS, [dispensing("X1")] * 50).encode())[:-30],
            "dispensings/dispensings_2013.csv.gz: truncated or corrupt gzip file",
        ),
        (
            "not gzip at all",
            "dispensings/dispensings_2013.csv.gz",
            csv_text(DISPENSINGS_COLUMNS, [dispensing("X1")]).encode(),
            "dispensings/dispensings_2013.csv.gz: truncated or corrupt gzip file",
        ),
    ],
)
def test_unreadable_file_stops_with_one_line_naming_file_and_problem(
    tmp_path, case, rel, data, message
):
    if rel.endswith(".gz"):
        root = write_delivery(tmp_path / "d", gzip_files=["dispensings/dispensings_2013.csv"])
        (root / rel).write_bytes(data)
        manifest = json.loads((root / "manifest.json").read_text())
        manifest["files"][rel] = hashlib.sha256(data).hexdigest()
        (root / "manifest.json").write_text(json.dumps(manifest))
    else:
        root = _broken(tmp_path, rel, data)
    with pytest.raises(DeliveryError) as info:
        _check_all(root)
    text = str(info.value)
    assert text.startswith(message), case
    assert "\n" not in text


def test_sha256_mismatch_stops(tmp_path):
    root = write_delivery(tmp_path / "d")
    (root / "persons.csv").write_bytes(GOOD_PERSONS)  # changed after the manifest was written
    with pytest.raises(DeliveryError, match=r"^persons.csv: sha256 does not match manifest.json"):
        _check_all(root)


def test_the_error_message_carries_no_row_value(tmp_path):
    secret = "P-SECRET-1"
    bad = GOOD_PERSONS + f"{secret};1;1950;;;S\u00f8r\n".encode("latin-1")
    root = _broken(tmp_path, "persons.csv", bad)
    with pytest.raises(DeliveryError) as info:
        _check_all(root)
    assert secret not in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: (r / "persons.csv").unlink(), "persons.csv is missing"),
        (lambda r: (r / "dispensings" / "disp_2013.csv").write_text("x"), "not a dispensings_"),
        (lambda r: (r / "extra.csv").write_text("x"), "extra.csv: not a file of the delivery"),
        (
            lambda r: (r / "dispensings" / "dispensings_2013.csv").unlink(),
            "dispensings/dispensings_2013.csv: listed in manifest.json but not delivered",
        ),
        (
            lambda r: (r / "dispensings" / "dispensings_2015.csv").write_bytes(
                (r / "dispensings" / "dispensings_2013.csv").read_bytes()
            ),
            "dispensings/dispensings_2015.csv: delivered but not listed in manifest.json",
        ),
        (
            lambda r: (r / "manifest.json").write_text('{"period": ["2013-01-01"]}'),
            "manifest.json: period must be [start, end]",
        ),
        (
            lambda r: (r / "manifest.json").write_text('{"extract_date": "1.3.2016"}'),
            "manifest.json: extract_date is not a YYYY-MM-DD date",
        ),
    ],
)
def test_delivery_layout_problems_stop(tmp_path, change, message):
    two_years = {2013: [dispensing("X1")], 2014: [dispensing("Y1", dispense_date="2014-05-01")]}
    root = write_delivery(tmp_path / "d", dispensings=two_years)
    change(root)
    with pytest.raises(DeliveryError, match=message.replace("[", r"\[").replace("]", r"\]")):
        scan_delivery(root)


def test_same_file_plain_and_gzipped_is_refused(tmp_path):
    root = write_delivery(tmp_path / "d", manifest=False)
    data = (root / "persons.csv").read_bytes()
    (root / "persons.csv.gz").write_bytes(gzip.compress(data))
    with pytest.raises(DeliveryError, match="delivered twice"):
        scan_delivery(root)
