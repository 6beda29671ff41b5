"""End to end: a delivery into bronze, silver and quarantine; repeat, stop, gate, re-deliver."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyspark.sql import functions as F

from rxcohort import io
from rxcohort.errors import DeliveryError, QualityGateError
from rxcohort.ingest.tables import WarehousePaths
from rxcohort.pipelines import ingest_delivery
from rxcohort.schemas import SILVER_DISPENSINGS, SILVER_PERSONS, SILVER_PRESCRIBERS
from test_ingest_fixtures import dispensing, write_delivery

PERSONS = [
    ("pid-001", "2", "1960", "", "", "03"),
    ("pid-002", "1", "1971", "", "", "46"),
    ("pid-003", "2", "1985", "2015-06-30", "", "11"),
    "pid-004;2",  # wrong field count
]
D = dispensing
LDN = {"atc_code": "N07BB04", "strength_mg": "4.5", "units_per_pack": "100", "ddd_per_pack": ""}
Y2013 = [
    D("X1", "pid-001"),  # 2 clean
    D("X2", "pid-002", **LDN, magistral="1"),  # 3 clean, DDD computed: 100 * 4.5 / 50
    D("X3", "pid-001", packs="0"),  # 4 zero_packs
    D("X4", "pid-003", atc_code=" N02ax02 "),  # 5 clean after trimming
    D("X1", "pid-001"),  # 6 exact duplicate of line 2
    D("X5", "pid-999"),  # 7 unknown_person
    D("X6", "pid-002", prescriber_id="D9"),  # 8 clean; prescriber not registered (soft)
]
Y2014 = [
    D("Y1", "pid-001", dispense_date="2014-02-01"),  # 2 clean
    D("Y2", "pid-001", dispense_date="2013-12-31"),  # 3 date_outside_file_year
]
PERSON_IDS = ("pid-001", "pid-002", "pid-003", "pid-004", "pid-999")


def _deliver(root: Path, *, y2013=Y2013, y2014=Y2014, **kwargs) -> Path:
    return write_delivery(
        root,
        persons=PERSONS,
        dispensings={2013: y2013, 2014: y2014},
        gzip_files=["dispensings/dispensings_2014.csv"],
        **kwargs,
    )


def _versions(warehouse) -> dict[str, int | None]:
    return {name: io.table_version(p) for name, p in WarehousePaths(warehouse).all_tables().items()}


def _leftovers(warehouse) -> list[str]:
    """Staged or scratch files an ingest left behind (there must be none)."""
    root = Path(warehouse)
    found = [p for p in root.rglob("_rxcohort_staging") if any(p.rglob("*"))]
    found += list(root.glob("_rxcohort_scratch"))
    return sorted(str(p.relative_to(root)) for p in found)


def _reports(warehouse) -> list[str]:
    folder = Path(warehouse) / "quality" / "reports"
    return sorted(p.name for p in folder.glob("*.html")) if folder.is_dir() else []


@pytest.fixture(scope="module")
def loaded(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("ingest")
    delivery = _deliver(root / "delivery")
    warehouse = root / "warehouse"
    progress: list[str] = []
    result = ingest_delivery(spark, delivery, warehouse=warehouse, progress=progress.append)
    return SimpleNamespace(
        root=root, delivery=delivery, warehouse=warehouse, result=result, progress=progress
    )


def _read(spark, warehouse, name):
    return io.read_table(spark, Path(warehouse) / name)


def test_first_ingest_counts_every_row_once(loaded):
    counts = loaded.result.counts
    d, p = counts["dispensings"], counts["persons"]
    assert (d.read_this_load, d.clean, d.quarantined, d.duplicates) == (9, 5, 3, 1)
    assert d.reasons == {
        "zero_packs": (1, 1),
        "unknown_person": (1, 1),
        "date_outside_file_year": (1, 1),
    }
    assert (p.read_this_load, p.clean, p.quarantined, p.duplicates) == (4, 3, 1, 0)
    rows = dict(loaded.result.summary_rows())
    assert rows["dispensings: rows read"] == "9: 5 clean, 3 quarantined, 1 duplicates"
    assert rows["dispensings: warehouse"] == "9 bronze = 5 silver + 3 quarantine + 1 duplicates"
    assert rows["versions silver"] == (
        "persons 0, prescribers 0, dispensings 0, deliveries 0, changes 0"
    )
    assert rows["files"] == "4 checked, 4 new or changed"
    assert any(
        line.startswith("checked dispensings/dispensings_2014.csv.gz: 2 rows")
        for line in loaded.progress
    )


def test_committed_tables_satisfy_the_row_count_invariant(spark, loaded):
    wh = loaded.warehouse
    for table, dups in (("persons", 0), ("prescribers", 0), ("dispensings", 1)):
        bronze = _read(spark, wh, f"bronze/{table}").count()
        silver = _read(spark, wh, f"silver/{table}").count()
        quarantine = _read(spark, wh, f"quarantine/{table}").count()
        assert bronze == silver + quarantine + dups, table
    reasons = {
        (r["reason"], r["source_file"], r["line_number"])
        for r in _read(spark, wh, "quarantine/dispensings").collect()
    }
    assert reasons == {
        ("zero_packs", "dispensings_2013.csv", 4),
        ("unknown_person", "dispensings_2013.csv", 7),
        ("date_outside_file_year", "dispensings_2014.csv", 3),
    }


def test_silver_has_the_contract_schemas_layout_and_ddd(spark, loaded):
    paths = WarehousePaths(loaded.warehouse)
    for table, schema in (
        ("persons", SILVER_PERSONS),
        ("prescribers", SILVER_PRESCRIBERS),
        ("dispensings", SILVER_DISPENSINGS),
    ):
        got = io.table_schema(paths.silver(table))
        assert [(f.name, f.dataType) for f in got.fields] == [
            (f.name, f.dataType) for f in schema.fields
        ]
    assert io.partition_columns(paths.silver("dispensings")) == ["dispense_year"]
    assert io.partition_columns(paths.bronze("dispensings")) == ["source_file"]
    ddd = {
        r["dispensing_id"]: (r["atc_code"], r["ddd"], r["ddd_method"])
        for r in _read(spark, loaded.warehouse, "silver/dispensings").collect()
    }
    assert ddd == {
        "X1": ("N02AX02", 5.0, "registry"),
        "X2": ("N07BB04", 9.0, "computed"),
        "X4": ("N02AX02", 5.0, "registry"),
        "X6": ("N02AX02", 5.0, "registry"),
        "Y1": ("N02AX02", 5.0, "registry"),
    }


def test_bronze_keeps_rows_as_delivered_with_lineage(spark, loaded):
    bronze = _read(spark, loaded.warehouse, "bronze/dispensings")
    row = bronze.where(F.col("dispensing_id") == "X4").first()
    sha = hashlib.sha256((loaded.delivery / "dispensings/dispensings_2013.csv").read_bytes())
    assert (row["atc_code"], row["source_file"], row["line_number"], row["source_sha256"]) == (
        " N02ax02 ",
        "dispensings_2013.csv",
        5,
        sha.hexdigest(),
    )
    assert row["load_id"] == loaded.result.load_id
    files = {
        r["source_file"]: (r["delivered_as"], r["rows"])
        for r in _read(spark, loaded.warehouse, "bronze/files").collect()
    }
    assert files == {
        "persons.csv": ("persons.csv", 4),
        "prescribers.csv": ("prescribers.csv", 2),
        "dispensings_2013.csv": ("dispensings/dispensings_2013.csv", 7),
        "dispensings_2014.csv": ("dispensings/dispensings_2014.csv.gz", 2),
    }


def test_quality_results_are_stored_and_reported_without_person_values(spark, loaded, repo_root):
    n_expectations = sum(
        len(json.loads(p.read_text())["expectations"])
        for p in (repo_root / "expectations").glob("*.json")
    )
    runs = _read(spark, loaded.warehouse, "quality/runs").collect()
    assert len(runs) == len(loaded.result.outcomes) == n_expectations
    assert {r["load_id"] for r in runs} == {loaded.result.load_id}
    failed = {(r["suite"], r["column"]) for r in runs if not r["success"]}
    assert failed == {
        ("raw_files", "wrong_field_count_share"),  # soft: persons.csv 1 of 4
        ("raw_files", "quarantined_share"),
        ("silver_dispensings", "prescriber_registered"),
    }
    assert all(r["severity"] == "soft" for r in runs if not r["success"])
    page = loaded.result.report_path.read_text(encoding="utf-8")
    stored = " ".join(r["observed"] for r in runs) + page
    for person_id in PERSON_IDS:
        assert person_id not in stored
    assert "Committed with 3 soft warning(s)." in page
    deliveries = _read(spark, loaded.warehouse, "silver/deliveries").collect()
    assert [
        (r["registry"], str(r["period_start"]), str(r["period_end"]), r["n_files"], r["rows_read"])
        for r in deliveries
    ] == [("NorPD (synthetic)", "2012-01-01", "2015-12-31", 4, 15)]


def test_reingesting_the_same_delivery_changes_nothing(spark, loaded):
    before = _versions(loaded.warehouse)
    reports = _reports(loaded.warehouse)
    result = ingest_delivery(spark, loaded.delivery, warehouse=loaded.warehouse)
    assert not result.changed and result.load_id is None
    assert _versions(loaded.warehouse) == before
    assert _reports(loaded.warehouse) == reports
    assert dict(result.summary_rows())["result"].startswith("no change")


def _copy_delivery(loaded, name) -> Path:
    target = loaded.root / name
    shutil.copytree(loaded.delivery, target)
    return target


def _set_file(delivery: Path, rel: str, data: bytes, *, update_manifest: bool = True) -> None:
    (delivery / rel).write_bytes(data)
    if update_manifest:
        manifest = json.loads((delivery / "manifest.json").read_text())
        manifest["files"][rel] = hashlib.sha256(data).hexdigest()
        (delivery / "manifest.json").write_text(json.dumps(manifest))


def _persons_bytes(delivery: Path) -> bytes:
    return (delivery / "persons.csv").read_bytes()


@pytest.mark.parametrize(
    ("case", "damage", "message"),
    [
        (
            "missing column",
            lambda d: _set_file(d, "persons.csv", _persons_bytes(d).replace(b";county", b"", 1)),
            "persons.csv: header lacks column(s) county",
        ),
        (
            "wrong separator",
            lambda d: _set_file(d, "persons.csv", _persons_bytes(d).replace(b";", b",")),
            "persons.csv: separator is ','",
        ),
        (
            "not UTF-8",
            lambda d: _set_file(
                d, "persons.csv", _persons_bytes(d) + "pid-005;1;1950;;;\xe6\n".encode("latin-1")
            ),
            "persons.csv: not UTF-8 (line 6",
        ),
        (
            "truncated gzip",
            lambda d: _set_file(
                d,
                "dispensings/dispensings_2014.csv.gz",
                (d / "dispensings/dispensings_2014.csv.gz").read_bytes()[:-12],
            ),
            "dispensings/dispensings_2014.csv.gz: truncated or corrupt gzip file",
        ),
        (
            "sha mismatch",
            lambda d: _set_file(
                d,
                "persons.csv",
                _persons_bytes(d) + b"pid-005;1;1950;;;03\n",
                update_manifest=False,
            ),
            "persons.csv: sha256 does not match manifest.json",
        ),
    ],
)
def test_an_unreadable_file_stops_the_ingest_and_changes_no_table(
    spark, loaded, case, damage, message
):
    delivery = _copy_delivery(loaded, f"broken-{case.replace(' ', '-')}")
    damage(delivery)
    before = _versions(loaded.warehouse)
    reports = _reports(loaded.warehouse)
    with pytest.raises(DeliveryError) as info:
        ingest_delivery(spark, delivery, warehouse=loaded.warehouse)
    assert str(info.value).startswith(message), case
    assert _versions(loaded.warehouse) == before
    assert _reports(loaded.warehouse) == reports
    assert _leftovers(loaded.warehouse) == []


def test_a_failed_hard_expectation_commits_nothing(spark, loaded, repo_root):
    suites = loaded.root / "strict-expectations"
    shutil.copytree(repo_root / "expectations", suites)
    path = suites / "silver_dispensings.json"
    suite = json.loads(path.read_text())
    for expectation in suite["expectations"]:
        if expectation["type"] == "expect_table_row_count_to_be_between":
            expectation["kwargs"]["max_value"] = 2  # there are 5 clean dispensings
    path.write_text(json.dumps(suite))
    delivery = _copy_delivery(loaded, "gated")
    _set_file(
        delivery, "prescribers.csv", (delivery / "prescribers.csv").read_bytes() + b"D3;nurse;\n"
    )
    before = _versions(loaded.warehouse)
    with pytest.raises(QualityGateError) as info:
        ingest_delivery(spark, delivery, warehouse=loaded.warehouse, expectations_dir=suites)
    assert str(info.value).startswith(
        "1 hard quality expectation(s) failed, nothing was committed: "
        "silver_dispensings: expect_table_row_count_to_be_between (observed 5); report: "
    )
    assert _versions(loaded.warehouse) == before
    # The staged bronze, silver and quarantine files were deleted, and the scratch with them.
    assert _leftovers(loaded.warehouse) == []
    report = Path(str(info.value).rsplit("report: ", 1)[1])
    assert "Gate closed: 1 hard expectation(s) failed" in report.read_text(encoding="utf-8")


def test_a_gate_on_delivered_files_names_the_files(spark, tmp_path):
    delivery = write_delivery(
        tmp_path / "delivery",
        dispensings={
            2013: [dispensing("X1")],
            2009: [dispensing("X2", dispense_date="2009-05-02")],
        },
    )
    with pytest.raises(QualityGateError) as info:
        ingest_delivery(spark, delivery, warehouse=tmp_path / "wh")
    assert (
        "raw_files: expect_column_values_to_be_in_set(file_year_in_period) "
        "(file dispensings_2009.csv)" in str(info.value)
    )


def test_a_corrected_year_replaces_only_that_file(spark, loaded):
    warehouse = loaded.root / "warehouse-redelivery"
    shutil.copytree(loaded.warehouse, warehouse)
    corrected = [row for row in Y2013 if row[0] != "X5"]  # the unknown person's row withdrawn
    corrected[2] = D("X3", "pid-001", packs="2")  # zero packs corrected
    delivery = _deliver(loaded.root / "corrected", y2013=corrected)
    assert (delivery / "dispensings/dispensings_2014.csv.gz").read_bytes() == (
        loaded.delivery / "dispensings/dispensings_2014.csv.gz"
    ).read_bytes()
    before = _versions(warehouse)
    result = ingest_delivery(spark, delivery, warehouse=warehouse)

    after = _versions(warehouse)
    changed = {name for name in after if after[name] != before[name]}
    # persons.csv and prescribers.csv are unchanged: their bronze, silver and quarantine too
    assert changed == {
        "bronze/dispensings",
        "bronze/files",
        "silver/dispensings",
        "silver/deliveries",
        "silver/changes",
        "quarantine/dispensings",
        "quality/runs",
    }
    assert all(after[name] == before[name] + 1 for name in changed)  # one commit per table
    # What the load changed, part by part: the 2013 rows only (2014 was delivered again as it
    # was, so its silver and quarantine rows are the same); the corrections left no 2013 row
    # in quarantine.
    changes = [
        (r["table_name"], r["part_column"], r["part_value"], r["change"])
        for r in _read(spark, warehouse, "silver/changes").collect()
        if r["load_id"] == result.load_id
    ]
    assert sorted(changes) == [
        ("quarantine/dispensings", "source_file", "dispensings_2013.csv", "removed"),
        ("silver/dispensings", "dispense_year", "2013", "changed"),
    ]
    assert result.changed_parts == (
        "silver/dispensings dispense_year=2013 (changed)",
        "quarantine/dispensings source_file=dispensings_2013.csv (removed)",
    )
    d = result.counts["dispensings"]
    assert (d.read_this_load, d.bronze, d.clean, d.quarantined, d.duplicates) == (6, 8, 6, 1, 1)
    bronze = _read(spark, warehouse, "bronze/dispensings")
    load_ids = {
        r["source_file"]: r["ids"]
        for r in bronze.groupBy("source_file").agg(F.collect_set("load_id").alias("ids")).collect()
    }
    assert load_ids == {
        "dispensings_2013.csv": [result.load_id],
        "dispensings_2014.csv": [loaded.result.load_id],
    }
    silver = {
        r["dispensing_id"]: r["packs"]
        for r in _read(spark, warehouse, "silver/dispensings").collect()
    }
    assert silver == {"X1": 1.0, "X2": 1.0, "X3": 2.0, "X4": 1.0, "X6": 1.0, "Y1": 1.0}
    assert len(_read(spark, warehouse, "silver/deliveries").collect()) == 2


def test_cli_reports_no_change_and_one_line_errors(spark, loaded, monkeypatch, capsys):
    from rxcohort import cli

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["rxcohort", *args])
        try:
            cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code
        return code, capsys.readouterr()

    code, out = run("ingest", str(loaded.delivery), "--warehouse", str(loaded.warehouse))
    assert code == 0
    assert "no change" in out.out
    broken = _copy_delivery(loaded, "broken-cli")
    _set_file(
        broken, "dispensings/dispensings_2014.csv.gz", gzip.compress(b"dispensing_id,person_id\n")
    )
    code, out = run("ingest", str(broken), "--warehouse", str(loaded.warehouse))
    assert code == 1
    assert out.err.strip().splitlines()[-1] == (
        "rxcohort: dispensings/dispensings_2014.csv.gz: separator is ',', the contract says ';'"
    )


class _Killed(BaseException):
    """Stands for SIGKILL: no handler catches it, nothing after it runs."""


def test_a_load_killed_before_its_last_commit_leaves_no_duplicate_bookkeeping(
    spark, tmp_path, monkeypatch
):
    first = write_delivery(tmp_path / "first", dispensings={2013: [dispensing("X1")]})
    second = write_delivery(
        tmp_path / "second", dispensings={2013: [dispensing("X1"), dispensing("X2")]}
    )
    wh = tmp_path / "wh"
    ingest_delivery(spark, first, warehouse=wh)
    quality_rows = io.table_row_count(wh / "quality" / "runs")

    real_write = io.write_table

    def killed_at_bronze_files(df, path, **kwargs):
        if Path(path).name == "files":
            raise _Killed
        return real_write(df, path, **kwargs)

    monkeypatch.setattr(io, "write_table", killed_at_bronze_files)
    with pytest.raises(_Killed):
        ingest_delivery(spark, second, warehouse=wh)
    monkeypatch.setattr(io, "write_table", real_write)
    # Killed after its deliveries and quality rows: they are there, bronze/files is not.
    assert io.table_row_count(wh / "silver" / "deliveries") == 2
    result = ingest_delivery(spark, second, warehouse=wh)  # the rerun
    assert result.changed
    deliveries = _read(spark, wh, "silver/deliveries").collect()
    assert len(deliveries) == 2  # one row per load that happened
    assert result.load_id in {r["load_id"] for r in deliveries}
    assert io.table_row_count(wh / "quality" / "runs") == 2 * quality_rows
    assert _read(spark, wh, "silver/dispensings").count() == 2
    assert _leftovers(wh) == []
