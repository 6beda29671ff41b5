"""The reference study (CONTRACT §5) as plain DuckDB SQL over the silver Delta tables.

This is the strongest single-node alternative a user could pick, written independently of the
Spark pipeline from the rules in CONTRACT §5 (it imports nothing from rxcohort): the benchmark
times it against ``rxcohort run`` and checks that both give the same attrition and group
results. It reads the Parquet files of the tables' current snapshots; the file lists come from
each table's Delta log through the ``deltalake`` package.

    python benchmarks/reference_duckdb.py WAREHOUSE
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from deltalake import DeltaTable

# Each statement builds one temporary table; the rule numbers are those of CONTRACT §5.
STEPS: tuple[tuple[str, str], ...] = (
    (
        # Rule 1: LDN is N07BB04 at 5 mg or less; returns are not dispensings of it.
        "ldn",
        """
        SELECT person_id, dispense_date FROM disp
        WHERE atc_code = 'N07BB04' AND strength_mg <= 5 AND packs > 0
        """,
    ),
    (
        # Rule 2: the first LDN day inside the index year.
        "step0_index",
        """
        SELECT person_id, min(dispense_date) AS index_date FROM ldn
        WHERE dispense_date BETWEEN DATE '2013-01-01' AND DATE '2013-12-31'
        GROUP BY person_id
        """,
    ),
    (
        # Rule 3: nobody with LDN earlier in the delivery.
        "step1_new_users",
        """
        SELECT i.person_id, i.index_date FROM step0_index i
        WHERE NOT EXISTS (
            SELECT 1 FROM ldn l
            WHERE l.person_id = i.person_id AND l.dispense_date < i.index_date
        )
        """,
    ),
    (
        # Rule 4: death or emigration on index + 364 or later keeps the person; a person
        # missing from silver persons has no known event and stays.
        "step2_follow_up",
        """
        SELECT n.person_id, n.index_date
        FROM step1_new_users n LEFT JOIN persons p ON p.person_id = n.person_id
        WHERE coalesce(p.death_date >= n.index_date + 364, true)
          AND coalesce(p.emigration_date >= n.index_date + 364, true)
        """,
    ),
    (
        # Rule 5: an opioid collected (packs > 0) in the year before the index date.
        "step3_prior_opioid",
        """
        SELECT f.person_id, f.index_date FROM step2_follow_up f
        WHERE EXISTS (
            SELECT 1 FROM disp d
            WHERE d.person_id = f.person_id AND d.atc_code LIKE 'N02A%' AND d.packs > 0
              AND d.dispense_date BETWEEN f.index_date - 365 AND f.index_date - 1
        )
        """,
    ),
    (
        # Rule 6: LDN dispensings from the index date to index + 364.
        "cohort",
        """
        SELECT c.person_id, c.index_date,
               CASE WHEN count(l.person_id) = 1 THEN 'ldn_1'
                    WHEN count(l.person_id) <= 3 THEN 'ldn_2_3'
                    ELSE 'ldn_4plus' END AS exposure_group
        FROM step3_prior_opioid c
        JOIN ldn l ON l.person_id = c.person_id
             AND l.dispense_date BETWEEN c.index_date AND c.index_date + 364
        GROUP BY c.person_id, c.index_date
        """,
    ),
    (
        # Rules 7-10: every dispensing of a drug group in pre or post, one row per
        # person x drug group x window that has any.
        "cells",
        """
        SELECT c.person_id, g.drug_group,
               CASE WHEN d.dispense_date < c.index_date THEN 'pre' ELSE 'post' END AS win,
               sum(d.ddd) AS ddd,
               count(*) FILTER (WHERE d.packs > 0) AS n_dispensings
        FROM cohort c
        JOIN disp d ON d.person_id = c.person_id
             AND d.dispense_date BETWEEN c.index_date - 365 AND c.index_date + 364
        JOIN drug_groups g ON starts_with(d.atc_code, g.prefix)
        GROUP BY ALL
        """,
    ),
    (
        # Rule 10: zeros for persons without any dispensing of a group in a window.
        "per_person",
        """
        SELECT c.person_id, c.exposure_group, g.drug_group,
               coalesce(pre.ddd, 0) AS ddd_pre, coalesce(post.ddd, 0) AS ddd_post,
               coalesce(pre.n_dispensings, 0) > 0 AS user_pre,
               coalesce(post.n_dispensings, 0) > 0 AS user_post
        FROM cohort c
        CROSS JOIN (SELECT DISTINCT drug_group FROM drug_groups) g
        LEFT JOIN cells pre ON pre.person_id = c.person_id
             AND pre.drug_group = g.drug_group AND pre.win = 'pre'
        LEFT JOIN cells post ON post.person_id = c.person_id
             AND post.drug_group = g.drug_group AND post.win = 'post'
        """,
    ),
)

ATTRITION_TABLES = ("step0_index", "step1_new_users", "step2_follow_up", "step3_prior_opioid")

# Rule 11, without the confidence intervals (they follow from the same per-person values).
GROUP_RESULTS_SQL = """
SELECT exposure_group, drug_group, count(*) AS n_persons,
       avg(ddd_pre) AS mean_ddd_pre, avg(ddd_post) AS mean_ddd_post,
       avg(ddd_post - ddd_pre) AS mean_diff,
       count(*) FILTER (WHERE user_pre) AS users_pre,
       count(*) FILTER (WHERE user_post) AS users_post
FROM per_person
GROUP BY ALL
ORDER BY exposure_group, drug_group
"""

GROUP_RESULT_COLUMNS = (
    "exposure_group",
    "drug_group",
    "n_persons",
    "mean_ddd_pre",
    "mean_ddd_post",
    "mean_diff",
    "users_pre",
    "users_post",
)


@dataclass
class ReferenceResult:
    attrition: list[int]  # persons left after each step, step 0 first
    group_results: list[dict[str, object]]
    seconds: float
    step_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def n_persons(self) -> int:
        return self.attrition[-1]


def snapshot_files(table_path: Path) -> list[str]:
    """Absolute paths of the Parquet files in the table's current snapshot."""
    return [str(uri) for uri in DeltaTable(str(table_path)).file_uris()]


def run_reference(warehouse: str | Path, *, threads: int | None = None) -> ReferenceResult:
    """Attrition counts and group results of the reference study, computed by DuckDB."""
    began = time.perf_counter()
    warehouse = Path(warehouse)
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    disp_files = snapshot_files(warehouse / "silver" / "dispensings")
    person_files = snapshot_files(warehouse / "silver" / "persons")
    # The partition column (dispense_year) is not needed: every rule is on dispense_date.
    con.read_parquet(disp_files).select(
        "person_id, dispense_date, atc_code, strength_mg, packs, ddd"
    ).create_view("disp")
    con.read_parquet(person_files).select("person_id, death_date, emigration_date").create_view(
        "persons"
    )
    con.execute(
        "CREATE TEMP TABLE drug_groups AS SELECT * FROM (VALUES "
        "('opioids', 'N02A'), ('nsaids', 'M01A'), ('other_analgesics', 'N02B')) "
        "AS g(drug_group, prefix)"
    )
    step_seconds: dict[str, float] = {}
    for name, sql in STEPS:
        started = time.perf_counter()
        con.execute(f"CREATE TEMP TABLE {name} AS {sql}")
        step_seconds[name] = time.perf_counter() - started
    attrition = [_count(con, table) for table in ATTRITION_TABLES]
    if _count(con, "cohort") != attrition[-1]:
        # Every person kept by rule 5 has at least the index dispensing in [index, index + 364].
        raise AssertionError("reference: exposure count lost persons of the last step")
    rows = con.execute(GROUP_RESULTS_SQL).fetchall()
    con.close()
    return ReferenceResult(
        attrition=attrition,
        group_results=[dict(zip(GROUP_RESULT_COLUMNS, row, strict=True)) for row in rows],
        seconds=time.perf_counter() - began,
        step_seconds=step_seconds,
    )


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: reference_duckdb.py WAREHOUSE", file=sys.stderr)
        return 2
    result = run_reference(Path(args[0]))
    print(f"attrition: {result.attrition}  ({result.seconds:.2f} s)")
    for row in result.group_results:
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
