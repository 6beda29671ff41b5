"""Incremental silver dispensings: which rows a load can change, and the rest left as it was.

A dispensing row's verdict (silver, quarantine and why, or duplicate) depends on

* the row itself and its file (one-row rules, the file's year and delivery period);
* whether its person is known (a clean row of persons.csv);
* the other rows with its dispensing_id (duplicates, conflicting duplicates);
* for a product with a return, the clean rows of that person, ATC code and product within the
  return window before it, and - as a dispensing - the returns within the window after it.

So when some files change, the rows whose verdict can change are those of the changed files,
those of persons who became known or unknown, and every row tied to one of them by a
dispensing_id or by a product with a return within the window - transitively
(:func:`affected_rows`). Only these rows are classified again; every other row keeps the
verdict it has in silver and quarantine. The result equals classifying the whole bronze
again, row for row (``tests/test_incremental.py`` checks that on deliveries that add a year,
correct a file, drop rows and change persons).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from rxcohort.ingest.rules import ROW_KEY, Materialise
from rxcohort.log import get_logger

log = get_logger("ingest")

MAX_ROUNDS = 50


def affected_rows(
    keys: DataFrame,
    *,
    seeds: DataFrame,
    removed: DataFrame,
    window_days: int,
    materialise: Materialise,
) -> DataFrame | None:
    """The row keys (``source_file``, ``line_number``) of ``keys`` whose verdict may change.

    ``keys``: :func:`rxcohort.ingest.rules.dispensing_keys` of the bronze after this load;
    ``seeds``: the rows that changed (those of the changed files, those of persons whose
    known-ness changed), with the same columns; ``removed``: the keys of rows this load takes
    out of bronze (the earlier version of a changed file), which tie rows as well. None when
    the ties do not close within :data:`MAX_ROUNDS` rounds (then classify everything).
    """
    # Products with a return anywhere (before or after the load): only they tie rows by date.
    with_return = materialise(
        keys.where("_return")
        .select("_group")
        .unionByName(removed.where("_return").select("_group"))
        .distinct(),
        "incremental_return_groups",
    )
    core = materialise(seeds.select(*ROW_KEY).distinct(), "incremental_core_0")
    size = core.count()
    for round_ in range(1, MAX_ROUNDS + 1):
        anchors = keys.join(core, ROW_KEY, "left_semi").unionByName(removed)
        ids = anchors.where(F.col("_id").isNotNull()).select("_id").distinct()
        by_id = keys.join(ids, "_id", "left_semi").select(*ROW_KEY)
        near = (
            anchors.where(F.col("_day").isNotNull())
            .join(with_return, "_group", "left_semi")
            .select("_group", F.col("_day").alias("_anchor_day"))
            .distinct()
        )
        by_window = (
            keys.where(F.col("_day").isNotNull())
            .join(near, "_group")
            .where(F.abs(F.col("_day") - F.col("_anchor_day")) <= window_days)
            .select(*ROW_KEY)
        )
        grown = materialise(
            core.unionByName(by_id).unionByName(by_window).distinct(),
            f"incremental_core_{round_}",
        )
        grown_size = grown.count()
        core = grown
        if grown_size == size:
            log.info("incremental: %d rows to classify again (%d rounds)", size, round_)
            return core
        size = grown_size
    log.warning("incremental: the rows tied to the changes did not close in %d rounds", MAX_ROUNDS)
    return None
