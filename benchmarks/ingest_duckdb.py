"""The ingest rules of docs/ingest.md as plain DuckDB SQL: a speed baseline and a cross-check.

Reads one delivery (CONTRACT §1), types and classifies every row into clean, quarantined (with
the first reason that applies) or exact duplicate, matches returns against dispensings, and
writes the clean tables and the quarantine as Parquet. Written from the documented rules, not
from the Spark code, and it imports nothing from rxcohort: where the two disagree on a
delivery, one of them departs from the docs. The benchmark compares its counts with the
warehouse's silver and quarantine tables and its time with ``rxcohort ingest``.

Not done here (the Spark ingest does it, so this is a lower bound on the work): SHA-256 and
manifest checks, bronze and Delta tables, quality suites, the report, re-delivery. Only the
header is checked: a file whose header does not name the contract's columns stops the run.
Lines are read with DuckDB's CSV reader as one column (no separator, no quotes) and numbered
WITH ORDINALITY; a file must end its lines all with LF or all with CR LF (in a file that
mixes them, DuckDB reads each CR LF as two lines, which shifts the line numbers).

    python benchmarks/ingest_duckdb.py DELIVERY --out DIR [--threads N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from datetime import date
from pathlib import Path

import duckdb

WHO_DDD = Path(__file__).resolve().parent.parent / "src" / "rxcohort" / "reference" / "who_ddd.csv"

# CONTRACT §1: the columns of each file, and the key that names one row of the table.
COLUMNS = {
    "persons": ("person_id", "sex", "birth_year", "death_date", "emigration_date", "county"),
    "prescribers": ("prescriber_id", "profession", "specialty"),
    "dispensings": (
        "dispensing_id", "person_id", "dispense_date", "atc_code", "product_id", "product_name",
        "magistral", "strength_mg", "units_per_pack", "packs", "ddd_per_pack", "prescriber_id",
        "reimbursement", "reimbursement_code",
    ),
}  # fmt: skip
KEYS = {"persons": "person_id", "prescribers": "prescriber_id", "dispensings": "dispensing_id"}
YEAR_FILE = re.compile(r"dispensings_(\d{4})\.csv(\.gz)?")

# Typing helpers ("Text is trimmed", "empty as null", numbers with '.' as decimal mark, ISO
# dates that are real days). The regular expressions keep DuckDB's casts from accepting more
# than the contract does ('1_000', '2013-2-3'); NaN and infinities are not numbers.
MACROS = r"""
CREATE MACRO txt(x) AS nullif(CASE  -- trim only what needs it: trim() is slow
    WHEN regexp_matches(x, '^[ \t\n\x0b\f\r]|[ \t\n\x0b\f\r]$')
    THEN trim(x, chr(32) || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)) ELSE x END, '');
CREATE MACRO num(x) AS CASE
    WHEN regexp_full_match(x, '[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?')
         AND isfinite(TRY_CAST(x AS DOUBLE)) THEN TRY_CAST(x AS DOUBLE) END;
CREATE MACRO whole(x) AS
    CASE WHEN regexp_full_match(x, '[+-]?[0-9]+') THEN TRY_CAST(x AS INTEGER) END;
CREATE MACRO day(x) AS
    CASE WHEN regexp_full_match(x, '[0-9]{4}-[0-9]{2}-[0-9]{2}')
         THEN CAST(try_strptime(x, '%Y-%m-%d') AS DATE) END;
-- something was delivered, but it does not parse
CREATE MACRO bad(raw, typed) AS raw IS NOT NULL AND typed IS NULL;
-- ';'-separated fields; a ';' inside a double-quoted stretch does not separate, and a quoted
-- field loses its quotes ("" inside is one "). Lines without a quote take the short way.
CREATE MACRO fields(line) AS CASE
    WHEN NOT contains(line, '"') THEN string_split(line, ';')
    ELSE list_transform(
        string_split(array_to_string(list_transform(
            regexp_extract_all(line, '"(?:[^"]|"")*"|[^;"]+|;|"'),
            t -> CASE WHEN t = ';' THEN chr(31) ELSE t END), ''), chr(31)),
        v -> CASE WHEN len(v) >= 2 AND starts_with(v, '"') AND ends_with(v, '"')
                  THEN replace(v[2:-2], '""', '"') ELSE v END)
    END;
"""

# Typed values (t_*) beside the trimmed text: CONTRACT §1 types, docs/ingest.md "The layers"
# (ATC and reimbursement codes upper-case, profession, specialty, reimbursement lower-case).
TYPES = {
    "persons": """whole(sex) AS t_sex, whole(birth_year) AS t_birth_year,
        day(death_date) AS t_death_date, day(emigration_date) AS t_emigration_date""",
    "prescribers": "lower(profession) AS t_profession, lower(specialty) AS t_specialty",
    "dispensings": """day(dispense_date) AS t_dispense_date, upper(atc_code) AS t_atc_code,
        CASE magistral WHEN '1' THEN true WHEN '0' THEN false END AS t_magistral,
        num(strength_mg) AS t_strength_mg, num(units_per_pack) AS t_units_per_pack,
        num(packs) AS t_packs, num(ddd_per_pack) AS t_ddd_per_pack,
        lower(reimbursement) AS t_reimbursement, upper(reimbursement_code) AS t_reimbursement_code
        """,
}

# The one-row rules, in the order of docs/ingest.md "Quarantine reason codes": a row gets
# the first reason that applies. A null test is no hit: empty optional fields are not errors.
CHECKS = {
    "persons": """CASE
        WHEN field_count <> 6 THEN 'wrong_field_count'
        WHEN person_id IS NULL THEN 'missing_required_field'
        WHEN bad(death_date, t_death_date) OR bad(emigration_date, t_emigration_date)
             THEN 'unparseable_date'
        -- sex and birth_year must be integers
        WHEN bad(sex, t_sex) OR bad(birth_year, t_birth_year) THEN 'unparseable_number'
        WHEN t_sex NOT IN (1, 2) THEN 'invalid_value'
        END""",
    "prescribers": """CASE
        WHEN field_count <> 3 THEN 'wrong_field_count'
        WHEN prescriber_id IS NULL THEN 'missing_required_field'
        WHEN t_profession NOT IN ('physician', 'dentist', 'nurse', 'other') THEN 'invalid_value'
        END""",
    "dispensings": """CASE
        WHEN field_count <> 14 THEN 'wrong_field_count'
        WHEN dispensing_id IS NULL OR person_id IS NULL OR dispense_date IS NULL
             OR atc_code IS NULL OR packs IS NULL THEN 'missing_required_field'
        WHEN t_dispense_date IS NULL THEN 'unparseable_date'
        WHEN bad(strength_mg, t_strength_mg) OR bad(units_per_pack, t_units_per_pack)
             OR bad(packs, t_packs) OR bad(ddd_per_pack, t_ddd_per_pack)
             THEN 'unparseable_number'
        WHEN bad(magistral, t_magistral) OR t_reimbursement NOT IN ('blue', 'white', 'h')
             OR t_strength_mg < 0 OR t_ddd_per_pack < 0 OR t_units_per_pack <= 0
             THEN 'invalid_value'
        WHEN NOT regexp_full_match(t_atc_code, '[A-Z][0-9]{2}[A-Z]{2}[0-9]{2}')
             THEN 'malformed_atc'
        WHEN year(t_dispense_date) <> file_year THEN 'date_outside_file_year'
        WHEN t_dispense_date NOT BETWEEN getvariable('period_start')
                                     AND getvariable('period_end') THEN 'date_outside_period'
        WHEN t_packs = 0 THEN 'zero_packs'
        -- known persons: the clean persons (a person whose rows are all quarantined is not)
        WHEN person_id NOT IN (SELECT person_id FROM classified_persons WHERE status <> 'q')
             THEN 'unknown_person'
        END""",
}

# What "the same content after normalisation" compares (every typed column but the key).
CONTENT = {
    "persons": "t_sex, t_birth_year, t_death_date, t_emigration_date, county",
    "prescribers": "t_profession, t_specialty",
    "dispensings": "person_id, t_dispense_date, t_atc_code, product_id, product_name, "
    "t_magistral, t_strength_mg, t_units_per_pack, t_packs, t_ddd_per_pack, prescriber_id, "
    "t_reimbursement, t_reimbursement_code",
}

# Each rule adds verdicts, (file, line) -> status 'q' (quarantined) or 'd' (duplicate) with
# a reason, for rows that no earlier rule judged; a row without a verdict is clean ('c').
CLASSIFY = """
CREATE TEMP TABLE verdicts_{table} AS
SELECT source_file, line_number, 'q' AS status, reason
FROM (SELECT source_file, line_number, {checks} AS reason FROM typed_{table})
WHERE reason IS NOT NULL;

CREATE TEMP VIEW classified_{table} AS
SELECT t.*, coalesce(v.status, 'c') AS status, v.reason
FROM typed_{table} t LEFT JOIN verdicts_{table} v USING (source_file, line_number);

-- Duplicates, among the rows still clean: a key with more than one content is a
-- conflicting_duplicate in every version; of identical copies the first by (file, line)
-- stays and the others are removed. Only the rows of keys seen more than once are compared.
INSERT INTO verdicts_{table}
WITH suspects AS (
    SELECT * FROM classified_{table}
    WHERE status = 'c' AND {key} IN (SELECT {key} FROM classified_{table}
                                     WHERE status = 'c' GROUP BY ALL HAVING count(*) > 1)
), compared AS (
    SELECT source_file, line_number,
           count(DISTINCT ({content})) OVER (PARTITION BY {key}) > 1 AS conflicting,
           row_number() OVER (PARTITION BY {key} ORDER BY source_file, line_number) AS copy
    FROM suspects
)
SELECT source_file, line_number, CASE WHEN conflicting THEN 'q' ELSE 'd' END,
       CASE WHEN conflicting THEN 'conflicting_duplicate' END
FROM compared WHERE conflicting OR copy > 1;
"""

# Returns (packs < 0) net against the clean rows of the same product (person, ATC code,
# product_id) dated in the 14 days up to the return, the return's own day included
# (RETURN_WINDOW_DAYS: [date - 14, date]). No dispensing there: unmatched_return; the returns
# there (this one included) add up to more packs than were dispensed there:
# return_exceeds_dispensed. Every return is judged on the rows clean before this rule.
RETURNS = """
INSERT INTO verdicts_dispensings
WITH clean AS (SELECT * FROM classified_dispensings WHERE status = 'c'),
judged AS (
    SELECT r.source_file, r.line_number,
           coalesce(sum(d.t_packs) FILTER (d.t_packs > 0), 0) AS dispensed,
           coalesce(sum(-d.t_packs) FILTER (d.t_packs < 0), 0) AS returned
    FROM clean r
    JOIN clean d
      ON d.person_id = r.person_id AND d.t_atc_code = r.t_atc_code
     AND d.product_id IS NOT DISTINCT FROM r.product_id
     AND d.t_dispense_date BETWEEN r.t_dispense_date - 14 AND r.t_dispense_date
    WHERE r.t_packs < 0
    GROUP BY ALL
)
SELECT source_file, line_number, 'q',
       CASE WHEN dispensed <= 0 THEN 'unmatched_return' ELSE 'return_exceeds_dispensed' END
FROM judged WHERE dispensed <= 0 OR returned > dispensed + 1e-9;
"""

# DDD (docs/ingest.md "DDD"): packs * ddd_per_pack from the registry, else computed from the
# strength and the WHO DDD in mg of the code in the year of dispensing, else null.
SILVER_DISPENSINGS = """
SELECT d.dispensing_id, d.person_id, d.t_dispense_date AS dispense_date,
       d.t_atc_code AS atc_code, d.product_id, d.product_name, d.t_magistral AS magistral,
       d.t_strength_mg AS strength_mg, d.t_units_per_pack AS units_per_pack, d.t_packs AS packs,
       d.t_ddd_per_pack AS ddd_per_pack,
       CASE WHEN d.t_ddd_per_pack IS NOT NULL THEN d.t_packs * d.t_ddd_per_pack
            WHEN w.ddd_mg > 0 THEN d.t_packs * d.t_units_per_pack * d.t_strength_mg / w.ddd_mg
       END AS ddd,
       CASE WHEN d.t_ddd_per_pack IS NOT NULL THEN 'registry'
            WHEN w.ddd_mg > 0 AND d.t_units_per_pack IS NOT NULL
                 AND d.t_strength_mg IS NOT NULL THEN 'computed' END AS ddd_method,
       d.prescriber_id, d.t_reimbursement AS reimbursement,
       d.t_reimbursement_code AS reimbursement_code, d.source_file,
       year(d.t_dispense_date) AS dispense_year
FROM classified_dispensings d
LEFT JOIN who_ddd w ON w.atc_code = d.t_atc_code
     AND year(d.t_dispense_date) BETWEEN coalesce(w.valid_from_year, 0)
                                     AND coalesce(w.valid_to_year, 9999)
WHERE d.status = 'c'
ORDER BY dispense_year, atc_code
"""


def sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def delivery_files(delivery: Path) -> list[tuple[str, str, Path, int | None]]:
    """(table, source_file, path, file year) of every contract file; source_file drops .gz."""
    files = []
    for table in ("persons", "prescribers"):
        found = [
            p for p in (delivery / f"{table}.csv", delivery / f"{table}.csv.gz") if p.is_file()
        ]
        if len(found) != 1:
            raise SystemExit(f"{delivery}: expected one {table}.csv or {table}.csv.gz")
        files.append((table, f"{table}.csv", found[0], None))
    if not (delivery / "dispensings").is_dir():
        raise SystemExit(f"{delivery}: no dispensings/ directory")
    for path in sorted((delivery / "dispensings").iterdir()):
        if path.name.startswith("."):
            continue
        match = YEAR_FILE.fullmatch(path.name)
        if not match:
            raise SystemExit(f"dispensings/{path.name}: not a dispensings_<YYYY>.csv file")
        files.append(("dispensings", path.name.removesuffix(".gz"), path, int(match[1])))
    return files


def delivery_period(delivery: Path, years: list[int]) -> tuple[date, date]:
    """The manifest's period, else 1 January of the first file year to 31 December of the last."""
    manifest = delivery / "manifest.json"
    period = json.loads(manifest.read_text())["period"] if manifest.is_file() else None
    if period and period[0] and period[1]:
        return date.fromisoformat(period[0]), date.fromisoformat(period[1])
    return date(min(years), 1, 1), date(max(years), 12, 31)


def header(table: str, path: Path) -> list[str]:
    """The column names of the file's first line; they must be the contract's, in any order."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8-sig") as fh:
        names = [n.strip().strip('"').strip() for n in fh.readline().rstrip("\r\n").split(";")]
    if sorted(names) != sorted(COLUMNS[table]):
        raise SystemExit(f"{path.name}: header is not the contract's columns: {names}")
    return names


def read_sql(table: str, files: list[tuple[str, str, Path, int | None]]) -> str:
    """Every line after the header, numbered (the header is line 1), split into its fields and
    mapped to the contract's columns by the file's own header; all values strings."""
    parts = []
    for _, source, path, year in (f for f in files if f[0] == table):
        names = header(table, path)
        picks = ", ".join(f"nullif(f[{names.index(c) + 1}], '') AS {c}" for c in COLUMNS[table])
        lines = (
            f"read_csv('{sql_path(path)}', header = false, columns = {{'line': 'VARCHAR'}}, "
            "delim = '', quote = '', escape = '', auto_detect = false, strict_mode = false) "
            "WITH ORDINALITY"
        )
        # MATERIALIZED: split each line once, not once per column picked from it.
        parts.append(
            f"(WITH split AS MATERIALIZED (SELECT ordinality AS line_number, fields(line) AS f "
            # Lines with nothing but spaces are not rows.
            f"FROM {lines} WHERE line_number > 1 AND regexp_matches(line, '[^ ]')) "
            f"SELECT '{source}' AS source_file, {year or 'NULL'}::INTEGER AS file_year, "
            f"line_number, len(f) AS field_count, {picks} FROM split)"
        )
    return "\nUNION ALL\n".join(parts)


def ingest(delivery: Path, out: Path, *, threads: int | None = None) -> dict:
    """Classify the delivery's rows and write the clean tables and quarantine to ``out``."""
    began = time.perf_counter()
    delivery, out = Path(delivery), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = delivery_files(delivery)
    start, end = delivery_period(delivery, [f[3] for f in files if f[3] is not None])
    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{sql_path(out / '_duckdb_tmp')}'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute(MACROS)
    # The delivery period (for date_outside_period).
    con.execute(f"SET VARIABLE period_start = DATE '{start}'")
    con.execute(f"SET VARIABLE period_end = DATE '{end}'")
    steps: dict[str, float] = {}
    mark = time.perf_counter()

    def step(name: str) -> None:
        nonlocal mark
        steps[name] = round(time.perf_counter() - mark, 3)
        mark = time.perf_counter()

    result: dict[str, dict] = {}
    for table in ("persons", "prescribers", "dispensings"):
        # Raw rows, every value a string as delivered, with file and line number.
        con.execute(f"CREATE TEMP TABLE bronze_{table} AS {read_sql(table, files)}")
        # Trimmed text (empty as null) and typed values; MATERIALIZED: each trimmed once.
        trimmed = ", ".join(f"txt({c}) AS {c}" for c in COLUMNS[table])
        con.execute(
            f"CREATE TEMP TABLE typed_{table} AS WITH s AS MATERIALIZED (SELECT source_file, "
            f"file_year, line_number, field_count, {trimmed} FROM bronze_{table}) "
            f"SELECT *, {TYPES[table]} FROM s"
        )
        sql = CLASSIFY.format(
            table=table, key=KEYS[table], content=CONTENT[table], checks=CHECKS[table]
        )
        con.execute(sql)
        step(f"{table}: read and classify")
    con.execute(RETURNS)
    step("dispensings: returns")

    con.execute(f"CREATE TEMP TABLE who_ddd AS FROM read_csv('{sql_path(WHO_DDD)}', header = true)")
    outputs = {
        "silver_dispensings": SILVER_DISPENSINGS,
        "silver_persons": "SELECT person_id, t_sex AS sex, t_birth_year AS birth_year, "
        "t_death_date AS death_date, t_emigration_date AS emigration_date, county, source_file "
        "FROM classified_persons WHERE status = 'c'",
        "silver_prescribers": "SELECT prescriber_id, t_profession AS profession, "
        "t_specialty AS specialty, source_file FROM classified_prescribers WHERE status = 'c'",
    }
    for table in ("persons", "prescribers", "dispensings"):
        # Quarantine: the raw values as delivered, with the reason and the lineage.
        outputs[f"quarantine_{table}"] = (
            f"SELECT b.*, c.reason FROM bronze_{table} b JOIN classified_{table} c "
            "USING (source_file, line_number) WHERE c.status = 'q'"
        )
    for name, query in outputs.items():
        con.execute(f"COPY ({query}) TO '{sql_path(out / name)}.parquet' (FORMAT parquet)")
    step("write parquet")

    for table in ("persons", "prescribers", "dispensings"):
        rows, clean, quarantined, duplicates = con.execute(
            "SELECT count(*), count(*) FILTER (status = 'c'), count(*) FILTER (status = 'q'), "
            f"count(*) FILTER (status = 'd') FROM classified_{table}"
        ).fetchone()
        reasons = con.execute(
            f"SELECT reason, count(*) FROM classified_{table} WHERE status = 'q' "
            "GROUP BY reason ORDER BY reason"
        ).fetchall()
        # The invariant: rows read = clean + quarantined + duplicates, each row judged once.
        (read,) = con.execute(f"SELECT count(*) FROM bronze_{table}").fetchone()
        if read != rows or rows != clean + quarantined + duplicates:
            raise RuntimeError(f"{table}: {read} rows read but {rows} classified (a bug)")
        result[table] = {
            "rows": rows,
            "clean": clean,
            "quarantined": quarantined,
            "duplicates": duplicates,
            "reasons": dict(reasons),
        }
    (threads_used,) = con.execute("SELECT current_setting('threads')").fetchone()
    con.close()
    return {
        "delivery": str(delivery),
        "out": str(out),
        "period": [str(start), str(end)],
        "threads": threads_used,
        "seconds": round(time.perf_counter() - began, 3),
        "steps": steps,
        "tables": result,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("delivery", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="directory for the Parquet files")
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    ns = parser.parse_args(argv)
    print(json.dumps(ingest(ns.delivery, ns.out, threads=ns.threads), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
