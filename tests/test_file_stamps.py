"""File stamps: an unchanged file is not read again; a touched, copied or changed one is."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from datetime import date
from pathlib import Path

import pytest

from rxcohort.errors import DeliveryError
from rxcohort.ingest.delivery import DeliveryFile, check_file, scan_delivery
from rxcohort.ingest.stamps import (
    STAMPS_FILE,
    read_stamps,
    stamp_of,
    unchanged_file,
    updated_stamps,
    write_stamps,
)
from rxcohort.pipelines import ingest as ingest_pipeline
from rxcohort.pipelines import ingest_delivery
from rxcohort.schemas import DISPENSINGS_COLUMNS


def _registered(checked) -> dict[str, object]:
    """A bronze/files row as the ingest writes it."""
    return {
        "sha256": checked.sha256,
        "delivered_as": checked.file.relpath,
        "size_bytes": checked.size_bytes,
        "lines": checked.lines,
        "blank_lines": checked.blank_lines,
        "rows": checked.rows,
    }


@pytest.fixture
def small_file(tmp_path) -> DeliveryFile:
    root = tmp_path / "d"
    (root / "dispensings").mkdir(parents=True)
    header = ";".join(DISPENSINGS_COLUMNS)
    body = "\n".join(
        f'D{i};p{i};2013-02-0{i};N07BB04;P1;"Naltrexone, 4.5 mg";1;4.5;100;1;;R1;;'
        for i in range(1, 5)
    )
    path = root / "dispensings" / "dispensings_2013.csv"
    path.write_text(f"{header}\n{body}\n\n")
    relpath = "dispensings/dispensings_2013.csv"
    return DeliveryFile("dispensings", path.name, relpath, path, 2013, False)


def test_an_unchanged_file_is_rebuilt_from_its_registry_row(small_file):
    file = small_file
    checked = check_file(file)
    stamp = dataclasses.replace(stamp_of(file), sha256=checked.sha256)
    known = unchanged_file(file, stamp=stamp, registered=_registered(checked), expected_sha256=None)
    assert known is not None
    assert (known.sha256, known.rows, known.records, known.lines, known.blank_lines) == (
        checked.sha256,
        checked.rows,
        checked.records,
        checked.lines,
        checked.blank_lines,
    )
    assert known.rows == 4


def test_a_stamp_is_not_trusted_when_anything_differs(small_file):
    file = small_file
    checked = check_file(file)
    stamp = dataclasses.replace(stamp_of(file), sha256=checked.sha256)
    row = _registered(checked)

    def known(**kw):
        args = {"stamp": stamp, "registered": row, "expected_sha256": None} | kw
        return unchanged_file(file, **args)

    assert known() is not None
    assert known(stamp=None) is None and known(registered=None) is None
    # bronze/files holds another version of the file (a load whose stamps were not written).
    assert known(registered={**row, "sha256": "0" * 64}) is None
    # The manifest says the file is another one.
    assert known(expected_sha256="1" * 64) is None
    assert known(expected_sha256=checked.sha256.upper()) is not None
    # Delivered under another path.
    assert known(registered={**row, "delivered_as": "dispensings/x.csv"}) is None
    for field, value in (("inode", -1), ("size_bytes", 1), ("mtime_ns", 1), ("device", -1)):
        assert known(stamp=dataclasses.replace(stamp, **{field: value})) is None, field
    # Touched: the modification time moves.
    mtime = file.path.stat().st_mtime_ns
    os.utime(file.path, ns=(mtime + 10**9, mtime + 10**9))
    assert known() is None


def test_stamps_round_trip_and_an_unreadable_stamp_file_is_ignored(tmp_path, small_file):
    file = small_file
    stamps = {"dispensings_2013.csv": dataclasses.replace(stamp_of(file), sha256="a" * 64)}
    write_stamps(tmp_path, stamps)
    assert read_stamps(tmp_path) == stamps
    (tmp_path / STAMPS_FILE).write_text("{not json")
    assert read_stamps(tmp_path) == {}
    (tmp_path / STAMPS_FILE).write_text(json.dumps({"format": 99, "files": {}}))
    assert read_stamps(tmp_path) == {}
    assert read_stamps(tmp_path / "nowhere") == {}
    other = dataclasses.replace(stamps["dispensings_2013.csv"], sha256="b" * 64)
    merged = updated_stamps(
        {**stamps, "gone.csv": other}, {"new.csv": other}, keep={"dispensings_2013.csv"}
    )
    assert merged == {**stamps, "new.csv": other}


@pytest.fixture(scope="module")
def delivery(spark, tmp_path_factory) -> Path:
    from rxcohort.generate import generate_delivery

    root = tmp_path_factory.mktemp("stamps_delivery") / "d"
    generate_delivery(
        spark,
        root,
        persons=150,
        seed=5,
        start=date(2012, 1, 1),
        end=date(2014, 12, 31),
        defects=0.0,
        gzip=False,
        ldn_rate=0.2,
    )
    return root


@pytest.mark.slow
def test_a_second_ingest_reads_no_file_unless_touched_copied_or_verified(
    spark, tmp_path, delivery, monkeypatch
):
    wh = tmp_path / "wh"
    read: list[str] = []
    real_check = ingest_pipeline.check_file

    def counting_check(file, **kw):
        read.append(file.relpath)
        return real_check(file, **kw)

    monkeypatch.setattr(ingest_pipeline, "check_file", counting_check)
    names = sorted(f.relpath for f in scan_delivery(delivery).files)

    def ingest(source: Path, **kw):
        read.clear()
        messages: list[str] = []
        result = ingest_delivery(spark, source, warehouse=wh, progress=messages.append, **kw)
        return result, messages

    first, _ = ingest(delivery)
    assert first.changed and sorted(read) == names
    assert set(read_stamps(wh)) == {Path(n).name for n in names}

    again, messages = ingest(delivery)
    assert not again.changed and read == []
    assert sum(m.startswith("unchanged ") for m in messages) == len(names)
    assert [rows for _, rows, _ in again.files] == [rows for _, rows, _ in first.files]

    # Touched: read and hashed once, found unchanged, stamped again.
    touched = delivery / "persons.csv"
    mtime = touched.stat().st_mtime_ns
    os.utime(touched, ns=(mtime + 10**9, mtime + 10**9))
    result, _ = ingest(delivery)
    assert not result.changed and read == ["persons.csv"]
    result, _ = ingest(delivery)
    assert not result.changed and read == []

    # --verify reads every file whatever its stamp.
    result, _ = ingest(delivery, verify=True)
    assert not result.changed and sorted(read) == names

    # A copy elsewhere (other inodes, same times) is read once.
    copy = tmp_path / "copy"
    shutil.copytree(delivery, copy)
    result, _ = ingest(copy)
    assert not result.changed and sorted(read) == names
    result, _ = ingest(copy)
    assert read == []
    # A hard link is the same file: not read.
    linked = tmp_path / "linked"
    shutil.copytree(copy, linked, copy_function=os.link)
    result, _ = ingest(linked)
    assert not result.changed and read == []

    # A changed file is read and loaded; the others are not read.
    target = copy / "dispensings" / "dispensings_2013.csv"
    lines = target.read_text().splitlines(keepends=True)
    target.write_text("".join(lines[:-3]))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["dispensings/dispensings_2013.csv"] = hashlib.sha256(
        target.read_bytes()
    ).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result, _ = ingest(copy)
    assert result.changed and read == ["dispensings/dispensings_2013.csv"]
    assert dict((p, c) for p, _, c in result.files)["dispensings/dispensings_2013.csv"]


@pytest.mark.slow
def test_a_file_rewritten_with_its_old_size_and_time_is_caught_by_verify(spark, tmp_path, delivery):
    copy = tmp_path / "d"
    shutil.copytree(delivery, copy)
    wh = tmp_path / "wh"
    ingest_delivery(spark, copy, warehouse=wh)
    target = copy / "dispensings" / "dispensings_2014.csv"
    stat = target.stat()
    data = bytearray(target.read_bytes())
    at = data.index(b"N0")  # an ATC code: same length, other bytes
    data[at : at + 2] = b"M0"
    target.write_bytes(bytes(data))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    if target.stat().st_ino != stat.st_ino:  # pragma: no cover - write_bytes keeps the inode
        pytest.skip("the file system gave the rewritten file a new inode")
    # What the stamp cannot see (documented): the same size and time pass unread ...
    assert not ingest_delivery(spark, copy, warehouse=wh).changed
    # ... and --verify reads the file: its sha256 no longer matches the manifest.
    with pytest.raises(DeliveryError, match=r"dispensings_2014\.csv: sha256 does not match"):
        ingest_delivery(spark, copy, warehouse=wh, verify=True)
