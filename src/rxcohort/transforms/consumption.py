"""Per-person drug consumption (DDD, dispensings, use) by drug group and window."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import product

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from rxcohort.errors import ParameterError
from rxcohort.transforms.codes import starts_with_any, starts_with_any_filter

CONSUMPTION_COLUMNS = (
    "person_id",
    "drug_group",
    "window",
    "ddd",
    "n_dispensings",
    "is_user",
    "n_ddd_unknown",
)


def summarise_consumption(
    cohort: DataFrame,
    dispensings: DataFrame,
    *,
    drug_groups: Mapping[str, Sequence[str]],
    windows: Mapping[str, tuple[int, int]],
) -> DataFrame:
    """One row per cohort person x drug group x window, zeros included.

    ``drug_groups`` maps a name to ATC prefixes; ``windows`` maps a name to (start, end) days
    from the index date, both included. Per cell:

    * ddd - sum of the dispensings' DDD; a return (negative packs, negative DDD) subtracts and a
      dispensing with unknown DDD (null) adds nothing; 0.0 when there is none;
    * n_dispensings - dispensings with packs > 0; is_user - n_dispensings > 0;
    * n_ddd_unknown - dispensings (returns included) whose DDD is unknown, so a reader can see
      where ddd understates use.

    A dispensing counts in every group whose prefixes match its ATC code and in every window
    that holds its day, so overlapping groups or windows are allowed.
    """
    if not drug_groups or not windows:
        raise ParameterError("summarise_consumption needs at least one drug group and one window")
    for name, (start, end) in windows.items():
        if end < start:
            raise ParameterError(f"window {name} ends before it starts")
    keys = F.broadcast(cohort.select("person_id", "index_date"))
    day = F.datediff("dispense_date", "index_date")
    first = min(start for start, _ in windows.values())
    last = max(end for _, end in windows.values())
    any_group = starts_with_any_filter("atc_code", [p for ps in drug_groups.values() for p in ps])

    group_names = F.array_compact(
        F.array(
            *[F.when(starts_with_any("atc_code", ps), F.lit(g)) for g, ps in drug_groups.items()]
        )
    )
    window_names = F.array_compact(
        F.array(*[F.when(day.between(s, e), F.lit(w)) for w, (s, e) in windows.items()])
    )
    # Spark allows one generator per select: explode groups, then windows.
    cells = (
        dispensings.where(any_group)
        .join(keys, "person_id")
        .where(day.between(first, last))
        .select(
            "person_id",
            "ddd",
            "packs",
            F.explode(group_names).alias("drug_group"),
            window_names.alias("_w"),
        )
        .select("person_id", "ddd", "packs", "drug_group", F.explode("_w").alias("window"))
        .groupBy("person_id", "drug_group", "window")
        .agg(
            F.sum("ddd").alias("_ddd"),
            F.count(F.when(F.col("packs") > 0, True)).alias("_n"),
            F.count(F.when(F.col("ddd").isNull(), True)).alias("_unknown"),
        )
    )
    grid_pairs = F.array(
        *[
            F.struct(F.lit(g).alias("drug_group"), F.lit(w).alias("window"))
            for g, w in product(drug_groups, windows)
        ]
    )
    grid = cohort.select("person_id", F.explode(grid_pairs).alias("_cell")).select(
        "person_id", "_cell.drug_group", "_cell.window"
    )
    n = F.coalesce(F.col("_n"), F.lit(0)).cast("long")
    return grid.join(cells, ["person_id", "drug_group", "window"], "left").select(
        "person_id",
        "drug_group",
        "window",
        F.coalesce(F.col("_ddd"), F.lit(0.0)).cast("double").alias("ddd"),
        n.alias("n_dispensings"),
        (n > 0).alias("is_user"),
        F.coalesce(F.col("_unknown"), F.lit(0)).cast("long").alias("n_ddd_unknown"),
    )
