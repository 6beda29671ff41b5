"""Incremental silver equals a full rebuild of the same bronze, row for row.

Each scenario loads a base delivery, then a changed one - once incrementally (the default) and
once with ``full=True`` - into two warehouses, and compares every silver and quarantine table
and the counts. The changes reach across files on purpose: a return in January 2014 that nets
against a dispensing of late December 2013, and a dispensing id in the 2014 file that collides
with one in the 2013 file, so that correcting 2013 changes rows of the untouched 2014 file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import date
from pathlib import Path

import pytest

from rxcohort import io
from rxcohort.ingest import keystore
from rxcohort.io.tables import add_actions
from rxcohort.pipelines import ingest_delivery

pytestmark = pytest.mark.slow

TABLES = [
    "silver/dispensings",
    "silver/persons",
    "quarantine/dispensings",
    "quarantine/persons",
]


@pytest.fixture(scope="module")
def base(spark, tmp_path_factory):
    """A generated delivery (with defects: duplicates, orphan returns, unknown persons) plus
    hand-made rows that tie the 2013 and 2014 files together, and 2014 to 2015."""
    from rxcohort.generate import generate_delivery

    root = tmp_path_factory.mktemp("incremental") / "base"
    generate_delivery(
        spark,
        root,
        persons=300,
        seed=41,
        start=date(2011, 1, 1),
        end=date(2015, 12, 31),
        defects=0.05,
        gzip=False,
        ldn_rate=0.2,
    )
    header = _lines(root, 2013)[0].split(";")
    person = _lines(root, "persons")[1].split(";")[0]

    def row(**values: str) -> str:
        fields = dict.fromkeys(header, "")
        fields.update(
            atc_code="N02AX02", product_id="777777", product_name="Tramadol 50 mg",
            magistral="0", strength_mg="50", units_per_pack="30", ddd_per_pack="5",
            reimbursement="white", person_id=person,
        )  # fmt: skip
        fields.update(values)
        return ";".join(fields[c] for c in header)

    _append(root, 2012, [
        # D2's id with other content: both versions are conflicting duplicates ...
        row(dispensing_id="TIE-D2", dispense_date="2012-03-01", packs="2", product_id="777778"),
    ])  # fmt: skip
    _append(root, 2013, [
        row(dispensing_id="TIE-D1", dispense_date="2013-12-28", packs="1"),
        row(dispensing_id="TIE-ID", dispense_date="2013-06-01", packs="2"),
        row(dispensing_id="TIE-D2", dispense_date="2013-12-29", packs="1", product_id="777778"),
    ])  # fmt: skip
    _append(root, 2014, [
        row(dispensing_id="TIE-R1", dispense_date="2014-01-05", packs="-1"),  # nets against D1
        row(dispensing_id="TIE-ID", dispense_date="2014-06-01", packs="3"),  # same id, other row
        # ... so this return has nothing to net against.
        row(dispensing_id="TIE-R2", dispense_date="2014-01-06", packs="-1", product_id="777778"),
        row(dispensing_id="TIE-D3", dispense_date="2014-12-28", packs="1", product_id="777779"),
    ])  # fmt: skip
    _append(root, 2015, [
        row(dispensing_id="TIE-R3", dispense_date="2015-01-03", packs="-1", product_id="777779"),
    ])  # fmt: skip
    return root


def _file(root: Path, which) -> Path:
    if which == "persons":
        return root / "persons.csv"
    return root / "dispensings" / f"dispensings_{which}.csv"


def _lines(root: Path, which) -> list[str]:
    return _file(root, which).read_text().splitlines()


def _write(root: Path, which, lines: list[str]) -> None:
    _file(root, which).write_text("\n".join(lines) + "\n")
    _manifest(root)


def _append(root: Path, which, rows: list[str]) -> None:
    _write(root, which, _lines(root, which) + rows)


def _manifest(root: Path) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"] = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.csv"))
    }
    (root / "manifest.json").write_text(json.dumps(manifest))


def _copy(base: Path, target: Path) -> Path:
    shutil.copytree(base, target)
    return target


def _state(spark, wh: Path) -> dict[str, list[tuple]]:
    loads = sorted(r["load_id"] for r in io.read_table(spark, wh / "silver/deliveries").collect())
    rank = {load: i for i, load in enumerate(loads)}
    out = {}
    for name in TABLES:
        frame = io.read_table(spark, wh / name).drop("load_time")
        rows = []
        for r in frame.collect():
            values = r.asDict()
            values["load_id"] = rank.get(values.get("load_id"), values.get("load_id"))
            rows.append(tuple(sorted((k, repr(v)) for k, v in values.items())))
        out[name] = sorted(rows)
    return out


def _both(spark, tmp_path: Path, first: Path, second: Path):
    results = {}
    for mode in ("incremental", "full"):
        wh = tmp_path / mode
        ingest_delivery(spark, first, warehouse=wh)
        result = ingest_delivery(spark, second, warehouse=wh, full=mode == "full")
        results[mode] = (wh, result)
    (inc, r_inc), (full, r_full) = results["incremental"], results["full"]
    got, want = _state(spark, inc), _state(spark, full)
    for name in TABLES:
        assert got[name] == want[name], name
    for table in ("persons", "prescribers", "dispensings"):
        assert r_inc.counts[table] == r_full.counts[table], table
    assert r_inc.changed_parts == r_full.changed_parts
    # The incremental load did classify only part of bronze; the full one all of it.
    assert r_full.reclassified is None
    assert (
        r_inc.reclassified is not None and r_inc.reclassified < r_inc.counts["dispensings"].bronze
    )
    return inc, r_inc


def _silver_ids(spark, wh: Path) -> set[str]:
    return {r["dispensing_id"] for r in io.read_table(spark, wh / "silver/dispensings").collect()}


def _reasons(spark, wh: Path) -> dict[str, str]:
    rows = io.read_table(spark, wh / "quarantine/dispensings").collect()
    return {r["dispensing_id"]: r["reason"] for r in rows if r["dispensing_id"]}


def test_a_corrected_file_changes_rows_of_an_untouched_file_as_a_full_rebuild_does(
    spark, tmp_path, base
):
    corrected = _copy(base, tmp_path / "corrected")
    lines = _lines(corrected, 2013)
    kept = [x for x in lines if not x.startswith(("TIE-D1;", "TIE-ID;"))]
    kept = kept[:40] + kept[60:]  # and 20 other rows withdrawn
    _write(corrected, 2013, kept)
    before = tmp_path / "before"
    ingest_delivery(spark, base, warehouse=before)
    assert "TIE-R1" in _silver_ids(spark, before)  # the return nets against D1
    assert _reasons(spark, before)["TIE-ID"] == "conflicting_duplicate"

    wh, result = _both(spark, tmp_path, base, corrected)
    # Rows of the 2014 file, delivered again unchanged, got new verdicts.
    assert _reasons(spark, wh)["TIE-R1"] == "unmatched_return"
    assert "TIE-ID" in _silver_ids(spark, wh)
    assert set(result.changed_parts) >= {"silver/dispensings dispense_year=2013 (changed)"}


def test_a_corrected_file_keeps_the_verdicts_its_returns_owe_to_untouched_files(
    spark, tmp_path, base
):
    """The 2014 file corrected: its returns are classified again, and their verdicts read rows
    of the untouched 2013 file (D1 nets R1) and those rows' id groups in 2012 (D2 conflicts,
    so R2 nets against nothing)."""
    corrected = _copy(base, tmp_path / "corrected")
    lines = _lines(corrected, 2014)
    _write(corrected, 2014, lines[:30] + lines[45:])  # 15 rows withdrawn, the TIE rows kept
    wh, _ = _both(spark, tmp_path, base, corrected)
    assert "TIE-R1" in _silver_ids(spark, wh)
    reasons = _reasons(spark, wh)
    assert reasons["TIE-R2"] == "unmatched_return"
    assert reasons["TIE-D2"] == "conflicting_duplicate"


def _year_files(wh: Path) -> dict[int, set[str]]:
    table = io.tables._open(wh / "silver/dispensings")
    out: dict[int, set[str]] = {year: set() for year in range(2011, 2016)}
    for a in add_actions(table):
        out.setdefault(int(a["partition_values"]["dispense_year"]), set()).add(a["path"])
    return out


def _validated_rows(result) -> int:
    (row_count,) = [
        o
        for o in result.outcomes
        if o.suite == "silver_dispensings"
        and o.expectation == "expect_table_row_count_to_be_between"
    ]
    return row_count.observed["observed_value"]


def test_untouched_years_keep_their_files_and_are_not_validated_again(spark, tmp_path, base):
    corrected = _copy(base, tmp_path / "corrected")
    lines = _lines(corrected, 2012)
    _write(corrected, 2012, lines[:1] + lines[16:])  # not TIE-D2, which reaches 2014
    wh = tmp_path / "wh"
    first = ingest_delivery(spark, base, warehouse=wh)
    assert _validated_rows(first) == first.counts["dispensings"].clean
    before = _year_files(wh)
    result = ingest_delivery(spark, corrected, warehouse=wh)
    after = _year_files(wh)
    assert before[2012] != after[2012]
    for year in (2014, 2015):  # out of reach of the 2012 file's rows
        assert before[year] == after[year], year
    # The silver suite ran on the rewritten years only.
    rewritten = [year for year in after if before[year] != after[year]]
    silver = io.read_table(spark, wh / "silver/dispensings")
    in_rewritten = silver.where(silver["dispense_year"].isin(*rewritten)).count()
    assert _validated_rows(result) == in_rewritten < result.counts["dispensings"].clean
    years = ", ".join(map(str, sorted(rewritten)))
    assert f"the parts rewritten: {years}" in result.report_path.read_text()


def test_an_added_year_equals_a_full_rebuild(spark, tmp_path, base):
    first = _copy(base, tmp_path / "first")
    (first / "dispensings" / "dispensings_2015.csv").unlink()
    _manifest(first)
    _both(spark, tmp_path, first, base)


def test_changed_persons_equal_a_full_rebuild(spark, tmp_path, base):
    changed = _copy(base, tmp_path / "persons")
    lines = _lines(changed, "persons")
    header, rows = lines[0], lines[1:]
    # Three persons gone (their dispensings become unknown_person), one with an impossible
    # birth year (quarantined, so unknown too), and an unknown person of the base now known.
    edited = rows[3:]
    fields = edited[0].split(";")
    fields[header.split(";").index("birth_year")] = "19x0"
    edited[0] = ";".join(fields)
    _write(changed, "persons", [header, *edited])
    _, result = _both(spark, tmp_path, base, changed)
    assert result.counts["dispensings"].reasons["unknown_person"][0] > 0


def test_a_year_whose_rows_keep_their_verdicts_is_left_as_it_was(spark, tmp_path, base):
    """Correcting 2014 classifies rows of 2013 and 2015 again (TIE-ID's other row; R3, which
    nets against D3 of 2014) and they keep their verdicts: those years are not rewritten."""
    corrected = _copy(base, tmp_path / "corrected")
    lines = _lines(corrected, 2014)
    _write(corrected, 2014, lines[:30] + lines[45:])
    wh = tmp_path / "wh"
    ingest_delivery(spark, base, warehouse=wh)
    before = _year_files(wh)
    result = ingest_delivery(spark, corrected, warehouse=wh)
    (rows_2014,) = [rows for path, rows, changed in result.files if changed]
    assert result.reclassified > rows_2014  # rows of other files were classified again ...
    after = _year_files(wh)
    assert before[2014] != after[2014]
    assert "TIE-R3" in _silver_ids(spark, wh)
    for year in (2011, 2012, 2013, 2015):  # ... and no silver row of theirs changed
        assert before[year] == after[year], year


def _month_files(wh: Path) -> dict[tuple[int, int], set[str]]:
    """Silver dispensings' files by (year, month of their rows)."""
    out: dict[tuple[int, int], set[str]] = {}
    for f in io.table_files(wh / "silver/dispensings", columns=["dispense_date"]):
        low, high = f.minimum["dispense_date"], f.maximum["dispense_date"]
        assert (low.year, low.month) == (high.year, high.month)  # one month a file
        out.setdefault((low.year, low.month), set()).add(f.path)
    return out


def test_a_correction_that_reaches_the_next_january_rewrites_that_month_alone(
    spark, tmp_path, base
):
    """D3 (28 December 2014) withdrawn: R3 (3 January 2015), which netted against it, has
    nothing to net against now. 2014 is rewritten whole; of 2015 only January's file is
    replaced, and the result equals a full rebuild."""
    corrected = _copy(base, tmp_path / "corrected")
    _write(corrected, 2014, [x for x in _lines(corrected, 2014) if not x.startswith("TIE-D3;")])
    wh = tmp_path / "wh"
    ingest_delivery(spark, base, warehouse=wh)
    assert "TIE-R3" in _silver_ids(spark, wh)
    before = _month_files(wh)
    result = ingest_delivery(spark, corrected, warehouse=wh)
    assert _reasons(spark, wh)["TIE-R3"] == "unmatched_return"
    after = _month_files(wh)
    for key in before.keys() | after.keys():
        year = key[0]
        if year == 2014 or key == (2015, 1):
            assert before.get(key) != after.get(key), key
        else:
            assert before.get(key) == after.get(key), key
    assert "silver/dispensings dispense_year=2015 (changed)" in result.changed_parts
    assert "the parts rewritten: 2014, 2015 (January)" in result.report_path.read_text()
    # The suite saw 2014 and January 2015, and what is recorded for 2015 is the whole year's.
    silver = io.read_table(spark, wh / "silver/dispensings")
    batch = silver.where(
        "dispense_year = 2014 OR (dispense_year = 2015 AND month(dispense_date) = 1)"
    )
    assert _validated_rows(result) == batch.count()
    assert _recorded(wh)["silver/dispensings"] == _fingerprints_in_sql(
        spark, wh, "silver/dispensings", "dispense_year"
    )
    _both(spark, tmp_path / "both", base, corrected)


def _kept_folders(wh: Path) -> dict[str, Path]:
    """The kept keys' folders (the shared ids' one aside)."""
    store = wh / keystore.STORE_DIR / keystore.KEYS_FORMAT
    return {p.name: p for p in store.iterdir() if not p.name.startswith("_shared-ids--")}


def test_the_keys_are_kept_per_file_and_load_and_a_lost_one_is_computed_again(
    spark, tmp_path, base
):
    from rxcohort.ingest.rules import dispensing_keys

    wh = tmp_path / "wh"
    ingest_delivery(spark, base, warehouse=wh)
    files = io.read_table(spark, wh / "bronze/files").where("table_name = 'dispensings'")
    loads = {r["source_file"]: r["load_id"] for r in files.collect()}
    first = _kept_folders(wh)
    assert set(first) == {f"{load}--{name}" for name, load in loads.items()}
    # What is kept is what the rules compute from bronze.
    store = keystore.KeyStore(spark, wh, tmp_path / "unused")
    kept = store.keys(io.read_table(spark, wh / "bronze/dispensings"), loads)
    fresh = dispensing_keys(io.read_table(spark, wh / "bronze/dispensings"))
    assert sorted(kept.collect()) == sorted(fresh.collect())
    assert not (tmp_path / "unused").exists()  # nothing computed: all kept
    # Each file's returns are kept beside its keys, and are its keys' returns.
    returns = store.returns(kept, loads)
    assert sorted(returns.collect()) == sorted(fresh.where("_return").collect()) != []
    assert all((folder / keystore.RETURNS_DIR).is_dir() for folder in first.values())

    corrected = _copy(base, tmp_path / "corrected")
    lines = _lines(corrected, 2013)
    _write(corrected, 2013, lines[:40] + lines[60:])
    shutil.rmtree(first[f"{loads['dispensings_2011.csv']}--dispensings_2011.csv"])
    # A folder kept by an earlier version, without its returns: they are read from its keys.
    shutil.rmtree(first[f"{loads['dispensings_2014.csv']}--dispensings_2014.csv"] / "returns")
    result = ingest_delivery(spark, corrected, warehouse=wh)
    second = _kept_folders(wh)
    assert set(second) == (
        set(first) - {f"{loads['dispensings_2013.csv']}--dispensings_2013.csv"}
    ) | {f"{result.load_id}--dispensings_2013.csv"}
    # The lost keys were computed again; the incremental result is still a full rebuild's.
    full = tmp_path / "full"
    ingest_delivery(spark, base, warehouse=full)
    ingest_delivery(spark, corrected, warehouse=full, full=True)
    got, want = _state(spark, wh), _state(spark, full)
    for name in TABLES:
        assert got[name] == want[name], name


def _suite(result, name: str) -> list[tuple]:
    return [
        (o.index, o.expectation, o.column, o.severity, o.success, o.observed, o.arguments, o.why)
        for o in result.outcomes
        if o.suite == name
    ]


def test_a_table_not_rewritten_keeps_its_outcomes_until_its_suite_changes(spark, tmp_path, base):
    from rxcohort.pipelines.ingest import default_expectations_dir

    suites = shutil.copytree(default_expectations_dir(), tmp_path / "expectations")
    wh = tmp_path / "wh"
    first = ingest_delivery(spark, base, warehouse=wh, expectations_dir=suites)
    corrected = _copy(base, tmp_path / "corrected")
    lines = _lines(corrected, 2014)
    _write(corrected, 2014, lines[:30] + lines[45:])
    second = ingest_delivery(spark, corrected, warehouse=wh, expectations_dir=suites)
    # persons.csv and prescribers.csv did not change: their outcomes are the first load's.
    for name in ("silver_persons", "silver_prescribers"):
        assert _suite(second, name) == _suite(first, name) != []
        assert f"{name} outcomes" in second.report_path.read_text()
    assert f"kept from load {first.load_id}" in second.report_path.read_text()
    runs = io.read_table(spark, wh / "quality/runs").where(f"load_id = '{second.load_id}'")
    assert runs.where("suite = 'silver_persons'").count() == len(_suite(first, "silver_persons"))

    # A changed suite is run again, on the table as it is.
    path = suites / "silver_persons.json"
    suite = json.loads(path.read_text())
    row_count = next(
        e for e in suite["expectations"] if e["type"] == "expect_table_row_count_to_be_between"
    )
    row_count["kwargs"]["max_value"] = 10**9
    path.write_text(json.dumps(suite))
    _write(corrected, 2014, lines[:20] + lines[45:])
    third = ingest_delivery(spark, corrected, warehouse=wh, expectations_dir=suites)
    (checked,) = [
        o
        for o in third.outcomes
        if o.suite == "silver_persons" and o.expectation == "expect_table_row_count_to_be_between"
    ]
    assert checked.arguments.get("max_value") == 10**9
    assert checked.observed["observed_value"] == first.counts["persons"].clean
    assert "silver_persons outcomes" not in third.report_path.read_text()
    assert "silver_prescribers outcomes" in third.report_path.read_text()
    # --full validates every table again.
    _write(corrected, 2014, lines[:10] + lines[45:])
    fourth = ingest_delivery(spark, corrected, warehouse=wh, expectations_dir=suites, full=True)
    assert "kept from load" not in fourth.report_path.read_text()
    assert _suite(fourth, "silver_prescribers") == _suite(first, "silver_prescribers")


def _shared_folder(wh: Path, load_id: str) -> Path:
    return wh / keystore.STORE_DIR / keystore.KEYS_FORMAT / f"_shared-ids--{load_id}"


def _repeated_id_hashes(spark, wh: Path) -> set[int]:
    """The 64-bit hashes of the (trimmed) dispensing ids that occur more than once in bronze,
    counted here in Python."""
    from collections import Counter

    ids = Counter(
        r["dispensing_id"].strip()
        for r in io.read_table(spark, wh / "bronze/dispensings").collect()
        if r["dispensing_id"] is not None and r["dispensing_id"].strip()
    )
    repeated = sorted(i for i, n in ids.items() if n > 1)
    frame = spark.createDataFrame([(i,) for i in repeated], "id string")
    return {r[0] for r in frame.selectExpr("xxhash64(id)").collect()}


def test_an_id_new_to_a_corrected_file_ties_the_row_of_another_file_that_has_it(
    spark, tmp_path, base, monkeypatch
):
    """A load keeps the hashes of the ids that repeat in bronze; the next one looks up in the
    other files only the ids its corrected file did not have before. Here the corrected 2014
    file gains a row with the id of a 2013 row (other content: both become conflicting
    duplicates). The same with the kept hashes lost, and with the lookup given up for the
    aggregation over all ids: each equals a full rebuild."""
    from rxcohort.ingest import incremental

    first = tmp_path / "first"
    loaded = ingest_delivery(spark, base, warehouse=first)
    kept = spark.read.parquet(str(_shared_folder(first, loaded.load_id)))
    assert {r["_h"] for r in kept.collect()} == _repeated_id_hashes(spark, first)
    assert len(_repeated_id_hashes(spark, first)) >= 2  # TIE-ID, TIE-D2 and generated ones

    clean = _silver_ids(spark, first)
    in_2014 = {x.split(";")[0] for x in _lines(base, 2014)}
    taken = next(x.split(";")[0] for x in _lines(base, 2013)[1:] if x.split(";")[0] in clean)
    assert taken not in in_2014
    corrected = _copy(base, tmp_path / "corrected")
    row = next(x for x in _lines(corrected, 2014)[1:] if x.split(";")[0] in clean).split(";")
    row[0] = taken
    _append(corrected, 2014, [";".join(row)])

    wh, result = _both(spark, tmp_path / "kept", base, corrected)
    assert _reasons(spark, wh)[taken] == "conflicting_duplicate"
    assert taken not in _silver_ids(spark, wh)
    after = spark.read.parquet(str(_shared_folder(wh, result.load_id)))
    assert {r["_h"] for r in after.collect()} >= _repeated_id_hashes(spark, wh)
    store = wh / keystore.STORE_DIR / keystore.KEYS_FORMAT
    shared = [p.name for p in store.iterdir() if p.name.startswith("_shared-ids--")]
    assert shared == [_shared_folder(wh, result.load_id).name]  # the first load's was removed

    # Without the kept hashes (a lost folder): all ids aggregated; the same result.
    lost = tmp_path / "lost"
    first_load = ingest_delivery(spark, base, warehouse=lost).load_id
    shutil.rmtree(_shared_folder(lost, first_load))
    ingest_delivery(spark, corrected, warehouse=lost)
    # With too many new ids to look up: the same aggregation.
    many = tmp_path / "many"
    ingest_delivery(spark, base, warehouse=many)
    monkeypatch.setattr(incremental, "FRESH_IDS_MOST", 0)
    ingest_delivery(spark, corrected, warehouse=many)
    want = _state(spark, tmp_path / "kept" / "full")
    for other in (lost, many):
        got = _state(spark, other)
        for name in TABLES:
            assert got[name] == want[name], (other.name, name)


def _recorded(wh: Path) -> dict[str, dict]:
    from rxcohort.pipelines.snapshot import FINGERPRINTS_RECORD, complete_load_record

    text = complete_load_record(wh)["info"][FINGERPRINTS_RECORD]
    return {name: {p: (n, h) for p, n, h in parts} for name, parts in json.loads(text).items()}


def _fingerprints_in_sql(spark, wh: Path, name: str, column: str | None) -> dict:
    """Rows and the sum of the content hashes per part, over the table as it is, in SQL."""
    frame = io.read_table(spark, wh / name)
    frame.createOrReplaceTempView("fingerprinted")
    content = ", ".join(f"`{c}`" for c in frame.columns if c not in ("load_id", "load_time"))
    part = f"CAST(`{column}` AS STRING)" if column else "CAST(NULL AS STRING)"
    rows = spark.sql(
        f"SELECT {part} AS p, COUNT(*) AS n, "
        f"SUM(CAST(xxhash64({content}) AS DECIMAL(38, 0))) AS h FROM fingerprinted GROUP BY 1"
    ).collect()
    return {r["p"]: (r["n"], str(r["h"])) for r in rows}


def test_each_load_records_the_fingerprints_the_next_compares_against(spark, tmp_path, base):
    """silver/changes compares each part with the fingerprint the last load recorded: after a
    first load and after a correction that rewrites some years only, the record holds every
    part of every silver and quarantine table as it is then."""
    wh = tmp_path / "wh"
    corrected = _copy(base, tmp_path / "corrected")
    lines = _lines(corrected, 2012)
    _write(corrected, 2012, lines[:1] + lines[16:])  # not TIE-D2: 2012 alone is rewritten
    for delivery in (base, corrected):
        result = ingest_delivery(spark, delivery, warehouse=wh)
        recorded = _recorded(wh)
        for name in TABLES:
            layer = name.split("/")[0]
            column = "dispense_year" if name == "silver/dispensings" else None
            column = "source_file" if layer == "quarantine" else column
            assert recorded[name] == _fingerprints_in_sql(spark, wh, name, column), name
    assert result.changed_parts and all("2013" not in p for p in result.changed_parts)


def test_a_bronze_where_no_id_repeats_keeps_an_empty_set_for_the_next_load(
    spark, tmp_path, monkeypatch
):
    """No id repeats in a clean delivery: the load keeps an empty set of shared ids all the
    same (an engine may write no file for no rows), so the next load's plan starts from it
    and does not aggregate the ids of the whole bronze again."""
    from rxcohort.generate import generate_delivery
    from rxcohort.ingest import incremental

    delivery = tmp_path / "clean"
    generate_delivery(
        spark, delivery, persons=150, seed=7, start=date(2013, 1, 1), end=date(2014, 12, 31),
        defects=0.0, gzip=False, ldn_rate=0.1,
    )  # fmt: skip
    wh = tmp_path / "wh"
    first = ingest_delivery(spark, delivery, warehouse=wh)
    assert _repeated_id_hashes(spark, wh) == set()
    assert _shared_folder(wh, first.load_id).is_dir()

    aggregated = []
    real = incremental.shared_ids
    monkeypatch.setattr(
        incremental, "shared_ids", lambda *a, **k: aggregated.append(1) or real(*a, **k)
    )
    corrected = _copy(delivery, tmp_path / "corrected")
    lines = _lines(corrected, 2014)
    _write(corrected, 2014, lines[:-5])
    second = ingest_delivery(spark, corrected, warehouse=wh)
    assert second.reclassified is not None and aggregated == []
    assert _shared_folder(wh, second.load_id).is_dir()
