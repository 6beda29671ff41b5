"""Every delivered line keeps its 1-based number in its file, on every engine.

The numbers are given on the driver (write_numbered_lines), not by an engine's row ids: an
engine reads a large file in parallel blocks, and none promises their order.
"""

from __future__ import annotations

import gzip

import pyarrow.parquet as pq
import pytest

from rxcohort import io
from rxcohort.errors import DeliveryError
from rxcohort.ingest.delivery import check_file, scan_delivery, write_numbered_lines
from rxcohort.pipelines import ingest_delivery
from rxcohort.schemas import DISPENSINGS_COLUMNS
from test_ingest_fixtures import dispensing, write_delivery


def _checked(root, rel):
    delivery = scan_delivery(root)
    (file,) = [f for f in delivery.files if f.relpath == rel]
    return check_file(file)


@pytest.mark.parametrize("compressed", [False, True])
def test_lines_are_numbered_in_file_order_with_their_line_ends_removed(tmp_path, compressed):
    header = ";".join(DISPENSINGS_COLUMNS)
    body = f"{header}\r\n" + "a;b\r\n" + "\n" + "   \n" + 'x;"q;uo""t"\n' + "last line, no newline"
    rel = "dispensings/dispensings_2013.csv"
    root = write_delivery(tmp_path / "d", dispensings={2013: [dispensing("X1")]})
    (root / "manifest.json").unlink(missing_ok=True)
    path = root / rel
    path.unlink()
    data = body.encode()
    if compressed:
        path = path.with_suffix(".csv.gz")
        path.write_bytes(gzip.compress(data))
        rel += ".gz"
    else:
        path.write_bytes(data)
    checked = _checked(tmp_path / "d", rel)
    assert write_numbered_lines(checked, tmp_path / "lines.parquet") == 6 == checked.lines
    table = pq.read_table(tmp_path / "lines.parquet").to_pylist()
    assert [(r["line_number"], r["value"]) for r in table] == [
        (1, header),
        (2, "a;b"),
        (3, ""),
        (4, "   "),
        (5, 'x;"q;uo""t"'),
        (6, "last line, no newline"),
    ]


def test_a_file_that_changed_since_its_check_stops_the_ingest(tmp_path):
    root = write_delivery(tmp_path / "d", dispensings={2013: [dispensing("X1")]})
    checked = _checked(root, "dispensings/dispensings_2013.csv")
    with (root / "dispensings" / "dispensings_2013.csv").open("a") as fh:
        fh.write(";".join(dispensing("X2")) + "\n")
    with pytest.raises(DeliveryError, match="3 lines read but the check counted 2"):
        write_numbered_lines(checked, tmp_path / "lines.parquet")


@pytest.mark.slow
def test_quarantined_rows_name_their_line_in_large_files_read_in_blocks(spark, tmp_path):
    # Files of several MB are read in several blocks by every engine; a malformed ATC code on
    # a known line of each must be reported on that line.
    bad_lines = {2012: 31_337, 2013: 99_001}
    dispensings = {}
    for year, bad in bad_lines.items():
        rows = [
            dispensing(f"D{year}_{i}", dispense_date=f"{year}-03-01", packs="1")
            for i in range(2, 120_002)
        ]
        rows[bad - 2] = dispensing(f"D{year}_bad", dispense_date=f"{year}-03-01", atc_code="N02")
        dispensings[year] = rows
    root = write_delivery(tmp_path / "d", dispensings=dispensings)
    ingest_delivery(spark, root, warehouse=tmp_path / "wh")
    quarantine = io.read_table(spark, tmp_path / "wh" / "quarantine" / "dispensings")
    found = {
        (r["source_file"], r["line_number"], r["reason"])
        for r in quarantine.select("source_file", "line_number", "reason").collect()
    }
    assert found == {
        (f"dispensings_{year}.csv", line, "malformed_atc") for year, line in bad_lines.items()
    }


@pytest.mark.parametrize("block", [8, 64, 1 << 20])
def test_a_quoted_line_break_makes_one_record_whatever_the_blocks(tmp_path, monkeypatch, block):
    """Records are the same however the file falls into blocks (a record may span two)."""
    from rxcohort.ingest import delivery as module

    monkeypatch.setattr(module, "_LINES_BLOCK", block)
    header = ";".join(DISPENSINGS_COLUMNS)
    lines = [
        header,
        "a;b",
        'c;"two\r',  # a quoted field over two lines, CRLF inside
        'lines";d',
        "",
        'e;"three',
        "",  # a blank line inside a quoted field is part of it, not a blank line
        'lines"',
        'f;"never closed',  # a stray quote: a character of its line
        *[f"g{i}" for i in range(25)],
    ]
    rel = "dispensings/dispensings_2013.csv"
    root = write_delivery(tmp_path / "d", dispensings={2013: [dispensing("X1")]})
    (root / "manifest.json").unlink(missing_ok=True)
    (root / rel).write_bytes(("\n".join(lines) + "\n").encode())
    checked = _checked(root, rel)
    assert checked.lines == len(lines)
    assert checked.blank_lines == 1 and checked.continuations == 3
    assert checked.rows == len(lines) - 1 - 1 - 3
    target = tmp_path / "lines.parquet"
    assert write_numbered_lines(checked, target) == checked.records
    table = pq.read_table(target).to_pydict()
    records = dict(zip(table["line_number"], table["value"], strict=True))
    assert records[3] == 'c;"two\nlines";d'
    assert records[6] == 'e;"three\n\nlines"'
    assert records[9] == 'f;"never closed'
    assert records[10] == "g0" and records[34] == "g24"
    assert 4 not in records and 7 not in records and 8 not in records
