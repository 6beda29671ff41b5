"""The reference study (CONTRACT §5) as plain DuckDB SQL over the silver Delta tables.

This is the strongest single-node alternative a user could pick, written independently of the
Spark pipeline: the benchmark times it against ``rxcohort run`` and checks that both give the
same cohort and group means. It reads the Parquet files of the tables' current snapshots (the
file lists come from each table's Delta log).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
from deltalake import DeltaTable

REFERENCE_SQL = """
WITH ldn AS (
    SELECT person_id, dispense_date FROM disp
    WHERE atc_code = 'N07BB04' AND strength_mg <= 5 AND packs > 0
),
idx AS (
    SELECT person_id, min(dispense_date) AS index_date FROM ldn
    WHERE dispense_date BETWEEN DATE '2013-01-01' AND DATE '2013-12-31'
    GROUP BY person_id
),
new_users AS (
    SELECT i.* FROM idx i
    WHERE NOT EXISTS (SELECT 1 FROM ldn l WHERE l.person_id = i.person_id AND l.dispense_date < i.index_date)
),
followed AS (
    SELECT n.* FROM new_users n JOIN persons p USING (person_id)
    WHERE NOT coalesce(p.death_date < n.index_date + 364, false)
      AND NOT coalesce(p.emigration_date < n.index_date + 364, false)
),
prior_opioid AS (
    SELECT f.* FROM followed f
    WHERE EXISTS (
        SELECT 1 FROM disp d
        WHERE d.person_id = f.person_id AND d.atc_code LIKE 'N02A%' AND d.packs > 0
          AND d.dispense_date BETWEEN f.index_date - 365 AND f.index_date - 1
    )
),
cohort AS (
    SELECT c.person_id, c.index_date,
           (SELECT count(*) FROM ldn l WHERE l.person_id = c.person_id
              AND l.dispense_date BETWEEN c.index_date AND c.index_date + 364) AS n_ldn
    FROM prior_opioid c
),
groups AS (
    SELECT * FROM (VALUES ('opioids', 'N02A'), ('nsaids', 'M01A'), ('other_analgesics', 'N02B')) g(drug_group, prefix)
),
per_person AS (
    SELECT c.person_id,
           CASE WHEN c.n_ldn = 1 THEN 'ldn_1' WHEN c.n_ldn <= 3 THEN 'ldn_2_3' ELSE 'ldn_4plus' END AS exposure_group,
           g.drug_group,
           coalesce(sum(d.ddd) FILTER (WHERE d.dispense_date BETWEEN c.index_date - 365 AND c.index_date - 1), 0) AS ddd_pre,
           coalesce(sum(d.ddd) FILTER (WHERE d.dispense_date BETWEEN c.index_date AND c.index_date + 364), 0) AS ddd_post
    FROM cohort c CROSS JOIN groups g
    LEFT JOIN disp d ON d.person_id = c.person_id AND starts_with(d.atc_code, g.prefix)
         AND d.dispense_date BETWEEN c.index_date - 365 AND c.index_date + 364
    GROUP BY ALL
)
SELECT exposure_group, drug_group, count(*) AS n_persons,
       avg(ddd_pre) AS mean_ddd_pre, avg(ddd_post) AS mean_ddd_post, avg(ddd_post - ddd_pre) AS mean_diff
FROM per_person
GROUP BY ALL
ORDER BY exposure_group, drug_group
"""


def snapshot_files(table_path: Path) -> list[str]:
    return [str(u) for u in DeltaTable(str(table_path)).file_uris()]


def run_reference(warehouse: Path, *, threads: int | None = None) -> list[tuple]:
    """Group results (exposure_group, drug_group, n_persons, means) of the reference study."""
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    disp = snapshot_files(warehouse / "silver" / "dispensings")
    persons = snapshot_files(warehouse / "silver" / "persons")
    con.execute(
        "CREATE VIEW disp AS SELECT person_id, dispense_date, atc_code, strength_mg, packs, ddd "
        "FROM read_parquet($files, hive_partitioning = true)",
        {"files": disp},
    )
    con.execute("CREATE VIEW persons AS SELECT * FROM read_parquet($files)", {"files": persons})
    return con.execute(REFERENCE_SQL).fetchall()
